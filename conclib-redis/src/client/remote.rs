//! How asks and tells go through the proxy ([`ByUrn`], [`RemoteRef`]), and how a reply
//! becomes a result.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use conclib_core::{
    Actor, Address, AskError, AskRequest, DeliverAsk, DeliverTell, Message, RemoteHandler,
    RemoteReply, Requester, SendOptions, TellRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::budget::{cooperate, settle};
use super::exchange::Named;
use super::handle::ProxyClient;
use crate::error::ProxyError;
use crate::protocol::Status;
use conclib_codec::{Codec, decode_value};

/// What a request by URN goes through: a client and the URN. The target of the
/// [`AskRequest`] and [`TellRequest`] that [`ProxyClient::ask`] and [`ProxyClient::tell`]
/// return.
#[derive(Debug, Clone)]
pub struct ByUrn<'a> {
    pub(super) client: &'a ProxyClient,
    pub(super) urn: Cow<'a, str>,
}

/// The exchange of an ask or a tell through the Redis proxy.
type RemoteExchange<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<'a, M> DeliverAsk<M> for ByUrn<'a>
where
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    type Ask = RemoteExchange<'a, Result<M::Response, AskError<M::Error>>>;

    /// The timeout is [`ProxyConfig::ask_timeout`](crate::ProxyConfig::ask_timeout) unless
    /// set; the request carries the same deadline (the proxy drops it once expired). Fails
    /// with [`AskError::Unavailable`] if a connection to Redis was lost meanwhile, at once
    /// if Redis restarted without the request (see the crate docs, Guarantees).
    fn deliver_ask(self, msg: M, options: SendOptions) -> Self::Ask {
        Box::pin(async move { settle(ask(self, msg, options).await.map_err(AskError::from)).await })
    }
}

/// An ask by URN, failing with the client's own error (which `deliver_ask` turns into an
/// [`AskError`]).
async fn ask<M>(
    by: ByUrn<'_>,
    msg: M,
    options: SendOptions,
) -> Result<M::Response, ProxyError<M::Error>>
where
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    cooperate().await;
    let ByUrn { client, urn } = by;
    let timeout = options.timeout_or(client.shared.config.ask_timeout);
    let body = client.encode(&msg)?;
    drop(msg);
    let (status, payload) = client
        .ask_raw(&urn, Named::of::<M>(), body, timeout, options.priority())
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
}

impl<'a, M> DeliverTell<M> for ByUrn<'a>
where
    M: Message + Serialize,
{
    type Tell = RemoteExchange<'a, Result<(), AskError>>;

    fn deliver_tell(self, msg: M, options: SendOptions) -> Self::Tell {
        Box::pin(async move {
            let told = self
                .client
                .tell_now(&self.urn, msg, options.priority())
                .await;
            settle(told.map_err(AskError::from)).await
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
pub struct RemoteRef<A> {
    client: ProxyClient,
    urn: String,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for RemoteRef<A> {
    fn clone(&self) -> Self {
        RemoteRef {
            client: self.client.clone(),
            urn: self.urn.clone(),
            _actor: PhantomData,
        }
    }
}

impl<A> std::fmt::Debug for RemoteRef<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRef")
            .field("actor", &std::any::type_name::<A>())
            .field("urn", &self.urn)
            .finish()
    }
}

impl<A: Actor> RemoteRef<A> {
    pub(super) fn new(client: ProxyClient, urn: String) -> Self {
        RemoteRef {
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
    pub fn ask<M>(&self, msg: M) -> AskRequest<&RemoteRef<A>, M>
    where
        A: RemoteHandler<M>,
        M: RemoteReply + Serialize,
        M::Response: DeserializeOwned,
    {
        AskRequest::new(self, msg)
    }

    /// Tells the actor, as [`ProxyClient::tell`] with this URN.
    pub fn tell<M>(&self, msg: M) -> TellRequest<&RemoteRef<A>, M>
    where
        A: RemoteHandler<M>,
        M: Message + Serialize,
    {
        TellRequest::new(self, msg)
    }

    fn by_urn(&self) -> ByUrn<'_> {
        ByUrn {
            client: &self.client,
            urn: Cow::Borrowed(&self.urn),
        }
    }
}

impl<A: Actor> Address for RemoteRef<A> {
    type Actor = A;
}

impl<A, M> Requester<M> for RemoteRef<A>
where
    A: RemoteHandler<M>,
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    type Request<'a> = AskRequest<&'a RemoteRef<A>, M>;

    fn request(&self, message: M) -> Self::Request<'_> {
        self.ask(message)
    }
}

impl<'a, A, M> DeliverAsk<M> for &'a RemoteRef<A>
where
    A: RemoteHandler<M>,
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    type Ask = <ByUrn<'a> as DeliverAsk<M>>::Ask;

    fn deliver_ask(self, msg: M, options: SendOptions) -> Self::Ask {
        self.by_urn().deliver_ask(msg, options)
    }
}

impl<'a, A, M> DeliverTell<M> for &'a RemoteRef<A>
where
    A: RemoteHandler<M>,
    M: Message + Serialize,
{
    type Tell = <ByUrn<'a> as DeliverTell<M>>::Tell;

    fn deliver_tell(self, msg: M, options: SendOptions) -> Self::Tell {
        self.by_urn().deliver_tell(msg, options)
    }
}

/// Turns a reply's status and payload into the ask's result.
pub(crate) fn interpret<R: DeserializeOwned, E: DeserializeOwned>(
    codec: &dyn Codec,
    urn: &str,
    message: &str,
    timeout: Duration,
    status: Status,
    payload: &[u8],
) -> Result<R, ProxyError<E>> {
    let text = || String::from_utf8_lossy(payload).into_owned();
    // Copied for an error only: an answer takes no allocation of its own.
    let urn = || urn.to_owned();
    Err(match status {
        Status::Ok => {
            return decode_value::<R>(codec, payload)
                .map_err(|e| ProxyError::Codec(format!("cannot decode the response: {e}")));
        }
        Status::HandlerError => match decode_value::<E>(codec, payload) {
            Ok(e) => ProxyError::Handler(e),
            Err(e) => ProxyError::Codec(format!("cannot decode the handler's error: {e}")),
        },
        Status::UnknownUrn | Status::NotOwner => ProxyError::UnknownUrn { urn: urn() },
        Status::UnknownMessage => ProxyError::UnknownMessage {
            urn: urn(),
            message: message.to_owned(),
        },
        Status::UnsupportedVersion => ProxyError::UnsupportedVersion {
            urn: urn(),
            message: message.to_owned(),
        },
        Status::Panicked => ProxyError::Panicked(text()),
        Status::Timeout => ProxyError::Timeout(timeout),
        Status::ActorStopped => ProxyError::ActorStopped { urn: urn() },
        Status::NoResponse => ProxyError::NoResponse { urn: urn() },
        Status::MailboxFull => ProxyError::MailboxFull { urn: urn() },
        Status::Overloaded => match crate::overload::Refusal::parse(payload) {
            Some(r) => ProxyError::Overloaded {
                urn: urn(),
                scope: r.scope,
                limit: r.limit,
                depth: r.depth,
            },
            None => ProxyError::Protocol(format!(
                "an Overloaded reply without its limit: {:?}",
                text()
            )),
        },
        Status::BadRequest => ProxyError::BadRequest(text()),
        Status::CodecError => ProxyError::Codec(text()),
        Status::TooLarge => ProxyError::TooLarge(text()),
        Status::Alive => ProxyError::Protocol("a heartbeat's status in a reply".into()),
    })
}
