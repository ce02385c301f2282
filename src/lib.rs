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
//!   Feature `msgpack` adds its MessagePack codec, what clients in other languages speak
//!   (the Python package in `python/`).
//! - **API daemons** (feature `apid`): launch a web server as a child process and wait until
//!   its health check answers.
//! - **Process actors** (feature `process`): an actor in an OS process of its own behind a
//!   typed ref, for all cores and crash isolation; in a system, with a URN, reached by
//!   lookup, the Redis proxy and pools like any actor.
//! - **Observability**: [`metrics`] through the `metrics` facade, [`ActorSystem::snapshot`],
//!   and (feature `view`) a live web view of every system on one Redis; feature
//!   `prometheus` serves the metrics; [`trace`] carries a trace across processes (feature
//!   `otel`: into an OpenTelemetry export).
//! - **Pools** ([`ActorSystem::pool`]): N actors (in-process, or process actors) behind one
//!   ref and one URN, with routing,
//!   back-pressure, replacement and resizing. **Whole-system queries**:
//!   [`ActorSystem::all_actors`], [`ActorSystem::broadcast`].
//!
//! This crate re-exports [`conclib_core`] (the runtime) and [`conclib_macros`]: the names most
//! programs use at its root (or `use conclib::prelude::*`), the rest in modules by topic
//! ([`request`], [`error`], [`system`], [`pool`], [`snapshot`], [`remote`], ...).
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
//!
//! The same counter with the macros, which also let it answer by URN
//! ([`ActorSystem::lookup`]):
//!
//! ```
//! use conclib::{ActorSystem, actor, message};
//!
//! #[message(response = u64)]
//! struct Add(u64);
//!
//! #[actor(urn = "counter")]
//! struct Counter(u64);
//!
//! #[actor]
//! impl Counter {
//!     #[handle]
//!     fn add(&mut self, Add(n): Add) -> u64 {
//!         self.0 += n;
//!         self.0
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let system = ActorSystem::new("app");
//! let counter = system.spawn(Counter(0)).await.unwrap();
//! assert_eq!(counter.ask(Add(2)).await.unwrap(), 2);
//! assert_eq!(system.lookup("counter").unwrap().ask(Add(1)).await.unwrap(), 3);
//! # }
//! ```

// The root: what almost every program names. Everything else is in a module by topic below
// (`conclib::pool`, `conclib::snapshot`, ...); `prelude` is the usual import.
pub use conclib_core::{
    Actor, ActorId, ActorRef, ActorSystem, Address, AskError, AskRequest, BoxError, Context,
    DynActorRef, Handler, LookupError, MailboxConfig, Message, PanicPolicy, Pool, Priority,
    ProcessExit, Recipient, RequestEnvelope, Requester, RestartLimit, Routing, SendError,
    SpawnError, StopReason, SupervisionEvent, SupervisionStrategy, TellRequest, Urn,
};
pub use conclib_core::{metrics, trace};

#[doc(hidden)]
pub use conclib_core::__private;

/// What a typical program imports: `use conclib::prelude::*;`.
///
/// ```
/// use conclib::prelude::*;
///
/// #[actor]
/// struct Counter(u64);
///
/// #[actor]
/// impl Counter {
///     #[handle]
///     fn add(&mut self, n: u64) -> u64 {
///         self.0 += n;
///         self.0
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("app");
/// let counter: ActorRef<Counter> = system.spawn(Counter(0)).await.unwrap();
/// assert_eq!(counter.add(2).await, Ok(2));
/// assert_eq!(counter.ask(Add { n: 1 }).priority(Priority::High).await, Ok(3));
/// assert!(matches!(counter.add(1).await, Ok(4) | Err(AskError::Timeout(_))));
/// # }
/// ```
pub mod prelude {
    pub use crate::{actor, message};
    pub use conclib_core::{
        Actor, ActorRef, ActorSystem, AskError, Context, Handler, Message, Priority, Requester,
        StopReason,
    };
}

/// Asks and tells, whatever the ref: the one request shape ([`AskRequest`], [`TellRequest`])
/// and what a kind of ref implements to be asked ([`DeliverAsk`](request::DeliverAsk),
/// [`DeliverTell`](request::DeliverTell)).
pub mod request {
    pub use conclib_core::{
        Address, AskFuture, AskRequest, DeliverAsk, DeliverTell, DynAskFuture, DynTellFuture,
        KeyRouted, Priority, Recipient, Requester, SendOptions, TellFuture, TellRequest,
    };
}

/// The errors of sending, asking, spawning and looking up actors.
pub mod error {
    pub use conclib_core::{
        AskError, BoxError, LookupError, ProcessExit, SendError, ShutdownTimedOut, SpawnError,
        StopReason, UrnError,
    };
}

/// The actor system and spawning: [`ActorSystem`], its spawn builder, what it reports about
/// its actors and its URN journal, whole-system broadcasts.
pub mod system {
    pub use conclib_core::{
        ActorId, ActorInfo, ActorSystem, BroadcastOutcome, DEFAULT_ASK_TIMEOUT,
        DEFAULT_HIBERNATE_AFTER, Delivery, SpawnBuilder, URN_JOURNAL_CAPACITY, UrnChanges,
    };
}

/// What an actor's handler gets besides its message: the [`Context`], its timers and streams.
pub mod context {
    pub use conclib_core::{Context, StreamId, TimerHandle};
}

/// Mailboxes: bounded (the default) or unbounded.
pub mod mailbox {
    pub use conclib_core::{DEFAULT_MAILBOX_CAPACITY, MailboxConfig};
}

/// Supervision: what a panic does, restart limits, what parents hear.
pub mod supervision {
    pub use conclib_core::{PanicPolicy, RestartLimit, SupervisionEvent, SupervisionStrategy};
}

/// Pools: N actors behind one ref and one URN ([`ActorSystem::pool`]).
pub mod pool {
    pub use conclib_core::{
        MemberLoad, Pool, PoolBuilder, PoolStats, PoolSupervisor, Routing, WhenFull,
    };
}

/// URNs: the names actors are reached by from anywhere.
pub mod urn {
    pub use conclib_core::{MAX_URN_LEN, Urn, UrnError, validate_urn, validate_urn_const};
}

/// Sending without the actor's type: refs by URN ([`DynActorRef`]), the requests they carry
/// ([`RequestEnvelope`]) and how they are answered.
pub mod dynamic {
    pub use conclib_core::{
        AskHandle, DynActorRef, ErasedRequest, ErasedResponder, ErasedResult, Fence, QueuedAsk,
        RequestEnvelope, Responder,
    };
}

/// Messages that cross processes. Four names, four questions:
///
/// | name | kind | says |
/// |---|---|---|
/// | [`MessageDecl`](remote::MessageDecl) | trait of a message | what its error is on the wire (`type WireError`; [`NoError`](remote::NoError) when it cannot fail); `#[message]` implements it |
/// | [`RemoteReply`](remote::RemoteReply) | trait of a message (blanket) | its response and wire error are serde types both ways: an ask from another process can be answered |
/// | [`RemoteHandler<M>`](remote::RemoteHandler) | trait of an actor | the actor exposes `M` to other processes (`#[handle(remote)]`): a remote ref may send it |
/// | [`ExposedMessage`](remote::ExposedMessage) | value | one entry of [`Actor::REMOTE`], the actor's table of exposed messages with their codec functions |
pub mod remote {
    pub use conclib_core::{
        ErasedMessage, ExposedMessage, IntoHandlerError, MessageDecl, NoError, RemoteHandler,
        RemoteReply,
    };
}

/// What [`ActorSystem::snapshot`] reports: every actor's figures, pools, external actors.
pub mod snapshot {
    pub use conclib_core::{
        ActorBrief, ActorSnapshot, ActorState, ExternalProbe, ExternalReport, HANDLING_BUCKETS,
        MAX_BRIEF_ACTORS, MessageTotals, PoolMemberSnapshot, PoolSnapshot, SnapshotChanges,
        SystemSnapshot,
    };
}

/// Child processes that die with this process (Unix): what the Redis and API daemons start
/// their servers with.
#[cfg(unix)]
pub mod child {
    pub use conclib_core::child::*;
}

/// Makes a struct or an enum a message: implements [`Message`] for it.
///
/// ```
/// use conclib::{Message, message};
/// use serde::{Deserialize, Serialize};
///
/// /// Asks for the balance: answered with a `u64`, cannot fail.
/// #[message(response = u64)]
/// struct Balance;
///
/// /// Withdraws: answered with the new balance, or fails with `Overdrawn`.
/// #[message(response = u64, error = Overdrawn)]
/// #[derive(Serialize, Deserialize)]
/// struct Withdraw {
///     amount: u64,
/// }
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Overdrawn {
///     missing: u64,
/// }
///
/// /// Only told, never asked: no response (`()`), under a wire name of its own.
/// #[message(name = "bank.audit")]
/// enum Audit {
///     Daily,
///     Full { since: u64 },
/// }
///
/// /// Generic messages work too.
/// #[message(response = Option<T>)]
/// struct Replace<T>(T);
///
/// /// A second version of a message's fields (an optional field added).
/// #[message(name = "Deposit", version = 2)]
/// struct DepositV2 {
///     amount: u64,
///     note: Option<String>,
/// }
///
/// assert_eq!(Withdraw::name(), "Withdraw");
/// assert_eq!(Audit::name(), "bank.audit");
/// assert_eq!(Replace::<u32>::name(), "Replace<u32>");
/// assert_eq!((Withdraw::version(), DepositV2::version()), (1, 2));
/// ```
///
/// # Options
///
/// | option | default | meaning |
/// |---|---|---|
/// | `response = Type` | `()` | what a successful ask returns ([`Message::Response`]) |
/// | `error = Type` | [`std::convert::Infallible`] | what the handler may fail with instead ([`Message::Error`]); `Debug + Send + 'static` |
/// | `name = "..."` | the type's name | the wire name ([`Message::name`]) |
/// | `version = N` | 1 | the version of its fields ([`Message::version`]): a member of another build routes a request of another version to one that decodes it (README, "Upgrading a running cluster") |
/// | `crate = path` | from `Cargo.toml` | where the `conclib` crate is, if the macro cannot find it (a re-export) |
///
/// Any other key is an error that lists these.
///
/// # The wire name
///
/// [`DynActorRef`]s, [`RequestEnvelope`]s and the Redis proxy say which message a request
/// holds by its wire name. The default is the type's bare identifier (`"Withdraw"`), not its
/// path: moving the type to another module or crate keeps the name, so other processes keep
/// reaching it. Renaming the type changes it; pin it with `name = "..."` if clients already
/// use it. A generic message is named per instantiation: the identifier, then the type
/// arguments by [`std::any::type_name`] and the const arguments by value (`"Replace<u32>"`);
/// `name = "..."` on a generic message names all its instantiations alike. Names must be
/// unique among the messages one actor exposes: an actor with a URN whose exposed messages
/// share one is refused at its spawn (`SpawnError::DuplicateWireName`).
///
/// # Requirements
///
/// A message travels to another task, so it is `Send + 'static`: a lifetime parameter is a
/// compile error, and each type parameter `T` gets the bound `T: Send + 'static`. The
/// attribute goes on a struct or an enum; on anything else it is a compile error.
///
/// <details><summary>What <code>#[message(response = u64, error = Overdrawn)] struct Withdraw</code> expands to</summary>
///
/// ```ignore
/// struct Withdraw { amount: u64 }
///
/// impl ::conclib::__private::Message for Withdraw {
///     type Response = u64;
///     type Error = Overdrawn;
///     fn name() -> &'static str { "Withdraw" }
/// }
///
/// // Hidden: how the error travels to other processes, for `#[handle(remote)]`
/// // (`NoError` when the message cannot fail).
/// impl ::conclib::__private::MessageDecl for Withdraw {
///     type WireError = Overdrawn;
/// }
/// ```
///
/// For `struct Replace<T>`, the impls are `impl<T> ... for Replace<T> where T: Send + 'static`
/// and `name()` builds `"Replace<...>"` once per instantiation.
/// </details>
pub use conclib_macros::message;

/// Makes a struct or an enum an actor, and the methods of its impl block its handlers.
///
/// `#[actor]` goes in two places: on the type, with the actor's options, and on one inherent
/// impl block, whose `#[handle]` methods become [`Handler`] impls and whose hook methods
/// (`#[on_start]`, ...) become the [`Actor`] hooks.
///
/// ```
/// use conclib::{ActorSystem, AskError, Context, StopReason, actor, message};
/// use serde::{Deserialize, Serialize};
///
/// #[message(response = u64, error = Overdrawn)]
/// #[derive(Serialize, Deserialize)]
/// struct Withdraw(u64);
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Overdrawn;
///
/// #[message]
/// struct Deposit(u64);
///
/// #[message(response = u64)]
/// struct Balance;
///
/// /// An account, reachable by URN.
/// #[actor(urn = "bank:account", mailbox = 64)]
/// struct Account {
///     balance: u64,
/// }
///
/// #[actor]
/// impl Account {
///     /// Sync and fallible: `Err` goes back to the asker. Exposed to other processes.
///     #[handle(remote)]
///     fn withdraw(&mut self, Withdraw(amount): Withdraw) -> Result<u64, Overdrawn> {
///         self.balance = self.balance.checked_sub(amount).ok_or(Overdrawn)?;
///         Ok(self.balance)
///     }
///
///     /// Async, with the context; no response.
///     #[handle]
///     async fn deposit(&mut self, Deposit(amount): Deposit, ctx: &mut Context<Self>) {
///         self.balance += amount;
///         println!("{} now holds {}", ctx.id(), self.balance);
///     }
///
///     #[handle]
///     fn balance(&mut self, _: Balance) -> u64 {
///         self.balance
///     }
///
///     #[on_stop]
///     fn closed(&mut self, reason: &StopReason) {
///         println!("closed with {} ({reason})", self.balance);
///     }
///
///     /// Not a handler: an ordinary method.
///     fn is_empty(&self) -> bool {
///         self.balance == 0
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("bank");
/// let account = system.spawn(Account { balance: 10 }).await.unwrap(); // URN from the attribute
/// account.tell(Deposit(5)).await.unwrap();
/// assert_eq!(account.ask(Withdraw(3)).await, Ok(12));
/// assert_eq!(account.ask(Withdraw(100)).await, Err(AskError::Handler(Overdrawn)));
///
/// // By URN, type-checked at run time; only `remote` messages are offered to other processes.
/// let by_urn = system.lookup("bank:account").unwrap();
/// assert_eq!(by_urn.ask(Balance).await, Ok(12));
/// assert_eq!(by_urn.remote_messages()[0].name(), "Withdraw");
/// # }
/// ```
///
/// # The method-call API
///
/// A `#[handle]` method whose arguments are plain values (none, one or several) declares its
/// message itself: `fn add(&mut self, n: u64) -> u64` generates `struct Add { n: u64 }`
/// answering `u64` (named after the method in UpperCamelCase, its fields after the
/// arguments, its docs the method's). Every `#[handle]` method, of either form, also becomes
/// a method of the generated trait **`{Actor}Api`**, implemented for every ref to the actor
/// ([`Address`]): a local [`ActorRef`], a process actor's ref, a remote handle through Redis
/// (`client.actor::<Counter>("urn")`). Each method returns that ref's ask builder:
/// `.await` asks; `.timeout(..)`, `.priority(..)` and `.tell()` work as on `ask`.
///
/// ```
/// use conclib::{ActorSystem, Context, Priority, actor};
/// use std::time::Duration;
///
/// #[actor]
/// struct Counter { total: u64 }
///
/// #[actor]
/// impl Counter {
///     /// Adds `n`; returns the new total.
///     #[handle(remote)]
///     fn add(&mut self, n: u64) -> u64 { self.total += n; self.total }
///
///     #[handle]
///     async fn reset(&mut self, ctx: &mut Context<Self>) { self.total = 0; }
///
///     #[handle]
///     fn withdraw(&mut self, n: u64) -> Result<u64, String> {
///         self.total = self.total.checked_sub(n).ok_or("overdrawn")?;
///         Ok(self.total)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // `CounterApi` is generated next to `Counter`: bring it into scope where you call.
/// let system = ActorSystem::new("app");
/// let counter = system.spawn(Counter { total: 0 }).await.unwrap();
/// assert_eq!(counter.add(5).await.unwrap(), 5);                                 // ask
/// assert_eq!(counter.add(1).timeout(Duration::from_millis(50)).await.unwrap(), 6);
/// assert_eq!(counter.add(1).priority(Priority::High).await.unwrap(), 7);
/// counter.reset().tell().await.unwrap();                                      // a tell
/// assert!(counter.withdraw(1).await.is_err());                                // `AskError::Handler`
/// assert_eq!(counter.ask(Add { n: 2 }).await.unwrap(), 2);                    // the message itself
/// # }
/// ```
///
/// Rules, all checked at compile time:
/// - **Which form.** A method whose only argument (besides the context) has a type named like
///   a struct (`msg: Ping`, `Withdraw(n): Withdraw`) handles that message type. Any other
///   shape generates a message: no argument, several, or one whose type is a primitive, a
///   reference-free `std` value type (`String`, `Vec<T>`, `Option<T>`, `Duration`, ...) or a
///   type parameter of the impl block. `#[handle(name = "AddItem")]` names the generated
///   message and forces this form (for a single argument of your own type: `point: Point`).
/// - **The generated message** is a message like any other: [`Message`] with the return type
///   as response (a `Result<T, E>`, written in full, makes `T` the response and `E` the
///   error); with `remote`, serde's `Serialize`/`Deserialize` are derived, and its wire name
///   is the struct's name. It carries the impl block's generic parameters when an argument or
///   the return type names one. Arguments are moved into it: no references, no `impl Trait`,
///   no `Self`, each named by a plain identifier, each `Send + 'static` (and serde, for
///   `remote`).
/// - **Visibility.** The trait and the generated messages (and their fields) are as visible as
///   the most visible `#[handle]` method: write `pub fn` to export the API.
/// - **Names.** A method cannot be named like a method the refs or the request builders
///   already have (`ask`, `tell`, `try_ask`, `try_tell`, `timeout`, `priority`, `stop`, `kill`,
///   `wait_for_stop`, `id`, `urn`, `is_alive`, `mailbox_len`, `asks_skipped`, `recipient`,
///   `to_dyn`, `pid`, `restarts`, a pool's `stats`, `members`, `resize` and `broadcast`, a
///   remote handle's `client`, `clone`, `into_future`, `poll`, and the methods of the std
///   prelude's traits: `eq`, `ne`, `into`, `try_into`, `to_owned`, `clone_into`,
///   `clone_from`): the ref's own method would hide it. (A method named `request` is allowed;
///   where `conclib::prelude` is imported, call it as `{Actor}Api::request(&actor, ..)`, as its
///   `Requester::request` makes `actor.request(..)` ambiguous.) Two methods cannot generate
///   the same message name.
/// - **On a remote handle or a process ref** only serde messages (the `remote` ones) can be
///   sent; calling another method there is a compile error naming [`Requester`].
///
/// The message-struct form stays the way to share messages between crates and with clients in
/// other languages, which see the struct and its wire name.
///
/// # On the struct or enum: options
///
/// | option | default | meaning |
/// |---|---|---|
/// | `urn = "..."` | none | [`Actor::URN`]: the URN `spawn` gives the actor. A string literal, checked at compile time like [`validate_urn`](urn::validate_urn) (1 to [`MAX_URN_LEN`](urn::MAX_URN_LEN) bytes, no whitespace or control characters) |
/// | `mailbox = 64` / `mailbox = unbounded` | `Bounded(`[`DEFAULT_MAILBOX_CAPACITY`](mailbox::DEFAULT_MAILBOX_CAPACITY)`)` | [`Actor::MAILBOX`]: an integer literal of at least 1, or `unbounded` |
/// | `cancel_on_timeout` | off | [`Actor::CANCEL_ON_TIMEOUT`]: an ask's handler is dropped at its next `.await` once its asker gave up (its timeout passed), and the next message runs |
/// | `crate = path` | from `Cargo.toml` | where the `conclib` crate is |
///
/// The options go on the type so that they sit with its definition; the impl block reads them,
/// and forgetting `#[actor]` on the type is a compile error that says so. The spawn builder
/// ([`ActorSystem::build`]) can still override both.
///
/// One impl block per type carries `#[actor]`: every handler and hook goes in it (other
/// methods may live in impl blocks without the attribute). A second `#[actor]` impl block
/// for the same type fails to compile, first with "the name `CounterApi` is defined
/// multiple times" at both attributes for a type `Counter` (its generated API trait; see
/// `tests/ui/fail/two_actor_impl_blocks.rs`): merge the two blocks.
///
/// # On the impl block: handlers
///
/// Each `#[handle]` method handles one message type: the type of its message argument, or the
/// message it generates from its arguments (see above):
///
/// ```text
/// #[handle] [async] fn name(&mut self, msg: M [, ctx: &mut Context<Self>]) [-> R]
/// #[handle] [async] fn name(&mut self, a: A, b: B, .. [, ctx: &mut Context<Self>]) [-> R]
/// ```
///
/// - `&mut self` first; then the message by value (any pattern: `Withdraw(amount): Withdraw`),
///   or the plain arguments; the context is optional and may come anywhere (it is recognized
///   by its type, `&mut Context<..>`).
/// - Sync or `async`. An async handler keeps `&mut self` across `.await`; its future must be
///   `Send`.
/// - **Fallible or not is decided by the syntax of the return type**: a type whose last path
///   segment is `Result` (`Result<R, E>`, `std::io::Result<R>`, ...) makes the handler
///   fallible, and it must be `Result<M::Response, M::Error>`; `Err` reaches the asker as
///   [`AskError::Handler`]. Any other return type (or none, for `()`) is the response itself,
///   wrapped in `Ok`. For a message whose response is itself a `Result`, name it through an
///   alias (`type Outcome = Result<u32, String>;` then `-> Outcome`).
/// - `#[handle(remote)]` also lists the message in [`Actor::REMOTE`], so that other processes
///   can send it through a proxy. It is explicit: nothing else is exposed. The message must
///   be `Deserialize`, its response and error `Serialize`; otherwise the compile error says
///   which one is missing.
/// - One handler per message type; the method stays callable as an ordinary method, with its
///   docs and attributes (a `#[cfg]` on it applies to the generated impls too).
///
/// The generated [`Actor::accepts`] and [`Actor::handle_request`] cover the `#[handle]`
/// methods, so [`DynActorRef`]s and proxies reach the same handlers as typed refs. A
/// `Handler` written by hand next to the macro serves typed refs only.
///
/// # On the impl block: hooks
///
/// At most one method of each; the context and the argument are optional, sync or `async`:
///
/// | attribute | form | runs |
/// |---|---|---|
/// | `#[on_start]` | `fn f(&mut self, ctx: &mut Context<Self>) [-> Result<(), E>]` | before the first message; an `Err` (any `E: Into<BoxError>`) makes `spawn` fail |
/// | `#[on_stop]` | `fn f(&mut self, ctx: &mut Context<Self>, reason: &StopReason) [-> Result<(), E>]` | once, when the actor stops; an `Err` (or a panic) makes the stop reason [`StopReason::StopFailed`] |
/// | `#[on_panic]` | `fn f(&mut self, ctx: &mut Context<Self>, message: &str)` | after a handler panicked, before the [`PanicPolicy`] applies |
/// | `#[on_event]` | `fn f(&mut self, ctx: &mut Context<Self>, event: SupervisionEvent)` | for each [`SupervisionEvent`]; **replaces** the default, which escalates a child's [`StopReason::RestartLimit`] (call [`Context::escalate`] to keep that) |
/// | `#[on_stream_finished]` | `fn f(&mut self, ctx: &mut Context<Self>, id: StreamId)` | when a stream from [`Context::attach_stream`] ended |
///
/// # Generic actors, and options of the impl block
///
/// Generic actors work: `impl<T: Send + 'static> Store<T> { .. }` gives
/// `impl<T: Send + 'static> Actor for Store<T>` and its handlers. The impl block takes one
/// option, `#[actor(crate = path)]`.
///
/// # Compile errors
///
/// The macros check their input and point at the offending code: `#[actor]` on a trait impl,
/// a `#[handle]` method without `&mut self` (or taking `self` by value), two handlers for one
/// message, two methods generating one message name, a generated message's argument that is a
/// reference, unnamed or `impl Trait`, a method named like a ref's own method, a `Result`
/// return written through an alias, a hook with the wrong form, an unknown option, a URN that is not
/// a string literal or not valid. The compiler then checks the rest with messages in the same
/// terms: a return type that is not the message's response, a type that is not a message, a
/// non-`Send` async handler, a remote message that cannot be serialized, asking an actor with
/// a message it does not handle.
///
/// <details><summary>What the example expands to</summary>
///
/// ```ignore
/// struct Account { balance: u64 }
///
/// impl ::conclib::__private::ActorOptions for Account {
///     const URN: Option<&'static str> = Some("bank:account");
///     const MAILBOX: ::conclib::__private::MailboxConfig = ::conclib::__private::MailboxConfig::Bounded(64);
///     const CANCEL_ON_TIMEOUT: bool = false;
/// }
///
/// impl Account {
///     // The methods as written, without the #[handle] and hook attributes.
///     fn withdraw(&mut self, Withdraw(amount): Withdraw) -> Result<u64, Overdrawn> { .. }
///     async fn deposit(&mut self, Deposit(amount): Deposit, ctx: &mut Context<Self>) { .. }
///     fn balance(&mut self, _: Balance) -> u64 { .. }
///     fn closed(&mut self, reason: &StopReason) { .. }
///     fn is_empty(&self) -> bool { .. }
/// }
///
/// impl ::conclib::__private::Handler<Withdraw> for Account {
///     async fn handle(&mut self, msg: Withdraw, _: &mut ::conclib::__private::Context<Self>)
///         -> Result<<Withdraw as Message>::Response, <Withdraw as Message>::Error>
///     {
///         let output = Self::withdraw(self, msg);
///         // Checks that the method returns `Result<Response, Error>`, else says so.
///         ::conclib::__private::result::<Withdraw, Result<u64, Overdrawn>>(output)
///     }
/// }
///
/// impl ::conclib::__private::Handler<Deposit> for Account {
///     async fn handle(&mut self, msg: Deposit, ctx: &mut ::conclib::__private::Context<Self>)
///         -> Result<<Deposit as Message>::Response, <Deposit as Message>::Error>
///     {
///         // Checks that the future is `Send`, at the method.
///         let output = ::conclib::__private::handler_future(Self::deposit(self, msg, ctx)).await;
///         ::conclib::__private::response::<Deposit, ()>(output) // `Ok(output)`, checked
///     }
/// }
///
/// // ... and the same for `Balance`.
///
/// impl ::conclib::__private::Actor for Account {
///     const URN: Option<&'static str> = <Self as ::conclib::__private::ActorOptions>::URN;
///     const MAILBOX: ::conclib::__private::MailboxConfig = <Self as ::conclib::__private::ActorOptions>::MAILBOX;
///     const CANCEL_ON_TIMEOUT: bool = <Self as ::conclib::__private::ActorOptions>::CANCEL_ON_TIMEOUT;
///     const REMOTE: &'static [::conclib::__private::ExposedMessage] =
///         &[::conclib::__private::remote_entry::<Withdraw>()]; // `ExposedMessage::of::<Withdraw>()`
///
///     async fn on_stop(
///         &mut self,
///         _: &mut ::conclib::__private::Context<Self>,
///         reason: &::conclib::__private::StopReason,
///     ) -> ::core::result::Result<(), ::conclib::__private::BoxError> {
///         Self::closed(self, reason);
///         ::core::result::Result::Ok(())
///     }
///
///     fn accepts(message: ::core::any::TypeId) -> bool {
///         message == TypeId::of::<Withdraw>() || message == TypeId::of::<Deposit>()
///             || message == TypeId::of::<Balance>()
///     }
///
///     async fn handle_request(&mut self, request: ::conclib::__private::RequestEnvelope, ctx: &mut ::conclib::__private::Context<Self>) {
///         // Each step: `request.extract::<M>()`, then `responder.respond(self.handle(msg, ctx).await)`.
///         let Some(request) = ::conclib::__private::dispatch::<Self, Withdraw>(self, request, ctx).await else { return };
///         let Some(request) = ::conclib::__private::dispatch::<Self, Deposit>(self, request, ctx).await else { return };
///         let Some(request) = ::conclib::__private::dispatch::<Self, Balance>(self, request, ctx).await else { return };
///         request.reject();
///     }
/// }
/// ```
/// </details>
///
/// <details><summary>What the method-call example expands to (besides the impls above)</summary>
///
/// ```ignore
/// /// Adds `n`; returns the new total.
/// #[derive(::conclib::__private::serde::Serialize, ::conclib::__private::serde::Deserialize)]
/// #[serde(crate = "::conclib::__private::serde")]
/// struct Add {
///     /// The argument `n` of `Counter::add`.
///     n: u64,
/// }
/// impl ::conclib::__private::Message for Add { type Response = u64; type Error = Infallible; fn name() -> &'static str { "Add" } }
///
/// /// The message of `Counter::reset`, generated by `#[actor]` from the method's arguments.
/// struct Reset;
/// impl ::conclib::__private::Message for Reset { type Response = (); type Error = Infallible; /* .. */ }
///
/// struct Withdraw { n: u64 }
/// impl ::conclib::__private::Message for Withdraw { type Response = u64; type Error = String; /* .. */ }
///
/// impl ::conclib::__private::Handler<Add> for Counter {
///     async fn handle(&mut self, msg: Add, _: &mut ::conclib::__private::Context<Self>) -> Result<u64, Infallible> {
///         ::conclib::__private::message_argument::<u64>();  // `Send + 'static`, said at the type
///         ::conclib::__private::remote_argument::<u64>();   // serde, for `remote`
///         let Add { n, .. } = msg;
///         let output = Self::add(self, n);
///         ::conclib::__private::response::<Add, u64>(output)
///     }
/// }
/// // ... `Handler<Reset>`, `Handler<Withdraw>`, and `Actor` as above.
///
/// /// The method-call API of `Counter`, generated by `#[actor]`: ...
/// trait CounterApi: ::conclib::__private::Address<Actor = Counter> {
///     /// Adds `n`; returns the new total.
///     fn add(&self, n: u64) -> <Self as ::conclib::__private::Requester<Add>>::Request<'_>
///     where
///         Self: ::conclib::__private::Requester<Add>;
///     fn reset(&self) -> <Self as ::conclib::__private::Requester<Reset>>::Request<'_>
///     where
///         Self: ::conclib::__private::Requester<Reset>;
///     fn withdraw(&self, n: u64) -> <Self as ::conclib::__private::Requester<Withdraw>>::Request<'_>
///     where
///         Self: ::conclib::__private::Requester<Withdraw>;
/// }
///
/// impl<__Ref: ?Sized + ::conclib::__private::Address<Actor = Counter>> CounterApi for __Ref {
///     fn add(&self, n: u64) -> <Self as ::conclib::__private::Requester<Add>>::Request<'_>
///     where
///         Self: ::conclib::__private::Requester<Add>,
///     {
///         <Self as ::conclib::__private::Requester<Add>>::request(self, Add { n })
///     }
///     // ...
/// }
/// // For `ActorRef<Counter>`, `Request<'_>` is `AskRequest<&'_ ActorRef<Counter>, Add>`: what `ask` returns.
/// ```
/// </details>
pub use conclib_macros::actor;

/// The Redis proxy: ask actors by URN from other processes (feature `redis`).
#[cfg(feature = "redis")]
pub use conclib_redis as redis;

#[cfg(feature = "schema")]
pub mod schema;

/// Launch and supervise web servers as child processes (feature `apid`).
#[cfg(feature = "apid")]
pub use conclib_apid as apid;

/// Actors in their own OS process, behind a typed ref (feature `process`).
#[cfg(feature = "process")]
pub use conclib_process as process;

/// A live view of every system on one Redis, and a Prometheus endpoint (features `view`,
/// `prometheus`).
#[cfg(feature = "view")]
pub use conclib_view as view;
