//! The child's output: forwarded to `tracing` and kept in a bounded ring.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Longest line kept whole; longer lines are split into pieces of this size.
const MAX_LINE_BYTES: u64 = 16 * 1024;

/// Which of the child's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// The child's standard output (logged at `INFO`).
    Stdout,
    /// The child's standard error (logged at `WARN`).
    Stderr,
}

impl fmt::Display for OutputStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        })
    }
}

/// One line the child printed, without its line ending.
///
/// Bytes that are not UTF-8 are replaced with U+FFFD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// The stream the line was printed on.
    pub stream: OutputStream,
    /// The text of the line.
    pub line: String,
}

impl fmt::Display for OutputLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.stream, self.line)
    }
}

/// A shared, bounded log of a child's most recent output lines.
///
/// Cloning is cheap and gives another handle on the same log, which stays
/// readable after the [`ApiDaemon`](crate::ApiDaemon) is gone — after
/// [`ApiDaemon::shutdown`](crate::ApiDaemon::shutdown) it holds everything
/// the process group printed last.
///
/// Lines are kept in the order they were read: each stream's in the order
/// printed, the two streams interleaved as their pipes were read, which may
/// differ from the order printed when the server writes to both at once (a
/// pipe each, read by a task each; nothing tells which write came first).
#[derive(Debug, Clone)]
pub struct OutputLog {
    inner: Arc<Mutex<Ring>>,
}

#[derive(Debug)]
struct Ring {
    lines: VecDeque<OutputLine>,
    capacity: usize,
}

impl OutputLog {
    /// An empty log keeping at most `capacity` lines (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Mutex::new(Ring {
                lines: VecDeque::with_capacity(capacity.min(1024)),
                capacity,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a line, dropping the oldest one when the log is full.
    pub fn push(&self, line: OutputLine) {
        let mut ring = self.lock();
        if ring.lines.len() == ring.capacity {
            ring.lines.pop_front();
        }
        ring.lines.push_back(line);
    }

    /// A copy of the kept lines, oldest first (in the order read: see [`OutputLog`]).
    pub fn lines(&self) -> Vec<OutputLine> {
        self.lock().lines.iter().cloned().collect()
    }

    /// The last `n` kept lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<OutputLine> {
        let ring = self.lock();
        let skip = ring.lines.len().saturating_sub(n);
        ring.lines.iter().skip(skip).cloned().collect()
    }

    /// How many lines are kept now.
    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    /// Whether no line is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most lines the log keeps.
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }
}

/// Reads `reader` line by line until end of file, logging each line and
/// keeping it in `log`.
pub(crate) async fn pump<R>(
    reader: R,
    stream: OutputStream,
    name: Arc<str>,
    pid: u32,
    log: OutputLog,
) where
    R: AsyncRead + Unpin,
{
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(api = %name, pid, %stream, %error, "reading the child's output failed");
                break;
            }
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf).into_owned();
        match stream {
            OutputStream::Stdout => {
                tracing::info!(target: "conclib_apid::output", api = %name, pid, "{line}")
            }
            OutputStream::Stderr => {
                tracing::warn!(target: "conclib_apid::output", api = %name, pid, "{line}")
            }
        }
        log.push(OutputLine { stream, line });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> OutputLine {
        OutputLine {
            stream: OutputStream::Stdout,
            line: n.to_string(),
        }
    }

    #[test]
    fn ring_keeps_the_newest_lines() {
        let log = OutputLog::new(3);
        for n in 0..5 {
            log.push(line(n));
        }
        let kept: Vec<_> = log.lines().into_iter().map(|l| l.line).collect();
        assert_eq!(kept, ["2", "3", "4"]);
        assert_eq!(log.tail(2), vec![line(3), line(4)]);
        assert_eq!(log.tail(10).len(), 3);
    }

    #[test]
    fn zero_capacity_keeps_one() {
        let log = OutputLog::new(0);
        log.push(line(1));
        log.push(line(2));
        assert_eq!(log.lines(), vec![line(2)]);
    }

    #[tokio::test]
    async fn pump_splits_lines_and_strips_endings() {
        let log = OutputLog::new(10);
        let input: &[u8] = b"one\r\ntwo\n\nthree";
        pump(input, OutputStream::Stderr, Arc::from("t"), 1, log.clone()).await;
        let kept: Vec<_> = log.lines().into_iter().map(|l| l.line).collect();
        assert_eq!(kept, ["one", "two", "", "three"]);
        assert!(log.lines().iter().all(|l| l.stream == OutputStream::Stderr));
    }
}
