//! One end of a link's Unix socket, split into a reading and a writing half, registered with
//! the runtime for readability only.
//!
//! Why not `tokio::net::UnixStream`: it registers its socket for reading and writing, and a
//! Unix socket reports "writable again" (an edge of `EPOLLOUT`) each time the other process
//! reads what was written. On a request/reply link that wakes each side's thread once more per
//! round trip, though the writes are small and almost never find the socket full. Here the
//! reader alone is registered; the writer writes straight to the non-blocking socket, and
//! only when that would block does it register a duplicate of the descriptor for
//! writability, until the write goes through. Measured in docs/bench-log.md, "Process actors":
//! faster where the two processes share a CPU and for sporadic asks; slower in a tight loop
//! of asks with the processes on two CPUs of a VM whose wake-ups are dear (there the extra
//! wake-up woke the asker's CPU early).

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Splits a connected socket into halves; it is made non-blocking here. Needs a runtime.
pub(crate) fn split(stream: UnixStream) -> io::Result<(ReadHalf, WriteHalf)> {
    stream.set_nonblocking(true)?;
    let stream = Arc::new(register(stream, Interest::READABLE)?);
    Ok((
        ReadHalf {
            stream: stream.clone(),
        },
        WriteHalf { stream, full: None },
    ))
}

fn register(stream: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: the stream owns its descriptor, open until the `AsyncFd` drops it.
    unsafe { AsyncFd::register_with_interest(stream, interest) }.map_err(io::Error::from)
}

/// The reading half of a link socket.
pub(crate) struct ReadHalf {
    stream: Arc<AsyncFd<UnixStream>>,
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match ready.try_io(|stream| stream.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    // Less than asked for: the socket is drained, so the next read waits for
                    // the runtime's word instead of trying (a syscall) to find nothing.
                    if n > 0 && n < unfilled.len() {
                        ready.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Not readable after all: the readiness was cleared, wait again.
                Err(_would_block) => {}
            }
        }
    }
}

/// The writing half of a link socket. Dropping it shuts the socket down for writing (the
/// other side reads the end of the stream), as tokio's own write halves do.
pub(crate) struct WriteHalf {
    stream: Arc<AsyncFd<UnixStream>>,
    /// While the socket is full: a duplicate of its descriptor, registered for writability.
    full: Option<AsyncFd<UnixStream>>,
}

impl WriteHalf {
    /// The socket, for an [`Outbox`](crate::outbox::Outbox) whose pushes may write a frame
    /// themselves (with [`send`]) while this half's writer has nothing in flight.
    pub(crate) fn socket(&self) -> Arc<AsyncFd<UnixStream>> {
        self.stream.clone()
    }
}

/// `send` with MSG_NOSIGNAL: a peer gone is an error, never a SIGPIPE. Never blocks (the
/// socket is non-blocking): a full socket is `WouldBlock`.
pub(crate) fn send(stream: &UnixStream, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for `data.len()` bytes; `stream` keeps the descriptor open.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let result = match &self.full {
                Some(full) => {
                    let mut ready = ready!(full.poll_write_ready(cx))?;
                    match ready.try_io(|dup| send(dup.get_ref(), data)) {
                        Ok(result) => result,
                        // Still full: the readiness is cleared, wait for the next edge.
                        Err(_would_block) => continue,
                    }
                }
                None => send(self.stream.get_ref(), data),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Registering reports a socket that became writable meanwhile.
                    let dup = self.stream.get_ref().try_clone()?;
                    self.full = Some(register(dup, Interest::WRITABLE)?);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => {
                    // All written: stop watching for writability (its edges would wake the
                    // runtime at every read of the other side). A part written: the socket
                    // is full again, keep watching.
                    if matches!(result, Ok(n) if n == data.len()) {
                        self.full = None;
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

impl Drop for WriteHalf {
    fn drop(&mut self) {
        let _ = self.stream.get_ref().shutdown(std::net::Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// More than the socket holds, both ways at once: the writers wait for room (the
    /// duplicate registered for writability) and every byte arrives, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_socket_makes_the_writer_wait_and_loses_nothing() {
        let (a, b) = UnixStream::pair().unwrap();
        let ((mut a_read, mut a_write), (b_read, mut b_write)) =
            (split(a).unwrap(), split(b).unwrap());
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let a_to_b = tokio::spawn(async move {
            a_write.write_all(&sent).await.unwrap();
            // Dropping the half ends the stream for the reader.
            drop(a_write);
        });
        let sent = data.clone();
        let b_to_a = tokio::spawn(async move {
            b_write.write_all(&sent).await.unwrap();
            b_write
        });
        let read_all = |mut half: ReadHalf| async move {
            let mut got = Vec::new();
            half.read_to_end(&mut got).await.unwrap();
            got
        };
        let at_b = tokio::spawn(read_all(b_read));
        let mut at_a = vec![0; data.len()];
        // Bounded: a writer that missed its wake-up would hang here.
        tokio::time::timeout(Duration::from_secs(60), a_read.read_exact(&mut at_a))
            .await
            .expect("the writers finish")
            .unwrap();
        a_to_b.await.unwrap();
        assert!(at_b.await.unwrap() == data, "a to b");
        assert!(at_a == data, "b to a");
        drop(b_to_a.await.unwrap());
    }

    /// A write to a socket whose other end is gone fails (no SIGPIPE ends the process).
    #[tokio::test]
    async fn writing_to_a_closed_peer_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_read, mut write) = split(a).unwrap();
        drop(b);
        let err = write.write_all(b"hello").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
