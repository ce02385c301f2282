"""A request's exchange on a session once it is encoded: appended to the serving system's
stream, and for an ask its reply awaited by request id, with what may happen meanwhile (the
stream gone, the URN moved, the connection lost, the deadline). An ask goes through the raw
connections on one server (``exchange_raw``), else through redis-py (``exchange_redispy``:
Sentinel, Cluster); a tell waits for its replicas at a durability asking for them
(``send_tell``). Separate from ``AsyncClient`` (``client``): the client owns the session,
checks and encodes what it is given, and runs an ask's hot path itself (a URN it has a
route for, answered at once); what is left to judge or to retry comes here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ._contracts import Route
from ._raw_path import EXPIRED, GONE, RawPath
from ._redispy_path import RedisPyPath
from ._session import Session, until
from .durability import Durability
from .errors import ConclibError, ProtocolError, Unavailable
from .protocol import HOLDER_FLAG, REPLY_HEADER_LEN, Status, request_fields, split_reply, ttl_ms

__all__ = ["exchange", "exchange_raw", "exchange_redispy", "send_tell"]


async def exchange(
    session: Session, urn: str, name: str, body: bytes, timeout: float, high: bool, tp: bytes, deadline: float
) -> tuple[int, bytes]:
    """An ask off the client's hot path, on a connected session: its URN resolved unless a
    route to it is cached, then exchanged on the session's path."""
    disconnects = session.disconnects
    route = session.routes.cache.get(urn)
    if route is None or route.until <= time.monotonic():
        try:
            route = await session.routes.resolve(urn, deadline, False)
        except ConclibError as e:
            raise session.at_deadline(e, timeout, disconnects) from None
    if session.raw is not None:
        return await exchange_raw(session, session.raw, route, urn, name, body, timeout, high, tp, deadline, disconnects)
    return await exchange_redispy(session, route, urn, name, body, timeout, high, tp, deadline, disconnects)


async def exchange_raw(
    session: Session, raw: RawPath, route: Route, urn: str, name: str, body: bytes, timeout: float,
    high: bool, tp: bytes, deadline: float, disconnects: int, frame: Any = None,
) -> tuple[int, bytes]:
    """An ask on raw connections: per ask one future (its reply waiter, which also
    learns the fate of its ``XADD``), its deadline on a timer shared with the asks of
    the same tick; no task, no ``wait_for``. ``frame``: what the waiter of a first
    attempt (``ask``'s hot path) got, to be judged here."""
    retried = False
    while True:
        if frame is None:
            if session.down:
                raise Unavailable("the connection to Redis is lost")
            left = deadline - time.monotonic()
            if left <= 0:
                raise session.timed_out(timeout, disconnects)
            request_id, waiter = raw.submit(route, urn, name, body, high, tp, deadline, left)
            try:
                frame = await waiter
            except ConclibError as e:
                raise session.at_deadline(e, timeout, disconnects) from None
            finally:
                session.pending.pop(request_id, None)
                session.written.discard(request_id)
        if frame is EXPIRED:
            raise session.timed_out(timeout, disconnects)
        if frame is GONE and high and route.fast_key is not None:
            # A group without a fast lane (older servers): its stream, then.
            route.no_fast_lane()
            frame = None
            continue
        if frame is GONE:
            # The stream is gone (NOMKSTREAM): the URN moved (a drained member's), or its
            # system is gone (``Routing.stream_gone``).
            try:
                route = await session.routes.stream_gone(urn, route, deadline)
            except ConclibError as e:
                raise session.at_deadline(e, timeout, disconnects) from None
            frame = None
            continue
        status, payload = reply_parts(session, urn, route, frame)
        session.check_deadline_answer(status, timeout, disconnects)
        if status in (Status.NOT_OWNER, Status.UNKNOWN_URN) and not retried:
            retried = True
            moved = await session.routes.moved(urn, route, deadline)
            if moved is not None:
                route = moved
                frame = None
                continue
        return status, payload


_STATUSES = frozenset(int(s) for s in Status)


def reply_parts(session: Session, urn: str, route: Route, frame: bytes) -> tuple[int, bytes]:
    """A reply frame's status and payload. A route hint in it (the ask was passed on to the
    system holding the URN, which named itself) makes that system the URN's route."""
    status = frame[8]
    if not status & HOLDER_FLAG:
        return status, frame[REPLY_HEADER_LEN:]
    parts = split_reply(frame)
    if parts is None:
        if status & ~HOLDER_FLAG not in _STATUSES:
            raise ProtocolError(f"unknown reply status {status}")
        raise ProtocolError("a reply frame cut short in its route hint")
    _, status, holder, payload_at = parts
    if holder is not None:
        session.routes.learn(urn, route, holder)
    return status, frame[payload_at:]


async def exchange_redispy(
    session: Session, route: Route, urn: str, name: str, body: bytes, timeout: float, high: bool, tp: bytes,
    deadline: float, disconnects: int,
) -> tuple[int, bytes]:
    """An ask through redis-py (not one server: Sentinel or Cluster): its request written
    by the session's pipeline, its reply awaited by a future of its own until the
    deadline."""
    path = session.path
    assert isinstance(path, RedisPyPath)  # not one server: Sentinel or Cluster
    retried = False
    while True:
        request_id = session.next_id
        session.next_id += 1
        waiter: asyncio.Future[bytes] = session.loop.create_future()
        session.pending[request_id] = waiter

        def build(request_id: int = request_id) -> tuple[list[bytes | str | int], int]:
            fields = request_fields(
                request_id=request_id,
                urn=urn,
                message=name,
                ttl=ttl_ms(deadline - time.monotonic()),
                reply=session.reply_key,
                priority_high=high,
                traceparent=tp.decode(),
                codec="msgpack",
                body=body,
            )
            return fields, len(body)

        try:
            try:
                losses = await session.send(route, urn, build, deadline, high)
            except ConclibError as e:
                raise session.at_deadline(e, timeout, disconnects) from None
            if request_id in session.pending:  # else its answer already came
                if session.losses != losses:
                    raise Unavailable("Redis restarted without its data just as the request was written")
                session.written.add(request_id)
                path.wrote(request_id, route.key_for(high))
            try:
                frame = await until(waiter, deadline)
            except asyncio.TimeoutError:
                raise session.timed_out(timeout, disconnects) from None
        finally:
            session.pending.pop(request_id, None)
            session.written.discard(request_id)
            path.done(request_id)
        status, payload = reply_parts(session, urn, route, frame)
        session.check_deadline_answer(status, timeout, disconnects)
        if status in (Status.NOT_OWNER, Status.UNKNOWN_URN) and not retried:
            retried = True
            moved = await session.routes.moved(urn, route, deadline)
            if moved is not None:
                route = moved
                continue
        return status, payload


async def send_tell(
    session: Session, urn: str, name: str, body: bytes, high: bool, tp: str, ttl: int, durability: Durability,
    deadline: float, timeout: float,
) -> None:
    """A tell's request appended to the serving system's stream (no reply list: nothing is
    answered), then, at a ``durability`` asking for replicas, their acknowledgement awaited.
    Queued for the next write before it awaits anything, when the URN's route is cached."""
    disconnects = session.disconnects

    def build() -> tuple[list[bytes | str | int], int]:
        fields = request_fields(
            request_id=0,
            urn=urn,
            message=name,
            ttl=ttl,
            reply=None,
            priority_high=high,
            traceparent=tp,
            codec="msgpack",
            body=body,
        )
        return fields, len(body)

    try:
        route = session.routes.cache.get(urn)
        if route is None or route.until <= time.monotonic():
            route = await session.routes.resolve(urn, deadline, False)
        if durability.n and session.cluster:
            # In a cluster, each tell's pipeline to its node carries its WAIT.
            await session.send(route, urn, build, deadline, high, durability)
        else:
            await session.send(route, urn, build, deadline, high)
            if durability.n:
                await session.replicated(durability, disconnects, deadline)
    except ConclibError as e:
        await asyncio.sleep(0)  # as ask's: a tell failing at once must not starve the loop
        raise session.at_deadline(e, timeout, disconnects) from None
