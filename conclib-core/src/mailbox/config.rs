//! [`MailboxConfig`]: how big an actor's mailbox is (what an actor declares; the mailbox
//! reads it).

/// The default capacity of a bounded mailbox.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// How big an actor's mailbox is.
///
/// A message takes a place when it is sent and gives it back when the actor takes it for
/// handling. An actor working through a batch of messages gives the places back in groups
/// (at most 64, or a sixteenth of a bounded mailbox's capacity) and all of them before it
/// waits for anything (more mail, a handler's `.await`): while it runs, a sender may find
/// the mailbox full that many messages early; while it waits, the count is exact. (One
/// give-back per message made the actor's core and the senders' trade the count's cache line
/// at every message: bounded tell at a third of the speed; docs/bench-log.md.)
///
/// ```
/// use conclib_core::MailboxConfig;
/// let m = MailboxConfig::Bounded(64);
/// assert_eq!(m.capacity(), Some(64));
/// assert_eq!(MailboxConfig::Unbounded.capacity(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxConfig {
    /// At most this many user messages queued: `tell` waits for room, `try_tell` fails.
    Bounded(usize),
    /// No limit: sends never wait for room. Each spends a unit of the sending task's
    /// cooperative budget instead (tokio's, as its channels' operations do), so a task
    /// sending in a loop yields now and then and lets the actor and other tasks on its
    /// thread run. Memory grows with the backlog, and goes back (but for room for 16
    /// messages) once the actor has nothing left to do.
    Unbounded,
}

impl MailboxConfig {
    /// The capacity, or `None` when unbounded.
    #[must_use]
    pub const fn capacity(self) -> Option<usize> {
        match self {
            MailboxConfig::Bounded(n) => Some(n),
            MailboxConfig::Unbounded => None,
        }
    }
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig::Bounded(DEFAULT_MAILBOX_CAPACITY)
    }
}
