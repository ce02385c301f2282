"""One Python actor's mailbox and run loop: its requests handled one at a time, in order
(high-priority ones first), each under its deadline and the lease's fence. An idle actor
holds no task: a task drains the mailbox while it has requests, then ends (100,000 idle
activations cost their objects only)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

from . import codec
from ._host_request import Request
from ._host_store import StateStore, request_key
from ._tasks import again
from ._typed import Mismatch, from_wire, plain
from .actor import Actor, Drop, HandlerSpec, Refusal
from .protocol import Status

__all__ = ["Mailbox", "Outlet", "idle"]

log = logging.getLogger("conclib.host")


class Outlet(Protocol):
    """Where a mailbox's requests end (the lane whose stream they came in)."""

    def answer(self, req: Request, status: Status | None, payload: bytes, ack: bool) -> None:
        """Answers ``req`` (``status`` ``None``: no reply) and acknowledges it if ``ack``."""

    def leave(self, req: Request) -> None:
        """Leaves ``req`` pending unanswered (the lease lapsed: another system may take it)."""

    def when_acked(self, req: Request, done: Callable[[], None]) -> None:
        """Calls ``done()`` once ``req``'s acknowledgement was written."""


class Fence(Protocol):
    """The lease a request is handed to its actor under."""

    def fresh(self) -> bool: ...

    async def recheck(self) -> bool: ...

    def now_ms(self) -> int: ...

    def displaced(self, mailbox: Mailbox) -> None:
        """A write of the actor's state store was refused: a later activation owns it."""


class _Item:
    __slots__ = ("req", "spec", "arg", "outlet", "timed_out", "cancelled", "running", "cancels")

    def __init__(self, req: Request, spec: HandlerSpec, arg: Any, outlet: Outlet) -> None:
        self.req = req
        self.spec = spec
        self.arg = arg
        self.outlet = outlet
        self.timed_out = False
        self.cancelled = False
        # Whether its handler runs, and how many times its deadline cancelled it (``_cancel``).
        self.running = False
        self.cancels = 0


def decode(spec: HandlerSpec, body: bytes) -> Any:
    """The handler's argument from a request's body; ``Mismatch`` or ``CodecError``."""
    value = codec.decode(body)
    if spec.unit:
        if value is None or value == []:
            return None
        raise Mismatch(f"{spec.name} takes no content, got {type(value).__name__}")
    return from_wire(value, spec.param)


class Mailbox:
    """The mailbox of ``actor`` (started on its first request: ``on_start``)."""

    __slots__ = ("actor", "fence", "max_payload", "_normal", "_high", "_task", "last_used", "started", "stopped", "on_idle")

    def __init__(self, actor: Actor, fence: Fence, max_payload: int) -> None:
        self.actor = actor
        self.fence = fence
        self.max_payload = max_payload
        self._normal: deque[_Item] | None = None
        self._high: deque[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_used = time.monotonic()
        self.started = False
        self.stopped = False
        self.on_idle: Callable[[], None] | None = None

    def depth(self) -> int:
        """Its requests queued and running."""
        return len(self._high or ()) + len(self._normal or ()) + (self._task is not None)

    def busy(self) -> bool:
        """Whether it has requests queued or running."""
        return self._task is not None

    def put(self, req: Request, spec: HandlerSpec, arg: Any, outlet: Outlet) -> None:
        item = _Item(req, spec, arg, outlet)
        if req.high:
            if self._high is None:
                self._high = deque()
            self._high.append(item)
        else:
            if self._normal is None:
                self._normal = deque()
            self._normal.append(item)
        self.last_used = time.monotonic()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def _next(self) -> _Item | None:
        if self._high:
            return self._high.popleft()
        if self._normal:
            return self._normal.popleft()
        self._high = self._normal = None
        return None

    def abandon(self) -> None:
        """Leaves every queued request pending (the URN was taken away, or the host stops)."""
        while (item := self._next()) is not None:
            item.outlet.leave(item.req)

    async def _drain(self) -> None:
        try:
            if not self.started:
                self.started = True
                try:
                    await self.actor.on_start()
                except Exception as e:
                    self._not_started(e)
                    return
            while (item := self._next()) is not None:
                if not self.fence.fresh() and not await self.fence.recheck():
                    item.outlet.leave(item.req)
                    continue
                # Looked at after the recheck: claiming the URN keys again after a lapse of
                # the lease may have given this actor's URN up (another system took it).
                if self.stopped:
                    item.outlet.leave(item.req)
                    continue
                await self._run(item)
        finally:
            self._task = None
            self.last_used = time.monotonic()
            if self.on_idle is not None:
                self.on_idle()

    async def _run(self, item: _Item) -> None:
        req = item.req
        loop = asyncio.get_running_loop()
        left = (req.deadline_ms - self.fence.now_ms()) / 1000
        if left <= 0:
            item.outlet.answer(req, None, b"", True)  # expired while queued: dropped
            return
        store: StateStore | None = getattr(self.actor, "_store", None)
        key = None
        if store is not None:
            # Exactly once across activations (``_host_store.py``): a request whose handling
            # wrote the state already is not handled again.
            key = request_key(req.stream, req.entry, req.fields)
            if store.applied.already(key):
                _recorded_until_acked(item, store, key)
                text = f"{req.urn} handled this request already, and its answer was lost"
                item.outlet.answer(req, None if req.reply is None else Status.NO_RESPONSE, text.encode(), True)
                return
            store.handling, store.task = key, asyncio.current_task()
        timer = None
        if req.reply is not None:
            timer = loop.call_later(left, self._time_out, item)
        outcome: tuple[Status, Any]
        text = ""
        item.running = True
        try:
            spec = item.spec
            call = spec.method(self.actor) if spec.unit else spec.method(self.actor, item.arg)
            outcome = (Status.OK, await call)
        except asyncio.CancelledError:
            if not item.cancelled:
                raise
            if store is not None and self._settle(store, key, item):
                return
            item.outlet.answer(req, None, b"", True)
            return
        except Refusal as r:
            outcome = (Status.HANDLER_ERROR, r.error)
        except Drop:
            outcome = (Status.NO_RESPONSE, None)
        except Exception as e:  # the handler's failure: a Rust handler's panic
            outcome = (Status.PANICKED, None)
            text = str(e) or type(e).__name__
        finally:
            item.running = False
            # Python 3.11+ counts cancellations (3.10 does not): those of its deadline taken
            # back, whether the handler ended by one or swallowed them.
            uncancel = getattr(asyncio.current_task(), "uncancel", None)
            if uncancel is not None:
                for _ in range(item.cancels):
                    uncancel()
            if timer is not None:
                timer.cancel()
        if store is not None and self._settle(store, key, item):
            return
        if item.timed_out or req.reply is None:
            item.outlet.answer(req, None, b"", True)
            return
        status, value = outcome
        if status is Status.PANICKED:
            payload = text.encode()
        elif status is Status.NO_RESPONSE:
            payload = f"{req.urn} dropped the request".encode()
        else:
            status, payload = self._encode(status, value, "response" if status is Status.OK else "error")
        item.outlet.answer(req, status, payload, True)

    def _not_started(self, e: Exception) -> None:
        """``on_start`` failed: Redis out of reach (its store not loaded), the queued requests
        are left pending, read again; otherwise they are answered ``UnknownUrn`` (as a Rust
        activation whose factory failed). A pattern's activation is forgotten (made anew by
        the next request); a fixed URN's actor tries ``on_start`` again at its next request."""
        log.warning("on_start of %s failed: %s", self.actor.urn, e)
        self.started = False
        transient = isinstance(e, (RedisError, OSError))
        text = f"{self.actor.urn} could not be activated: {e}".encode()
        while (item := self._next()) is not None:
            if transient:
                item.outlet.leave(item.req)
            else:
                item.outlet.answer(item.req, None if item.req.reply is None else Status.UNKNOWN_URN, text, True)
        self.fence.displaced(self)

    def _settle(self, store: StateStore, key: str | None, item: _Item) -> bool:
        """After a handling: its request, if it wrote the state, is struck from the record
        once acknowledged; if a write was refused (a later activation owns the state), it is
        left pending for that activation and this one stops (``True``)."""
        store.handling = store.task = None
        if store.refused:
            item.outlet.leave(item.req)
            if not self.stopped:
                self.stopped = True
                self.abandon()
                self.fence.displaced(self)
            return True
        if key is not None and key in store.applied.unacked:
            _recorded_until_acked(item, store, key)
        return False

    def _encode(self, status: Status, value: Any, what: str) -> tuple[Status, bytes]:
        try:
            data = codec.pack_plain(value)
        except TypeError:
            try:
                data = codec.encode(plain(value))
            except Exception as e:
                return Status.CODEC_ERROR, f"cannot encode the {what}: {e}".encode()
        except Exception as e:
            return Status.CODEC_ERROR, f"cannot encode the {what}: {e}".encode()
        if len(data) > self.max_payload:
            return Status.TOO_LARGE, f"the {what} is {len(data)} bytes, the limit is {self.max_payload}".encode()
        return status, data

    def _time_out(self, item: _Item) -> None:
        item.timed_out = True
        ms = item.req.deadline_ms
        item.outlet.answer(item.req, Status.TIMEOUT, f"{item.req.urn} did not answer by its deadline ({ms} ms)".encode(), False)
        if type(self.actor).cancel_on_timeout:
            item.cancelled = True
            self._cancel(item)

    def _cancel(self, item: _Item) -> None:
        """Cancels ``item``'s handler, and again while it runs on: on Python 3.11 a
        cancellation that arrives as a command of redis-py completes is dropped (``_tasks.py``),
        and the handler would run on past its deadline as if never cancelled, the actor's
        next requests waiting behind it. Tried again at the loop's next turns first, then
        every ``AGAIN_AFTER`` (``_tasks.again``). A try may cut short a cleanup of the handler
        that awaits: as a Rust handler cancelled on timeout is dropped, and runs no async
        cleanup at all."""
        if not item.running or self._task is None:
            return
        item.cancels += 1
        self._task.cancel()
        again(item.cancels, self._cancel, item)


async def idle(mailbox: Mailbox, within: float) -> None:
    """Returns once ``mailbox`` has nothing queued or running, or after ``within`` seconds
    (its ``on_idle`` taken meanwhile)."""
    if not mailbox.busy():
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def idled() -> None:
        if not done.done():
            done.set_result(None)

    mailbox.on_idle = idled
    try:
        await asyncio.wait([done], timeout=within)
    finally:
        mailbox.on_idle = None
        if not done.done():
            done.cancel()


def _recorded_until_acked(item: _Item, store: StateStore, key: str) -> None:
    """``key`` stays in ``store``'s record of requests applied and not acknowledged until
    ``item``'s acknowledgement is written (``_host_store.py``, ``Applied``)."""
    applied = store.applied
    item.outlet.when_acked(item.req, lambda: applied.acked(key))
