//! What one side of a link writes: frames appended to one buffer by whoever sends, written by
//! one task in as few writes as possible. Both sides use it: the parent for requests,
//! control frames and answers to its child; the child for replies and its own asks.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;

use crate::lock;
use crate::socket::WriteHalf;
use crate::wire::{self, Frame};

/// Frames waiting to be written: senders append to one buffer, the writer takes it whole
/// (frames queued meanwhile leave in one write; no allocation per frame).
#[derive(Default)]
pub(crate) struct Outbox {
    queued: Mutex<Queued>,
}

/// What the outbox's lock guards: the frames, the writer's waker while it waits for some,
/// and whether the writer is to finish. The waker lives under the lock the frames take
/// anyway: a `Notify` cost the writer about 200 instructions a wait, a round trip's every
/// frame (callgrind, `process_bench`).
#[derive(Default)]
struct Queued {
    buf: Vec<u8>,
    writer: Option<Waker>,
    closed: bool,
}

impl Outbox {
    /// Appends a frame, in order with those appended before it.
    pub(crate) fn push(&self, frame: &Frame<'_>) {
        let writer = {
            let mut queued = lock(&self.queued);
            wire::encode(frame, &mut queued.buf);
            queued.writer.take()
        };
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    /// For the writer: swaps the frames appended so far into `out` (emptied first) and
    /// returns `Ready(true)`; `Ready(false)` when the outbox is closed and empty; else
    /// `Pending`, with `waker` registered for the next frame or the close.
    ///
    /// A buffer that a large frame grew past [`KEEP_AT_MOST`] is replaced by a small one
    /// before it goes back to the senders: the two buffers take turns, so a link that once
    /// carried a 64 MiB frame would otherwise keep twice that for its life.
    fn poll_take(&self, out: &mut Vec<u8>, waker: &Waker) -> Poll<bool> {
        out.clear();
        if out.capacity() > KEEP_AT_MOST {
            *out = Vec::with_capacity(WRITE_BUFFER);
        }
        let mut queued = lock(&self.queued);
        if !queued.buf.is_empty() {
            std::mem::swap(out, &mut queued.buf);
            return Poll::Ready(true);
        }
        if queued.closed {
            return Poll::Ready(false);
        }
        match &mut queued.writer {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        Poll::Pending
    }

    /// Asks the writer to finish once it wrote what was appended before.
    pub(crate) fn close(&self) {
        let writer = {
            let mut queued = lock(&self.queued);
            queued.closed = true;
            queued.writer.take()
        };
        if let Some(writer) = writer {
            writer.wake();
        }
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
    while poll_fn(|cx| outbox.poll_take(&mut out, cx.waker())).await {
        writer.write_all(&out).await?;
    }
    Ok(())
}

/// What a write buffer starts with.
const WRITE_BUFFER: usize = 4096;
/// The most capacity a write buffer keeps once what it held was written.
const KEEP_AT_MOST: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer waits with nothing queued, is woken by each push (from another task, on
    /// another thread), writes every frame in order, and finishes on `close` only after
    /// what was pushed before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_wakes_for_each_push_and_finishes_after_what_came_before_close() {
        use tokio::io::AsyncReadExt;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let ((_a_read, a_write), (mut b_read, _b_write)) = (
            crate::socket::split(a).unwrap(),
            crate::socket::split(b).unwrap(),
        );
        let outbox = Arc::new(Outbox::default());
        let writer = tokio::spawn(write_frames(a_write, outbox.clone()));
        let mut want = Vec::new();
        for n in 0..200u8 {
            let frame = Frame::Pong(u64::from(n));
            wire::encode(&frame, &mut want);
            outbox.push(&frame);
            // Each frame read before the next is pushed: the writer waited for it.
            let mut got = vec![0; want.len()];
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                b_read.read_exact(&mut got),
            )
            .await
            .expect("the writer was woken")
            .unwrap();
            assert_eq!(got, want);
            want.clear();
        }
        outbox.push(&Frame::Pong(7));
        outbox.close();
        tokio::time::timeout(std::time::Duration::from_secs(10), writer)
            .await
            .expect("the writer finished")
            .unwrap()
            .unwrap();
        let mut last = Vec::new();
        wire::encode(&Frame::Pong(7), &mut want);
        b_read.read_to_end(&mut last).await.unwrap();
        assert_eq!(last, want);
    }

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
        assert!(outbox.poll_take(&mut out, Waker::noop()).is_ready());
        assert!(out.len() > big.len());
        // Written; the writer comes back for more: nothing queued.
        assert!(outbox.poll_take(&mut out, Waker::noop()).is_pending());
        assert!(out.is_empty());
        assert!(out.capacity() <= KEEP_AT_MOST);
        assert!(lock(&outbox.queued).buf.capacity() <= KEEP_AT_MOST);
        // Small frames still go through the buffers as before.
        outbox.push(&Frame::Pong(3));
        assert!(outbox.poll_take(&mut out, Waker::noop()).is_ready());
        assert!(!out.is_empty());
    }
}
