"""Route hints: a client whose cached route names a member that no longer holds a URN (it
moved: a drain, a rebalance) learns the holder from the first answer passed on. The member
the route named passes the ask on, the holder (a real Rust server) answers naming itself
(``protocol.HOLDER_FLAG``), and the client's next asks go straight there instead of through
the member it cached, as the Rust client's (``tests/scale_out/route_hint.rs``). On one
server (the raw path); through Sentinel or Cluster the replies are read by the same
``_exchange.reply_parts``."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import conclib
from conclib.protocol import HOLDER_FLAG, Status, decode_reply, encode_reply, encode_reply_with_holder, split_reply
from conftest import RedisServer, RustServer, run

TIMEOUT = 5.0
MARGIN = 1.0


def test_a_reply_frame_with_a_route_hint_splits_into_its_parts() -> None:
    frame = encode_reply_with_holder(9, Status.OK, "s2", b"ok")
    assert frame[8] == HOLDER_FLAG
    assert split_reply(frame) == (9, 0, b"s2", 12)
    assert decode_reply(frame) == (9, 0, b"ok")
    # Cut short inside the hint: a broken frame.
    assert split_reply(frame[:10]) is None
    assert split_reply(frame[:9]) is None
    # A holder too long for its length byte: a plain frame.
    assert encode_reply_with_holder(9, Status.OK, "s" * 256, b"ok") == encode_reply(9, Status.OK, b"ok")


def _entries_added(raw_redis: Any, stream: str) -> int:
    """How many entries were ever added to ``stream``."""
    info = raw_redis.execute_command("XINFO", "STREAM", stream)
    return int(info.get(b"entries-added", info.get("entries-added")))


def test_a_client_told_who_holds_a_urn_sends_there_not_through_its_stale_route(
    redis_server: RedisServer, raw_redis: Any
) -> None:
    """Two Rust members of ``conf:pat:{id}``; a client caching its routes for a minute, its
    route to a URN naming the member that does not hold it. 64 asks at once go through that
    member, which passes each on to the holder; the next 64 go straight to the holder: not
    one more entry in the other member's stream."""
    url = redis_server.url
    ns = f"rthint-{uuid.uuid4().hex[:6]}"
    servers = [RustServer(url, ns, "rh-a"), RustServer(url, ns, "rh-b")]
    urn = "conf:pat:hinted"
    key = f"{ns}:urn:{urn}"
    try:

        async def asked_at_once(client: conclib.AsyncClient) -> None:
            async def one(n: int) -> float:
                started = time.monotonic()
                await client.ask(urn, "test.Add", n, timeout=TIMEOUT)
                return time.monotonic() - started

            took = await asyncio.gather(*(one(n) for n in range(64)))
            assert max(took) < TIMEOUT + MARGIN, max(took)

        async def main() -> tuple[str, str, int, int, int]:
            async with conclib.AsyncClient(url, namespace=ns, resolve_cache_ttl=60.0) as client:
                await client.ask(urn, "test.Add", 1, timeout=TIMEOUT)
                holder = raw_redis.get(key).decode()
                stale = "rh-b" if holder == "rh-a" else "rh-a"
                ttl = raw_redis.pttl(key)
                raw_redis.set(key, stale)
                assert await client.resolve(urn) == stale
                raw_redis.set(key, holder, px=max(ttl, 1000))
                stale_stream, holder_stream = f"{ns}:sys:{stale}:req", f"{ns}:sys:{holder}:req"
                before = _entries_added(raw_redis, stale_stream)
                await asked_at_once(client)
                passed_on = _entries_added(raw_redis, stale_stream) - before
                stale_before = _entries_added(raw_redis, stale_stream)
                holder_before = _entries_added(raw_redis, holder_stream)
                await asked_at_once(client)
                after = _entries_added(raw_redis, stale_stream) - stale_before
                direct = _entries_added(raw_redis, holder_stream) - holder_before
                return holder, stale, passed_on, after, direct

        holder, stale, passed_on, after, direct = run(main(), timeout=60)
        assert 1 <= passed_on <= 64, f"the first asks went through {stale}: {passed_on}"
        assert after == 0, f"once told, {after} still went through {stale}"
        assert direct >= 64, f"each went to {holder}: {direct}"
        print(f"RESULT test=py_route_hint holder={holder} stale={stale} passed_on_first={passed_on} passed_on_after={after}")
    finally:
        for s in servers:
            s.stop()


def test_a_note_from_a_drain_turns_a_clients_route_to_the_member_it_handed_the_urn_to(
    redis_server: RedisServer, raw_redis: Any
) -> None:
    """Hand-over notes (``Keys.moves``): two Rust members of ``conf:pat:{id}`` holding a few
    URNs each, a client caching its routes for a minute, its route to one URN naming the
    member holding it. That member drained (SIGTERM) hands the URN to the other one, and
    publishes the note in the same step: the client's route names the other member before it
    asks again (without a look-up, and without asking the drained one), and 64 asks at once
    are answered there."""
    url = redis_server.url
    ns = f"rtmove-{uuid.uuid4().hex[:6]}"
    servers = {s: RustServer(url, ns, s) for s in ("mv-a", "mv-b")}
    urns = [f"conf:pat:moving{i}" for i in range(8)]
    try:

        async def main() -> tuple[str, str, int]:
            async with conclib.AsyncClient(url, namespace=ns, resolve_cache_ttl=60.0) as client:
                for u in urns:
                    await client.ask(u, "test.Add", 1, timeout=TIMEOUT)
                holders = {u: raw_redis.get(f"{ns}:urn:{u}").decode() for u in urns}
                assert set(holders.values()) == {"mv-a", "mv-b"}, holders
                urn = urns[0]
                holder = holders[urn]
                other = "mv-b" if holder == "mv-a" else "mv-a"
                assert await client.resolve(urn) == holder
                session = client._session
                assert session is not None
                await asyncio.wait_for(session.moves_subscribed.wait(), TIMEOUT)
                session.moves_noted.clear()
                seen = session.moves_seen
                await asyncio.to_thread(servers[holder].stop)
                await asyncio.wait_for(session.moves_noted.wait(), TIMEOUT)
                assert raw_redis.get(f"{ns}:urn:{urn}").decode() == other, "handed to the member left"
                assert session.routes.cache[urn].system == other, "the route follows the note"
                started = time.monotonic()
                answers = await asyncio.gather(
                    *(client.ask(urn, "test.Add", 0, timeout=TIMEOUT) for _ in range(64))
                )
                took = time.monotonic() - started
                assert took < TIMEOUT + MARGIN, took
                assert len(set(answers)) == 1, answers
                return holder, other, session.moves_seen - seen

        holder, other, notes = run(main(), timeout=60)
        assert notes >= 1
        print(f"RESULT test=py_move_note drained={holder} now={other} notes={notes}")
    finally:
        for s in servers.values():
            s.stop()


def test_a_clients_note_subscription_comes_back_after_redis_drops_it(
    redis_server: RedisServer, raw_redis: Any
) -> None:
    """The hand-over notes' connection dropped by Redis (``CLIENT KILL TYPE pubsub``, as
    Redis's output limit for a subscriber that falls behind does): the client subscribes
    again, and follows the next note into its route (a note in the protocol's form:
    ``target \\n {ns}:urn:{urn}``); a note for a URN it has no route to adds none."""
    url = redis_server.url
    ns = f"rtnote-{uuid.uuid4().hex[:6]}"
    urn, other = "conf:pat:noted", "conf:pat:never"

    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=ns, resolve_cache_ttl=60.0) as client:
            raw_redis.set(f"{ns}:urn:{urn}", "sys-a")
            assert await client.resolve(urn) == "sys-a"
            session = client._session
            assert session is not None
            await asyncio.wait_for(session.moves_subscribed.wait(), TIMEOUT)
            assert raw_redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
            # Published again until read: notes sent before the subscription is back are lost.
            deadline = time.monotonic() + TIMEOUT
            while session.routes.cache[urn].system != "sys-b":
                assert time.monotonic() < deadline, "no note followed after the connection was dropped"
                session.moves_noted.clear()
                raw_redis.publish(f"{ns}:moves", f"sys-b\n{ns}:urn:{other}")
                raw_redis.publish(f"{ns}:moves", f"sys-b\n{ns}:urn:{urn}")
                try:
                    await asyncio.wait_for(session.moves_noted.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
            assert other not in session.routes.cache

    run(main(), timeout=30)
