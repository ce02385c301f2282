"""A lease as the Rust proxy keeps one (``proxy/serve/lease.rs``, ``lease_state.rs``): a key
holding this instance's token ``{random}@{host}:{pid}``, taken with ``SET NX PX``, renewed
with the protocol's claim script every third of its TTL; a lease naming a process of this
host that no longer exists counts as gone at once (and is freed). Until when it is surely
held, by this process's monotonic clock, is its fence: a request is handed to its actor only
while it holds."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from typing import Any

from . import _lua
from ._host_replicas import written
from .durability import Durability
from .errors import NotReplicated

__all__ = ["Lease", "lease_gone", "token"]

# A margin for the drift between this host's clock and Redis's.
_DRIFT = 0.05


def token() -> str:
    """A new lease value: random, then the host and the process (as the Rust proxy's)."""
    return f"{secrets.token_hex(16)}@{socket.gethostname()}:{os.getpid()}"


def _holder(value: str) -> tuple[str, int] | None:
    _, _, at = value.partition("@")
    host, _, pid = at.rpartition(":")
    if not at or not pid.isdigit():
        return None
    return host, int(pid)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def lease_gone(redis: Any, release: Any, key: str) -> bool:
    """Whether the lease at ``key`` no longer holds: absent, or naming a dead process of this
    host (then freed). ``False`` when Redis does not answer."""
    try:
        held = await redis.get(key)
    except Exception:
        return False
    if held is None:
        return True
    holder = _holder(held.decode("utf-8", "replace"))
    if holder is None:
        return False
    host, pid = holder
    if host != socket.gethostname() or pid == os.getpid() or _process_exists(pid):
        return False
    try:
        await release(keys=[key], args=[held])
    except Exception:
        pass
    return True


class Lease:
    """The lease at ``key``, ``ttl`` seconds at each renewal. At a ``durability`` asking for
    replicas it is taken and renewed only once they hold it (``WAIT`` after each claim, as
    a Rust member's lease): a promotion of a lagging replica would otherwise bring back an
    older lease, lapsing sooner than this host counts on, and let another system take its
    URNs while it serves them (the crate docs, "Redis topologies and durability")."""

    def __init__(self, redis: Any, scripts: Any, key: str, ttl: float,
                 durability: Durability | None = None) -> None:
        self.redis = redis
        self.scripts = scripts
        self.key = key
        self.ttl = ttl
        self.durability = durability or Durability.primary()
        self.token = token()
        self.fresh_until = 0.0
        self.lost = False
        self._recheck = asyncio.Lock()
        # Taken again after a lapse in Redis, its URN keys not yet confirmed (`renew`).
        self._unconfirmed = False
        self._confirming = False

    def fresh(self) -> bool:
        return not self.lost and time.monotonic() < self.fresh_until

    async def acquire(self) -> None:
        """Takes the lease, waiting up to one TTL for a crashed predecessor's to lapse. A
        replica slow to acknowledge it (at a durability asking for replicas) is waited for
        within half a TTL, before the start fails with ``NotReplicated``."""
        deadline = time.monotonic() + self.ttl + 1
        while True:
            since = time.monotonic()
            taken_at = since
            while True:
                try:
                    got = await self._claim(renew=False)
                    break
                except NotReplicated:
                    # Claimed again by the same token: it only extends the lease.
                    if time.monotonic() - taken_at >= self.ttl / 2:
                        raise
                    await asyncio.sleep(0.05)
                    since = time.monotonic()
            if got == 1:
                self.fresh_until = since + self.ttl * (1 - _DRIFT)
                return
            if await lease_gone(self.redis, self.scripts.release, self.key):
                continue
            if time.monotonic() > deadline:
                raise RuntimeError(f"the lease {self.key} is held by another live process")
            await asyncio.sleep(0.1)

    async def renew(self, confirm: Any = None) -> bool:
        """Renews the lease: ``False`` once another instance holds it (then it is lost for
        good: this instance stops serving) or Redis did not answer. A lease that lapsed in
        Redis (this process paused, or Redis out of reach, past its TTL) may have let another
        system take its URNs over: once taken again it counts as held only after
        ``confirm()`` (the URN keys claimed again, those taken away given up) returned, the
        lease key renewed beside it. A lapse of this process's own view only (starved or
        paused within the TTL) confirms nothing: the takeover acts only while the lease key
        is absent (docs/bench-log.md, "Overload: a starved member's lease")."""
        if self.lost:
            return False
        since = time.monotonic()
        try:
            got = await self._claim(renew=True)
            if got == 0:
                got = await self._claim(renew=False)
                if got == 1:
                    # Unheld until confirmed, even where this process's clock says fresh
                    # (Redis lost the key: a restart without it).
                    self._unconfirmed = True
                    self.fresh_until = 0.0
        except Exception:
            return False
        if got != 1:
            self.lost = True
            return False
        if self._unconfirmed and confirm is not None:
            # One pass at a time: a renewal meeting another's pass leaves the lease unheld.
            if self._confirming:
                return False
            self._confirming = True
            try:
                kept_at = await self._keeping(confirm)
            finally:
                self._confirming = False
            if kept_at is None:
                return False
            self._unconfirmed = False
            since = kept_at
        self.fresh_until = since + self.ttl * (1 - _DRIFT)
        return True

    async def _claim(self, renew: bool) -> Any:
        """The claim script on the lease key: 1 when it names this instance now; with
        ``renew``, 0 for a key that had lapsed (left free); else the other holder.
        ``NotReplicated`` when it names this instance but fewer replicas than the host's
        durability asks for acknowledged it in time (not held yet)."""
        args: list[Any] = [self.token, int(self.ttl * 1000)]
        if renew:
            args.append("renew")
        got, short = await written(self.redis, self.durability, self.scripts.claim, [self.key], args)
        if got == 1 and short is not None:
            raise short
        return got

    async def _keeping(self, confirm: Any) -> float | None:
        """Runs ``confirm()`` while the lease key is renewed every third of its TTL, so that
        a pass longer than the lease (many URN keys) does not let it lapse again; then renews
        it once more. When that last renewal was sent (the lease counts from it), or ``None``
        when the lease was not kept throughout or the pass failed (the next renewal starts
        the pass over)."""
        task = asyncio.ensure_future(confirm())
        try:
            while True:
                await asyncio.wait({task}, timeout=self.ttl / 3)
                finished = task.done()
                if finished:
                    task.result()
                since = time.monotonic()
                got = await self._claim(renew=True)
                if got != 1:
                    self.lost = got != 0
                    return None
                if finished:
                    return since
        except Exception:
            return None
        finally:
            if not task.done():
                task.cancel()

    async def recheck(self, confirm: Any = None) -> bool:
        """Renews now unless another task just did; whether the lease holds."""
        async with self._recheck:
            if not self.fresh():
                await self.renew(confirm)
            return self.fresh()

    async def release(self) -> None:
        try:
            await self.scripts.release(keys=[self.key], args=[self.token])
        except Exception:
            pass
        self.fresh_until = 0.0


class Scripts:
    """The protocol's scripts, registered on one client (run by SHA, sent again on
    ``NOSCRIPT``)."""

    def __init__(self, redis: Any) -> None:
        self.claim = redis.register_script(_lua.CLAIM_SCRIPT)
        self.claim_many = redis.register_script(_lua.CLAIM_MANY_SCRIPT)
        self.release = redis.register_script(_lua.RELEASE_SCRIPT)
        self.free_gone_urn = redis.register_script(_lua.FREE_GONE_URN_SCRIPT)
        self.answer = redis.register_script(_lua.ANSWER_SCRIPT)
        self.forward = redis.register_script(_lua.FORWARD_SCRIPT)
        self.report = redis.register_script(_lua.PLACEMENT_REPORT_SCRIPT)
        self.read_directory = redis.register_script(_lua.PLACEMENT_READ_SCRIPT)
        self.place = redis.register_script(_lua.PLACE_SCRIPT)
        self.forget = redis.register_script(_lua.GROUP_FORGET_SCRIPT)
        self.take_over = redis.register_script(_lua.TAKE_OVER_SCRIPT)
        self.state_open = redis.register_script(_lua.STATE_OPEN_SCRIPT)
        self.state_save = redis.register_script(_lua.STATE_SAVE_SCRIPT)
        self.state_close = redis.register_script(_lua.STATE_CLOSE_SCRIPT)
