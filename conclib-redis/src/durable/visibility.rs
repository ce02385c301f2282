//! What a URN's journal holds, for people and for callers: the executions with their steps
//! ([`ExecutionInfo`]), and [`Executions`], a client's look at results by idempotency key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use conclib_codec::{decode_value, encode_value};
use fred::bytes::Bytes;
use fred::prelude::{Client, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::DurableError;
use super::record::{parse_result, parse_step, promise_field, valid_name};
use super::scripts::scripts;
use super::wake;
use crate::client::ProxyClient;
use crate::conn::{self, bytes, keyed, owned, s};
use crate::protocol::Keys;
use crate::reminders::Reminders;

/// The most executions one listing returns.
pub const MAX_EXECUTIONS_LISTED: usize = 10_000;

/// One execution in a URN's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionInfo {
    /// Its key (the idempotency key it was begun with).
    pub key: String,
    /// When its result was recorded (ms since the Unix epoch), if it finished.
    pub finished_at_ms: Option<u64>,
    /// How many steps (and version points) were recorded.
    pub steps_recorded: u32,
    /// The recorded steps, in order, while it runs (deleted once it finished).
    pub steps: Vec<StepInfo>,
}

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepInfo {
    /// Its number in the execution (1-based).
    pub number: u32,
    /// Its name (a version point's is `@version <name>`).
    pub name: String,
    /// When it was recorded (ms since the Unix epoch, the recording host's clock).
    pub at_ms: u64,
    /// Its value, as the proxy's codec encoded it.
    pub value: Vec<u8>,
}

/// The executions `urn`'s journal holds, with their recorded steps (at most `max`, by key),
/// read through `reader`'s connection: what the live view shows of them. Callers with a
/// [`ProxyClient`] use [`Executions::list`].
///
/// # Errors
/// [`DurableError::Redis`] if Redis fails the read.
///
/// # Examples
/// ```no_run
/// # async fn f(reader: &conclib_redis::snapshots::SnapshotReader) -> Result<(), conclib_redis::durable::DurableError> {
/// for execution in conclib_redis::durable::read_executions(reader, "order:7", 20).await? {
///     println!("{} {} steps", execution.key, execution.steps.len());
/// }
/// # Ok(()) }
/// ```
pub async fn read_executions(
    reader: &crate::snapshots::SnapshotReader,
    urn: &str,
    max: usize,
) -> Result<Vec<ExecutionInfo>, DurableError> {
    list(&reader.client, &reader.keys.state(urn), max).await
}

/// The executions in the journal at state key `key` (at most `max`, by key; at most
/// [`MAX_EXECUTIONS_LISTED`]).
pub(crate) async fn list(
    cmd: &Client,
    key: &str,
    max: usize,
) -> Result<Vec<ExecutionInfo>, DurableError> {
    let max = max.min(MAX_EXECUTIONS_LISTED);
    let mut found: BTreeMap<String, ExecutionInfo> = BTreeMap::new();
    let mut cursor = "0".to_owned();
    loop {
        let args = vec![
            owned(key.to_owned()),
            owned(cursor.clone()),
            s("MATCH"),
            s("j[nrs]:*"),
            s("COUNT"),
            Value::Integer(1000),
        ];
        let answer = conn::call(cmd, keyed("HSCAN"), args)
            .await
            .map_err(|e| DurableError::Redis(e.to_string()))?;
        let Value::Array(mut parts) = answer else {
            return Err(DurableError::Redis("unexpected HSCAN answer".into()));
        };
        let fields = parts.pop();
        cursor = parts.pop().map(|c| conn::text(&c)).unwrap_or_default();
        if let Some(Value::Array(fields)) = fields {
            let mut it = fields.into_iter();
            while let (Some(field), Some(value)) = (it.next(), it.next()) {
                if let (Some(field), Some(value)) = (field.into_bytes(), value.into_bytes()) {
                    take(&mut found, &field, &value);
                }
            }
        }
        if cursor == "0" || cursor.is_empty() || found.len() >= max {
            break;
        }
    }
    let mut out: Vec<ExecutionInfo> = found.into_values().collect();
    out.truncate(max);
    for info in &mut out {
        info.steps.sort_by_key(|s| s.number);
    }
    Ok(out)
}

/// One journal field read into the listing (fields this code did not write are skipped).
fn take(found: &mut BTreeMap<String, ExecutionInfo>, field: &[u8], value: &[u8]) {
    let Ok(field) = std::str::from_utf8(field) else {
        return;
    };
    if let Some(key) = field.strip_prefix("jn:") {
        entry(found, key).steps_recorded = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    } else if let Some(key) = field.strip_prefix("jr:") {
        entry(found, key).finished_at_ms = parse_result(value).map(|(at, _)| at);
    } else if let Some(rest) = field.strip_prefix("js:")
        && let Some((number, key)) = rest.split_once(':')
        && let Ok(number) = number.parse()
        && let Some(step) = parse_step(value)
    {
        entry(found, key).steps.push(StepInfo {
            number,
            name: step.name.to_owned(),
            at_ms: step.at_ms,
            value: step.value.to_vec(),
        });
    }
}

fn entry<'m>(found: &'m mut BTreeMap<String, ExecutionInfo>, key: &str) -> &'m mut ExecutionInfo {
    found
        .entry(key.to_owned())
        .or_insert_with(|| ExecutionInfo {
            key: key.to_owned(),
            finished_at_ms: None,
            steps_recorded: 0,
            steps: Vec::new(),
        })
}

/// A caller's look at durable executions by URN and idempotency key: their results, and
/// what runs.
///
/// An execution is started by a message to its URN whose handler runs it under a key
/// ([`Journal::run`](super::Journal::run)); sent again with the same key, it returns the
/// first result without running. A caller that only started it (a tell) reads the result
/// here later. Results are decoded with the client's codec
/// ([`ProxyConfig::codec`](crate::ProxyConfig::codec)), which must be the proxy's.
///
/// ```no_run
/// # async fn demo(client: conclib_redis::ProxyClient) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use conclib_redis::durable::Executions;
/// let executions = Executions::new(&client);
/// let receipt: String = executions
///     .wait_result("order:42", "order-42-attempt-1", Duration::from_secs(5))
///     .await?;
/// # let _ = receipt; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Executions {
    client: ProxyClient,
    keys: Keys,
    reminders: Reminders,
}

impl std::fmt::Debug for Executions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executions")
            .field("namespace", &self.client.config().namespace)
            .finish_non_exhaustive()
    }
}

impl Executions {
    /// Looks through `client`'s connections and namespace.
    #[must_use]
    pub fn new(client: &ProxyClient) -> Self {
        Executions {
            keys: Keys::new(&client.config().namespace),
            reminders: Reminders::new(client),
            client: client.clone(),
        }
    }

    fn connection(&self) -> Result<&Client, DurableError> {
        self.client
            .command_connection()
            .map_err(|e| DurableError::Redis(e.to_string()))
    }

    /// The result of execution `key` of `urn`, if it finished. One round trip.
    ///
    /// # Errors
    /// [`DurableError::InvalidName`], [`DurableError::Corrupt`] (recorded as another type),
    /// [`DurableError::Redis`].
    pub async fn result<R: DeserializeOwned>(
        &self,
        urn: &str,
        key: &str,
    ) -> Result<Option<R>, DurableError> {
        if !valid_name(key) {
            return Err(DurableError::InvalidName(key.to_owned()));
        }
        let args = vec![owned(self.keys.state(urn)), owned(format!("jr:{key}"))];
        let answer = conn::call(self.connection()?, keyed("HGET"), args)
            .await
            .map_err(|e| DurableError::Redis(e.to_string()))?;
        let Some(record) = answer.into_bytes() else {
            return Ok(None);
        };
        let (_, value) = parse_result(&record)
            .ok_or_else(|| DurableError::Corrupt("not a result record".into()))?;
        decode_value(&*self.client.config().codec, value)
            .map(Some)
            .map_err(|e| DurableError::Corrupt(format!("result: {e}")))
    }

    /// Waits, at most `within`, for execution `key` of `urn` to finish; its result.
    ///
    /// # Errors
    /// [`DurableError::Timeout`], and those of [`result`](Self::result).
    pub async fn wait_result<R: DeserializeOwned>(
        &self,
        urn: &str,
        key: &str,
        within: Duration,
    ) -> Result<R, DurableError> {
        let until = Instant::now() + within;
        let mut pause = Duration::from_millis(1);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let looked = tokio::time::timeout(left, self.result(urn, key)).await;
            match looked {
                Ok(Ok(Some(result))) => return Ok(result),
                Ok(Ok(None)) | Ok(Err(DurableError::Redis(_))) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(DurableError::Timeout),
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DurableError::Timeout);
            }
            // No event tells a caller that a result was recorded: it looks again, less
            // often the longer it waits.
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Resolves promise `name` of execution `key` of `urn` with `value` (encoded with the
    /// client's codec), for the execution to take with
    /// [`Execution::promise`](super::Execution::promise), now or when it gets there.
    /// `false` if it was resolved already (the first value stays). Two round trips, and
    /// one more when the execution waited for a promise with a wake message
    /// ([`Execution::wake_with`](super::Execution::wake_with), left in the journal until it
    /// finishes): a wake reminder due at once is registered, which runs it again (suspended,
    /// it resumes; still waiting in its handler, the wake finds it done or waiting again).
    /// A call that failed is retried as it is: resolved already, it still wakes the
    /// execution.
    ///
    /// # Errors
    /// [`DurableError::InvalidName`], [`DurableError::Codec`], [`DurableError::Redis`].
    pub async fn resolve<T: Serialize + ?Sized>(
        &self,
        urn: &str,
        key: &str,
        name: &str,
        value: &T,
    ) -> Result<bool, DurableError> {
        for n in [key, name] {
            if !valid_name(n) {
                return Err(DurableError::InvalidName(n.to_owned()));
            }
        }
        let encoded = encode_value(&*self.client.config().codec, value)
            .map_err(|e| DurableError::Codec(e.to_string()))?;
        let args = vec![owned(promise_field(key, name)), bytes(Bytes::from(encoded))];
        let answer = scripts()
            .resolve
            .eval(self.connection()?, vec![self.keys.state(urn)], args)
            .await
            .map_err(|e| DurableError::Redis(e.to_string()))?;
        let args = vec![owned(self.keys.state(urn)), owned(format!("jw:{key}"))];
        let waiting = conn::call(self.connection()?, keyed("HGET"), args)
            .await
            .map_err(|e| DurableError::Redis(e.to_string()))?;
        if let Some(message) = waiting.into_bytes() {
            wake::register(&self.reminders, urn, key, None, &message).await?;
        }
        Ok(answer == Value::Integer(1))
    }

    /// The executions `urn`'s journal holds, with their steps (at most
    /// [`MAX_EXECUTIONS_LISTED`]).
    ///
    /// # Errors
    /// [`DurableError::Redis`].
    pub async fn list(&self, urn: &str) -> Result<Vec<ExecutionInfo>, DurableError> {
        list(
            self.connection()?,
            &self.keys.state(urn),
            MAX_EXECUTIONS_LISTED,
        )
        .await
    }
}
