"""No input stops the Python actor host: random entries (fields and bodies of every kind)
are checked and decoded into a typed answer or a drop, never an exception; and a live host
fed such entries by the thousand still answers."""

from __future__ import annotations

import random
import uuid
from typing import Any

import msgpack  # type: ignore[import-untyped, unused-ignore]
import pytest

import conclib
from conclib._host_mailbox import decode
from conclib._host_request import Dropped, Placed, Refused, Request, check
from conclib._typed import Mismatch
from conclib.actor import handlers_of
from conclib.errors import CodecError
from conftest import PythonHost, RedisServer, run
from mirror_host import Mirror

FIELDS = [b"v", b"id", b"urn", b"msg", b"ttl", b"reply", b"codec", b"body", b"prio", b"tp", b"placed", b"moved", b"x"]


def random_value(rng: random.Random) -> Any:
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.randrange(-(2**63), 2**64)
    if kind == 2:
        return rng.random() * 1e9
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(8)))
    if kind == 4:
        return rng.randbytes(rng.randrange(8))
    if kind == 5:
        return [random_value(rng) for _ in range(rng.randrange(4))]
    if kind == 6:
        return {str(rng.randrange(5)): random_value(rng) for _ in range(rng.randrange(4))}
    if kind == 7:
        return True
    return {"NotAllowed": {"reason": "x"}}


def random_entry(rng: random.Random) -> dict[bytes, bytes]:
    fields: dict[bytes, bytes] = {}
    for name in rng.sample(FIELDS, rng.randrange(len(FIELDS))):
        choice = rng.randrange(4)
        if choice == 0:
            fields[name] = rng.randbytes(rng.randrange(12))
        elif choice == 1:
            fields[name] = str(rng.randrange(-5, 2**65)).encode()
        elif choice == 2:
            fields[name] = msgpack.packb(random_value(rng))
        else:
            fields[name] = {b"v": b"1", b"codec": b"msgpack", b"reply": b"ns:reply:abc", b"ttl": b"5000"}.get(name, b"test.Add")
    return fields


def test_random_entries_get_a_typed_outcome() -> None:
    rng = random.Random(7)
    handlers = handlers_of(Mirror)
    outcomes: set[str] = set()
    for _ in range(20_000):
        entry = f"{rng.randrange(2**45)}-{rng.randrange(9)}".encode() if rng.random() < 0.9 else rng.randbytes(6)
        got = check(entry, random_entry(rng), reply_prefix="ns:reply:", now_ms=1_700_000_000_000, max_payload=1024)
        outcomes.add(type(got).__name__)
        assert isinstance(got, (Request, Refused, Dropped, Placed))
        if isinstance(got, Request):
            spec = handlers.get(got.message) or handlers["test.Add"]
            try:
                decode(spec, got.body)
            except (Mismatch, CodecError):
                pass
    assert {"Request", "Refused", "Dropped"} <= outcomes


@pytest.mark.parametrize("seed", [1, 2])
def test_a_host_fed_garbage_still_answers(seed: int, redis_server: RedisServer, raw_redis: Any) -> None:
    ns = f"hostile-{uuid.uuid4().hex[:6]}"
    host = PythonHost(redis_server.url, ns, "--system", "target")
    try:
        rng = random.Random(seed)
        stream = f"{ns}:sys:target:req"
        for _ in range(2000):
            fields = random_entry(rng)
            if not fields:
                continue
            if b"reply" in fields:
                fields[b"reply"] = f"{ns}:reply:{uuid.uuid4().hex}".encode()
            raw_redis.xadd(stream, fields)

        async def main() -> int:
            async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
                answer: int = await client.ask("conf:counter", "test.Add", 1, timeout=10)
                return answer

        assert run(main()) >= 1
        assert host.proc.poll() is None
    finally:
        host.close()
