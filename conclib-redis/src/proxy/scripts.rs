//! The Lua scripts a proxy runs ([`Scripts`]), each run by its SHA1 ([`Script`]).

use fred::prelude::*;

use crate::conn::{self, keyed_at, owned, s};
use crate::protocol::{
    self, ANSWER_SCRIPT, CLAIM_MANY_SCRIPT, CLAIM_SCRIPT, FORWARD_SCRIPT, PLACE_SCRIPT,
    PLACEMENT_READ_SCRIPT, PLACEMENT_REPORT_SCRIPT, PUSH_SCRIPT, RELEASE_SCRIPT, RESET_SCRIPT,
};

/// The scripts of a proxy instance, loaded by Redis on first use.
pub(super) struct Scripts {
    pub(super) claim: Script,
    /// `claim` for many keys in one call (not in a cluster).
    pub(super) claim_many: Script,
    pub(super) release: Script,
    pub(super) push: Script,
    pub(super) answer: Script,
    /// Passes a request on to another system's stream ([`FORWARD_SCRIPT`]).
    pub(super) pass_on: Script,
    /// Places a pattern's request on another member ([`PLACE_SCRIPT`]).
    pub(super) place: Script,
    /// Writes a member's count in a pattern's directory ([`PLACEMENT_REPORT_SCRIPT`]).
    pub(super) report: Script,
    /// Reads a pattern's directory ([`PLACEMENT_READ_SCRIPT`]).
    pub(super) read_directory: Script,
    /// Replaces a poisoned request stream by an empty one ([`RESET_SCRIPT`]).
    pub(super) reset: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            claim: Script::new(CLAIM_SCRIPT),
            claim_many: Script::new(CLAIM_MANY_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
            push: Script::new(PUSH_SCRIPT),
            answer: Script::new(ANSWER_SCRIPT),
            pass_on: Script::new(FORWARD_SCRIPT),
            place: Script::new(PLACE_SCRIPT),
            report: Script::new(PLACEMENT_REPORT_SCRIPT),
            read_directory: Script::new(PLACEMENT_READ_SCRIPT),
            reset: Script::new(RESET_SCRIPT),
        }
    }
}

/// A Lua script with its SHA1, run with EVALSHA and loaded with EVAL when Redis lost it.
pub(super) struct Script {
    pub(super) text: &'static str,
    pub(super) sha: String,
}

impl Script {
    pub(super) fn new(text: &'static str) -> Self {
        Script {
            text,
            sha: protocol::sha1_hex(text),
        }
    }

    /// Runs the script once (`keys`, then `args`), by its SHA, sending its text when Redis
    /// does not have it (restarted, or its script cache flushed). Routed by its first key.
    pub(super) async fn eval(
        &self,
        cmd: &Client,
        keys: Vec<Value>,
        args: Vec<Value>,
    ) -> Result<Value, fred::error::Error> {
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
            Err(e) if conn::error_code_is(&e, "NOSCRIPT") => {
                conn::call(cmd, keyed_at("EVAL", 2, false), call(s(self.text))).await
            }
            other => other,
        }
    }

    /// Runs a script over many keys with the same arguments, in calls of at most
    /// [`KEYS_PER_CALL`] keys pipelined together; its answer (one per key, in order), or
    /// the first error. Not in a cluster (a call's keys may be in any slot).
    pub(super) async fn eval_keys(
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
        let pipeline = cmd.pipeline();
        let chunks: Vec<&[Value]> = keys.chunks(KEYS_PER_CALL).collect();
        for chunk in &chunks {
            let _ = conn::call(
                &pipeline,
                keyed_at("EVALSHA", 2, false),
                call(owned(self.sha.clone()), chunk),
            )
            .await;
        }
        let results = pipeline.try_all::<Value>().await;
        let mut out = Vec::with_capacity(keys.len());
        for (chunk, result) in chunks.iter().zip(results) {
            let answered = match result {
                Err(e) if conn::error_code_is(&e, "NOSCRIPT") => {
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
    pub(super) async fn eval_many(
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
                    && conn::error_code_is(e, "NOSCRIPT")
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

/// The most keys one call of a many-key script names.
const KEYS_PER_CALL: usize = 500;
