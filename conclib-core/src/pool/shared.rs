//! What a pool's ref and its supervisor share ([`Shared`]: the members, the routing) and how
//! members are made: below both, so that neither reaches the other through it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::routing::{MemberLoad, Routing, WhenFull};
use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::send::actor_ref::ActorRef;

/// How the pool makes a member: the user's factory, shared by the builder (the first
/// members) and the supervisor (replacements, resizing).
pub(super) type SharedFactory<A> = Arc<Mutex<Box<dyn FnMut() -> A + Send>>>;

pub(super) fn make<A>(factory: &SharedFactory<A>) -> A {
    (factory.lock().unwrap_or_else(|e| e.into_inner()))()
}

pub(super) struct Member<A: Actor> {
    pub(super) actor: ActorRef<A>,
    pub(super) in_flight: Arc<AtomicUsize>,
}

impl<A: Actor> Clone for Member<A> {
    fn clone(&self) -> Self {
        Member {
            actor: self.actor.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

impl<A: Actor> Member<A> {
    pub(super) fn load(&self) -> MemberLoad {
        MemberLoad {
            id: self.actor.id(),
            queued: self.actor.mailbox_len(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            working: self.actor.cell.mailbox.is_working(),
        }
    }
}

/// The state shared by the pool's refs and its supervising actor.
pub(super) struct Shared<A: Actor> {
    /// Copy-on-write: routing clones the `Arc`, resizing swaps it.
    pub(super) members: RwLock<Arc<Vec<Member<A>>>>,
    pub(super) next: AtomicUsize,
    pub(super) routing: Routing,
    pub(super) when_full: WhenFull,
    pub(super) ask_timeout: Duration,
    pub(super) replaced: AtomicUsize,
}

/// The member-side error of a routing attempt.
pub(super) enum RouteError {
    /// No member (the pool stopped or has size 0).
    Empty,
}

impl<A: Actor> Shared<A> {
    pub(super) fn snapshot(&self) -> Arc<Vec<Member<A>>> {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Picks a member and counts the message in its load at once (the returned guard), so
    /// that senders routing at the same moment see it.
    /// A tell is counted only while routing reads loads (least-loaded, custom): the other
    /// routings never look, and a tell's count is two atomic operations on its hot path.
    pub(super) fn route(
        &self,
        key: Option<u64>,
        ask: bool,
    ) -> Result<(Member<A>, Option<InFlight>), RouteError> {
        let members = self.snapshot();
        if members.is_empty() {
            return Err(RouteError::Empty);
        }
        let n = members.len();
        let round_robin = || self.next.fetch_add(1, Ordering::Relaxed) % n;
        let index = match &self.routing {
            Routing::RoundRobin => round_robin(),
            Routing::KeyHash => key.map_or_else(round_robin, |k| (k % n as u64) as usize),
            Routing::LeastLoaded => {
                // Start at a rotating index so that ties spread over the members.
                let start = round_robin();
                (0..n)
                    .map(|i| (start + i) % n)
                    .min_by_key(|&i| members[i].load().load())
                    .expect("non-empty")
            }
            Routing::Custom(pick) => {
                let loads: Vec<MemberLoad> = members.iter().map(Member::load).collect();
                pick(key, &loads) % n
            }
        };
        let member = members[index].clone();
        let counted = ask || matches!(self.routing, Routing::LeastLoaded | Routing::Custom(_));
        let routed = counted.then(|| InFlight::enter(&member.in_flight));
        Ok((member, routed))
    }

    pub(super) fn replace_members(&self, f: impl FnOnce(&mut Vec<Member<A>>)) {
        let mut guard = self.members.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<Member<A>> = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }

    pub(super) fn contains(&self, id: ActorId) -> bool {
        self.snapshot().iter().any(|m| m.actor.id() == id)
    }
}

/// Counts an ask in its member's in-flight number until the ask ends (answered, failed,
/// timed out or dropped; one still handled after its asker gave up counts as the member's
/// work, [`MemberLoad::working`]).
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(super) fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
