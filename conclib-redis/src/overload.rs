//! Overload without collapse: the limits a proxy admits requests under ([`Overload`], in
//! [`ProxyConfig::overload`](crate::ProxyConfig::overload)), how it picks activations to
//! evict past its activation cap ([`Eviction`]), when it sheds activations for memory
//! ([`MemoryShedding`]), and what a refusal says ([`OverloadScope`], the `Overloaded`
//! reply's payload). The crate docs, "Overload", tell the whole story.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The limits a proxy admits requests and keeps activations under. Every limit is off by
/// default: a proxy without them admits as it always did (the full mailbox's
/// [`full_mailbox_wait`](crate::ProxyConfig::full_mailbox_wait) is its only refusal).
///
/// ```
/// use conclib_redis::{ProxyConfig, overload::{Eviction, Overload}};
/// let mut config = ProxyConfig::default();
/// let mut overload = Overload::default();
/// overload.max_pending_per_urn = Some(64);
/// overload.max_pending = Some(4096);
/// overload.activation_cap = Some(100_000);
/// overload.eviction = Eviction::Lfu;
/// config.overload = overload;
/// assert_eq!(config.overload.max_pending_per_urn, Some(64));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Overload {
    /// The most requests read and not yet answered (queued in the actor's mailbox or being
    /// handled) for one URN; one more is refused with `Overloaded` at once (an ask is
    /// answered status 13, a tell is dropped and counted). A pattern may set its own
    /// ([`Activator::max_pending_per_urn`](crate::scale::Activator::max_pending_per_urn)), a URN
    /// too ([`ProxyHandle::set_max_pending`](crate::ProxyHandle::set_max_pending)).
    /// Default `None` (no limit).
    pub max_pending_per_urn: Option<u64>,
    /// The most requests read and not yet answered in this system's proxy, all URNs
    /// together; one more is refused as above. Default `None`.
    pub max_pending: Option<u64>,
    /// The most activations (actors activated by URN pattern) alive in this system at once;
    /// one more evicts some by [`eviction`](Self::eviction) (passivated gracefully, their
    /// `on_stop` saving as after an idle time), down to about 98.5% of the cap, so that
    /// evictions come in batches rather than one per activation. Changed at run time by
    /// [`ProxyHandle::set_activation_cap`](crate::ProxyHandle::set_activation_cap).
    /// Default `None` (no cap).
    pub activation_cap: Option<usize>,
    /// Which activations the cap evicts first. Default [`Eviction::Lru`].
    pub eviction: Eviction,
    /// Passivating activations when the process uses too much memory. Default `None`.
    pub memory: Option<MemoryShedding>,
    /// A client's side (read by [`ProxyClient`](crate::ProxyClient), not by a proxy): how
    /// long after a proxy refused one of its asks to a URN for the URN's own limit the
    /// client keeps that limit. Meanwhile it counts its own asks to the URN in flight, and
    /// refuses an ask or a tell that finds them at the limit itself, with the same
    /// `Overloaded` (the limit, and its own asks in flight as the depth), without writing
    /// it to Redis: the proxy would refuse it too, unless some of those asks were answered
    /// meanwhile, their replies on their way. Each
    /// refusal from the proxy starts the time again; none from the client does, so the
    /// client refuses nothing more than this after the proxy last did. A pattern's or a
    /// system's limit counts other clients' requests, which a client cannot see: those
    /// refusals are the proxy's alone. `Duration::ZERO`: never refused at send. Default
    /// 100 ms.
    pub client_hold: Duration,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            max_pending_per_urn: None,
            max_pending: None,
            activation_cap: None,
            eviction: Eviction::default(),
            memory: None,
            client_hold: Duration::from_millis(100),
        }
    }
}

/// A custom eviction order: a score for each activation; the lowest scores are evicted
/// first.
pub type EvictionScore = Arc<dyn Fn(&EvictionCandidate<'_>) -> u64 + Send + Sync>;

/// Which activations the activation cap evicts first. Only activations with nothing in
/// their mailbox are evicted.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Eviction {
    /// The least recently used first (the longest since a request through Redis).
    #[default]
    Lru,
    /// The least frequently used first (the fewest requests through Redis since activated).
    Lfu,
    /// By a function of your own: the lowest score first.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use conclib_redis::overload::Eviction;
    /// // Evict `guest:` activations before any other, the least used first.
    /// let policy = Eviction::Custom(Arc::new(|c| {
    ///     if c.urn.starts_with("guest:") { c.uses } else { u64::MAX / 2 + c.uses }
    /// }));
    /// # let _ = policy;
    /// ```
    Custom(EvictionScore),
}

impl fmt::Debug for Eviction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Eviction::Lru => f.write_str("Lru"),
            Eviction::Lfu => f.write_str("Lfu"),
            Eviction::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// What an eviction policy sees of one activation.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct EvictionCandidate<'a> {
    /// Its URN.
    pub urn: &'a str,
    /// How long since its last request through Redis.
    pub idle: Duration,
    /// How many requests through Redis it had since it was activated.
    pub uses: u64,
}

impl Eviction {
    /// The activation's score: the lowest is evicted first.
    pub(crate) fn score(&self, c: &EvictionCandidate<'_>) -> u64 {
        match self {
            Eviction::Lru => u64::MAX - u64::try_from(c.idle.as_micros()).unwrap_or(u64::MAX),
            Eviction::Lfu => c.uses,
            Eviction::Custom(f) => f(c),
        }
    }
}

/// Passivating activations when the process uses too much memory: every 250 ms the proxy
/// reads the process's resident memory (`/proc/self/statm`); above [`above`](Self::above)
/// of the limit, it passivates the least recently used activations, as many as the share of
/// memory above [`down_to`](Self::down_to) of the limit (at least one), counted in
/// [`ProxyStats::shed`](crate::stats::ProxyStats::shed), the metric
/// `conclib_activations_total{event="shed"}` and a warning in the log. Before it counts, a
/// look above the threshold gives the C heap's free memory back to the system (glibc's
/// `malloc_trim`), so that what shed activations freed is not counted again. Memory another
/// allocator keeps after the actors are gone (a global allocator of your own) still counts
/// as resident: shedding goes on at each look while it does, at most an eighth of the
/// activations at a time.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MemoryShedding {
    /// The limit.
    pub limit: MemoryLimit,
    /// The share of the limit above which activations are shed. Default 0.8.
    pub above: f64,
    /// The share of the limit shedding aims at. Default 0.7.
    pub down_to: f64,
}

impl MemoryShedding {
    /// Shedding above 80% of `limit`, down to 70%.
    #[must_use]
    pub fn new(limit: MemoryLimit) -> Self {
        MemoryShedding {
            limit,
            above: 0.8,
            down_to: 0.7,
        }
    }
}

/// The memory limit shedding measures against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryLimit {
    /// The process's cgroup limit (`/sys/fs/cgroup/memory.max`, cgroup v2), read once when
    /// the proxy starts; with no limit there (`max`, or no such file) nothing is shed.
    Cgroup,
    /// This many bytes.
    Bytes(u64),
}

impl MemoryLimit {
    /// The limit in bytes, if there is one.
    pub(crate) fn bytes(self) -> Option<u64> {
        match self {
            MemoryLimit::Bytes(b) => Some(b),
            MemoryLimit::Cgroup => std::fs::read_to_string("/sys/fs/cgroup/memory.max")
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok()),
        }
    }
}

/// The process's resident memory in bytes (`/proc/self/statm`), if it can be read.
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Returns the C heap's free memory to the system (glibc's `malloc_trim`; elsewhere
/// nothing), before memory shedding counts the resident memory: what passivated activations
/// freed inside the heap stays resident otherwise (glibc serves allocations above its
/// mapping threshold from the heap once it freed one mapping of that size), and each look
/// would shed again for memory no activation holds (bench-log, "Memory shedding gives the
/// heap back").
pub(crate) fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only hands the allocator's free pages back to the system; it
    // touches no memory a caller holds, and takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Where a request was refused for too many pending: the limit's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverloadScope {
    /// The requests pending for its URN.
    Urn,
    /// The requests pending for the URNs of its pattern.
    Pattern,
    /// The requests pending in the whole system's proxy.
    System,
}

impl OverloadScope {
    /// Its name in a reply's payload and in the metric's `scope` label.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            OverloadScope::Urn => "urn",
            OverloadScope::Pattern => "pattern",
            OverloadScope::System => "system",
        }
    }

    fn from_label(label: &str) -> Option<Self> {
        Some(match label {
            "urn" => OverloadScope::Urn,
            "pattern" => OverloadScope::Pattern,
            "system" => OverloadScope::System,
            _ => return None,
        })
    }
}

impl fmt::Display for OverloadScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A refusal for too many pending: where, the limit, and how many were pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) scope: OverloadScope,
    pub(crate) limit: u64,
    pub(crate) depth: u64,
}

impl Refusal {
    /// The payload of an `Overloaded` reply: `scope=urn limit=8 depth=8`.
    pub(crate) fn payload(&self) -> String {
        format!(
            "scope={} limit={} depth={}",
            self.scope, self.limit, self.depth
        )
    }

    /// An `Overloaded` reply's payload read back; `None` if it is not one (a proxy of a
    /// later version may say more: unknown words are skipped).
    pub(crate) fn parse(payload: &[u8]) -> Option<Refusal> {
        let text = std::str::from_utf8(payload).ok()?;
        let (mut scope, mut limit, mut depth) = (None, None, None);
        for word in text.split_whitespace() {
            match word.split_once('=') {
                Some(("scope", v)) => scope = OverloadScope::from_label(v),
                Some(("limit", v)) => limit = v.parse().ok(),
                Some(("depth", v)) => depth = v.parse().ok(),
                _ => {}
            }
        }
        Some(Refusal {
            scope: scope?,
            limit: limit?,
            depth: depth?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_payload_reads_back_and_garbage_does_not() {
        let r = Refusal {
            scope: OverloadScope::Pattern,
            limit: 8,
            depth: 9,
        };
        assert_eq!(r.payload(), "scope=pattern limit=8 depth=9");
        assert_eq!(Refusal::parse(r.payload().as_bytes()), Some(r));
        assert_eq!(
            Refusal::parse(b"scope=urn extra=1 limit=1 depth=2"),
            Some(Refusal {
                scope: OverloadScope::Urn,
                limit: 1,
                depth: 2
            })
        );
        for bad in [
            &b""[..],
            b"scope=moon limit=1 depth=1",
            b"limit=x",
            b"\xff\xfe",
        ] {
            assert_eq!(Refusal::parse(bad), None);
        }
    }

    #[test]
    fn lru_evicts_the_longest_idle_and_lfu_the_least_used() {
        let c = |idle_ms, uses| EvictionCandidate {
            urn: "a:1",
            idle: Duration::from_millis(idle_ms),
            uses,
        };
        assert!(Eviction::Lru.score(&c(500, 1)) < Eviction::Lru.score(&c(10, 1)));
        assert!(Eviction::Lfu.score(&c(10, 1)) < Eviction::Lfu.score(&c(500, 9)));
        let custom = Eviction::Custom(Arc::new(|c| c.uses * 2));
        assert_eq!(custom.score(&c(0, 3)), 6);
    }
}
