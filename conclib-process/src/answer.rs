//! What an answer is on the link, both ways: an ask's result as a status and payload
//! ([`reply_for`], written by whichever side answers) and back ([`decode_answer`]). The
//! parent's and the child's sides both use it; neither imports the other.

use conclib_codec::{Bincode, Codec, decode_value};
use conclib_core::{AskError, ErasedResult, ExposedMessage, RemoteReply};
use serde::de::DeserializeOwned;

use crate::wire::{self, status};

/// The status and payload answering an ask's result (child to parent, and back).
pub(crate) fn reply_for(rm: &ExposedMessage, result: ErasedResult) -> (u8, Vec<u8>) {
    match result {
        Ok(response) => encoded(status::OK, rm.response(&*response)),
        Err(AskError::Handler(error)) => encoded(status::HANDLER_ERROR, rm.error(&*error)),
        Err(AskError::Panicked(p)) => (status::PANICKED, p.into_bytes()),
        Err(AskError::MailboxFull) => (status::MAILBOX_FULL, Vec::new()),
        Err(AskError::NoResponse) => (status::NO_RESPONSE, Vec::new()),
        Err(AskError::UnknownMessage { message, .. }) => {
            (status::UNKNOWN_MESSAGE, message.into_bytes())
        }
        Err(AskError::UnknownUrn { urn }) => (status::UNKNOWN_URN, urn.into_bytes()),
        Err(AskError::Codec(e)) => (status::CODEC_ERROR, e.into_bytes()),
        // Stopped, timed out, its own process gone: for the asker, the actor stopped.
        Err(_) => (status::ACTOR_STOPPED, Vec::new()),
    }
}

fn encoded(ok: u8, value: Option<&dyn erased_serde::Serialize>) -> (u8, Vec<u8>) {
    match value.map(|v| Bincode.encode(v)) {
        Some(Ok(bytes)) => match wire::fits(bytes) {
            Ok(bytes) => (ok, bytes),
            Err(e) => (
                status::CODEC_ERROR,
                format!("the answer is {e}").into_bytes(),
            ),
        },
        Some(Err(e)) => (status::CODEC_ERROR, e.to_string().into_bytes()),
        None => (status::CODEC_ERROR, b"an answer of the wrong type".to_vec()),
    }
}

/// Decodes an answer's status and payload into an ask's result (`urn`: whom it was for, its
/// URN or its actor's type).
pub(crate) fn decode_answer<M>(
    urn: &str,
    status: u8,
    payload: &[u8],
) -> Result<M::Response, AskError<M::Error>>
where
    M: RemoteReply,
    M::Response: DeserializeOwned,
{
    let text = || String::from_utf8_lossy(payload).into_owned();
    match status {
        status::OK => decode_value(&Bincode, payload).map_err(|e| AskError::Codec(e.to_string())),
        status::HANDLER_ERROR => match decode_value::<M::WireError>(&Bincode, payload) {
            Ok(e) => Err(AskError::Handler(M::handler_error(e))),
            Err(e) => Err(AskError::Codec(e.to_string())),
        },
        status::UNKNOWN_URN => Err(AskError::UnknownUrn {
            urn: urn.to_owned(),
        }),
        status::PANICKED => Err(AskError::Panicked(text())),
        status::UNKNOWN_MESSAGE => Err(AskError::UnknownMessage {
            actor: urn.to_owned(),
            message: M::name().to_owned(),
        }),
        status::MAILBOX_FULL => Err(AskError::MailboxFull),
        status::NO_RESPONSE => Err(AskError::NoResponse),
        status::CODEC_ERROR => Err(AskError::Codec(text())),
        _ => Err(AskError::ActorStopped),
    }
}
