//! Where the roll's slow asks waited (`--phases`): the members note, per account, when its
//! activation stopped to move (`STOP urn at_us carried|kept|failed asks`) and when an
//! activation of it was made (`ACT urn from_us to_us rehydrated|loaded asks`, the factory's
//! run: the rehydration), in a file of their own;
//! the Rust callers note when their own runtime did not run them (a 1 ms timer waking
//! `late_us` late, `S at_us late_us`): CPU the machine did not give them. Each slow ask is
//! then put in one class: `moved` (its account stopped to move or was activated again
//! while it waited), `stalled` (its caller's runtime was stalled for at least half the
//! ask's time over the steady p99), else `other`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::BoxError;

/// A member's event notes, shared by its activations.
#[derive(Clone)]
pub struct Events(Arc<Mutex<std::fs::File>>);

impl Events {
    /// The events of member `name` in `dir`.
    pub(super) fn open(dir: &str, name: &str) -> Result<Events, BoxError> {
        Ok(Events(super::ticks::notes_file(dir, name, "events")?))
    }

    /// Notes one line (one write: a line is never torn).
    pub(super) fn note(&self, line: &str) {
        if let Ok(mut f) = self.0.lock() {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// How often a caller's stall watch wakes, and the lateness it notes.
const TICK: Duration = Duration::from_millis(1);
const NOTED: Duration = Duration::from_millis(3);

/// Notes, until `stop`, each time the runtime ran this task [`NOTED`] or more late:
/// `(at_us, late_us)`.
pub(super) async fn watch_stalls(stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut last = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        // tokio's timer rounds up to the next millisecond: up to 2 ms is on time.
        let late = now.duration_since(last).saturating_sub(TICK * 2);
        if late >= NOTED {
            out.push((super::micros_now(), late.as_micros() as u64));
        }
        last = now;
    }
    out
}

/// Per account, its moves (`STOP` times) and activations (`ACT` spans), all members'.
#[derive(Debug, Default)]
pub(super) struct Moves {
    stops: BTreeMap<u64, Vec<u64>>,
    acts: BTreeMap<u64, Vec<(u64, u64)>>,
}

impl Moves {
    /// Reads every member's events in `dir`.
    pub(super) fn read(dir: &Path) -> Result<Moves, BoxError> {
        let mut moves = Moves::default();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "events") {
                continue;
            }
            for line in std::fs::read_to_string(path)?.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                let urn = |u: &str| -> Result<u64, BoxError> {
                    Ok(u.strip_prefix("acct:").ok_or("an event's URN")?.parse()?)
                };
                match f.as_slice() {
                    ["STOP", u, at, ..] => {
                        moves.stops.entry(urn(u)?).or_default().push(at.parse()?)
                    }
                    ["ACT", u, from, to, ..] => moves
                        .acts
                        .entry(urn(u)?)
                        .or_default()
                        .push((from.parse()?, to.parse()?)),
                    _ => return Err(format!("an event {line:?}").into()),
                }
            }
        }
        Ok(moves)
    }

    /// How many stops (moves) of any account came within `[from, to)`.
    pub(super) fn stops_between(&self, from: u64, to: u64) -> u64 {
        self.stops
            .values()
            .flatten()
            .filter(|t| (from..to).contains(*t))
            .count() as u64
    }

    /// The stop and the activation of account `u` while an ask waited from `start` to
    /// `end`, if it moved then: `(stop_us, act_from_us, act_to_us)` (0 when not seen).
    fn during(&self, u: u64, start: u64, end: u64) -> Option<(u64, u64, u64)> {
        let stop = self
            .stops
            .get(&u)
            .and_then(|s| s.iter().copied().find(|t| *t >= start && *t <= end));
        let act = self
            .acts
            .get(&u)
            .and_then(|a| a.iter().copied().find(|(f, t)| *t >= start && *f <= end));
        if stop.is_none() && act.is_none() {
            return None;
        }
        let (from, to) = act.unwrap_or((0, 0));
        Some((stop.unwrap_or(0), from, to))
    }
}

/// Every member's notes of account `urn` (its stops and activations, in time order), each
/// with the member's name: what a URN whose count in memory went wrong went through.
pub(super) fn history(dir: &Path, urn: &str) -> Result<Vec<String>, BoxError> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "events") {
            continue;
        }
        let member = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        for line in std::fs::read_to_string(&path)?.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.get(1) == Some(&urn) {
                let at: u64 = f.get(2).and_then(|t| t.parse().ok()).unwrap_or(0);
                lines.push((at, format!("{} {line}", member.as_deref().unwrap_or("?"))));
            }
        }
    }
    lines.sort();
    Ok(lines.into_iter().map(|(_, l)| l).collect())
}

/// An answered ask as the driver read it: its caller, account, start and end (µs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask {
    pub(super) caller: usize,
    pub(super) urn: u64,
    pub(super) start: u64,
    pub(super) end: u64,
}

/// How long caller `caller`'s runtime was stalled within `[start, end]` (µs).
fn stalled(stalls: &[Vec<(u64, u64)>], caller: usize, start: u64, end: u64) -> u64 {
    stalls.get(caller).map_or(0, |s| {
        s.iter()
            .map(|&(at, late)| {
                let from = at.saturating_sub(late).max(start);
                at.min(end).saturating_sub(from)
            })
            .sum()
    })
}

/// The slow asks by class, and the moved ones' waits.
#[derive(Debug, Default)]
pub(super) struct Classes {
    pub(super) moved: u64,
    pub(super) stalled: u64,
    /// Not moved while it waited, but its caller's first ask of its account since the
    /// account moved: sent by a route that no longer held (passed on by the member left).
    pub(super) stale: u64,
    pub(super) other: u64,
    /// Of the moved ones, per ask: from its start to its account's stop, from the stop to
    /// the activation elsewhere, the activation, and from it to the answer (µs).
    waits: Vec<[u64; 4]>,
}

impl Classes {
    /// Puts each ask over `slow_us` in its class (the module's docs).
    pub(super) fn of(
        asks: &[Ask],
        slow_us: u64,
        moves: &Moves,
        stalls: &[Vec<(u64, u64)>],
    ) -> Classes {
        let mut c = Classes::default();
        let mut by_caller: BTreeMap<(usize, u64), Vec<u64>> = BTreeMap::new();
        for a in asks {
            by_caller
                .entry((a.caller, a.urn))
                .or_default()
                .push(a.start);
        }
        for starts in by_caller.values_mut() {
            starts.sort_unstable();
        }
        let moved_since_last_ask = |a: &Ask| {
            let starts = &by_caller[&(a.caller, a.urn)];
            let before = starts.partition_point(|s| *s < a.start);
            let since = before.checked_sub(1).map_or(0, |i| starts[i]);
            moves
                .stops
                .get(&a.urn)
                .is_some_and(|s| s.iter().any(|t| *t > since && *t <= a.start))
        };
        for a in asks.iter().filter(|a| a.end - a.start > slow_us) {
            if let Some((stop, from, to)) = moves.during(a.urn, a.start, a.end) {
                c.moved += 1;
                let stop = if stop == 0 { a.start } else { stop };
                let (from, to) = if from == 0 { (stop, stop) } else { (from, to) };
                c.waits.push([
                    stop.saturating_sub(a.start),
                    from.saturating_sub(stop),
                    to.saturating_sub(from),
                    a.end.saturating_sub(to),
                ]);
            } else if stalled(stalls, a.caller, a.start, a.end) * 2
                >= (a.end - a.start).saturating_sub(slow_us / 2)
            {
                c.stalled += 1;
            } else if moved_since_last_ask(a) {
                c.stale += 1;
            } else {
                c.other += 1;
            }
        }
        c
    }

    /// `moved=.. stalled=.. other=..` and the moved asks' median waits (ms).
    pub(super) fn line(&self) -> String {
        let median = |i: usize| {
            let mut v: Vec<u64> = self.waits.iter().map(|w| w[i]).collect();
            v.sort_unstable();
            v.get(v.len() / 2).map_or(0.0, |us| *us as f64 / 1000.0)
        };
        format!(
            "moved={} stalled={} stale={} other={} moved_median_ms(to_stop,stop_to_act,act,act_to_answer)={:.1},{:.1},{:.1},{:.1}",
            self.moved,
            self.stalled,
            self.stale,
            self.other,
            median(0),
            median(1),
            median(2),
            median(3)
        )
    }
}

/// The callers' stalls within `[from, to)`: (total ms per caller, longest ms).
pub(super) fn stall_summary(stalls: &[Vec<(u64, u64)>], from: u64, to: u64) -> (f64, f64) {
    let mut total = 0;
    let mut longest = 0;
    for s in stalls {
        for &(_, late) in s.iter().filter(|(at, _)| *at >= from && *at < to) {
            total += late;
            longest = longest.max(late);
        }
    }
    let callers = stalls.len().max(1) as f64;
    (total as f64 / 1000.0 / callers, longest as f64 / 1000.0)
}
