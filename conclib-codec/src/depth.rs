//! Bounded nesting: a serde [`Deserializer`] adapter that counts how deep a value nests and
//! fails, with an error rather than a stack overflow, past a limit.
//!
//! Decoding recurses once per level of nesting, so the depth a payload can reach is the depth
//! the decoding thread's stack must hold. Without a bound a 1 KB request (700 nested arrays in
//! a field the message does not even have) overflowed a tokio worker's 2 MiB stack in a debug
//! build, and bincode, which has no limit of its own, recursed as deep as a recursive type's
//! payload asked in any build.

use std::cell::RefCell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// The deepest a decoded payload may nest: a deeper one fails with a [`CodecError`]
/// ("nesting deeper than 128 levels") instead of recursing further.
///
/// A level is a sequence, tuple, map, struct, enum, `Option`'s `Some` or newtype struct
/// entered: a struct message with a field of nested arrays takes one level for itself and one
/// per array; an `enum Tree { Leaf, Node(Box<Tree>) }` one per node and one for the leaf; a
/// `struct List { next: Option<Box<List>> }` two per node (the struct and the `Some`).
///
/// Chosen from the stack one level takes to decode in a debug build, measured with `cargo run
/// -p conclib-codec --all-features --example depth_stack` (the smallest thread stack that
/// decodes 32 and 64 levels, bisected in child processes; the difference over 32 levels):
///
/// | payload | bytes of stack per level (before this bound) |
/// |---|---|
/// | MessagePack, a field the message does not have, of nested arrays | 4,928 (3,792) |
/// | the same of nested maps | 4,672 (3,536) |
/// | MessagePack, a user's recursive `Tree` | 2,496 (1,648) |
/// | bincode, the same `Tree` | 2,272 (1,488) |
///
/// (About 0.8-1.1 KiB of each level is this bound's adapter; the rest is rmp-serde, bincode,
/// erased-serde and the type's own `Deserialize`, unoptimized.) The worst case takes about
/// 630 KiB of stack at 128 levels (321 KiB at 64): under a third of a tokio worker's 2 MiB,
/// where the proxy and process actors decode. Release builds take a fraction of this. 128
/// rather than 64 so that a user's `Option<Box<..>>` chain of 64 nodes, or JSON-like data
/// nested 60 deep, still decodes.
///
/// [`CodecError`]: crate::CodecError
pub const MAX_DEPTH: usize = 128;

/// How deep the value being read is, and how deep it may go.
#[derive(Debug, Clone, Copy)]
struct Level {
    depth: usize,
    limit: usize,
}

impl Level {
    /// One level further in, or the error for going past the limit.
    #[inline]
    fn enter<E: de::Error>(self) -> Result<Level, DepthLimitedError<E>> {
        if self.depth >= self.limit {
            Err(too_deep(self.limit))
        } else {
            Ok(Level {
                depth: self.depth + 1,
                limit: self.limit,
            })
        }
    }
}

#[cold]
#[inline(never)]
fn too_deep<E: de::Error>(limit: usize) -> DepthLimitedError<E> {
    de::Error::custom(format_args!("nesting deeper than {limit} levels"))
}

/// The error of a [`DepthLimited`]: the wrapped deserializer's own, or a message (of the
/// depth bound, or of a `Deserialize` impl) that is shown as it is.
///
/// A message passes down through the wrapped deserializer as its error type (made with
/// `serde::de::Error::custom`) and comes back up as the same message, not as that error's
/// display: each level of nesting would otherwise wrap it once more, and bincode's display
/// quotes and escapes it, so an error 64 levels deep grew to 2^64 bytes.
///
/// ```
/// use conclib_codec::DepthLimitedError;
/// use serde::de::Error;
/// let e = DepthLimitedError::<serde::de::value::Error>::custom("no");
/// assert_eq!(e.to_string(), "no");
/// ```
#[derive(Debug)]
pub struct DepthLimitedError<E>(Repr<E>);

#[derive(Debug)]
enum Repr<E> {
    Inner(E),
    Message(String),
}

impl<E: fmt::Display> fmt::Display for DepthLimitedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Inner(e) => e.fmt(f),
            Repr::Message(m) => f.write_str(m),
        }
    }
}

impl<E: std::error::Error> std::error::Error for DepthLimitedError<E> {}

impl<E: de::Error> de::Error for DepthLimitedError<E> {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DepthLimitedError(Repr::Message(msg.to_string()))
    }
}

thread_local! {
    /// The last message passed down as an inner error: the inner error's display, and the
    /// message. Touched on error paths only.
    static PASSED_DOWN: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// An inner error, as this adapter's: the message it was made from if it is the one last
/// passed down.
#[cold]
#[inline(never)]
fn up<E: de::Error>(e: E) -> DepthLimitedError<E> {
    let shown = e.to_string();
    let message = PASSED_DOWN.with(|slot| {
        let mut slot = slot.borrow_mut();
        match slot.take() {
            Some((display, message)) if display == shown => Some(message),
            other => {
                *slot = other;
                None
            }
        }
    });
    DepthLimitedError(match message {
        Some(m) => Repr::Message(m),
        None => Repr::Inner(e),
    })
}

/// This adapter's error, as the inner deserializer's.
#[cold]
#[inline(never)]
fn down<E: de::Error>(e: DepthLimitedError<E>) -> E {
    match e.0 {
        Repr::Inner(e) => e,
        Repr::Message(message) => {
            let e = E::custom(&message);
            let display = e.to_string();
            PASSED_DOWN.with(|slot| *slot.borrow_mut() = Some((display, message)));
            e
        }
    }
}

/// A [`Deserializer`] that fails with a custom error ("nesting deeper than N levels") once the
/// value it reads nests more than N levels deep, rather than recursing as deep as the input
/// asks (and overflowing the stack). Both built-in codecs decode through it with
/// [`MAX_DEPTH`]; a [`Codec`](crate::Codec) of your own can do the same.
///
/// Every visitor, sequence, map, enum and variant access and seed it hands out is wrapped in
/// turn, so each nested value is read through a `DepthLimited` that knows its depth.
///
/// ```
/// use conclib_codec::DepthLimited;
/// use serde::Deserialize;
/// use serde::de::value::{Error, SeqDeserializer};
///
/// // Three nested levels: the outer sequence and the two inside it.
/// let rows = SeqDeserializer::<_, Error>::new(vec![vec![1u8, 2], vec![3]].into_iter());
/// let back = Vec::<Vec<u8>>::deserialize(DepthLimited::with_limit(rows, 2)).unwrap();
/// assert_eq!(back, [vec![1, 2], vec![3]]);
///
/// let rows = SeqDeserializer::<_, Error>::new(vec![vec![1u8, 2], vec![3]].into_iter());
/// let err = Vec::<Vec<u8>>::deserialize(DepthLimited::with_limit(rows, 1)).unwrap_err();
/// assert_eq!(err.to_string(), "nesting deeper than 1 levels");
/// ```
#[derive(Debug)]
pub struct DepthLimited<D> {
    inner: D,
    level: Level,
}

impl<D> DepthLimited<D> {
    /// Wraps `inner`, allowing [`MAX_DEPTH`] levels.
    #[inline]
    pub fn new(inner: D) -> Self {
        Self::with_limit(inner, MAX_DEPTH)
    }

    /// Wraps `inner`, allowing `limit` levels (0: only scalars).
    #[inline]
    pub fn with_limit(inner: D, limit: usize) -> Self {
        DepthLimited {
            inner,
            level: Level { depth: 0, limit },
        }
    }
}

/// The visitor handed to the wrapped deserializer: counts a level for each compound value.
struct Visit<V> {
    inner: V,
    level: Level,
}

/// A sequence's elements, each read at the sequence's level.
struct Seq<A> {
    inner: A,
    level: Level,
}

/// A map's keys and values, each read at the map's level.
struct Map<A> {
    inner: A,
    level: Level,
}

/// An enum's variant tag and content.
struct Enum<A> {
    inner: A,
    level: Level,
}

/// An enum variant's content.
struct Variant<A> {
    inner: A,
    level: Level,
}

/// A seed whose deserializer is wrapped in turn.
struct Seed<S> {
    inner: S,
    level: Level,
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            #[inline]
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
                self.inner
                    .$method($($arg,)* Visit { inner: visitor, level: self.level })
                    .map_err(up)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for DepthLimited<D> {
    type Error = DepthLimitedError<D::Error>;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            #[inline]
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method::<DepthLimitedError<E>>(v).map_err(down)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner
            .visit_none::<DepthLimitedError<E>>()
            .map_err(down)
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner
            .visit_unit::<DepthLimitedError<E>>()
            .map_err(down)
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        let level = self.level.enter().map_err(down)?;
        self.inner
            .visit_some(DepthLimited {
                inner: deserializer,
                level,
            })
            .map_err(down)
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        let level = self.level.enter().map_err(down)?;
        self.inner
            .visit_newtype_struct(DepthLimited {
                inner: deserializer,
                level,
            })
            .map_err(down)
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let level = self.level.enter().map_err(down)?;
        self.inner
            .visit_seq(Seq { inner: seq, level })
            .map_err(down)
    }

    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let level = self.level.enter().map_err(down)?;
        self.inner
            .visit_map(Map { inner: map, level })
            .map_err(down)
    }

    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let level = self.level.enter().map_err(down)?;
        self.inner
            .visit_enum(Enum { inner: data, level })
            .map_err(down)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner
            .deserialize(DepthLimited {
                inner: deserializer,
                level: self.level,
            })
            .map_err(down)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = DepthLimitedError<A::Error>;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let level = self.level;
        self.inner
            .next_element_seed(Seed { inner: seed, level })
            .map_err(up)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = DepthLimitedError<A::Error>;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let level = self.level;
        self.inner
            .next_key_seed(Seed { inner: seed, level })
            .map_err(up)
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        let level = self.level;
        self.inner
            .next_value_seed(Seed { inner: seed, level })
            .map_err(up)
    }

    #[inline]
    fn next_entry_seed<K: DeserializeSeed<'de>, T: DeserializeSeed<'de>>(
        &mut self,
        key: K,
        value: T,
    ) -> Result<Option<(K::Value, T::Value)>, Self::Error> {
        let level = self.level;
        self.inner
            .next_entry_seed(
                Seed { inner: key, level },
                Seed {
                    inner: value,
                    level,
                },
            )
            .map_err(up)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = DepthLimitedError<A::Error>;
    type Variant = Variant<A::Variant>;

    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), Self::Error> {
        let level = self.level;
        let (tag, variant) = self
            .inner
            .variant_seed(Seed { inner: seed, level })
            .map_err(up)?;
        Ok((
            tag,
            Variant {
                inner: variant,
                level,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = DepthLimitedError<A::Error>;

    #[inline]
    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant().map_err(up)
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        let level = self.level;
        self.inner
            .newtype_variant_seed(Seed { inner: seed, level })
            .map_err(up)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let level = self.level;
        self.inner
            .tuple_variant(
                len,
                Visit {
                    inner: visitor,
                    level,
                },
            )
            .map_err(up)
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let level = self.level;
        self.inner
            .struct_variant(
                fields,
                Visit {
                    inner: visitor,
                    level,
                },
            )
            .map_err(up)
    }
}

#[cfg(test)]
mod tests;
