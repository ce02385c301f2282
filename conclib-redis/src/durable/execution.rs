//! [`Execution`]: one run of a durable execution, its steps journaled as they finish and
//! replayed from the journal when it runs again.

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib_codec::{Bincode, decode_value, encode_value};
use fred::bytes::Bytes;
use fred::prelude::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::DurableError;
use super::record::{
    self, now_ms, parse_step, promise_field, promise_step, sleep_step, step_record, valid_name,
    version_step,
};
use super::scripts::scripts;
use super::stats::{self, Event};
use super::wake::Wakes;
use crate::conn::{self, bytes, keyed, owned};
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
    /// What this run saw so far.
    progress: Arc<Progress>,
    /// How the journal registers wakes, if it does.
    wakes: Option<&'a Wakes>,
    /// The message a wake carries back to the actor (bincode), if given.
    wake: Option<Vec<u8>>,
}

/// What a run saw so far: [`Journal::run`](super::Journal::run) reads it after its body,
/// which owns the [`Execution`].
#[derive(Default)]
pub(super) struct Progress {
    /// Steps seen (replayed or run): the next one's number is this + 1.
    seen: AtomicU32,
    /// The promises taken (their fields are deleted when the execution finishes).
    promises: Mutex<Vec<String>>,
    /// Whether this run registered a wake reminder (cancelled when it finishes).
    woken: AtomicBool,
}

impl Progress {
    fn seen(&self) -> u32 {
        self.seen.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Execution<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("key", &self.key)
            .field("recorded", &self.recorded.len())
            .field("seen", &self.progress.seen())
            .finish_non_exhaustive()
    }
}

impl<'a> Execution<'a> {
    pub(super) fn new(
        store: &'a StateStore,
        key: String,
        recorded: Vec<Bytes>,
        wakes: Option<&'a Wakes>,
    ) -> Self {
        Execution {
            store,
            key,
            recorded,
            progress: Arc::default(),
            wakes,
            wake: None,
        }
    }

    /// Sets the message a wake reminder carries back to the URN's actor to run this
    /// execution again (typically the message whose handler runs it): with it, in a journal
    /// [`with_wakes`](super::Journal::with_wakes), a [`sleep`](Self::sleep) longer than the
    /// journal's hold and a [`promise`](Self::promise) not resolved in time suspend the
    /// execution ([`DurableError::Suspended`]) instead of holding the handler, and a durable
    /// reminder resumes it (the actor handles the [`ReminderTick`] by decoding the message
    /// with [`ReminderTick::payload`] and handling it; see
    /// [`Journal::is_wake`](super::Journal::is_wake)). Encoded with bincode.
    ///
    /// # Errors
    /// [`DurableError::Codec`] when `message` cannot be encoded.
    ///
    /// [`ReminderTick`]: crate::reminders::ReminderTick
    /// [`ReminderTick::payload`]: crate::reminders::ReminderTick::payload
    pub fn wake_with<T: Serialize + ?Sized>(&mut self, message: &T) -> Result<(), DurableError> {
        let encoded =
            encode_value(&Bincode, message).map_err(|e| DurableError::Codec(e.to_string()))?;
        self.wake = Some(encoded);
        Ok(())
    }

    /// The journal's wakes and this execution's wake message, when both are set.
    fn wakes(&self) -> Option<(&'a Wakes, &[u8])> {
        Some((self.wakes?, self.wake.as_deref()?))
    }

    /// What [`Journal::run`](super::Journal::run) reads after the closure.
    pub(super) fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
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
        (self.progress.seen() as usize) < self.recorded.len()
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
        stats::count(Event::StepRun);
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
        let at = self.progress.seen() as usize;
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

    /// Sleeps durably until `duration` after this step first ran: the time it ends is
    /// recorded as a step, so a replay (after a crash, on another member) waits only what is
    /// left of it, or not at all.
    ///
    /// Without a wake message ([`wake_with`](Self::wake_with)) the execution keeps its URN's
    /// actor while it sleeps (the request it handles is pending; a member's death moves it
    /// to the next activation while the request's deadline has not passed). With one, in a
    /// journal [`with_wakes`](super::Journal::with_wakes), a durable reminder is registered
    /// for the end (one round trip), and a sleep with more than the journal's hold left
    /// returns [`DurableError::Suspended`] at once: the handler returns, the activation may
    /// be passivated or its member die, and the reminder runs the execution again when the
    /// sleep ends, on whichever member activates the URN.
    ///
    /// # Errors
    /// [`DurableError::Suspended`], and those of [`step`](Self::step).
    pub async fn sleep(&mut self, name: &str, duration: Duration) -> Result<(), DurableError> {
        if !valid_name(name) {
            return Err(DurableError::InvalidName(name.to_owned()));
        }
        let until: u64 = self
            .step(&sleep_step(name), async move {
                now_ms().saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
            })
            .await?;
        let left = Duration::from_millis(until.saturating_sub(now_ms()));
        if left.is_zero() {
            return Ok(());
        }
        if let Some((wakes, message)) = self.wakes() {
            wakes.register(&self.key, until, message).await?;
            self.progress.woken.store(true, Ordering::Release);
            if left > wakes.hold {
                stats::count(Event::Suspended);
                return Err(DurableError::Suspended);
            }
        }
        tokio::time::sleep(left).await;
        Ok(())
    }

    /// The value of promise `name` of this execution, resolved by any caller with
    /// [`Executions::resolve`](super::Executions::resolve) (before or after this is
    /// reached): waits at most `within` for it, then records it as a step, so that a replay
    /// returns it at once. A promise is resolved once: the first value stays.
    ///
    /// With a wake message ([`wake_with`](Self::wake_with)) in a journal
    /// [`with_wakes`](super::Journal::with_wakes), a promise not resolved within `within`
    /// suspends the execution ([`DurableError::Suspended`]) instead of failing: its wake
    /// message stays in the journal, and the caller that resolves the promise registers a
    /// durable reminder due at once, which runs the execution again.
    ///
    /// # Errors
    /// [`DurableError::Timeout`] (not resolved within `within`, without wakes: nothing
    /// recorded, the next run waits again), [`DurableError::Suspended`],
    /// [`DurableError::Corrupt`] (resolved with a value of another type), and those of
    /// [`step`](Self::step).
    pub async fn promise<T>(&mut self, name: &str, within: Duration) -> Result<T, DurableError>
    where
        T: Serialize + DeserializeOwned,
    {
        if !valid_name(name) {
            return Err(DurableError::InvalidName(name.to_owned()));
        }
        let step = promise_step(name);
        if let Some(value) = self.replayed(&step)? {
            self.took(name);
            return Ok(value);
        }
        let field = promise_field(&self.key, name);
        let until = Instant::now() + within;
        let mut pause = Duration::from_millis(1);
        if let Some((_, message)) = self.wakes() {
            // The wake message is left for the resolver before the first look: a caller
            // resolving it before is seen below, one after finds the message and wakes the
            // execution, even if this process dies waiting.
            let args = vec![
                owned(self.key.clone()),
                bytes(Bytes::copy_from_slice(message)),
            ];
            self.store
                .fenced(&scripts().suspend, args)
                .await
                .map_err(|e| counted(e.into()))?;
        }
        let raw = loop {
            let args = vec![owned(self.store.key().to_owned()), owned(field.clone())];
            let got = conn::call(self.store.connection(), keyed("HGET"), args)
                .await
                .map_err(|e| DurableError::Redis(e.to_string()))?;
            if let Some(raw) = got.into_bytes() {
                break raw;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if self.wakes().is_some() {
                    stats::count(Event::Suspended);
                    return Err(DurableError::Suspended);
                }
                return Err(DurableError::Timeout);
            }
            // No event tells the handler that a caller resolved it: it looks again, less
            // often the longer it waits.
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        let value: T = decode_value(self.store.codec(), &raw)
            .map_err(|e| DurableError::Corrupt(format!("promise {name:?}: {e}")))?;
        self.record(&step, &value).await?;
        stats::count(Event::StepRun);
        self.took(name);
        Ok(value)
    }

    fn took(&self, promise: &str) {
        let mut taken = lock(&self.progress.promises);
        if !taken.iter().any(|p| p == promise) {
            taken.push(promise.to_owned());
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
        finish(self.store, self.wakes, &self.key, &self.progress, result).await
    }

    /// The recorded value of the next step, if recorded (checked to be `name`'s).
    fn replayed<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, DurableError> {
        let at = self.progress.seen() as usize;
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
        self.progress.seen.fetch_add(1, Ordering::AcqRel);
        stats::count(Event::StepReplayed);
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
        let number = self.progress.seen() + 1;
        let rec = step_record(now_ms(), name, &encoded);
        let args = vec![
            owned(self.key.clone()),
            Value::Integer(i64::from(number)),
            bytes(Bytes::from(rec)),
        ];
        let started = Instant::now();
        let appended = self.store.fenced(&scripts().append, args).await;
        stats::recorded(started.elapsed());
        match appended {
            Ok(Value::Integer(1)) => {
                self.progress.seen.store(number, Ordering::Release);
                Ok(())
            }
            Ok(_) => Err(DurableError::Conflict(self.key.clone())),
            Err(e) => Err(counted(e.into())),
        }
    }
}

/// Records `result` as the finished execution `key`'s, whose run saw `progress`.
pub(super) async fn finish<R: Serialize + ?Sized>(
    store: &StateStore,
    wakes: Option<&Wakes>,
    key: &str,
    progress: &Progress,
    result: &R,
) -> Result<(), DurableError> {
    let encoded =
        encode_value(store.codec(), result).map_err(|e| DurableError::Codec(e.to_string()))?;
    let mut args = vec![
        owned(key.to_owned()),
        bytes(Bytes::from(record::result_record(now_ms(), &encoded))),
        Value::Integer(i64::from(progress.seen())),
    ];
    args.extend(lock(&progress.promises).iter().cloned().map(owned));
    let started = Instant::now();
    let finished = store.fenced(&scripts().finish, args).await;
    stats::recorded(started.elapsed());
    match finished {
        Ok(Value::Integer(1)) => {
            stats::count(Event::Finished);
            if let Some(wakes) = wakes
                && progress.woken.load(Ordering::Acquire)
                && let Err(e) = wakes.cancel(key).await
            {
                // Left registered, it runs the finished execution again when due, which
                // returns its recorded result without running anything.
                tracing::debug!(key, error = %e, "a finished execution's wake stays");
            }
            Ok(())
        }
        Ok(_) => Err(DurableError::Conflict(key.to_owned())),
        Err(e) => Err(counted(e.into())),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a refused write.
fn counted(e: DurableError) -> DurableError {
    if e == DurableError::Fenced {
        stats::count(Event::Fenced);
    }
    e
}

fn position(at: usize) -> u32 {
    u32::try_from(at + 1).unwrap_or(u32::MAX)
}

fn corrupt(at: usize) -> DurableError {
    DurableError::Corrupt(format!("step {} is not a step record", position(at)))
}
