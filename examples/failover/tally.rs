//! What the callers, the subscriber and the members reported, and what it adds up to.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib::AskError;

/// An activation that answered ok: its id, when it first and last did (ms since the Unix
/// epoch).
type Answering = (u64, u128, u128);

/// What the callers and members reported.
#[derive(Default)]
pub(super) struct Tally {
    /// Per URN: the highest count answered ok, and by which activation.
    pub(super) acked: Mutex<HashMap<String, Vec<(u128, u64)>>>,
    /// Per URN: each activation that answered ok, with when it first and last did.
    pub(super) answering: Mutex<HashMap<String, Vec<Answering>>>,
    pub(super) splits: AtomicU64,
    pub(super) rollbacks: AtomicU64,
    /// Tells reported accepted.
    pub(super) accepted: Mutex<HashSet<u64>>,
    /// Tells handled, with how often.
    pub(super) handled: Mutex<HashMap<u64, u64>>,
    pub(super) overruns: AtomicU64,
    /// When the driver's runtime was held up: (when it noticed, by how much).
    pub(super) stalls: Mutex<Vec<(Instant, Duration)>>,
    pub(super) untyped: AtomicU64,
    pub(super) asks_ok: AtomicU64,
    /// Asks to the group answered ok.
    pub(super) group_asks_ok: AtomicU64,
    /// Python callers running (0: none).
    pub(super) python_callers: AtomicU64,
    /// Asks of the Python callers answered ok (counted in `asks_ok` too).
    pub(super) py_asks_ok: AtomicU64,
    /// Tells the Python client reported accepted.
    pub(super) py_accepted: Mutex<HashSet<u64>>,
    /// Tells whose handler failed (its save did not succeed), with the member's report:
    /// when (ms since the Unix epoch) and why.
    pub(super) note_failed: Mutex<HashMap<u64, (u128, String)>>,
    /// When the driver read each Python tell's acceptance (ms since the Unix epoch).
    pub(super) py_accepted_at: Mutex<HashMap<u64, u128>>,
    /// Each reminder registered: its URN, when its registration was called and when it
    /// returned `Ok` (ms since the Unix epoch).
    pub(super) registered_at: Mutex<HashMap<String, (String, u128, u128)>>,
    /// When each primary was killed (ms since the Unix epoch).
    pub(super) kills: Mutex<Vec<u128>>,
    /// When each replica answered as the new primary (ms since the Unix epoch).
    pub(super) promoted: Mutex<Vec<u128>>,
    /// Python calls that returned past their timeout + 250 ms.
    pub(super) py_overruns: AtomicU64,
    /// Every call (Rust or Python) that returned past its bound + 250 ms, counted or not.
    pub(super) overrun_log: Mutex<Vec<Overrun>>,
    pub(super) errors: Mutex<BTreeMap<String, u64>>,
    /// When each ok answer came, in order.
    pub(super) ok_at: Mutex<Vec<Instant>>,
    /// Reminders registered (acknowledged to the caller), by name.
    pub(super) registered: Mutex<HashSet<String>>,
    /// Reminders fired, by name, with how often.
    pub(super) fired: Mutex<HashMap<String, u64>>,
    /// Durable events published (acknowledged to the publisher).
    pub(super) published: Mutex<HashSet<u64>>,
    /// Durable events the subscriber group received, with how often.
    pub(super) received: Mutex<HashMap<u64, u64>>,
}

impl Tally {
    /// An ask of `urn` answered `count` by `activation` at `at` (ms since the Unix epoch,
    /// the host's clock: a Rust caller's when it got the answer, a Python caller's as it
    /// reported it, its line read later).
    pub(super) fn answered(&self, urn: &str, activation: u64, count: u64, at: u128) {
        self.ok_at.lock().unwrap().push(Instant::now());
        self.asks_ok.fetch_add(1, Ordering::Relaxed);
        {
            // When (the system clock, which the members share) and what was answered.
            self.acked
                .lock()
                .unwrap()
                .entry(urn.to_owned())
                .or_default()
                .push((at, count));
        }
        let mut answering = self.answering.lock().unwrap();
        let seen = answering.entry(urn.to_owned()).or_default();
        // A split: an activation answered after a later one's first answer (by when they
        // answered, not by when the driver heard of it).
        let split = match seen.iter().position(|a| a.0 == activation) {
            None => {
                seen.push((activation, at, at));
                seen.iter().find(|a| a.1 < at && a.2 > at).copied()
            }
            Some(i) => {
                let first = seen[i].1;
                seen[i].2 = seen[i].2.max(at);
                seen.iter().find(|a| a.1 > first && a.1 < at).copied()
            }
        };
        if let Some(other) = split {
            eprintln!(
                "split: {urn} answered by activation {activation} at {at} and by {} from {} to {}",
                other.0, other.1, other.2
            );
            self.splits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The longest hold-up of the runtime noticed since `since`.
    pub(super) fn stalled_since(&self, since: Instant) -> Duration {
        let stalls = self.stalls.lock().unwrap();
        stalls
            .iter()
            .filter(|(at, _)| *at > since)
            .map(|(_, lag)| *lag)
            .max()
            .unwrap_or_default()
    }

    /// An activation of `urn` loaded `loaded` at `loaded_at` (ms since the Unix epoch).
    pub(super) fn activated(&self, urn: &str, loaded: u64, loaded_at: u128) {
        // Answers that came after the load (their lines read first) do not count.
        let acked = self.acked.lock().unwrap().get(urn).map_or(0, |answers| {
            answers
                .iter()
                .filter(|(at, _)| *at < loaded_at)
                .map(|(_, count)| *count)
                .max()
                .unwrap_or(0)
        });
        if loaded < acked {
            eprintln!("rollback: {urn} loaded {loaded} where {acked} was acknowledged");
            self.rollbacks.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn failed<E>(&self, error: &AskError<E>) -> &'static str
    where
        AskError<E>: std::fmt::Display,
    {
        if std::env::var_os("FAILOVER_TRACE").is_some() {
            static LAST: Mutex<Option<Instant>> = Mutex::new(None);
            let mut last = LAST.lock().unwrap();
            if last.is_none_or(|l| l.elapsed() > Duration::from_millis(200)) {
                *last = Some(Instant::now());
                eprintln!("{:?} failed: {error}", std::time::SystemTime::now());
            }
        }
        let kind = match error {
            AskError::Unavailable(_) => "unavailable",
            AskError::Timeout(_) => "timeout",
            AskError::Handler(_) => "handler",
            other => {
                eprintln!("untyped error: {other}");
                self.untyped.fetch_add(1, Ordering::Relaxed);
                "other"
            }
        };
        *self.errors.lock().unwrap().entry(kind.into()).or_default() += 1;
        kind
    }

    /// A reminder registration or a publish failed, by kind: `unavailable` (Redis, or its
    /// replicas, did not take it in time; its outcome unknown), `timeout` (the caller's
    /// own bound), anything else untyped.
    pub(super) fn failed_kind(&self, kind: &str) -> &'static str {
        *self.errors.lock().unwrap().entry(kind.into()).or_default() += 1;
        match kind {
            "unavailable" => "unavailable",
            "timeout" => "timeout",
            _ => {
                eprintln!("untyped error: {kind}");
                self.untyped.fetch_add(1, Ordering::Relaxed);
                "other"
            }
        }
    }
}

/// A call that returned past its bound + 250 ms.
#[derive(Debug, Clone)]
pub(super) struct Overrun {
    /// `rust` or `python`.
    pub(super) who: &'static str,
    /// What was called (`Incr`, `Tell`, `GroupAsk`, ..., a Python `ask` or `tell`).
    pub(super) call: String,
    /// How it ended: `ok`, else the error's kind.
    pub(super) outcome: String,
    /// When it began, ms since the Unix epoch.
    pub(super) began_ms: u128,
    pub(super) took: Duration,
    pub(super) bound: Duration,
    /// How long the caller's runtime (or event loop) was held up meanwhile.
    pub(super) stalled: Duration,
    /// Counted as an overrun (past its bound + 250 ms less the stall).
    pub(super) counted: bool,
}

impl Tally {
    pub(super) fn overran(&self, overrun: Overrun) {
        self.overrun_log.lock().unwrap().push(overrun);
    }

    /// Prints the first `n` overruns of each side, each placed against the nearest kill
    /// of a primary and the promotion that followed it (the phase of the failover it
    /// met: before the kill, while no primary answered, after the promotion).
    pub(super) fn report_overruns(&self, n: usize) {
        let log = self.overrun_log.lock().unwrap();
        let kills = self.kills.lock().unwrap();
        let promoted = self.promoted.lock().unwrap();
        for who in ["rust", "python"] {
            // Those counted first, then those a stall explains.
            let counted = log.iter().filter(|o| o.who == who && o.counted);
            let excused = log.iter().filter(|o| o.who == who && !o.counted);
            for o in counted.chain(excused).take(n) {
                let end = o.began_ms + o.took.as_millis();
                // The failover whose kill is nearest to the call's start.
                let i = (0..kills.len()).min_by_key(|&i| kills[i].abs_diff(o.began_ms));
                let phase = match i {
                    None => "no failover".to_owned(),
                    Some(i) => {
                        let (kill, up) = (kills[i], promoted.get(i).copied().unwrap_or(u128::MAX));
                        let at = |t: u128| t as i128 - kill as i128;
                        let phase = if end < kill {
                            "before the kill"
                        } else if o.began_ms >= up {
                            "after the promotion"
                        } else if end < up {
                            "while no primary answered"
                        } else {
                            "across the promotion"
                        };
                        format!(
                            "{phase} (began {} ms, ended {} ms from the kill; promoted at {} ms)",
                            at(o.began_ms),
                            at(end),
                            at(up)
                        )
                    }
                };
                eprintln!(
                    "overrun detail: {who} {} ended {} after {} ms (bound {} ms, stalled {} ms, counted {}): {phase}",
                    o.call,
                    o.outcome,
                    o.took.as_millis(),
                    o.bound.as_millis(),
                    o.stalled.as_millis(),
                    o.counted
                );
            }
        }
    }
}

/// Of what was `accepted`, how many `handled` lacks (lost), and how many it holds more than
/// once (repeated).
pub(super) fn lost_and_repeated<T: Eq + Hash>(
    accepted: &HashSet<T>,
    handled: &HashMap<T, u64>,
) -> (u64, u64) {
    let lost = accepted.iter().filter(|t| !handled.contains_key(t)).count();
    let repeated = handled.values().filter(|&&n| n > 1).count();
    (lost as u64, repeated as u64)
}

/// The system clock, ms since the Unix epoch: the members' and the driver's, one host.
pub(super) fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}
