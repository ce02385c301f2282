"""A lease as the Rust proxy keeps one (``proxy/serve/lease.rs``, ``lease_state.rs``): a key
holding this instance's token ``{random}@{host}:{pid}``, taken with ``SET NX PX``, renewed
with the protocol's claim script every third of its TTL; a lease naming a process of this
host that no longer exists counts as gone at once (and is freed). Until when it is surely
held, by this process's monotonic clock, is its fence: a request is handed to its actor only
while it holds.

A host's system lease keeps beside it the system's record of the URN keys given away while it
was absent in Redis (``{ns}:sys:{system}:given``, the Rust ``proxy/serve/given.rs``'s, with
its script ``SYSTEM_LEASE_SCRIPT``): the takeover and the freeing of a gone holder's URN key
add to it (Rust or Python members alike), and a retake of the lease reads and empties it in
one step, so that the pass after a lapse claims again only those and the keys due (every key
when the record is not whole: expired, lost, or after another Redis server answered)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from typing import Any

from . import _lua
from ._host_replicas import written
from ._info import server_fields
from .durability import Durability
from .errors import NotReplicated

__all__ = ["Lease", "lease_gone", "token"]

log = logging.getLogger("conclib.host")

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
                 durability: Durability | None = None, record: tuple[str, float] | None = None) -> None:
        self.redis = redis
        self.scripts = scripts
        self.key = key
        self.ttl = ttl
        self.durability = durability or Durability.primary()
        # A system's lease: its record of URN keys given away, and how long the record lives
        # past each renewal (seconds; longer than any URN key of the system may live after
        # it, so that a record that expired means no key it held can still be alive).
        self.record = record
        self.token = token()
        self.fresh_until = 0.0
        self.lost = False
        self._recheck = asyncio.Lock()
        # Held by every renewal of the lease key and its pass (`renew`).
        self._renewal = asyncio.Lock()
        # Taken again after a lapse in Redis, its URN keys not yet confirmed (`renew`).
        self._unconfirmed = False
        self._confirming = False
        # The URNs the record said were given away, until a pass claimed them again; and
        # whether every lapse since the last pass was read from a whole record (else the
        # pass claims every key), as the Rust ``Lease::lapsed_in_redis``.
        self._given: set[str] = set()
        self._given_known = False
        # Lapses recorded so far: one recorded while a pass ran (a request's re-check took
        # the lease again meanwhile) leaves the lease unheld after that pass.
        self._lapses = 0
        # The Redis server that answered the last look (its run_id): `check_server`.
        self._run_id: str | None = None

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
                if self.record is not None:
                    await self._open_record()
                    await self.check_server()
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
        ``confirm(given)`` (the URN keys claimed again, those taken away given up) returned,
        the lease key renewed beside it; ``given``: the URNs the system's record says were
        given away meanwhile, or ``None`` when it does not know (every key to claim). A lapse
        of this process's own view only (starved or paused within the TTL) confirms nothing:
        the takeover acts only while the lease key is absent (docs/bench-log.md, "Overload: a
        starved member's lease")."""
        # A renewal meeting another's pass leaves the lease unheld (without waiting for it).
        if self._confirming:
            return False
        # Two renewals at once (the heartbeat's and a request's re-check, after a thaw) could
        # interleave so that the first takes the lapsed lease again while the second finds it
        # kept and, its answer read first, counts the lease held before the first has asked
        # for the URN keys: one at a time, as the Rust ``renew_lease``.
        async with self._renewal:
            return await self._renew_alone(confirm)

    async def _renew_alone(self, confirm: Any) -> bool:
        # Looked at once the lock is held: a renewal before this one may have lost it.
        if self.lost:
            return False
        since = time.monotonic()
        try:
            got = await self._renew_key(retake=True)
        except Exception:
            return False
        if got != 1:
            self.lost = True
            return False
        if self._unconfirmed and confirm is not None:
            self._confirming = True
            given = set(self._given) if self._given_known else None
            lapses = self._lapses
            try:
                kept_at = await self._keeping(lambda: confirm(given))
            finally:
                self._confirming = False
            if kept_at is None or self._lapses != lapses:
                return False
            # Claimed again: what the record named, or every key.
            self._unconfirmed = False
            self._given.clear()
            since = kept_at
        self.fresh_until = since + self.ttl * (1 - _DRIFT)
        return True

    async def check_server(self) -> None:
        """Counts the lease as lapsed (``lapse``) when another Redis server answers than at
        the last look (its ``run_id`` changed: a restart, a promoted replica). Redis out of
        reach, or ``INFO`` not allowed: nothing."""
        try:
            run_id, _ = server_fields(await self.redis.info("server"))
        except Exception:
            return
        if run_id is None:
            return
        if self._run_id is not None and run_id != self._run_id:
            log.warning("another Redis server answers than before: every URN key is claimed again")
            self.lapse()
        self._run_id = run_id

    def lapse(self) -> None:
        """Counts the lease as lapsed with the takeovers meanwhile unknown: another Redis
        server answers (a restart, a promoted replica), which may lack the last renewals of
        the URN keys and the record's last additions. The next renewal claims every key
        again before the lease counts as held (the Rust proxy does so at a reconnection)."""
        self._given_known = False
        self._unconfirmed = True
        self._lapses += 1
        self.fresh_until = 0.0

    def _lapsed_in_redis(self, given: list[str] | None) -> None:
        """The lease was found absent in Redis and taken again: ``given``, what the record
        said was given away meanwhile (``None``: not whole). A pass still owed for a lapse
        not known stays a pass over every key."""
        if given is None:
            known = False
        else:
            self._given.update(given)
            known = not self._unconfirmed or self._given_known
        self._given_known = known
        self._unconfirmed = True
        self._lapses += 1
        # Unheld until confirmed, even where this process's clock says fresh (Redis lost the
        # key: a restart without it).
        self.fresh_until = 0.0

    async def _renew_key(self, retake: bool) -> Any:
        """Renews the lease key, and takes it again when it had lapsed in Redis if ``retake``
        (then records the lapse): 1 when it names this instance now, 0 when absent (not
        taken), else the other holder. ``NotReplicated`` as ``_claim``."""
        if self.record is None:
            got = await self._claim(renew=True)
            if got == 0 and retake:
                got = await self._claim(renew=False)
                if got == 1:
                    self._lapsed_in_redis(None)
            return got
        record, record_ttl = self.record
        args = [self.token, int(self.ttl * 1000), int(record_ttl * 1000), _lua.GIVEN_WHOLE, "1" if retake else "0"]
        answer, short = await written(self.redis, self.durability, self.scripts.system_lease, [self.key, record], args)
        code = int(answer[0])
        if code == 3:
            # Read and emptied in the same step: kept before anything else can fail.
            urns = answer[1] if isinstance(answer[1], list) else None
            self._lapsed_in_redis(
                None if urns is None
                else [u for raw in urns if (u := raw.decode("utf-8", "replace")) != _lua.GIVEN_WHOLE]
            )
        if code == 2:
            return answer[1]
        if code == 0:
            return 0
        if short is not None:
            raise short
        return 1

    async def _open_record(self) -> None:
        """Makes the system's record anew, empty and whole, once the lease was taken at start
        (nothing is held yet, so nothing given away before can matter), as the Rust
        ``given::open``. Not made (Redis did not answer): the first lapse claims every key."""
        assert self.record is not None
        record, record_ttl = self.record
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(record)
            pipe.sadd(record, _lua.GIVEN_WHOLE)
            pipe.pexpire(record, int(record_ttl * 1000))
            await pipe.execute()
        except Exception:
            pass

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
                got = await self._renew_key(retake=False)
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
        self.system_lease = redis.register_script(_lua.SYSTEM_LEASE_SCRIPT)
        self.answer = redis.register_script(_lua.ANSWER_SCRIPT)
        self.forward = redis.register_script(_lua.FORWARD_SCRIPT)
        self.report = redis.register_script(_lua.PLACEMENT_REPORT_SCRIPT)
        self.read_directory = redis.register_script(_lua.PLACEMENT_READ_SCRIPT)
        self.place = redis.register_script(_lua.PLACE_SCRIPT)
        self.forget = redis.register_script(_lua.GROUP_FORGET_SCRIPT)
        self.take_over = redis.register_script(_lua.TAKE_OVER_SCRIPT)
        self.close_drained = redis.register_script(_lua.CLOSE_DRAINED_SCRIPT)
        self.state_save = redis.register_script(_lua.STATE_SAVE_SCRIPT)
        self.state_close = redis.register_script(_lua.STATE_CLOSE_SCRIPT)
        self.carried_open = redis.register_script(_lua.CARRIED_OPEN_SCRIPT)
        self.carry = redis.register_script(_lua.CARRY_SCRIPT)
        self.hand_urn = redis.register_script(_lua.HAND_URN_SCRIPT)
