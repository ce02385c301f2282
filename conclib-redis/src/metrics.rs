//! The proxy's and the client's metrics, through the `metrics` facade; recorded once
//! [`conclib_core::metrics::enable`] was called (one relaxed load otherwise). The crate
//! docs list them.

use std::time::Duration;

use conclib_core::metrics::is_enabled;

use crate::error::ProxyError;

pub(crate) fn received(system: &str) {
    if is_enabled() {
        metrics::counter!("conclib_proxy_requests_received_total", "system" => system.to_owned())
            .increment(1);
    }
}

pub(crate) fn rejected(system: &str, status: &'static str) {
    if is_enabled() {
        metrics::counter!("conclib_proxy_requests_rejected_total", "system" => system.to_owned(), "status" => status)
            .increment(1);
    }
}

/// A request refused for too many pending (`scope`: `urn`, `pattern`, `system`), an ask
/// answered `Overloaded` or a tell dropped: in the rejections by status too.
pub(crate) fn overloaded(system: &str, scope: &'static str, tell: bool) {
    if is_enabled() {
        metrics::counter!("conclib_proxy_requests_rejected_total", "system" => system.to_owned(), "status" => "overloaded")
            .increment(1);
        metrics::counter!("conclib_proxy_overloaded_total", "system" => system.to_owned(), "scope" => scope, "kind" => if tell { "tell" } else { "ask" })
            .increment(1);
    }
}

/// An ask or tell refused by its client at send: its URN was held full after a refusal.
pub(crate) fn refused_at_send() {
    if is_enabled() {
        metrics::counter!("conclib_client_refused_at_send_total").increment(1);
    }
}

/// The requests pending in a system's proxy (while a pending limit is set) and the
/// activations alive, sampled every 250 ms.
pub(crate) fn overload_levels(system: &str, pending: u64, activations: usize) {
    metrics::gauge!("conclib_proxy_pending", "system" => system.to_owned()).set(pending as f64);
    metrics::gauge!("conclib_activations_alive", "system" => system.to_owned())
        .set(activations as f64);
}

pub(crate) fn expired(system: &str) {
    if is_enabled() {
        metrics::counter!("conclib_proxy_requests_expired_total", "system" => system.to_owned())
            .increment(1);
    }
}

pub(crate) fn answered(system: &str, status: &'static str, since_entry: Duration) {
    if is_enabled() {
        let labels = [("system", system.to_owned()), ("status", status.to_owned())];
        metrics::counter!("conclib_proxy_answers_total", &labels).increment(1);
        metrics::histogram!("conclib_proxy_answer_seconds", &labels)
            .record(since_entry.as_secs_f64());
    }
}

pub(crate) fn read_batch(system: &str, size: usize) {
    if is_enabled() {
        metrics::histogram!("conclib_proxy_read_batch_size", "system" => system.to_owned())
            .record(size as f64);
    }
}

pub(crate) fn reconnected(system: &str) {
    if is_enabled() {
        metrics::counter!("conclib_proxy_reconnects_total", "system" => system.to_owned())
            .increment(1);
    }
}

/// Counts an ask in flight for as long as it lives.
pub(crate) struct InFlight(bool);

impl InFlight {
    pub(crate) fn start() -> Self {
        let on = is_enabled();
        if on {
            metrics::gauge!("conclib_client_asks_in_flight").increment(1.0);
        }
        InFlight(on)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0 {
            metrics::gauge!("conclib_client_asks_in_flight").decrement(1.0);
        }
    }
}

pub(crate) fn client_ask(status: &'static str, took: Duration) {
    if is_enabled() {
        metrics::histogram!("conclib_client_ask_seconds", "status" => status)
            .record(took.as_secs_f64());
    }
}

/// The `status` label of an ask that failed before a reply came.
pub(crate) fn error_label<E>(error: &ProxyError<E>) -> &'static str {
    match error {
        ProxyError::UnknownUrn { .. } => "unknown_urn",
        ProxyError::UnknownMessage { .. } => "unknown_message",
        ProxyError::UnsupportedVersion { .. } => "unsupported_version",
        ProxyError::Handler(_) => "handler_error",
        ProxyError::Panicked(_) => "panicked",
        ProxyError::Timeout(_) => "timeout",
        ProxyError::ActorStopped { .. } => "actor_stopped",
        ProxyError::NoResponse { .. } => "no_response",
        ProxyError::MailboxFull { .. } => "mailbox_full",
        ProxyError::Overloaded { .. } => "overloaded",
        ProxyError::Codec(_) => "codec_error",
        ProxyError::TooLarge(_) => "too_large",
        ProxyError::BadRequest(_) => "bad_request",
        ProxyError::Unavailable(_) => "unavailable",
        ProxyError::Redis(_) => "redis",
        ProxyError::Protocol(_) => "protocol",
        ProxyError::Config(_) => "config",
        ProxyError::Closed => "closed",
    }
}

/// A system joined a group (a shared URN or a URN pattern).
pub(crate) fn group_joined(system: &str, group: &str) {
    if is_enabled() {
        metrics::counter!("conclib_group_joins_total", "system" => system.to_owned(), "group" => group.to_owned())
            .increment(1);
    }
}

/// Requests pending on a member that is gone, taken over by this one.
pub(crate) fn group_claimed(system: &str, group: &str, entries: usize) {
    if is_enabled() {
        metrics::counter!("conclib_group_claimed_total", "system" => system.to_owned(), "group" => group.to_owned())
            .increment(entries as u64);
    }
}

/// What happened to an activation: `activated`, `passivated`, `refused` (its constructor
/// failed), `forwarded` (a request for it went to the system holding it).
pub(crate) fn activation(system: &str, pattern: &str, event: &'static str) {
    if is_enabled() {
        metrics::counter!("conclib_activations_total", "system" => system.to_owned(), "pattern" => pattern.to_owned(), "event" => event)
            .increment(1);
    }
}

/// Requests a gone system left for a pattern's URNs, moved to the members chosen to
/// activate them (`moved`)
/// or dropped because their time was up (`expired`), and how long the oldest moved one
/// had waited for the gone system (`conclib_takeover_wait_seconds`: a failover's cost to
/// its callers, `waited_ms`) (`proxy/scale/takeover.rs`).
pub(crate) fn taken_over(system: &str, pattern: &str, moved: u64, expired: u64, waited_ms: u64) {
    if is_enabled() {
        metrics::counter!("conclib_takeover_moved_total", "system" => system.to_owned(), "pattern" => pattern.to_owned())
            .increment(moved);
        metrics::counter!("conclib_takeover_expired_total", "system" => system.to_owned(), "pattern" => pattern.to_owned())
            .increment(expired);
        if moved > 0 {
            metrics::histogram!("conclib_takeover_wait_seconds", "system" => system.to_owned(), "pattern" => pattern.to_owned())
                .record(waited_ms as f64 / 1000.0);
        }
    }
}
