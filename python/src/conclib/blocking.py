"""The blocking client, for scripts and WSGI workers: ``conclib.Client(url, namespace=...)``.

It runs an :class:`~conclib.client.AsyncClient` on an event loop in a daemon thread of its
own, started on first use; any number of threads may call it at once (their asks run
concurrently on that loop). After ``os.fork()`` the child starts a thread, a loop and
connections of its own on its first call; the parent's are never touched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._tasks import stop_tasks
from .client import _ABANDONED, DEFAULT_URL, AsyncClient, Message, Priority, _NOTHING
from .durable import ExecutionInfo, Finished
from .errors import Closed, ConclibError, Timeout
from .reminders import ReminderInfo
from .topics import DEFAULT_MAX_LEN, Subscription

__all__ = ["BlockingSubscription", "Client"]

T = TypeVar("T")

# How long past an ask's own deadline the calling thread waits for the loop thread before
# giving up (the ask is bounded by its deadline; this only guards against a stuck loop).
_GRACE = 5.0


class _Runner:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="conclib-client", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(self.loop)
                if pending:
                    self.loop.run_until_complete(stop_tasks(pending, 5.0))
            finally:
                self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)


class Client:
    """Asks and tells actors by URN through Redis, blocking the calling thread.

    Same arguments and methods as :class:`~conclib.client.AsyncClient`, without ``await``;
    ``with conclib.Client(url) as client:`` closes it at the end.
    """

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        self._client = AsyncClient(url, **options)
        self._lock = threading.Lock()
        self._runner: _Runner | None = None
        self._closed = False
        _BLOCKING.add(self)

    def __repr__(self) -> str:
        return repr(self._client).replace("AsyncClient", "Client", 1)

    @property
    def namespace(self) -> str:
        return self._client.namespace

    @property
    def reply_key(self) -> str | None:
        """The key of this process's reply list (``None`` before connecting)."""
        return self._client.reply_key

    @property
    def refused_at_send(self) -> int:
        """As :attr:`AsyncClient.refused_at_send <conclib.client.AsyncClient.refused_at_send>`."""
        return self._client.refused_at_send

    def _forget_after_fork(self) -> None:
        runner, self._runner = self._runner, None
        self._lock = threading.Lock()
        if runner is not None:
            _ABANDONED.append(runner)

    def _loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # Under the lock that `close` marks the client closed under: an ask racing a
            # close never starts a runner (a thread) that nobody would stop.
            if self._closed:
                raise Closed()
            runner = self._runner
            if runner is None or runner.pid != os.getpid():
                if runner is not None:
                    _ABANDONED.append(runner)
                runner = self._runner = _Runner()
            return runner.loop

    def _run(self, coro: Coroutine[Any, Any, T], limit: float) -> T:
        try:
            loop = self._loop()
        except BaseException:
            coro.close()
            raise
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout=limit + _GRACE)
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            # The client was closed while this call ran: stopping its loop cancelled what
            # was still running there. It ends as every call pending at a close does.
            if self._closed:
                raise Closed() from None
            raise
        except concurrent.futures.TimeoutError as e:
            # The ask's own `Timeout` is a `TimeoutError` too (so is `concurrent.futures`'
            # since Python 3.11): passed on as it is, with its detail.
            if isinstance(e, ConclibError):
                raise
            future.cancel()
            raise Timeout(limit, "the client's event loop did not answer") from None

    def connect(self) -> Client:
        """Connects now (else the first call does)."""
        self._run(self._client.connect(), self._client.connect_timeout)
        return self

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        """As :meth:`AsyncClient.ask <conclib.client.AsyncClient.ask>`, blocking."""
        limit = self._client.timeout if timeout is None else float(timeout)
        return self._run(
            self._client.ask(urn, message, payload, timeout=timeout, priority=priority, traceparent=traceparent),
            limit,
        )

    def tell(
        self,
        urn: str,
        message: str | Message,
        payload: Any = _NOTHING,
        *,
        priority: Priority = "normal",
        traceparent: str | None = None,
    ) -> None:
        """As :meth:`AsyncClient.tell <conclib.client.AsyncClient.tell>`, blocking."""
        self._run(
            self._client.tell(urn, message, payload, priority=priority, traceparent=traceparent),
            self._client.command_timeout,
        )

    def publish(self, topic: str, event: Any, *, durable: bool = False, max_len: int = DEFAULT_MAX_LEN) -> None:
        """As :meth:`AsyncClient.publish <conclib.client.AsyncClient.publish>`, blocking."""
        self._run(self._client.publish(topic, event, durable=durable, max_len=max_len),
                  self._client.command_timeout)

    def subscribe(self, topic: str, **options: Any) -> BlockingSubscription:
        """As :meth:`AsyncClient.subscribe <conclib.client.AsyncClient.subscribe>`: an iterator
        (``for event in subscription``) blocking for each event; ``close()`` ends it."""
        subscription = self._run(self._client.subscribe(topic, **options),
                                 self._client.connect_timeout + self._client.command_timeout)
        return BlockingSubscription(self, subscription)

    def resolve(self, urn: str) -> str | None:
        """Which system serves this URN now, if any."""
        return self._run(self._client.resolve(urn), self._client.command_timeout)

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
        """As :meth:`AsyncClient.register_reminder <conclib.client.AsyncClient.register_reminder>`, blocking."""
        return self._run(
            self._client.register_reminder(urn, name, after=after, at=at, every=every, payload=payload),
            self._client.command_timeout,
        )

    def cancel_reminder(self, urn: str, name: str) -> bool:
        """As :meth:`AsyncClient.cancel_reminder <conclib.client.AsyncClient.cancel_reminder>`, blocking."""
        return self._run(self._client.cancel_reminder(urn, name), self._client.command_timeout)

    def list_reminders(self, urn: str) -> list[ReminderInfo]:
        """As :meth:`AsyncClient.list_reminders <conclib.client.AsyncClient.list_reminders>`, blocking."""
        return self._run(self._client.list_reminders(urn), self._client.command_timeout)

    def execution_result(self, urn: str, key: str) -> Finished | None:
        """As :meth:`AsyncClient.execution_result <conclib.client.AsyncClient.execution_result>`, blocking."""
        return self._run(self._client.execution_result(urn, key), self._client.command_timeout)

    def wait_execution(self, urn: str, key: str, *, timeout: float | None = None) -> Any:
        """As :meth:`AsyncClient.wait_execution <conclib.client.AsyncClient.wait_execution>`, blocking."""
        limit = self._client.timeout if timeout is None else float(timeout)
        return self._run(self._client.wait_execution(urn, key, timeout=timeout), limit)

    def resolve_promise(self, urn: str, key: str, name: str, value: Any) -> bool:
        """As :meth:`AsyncClient.resolve_promise <conclib.client.AsyncClient.resolve_promise>`, blocking."""
        return self._run(self._client.resolve_promise(urn, key, name, value), self._client.command_timeout)

    def list_executions(self, urn: str) -> list[ExecutionInfo]:
        """As :meth:`AsyncClient.list_executions <conclib.client.AsyncClient.list_executions>`, blocking."""
        return self._run(self._client.list_executions(urn), self._client.command_timeout)

    def close(self) -> None:
        """Closes the client and stops its thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runner = self._runner
            self._runner = None
        if runner is not None and runner.pid == os.getpid():
            try:
                asyncio.run_coroutine_threadsafe(self._client.close(), runner.loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            runner.stop()


class BlockingSubscription:
    """A :class:`~conclib.topics.Subscription` read from a blocking :class:`Client`:
    ``for event in subscription`` (``get(timeout)`` for one event, ``Timeout`` if none)."""

    _SLICE = 1.0

    def __init__(self, client: Client, subscription: Subscription) -> None:
        self._client = client
        self._subscription = subscription

    def stats(self) -> dict[str, int]:
        """As :meth:`Subscription.stats <conclib.topics.Subscription.stats>`."""
        return self._subscription.stats()

    def get(self, timeout: float | None = None) -> Any:
        """The next event, waiting at most ``timeout`` seconds (``None``: as long as it takes);
        :class:`~conclib.Lagged` once after a live subscription dropped events, as
        :meth:`Subscription.get <conclib.topics.Subscription.get>`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self._SLICE if deadline is None else min(self._SLICE, max(deadline - time.monotonic(), 0.0))
            try:
                return self._client._run(self._subscription.get(left), left)
            except Timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def __iter__(self) -> BlockingSubscription:
        return self

    def __next__(self) -> Any:
        try:
            return self.get()
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """As :meth:`Subscription.aclose <conclib.topics.Subscription.aclose>`."""
        self._client._run(self._subscription.aclose(), self._client._client.command_timeout)

    def __enter__(self) -> BlockingSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


import weakref  # noqa: E402

_BLOCKING: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_BLOCKING):
        client._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
