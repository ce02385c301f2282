"""A FastAPI app asking the test server's actors through conclib (see python/README.md).

    uvicorn python.examples.fastapi_app:app --workers 3     # from the repository root

Environment: ``CONCLIB_URL`` (default ``redis://127.0.0.1:6379``), ``CONCLIB_NAMESPACE``
(default ``conclib``). Endpoints:

- ``GET /health``: 200 once the app runs (it does not touch Redis);
- ``GET /double/{n}``: asks ``py:shapes`` ``Double(n)`` and answers ``{"n": n, "double": 2n}``;
  a failed ask is a 503 (``Unavailable``, ``MailboxFull``, ``Timeout``; ``Overloaded``
  with ``Retry-After: 1``) or a 502;
- ``GET /nap/{key}/{ms}``: asks ``py:busy:{key}`` ``Nap(ms)`` (the test server allows one
  request pending per such URN: a second one meanwhile is ``Overloaded``, a 503 with
  ``Retry-After``);
- ``GET /plain/{n}``: answers ``{"n": n, "double": 2n}`` from memory (the baseline);
- ``POST /orders/{order}?key=K&cents=C``: starts the durable workflow of ``py:order:{order}``
  under the idempotency key ``K`` (a tell of ``py.Place``; 202 ``{"key": K}``): it charges
  once, then waits for its ``approved`` promise;
- ``POST /orders/{order}/{key}/approve?approved=true``: resolves that promise
  (``{"resolved": false}`` if it was resolved already: the first value stays);
- ``GET /orders/{order}/{key}?wait=S``: the workflow's result (``{"result": "charged C
  approved=true"}``), waiting up to ``S`` seconds (default 0) for it to finish; 404 if it has
  not finished (by then);
- ``GET /events/{topic}``: Server-Sent Events: subscribes to the topic (live; ``?durable=true``
  for a durable one, read in the subscriber group ``?group=`` , default ``web``) and streams
  each event as ``data: <JSON>`` (``curl -N``, a browser's ``EventSource``); a comment line
  ``: subscribed`` first, once events published from then on reach the stream, and ``: ping``
  after 15 s without events; ``?count=N`` ends the stream after N events. A stream that fell
  behind a live topic (its subscription's buffer overflowed) gets ``event: lagged`` with
  ``data: {"missed": N}`` (the events it lost) before the next event, and goes on. Each worker of
  ``--workers`` subscribes for its own streams: every stream gets every event of a live topic.

One ``AsyncClient`` per worker process, made at import: it connects on its first ask, in the
worker (a client belongs to the process and event loop that connected it, so the forks of
``--workers`` each get their own), and is closed at shutdown. The routes get it through the
dependency ``get_client``, so that a test can hand them a fake instead
(``app.dependency_overrides[get_client] = lambda: fake``, ``conclib.testing``; see
``tests/test_fake.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import StreamingResponse

import conclib

client = conclib.AsyncClient(
    os.environ.get("CONCLIB_URL", "redis://127.0.0.1:6379"),
    namespace=os.environ.get("CONCLIB_NAMESPACE", "conclib"),
    timeout=float(os.environ.get("CONCLIB_TIMEOUT", "5")),
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await client.close()


app = FastAPI(lifespan=lifespan)


async def get_client() -> conclib.AsyncClient:
    """The worker's client (a dependency: tests override it)."""
    return client


Actors = Annotated[conclib.AsyncClient, Depends(get_client)]


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def http_error(e: conclib.ConclibError) -> HTTPException:
    """The HTTP error a failed ask answers: 503 when trying again later may succeed (an
    overloaded actor says when: ``Retry-After``), 502 otherwise."""
    if isinstance(e, conclib.Overloaded):
        return HTTPException(503, f"{e.label}: {e}", headers={"Retry-After": "1"})
    if isinstance(e, (conclib.Unavailable, conclib.MailboxFull, conclib.Timeout)):
        return HTTPException(503, f"{e.label}: {e}")
    return HTTPException(502, f"{e.label}: {e}")


@app.get("/double/{n}")
async def double(n: int, actors: Actors) -> dict[str, int]:
    try:
        result = await actors.ask("py:shapes", "Double", n)
    except conclib.ConclibError as e:
        raise http_error(e) from None
    return {"n": n, "double": int(result)}


@app.get("/nap/{key}/{ms}")
async def nap(key: str, ms: int, actors: Actors) -> dict[str, int]:
    try:
        slept = await actors.ask(f"py:busy:{key}", "Nap", {"ms": ms})
    except conclib.ConclibError as e:
        raise http_error(e) from None
    return {"slept": int(slept)}


@app.post("/orders/{order}", status_code=202)
async def start_order(order: str, key: str, cents: int, actors: Actors) -> dict[str, str]:
    try:
        await actors.tell(f"py:order:{order}", "py.Place", {"key": key, "cents": cents})
    except conclib.ConfigError as e:
        raise HTTPException(400, str(e)) from None
    except conclib.ConclibError as e:
        raise http_error(e) from None
    return {"key": key}


@app.post("/orders/{order}/{key}/approve")
async def approve_order(order: str, key: str, actors: Actors, approved: bool = True) -> dict[str, bool]:
    try:
        resolved = await actors.resolve_promise(f"py:order:{order}", key, "approved", approved)
    except conclib.ConfigError as e:
        raise HTTPException(400, str(e)) from None
    except conclib.ConclibError as e:
        raise http_error(e) from None
    return {"resolved": resolved}


@app.get("/orders/{order}/{key}")
async def order_result(order: str, key: str, actors: Actors, wait: float = 0.0) -> dict[str, str]:
    try:
        if wait > 0:
            result = await actors.wait_execution(f"py:order:{order}", key, timeout=wait)
        else:
            finished = await actors.execution_result(f"py:order:{order}", key)
            if finished is None:
                raise HTTPException(404, "not finished")
            result = finished.value
    except conclib.Timeout:
        raise HTTPException(404, "not finished") from None
    except conclib.ConfigError as e:
        raise HTTPException(400, str(e)) from None
    except conclib.ConclibError as e:
        raise http_error(e) from None
    return {"result": str(result)}


@app.get("/plain/{n}")
async def plain(n: int) -> dict[str, int]:
    return {"n": n, "double": 2 * n}


@app.get("/events/{topic}")
async def events(
    topic: str, actors: Actors, durable: bool = False, group: str = "web", count: int | None = None
) -> StreamingResponse:
    try:
        subscription = await actors.subscribe(topic, durable=durable, group=group)
    except conclib.ConfigError as e:
        raise HTTPException(400, str(e)) from None
    except conclib.ConclibError as e:
        raise HTTPException(503, f"{e.label}: {e}") from None

    async def stream() -> AsyncIterator[str]:
        sent = 0
        try:
            yield ": subscribed\n\n"
            while count is None or sent < count:
                try:
                    event = await subscription.get(timeout=15.0)
                except conclib.Timeout:
                    yield ": ping\n\n"
                    continue
                except conclib.Lagged as lag:
                    yield f"event: lagged\ndata: {json.dumps({'missed': lag.missed})}\n\n"
                    continue
                except StopAsyncIteration:
                    return
                yield f"data: {json.dumps(event, default=str)}\n\n"
                sent += 1
        finally:
            # The client went away (the server cancels the stream) or the count is reached.
            await subscription.aclose()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
