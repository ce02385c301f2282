//! Reminders move as activations do: the system delivering a periodic reminder is SIGKILLed
//! mid-delivery at the default claim lease, while another poller runs; the next tick comes
//! from that other poller within the claim lease (renewed while a delivery runs, lapsing
//! once its poller is gone) plus a margin, and counting ticks by
//! `ReminderTick::ticks_since` over every delivery loses none and counts none twice. And
//! the same across a drain: the member holding the reminder's URN and polling gets SIGTERM
//! mid-delivery (its poller stops, then its proxy drains); the next tick comes on time,
//! not a claim lease later, and none is lost or counted twice.

use std::time::{Duration, Instant};

use conclib_redis::reminders::{DEFAULT_REMINDER_CLAIM_LEASE, Reminder, ReminderTick, Reminders};
use fred::prelude::*;

use crate::common::{config, eventually, plain_client};
use crate::firing::client;
use crate::peer::{Member, Note, lines};

/// The reminder's period, and how long its handler holds each tick (a delivery is in
/// flight most of the time).
const PERIOD_MS: u64 = 300;
const HOLD_MS: u64 = 200;

/// The process id in the claim token of the reminder's record (`{random}-p{pid}:{gen}:{n}`).
async fn claiming_pid(redis: &Client, ns: &str) -> Option<i32> {
    let keys: Vec<String> = redis
        .custom(fred::cmd!("KEYS"), vec![format!("{ns}:rem:*:r:*")])
        .await
        .ok()?;
    let claim: Option<String> = redis
        .custom(
            fred::cmd!("HGET"),
            vec![keys.first()?.clone(), "claim".to_owned()],
        )
        .await
        .ok()?;
    let prefix = claim?.split(':').next()?.to_owned();
    prefix.rsplit_once("-p")?.1.parse().ok()
}

/// The deliveries noted, in order, as ticks (name, due, missed).
fn deliveries(notes: &[std::path::PathBuf]) -> Vec<ReminderTick> {
    lines(notes, "tick")
        .iter()
        .map(|t| {
            ReminderTick::new(
                t[1].clone(),
                t[4].parse().unwrap(),
                PERIOD_MS,
                t[3].parse().unwrap(),
            )
        })
        .collect()
}

/// Registers `rem:beat` (every `PERIOD_MS`, each delivery held `HOLD_MS`), then waits for
/// three ticks and for the start of one more delivery: the moment both tests cut in.
async fn beat_until_a_delivery_starts(
    client: &conclib_redis::ProxyClient,
    notes: &[std::path::PathBuf],
) {
    Reminders::new(client)
        .register(
            "rem:beat",
            Reminder::after("beat", Duration::from_millis(100))
                .every(Duration::from_millis(PERIOD_MS))
                .payload(&Note {
                    number: 1,
                    hold_ms: HOLD_MS,
                }),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "three ticks delivered", || async {
        lines(notes, "tick").len() >= 3
    })
    .await;
    let starts = lines(notes, "start").len();
    eventually(Duration::from_secs(10), "a delivery starts", || async {
        lines(notes, "start").len() > starts
    })
    .await;
}

pub(crate) async fn a_periodic_reminders_deliverer_killed_is_taken_over_within_the_claim_lease() {
    let config = config("rem-takeover");
    let mut actor = Member::new("actor");
    actor.poll = false;
    let mut first = Member::new("p1");
    first.activate = false;
    first.claim_ms = 0;
    let mut second = Member::new("p2");
    second.activate = false;
    second.claim_ms = 0;
    let (actor_peer, notes) = actor.start(&config, None).await;
    let notes = [notes];
    let (p1, _) = first.start(&config, None).await;
    let (p2, _) = second.start(&config, None).await;
    let client = client(&config).await;
    let redis = plain_client(&config.url).await;
    // A delivery under way: kill the poller holding its claim.
    beat_until_a_delivery_starts(&client, &notes).await;
    let pid = eventually(
        Duration::from_secs(5),
        "the claim names its poller",
        || async { claiming_pid(&redis, &config.namespace).await },
    )
    .await;
    let (victim, survivor) = if pid == p1.pid() { (p1, p2) } else { (p2, p1) };
    assert_eq!(
        victim.pid(),
        pid,
        "the claim's process is one of the pollers"
    );
    let in_hand = deliveries(&notes).last().map(ReminderTick::last_due_ms);
    victim.kill().await;
    let killed_at = Instant::now();
    // The tick in hand may still be noted (its handler runs in the actor's process); the
    // takeover shows as a delivery standing for a later tick.
    let taken_over = eventually(
        DEFAULT_REMINDER_CLAIM_LEASE * 3,
        "a later tick delivered by the survivor",
        || async {
            let last = deliveries(&notes)
                .iter()
                .map(ReminderTick::last_due_ms)
                .max();
            (last > in_hand.map(|d| d + PERIOD_MS)).then(Instant::now)
        },
    )
    .await;
    let took = taken_over - killed_at;
    // Two more deliveries, then count the ticks.
    let n = lines(&notes, "tick").len();
    eventually(Duration::from_secs(10), "deliveries go on", || async {
        lines(&notes, "tick").len() >= n + 2
    })
    .await;
    let all = deliveries(&notes);
    let (counted, expected, same_due) = counted(&all);
    println!(
        "RESULT test=reminder_takeover claim_lease_ms={} takeover_ms={} deliveries={} ticks={counted} redelivered_same_due={same_due}",
        DEFAULT_REMINDER_CLAIM_LEASE.as_millis(),
        took.as_millis(),
        all.len()
    );
    assert_eq!(
        counted, expected,
        "every tick counted once by ticks_since: {all:?}"
    );
    assert!(
        took <= DEFAULT_REMINDER_CLAIM_LEASE + Duration::from_millis(1500),
        "taken over within the claim lease and a margin: {took:?}"
    );
    client.shutdown().await;
    survivor.stop().await;
    actor_peer.stop().await;
}

/// Every delivery's ticks counted by `ticks_since`: (ticks counted, ticks expected from
/// the first due time to the last, deliveries of a due time delivered before).
fn counted(all: &[ReminderTick]) -> (u64, u64, usize) {
    let (mut last, mut counted, mut same_due) = (None::<u64>, 0u64, 0usize);
    for (i, tick) in all.iter().enumerate() {
        if all[..i].iter().any(|t| t.due_ms() == tick.due_ms()) {
            same_due += 1;
        }
        counted += tick.ticks_since(last);
        last = last.max(Some(tick.last_due_ms()));
    }
    let expected = (last.unwrap_or(0) - all[0].due_ms()) / PERIOD_MS + 1;
    (counted, expected, same_due)
}

pub(crate) async fn a_periodic_reminder_loses_no_tick_and_repeats_none_across_a_drain() {
    let config = config("rem-drain");
    let (first, second) = (Member::new("d1"), Member::new("d2"));
    let (p1, n1) = first.start(&config, None).await;
    let (p2, n2) = second.start(&config, None).await;
    let notes = [n1, n2];
    let client = client(&config).await;
    let redis = plain_client(&config.url).await;
    // The member holding the URN, mid-delivery, is drained.
    beat_until_a_delivery_starts(&client, &notes).await;
    let key = format!("{}:urn:rem:beat", config.namespace);
    let holder: String = redis.get(&key).await.unwrap();
    let (victim, survivor) = if holder == "d1" { (p1, p2) } else { (p2, p1) };
    let in_hand = deliveries(&notes).last().map(ReminderTick::last_due_ms);
    victim.signal(libc::SIGTERM);
    let termed = Instant::now();
    let said = victim.said_until_stopped(30).await;
    assert!(
        said.iter().any(|l| l.starts_with("DRAINED ")),
        "drained: {said:?}"
    );
    // The next tick after the one in hand, from the survivor: on time, not after a claim
    // lapsed.
    let next = eventually(
        DEFAULT_REMINDER_CLAIM_LEASE * 3,
        "a later tick delivered",
        || async {
            let last = deliveries(&notes)
                .iter()
                .map(ReminderTick::last_due_ms)
                .max();
            (last > in_hand.map(|d| d + PERIOD_MS)).then(Instant::now)
        },
    )
    .await;
    let n = lines(&notes, "tick").len();
    eventually(Duration::from_secs(10), "deliveries go on", || async {
        lines(&notes, "tick").len() >= n + 2
    })
    .await;
    let all = deliveries(&notes);
    let (ticks, expected, same_due) = counted(&all);
    let gap = next - termed;
    println!(
        "RESULT test=reminder_drain deliveries={} ticks={ticks} redelivered_same_due={same_due} next_tick_after_term_ms={}",
        all.len(),
        gap.as_millis()
    );
    assert_eq!(ticks, expected, "every tick counted once: {all:?}");
    assert_eq!(same_due, 0, "no tick delivered twice: {all:?}");
    assert!(
        gap < DEFAULT_REMINDER_CLAIM_LEASE,
        "handed over, not lapsed: {gap:?}"
    );
    client.shutdown().await;
    survivor.stop().await;
}
