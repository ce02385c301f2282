//! Trace context across processes: a W3C `traceparent` carried by requests that cross
//! Redis, so that the handler of an actor in one process and the web request that asked it
//! in another share one trace id.
//!
//! With plain `tracing`, the actor's `handle` span records the fields `trace_id` and
//! `parent_span_id` (the asking side's span), and the client's ask span records `trace_id`
//! and `span_id`: search your logs by trace id to follow a request across processes. A
//! handler runs in the trace of the message it handles ([`TraceContext::current`]), so the
//! asks it sends on to other processes continue the chain.
//!
//! With the feature `otel` and a `tracing-opentelemetry` layer installed, the actor's
//! `handle` span is exported as a child of the asking side's span, and
//! [`TraceContext::current`] falls back to the OpenTelemetry context of the current
//! `tracing` span: a web handler instrumented with OpenTelemetry needs no
//! [`scope`](TraceContext::scope) of its own.
//!
//! ```
//! use conclib_core::trace::TraceContext;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A web handler continues the trace of its incoming request...
//! let incoming = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! incoming
//!     .scope(async {
//!         // ...and every ask a `ProxyClient` sends in here carries a child of it.
//!         let current = TraceContext::current().unwrap();
//!         assert_eq!(current.trace_id(), incoming.trace_id());
//!     })
//!     .await;
//! # }
//! ```

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A position in a trace: trace id, the span that is the parent of what comes next, and
/// whether the trace is sampled. Written and read as a W3C `traceparent`
/// (`00-<32 hex>-<16 hex>-<2 hex>`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// Big-endian bytes rather than a `u128` and a `u64`: a context is 25 bytes aligned to
    /// 1, and packs with what is beside it in every future that holds one (an actor's run
    /// loop does, while a handler runs).
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// 64 random bits: std's per-process random hash keys, mixed with a counter (trace ids
/// need uniqueness, not secrecy).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn nonzero_u64() -> u64 {
    loop {
        let v = random_u64();
        if v != 0 {
            return v;
        }
    }
}

impl TraceContext {
    /// The start of a new trace (random ids, sampled).
    #[must_use]
    pub fn new_root() -> Self {
        let trace_id = (u128::from(nonzero_u64()) << 64) | u128::from(random_u64());
        TraceContext {
            trace_id: trace_id.to_be_bytes(),
            span_id: nonzero_u64().to_be_bytes(),
            sampled: true,
        }
    }

    /// The same trace, with a new span id: what a step taken under this one passes on.
    #[must_use]
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: nonzero_u64().to_be_bytes(),
            ..*self
        }
    }

    /// Reads a W3C `traceparent` (version `00`; later versions by their first four
    /// fields). `None` if it is malformed or has an all-zero id, as the spec says to
    /// ignore such headers.
    #[must_use]
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !hex(version, 2)
            || version == "ff"
            || !hex(trace, 32)
            || !hex(span, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id: trace_id.to_be_bytes(),
            span_id: span_id.to_be_bytes(),
            sampled: flags & 1 == 1,
        })
    }

    /// The trace id, as 32 lowercase hex digits.
    #[must_use]
    pub fn trace_id(&self) -> String {
        format!("{:032x}", u128::from_be_bytes(self.trace_id))
    }

    /// The span id, as 16 lowercase hex digits.
    #[must_use]
    pub fn span_id(&self) -> String {
        format!("{:016x}", u64::from_be_bytes(self.span_id))
    }

    /// Whether the trace is sampled (flag `01`).
    #[must_use]
    pub fn is_sampled(&self) -> bool {
        self.sampled
    }

    /// The context the current task runs in, set by [`scope`](Self::scope) — and, inside an
    /// actor's handler, the trace of the message being handled, if it came with one (from
    /// the Redis proxy or a process actor's link), so that what the handler asks of other
    /// processes continues it; with the feature `otel`, else the OpenTelemetry context of
    /// the current `tracing` span.
    #[must_use]
    pub fn current() -> Option<Self> {
        let scoped = CURRENT.try_with(|c| *c).ok();
        #[cfg(feature = "otel")]
        let scoped = scoped.or_else(|| {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            Self::from_otel(tracing::Span::current().context().span().span_context())
        });
        scoped
    }

    /// What a request sent now passes on: a [`child`](Self::child) of the
    /// [`current`](Self::current) context, or the start of a new trace.
    #[must_use]
    pub fn next_hop() -> Self {
        Self::current().map_or_else(Self::new_root, |c| c.child())
    }

    /// What a request sent from inside `span` (the sender's span of the request: a
    /// client's `conclib.ask`) passes on: with feature `otel` and an OpenTelemetry layer,
    /// `span`'s own position when it continues the [`current`](Self::current) trace (or there
    /// is none), so that the receiving side's span is a child of an exported span; else
    /// [`next_hop`](Self::next_hop).
    #[must_use]
    pub fn next_hop_from(span: &tracing::Span) -> Self {
        let hop = Self::current();
        #[cfg(feature = "otel")]
        {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            if let Some(own) = Self::from_otel(span.context().span().span_context())
                && hop.is_none_or(|h| h.trace_id == own.trace_id)
            {
                return own;
            }
        }
        #[cfg(not(feature = "otel"))]
        let _ = span;
        hop.map_or_else(Self::new_root, |c| c.child())
    }

    /// This position as an OpenTelemetry remote span context (feature `otel`).
    #[cfg(feature = "otel")]
    #[must_use]
    pub fn to_otel(&self) -> opentelemetry::trace::SpanContext {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            if self.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::NONE,
        )
    }

    /// The position of an OpenTelemetry span context, if it is valid (feature `otel`).
    #[cfg(feature = "otel")]
    #[must_use]
    pub fn from_otel(context: &opentelemetry::trace::SpanContext) -> Option<Self> {
        context.is_valid().then(|| TraceContext {
            trace_id: context.trace_id().to_bytes(),
            span_id: context.span_id().to_bytes(),
            sampled: context.is_sampled(),
        })
    }

    /// Runs `fut` with this as the [`current`](Self::current) context.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

/// Runs `f` (one poll of a handler) with `trace`, if any, as the current context.
#[inline]
pub(crate) fn in_scope<R>(trace: Option<TraceContext>, f: impl FnOnce() -> R) -> R {
    match trace {
        Some(trace) => CURRENT.sync_scope(trace, f),
        None => f(),
    }
}

/// The `traceparent` form.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            u128::from_be_bytes(self.trace_id),
            u64::from_be_bytes(self.span_id),
            u8::from(self.sampled)
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    #[test]
    fn traceparents_round_trip_and_bad_ones_are_ignored() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(tp).unwrap();
        assert_eq!(ctx.to_string(), tp);
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id(), "00f067aa0ba902b7");
        assert!(ctx.is_sampled());
        let child = ctx.child();
        assert_eq!(child.trace_id(), ctx.trace_id());
        assert_ne!(child.span_id(), ctx.span_id());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version with more fields is read by its first four.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")
                .is_some()
        );
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(TraceContext::parse(&a.to_string()), Some(a));
    }
}
