"""Durable executions of Rust handlers, from Python: read an execution's result by its
idempotency key, wait for it, resolve a promise it awaits, list a URN's executions — what
the Rust crate's ``conclib_redis::durable::Executions`` does, with the same keys and script.

A durable execution is a handler of an activated URN that runs ``Journal::run(key, ...)``
(the Rust crate's docs, "Durable handlers"): it is started by an ordinary ask or tell of the
message whose handler runs it, the idempotency key in its payload. The same key again runs
nothing and answers the first result. A caller that only started it (a tell) reads the
result later::

    await client.tell("order:7", "Place", {"key": "order-7", "cents": 1200})   # started
    await client.resolve_promise("order:7", "order-7", "approved", True)       # a signal
    receipt = await client.wait_execution("order:7", "order-7", timeout=10)    # its result

The journal lives in the URN's state hash, ``{ns}:state:{urn}``: ``jr:<key>`` holds a
finished execution's result (``"<ms since the Unix epoch>\\n"`` then the result as the
proxy's codec encoded it: MessagePack for a proxy serving Python), ``jn:<key>`` how many
steps it recorded, ``js:<n>:<key>`` its steps while it runs, and ``jp:<key>\\n<name>`` a
promise resolved by a caller (``RESOLVE``, once: the first value stays).
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._contracts import CommandClient
from .codec import decode, encode
from .errors import CodecError, ConfigError, RedisError, Timeout, TooLarge
from .protocol import Keys, text, valid_urn
from .reminders import MAX_NAME_LEN as MAX_REMINDER_NAME_LEN
from .reminders import REGISTER, _eval_write, _ShardKeys

__all__ = [
    "MAX_EXECUTIONS_LISTED",
    "MAX_NAME_LEN",
    "ExecutionInfo",
    "Finished",
    "StepInfo",
    "check_name",
    "list_executions",
    "resolve_promise",
    "result",
    "wait_result",
]

MAX_NAME_LEN = 256
"""The longest execution key or promise name, in bytes (as the Rust crate's)."""
MAX_EXECUTIONS_LISTED = 10_000
"""The most executions one listing returns (as the Rust crate's)."""

# Byte for byte as conclib-redis/src/durable/scripts.rs's RESOLVE (tests/test_durable.py
# checks they are equal).
RESOLVE = r"""if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'journaled', '1')
redis.call('PERSIST', KEYS[1])
return 1"""


@dataclass(frozen=True)
class Finished:
    """A finished execution, as :func:`result` reads it."""

    value: Any
    """Its result, decoded."""
    finished_at_ms: int
    """When it was recorded, ms since the Unix epoch (the recording host's clock)."""


@dataclass(frozen=True)
class StepInfo:
    """One recorded step of a running execution."""

    number: int
    """Its number in the execution (1-based)."""
    name: str
    """Its name (a version point's is ``@version <name>``, a promise's ``@promise <name>``,
    a durable sleep's ``@sleep <name>``)."""
    at_ms: int
    """When it was recorded, ms since the Unix epoch."""
    value: bytes
    """Its value, as the proxy's codec encoded it."""


@dataclass(frozen=True)
class ExecutionInfo:
    """One execution in a URN's journal, as :func:`list_executions` reads it."""

    key: str
    finished_at_ms: int | None
    """When its result was recorded, if it finished."""
    steps_recorded: int
    """How many steps (and version points) were recorded."""
    steps: list[StepInfo] = field(default_factory=list)
    """Its recorded steps in order, while it runs (deleted once it finished)."""


def check_name(what: str, name: str) -> None:
    """``ConfigError`` unless ``name`` can name an execution or a promise: 1 to
    ``MAX_NAME_LEN`` bytes, no newline (the records' separator)."""
    if not isinstance(name, str):
        raise TypeError(f"{what} is a str, got {type(name).__name__}")
    size = len(name.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_NAME_LEN or "\n" in name:
        raise ConfigError(f"{what} is 1 to {MAX_NAME_LEN} bytes without a newline, got {name!r}")


def _check_urn(urn: str) -> None:
    if not valid_urn(urn):
        raise ConfigError(f"invalid URN {urn!r}")


def parse_result(record: bytes) -> Finished:
    """A result record (``"<ms>\\n"`` then the encoded result), decoded; ``CodecError`` for
    bytes the Rust crate did not write, or a result MessagePack cannot decode (a proxy of
    another codec)."""
    at, sep, body = record.partition(b"\n")
    if not sep or not at.isdigit():
        raise CodecError("not a durable execution's result record")
    try:
        return Finished(decode(body), int(at))
    except CodecError as e:
        raise CodecError(f"the execution's result: {e}") from None


def encode_promise(value: Any, max_payload: int) -> bytes:
    """A promise's value as it is stored (MessagePack); ``TooLarge`` past ``max_payload``."""
    body = encode(value)
    if len(body) > max_payload:
        raise TooLarge(f"the promise's value is {len(body)} bytes, the limit is {max_payload}")
    return body


async def result(client: CommandClient, urn: str, key: str) -> Finished | None:
    """Execution ``key`` of ``urn``: :class:`Finished` if it finished, else ``None`` (not
    begun, or running). One round trip (``HGET``)."""
    _check_urn(urn)
    check_name("an execution key", key)
    record = await client._command("HGET", Keys(client.namespace).state(urn), f"jr:{key}")
    if record is None:
        return None
    if not isinstance(record, bytes):
        raise RedisError(f"unexpected answer {record!r}")
    return parse_result(record)


async def wait_result(look: Callable[[], Awaitable[Finished | None]], timeout: float) -> Any:
    """Looks (``look()``: :func:`result`) until the execution finished, at most ``timeout``
    seconds; its result. ``Timeout`` if it did not finish in time. Nothing tells a caller
    that a result was recorded: it looks again, less often the longer it waits (1 ms
    doubling to 50 ms), as the Rust client does."""
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        left = deadline - time.monotonic()
        try:
            found = await asyncio.wait_for(look(), max(left, 0.001))
        except asyncio.TimeoutError:
            raise Timeout(timeout, "waiting for the execution's result") from None
        if found is not None:
            return found.value
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(timeout, "waiting for the execution's result")
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)


WAKE_PREFIX = "durable:"


def wake_name(key: str) -> str:
    """The name of execution ``key``'s wake reminder, as the Rust crate names it
    (``conclib-redis/src/durable/wake.rs``): ``durable:<key>``, or ``durable:#<FNV-1a 64 of
    the key>`` for a key a reminder name cannot hold."""
    if len(WAKE_PREFIX) + len(key.encode()) <= MAX_REMINDER_NAME_LEN and not any(
        unicodedata.category(c) == "Cc" for c in key
    ):
        return WAKE_PREFIX + key
    h = 0xCBF29CE484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{WAKE_PREFIX}#{h:016x}"


async def resolve_promise(client: CommandClient, urn: str, key: str, name: str, value: Any) -> bool:
    """Resolves promise ``name`` of execution ``key`` of ``urn`` with ``value``
    (MessagePack), for the execution to take now or when it gets there; ``False`` if it was
    resolved already (the first value stays). Two round trips, and one more when the
    execution waited for a promise with a wake message (the Rust ``Execution::wake_with``,
    field ``jw:<key>``): its wake reminder is registered due at once, which runs it again,
    as the Rust ``Executions::resolve`` does. A call that failed is retried as it is:
    resolved already, it still wakes the execution."""
    _check_urn(urn)
    check_name("an execution key", key)
    check_name("a promise name", name)
    body = encode_promise(value, client.max_payload)
    state = Keys(client.namespace).state(urn)
    answer = await client._command("EVAL", RESOLVE, 1, state, f"jp:{key}\n{name}", body)
    waiting = await client._command("HGET", state, f"jw:{key}")
    if isinstance(waiting, bytes):
        wake = wake_name(key)
        keys = _ShardKeys(client.namespace, urn)
        await _eval_write(
            client,
            REGISTER,
            [keys.due(), keys.record(urn, wake), keys.index(urn)],
            [urn, wake, "", "0", "0", waiting, "bincode", f"{urn}\n{wake}"],
        )
    return bool(answer == 1)


def take_field(found: dict[str, ExecutionInfo], name: str, value: bytes) -> None:
    """One journal field into the listing (fields the Rust crate did not write are
    skipped)."""
    kind, _, rest = name.partition(":")
    if kind == "jn" and rest:
        info = found.setdefault(rest, ExecutionInfo(rest, None, 0))
        steps = int(value) if value.isdigit() else 0
        found[rest] = ExecutionInfo(rest, info.finished_at_ms, steps, info.steps)
    elif kind == "jr" and rest:
        at, sep, _ = value.partition(b"\n")
        info = found.setdefault(rest, ExecutionInfo(rest, None, 0))
        finished = int(at) if sep and at.isdigit() else None
        found[rest] = ExecutionInfo(rest, finished, info.steps_recorded, info.steps)
    elif kind == "js":
        number, _, key = rest.partition(":")
        header, sep, body = value.partition(b"\n")
        when, _, step = text(header).partition(" ")
        if number.isdigit() and key and sep and when.isdigit():
            found.setdefault(key, ExecutionInfo(key, None, 0)).steps.append(
                StepInfo(int(number), step, int(when), body)
            )


async def list_executions(client: CommandClient, urn: str) -> list[ExecutionInfo]:
    """The executions ``urn``'s journal holds, by key, with their steps (at most
    ``MAX_EXECUTIONS_LISTED``)."""
    _check_urn(urn)
    state = Keys(client.namespace).state(urn)
    found: dict[str, ExecutionInfo] = {}
    cursor: Any = 0
    while True:
        answer = await client._command("HSCAN", state, cursor, "MATCH", "j[nrs]:*", "COUNT", 1000)
        if not isinstance(answer, (list, tuple)) or len(answer) != 2:
            raise RedisError(f"unexpected HSCAN answer {answer!r}")
        cursor, fields = answer
        items: list[tuple[Any, Any]] = (
            list(fields.items()) if isinstance(fields, dict) else list(zip(fields[::2], fields[1::2]))
        )
        for name, value in items:
            if isinstance(value, bytes):
                take_field(found, text(name), value)
        if text(cursor) == "0" or len(found) >= MAX_EXECUTIONS_LISTED:
            break
    out = [found[k] for k in sorted(found)][:MAX_EXECUTIONS_LISTED]
    for info in out:
        info.steps.sort(key=lambda s: s.number)
    return out
