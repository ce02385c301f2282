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

Topics and reminders run on an in-memory :class:`FakeBroker` (one per fake, or one shared
by several: ``FakeAsyncClient(broker=broker)``)::

    events = await fake.subscribe("orders")                  # a real Subscription's API
    await fake.publish("orders", {"order": 42})
    assert await events.get(timeout=1) == {"order": 42}
    assert fake.published("orders") == [{"order": 42}]

    await fake.register_reminder("user:42", "renew", after=60, every=3600, payload={"plan": "pro"})
    (tick,) = fake.advance(60)                               # the broker's clock moves on
    assert (tick.urn, tick.name, tick.payload, tick.missed) == ("user:42", "renew", {"plan": "pro"}, 0)

A live topic reaches the subscribers subscribed when it is published, each through its
``buffer`` (a full one drops the event, counted in ``stats()["dropped"]`` and reported by
the next ``get()`` as :class:`~conclib.Lagged`); a durable topic keeps its last ``max_len``
events for every subscriber group (new groups start at its end, or its oldest event with
``from_start=True``), shares a group's events among its subscribers, and hands an event
taken and not finished (the subscription :meth:`~FakeSubscription.abandon`-ed, as by a
killed process) again to the next subscriber of the same consumer name, or of the group once
``claim_idle`` passed on the broker's clock. Reminders are registered, listed and cancelled
as in Redis, on the broker's clock, which only moves when the test says so:
:meth:`advance` (or :meth:`fire_due`) returns the ticks that came due (:class:`FiredTick`),
a periodic reminder's missed ticks folded into one (``missed``), as the Rust pollers deliver
them. Nothing is delivered to an actor: assert on the ticks.

Durable executions (:mod:`conclib.durable`) run on the broker too: :meth:`answer_execution`
makes a message run a function once per idempotency key, as a Rust handler running
``Journal::run`` does, and the results and promises are read and resolved with the real
clients' methods::

    def place(order: dict[str, Any], promises: dict[str, Any]) -> str:
        if "approved" not in promises:
            raise Waiting()                                  # as ex.promise("approved", ..)
        return f"charged {order['cents']} approved={promises['approved']}"

    fake.answer_execution("order:7", "Place", place)         # the key: the payload's "key"
    await fake.tell("order:7", "Place", {"key": "k1", "cents": 5})
    assert await fake.execution_result("order:7", "k1") is None   # waits for the promise
    assert await fake.resolve_promise("order:7", "k1", "approved", True)
    assert await fake.wait_execution("order:7", "k1") == "charged 5 approved=True"

An execution whose function raised :class:`Waiting` runs again when one of its promises is
resolved; once it returned, its result is recorded and the same key answers it without
running the function (an ask of a waiting execution fails ``Timeout``, as a real ask
shorter than the wait does). Steps are not recorded: ``list_executions`` lists the
executions with their finish times and no steps.

This module holds the fakes' two faces; the script and the record they share are in
``_fake_script``, the broker in ``_fake_broker``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from ._fake_broker import FakeBroker, FakeSubscription, FiredTick
from ._fake_script import ANY, ScriptedFake, Sent, Waiting
from .blocking import BlockingSubscription, Client
from .client import DEFAULT_URL, _NOTHING, AsyncClient, Message, Priority
from .durability import Durability
from .durable import ExecutionInfo, Finished
from .errors import Closed, Timeout
from .protocol import DEFAULT_NAMESPACE
from .reminders import ReminderInfo
from .topics import DEFAULT_BUFFER, DEFAULT_GROUP, DEFAULT_MAX_LEN, Subscription
from .url import parse_url

__all__ = ["ANY", "FakeAsyncClient", "FakeBroker", "FakeClient", "FakeSubscription", "FiredTick", "Sent", "Waiting"]


class FakeAsyncClient(ScriptedFake, AsyncClient):
    """An :class:`~conclib.AsyncClient` that asks no actor: it answers what the test set
    (:meth:`answer`, :meth:`fail`) and records what was sent (:attr:`sent`, :meth:`asks`,
    :meth:`tells`, :meth:`assert_sent`). No Redis, no connection, no thread."""

    def __init__(
        self,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = 5.0,
        max_payload: int = 8 * 1024 * 1024,
        broker: FakeBroker | None = None,
    ) -> None:
        # The real client's state is never made: every method that would use it is replaced.
        self._setup(namespace, timeout, max_payload, broker)
        self.url = "fake://"
        self.durability = Durability.primary()
        self.command_timeout = 10.0
        self.connect_timeout = 5.0
        # Read by the subscriptions (a live topic is sharded pub/sub on a Cluster only).
        self._target = parse_url(DEFAULT_URL)
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

    async def publish(self, topic: str, event: Any, *, durable: bool = False,
                      max_len: int = DEFAULT_MAX_LEN) -> None:
        """Publishes to the broker: see the module's docs."""
        await asyncio.sleep(0)
        self._publish(topic, event, durable, max_len)

    async def subscribe(self, topic: str, *, durable: bool = False, group: str = DEFAULT_GROUP,
                        consumer: str | None = None, buffer: int = DEFAULT_BUFFER,
                        from_start: bool = False, claim_idle: float = 30.0) -> Subscription:
        """A :class:`FakeSubscription` of the broker's topic: see the module's docs."""
        self._open()
        subscription = FakeSubscription(self.broker, self, topic, durable=durable, group=group,
                                        consumer=consumer, buffer=buffer, from_start=from_start,
                                        claim_idle=claim_idle)
        return await subscription.start()

    async def execution_result(self, urn: str, key: str) -> Finished | None:
        """The result the broker recorded for execution ``key`` of ``urn``, if any."""
        await asyncio.sleep(0)
        return self._execution_result(urn, key)

    async def resolve_promise(self, urn: str, key: str, name: str, value: Any) -> bool:
        """Resolves the promise on the broker (an execution waiting for it runs again)."""
        await asyncio.sleep(0)
        return self._resolve_promise(urn, key, name, value)

    async def list_executions(self, urn: str) -> list[ExecutionInfo]:
        """The executions the broker knows for ``urn`` (no steps: see the module's docs)."""
        return self._list_executions(urn)

    async def register_reminder(
        self,
        urn: str,
        name: str,
        *,
        after: float | None = None,
        at: float | None = None,
        every: float | None = None,
        payload: Any = _NOTHING,
    ) -> int:
        """Registers on the broker's clock; when it is first due (ms since the epoch)."""
        return self._register(urn, name, after, at, every, payload)

    async def cancel_reminder(self, urn: str, name: str) -> bool:
        return self._cancel(urn, name)

    async def list_reminders(self, urn: str) -> list[ReminderInfo]:
        return self._list(urn)


class FakeClient(ScriptedFake, Client):
    """A blocking :class:`~conclib.Client` that asks no actor (see :class:`FakeAsyncClient`):
    any number of threads may use it."""

    def __init__(
        self,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = 5.0,
        max_payload: int = 8 * 1024 * 1024,
        broker: FakeBroker | None = None,
    ) -> None:
        self._setup(namespace, timeout, max_payload, broker)
        # Subscriptions run on it, on an event loop in a thread of their own (as the real
        # client's); its broker is this fake's.
        self._client = FakeAsyncClient(
            namespace=namespace, timeout=timeout, max_payload=max_payload, broker=self.broker
        )
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
        Client.close(self)  # its subscriptions' thread, if any

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

    def publish(self, topic: str, event: Any, *, durable: bool = False, max_len: int = DEFAULT_MAX_LEN) -> None:
        """Publishes to the broker: see the module's docs."""
        self._publish(topic, event, durable, max_len)

    def subscribe(self, topic: str, **options: Any) -> BlockingSubscription:
        """A blocking iterator over a :class:`FakeSubscription` of the broker's topic."""
        self._open()
        subscription = self._run(self._client.subscribe(topic, **options), self._client.connect_timeout)
        return BlockingSubscription(self, subscription)

    def register_reminder(
        self,
        urn: str,
        name: str,
        *,
        after: float | None = None,
        at: float | None = None,
        every: float | None = None,
        payload: Any = _NOTHING,
    ) -> int:
        """Registers on the broker's clock; when it is first due (ms since the epoch)."""
        return self._register(urn, name, after, at, every, payload)

    def cancel_reminder(self, urn: str, name: str) -> bool:
        return self._cancel(urn, name)

    def list_reminders(self, urn: str) -> list[ReminderInfo]:
        return self._list(urn)

    def execution_result(self, urn: str, key: str) -> Finished | None:
        return self._execution_result(urn, key)

    def wait_execution(self, urn: str, key: str, *, timeout: float | None = None) -> Any:
        """Looks until the broker holds the execution's result (``Timeout`` after
        ``timeout``, default the fake's); another thread may finish it meanwhile."""
        limit = self.timeout if timeout is None else float(timeout)
        if not limit > 0:
            raise ValueError(f"timeout must be positive, got {limit!r}")
        deadline = time.monotonic() + limit
        while (found := self._execution_result(urn, key)) is None:
            if time.monotonic() >= deadline:
                raise Timeout(limit, "waiting for the execution's result")
            time.sleep(0.001)
        return found.value

    def resolve_promise(self, urn: str, key: str, name: str, value: Any) -> bool:
        return self._resolve_promise(urn, key, name, value)

    def list_executions(self, urn: str) -> list[ExecutionInfo]:
        return self._list_executions(urn)
