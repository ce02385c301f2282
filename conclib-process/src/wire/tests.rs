//! The frames: round trips, garbage refused, streams cut anywhere, frames over the limit.

use super::*;

#[test]
fn frames_round_trip_and_garbage_is_refused() {
    let frames = [
        Frame::Init {
            kind: "w",
            state: &[1, 2],
            resume: true,
        },
        Frame::Request {
            id: 7,
            high: true,
            trace: None,
            message: "Add",
            body: &[5],
        },
        Frame::Request {
            id: 8,
            high: false,
            trace: TraceContext::parse(TRACEPARENT),
            message: "Add",
            body: &[5],
        },
        Frame::Reply {
            id: 7,
            status: 1,
            payload: &[],
        },
        Frame::Ping(3),
        Frame::Pong(3),
        Frame::Stop,
        Frame::Ask {
            id: 1,
            trace: TraceContext::parse(TRACEPARENT),
            urn: "collector",
            message: "Add",
            body: &[3],
        },
        Frame::Answer {
            id: 1,
            status: 0,
            payload: &[3],
        },
        Frame::Cancel(4),
        Frame::Skipped(4),
        Frame::Ended {
            panicked: true,
            reason: "boom",
        },
    ];
    for frame in frames {
        let mut out = Vec::new();
        encode(&frame, &mut out);
        let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        assert_eq!(decode(&out[4..]), Some(frame));
    }
    assert_eq!(decode(&[]), None);
    assert_eq!(decode(&[9]), None);
    assert_eq!(decode(&[2, 1, 2]), None);
    assert_eq!(decode(&[4, 0, 0, 0, 0, 0, 0, 0, 0, 99]), None);
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A name is text: ASCII (checked a word at a time) and any other UTF-8 are taken,
/// bytes that are not UTF-8 break the frame, wherever they are in the name.
#[test]
fn a_name_is_any_utf8_and_nothing_else() {
    let request = |name: &[u8]| {
        let mut body = vec![2];
        body.extend_from_slice(&7u64.to_le_bytes());
        body.push(0);
        body.push(0);
        bytes(&mut body, name);
        bytes(&mut body, &[5]);
        body
    };
    for name in [
        "Add",
        "",
        "a.long.ascii.name.past.one.word",
        "Zähler.Add",
        "加",
    ] {
        let body = request(name.as_bytes());
        let Some(Frame::Request { message, .. }) = decode(&body) else {
            panic!("{name:?} refused");
        };
        assert_eq!(message, name);
    }
    for name in [
        &b"\xff"[..],
        b"a.long.ascii.name.then\xc3",
        b"\x80Add",
        b"Add\xed\xa0\x80",
    ] {
        assert_eq!(decode(&request(name)), None, "{name:?} taken");
    }
}

/// A request whose trace field holds `trace` (bytes as they came).
fn request_with_trace(trace: &[u8]) -> Vec<u8> {
    let mut body = vec![2];
    body.extend_from_slice(&7u64.to_le_bytes());
    body.push(0);
    body.push(u8::try_from(trace.len()).unwrap());
    body.extend_from_slice(trace);
    bytes(&mut body, b"Add");
    bytes(&mut body, &[5]);
    body
}

/// A trace field that is not a traceparent is ignored (the request stands); one that
/// claims more bytes than the frame has breaks the frame.
#[test]
fn a_malformed_trace_is_ignored() {
    let request = |trace: Option<TraceContext>| Frame::Request {
        id: 7,
        high: false,
        trace,
        message: "Add",
        body: &[5],
    };
    let good = request_with_trace(TRACEPARENT.as_bytes());
    assert_eq!(
        decode(&good),
        Some(request(TraceContext::parse(TRACEPARENT)))
    );
    for bad in [
        &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
        b"not a traceparent",
        &[0xff, 0xfe, 0x00],
    ] {
        assert_eq!(
            decode(&request_with_trace(bad)),
            Some(request(None)),
            "{bad:?}"
        );
    }
    let mut cut = request_with_trace(TRACEPARENT.as_bytes());
    cut[10] = 200;
    assert_eq!(decode(&cut), None);
}

fn read_all(data: &[u8], step: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut frames = FrameReader::new(Trickle { data, step });
        let mut read = Vec::new();
        while let Some(frame) = frames.next().await? {
            read.push(frame.to_vec());
        }
        Ok(read)
    })
}

#[test]
fn frames_are_read_whole_however_the_stream_cuts_them() {
    let big = vec![7u8; 3 * READ_BUFFER + 5];
    let bodies: [&[u8]; 5] = [b"a", &[], &big, b"after the big one", &big[..10]];
    let mut stream = Vec::new();
    for body in bodies {
        encode(
            &Frame::Reply {
                id: 1,
                status: 0,
                payload: body,
            },
            &mut stream,
        );
    }
    let expected: Vec<Vec<u8>> = bodies
        .iter()
        .map(|body| {
            let mut frame = Vec::new();
            encode(
                &Frame::Reply {
                    id: 1,
                    status: 0,
                    payload: body,
                },
                &mut frame,
            );
            frame[4..].to_vec()
        })
        .collect();
    for step in [1, 3, 4, 5, 4096, usize::MAX] {
        assert!(read_all(&stream, step).unwrap() == expected, "step {step}");
    }
}

#[test]
fn a_stream_cut_inside_a_frame_or_a_frame_over_the_limit_is_an_error() {
    let mut stream = Vec::new();
    encode(&Frame::Ping(1), &mut stream);
    let cut = &stream[..stream.len() - 1];
    let err = read_all(cut, usize::MAX).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let err = read_all(&stream[..2], usize::MAX).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let too_big = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
    let err = read_all(&too_big, usize::MAX).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(read_all(&[], 1).unwrap(), Vec::<Vec<u8>>::new());
}
