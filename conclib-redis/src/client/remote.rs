//! The typed ask and tell builders, and how a reply becomes a result.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use conclib_core::{Message, Priority, RemoteReply};
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

impl<M> RemoteAsk<'_, M> {
    /// Fails with [`ProxyError::Timeout`] if no answer arrives within `timeout` (the request
    /// carries the same deadline: the proxy drops it once expired).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends in the actor's given lane; `High` overtakes its queued normal messages.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
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
    pub(super) urn: &'a str,
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
                .tell_now(self.urn, self.msg, self.priority)
                .await
        })
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
