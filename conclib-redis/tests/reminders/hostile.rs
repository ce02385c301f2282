//! What others may write into a shard (garbled records, members without a record) is
//! dropped from the due set without stopping the shard: the valid reminders beside them
//! fire.

use std::time::Duration;

use conclib_core::ActorSystem;
use conclib_redis::{
    ProxyClient,
    reminders::{Reminder, ReminderPoller, ReminderPollerOptions, Reminders},
    scale::Activation,
    start_proxy,
};

use crate::cluster::{Handled, Noted};
use crate::common::{command, config, eventually, plain_client};

pub(crate) async fn garbled_records_do_not_stop_their_shard() {
    let config = config("rem-hostile");
    let ns = config.namespace.clone();
    let handled: Handled = Handled::default();
    let system = ActorSystem::new("hostile");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let h = handled.clone();
    proxy
        .activate("rem:{id}", move |a: Activation| {
            let actor = Noted {
                urn: a.urn().to_owned(),
                handled: h.clone(),
            };
            async move { Ok::<_, String>(actor) }
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let reminders = Reminders::new(&client);
    // A valid reminder registered, to learn the shard's keys from Redis.
    reminders
        .register("rem:h", Reminder::after("probe", Duration::from_secs(3600)))
        .await
        .unwrap();
    let redis = plain_client(&config.url).await;
    let fred::prelude::Value::Array(keys) = command(&redis, &["KEYS", &format!("{ns}:rem:*:due")])
        .await
        .unwrap()
    else {
        panic!("KEYS answers an array");
    };
    let due_key = keys[0].as_string().unwrap();
    let prefix = due_key.strip_suffix(":due").unwrap().to_owned();
    // A record without a due time, one whose period is not a number, a member without a
    // record, all due now in the same shard.
    let bad = format!("{prefix}:r:rem:h\nbad");
    command(
        &redis,
        &["HSET", &bad, "urn", "rem:h", "name", "bad", "due", "soon"],
    )
    .await
    .unwrap();
    let odd = format!("{prefix}:r:rem:h\nodd");
    command(
        &redis,
        &[
            "HSET", &odd, "urn", "rem:h", "name", "odd", "due", "0", "period", "often",
        ],
    )
    .await
    .unwrap();
    for member in ["rem:h\nbad", "rem:h\nodd", "rem:h\nghost"] {
        command(&redis, &["ZADD", &due_key, "0", member])
            .await
            .unwrap();
    }
    reminders
        .register("rem:h", Reminder::after("good", Duration::ZERO))
        .await
        .unwrap();
    let poller = ReminderPoller::start(
        &client,
        ReminderPollerOptions::default().with_poll_interval(Duration::from_millis(50)),
    )
    .unwrap();
    eventually(Duration::from_secs(20), "the valid ones fire", || async {
        let h = handled.lock().unwrap();
        h.contains(&"rem:h good".to_owned()) && h.contains(&"rem:h odd".to_owned())
    })
    .await;
    // The garbled one and the ghost are out of the due set, the fired ones acknowledged;
    // the probe is still there.
    eventually(Duration::from_secs(10), "only the probe left", || async {
        let left = command(&redis, &["ZRANGE", &due_key, "0", "-1"])
            .await
            .unwrap();
        left.into_array().len() == 1
    })
    .await;
    assert_eq!(handled.lock().unwrap().len(), 2);
    poller.shutdown().await;
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
