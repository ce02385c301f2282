//! The proxy's counters as plain data: what [`ProxyHandle::stats`](crate::ProxyHandle::stats)
//! returns and what the snapshots publish. Its own module so that the snapshots need not
//! import the proxy (the proxy imports the snapshots to publish them).

/// Counters of what a proxy did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Requests read from the request stream.
    pub received: u64,
    /// Requests finished and acknowledged: answered (whatever the status), told, refused or
    /// dropped as expired.
    pub completed: u64,
    /// Requests dropped unprocessed because their deadline had passed.
    pub expired: u64,
    /// Requests refused as malformed, unknown, too large or undecodable.
    pub rejected: u64,
    /// Requests that systems gone from a pattern's group had left queued for the pattern's
    /// URNs, moved by this system to the group (failover by membership; the crate docs).
    #[serde(default)]
    pub moved: u64,
    /// Requests refused at once because too many were pending for their URN, their
    /// pattern or the system (the crate docs, "Overload"): asks answered `Overloaded`,
    /// tells dropped. Not counted in `rejected`.
    #[serde(default)]
    pub overloaded: u64,
    /// Of `overloaded`, the tells (dropped: a tell has nobody to answer).
    #[serde(default)]
    pub overloaded_tells: u64,
    /// Requests read and not yet answered now, while a pending limit is set (0 otherwise).
    #[serde(default)]
    pub pending: u64,
    /// Activations alive in this system now.
    #[serde(default)]
    pub activations: u64,
    /// Activations evicted by the activation cap so far.
    #[serde(default)]
    pub evicted: u64,
    /// Activations passivated for memory so far.
    #[serde(default)]
    pub shed: u64,
}
