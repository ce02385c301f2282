"""Durable reminders: register, cancel and list the reminders of a URN from
Python, e.g. from a web request (``await client.register_reminder("user:42", "renew",
after=3600, every=86400, payload={"plan": "pro"})``). The Rust systems' reminder pollers
deliver them to the actor as a ``conclib.ReminderTick``; a payload registered here is
encoded with MessagePack (the tick's ``payload()`` decodes it on the Rust side).

Reminders live in Redis in 16 shards by a hash of the URN (FNV-1a, as the Rust crate's
``reminders/keys.rs``); registration, cancellation and listing are one script each, the same
texts the Rust crate sends (``conclib-redis/tests/reminders`` checks they are equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._contracts import NOTHING, CommandClient
from .codec import encode
from .errors import ConfigError, RedisError, TooLarge
from .protocol import valid_urn

__all__ = ["MAX_NAME_LEN", "SHARDS", "Registration", "ReminderInfo", "cancel", "list_reminders", "register", "shard_of"]

SHARDS = 16
"""How many shards a namespace's reminders are spread over (as the Rust crate's)."""

MAX_NAME_LEN = 200
"""The longest reminder name, in bytes."""

# The scripts, byte for byte as conclib-redis/src/reminders/scripts.rs.
REGISTER = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due
if ARGV[4] ~= '' then due = now + tonumber(ARGV[4]) else due = tonumber(ARGV[3]) end
local d = string.format('%.0f', due)
local gen = tonumber(t[1]) * 1000000 + tonumber(t[2])
local before = tonumber(redis.call('HMGET', KEYS[2], 'gen')[1] or '')
if before and before >= gen then gen = before + 1 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'urn', ARGV[1], 'name', ARGV[2], 'due', d, 'period', ARGV[5],
  'payload', ARGV[6], 'codec', ARGV[7], 'claim', '', 'claims', '0',
  'gen', string.format('%.0f', gen))
if ARGV[9] and ARGV[9] ~= '' then redis.call('HSET', KEYS[2], 'each', ARGV[9]) end
redis.call('ZADD', KEYS[1], d, ARGV[8])
redis.call('SADD', KEYS[3], ARGV[2])
return due
"""

CANCEL = r"""
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
return redis.call('DEL', KEYS[2])
"""

LIST = r"""
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local r = redis.call('HMGET', ARGV[1] .. ARGV[2] .. '\n' .. name,
    'due', 'period', 'payload', 'codec', 'claim')
  if r[1] then
    local claimed = 0
    if r[5] and r[5] ~= '' then claimed = 1 end
    table.insert(out, {name, r[1], r[2], r[3], r[4], claimed})
  end
end
return out
"""


def shard_of(urn: str) -> int:
    """The URN's shard: FNV-1a (32 bits) of its UTF-8 bytes, modulo ``SHARDS``."""
    h = 0x811C9DC5
    for b in urn.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h % SHARDS


def shard_prefix(namespace: str, shard: int) -> str:
    """The prefix of shard ``shard``'s keys (its hash tag ``{ns:shard}``), as ``keys.rs``."""
    return f"{namespace}:rem:{{{namespace}:{shard}}}"


class _ShardKeys:
    def __init__(self, namespace: str, urn: str) -> None:
        self.prefix = shard_prefix(namespace, shard_of(urn))

    def due(self) -> str:
        return f"{self.prefix}:due"

    def record_prefix(self) -> str:
        return f"{self.prefix}:r:"

    def record(self, urn: str, name: str) -> str:
        return f"{self.prefix}:r:{urn}\n{name}"

    def index(self, urn: str) -> str:
        return f"{self.prefix}:u:{urn}"


@dataclass(frozen=True)
class ReminderInfo:
    """A registered reminder, as :func:`list_reminders` reads it."""

    name: str
    due_ms: int
    """When its next tick is due, ms since the Unix epoch (Redis's clock)."""
    period_ms: int
    """Its period in ms (0: once)."""
    payload: bytes
    """Its payload's bytes (empty: none)."""
    codec: str
    """The payload's codec (``msgpack`` from Python, ``bincode`` from Rust)."""
    claimed: bool
    """Whether a system is delivering it now."""


def check_urn_and_name(urn: str, name: str) -> None:
    """``ConfigError`` unless ``urn`` is a URN and ``name`` a reminder name."""
    check_urn(urn)
    _check_name(name)


def check_urn(urn: str) -> None:
    """``ConfigError`` unless ``urn`` is a URN."""
    if not valid_urn(urn):
        raise ConfigError(f"invalid URN {urn!r}")


def _check_name(name: str) -> None:
    size = len(name.encode("utf-8"))
    if not 1 <= size <= MAX_NAME_LEN:
        raise ConfigError(f"a reminder name is 1 to {MAX_NAME_LEN} bytes, not {size}")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name):
        raise ConfigError(f"a reminder name has no control characters: {name!r}")


async def _eval(client: CommandClient, script: str, keys: list[str], args: list[Any]) -> Any:
    return await client._command("EVAL", script, len(keys), *keys, *args)


async def _eval_write(client: CommandClient, script: str, keys: list[str], args: list[Any]) -> Any:
    """A registration or cancellation: it waits for the replicas the client's durability
    asks for, as the Rust crate's."""
    return await client._write("EVAL", script, len(keys), *keys, *args)


_NOTHING: Any = NOTHING


@dataclass(frozen=True)
class Registration:
    """A reminder's registration, checked and encoded (as :func:`register` sends it; the
    fakes of :mod:`conclib.testing` keep it)."""

    urn: str
    name: str
    at_ms: int | None
    after_ms: int | None
    period_ms: int
    payload: bytes
    codec: str

    @staticmethod
    def of(
        urn: str,
        name: str,
        *,
        after: float | None,
        at: float | None,
        every: float | None,
        payload: Any,
        max_payload: int,
    ) -> Registration:
        """Checks the arguments of :func:`register` (``ConfigError``, ``TooLarge``,
        ``CodecError``); ``payload`` may be ``_NOTHING`` (none)."""
        check_urn(urn)
        _check_name(name)
        if (after is None) == (at is None):
            raise ConfigError("give exactly one of after= and at=")
        if after is not None and not after >= 0:
            raise ConfigError(f"after must be 0 or more seconds, got {after!r}")
        if at is not None and not at >= 0:
            raise ConfigError(f"at must be a time after the Unix epoch, got {at!r}")
        period = 0
        if every is not None:
            period = int(round(every * 1000))
            if period < 1:
                raise ConfigError(f"a period is at least 1 ms, got {every!r}")
        data, codec = b"", ""
        if payload is not _NOTHING:
            data, codec = encode(payload), "msgpack"
            if len(data) > max_payload:
                raise TooLarge(f"reminder payload of {len(data)} bytes, more than max_payload ({max_payload})")
        return Registration(
            urn, name, None if at is None else int(at * 1000), None if after is None else int(after * 1000),
            period, data, codec,
        )


async def register(
    client: CommandClient,
    urn: str,
    name: str,
    *,
    after: float | None = None,
    at: float | None = None,
    every: float | None = None,
    payload: Any = _NOTHING,
) -> int:
    """Registers (or replaces) ``urn``'s reminder ``name``, first due ``after`` seconds from
    now (Redis's clock) or ``at`` (seconds since the Unix epoch), then every ``every`` seconds
    if given; ``payload`` (any value the client encodes) travels with each tick. Returns when
    it is first due (ms since the Unix epoch). One round trip.

    Raises ``ConfigError`` for an invalid URN, name or time, ``TooLarge``/``CodecError`` for
    the payload, ``Timeout``/``Unavailable`` when Redis does not answer."""
    r = Registration.of(urn, name, after=after, at=at, every=every, payload=payload, max_payload=client.max_payload)
    keys = _ShardKeys(client.namespace, urn)
    due = await _eval_write(
        client,
        REGISTER,
        [keys.due(), keys.record(urn, name), keys.index(urn)],
        [
            urn,
            name,
            "" if r.at_ms is None else str(r.at_ms),
            "" if r.after_ms is None else str(r.after_ms),
            str(r.period_ms),
            r.payload,
            r.codec,
            f"{urn}\n{name}",
        ],
    )
    if not isinstance(due, int):
        raise RedisError(f"unexpected answer {due!r}")
    return due


async def cancel(client: CommandClient, urn: str, name: str) -> bool:
    """Cancels ``urn``'s reminder ``name``; whether it was registered."""
    check_urn_and_name(urn, name)
    keys = _ShardKeys(client.namespace, urn)
    removed = await _eval_write(
        client, CANCEL, [keys.due(), keys.record(urn, name), keys.index(urn)], [f"{urn}\n{name}", name]
    )
    return bool(removed == 1)


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")


def _int(v: Any) -> int:
    try:
        return int(float(_text(v)))
    except ValueError:
        return 0


async def list_reminders(client: CommandClient, urn: str) -> list[ReminderInfo]:
    """``urn``'s reminders, sorted by name."""
    check_urn(urn)
    keys = _ShardKeys(client.namespace, urn)
    rows = await _eval(client, LIST, [keys.index(urn)], [keys.record_prefix(), urn])
    out = [
        ReminderInfo(
            name=_text(r[0]),
            due_ms=_int(r[1]),
            period_ms=_int(r[2]),
            payload=r[3] if isinstance(r[3], bytes) else b"",
            codec=_text(r[4]),
            claimed=r[5] == 1,
        )
        for r in rows or []
        if isinstance(r, list) and len(r) == 6
    ]
    out.sort(key=lambda i: i.name)
    return out
