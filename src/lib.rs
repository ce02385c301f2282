//! # conclib
//!
//! Actors with names for Rust services that many processes talk to.
//!
//! - **Actors with URNs**: typed `tell`/`ask` with timeouts; errors and panics in a handler
//!   come back to the asker as errors and never take the process down.
//! - **Macros**: [`macro@message`] and [`macro@actor`] turn plain structs and methods into
//!   messages and handlers.
//! - **Redis proxy** (feature `redis`): code outside the actor system — another process,
//!   another machine — asks actors by URN through Redis and gets the typed answer back.
//! - **API daemons** (feature `apid`): launch a web server as a child process and wait until
//!   its health check answers.
//!
//! This crate re-exports [`conclib_core`] (the runtime) and [`conclib_macros`].
//!
//! ```
//! use conclib::{ActorSystem, Context, Handler, Actor, Message};
//! use std::convert::Infallible;
//!
//! struct Counter(u64);
//! impl Actor for Counter {}
//!
//! struct Add(u64);
//! impl Message for Add { type Response = u64; type Error = Infallible; }
//! impl Handler<Add> for Counter {
//!     async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> Result<u64, Infallible> {
//!         self.0 += n;
//!         Ok(self.0)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let system = ActorSystem::new("app");
//! let counter = system.spawn(Counter(0)).await.unwrap();
//! assert_eq!(counter.ask(Add(2)).await.unwrap(), 2);
//! # }
//! ```

pub use conclib_core::*;

/// The Redis proxy: ask actors by URN from other processes (feature `redis`).
#[cfg(feature = "redis")]
pub use conclib_redis as redis;

/// Launch and supervise web servers as child processes (feature `apid`).
#[cfg(feature = "apid")]
pub use conclib_apid as apid;
