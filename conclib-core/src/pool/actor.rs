//! The actor behind a pool: owns the members, routes requests that come by URN, replaces
//! dead and unresponsive members, resizes, and reports its load.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::routing::make_room;
use super::shared::{Member, Shared, SharedFactory, make};
use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::cell::ActorCell;
use crate::context::Context;
use crate::dynamic::request_envelope::RequestEnvelope;
use crate::error::{AskError, BoxError, SpawnError, StopReason};
use crate::exposed::remote::ExposedMessage;
use crate::handler::Handler;
use crate::mailbox::config::MailboxConfig;
use crate::message::{Message, Priority};
use crate::messages::Heartbeat;
use crate::supervision::{RestartLimit, SupervisionEvent};

/// The actor behind a [`Pool`](crate::Pool): it owns the members (its children), routes requests that
/// come by URN or dynamic ref, replaces dead members and runs the dead-man's switch.
pub struct PoolSupervisor<A: Actor> {
    pub(super) shared: Arc<Shared<A>>,
    pub(super) factory: SharedFactory<A>,
    pub(super) size: usize,
    pub(super) mailbox: MailboxConfig,
    pub(super) restart: RestartLimit,
    pub(super) replacements: RestartLimit,
    pub(super) replaced_at: VecDeque<Instant>,
    pub(super) unresponsive_after: Option<Duration>,
    /// Reports the members to the system's snapshot while the pool runs.
    pub(super) probe: Option<Arc<crate::observe::snapshot::PoolProbe>>,
}

impl<A: Actor> PoolSupervisor<A> {
    async fn spawn_member(&self, ctx: &Context<Self>) -> Result<Member<A>, SpawnError> {
        let factory = self.factory.clone();
        let actor = ctx
            .build_child(make(&self.factory))
            // The URN an actor type declares belongs to the pool, not to each member.
            .unnamed()
            // Least-loaded routing reads whether it is at work (`MemberLoad::working`).
            .track_work()
            .mailbox(self.mailbox)
            .restart_with(move || make(&factory), self.restart)
            .spawn()
            .await?;
        Ok(Member {
            actor,
            in_flight: Arc::default(),
        })
    }

    /// Replaces a member that left the routing table; stops the pool past the limit.
    async fn replace(&mut self, ctx: &mut Context<Self>, why: &str) {
        if ctx.myself().cell.mailbox.is_closed() {
            return; // the pool is stopping: its members go with it
        }
        if !self
            .replacements
            .admit(&mut self.replaced_at, Instant::now())
        {
            ctx.pending_stop = Some(Box::new(StopReason::RestartLimit(format!(
                "pool members replaced too often; last: {why}"
            ))));
            return;
        }
        match self.spawn_member(ctx).await {
            Ok(member) => {
                self.shared.replaced.fetch_add(1, Ordering::Relaxed);
                crate::observe::metrics::count_pool(
                    "conclib_pool_replaced_total",
                    ctx.myself().cell.core.urn.as_ref(),
                    std::any::type_name::<A>(),
                );
                self.shared.replace_members(|m| m.push(member));
                tracing::info!(reason = why, "pool member replaced");
            }
            Err(e) => tracing::error!(error = %e, "could not replace a pool member"),
        }
    }

    /// The key of a dynamic request, through the actor's remote message table.
    fn request_key(request: &RequestEnvelope) -> Option<u64> {
        let exposed = A::REMOTE
            .iter()
            .find(|m| request.matches_type(m.type_id()))?;
        request
            .with_message_ref(|message| exposed.routing_key(message))
            .flatten()
    }
}

impl<A: Actor> Actor for PoolSupervisor<A> {
    const REMOTE: &'static [ExposedMessage] = A::REMOTE;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let mut members = Vec::with_capacity(self.size);
        for _ in 0..self.size {
            members.push(self.spawn_member(ctx).await?);
        }
        self.shared.replace_members(|m| *m = members);
        let shared = self.shared.clone();
        let probe: Arc<crate::observe::snapshot::PoolProbe> =
            Arc::new(move || crate::observe::snapshot::PoolSnapshot {
                members: shared
                    .snapshot()
                    .iter()
                    .map(|m| {
                        let load = m.load();
                        crate::observe::snapshot::PoolMemberSnapshot {
                            id: load.id.as_u64(),
                            queued: load.queued,
                            in_flight: load.in_flight,
                        }
                    })
                    .collect(),
                replaced: shared.replaced.load(Ordering::Relaxed) as u64,
            });
        let id = ctx.myself().id();
        ctx.system()
            .with_pool_probes(|probes| probes.push((id, Arc::downgrade(&probe))));
        ctx.system().count_side_entries(1, 0);
        // The pool's gauges, sampled by a task of their own (a tick in the mailbox would
        // count as a message handled every second); it ends with the probe, at the stop.
        let sampled = Arc::downgrade(&probe);
        let urn = ctx.urn().cloned();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POOL_SAMPLE_EVERY);
            loop {
                ticks.tick().await;
                let Some(probe) = sampled.upgrade() else {
                    return;
                };
                if crate::observe::metrics::is_enabled() {
                    let load = probe();
                    crate::observe::metrics::pool_gauges(
                        urn.as_ref(),
                        std::any::type_name::<A>(),
                        load.members.len(),
                        load.members.iter().map(|m| m.queued).sum(),
                        load.members.iter().map(|m| m.in_flight).sum(),
                    );
                }
            }
        });
        self.probe = Some(probe);
        if let Some(after) = self.unresponsive_after {
            ctx.interval(after, || CheckMembers);
        }
        Ok(())
    }

    async fn on_event(&mut self, ctx: &mut Context<Self>, event: SupervisionEvent) {
        if let SupervisionEvent::ChildStopped { id, reason, .. } = event
            && self.shared.contains(id)
        {
            self.shared
                .replace_members(|m| m.retain(|m| m.actor.id() != id));
            self.replace(ctx, &format!("member {id} stopped: {reason}"))
                .await;
        }
    }

    fn accepts(message: std::any::TypeId) -> bool {
        A::accepts(message)
    }

    async fn handle_request(&mut self, request: RequestEnvelope, _ctx: &mut Context<Self>) {
        let key = Self::request_key(&request);
        let mut request = request;
        loop {
            let Ok((member, routed)) = self.shared.route(key, request.expects_response()) else {
                request.fail(AskError::ActorStopped);
                return;
            };
            let cell: &ActorCell<A> = &member.actor.cell;
            let reserved = match make_room(cell, self.shared.when_full).await {
                Some(true) => true,
                Some(false) => {
                    request.fail(AskError::MailboxFull);
                    return;
                }
                None => false,
            };
            if reserved {
                let priority = request.priority();
                // Counted in the member's load until answered: what least-loaded routing
                // sees of a member that hands its work on at once (a process actor's relay).
                // A tell gives the guard back: it counts until queued (then `queued` does).
                let _tell = routed.and_then(|routed| request.keep_until_answered(Box::new(routed)));
                match crate::cell::erased::ErasedCell::push_request(cell, request, priority) {
                    Ok(()) => return,
                    Err(back) => {
                        request = back;
                        request.drop_kept();
                    }
                }
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Grows or shrinks the pool.
pub(super) struct Resize(pub(super) usize);
impl Message for Resize {
    type Response = ();
    type Error = SpawnError;
    fn name() -> &'static str {
        "conclib::pool::Resize"
    }
}

impl<A: Actor> Handler<Resize> for PoolSupervisor<A> {
    async fn handle(
        &mut self,
        Resize(size): Resize,
        ctx: &mut Context<Self>,
    ) -> Result<(), SpawnError> {
        self.size = size;
        let now = self.shared.snapshot().len();
        if size > now {
            for _ in now..size {
                let member = self.spawn_member(ctx).await?;
                self.shared.replace_members(|m| m.push(member));
            }
        } else {
            let mut removed = Vec::new();
            self.shared.replace_members(|m| removed = m.split_off(size));
            for member in removed {
                // Graceful: what it has queued is still handled.
                member.actor.stop();
            }
        }
        Ok(())
    }
}

/// How often a pool records its gauges.
const POOL_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The dead-man's switch's tick.
struct CheckMembers;
impl Message for CheckMembers {
    type Response = ();
    type Error = std::convert::Infallible;
    fn name() -> &'static str {
        "conclib::pool::CheckMembers"
    }
}

impl<A: Actor> Handler<CheckMembers> for PoolSupervisor<A> {
    async fn handle(
        &mut self,
        _: CheckMembers,
        ctx: &mut Context<Self>,
    ) -> Result<(), std::convert::Infallible> {
        let Some(after) = self.unresponsive_after else {
            return Ok(());
        };
        for member in self.shared.snapshot().iter() {
            let actor = member.actor.clone();
            let pool = ctx.myself().clone();
            tokio::spawn(async move {
                let answer = actor
                    .ask(Heartbeat)
                    .priority(Priority::High)
                    .timeout(after)
                    .await;
                if matches!(answer, Err(AskError::Timeout(_))) {
                    let _ = pool.tell(Unresponsive(actor.id())).await;
                }
            });
        }
        Ok(())
    }
}

/// A member did not answer its heartbeat in time.
struct Unresponsive(ActorId);
impl Message for Unresponsive {
    type Response = ();
    type Error = std::convert::Infallible;
    fn name() -> &'static str {
        "conclib::pool::Unresponsive"
    }
}

impl<A: Actor> Handler<Unresponsive> for PoolSupervisor<A> {
    async fn handle(
        &mut self,
        Unresponsive(id): Unresponsive,
        ctx: &mut Context<Self>,
    ) -> Result<(), std::convert::Infallible> {
        let mut gone = None;
        self.shared.replace_members(|m| {
            if let Some(i) = m.iter().position(|m| m.actor.id() == id) {
                gone = Some(m.remove(i));
            }
        });
        if let Some(member) = gone {
            tracing::warn!(member = %id, "pool member unresponsive: killed");
            member.actor.kill();
            self.replace(ctx, &format!("member {id} did not answer its heartbeat"))
                .await;
        }
        Ok(())
    }
}
