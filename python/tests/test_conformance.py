"""The shared conformance cases (``python/conformance/*.json``), run against the conformance
actor served by the Rust proxy (the Python test server's) and by the Python actor host
(``tests/mirror_host.py``): once with raw Redis commands, once through the client. A case's
``python_host`` key, if any, replaces its ``expect`` for the Python host (what it does
differently, on purpose)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

import conclib
from conftest import PythonHost, RedisServer, run

CASES = sorted((Path(__file__).resolve().parents[1] / "conformance").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    return case


def test_there_are_cases() -> None:
    assert len(CASES) >= 20


@pytest.fixture(scope="module")
def python_host(redis_server: RedisServer, namespace: str) -> Iterator[str]:
    """The namespace a Python actor host serves the conformance actor in."""
    ns = f"{namespace}-pyhost"
    host = PythonHost(redis_server.url, ns)
    yield ns
    host.close()


@pytest.fixture(params=["rust", "python"])
def served(request: pytest.FixtureRequest, url: str, namespace: str) -> tuple[str, str]:
    """Which host serves the cases, and its namespace."""
    if request.param == "rust":
        return "rust", namespace
    return "python", request.getfixturevalue("python_host")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_raw(path: Path, served: tuple[str, str], raw_redis: Any) -> None:
    host, namespace = served
    case = load(path)
    if host == "python" and "python_host" in case:
        case["expect"] = case["python_host"]
    urn = case["urn"]
    request_id = secrets.randbelow(2**63) + 1
    reply = f"{namespace}:reply:{secrets.token_hex(16)}"

    def value(v: Any) -> bytes:
        if isinstance(v, dict):
            return bytes.fromhex(v["hex"])
        return v.replace("$id", str(request_id)).replace("$urn", urn).replace("$reply", reply).encode()

    expect = case["expect"]
    if "resolve" in expect:
        assert raw_redis.get(f"{namespace}:urn:{urn}") is None
        return
    system = raw_redis.get(f"{namespace}:urn:{case.get('route', urn)}")
    assert system is not None
    stream = f"{namespace}:sys:{system.decode()}:req"
    flat = [value(item) for pair in case["fields"] for item in pair]
    try:
        assert raw_redis.execute_command("XADD", stream, "NOMKSTREAM", "*", *flat) is not None
        if "no_reply_within_ms" in expect:
            got = raw_redis.execute_command("BLMPOP", expect["no_reply_within_ms"] / 1000, 1, reply, "LEFT")
            assert got is None, got
            return
        ttl = next((int(value(v)) for k, v in case["fields"] if k == "ttl"), 5000)
        got = raw_redis.execute_command("BLMPOP", ttl / 1000 + 5, 1, reply, "LEFT", "COUNT", 1)
        assert got is not None, "no reply"
        frame: bytes = got[1][0]
        assert int.from_bytes(frame[:8], "big") == request_id
        assert frame[8] == expect["status"], (frame[8], frame[9:200])
        payload = frame[9:]
        if "payload_hex" in expect:
            assert payload.hex() == expect["payload_hex"]
        if "payload_contains" in expect:
            assert expect["payload_contains"] in payload.decode("utf-8", "replace")
    finally:
        raw_redis.delete(reply)


CLIENT_CASES = [p for p in CASES if "client" in load(p)]


@pytest.mark.parametrize("path", CLIENT_CASES, ids=[p.stem for p in CLIENT_CASES])
def test_client(path: Path, served: tuple[str, str], url: str) -> None:
    host, namespace = served
    case = load(path)
    spec = case["client"]
    if host == "python" and "python_host_client" in case:
        spec = case["python_host_client"]
    payload = conclib.Encoded(bytes.fromhex(spec["payload_hex"])) if "payload_hex" in spec else spec.get("payload")
    options: dict[str, Any] = {k: spec[k] for k in ("timeout", "priority", "traceparent") if k in spec}

    async def main() -> Any:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            return await client.ask(case["urn"], spec["message"], payload, **options)

    if "raises" in spec:
        error = getattr(conclib, spec["raises"])
        with pytest.raises(error) as e:
            run(main())
        if "error" in spec:
            assert e.value.error == spec["error"]
    else:
        assert run(main()) == spec["returns"]
