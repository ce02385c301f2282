"""Where a session sends a URN's requests: the URN resolved to its system's (or group's)
request stream through its URN key, else its pattern key, and cached; looked up again when
an answer or a missing stream says it moved; a departed system's successor waited for, and
a URN a restarted Redis forgot looked up again for a while. ``Routing`` owns the route
cache and the lookups; the session (``_session``) holds one as ``session.routes`` and gives
it the commands these lookups are sent with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._contracts import Route
from ._raw import bulk
from .errors import Closed, ConclibError, Timeout, Unavailable, UnknownUrn, fail
from .protocol import GROUP_MARK, Keys, pattern_prefix, text, valid_urn

__all__ = ["Routing"]


class Routing:
    """A session's routes: its cache of URNs resolved and the lookups that fill it.

    ``command(deadline, *args)``: one Redis command, given up at the deadline (the
    session's). ``restarted_lately(deadline)``: whether the Redis answering now is a new one,
    started less than one lease ago (the session knows which Redis it connected to).
    ``resolve_cache_ttl``: how long a route is used before it is looked up again."""

    def __init__(
        self,
        command: Callable[..., Awaitable[Any]],
        restarted_lately: Callable[[float], Awaitable[bool]],
        keys: Keys,
        resolve_cache_ttl: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.command = command
        self.restarted_lately = restarted_lately
        self.keys = keys
        self.resolve_cache_ttl = resolve_cache_ttl
        self.loop = loop
        # URN -> its route, until the route's ``until``.
        self.cache: dict[str, Route] = {}
        # The lookups in flight: concurrent lookups of one URN share one.
        self.resolving: dict[str, asyncio.Future[Route]] = {}
        # The URNs resolved once: after a Redis restart those are waited for.
        self.known: set[str] = set()
        # URN -> whether its system departed, being read (``unavailable_if_departed``).
        self.departed_checks: dict[str, asyncio.Future[bool]] = {}

    def forget(self, urn: str) -> None:
        self.cache.pop(urn, None)

    def follow_move(self, note: bytes, urn_prefix: str) -> bool:
        """A hand-over note (``Keys.moves``: ``target \\n {ns}:urn:{urn}``): the route cached
        for the URN, if any, becomes ``target``. No route is added (a URN not looked up is
        not this session's concern), and a group's id or a note of another form is ignored.
        Whether the note was of the right form."""
        target, sep, key = note.partition(b"\n")
        if not sep or not key.startswith(urn_prefix.encode()):
            return False
        try:
            system = target.decode("utf-8")
            urn = key[len(urn_prefix):].decode("utf-8")
        except UnicodeDecodeError:
            return False
        if not system or system.startswith(GROUP_MARK):
            return True
        cached = self.cache.get(urn)
        if cached is not None and cached.system != system:
            self.cache[urn] = self.route_to(system)
        return True

    def learn(self, urn: str, route: Route, holder: bytes) -> None:
        """The system that answered an ask another one passed on to it (the reply's route
        hint, ``protocol.HOLDER_FLAG``) becomes ``urn``'s route, if the route cached is still
        ``route`` (the one the ask went by). Ignored unless it names a system (UTF-8, not a
        group). A hint that is wrong by the time it is used costs what a stale route does."""
        try:
            system = holder.decode("utf-8")
        except UnicodeDecodeError:
            return
        if not system or system.startswith(GROUP_MARK) or system == route.system:
            return
        if self.cache.get(urn) is route:
            self.cache[urn] = self.route_to(system)

    async def resolve(self, urn: str, deadline: float, fresh: bool, wait_for_successor: bool = True) -> Route:
        """The system serving ``urn`` and its request stream, from the cache unless ``fresh``:
        ``GET {ns}:urn:{urn}``, else (nil) ``GET {ns}:pattern:{prefix}`` for a URN with a
        pattern prefix (its value, a group id such as ``~user:*``, is used as a system id)."""
        now = time.monotonic()
        if not fresh:
            cached = self.cache.get(urn)
            if cached is not None and cached.until > now:
                return cached
        if not valid_urn(urn):
            raise UnknownUrn(urn, "not a valid URN")
        if not wait_for_successor:
            # Its answer (``UnknownUrn`` for a departed URN) is not one to share with asks.
            return await self._lookup(urn, deadline, False)
        # Concurrent lookups of one URN share one GET.
        shared = self.resolving.get(urn)
        if shared is not None and not fresh:
            left = deadline - time.monotonic()
            try:
                return await asyncio.wait_for(asyncio.shield(shared), max(left, 0.0))
            except (Timeout, Unavailable):
                # First: ``Timeout`` is an ``asyncio.TimeoutError`` too (3.11). The shared
                # lookup gave up at its own asker's deadline (a shorter one), not ours:
                # look up ourselves.
                if time.monotonic() >= deadline:
                    raise
            except asyncio.TimeoutError:
                raise Timeout(0) from None
        lookup: asyncio.Future[Route] = self.loop.create_future()
        self.resolving[urn] = lookup
        try:
            route = await self._lookup(urn, deadline, wait_for_successor)
        except BaseException as e:
            fail(lookup, e if isinstance(e, Exception) else Closed())
            raise
        else:
            if not lookup.done():
                lookup.set_result(route)
            return route
        finally:
            if self.resolving.get(urn) is lookup:
                del self.resolving[urn]

    async def _lookup(self, urn: str, deadline: float, wait_for_successor: bool = True) -> Route:
        prefix = pattern_prefix(urn)
        while True:
            value = await self.command(deadline, "GET", self.keys.urn(urn))
            if value is None and prefix is not None:
                # No actor registered under the URN: the group activating its pattern, if
                # any, is sent to like a system.
                value = await self.command(deadline, "GET", self.keys.pattern(prefix))
            if value is not None:
                break
            self.forget(urn)
            # ``client.resolve`` answers "who serves it now": it does not wait.
            if wait_for_successor and await self.departed(urn, deadline):
                await self.wait_for_successor(urn, deadline)
                continue
            await self.wait_if_redis_lost_it(urn, deadline)
        route = self.route_to(value)
        if len(self.cache) > 100_000:
            now = time.monotonic()
            self.cache = {k: r for k, r in self.cache.items() if r.until > now}
        self.cache[urn] = route
        if len(self.known) >= 100_000:
            self.known.clear()
        self.known.add(urn)
        return route

    def route_to(self, value: Any) -> Route:
        """The route to the system (or group) named ``value``, as a URN or pattern key holds it."""
        system = text(value)
        key = self.keys.requests(system)
        route = Route(system, key, time.monotonic() + self.resolve_cache_ttl, bulk(key))
        if system.startswith(GROUP_MARK):
            fast = self.keys.fast_requests(system)
            route.fast_key, route.packed_fast = fast, bulk(fast)
        return route

    async def departed(self, urn: str, deadline: float) -> bool:
        """Whether the system that served ``urn`` (or activated its pattern) shut down
        gracefully within its grace period (``{ns}:departed:urn:{urn}``,
        ``{ns}:departed:pattern:{prefix}``): read only when no owner was found, as the Rust
        client does."""
        if await self.command(deadline, "GET", self.keys.departed_urn(urn)) is not None:
            return True
        prefix = pattern_prefix(urn)
        return prefix is not None and await self.command(deadline, "GET", self.keys.departed_pattern(prefix)) is not None

    async def departed_within(self, urn: str, budget: float) -> bool:
        """:meth:`departed`, given up ``budget`` after its read is sent: not after it was
        scheduled, which on a busy event loop (64 asks timing out at once) can take that long
        by itself, and the asks waiting for it would end ``Timeout``."""
        return await self.departed(urn, time.monotonic() + budget)

    async def wait_for_successor(self, urn: str, deadline: float) -> None:
        """Pause before looking for a departed URN's successor again, or ``Unavailable``
        when the deadline comes first."""
        wait = 0.025
        if time.monotonic() + wait >= deadline:
            raise Unavailable(
                f"the system serving {urn} shut down moments ago and no successor serves it yet "
                "(it restarts or is being replaced): try again"
            )
        await asyncio.sleep(wait)

    async def unavailable_if_departed(self, e: ConclibError, urn: str) -> ConclibError:
        """An ask's ``Timeout``, or ``Unavailable`` when the system its URN was routed to
        shut down meanwhile (its request waits for the successor, which may still handle
        it). Looked up only on a timeout, given up 50 ms after the read is sent (one read
        shared by the asks timing out within half a second)."""
        if not isinstance(e, Timeout):
            return e
        try:
            # A burst of asks timing out together reads the marker once.
            checking = self.departed_checks.get(urn)
            if checking is None:
                checking = asyncio.ensure_future(self.departed_within(urn, 0.05))
                self.departed_checks[urn] = checking
                # Its answer serves the asks timing out within the next half second too.
                checking.add_done_callback(
                    lambda _f: self.loop.call_later(0.5, self.departed_checks.pop, urn, None)
                )
            if await asyncio.shield(checking):
                return Unavailable(
                    f"no answer in time: the system serving {urn} shut down meanwhile (it restarts "
                    "or is being replaced; its successor may still handle the request)"
                )
        except ConclibError:
            pass
        return e

    async def wait_if_redis_lost_it(self, urn: str, deadline: float) -> None:
        """Redis does not know ``urn`` (or its system's stream). That is ``UnknownUrn``,
        unless Redis restarted less than one lease ago and this client knew the URN: then
        wait a little (return: look again) until the deadline, then ``Unavailable``."""
        if urn not in self.known or not await self.restarted_lately(deadline):
            raise UnknownUrn(urn)
        wait = 0.025
        if time.monotonic() + wait >= deadline:
            raise Unavailable(f"Redis restarted moments ago and {urn} is not registered again yet")
        await asyncio.sleep(wait)

    async def stream_gone(self, urn: str, route: Route, deadline: float) -> Route:
        """A request found ``route``'s stream missing (NOMKSTREAM): the URN's route now, or
        why not, as the Rust client's ``resolve_again``. Looked up first: a drained member
        hands its URNs to others before it closes its stream, so a route cached before that
        leads elsewhere now. Still that system's (or nobody's): it is gone, and the URN is
        unknown, unless the system departed (its successor is waited for) or Redis lost its
        data moments ago. A pattern's URN whose key still names that system (one handed to a
        member that drained before it was asked there) goes to the pattern's group, not
        cached: its members free such a key and activate the URN."""
        self.forget(urn)
        fresh = await self.resolve(urn, deadline, True)
        if fresh.system != route.system:
            return fresh
        self.forget(urn)
        # A departed system's URN is looked up until its successor or the deadline.
        if await self.departed(urn, deadline):
            await self.wait_for_successor(urn, deadline)
        else:
            prefix = pattern_prefix(urn)
            group = None if prefix is None else await self.command(deadline, "GET", self.keys.pattern(prefix))
            if group is not None:
                return self.route_to(group)
            await self.wait_if_redis_lost_it(urn, deadline)
        return await self.resolve(urn, deadline, True)

    async def moved(self, urn: str, route: Route, deadline: float) -> Route | None:
        """A ``NOT_OWNER`` or ``UNKNOWN_URN`` answer: the URN may have moved to another
        system since it was resolved. Resolves it again (URN key, then pattern key): the new
        route if it leads elsewhere now (send once more), else ``None``."""
        self.forget(urn)
        try:
            fresh = await self.resolve(urn, deadline, True)
        except Unavailable:
            raise  # its system departed and no successor came in time: restarting, not unknown
        except ConclibError:
            return None
        return fresh if fresh.system != route.system else None
