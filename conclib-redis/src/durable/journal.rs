//! [`Journal`]: an activated URN's durable executions, in its fenced state key.

use std::future::Future;
use std::time::Duration;

use conclib_codec::decode_value;
use fred::bytes::Bytes;
use fred::prelude::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::DurableError;
use super::execution::{self, Execution};
use super::record::{parse_result, valid_name};
use super::scripts::scripts;
use super::stats::{self, Event};
use super::visibility::{self, ExecutionInfo};
use super::wake::{self, Wakes};
use crate::conn::owned;
use crate::proxy::StateStore;
use crate::reminders::{ReminderTick, Reminders};

/// An activated URN's journal of durable executions, kept in its fenced state
/// (`{ns}:state:{urn}`) beside what its [`StateStore`] saves, under the same fence: a
/// record is written only while this activation is the URN's latest.
///
/// The actor keeps it, made from the store its [`Activation`](crate::scale::Activation) gives:
///
/// ```no_run
/// # use conclib_redis::durable::{DurableError, Journal};
/// # struct Orders { journal: Journal }
/// # impl Orders {
/// async fn place(&mut self, order_id: &str) -> Result<String, DurableError> {
///     self.journal
///         .run(order_id, |mut ex| async move {
///             let receipt: String = ex.step("charge", async { "rcpt-1".to_owned() }).await?;
///             let _: () = ex.step("ship", async {}).await?;
///             Ok(receipt)
///         })
///         .await
/// }
/// # }
/// ```
pub struct Journal {
    store: StateStore,
    wakes: Option<Wakes>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("key", &self.store.key())
            .finish_non_exhaustive()
    }
}

/// What [`Journal::begin`] found.
#[derive(Debug)]
pub enum Begun<'a, R> {
    /// The execution finished already (the same key ran before): its recorded result.
    Finished(R),
    /// The execution runs: its recorded steps are replayed, the first unrecorded runs.
    Running(Execution<'a>),
}

impl Journal {
    /// The journal of the activation whose store this is (the store stays usable through
    /// [`store`](Self::store)).
    #[must_use]
    pub fn new(store: StateStore) -> Self {
        Journal { store, wakes: None }
    }

    /// This journal, its executions able to suspend on a sleep or a promise and be woken
    /// by a durable reminder on `urn` (the activation's URN,
    /// [`Activation::urn`](crate::scale::Activation::urn)) registered through `reminders`:
    /// an execution given a wake message ([`Execution::wake_with`]) returns
    /// [`DurableError::Suspended`] from a [`sleep`](Execution::sleep) with more than `hold`
    /// left, or from a [`promise`](Execution::promise) not resolved in time, and is run
    /// again by the reminder, through the actor's handler of [`ReminderTick`] (see
    /// [`is_wake`](Self::is_wake)). Some system of the namespace runs a
    /// [`ReminderPoller`](crate::reminders::ReminderPoller), which delivers it.
    ///
    /// A wake may come more than once or early (a promise resolved before the execution
    /// reached it, a delivery retried): run again, an execution with nothing to do yet
    /// suspends again, and a finished one returns its recorded result.
    #[must_use]
    pub fn with_wakes(
        mut self,
        reminders: Reminders,
        urn: impl Into<String>,
        hold: Duration,
    ) -> Self {
        self.wakes = Some(Wakes {
            reminders,
            urn: urn.into(),
            hold,
        });
        self
    }

    /// Whether `tick` is a durable execution's wake: its payload
    /// ([`ReminderTick::payload`]) is the execution's wake message, to be handled as if it
    /// came again; the tick is answered `Ok(())` once handled (a run that suspended again
    /// registered its next wake).
    #[must_use]
    pub fn is_wake(tick: &ReminderTick) -> bool {
        wake::is_wake(tick)
    }

    /// The activation's state store (same key, same fence).
    #[must_use]
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Begins (or resumes) the execution `key`: its result if it finished, else an
    /// [`Execution`] holding its recorded steps. The first call makes this activation the
    /// owner of the URN's state, as the store's first load does: no earlier activation can
    /// record anything from then on.
    ///
    /// # Errors
    /// [`DurableError::InvalidName`], [`DurableError::Corrupt`] (a result recorded as
    /// another type), [`DurableError::Redis`], [`DurableError::Codec`].
    pub async fn begin<R: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Begun<'_, R>, DurableError> {
        if !valid_name(key) {
            return Err(DurableError::InvalidName(key.to_owned()));
        }
        self.store.own().await?;
        let answer = self
            .store
            .read(&scripts().begin, vec![owned(key.to_owned())])
            .await?;
        let Value::Array(mut parts) = answer else {
            return Err(DurableError::Corrupt("unexpected answer".into()));
        };
        let finished = parts.first().and_then(Value::as_i64) == Some(1);
        let mut rest = parts.drain(..).skip(1).map(Value::into_bytes);
        if finished {
            let record = rest
                .next()
                .flatten()
                .ok_or_else(|| DurableError::Corrupt("no result".into()))?;
            let (_, value) = parse_result(&record)
                .ok_or_else(|| DurableError::Corrupt("not a result record".into()))?;
            let result = decode_value(self.store.codec(), value)
                .map_err(|e| DurableError::Corrupt(format!("result: {e}")))?;
            stats::count(Event::Reused);
            return Ok(Begun::Finished(result));
        }
        let recorded: Vec<Bytes> = rest.map(Option::unwrap_or_default).collect();
        stats::count(if recorded.is_empty() {
            Event::Begun
        } else {
            Event::Resumed
        });
        Ok(Begun::Running(Execution::new(
            &self.store,
            key.to_owned(),
            recorded,
            self.wakes.as_ref(),
        )))
    }

    /// Runs the execution `key` to its result, once: [`begin`](Self::begin), then `body`
    /// (its steps replayed or run), then its result recorded. The same key again returns
    /// the recorded result without calling `body`.
    ///
    /// # Errors
    /// Those of [`begin`](Self::begin), of `body` (its steps), and of
    /// [`Execution::finish`].
    pub async fn run<'a, R, F, Fut>(&'a self, key: &str, body: F) -> Result<R, DurableError>
    where
        R: Serialize + DeserializeOwned,
        F: FnOnce(Execution<'a>) -> Fut,
        Fut: Future<Output = Result<R, DurableError>>,
    {
        let execution = match self.begin::<R>(key).await? {
            Begun::Finished(result) => return Ok(result),
            Begun::Running(execution) => execution,
        };
        let progress = execution.progress();
        let result = body(execution).await?;
        execution::finish(&self.store, self.wakes.as_ref(), key, &progress, &result).await?;
        Ok(result)
    }

    /// Deletes what the journal holds of execution `key` (its steps or result, its wake
    /// message) and, in a journal [`with_wakes`](Self::with_wakes), cancels its wake
    /// reminder: begun again, it runs anew. `true` if the journal held any.
    ///
    /// # Errors
    /// [`DurableError::Fenced`], [`DurableError::InvalidName`], [`DurableError::Redis`].
    pub async fn forget(&self, key: &str) -> Result<bool, DurableError> {
        if !valid_name(key) {
            return Err(DurableError::InvalidName(key.to_owned()));
        }
        let answer = self
            .store
            .fenced(&scripts().forget, vec![owned(key.to_owned())])
            .await?;
        if let Some(wakes) = &self.wakes {
            wakes.cancel(key).await?;
        }
        Ok(answer == Value::Integer(1))
    }

    /// The executions the journal holds, with their steps (see [`ExecutionInfo`]).
    ///
    /// # Errors
    /// [`DurableError::Redis`].
    pub async fn executions(&self) -> Result<Vec<ExecutionInfo>, DurableError> {
        visibility::list(
            self.store.connection(),
            self.store.key(),
            visibility::MAX_EXECUTIONS_LISTED,
        )
        .await
    }
}
