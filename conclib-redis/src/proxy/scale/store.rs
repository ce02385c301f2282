//! [`StateStore`]: a small fenced store for an activation's state on the proxy's Redis.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use conclib_codec::{Codec, decode_value, encode_value};
use fred::bytes::Bytes;
use fred::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::migration;
use super::standing::Standing;
use crate::conn::{bytes, owned, s};
use crate::durability::Durability;
use crate::protocol::{STATE_OPEN_SCRIPT, STATE_SAVE_SCRIPT};
use crate::script::Script;

/// How long a state key without data lives (one left by a crashed activation that never
/// saved).
pub(in crate::proxy) const EMPTY_STATE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a [`StateStore`] call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A later activation of the same URN owns the state now (this process was paused past
    /// its lease and another system activated the URN): nothing was written. The proxy stops
    /// this activation and sends the message being handled to the new one.
    #[error("a later activation owns this state now; nothing was written")]
    Fenced,
    /// Redis did not answer, or refused.
    #[error("Redis: {0}")]
    Redis(String),
    /// The state could not be encoded or decoded with the proxy's codec.
    #[error("codec: {0}")]
    Codec(String),
}

/// An activation's state in Redis (`{ns}:state:{urn}`), written only while the activation
/// is the URN's latest: a fenced store.
///
/// The activation is made the state's owner as its URN is claimed (outside a Redis Cluster,
/// unless a state carried to it waits: [`rehydrate`](Self::rehydrate)), else by its first
/// [`load`](Self::load) or [`save`](Self::save); from then on writes of any earlier activation of the URN (a process that was
/// paused past its lease while another system took over) are refused with
/// [`StoreError::Fenced`], and the proxy re-delivers the message they were handling to the
/// current activation (a write from the handler itself, not from a task it spawned: the
/// proxy tells its messages apart by the trace context each is handled in). Each write also
/// records the requests whose handling wrote the state and that are not acknowledged yet, so
/// that the next activation does not handle them again (see the crate docs, One activation).
/// Values are encoded with the proxy's codec
/// ([`ProxyConfig::codec`](crate::ProxyConfig::codec)). State lives until [`clear`](Self::clear)ed
/// (a key without data expires after a day).
///
/// # Writes from the actor's own task
///
/// A write is recorded with the request whose handling made it when it is made by that
/// handling: from the handler, in the actor's own task. A write from a task the handler
/// spawned cannot be told apart from one made at the actor's `on_stop`: it is not recorded,
/// and if its system dies between the write and the request's acknowledgement, the next
/// activation handles the request again on a state that holds its effect. So a store is
/// not `Clone`: the actor keeps the one [`Activation::into_store`](crate::scale::Activation::into_store)
/// gives, and a handler, which borrows it through `&mut self`, cannot give a spawned task
/// one of its own (a task needs a `'static` value):
///
/// ```compile_fail,E0599
/// # use conclib_redis::scale::StateStore;
/// # struct Account { count: u64, store: StateStore }
/// # impl Account {
/// async fn incr(&mut self) {
///     self.count += 1;
///     // error[E0599]: no method named `clone` found for struct `StateStore`
///     let (store, count) = (self.store.clone(), self.count);
///     tokio::spawn(async move { store.save(&count).await });
/// }
/// # }
/// ```
///
/// Write from the handler instead (`self.store.save(&self.count).await`), or send the actor
/// a message from the spawned task and write in its handler. Wrapping the store in an `Arc`
/// to share it with other tasks compiles, and gives up exactly-once for those writes.
pub struct StateStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    cmd: Client,
    key: String,
    token: String,
    standing: Arc<Standing>,
    opened: AtomicBool,
    /// What the claim that activated it read as it made this activation the owner
    /// (`activation.rs`): the first [`StateStore::load`] answers it without a round trip,
    /// unless a write came first.
    prefetched: std::sync::Mutex<Option<Option<Bytes>>>,
    /// The state the activation before carried here, taken by the same claim: what
    /// [`StateStore::rehydrate`] answers, once.
    carried: std::sync::Mutex<Option<Bytes>>,
    codec: Arc<dyn Codec>,
    /// What a write must reach before it counts as done (a promotion keeps it).
    durability: Durability,
    open: Script,
    save: Script,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// The store of the activation holding `token`, at `key`.
    pub(in crate::proxy) fn new(
        cmd: Client,
        key: String,
        token: String,
        standing: Arc<Standing>,
        codec: Arc<dyn Codec>,
        durability: Durability,
    ) -> Self {
        StateStore {
            inner: Arc::new(StoreInner {
                cmd,
                key,
                token,
                standing,
                opened: AtomicBool::new(false),
                prefetched: std::sync::Mutex::new(None),
                carried: std::sync::Mutex::new(None),
                codec,
                durability,
                open: Script::new(STATE_OPEN_SCRIPT),
                save: Script::new(STATE_SAVE_SCRIPT),
            }),
        }
    }

    /// This activation was made the state's owner by the script that claimed its URN, which
    /// read `data` (the state stored) and took `carried` (the state a move carried here:
    /// `migration.rs`) in the same step.
    pub(in crate::proxy) fn opened_with(&self, data: Option<Bytes>, carried: Option<Bytes>) {
        *self.prefetched() = Some(data);
        *self.carried() = carried;
        self.inner.opened.store(true, Ordering::Release);
    }

    fn carried(&self) -> std::sync::MutexGuard<'_, Option<Bytes>> {
        self.inner.carried.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prefetched(&self) -> std::sync::MutexGuard<'_, Option<Option<Bytes>>> {
        self.inner
            .prefetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The stored state, if any (and makes this activation its owner).
    ///
    /// # Errors
    /// [`StoreError::Redis`], [`StoreError::Codec`].
    pub async fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        let prefetched = self.prefetched().take();
        let data = match prefetched {
            Some(data) => data,
            None => self.open().await?,
        };
        match data {
            None => Ok(None),
            Some(b) => decode_value(&*self.inner.codec, &b)
                .map(Some)
                .map_err(|e| StoreError::Codec(e.to_string())),
        }
    }

    /// Writes the state, if this activation is still the URN's latest.
    ///
    /// # Errors
    /// [`StoreError::Fenced`] (nothing written), [`StoreError::Redis`], [`StoreError::Codec`].
    pub async fn save<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), StoreError> {
        let data = encode_value(&*self.inner.codec, value)
            .map_err(|e| StoreError::Codec(e.to_string()))?;
        self.write(vec![s("set"), bytes(Bytes::from(data))]).await
    }

    /// Deletes the state, if this activation is still the URN's latest.
    ///
    /// # Errors
    /// [`StoreError::Fenced`], [`StoreError::Redis`].
    pub async fn clear(&self) -> Result<(), StoreError> {
        let ttl = Value::Integer(EMPTY_STATE_TTL.as_millis() as i64);
        self.write(vec![s("clear"), ttl]).await
    }

    /// In the actor's `on_stop`: when this activation is being moved to another member (a
    /// drain, [`ProxyHandle::drain`](crate::ProxyHandle::drain), or a rebalance), carries
    /// `state` (its state in memory, saved or not) to the URN's next activation, which
    /// takes it with [`rehydrate`](Self::rehydrate); `Ok(true)` then. Otherwise (a
    /// passivation, a shutdown, a Redis Cluster) it does nothing and answers `Ok(false)`:
    /// the next activation loads what was [`save`](Self::save)d.
    ///
    /// The URN goes to the member it moves to in the same step (the next activation may
    /// own the state as soon as this returns): call it last, after any
    /// [`save`](Self::save); a write after it may be refused [`StoreError::Fenced`].
    ///
    /// ```no_run
    /// # use conclib_redis::scale::StateStore;
    /// # struct Account { count: u64, seen: u64, store: StateStore }
    /// # impl Account {
    /// async fn on_stop(&mut self) {
    ///     // Carried when moved; else the next activation loads the saved count.
    ///     let _ = self.store.dehydrate(&(self.count, self.seen)).await;
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Redis`], [`StoreError::Codec`]; `Ok(false)` when a later activation
    /// owns the state already.
    pub async fn dehydrate<T: Serialize + ?Sized>(&self, state: &T) -> Result<bool, StoreError> {
        let inner = &self.inner;
        if !inner.standing.moving.load(Ordering::Acquire) || inner.cmd.is_clustered() {
            return Ok(false);
        }
        if !inner.opened.load(Ordering::Acquire) {
            self.open().await?;
        }
        let data =
            encode_value(&*inner.codec, state).map_err(|e| StoreError::Codec(e.to_string()))?;
        let mut keys = vec![
            owned(inner.key.clone()),
            owned(migration::carried_key(&inner.key)),
        ];
        let mut args = vec![
            owned(inner.token.clone()),
            bytes(Bytes::from(data)),
            Value::Integer(migration::CARRIED_TTL.as_millis() as i64),
        ];
        // Its URN key handed over in the same step, when the move named its member
        // (`passivation.rs`): the requests waiting for the move wait one round trip less.
        if let Some(h) = inner.standing.hand_over() {
            keys.extend(h.keys);
            args.extend(h.args);
        }
        static DEHYDRATE: LazyLock<Script> =
            LazyLock::new(|| Script::new(migration::DEHYDRATE_SCRIPT));
        let done = DEHYDRATE
            .eval(&inner.cmd, keys, args)
            .await
            .map_err(|e| StoreError::Redis(e.to_string()))?;
        let carried = matches!(done, Value::Integer(1 | 2));
        if carried {
            inner.standing.carried.store(true, Ordering::Release);
        }
        if matches!(done, Value::Integer(2)) {
            inner.standing.handed.store(true, Ordering::Release);
        }
        Ok(carried)
    }

    /// In the constructor: the state the URN's previous activation carried when it was
    /// moved here ([`dehydrate`](Self::dehydrate)), taken once; `None` when it carried none
    /// (load what was saved then). The claim that activated this activation took it in the
    /// step that made the activation the state's owner: no round trip to Redis.
    ///
    /// ```no_run
    /// # async fn demo(a: conclib_redis::scale::Activation) -> Result<(), conclib_redis::scale::StoreError> {
    /// let (count, seen) = match a.store().rehydrate::<(u64, u64)>().await? {
    ///     Some(carried) => carried,
    ///     None => (a.store().load::<u64>().await?.unwrap_or_default(), 0),
    /// };
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Redis`], [`StoreError::Codec`].
    pub async fn rehydrate<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        // Taken by the claim that activated it, in the step that made it the owner
        // (`CLAIM_OPEN_SCRIPT`): no round trip. In a Redis Cluster nothing is carried (and
        // the store opens at its first load or write).
        match self.carried().take() {
            None => Ok(None),
            Some(b) => decode_value(&*self.inner.codec, &b)
                .map(Some)
                .map_err(|e| StoreError::Codec(e.to_string())),
        }
    }

    /// Whether this activation still owns its URN as far as the store has seen (false once
    /// a write was fenced, or the proxy saw another system take the URN).
    #[must_use]
    pub fn is_current(&self) -> bool {
        self.inner.standing.is_current()
    }

    /// The activation's token, its state's key, the proxy's codec and connection: what a
    /// durable execution's journal (`crate::durable`), which lives in the same key under the
    /// same fence, writes with.
    pub(crate) fn key(&self) -> &str {
        &self.inner.key
    }

    pub(crate) fn codec(&self) -> &dyn Codec {
        &*self.inner.codec
    }

    pub(crate) fn connection(&self) -> &Client {
        &self.inner.cmd
    }

    /// Makes this activation the state's owner if it is not yet (a journal read after
    /// this sees every record a write of an earlier activation will ever commit).
    pub(crate) async fn own(&self) -> Result<(), StoreError> {
        if !self.inner.opened.load(Ordering::Acquire) {
            self.open().await?;
        }
        Ok(())
    }

    /// Runs `script` on the state's key as a fenced write: after [`own`](Self::own), with
    /// the activation's token first of `args`. An answer of 0 is a refused write (a later
    /// activation owns the key: [`StoreError::Fenced`], the message being handled goes to
    /// it); any other answer is returned once it reached the replicas [`Durability`] asks
    /// for.
    pub(crate) async fn fenced(
        &self,
        script: &Script,
        mut rest: Vec<Value>,
    ) -> Result<Value, StoreError> {
        self.own().await?;
        self.prefetched().take();
        let mut args = vec![owned(self.inner.token.clone())];
        args.append(&mut rest);
        let sent = self.inner.durability.sending(&self.inner.cmd);
        match self.eval(script, args).await? {
            Value::Integer(0) => {
                self.inner.standing.refused();
                Err(StoreError::Fenced)
            }
            other => {
                self.replicated(&sent).await?;
                Ok(other)
            }
        }
    }

    /// Runs `script` on the state's key (a read: no token, no fence).
    pub(crate) async fn read(
        &self,
        script: &Script,
        args: Vec<Value>,
    ) -> Result<Value, StoreError> {
        self.eval(script, args).await
    }

    /// Makes this activation the state's owner: the stored data, and the requests the last
    /// writer applied but had not acknowledged (see `applied.rs`) passed to the standing.
    async fn open(&self) -> Result<Option<Bytes>, StoreError> {
        let args = vec![
            owned(self.inner.token.clone()),
            Value::Integer(EMPTY_STATE_TTL.as_millis() as i64),
        ];
        let sent = self.inner.durability.sending(&self.inner.cmd);
        let v = self.eval(&self.inner.open, args).await?;
        let (data, applied) = match v {
            Value::Array(got) => {
                let mut got = got.into_iter().map(Value::into_bytes);
                (got.next().flatten(), got.next().flatten())
            }
            other => (other.into_bytes(), None),
        };
        // The ownership taken must survive a promotion, or an earlier activation's writes
        // (replicated) could win over this one's.
        self.replicated(&sent).await?;
        if let Some(applied) = applied {
            self.inner.standing.applied.opened(&applied);
        }
        self.inner.opened.store(true, Ordering::Release);
        Ok(data)
    }

    async fn write(&self, mut rest: Vec<Value>) -> Result<(), StoreError> {
        if !self.inner.opened.load(Ordering::Acquire) {
            self.open().await?;
        }
        self.prefetched().take();
        let applied = &self.inner.standing.applied;
        let (handling, record) = applied.writing();
        let mut args = vec![owned(self.inner.token.clone())];
        args.append(&mut rest);
        args.push(owned(record));
        let sent = self.inner.durability.sending(&self.inner.cmd);
        match self.eval(&self.inner.save, args).await? {
            Value::Integer(1) => {
                // Not done (nor recorded as this request's) until the replicas the durability
                // level asks for hold it: a promotion may undo it otherwise.
                self.replicated(&sent).await?;
                if let Some(request) = handling {
                    applied.wrote(request);
                }
                Ok(())
            }
            _ => {
                self.inner.standing.refused();
                Err(StoreError::Fenced)
            }
        }
    }

    /// Waits for the replicas [`Durability`] asks for to hold this connection's writes,
    /// `sent` read before them.
    async fn replicated(&self, sent: &crate::durability::Sent) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner
            .durability
            .replicated(&inner.cmd, &inner.key, sent)
            .await
            .map_err(StoreError::Redis)
    }

    async fn eval(&self, script: &Script, args: Vec<Value>) -> Result<Value, StoreError> {
        let key = vec![owned(self.inner.key.clone())];
        script
            .eval(&self.inner.cmd, key, args)
            .await
            .map_err(|e| StoreError::Redis(e.to_string()))
    }
}
