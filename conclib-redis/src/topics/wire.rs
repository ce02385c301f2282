//! What topics put in Redis: key and channel names, the live frame, the durable entry's
//! fields. The crate docs describe them for clients in other languages.

use std::sync::Arc;

use conclib_codec::{Codec, builtin_codec};

/// Version byte of a live frame, and `v` field of a durable entry.
pub(crate) const VERSION: u8 = 1;

/// Durable entry field names.
pub(crate) mod field {
    pub const VERSION: &str = "v";
    pub const CODEC: &str = "codec";
    pub const BODY: &str = "body";
}

/// `{ns}:topic:{<name>}:live`: the live topic's pub/sub channel. The name is the hash tag,
/// so every key of one topic is in one Cluster slot.
pub(crate) fn live_channel(ns: &str, name: &str) -> String {
    topic_key(ns, name, ":live")
}

/// `{ns}:topic:{<name>}:log`: the durable topic's stream.
pub(crate) fn durable_key(ns: &str, name: &str) -> String {
    topic_key(ns, name, ":log")
}

/// `{ns}:topic:{<name>}<suffix>`, built in one allocation of the right size (`format!`
/// costs several times as much, for each event published).
fn topic_key(ns: &str, name: &str, suffix: &str) -> String {
    const MIDDLE: &str = ":topic:{";
    let mut key = String::with_capacity(ns.len() + MIDDLE.len() + name.len() + 1 + suffix.len());
    key.push_str(ns);
    key.push_str(MIDDLE);
    key.push_str(name);
    key.push('}');
    key.push_str(suffix);
    key
}

/// A live frame: version (1 byte), codec name length (1 byte), codec name, body.
pub(crate) fn encode_live(codec: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + codec.len() + body.len());
    out.push(VERSION);
    out.push(u8::try_from(codec.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&codec.as_bytes()[..codec.len().min(255)]);
    out.extend_from_slice(body);
    out
}

/// Splits a live frame into codec name and body; `None` if it is not one.
pub(crate) fn decode_live(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&version, rest) = frame.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if version != VERSION || rest.len() < usize::from(len) {
        return None;
    }
    Some(rest.split_at(usize::from(len)))
}

/// The codec named `name`: the configured one when the names match, else a built-in one.
pub(crate) fn codec_named(configured: &Arc<dyn Codec>, name: &[u8]) -> Option<Arc<dyn Codec>> {
    if configured.name().as_bytes() == name {
        return Some(configured.clone());
    }
    builtin_codec(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_frames() {
        let frame = encode_live("msgpack", b"\x05");
        assert_eq!(frame, b"\x01\x07msgpack\x05");
        assert_eq!(decode_live(&frame), Some((&b"msgpack"[..], &b"\x05"[..])));
        assert_eq!(decode_live(b"\x02\x00"), None);
        assert_eq!(decode_live(b"\x01\x09ab"), None);
        assert_eq!(decode_live(b""), None);
    }

    #[test]
    fn keys_are_hash_tagged() {
        assert_eq!(live_channel("shop", "orders"), "shop:topic:{orders}:live");
        assert_eq!(durable_key("shop", "orders"), "shop:topic:{orders}:log");
    }
}
