//! Entry points of the fuzz targets (`fuzz/`, feature `fuzzing`, internal): each decodes
//! untrusted bytes with the real codecs into a few realistic types and checks that what
//! decodes encodes again and decodes to the same value. A panic is a finding.
//!
//! The replay test below runs every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through the same functions on stable.

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Bincode, Codec, decode_value, encode_value};

/// A request a client would send: unknown fields are skipped (serde's default), as a server
/// reading a newer client's message does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// A number.
    pub id: u64,
    /// Text.
    pub customer: String,
    /// A list of pairs.
    pub lines: Vec<(String, u32)>,
    /// An optional small integer.
    pub discount: Option<i16>,
    /// A map.
    pub labels: BTreeMap<String, i64>,
    /// Raw bytes.
    pub note: Vec<u8>,
    /// A unit enum.
    pub state: State,
}

/// A unit-only enum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum State {
    Open,
    Paid,
    Shipped,
}

/// A recursive enum: what a tree of nested values looks like to the decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Tree {
    Leaf(i64),
    Text(String),
    Node(Vec<Tree>),
    Named { name: String, child: Box<Tree> },
    Empty,
}

/// What an answer looks like: a result with a handler error.
pub type Answer = Result<Option<Order>, String>;

/// Decodes `data` as `T`; what decodes must encode and decode back equal.
fn round_trip<T>(codec: &dyn Codec, data: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(value) = decode_value::<T>(codec, data) else {
        return;
    };
    let again = encode_value(codec, &value).expect("a decoded value encodes");
    let back = decode_value::<T>(codec, &again).expect("an encoded value decodes");
    assert_eq!(value, back, "decode(encode(decode(x))) != decode(x)");
}

fn all_types(codec: &dyn Codec, data: &[u8]) {
    round_trip::<Order>(codec, data);
    round_trip::<Tree>(codec, data);
    round_trip::<Answer>(codec, data);
    round_trip::<(u64, String, Vec<u8>)>(codec, data);
}

/// Target `codec_bincode`: [`Bincode`] payloads.
pub fn bincode(data: &[u8]) {
    all_types(&Bincode, data);
}

/// Target `codec_msgpack`: [`MsgPack`](crate::MsgPack) payloads, and any value at all
/// (`IgnoredAny` walks whatever the bytes hold).
#[cfg(feature = "msgpack")]
pub fn msgpack(data: &[u8]) {
    let codec = crate::MsgPack;
    all_types(&codec, data);
    let _ = decode_value::<serde::de::IgnoredAny>(&codec, data);
}

/// Real values of the types above, as seeds of the corpus.
pub fn sample_values() -> (Order, Tree, Answer) {
    let order = Order {
        id: 4_000_000_001,
        customer: "ada@example.com".into(),
        lines: vec![("tea".into(), 2), ("scone".into(), 300)],
        discount: Some(-15),
        labels: [("priority".to_owned(), 1), ("region".to_owned(), -7)].into(),
        note: b"leave at the door".to_vec(),
        state: State::Paid,
    };
    let tree = Tree::Node(vec![
        Tree::Leaf(-1),
        Tree::Text("café".into()),
        Tree::Named {
            name: "inner".into(),
            child: Box::new(Tree::Node(vec![Tree::Empty, Tree::Leaf(i64::MAX)])),
        },
    ]);
    (order.clone(), tree, Ok(Some(order)))
}

/// Seeds of `target`'s corpus (`codec_bincode`, `codec_msgpack`): the sample values encoded.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let codec: &dyn Codec = match target {
        "codec_bincode" => &Bincode,
        #[cfg(feature = "msgpack")]
        "codec_msgpack" => &crate::MsgPack,
        _ => return Vec::new(),
    };
    let (order, tree, answer) = sample_values();
    let error: Answer = Err("out of stock".into());
    let mut unknown = Vec::new();
    if target == "codec_msgpack" {
        // An order from a newer client: a field this side does not know, skipped.
        #[derive(Serialize)]
        struct Newer<'a> {
            #[serde(flatten)]
            order: &'a Order,
            gift_wrap: (bool, Vec<&'a str>),
        }
        unknown.push(
            encode_value(
                codec,
                &Newer {
                    order: &order,
                    gift_wrap: (true, vec!["red", "bow"]),
                },
            )
            .expect("encodes"),
        );
    }
    [
        encode_value(codec, &order),
        encode_value(codec, &tree),
        encode_value(codec, &answer),
        encode_value(codec, &error),
        encode_value(codec, &(7u64, "seven", b"\x00\x07".to_vec())),
    ]
    .into_iter()
    .map(|r| r.expect("encodes"))
    .chain(unknown)
    .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn fuzz_dir() -> PathBuf {
        conclib_testkit::fuzz_corpus::dir(env!("CARGO_MANIFEST_DIR"))
    }

    fn replay(target: &str, check: fn(&[u8])) {
        conclib_testkit::fuzz_corpus::replay(&fuzz_dir(), target, &super::seeds(target), check);
    }

    /// Writes the seeds into `fuzz/corpus/<target>/seed-N` (`cargo test -p conclib-codec
    /// --all-features -- --ignored write_seeds`).
    #[test]
    #[ignore = "writes the seed corpus"]
    fn write_seeds() {
        for target in ["codec_bincode", "codec_msgpack"] {
            conclib_testkit::fuzz_corpus::write_seeds(&fuzz_dir(), target, &super::seeds(target));
        }
    }

    #[test]
    fn replay_codec_bincode() {
        replay("codec_bincode", super::bincode);
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn replay_codec_msgpack() {
        replay("codec_msgpack", super::msgpack);
    }

    /// The unknown-field seed decodes as an `Order`, its extra field skipped.
    #[cfg(feature = "msgpack")]
    #[test]
    fn an_unknown_field_is_skipped() {
        let seeds = super::seeds("codec_msgpack");
        let newer = seeds.last().expect("the newer client's order");
        let order: super::Order = crate::decode_value(&crate::MsgPack, newer).expect("decodes");
        assert_eq!(order, super::sample_values().0);
    }
}
