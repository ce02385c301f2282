//! Runtime-wide messages: every actor handles them (blanket impls over
//! [`Actor`](crate::Actor), beside [`Handler`](crate::Handler)), between
//! its own messages and in its own mailbox, so the runtime needs no second channel to an
//! actor. Their wire names (`conclib::...`) are reserved.
//!
//! - [`Heartbeat`]: "are you responsive?" (a pool's dead-man's switch, a process actor's
//!   link); answered by [`Actor::heartbeat`](crate::Actor::heartbeat).
//! - [`StreamFinished`]: a stream attached with
//!   [`Context::attach_stream`](crate::Context::attach_stream) ended; handled by calling
//!   [`Actor::on_stream_finished`](crate::Actor::on_stream_finished).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::message::Message;

/// Identifies a stream attached with [`Context::attach_stream`](crate::Context::attach_stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(u64);

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

impl StreamId {
    /// A new stream's id.
    pub(crate) fn next() -> Self {
        StreamId(NEXT_STREAM.fetch_add(1, Ordering::Relaxed))
    }
}

/// The dead-man's switch's question; every actor answers it (between messages).
pub(crate) struct Heartbeat;
impl Message for Heartbeat {
    type Response = ();
    type Error = std::convert::Infallible;
    fn name() -> &'static str {
        "conclib::Heartbeat"
    }
}

/// The internal message that says a stream ended; handled by calling the hook.
pub(crate) struct StreamFinished(pub(crate) StreamId);

impl Message for StreamFinished {
    type Response = ();
    type Error = std::convert::Infallible;
    fn name() -> &'static str {
        "conclib::StreamFinished"
    }
}
