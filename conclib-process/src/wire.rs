//! The link between a parent and a process actor: length-delimited frames over inherited
//! Unix socket pairs (one for requests and answers, in order; one for heartbeats).
//!
//! A frame is a 4-byte big-endian length, then that many bytes: a tag byte and the fields,
//! integers little-endian, strings and byte strings as a 4-byte little-endian length and
//! the bytes:
//!
//! | tag | frame | fields |
//! |---|---|---|
//! | 1 | `Init` (parent to child, first) | kind (the actor type's name), state (bincode), resume (u8: 1 = resume after a panic) |
//! | 2 | `Request` | id (u64; 0 for a tell), high (u8: 1 = high-priority lane), trace, message name, body (bincode) |
//! | 3 | `Reply` | id (u64), status (u8), payload |
//! | 4 | `Ping` | n (u64) |
//! | 5 | `Pong` | n (u64) |
//! | 6 | `Stop` (parent to child: stop gracefully, then exit) | |
//! | 7 | `Ask` (child to parent: to an actor of the parent's system) | id (u64; 0 for a tell), trace, urn, message name, body |
//! | 8 | `Answer` (parent to child) | id (u64), status (u8), payload |
//! | 9 | `Cancel` (parent to child: the asker gave up; not started yet, it never will be) | id (u64) |
//! | 10 | `Ended` (child to parent, last: the actor stopped on its own; the process exits) | panicked (u8), reason |
//! | 11 | `Skipped` (child to parent: a `Cancel` came before the actor started that request; it never will) | id (u64) |
//!
//! **Starting.** The parent sends `Init` first. Once the actor runs, the child sends
//! `Pong(0)` on the data socket ([`STARTED`]): only then is the spawn a success (the control
//! socket's heartbeats are answered by a thread of their own from the first moment, so they
//! say nothing about the actor). A child that cannot start its actor sends `Ended` with why
//! and exits with [`EXIT_NOT_REGISTERED`] (the type is not in the executable's `Registry`)
//! or [`EXIT_START_FAILED`] (its state did not decode, its `on_start` failed).
//!
//! `trace` is the sender's position in a trace: a u8 length, then that many bytes of a W3C
//! `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`); length 0 when the
//! message is not part of a trace. A malformed one is ignored, as the W3C says.
//!
//! Message bodies and answers are encoded with [`conclib_codec::Bincode`], by the message's
//! wire name ([`conclib_core::Message::name`]).
//!
//! A `Request` for the reserved message name `conclib::Heartbeat` (empty body) is answered by
//! the actor itself between its messages, with a `Reply` of status 100: how a pool's
//! dead-man's switch reaches the actor, where `Ping` only reaches the process.

use conclib_core::trace::TraceContext;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The environment variable that marks a process actor's process, and names its two
/// sockets: `<data>,<control>`.
pub(crate) const FD_VAR: &str = "CONCLIB_PROCESS_FD";

/// The environment variable that gives a process actor's runtime its number of threads.
pub(crate) const THREADS_VAR: &str = "CONCLIB_PROCESS_THREADS";

/// The wire name of a heartbeat for the process's actor (answered by the actor itself,
/// between its messages, unlike the link's `Ping`, answered by the process's heartbeat thread).
pub(crate) const HEARTBEAT: &str = "conclib::Heartbeat";

/// The `Pong` the child sends on the data socket once its actor runs (heartbeat numbers
/// start at 1).
pub(crate) const STARTED: u64 = 0;

/// The child's exit code when the actor type it was asked to run is not in its `Registry`.
pub(crate) const EXIT_NOT_REGISTERED: i32 = 64;

/// The child's exit code when its actor did not start (state, `on_start`).
pub(crate) const EXIT_START_FAILED: i32 = 65;

/// The largest frame either side accepts (a corrupt length must not allocate gigabytes).
pub(crate) const MAX_FRAME: usize = 64 * 1024 * 1024;

/// The largest message body or answer either side sends: with its frame's other fields it
/// fits in [`MAX_FRAME`].
pub(crate) const MAX_BODY: usize = MAX_FRAME - 64 * 1024;

/// Encodes a message body with [`conclib_codec::Bincode`] and checks it against
/// [`MAX_BODY`], saying what is wrong.
pub(crate) fn encode_body(value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, String> {
    conclib_codec::Codec::encode(&conclib_codec::Bincode, value)
        .map_err(|e| e.to_string())
        .and_then(fits)
}

/// Checks an encoded body or answer against [`MAX_BODY`], saying what is wrong.
pub(crate) fn fits(body: Vec<u8>) -> Result<Vec<u8>, String> {
    if body.len() > MAX_BODY {
        return Err(format!(
            "{} bytes, over the link's limit of {MAX_BODY} bytes",
            body.len()
        ));
    }
    Ok(body)
}

/// One frame of the link, borrowing its bytes from the buffer it was read into.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Init {
        kind: &'a str,
        state: &'a [u8],
        resume: bool,
    },
    Request {
        id: u64,
        high: bool,
        trace: Option<TraceContext>,
        message: &'a str,
        body: &'a [u8],
    },
    Reply {
        id: u64,
        status: u8,
        payload: &'a [u8],
    },
    Ping(u64),
    Pong(u64),
    Stop,
    Ask {
        id: u64,
        trace: Option<TraceContext>,
        urn: &'a str,
        message: &'a str,
        body: &'a [u8],
    },
    Answer {
        id: u64,
        status: u8,
        payload: &'a [u8],
    },
    Cancel(u64),
    Skipped(u64),
    Ended {
        panicked: bool,
        reason: &'a str,
    },
}

/// Reply statuses: the numbers of the one [`Status`](conclib_codec::Status) enum both wires
/// use, as the bytes the link's frames carry.
pub(crate) mod status {
    use conclib_codec::Status;

    pub(crate) const OK: u8 = Status::Ok as u8;
    pub(crate) const HANDLER_ERROR: u8 = Status::HandlerError as u8;
    pub(crate) const UNKNOWN_URN: u8 = Status::UnknownUrn as u8;
    pub(crate) const UNKNOWN_MESSAGE: u8 = Status::UnknownMessage as u8;
    pub(crate) const PANICKED: u8 = Status::Panicked as u8;
    pub(crate) const ACTOR_STOPPED: u8 = Status::ActorStopped as u8;
    pub(crate) const NO_RESPONSE: u8 = Status::NoResponse as u8;
    pub(crate) const CODEC_ERROR: u8 = Status::CodecError as u8;
    pub(crate) const MAILBOX_FULL: u8 = Status::MailboxFull as u8;
    /// The answer to a heartbeat request (`conclib::Heartbeat`): the actor is responsive.
    /// Not counted as an answer in the actor's statistics.
    pub(crate) const ALIVE: u8 = Status::Alive as u8;
}

/// A `trace` field: the traceparent behind a u8 length (0: none).
fn trace_field(out: &mut Vec<u8>, trace: Option<&TraceContext>) {
    use std::io::Write;
    let at = out.len();
    out.push(0);
    if let Some(trace) = trace {
        let _ = write!(out, "{trace}");
        out[at] = u8::try_from(out.len() - at - 1).expect("a traceparent is 55 bytes");
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("fields are under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends `frame`, length first, to `out`.
pub(crate) fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match frame {
        Frame::Init {
            kind,
            state,
            resume,
        } => {
            out.push(1);
            bytes(out, kind.as_bytes());
            bytes(out, state);
            out.push(u8::from(*resume));
        }
        Frame::Request {
            id,
            high,
            trace,
            message,
            body,
        } => {
            out.push(2);
            out.extend_from_slice(&id.to_le_bytes());
            out.push(u8::from(*high));
            trace_field(out, trace.as_ref());
            bytes(out, message.as_bytes());
            bytes(out, body);
        }
        Frame::Reply {
            id,
            status,
            payload,
        } => {
            out.push(3);
            out.extend_from_slice(&id.to_le_bytes());
            out.push(*status);
            bytes(out, payload);
        }
        Frame::Ping(n) => {
            out.push(4);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Frame::Pong(n) => {
            out.push(5);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Frame::Stop => out.push(6),
        Frame::Ask {
            id,
            trace,
            urn,
            message,
            body,
        } => {
            out.push(7);
            out.extend_from_slice(&id.to_le_bytes());
            trace_field(out, trace.as_ref());
            bytes(out, urn.as_bytes());
            bytes(out, message.as_bytes());
            bytes(out, body);
        }
        Frame::Answer {
            id,
            status,
            payload,
        } => {
            out.push(8);
            out.extend_from_slice(&id.to_le_bytes());
            out.push(*status);
            bytes(out, payload);
        }
        Frame::Cancel(id) => {
            out.push(9);
            out.extend_from_slice(&id.to_le_bytes());
        }
        Frame::Skipped(id) => {
            out.push(11);
            out.extend_from_slice(&id.to_le_bytes());
        }
        Frame::Ended { panicked, reason } => {
            out.push(10);
            out.push(u8::from(*panicked));
            bytes(out, reason.as_bytes());
        }
    }
    let len = u32::try_from(out.len() - start - 4).expect("frames are under 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Reads the fields of a frame body.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }
    fn str(&mut self) -> Option<&'a str> {
        text(self.bytes()?)
    }
    /// A `trace` field: `Some(None)` when it is empty or malformed (ignored).
    fn trace(&mut self) -> Option<Option<TraceContext>> {
        let len = usize::from(self.u8()?);
        if len == 0 {
            return Some(None);
        }
        let text = self.take(len)?;
        Some(std::str::from_utf8(text).ok().and_then(TraceContext::parse))
    }
}

/// `bytes` as text, if they are UTF-8. Names (of messages, URNs) are ASCII: checked as such
/// first, a word at a time, where the full UTF-8 check went a byte at a time on a short
/// name (119 instructions for `bench.Echo` on every ask, docs/bench-log.md, "Process actors'
/// locks").
#[inline]
fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Parses one frame body (without its length).
pub(crate) fn decode(body: &[u8]) -> Option<Frame<'_>> {
    let mut f = Fields(body);
    let frame = match f.u8()? {
        1 => Frame::Init {
            kind: f.str()?,
            state: f.bytes()?,
            resume: f.u8()? != 0,
        },
        2 => Frame::Request {
            id: f.u64()?,
            high: f.u8()? != 0,
            trace: f.trace()?,
            message: f.str()?,
            body: f.bytes()?,
        },
        3 => Frame::Reply {
            id: f.u64()?,
            status: f.u8()?,
            payload: f.bytes()?,
        },
        4 => Frame::Ping(f.u64()?),
        5 => Frame::Pong(f.u64()?),
        6 => Frame::Stop,
        9 => Frame::Cancel(f.u64()?),
        11 => Frame::Skipped(f.u64()?),
        10 => Frame::Ended {
            panicked: f.u8()? != 0,
            reason: f.str()?,
        },
        7 => Frame::Ask {
            id: f.u64()?,
            trace: f.trace()?,
            urn: f.str()?,
            message: f.str()?,
            body: f.bytes()?,
        },
        8 => Frame::Answer {
            id: f.u64()?,
            status: f.u8()?,
            payload: f.bytes()?,
        },
        _ => return None,
    };
    // Trailing bytes mean a frame this side does not understand.
    f.0.is_empty().then_some(frame)
}

/// Reads frames from a stream through one buffer, handing each frame's bytes (after its
/// length) out of it: a burst of frames costs one read, and a frame is never copied.
/// [`next`](Self::next) is cancel-safe: a frame is consumed only when it is returned.
pub(crate) struct FrameReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

/// What the buffer holds when no frame larger than it came (and what it shrinks back to).
const READ_BUFFER: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        FrameReader {
            reader,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// The next frame's bytes; `None` at the end of the stream (between frames).
    ///
    /// # Errors
    /// The stream's errors, a frame over [`MAX_FRAME`], a stream that ends inside a frame.
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<&[u8]>> {
        use std::io::{Error, ErrorKind};
        loop {
            let unread = &self.buf[self.start..self.end];
            let wanted = match unread.first_chunk::<4>() {
                Some(len) => {
                    let len = u32::from_be_bytes(*len) as usize;
                    if len > MAX_FRAME {
                        return Err(Error::new(
                            ErrorKind::InvalidData,
                            format!("a frame of {len} bytes (the limit is {MAX_FRAME})"),
                        ));
                    }
                    if unread.len() >= 4 + len {
                        let frame = self.start + 4..self.start + 4 + len;
                        self.start = frame.end;
                        return Ok(Some(&self.buf[frame]));
                    }
                    4 + len
                }
                None => 4,
            };
            // Room for the whole frame after what is unread: move it to the front, and grow
            // for a frame larger than the buffer (shrinking back once it is read).
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
                if self.buf.len() > READ_BUFFER && wanted <= READ_BUFFER {
                    self.buf.truncate(READ_BUFFER);
                    self.buf.shrink_to_fit();
                }
            }
            if self.buf.len() - self.start < wanted {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
                if self.buf.len() < wanted {
                    self.buf.resize(wanted, 0);
                }
            }
            let n = self.reader.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                if self.start == self.end {
                    return Ok(None);
                }
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame",
                ));
            }
            self.end += n;
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "fuzzing"))]
mod trickle;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use trickle::Trickle;
