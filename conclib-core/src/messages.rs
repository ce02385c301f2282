//! Runtime-wide messages: every actor handles them (blanket impls over [`Actor`]), between
//! its own messages and in its own mailbox, so the runtime needs no second channel to an
//! actor. Their wire names (`conclib::...`) are reserved.
//!
//! - [`Heartbeat`]: "are you responsive?" (a pool's dead-man's switch, a process actor's
//!   link); answered by [`Actor::heartbeat`].
//! - [`StreamFinished`]: a stream attached with `Context::add_stream` ended; handled by
//!   calling [`Actor::on_stream_finished`].

use crate::actor::Actor;
use crate::context::{Context, StreamId};
use crate::handler::Handler;
use crate::message::Message;

/// The dead-man's switch's question; every actor answers it (between messages).
pub(crate) struct Heartbeat;
impl Message for Heartbeat {
    type Response = ();
    type Error = std::convert::Infallible;
    fn name() -> &'static str {
        "conclib::Heartbeat"
    }
}

impl<A: Actor> Handler<Heartbeat> for A {
    async fn handle(
        &mut self,
        _: Heartbeat,
        _: &mut Context<Self>,
    ) -> Result<(), std::convert::Infallible> {
        self.heartbeat().await;
        Ok(())
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

impl<A: Actor> Handler<StreamFinished> for A {
    async fn handle(
        &mut self,
        msg: StreamFinished,
        ctx: &mut Context<Self>,
    ) -> Result<(), std::convert::Infallible> {
        self.on_stream_finished(ctx, msg.0).await;
        Ok(())
    }
}
