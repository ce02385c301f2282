//! What the previous snapshot saw of an actor ([`Sample`]), and the rate and recent
//! failures the next one computes from it.

use std::time::{Duration, Instant};

/// What the previous snapshot saw of an actor: for the next one's rate and recent failures,
/// and for [`ActorSystem::snapshot_changes`].
pub(crate) struct Sample {
    at: Instant,
    handled: u64,
    rate: f64,
    /// Errors, panics and restarts when this sample was taken.
    failures: u64,
    /// The same when the sample before it was taken (0 before any).
    base_failures: u64,
    /// The rest of what an actor in brief shows (mailbox depth, asks skipped, stopping),
    /// mixed into one number: a change of any of them changes it.
    rest: u64,
    /// The last look (`next_look`) that saw the figures differ from the sample before.
    changed: u64,
}

/// What a look reads of an actor, to sample it.
#[derive(Clone, Copy)]
pub(super) struct Seen {
    pub(super) handled: u64,
    /// Errors, panics and restarts.
    pub(super) failures: u64,
    /// [`Sample::rest`].
    pub(super) rest: u64,
    /// This look's number.
    pub(super) look: u64,
}

/// [`Sample::rest`] of these figures (a 64-bit mix: two different ones collide with a
/// chance of about 2^-64).
pub(super) fn mix_rest(mailbox_len: usize, asks_skipped: u64, stopping: bool) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for v in [mailbox_len as u64, asks_skipped, u64::from(stopping)] {
        h = (h ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 31;
    }
    h
}

/// Messages per second since the previous sample, the failures (errors, panics,
/// restarts) since the sample before it (those of the last interval and any since), and
/// the last look that saw the figures change. Samples closer together than
/// [`MIN_RATE_WINDOW`] reuse the previous one. `floor`: a time at which the figures were
/// still those of the sample (the previous look, which did not read an unchanged actor):
/// the sample counts as taken then, as if that look had read it.
pub(super) fn sample(
    sample: &mut Option<Box<Sample>>,
    seen: Seen,
    now: Instant,
    floor: Option<Instant>,
) -> (f64, u64, u64) {
    let Seen {
        handled,
        failures,
        rest,
        look,
    } = seen;
    if let (Some(last), Some(floor)) = (sample.as_deref_mut(), floor) {
        last.at = last.at.max(floor);
    }
    match sample.as_deref_mut() {
        Some(last) if now.duration_since(last.at) < MIN_RATE_WINDOW => {
            if (handled, failures, rest) != (last.handled, last.failures, last.rest) {
                last.changed = look;
            }
            (
                last.rate,
                failures.saturating_sub(last.base_failures),
                last.changed,
            )
        }
        Some(last) => {
            let rate = handled.saturating_sub(last.handled) as f64
                / now.duration_since(last.at).as_secs_f64();
            let changed = if (handled, failures, rest) != (last.handled, last.failures, last.rest)
                || rate.to_bits() != last.rate.to_bits()
            {
                look
            } else {
                last.changed
            };
            *last = Sample {
                at: now,
                handled,
                rate,
                failures,
                base_failures: last.failures,
                rest,
                changed,
            };
            (rate, failures.saturating_sub(last.base_failures), changed)
        }
        None => {
            *sample = Some(Box::new(Sample {
                at: now,
                handled,
                rate: 0.0,
                failures,
                base_failures: 0,
                rest,
                changed: look,
            }));
            (0.0, failures, look)
        }
    }
}

/// Snapshots closer together than this reuse the previous rate (a rate over a few
/// milliseconds says nothing).
pub(crate) const MIN_RATE_WINDOW: Duration = Duration::from_millis(250);
