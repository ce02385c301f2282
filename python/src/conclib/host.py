"""Serving Python actors through Redis, beside Rust systems: :class:`ActorHost`.

A host is a system of its own (its id, its lease, its request stream), speaking the Rust
proxy's wire protocol, version 1: a Rust or Python client asks its actors as it asks a Rust
actor. It serves

- an actor for a fixed URN (:meth:`ActorHost.serve`): the URN key names this system;
- actors for a URN pattern (:meth:`ActorHost.serve_pattern`): the host joins the pattern's
  group (the group Rust systems join with ``ProxyHandle::activate``), reads the group's
  streams as one member, activates a URN on its first request by claiming its URN key with
  the protocol's claim script (the Rust members' own Lua, ``_lua.py``), and passivates it
  after idle. A URN another member holds is passed on to that member (the forward script);
  requests placed here by a Rust member are read from this member's pending list.

Every request is handed to its actor only while the host's lease is surely held (its fence);
a host whose lease another instance took stops serving, and one whose lease lapsed (paused)
claims again the URN keys it may have lost before it counts as held (those its system's
record of keys given away names: ``_host_lease.py``, ``_host_urn_keys.py``). When a host
dies, the group's other members (Rust or Python) take its URNs over: its member lease and
system lease lapse (at once on the same host: they name a dead process), and they claim its
pending group requests and move those left in its stream (the protocol's takeover script).

A pattern's actor keeps its state in the fenced state store (``Actor.store``: the Rust
``StateStore``'s keys and scripts, ``_host_store.py``), so a URN moving between Python and
Rust members keeps it, each request handled once; any actor reaches the host's client
(``Actor.client``: publish, ask, tell), registers reminders for its URN (``Actor.remind``;
ticks delivered as ``ReminderTick`` asks by any reminder poller of the namespace: a Rust
system's ``ReminderPoller``, or the host's own with ``HostConfig(reminders=...)``,
``_host_reminders.py``), and receives a topic's events (:meth:`ActorHost.subscribe_actor`).

A URN nobody holds is activated on the member its pattern's placement chooses
(``serve_pattern(placement=...)``, ``_host_placement.py``: Rust's ``Spread`` by default, or
``HashOfUrn``), a Rust member's placement choosing among the Python members as among its
peers (each writes its count in the pattern's directory).

This module holds the host's registration, its life (its lease, its lanes, start and stop)
and its upkeep; what it does with each request it reads (the fence, dispatch, activation,
passivation) is its ``Serving`` (``_host_serving.py``), made at start, and its settings
``HostConfig`` are in ``_host_config.py``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from ._host_config import HostConfig, MemoryShedding
from ._host_lane import Lane
from ._host_group import claim_from_gone, close_drained, more_pending, sweep_own_stream, take_over_gone
from ._host_lease import Lease, Scripts
from ._host_versions import advertise, unlist
from ._host_urn_keys import UrnKeys
from ._tasks import stop_tasks
from ._host_mailbox import Mailbox, idle
from ._host_overload import Counts
from ._host_placement import PLACEMENTS, stop_targets
from ._host_patterns import Pattern, parse_pattern
from ._host_reminders import ReminderPoller, ReminderPollerOptions
from ._host_serving import RUST_ACTIVATION_URN_TTL as RUST_ACTIVATION_URN_TTL  # also ``conclib.host``'s
from ._host_serving import Served, Serving
from ._host_store import Fenced, StateStore
from ._host_topics import ActorSubscription
from .actor import Actor, HandlerSpec, handlers_of
from .client import AsyncClient
from .errors import ConfigError
from .protocol import Keys, check_name, pattern_group, shared_group
from .topics import DEFAULT_GROUP
from .url import build_client, close_client, parse_url

__all__ = ["ActorHost", "Fenced", "HostConfig", "MemoryShedding", "ReminderPoller", "ReminderPollerOptions", "StateStore"]

log = logging.getLogger("conclib.host")


# The bound of each of the host's own commands (seconds), and of a wait for a free
# connection of its pool: redis-py's default socket timeout.
HOST_COMMAND_S = 5.0

# How often the upkeep looks for gone members at most (seconds).
LOOK_AT_MOST = 0.1

# How long the clients' routes to this host looked up before a stop may still be cached
# (seconds): the Rust and Python clients' default ``resolve_cache_ttl``.
ROUTES_CACHED = 1.0

# A stop's sweeps of its stream and attempts to delete it back to back, then this far apart
# (seconds) until the routes cached before its releases have lapsed (the Rust drain's).
CLOSE_ATTEMPTS = 3
CLOSE_PAUSE = 0.005

# How long closing each of the host's clients may take at the end of a stop (seconds).
CLOSE_AT_MOST = 2.0

# How long a stop waits for the activations and reroutes under way, and then for each actor
# to finish what it took (seconds; a reroute waits at most for its request's deadline).
FINISH_AT_MOST = 5.0


class ActorHost:
    """Serves Python actors on the Redis at ``url``.

    ::

        host = ActorHost("redis://127.0.0.1:6379", namespace="shop")
        host.serve("shop:counter", Counter)
        host.serve_pattern("cart:{id}", Cart, idle_after=60)
        async with host:
            await host.wait()   # until stopped, or its lease was lost
    """

    def __init__(self, url: str, config: HostConfig | None = None, **settings: Any) -> None:
        cfg = config or HostConfig(**settings)
        for what, name in (("namespace", cfg.namespace), ("system id", cfg.system)):
            if name is not None and (why := check_name(what, name)) is not None:
                raise ValueError(why)
        self.url = url
        self.config = cfg
        self.system = cfg.system or f"py-{secrets.token_hex(6)}"
        self.keys = Keys(cfg.namespace)
        self._fixed_spec: dict[str, tuple[Callable[[str], Actor], dict[str, HandlerSpec]]] = {}
        self._fixed: dict[str, Served] = {}
        self._patterns: list[Pattern] = []
        self._shared: list[str] = []
        self._conflicts: dict[str, str] = {}
        self._urn_keys: UrnKeys | None = None
        # Dispatch, activation, passivation: made at start.
        self._serving: Serving | None = None
        self._lanes: list[Lane] = []
        self._group_lanes: dict[str, Lane] = {}
        self._member_leases: list[Lease] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._stopping = False
        self.redis: Any = None
        self._lane_redis: Any = None
        self.lease: Lease | None = None
        self.scripts: Scripts | None = None
        self.client: AsyncClient | None = None
        self.subscriptions: list[ActorSubscription] = []
        self.reminder_poller: ReminderPoller | None = None

    # Registration.

    def serve(self, urn: str, actor: Callable[[str], Actor]) -> None:
        """Serves one actor (made by ``actor(urn)``, an :class:`Actor` subclass or a factory)
        at the fixed URN ``urn``."""
        cls = actor if isinstance(actor, type) else type(actor(urn))
        self._fixed_spec[urn] = (actor, handlers_of(cls))

    def serve_group(self, urn: str, actor: Callable[[str], Actor]) -> None:
        """Serves ``urn`` as one member of its group (``~{urn}``): every member has its own
        actor for it and reads the group's stream, each request going to one of them (the
        group Rust systems join with ``ProxyHandle::join``)."""
        self.serve(urn, actor)
        self._shared.append(urn)

    def serve_pattern(self, pattern: str, actor: Callable[[str], Actor], *, idle_after: float = 60.0,
                      actor_class: type[Actor] | None = None, placement: str = "spread",
                      max_pending_per_urn: int | None = None, max_pending: int | None = None) -> None:
        """Activates ``actor(urn)`` for the URNs of ``pattern`` (``"user:{id}"``) on their
        first request, beside the pattern's other members; passivated after ``idle_after``
        seconds without a request. ``placement``: which member activates a URN nobody holds
        when this one reads its first request (``_host_placement.py``): ``"spread"`` (the
        member with the fewest activations, Rust's default ``Placement::Spread``),
        ``"hash"`` (``Placement::HashOfUrn``) or ``"here"``. ``max_pending_per_urn``: the
        pattern's own limit of requests pending for one of its URNs, instead of the host's
        ``HostConfig.max_pending_per_urn``; ``max_pending``: for all of its URNs together
        (refused ``Overloaded``, scope ``pattern``), as the Rust ``Activator``'s."""
        if placement not in PLACEMENTS:
            raise ValueError(f"placement is one of {PLACEMENTS}, not {placement!r}")
        for name, limit in (("max_pending_per_urn", max_pending_per_urn), ("max_pending", max_pending)):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} is at least 1, not {limit}")
        prefix = parse_pattern(pattern)
        cls = actor_class or (actor if isinstance(actor, type) else None)
        if cls is None:
            raise TypeError("serve_pattern needs the actor's class: pass actor_class= with a factory")
        self._patterns.append(Pattern(prefix, actor, handlers_of(cls), idle_after, pattern_group(prefix), placement,
                                      max_pending_per_urn, max_pending))

    def subscribe_actor(self, topic: str, urn: str, message: str, *, durable: bool = False,
                        group: str = DEFAULT_GROUP) -> ActorSubscription:
        """From :meth:`start` on, sends each event of ``topic`` to the actor at ``urn`` (served
        here or anywhere) as ``message``: told for a live topic, asked for a durable one (as
        one subscriber of ``group``: acknowledged once the handler returned), as the Rust
        ``Topics::subscribe_actor``."""
        sub = ActorSubscription(topic, urn, message, durable, group)
        self.subscriptions.append(sub)
        return sub

    # Life.

    def stats(self) -> dict[str, int]:
        """What the host counts since it started: ``activations`` (alive now), ``activated``
        (made in all), ``overloaded_asks`` and ``overloaded_tells`` (refused by a pending
        limit: ``HostConfig.max_pending_per_urn``, ``max_pending``, a pattern's), ``evicted``
        (by ``HostConfig.activation_cap``), ``shed`` (by ``HostConfig.memory``). All zero
        before :meth:`start`."""
        serving = self._serving
        counts = serving.counts if serving is not None else Counts()
        return {
            "activations": sum(len(p.live) for p in self._patterns),
            "activated": serving.activations_made if serving is not None else 0,
            "overloaded_asks": counts.overloaded_asks,
            "overloaded_tells": counts.overloaded_tells,
            "evicted": counts.evicted,
            "shed": counts.shed,
        }

    async def __aenter__(self) -> ActorHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


    async def start(self) -> None:
        """Takes the system's lease, claims the fixed URNs, joins the patterns' groups and
        starts reading."""
        cfg = self.config
        target = parse_url(self.url)
        if target.kind == "cluster":
            raise ConfigError(
                "an ActorHost serves on one Redis server or the primary of a Sentinel URL; "
                "a Cluster URL is for clients"
            )
        # Built as the client builds its own, for every URL kind (TLS, a Unix socket, the
        # primary the sentinels name, looked up again after a promotion); a burst of
        # activations waits for a free connection of the bounded pool.
        # The host's own commands (leases, claims, state) each fail after HOST_COMMAND_S on a
        # server that stopped answering, as redis-py's default does: a renewal or a save
        # sent to a frozen server gives up and is tried again.
        self.redis = build_client(target, connect_timeout=5.0, command_timeout=HOST_COMMAND_S,
                                  max_connections=cfg.max_connections)
        # The lanes' reads and answers on connections of their own without a socket timeout:
        # redis-py sends each command under a socket timeout through `asyncio.wait_for`, a
        # task and a turn of the event loop more per request; the lanes bound their commands
        # themselves (`_host_lane.COMMAND_BOUND`), their blocking reads included.
        self._lane_redis = build_client(target, connect_timeout=5.0, command_timeout=None,
                                        max_connections=cfg.max_connections)
        self.scripts = Scripts(self.redis)
        # Connects on first use: an actor's `self.client`, the subscriptions. At the host's
        # durability: an actor's reminder registrations, tells and durable publishes must
        # survive a promotion as its state does.
        self.client = AsyncClient(self.url, namespace=cfg.namespace, durability=cfg.durability)
        # The record lives longer than any URN key of this host may after it (all live
        # `urn_ttl`): one that expired means the lapse outlived every key.
        record = (self.keys.given(self.system), cfg.urn_ttl + cfg.lease_ttl)
        self.lease = Lease(self.redis, self.scripts, self.keys.lease(self.system), cfg.lease_ttl, cfg.durability,
                           record=record)
        await self.lease.acquire()
        self._urn_keys = UrnKeys(self.scripts, self.keys, self.system, cfg.urn_ttl, self._fixed, self._shared,
                                 self._conflicts, self._patterns)
        serving = self._serving = Serving(
            cfg, self.keys, self.system, self.redis, self.scripts, self.lease, self._urn_keys,
            fixed=self._fixed, patterns=self._patterns, conflicts=self._conflicts, lanes=self._lanes,
            group_lanes=self._group_lanes, adopt=self._adopt,
        )
        await serving.sync_clock()
        system_lane = self._lane([self.keys.requests(self.system)], "proxy", trims=True, name=self.system)
        await system_lane.ensure_groups(int(cfg.queue_ttl * 1000))
        self._lanes.append(system_lane)
        for urn, (make, handlers) in self._fixed_spec.items():
            actor = make(urn)
            actor.urn = actor.id = urn
            self._adopt(actor)
            self._fixed[urn] = Served(Mailbox(actor, serving, cfg.max_payload), handlers)
        for urn in self._shared:
            group = shared_group(urn)
            member = Lease(self.redis, self.scripts, self.keys.member(group, self.system), cfg.lease_ttl,
                           cfg.durability)
            member.token = self.lease.token
            await member.acquire()
            self._member_leases.append(member)
            lane = self._lane([self.keys.fast_requests(group), self.keys.requests(group)], self.system, trims=False, name=group)
            await lane.ensure_groups(int(cfg.queue_ttl * 1000))
            self._group_lanes[group] = lane
            self._lanes.append(lane)
        await self._urn_keys.renew()
        for p in self._patterns:
            member = Lease(self.redis, self.scripts, self.keys.member(p.group, self.system), cfg.lease_ttl,
                           cfg.durability)
            member.token = self.lease.token
            await member.acquire()
            self._member_leases.append(member)
            lane = self._lane(
                [self.keys.fast_requests(p.group), self.keys.requests(p.group)], self.system, trims=False, name=p.group
            )
            await lane.ensure_groups(int(cfg.queue_ttl * 1000))
            got = await self.scripts.claim(keys=[self.keys.pattern(p.prefix)], args=[p.group, int(cfg.urn_ttl * 1000)])
            if got != 1:
                raise RuntimeError(f"pattern {p.prefix} is held by {got!r}, not its group")
            await serving.report(p)
            await advertise(self.redis, self.keys, self.system, p.prefix, p.handlers)
            self._group_lanes[p.group] = lane
            self._lanes.append(lane)
        for lane in self._lanes:
            lane.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._upkeep()), loop.create_task(serving.passivator())]
        for sub in self.subscriptions:
            ready: asyncio.Future[None] = loop.create_future()
            sub.task = loop.create_task(sub.run(self.client, ready))
            await ready
        if cfg.reminders is not None:
            self.reminder_poller = ReminderPoller(self.redis, self.client, cfg.namespace, self.system, cfg.reminders,
                                                  cfg.durability)
            self.reminder_poller.start()

    async def wait(self) -> None:
        """Returns once the host stopped (:meth:`stop`, or its lease was taken)."""
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stops reading, finishes what its actors are handling, passivates every activation
        (what an actor's ``on_stop`` dehydrates is carried to its next activation,
        ``StateStore.dehydrate``) and hands its URN key to the member the pattern's placement
        picks among the others (mid-roll, among those of the newest build: as a drained
        Rust member does; released when none is live), moves what is left in its own stream
        for its patterns' URNs to the members that serve them now (else to the patterns'
        groups) and deletes that stream, and releases its own actors' URNs and its leases:
        the others serve what it served, and no request sent to it is lost
        (``tests/test_host_stop.py``). SIGTERM in a process that calls it (as
        ``tests/mirror_host.py`` does) is how a member is replaced in a rolling update.
        Bounded by ``HostConfig.stop_timeout`` (Redis out of reach, a handler that does not
        finish): what it has not done by then is left as a member that died leaves it, for
        the others' takeover once its leases lapse."""
        if self._stopped.is_set() or self.redis is None:
            self._stopped.set()
            return
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            await asyncio.wait_for(self._stop_serving(), self.config.stop_timeout)
        except Exception as e:  # its bound, or Redis out of reach
            what = "took longer than stop_timeout" if isinstance(e, asyncio.TimeoutError) else f"failed ({e})"
            log.warning("the host's stop %s: what it had not done is left to the other members' takeover", what)
            self._abandon()
            self._cancel_tasks()
        # Cancelled at the stop's start; ended for good here (``_tasks.py``): one that
        # outlived its cancellation would hold the process's exit.
        await stop_tasks([*self._tasks, *(sub.task for sub in self.subscriptions)], CLOSE_AT_MOST)
        self._stopped.set()
        # Closing sends nothing; bounded all the same (a frozen server).
        for close in (self.client.close() if self.client is not None else None,
                      close_client(self.redis), close_client(self._lane_redis)):
            if close is not None:
                try:
                    await asyncio.wait_for(close, CLOSE_AT_MOST)
                except Exception:
                    pass

    async def _stop_serving(self) -> None:
        """The steps of :meth:`stop` that may wait for Redis or for the actors."""
        if self.reminder_poller is not None:
            # First: the ticks it is delivering may be handled by this host's actors.
            await self.reminder_poller.stop()
        self._cancel_tasks()
        held = self.lease is not None and not self.lease.lost
        if held:
            # Out of the patterns' directories first: no member places a URN here, or reroutes
            # a message it does not decode here, from now on.
            for p in self._patterns:
                await self.redis.hdel(self.keys.placement(p.prefix), self.system)
                await unlist(self.redis, self.keys, self.system, p.prefix)
        for lane in self._lanes:
            lane.halt()
        if self._serving is not None and self._serving.background:
            # The activations and reroutes under way end first (bounded): an activation made
            # after the passivations below would be left behind, and a rerouted URN's
            # requests swept from under its move (``tests/test_versions.py``).
            await asyncio.wait(set(self._serving.background), timeout=FINISH_AT_MOST)
        # What the actors took is handled here (each mailbox bounded, all at once); what is
        # left unread, or queued past the bound, stays pending and is moved below.
        mailboxes = [s.mailbox for s in self._fixed.values()]
        mailboxes += [live.mailbox for p in self._patterns for live in p.live.values()]
        await asyncio.gather(*(idle(m, FINISH_AT_MOST) for m in mailboxes))
        if self._serving is not None:
            for p in self._patterns:
                urns = list(p.live)
                # Each handed to the member a drained Rust member would choose: its requests
                # and its clients go straight there (``_host_placement.py``, ``stop_targets``).
                targets = await stop_targets(self.redis, self.scripts, self.keys, p, self.system, urns) if held else {}
                for urn in urns:
                    await self._serving.passivate(p, urn, moving=True, to=targets.get(urn))
        for lane in self._lanes:
            await lane.stop()
        if held:
            # Out of its groups before the sweep, as a drained Rust member leaves them
            # (``proxy/scale/group.rs``, ``leave``): a request another member placed here
            # since (its look at the directory older than this stop's) is pending on this
            # member, and the others claim it as soon as its member lease is gone, not
            # after the sweep's wait for the routes cached before the releases.
            for m in self._member_leases:
                await m.release()
            if self._patterns:
                await self._sweep_and_close()
            assert self.lease is not None
            owned = [u for u in self._fixed if u not in self._conflicts and u not in self._shared]
            for u in owned:
                await self.scripts.release(keys=[self.keys.urn(u)], args=[self.system])  # type: ignore[union-attr]
            await self.lease.release()

    def _cancel_tasks(self) -> None:
        """Cancels the upkeep, the passivator and the topic subscriptions' tasks."""
        for t in self._tasks:
            t.cancel()
        for sub in self.subscriptions:
            if sub.task is not None:
                sub.task.cancel()

    def _abandon(self) -> None:
        """What a stop cut short leaves: nothing read or handled here any more."""
        for lane in self._lanes:
            lane.halt()
        for s in self._fixed.values():
            s.mailbox.stopped = True
            s.mailbox.abandon()
        for p in self._patterns:
            for live in p.live.values():
                live.mailbox.stopped = True
                live.mailbox.abandon()
            p.live.clear()

    async def _sweep_and_close(self) -> None:
        """Moves what is left in this host's own stream for its patterns' URNs to the members
        holding them now, else to the patterns' groups, and deletes the stream, as a drained
        Rust member does (``proxy/drain.rs``, steps 4 and 5): a client whose route here was
        cached before the releases then finds the stream gone and looks the URN up again. A
        request appended between a sweep and the delete makes the delete refuse: swept
        again, until the routes cached before the releases have lapsed. A host that serves
        actors of its own keeps its stream (their requests wait there for its successor):
        swept once more once those routes have lapsed."""
        assert self.redis is not None and self.scripts is not None
        urn_ttl_ms = int(self.config.urn_ttl * 1000)
        released = time.monotonic()

        async def sweep() -> None:
            for p in self._patterns:
                await sweep_own_stream(self.redis, self.scripts, self.keys, p.prefix, self.system, urn_ttl_ms)

        try:
            if self._fixed:
                await sweep()
                await asyncio.sleep(ROUTES_CACHED)
                await sweep()
                return
            attempts = 0
            while True:
                attempts += 1
                await sweep()
                if await close_drained(self.redis, self.scripts, self.keys, self.system):
                    return
                if attempts >= CLOSE_ATTEMPTS:
                    if time.monotonic() - released >= ROUTES_CACHED:
                        log.warning("the stopped host's stream holds requests no sweep moves; left in place")
                        return
                    await asyncio.sleep(CLOSE_PAUSE)
        except Exception as e:
            # Redis out of reach: what is left waits for a member's takeover of a gone system.
            log.warning("could not move what is left in the stopped host's stream: %s", e)

    def _adopt(self, actor: Actor) -> None:
        """Makes ``actor`` this host's: its store and its client (``Actor.store``,
        ``Actor.client``) are the host's."""
        actor._host = self  # type: ignore[attr-defined]

    def new_store(self, urn: str) -> StateStore:
        """The fenced state store of ``urn``'s activation here (``Actor.store``); a fixed
        URN's actor has none (``RuntimeError``), as in Rust."""
        if self._serving is None:
            raise RuntimeError(f"{urn}: the host is not started")
        return self._serving.new_store(urn)

    def _lane(self, keys: list[str], consumer: str, *, trims: bool, name: str) -> Lane:
        cfg = self.config
        assert self._serving is not None
        return Lane(
            self._lane_redis, self.scripts, keys, consumer, self._serving.dispatch,
            batch=cfg.batch, max_in_flight=cfg.max_in_flight, reply_ttl_ms=int(cfg.reply_ttl * 1000),
            trims=trims, name=name,
            # A group's lane is woken by a member that placed a request here only at its
            # next read: it blocks briefly.
            block_ms=1000 if trims else 100,
        )

    # Upkeep: leases, URN keys, the directory, the clock, gone members (the directory's
    # count and the clock are the serving's, ``_host_serving``).

    async def _upkeep(self) -> None:
        assert self.lease is not None and self.scripts is not None and self._urn_keys is not None
        assert self._serving is not None
        urn_keys, serving = self._urn_keys, self._serving
        cfg = self.config
        # Gone members looked for every eighth of the lease, 100 ms at most, as the Rust
        # members (``scale/group.rs``, ``LOOK_AT_MOST``): a death on this host is seen at
        # once, so this period is most of its failover.
        every = min(max(cfg.lease_ttl / 8, 0.01), LOOK_AT_MOST)
        renew_every = max(cfg.lease_ttl / 3, 0.01)
        last_renew = time.monotonic()
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            try:
                if now - last_renew >= renew_every:
                    last_renew = now
                    await self.lease.check_server()
                    if not await self.lease.renew(urn_keys.reclaim) and self.lease.lost:
                        log.error("another instance took system %s's lease: this host stops serving", self.system)
                        await self._lost()
                        return
                    for m in self._member_leases:
                        await m.renew()
                    for p in self._patterns:
                        await self.scripts.claim(keys=[self.keys.pattern(p.prefix)], args=[p.group, int(cfg.urn_ttl * 1000)])
                        await serving.report(p)
                        await advertise(self.redis, self.keys, self.system, p.prefix, p.handlers)
                    # Those another system held, at every renewal (the others with their TTL).
                    await urn_keys.claim_fixed(set(self._conflicts))
                    for lane in self._lanes:
                        await self.redis.pexpire(lane.keys[-1], int(cfg.queue_ttl * 1000))
                        if self.lease.fresh() and (lane.left or await more_pending(self.redis, lane)):
                            lane.reread = True
                    await serving.sync_clock()
                if urn_keys.due():
                    await urn_keys.renew()
                for lane in self._group_lanes.values():
                    await claim_from_gone(self.redis, self.scripts, self.keys, lane)
                for p in self._patterns:
                    await take_over_gone(
                        self.redis, self.scripts, self.keys, p.prefix, self.system,
                        int(cfg.lease_ttl * 1000), int(cfg.urn_ttl * 1000),
                    )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("upkeep failed (Redis out of reach?): %s", e)

    async def _lost(self) -> None:
        self._abandon()
        self._stopped.set()
