//! [`Execution`]: one run of a durable execution, its steps journaled as they finish and
//! replayed from the journal when it runs again.

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use conclib_codec::{decode_value, encode_value};
use fred::bytes::Bytes;
use fred::prelude::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::DurableError;
use super::record::{self, now_ms, parse_step, step_record, valid_name, version_step};
use super::scripts::scripts;
use super::stats::STATS;
use crate::conn::{bytes, owned};
use crate::proxy::StateStore;

/// One run of a durable execution (of one key, in one URN's journal), from
/// [`Journal::begin`](super::Journal::begin) or [`Journal::run`](super::Journal::run).
///
/// Each [`step`](Self::step) is either replayed (recorded by an earlier run: its recorded
/// value, the closure not run) or run and recorded before it returns. The code between
/// steps runs again on every replay: it must take the same path given the same step values
/// (see the module docs, "What must stay deterministic").
pub struct Execution<'a> {
    store: &'a StateStore,
    key: String,
    /// The steps recorded by earlier runs, in order.
    recorded: Vec<Bytes>,
    /// Steps seen so far by this run (replayed or run): the next one's number is this + 1.
    seen: Arc<AtomicU32>,
}

impl std::fmt::Debug for Execution<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("key", &self.key)
            .field("recorded", &self.recorded.len())
            .field("seen", &self.seen.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<'a> Execution<'a> {
    pub(super) fn new(store: &'a StateStore, key: String, recorded: Vec<Bytes>) -> Self {
        Execution {
            store,
            key,
            recorded,
            seen: Arc::new(AtomicU32::new(0)),
        }
    }

    /// What [`Journal::run`](super::Journal::run) reads after the closure: the steps seen.
    pub(super) fn seen(&self) -> Arc<AtomicU32> {
        self.seen.clone()
    }

    /// The execution's key (its idempotency key).
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the next step is replayed from the journal (recorded by an earlier run)
    /// rather than run: code between steps can skip what only a first run should do (a log
    /// line).
    #[must_use]
    pub fn is_replaying(&self) -> bool {
        (self.seen.load(Ordering::Acquire) as usize) < self.recorded.len()
    }

    /// Runs the step `name` once: its value from the journal if an earlier run recorded
    /// it (`side_effect` is not polled), else `side_effect`'s, recorded (fenced: only
    /// while this activation owns the URN) before this returns.
    ///
    /// A process that dies after `side_effect` finished and before its record committed
    /// leaves the step unrecorded: the next run runs it again. A step whose record
    /// committed never runs again.
    ///
    /// # Errors
    /// [`DurableError::Fenced`] (nothing recorded; the proxy hands the message to the
    /// current activation), [`DurableError::Nondeterminism`] (the journal holds another
    /// step here), [`DurableError::InvalidName`], [`DurableError::Corrupt`],
    /// [`DurableError::Conflict`], [`DurableError::Redis`], [`DurableError::Codec`].
    ///
    /// ```no_run
    /// # async fn demo(ex: &mut conclib_redis::durable::Execution<'_>) -> Result<(), conclib_redis::durable::DurableError> {
    /// let receipt: String = ex.step("charge", async { "rcpt-1".to_owned() }).await?;
    /// # let _ = receipt; Ok(()) }
    /// ```
    pub async fn step<T, F>(&mut self, name: &str, side_effect: F) -> Result<T, DurableError>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = T>,
    {
        if !valid_name(name) {
            return Err(DurableError::InvalidName(name.to_owned()));
        }
        if let Some(value) = self.replayed(name)? {
            return Ok(value);
        }
        let value = side_effect.await;
        self.record(name, &value).await?;
        STATS.steps_run.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    /// The version of the point `name` this execution runs: on its first run, `supported`'s
    /// highest, recorded; replayed, the recorded one. A journal recorded before the point
    /// existed in the code (its next step is another) runs version 0. A version outside
    /// `supported` stops the execution with [`DurableError::UnsupportedVersion`] rather than
    /// run code it was not written for.
    ///
    /// # Errors
    /// [`DurableError::UnsupportedVersion`], and those of [`step`](Self::step).
    ///
    /// ```no_run
    /// # async fn demo(ex: &mut conclib_redis::durable::Execution<'_>) -> Result<(), conclib_redis::durable::DurableError> {
    /// if ex.version("fraud-check", 0..=1).await? >= 1 {
    ///     ex.step("fraud check", async { true }).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn version(
        &mut self,
        name: &str,
        supported: RangeInclusive<u32>,
    ) -> Result<u32, DurableError> {
        if !valid_name(name) {
            return Err(DurableError::InvalidName(name.to_owned()));
        }
        let step = version_step(name);
        let at = self.seen.load(Ordering::Acquire) as usize;
        let version = match self.recorded.get(at) {
            Some(rec) => {
                let parsed = parse_step(rec).ok_or_else(|| corrupt(at))?;
                if parsed.name == step {
                    self.replayed::<u32>(&step)?.unwrap_or_default()
                } else {
                    // Recorded by code without this point: its behaviour is version 0.
                    0
                }
            }
            None => {
                let highest = *supported.end();
                self.record(&step, &highest).await?;
                highest
            }
        };
        if supported.contains(&version) {
            Ok(version)
        } else {
            Err(DurableError::UnsupportedVersion {
                name: name.to_owned(),
                recorded: version,
                supported,
            })
        }
    }

    /// Records `result` as the execution's: the same key begun again returns it without
    /// running. Its steps are deleted from the journal (their number stays, for the
    /// listing).
    ///
    /// # Errors
    /// [`DurableError::Fenced`], [`DurableError::Conflict`] (another run finished it, or
    /// recorded a step this one did not see), [`DurableError::Redis`],
    /// [`DurableError::Codec`].
    pub async fn finish<R: Serialize>(self, result: &R) -> Result<(), DurableError> {
        let seen = self.seen.load(Ordering::Acquire);
        finish(self.store, &self.key, seen, result).await
    }

    /// The recorded value of the next step, if recorded (checked to be `name`'s).
    fn replayed<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, DurableError> {
        let at = self.seen.load(Ordering::Acquire) as usize;
        let Some(rec) = self.recorded.get(at) else {
            return Ok(None);
        };
        let parsed = parse_step(rec).ok_or_else(|| corrupt(at))?;
        if parsed.name != name {
            return Err(DurableError::Nondeterminism {
                position: position(at),
                recorded: parsed.name.to_owned(),
                asked: name.to_owned(),
            });
        }
        let value = decode_value(self.store.codec(), parsed.value)
            .map_err(|e| DurableError::Corrupt(format!("step {}: {e}", position(at))))?;
        self.seen.fetch_add(1, Ordering::AcqRel);
        STATS.steps_replayed.fetch_add(1, Ordering::Relaxed);
        Ok(Some(value))
    }

    /// Appends the next step's record (fenced).
    async fn record<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), DurableError> {
        let encoded = encode_value(self.store.codec(), value)
            .map_err(|e| DurableError::Codec(e.to_string()))?;
        let number = self.seen.load(Ordering::Acquire) + 1;
        let rec = step_record(now_ms(), name, &encoded);
        let args = vec![
            owned(self.key.clone()),
            Value::Integer(i64::from(number)),
            bytes(Bytes::from(rec)),
        ];
        match self.store.fenced(&scripts().append, args).await {
            Ok(Value::Integer(1)) => {
                self.seen.store(number, Ordering::Release);
                Ok(())
            }
            Ok(_) => Err(DurableError::Conflict(self.key.clone())),
            Err(e) => Err(counted(e.into())),
        }
    }
}

/// Records `result` as the finished execution `key`'s, which saw `seen` steps.
pub(super) async fn finish<R: Serialize + ?Sized>(
    store: &StateStore,
    key: &str,
    seen: u32,
    result: &R,
) -> Result<(), DurableError> {
    let encoded =
        encode_value(store.codec(), result).map_err(|e| DurableError::Codec(e.to_string()))?;
    let args = vec![
        owned(key.to_owned()),
        bytes(Bytes::from(record::result_record(now_ms(), &encoded))),
        Value::Integer(i64::from(seen)),
    ];
    match store.fenced(&scripts().finish, args).await {
        Ok(Value::Integer(1)) => {
            STATS.executions_finished.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Ok(_) => Err(DurableError::Conflict(key.to_owned())),
        Err(e) => Err(counted(e.into())),
    }
}

/// Counts a refused write.
fn counted(e: DurableError) -> DurableError {
    if e == DurableError::Fenced {
        STATS.fenced.fetch_add(1, Ordering::Relaxed);
    }
    e
}

fn position(at: usize) -> u32 {
    u32::try_from(at + 1).unwrap_or(u32::MAX)
}

fn corrupt(at: usize) -> DurableError {
    DurableError::Corrupt(format!("step {} is not a step record", position(at)))
}
