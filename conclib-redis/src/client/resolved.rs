//! Where a URN's requests go, as a client resolved it and caches it (`route.rs` looks it
//! up; the client's shared state holds the cache).

use std::sync::Arc;
use std::time::Instant;

/// The system serving a URN and its request stream(s), until when the cache may use it.
#[derive(Clone)]
pub(super) struct Resolved {
    pub(super) requests_key: Arc<str>,
    /// A group's fast lane (`{ns}:sys:{group}:req:hi`), for its `Priority::High` requests;
    /// `None` for a system, or a group whose members read none (older proxies).
    pub(super) fast_key: Option<Arc<str>>,
    pub(super) system: Arc<str>,
    pub(super) until: Instant,
}

impl Resolved {
    /// The stream a request goes to: a group's fast lane for a `fast` one, if it has one.
    pub(super) fn key_for(&self, fast: bool) -> &Arc<str> {
        match &self.fast_key {
            Some(key) if fast => key,
            _ => &self.requests_key,
        }
    }
}
