"""What a Python actor host does with each request it reads: checked (``_host_request``),
routed to a fixed URN's actor or to a pattern's activation, decoded and handed to the
actor's mailbox under the lease's fence; a pattern's URN activated on its first request
(its URN key claimed, or its requests passed on to the member holding it) and passivated
after idle; the member's count of activations reported to the pattern's directory.
``Serving`` does all this for one ``ActorHost`` (``host``), which makes it at start and
keeps the host going (its leases, its lanes, its upkeep).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ._host_config import HostConfig, MemoryShedding
from ._host_lane import GROUP, Lane
from ._host_lease import Lease, Scripts, lease_gone
from ._host_mailbox import Mailbox, decode, idle
from ._host_overload import Counts, evictable, give_back, least_used, limit_bytes, limited, refusal, resident_bytes, to_shed
from ._host_patterns import Activation, Pattern
from ._host_placement import HERE, PLACED, live_members, place_waiting
from ._host_replicas import written
from ._host_request import Dropped, Placed, Refused, Request, check
from ._host_store import StateStore, first_entry, request_key
from ._host_urn_keys import UrnKeys
from ._host_versions import that_decodes
from ._typed import Mismatch
from .actor import Actor, HandlerSpec
from .errors import CodecError
from .protocol import Keys, Status, encode_reply, shared_group, text, wake_up

__all__ = ["RUST_ACTIVATION_URN_TTL", "Served", "Serving"]

log = logging.getLogger("conclib.host")

# The Rust ``ProxyConfig::activation_urn_ttl``'s default (seconds).
RUST_ACTIVATION_URN_TTL = 120.0


class Served:
    """A fixed URN's actor."""

    __slots__ = ("mailbox", "handlers")

    def __init__(self, mailbox: Mailbox, handlers: dict[str, HandlerSpec]) -> None:
        self.mailbox = mailbox
        self.handlers = handlers


class Serving:
    """A started host's serving of its requests: the fence they are handed to their actors
    under (its mailboxes' ``Fence``), their dispatch, and its patterns' activations.

    It owns the requests waiting for their URN's activation, the tasks it runs until they
    end, the count of activations made and the offset of Redis's clock. The host gives it
    its settings, keys and system id, its connection and scripts, its lease and URN keys,
    and what it reads of the host's own (kept up to date by the host): the fixed URNs'
    actors, the patterns served, the fixed URNs another system holds (by holder), the lanes
    (by group for the groups'); ``adopt(actor)`` makes an activation the host's (its store,
    its client)."""

    def __init__(
        self,
        config: HostConfig,
        keys: Keys,
        system: str,
        redis: Any,
        scripts: Scripts,
        lease: Lease,
        urn_keys: UrnKeys,
        *,
        fixed: dict[str, Served],
        patterns: list[Pattern],
        conflicts: dict[str, str],
        lanes: list[Lane],
        group_lanes: dict[str, Lane],
        adopt: Callable[[Actor], None],
    ) -> None:
        self.config = config
        self.keys = keys
        self.system = system
        self.redis = redis
        self.scripts = scripts
        self.lease = lease
        self.urn_keys = urn_keys
        self.fixed = fixed
        self.patterns = patterns
        self.conflicts = conflicts
        self.lanes = lanes
        self.group_lanes = group_lanes
        self.adopt = adopt
        # The requests waiting for their URN's activation (or its move, ``_reroute``): their
        # lane, the request, its handler (``None``: a message not exposed here) and argument.
        self.activating: dict[str, list[tuple[Lane, Request, HandlerSpec | None, Any]]] = {}
        # Kept until they end (the loop keeps only weak references).
        self.background: set[asyncio.Task[None]] = set()
        self.activations_made = 0
        self.counts = Counts()
        self.clock_offset_ms = 0.0

    # The fence.

    def now_ms(self) -> int:
        """Redis's clock, as last synchronised."""
        return int(time.time() * 1000 + self.clock_offset_ms)

    async def sync_clock(self) -> None:
        """Reads Redis's clock again (at start, then at each renewal of the host's upkeep)."""
        before = time.time()
        sec, usec = await self.redis.time()
        after = time.time()
        self.clock_offset_ms = (sec * 1000 + usec / 1000) - (before + after) * 500

    def fresh(self) -> bool:
        return self.lease.fresh()

    async def recheck(self) -> bool:
        return await self.lease.recheck(self.urn_keys.reclaim)

    # Dispatch: check → route → decode → hand off.

    def dispatch(self, lane: Lane, stream: str, entry: bytes, fields: dict[bytes, bytes] | None) -> None:
        got = check(entry, fields, reply_prefix=self.keys.reply_prefix(), now_ms=self.now_ms(), max_payload=self.config.max_payload)
        if isinstance(got, Dropped):
            lane.answer_entry(stream, entry, None, None)
            return
        if isinstance(got, Placed):
            placed = self.group_lanes.get(got.group)
            if placed is not None:
                placed.reread = True
            lane.answer_entry(stream, entry, None, None)
            return
        if isinstance(got, Refused):
            self._refuse(lane, stream, entry, got.reply, got.request_id, got.status, got.text)
            return
        req = got
        req.stream = stream
        req.first = lane.consumer != "proxy" and not lane.rereading

        def refuse(status: Status, text: str) -> None:
            self._refuse(lane, stream, entry, req.reply, req.request_id, status, text)

        pattern = self._pattern_for(req.urn)
        if lane.consumer != "proxy":  # a group's member: only the group's URNs
            ours = lane.name == shared_group(req.urn) if pattern is None else pattern.group == lane.name
            if not ours:
                refuse(Status.UNKNOWN_URN, f"URN {req.urn} is not served by group {lane.name}")
                return
        served = self.fixed.get(req.urn) if pattern is None else None
        if pattern is None:
            owner = self.conflicts.get(req.urn)
            if owner is not None:
                refuse(Status.NOT_OWNER, f"URN {req.urn} is served by system {owner}")
                return
            if served is None:
                refuse(Status.UNKNOWN_URN, f"no actor with URN {req.urn}")
                return
        live = pattern.live.get(req.urn) if pattern is not None else None
        if limited(self.config, pattern):
            mailbox = served.mailbox if served is not None else live.mailbox if live is not None else None
            urn_depth = mailbox.depth() if mailbox is not None else len(self.activating.get(req.urn, ()))
            why = refusal(self.config, pattern, urn_depth, sum(len(lane.in_flight) for lane in self.lanes) - 1)
            if why is not None:
                if req.reply is None:
                    self.counts.overloaded_tells += 1
                    lane.answer_entry(stream, entry, None, None)
                else:
                    self.counts.overloaded_asks += 1
                    refuse(Status.OVERLOADED, why)
                return
            if pattern is not None and pattern.max_pending is not None:
                lane.ticket(stream, entry, pattern)
        handlers = served.handlers if served is not None else pattern.handlers  # type: ignore[union-attr]
        spec = handlers.get(req.message)
        if spec is None:
            if pattern is not None:  # perhaps another build's: a member that decodes it serves it
                self._spawn(self._reroute(lane, pattern, req))
                return
            refuse(Status.UNKNOWN_MESSAGE, f"actor {req.urn} does not expose message {req.message}")
            return
        try:
            arg = decode(spec, req.body)
        except (Mismatch, CodecError) as e:
            refuse(Status.CODEC_ERROR, f"cannot decode {req.message} for {req.urn}: {e}")
            return
        if served is not None:
            served.mailbox.put(req, spec, arg, lane)
            return
        assert pattern is not None
        if live is not None:
            pattern.touch(req.urn)
            live.mailbox.put(req, spec, arg, lane)
            return
        waiting = self.activating.get(req.urn)
        if waiting is not None:
            waiting.append((lane, req, spec, arg))
            return
        self.activating[req.urn] = [(lane, req, spec, arg)]
        self._spawn(self._activate(pattern, req.urn))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs ``work`` in a task kept until it ends (the loop keeps only weak references)."""
        task = asyncio.get_running_loop().create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _refuse(self, lane: Lane, stream: str, entry: bytes, reply: str | None, rid: int, status: Status, text: str) -> None:
        log.debug("refused %r: %s %s", entry, status.name, text)
        frame = None
        if reply is not None:
            frame = encode_reply(rid, status, text.encode())
        lane.answer_entry(stream, entry, reply, frame)

    def _pattern_for(self, urn: str) -> Pattern | None:
        for p in self.patterns:
            if p.matches(urn):
                return p
        return None

    # Activation.

    async def _activate(self, pattern: Pattern, urn: str) -> None:
        """Claims ``urn``'s key and activates it here; or passes its requests to the system
        holding it; or (its holder gone) frees the key and claims it."""
        placed = HERE
        if pattern.placement != "here":
            placed = await place_waiting(self.redis, self.scripts, self.keys, self.system, pattern, urn, self.activating)
        if placed == PLACED:
            return
        # Counted among those this member is making (its own count, ``place``) only when it
        # is about to activate the URN: one held elsewhere (its claim finds the holder and
        # passes its requests on) is not this member's.
        making = 1 if placed == HERE else 0
        pattern.making += making
        try:
            activated = await self._claim_and_activate(pattern, urn)
        finally:
            pattern.making -= making
        # Reported once it counts among the live only: counted in ``making`` as well while
        # the report waits for Redis, each activation would count twice in this member's own
        # count (``place``), and a burst of them would send first requests elsewhere.
        if activated:
            await self.evict()
            await self.report(pattern)

    async def evict(self) -> None:
        """Passivates the activations past ``HostConfig.activation_cap``, least recently
        used first (``_host_overload.py``)."""
        self.counts.evicted += await self._passivate_chosen(evictable(self.config, self.patterns))

    async def _passivate_chosen(self, chosen: list[tuple[Pattern, str]]) -> int:
        """Passivates each of ``chosen`` still live (the cap's or shedding's choice): how many."""
        done = 0
        for p, urn in chosen:
            if urn in p.live:
                await self.passivate(p, urn)
                done += 1
        return done

    async def _claim_and_activate(self, pattern: Pattern, urn: str) -> bool:
        """Whether ``urn`` was activated here (its requests handed to its mailbox)."""
        cfg = self.config
        key = self.keys.urn(urn)
        owner: str | None = None
        try:
            for _ in range(2):
                got, short = await written(
                    self.redis, cfg.durability, self.scripts.claim, [key], [self.system, int(cfg.urn_ttl * 1000)]
                )
                if short is not None:
                    raise short
                if got == 1:
                    owner = None
                    break
                owner = text(got)
                # Its key is freed when its holder is gone, or has no request stream (it
                # drained, and the URN was handed to it before it was asked there: nothing
                # would read a request passed on to it), both checked again in the script;
                # as the Rust member's `free_urn_of_gone`.
                lease, stream = self.keys.lease(owner), self.keys.requests(owner)
                gone = await lease_gone(self.redis, self.scripts.release, lease)
                if not gone and await self.redis.exists(stream):
                    break
                await self.scripts.free_gone_urn(keys=[key, lease, self.keys.given(owner), stream], args=[owner, urn])
        except Exception as e:
            log.warning("could not claim %s: %s", urn, e)
            for lane, req, _, _ in self.activating.pop(urn, []):
                lane.leave(req)
            return False
        waiting = self.activating.pop(urn, [])
        if owner is not None:
            for lane, req, _, _ in waiting:
                await self._forward(lane, req, owner)
            return False
        actor = pattern.new_actor(urn)
        self.adopt(actor)  # its store, made when first used; its client
        mailbox = Mailbox(actor, self, cfg.max_payload)
        pattern.live[urn] = Activation(mailbox, pattern)
        self.activations_made += 1
        for lane, req, spec, arg in waiting:
            if spec is None:  # a message this member does not expose, come meanwhile
                self._spawn(self._reroute(lane, pattern, req))
            else:
                mailbox.put(req, spec, arg, lane)
        return True

    async def _reroute(self, lane: Lane, pattern: Pattern, req: Request) -> None:
        """A request for a URN of ``pattern`` whose message this member does not expose: to the
        member holding the URN, or to a live member that decodes it (the URN handed there, its
        activation here moved first: what was queued for it handled here first, its state
        carried), or refused ``UnsupportedVersion`` when none does (``_host_versions.py``).
        While it is decided, the URN's other requests wait in ``activating``, as while it is
        activated, and then follow it."""
        urn = req.urn
        live = await live_members(self.redis, self.scripts, self.keys, pattern, self.system)
        if live is None:
            lane.leave(req)  # Redis did not answer: read again once the lease holds again
            return
        target = that_decodes(*live, req.message)
        if target is None:
            version = text(req.fields.get(b"mv") or b"1")[:10]
            why = f"no member serving {urn} has message {req.message} at version {version} (or one its codec reads)"
            log.warning("%s", why)
            lane.answer(req, Status.UNSUPPORTED_VERSION, why.encode(), True)
            return
        waiting = self.activating.get(urn)
        if waiting is not None:  # being activated, or moved: judged again once it is done
            waiting.append((lane, req, None, None))
            return
        self.activating[urn] = []
        to: str | None = target
        try:
            log.info("%s: message %s is not exposed here; the URN goes to %s, which decodes it", urn, req.message, target)
            activation = pattern.live.pop(urn, None)
            if activation is not None:
                # What was queued for it before is handled here first, in its order.
                await idle(activation.mailbox, max(0.0, (req.deadline_ms - self.now_ms()) / 1000))
                if not await self.stop_activation(urn, activation, moving=True, to=target):
                    to = None
                await self.report(pattern)
            else:
                # Held by another member: it judges.
                to = await self.hand(pattern, urn, target, or_free=True) or target
        except Exception as e:
            log.warning("could not hand %s to %s: %s", urn, target, e)
            to = None
        finally:
            waiting = self.activating.pop(urn, [])
        # Where the URN is now (``None``: not known; each read again and judged anew).
        for w_lane, w_req, _, _ in [(lane, req, None, None), *waiting]:
            if to is None:
                w_lane.leave(w_req)
                w_lane.reread = True
            else:
                await self._forward(w_lane, w_req, to)

    async def _forward(self, lane: Lane, req: Request, owner: str) -> None:
        """Passes ``req`` on to the system ``owner`` (acknowledged here in the same step)."""
        flat: list[bytes] = []
        for k, v in req.fields.items():
            flat += [k, v]
        if first_entry(req.fields) is None:
            # Its identity goes with it (``request_key``): a handling that saved its effect
            # here is known again wherever it is read next. (A field given twice counts with
            # its last value: this one, over an empty or overlong one copied above.)
            flat += [b"first", request_key(req.stream, req.entry, req.fields).encode()]
        try:
            got = await self.scripts.forward(
                keys=[req.stream, self.keys.requests(owner)], args=[GROUP, lane.consumer, req.entry, *flat]
            )
        except Exception as e:
            log.warning("could not pass %s on to %s: %s", req.urn, owner, e)
            lane.leave(req)
            return
        if got == 0:
            # The owner's stream is gone (it stopped, or drained, after its key was read): a
            # pattern's URN goes to the pattern's group, whose member frees the key and
            # activates the URN, as the Rust member's `forward` does.
            pattern = self._pattern_for(req.urn)
            if pattern is not None and owner != pattern.group:
                await self._forward(lane, req, pattern.group)
                return
            lane.answer(req, Status.NOT_OWNER, f"URN {req.urn} is served by system {owner}".encode(), True)
        else:
            lane.settle(req)

    def new_store(self, urn: str) -> StateStore:
        """The fenced state store of ``urn``'s activation here (``Actor.store``); a fixed
        URN's actor has none (``RuntimeError``), as in Rust."""
        if self._pattern_for(urn) is None:
            raise RuntimeError(f"{urn}: only an actor a host activated for a pattern has a state store")
        return StateStore(self.redis, self.scripts, self.keys.state(urn), self.system, self.config.durability)

    def displaced(self, mailbox: Mailbox) -> None:
        """A write of an activation's store was refused: a later activation (another
        system's) owns its state. It is forgotten here, its requests left pending (read again,
        they are passed on to the URN's holder)."""
        for p in self.patterns:
            urn = p.displaced(mailbox)
            if urn is not None:
                log.warning("the state of %s is owned by a later activation: this one stops", urn)
                self._spawn(self._release_quietly(urn))
                for lane in self.lanes:
                    lane.reread = True
                return

    async def _release_quietly(self, urn: str) -> None:
        try:
            await self.scripts.release(keys=[self.keys.urn(urn)], args=[self.system])
        except Exception:
            pass

    async def passivate(self, pattern: Pattern, urn: str, *, moving: bool = False, to: str | None = None) -> None:
        """Stops ``urn``'s activation (``on_stop``) and releases its URN key. ``moving``: the
        host is stopping, and the URN's next activation will be on another member: its store
        carries what ``on_stop`` dehydrates (``StateStore.dehydrate``). ``to``: that member,
        given the URN key instead (:meth:`hand`)."""
        live = pattern.live.pop(urn, None)
        if live is not None:
            await self.stop_activation(urn, live, moving=moving, to=to)

    async def stop_activation(self, urn: str, live: Activation, *, moving: bool = False, to: str | None = None) -> bool:
        """:meth:`passivate`'s steps once ``live`` is no longer among its pattern's live
        activations: whether its URN key was handed to ``to``."""
        live.mailbox.stopped = True
        if live.mailbox.started:
            if moving:
                try:
                    live.mailbox.actor.store.moving = True
                except RuntimeError:  # an actor no host adopted: no store
                    pass
            try:
                await live.mailbox.actor.on_stop()
            except Exception:
                log.exception("on_stop of %s failed", urn)
        store: StateStore | None = getattr(live.mailbox.actor, "_store", None)
        if store is not None:
            try:
                await store.close()
            except Exception:
                pass
        handed = False
        try:
            handed = to is not None and await self.hand(live.pattern, urn, to) == to
            if not handed:
                await self.scripts.release(keys=[self.keys.urn(urn)], args=[self.system])
        except Exception:
            pass
        return handed

    async def hand(self, pattern: Pattern, urn: str, target: str, *, or_free: bool = False) -> str | None:
        """Gives ``urn``'s key, held here (or, ``or_free``, held by nobody), to member
        ``target`` in one step (the protocol's ``HAND_URN_SCRIPT``, as a drained Rust member
        hands one: ``proxy/serve/urn_keys.rs``): the hand-over published to the clients
        (``Keys.moves``), which send its next request straight there, and a moved-in notice
        appended to ``target``'s stream, at which a Rust member activates it at once (a
        Python one at its next request). The system the key names now (``None``: nobody)."""
        got = await self.scripts.hand_urn(
            keys=[self.keys.urn(urn), self.keys.requests(target)],
            args=[self.system, target, int(self.config.urn_ttl * 1000), "1" if or_free else "0", self.keys.moves(),
                  *wake_up(pattern.group), "movedin", urn],
        )
        if got == 1:
            return target
        return None if got in (0, None) else text(got)

    async def passivator(self) -> None:
        memory = self.config.memory
        limit = limit_bytes(memory) if memory is not None else None
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for p in self.patterns:
                idle = p.idle(now)
                for urn in idle:
                    await self.passivate(p, urn)
                if idle:
                    await self.report(p)
            if memory is not None and limit is not None:
                await self.shed(memory, limit)

    async def shed(self, memory: MemoryShedding, limit: int) -> None:
        """Above ``memory``'s threshold of ``limit``: passivates the least recently used
        activations (``_host_overload.py``, ``to_shed``)."""
        rss = resident_bytes()
        if rss is None:
            return
        n = to_shed(sum(len(p.live) for p in self.patterns), rss, limit, memory)
        chosen = least_used(self.patterns, n)
        if not chosen:
            return
        log.warning("memory above its shedding threshold (%d MB resident, limit %d MB): passivating the %d least "
                    "recently used activations", rss >> 20, limit >> 20, len(chosen))
        self.counts.shed += await self._passivate_chosen(chosen)
        give_back()
        for p in {id(p): p for p, _ in chosen}.values():
            await self.report(p)

    # The directory.

    async def report(self, p: Pattern) -> None:
        # A gone member stays listed (the takeover looks at those listed) while URN keys
        # naming it may live: a Rust member's activation keys live its
        # ``ProxyConfig::activation_urn_ttl``, 120 s by default.
        lease = self.config.lease_ttl
        keep_ms = int(max(10 * lease, RUST_ACTIVATION_URN_TTL + lease) * 1000)
        try:
            await self.scripts.report(
                keys=[self.keys.placement(p.prefix)],
                args=[self.system, len(p.live), int(lease * 1000), keep_ms],
            )
        except Exception as e:
            log.debug("could not report to the directory: %s", e)
