//! The reminders' metrics, read back through a test recorder: a system in this process
//! activates `rem:{id}`, its poller fires a one-shot reminder and a periodic one registered
//! 1 s in the past (5 ticks coalesced). One test in its own binary: the recorder is global.

mod common;

use std::time::{Duration, SystemTime};

use conclib_core::ActorSystem;
use conclib_macros::actor;
use conclib_redis::{
    ProxyClient,
    reminders::{Reminder, ReminderPoller, ReminderPollerOptions, ReminderTick, Reminders},
    scale::Activation,
    start_proxy,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// Counts the ticks it handled, and those they stood for.
#[actor]
#[derive(Default)]
struct Ticked;

#[actor]
impl Ticked {
    #[handle(remote)]
    fn tick(&mut self, _tick: ReminderTick) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reminder_metric_is_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    conclib_core::metrics::enable();

    let config = common::config("rem-metrics");
    let ns = config.namespace.clone();
    let system = ActorSystem::new("metrics");
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy
        .activate("rem:{id}", |_a: Activation| async {
            Ok::<_, String>(Ticked)
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let poller = ReminderPoller::start(
        &client,
        ReminderPollerOptions::default().with_poll_interval(Duration::from_millis(50)),
    )
    .unwrap();
    let reminders = Reminders::new(&client);
    reminders
        .register("rem:once", Reminder::after("once", Duration::ZERO))
        .await
        .unwrap();
    reminders
        .register(
            "rem:beat",
            Reminder::at("beat", SystemTime::now() - Duration::from_millis(1100))
                .every(Duration::from_millis(200)),
        )
        .await
        .unwrap();

    let mut seen = std::collections::HashMap::<String, f64>::new();
    let mut lags = 0usize;
    let ns_label = format!("namespace={ns}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        for ((name, labels), value) in conclib_testkit::recorded(&snapshotter) {
            if !labels.contains(&ns_label) {
                continue;
            }
            match value {
                DebugValue::Counter(n) => *seen.entry(name).or_default() += n as f64,
                DebugValue::Gauge(g) => {
                    seen.insert(name, g.into_inner());
                }
                DebugValue::Histogram(v) => lags += v.len(),
            }
        }
        let get = |n: &str| seen.get(n).copied().unwrap_or(0.0);
        if get("conclib_reminders_fired_total") >= 3.0
            && get("conclib_reminders_coalesced_ticks_total") >= 5.0
            && seen.contains_key("conclib_reminders_registered")
            && seen.contains_key("conclib_reminders_due")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics recorded: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["conclib_reminders_registrations_total"], 2.0);
    assert!(lags >= 3, "a lag per delivery: {lags}");
    // Only the periodic one is still registered.
    let stats = poller.stats();
    assert!(stats.fired >= 3 && stats.coalesced >= 5, "{stats:?}");
    eprintln!("{stats:?} {seen:?}");
    poller.shutdown().await;
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
