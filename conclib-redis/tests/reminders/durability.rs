//! Coalesced ticks after downtime, a firer killed mid-delivery, a Redis restart with AOF, a
//! registration that must reach a replica.

use std::time::Duration;

use conclib_redis::{
    Durability, ProxyConfig,
    reminders::{Reminder, ReminderError, Reminders},
};
use fred::prelude::*;

use crate::common::{config, eventually, plain_client};
use crate::firing::client;
use crate::peer::{Member, Note, lines};

#[path = "../common/servers.rs"]
pub(crate) mod servers;

/// Redis's clock, ms since the Unix epoch.
async fn redis_now(redis: &Client) -> u64 {
    let Value::Array(t) = crate::common::command(redis, &["TIME"]).await.unwrap() else {
        panic!("TIME answers an array");
    };
    let part = |v: &Value| v.as_string().unwrap().parse::<u64>().unwrap();
    part(&t[0]) * 1000 + part(&t[1]) / 1000
}

/// A periodic reminder (every 2 s) fires; the only system stops; 11 ticks come due while
/// nothing runs; once a system runs again the reminder is delivered once with
/// `missed = 10` (for the first of those ticks), then on time on the same grid.
pub(crate) async fn a_periodic_reminder_missed_while_all_systems_were_down_fires_once() {
    let config = config("rem-coalesce");
    let period = 2000u64;
    let member = Member::new("s1");
    let (peer, notes) = member.start(&config, None).await;
    let notes = [notes];
    let client = client(&config).await;
    let reminders = Reminders::new(&client);
    reminders
        .register(
            "rem:beat",
            Reminder::after("beat", Duration::from_millis(300))
                .every(Duration::from_millis(period))
                .payload(&Note {
                    number: 1,
                    hold_ms: 0,
                }),
        )
        .await
        .unwrap();
    let first = eventually(Duration::from_secs(10), "the first tick", || async {
        lines(&notes, "tick").into_iter().next()
    })
    .await;
    assert_eq!(first[3], "0", "on time: nothing missed");
    peer.stop().await;
    let listed = reminders.list("rem:beat").await.unwrap();
    let next_due = listed[0].due_ms;
    let first_due: u64 = first[4].parse().unwrap();
    assert_eq!(next_due, first_due + period, "the next tick on the grid");
    // Down until 11 ticks (next_due .. next_due + 10 periods) have come due, a quarter
    // period into the eleventh.
    let redis = plain_client(&config.url).await;
    let up_at = next_due + 10 * period + period / 4;
    let now = redis_now(&redis).await;
    tokio::time::sleep(Duration::from_millis(up_at.saturating_sub(now))).await;
    assert_eq!(lines(&notes, "tick").len(), 1, "nothing fired while down");
    let (peer, _) = member.start(&config, Some(&notes[0])).await;
    let coalesced = eventually(Duration::from_secs(10), "one coalesced tick", || async {
        lines(&notes, "tick").get(1).cloned()
    })
    .await;
    assert_eq!(
        coalesced[4],
        next_due.to_string(),
        "it stands for the first missed tick"
    );
    assert_eq!(coalesced[3], "10", "missed = 10: {coalesced:?}");
    let on_time = eventually(Duration::from_secs(10), "the next tick", || async {
        lines(&notes, "tick").get(2).cloned()
    })
    .await;
    assert_eq!(on_time[3], "0");
    assert_eq!(
        on_time[4],
        (next_due + 11 * period).to_string(),
        "on the grid"
    );
    assert_eq!(
        lines(&notes, "tick").len(),
        3,
        "one delivery for the downtime, not 11"
    );
    client.shutdown().await;
    peer.stop().await;
}

/// The only poller is SIGKILLed while the actor (on another system) handles a tick it
/// delivered: the tick is not acknowledged, and a poller started afterwards delivers it
/// again once the claim (3 s) lapsed: at least once, the duplicate counted.
pub(crate) async fn a_firer_killed_mid_delivery_is_taken_over_after_its_claim() {
    let config = config("rem-firer");
    let claim_ms = 3000u64;
    let mut actor = Member::new("actor");
    actor.poll = false;
    let mut firer = Member::new("firer");
    firer.activate = false;
    firer.claim_ms = claim_ms;
    let mut standby = Member::new("standby");
    standby.activate = false;
    standby.claim_ms = claim_ms;
    let (actor_peer, notes) = actor.start(&config, None).await;
    let (firer_peer, _) = firer.start(&config, None).await;
    let notes = [notes];
    let client = client(&config).await;
    let reminders = Reminders::new(&client);
    reminders
        .register(
            "rem:slow",
            Reminder::after("once", Duration::from_millis(200)).payload(&Note {
                number: 9,
                hold_ms: 1000,
            }),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the delivery starts", || async {
        !lines(&notes, "start").is_empty()
    })
    .await;
    assert!(reminders.list("rem:slow").await.unwrap()[0].claimed);
    let killed_at = std::time::Instant::now();
    firer_peer.kill().await;
    let (standby_peer, _) = standby.start(&config, None).await;
    eventually(Duration::from_secs(20), "delivered again", || async {
        lines(&notes, "tick").len() >= 2
    })
    .await;
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_millis(claim_ms + 3000),
        "taken over within the claim and a poll: {took:?}"
    );
    let ticks = lines(&notes, "tick");
    assert!(ticks.iter().all(|t| t[2] == "9"));
    eprintln!("handled {} times (1 duplicate expected)", ticks.len());
    eventually(
        Duration::from_secs(5),
        "acknowledged by the standby",
        || async { reminders.list("rem:slow").await.unwrap().is_empty() },
    )
    .await;
    client.shutdown().await;
    standby_peer.stop().await;
    actor_peer.stop().await;
}

/// 1,000 reminders registered on a Redis with AOF (fsync always); Redis SIGKILLed and
/// started again on its file: every one is still registered, with its schedule.
pub(crate) async fn reminders_survive_a_redis_restart_with_aof() {
    let dir = servers::TempDir::new("reminders-aof");
    let port = servers::free_ports(1)[0];
    let mut redis = servers::OwnRedis::start(port, dir.path(), true).await;
    let config = ProxyConfig::default()
        .with_namespace("rem-aof")
        .with_url(format!("redis://127.0.0.1:{port}"));
    let client = self::client(&config).await;
    let reminders = Reminders::new(&client);
    let mut due = Vec::new();
    for i in 0..1000u64 {
        let mut r = Reminder::after("r", Duration::from_secs(3600 + i)).payload(&Note {
            number: i,
            hold_ms: 0,
        });
        if i % 2 == 0 {
            r = r.every(Duration::from_secs(60));
        }
        due.push(reminders.register(&format!("rem:{i}"), r).await.unwrap());
    }
    client.shutdown().await;
    redis.kill();
    let _redis = servers::OwnRedis::start(port, dir.path(), true).await;
    let client = self::client(&config).await;
    let reminders = Reminders::new(&client);
    for (i, due) in due.iter().enumerate() {
        let listed = reminders.list(&format!("rem:{i}")).await.unwrap();
        assert_eq!(listed.len(), 1, "rem:{i} kept");
        assert_eq!(listed[0].due_ms, *due);
        assert_eq!(listed[0].period_ms, if i % 2 == 0 { 60_000 } else { 0 });
        assert!(!listed[0].payload.is_empty());
    }
    client.shutdown().await;
}

/// The Python client registers, cancels and lists with the same scripts, byte for byte.
pub(crate) async fn the_python_client_sends_the_same_scripts() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../python/src/conclib/reminders.py"
    );
    let python = std::fs::read_to_string(path).unwrap();
    for (name, text) in conclib_redis::reminders::__scripts() {
        assert!(
            python.contains(&format!("r\"\"\"{text}\"\"\"")),
            "the Python client's {name} script differs"
        );
    }
}

/// At `Durability::Replicas`, a registration and a cancellation are `Ok` only once a replica
/// holds them, `WAIT` sent on the connection that wrote them (a client has 2): with the
/// primary's only replica frozen (SIGSTOP), one caller registering and cancelling one after
/// the other, then 64 callers registering without pause, are each answered `Unavailable`
/// within the level's timeout and the command's (none `Ok`: a `WAIT` on the client's other
/// connection, which wrote nothing since, would answer at once); once the replica runs
/// again, registrations are `Ok`.
pub(crate) async fn a_registration_is_ok_only_once_a_replica_holds_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;

    let pair = tokio::task::spawn_blocking(conclib_testkit::redis_ha::Replicated::start)
        .await
        .unwrap();
    let wait = Duration::from_millis(300);
    let mut config = ProxyConfig::default()
        .with_namespace("rem-replicas")
        .with_url(pair.url());
    config.durability = Durability::Replicas {
        n: 1,
        timeout: wait,
    };
    config.command_timeout = Duration::from_secs(2);
    assert_eq!(config.pool_size, 2, "the fault needs a second connection");
    let client = client(&config).await;
    let reminders = Reminders::new(&client);
    // Both connections wrote, and the replica took it (asked again while a loaded machine's
    // replica acknowledges later than the level's 300 ms: that answer is `Unavailable` too).
    for i in 0..4 {
        eventually(Duration::from_secs(10), "a registration Ok", || async {
            match reminders
                .register(
                    &format!("rem:{i}"),
                    Reminder::after("r", Duration::from_secs(3600)),
                )
                .await
            {
                Ok(_) => true,
                Err(ReminderError::Unavailable(_)) => false,
                Err(e) => panic!("an untyped error: {e}"),
            }
        })
        .await;
    }
    pair.servers[1].signal(libc::SIGSTOP);
    // The command timeout, the `WAIT`'s own and the 200 ms slack the client gives its answer.
    let bound = config.command_timeout + wait + Duration::from_millis(200 + 250);
    for i in 0..4 {
        let began = Instant::now();
        let registered = reminders
            .register(
                &format!("rem:{i}"),
                Reminder::after("r", Duration::from_secs(3600)),
            )
            .await;
        assert!(
            matches!(registered, Err(ReminderError::Unavailable(_))),
            "registration {i} with the replica frozen: {registered:?}"
        );
        let cancelled = reminders.cancel(&format!("rem:{i}"), "r").await;
        assert!(
            matches!(cancelled, Err(ReminderError::Unavailable(_))),
            "cancellation {i} with the replica frozen: {cancelled:?}"
        );
        assert!(began.elapsed() < 2 * bound, "{:?}", began.elapsed());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, late) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let callers: Vec<_> = (0..64)
        .map(|c| {
            let (reminders, stop) = (reminders.clone(), stop.clone());
            let (ok, failed, late) = (ok.clone(), failed.clone(), late.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let began = Instant::now();
                    let reminder = Reminder::after(format!("c{c}-{n}"), Duration::from_secs(3600));
                    match reminders.register(&format!("rem:{c}"), reminder).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(ReminderError::Unavailable(_)) => {
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => panic!("an untyped error: {e}"),
                    };
                    if began.elapsed() > bound {
                        late.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        tokio::time::timeout(2 * bound, caller)
            .await
            .unwrap()
            .unwrap();
    }
    let (ok, failed, late) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        late.load(Ordering::Relaxed),
    );
    eprintln!("frozen replica, 64 callers: {ok} ok, {failed} unavailable, {late} late");
    assert_eq!(ok, 0, "registrations reported Ok that no replica holds");
    assert!(failed >= 64, "every caller was answered: {failed}");
    assert_eq!(late, 0, "calls past the bound");
    pair.servers[1].signal(libc::SIGCONT);
    eventually(
        Duration::from_secs(10),
        "registrations Ok again",
        || async {
            reminders
                .register("rem:0", Reminder::after("r", Duration::from_secs(3600)))
                .await
                .is_ok()
        },
    )
    .await;
    client.shutdown().await;
}

/// At `Durability::Replicas { n: 2 }` through Sentinel (a primary, 2 replicas, 3 sentinels),
/// with both replicas frozen (SIGSTOP): 64 callers registering reminders and publishing
/// durable events without pause are each answered `Unavailable` within the command timeout
/// (+ 250 ms), the write and the `WAIT`s after it together. Each `WAIT` is bounded by the
/// level's timeout, and a caller may wait for two after its write: 1.4 s here, past the
/// 700 ms command timeout, had the whole not been bounded by it.
pub(crate) async fn durable_writes_return_within_the_command_timeout_while_replicas_lag() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;

    use conclib_redis::topics::Topic;

    let sentinel = tokio::task::spawn_blocking(conclib_testkit::redis_ha::Sentinel::start)
        .await
        .unwrap();
    let mut config = ProxyConfig::default()
        .with_namespace("rem-bound")
        .with_url(sentinel.url());
    config.durability = Durability::Replicas {
        n: 2,
        timeout: Duration::from_millis(500),
    };
    config.command_timeout = Duration::from_millis(700);
    let client = client(&config).await;
    let reminders = Reminders::new(&client);
    let topic = Topic::durable("rem.bound").unwrap();
    let primary = sentinel.primary_port().unwrap();
    let frozen: Vec<_> = sentinel
        .servers
        .iter()
        .filter(|s| s.port != primary)
        .collect();
    for replica in &frozen {
        replica.signal(libc::SIGSTOP);
    }
    let bound = config.command_timeout + Duration::from_millis(250);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, late) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let longest = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let callers: Vec<_> = (0..64u64)
        .map(|c| {
            let (client, reminders, topic, stop) = (
                client.clone(),
                reminders.clone(),
                topic.clone(),
                stop.clone(),
            );
            let (ok, failed, late, longest) =
                (ok.clone(), failed.clone(), late.clone(), longest.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let began = Instant::now();
                    let unavailable = if (c + n).is_multiple_of(2) {
                        let reminder =
                            Reminder::after(format!("c{c}-{n}"), Duration::from_secs(3600));
                        match reminders.register(&format!("rem:{c}"), reminder).await {
                            Ok(_) => false,
                            Err(ReminderError::Unavailable(_)) => true,
                            Err(e) => panic!("an untyped error: {e}"),
                        }
                    } else {
                        match client.topics().publish(&topic, &n).await {
                            Ok(()) => false,
                            Err(conclib_redis::topics::TopicError::Unavailable(_)) => true,
                            Err(e) => panic!("an untyped error: {e}"),
                        }
                    };
                    let took = began.elapsed();
                    if unavailable {
                        failed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    if took > bound {
                        late.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut longest = longest.lock().unwrap();
                    *longest = (*longest).max(took);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        tokio::time::timeout(4 * bound, caller)
            .await
            .expect("a caller returned")
            .unwrap();
    }
    for replica in &frozen {
        replica.signal(libc::SIGCONT);
    }
    let (ok, failed, late) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        late.load(Ordering::Relaxed),
    );
    let longest = *longest.lock().unwrap();
    eprintln!(
        "frozen replicas, 64 callers: {ok} ok, {failed} unavailable, {late} past {bound:?}, longest {longest:?}"
    );
    assert_eq!(ok, 0, "writes reported done that no replica holds");
    assert!(failed >= 64, "every caller was answered: {failed}");
    assert_eq!(late, 0, "calls past the command timeout + 250 ms");
    client.shutdown().await;
    drop(sentinel);
}
