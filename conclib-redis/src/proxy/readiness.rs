//! Whether a proxy is ready to serve, for an orchestrator's probes: [`ReadinessProbe`], from
//! [`ProxyHandle::readiness`](crate::ProxyHandle::readiness).

use std::sync::Weak;
use std::sync::atomic::Ordering;

use super::shared::Shared;

/// How far a proxy's handle is through its shutdown (kept in `Shared::shutdown_phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum ShutdownPhase {
    Running = 0,
    /// `ProxyHandle::shutdown` began: it finishes what it took and hands the rest over.
    Draining = 1,
    /// The handle is gone: shut down, or dropped.
    Stopped = 2,
}

impl ShutdownPhase {
    pub(super) fn enter(self, shared: &Shared) {
        shared
            .shutdown_phase
            .fetch_max(self as u8, Ordering::AcqRel);
    }

    fn of(shared: &Shared) -> Self {
        match shared.shutdown_phase.load(Ordering::Acquire) {
            0 => ShutdownPhase::Running,
            1 => ShutdownPhase::Draining,
            _ => ShutdownPhase::Stopped,
        }
    }
}

/// What a proxy is doing, as an orchestrator's readiness probe needs it: only
/// [`Ready`](Readiness::Ready) should receive a rolling update's go-ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Readiness {
    /// Its lease and URN keys are surely held and it reads its request stream.
    Ready,
    /// It reads, but cannot tell whether its lease still holds: Redis has not confirmed a
    /// renewal within the lease (Redis unreachable, paused, or failing over).
    LeaseUncertain,
    /// Its shutdown began: it serves what it took and hands the rest over.
    Draining,
    /// Another instance took the system's lease; this one stopped reading.
    Replaced,
    /// Its shutdown ended (or it stopped reading for good).
    Stopped,
}

impl Readiness {
    /// Whether a readiness probe should pass.
    #[must_use]
    pub fn is_ready(self) -> bool {
        self == Readiness::Ready
    }

    /// A short lowercase name (`ready`, `lease_uncertain`, `draining`, `replaced`, `stopped`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::LeaseUncertain => "lease_uncertain",
            Readiness::Draining => "draining",
            Readiness::Replaced => "replaced",
            Readiness::Stopped => "stopped",
        }
    }
}

/// Reads a proxy's [`Readiness`] without keeping the proxy alive: clone it into an HTTP
/// handler (`conclib_view::health` serves `/livez` and `/readyz` from one) and it answers
/// [`Readiness::Stopped`] once the proxy is gone.
///
/// ```no_run
/// # async fn demo(proxy: conclib_redis::ProxyHandle) {
/// let probe = proxy.readiness();
/// assert!(probe.check().is_ready());
/// proxy.shutdown().await.ok();
/// assert_eq!(probe.check(), conclib_redis::readiness::Readiness::Stopped);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ReadinessProbe {
    pub(super) shared: Weak<Shared>,
}

impl ReadinessProbe {
    /// What the proxy is doing now: a few atomic loads, no Redis command.
    #[must_use]
    pub fn check(&self) -> Readiness {
        let Some(shared) = self.shared.upgrade() else {
            return Readiness::Stopped;
        };
        match ShutdownPhase::of(&shared) {
            ShutdownPhase::Stopped => return Readiness::Stopped,
            ShutdownPhase::Draining => return Readiness::Draining,
            ShutdownPhase::Running => {}
        }
        if shared.lease.replaced.load(Ordering::Acquire) {
            Readiness::Replaced
        } else if !shared.serving.load(Ordering::Acquire) {
            Readiness::Stopped
        } else if !shared.lease.fresh() {
            Readiness::LeaseUncertain
        } else {
            Readiness::Ready
        }
    }
}
