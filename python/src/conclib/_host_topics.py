"""A topic's events going into a Python actor, as the Rust ``Topics::subscribe_actor``
(``topics/actor.rs``): read with the host's client (``conclib.topics``) and sent to the
actor's URN through the ordinary request path (so single activation, placement and failover
apply as to any request). A live topic's events are told; a durable topic's are asked, each
acknowledged once the actor's handler returned (whatever it returned), so an event whose
handling no member finished comes again."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from .errors import ConclibError, Lagged

__all__ = ["ActorSubscription"]

log = logging.getLogger("conclib.host")

# How long a durable event handed to an actor may take (queued and handled), as the Rust
# DEFAULT_HANDLE_TIMEOUT.
HANDLE_TIMEOUT = 3600.0


@dataclass
class ActorSubscription:
    """Topic ``topic``'s events, each sent to ``urn`` as message ``message``: what
    :meth:`conclib.host.ActorHost.subscribe_actor` registered. ``handed``: events sent;
    ``failed``: events whose tell or ask failed (not retried); ``missed``: live events
    dropped because the subscription fell behind (``Lagged``)."""

    topic: str
    urn: str
    message: str
    durable: bool
    group: str
    handed: int = 0
    failed: int = 0
    missed: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def run(self, client: Any, ready: asyncio.Future[None]) -> None:
        try:
            sub = await client.subscribe(self.topic, durable=self.durable, group=self.group)
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e)
            raise
        ready.set_result(None)
        try:
            while True:
                try:
                    event = await sub.get()
                except Lagged as lag:
                    self.missed += lag.missed
                    continue
                except StopAsyncIteration:
                    return
                try:
                    if self.durable:
                        await client.ask(self.urn, self.message, event, timeout=HANDLE_TIMEOUT)
                    else:
                        await client.tell(self.urn, self.message, event)
                    self.handed += 1
                except ConclibError as e:
                    self.failed += 1
                    log.warning("could not hand an event of %s to %s: %s", self.topic, self.urn, e)
        finally:
            await sub.aclose()
