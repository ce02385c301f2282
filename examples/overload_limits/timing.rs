//! The cap run's timing: how long the asks took, when each URN was activated (and where),
//! and how late each member's runtime ran, so that an ask that ended `Timeout` can be placed:
//! before its activation (the request waited to be read, placed, or for its URN's lock), or
//! after it (the answer waited), and whether the member that activated it was stalled then.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the one clock the driver and the members share.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How late a runtime wakes a task that sleeps `TICK`: sent to `out` as a line `STALL
/// at_ms=.. late_ms=.. waited_ms=..` once it passes `REPORTED` (`waited_ms`: how much of it
/// the runtime's thread was runnable but not run, the machine's other load). On a current-thread runtime (a member) a
/// late wake-up is time every request of that member waited too: a handler or a Redis
/// answer that took the thread, or the process not scheduled (the machine's other load).
pub fn watch_stalls(out: tokio::sync::mpsc::UnboundedSender<String>) {
    const TICK: Duration = Duration::from_millis(10);
    const REPORTED: Duration = Duration::from_millis(250);
    tokio::spawn(async move {
        loop {
            let (late, waited) = conclib_testkit::stalls::late_tick(TICK).await;
            if late >= REPORTED {
                let at = unix_ms().saturating_sub(late.as_millis() as u64);
                let line = format!(
                    "STALL at_ms={at} late_ms={} waited_ms={}",
                    late.as_millis(),
                    waited.as_millis()
                );
                if out.send(line).is_err() {
                    return;
                }
            }
        }
    });
}

/// An answered ask this slow (ms) is looked at as the failed ones are.
const SLOW_MS: u64 = 2_000;

/// What the driver saw in each round (0: the first asks, 1: the checks): each answered
/// ask's latency, the asks that failed (URN, when sent), each URN's activations (when, by
/// which member), each member's stalls.
#[derive(Default)]
pub struct Timing {
    latencies_ms: [Mutex<Vec<u64>>; 2],
    failed: [Mutex<Vec<(String, u64)>>; 2],
    /// Answered asks that took over `SLOW_MS`: URN, when sent, how long.
    slow: [Mutex<Vec<(String, u64, u64)>>; 2],
    activated: Mutex<HashMap<String, Vec<(u64, u8)>>>,
    stalls: Mutex<Vec<(u8, u64, u64, u64)>>,
}

impl Timing {
    /// An ask of `round` sent at `sent_ms` that answered (or not) now.
    pub fn ask(&self, round: usize, urn: &str, sent_ms: u64, ok: bool) {
        let took = unix_ms().saturating_sub(sent_ms);
        if ok {
            self.latencies_ms[round].lock().unwrap().push(took);
            if took > SLOW_MS {
                self.slow[round]
                    .lock()
                    .unwrap()
                    .push((urn.to_owned(), sent_ms, took));
            }
        } else {
            self.failed[round]
                .lock()
                .unwrap()
                .push((urn.to_owned(), sent_ms));
        }
    }

    /// A member's output line: `ACTIVATED urn at_ms` or `STALL at_ms=.. late_ms=..`.
    pub fn line(&self, member: u8, line: &str) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("ACTIVATED") => {
                if let (Some(urn), Some(at)) = (words.next(), words.next())
                    && let Ok(at) = at.parse()
                {
                    self.activated
                        .lock()
                        .unwrap()
                        .entry(urn.to_owned())
                        .or_default()
                        .push((at, member));
                }
            }
            Some("STALL") => {
                let num = |w: Option<&str>| {
                    w.and_then(|w| w.split_once('='))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0)
                };
                let (at, late, waited) = (num(words.next()), num(words.next()), num(words.next()));
                self.stalls.lock().unwrap().push((member, at, late, waited));
            }
            _ => {}
        }
    }

    /// Prints `STALLS` lines (each member's), then for each round a `LATENCY` line (the
    /// answered asks' percentiles) and a `LATE` line (where each failed ask waited, with
    /// `timeout` its deadline).
    pub fn report(&self, timeout: Duration) {
        let stalls = self.stalls.lock().unwrap();
        for m in 1..=3u8 {
            let of: Vec<u64> = stalls.iter().filter(|s| s.0 == m).map(|s| s.2).collect();
            let waited: u64 = stalls.iter().filter(|s| s.0 == m).map(|s| s.3).sum();
            println!(
                "STALLS member=m{m} over_250ms={} over_1s={} over_2s={} max_ms={} sum_ms={} runnable_not_run_ms={waited}",
                of.len(),
                of.iter().filter(|&&l| l >= 1000).count(),
                of.iter().filter(|&&l| l >= 2000).count(),
                of.iter().max().copied().unwrap_or(0),
                of.iter().sum::<u64>()
            );
        }
        // The long ones, in time order: at once on every member means the machine (or
        // Redis), not one member's work.
        let mut long: Vec<_> = stalls.iter().filter(|s| s.2 >= 1000).collect();
        long.sort_by_key(|s| s.1);
        for (member, at, late, waited) in long {
            println!("STALL member=m{member} at_ms={at} late_ms={late} waited_ms={waited}");
        }
        for round in 0..2 {
            self.report_round(round, timeout, &stalls);
        }
    }

    fn report_round(&self, round: usize, timeout: Duration, stalls: &[(u8, u64, u64, u64)]) {
        let mut lat = std::mem::take(&mut *self.latencies_ms[round].lock().unwrap());
        lat.sort_unstable();
        let at = |p: f64| {
            lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "LATENCY round={round} answered={} p50_ms={} p99_ms={} p999_ms={} max_ms={} over_1s={} over_3s={}",
            lat.len(),
            at(0.5),
            at(0.99),
            at(0.999),
            lat.last().copied().unwrap_or(0),
            lat.iter().filter(|&&l| l > 1000).count(),
            lat.iter().filter(|&&l| l > 3000).count(),
        );
        let deadline = timeout.as_millis() as u64;
        let activated = self.activated.lock().unwrap();
        // Where each failed ask waited: no activation after it was sent (never, or alive
        // from before); activated after its deadline (it waited before: read, placed, the
        // URN's lock); or in time (the answer waited).
        let (mut never, mut after, mut within) = (0u64, 0u64, Vec::new());
        let mut stalled_near = 0u64;
        let failed = self.failed[round].lock().unwrap();
        for (urn, sent) in failed.iter() {
            // Its member's clock and the driver's: the same host's.
            let first = activated
                .get(urn)
                .and_then(|all| all.iter().find(|(at, _)| at + 50 >= *sent).copied());
            match first {
                None => never += 1,
                Some((at, member)) => {
                    if at > sent + deadline {
                        after += 1;
                    } else {
                        within.push(at.saturating_sub(*sent));
                    }
                    // The activating member stalled 1 s or more within the ask's time.
                    if stalls.iter().any(|&(m, s, late, _)| {
                        m == member && late >= 1000 && s + late >= *sent && s <= sent + deadline
                    }) {
                        stalled_near += 1;
                    }
                }
            }
        }
        within.sort_unstable();
        // The slow answered asks: how long after it was sent its URN was activated (by this
        // request, or by an earlier one it waited behind), as a share of its time.
        let slow = self.slow[round].lock().unwrap();
        let mut shares: Vec<u64> = slow
            .iter()
            .filter_map(|(urn, sent, took)| {
                let all = activated.get(urn)?;
                let (at, _) = all.iter().find(|(at, _)| at + 50 >= *sent)?;
                Some(at.saturating_sub(*sent) * 100 / (*took).max(1))
            })
            .collect();
        shares.sort_unstable();
        let share = |p: usize| shares.get(shares.len() * p / 100).copied().unwrap_or(0);
        println!(
            "SLOW round={round} over_{SLOW_MS}ms={} activated_after_send={} activation_share_pct_p10={} p50={} p90={}",
            slow.len(),
            shares.len(),
            share(10),
            share(50),
            share(90),
        );
        println!(
            "LATE round={round} failed={} not_activated={never} activated_after_deadline={after} activated_in_time={} in_time_activation_p50_ms={} its_member_stalled_1s={stalled_near}",
            failed.len(),
            within.len(),
            within.get(within.len() / 2).copied().unwrap_or(0),
        );
    }
}
