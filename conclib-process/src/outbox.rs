//! What one side of a link writes: frames appended to one buffer by whoever sends, written by
//! one task in as few writes as possible. Both sides use it: the parent for requests,
//! control frames and answers to its child; the child for replies and its own asks.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncWriteExt;

use crate::lock;
use crate::socket::WriteHalf;
use crate::wire::{self, Frame};

/// Frames waiting to be written: senders append to one buffer, the writer takes it whole
/// (frames queued meanwhile leave in one write; no allocation per frame).
#[derive(Default)]
pub(crate) struct Outbox {
    buf: Mutex<Vec<u8>>,
    ready: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Outbox {
    /// Appends a frame, in order with those appended before it.
    pub(crate) fn push(&self, frame: &Frame<'_>) {
        let was_empty = {
            let mut buf = lock(&self.buf);
            let was_empty = buf.is_empty();
            wire::encode(frame, &mut buf);
            was_empty
        };
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Swaps the frames appended so far into `out` (emptied first). A buffer that a large
    /// frame grew past [`KEEP_AT_MOST`] is replaced by a small one before it goes back to the
    /// senders: the two buffers take turns, so a link that once carried a 64 MiB frame would
    /// otherwise keep twice that for its life.
    pub(crate) fn take_into(&self, out: &mut Vec<u8>) {
        out.clear();
        if out.capacity() > KEEP_AT_MOST {
            *out = Vec::with_capacity(WRITE_BUFFER);
        }
        std::mem::swap(out, &mut *lock(&self.buf));
    }

    /// Asks the writer to finish once it wrote what was appended before.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }
}

/// Writes what the outbox holds, until it is closed and empty.
///
/// # Errors
/// The socket's: the link is broken.
pub(crate) async fn write_frames(
    mut writer: WriteHalf,
    outbox: Arc<Outbox>,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(WRITE_BUFFER);
    loop {
        outbox.take_into(&mut out);
        if out.is_empty() {
            if outbox.closed.load(Ordering::Acquire) {
                return Ok(());
            }
            outbox.ready.notified().await;
            continue;
        }
        writer.write_all(&out).await?;
    }
}

/// What a write buffer starts with.
const WRITE_BUFFER: usize = 4096;
/// The most capacity a write buffer keeps once what it held was written.
const KEEP_AT_MOST: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    /// A link that carried one large frame does not keep a buffer of its size for its life.
    #[test]
    fn a_large_frame_leaves_no_large_buffer_behind() {
        let outbox = Outbox::default();
        let mut out = Vec::new();
        let big = vec![7u8; 8 << 20];
        outbox.push(&Frame::Reply {
            id: 1,
            status: 0,
            payload: &big,
        });
        outbox.take_into(&mut out);
        assert!(out.len() > big.len());
        // Written; the writer comes back for more: nothing queued.
        outbox.take_into(&mut out);
        assert!(out.is_empty());
        assert!(out.capacity() <= KEEP_AT_MOST);
        assert!(lock(&outbox.buf).capacity() <= KEEP_AT_MOST);
        // Small frames still go through the buffers as before.
        outbox.push(&Frame::Pong(3));
        outbox.take_into(&mut out);
        assert!(!out.is_empty());
    }
}
