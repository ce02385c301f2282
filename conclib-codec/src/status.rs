//! The status byte of an answer, shared by both wires.

use std::fmt;

/// The status byte of an answer: what the payload after it holds. One enum for both wires
/// that carry answers, the Redis proxy's reply frames (`conclib-redis`, its numbers are
/// part of the documented protocol that clients in other languages speak) and a process
/// actor's link (`conclib-process`), so a number means the same on both.
///
/// ```
/// use conclib_codec::Status;
/// assert_eq!(Status::from_byte(12), Some(Status::MailboxFull));
/// assert_eq!(Status::MailboxFull as u8, 12);
/// assert_eq!(Status::MailboxFull.label(), "mailbox_full");
/// assert_eq!(Status::from_byte(13), Some(Status::Overloaded));
/// assert_eq!(Status::from_byte(14), Some(Status::UnsupportedVersion));
/// assert_eq!(Status::from_byte(15), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The handler's response, encoded with the request's codec.
    Ok = 0,
    /// The handler's error (`Message::Error`), encoded with the request's codec.
    HandlerError = 1,
    /// No actor with this URN lives in the serving system. UTF-8 detail.
    UnknownUrn = 2,
    /// The actor does not expose or does not handle this message. UTF-8 detail.
    UnknownMessage = 3,
    /// The handler panicked. UTF-8 panic message.
    Panicked = 4,
    /// The actor did not answer before the request's deadline. UTF-8 detail.
    Timeout = 5,
    /// The actor stopped before answering. UTF-8 detail.
    ActorStopped = 6,
    /// The actor dropped the request without answering. UTF-8 detail.
    NoResponse = 7,
    /// The request was malformed (missing field, bad version, unknown codec). UTF-8 detail.
    BadRequest = 8,
    /// The body could not be decoded as the message, or the answer could not be encoded. UTF-8 detail.
    CodecError = 9,
    /// This system does not serve the URN (another one owns it). Resolve the URN again. UTF-8 detail.
    NotOwner = 10,
    /// The body or the encoded answer exceeds the proxy's size limit. UTF-8 detail.
    TooLarge = 11,
    /// The actor's mailbox was full. UTF-8 detail.
    MailboxFull = 12,
    /// The proxy refused the request before it queued: too many requests were pending for
    /// its URN, its URN pattern or the whole system. UTF-8 detail: `scope=urn limit=8 depth=8`
    /// (`scope` is `urn`, `pattern`, `system` or `activations`).
    Overloaded = 13,
    /// No member serving the URN has the message at a version it can decode: the message
    /// is unknown to every member live (a build that adds it is not serving yet), or its
    /// fields' version differs and the codec cannot read another version's fields
    /// (bincode). Not handled; sending it again may succeed once such a member serves.
    /// UTF-8 detail.
    UnsupportedVersion = 14,
    /// The process actor's link only, never a Redis reply: the answer to a heartbeat (the
    /// actor is responsive). Not counted as an answer in the actor's statistics.
    Alive = 100,
}

impl Status {
    /// Its name in snake case (`ok`, `handler_error`, ...): the `status` label of metrics.
    #[must_use]
    pub fn label(self) -> &'static str {
        use Status::*;
        match self {
            Ok => "ok",
            HandlerError => "handler_error",
            UnknownUrn => "unknown_urn",
            UnknownMessage => "unknown_message",
            Panicked => "panicked",
            Timeout => "timeout",
            ActorStopped => "actor_stopped",
            NoResponse => "no_response",
            BadRequest => "bad_request",
            CodecError => "codec_error",
            NotOwner => "not_owner",
            TooLarge => "too_large",
            MailboxFull => "mailbox_full",
            Overloaded => "overloaded",
            UnsupportedVersion => "unsupported_version",
            Alive => "alive",
        }
    }

    /// The status with this byte.
    #[must_use]
    pub fn from_byte(b: u8) -> Option<Status> {
        use Status::*;
        Some(match b {
            0 => Ok,
            1 => HandlerError,
            2 => UnknownUrn,
            3 => UnknownMessage,
            4 => Panicked,
            5 => Timeout,
            6 => ActorStopped,
            7 => NoResponse,
            8 => BadRequest,
            9 => CodecError,
            10 => NotOwner,
            11 => TooLarge,
            12 => MailboxFull,
            13 => Overloaded,
            14 => UnsupportedVersion,
            100 => Alive,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
