"""The FastAPI example's Server-Sent Events endpoint under a real ``uvicorn --workers 2``:
several SSE streams (spread over the workers) each receive every event a Rust actor
(``py:publisher``) publishes to a live topic, and a durable topic's events reach a stream in
order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import conclib
from conftest import free_port, run, wait_until

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402


@pytest.fixture()
def web(url: str, namespace: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--workers", "2",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "CONCLIB_URL": url, "CONCLIB_NAMESPACE": namespace},
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, f"uvicorn exited with {proc.returncode}"
        try:
            return bool(httpx.get(f"{base}/health", timeout=1).status_code == 200)
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, "uvicorn to answer", every=0.1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def sse_events(http: httpx.AsyncClient, path: str, subscribed: asyncio.Event, count: int) -> list[object]:
    events: list[object] = []
    async with http.stream("GET", path, timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line == ": subscribed":
                subscribed.set()
            elif line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
                if len(events) == count:
                    break
    return events


def test_sse_streams_on_several_workers_each_get_every_event(web: str, url: str, namespace: str) -> None:
    topic = f"sse-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        async with httpx.AsyncClient(base_url=web) as http, conclib.AsyncClient(url, namespace=namespace) as client:
            ready = [asyncio.Event() for _ in range(6)]
            streams = [asyncio.create_task(sse_events(http, f"/events/{topic}?count=20", r, 20)) for r in ready]
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 20)
            await client.ask("py:publisher", "test.Publish",
                             {"topic": topic, "durable": False, "from": 3, "count": 20}, timeout=10)
            for got in await asyncio.wait_for(asyncio.gather(*streams), 20):
                assert got == [{"from": 3, "seq": i} for i in range(20)]

    run(main())


def test_sse_stream_of_a_durable_topic(web: str, url: str, namespace: str) -> None:
    topic = f"sse-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        async with httpx.AsyncClient(base_url=web) as http, conclib.AsyncClient(url, namespace=namespace) as client:
            ready = asyncio.Event()
            stream = asyncio.create_task(sse_events(http, f"/events/{topic}?durable=true&count=50", ready, 50))
            await asyncio.wait_for(ready.wait(), 20)
            await client.ask("py:publisher", "test.Publish",
                             {"topic": topic, "durable": True, "from": 4, "count": 50}, timeout=10)
            got = await asyncio.wait_for(stream, 20)
            assert got == [{"from": 4, "seq": i} for i in range(50)]
            bad = await http.get("/events/two%20words")
            assert bad.status_code == 400

    run(main())
