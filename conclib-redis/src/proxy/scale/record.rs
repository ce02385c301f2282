//! A request's exactly-once record while one proxy instance handles it (`applied.rs` says
//! why): the [`Record`] its hand-off keeps, and the requests [`AwaitingAck`] whose handling
//! wrote an activation's state, until they are acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conclib_core::trace::TraceContext;

use super::applied::{RequestKey, request_key};
use super::standing::Standing;
use crate::proxy::serve::request::Request;
use crate::proxy::serve::stream::Completion;
use crate::unacked::EntryId;

/// An activation's exactly-once record of one request, as its hand-off keeps it: the trace context
/// its handling runs in (by which its store tells whether a write of this very handling
/// was refused, and records the request with what it wrote) and the key it is recorded
/// under. A live actor's request has no record, and keeps the trace it came with.
pub(in crate::proxy) struct Record {
    /// The trace context the request is handled in.
    pub(in crate::proxy) trace: Option<TraceContext>,
    applied: Option<(Arc<Standing>, TraceContext, String)>,
}

impl Record {
    pub(in crate::proxy) fn new(
        standing: Option<Arc<Standing>>,
        req: &Request,
        requests_key: &str,
        entry: EntryId,
    ) -> Record {
        let trace = match &standing {
            Some(_) => Some(req.trace.map_or_else(TraceContext::new_root, |t| t.child())),
            None => req.trace,
        };
        let applied = standing.zip(trace).map(|(s, t)| {
            // A request a proxy passed on, or a takeover moved, is known by its first entry.
            let key = req
                .first_entry()
                .map_or_else(|| request_key(requests_key, entry), str::to_owned);
            (s, t, key)
        });
        Record { trace, applied }
    }

    /// An activation's request: it stays pending rather than be copied into the stream
    /// again (a copy with a new entry id would escape its record).
    pub(in crate::proxy) fn is_activation(&self) -> bool {
        self.applied.is_some()
    }

    /// Recorded as handled already (its handling wrote the state): answered so, and kept
    /// in the records until that answer is acknowledged (`Applied::already`), as entry
    /// `entry` of `awaiting`'s instance.
    pub(in crate::proxy) fn answered_already(
        &self,
        awaiting: &AwaitingAck,
        entry: EntryId,
    ) -> bool {
        let Some((standing, _, key)) = &self.applied else {
            return false;
        };
        let already = standing.applied.already(key);
        if already {
            awaiting.insert(entry, standing, key);
        }
        already
    }

    pub(in crate::proxy) fn begin(&self) {
        if let Some((standing, trace, key)) = &self.applied {
            standing.applied.begin(*trace, key.clone());
        }
    }

    /// The handling is over: `true` if it wrote the state (its request then waits for its
    /// acknowledgement in the records, here and with the state).
    pub(in crate::proxy) fn end(&self, awaiting: &AwaitingAck, entry: EntryId) -> bool {
        let Some((standing, trace, key)) = &self.applied else {
            return false;
        };
        let wrote = standing.applied.end(trace);
        if wrote {
            awaiting.insert(entry, standing, key);
        }
        wrote
    }

    /// Whether the activation was stopping to rebalance its pattern: a request it did not
    /// start is left pending, read again, and activates the URN anew.
    pub(in crate::proxy) fn leaving(&self) -> bool {
        self.applied
            .as_ref()
            .is_some_and(|(s, _, _)| s.is_leaving())
    }

    /// Not to be handled here after all: a write of its handling was refused, or it never
    /// ran (nor wrote the state) because the activation was taken away.
    pub(in crate::proxy) fn redeliver(&self, ran: bool, wrote: bool) -> bool {
        self.applied
            .as_ref()
            .is_some_and(|(s, t, _)| s.take_refusal(t) || (!ran && !wrote && s.is_taken()))
    }
}

/// The requests read by one proxy instance whose handling wrote an activation's state and
/// that are not acknowledged yet, with the activation's standing: told when the request is
/// acknowledged.
#[derive(Default)]
pub(in crate::proxy) struct AwaitingAck(Mutex<HashMap<EntryId, (Arc<Standing>, RequestKey)>>);

impl AwaitingAck {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EntryId, (Arc<Standing>, RequestKey)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the handling of entry `entry`, read here, wrote an activation's state and
    /// the entry is not acknowledged yet.
    pub(in crate::proxy) fn handled_here(&self, entry: EntryId) -> bool {
        let applied = self.lock();
        !applied.is_empty() && applied.contains_key(&entry)
    }

    fn insert(&self, entry: EntryId, standing: &Arc<Standing>, key: &RequestKey) {
        self.lock().insert(entry, (standing.clone(), key.clone()));
    }

    /// Tells the activations whose state the handling of a request of `batch` wrote that
    /// it is acknowledged.
    pub(in crate::proxy) fn acknowledged(&self, batch: &[Completion]) {
        let mut applied = self.lock();
        if applied.is_empty() {
            return;
        }
        for c in batch {
            if let Some((standing, key)) = applied.remove(&c.id) {
                standing.applied.acked(&key);
            }
        }
    }
}
