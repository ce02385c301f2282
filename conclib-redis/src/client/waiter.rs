//! An ask waiting for its reply: what the request's writer (`outbox`) marks written and the
//! reply reader (`io`) completes, apart from the ask's own walk (`exchange`) so that neither
//! side imports the other.

use fred::bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::ProxyError;

/// An ask waiting for its reply frame (or for the error that ends it before one comes).
pub(super) struct Waiter {
    pub(super) reply: oneshot::Sender<Result<Bytes, ProxyError>>,
    /// Whether Redis took its request (it waits in a stream, or with the proxy, for its answer).
    pub(super) written: bool,
}
