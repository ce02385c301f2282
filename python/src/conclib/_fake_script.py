"""What both fakes of :mod:`conclib.testing` share, apart from their two faces (asyncio
and blocking): the script (what the test set each URN and message to answer or raise, a
durable execution run once per key) and the record (every ask and tell taken, as the actor
would receive it), a request taken as the real client checks and encodes it, and topics,
reminders and executions handed to the fake's :class:`FakeBroker`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from . import codec
from ._fake_broker import FakeBroker, FiredTick
from ._message import Message, Priority, checked_traceparent, encode_message, priority_high
from .durable import ExecutionInfo, Finished, check_name, encode_promise, parse_result
from .errors import Closed, ConclibError, NotExposed, Timeout, TooLarge, UnknownUrn
from .reminders import Registration, ReminderInfo
from .topics import check_topic

__all__ = ["ANY", "ScriptedFake", "Sent", "Waiting"]


class Waiting(Exception):
    """Raised by a function given to :meth:`FakeAsyncClient.answer_execution` while a
    promise it needs is not resolved: the execution waits, and runs again once one of its
    promises is resolved."""


class _Any:
    """Equal to anything: ``assert_sent(urn, message, ANY)``."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
"""Matches any payload in :meth:`assert_sent <FakeAsyncClient.assert_sent>`."""


@dataclass(frozen=True)
class Sent:
    """One ask or tell a fake took: ``payload`` as the actor would receive it (encoded and
    decoded again); ``timeout`` the ask's timeout in force (``None`` for a tell)."""

    kind: Literal["ask", "tell"]
    urn: str
    message: str
    payload: Any
    priority: Priority
    timeout: float | None


@dataclass
class _Rule:
    answer: Any = None
    error: BaseException | None = None
    # A durable execution (``answer_execution``): a tell runs it too.
    runs_on_tell: bool = False


class ScriptedFake:
    """The script and the record both fakes share."""

    def _setup(self, namespace: str, timeout: float, max_payload: int, broker: FakeBroker | None) -> None:
        self.broker = broker if broker is not None else FakeBroker()
        """Where this fake's topics and reminders live."""
        self.namespace = namespace
        self.timeout = float(timeout)
        self.max_payload = int(max_payload)
        self.sent: list[Sent] = []
        """Every ask and tell taken, in order."""
        self._rules: dict[tuple[str, str], _Rule] = {}
        self._fake_lock = threading.Lock()
        self._fake_closed = False

    # -- the script --------------------------------------------------------------------------

    def answer(self, urn: str, message: str, answer: Any = None) -> None:
        """Asks of ``message`` to ``urn`` answer ``answer``; if it is callable, what it returns
        when called with the payload received (it may raise any ``ConclibError``, e.g. a
        ``HandlerError``, to fail that ask). Replaces what was set for them before."""
        with self._fake_lock:
            self._rules[(urn, message)] = _Rule(answer=answer)

    def fail(self, urn: str, message: str, error: BaseException) -> None:
        """Asks and tells of ``message`` to ``urn`` raise ``error`` (``HandlerError(...)``,
        ``Timeout(2.0)``, ``Unavailable("...")``, ``MailboxFull(urn)``, ...)."""
        if not isinstance(error, BaseException):
            raise TypeError(f"fail() takes an exception instance, got {error!r}")
        with self._fake_lock:
            self._rules[(urn, message)] = _Rule(error=error)

    def answer_execution(
        self,
        urn: str,
        message: str,
        run: Callable[[Any, dict[str, Any]], Any],
        *,
        key: str | Callable[[Any], str] = "key",
    ) -> None:
        """Asks and tells of ``message`` to ``urn`` run a durable execution, once per
        idempotency key (``key``: the payload's field holding it, or a function of the
        payload): ``run(payload, promises)`` (``promises``: those resolved so far, by name)
        returns its result, recorded on the broker, or raises :class:`Waiting` (it runs
        again when a promise of its key is resolved). The same key again answers the
        recorded result without running ``run``."""
        namespace = self.namespace

        def execute(payload: Any) -> Any:
            k = key(payload) if callable(key) else payload[key]
            check_name("an execution key", k)
            done = self.broker.execution_result(namespace, urn, k)
            if done is not None:
                return parse_result(b"%d\n%b" % done).value
            try:
                value = run(payload, self.broker.promises(namespace, urn, k))
            except Waiting:
                self.broker.wait_for_promise(namespace, urn, k, lambda: _quietly(execute, payload))
                raise Timeout(self.timeout, f"execution {k!r} waits for a promise") from None
            self.broker.finish_execution(namespace, urn, k, codec.encode(value))
            return value

        with self._fake_lock:
            self._rules[(urn, message)] = _Rule(answer=execute, runs_on_tell=True)

    def reset(self) -> None:
        """Forgets what was set and what was sent."""
        with self._fake_lock:
            self._rules.clear()
            self.sent.clear()

    # -- the record --------------------------------------------------------------------------

    def asks(self, urn: str | None = None, message: str | None = None) -> list[Any]:
        """The payloads of the asks taken (of this URN, of this message), in order."""
        return [s.payload for s in self._matching("ask", urn, message)]

    def tells(self, urn: str | None = None, message: str | None = None) -> list[Any]:
        """The payloads of the tells taken (of this URN, of this message), in order."""
        return [s.payload for s in self._matching("tell", urn, message)]

    def assert_sent(
        self, urn: str, message: str, payload: Any = ANY, *, kind: Literal["ask", "tell"] | None = None
    ) -> Sent:
        """The first ask or tell (or only ``kind``) of ``message`` to ``urn`` with this payload
        (compared with ``==`` to the payload received; :data:`ANY` matches any); an
        ``AssertionError`` listing what was sent if there is none."""
        for sent in list(self.sent):
            if (sent.urn, sent.message) == (urn, message) and (kind is None or sent.kind == kind) and (
                payload == sent.payload
            ):
                return sent
        taken = "\n".join(f"  {s.kind} {s.urn} {s.message} {s.payload!r}" for s in self.sent) or "  nothing"
        wanted = f"{kind or 'ask or tell'} {urn} {message}" + ("" if payload is ANY else f" {payload!r}")
        raise AssertionError(f"no {wanted} was sent; sent:\n{taken}")

    def assert_nothing_sent(self) -> None:
        """An ``AssertionError`` if anything was asked or told."""
        if self.sent:
            raise AssertionError(f"{len(self.sent)} sent: {self.sent!r}")

    def _matching(self, kind: str, urn: str | None, message: str | None) -> list[Sent]:
        return [
            s for s in list(self.sent)
            if s.kind == kind and (urn is None or s.urn == urn) and (message is None or s.message == message)
        ]

    # -- taking a request --------------------------------------------------------------------

    def _take(
        self,
        kind: Literal["ask", "tell"],
        urn: str,
        message: str | Message,
        payload: Any,
        timeout: float | None,
        priority: Priority,
        traceparent: str | None,
    ) -> Any:
        if kind == "ask":
            timeout = self.timeout if timeout is None else float(timeout)
            if not timeout > 0:
                raise ValueError(f"timeout must be positive, got {timeout!r}")
        priority_high(priority)
        name, body = encode_message(message, payload, self.max_payload)
        checked_traceparent(traceparent)
        with self._fake_lock:
            if self._fake_closed:
                raise Closed()
            self.sent.append(Sent(kind, urn, name, codec.decode(body), priority, timeout))
            rule = self._rules.get((urn, name))
            known = rule is not None or any(u == urn for u, _ in self._rules)
        if not known:
            raise UnknownUrn(urn)
        if rule is None:
            if kind == "tell":
                return None
            raise NotExposed(urn, name)
        if rule.error is not None:
            raise rule.error
        if kind == "tell":
            if rule.runs_on_tell:
                _quietly(rule.answer, codec.decode(body))
            return None
        answer = rule.answer(codec.decode(body)) if callable(rule.answer) else rule.answer
        # As the wire carries it: a tuple comes back a list, a dataclass a dict.
        return codec.decode(codec.encode(answer))

    # -- topics and reminders ------------------------------------------------------------------

    def published(self, topic: str) -> list[Any]:
        """Every event published to ``topic`` in this fake's namespace (by any fake of its
        broker), decoded as a subscriber receives it, in order."""
        return self.broker.published(self.namespace, topic)

    def advance(self, seconds: float) -> list[FiredTick]:
        """Moves the broker's clock on and returns the reminder ticks that came due
        (:meth:`FakeBroker.advance`)."""
        return self.broker.advance(seconds)

    def fire_due(self) -> list[FiredTick]:
        """The reminder ticks due by the broker's clock now (:meth:`FakeBroker.fire_due`)."""
        return self.broker.fire_due()

    def _open(self) -> None:
        if self._fake_closed:
            raise Closed()

    def _publish(self, topic: str, event: Any, durable: bool, max_len: int) -> None:
        check_topic(topic)
        body = codec.encode(event)
        if len(body) > self.max_payload:
            raise TooLarge(f"the event is {len(body)} bytes, the limit is {self.max_payload}")
        self._open()
        self.broker.publish(self.namespace, topic, body, durable=durable, max_len=max_len)

    def _register(
        self, urn: str, name: str, after: float | None, at: float | None, every: float | None, payload: Any
    ) -> int:
        registration = Registration.of(
            urn, name, after=after, at=at, every=every, payload=payload, max_payload=self.max_payload
        )
        self._open()
        return self.broker.register_reminder(self.namespace, registration)

    def _cancel(self, urn: str, name: str) -> bool:
        self._open()
        return self.broker.cancel_reminder(self.namespace, urn, name)

    def _list(self, urn: str) -> list[ReminderInfo]:
        self._open()
        return self.broker.list_reminders(self.namespace, urn)

    def _execution_result(self, urn: str, key: str) -> Finished | None:
        check_name("an execution key", key)
        self._open()
        done = self.broker.execution_result(self.namespace, urn, key)
        return None if done is None else parse_result(b"%d\n%b" % done)

    def _resolve_promise(self, urn: str, key: str, name: str, value: Any) -> bool:
        check_name("an execution key", key)
        check_name("a promise name", name)
        body = encode_promise(value, self.max_payload)
        self._open()
        return self.broker.resolve_promise(self.namespace, urn, key, name, body)

    def _list_executions(self, urn: str) -> list[ExecutionInfo]:
        self._open()
        found = self.broker.executions(self.namespace, urn)
        return [ExecutionInfo(k, found[k], 0) for k in sorted(found)]

    def _resolve(self, urn: str) -> str | None:
        with self._fake_lock:
            if self._fake_closed:
                raise Closed()
            return "fake" if any(u == urn for u, _ in self._rules) else None


def _quietly(run: Callable[[Any], Any], payload: Any) -> None:
    """Runs a durable execution started by a tell (or again, a promise resolved): its
    outcome goes to no caller, as a tell's does not."""
    try:
        run(payload)
    except ConclibError:
        pass
