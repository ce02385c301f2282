//! The link between a parent and a process actor: length-delimited frames over an
//! inherited Unix socket pair.
//!
//! A frame is a 4-byte big-endian length, then that many bytes: a [`Frame`] encoded with
//! bincode 2 (`config::standard()`). Message bodies inside are encoded with the same codec
//! ([`conclib_codec::Bincode`]), by the message's wire name ([`conclib_core::Message::name`]).

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest frame either side accepts (a corrupt length must not allocate gigabytes).
pub(crate) const MAX_FRAME: usize = 64 * 1024 * 1024;

/// One frame of the link.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// Parent to child, first: the actor's kind (its type's name) and its initial state.
    Init { kind: String, state: Vec<u8> },
    /// Parent to child: a request. `id` 0 is a tell.
    Request {
        id: u64,
        high: bool,
        message: String,
        body: Vec<u8>,
    },
    /// Child to parent: the answer to request `id`.
    Reply {
        id: u64,
        status: u8,
        payload: Vec<u8>,
    },
    /// Either way: are you there? Answered with `Pong` of the same number.
    Ping(u64),
    /// The answer to a `Ping`.
    Pong(u64),
    /// Parent to child: stop the actor gracefully, then exit.
    Stop,
}

/// Reply statuses (the Redis proxy's numbers, where they exist).
pub(crate) mod status {
    pub(crate) const OK: u8 = 0;
    pub(crate) const HANDLER_ERROR: u8 = 1;
    pub(crate) const UNKNOWN_MESSAGE: u8 = 3;
    pub(crate) const PANICKED: u8 = 4;
    pub(crate) const ACTOR_STOPPED: u8 = 6;
    pub(crate) const NO_RESPONSE: u8 = 7;
    pub(crate) const CODEC_ERROR: u8 = 9;
    pub(crate) const MAILBOX_FULL: u8 = 12;
}

/// Appends `frame`, length first, to `out`.
pub(crate) fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let body = bincode::serde::encode_to_vec(frame, bincode::config::standard())
        .expect("a frame always encodes");
    out.extend_from_slice(&body);
    let len = u32::try_from(out.len() - start - 4).expect("frames are under 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Reads one frame; `None` at the end of the stream.
pub(crate) async fn read<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes (the limit is {MAX_FRAME})"),
        ));
    }
    buf.resize(len, 0);
    reader.read_exact(buf).await?;
    let (frame, used) =
        bincode::serde::decode_from_slice::<Frame, _>(buf, bincode::config::standard())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    if used != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "trailing bytes in a frame",
        ));
    }
    Ok(Some(frame))
}
