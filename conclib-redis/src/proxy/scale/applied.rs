//! Exactly once across activations: the requests whose handling wrote an activation's state
//! and that are not acknowledged yet, recorded with the state.
//!
//! A request is acknowledged once handled, in the proxy's next answer batch. A process
//! paused (or killed) between a handler's write to its [`StateStore`](crate::proxy::scale::store::StateStore)
//! and that acknowledgement leaves the request pending: another member of the group claims
//! it, and the URN's next activation would handle it again on a state that already holds
//! its effect (an increment counted twice). So every write of the store records, in the
//! same script as the state itself, the requests whose handling wrote it and that are not
//! acknowledged yet; the next activation reads that record when it opens the state, and the
//! proxy does not hand such a request to the actor again: a tell is acknowledged, an ask is
//! answered `NoResponse` (the first handling's answer was lost with its process). A request
//! read again after its acknowledgement failed is treated the same way.
//!
//! A request is told apart by its first entry: its stream and entry id, or the ones it had
//! before a takeover moved it (`field::MOVED`) or a system passed it on (`field::FIRST`,
//! `forward.rs`: a system that handled it, then read it again after a restart with its URN
//! held elsewhere, passes it on, where it must be known again); a handling by the trace context the
//! proxy gives it (the store's write finds it with [`TraceContext::current`], as a refused
//! write is found): a write from a task the handler spawned is not recorded. A request
//! leaves the record once acknowledged, so the record holds at most the activation's
//! requests this proxy has taken and not acknowledged.
//!
//! What an earlier activation recorded stays in each record this one writes, read or not,
//! for [`EARLIER_KEPT`] after the request was first sent: such a request may still be
//! pending on a member that died, and come back once that member's lease lapsed, after
//! this activation wrote and was moved on (a record without it would let the next one
//! handle it again). A request read again later than that (by a member paused, or down
//! with no other member to take its requests, for longer) may be handled again.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use conclib_core::trace::TraceContext;

use crate::proxy::serve::clock::now_ms;
use crate::unacked::EntryId;

/// How long after a request was first sent (its entry id's time) an activation keeps it in
/// the records it writes when an earlier activation recorded it: many times a lease, in
/// which a dead member's pending requests come back.
const EARLIER_KEPT: Duration = Duration::from_secs(300);

/// A request: its entry id and stream (`<ms>-<seq> <stream key>`).
pub(in crate::proxy) type RequestKey = String;

/// The key of entry `entry` of stream `stream`.
pub(in crate::proxy) fn request_key(stream: &str, entry: EntryId) -> RequestKey {
    format!("{entry} {stream}")
}

/// What one activation knows of the requests whose handling wrote its state.
#[derive(Default)]
pub(in crate::proxy) struct Applied {
    /// The requests being handled now, by the trace context each is handled in.
    handling: Mutex<Vec<(TraceContext, RequestKey)>>,
    /// Requests whose handling wrote the state and that are not acknowledged yet.
    unacked: Mutex<Vec<RequestKey>>,
    /// Requests an earlier activation recorded so (read when the state was opened).
    earlier: Mutex<HashSet<RequestKey>>,
}

impl Applied {
    /// The request `key` is handled now, in the trace context `trace`.
    pub(in crate::proxy) fn begin(&self, trace: TraceContext, key: RequestKey) {
        lock(&self.handling).push((trace, key));
    }

    /// The handling in `trace` is over; `true` if a write of it is not acknowledged yet (the
    /// proxy then says when it is, [`acked`](Self::acked)).
    pub(in crate::proxy) fn end(&self, trace: &TraceContext) -> bool {
        let mut handling = lock(&self.handling);
        let Some(at) = handling.iter().position(|(t, _)| t == trace) else {
            return false;
        };
        let (_, key) = handling.swap_remove(at);
        drop(handling);
        lock(&self.unacked).contains(&key)
    }

    /// The store is about to write, in the handling of the current trace context (if it is
    /// one of the proxy's): that handling's request, and the record to write with the state
    /// (one request a line: those not acknowledged yet, and this one).
    pub(in crate::proxy) fn writing(&self) -> (Option<RequestKey>, String) {
        let current = TraceContext::current().and_then(|trace| {
            lock(&self.handling)
                .iter()
                .find(|(t, _)| *t == trace)
                .map(|(_, key)| key.clone())
        });
        let unacked = lock(&self.unacked);
        let mut record = unacked.join("\n");
        let mut add = |key: &str| {
            if !record.is_empty() {
                record.push('\n');
            }
            record.push_str(key);
        };
        let now = now_ms();
        for key in lock(&self.earlier).iter() {
            if recent(key, now) {
                add(key);
            }
        }
        if let Some(key) = &current
            && !unacked.contains(key)
        {
            add(key);
        }
        (current, record)
    }

    /// The write [`writing`](Self::writing) prepared went through: its request's effect is
    /// in the state.
    pub(in crate::proxy) fn wrote(&self, key: RequestKey) {
        let mut unacked = lock(&self.unacked);
        if !unacked.contains(&key) {
            unacked.push(key);
        }
    }

    /// The request `key` was acknowledged: no later activation can be given it again.
    pub(in crate::proxy) fn acked(&self, key: &str) {
        lock(&self.unacked).retain(|k| k != key);
    }

    /// The record an earlier activation left with the state, read as this one opened it.
    pub(in crate::proxy) fn opened(&self, record: &[u8]) {
        let record = String::from_utf8_lossy(record);
        lock(&self.earlier).extend(
            record
                .split('\n')
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
        );
    }

    /// Whether the handling of `key` wrote the state already, in an earlier activation or
    /// in this one (then it is not handed to the actor again). One an earlier activation
    /// recorded is this activation's to record from then on, until the answer saying so is
    /// acknowledged ([`acked`](Self::acked)): a process that dies before that write (or
    /// gives it up, Redis out of reach) leaves the request pending, and whoever reads it
    /// again must find it in the record still.
    pub(in crate::proxy) fn already(&self, key: &str) -> bool {
        let mut unacked = lock(&self.unacked);
        if unacked.iter().any(|k| k == key) {
            return true;
        }
        if lock(&self.earlier).remove(key) {
            unacked.push(key.to_owned());
            return true;
        }
        false
    }
}

/// Whether request `key` (`<ms>-<seq> <stream>`) was first sent within [`EARLIER_KEPT`] of
/// `now` (ms, this process's clock: minutes against a clock skew of seconds at most).
fn recent(key: &str, now: i64) -> bool {
    let id = key.split_once(' ').map_or(key, |(id, _)| id);
    EntryId::parse(id.as_bytes()).is_some_and(|id| {
        id.ms.abs_diff(u64::try_from(now).unwrap_or(0)) <= EARLIER_KEPT.as_millis() as u64
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write of the store in the trace context `trace` that goes through: the record
    /// it writes.
    fn write_in(applied: &Applied, trace: TraceContext) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (current, record) = runtime.block_on(trace.scope(async { applied.writing() }));
        if let Some(key) = current {
            applied.wrote(key);
        }
        record
    }

    #[test]
    fn a_write_records_the_request_handled_in_its_trace_until_acknowledged() {
        let applied = Applied::default();
        let (a, b) = (TraceContext::new_root(), TraceContext::new_root());
        let entry = |ms| EntryId { ms, seq: 0 };
        applied.begin(a, request_key("s", entry(1)));
        applied.begin(b, request_key("s", entry(2)));
        // Outside any handling: nothing new recorded.
        assert_eq!(applied.writing(), (None, String::new()));
        // A write refused (fenced) is prepared but never reported written.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (refused, _) = runtime.block_on(b.scope(async { applied.writing() }));
        assert_eq!(refused.as_deref(), Some("2-0 s"));
        assert_eq!(write_in(&applied, a), "1-0 s");
        assert_eq!(write_in(&applied, a), "1-0 s", "recorded once");
        assert!(
            applied.end(&a),
            "a write of it waits for its acknowledgement"
        );
        assert!(!applied.end(&b), "no write of b's handling went through");
        assert!(
            applied.already("1-0 s"),
            "read again before it was acknowledged"
        );
        assert!(!applied.already("2-0 s"));
        applied.acked("1-0 s");
        assert!(!applied.already("1-0 s"));
        assert_eq!(applied.writing(), (None, String::new()));
    }

    #[test]
    fn what_an_earlier_activation_recorded_is_not_handled_again() {
        let applied = Applied::default();
        applied.opened(b"1-0 s\n2-5 s");
        assert!(applied.already("2-5 s"));
        assert!(!applied.already("3-0 s"));
        // Answered so, it stays in the record this activation writes until that answer is
        // acknowledged: read again meanwhile (its acknowledgement given up, or this process
        // gone), it is not handled.
        assert_eq!(applied.writing(), (None, "2-5 s".to_owned()));
        assert!(applied.already("2-5 s"), "until acknowledged");
        applied.acked("2-5 s");
        assert!(!applied.already("2-5 s"));
        assert_eq!(applied.writing(), (None, String::new()));
        assert!(applied.already("1-0 s"));
    }

    /// What an earlier activation recorded is in every record this one writes, read or
    /// not, while it is recent: a request pending on a dead member may come back after
    /// this activation wrote and moved on. One sent longer ago, or not a request's key,
    /// is left out.
    #[test]
    fn an_earlier_record_is_written_again_while_recent() {
        let now = now_ms();
        let old = now - EARLIER_KEPT.as_millis() as i64 - 1000;
        let (recent_key, old_key) = (format!("{}-0 s", now - 1000), format!("{old}-0 s"));
        let applied = Applied::default();
        applied.opened(format!("{recent_key}\n{old_key}\nnot a key").as_bytes());
        let trace = TraceContext::new_root();
        let handling = request_key(
            "s",
            EntryId {
                ms: now as u64,
                seq: 1,
            },
        );
        applied.begin(trace, handling.clone());
        assert_eq!(
            write_in(&applied, trace),
            format!("{recent_key}\n{handling}"),
            "the recent earlier key kept, unread, beside the request handled"
        );
        applied.acked(&handling);
        assert_eq!(applied.writing(), (None, recent_key.clone()));
        // Read, it is this activation's own until acknowledged, then out of the record.
        assert!(applied.already(&recent_key));
        assert_eq!(applied.writing(), (None, recent_key.clone()));
        applied.acked(&recent_key);
        assert_eq!(applied.writing(), (None, String::new()));
        assert!(applied.already(&old_key), "still known, though not written");
    }
}
