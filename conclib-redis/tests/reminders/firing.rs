//! Registering, firing exactly once across systems, delivery to passivated and re-homed
//! activations.

use std::collections::BTreeMap;
use std::time::Duration;

use conclib_redis::{
    ProxyClient,
    reminders::{Reminder, ReminderError, Reminders},
};

use crate::common::{config, eventually};
use crate::peer::{Member, Note, RegisterOwn, lines};

/// A client of the test's namespace.
pub(crate) async fn client(config: &conclib_redis::ProxyConfig) -> ProxyClient {
    ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
}

pub(crate) async fn reminders_register_cancel_list_and_reject_what_is_invalid() {
    let config = config("rem-api");
    let client = client(&config).await;
    let reminders = Reminders::new(&client);
    let due = reminders
        .register(
            "rem:1",
            Reminder::after("b", Duration::from_secs(3600))
                .every(Duration::from_secs(60))
                .payload(&Note {
                    number: 7,
                    hold_ms: 0,
                }),
        )
        .await
        .unwrap();
    reminders
        .register("rem:1", Reminder::after("a", Duration::from_secs(60)))
        .await
        .unwrap();
    let listed = reminders.list("rem:1").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].name.as_str(), listed[0].period_ms), ("a", 0));
    assert_eq!(
        (listed[1].name.as_str(), listed[1].period_ms),
        ("b", 60_000)
    );
    assert_eq!(listed[1].due_ms, due);
    assert_eq!(listed[1].codec, "bincode");
    assert!(!listed[1].claimed);
    // Registering again replaces.
    let later = reminders
        .register("rem:1", Reminder::after("b", Duration::from_secs(7200)))
        .await
        .unwrap();
    assert!(later > due);
    let listed = reminders.list("rem:1").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[1].due_ms, listed[1].period_ms), (later, 0));
    assert!(listed[1].payload.is_empty());
    assert!(reminders.cancel("rem:1", "a").await.unwrap());
    assert!(!reminders.cancel("rem:1", "a").await.unwrap());
    assert_eq!(reminders.list("rem:1").await.unwrap().len(), 1);
    assert!(reminders.list("rem:2").await.unwrap().is_empty());
    for bad in [
        reminders
            .register("rem:1", Reminder::after("", Duration::ZERO))
            .await,
        reminders
            .register("rem:1", Reminder::after("a\nb", Duration::ZERO))
            .await,
        reminders
            .register("bad urn", Reminder::after("a", Duration::ZERO))
            .await,
        reminders
            .register(
                "rem:1",
                Reminder::after("p", Duration::ZERO).every(Duration::ZERO),
            )
            .await,
        // Past the horizon (Redis keeps due times as doubles): refused before writing.
        reminders
            .register("rem:1", Reminder::after("max", Duration::MAX))
            .await,
        reminders
            .register(
                "rem:1",
                Reminder::after("long", Duration::ZERO).every(Duration::MAX),
            )
            .await,
        reminders
            .register(
                "rem:1",
                Reminder::at("far", std::time::SystemTime::UNIX_EPOCH + Duration::MAX / 2),
            )
            .await,
    ] {
        assert!(matches!(bad, Err(ReminderError::Invalid(_))), "{bad:?}");
    }
    // Nothing of them was written.
    let names: Vec<String> = reminders
        .list("rem:1")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| ["max", "long", "far"].contains(&n.as_str())),
        "{names:?}"
    );
    let too_big = reminders
        .register(
            "rem:1",
            Reminder::after("big", Duration::ZERO).payload(&vec![0u8; config.max_payload + 1]),
        )
        .await;
    assert!(
        matches!(too_big, Err(ReminderError::Codec(_))),
        "{too_big:?}"
    );
    client.shutdown().await;
}

/// 10,000 reminders (100 URNs × 100 names) due within one second, three systems polling
/// and activating: each handled exactly once.
pub(crate) async fn reminders_fire_exactly_once_across_three_systems() {
    let seen = burst("rem-once", None).await;
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
}

/// The same burst, one of the three systems SIGKILLed once 3,000 ticks were handled: each
/// tick handled at least once; the duplicates are counted.
pub(crate) async fn reminders_fire_at_least_once_with_a_system_killed_mid_way() {
    let seen = burst("rem-kill", Some(3000)).await;
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    eprintln!("duplicates after the kill: {duplicates}");
}

/// Registers the burst on three members (claims of 40 s, deliveries timed out after 20 s,
/// unless one is killed: then 6 s and 3 s), SIGKILLs one after `kill_after` ticks were
/// handled, waits until every tick was handled, returns how often each was.
async fn burst(test: &str, kill_after: Option<usize>) -> BTreeMap<u64, usize> {
    let config = config(test);
    let mut peers = Vec::new();
    let mut notes = Vec::new();
    for s in ["s1", "s2", "s3"] {
        let mut member = Member::new(s);
        // Without a kill, deliveries are not timed out under this burst on a debug build
        // (one that times out is retried: at least once).
        member.claim_ms = if kill_after.is_some() { 6000 } else { 40_000 };
        let (p, n) = member.start(&config, None).await;
        peers.push(p);
        notes.push(n);
    }
    let client = client(&config).await;
    let reminders = Reminders::new(&client);
    let (urns, names) = (100u64, 100u64);
    let mut registering = Vec::new();
    for u in 0..urns {
        let reminders = reminders.clone();
        registering.push(tokio::spawn(async move {
            for n in 0..names {
                let number = u * names + n;
                let delay = Duration::from_millis(1500 + (number % 1000));
                reminders
                    .register(
                        &format!("rem:{u}"),
                        Reminder::after(format!("n{n}"), delay)
                            .payload(&Note { number, hold_ms: 0 }),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for r in registering {
        r.await.unwrap();
    }
    let total = (urns * names) as usize;
    let started = std::time::Instant::now();
    if let Some(after) = kill_after {
        eventually(Duration::from_secs(30), "some ticks handled", || async {
            lines(&notes, "tick").len() >= after
        })
        .await;
        peers.remove(1).kill().await;
        eprintln!("killed s2 after {:?}", started.elapsed());
    }
    let distinct = || {
        lines(&notes, "tick")
            .iter()
            .map(|w| w[2].clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    eventually(
        Duration::from_secs(45),
        "every reminder handled",
        || async { distinct() >= total },
    )
    .await;
    eprintln!("all handled after {:?}", started.elapsed());
    // Anything fired twice would show up by now: the pollers poll every 50 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut by_system: BTreeMap<String, usize> = BTreeMap::new();
    for words in lines(&notes, "tick") {
        *seen.entry(words[2].parse().unwrap()).or_default() += 1;
        *by_system.entry(words[5].clone()).or_default() += 1;
    }
    assert_eq!(seen.len(), total, "every tick handled");
    eprintln!("handled by system: {by_system:?}");
    eventually(
        Duration::from_secs(10),
        "every tick acknowledged",
        || async {
            reminders.list("rem:0").await.unwrap().is_empty()
                && reminders
                    .list(&format!("rem:{}", urns - 1))
                    .await
                    .unwrap()
                    .is_empty()
        },
    )
    .await;
    if kill_after.is_none() {
        // Every one-shot reminder acknowledged is gone whole: record, due set member, and
        // name in its URN's index (written once per acknowledgement call for all of a
        // shard's ticks): no key of the shards is left.
        let redis = crate::common::plain_client(&config.url).await;
        let pattern = format!("{}:rem:{{*", config.namespace);
        eventually(Duration::from_secs(10), "no reminder key left", || async {
            let keys = crate::common::command(&redis, &["KEYS", &pattern])
                .await
                .unwrap();
            matches!(keys, fred::prelude::Value::Array(k) if k.is_empty())
        })
        .await;
    }
    client.shutdown().await;
    for p in peers {
        p.stop().await;
    }
    seen
}

/// An actor registers its own reminder from its handler; it is passivated; the reminder
/// activates it again. Then it registers another, its holder is SIGKILLed, and the reminder
/// activates it on the other system.
pub(crate) async fn a_reminder_registered_by_an_actor_wakes_it_after_passivation_and_after_its_holder_is_killed()
 {
    let config = config("rem-wake");
    let mut a = Member::new("s1");
    a.idle_ms = 300;
    a.lease_ms = 1500;
    let mut b = Member::new("s2");
    b.idle_ms = 300;
    b.lease_ms = 1500;
    let (pa, na) = a.start(&config, None).await;
    let (pb, nb) = b.start(&config, None).await;
    let notes = [na, nb];
    let client = client(&config).await;
    client
        .ask(
            "rem:7",
            RegisterOwn {
                name: "wake".into(),
                delay_ms: 2000,
                number: 1,
            },
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "passivated", || async {
        lines(&notes, "stopped").len() == 1
    })
    .await;
    assert!(lines(&notes, "tick").is_empty(), "not due yet");
    let tick = eventually(Duration::from_secs(10), "the reminder fires", || async {
        lines(&notes, "tick").into_iter().next()
    })
    .await;
    assert_eq!(&tick[..3], ["rem:7", "wake", "1"]);
    assert_eq!(
        lines(&notes, "activated").len(),
        2,
        "activated again by the reminder"
    );

    // Again, and the holder is killed before it is due.
    client
        .ask(
            "rem:7",
            RegisterOwn {
                name: "wake".into(),
                delay_ms: 2500,
                number: 2,
            },
        )
        .await
        .unwrap();
    let holder = lines(&notes, "registered")[1][2].clone();
    let (killed, survivor) = if holder == "s1" { (pa, pb) } else { (pb, pa) };
    killed.kill().await;
    let tick = eventually(
        Duration::from_secs(20),
        "the reminder fires on the survivor",
        || async { lines(&notes, "tick").get(1).cloned() },
    )
    .await;
    assert_eq!(&tick[..3], ["rem:7", "wake", "2"]);
    assert_ne!(tick[5], holder, "handled by the other system");
    assert_eq!(lines(&notes, "tick").len(), 2);
    client.shutdown().await;
    survivor.stop().await;
}

/// A due reminder on a URN no system serves is retried, and shows: the poller counts it
/// `unserved` (also in its report for the live view, and a metric).
pub(crate) async fn a_reminder_on_a_urn_nobody_serves_is_counted_unserved() {
    let config = config("rem-unserved");
    let client = client(&config).await;
    let poller = conclib_redis::reminders::ReminderPoller::start(
        &client,
        conclib_redis::reminders::ReminderPollerOptions::default()
            .with_poll_interval(Duration::from_millis(20))
            .with_retry_after(Duration::from_millis(50)),
    )
    .unwrap();
    Reminders::new(&client)
        .register("nobody:here", Reminder::after("lost", Duration::ZERO))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "counted unserved", || async {
        poller.stats().unserved >= 2
    })
    .await;
    assert_eq!(poller.stats().fired, 0);
    poller.shutdown().await;
    client.shutdown().await;
}
