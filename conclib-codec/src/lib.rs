//! Payload codecs for conclib: how a message, its response and its error become bytes when
//! they cross a process boundary (the Redis proxy, actors in other processes).
//!
//! The envelope around a payload never depends on the codec; only the payload does. A
//! request names its codec by [`Codec::name`], so one server serves peers of several codecs
//! at once. [`Bincode`] (bincode 2, `config::standard()`) is the default; [`MsgPack`]
//! (feature `msgpack`, structs as maps) serves peers written in other languages.
//!
//! ```
//! use conclib_codec::{Bincode, decode_value, encode_value};
//! let bytes = encode_value(&Bincode, &(1u32, "two")).unwrap();
//! let back: (u32, String) = decode_value(&Bincode, &bytes).unwrap();
//! assert_eq!(back, (1, "two".to_owned()));
//! ```

use std::fmt;
use std::sync::Arc;

mod depth;
mod status;
pub use depth::{DepthLimited, DepthLimitedError, MAX_DEPTH};
pub use status::Status;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A codec failed to encode or decode a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec}: {message}")]
pub struct CodecError {
    /// The codec's wire name.
    pub codec: &'static str,
    /// What went wrong.
    pub message: String,
}

impl CodecError {
    /// A codec error with this message.
    pub fn new(codec: &'static str, message: impl fmt::Display) -> Self {
        CodecError {
            codec,
            message: message.to_string(),
        }
    }
}

/// The visitor [`Codec::decode_with`] hands the type-erased deserializer to.
pub type DecodeVisitor<'a> =
    dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error> + 'a;

/// Turns serde values into payload bytes and back, through type-erased serde so that the
/// proxy can decode a message whose type it only knows at run time.
///
/// Implementations must reject trailing bytes after a decoded value and must not allocate
/// more than a small multiple of the input while decoding malformed bytes.
///
/// ```
/// use conclib_codec::{Bincode, Codec, decode_value, encode_value};
/// let bytes = encode_value(&Bincode, &(1u32, "two")).unwrap();
/// let back: (u32, String) = decode_value(&Bincode, &bytes).unwrap();
/// assert_eq!(back, (1, "two".to_owned()));
/// ```
pub trait Codec: Send + Sync + 'static {
    /// The codec's wire name, carried in each request's `codec` field (ASCII, no spaces).
    fn name(&self) -> &'static str;

    /// Encodes a value.
    ///
    /// # Errors
    /// [`CodecError`] when the value cannot be represented in this format.
    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError>;

    /// Runs `visit` on a deserializer reading `bytes`, then checks that every byte was used.
    ///
    /// # Errors
    /// [`CodecError`] when `visit` fails or bytes are left over.
    fn decode_with(&self, bytes: &[u8], visit: &mut DecodeVisitor<'_>) -> Result<(), CodecError>;

    /// Whether a value encoded from one version of a type decodes as another version that
    /// added or removed optional fields (the changes `conclib-schema check` calls
    /// additive): true for a codec that names its fields (MessagePack), false (the
    /// default) for one that reads them by position (bincode), where such bytes would fail
    /// to decode or decode wrong. A Redis proxy decodes a request whose message version
    /// differs from its own only with such a codec.
    fn reads_other_versions(&self) -> bool {
        false
    }
}

impl fmt::Debug for dyn Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Encodes `value` with `codec`.
///
/// # Errors
/// [`CodecError`] from the codec.
pub fn encode_value<T: Serialize + ?Sized>(
    codec: &dyn Codec,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    codec.encode(&value as &dyn erased_serde::Serialize)
}

/// Decodes a `T` from `bytes` with `codec`.
///
/// # Errors
/// [`CodecError`] when the bytes do not hold a `T` (or hold more).
pub fn decode_value<T: DeserializeOwned>(codec: &dyn Codec, bytes: &[u8]) -> Result<T, CodecError> {
    let mut out = None;
    codec.decode_with(bytes, &mut |de| {
        out = Some(erased_serde::deserialize::<T>(de)?);
        Ok(())
    })?;
    out.ok_or_else(|| CodecError::new(codec.name(), "the decoder produced no value"))
}

/// The built-in codec with this wire name, if compiled in: `bincode`, and `msgpack` with the
/// `msgpack` feature.
#[must_use]
pub fn builtin_codec(name: &[u8]) -> Option<Arc<dyn Codec>> {
    match name {
        b"bincode" => Some(Arc::new(Bincode)),
        #[cfg(feature = "msgpack")]
        b"msgpack" => Some(Arc::new(MsgPack)),
        _ => None,
    }
}

// ---- bincode ----

/// The most bytes a bincode decode may claim for strings, byte buffers and containers: a
/// guard against length prefixes that would make the decoder allocate gigabytes.
pub const BINCODE_DECODE_LIMIT: usize = 256 * 1024 * 1024;

type BincodeConfig = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<BINCODE_DECODE_LIMIT>,
>;

const BINCODE: BincodeConfig = bincode::config::standard().with_limit::<BINCODE_DECODE_LIMIT>();

/// bincode 2 through its serde support, with `bincode::config::standard()`: little-endian,
/// variable-length integers (values below 251 take one byte; then a marker byte 251/252/253/254
/// followed by a little-endian u16/u32/u64/u128), sequences and strings prefixed by their length
/// as such an integer, enums by their variant index, `Option` as a 0/1 byte. Wire name `bincode`.
/// Compact and fast, but positional: both sides need the same type definitions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

/// A bincode reader over a slice that lets the caller see what is left.
struct Slice<'a>(&'a [u8]);

impl bincode::de::read::Reader for Slice<'_> {
    #[inline]
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        if bytes.len() > self.0.len() {
            return Err(bincode::error::DecodeError::UnexpectedEnd {
                additional: bytes.len() - self.0.len(),
            });
        }
        let (head, rest) = self.0.split_at(bytes.len());
        bytes.copy_from_slice(head);
        self.0 = rest;
        Ok(())
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.0.get(..n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.0 = self.0.get(n..).unwrap_or_default();
    }
}

/// A bincode writer into a vector that the caller sizes.
struct VecOut(Vec<u8>);

impl bincode::enc::write::Writer for VecOut {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

impl Codec for Bincode {
    fn name(&self) -> &'static str {
        "bincode"
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError> {
        // Into room for 64 bytes from the start (as MessagePack's): `encode_to_vec` starts
        // from an empty vector, and a small message's first write went through the vector's
        // growth path, 125 instructions of every process actor's answer (docs/bench-log.md,
        // "Process actors' locks").
        let mut out = VecOut(Vec::with_capacity(64));
        bincode::serde::encode_into_writer(value, &mut out, BINCODE)
            .map_err(|e| CodecError::new("bincode", e))?;
        Ok(out.0)
    }

    fn decode_with(&self, bytes: &[u8], visit: &mut DecodeVisitor<'_>) -> Result<(), CodecError> {
        let mut reader = Slice(bytes);
        {
            let mut decoder = bincode::serde::OwnedSerdeDecoder::from_reader(&mut reader, BINCODE);
            let mut erased = <dyn erased_serde::Deserializer>::erase(DepthLimited::new(
                decoder.as_deserializer(),
            ));
            visit(&mut erased).map_err(|e| CodecError::new("bincode", e))?;
        }
        if reader.0.is_empty() {
            Ok(())
        } else {
            Err(CodecError::new(
                "bincode",
                format!("{} bytes left over after the value", reader.0.len()),
            ))
        }
    }
}

// ---- MessagePack ----

/// MessagePack through `rmp-serde` (feature `msgpack`): structs are encoded as maps keyed by
/// field name (`to_vec_named`), enums as `{variant: value}` maps (unit variants as the
/// variant's name), so clients in other languages can read and write them with any
/// MessagePack library. Wire name `msgpack`.
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

#[cfg(feature = "msgpack")]
impl Codec for MsgPack {
    fn name(&self) -> &'static str {
        "msgpack"
    }

    /// Fields travel by name: a field the other version lacks is skipped, one it added
    /// and this lacks reads as `None` (serde's defaults).
    fn reads_other_versions(&self) -> bool {
        true
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(64);
        let mut ser = rmp_serde::Serializer::new(&mut out).with_struct_map();
        value
            .serialize(&mut ser)
            .map_err(|e| CodecError::new("msgpack", e))?;
        Ok(out)
    }

    fn decode_with(&self, bytes: &[u8], visit: &mut DecodeVisitor<'_>) -> Result<(), CodecError> {
        let mut rest = bytes;
        {
            let mut de = rmp_serde::Deserializer::new(&mut rest);
            // rmp-serde's own limit (1024 by default; it counts arrays, maps and extensions)
            // is more than a debug build's stack holds. `DepthLimited` counts every level
            // and fails first (rmp-serde fails once its count reaches the limit, before it
            // calls the visitor that would count that level), so rmp-serde's only backs it up.
            de.set_max_depth(MAX_DEPTH + 2);
            let mut erased = <dyn erased_serde::Deserializer>::erase(DepthLimited::new(&mut de));
            visit(&mut erased).map_err(|e| CodecError::new("msgpack", e))?;
        }
        if rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::new(
                "msgpack",
                format!("{} bytes left over after the value", rest.len()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u64,
        b: String,
        c: Vec<i32>,
        d: Option<bool>,
    }

    fn sample() -> Sample {
        Sample {
            a: 300,
            b: "héllo".into(),
            c: vec![-1, 2, 3],
            d: Some(true),
        }
    }

    fn roundtrip(codec: &dyn Codec) {
        let bytes = encode_value(codec, &sample()).unwrap();
        assert_eq!(decode_value::<Sample>(codec, &bytes).unwrap(), sample());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_value::<Sample>(codec, &longer).is_err());
        assert!(decode_value::<Sample>(codec, &bytes[..bytes.len() - 1]).is_err());
        assert!(decode_value::<Sample>(codec, &[]).is_err());
    }

    #[test]
    fn bincode_roundtrip() {
        roundtrip(&Bincode);
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn msgpack_roundtrip() {
        roundtrip(&MsgPack);
    }

    #[test]
    fn bincode_refuses_absurd_lengths() {
        // A string whose length prefix says 2^40 bytes.
        let mut bytes = vec![253];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode_value::<String>(&Bincode, &bytes).is_err());
    }
}
