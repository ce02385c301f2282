"""The demo's web tier: a FastAPI app asking the accounts of ``acct:{id}`` (served by Rust
and Python members alike) through conclib.

    CONCLIB_URL=redis://... CONCLIB_NAMESPACE=mixed uvicorn python.examples.demo_app:app --workers 2

- ``GET /health``: 200 (does not touch Redis);
- ``POST /accounts/{id}/incr``: asks ``demo.Incr``: ``{"id": id, "count": n}``; a failed ask
  is a 503 with the error's label;
- ``GET /accounts/{id}``: asks ``demo.Balance``: ``{"id": id, "count": n}``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

import conclib

client = conclib.AsyncClient(
    os.environ.get("CONCLIB_URL", "redis://127.0.0.1:6379"),
    namespace=os.environ.get("CONCLIB_NAMESPACE", "mixed"),
    timeout=float(os.environ.get("CONCLIB_TIMEOUT", "2")),
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await client.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


async def _ask(account: str, message: str) -> dict[str, object]:
    try:
        count = await client.ask(f"acct:{account}", message)
    except conclib.ConclibError as e:
        raise HTTPException(503, {"error": e.label, "detail": str(e)}) from None
    return {"id": account, "count": count}


@app.post("/accounts/{account}/incr")
async def incr(account: str) -> dict[str, object]:
    return await _ask(account, "demo.Incr")


@app.get("/accounts/{account}")
async def balance(account: str) -> dict[str, object]:
    return await _ask(account, "demo.Balance")
