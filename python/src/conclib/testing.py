"""In-memory fakes of the clients, for your own tests: no Redis, no Rust process.

:class:`FakeAsyncClient` is an :class:`~conclib.AsyncClient` and :class:`FakeClient` a
:class:`~conclib.Client` (code and typed handles annotated with the real classes accept
them), with the same ``ask``, ``tell``, ``resolve``, ``connect`` and ``close``. Instead of
asking actors they answer what the test set, per URN and message, and record what was
sent::

    from conclib.testing import FakeAsyncClient

    fake = FakeAsyncClient()
    fake.answer("py:shapes", "Double", lambda n: 2 * n)    # computed from the payload
    fake.answer("py:counter", "Get", 5)                     # always 5
    fake.fail("py:shapes", "Divide", conclib.HandlerError("DivideByZero"))
    ...
    assert await fake.ask("py:shapes", "Double", 21) == 42
    fake.assert_sent("py:shapes", "Double", 21)

What the fakes keep of the real clients: a payload is encoded as the real client encodes it
(a ``CodecError`` or ``TooLarge`` for what could not be sent) and recorded as the actor would
receive it, decoded again (a dataclass as a dict of its fields, a tuple as a list); an
answer travels the same way back (a ``CodecError`` if it could not). ``priority``,
``timeout`` and ``traceparent`` are checked as the real client checks them (``ValueError``).
An ask of a URN nothing was set for fails ``UnknownUrn``, of a message not set for a URN
that has others ``NotExposed``. A tell is accepted (and recorded) when anything was set for
its URN, else fails ``UnknownUrn``; a failure set for its message is raised by the tell.
After ``close()`` calls fail ``Closed``.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any, Literal

from . import codec
from .blocking import Client
from .client import _NOTHING, AsyncClient, Message, Priority, _priority, _traceparent, encode_message
from .errors import Closed, NotExposed, UnknownUrn
from .protocol import DEFAULT_NAMESPACE

__all__ = ["ANY", "FakeAsyncClient", "FakeClient", "Sent"]


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


class _Fake:
    """The script and the record both fakes share."""

    def _setup(self, namespace: str, timeout: float, max_payload: int) -> None:
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
        _priority(priority)
        name, body = encode_message(message, payload, self.max_payload)
        _traceparent(traceparent)
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
            return None
        answer = rule.answer(codec.decode(body)) if callable(rule.answer) else rule.answer
        # As the wire carries it: a tuple comes back a list, a dataclass a dict.
        return codec.decode(codec.encode(answer))

    def _resolve(self, urn: str) -> str | None:
        with self._fake_lock:
            if self._fake_closed:
                raise Closed()
            return "fake" if any(u == urn for u, _ in self._rules) else None


class FakeAsyncClient(_Fake, AsyncClient):
    """An :class:`~conclib.AsyncClient` that asks no actor: it answers what the test set
    (:meth:`answer`, :meth:`fail`) and records what was sent (:attr:`sent`, :meth:`asks`,
    :meth:`tells`, :meth:`assert_sent`). No Redis, no connection, no thread."""

    def __init__(
        self, *, namespace: str = DEFAULT_NAMESPACE, timeout: float = 5.0, max_payload: int = 8 * 1024 * 1024
    ) -> None:
        # The real client's state is never made: every method that would use it is replaced.
        self._setup(namespace, timeout, max_payload)
        self.url = "fake://"
        self.on_ask = None
        self._session = None
        self._closed = False

    def __repr__(self) -> str:
        return f"FakeAsyncClient(namespace={self.namespace!r})"

    async def connect(self) -> FakeAsyncClient:
        if self._fake_closed:
            raise Closed()
        return self

    async def __aenter__(self) -> FakeAsyncClient:
        return await self.connect()

    async def close(self) -> None:
        self._fake_closed = True

    async def ask(
        self,
        urn: str,
        message: str | Message,
        payload: Any = _NOTHING,
        *,
        timeout: float | None = None,
        priority: Priority = "normal",
        traceparent: str | None = None,
    ) -> Any:
        await asyncio.sleep(0)  # an ask awaits: other tasks run meanwhile, as with Redis
        return self._take("ask", urn, message, payload, timeout, priority, traceparent)

    async def tell(
        self,
        urn: str,
        message: str | Message,
        payload: Any = _NOTHING,
        *,
        priority: Priority = "normal",
        traceparent: str | None = None,
    ) -> None:
        await asyncio.sleep(0)
        self._take("tell", urn, message, payload, None, priority, traceparent)

    async def resolve(self, urn: str) -> str | None:
        """``"fake"`` for a URN something was set for, else ``None``."""
        return self._resolve(urn)


class FakeClient(_Fake, Client):
    """A blocking :class:`~conclib.Client` that asks no actor (see :class:`FakeAsyncClient`):
    any number of threads may use it."""

    def __init__(
        self, *, namespace: str = DEFAULT_NAMESPACE, timeout: float = 5.0, max_payload: int = 8 * 1024 * 1024
    ) -> None:
        self._setup(namespace, timeout, max_payload)
        self._client = FakeAsyncClient(namespace=namespace, timeout=timeout, max_payload=max_payload)
        self._lock = threading.Lock()
        self._runner = None
        self._closed = False

    def __repr__(self) -> str:
        return f"FakeClient(namespace={self.namespace!r})"

    @property
    def namespace(self) -> str:
        return self._namespace

    @namespace.setter
    def namespace(self, value: str) -> None:
        self._namespace = value

    def connect(self) -> FakeClient:
        if self._fake_closed:
            raise Closed()
        return self

    def __enter__(self) -> FakeClient:
        return self

    def close(self) -> None:
        self._fake_closed = True

    def ask(
        self,
        urn: str,
        message: str | Message,
        payload: Any = _NOTHING,
        *,
        timeout: float | None = None,
        priority: Priority = "normal",
        traceparent: str | None = None,
    ) -> Any:
        return self._take("ask", urn, message, payload, timeout, priority, traceparent)

    def tell(
        self,
        urn: str,
        message: str | Message,
        payload: Any = _NOTHING,
        *,
        priority: Priority = "normal",
        traceparent: str | None = None,
    ) -> None:
        self._take("tell", urn, message, payload, None, priority, traceparent)

    def resolve(self, urn: str) -> str | None:
        """``"fake"`` for a URN something was set for, else ``None``."""
        return self._resolve(urn)

