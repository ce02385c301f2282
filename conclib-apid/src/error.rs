//! [`ApiError`]: why a server could not be started, waited for or stopped.

use std::fmt;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use crate::output::{OutputLine, OutputStream};

/// How many output lines an error message shows (the error value keeps more).
const LINES_IN_MESSAGE: usize = 20;

/// What the last health-check request got, for [`ApiError::HealthTimeout`]. A request the
/// start's deadline cut short before its own timeout does not count: it says nothing of the
/// server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthAttempt {
    /// The request got no answer within its request timeout: the server took no
    /// connection in time or answered nothing. Also what is reported if no request
    /// finished before the startup timeout.
    NoResponse,
    /// The server answered with this HTTP status (not 200).
    Status(u16),
    /// The request failed: connection refused, bad response...
    /// The text is the error with all its causes.
    Error(String),
}

impl fmt::Display for HealthAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthAttempt::NoResponse => f.write_str("no answer in time"),
            HealthAttempt::Status(code) => write!(f, "HTTP status {code}"),
            HealthAttempt::Error(e) => write!(f, "request failed: {e}"),
        }
    }
}

/// Why [`start_api`](crate::start_api) or a later operation on an
/// [`ApiDaemon`](crate::ApiDaemon) failed.
///
/// Errors about a child that ran carry its last output lines (both streams,
/// oldest first in the order read, see [`OutputLog`](crate::OutputLog));
/// their message shows the last few of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The program to launch does not exist (or is not in `PATH`).
    #[error("cannot start API server `{name}`: program `{program}` not found")]
    ProgramNotFound {
        /// The configured server name.
        name: String,
        /// The program as configured.
        program: String,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// Launching the child failed for another reason (permissions, a bad
    /// working directory, no runtime with I/O enabled...).
    #[error("cannot start API server `{name}` (program `{program}`): {source}")]
    Spawn {
        /// The configured server name.
        name: String,
        /// The program as configured.
        program: String,
        /// The error from the operating system or the runtime.
        #[source]
        source: io::Error,
    },

    /// The configuration cannot be used as it is.
    #[error("invalid configuration for API server `{name}`: {reason}")]
    InvalidConfig {
        /// The configured server name.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// The child exited before its health check answered 200.
    #[error(
        "API server `{name}` (pid {pid}) exited with {status} before {url} answered 200{}",
        OutputTail(output)
    )]
    EarlyExit {
        /// The configured server name.
        name: String,
        /// The child's process id.
        pid: u32,
        /// The health-check URL.
        url: String,
        /// How the child ended.
        status: ExitStatus,
        /// The child's last output lines, oldest first.
        output: Vec<OutputLine>,
    },

    /// The health check did not answer 200 within the startup timeout. The
    /// child has been killed.
    #[error(
        "API server `{name}` (pid {pid}): {url} did not answer 200 within {timeout:?}; last attempt: {last}{}",
        OutputTail(output)
    )]
    HealthTimeout {
        /// The configured server name.
        name: String,
        /// The child's process id.
        pid: u32,
        /// The health-check URL.
        url: String,
        /// The configured startup timeout.
        timeout: Duration,
        /// What the last health-check request got (one the deadline cut short does not count).
        last: HealthAttempt,
        /// The child's last output lines, oldest first.
        output: Vec<OutputLine>,
    },

    /// Waiting for the child failed.
    #[error("waiting for API server `{name}` (pid {pid}) failed: {source}")]
    Wait {
        /// The configured server name.
        name: String,
        /// The child's process id.
        pid: u32,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },
}

impl ApiError {
    /// The child's last output lines, if the error is about a child that ran.
    pub fn output(&self) -> &[OutputLine] {
        match self {
            ApiError::EarlyExit { output, .. } | ApiError::HealthTimeout { output, .. } => output,
            _ => &[],
        }
    }

    /// The child's last standard-error lines, oldest first.
    pub fn stderr_lines(&self) -> impl Iterator<Item = &str> {
        self.output()
            .iter()
            .filter(|l| l.stream == OutputStream::Stderr)
            .map(|l| l.line.as_str())
    }

    /// The child's exit status, for [`ApiError::EarlyExit`].
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self {
            ApiError::EarlyExit { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Formats the last output lines of an error message, one per line.
struct OutputTail<'a>(&'a [OutputLine]);

impl fmt::Display for OutputTail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("; it printed nothing");
        }
        let skip = self.0.len().saturating_sub(LINES_IN_MESSAGE);
        if skip > 0 {
            write!(f, "; its last {LINES_IN_MESSAGE} output lines:")?;
        } else {
            f.write_str("; its output:")?;
        }
        for line in &self.0[skip..] {
            write!(f, "\n    {line}")?;
        }
        Ok(())
    }
}

/// The error and all its causes, joined with `": "`, skipping causes whose
/// text the previous one already contains.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
