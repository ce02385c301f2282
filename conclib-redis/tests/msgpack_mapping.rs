//! How Rust types map to MessagePack with the `msgpack` codec, byte for byte: what the
//! protocol docs promise a client in another language.
#![cfg(feature = "msgpack")]

use conclib_redis::{MsgPack, decode_value, encode_value};
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
