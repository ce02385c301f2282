//! Thin helpers over fred: raw commands with the right cluster routing, value access.

use fred::bytes;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};

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

/// Connects every client within `timeout`; on failure quits them all and says why (the
/// error, or the timeout).
pub(crate) async fn init_within(
    clients: &[&Client],
    timeout: std::time::Duration,
) -> Result<(), String> {
    let connect = async {
        for client in clients {
            client.init().await?;
        }
        Ok::<_, Error>(())
    };
    let failure = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("could not connect within {timeout:?}"),
    };
    for client in clients {
        let _ = client.quit().await;
    }
    Err(failure)
}
