//! What one side of a link writes: frames appended to one buffer by whoever sends, written by
//! one task in as few writes as possible. Both sides use it: the parent for requests,
//! control frames and answers to its child; the child for replies and its own asks.
//!
//! A push that finds the link idle writes its frame itself instead: a request/reply link
//! (one ask at a time, the common case) then never wakes its writer task, a hop of the
//! runtime on each side of every round trip. "Idle" means nothing queued, nothing in
//! flight, and no frame written that way since the other side was last heard from or the
//! writer last ran dry: so a burst of pushes (a loop of tells, an actor answering a batch of
//! asks) writes its first frame at once and leaves the rest to the writer, in one write.

use std::future::poll_fn;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::io::unix::AsyncFd;

use crate::lock;
use crate::socket::WriteHalf;
use crate::wire::{self, Frame};

/// Frames waiting to be written: senders append to one buffer, the writer takes it whole
/// (frames queued meanwhile leave in one write; no allocation per frame).
#[derive(Default)]
pub(crate) struct Outbox {
    queued: Mutex<Queued>,
    /// The socket the writer writes to, for a push that writes its frame itself; `None`:
    /// every frame goes through the writer.
    socket: Option<Arc<AsyncFd<UnixStream>>>,
    /// A push wrote its frame itself, and since then neither was the other side heard from
    /// ([`Outbox::heard`]) nor did the writer run dry: the next push queues.
    wrote_lately: AtomicBool,
}

/// What the outbox's lock guards: the frames, the writer's waker while it waits for some,
/// and whether the writer is to finish. The waker lives under the lock the frames take
/// anyway: a `Notify` cost the writer about 200 instructions a wait, a round trip's every
/// frame (callgrind, `process_bench`).
#[derive(Default)]
struct Queued {
    buf: Vec<u8>,
    /// An empty buffer for a push that writes its frame itself to take `buf`'s place.
    spare: Vec<u8>,
    writer: Option<Waker>,
    closed: bool,
    /// Bytes taken from `buf` are being written (by the writer, or by a push): what is
    /// queued now goes after them, so nobody else writes meanwhile.
    writing: bool,
}

impl Outbox {
    /// An outbox for the writer of `socket` ([`write_frames`]), whose pushes may write a
    /// frame themselves while the link is idle.
    pub(crate) fn new(socket: &WriteHalf) -> Outbox {
        Outbox {
            socket: Some(socket.socket()),
            ..Outbox::default()
        }
    }

    /// Appends a frame, in order with those appended before it.
    pub(crate) fn push(&self, frame: &Frame<'_>) {
        let mut queued = lock(&self.queued);
        let idle = queued.buf.is_empty()
            && !queued.writing
            && !queued.closed
            && !self.wrote_lately.load(Ordering::Relaxed);
        wire::encode(frame, &mut queued.buf);
        if let Some(socket) = &self.socket
            && idle
            && queued.buf.len() <= WRITE_AT_ONCE
        {
            queued.writing = true;
            self.wrote_lately.store(true, Ordering::Relaxed);
            let mut bytes = std::mem::take(&mut queued.spare);
            std::mem::swap(&mut bytes, &mut queued.buf);
            drop(queued);
            // A broken socket writes nothing: the writer meets the error on its own write.
            let written = crate::socket::send(socket.get_ref(), &bytes).unwrap_or(0);
            self.wrote(bytes, written);
            return;
        }
        let writer = queued.writer.take();
        drop(queued);
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    /// The end of a push's own write of `bytes`, `written` of them sent: the rest goes
    /// first, before what was queued meanwhile, and the writer (which waited for this write
    /// to end) is woken for it, for what was queued, or for the close.
    fn wrote(&self, mut bytes: Vec<u8>, written: usize) {
        let mut queued = lock(&self.queued);
        queued.writing = false;
        if written < bytes.len() {
            bytes.drain(..written);
            bytes.extend_from_slice(&queued.buf);
            std::mem::swap(&mut bytes, &mut queued.buf);
        }
        bytes.clear();
        if bytes.capacity() <= KEEP_AT_MOST {
            queued.spare = bytes;
        }
        let writer = if queued.buf.is_empty() && !queued.closed {
            None
        } else {
            queued.writer.take()
        };
        drop(queued);
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    /// The other side was heard from (a frame read): the next push may write itself again.
    /// On a request/reply link, each reply (or request) lets the next frame go at once.
    pub(crate) fn heard(&self) {
        if self.wrote_lately.load(Ordering::Relaxed) {
            self.wrote_lately.store(false, Ordering::Relaxed);
        }
    }

    /// For the writer: swaps the frames appended so far into `out` (which holds what it
    /// took last, written by now) and returns `Ready(true)`; `Ready(false)` when the outbox
    /// is closed and empty; else `Pending`, with `waker` registered for the next frame, the
    /// close, or the end of a push's own write.
    ///
    /// A buffer that a large frame grew past [`KEEP_AT_MOST`] is replaced by a small one
    /// before it goes back to the senders: the two buffers take turns, so a link that once
    /// carried a 64 MiB frame would otherwise keep twice that for its life.
    fn poll_take(&self, out: &mut Vec<u8>, waker: &Waker) -> Poll<bool> {
        // What the writer took last (if anything) is written.
        let wrote = !out.is_empty();
        out.clear();
        if out.capacity() > KEEP_AT_MOST {
            *out = Vec::with_capacity(WRITE_BUFFER);
        }
        let mut queued = lock(&self.queued);
        if wrote {
            queued.writing = false;
        }
        if !queued.writing {
            if !queued.buf.is_empty() {
                std::mem::swap(out, &mut queued.buf);
                queued.writing = true;
                return Poll::Ready(true);
            }
            self.wrote_lately.store(false, Ordering::Relaxed);
            if queued.closed {
                return Poll::Ready(false);
            }
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
/// The largest frame a push writes itself: a larger one is the writer's, which waits for
/// room in the socket (a push must not).
const WRITE_AT_ONCE: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer waits with nothing queued, is woken by each push (from another task, on
    /// another thread), writes every frame in order, and finishes on `close` only after
    /// what was pushed before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_wakes_for_each_push_and_finishes_after_what_came_before_close() {
        use tokio::io::AsyncReadExt;
        let (_a_read, a_write, mut peer) = pair();
        // No socket to write to itself: every frame goes through the writer.
        let outbox = Arc::new(Outbox::default());
        let writer = tokio::spawn(write_frames(a_write, outbox.clone()));
        for n in 0..200u8 {
            let frame = Frame::Pong(u64::from(n));
            outbox.push(&frame);
            // Each frame read before the next is pushed: the writer waited for it.
            expect(&mut peer, &[frame]).await;
        }
        outbox.push(&Frame::Pong(7));
        finish(&outbox, writer).await;
        let (mut want, mut last) = (Vec::new(), Vec::new());
        wire::encode(&Frame::Pong(7), &mut want);
        peer.read_to_end(&mut last).await.unwrap();
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

    /// A socket pair's halves: the outbox's side, and the peer's reading half.
    fn pair() -> (crate::socket::ReadHalf, WriteHalf, crate::socket::ReadHalf) {
        let (a, b) = UnixStream::pair().unwrap();
        let ((a_read, a_write), (b_read, _b_write)) = (
            crate::socket::split(a).unwrap(),
            crate::socket::split(b).unwrap(),
        );
        (a_read, a_write, b_read)
    }

    /// Reads `frames`' bytes from `peer`, bounded.
    async fn expect(peer: &mut crate::socket::ReadHalf, frames: &[Frame<'_>]) {
        use tokio::io::AsyncReadExt;
        let mut want = Vec::new();
        for frame in frames {
            wire::encode(frame, &mut want);
        }
        let mut got = vec![0; want.len()];
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            peer.read_exact(&mut got),
        )
        .await
        .expect("the frames arrive")
        .unwrap();
        assert!(got == want, "the frames arrive whole and in order");
    }

    /// Closes the outbox and waits (bounded) for its writer to finish without error.
    async fn finish(outbox: &Outbox, writer: tokio::task::JoinHandle<std::io::Result<()>>) {
        outbox.close();
        tokio::time::timeout(std::time::Duration::from_secs(30), writer)
            .await
            .expect("the writer finished")
            .unwrap()
            .unwrap();
    }

    /// On an idle link a push writes its frame itself (no writer task exists here); a
    /// push right after it queues, as does every push while frames are queued, until the
    /// writer writes them in order. Once the writer ran dry, or the other side was heard
    /// from, the next push writes itself again.
    #[tokio::test]
    async fn a_push_on_an_idle_link_writes_its_frame_itself_and_a_burst_goes_to_the_writer() {
        let (_a_read, a_write, mut peer) = pair();
        let outbox = Arc::new(Outbox::new(&a_write));
        outbox.push(&Frame::Pong(1));
        expect(&mut peer, &[Frame::Pong(1)]).await;
        // Nothing heard since: a burst's next frames wait for the writer, in one write.
        outbox.push(&Frame::Pong(2));
        outbox.push(&Frame::Pong(3));
        assert!(!lock(&outbox.queued).buf.is_empty());
        // Heard from, but frames are queued: they go first.
        outbox.heard();
        outbox.push(&Frame::Pong(4));
        assert!(!lock(&outbox.queued).buf.is_empty());
        // The writer (on this thread: it runs only when this task waits) writes them.
        let writer = tokio::spawn(write_frames(a_write, outbox.clone()));
        expect(&mut peer, &[Frame::Pong(2), Frame::Pong(3), Frame::Pong(4)]).await;
        // It ran dry: the next push writes itself; nothing is queued when it returns.
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !lock(&outbox.queued).buf.is_empty() || lock(&outbox.queued).writing {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the writer ran dry");
        outbox.push(&Frame::Pong(5));
        assert!(lock(&outbox.queued).buf.is_empty());
        expect(&mut peer, &[Frame::Pong(5)]).await;
        // Heard from: the next one too.
        outbox.heard();
        outbox.push(&Frame::Pong(6));
        assert!(lock(&outbox.queued).buf.is_empty());
        expect(&mut peer, &[Frame::Pong(6)]).await;
        finish(&outbox, writer).await;
    }

    /// Pushes that write themselves until the socket is full: the part a push could not
    /// write goes first once the writer runs, nothing lost or reordered.
    #[tokio::test]
    async fn a_push_that_finds_the_socket_full_leaves_the_rest_to_the_writer() {
        let (_a_read, a_write, mut peer) = pair();
        let outbox = Arc::new(Outbox::new(&a_write));
        let payload = vec![9u8; 60 * 1024];
        let frames: Vec<Frame<'_>> = (0..64)
            .map(|id| Frame::Reply {
                id,
                status: 0,
                payload: &payload,
            })
            .collect();
        for frame in &frames {
            // As if each reply answered a request read just before.
            outbox.heard();
            outbox.push(frame);
        }
        // 3.75 MiB is more than a socket holds: the writer has the rest.
        assert!(!lock(&outbox.queued).buf.is_empty());
        let writer = tokio::spawn(write_frames(a_write, outbox.clone()));
        expect(&mut peer, &frames).await;
        finish(&outbox, writer).await;
    }

    /// Many tasks on several threads push at once while the writer runs and the other side
    /// is heard from now and then: every frame arrives once, each task's in its order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn pushes_from_many_threads_arrive_once_each_in_order() {
        use tokio::io::AsyncReadExt;
        const TASKS: u64 = 4;
        const EACH: u64 = 5_000;
        let (_a_read, a_write, mut peer) = pair();
        let outbox = Arc::new(Outbox::new(&a_write));
        let writer = tokio::spawn(write_frames(a_write, outbox.clone()));
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        let pushers: Vec<_> = (0..TASKS)
            .map(|task| {
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    for n in 0..EACH {
                        outbox.push(&Frame::Pong(task << 32 | n));
                        if n % 7 == 0 {
                            outbox.heard();
                        }
                        if n % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for pusher in pushers {
            pusher.await.unwrap();
        }
        finish(&outbox, writer).await;
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), reading)
            .await
            .expect("the end of the stream")
            .unwrap();
        let mut frames = wire::FrameReader::new(&got[..]);
        let mut next = [0u64; TASKS as usize];
        while let Some(frame) = frames.next().await.unwrap() {
            let Some(Frame::Pong(n)) = wire::decode(frame) else {
                panic!("a frame that is no Pong");
            };
            let task = usize::try_from(n >> 32).unwrap();
            assert_eq!(n & 0xffff_ffff, next[task], "task {task}'s frames in order");
            next[task] += 1;
        }
        assert_eq!(next, [EACH; TASKS as usize], "every frame arrived");
    }

    /// The outbox closed while a push writes its frame itself: the writer, which waits for
    /// that write to end, is woken by its end and finishes (nothing queued behind it).
    #[tokio::test]
    async fn a_close_during_a_pushs_own_write_still_ends_the_writer() {
        let (_a_read, a_write, _peer) = pair();
        let outbox = Arc::new(Outbox::new(&a_write));
        // A push's own write under way: its bytes taken from the queue.
        let mut bytes = Vec::new();
        wire::encode(&Frame::Pong(1), &mut bytes);
        lock(&outbox.queued).writing = true;
        let writer = tokio::spawn(write_frames(a_write, outbox.clone()));
        // The writer waits for the push's write (this thread: it runs while this task waits).
        tokio::task::yield_now().await;
        assert!(!writer.is_finished());
        outbox.close();
        tokio::task::yield_now().await;
        assert!(!writer.is_finished(), "the push's write is not done yet");
        let len = bytes.len();
        outbox.wrote(bytes, len);
        tokio::time::timeout(std::time::Duration::from_secs(10), writer)
            .await
            .expect("the writer was woken for the close")
            .unwrap()
            .unwrap();
    }
}
