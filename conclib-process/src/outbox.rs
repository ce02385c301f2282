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
    let mut out = Vec::with_capacity(4096);
    loop {
        out.clear();
        std::mem::swap(&mut out, &mut *lock(&outbox.buf));
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
