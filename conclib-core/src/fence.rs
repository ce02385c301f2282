//! [`Fence`]: a condition a request must still meet when its actor starts it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Open until an instant that its keeper pushes on; once it has closed, closed for good.
///
/// A request sent with a fence ([`ErasedRequest::fence`](crate::ErasedRequest::fence)) is
/// started by its actor only while the fence is open; otherwise the actor skips it and its
/// sender gets [`AskError::Fenced`](crate::AskError::Fenced). The Redis proxy keeps one per
/// lease: a process paused past its lease (`SIGSTOP`, a frozen VM) then starts none of the
/// requests it had queued before the pause, which another system may have taken meanwhile.
/// The fence is checked by the clock as the actor takes the request, so it holds even when
/// the actor resumes before the keeper does. Once closed, [`extend`](Self::extend) does
/// not reopen it: what was sent through it stays fenced out, and the keeper makes a new one.
///
/// ```
/// use std::time::{Duration, Instant};
/// use conclib_core::Fence;
///
/// let fence = Fence::new(Instant::now() + Duration::from_secs(5));
/// assert!(fence.is_open());
/// assert!(fence.extend(Instant::now() + Duration::from_secs(10)));
/// fence.close();
/// assert!(!fence.is_open());
/// assert!(!fence.extend(Instant::now() + Duration::from_secs(10)), "closed for good");
/// ```
#[derive(Clone)]
pub struct Fence(Arc<Bound>);

struct Bound {
    /// What `until` counts from.
    base: Instant,
    /// Open while the time since `base` is below this many nanoseconds.
    until: AtomicU64,
}

impl Fence {
    /// A fence open until `until`.
    pub fn new(until: Instant) -> Fence {
        let base = Instant::now();
        Fence(Arc::new(Bound {
            base,
            until: AtomicU64::new(nanos_since(base, until)),
        }))
    }

    /// Whether it is open now.
    pub fn is_open(&self) -> bool {
        nanos_since(self.0.base, Instant::now()) < self.0.until.load(Ordering::Acquire)
    }

    /// Keeps it open until `until` (never shortened), unless it has closed: then it stays
    /// closed and this returns `false`.
    pub fn extend(&self, until: Instant) -> bool {
        let until = nanos_since(self.0.base, until);
        let mut current = self.0.until.load(Ordering::Acquire);
        loop {
            if nanos_since(self.0.base, Instant::now()) >= current {
                return false;
            }
            if until <= current {
                return true;
            }
            match self.0.until.compare_exchange_weak(
                current,
                until,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Closes it for good.
    pub fn close(&self) {
        self.0.until.store(0, Ordering::Release);
    }
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fence")
            .field("open", &self.is_open())
            .finish()
    }
}

fn nanos_since(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_fence_past_its_bound_is_closed_and_stays_closed() {
        let fence = Fence::new(Instant::now());
        assert!(!fence.is_open());
        assert!(!fence.extend(Instant::now() + Duration::from_secs(60)));
        assert!(!fence.is_open());
    }

    #[test]
    fn extending_never_shortens() {
        let fence = Fence::new(Instant::now() + Duration::from_secs(60));
        assert!(fence.extend(Instant::now()));
        assert!(fence.is_open());
    }
}
