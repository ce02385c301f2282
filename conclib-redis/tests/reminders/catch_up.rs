//! `Reminder::deliver_each`: the ticks of a periodic reminder missed while nothing ran come
//! one by one, each with its own due time, spaced by the given gap.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclib_core::ActorSystem;
use conclib_macros::actor;
use conclib_redis::{
    ProxyClient,
    reminders::{Reminder, ReminderPoller, ReminderPollerOptions, ReminderTick, Reminders},
    scale::Activation,
    start_proxy,
};

use crate::common::{config, eventually};

type Seen = Arc<Mutex<Vec<(u64, u64, Instant)>>>;

/// Notes each tick's due time, missed count and arrival.
#[actor]
struct Paced {
    seen: Seen,
}

#[actor]
impl Paced {
    #[handle(remote)]
    fn tick(&mut self, tick: ReminderTick) -> Result<(), String> {
        self.seen
            .lock()
            .unwrap()
            .push((tick.due_ms(), tick.missed(), Instant::now()));
        Ok(())
    }
}

pub(crate) async fn missed_ticks_are_delivered_one_by_one_when_asked() {
    let config = config("rem-each");
    let seen: Seen = Seen::default();
    let system = ActorSystem::new("each");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let s = seen.clone();
    proxy
        .activate("rem:{id}", move |_a: Activation| {
            let actor = Paced { seen: s.clone() };
            async move { Ok::<_, String>(actor) }
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let reminders = Reminders::new(&client);
    let period = 200u64;
    let gap = Duration::from_millis(150);
    // First due 1.1 s ago: 6 ticks (0, 200, ..., 1000 ms after it) already due.
    let first = SystemTime::now() - Duration::from_millis(1100);
    let first_ms = first.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    reminders
        .register(
            "rem:each",
            Reminder::at("pace", first)
                .every(Duration::from_millis(period))
                .deliver_each(gap),
        )
        .await
        .unwrap();
    let poller = ReminderPoller::start(
        &client,
        ReminderPollerOptions::default().with_poll_interval(Duration::from_millis(20)),
    )
    .unwrap();
    eventually(Duration::from_secs(20), "7 ticks", || async {
        seen.lock().unwrap().len() >= 7
    })
    .await;
    poller.shutdown().await;
    let seen = seen.lock().unwrap().clone();
    for (k, (due, missed, _)) in seen.iter().take(7).enumerate() {
        assert_eq!(
            *due,
            first_ms + k as u64 * period,
            "tick {k} on the grid: {seen:?}"
        );
        assert_eq!(*missed, 0, "delivered on its own");
    }
    for pair in seen[..6].windows(2) {
        let apart = pair[1].2 - pair[0].2;
        // The gap is kept on Redis's clock; the arrivals jitter by a poll (20 ms) and more.
        assert!(apart >= Duration::from_millis(100), "spaced: {apart:?}");
    }
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
