//! Messages exposed to other processes: the type-erased table a proxy uses to decode a
//! request by wire name and encode the answer, whatever the codec (and that a relay to an
//! actor in another process uses the other way round: encode the request, decode the
//! answer).

use std::any::{Any, TypeId};
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::message::Message;

/// A decoded message, ready for [`DynActorRef::ask_erased`](crate::DynActorRef::ask_erased).
pub type ErasedMessage = Box<dyn Any + Send>;

/// One message type an actor exposes to other processes, with the functions that decode it
/// and encode its response and error through any serde format.
///
/// An actor lists them in [`Actor::REMOTE`](crate::Actor::REMOTE) (`#[handle(remote)]` does it
/// for you). Only listed messages can be invoked through a proxy; the bounds make the
/// compiler check that the message, its response and its error are serde types both ways
/// (serialized on one side of a process boundary, deserialized on the other, whichever
/// side the actor runs on).
///
/// ```
/// use conclib_core::{Actor, Message, ExposedMessage};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Get;
/// impl Message for Get {
///     type Response = u64;
///     type Error = String;
///     fn name() -> &'static str { "Get" }
/// }
///
/// struct Counter(u64);
/// impl Actor for Counter {
///     const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Get>()];
/// }
/// assert_eq!(Counter::REMOTE[0].name(), "Get");
/// ```
#[derive(Clone, Copy)]
pub struct ExposedMessage {
    name: fn() -> &'static str,
    version: fn() -> u32,
    type_id: fn() -> TypeId,
    decode: Decode,
    message: ToSerialize,
    response: ToSerialize,
    error: ToSerialize,
    decode_response: Decode,
    decode_error: Decode,
    routing_key: fn(&(dyn Any + Send)) -> Option<u64>,
}

/// Views an erased value as something serde can encode (`None`: not the expected type).
type ToSerialize = for<'a> fn(&'a (dyn Any + Send)) -> Option<&'a dyn erased_serde::Serialize>;

/// Decodes an erased value of one type from any serde format.
type Decode =
    fn(&mut dyn erased_serde::Deserializer<'_>) -> Result<ErasedMessage, erased_serde::Error>;

impl ExposedMessage {
    /// The entry for message type `M`.
    #[must_use]
    pub const fn of<M>() -> Self
    where
        M: Message + Serialize + DeserializeOwned,
        M::Response: Serialize + DeserializeOwned,
        M::Error: Serialize + DeserializeOwned,
    {
        ExposedMessage {
            name: M::name,
            version: M::version,
            type_id: TypeId::of::<M>,
            decode: decode::<M>,
            message: as_serialize::<M>,
            response: as_serialize::<M::Response>,
            error: as_serialize::<M::Error>,
            decode_response: decode::<M::Response>,
            decode_error: decode::<M::Error>,
            routing_key: routing_key::<M>,
        }
    }

    /// The entry for message type `M` that cannot fail (`Error = Infallible`, which serde
    /// cannot encode: there is never an error to send).
    #[must_use]
    pub const fn of_infallible<M>() -> Self
    where
        M: Message<Error = std::convert::Infallible> + Serialize + DeserializeOwned,
        M::Response: Serialize + DeserializeOwned,
    {
        ExposedMessage {
            name: M::name,
            version: M::version,
            type_id: TypeId::of::<M>,
            decode: decode::<M>,
            message: as_serialize::<M>,
            response: as_serialize::<M::Response>,
            error: no_error,
            decode_response: decode::<M::Response>,
            decode_error: decode_no_error,
            routing_key: routing_key::<M>,
        }
    }

    /// The message's wire name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        (self.name)()
    }

    /// The message's [`Message::version`].
    #[must_use]
    pub fn version(&self) -> u32 {
        (self.version)()
    }

    /// The message's type.
    #[must_use]
    pub fn type_id(&self) -> TypeId {
        (self.type_id)()
    }

    /// Decodes the message from any serde format.
    ///
    /// # Errors
    /// The deserializer's error when the bytes do not hold this message.
    pub fn decode(
        &self,
        de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<ErasedMessage, erased_serde::Error> {
        (self.decode)(de)
    }

    /// The message, as something any serde format can encode; `None` if the value is not
    /// this message.
    #[must_use]
    pub fn message<'a>(
        &self,
        message: &'a (dyn Any + Send),
    ) -> Option<&'a dyn erased_serde::Serialize> {
        (self.message)(message)
    }

    /// Decodes a response of this message from any serde format.
    ///
    /// # Errors
    /// The deserializer's error when the bytes do not hold this message's response.
    pub fn decode_response(
        &self,
        de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<ErasedMessage, erased_serde::Error> {
        (self.decode_response)(de)
    }

    /// Decodes a handler error of this message from any serde format (always an error
    /// for a message that cannot fail).
    ///
    /// # Errors
    /// The deserializer's error when the bytes do not hold this message's error.
    pub fn decode_error(
        &self,
        de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<ErasedMessage, erased_serde::Error> {
        (self.decode_error)(de)
    }

    /// The response of an ask, as something any serde format can encode; `None` if the value
    /// is not this message's response type.
    #[must_use]
    pub fn response<'a>(
        &self,
        response: &'a (dyn Any + Send),
    ) -> Option<&'a dyn erased_serde::Serialize> {
        (self.response)(response)
    }

    /// The handler error of an ask, as something any serde format can encode; `None` if the
    /// value is not this message's error type.
    #[must_use]
    pub fn error<'a>(
        &self,
        error: &'a (dyn Any + Send),
    ) -> Option<&'a dyn erased_serde::Serialize> {
        (self.error)(error)
    }
}

impl ExposedMessage {
    /// The message's [`Message::routing_key`], if `message` is of this type.
    #[must_use]
    pub fn routing_key(&self, message: &(dyn Any + Send)) -> Option<u64> {
        (self.routing_key)(message)
    }
}

impl fmt::Debug for ExposedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExposedMessage").field(&self.name()).finish()
    }
}

fn decode<T: DeserializeOwned + Send + 'static>(
    de: &mut dyn erased_serde::Deserializer<'_>,
) -> Result<ErasedMessage, erased_serde::Error> {
    let value: T = erased_serde::deserialize(de)?;
    Ok(Box::new(value))
}

fn decode_no_error(
    _: &mut dyn erased_serde::Deserializer<'_>,
) -> Result<ErasedMessage, erased_serde::Error> {
    Err(serde::de::Error::custom(
        "this message cannot fail: it has no error to decode",
    ))
}

fn routing_key<M: Message>(message: &(dyn Any + Send)) -> Option<u64> {
    message.downcast_ref::<M>().and_then(Message::routing_key)
}

fn no_error(_: &(dyn Any + Send)) -> Option<&dyn erased_serde::Serialize> {
    None
}

fn as_serialize<T: Serialize + 'static>(
    value: &(dyn Any + Send),
) -> Option<&dyn erased_serde::Serialize> {
    value
        .downcast_ref::<T>()
        .map(|v| v as &dyn erased_serde::Serialize)
}
