//! The typed ask and tell builders, and how a reply becomes a result.

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use conclib_core::{Actor, Address, Message, Priority, RemoteHandler, RemoteReply, Requester};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ProxyClient;
use crate::error::ProxyError;
use crate::protocol::Status;
use conclib_codec::{Codec, decode_value};

/// A remote ask; `.await` it. From [`ProxyClient::ask`].
#[must_use = "an ask does nothing until awaited"]
pub struct RemoteAsk<'a, M> {
    pub(super) client: &'a ProxyClient,
    pub(super) urn: String,
    pub(super) msg: M,
    pub(super) timeout: Duration,
    pub(super) priority: Priority,
    pub(super) _m: PhantomData<fn() -> M>,
}

impl<'a, M> RemoteAsk<'a, M> {
    /// Fails with [`ProxyError::Timeout`] if no answer arrives within `timeout` (the request
    /// carries the same deadline: the proxy drops it once expired), or with
    /// [`ProxyError::Unavailable`] if a connection to Redis was lost meanwhile; at once if
    /// Redis restarted without the request (see the crate docs, Guarantees).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends in the actor's given lane; `High` overtakes its queued normal messages.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sends the message as a tell instead (in the lane chosen with
    /// [`priority`](Self::priority)); see [`ProxyClient::tell`]. The method-call API reads
    /// `counter.reset().tell().await?`.
    pub fn tell(self) -> RemoteTell<'a, M> {
        RemoteTell {
            client: self.client,
            urn: Cow::Owned(self.urn),
            msg: self.msg,
            priority: self.priority,
        }
    }
}

impl<'a, M> IntoFuture for RemoteAsk<'a, M>
where
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    type Output = Result<M::Response, ProxyError<M::Error>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let RemoteAsk {
                client,
                urn,
                msg,
                timeout,
                priority,
                ..
            } = self;
            let body = client.encode(&msg)?;
            drop(msg);
            let (status, payload) = client
                .ask_raw(&urn, M::name(), body, timeout, priority)
                .await
                .map_err(ProxyError::widen)?;
            interpret::<M::Response, M::WireError>(
                &*client.shared.config.codec,
                &urn,
                M::name(),
                timeout,
                status,
                &payload,
            )
            .map_err(|e| e.map_handler(M::handler_error))
        })
    }
}

/// A remote tell; `.await` it. From [`ProxyClient::tell`].
#[must_use = "a tell does nothing until awaited"]
pub struct RemoteTell<'a, M> {
    pub(super) client: &'a ProxyClient,
    pub(super) urn: Cow<'a, str>,
    pub(super) msg: M,
    pub(super) priority: Priority,
}

impl<M> RemoteTell<'_, M> {
    /// Sends in the actor's given lane; `High` overtakes its queued normal messages.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

impl<'a, M> IntoFuture for RemoteTell<'a, M>
where
    M: Message + Serialize,
{
    type Output = Result<(), ProxyError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.client
                .tell_now(&self.urn, self.msg, self.priority)
                .await
        })
    }
}

/// A typed handle to the actor of type `A` with a URN, through the Redis proxy; from
/// [`ProxyClient::actor`]. Cloning is cheap.
///
/// It is an [`Address`] of `A`, so the `{Actor}Api` trait that `#[actor]` generates works on
/// it: `client.actor::<Counter>("counter").add(5).await`. Only messages that cross processes
/// can be sent (serde types the actor exposes with `#[handle(remote)]`: sending another fails
/// to compile, see [`RemoteHandler`](conclib_core::RemoteHandler)). The process holding
/// the handle compiles `A`'s type and message declarations but never runs the actor.
pub struct RemoteActor<A> {
    client: ProxyClient,
    urn: String,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for RemoteActor<A> {
    fn clone(&self) -> Self {
        RemoteActor {
            client: self.client.clone(),
            urn: self.urn.clone(),
            _actor: PhantomData,
        }
    }
}

impl<A> std::fmt::Debug for RemoteActor<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteActor")
            .field("actor", &std::any::type_name::<A>())
            .field("urn", &self.urn)
            .finish()
    }
}

impl<A: Actor> RemoteActor<A> {
    pub(super) fn new(client: ProxyClient, urn: String) -> Self {
        RemoteActor {
            client,
            urn,
            _actor: PhantomData,
        }
    }

    /// The actor's URN.
    #[must_use]
    pub fn urn(&self) -> &str {
        &self.urn
    }

    /// The client the handle sends through.
    #[must_use]
    pub fn client(&self) -> &ProxyClient {
        &self.client
    }

    /// Asks the actor, as [`ProxyClient::ask`] with this URN.
    pub fn ask<M>(&self, msg: M) -> RemoteAsk<'_, M>
    where
        A: RemoteHandler<M>,
        M: Message + Serialize,
        M::Response: DeserializeOwned,
    {
        self.client.ask(self.urn.as_str(), msg)
    }

    /// Tells the actor, as [`ProxyClient::tell`] with this URN.
    pub fn tell<M>(&self, msg: M) -> RemoteTell<'_, M>
    where
        A: RemoteHandler<M>,
        M: Message + Serialize,
    {
        self.client.tell(&self.urn, msg)
    }
}

impl<A: Actor> Address for RemoteActor<A> {
    type Actor = A;
}

impl<A, M> Requester<M> for RemoteActor<A>
where
    A: RemoteHandler<M>,
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    type Request<'a> = RemoteAsk<'a, M>;

    fn request(&self, message: M) -> RemoteAsk<'_, M> {
        self.ask(message)
    }
}

/// Turns a reply's status and payload into the ask's result.
fn interpret<R: DeserializeOwned, E: DeserializeOwned>(
    codec: &dyn Codec,
    urn: &str,
    message: &str,
    timeout: Duration,
    status: Status,
    payload: &[u8],
) -> Result<R, ProxyError<E>> {
    let text = || String::from_utf8_lossy(payload).into_owned();
    let urn = urn.to_owned();
    Err(match status {
        Status::Ok => {
            return decode_value::<R>(codec, payload)
                .map_err(|e| ProxyError::Codec(format!("cannot decode the response: {e}")));
        }
        Status::HandlerError => match decode_value::<E>(codec, payload) {
            Ok(e) => ProxyError::Handler(e),
            Err(e) => ProxyError::Codec(format!("cannot decode the handler's error: {e}")),
        },
        Status::UnknownUrn | Status::NotOwner => ProxyError::UnknownUrn { urn },
        Status::UnknownMessage => ProxyError::UnknownMessage {
            urn,
            message: message.to_owned(),
        },
        Status::Panicked => ProxyError::Panicked(text()),
        Status::Timeout => ProxyError::Timeout(timeout),
        Status::ActorStopped => ProxyError::ActorStopped { urn },
        Status::NoResponse => ProxyError::NoResponse { urn },
        Status::MailboxFull => ProxyError::MailboxFull { urn },
        Status::BadRequest => ProxyError::BadRequest(text()),
        Status::CodecError => ProxyError::Codec(text()),
        Status::TooLarge => ProxyError::TooLarge(text()),
    })
}
