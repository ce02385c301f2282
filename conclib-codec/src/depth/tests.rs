//! The nesting bound: unknown fields, recursive types, errors said once, flat values.

use super::MAX_DEPTH;
use crate::{Bincode, Codec, CodecError, decode_value};
use serde::Deserialize;

/// A user's recursive type.
#[derive(Debug, PartialEq, Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

impl Tree {
    fn depth(&self) -> usize {
        let (mut tree, mut depth) = (self, 1);
        while let Tree::Node(next) = tree {
            tree = next;
            depth += 1;
        }
        depth
    }
}

/// Recursive through `Option` alone (no enum, map or sequence per level).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct Chain(Option<Box<Chain>>);

/// A struct message.
#[derive(Debug, PartialEq, Deserialize)]
struct Nap {
    ms: u64,
}

/// Runs `f` on a thread of 1 MiB (half a tokio worker's stack): past the bound a decode
/// would overflow it (and abort the test binary) rather than fail.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// `{"ms": 1, "junk": ...}` nesting `levels` deep in all: `junk` holds `levels - 1`
/// nested arrays (or maps).
fn msgpack_unknown(levels: usize, maps: bool) -> Vec<u8> {
    let mut out = vec![0x82, 0xa2, b'm', b's', 0x01, 0xa4, b'j', b'u', b'n', b'k'];
    for _ in 1..levels {
        if maps {
            out.extend_from_slice(&[0x81, 0xa1, b'a']);
        } else {
            out.push(0x91);
        }
    }
    out.push(0x01);
    out
}

/// A `Tree` `levels` deep: `levels - 1` nodes around a leaf.
fn tree(levels: usize, msgpack: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 1..levels {
        if msgpack {
            out.extend_from_slice(&[0x81, 0xa4, b'N', b'o', b'd', b'e']);
        } else {
            out.push(1);
        }
    }
    if msgpack {
        out.extend_from_slice(&[0xa4, b'L', b'e', b'a', b'f']);
    } else {
        out.push(0);
    }
    out
}

fn assert_too_deep(result: Result<impl std::fmt::Debug, CodecError>, codec: &str) {
    let err = result.expect_err("a payload past MAX_DEPTH is refused");
    assert_eq!(err.codec, codec);
    assert!(
        err.message
            .contains(&format!("nesting deeper than {MAX_DEPTH} levels")),
        "{err}"
    );
    // Said once, not wrapped again at each level on its way up.
    assert!(err.message.len() < 100, "{err}");
}

/// `check(levels)` at MAX_DEPTH, one past it and 100,000 levels, on a small stack.
fn at_the_bound(check: fn(usize)) {
    on_small_stack(move || {
        for levels in [MAX_DEPTH, MAX_DEPTH + 1, 100_000] {
            check(levels);
        }
    });
}

#[cfg(feature = "msgpack")]
#[test]
fn msgpack_unknown_field_of_nested_arrays_is_bounded() {
    at_the_bound(|levels| {
        let result = decode_value::<Nap>(&crate::MsgPack, &msgpack_unknown(levels, false));
        if levels <= MAX_DEPTH {
            assert_eq!(result.unwrap(), Nap { ms: 1 });
        } else {
            assert_too_deep(result, "msgpack");
        }
    });
}

#[cfg(feature = "msgpack")]
#[test]
fn msgpack_unknown_field_of_nested_maps_is_bounded() {
    at_the_bound(|levels| {
        let result = decode_value::<Nap>(&crate::MsgPack, &msgpack_unknown(levels, true));
        if levels <= MAX_DEPTH {
            assert_eq!(result.unwrap(), Nap { ms: 1 });
        } else {
            assert_too_deep(result, "msgpack");
        }
    });
}

#[cfg(feature = "msgpack")]
#[test]
fn msgpack_recursive_type_is_bounded() {
    at_the_bound(|levels| {
        let result = decode_value::<Tree>(&crate::MsgPack, &tree(levels, true));
        if levels <= MAX_DEPTH {
            assert_eq!(result.unwrap().depth(), levels);
        } else {
            assert_too_deep(result, "msgpack");
        }
    });
}

#[test]
fn bincode_recursive_type_is_bounded() {
    at_the_bound(|levels| {
        let result = decode_value::<Tree>(&Bincode, &tree(levels, false));
        if levels <= MAX_DEPTH {
            assert_eq!(result.unwrap().depth(), levels);
        } else {
            assert_too_deep(result, "bincode");
        }
    });
}

#[test]
fn bincode_recursion_through_option_alone_is_bounded() {
    at_the_bound(|levels| {
        // `levels` times Some, then None: each Some is a level.
        let mut bytes = vec![1u8; levels];
        bytes.push(0);
        let result = decode_value::<Chain>(&Bincode, &bytes);
        if levels <= MAX_DEPTH {
            assert!(result.unwrap().0.is_some());
        } else {
            assert_too_deep(result, "bincode");
        }
    });
}

#[test]
fn an_error_deep_inside_is_said_once() {
    // A tree cut short at 60 levels: bincode's own error, from deep inside.
    let mut bytes = tree(60, false);
    bytes.pop();
    let err = decode_value::<Tree>(&Bincode, &bytes).unwrap_err();
    assert!(err.message.len() < 100, "{err}");
    // A message of a `Deserialize` impl, from deep inside (an unknown variant).
    let mut bytes = tree(60, false);
    *bytes.last_mut().unwrap() = 9;
    let err = decode_value::<Tree>(&Bincode, &bytes).unwrap_err();
    assert!(err.message.len() < 100, "{err}");
    assert!(err.message.contains("integer `9`"), "{err}");
}

#[test]
fn flat_values_take_one_level() {
    let codec: &dyn Codec = &Bincode;
    let bytes = crate::encode_value(codec, &vec![7u32; 10_000]).unwrap();
    assert_eq!(
        decode_value::<Vec<u32>>(codec, &bytes).unwrap().len(),
        10_000
    );
}
