//! One Lua script run by its SHA1 ([`Script`]), with its fallback: sent again by its text
//! when Redis does not have it (restarted, or its script cache flushed). The proxy, the
//! client, the reminders and the topics run their scripts through it.

use fred::prelude::*;

use crate::conn::{self, keyed_at, owned, s};
use crate::protocol;

/// A Lua script with its SHA1, run with EVALSHA and loaded with EVAL when Redis lost it.
pub(crate) struct Script {
    text: &'static str,
    sha: String,
}

impl Script {
    pub(crate) fn new(text: &'static str) -> Self {
        Script {
            text,
            sha: protocol::sha1_hex(text),
        }
    }

    /// The script's SHA1, as EVALSHA names it (first of a call's arguments).
    pub(crate) fn sha(&self) -> Value {
        owned(self.sha.clone())
    }

    /// Whether a call by SHA failed because Redis does not have the script (restarted, or
    /// its script cache flushed): nothing of it ran, and it is sent again by its text.
    pub(crate) fn lost(e: &fred::error::Error) -> bool {
        conn::error_code_is(e, "NOSCRIPT")
    }

    /// Sends again with EVAL, by the script's text, a call made by SHA that Redis did not
    /// have the script for ([`lost`](Self::lost)): `args` as sent, the SHA first.
    pub(crate) async fn again_by_text(
        &self,
        cmd: &Client,
        mut args: Vec<Value>,
    ) -> Result<Value, fred::error::Error> {
        args[0] = s(self.text);
        conn::call(cmd, keyed_at("EVAL", 2, false), args).await
    }

    /// Runs the script once (`keys`, then `args`), by its SHA, sending its text when Redis
    /// does not have it (restarted, or its script cache flushed). Routed by its first key.
    pub(crate) async fn eval<C: ClientLike>(
        &self,
        cmd: &C,
        keys: Vec<impl Into<Value>>,
        args: Vec<Value>,
    ) -> Result<Value, fred::error::Error> {
        let keys: Vec<Value> = keys.into_iter().map(Into::into).collect();
        let call = |first: Value| {
            let mut a = Vec::with_capacity(keys.len() + args.len() + 2);
            a.push(first);
            a.push(Value::Integer(keys.len() as i64));
            a.extend(keys.iter().cloned());
            a.extend(args.iter().cloned());
            a
        };
        let sha = call(owned(self.sha.clone()));
        match conn::call(cmd, keyed_at("EVALSHA", 2, false), sha).await {
            Err(e) if Self::lost(&e) => {
                conn::call(cmd, keyed_at("EVAL", 2, false), call(s(self.text))).await
            }
            other => other,
        }
    }

    /// Runs a script over many keys with the same arguments, in calls of at most
    /// [`KEYS_PER_CALL`] keys sent one after another; its answer (one per key, in order),
    /// or the first error. Not in a cluster (a call's keys may be in any slot).
    ///
    /// One call at a time, not all pipelined together: renewing 100,000 URN keys is 500
    /// calls of about half a millisecond of Redis's time each, and pipelined they held
    /// every other command of the connection (and every other client of Redis) behind
    /// them for the whole renewal; sent one by one, other commands pass between them.
    pub(crate) async fn eval_keys(
        &self,
        cmd: &Client,
        keys: &[Value],
        args: &[Value],
    ) -> Result<Vec<Value>, fred::error::Error> {
        let call = |first: Value, chunk: &[Value]| {
            let mut a = Vec::with_capacity(chunk.len() + args.len() + 2);
            a.push(first);
            a.push(Value::Integer(chunk.len() as i64));
            a.extend(chunk.iter().cloned());
            a.extend(args.iter().cloned());
            a
        };
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_CALL) {
            let result = conn::call(
                cmd,
                keyed_at("EVALSHA", 2, false),
                call(owned(self.sha.clone()), chunk),
            )
            .await;
            let answered = match result {
                Err(e) if Self::lost(&e) => {
                    conn::call(cmd, keyed_at("EVAL", 2, false), call(s(self.text), chunk)).await?
                }
                other => other?,
            };
            match answered {
                Value::Array(values) if values.len() == chunk.len() => out.extend(values),
                other => {
                    return Err(fred::error::Error::new(
                        fred::error::ErrorKind::Protocol,
                        format!(
                            "unexpected answer to a claim of {} keys: {other:?}",
                            chunk.len()
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Runs one script per (key, args) in a pipeline; re-runs with EVAL the calls that met
    /// NOSCRIPT (Redis restarted or flushed its script cache).
    pub(crate) async fn eval_many(
        &self,
        cmd: &Client,
        calls: Vec<(String, Vec<Value>)>,
    ) -> Vec<Result<Value, fred::error::Error>> {
        if calls.is_empty() {
            return Vec::new();
        }
        let mut results = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(1000) {
            let pipeline = cmd.pipeline();
            for (key, args) in chunk {
                let mut a = Vec::with_capacity(args.len() + 3);
                a.push(owned(self.sha.clone()));
                a.push(Value::Integer(1));
                a.push(owned(key.clone()));
                a.extend(args.iter().cloned());
                let _ = conn::call(&pipeline, keyed_at("EVALSHA", 2, false), a).await;
            }
            let mut out = pipeline.try_all::<Value>().await;
            for (i, (key, args)) in chunk.iter().enumerate() {
                if let Some(Err(e)) = out.get(i)
                    && Self::lost(e)
                {
                    let mut a = Vec::with_capacity(args.len() + 3);
                    a.push(s(self.text));
                    a.push(Value::Integer(1));
                    a.push(owned(key.clone()));
                    a.extend(args.iter().cloned());
                    out[i] = conn::call(cmd, keyed_at("EVAL", 2, false), a).await;
                }
            }
            results.extend(out);
        }
        results
    }
}

/// The most keys one call of a many-key script names: a claim of 200 URN keys holds Redis
/// for about half a millisecond (`docs/bench-log.md`, "Overload: URN key renewal at the cap").
const KEYS_PER_CALL: usize = 200;
