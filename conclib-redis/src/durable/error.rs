//! [`DurableError`]: why a durable execution could not go on.

use std::ops::RangeInclusive;

use crate::proxy::StoreError;

/// Why a durable execution (or a look at one) could not go on. Nothing of a step whose
/// record failed counts as done: the next run of the execution runs it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// A later activation of the URN owns its state and journal now (this process was
    /// paused past its lease and another system activated the URN): nothing was recorded.
    /// The proxy sends the message being handled to the current activation, which replays
    /// the execution.
    #[error("a later activation owns this journal now; nothing was recorded")]
    Fenced,
    /// The code asked for a step other than the one the journal recorded at this point:
    /// the code changed between runs without a [`version`](super::Execution::version)
    /// point, or it is not deterministic between steps (see the module docs).
    #[error("step {position} is recorded as {recorded:?}, the code asked for {asked:?}")]
    Nondeterminism {
        /// The step's number (1-based).
        position: u32,
        /// The name the journal holds there.
        recorded: String,
        /// The name the code gave.
        asked: String,
    },
    /// The journal recorded a version of the point `name` that this code does not
    /// support: the execution stops here rather than run code it was not written for.
    #[error("version point {name:?} recorded {recorded}, this code supports {supported:?}")]
    UnsupportedVersion {
        /// The version point.
        name: String,
        /// The version the journal holds.
        recorded: u32,
        /// The versions this code supports.
        supported: RangeInclusive<u32>,
    },
    /// Two runs of one execution at once (in one activation: the handler ran an execution
    /// of the same key beside itself): the second's step was not recorded.
    #[error("execution {0:?} is being run twice at once")]
    Conflict(String),
    /// A step, version point or execution key that is empty, longer than
    /// [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes or holds a newline.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// Bytes in the journal this code did not write (or a value of another type).
    #[error("journal record: {0}")]
    Corrupt(String),
    /// The execution waits for a durable sleep or a promise and let its handler go: a wake
    /// reminder runs it again when the sleep ends or the promise is resolved
    /// ([`Execution::wake_with`](super::Execution::wake_with)). Nothing is lost: what it
    /// recorded stays; a caller reads its result later
    /// ([`Executions::wait_result`](super::Executions::wait_result)).
    #[error("the execution is suspended until a wake reminder runs it again")]
    Suspended,
    /// Waited for a result longer than asked.
    #[error("no result within the time asked")]
    Timeout,
    /// Redis did not answer, or refused.
    #[error("Redis: {0}")]
    Redis(String),
    /// A value could not be encoded or decoded with the proxy's codec.
    #[error("codec: {0}")]
    Codec(String),
}

impl From<StoreError> for DurableError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Fenced => DurableError::Fenced,
            StoreError::Codec(e) => DurableError::Codec(e),
            StoreError::Redis(e) => DurableError::Redis(e),
        }
    }
}
