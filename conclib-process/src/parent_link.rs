//! In a process actor's process: [`parent`], the [`ParentLink`] through which its handlers
//! ask and tell the parent's actors by URN.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use conclib_core::{AskError, RemoteReply};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::answer::decode_answer;
use crate::outbox::Outbox;
use crate::wire::{self, Frame};
use crate::{ById, lock};

/// The link to the parent process, in a process actor's process; see [`parent`].
static PARENT: OnceLock<ParentLink> = OnceLock::new();

/// In a process actor's process: the link to the parent, whose actor system's actors it can
/// ask and tell by URN (the parent gives its system with
/// [`ProcessBuilder::system`](crate::ProcessBuilder::system)). `None` anywhere else.
///
/// ```no_run
/// # use conclib_core::{Message, MessageDecl};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Report(u64);
/// # impl Message for Report { type Response = u64; type Error = String; }
/// # impl MessageDecl for Report { type WireError = String; }
/// # async fn handler() {
/// // In a handler of the process actor:
/// if let Some(parent) = conclib_process::parent() {
///     let total = parent.ask("aggregator", Report(3), std::time::Duration::from_secs(1)).await;
/// }
/// # }
/// ```
#[must_use]
pub fn parent() -> Option<&'static ParentLink> {
    PARENT.get()
}

/// Asks and tells actors of the parent's system by URN; from [`parent`].
pub struct ParentLink {
    out: Arc<Outbox>,
    pending: Mutex<ById<AnswerTx>>,
    next: AtomicU64,
}

/// Where the parent's answer (status, payload) to one of the child's asks goes.
type AnswerTx = oneshot::Sender<(u8, Vec<u8>)>;

/// Connects the child's [`ParentLink`] to the parent, through `out` (once the actor runs).
pub(crate) fn connect(out: Arc<Outbox>) {
    let _ = PARENT.set(ParentLink {
        out,
        pending: Mutex::new(ById::default()),
        next: AtomicU64::new(1),
    });
}

/// The parent's answer to the child's ask `id`, to its asker (if it still waits).
pub(crate) fn answered(id: u64, status: u8, payload: &[u8]) {
    if let Some(parent) = PARENT.get()
        && let Some(waiter) = lock(&parent.pending).remove(&id)
    {
        let _ = waiter.send((status, payload.to_vec()));
    }
}

impl std::fmt::Debug for ParentLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentLink").finish_non_exhaustive()
    }
}

impl ParentLink {
    /// Asks the parent's actor with this URN, waiting at most `timeout`.
    ///
    /// # Errors
    /// As for an ask to a process actor: [`AskError::UnknownUrn`](conclib_core::AskError::UnknownUrn) if the parent has no
    /// such actor (or gave no system), the handler's error, a panic, a timeout.
    pub async fn ask<M>(
        &self,
        urn: &str,
        msg: M,
        timeout: Duration,
    ) -> Result<M::Response, AskError<M::Error>>
    where
        M: RemoteReply + Serialize,
        M::Response: DeserializeOwned,
    {
        let body = wire::encode_body(&msg).map_err(AskError::Codec)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        self.out.push(&Frame::Ask {
            id,
            trace: crate::passed_on_trace(),
            urn,
            message: M::name(),
            body: &body,
        });
        let answer = tokio::time::timeout(timeout, rx).await;
        lock(&self.pending).remove(&id);
        match answer {
            Ok(Ok((status, payload))) => decode_answer::<M>(urn, status, &payload),
            Ok(Err(_)) => Err(AskError::ActorStopped),
            Err(_) => Err(AskError::Timeout(timeout)),
        }
    }

    /// Tells the parent's actor with this URN (what becomes of it is not reported).
    ///
    /// # Errors
    /// [`AskError::Codec`](conclib_core::AskError::Codec) if the message cannot be encoded.
    pub fn tell<M: conclib_core::Message + Serialize>(
        &self,
        urn: &str,
        msg: M,
    ) -> Result<(), AskError> {
        let body = wire::encode_body(&msg).map_err(AskError::Codec)?;
        self.out.push(&Frame::Ask {
            id: 0,
            trace: crate::passed_on_trace(),
            urn,
            message: M::name(),
            body: &body,
        });
        Ok(())
    }
}
