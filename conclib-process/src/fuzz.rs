//! Entry points of the fuzz targets (`fuzz/`, feature `fuzzing`, internal): the bytes a
//! process actor's link reads from the other side, through the real decoders. A panic is a
//! finding. The replay test below runs every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through the same functions on stable.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use conclib_codec::__fuzz::{Order, Tree};
use conclib_codec::{Bincode, encode_value};
use conclib_core::trace::TraceContext;
use conclib_core::{Message, MessageDecl, NoError};

use crate::answer::decode_answer;
use crate::wire::{self, Frame, FrameReader, Trickle, status};

/// Target `process_frame`: one frame's body (after its length). A frame that decodes
/// encodes to a frame that decodes the same.
pub fn frame(data: &[u8]) {
    let Some(frame) = wire::decode(data) else {
        return;
    };
    let mut out = Vec::new();
    wire::encode(&frame, &mut out);
    let len = u32::from_be_bytes(out[..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(len, out.len() - 4, "the length prefix");
    assert_eq!(wire::decode(&out[4..]), Some(frame));
}

/// Target `process_stream`: the link's byte stream (the first byte: how many bytes each
/// read gets, 1 to 256), cut into frames by the link's reader, each decoded as
/// [`frame`] does.
pub fn stream(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let mut reader = FrameReader::new(Trickle {
        data,
        step: usize::from(step) + 1,
    });
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let next = pin!(reader.next()).poll(&mut cx);
        match next {
            Poll::Ready(Ok(Some(body))) => frame(body),
            Poll::Ready(Ok(None) | Err(_)) => return,
            Poll::Pending => panic!("a stream that is always ready left the reader pending"),
        }
    }
}

/// An ask that can fail, answered with an order.
struct Place;
impl Message for Place {
    type Response = Order;
    type Error = String;
}
impl MessageDecl for Place {
    type WireError = String;
}

/// An ask that cannot fail, answered with a tree.
struct Walk;
impl Message for Walk {
    type Response = Tree;
    type Error = Infallible;
}
impl MessageDecl for Walk {
    type WireError = NoError;
}

/// Target `process_answer`: an answer's status byte (the first byte) and payload, as the
/// asking side decodes it, for two realistic messages.
pub fn answer(data: &[u8]) {
    let Some((&status, payload)) = data.split_first() else {
        return;
    };
    let _ = decode_answer::<Place>("shop:1", status, payload);
    let _ = decode_answer::<Walk>("tree:1", status, payload);
}

/// Seeds of `target`'s corpus, from real values.
#[must_use]
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let (order, tree, _) = conclib_codec::__fuzz::sample_values();
    let body = encode_value(&Bincode, &order).expect("encodes");
    let trace = TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let frames = [
        Frame::Init {
            kind: "shop::Cart",
            state: &body,
            resume: true,
        },
        Frame::Request {
            id: 7,
            high: true,
            trace,
            message: "shop.Place",
            body: &body,
        },
        Frame::Reply {
            id: 7,
            status: status::OK,
            payload: &body,
        },
        Frame::Ping(3),
        Frame::Pong(0),
        Frame::Stop,
        Frame::Ask {
            id: 9,
            trace,
            urn: "counter:1",
            message: "Add",
            body: b"\x05",
        },
        Frame::Answer {
            id: 9,
            status: status::HANDLER_ERROR,
            payload: b"\x04oops",
        },
        Frame::Cancel(9),
        Frame::Skipped(9),
        Frame::Ended {
            panicked: true,
            reason: "index out of bounds",
        },
    ];
    let encoded = frames.iter().map(|f| {
        let mut out = Vec::new();
        wire::encode(f, &mut out);
        out
    });
    match target {
        "process_frame" => encoded.map(|f| f[4..].to_vec()).collect(),
        "process_stream" => {
            let all: Vec<u8> = encoded.flatten().collect();
            [0u8, 6, 255]
                .iter()
                .map(|&step| [&[step][..], &all].concat())
                .collect()
        }
        "process_answer" => {
            let tree = encode_value(&Bincode, &tree).expect("encodes");
            let error = encode_value(&Bincode, &"out of stock").expect("encodes");
            vec![
                [&[status::OK][..], &body].concat(),
                [&[status::OK][..], &tree].concat(),
                [&[status::HANDLER_ERROR][..], &error].concat(),
                [&[status::PANICKED][..], b"attempt to divide by zero"].concat(),
                vec![status::MAILBOX_FULL],
            ]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Each target, and its function.
    type Target = (&'static str, fn(&[u8]));

    const TARGETS: [Target; 3] = [
        ("process_frame", super::frame),
        ("process_stream", super::stream),
        ("process_answer", super::answer),
    ];

    fn fuzz_dir() -> PathBuf {
        conclib_testkit::fuzz_corpus::dir(env!("CARGO_MANIFEST_DIR"))
    }

    /// Every file of each target's corpus and regressions, and its seeds, through its
    /// target's function.
    #[test]
    fn replay_corpus_and_regressions() {
        for (target, check) in TARGETS {
            conclib_testkit::fuzz_corpus::replay(&fuzz_dir(), target, &super::seeds(target), check);
        }
    }

    /// Writes the seeds into `fuzz/corpus/<target>/seed-N` (`cargo test -p conclib-process
    /// --all-features --lib -- --ignored write_seeds`).
    #[test]
    #[ignore = "writes the seed corpus"]
    fn write_seeds() {
        for (target, _) in TARGETS {
            conclib_testkit::fuzz_corpus::write_seeds(&fuzz_dir(), target, &super::seeds(target));
        }
    }
}
