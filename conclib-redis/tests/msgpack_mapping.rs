//! How Rust types map to MessagePack with the `msgpack` codec, byte for byte: what the
//! protocol docs promise a client in another language.
#![cfg(feature = "msgpack")]

use conclib_redis::codec::{MsgPack, decode_value, encode_value};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Newtype(u64);
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Unit;
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Point {
    x: u8,
    y: u8,
}
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Refusal {
    NotAllowed { reason: String },
    Busy,
    Code(u8),
    Span(u8, u8),
}
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pair(String, u8);
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Greeting {
    to: String,
    times: Option<u8>,
}

fn bytes<T: Serialize>(v: &T) -> Vec<u8> {
    encode_value(&MsgPack, v).unwrap()
}

#[test]
fn rust_types_map_to_msgpack_as_documented() {
    // A newtype struct is its bare value.
    assert_eq!(bytes(&Newtype(5)), [0x05]);
    // A unit struct is an empty array; `()` and `None` are nil.
    assert_eq!(bytes(&Unit), [0x90]);
    assert_eq!(bytes(&()), [0xc0]);
    assert_eq!(bytes(&None::<u8>), [0xc0]);
    assert_eq!(bytes(&Some(7u8)), [0x07]);
    // Structs are maps of field names.
    assert_eq!(
        bytes(&Point { x: 1, y: 2 }),
        [0x82, 0xa1, b'x', 0x01, 0xa1, b'y', 0x02]
    );
    // Enums are externally tagged: a unit variant is its name, others a one-entry map.
    assert_eq!(bytes(&Refusal::Busy), [0xa4, b'B', b'u', b's', b'y']);
    assert_eq!(
        bytes(&Refusal::Code(3)),
        [0x81, 0xa4, b'C', b'o', b'd', b'e', 0x03]
    );
    assert_eq!(
        bytes(&Refusal::NotAllowed { reason: "x".into() }),
        [
            0x81, 0xaa, b'N', b'o', b't', b'A', b'l', b'l', b'o', b'w', b'e', b'd', 0x81, 0xa6,
            b'r', b'e', b'a', b's', b'o', b'n', 0xa1, b'x'
        ]
    );
    // A tuple variant's content is an array; tuples and tuple structs are arrays.
    assert_eq!(
        bytes(&Refusal::Span(1, 2)),
        [0x81, 0xa4, b'S', b'p', b'a', b'n', 0x92, 0x01, 0x02]
    );
    assert_eq!(bytes(&(1u8, "a")), [0x92, 0x01, 0xa1, b'a']);
    assert_eq!(bytes(&Pair("a".into(), 1)), [0x92, 0xa1, b'a', 0x01]);
    // Maps are maps.
    let map = std::collections::BTreeMap::from([("k", 1u8)]);
    assert_eq!(bytes(&map), [0x81, 0xa1, b'k', 0x01]);
    // `Vec<u8>` is an array of integers (serde's default; use `serde_bytes` for bin).
    assert_eq!(bytes(&vec![1u8, 2]), [0x92, 0x01, 0x02]);
    // Strings are str.
    assert_eq!(bytes(&"hi"), [0xa2, b'h', b'i']);
}

#[test]
fn structs_are_accepted_as_maps_or_arrays() {
    let as_map = [0x82, 0xa1, b'x', 0x01, 0xa1, b'y', 0x02];
    let as_array = [0x92, 0x01, 0x02];
    assert_eq!(
        decode_value::<Point>(&MsgPack, &as_map).unwrap(),
        Point { x: 1, y: 2 }
    );
    assert_eq!(
        decode_value::<Point>(&MsgPack, &as_array).unwrap(),
        Point { x: 1, y: 2 }
    );
    // A unit struct is read from an empty array or nil.
    assert_eq!(decode_value::<Unit>(&MsgPack, &[0x90]).unwrap(), Unit);
    assert_eq!(decode_value::<Unit>(&MsgPack, &[0xc0]).unwrap(), Unit);
    // Trailing bytes are refused.
    assert!(decode_value::<Point>(&MsgPack, &[0x92, 0x01, 0x02, 0x00]).is_err());
}

#[test]
fn what_a_reader_accepts_of_other_writers() {
    // An integer of any width, where its value fits: 5 as uint64 and as int64.
    let wide = [0xcf, 0, 0, 0, 0, 0, 0, 0, 5];
    let signed = [0xd3, 0, 0, 0, 0, 0, 0, 0, 5];
    assert_eq!(decode_value::<u64>(&MsgPack, &wide).unwrap(), 5);
    assert_eq!(decode_value::<u64>(&MsgPack, &signed).unwrap(), 5);
    assert_eq!(decode_value::<u8>(&MsgPack, &wide).unwrap(), 5);
    // A negative number, a float, or a value too large for the field are refused.
    assert!(decode_value::<u64>(&MsgPack, &[0xff]).is_err());
    assert!(decode_value::<u64>(&MsgPack, &[0xcb, 0x40, 0x14, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(decode_value::<u8>(&MsgPack, &[0xcd, 0x01, 0x00]).is_err());
    // A struct's unknown fields are ignored, its missing `Option` fields are `None`.
    let with_extra = [
        0x82, 0xa2, b't', b'o', 0xa1, b'x', 0xa5, b'e', b'x', b't', b'r', b'a', 0x01,
    ];
    assert_eq!(
        decode_value::<Greeting>(&MsgPack, &with_extra).unwrap(),
        Greeting {
            to: "x".into(),
            times: None
        }
    );
    // A tuple variant and a map read back from what the docs say they are.
    assert_eq!(
        decode_value::<Refusal>(
            &MsgPack,
            &[0x81, 0xa4, b'S', b'p', b'a', b'n', 0x92, 0x01, 0x02]
        )
        .unwrap(),
        Refusal::Span(1, 2)
    );
}
