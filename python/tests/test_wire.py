"""The client's side of the wire, checked against a fake system played by the test: the
request entries it writes, trace context, re-routing after ``NotOwner``, and hostile or
garbage reply frames (typed errors, never a hang)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgpack
import pytest

import conclib
from conclib.protocol import encode_reply
from conclib.trace import valid_traceparent
from conftest import run


class FakeSystem:
    """A system id with a request stream and URNs, answered by hand (no proxy)."""

    def __init__(self, raw: Any, namespace: str, system: str, urns: list[str]) -> None:
        self.raw = raw
        self.ns = namespace
        self.system = system
        self.key = f"{namespace}:sys:{system}:req"
        raw.xgroup_create(self.key, "fake", id="$", mkstream=True)
        for urn in urns:
            raw.set(f"{namespace}:urn:{urn}", system, px=60_000)

    def next_request(self, timeout: float = 5) -> dict[str, bytes]:
        answer = self.raw.xreadgroup("fake", "fake", {self.key: ">"}, count=1, block=int(timeout * 1000))
        assert answer, f"no request reached {self.key} within {timeout} s"
        [(_, [(_, fields)])] = answer
        return {k.decode(): v for k, v in fields.items()}

    def reply(self, request: dict[str, bytes], status: int, payload: bytes) -> None:
        self.raw.rpush(request["reply"], encode_reply(int(request["id"]), status, payload))


def namespace_() -> str:
    return f"wire-{uuid.uuid4().hex[:8]}"


def test_request_entries_follow_the_protocol(raw_redis: Any, redis_server: Any) -> None:
    ns = namespace_()
    fake = FakeSystem(raw_redis, ns, "fake", ["svc"])

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            ask = asyncio.create_task(client.ask("svc", "Add", {"n": 5}, timeout=3, priority="high"))
            request = await asyncio.to_thread(fake.next_request)
            assert set(request) == {"v", "id", "urn", "msg", "ttl", "reply", "rt", "prio", "tp", "codec", "body"}
            assert request["v"] == b"1"
            assert request["rt"] == b"1"  # it reads route hints
            assert request["urn"] == b"svc" and request["msg"] == b"Add"
            assert request["codec"] == b"msgpack" and request["prio"] == b"high"
            assert msgpack.unpackb(request["body"]) == {"n": 5}
            assert 2000 < int(request["ttl"]) <= 3000
            assert request["reply"].decode() == client.reply_key
            assert request["reply"].startswith(f"{ns}:reply:".encode())
            assert int(request["id"]) > 0
            tp = request["tp"].decode()
            assert valid_traceparent(tp)
            fake.reply(request, 0, msgpack.packb(6))
            assert await ask == 6

            # A tell: no reply field, id 0, the tell TTL; returns once Redis holds it.
            await client.tell("svc", "Record", 7)
            told = await asyncio.to_thread(fake.next_request)
            assert "reply" not in told and "prio" not in told
            assert told["id"] == b"0" and told["ttl"] == b"60000"
            assert msgpack.unpackb(told["body"]) == 7

    run(main())


def test_traceparent_continues_the_current_opentelemetry_span(raw_redis: Any, redis_server: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    ns = namespace_()
    fake = FakeSystem(raw_redis, ns, "fake", ["svc"])
    trace_id, span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    span = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1)))

    async def main() -> list[str]:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            with trace.use_span(span):
                await client.tell("svc", "Record", 1)
            await client.tell("svc", "Record", 2)
            explicit = "00-11111111111111111111111111111111-2222222222222222-00"
            await client.tell("svc", "Record", 3, traceparent=explicit)
            return [(await asyncio.to_thread(fake.next_request))["tp"].decode() for _ in range(3)]

    inside, outside, explicit = run(main())
    assert inside == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert outside.split("-")[1] != "0af7651916cd43dd8448eb211c80319c"
    assert explicit == "00-11111111111111111111111111111111-2222222222222222-00"


def test_new_traceparents_are_valid_distinct_and_a_forked_child_draws_its_own() -> None:
    """New traces' ids are drawn ahead in bulk (``trace._draw``): each valid and different,
    and a forked child repeats none of the ones its parent drew (it forgets them)."""
    import os

    from conclib.trace import current_traceparent_bytes, new_traceparent

    drawn = [new_traceparent() for _ in range(1000)] + [current_traceparent_bytes().decode() for _ in range(1000)]
    assert all(valid_traceparent(tp) for tp in drawn)
    assert len(set(drawn)) == len(drawn)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next 10, to the parent
        try:
            os.write(write, " ".join(new_traceparent() for _ in range(10)).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as f:
            child = f.read().decode().split()
    finally:
        os.waitpid(pid, 0)
    parent = [new_traceparent() for _ in range(10)]
    assert len(child) == 10 and all(valid_traceparent(tp) for tp in child)
    assert not set(child) & set(parent), "the child repeated its parent's traceparents"


def test_not_owner_resolves_again_and_resends_once(raw_redis: Any, redis_server: Any) -> None:
    ns = namespace_()
    old = FakeSystem(raw_redis, ns, "old", ["svc"])
    new = FakeSystem(raw_redis, ns, "new", [])

    async def main() -> Any:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
            first = await asyncio.to_thread(old.next_request)
            # The URN moved to "new" meanwhile: the old owner answers NotOwner.
            raw_redis.set(f"{ns}:urn:svc", "new", px=60_000)
            old.reply(first, 10, b"URN svc is served by system new")
            second = await asyncio.to_thread(new.next_request)
            assert second["id"] != first["id"]
            new.reply(second, 0, msgpack.packb("hi"))
            return await ask

    assert run(main()) == "hi"


def test_hostile_reply_frames_give_typed_errors_and_no_hang(raw_redis: Any, redis_server: Any) -> None:
    ns = namespace_()
    fake = FakeSystem(raw_redis, ns, "fake", ["svc"])

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            # Garbage pushed to the reply list: short frames, unknown ids, non-frames. The
            # reader drops them and goes on.
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
            request = await asyncio.to_thread(fake.next_request)
            reply_key = request["reply"]
            raw_redis.rpush(reply_key, b"", b"\x01", b"short", encode_reply(999_999, 0, b"\xc0"), b"x" * 100)
            # An unknown status for the waiting ask: ProtocolError.
            fake.reply(request, 99, b"")
            with pytest.raises(conclib.ProtocolError):
                await ask
            # A route hint's flag (0x80) with a hint cut short, or over an unknown status:
            # ProtocolError, not a wait for the deadline.
            for status, rest in [(0x80, b"\x05ab"), (0x80, b""), (0x80 | 99, b"\x01s")]:
                ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
                request = await asyncio.to_thread(fake.next_request)
                fake.reply(request, status, rest)
                started = time.monotonic()
                with pytest.raises(conclib.ProtocolError):
                    await ask
                assert time.monotonic() - started < 4
            # A well-formed hint: the answer as usual.
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
            request = await asyncio.to_thread(fake.next_request)
            fake.reply(request, 0x80, b"\x04fake" + msgpack.packb("hi"))
            assert await ask == "hi"

            # An Ok frame whose payload is not MessagePack: CodecError.
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
            request = await asyncio.to_thread(fake.next_request)
            fake.reply(request, 0, b"\xc1")
            with pytest.raises(conclib.CodecError):
                await ask
            # Trailing bytes are refused too.
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
            request = await asyncio.to_thread(fake.next_request)
            fake.reply(request, 0, b"\x01\x02")
            with pytest.raises(conclib.CodecError):
                await ask
            # A handler error that is not MessagePack: CodecError.
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
            request = await asyncio.to_thread(fake.next_request)
            fake.reply(request, 1, b"\xc1")
            with pytest.raises(conclib.CodecError):
                await ask

            # Someone replaces the reply list with a string: the waiting ask fails at once
            # (its answer can never come), the client takes the key back and goes on.
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=30))
            request = await asyncio.to_thread(fake.next_request)
            started = time.monotonic()
            raw_redis.set(reply_key, "not a list")
            with pytest.raises(conclib.ProtocolError):
                await ask
            assert time.monotonic() - started < 5

            # Every other status maps to its error.
            expected = {
                2: conclib.UnknownUrn, 3: conclib.NotExposed, 4: conclib.Panicked, 5: conclib.Timeout,
                6: conclib.ActorStopped, 7: conclib.NoResponse, 8: conclib.BadRequest, 9: conclib.CodecError,
                11: conclib.TooLarge, 12: conclib.MailboxFull,
            }
            for status, error in expected.items():
                ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
                request = await asyncio.to_thread(fake.next_request)
                fake.reply(request, status, b"detail")
                with pytest.raises(error):
                    await ask
            # And the client still works.
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
            request = await asyncio.to_thread(fake.next_request)
            fake.reply(request, 0, msgpack.packb("still here"))
            assert await ask == "still here"

    run(main())


def test_a_reply_nested_past_any_depth_is_a_codec_error(
    raw_redis: Any, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # msgpack-python refuses more than 1024 nested levels (StackError, a ValueError) in its C
    # unpacker and its pure-Python fallback alike, rather than recursing: a reply nested
    # 100,000 deep is a CodecError, not a RecursionError or a crash (issue #62's reply side).
    from msgpack import fallback

    from conclib import codec

    deep_arrays = b"\x91" * 100_000 + b"\x01"
    deep_maps = b"\x81\xa1a" * 100_000 + b"\x01"
    for unpackb in (msgpack.unpackb, fallback.unpackb):
        monkeypatch.setattr(codec.msgpack, "unpackb", unpackb)
        for data in (deep_arrays, deep_maps):
            with pytest.raises(conclib.CodecError):
                codec.decode(data)
        nested = codec.decode(b"\x91" * 64 + b"\x01")
        for _ in range(64):
            nested = nested[0]
        assert nested == 1
    monkeypatch.undo()

    ns = namespace_()
    fake = FakeSystem(raw_redis, ns, "fake", ["svc"])

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            for payload, status in ((deep_arrays, 0), (deep_maps, 1)):
                ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
                request = await asyncio.to_thread(fake.next_request)
                fake.reply(request, status, payload)
                with pytest.raises(conclib.CodecError):
                    await ask
            # And the client still works.
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
            request = await asyncio.to_thread(fake.next_request)
            fake.reply(request, 0, msgpack.packb("still here"))
            assert await ask == "still here"

    run(main())


def test_an_unanswered_ask_times_out_and_a_late_reply_is_dropped(raw_redis: Any, redis_server: Any) -> None:
    ns = namespace_()
    fake = FakeSystem(raw_redis, ns, "fake", ["svc"])

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            started = time.monotonic()
            with pytest.raises(conclib.Timeout) as e:
                await client.ask("svc", "Hello", timeout=0.3)
            took = time.monotonic() - started
            assert 0.29 <= took < 1.5, took
            assert isinstance(e.value, TimeoutError)
            late = await asyncio.to_thread(fake.next_request)
            fake.reply(late, 0, msgpack.packb("late"))
            # The late reply is discarded; the next ask gets its own answer.
            ask = asyncio.create_task(client.ask("svc", "Hello", timeout=5))
            request = await asyncio.to_thread(fake.next_request)
            fake.reply(request, 0, msgpack.packb("mine"))
            assert await ask == "mine"

    run(main())


def test_a_stream_gone_means_unknown_urn(raw_redis: Any, redis_server: Any) -> None:
    ns = namespace_()
    raw_redis.set(f"{ns}:urn:svc", "vanished", px=60_000)

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            with pytest.raises(conclib.UnknownUrn):
                await client.ask("svc", "Hello", timeout=2)
            with pytest.raises(conclib.UnknownUrn):
                await client.tell("svc", "Hello")

    run(main())


def test_asks_made_together_leave_in_one_command_and_each_gets_its_answer(
    raw_redis: Any, redis_server: Any
) -> None:
    """Requests to one stream queued in one turn of the event loop are appended by one
    script call (the Rust client's): the entries are the protocol's, each ask gets its own
    answer; to a stream that is gone, every ask of the batch ends ``UnknownUrn``."""
    ns = namespace_()
    fake = FakeSystem(raw_redis, ns, "fake", ["svc"])
    raw_redis.set(f"{ns}:urn:gone", "vanished", px=60_000)
    n = 40  # more than one command takes (32)

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            await client.resolve("svc")
            await client.resolve("gone")
            before = int(raw_redis.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))
            asks = [asyncio.create_task(client.ask("svc", "Add", {"n": i}, timeout=5)) for i in range(n)]
            tell = asyncio.create_task(client.tell("svc", "Record", 7))
            requests = []
            while len(requests) < n + 1:
                requests.append(await asyncio.to_thread(fake.next_request))
            await tell
            evals = int(raw_redis.info("commandstats")["cmdstat_eval"]["calls"]) - before
            assert evals == 2, evals  # 41 requests: 32, then 9
            for request in requests:
                assert set(request) >= {"v", "id", "urn", "msg", "ttl", "tp", "codec", "body"}
                if request["id"] != b"0":
                    fake.reply(request, 0, msgpack.packb(msgpack.unpackb(request["body"])["n"] * 2))
            assert [await a for a in asks] == [2 * i for i in range(n)]
            assert requests[-1]["id"] == b"0" and msgpack.unpackb(requests[-1]["body"]) == 7  # in order

            gone = [asyncio.create_task(client.ask("gone", "Hello", timeout=2)) for _ in range(5)]
            for a in gone:
                with pytest.raises(conclib.UnknownUrn):
                    await a

    run(main())
