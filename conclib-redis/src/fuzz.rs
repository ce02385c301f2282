//! Entry points of the fuzz targets (`fuzz/`, feature `fuzzing`, internal): the bytes that
//! reach this crate from outside the process, through the real decoders. A panic is a
//! finding. The replay test below runs every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through the same functions on stable.

use std::time::Duration;

use conclib_codec::__fuzz::{Answer, Order, Tree};
use conclib_codec::{Bincode, Codec, encode_value};
use fred::bytes::Bytes;
use fred::prelude::Value;

use crate::protocol::{Status, encode_reply, encode_reply_with_holder, split_reply};
use crate::unacked::EntryId;

/// A list of Redis values from bytes: each a tag byte (low two bits: 0 bytes, 1 a string,
/// 2 an integer, 3 nil), then for bytes and strings a length (one byte; 255: two more,
/// big-endian) and the bytes, for an integer 8 bytes little-endian. A string that is not
/// UTF-8 stays bytes. What is cut short ends the list.
#[must_use]
pub fn values(mut data: &[u8]) -> Vec<Value> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = data.split_at_checked(n)?;
        *data = rest;
        Some(head)
    }
    let mut out = Vec::new();
    while let Some(&[tag]) = take(&mut data, 1) {
        let value = match tag & 3 {
            0 | 1 => {
                let Some(&[len]) = take(&mut data, 1) else {
                    break;
                };
                let len = match len {
                    255 => match take(&mut data, 2) {
                        Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                        _ => break,
                    },
                    n => usize::from(n),
                };
                let Some(bytes) = take(&mut data, len) else {
                    break;
                };
                match std::str::from_utf8(bytes) {
                    Ok(text) if tag & 3 == 1 => Value::from(text),
                    _ => Value::Bytes(Bytes::copy_from_slice(bytes)),
                }
            }
            2 => {
                let Some(n) = take(&mut data, 8) else {
                    break;
                };
                Value::Integer(i64::from_le_bytes(n.try_into().expect("8 bytes")))
            }
            _ => Value::Null,
        };
        out.push(value);
    }
    out
}

/// The bytes [`values`] reads back as `list` (strings, bytes, integers, nil; anything else
/// as nil).
#[must_use]
pub fn encode_values(list: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in list {
        let (tag, bytes): (u8, &[u8]) = match v {
            Value::Bytes(b) => (0, b),
            Value::String(s) => (1, s.as_bytes()),
            Value::Integer(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
                continue;
            }
            _ => {
                out.push(3);
                continue;
            }
        };
        out.push(tag);
        match u8::try_from(bytes.len()) {
            Ok(n) if n < 255 => out.push(n),
            _ => {
                out.push(255);
                let n = u16::try_from(bytes.len()).expect("under 64 KiB");
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        out.extend_from_slice(bytes);
    }
    out
}

/// Target `redis_request_entry`: a request's stream entry (its fields, as [`values`]) as the
/// proxy reads, validates and passes it on.
pub fn request_entry(data: &[u8]) {
    crate::proxy::fuzz::request_entry(values(data));
}

/// Target `redis_entry_id`: a stream entry id (`<ms>-<seq>`), which prints back as it parsed.
pub fn entry_id(data: &[u8]) {
    if let Some(id) = EntryId::parse(data) {
        assert_eq!(EntryId::parse(id.to_string().as_bytes()), Some(id));
    }
}

/// Target `redis_journal_record`: a durable journal's step and result records as read back
/// from Redis (anything may be there): a record read writes back to a record that reads the
/// same.
pub fn journal_record(data: &[u8]) {
    use crate::durable::record::{parse_result, parse_step, result_record, step_record};
    if let Some(step) = parse_step(data) {
        let again = step_record(step.at_ms, step.name, step.value);
        assert_eq!(parse_step(&again), Some(step));
    }
    if let Some((at, value)) = parse_result(data) {
        assert_eq!(parse_result(&result_record(at, value)), Some((at, value)));
    }
}

/// Target `redis_reply_frame`: a reply frame as the client reads it (its header, its
/// status, its route hint, its payload decoded by each codec into realistic answers). A
/// frame of a known status encodes back to the same bytes.
pub fn reply_frame(data: &[u8]) {
    let parts = split_reply(data);
    if let Some(p) = parts
        && let Some(status) = Status::from_byte(p.status)
    {
        let again = match p.holder.map(std::str::from_utf8) {
            None => Some(encode_reply(p.id, status, p.payload)),
            Some(Ok(holder)) => Some(encode_reply_with_holder(p.id, status, holder, p.payload)),
            Some(Err(_)) => None,
        };
        if let Some(again) = again {
            assert_eq!(again, data);
        }
    }
    let Ok((status, read)) = crate::client::reply_parts(data) else {
        return;
    };
    assert_eq!(Some(read), parts, "the ask reads the frame as it splits");
    let payload = read.payload;
    let codecs: &[&dyn Codec] = &[
        &Bincode,
        #[cfg(feature = "msgpack")]
        &conclib_codec::MsgPack,
    ];
    let timeout = Duration::from_secs(1);
    for &codec in codecs {
        let _ =
            crate::client::interpret::<Order, String>(codec, "urn", "m", timeout, status, payload);
        let _ =
            crate::client::interpret::<Tree, Answer>(codec, "urn", "m", timeout, status, payload);
        let _ = crate::client::interpret::<(), conclib_core::NoError>(
            codec, "urn", "m", timeout, status, payload,
        );
    }
}

/// Seeds of `target`'s corpus, from real values.
#[must_use]
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let s = |t: &'static str| Value::from_static_str(t);
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    match target {
        "redis_request_entry" => {
            let (order, ..) = conclib_codec::__fuzz::sample_values();
            let body = encode_value(&Bincode, &order).expect("encodes");
            // An ask as the client writes it (with its TTL as Redis keeps it: a string).
            let ask = vec![
                s("v"),
                s("1"),
                s("id"),
                s("42"),
                s("urn"),
                s("shop:cart:7"),
                s("msg"),
                s("shop.AddItem"),
                s("reply"),
                s("app:reply:c0ffee"),
                s("prio"),
                s("high"),
                s("tp"),
                Value::from(tp),
                s("codec"),
                s("bincode"),
                s("body"),
                Value::Bytes(body.into()),
                s("ttl"),
                s("30000"),
            ];
            // A tell, its body in MessagePack, and a field from a newer client. (An integer
            // would be refused: Redis hands every field back as a string.)
            let tell = vec![
                s("v"),
                s("1"),
                s("urn"),
                s("counter:1"),
                s("msg"),
                s("Add"),
                s("ttl"),
                s("5000"),
                s("codec"),
                s("msgpack"),
                s("body"),
                Value::Bytes(Bytes::from_static(b"\x81\xa1n\x05")),
                s("future"),
                s("field"),
            ];
            vec![encode_values(&ask), encode_values(&tell)]
        }
        "redis_entry_id" => [
            "1732700000000-0",
            "0-1",
            "18446744073709551615-18446744073709551615",
        ]
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect(),
        "redis_journal_record" => vec![
            b"1732700000000 charge\n\x00\x05rcpt1".to_vec(),
            b"1732700000000 @version email\n\x01".to_vec(),
            b"1732700000000\n\x02ok".to_vec(),
        ],
        "redis_reply_frame" => {
            let (order, tree, answer) = conclib_codec::__fuzz::sample_values();
            let mut out = vec![
                encode_reply(
                    1,
                    Status::Ok,
                    &encode_value(&Bincode, &order).expect("encodes"),
                ),
                encode_reply(
                    2,
                    Status::Ok,
                    &encode_value(&Bincode, &tree).expect("encodes"),
                ),
                encode_reply(
                    3,
                    Status::HandlerError,
                    &encode_value(&Bincode, &"out of stock").expect("encodes"),
                ),
                encode_reply(
                    6,
                    Status::Ok,
                    &encode_value(&Bincode, &answer).expect("encodes"),
                ),
                encode_reply(4, Status::Panicked, b"attempt to divide by zero"),
                encode_reply(u64::MAX, Status::NotOwner, b""),
                encode_reply_with_holder(
                    7,
                    Status::Ok,
                    "s2",
                    &encode_value(&Bincode, &answer).expect("encodes"),
                ),
            ];
            #[cfg(feature = "msgpack")]
            out.push(encode_reply(
                5,
                Status::Ok,
                &encode_value(&conclib_codec::MsgPack, &answer).expect("encodes"),
            ));
            out
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Each target, and its function.
    type Target = (&'static str, fn(&[u8]));

    const TARGETS: [Target; 4] = [
        ("redis_request_entry", super::request_entry),
        ("redis_entry_id", super::entry_id),
        ("redis_journal_record", super::journal_record),
        ("redis_reply_frame", super::reply_frame),
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

    /// The request seeds are valid requests (the target checks more than their parsing).
    #[test]
    fn the_request_seeds_are_valid() {
        for seed in super::seeds("redis_request_entry") {
            let env = crate::proxy::fuzz::parse(super::values(&seed));
            assert!(env.is_ok(), "{env:?}");
        }
    }

    /// Writes the seeds into `fuzz/corpus/<target>/seed-N` (`cargo test -p conclib-redis
    /// --all-features -- --ignored write_seeds`).
    #[test]
    #[ignore = "writes the seed corpus"]
    fn write_seeds() {
        for (target, _) in TARGETS {
            conclib_testkit::fuzz_corpus::write_seeds(&fuzz_dir(), target, &super::seeds(target));
        }
    }
}
