"""The raw connections of the hot path (one server: ``redis://``, ``rediss://``,
``redis+unix://``): the RESP parser, split anywhere; and asks against live servers through
a password, a database number, TLS and a Unix socket; a Redis that stops answering."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conclib
from conclib._raw import HIREDIS, RawConnection, RespError, pack
from conftest import RustServer, free_port, freeze, run, wait_until

BINARY = os.environ.get("CONCLIB_REDIS_SERVER", "redis-server")


class _Collect:
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def answer(self, reply: Any) -> None:
        self.into.append(reply)


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0


REPLIES = (
    b"$15\r\n1700000000000-0\r\n"  # an XADD's entry id
    b"$-1\r\n"  # nil bulk (XADD NOMKSTREAM, stream gone)
    b"*2\r\n$7\r\nns:r:ab\r\n*3\r\n$10\r\n\x00\x00\x00\x00\x00\x00\x00\x07\x00\x06\r\n$0\r\n\r\n$3\r\na\r\n\r\n"
    b"*-1\r\n"  # BLMPOP timed out
    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    b"+OK\r\n"
    b":42\r\n"
    b"*4\r\n$-1\r\n:5\r\n$1\r\nx\r\n*1\r\n+y\r\n"  # mixed items
)
EXPECTED: list[Any] = [
    b"1700000000000-0",
    None,
    [b"ns:r:ab", [b"\x00\x00\x00\x00\x00\x00\x00\x07\x00\x06", b"", b"a\r\n"]],
    None,
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    b"OK",
    42,
    [None, 5, b"x", [b"y"]],
]


# Both reply parsers: this package's own and hiredis's (when installed: the ``fast`` extra).
PARSERS = [pytest.param(False, id="python"), pytest.param(True, id="hiredis", marks=pytest.mark.skipif(
    not HIREDIS, reason="hiredis is not installed"))]


def _connection(replies: list[Any], n: int, use_hiredis: bool = False) -> RawConnection:
    conn = RawConnection(use_hiredis)
    assert (conn.reader is not None) == use_hiredis
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    conn.send(b"", [_Collect(replies) for _ in range(n)])
    return conn


def _plain(replies: list[Any]) -> list[Any]:
    return [r.message if isinstance(r, RespError) else r for r in replies]


@pytest.mark.parametrize("use_hiredis", PARSERS)
def test_replies_are_parsed_whole_or_split_anywhere(use_hiredis: bool) -> None:
    for cut in range(len(REPLIES) + 1):
        replies: list[Any] = []
        conn = _connection(replies, len(EXPECTED), use_hiredis)
        conn.data_received(REPLIES[:cut])
        conn.data_received(REPLIES[cut:])
        assert _plain(replies) == EXPECTED, cut
        assert all(isinstance(r, RespError) for r, e in zip(replies, EXPECTED) if isinstance(e, str))
        assert not conn.waiting and not conn.buf
    replies = []
    conn = _connection(replies, len(EXPECTED), use_hiredis)
    for i in range(len(REPLIES)):
        conn.data_received(REPLIES[i : i + 1])
    assert _plain(replies) == EXPECTED


@pytest.mark.parametrize("use_hiredis", PARSERS)
def test_a_large_bulk_string_arrives_in_pieces(use_hiredis: bool) -> None:
    body = os.urandom(3 << 20)
    data = b"*2\r\n$3\r\nkey\r\n*1\r\n$%d\r\n%b\r\n" % (len(body), body)
    replies: list[Any] = []
    conn = _connection(replies, 1, use_hiredis)
    for i in range(0, len(data), 65536):
        conn.data_received(data[i : i + 65536])
    assert replies == [[b"key", [body]]]


@pytest.mark.parametrize("use_hiredis", PARSERS)
def test_garbage_drops_the_connection_and_fails_the_waiting(use_hiredis: bool) -> None:
    replies: list[Any] = []
    conn = _connection(replies, 2, use_hiredis)
    conn.data_received(b"?what\r\n")
    assert conn.closed and conn.transport.aborted  # type: ignore[union-attr]
    assert len(replies) == 2 and all(isinstance(r, ConnectionError) for r in replies)
    # A reply nobody asked for, likewise.
    conn = _connection([], 0, use_hiredis)
    conn.data_received(b"+OK\r\n")
    assert conn.closed


def test_commands_are_packed_in_resp() -> None:
    assert pack("XADD", "ns:sys:s:req", "*", b"\x00\xff", 7, "ünï") == (
        b"*6\r\n$4\r\nXADD\r\n$12\r\nns:sys:s:req\r\n$1\r\n*\r\n$2\r\n\x00\xff\r\n$1\r\n7\r\n"
        b"$5\r\n\xc3\xbcn\xc3\xaf\r\n"
    )


# -- live servers -------------------------------------------------------------------------------


class Server:
    """One redis-server with extra arguments, killed by PID at the end."""

    def __init__(self, *args: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="conclib-py-raw-"))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait(self, *auth: str) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError((self.dir / "redis.log").read_text()[-2000:])
            done = subprocess.run(["redis-cli", "-p", str(self.port), *auth, "PING"], capture_output=True,
                                  text=True, timeout=10)
            return "PONG" in done.stdout

        wait_until(up, 10, f"redis-server on {self.port}")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def ask_through(client_url: str, server_url: str, namespace: str, **options: Any) -> None:
    """The Rust server serves through ``server_url``; the Python clients ask through
    ``client_url`` (the raw path)."""
    server = RustServer(server_url, namespace)
    try:

        async def main() -> None:
            async with conclib.AsyncClient(client_url, namespace=namespace, **options) as client:
                assert await client.ask("py:shapes", "Double", 21, timeout=5) == 42
                assert await asyncio.gather(*(client.ask("py:shapes", "Double", n) for n in range(50))) == [
                    2 * n for n in range(50)
                ]
                await client.tell("py:counter", "Record", 3)
                with pytest.raises(conclib.UnknownUrn):
                    await client.ask("py:nobody", "Hello")

        run(main())
        with conclib.Client(client_url, namespace=namespace, **options) as blocking:
            assert blocking.ask("conf:counter", "test.Echo", "hi") == "hi"
    finally:
        server.close()


def test_password_and_database() -> None:
    server = Server("--requirepass", "s3cret")
    try:
        server.wait("-a", "s3cret", "--no-auth-warning")
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        ask_through(url, url, "rawdb")
        # The keys are in database 3.
        keys = subprocess.run(["redis-cli", "-p", str(server.port), "-a", "s3cret", "--no-auth-warning", "-n", "3",
                               "KEYS", "rawdb:*"], capture_output=True, text=True, timeout=10).stdout
        assert "rawdb:sys:" in keys
        # A wrong password: Unavailable, typed.
        with pytest.raises(conclib.Unavailable):
            run(conclib.connect(f"redis://:wrong@127.0.0.1:{server.port}", connect_timeout=2))
    finally:
        server.close()


def test_unix_socket() -> None:
    sock = Path(tempfile.mkdtemp(prefix="conclib-py-sock-")) / "redis.sock"
    server = Server("--unixsocket", str(sock), "--unixsocketperm", "700")
    try:
        server.wait()
        ask_through(f"redis+unix://{sock}", f"redis://127.0.0.1:{server.port}", "rawunix")
    finally:
        server.close()
        shutil.rmtree(sock.parent, ignore_errors=True)


@pytest.fixture()
def tls_files() -> Iterator[Path]:
    """A CA and a server certificate for 127.0.0.1 (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = Path(tempfile.mkdtemp(prefix="conclib-py-tls-"))

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=conclib test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    # Another CA, which did not sign the server's certificate.
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.crt", "-days", "2",
        "-subj", "/CN=another CA")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_tls(tls_files: Path) -> None:
    tls_port = free_port()
    server = Server("--tls-port", str(tls_port), "--tls-cert-file", str(tls_files / "server.crt"),
                    "--tls-key-file", str(tls_files / "server.key"), "--tls-ca-cert-file", str(tls_files / "ca.crt"),
                    "--tls-auth-clients", "no")
    try:
        server.wait()
        # The Rust server on the plain port, the Python client through TLS.
        ask_through(f"rediss://127.0.0.1:{tls_port}", f"redis://127.0.0.1:{server.port}", "rawtls",
                    tls_ca_file=str(tls_files / "ca.crt"))
        # A certificate the CA given did not sign: refused.
        with pytest.raises(conclib.Unavailable):
            run(conclib.connect(f"rediss://127.0.0.1:{tls_port}", tls_ca_file=str(tls_files / "other.crt"),
                                connect_timeout=2))
    finally:
        server.close()


def test_a_redis_that_stops_answering_is_dropped_after_the_command_timeout(raw_redis: Any, redis_server: Any) -> None:
    """Redis frozen (SIGSTOP): an ask waiting for its request's XADD answer fails
    ``Unavailable`` once the connection stayed silent ``command_timeout`` + 2 s (the
    watchdog; redis-py's socket timeout before), not at its deadline; after SIGCONT the
    client works again."""
    server = Server()
    try:
        server.wait()
        import redis

        r = redis.Redis(port=server.port)
        ns = f"frozen-{uuid.uuid4().hex[:6]}"
        r.set(f"{ns}:urn:svc", "fake")
        r.xgroup_create(f"{ns}:sys:fake:req", "g", id="$", mkstream=True)

        async def main() -> None:
            async with conclib.AsyncClient(f"redis://127.0.0.1:{server.port}", namespace=ns,
                                           command_timeout=0.5) as client:
                await client.resolve("svc")
                freeze(server.proc.pid)
                try:
                    started = time.monotonic()
                    with pytest.raises(conclib.Unavailable):
                        await client.ask("svc", "Hello", timeout=8)
                    took = time.monotonic() - started
                    assert 2.4 < took < 4.5, took
                finally:
                    os.kill(server.proc.pid, signal.SIGCONT)
                # Back: the request reaches the stream again.
                deadline = time.monotonic() + 10
                while True:
                    try:
                        await client.tell("svc", "Hello")
                        break
                    except conclib.Unavailable:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.05)

        run(main())
        assert r.xlen(f"{ns}:sys:fake:req") >= 1
        r.close()
    finally:
        server.close()


def test_a_shorter_ask_sharing_a_lookup_does_not_end_a_longer_one(raw_redis: Any, redis_server: Any) -> None:
    """Two asks of one URN not yet resolved share its lookup; Redis is frozen. The ask with
    the shorter timeout ends at its deadline; the other goes on looking up until its own,
    not ending at the first one's."""
    server = Server()
    try:
        server.wait()
        ns = f"shared-{uuid.uuid4().hex[:6]}"

        async def main() -> None:
            async with conclib.AsyncClient(f"redis://127.0.0.1:{server.port}", namespace=ns,
                                           command_timeout=10) as client:
                await client.connect()
                freeze(server.proc.pid)
                try:
                    async def timed(timeout: float) -> tuple[BaseException | None, float]:
                        started = time.monotonic()
                        try:
                            await client.ask("svc", "Hello", timeout=timeout)
                            return None, time.monotonic() - started
                        except conclib.ConclibError as e:
                            return e, time.monotonic() - started

                    (short_err, short), (long_err, long) = await asyncio.gather(timed(0.5), timed(3))
                finally:
                    os.kill(server.proc.pid, signal.SIGCONT)
                assert isinstance(short_err, conclib.Timeout), short_err
                assert isinstance(long_err, (conclib.Timeout, conclib.Unavailable)), long_err
                assert long >= 2.5, f"the 3 s ask ended after {long:.3f} s ({long_err!r})"

        run(main())
    finally:
        server.close()


def test_closing_while_asks_connect_or_resolve_fails_them_closed(raw_redis: Any, redis_server: Any) -> None:
    """Redis frozen (SIGSTOP) so that asks hang where they are: connecting (the client's
    first use) or resolving their URN. Closing the client ends every one of them ``Closed``
    (not a ``CancelledError`` in tasks nobody cancelled, nor ``Unavailable``)."""
    server = Server()
    try:
        server.wait()
        ns = f"closing-{uuid.uuid4().hex[:6]}"
        url = f"redis://127.0.0.1:{server.port}"

        async def asks_then_close(client: conclib.AsyncClient) -> list[BaseException | None]:
            async def one() -> BaseException | None:
                try:
                    await client.ask("svc", "Hello", timeout=20)
                    return None
                except BaseException as e:  # noqa: BLE001 - what it raises is the point
                    return e

            tasks = [asyncio.ensure_future(one()) for _ in range(3)]
            await asyncio.sleep(0.2)  # they are waiting on the frozen Redis by now
            await client.close()
            return list(await asyncio.wait_for(asyncio.gather(*tasks), 10))

        async def main() -> None:
            # Connecting: the first use of the client.
            connecting = conclib.AsyncClient(url, namespace=ns, command_timeout=10)
            freeze(server.proc.pid)
            try:
                ended = await asks_then_close(connecting)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            assert all(isinstance(e, conclib.Closed) for e in ended), ended
            # Resolving: connected, then Redis frozen while the asks look their URN up.
            resolving = conclib.AsyncClient(url, namespace=ns, command_timeout=10)
            await resolving.connect()
            freeze(server.proc.pid)
            try:
                ended = await asks_then_close(resolving)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            assert all(isinstance(e, conclib.Closed) for e in ended), ended

        run(main())
    finally:
        server.close()


def test_a_refused_xadd_fails_its_own_request_only(raw_redis: Any, redis_server: Any) -> None:
    """Redis refuses one request's XADD (its stream key holds a string): that ask or tell
    fails ``RedisError``; requests written with it to a good stream go through."""
    ns = f"refused-{uuid.uuid4().hex[:6]}"
    raw_redis.set(f"{ns}:urn:bad", "bad")
    raw_redis.set(f"{ns}:sys:bad:req", "not a stream")
    raw_redis.set(f"{ns}:urn:good", "good")
    raw_redis.xgroup_create(f"{ns}:sys:good:req", "g", id="$", mkstream=True)

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            await client.resolve("bad")
            await client.resolve("good")
            bad_ask, bad_tell, good_tell = await asyncio.gather(
                client.ask("bad", "Hello", timeout=5), client.tell("bad", "Hello"), client.tell("good", "Hello"),
                return_exceptions=True,
            )
            assert isinstance(bad_ask, conclib.RedisError) and "WRONGTYPE" in str(bad_ask), bad_ask
            assert isinstance(bad_tell, conclib.RedisError), bad_tell
            assert good_tell is None

    run(main())
    assert raw_redis.xlen(f"{ns}:sys:good:req") == 1


def test_a_deadline_answer_after_a_lost_connection_is_unavailable(raw_redis: Any, redis_server: Any) -> None:
    """The connection is lost while an ask waits; then the proxy's own deadline answer
    (status 5, which it sends a moment before the client's deadline) comes: the ask ends
    ``Unavailable``, as one that reached its deadline after a loss does, not ``Timeout``. On
    a Redis of its own: every client connection of it is killed."""
    import redis
    from conclib.protocol import encode_reply

    server = Server()
    try:
        server.wait()
        raw = redis.Redis(port=server.port)
        ns = f"lost-{uuid.uuid4().hex[:6]}"
        key = f"{ns}:sys:fake:req"
        raw.xgroup_create(key, "fake", id="$", mkstream=True)
        raw.set(f"{ns}:urn:svc", "fake", px=60_000)

        def next_request() -> dict[str, bytes]:
            answer = raw.xreadgroup("fake", "fake", {key: ">"}, count=1, block=5000)
            assert answer, f"no request reached {key}"
            [(_, [(_, fields)])] = answer
            return {k.decode(): v for k, v in fields.items()}

        async def main() -> None:
            async with conclib.AsyncClient(f"redis://127.0.0.1:{server.port}", namespace=ns) as client:
                ask = asyncio.create_task(client.ask("svc", "Hello", timeout=10))
                request = await asyncio.to_thread(next_request)
                # Every client connection but this one: the client's reader and writer.
                raw.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                raw.rpush(request["reply"], encode_reply(int(request["id"]), 5, b"no answer in time"))
                with pytest.raises(conclib.Unavailable):
                    await asyncio.wait_for(ask, 15)

        run(main())
        raw.close()
    finally:
        server.close()


def test_connecting_to_a_frozen_redis_fails_within_the_connect_timeout(raw_redis: Any, redis_server: Any) -> None:
    """Redis frozen (SIGSTOP): ``connect`` fails ``Unavailable`` at its ``connect_timeout``,
    not a second later (nothing to clean up in Redis from a session that never connected)."""
    server = Server()
    try:
        server.wait()

        async def main() -> float:
            client = conclib.AsyncClient(f"redis://127.0.0.1:{server.port}", namespace="frozen",
                                         connect_timeout=0.5)
            freeze(server.proc.pid)
            try:
                started = time.monotonic()
                with pytest.raises(conclib.Unavailable):
                    await client.connect()
                return time.monotonic() - started
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
                await client.close()

        took = run(main())
        assert took < 0.9, f"connect failed after {took:.3f} s with a 0.5 s connect_timeout"
    finally:
        server.close()


def test_a_lookup_redis_does_not_answer_says_the_command_timeout(raw_redis: Any, redis_server: Any) -> None:
    """Redis frozen (SIGSTOP): ``resolve`` fails ``Timeout`` at the client's
    ``command_timeout``, and says that timeout (it said 0.000 s)."""
    server = Server()
    try:
        server.wait()

        async def main() -> tuple[conclib.Timeout, float]:
            async with conclib.AsyncClient(f"redis://127.0.0.1:{server.port}", namespace="frozen",
                                           command_timeout=0.5) as client:
                await client.connect()
                freeze(server.proc.pid)
                try:
                    started = time.monotonic()
                    with pytest.raises(conclib.Timeout) as raised:
                        await client.resolve("svc")
                    return raised.value, time.monotonic() - started
                finally:
                    os.kill(server.proc.pid, signal.SIGCONT)

        error, took = run(main())
        assert error.timeout == 0.5, error
        assert "0.500 s" in str(error) and "svc" in str(error), str(error)
        assert 0.4 < took < 1.5, took
    finally:
        server.close()


@pytest.mark.parametrize("high", [False, True])
@pytest.mark.parametrize("urn", ["svc", "user:100%", "ünï %d %b"])
def test_an_asks_request_is_packed_as_the_protocol_lists_its_fields(high: bool, urn: str) -> None:
    """The hot path's request (a template per URN, message and priority, filled in per ask)
    is byte for byte the generic packing of ``protocol.request_fields``: alone an ``XADD``,
    several to one stream one ``EVAL`` of the Rust client's script."""
    from conclib._raw import bulk
    from conclib._raw_path import Request, fields_count, pack_batch, pack_command, pack_request, pack_xadd, request_template
    from conclib.protocol import request_fields

    key, reply, tp = "ns:sys:s%1:req", "ns:reply:ab", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    template = request_template(bulk(urn), bulk("Add%s"), b"$5\r\nreply\r\n" + bulk(reply), high)
    entries: list[Request] = []
    generic: list[bytes | str | int] = []
    for request_id, ttl, body in [(1, 1, b""), (2**63, 4_294_967_295, b"\xc0%b"), (42, 1500, os.urandom(300))]:
        fields = request_fields(request_id=request_id, urn=urn, message="Add%s", ttl=ttl, reply=reply,
                                priority_high=high, traceparent=tp, codec="msgpack", body=body)
        packed = pack_request(template, request_id, b"%d" % ttl, tp.encode(), body)
        assert fields_count(True, high) == len(fields)
        assert pack_xadd(bulk(key), packed, len(fields)) == pack("XADD", key, "NOMKSTREAM", "*", *fields)
        entries.append((bulk(key), packed, len(fields), len(body), request_id, None))  # type: ignore[arg-type]
        assert pack_command(bulk(key), entries[-1:]) == pack("XADD", key, "NOMKSTREAM", "*", *fields)
        generic += [len(fields), *fields]
    assert pack_batch(bulk(key), entries) == pack("EVAL", SEND_SCRIPT, 1, key, *generic)
    assert pack_command(bulk(key), entries) == pack("EVAL", SEND_SCRIPT, 1, key, *generic)


def _rust_send_script() -> str:
    source = (Path(__file__).resolve().parents[2] / "conclib-redis" / "src" / "protocol" / "scripts.rs").read_text()
    start = source.index('pub(crate) const SEND_SCRIPT: &str = r"') + len('pub(crate) const SEND_SCRIPT: &str = r"')
    return source[start : source.index('";', start)]


SEND_SCRIPT = _rust_send_script()


def test_the_batch_script_is_the_rust_clients() -> None:
    from conclib._raw import bulk
    from conclib._raw_path import _SEND_SCRIPT

    assert _SEND_SCRIPT == bulk(SEND_SCRIPT)
