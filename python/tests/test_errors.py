"""Errors as a process pool's workers hand them to their parent (pickled), the blocking
client's timeout, and timeouts against an actor that cancels on timeout: against the real
Rust server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import pickle
import time

import pytest

import conclib
from conclib import errors

SHAPES = "py:shapes"
CANCELLABLE = "py:cancellable"

EVERY_ERROR = [
    errors.UnknownUrn("u", "why"),
    errors.NotExposed("u", "Msg"),
    errors.HandlerError({"NotAllowed": {"reason": "no"}}, "u", "Msg"),
    errors.Panicked("boom"),
    errors.Timeout(1.5, "detail"),
    errors.ActorStopped("u"),
    errors.NoResponse("u"),
    errors.MailboxFull("u"),
    errors.CodecError("c"),
    errors.TooLarge("t"),
    errors.BadRequest("b"),
    errors.Unavailable("x"),
    errors.NotReplicated(0, 1, 0.5),
    errors.RedisError("r"),
    errors.ProtocolError("p"),
    errors.ConfigError("c"),
    errors.Closed(),
]


@pytest.mark.parametrize("error", EVERY_ERROR, ids=lambda e: type(e).__name__)
def test_every_error_pickles_with_its_message_and_attributes(error: conclib.ConclibError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.__dict__ == error.__dict__


def _ask_too_long(url: str, namespace: str) -> int:
    with conclib.Client(url, namespace=namespace) as client:
        # Connected first: a fresh worker's first connection on a loaded machine may take
        # longer than the ask's 0.2 s (it would then fail `Unavailable`, not `Timeout`).
        client.connect()
        return client.ask(SHAPES, "Nap", {"ms": 800}, timeout=0.2)


def test_a_workers_timeout_reaches_its_parent_and_the_pool_goes_on(url: str, namespace: str) -> None:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        with pytest.raises(conclib.Timeout) as e:
            pool.submit(_ask_too_long, url, namespace).result(timeout=60)
        assert e.value.timeout == pytest.approx(0.2)
        # The pool is not broken: its worker takes the next job.
        with pytest.raises(conclib.Timeout):
            pool.submit(_ask_too_long, url, namespace).result(timeout=60)


def test_a_timeout_does_not_cancel_a_started_handler(url: str, namespace: str) -> None:
    """The README's error table: an actor that does not opt in to cancellation finishes a handler whose ask timed out and stays
    busy meanwhile; the next ask waits behind it and may time out too."""
    with conclib.Client(url, namespace=namespace) as client:
        client.ask(SHAPES, "Hello")  # connected and resolved
        started = time.monotonic()
        with pytest.raises(conclib.Timeout):
            client.ask(SHAPES, "Nap", {"ms": 1500}, timeout=0.3)
        # The nap goes on: an ask now, with a timeout that would be ample for an idle actor,
        # waits behind it.
        with pytest.raises(conclib.Timeout):
            client.ask(SHAPES, "Hello", timeout=0.5)
        assert client.ask(SHAPES, "Hello", timeout=10) == client.ask(SHAPES, "Hello")
        # Answered only once the nap was over.
        assert time.monotonic() - started >= 1.5


def test_the_blocking_clients_timeout_is_the_asks_own(url: str, namespace: str) -> None:
    with conclib.Client(url, namespace=namespace) as client:
        started = time.monotonic()
        with pytest.raises(conclib.Timeout) as e:
            client.ask(SHAPES, "Nap", {"ms": 800}, timeout=0.2)
        assert time.monotonic() - started < 0.7
        assert e.value.timeout == pytest.approx(0.2)
        assert "event loop did not answer" not in str(e.value), str(e.value)


def test_closing_a_blocking_client_while_threads_ask_leaves_no_thread(url: str, namespace: str) -> None:
    """Threads ask while another closes the client: each ask answers or ends ``Closed``,
    and no client thread outlives the close (an ask racing it started a new one)."""
    import threading

    def client_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "conclib-client" and t.is_alive()}

    before = client_threads()
    for _ in range(20):
        client = conclib.Client(url, namespace=namespace)
        client.resolve(SHAPES)
        outcomes: list[BaseException | None] = []

        def ask_until_closed() -> None:
            while True:
                try:
                    client.resolve(SHAPES)
                except conclib.Closed:
                    outcomes.append(None)
                    return
                except BaseException as e:  # noqa: BLE001 - reported below
                    outcomes.append(e)
                    return

        askers = [threading.Thread(target=ask_until_closed) for _ in range(4)]
        for t in askers:
            t.start()
        client.close()
        for t in askers:
            t.join(timeout=10)
        assert outcomes == [None] * 4, outcomes
    assert client_threads() <= before, client_threads() - before


def test_a_timeout_frees_a_rust_actor_that_cancels_on_timeout(url: str, namespace: str) -> None:
    """The README's error table: a Rust actor with `#[actor(cancel_on_timeout)]` drops a
    handler whose caller timed out (the proxy gives it up at the request's deadline): 64
    callers asking a long nap with a short timeout each end `Timeout` within it plus a
    margin, and the next ask is answered (the nap it would wait behind lasts ten minutes)."""
    timeout, margin = 0.3, 0.25

    async def run() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            await client.ask(CANCELLABLE, "cancellable.Naps", timeout=10)  # connected, resolved

            async def caller() -> float:
                started = time.monotonic()
                with pytest.raises(conclib.Timeout):
                    await client.ask(CANCELLABLE, "cancellable.Nap", {"ms": 600_000}, timeout=timeout)
                return time.monotonic() - started

            took = await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(64))), 30)
            assert max(took) <= timeout + margin, f"slowest ask took {max(took):.3f} s"
            naps_started, naps_finished = await client.ask(CANCELLABLE, "cancellable.Naps", timeout=5)
            assert naps_started >= 1
            assert naps_finished == 0, "no cancelled nap went past its await"

    asyncio.run(run())


def test_a_write_refused_by_a_replica_is_unavailable_not_a_redis_error() -> None:
    """A failover in progress answers writes ``READONLY`` (a demoted primary), ``LOADING``,
    ``CLUSTERDOWN``...: the command did not run, so the client says ``Unavailable`` (send it
    again) as for a lost connection; any other error reply stays ``RedisError``. The reply
    comes from a real redis-server made a replica of a primary that is not there."""
    import redis

    from conftest import RedisServer, free_port

    server = RedisServer()
    try:
        r = redis.Redis(port=server.port)
        r.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        with pytest.raises(redis.exceptions.ResponseError) as refused:
            r.xadd("s", {"f": "v"})
        assert isinstance(errors.from_redis_error(refused.value), errors.Unavailable)
        # The raw path reads the reply's text itself: the same refusal as the server sends it.
        import socket

        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\nf\r\n$1\r\nv\r\n")
            reply = raw.recv(256).decode()
        assert reply.startswith("-") and errors.is_failover_reply(reply[1:]), reply
        r.execute_command("REPLICAOF", "NO", "ONE")
        r.set("k", "v")
        with pytest.raises(redis.exceptions.ResponseError) as wrong:
            r.xadd("k", {"f": "v"})
        converted = errors.from_redis_error(wrong.value)
        assert isinstance(converted, errors.RedisError) and not isinstance(converted, errors.Unavailable)
        r.close()
    finally:
        server.kill()


def test_a_write_on_a_connection_closed_under_it_is_unavailable() -> None:
    """redis-py (8.1) writes through a task of its own, and its cluster client closes every
    connection of a node after a command there failed, also those other commands are
    writing on: such a write raises the transport's ``AttributeError`` (``'NoneType' object
    has no attribute 'writelines'``), which the failover example's Python callers met,
    untyped, on a Cluster. The client takes it for the lost connection it is
    (``Unavailable``); the same error from other code stays a ``RedisError``."""
    from redis.asyncio.connection import Connection

    from conftest import free_port

    conn = Connection(host="127.0.0.1", port=free_port())
    conn._writer = None  # what a close by another task leaves under the write
    with pytest.raises(AttributeError) as torn:
        asyncio.run(conn._send_packed_command([b"PING\r\n"]))
    assert "writelines" in str(torn.value)
    assert errors.is_connection_error(torn.value)
    assert isinstance(errors.from_redis_error(torn.value), errors.Unavailable)
    with pytest.raises(AttributeError) as ours:
        getattr(None, "writelines")
    converted = errors.from_redis_error(ours.value)
    assert isinstance(converted, errors.RedisError) and not isinstance(converted, errors.Unavailable)


def test_a_command_whose_cancellation_lingers_ends_at_its_deadline() -> None:
    """A command given up at its deadline is cancelled and not waited for: redis-py's
    cleanup on a cancellation (closing a connection, a cluster client closing a node's
    connections) may itself wait on the network, and the failover example's Python callers
    on a Cluster returned up to a second past their deadline. A command whose cancellation
    takes 2 s ends ``Timeout`` at its deadline, through a client connected to a real Redis."""
    from conftest import RedisServer

    server = RedisServer()
    try:

        async def main() -> float:
            client = conclib.AsyncClient(server.url)
            session = await client._current()
            cleaned = asyncio.Event()

            async def lingering() -> None:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    await asyncio.sleep(2)  # a close waiting on the network
                    cleaned.set()
                    raise

            started = time.monotonic()
            with pytest.raises(conclib.Timeout):
                await session._bounded(started + 0.1, lingering)
            took = time.monotonic() - started
            await asyncio.wait_for(cleaned.wait(), 5)  # it ended on its own meanwhile
            await client.close()
            return took

        took = asyncio.run(main())
        assert took < 0.35, took
    finally:
        server.kill()
