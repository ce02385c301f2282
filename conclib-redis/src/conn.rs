//! Thin helpers over fred: raw commands with the right cluster routing, value access.

use fred::bytes;
use fred::prelude::*;
use fred::types::{ClientUnblockFlag, ClusterHash, CustomCommand};
use std::time::Duration;

pub(crate) mod subscription;

/// A command whose key is its first argument.
pub(crate) fn keyed(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// A command without a key (any node of a cluster answers).
pub(crate) fn unkeyed(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::Random, false)
}

/// A command whose key is argument `offset` (0-based).
pub(crate) fn keyed_at(name: &'static str, offset: usize, blocking: bool) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::Offset(offset), blocking)
}

/// How long [`unblocking`] lets a read run between two interruptions.
const UNBLOCK_AGAIN: Duration = Duration::from_millis(10);

/// Waits for `pending`, a command of `conn` that may block (a blocking read), interrupting
/// it until it ends (`CLIENT UNBLOCK`: it answers as if it timed out with `flag` =
/// `Timeout`, or fails with `Error`). Again and again, not once: a read fred has not sent
/// yet, or Redis has not begun, is not blocked, and an interruption that comes first
/// finds nothing to interrupt; the read would then block for its whole timeout (a drain
/// waited so for its stream reader, a second each time).
pub(crate) async fn unblocking<F: Future + Unpin>(
    conn: &Client,
    flag: ClientUnblockFlag,
    mut pending: F,
) -> F::Output {
    loop {
        tokio::select! {
            biased;
            out = &mut pending => return out,
            () = async {
                let _ = conn.unblock_self(Some(flag.clone())).await;
                tokio::time::sleep(UNBLOCK_AGAIN).await;
            } => {}
        }
    }
}

/// Runs a raw command and returns Redis's answer untouched (nil stays `Value::Null`).
pub(crate) async fn call<C: ClientLike>(
    client: &C,
    mut cmd: CustomCommand,
    args: Vec<Value>,
) -> Result<Value, Error> {
    // fred routes a custom command by its `cluster_hash` only when that is a slot
    // (`Custom`); anything else falls back to the first string argument (a script's SHA,
    // `GROUP`, `CREATE`), which sends it to the wrong node, to be redirected with MOVED.
    if let ClusterHash::Offset(i) = cmd.cluster_hash
        && let Some(key) = args.get(i).and_then(as_bytes)
    {
        cmd.cluster_hash = ClusterHash::Custom(fred::util::redis_keyslot(key));
    }
    client.custom::<Value, Value>(cmd, args).await
}

pub(crate) fn s(v: &'static str) -> Value {
    Value::from_static_str(v)
}

pub(crate) fn owned(v: impl Into<String>) -> Value {
    Value::from(v.into())
}

pub(crate) fn bytes(v: impl Into<bytes::Bytes>) -> Value {
    Value::Bytes(v.into())
}

/// Bytes whose clones only count a reference: the first clone of bytes made from a `Vec`
/// allocates the header they share, which is done here, once, rather than by each later
/// clone's caller.
pub(crate) fn shared_bytes(from: impl Into<Vec<u8>>) -> bytes::Bytes {
    let shared = bytes::Bytes::from(from.into());
    drop(shared.clone());
    shared
}

/// The bytes of a string value.
pub(crate) fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

/// Whether a Redis error reply starts with this code (`NOGROUP`, `NOSCRIPT`, `BUSYGROUP`).
pub(crate) fn error_code_is(error: &Error, code: &str) -> bool {
    error.details().contains(code)
}

/// How [`init_within`] connects: within `timeout`, pausing up to `max_pause` between
/// attempts (a configuration's `connect_timeout` and `reconnect_max_delay`).
#[derive(Clone, Copy)]
pub(crate) struct Connecting {
    pub(crate) timeout: Duration,
    pub(crate) max_pause: Duration,
}

/// Connects every client within `timeout`; on failure quits those that connected and says
/// why. A client's connection refused or lost, or sentinels naming no primary that answers
/// (the primary they name restarting or being replaced, every sentinel down), is tried
/// again after a pause (20 ms, doubling up to `max_pause`, as fred reconnects) until the
/// timeout: a process started beside
/// its Redis, or while a Sentinel topology fails over, starts once it answers. Anything else
/// (a refused password, a bad URL) fails at once.
pub(crate) async fn init_within(clients: &[&Client], connecting: Connecting) -> Result<(), String> {
    let Connecting { timeout, max_pause } = connecting;
    let deadline = tokio::time::Instant::now() + timeout;
    let connect = clients
        .iter()
        .map(|client| init_until(client, deadline, timeout, max_pause));
    let Err(failure) = futures_util::future::try_join_all(connect).await else {
        return Ok(());
    };
    // Only a client that connected has a task to read its QUIT: one whose attempt ended or
    // was given up has none, and a QUIT sent as that attempt ends would wait out its
    // command timeout.
    for client in clients.iter().filter(|c| c.is_connected()) {
        let _ = client.quit().await;
    }
    Err(failure)
}

/// [`init_within`] for one client, until `deadline` (`timeout` from the start).
async fn init_until(
    client: &Client,
    deadline: tokio::time::Instant,
    timeout: Duration,
    max_pause: Duration,
) -> Result<(), String> {
    let first = Duration::from_millis(20);
    let mut pause = first;
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline, attempt(client)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if crate::error::is_connection_error(&e) => last = Some(e),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => break,
        }
        // An attempt that would start past the deadline is cut at once by `timeout_at`.
        tokio::time::sleep_until((tokio::time::Instant::now() + pause).min(deadline)).await;
        pause = (pause * 2).min(max_pause).max(first);
    }
    let within = format!("could not connect within {timeout:?}");
    Err(match last {
        Some(e) => format!("{within}: {e}"),
        None => within,
    })
}

/// One attempt to connect `client` (fred's `connect`, its connection task failing at the
/// first error as `fail_fast` has it); its error once that task ended. Not fred's `init`:
/// after a failed attempt, `init` may give the client a new command channel while the
/// failed task still holds the old one, and the QUIT it sends there is then counted for
/// ever as a command about to be written, so fred holds every later command unflushed
/// until another one comes (asks stalled for seconds on a client started this way).
async fn attempt(client: &Client) -> Result<(), Error> {
    let mut task = client.connect();
    let mut unfinished = AbortOnDrop(Some(task.abort_handle()));
    let connected = async {
        // `wait_for_connect` reads the state, then waits for the next report: one made
        // between the two goes unseen, hence the state read again every few milliseconds.
        while !client.is_connected() {
            let wait = Duration::from_millis(5);
            let _ = tokio::time::timeout(wait, client.wait_for_connect()).await;
        }
    };
    tokio::select! {
        biased;
        ended = &mut task => Err(match ended {
            Ok(Err(e)) => e,
            Ok(Ok(())) => Error::new(ErrorKind::Canceled, "the connection task ended"),
            Err(e) => Error::new(ErrorKind::Unknown, e.to_string()),
        }),
        () = connected => {
            // The task that connected is the client's from now on.
            unfinished.0 = None;
            Ok(())
        }
    }
}

/// Aborts a connection task whose attempt was given up (its deadline passed): the client
/// is not used again, and a `quit` would wait for a task that may end without reading it.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A count Redis answered: an integer, or a number written as text (a float's text is cut
/// to its whole part); `None` for a negative number or anything else.
pub(crate) fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        other => as_bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|f| *f >= 0.0)
            .map(|f| f as u64),
    }
}

/// A text Redis answered, invalid UTF-8 replaced; empty for a value that is not a string.
pub(crate) fn text(v: &Value) -> String {
    as_bytes(v)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// [`text`], shared: its clones count a reference instead of copying it.
pub(crate) fn shared_text(v: &Value) -> std::sync::Arc<str> {
    match as_bytes(v) {
        Some(b) => std::sync::Arc::from(String::from_utf8_lossy(b).as_ref()),
        None => std::sync::Arc::from(""),
    }
}

/// The `(id, fields)` of an XREADGROUP (or XAUTOCLAIM, wrapped as one stream) answer, in
/// order. An entry deleted or trimmed away while pending comes with nil fields: it is kept,
/// as `(id, Value::Null)`, so that its reader acknowledges it; a malformed entry (no id, not
/// a pair) is skipped.
pub(crate) fn stream_entries(value: Value) -> Vec<(bytes::Bytes, Value)> {
    let mut out = Vec::new();
    let Value::Array(streams) = value else {
        return out;
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let Some(Value::Array(entries)) = parts.pop() else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut pair) = entry else {
                continue;
            };
            if pair.len() != 2 {
                continue;
            }
            let fields = pair.pop().unwrap_or(Value::Null);
            let Some(id) = pair.pop().and_then(Value::into_bytes) else {
                continue;
            };
            out.push((id, fields));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_entries_keep_a_deleted_entry_with_nil_fields_and_skip_malformed_ones() {
        let entry = |id: &str, fields: Value| Value::Array(vec![s_value(id), fields]);
        let fields = Value::Array(vec![s_value("f"), s_value("v")]);
        let answer = Value::Array(vec![Value::Array(vec![
            s_value("stream"),
            Value::Array(vec![
                entry("1-0", fields.clone()),
                entry("2-0", Value::Null),
                Value::Array(vec![s_value("3-0")]),
                entry("4-0", fields.clone()),
            ]),
        ])]);
        let got = stream_entries(answer);
        let ids: Vec<&[u8]> = got.iter().map(|(id, _)| id.as_ref()).collect();
        assert_eq!(ids, [&b"1-0"[..], b"2-0", b"4-0"]);
        assert_eq!(got[0].1, fields);
        assert_eq!(got[1].1, Value::Null);
        assert!(stream_entries(Value::Null).is_empty());
    }

    fn s_value(text: &str) -> Value {
        Value::from(text)
    }
}
