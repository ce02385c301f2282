//! The macros add no warnings to user code, even under `clippy::pedantic`: this file denies
//! them all (checked by `cargo clippy --all-targets -- -D warnings`) and uses every form.
#![deny(warnings, clippy::pedantic)]

use std::marker::PhantomData;
use std::time::Duration;

use conclib::context::StreamId;
use conclib::{ActorSystem, Context, StopReason, SupervisionEvent, actor, message};
use serde::{Deserialize, Serialize};

/// A request exposed to other processes.
#[message(response = Reply, error = Refused, name = "pedantic.request")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// A value only read, never moved.
    pub text: String,
}

/// The answer to a [`Request`].
#[message]
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub usize);

/// Why a [`Request`] was refused.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused;

/// A generic message.
#[message(response = Option<T>)]
pub struct Swap<T>(pub T);

/// An enum message.
#[message(response = u32)]
pub enum Command {
    /// Count one.
    Tick,
    /// Count many.
    Ticks(u32),
}

/// A message with no response.
#[message]
pub struct Nudge;

/// A public, generic actor.
#[actor(urn = "pedantic", mailbox = 8)]
pub struct Pedantic<T> {
    ticks: u32,
    last: Option<T>,
    _marker: PhantomData<T>,
}

#[actor]
impl<T: Clone + Send + 'static> Pedantic<T> {
    /// Makes one.
    #[must_use]
    pub fn new() -> Self {
        Pedantic {
            ticks: 0,
            last: None,
            _marker: PhantomData,
        }
    }

    /// Async, fallible, with the context; the message is only read.
    ///
    /// # Errors
    /// [`Refused`] for an empty text.
    #[handle(remote)]
    pub async fn request(
        &mut self,
        request: Request,
        ctx: &mut Context<Self>,
    ) -> Result<Reply, Refused> {
        let _ = ctx.id();
        if request.text.is_empty() {
            Err(Refused)
        } else {
            Ok(Reply(request.text.len()))
        }
    }

    /// Sync, infallible, generic message.
    #[handle]
    pub fn swap(&mut self, Swap(value): Swap<T>) -> Option<T> {
        self.last.replace(value)
    }

    /// An enum message.
    #[handle]
    pub fn command(&mut self, command: Command) -> u32 {
        self.ticks += match command {
            Command::Tick => 1,
            Command::Ticks(n) => n,
        };
        self.ticks
    }

    /// Uses neither `self` nor the message, and awaits nothing.
    #[handle]
    async fn nudge(&mut self, _nudge: Nudge) {}

    /// Read-only helper, kept as is.
    #[must_use]
    pub fn ticks(&self) -> u32 {
        self.ticks
    }

    #[on_start]
    async fn start(&mut self, ctx: &mut Context<Self>) -> Result<(), std::io::Error> {
        let _ = ctx.id();
        Ok(())
    }

    #[on_stop]
    fn stop(&mut self, reason: &StopReason) {
        let _ = reason;
    }

    #[on_panic]
    fn panicked(&mut self, message: &str) {
        let _ = message;
    }

    #[on_event]
    fn event(&mut self, _ctx: &mut Context<Self>, event: SupervisionEvent) {
        let _ = event;
    }

    #[on_stream_finished]
    fn stream_finished(&mut self, id: StreamId) {
        let _ = id;
    }
}

impl<T: Clone + Send + 'static> Default for Pedantic<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[tokio::test]
async fn pedantic_actor_works() {
    let system = ActorSystem::new("pedantic");
    let actor = system.spawn(Pedantic::<u8>::new()).await.unwrap();
    let request = Request {
        text: "four".to_owned(),
    };
    assert_eq!(actor.ask(request.clone()).await, Ok(Reply(4)));
    assert_eq!(actor.ask(Swap(1)).await, Ok(None));
    assert_eq!(actor.ask(Swap(2)).await, Ok(Some(1)));
    assert_eq!(actor.ask(Command::Tick).await, Ok(1));
    assert_eq!(actor.ask(Command::Ticks(2)).await, Ok(3));
    actor.tell(Nudge).await.unwrap();
    assert_eq!(Pedantic::<u8>::default().ticks(), 0);
    let by_name = system.lookup("pedantic").unwrap();
    assert_eq!(by_name.remote_messages()[0].name(), "pedantic.request");
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}
