//! What the proxy and an activation's store know of the activation's standing
//! ([`Standing`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use conclib_core::trace::TraceContext;
use fred::prelude::Value;

use super::applied::Applied;

/// What the proxy and an activation's store know of its standing.
#[derive(Default)]
pub(in crate::proxy) struct Standing {
    /// Another system holds the URN now (this process was paused past its lease).
    pub(in crate::proxy) taken: AtomicBool,
    /// Being passivated to rebalance the pattern (`rebalance.rs`): a request that finds
    /// the actor stopped is read again, not answered.
    pub(in crate::proxy) leaving: AtomicBool,
    /// Being moved to another member (a drain, a rebalance): its store's
    /// [`dehydrate`](super::store::StateStore::dehydrate) carries its state to the next
    /// activation (`migration.rs`).
    pub(in crate::proxy) moving: AtomicBool,
    /// Its store carried its state: its state key is kept at passivation even without
    /// data, so that the next activation knows the carried state as its predecessor's.
    pub(in crate::proxy) carried: AtomicBool,
    /// Where its URN goes as it moves (`passivation.rs`, set before its stop): its store's
    /// `dehydrate` hands the key over in the step that carries the state, one round trip
    /// less for the requests waiting for the move.
    pub(in crate::proxy) hand_over: Mutex<Option<HandOver>>,
    /// Its store's `dehydrate` handed its URN key over ([`hand_over`](Self::hand_over)):
    /// the passivation hands it no more.
    pub(in crate::proxy) handed: AtomicBool,
    /// Writes of its store refused so far (a later activation owns the state).
    refused: std::sync::atomic::AtomicU64,
    /// The messages (by the trace context each was handled in) whose handling had a write
    /// refused, until the proxy looks: those go to the URN's current activation.
    refused_in: Mutex<std::collections::VecDeque<TraceContext>>,
    /// The requests whose handling wrote the state, not acknowledged yet.
    pub(in crate::proxy) applied: Applied,
}

/// How many refused messages a standing remembers until the proxy looks (one per message
/// in the mailbox of a stale activation, which stops at once).
const REFUSED_REMEMBERED: usize = 65_536;

impl Standing {
    pub(in crate::proxy) fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }

    /// The hand-over its move makes ([`hand_over`](Self::hand_over)), set before its stop.
    pub(in crate::proxy) fn move_with(&self, h: HandOver) {
        *self.hand_over.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
    }

    /// The hand-over its move makes, for its store's `dehydrate` to run in its own step.
    pub(in crate::proxy) fn hand_over(&self) -> Option<HandOver> {
        self.hand_over
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The hand-over its move makes, for the passivation after the stop, unless its store
    /// handed the key already ([`handed`](Self::handed)).
    pub(in crate::proxy) fn take_hand_over(&self) -> Option<HandOver> {
        self.hand_over
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub(in crate::proxy) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// Not taken, and no write of its store refused.
    pub(in crate::proxy) fn is_current(&self) -> bool {
        !self.is_taken() && self.refused.load(Ordering::Acquire) == 0
    }

    /// A write was refused, in the handling of the message being handled now (the handler
    /// runs in the trace context the proxy gave that message).
    pub(in crate::proxy) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::AcqRel);
        if let Some(trace) = TraceContext::current() {
            let mut list = self.refused_in.lock().unwrap_or_else(|e| e.into_inner());
            if list.len() == REFUSED_REMEMBERED {
                list.pop_front();
            }
            list.push_back(trace);
        }
    }

    /// Whether the handling of the message given `trace` had a write refused (forgotten
    /// once asked).
    pub(in crate::proxy) fn take_refusal(&self, trace: &TraceContext) -> bool {
        if self.refused.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut list = self.refused_in.lock().unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.retain(|t| t != trace);
        list.len() != before
    }
}

/// The keys and arguments of a hand-over of a URN key (as `protocol::HAND_URN_SCRIPT` takes
/// them), for `serve/urn_keys.rs`'s `hand_urn`, or for the store of an activation
/// moving, which hands its key as it carries its state (`scale/store.rs`, `dehydrate`).
#[derive(Clone)]
pub(in crate::proxy) struct HandOver {
    pub(in crate::proxy) keys: Vec<Value>,
    pub(in crate::proxy) args: Vec<Value>,
}
