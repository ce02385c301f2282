//! Messages: what an actor is sent, its answer and error types, its lane. The handlers
//! that answer them are in [`crate::handler`].

/// A message an actor can handle.
///
/// `Response` is what an ask returns on success and `Error` what the handler may return
/// instead; both reach the asker, locally or through the proxy. A message used only with
/// `tell` has `Response = ()`.
///
/// [`Message::name`] is the message's wire name, used by dynamic refs and the Redis proxy to
/// say which message a request holds. The `#[message]` macro gives each message a stable
/// name; a hand-written impl defaults to [`std::any::type_name`], which changes when the
/// type moves to another module.
///
/// ```
/// use conclib_core::Message;
/// use std::convert::Infallible;
///
/// struct Ping(u64);
/// impl Message for Ping {
///     type Response = u64;
///     type Error = Infallible;
///     fn name() -> &'static str { "Ping" }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message",
    note = "put `#[message]` (or `#[message(response = ...)]`) on `{Self}`, or implement `conclib::Message` for it",
    note = "in an `#[actor]` impl block, a `#[handle]` method whose only argument is a type named like a struct takes that \
            type as its message; to pass it as a plain value instead, name the message the method generates: \
            `#[handle(name = \"...\")]`"
)]
pub trait Message: Send + 'static {
    /// What a successful ask returns.
    type Response: Send + 'static;
    /// What a failing handler returns; [`std::convert::Infallible`] when it cannot fail.
    type Error: std::fmt::Debug + Send + 'static;

    /// The message's wire name: stable across processes, unique among the messages an actor
    /// exposes (an actor with a URN whose [`Actor::REMOTE`](crate::Actor::REMOTE) lists two of
    /// one name is refused at its spawn: [`SpawnError::DuplicateWireName`](crate::SpawnError::DuplicateWireName)).
    #[must_use]
    fn name() -> &'static str {
        std::any::type_name::<Self>()
    }

    /// The version of the message's fields, 1 unless `#[message(version = N)]` says
    /// otherwise. A Redis proxy advertises each exposed message's name and version to the
    /// other members of its pattern's group, and a request carries its version (when not
    /// 1): a member whose codec cannot read another version's fields (bincode) passes the
    /// request to a member with its version, or refuses it `UnsupportedVersion`, rather
    /// than decode it wrong (the README, "Upgrading a running cluster").
    ///
    /// ```
    /// use conclib_core::Message;
    ///
    /// struct Add { n: u64, note: Option<String> }
    /// impl Message for Add {
    ///     type Response = u64;
    ///     type Error = std::convert::Infallible;
    ///     fn name() -> &'static str { "Add" }
    ///     fn version() -> u32 { 2 }
    /// }
    /// assert_eq!(Add::version(), 2);
    /// ```
    #[must_use]
    fn version() -> u32 {
        1
    }

    /// The key a [`Routing::KeyHash`](crate::Routing::KeyHash) pool routes this message by
    /// (one key always reaches the same member while the pool's size is unchanged); `None`
    /// (the default) routes it round-robin.
    fn routing_key(&self) -> Option<u64> {
        None
    }
}

/// The lane a user message travels in. `High` overtakes queued `Normal` messages;
/// order is kept within a lane (per sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Priority {
    /// The default lane.
    #[default]
    Normal,
    /// Overtakes queued normal messages.
    High,
}
