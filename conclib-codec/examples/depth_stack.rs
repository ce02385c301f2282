//! How much stack one level of nesting takes to decode, per codec and shape of payload: the
//! measurement behind `MAX_DEPTH`.
//!
//! For `MAX_DEPTH / 2` and `MAX_DEPTH` levels (or the two given) it finds, by bisection, the smallest thread stack (in KiB) that
//! decodes the payload (each try in a child process: an overflow aborts it), and prints the
//! difference over the levels between, per level. Run it as the codecs run in a debug build:
//!
//! ```text
//! cargo run -p conclib-codec --all-features --example depth_stack [LEVELS_LOW LEVELS_HIGH]
//! ```
//!
//! Child role: `depth_stack child <case> <levels> <stack KiB>`, exit status 0 when the decode
//! returned (an answer or an error), an abort when the stack overflowed.

use std::process::{Command, Stdio};

use conclib_codec::{Bincode, Codec, MAX_DEPTH, decode_value};
use serde::Deserialize;

/// A user's recursive type.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

/// A struct message; a payload may carry fields it does not have.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Nap {
    ms: u64,
}

const CASES: &[&str] = &[
    "msgpack-unknown-arrays",
    "msgpack-unknown-maps",
    "msgpack-tree",
    "bincode-tree",
];

/// A MessagePack `{"ms": 1, "junk": ...}` whose `junk` nests `levels - 1` containers, so that
/// the whole payload nests `levels` deep.
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

/// A `Tree` of `levels - 1` nodes around a leaf (each a level): `{"Node": ...}` maps in
/// MessagePack, variant indexes in bincode.
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

fn decode(case: &str, levels: usize) -> Result<(), String> {
    #[cfg(feature = "msgpack")]
    let msgpack: &dyn Codec = &conclib_codec::MsgPack;
    #[cfg(not(feature = "msgpack"))]
    let msgpack: &dyn Codec = {
        if case.starts_with("msgpack") {
            return Err("built without the msgpack feature".into());
        }
        &Bincode
    };
    let result = match case {
        "msgpack-unknown-arrays" => {
            decode_value::<Nap>(msgpack, &msgpack_unknown(levels, false)).map(drop)
        }
        "msgpack-unknown-maps" => {
            decode_value::<Nap>(msgpack, &msgpack_unknown(levels, true)).map(drop)
        }
        "msgpack-tree" => decode_value::<Tree>(msgpack, &tree(levels, true)).map(drop),
        "bincode-tree" => decode_value::<Tree>(&Bincode, &tree(levels, false)).map(drop),
        _ => return Err(format!("unknown case {case}")),
    };
    result.map_err(|e| e.to_string())
}

/// Whether `levels` of `case` decode on a thread of `kib` KiB (in a child process).
fn fits(case: &str, levels: usize, kib: usize) -> bool {
    Command::new(std::env::current_exe().unwrap())
        .args(["child", case, &levels.to_string(), &kib.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The smallest stack, in KiB, that decodes `levels` of `case`.
fn smallest_stack(case: &str, levels: usize) -> usize {
    let (mut low, mut high) = (16, 64 * 1024);
    assert!(
        fits(case, levels, high),
        "{case}: {levels} levels overflow 64 MiB"
    );
    while high - low > 1 {
        let mid = (low + high) / 2;
        if fits(case, levels, mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    high
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        let levels: usize = args[3].parse().unwrap();
        let kib: usize = args[4].parse().unwrap();
        let case = args[2].clone();
        let outcome = std::thread::Builder::new()
            .stack_size(kib * 1024)
            .spawn(move || decode(&case, levels))
            .unwrap()
            .join()
            .unwrap();
        println!("{outcome:?}");
        return;
    }
    let low: usize = args.get(1).map_or(MAX_DEPTH / 2, |a| a.parse().unwrap());
    let high: usize = args.get(2).map_or(MAX_DEPTH, |a| a.parse().unwrap());
    for case in CASES {
        let (a, b) = (smallest_stack(case, low), smallest_stack(case, high));
        let per_level = (b as f64 - a as f64) * 1024.0 / (high - low) as f64;
        println!(
            "RESULT {case}: {low} levels {a} KiB, {high} levels {b} KiB: {per_level:.0} bytes per level; {high} levels check: {:?}",
            decode(case, high)
        );
    }
}
