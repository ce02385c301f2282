"""Hand-over notes: each hand-over of a URN key to another system (a drain's, a rebalance's,
a reroute's move) is published on the namespace's channel (``Keys.moves``) in the step that
hands it, and a session with a route to that URN cached sends there from then on. Without
it, the session's first request after the move goes to the member it cached, which passes
it on (two trips through Redis, and work for a member that may be draining), and only the
answer's route hint corrects the route. A note is a hint only: one missed (before the
subscription is up, while reconnecting, or refused by an ACL that predates the channel)
costs what a stale route costs. Not on a Redis Cluster, where nothing is published.

One connection of the session's own listens; its cost on the normal path is that
connection, and for each note one look in the route cache.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import NoPermissionError

log = logging.getLogger("conclib")

LISTEN_SECS = 1.0
"""How long one wait for a note blocks before the session's state is looked at again."""


async def follow_moves(session: Any) -> None:
    """Subscribes ``session``'s Redis client to the notes and follows each one into
    ``session.routes`` until the session closes (its task is cancelled then), subscribing
    again after a lost connection. Gives up, logging why, if Redis refuses the subscription
    (an ACL without the channel)."""
    channel = session.keys.moves()
    prefix = session.keys.urn("")
    pause = 0.05
    while not session.closed:
        pubsub = session.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await asyncio.wait_for(pubsub.subscribe(channel), session.client.connect_timeout)
            session.moves_subscribed.set()
            pause = 0.05
            while not session.closed:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_SECS)
                if message is not None and message.get("type") == "message":
                    data = message.get("data")
                    if isinstance(data, bytes):
                        session.routes.follow_move(data, prefix)
                        session.moves_seen += 1
                        session.moves_noted.set()
        except NoPermissionError as e:
            log.warning(
                "not subscribed to the hand-over notes (%s): requests for a moved URN are passed on by "
                "its previous holder",
                e,
            )
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a lost connection: subscribed again below
            log.debug("the hand-over notes' connection failed (%s); subscribing again", e)
        finally:
            await _close(pubsub)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def _close(pubsub: Any) -> None:
    """Closes ``pubsub``'s connection, within a second whatever Redis does."""
    try:
        await asyncio.wait_for(pubsub.aclose(), 1.0)
    except BaseException as e:  # noqa: BLE001 - best effort; CancelledError re-raised
        if isinstance(e, asyncio.CancelledError):
            raise
