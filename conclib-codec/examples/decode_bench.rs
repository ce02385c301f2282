//! What the nesting bound costs on the normal path: the decode of a small struct through
//! `decode_value` (bounded, `DepthLimited`) against the same decode through the type-erased
//! deserializer alone (as before the bound), alternated A/B in one process.
//!
//! ```text
//! cargo run --release -p conclib-codec --all-features --example decode_bench [ROUNDS]
//! ```

use std::hint::black_box;
use std::time::Instant;

use conclib_codec::{
    BINCODE_DECODE_LIMIT, Bincode, Codec, CodecError, DecodeVisitor, decode_value, encode_value,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    item: String,
    quantity: u32,
    tags: Vec<u16>,
    note: Option<bool>,
}

/// The codecs' decode as it was before the bound (the concrete deserializer erased directly),
/// behind the same `Codec` trait.
struct Unbounded(&'static str);

/// A bincode reader over a slice that lets the caller see what is left (as the crate's).
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

impl Codec for Unbounded {
    fn name(&self) -> &'static str {
        self.0
    }

    fn encode(&self, _: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError> {
        unimplemented!("decode only")
    }

    fn decode_with(&self, bytes: &[u8], visit: &mut DecodeVisitor<'_>) -> Result<(), CodecError> {
        let left = if self.0 == "bincode" {
            let config = bincode::config::standard().with_limit::<BINCODE_DECODE_LIMIT>();
            let mut reader = Slice(bytes);
            {
                let mut decoder =
                    bincode::serde::OwnedSerdeDecoder::from_reader(&mut reader, config);
                let mut erased = <dyn erased_serde::Deserializer>::erase(decoder.as_deserializer());
                visit(&mut erased).map_err(|e| CodecError::new("bincode", e))?;
            }
            reader.0.len()
        } else {
            #[cfg(feature = "msgpack")]
            {
                let mut rest = bytes;
                {
                    let mut de = rmp_serde::Deserializer::new(&mut rest);
                    let mut erased = <dyn erased_serde::Deserializer>::erase(&mut de);
                    visit(&mut erased).map_err(|e| CodecError::new("msgpack", e))?;
                }
                rest.len()
            }
            #[cfg(not(feature = "msgpack"))]
            unreachable!()
        };
        if left == 0 {
            Ok(())
        } else {
            Err(CodecError::new(self.0, "bytes left over"))
        }
    }
}

fn time(iterations: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(7, |a| a.parse().expect("ROUNDS"));
    let order = Order {
        id: 42,
        item: "widget".into(),
        quantity: 3,
        tags: vec![1, 2, 3],
        note: Some(true),
    };
    let mut codecs: Vec<(&str, &dyn Codec)> = vec![("bincode", &Bincode)];
    #[cfg(feature = "msgpack")]
    codecs.push(("msgpack", &conclib_codec::MsgPack));
    const N: u32 = 200_000;
    for (name, codec) in codecs {
        let bytes = encode_value(codec, &order).unwrap();
        let old = Unbounded(name);
        assert_eq!(decode_value::<Order>(&old, &bytes).unwrap(), order);
        assert_eq!(decode_value::<Order>(codec, &bytes).unwrap(), order);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(time(N, || {
                black_box(decode_value::<Order>(&old, black_box(&bytes)).unwrap());
            }));
            b.push(time(N, || {
                black_box(decode_value::<Order>(codec, black_box(&bytes)).unwrap());
            }));
        }
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let (ma, mb) = (a[a.len() / 2], b[b.len() / 2]);
        println!(
            "RESULT {name}: unbounded {ma:.1} ns, bounded {mb:.1} ns per decode (medians of {rounds} alternated rounds of {N}); ratio {:.3}",
            mb / ma
        );
    }
}
