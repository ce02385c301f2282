//! The lease part of a proxy instance ([`Lease`]): its lease key and value, and until when
//! the lease and the URN keys are surely still held, by this process's monotonic clock
//! (the fence every request handed to an actor carries). `lease.rs` renews them.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::random::random_token;

/// The lease of a proxy instance (a system's, or a group member's) and the freshness of
/// what it holds.
pub(in crate::proxy) struct Lease {
    /// The lease's key: the system's, or the member's.
    pub(in crate::proxy) key: String,
    /// This instance's lease value ([`lease_token`]).
    pub(in crate::proxy) token: String,
    lease_ttl: Duration,
    urn_ttl: Duration,
    /// Until when, by this process's monotonic clock, the system's (or member's) lease
    /// renewed last is surely still held (its TTL, less a margin for clock drift, from
    /// before the renewal).
    fresh_until: AtomicU64,
    /// The same for the URN keys: the earliest of their expiries (each is renewed once a
    /// third of its TTL passed, `urn_ttl` or an activation's longer one).
    urns_fresh_until: AtomicU64,
    /// When the URN keys were last renewed (nanoseconds from `clock_base`; `u64::MAX`:
    /// never, or to be renewed at the next renewal whatever the time).
    urns_renewed_at: AtomicU64,
    /// Counts the asks to renew every URN key ([`Lease::renew_all_urns`]): a renewal of the
    /// URN keys that began before one does not count them fresh when it ends.
    urns_epoch: AtomicU64,
    /// A renewal of the URN keys is under way (one at a time: a lease re-check that comes
    /// meanwhile renews the lease only).
    pub(in crate::proxy) urns_renewing: AtomicBool,
    /// The URNs whose keys were given away while the lease was absent in Redis, as the
    /// lease's retakes read them from the system's record (`SYSTEM_LEASE_SCRIPT`), until a
    /// pass after the lapse claimed them again.
    given: Mutex<HashSet<String>>,
    /// Whether the pass every URN key is asked for ([`Lease::renew_all_urns`]) may claim only
    /// those due and those given away: the lapse that asked for it was one in Redis with the
    /// record whole. Not after a reconnection (the Redis that answers may have lost writes)
    /// nor a record lost.
    given_known: AtomicBool,
    /// What `fresh_until` and `urns_fresh_until` count from.
    clock_base: Instant,
    /// Open while the leases are surely held, as the fresh-until times; every request handed to an
    /// actor carries the one current when its entry was read, so that after a pause past
    /// the lease the actor starts none it had queued (another system may have taken them).
    /// Replaced by a new one when a renewal finds it closed ([`mark_lease_fresh`]).
    ///
    /// [`mark_lease_fresh`]: Lease::mark_lease_fresh
    fence: Mutex<conclib_core::Fence>,
    /// One lease re-check at a time.
    pub(in crate::proxy) recheck: tokio::sync::Mutex<()>,
    /// One renewal of the lease at a time (`lease.rs`, `renew_lease`): a renewal that found
    /// the lease kept must not count it fresh while another, which found it lapsed and
    /// took it again, has not yet asked for the URN keys to be claimed again.
    pub(super) renewal: tokio::sync::Mutex<()>,
    /// Another process of this system took its lease (this one was paused past it, and
    /// taken for dead): what this one reads before it stops is that one's to handle.
    pub(in crate::proxy) replaced: AtomicBool,
}

impl Lease {
    /// A lease at `key` not taken yet, under a new token, held `lease_ttl` at each renewal;
    /// the URN keys it goes with live `urn_ttl`.
    pub(in crate::proxy) fn new(key: String, lease_ttl: Duration, urn_ttl: Duration) -> Self {
        Lease {
            key,
            token: lease_token(),
            lease_ttl,
            urn_ttl,
            fresh_until: AtomicU64::new(0),
            urns_fresh_until: AtomicU64::new(0),
            urns_renewed_at: AtomicU64::new(u64::MAX),
            urns_epoch: AtomicU64::new(0),
            urns_renewing: AtomicBool::new(false),
            given: Mutex::new(HashSet::new()),
            given_known: AtomicBool::new(false),
            clock_base: Instant::now(),
            fence: Mutex::new(conclib_core::Fence::new(Instant::now())),
            recheck: tokio::sync::Mutex::new(()),
            renewal: tokio::sync::Mutex::new(()),
            replaced: AtomicBool::new(false),
        }
    }

    /// The fence of the leases held now (see `fence`).
    pub(in crate::proxy) fn fence(&self) -> conclib_core::Fence {
        lock(&self.fence).clone()
    }

    /// Whether the leases are surely still held: the system's (or member's) lease and its
    /// URN keys (see `fresh_until`).
    pub(in crate::proxy) fn fresh(&self) -> bool {
        self.monotonic_ns() < self.fresh_until_ns()
    }

    /// The earlier of the two fresh-until times.
    fn fresh_until_ns(&self) -> u64 {
        self.fresh_until
            .load(Ordering::Acquire)
            .min(self.urns_fresh_until.load(Ordering::Acquire))
    }

    /// Nanoseconds on this process's monotonic clock since the proxy started.
    fn monotonic_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.clock_base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records leases and URN keys renewed by commands sent after `since` (a start).
    pub(in crate::proxy) fn mark_fresh(&self, since: Instant) {
        self.mark_urns_fresh(since);
        self.mark_lease_fresh(since);
    }

    /// Records the URN keys renewed by commands sent after `since`.
    pub(in crate::proxy) fn mark_urns_fresh(&self, since: Instant) {
        self.urns_renewed_at
            .store(self.ns_at(since), Ordering::Release);
        self.urns_fresh_until
            .store(self.fresh_after(since, self.urn_ttl), Ordering::Release);
    }

    /// The current ask to renew every URN key, for [`Lease::mark_urns_fresh_until`].
    pub(in crate::proxy) fn urns_epoch(&self) -> u64 {
        self.urns_epoch.load(Ordering::Acquire)
    }

    /// Whether every URN key is to be claimed again, and checked, before the lease counts
    /// as held ([`Lease::renew_all_urns`]).
    pub(in crate::proxy) fn all_urns_asked(&self) -> bool {
        self.urns_renewed_at.load(Ordering::Acquire) == u64::MAX
    }

    /// Records a renewal of the URN keys that began at `since` under `epoch`, after which
    /// every key surely lives until `until` ([`Due::fresh_until`](super::owned::Due::fresh_until)),
    /// unless every URN key was asked to be renewed since (a lapse: keys claimed before it
    /// may have been taken over after), and the fence moved on to the new fresh-until time
    /// if it is still open. Returns whether it counted.
    pub(in crate::proxy) fn mark_urns_fresh_until(
        &self,
        since: Instant,
        until: Instant,
        epoch: u64,
    ) -> bool {
        if self.urns_epoch() != epoch {
            return false;
        }
        self.urns_renewed_at
            .store(self.ns_at(since), Ordering::Release);
        self.urns_fresh_until
            .store(self.ns_at(until), Ordering::Release);
        if self.urns_epoch() != epoch {
            // A lapse came between the check and the marks: undone, all renewed again.
            self.urns_fresh_until.store(0, Ordering::Release);
            self.renew_all_urns();
            return false;
        }
        let until = self.clock_base + Duration::from_nanos(self.fresh_until_ns());
        let _ = lock(&self.fence).extend(until);
        true
    }

    /// Until when a key set with `ttl` by a command sent after `since` surely lives, by
    /// this process's clock (nanoseconds from `clock_base`).
    fn fresh_after(&self, since: Instant, ttl: Duration) -> u64 {
        self.ns_at(surely_until(since, ttl))
    }

    /// Records the system's (or member's) lease renewed by a command sent after `since`,
    /// and moves the fence to the earlier of the two fresh-until times.
    pub(in crate::proxy) fn mark_lease_fresh(&self, since: Instant) {
        self.fresh_until
            .store(self.fresh_after(since, self.lease_ttl), Ordering::Release);
        // The fence follows; one that closed meanwhile (the leases lapsed: a pause, Redis
        // out of reach) stays closed for what was handed through it, and a new one opens.
        let until = self.clock_base + Duration::from_nanos(self.fresh_until_ns());
        let mut fence = lock(&self.fence);
        if !fence.extend(until) {
            *fence = conclib_core::Fence::new(until);
        }
    }

    /// Counts the leases as lapsed now (a reconnection: the Redis that answers may be a
    /// promoted replica without the last renewals): the fence closes, the next request
    /// waits for a renewal, and that one claims every URN key again and checks it.
    pub(super) fn lapse(&self) {
        self.given_known.store(false, Ordering::Release);
        self.fresh_until.store(0, Ordering::Release);
        self.urns_fresh_until.store(0, Ordering::Release);
        self.renew_all_urns();
        lock(&self.fence).close();
    }

    /// Records a lapse of the lease in Redis, found as the lease was taken again: `given`,
    /// the URNs the system's record says were given away meanwhile (`None`: the record was
    /// not whole, so every URN key is claimed again). The pass it asks for
    /// ([`Lease::renew_all_urns`]) claims only those and the keys due when every lapse since
    /// the last pass was one whose record was whole.
    pub(super) fn lapsed_in_redis(&self, given: Option<Vec<String>>) {
        let known = match given {
            Some(urns) => {
                lock(&self.given).extend(urns);
                // A pass still owed for a lapse not known stays a pass over every key.
                !self.all_urns_asked() || self.given_known.load(Ordering::Acquire)
            }
            None => false,
        };
        self.given_known.store(known, Ordering::Release);
        self.renew_all_urns();
    }

    /// What the pass after a lapse claims besides the keys due: `Some` (the URNs given away)
    /// when the lapses since the last pass are known ([`Lease::lapsed_in_redis`]), `None`:
    /// every key.
    pub(super) fn given_to_claim(&self) -> Option<HashSet<String>> {
        self.given_known
            .load(Ordering::Acquire)
            .then(|| lock(&self.given).clone())
    }

    /// The URNs `claimed` (a pass after a lapse, counted) are no longer to claim again.
    pub(super) fn given_claimed(&self, claimed: &HashSet<String>) {
        lock(&self.given).retain(|u| !claimed.contains(u));
    }

    /// Makes the next renewal renew every URN key (Redis may have restarted empty).
    pub(in crate::proxy) fn renew_all_urns(&self) {
        // The ask before the new epoch: a renewal of the keys due that reads the new epoch
        // sees the ask too, and does not count (`urn_keys.rs`, `renew_urns_in_turn`).
        self.urns_renewed_at.store(u64::MAX, Ordering::Release);
        self.urns_epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Until when a key set with `ttl` by a command sent after `since` surely lives, by this
/// process's clock: Redis counts the TTL from when it ran the command, after `since`; the
/// margin covers the two clocks running at slightly different rates.
pub(in crate::proxy) fn surely_until(since: Instant, ttl: Duration) -> Instant {
    let margin = (ttl / 10).max(Duration::from_millis(50));
    since + ttl.saturating_sub(margin)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lease value of one proxy instance: a random token, then where it runs.
fn lease_token() -> String {
    format!("{}@{}:{}", random_token(), this_host(), std::process::id())
}

/// The host and pid a lease value names.
pub(in crate::proxy) fn lease_holder(token: &str) -> Option<(&str, u32)> {
    let (_, at) = token.split_once('@')?;
    let (host, pid) = at.rsplit_once(':')?;
    Some((host, pid.parse().ok()?))
}

pub(in crate::proxy) fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a process with this pid exists on this host (a zombie counts: not reaped yet).
pub(in crate::proxy) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Lease;

    fn lease() -> Lease {
        let lease = Lease::new("k".into(), Duration::from_secs(4), Duration::from_secs(15));
        lease.mark_fresh(Instant::now());
        lease
    }

    /// A renewal of the URN keys counts them fresh from when it began, and moves the fence
    /// on, without the lease's renewal waiting for it.
    #[test]
    fn a_renewal_of_the_urn_keys_counts_them_fresh_on_its_own() {
        let lease = lease();
        assert!(!lease.all_urns_asked());
        let since = Instant::now();
        let epoch = lease.urns_epoch();
        assert!(lease.mark_urns_fresh_until(since, since + Duration::from_secs(13), epoch));
        assert!(lease.fresh());
        assert!(lease.fence().is_open());
    }

    /// A lapse (a reconnection, a pause past the lease) while URN keys were being renewed:
    /// that renewal does not count them fresh (a key claimed before the lapse may have been
    /// taken over after it); every key is to be claimed again first.
    #[test]
    fn a_renewal_that_began_before_a_lapse_does_not_count() {
        let lease = lease();
        let since = Instant::now();
        let epoch = lease.urns_epoch();
        lease.lapse();
        assert!(!lease.mark_urns_fresh_until(since, since + Duration::from_secs(13), epoch));
        assert!(
            lease.all_urns_asked(),
            "every URN key still to be claimed again"
        );
        assert!(!lease.fresh());
        assert!(!lease.fence().is_open());
        // The renewal after the lapse counts.
        let epoch = lease.urns_epoch();
        let now = Instant::now();
        assert!(lease.mark_urns_fresh_until(now, now + Duration::from_secs(13), epoch));
        lease.mark_lease_fresh(Instant::now());
        assert!(lease.fresh());
    }

    /// A lapse in Redis whose record of URN keys given away was whole asks for those only
    /// (besides the keys due); one whose record was not, or a reconnection, for every key,
    /// and a pass still owed for such a lapse stays one over every key whatever comes after.
    #[test]
    fn a_lapse_with_a_whole_record_asks_for_the_keys_given_away_only() {
        let set = |urns: &[&str]| urns.iter().map(|u| (*u).to_owned()).collect();
        let lease = lease();
        lease.lapsed_in_redis(Some(vec!["a".into()]));
        assert!(lease.all_urns_asked());
        assert_eq!(lease.given_to_claim(), Some(set(&["a"])));
        // Another before the pass: both.
        lease.lapsed_in_redis(Some(vec!["b".into()]));
        assert_eq!(lease.given_to_claim(), Some(set(&["a", "b"])));
        // A reconnection: every key, and still after a lapse with a whole record.
        lease.lapse();
        assert_eq!(lease.given_to_claim(), None);
        lease.lapsed_in_redis(Some(vec!["c".into()]));
        assert_eq!(lease.given_to_claim(), None);
        // The pass counted: the next lapse is known again; what was claimed is forgotten.
        let (epoch, now) = (lease.urns_epoch(), Instant::now());
        assert!(lease.mark_urns_fresh_until(now, now + Duration::from_secs(13), epoch));
        lease.given_claimed(&set(&["a", "b"]));
        lease.lapsed_in_redis(Some(vec![]));
        assert_eq!(lease.given_to_claim(), Some(set(&["c"])));
        // A record not whole: every key.
        lease.lapsed_in_redis(None);
        assert_eq!(lease.given_to_claim(), None);
    }
}
