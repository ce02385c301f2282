"""Every message shape and every reply status, against the real Rust server."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, ClassVar

import pytest

import conclib
from conftest import run

SHAPES = "py:shapes"


def ask_all(url: str, namespace: str, calls: list[tuple[str, Any]], urn: str = SHAPES) -> list[Any]:
    """Asks each (message, payload) concurrently on one async client; results or errors."""

    async def main() -> list[Any]:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            return await asyncio.gather(
                *(client.ask(urn, name, payload, timeout=5) for name, payload in calls),
                return_exceptions=True,
            )

    return run(main())


def test_every_shape_roundtrips(url: str, namespace: str) -> None:
    order = {
        "customer": {"name": "Ada", "address": {"city": "Paris", "zip": "75001"}},
        "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}],
        "note": None,
    }
    calls: list[tuple[str, Any]] = [
        # A struct with a nested struct, answered with a struct.
        ("Move", {"point": {"x": 1, "y": 2}, "dx": 10, "dy": -5}),
        # A newtype: its bare value.
        ("Double", 21),
        # A tuple struct: an array; answered with a tuple (an array).
        ("Swap", ["x", 7]),
        # A unit struct: nil (an empty array is accepted too).
        ("Hello", None),
        ("Hello", []),
        # Enums, externally tagged: unit, newtype, tuple and struct variants.
        ("Measure", "Empty"),
        ("Measure", {"Square": 3}),
        ("Measure", {"Segment": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]}),
        ("Measure", {"Rect": {"width": 2, "height": 5}}),
        # An enum message, and enum responses of every variant kind.
        ("Command", {"Set": 40}),
        ("Classify", 0),
        ("Classify", 42),
        ("Classify", 12345),
        # Options: a field set or nil, a response some or none.
        ("Greet", {"name": "Bob"}),
        ("Greet", {"name": None}),
        ("Greet", {}),
        # Bytes: bin both ways (serde_bytes), or an array of integers (Vec<u8>).
        ("Reverse", b"\x00\x01\xff"),
        ("Sum", [1, 2, 250]),
        # Nested structs, a list of structs.
        ("PlaceOrder", order),
        # A map.
        ("Tally", ["a", "b", "a"]),
        # Unit response: nil.
        ("Noop", None),
        # A struct may be sent as an array of its fields in order.
        ("Move", [{"x": 0, "y": 0}, 1, 1]),
    ]
    results = ask_all(url, namespace, calls)
    assert results == [
        {"x": 11, "y": -3},
        42,
        [7, "x"],
        "hello",
        "hello",
        {"area": 0, "perimeter": 0, "kind": "Empty"},
        {"area": 9, "perimeter": 12, "kind": "Square"},
        {"area": 0, "perimeter": None, "kind": "Segment"},
        {"area": 10, "perimeter": 14, "kind": "Rect"},
        40,
        "Zero",
        {"Small": 42},
        {"Large": {"value": 12345, "digits": 5}},
        "hello, Bob",
        None,
        None,
        b"\xff\x01\x00",
        253,
        {"customer": order["customer"], "total_qty": 5, "skus": ["a", "b"], "note": None},
        {"a": 2, "b": 1},
        None,
        {"x": 1, "y": 1},
    ]


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Move:
    __conclib_name__: ClassVar[str] = "Move"
    point: Point
    dx: int
    dy: int


class Double:
    """A newtype message: its bare value on the wire."""

    __conclib_name__ = "Double"

    def __init__(self, n: int) -> None:
        self.n = n

    def __conclib_encode__(self) -> int:
        return self.n


def test_typed_message_objects(url: str, namespace: str) -> None:
    async def main() -> tuple[Any, Any]:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            moved = await client.ask(SHAPES, Move(Point(1, 1), 2, 3))
            doubled = await client.ask(SHAPES, Double(8))
            with pytest.raises(TypeError):
                await client.ask(SHAPES, Double(8), 3)
            return moved, doubled

    assert run(main()) == ({"x": 3, "y": 4}, 16)


def test_handler_errors_are_decoded(url: str, namespace: str) -> None:
    results = ask_all(
        url,
        namespace,
        [
            ("Divide", {"a": 1, "b": 0}),
            ("Divide", {"a": -(2**63), "b": -1}),
            ("Double", 2**62),
            ("PlaceOrder", {"customer": {"name": "x", "address": {"city": "c", "zip": "z"}}, "lines": [], "note": "n"}),
            ("Divide", {"a": 9, "b": 3}),
        ],
    )
    errors = [r.error if isinstance(r, conclib.HandlerError) else r for r in results]
    assert errors == [
        "DivideByZero",
        {"Overflow": {"a": -(2**63), "b": -1}},
        {"Overflow": {"a": 2**62, "b": 2}},
        "Empty",
        3,
    ]
    assert all(isinstance(r, conclib.ConclibError) for r in results[:4])
    assert isinstance(results[0], conclib.HandlerError) and results[0].urn == SHAPES and results[0].message == "Divide"


def test_every_error_status(url: str, namespace: str, raw_redis: Any) -> None:
    # A URN the system's Redis entry names but the system does not have: the proxy answers
    # UnknownUrn (status 2), the client resolves again, finds the same system, and says so.
    system = raw_redis.get(f"{namespace}:urn:{SHAPES}").decode()
    raw_redis.set(f"{namespace}:urn:py:ghost", system, px=60_000)
    try:
        results = ask_all(
            url,
            namespace,
            [
                ("Explode", "kaboom"),  # Panicked (the actor resumes)
                ("Internal", None),  # handled but not exposed: NotExposed
                ("NoSuchMessage", None),  # NotExposed
                ("Double", "not a number"),  # CodecError at the proxy
                ("Double", conclib.Encoded(b"\x05\x00")),  # trailing bytes: CodecError
                ("Nap", {"ms": 1}),  # still alive after the panic
            ],
        )
        ghost = ask_all(url, namespace, [("Hello", None)], urn="py:ghost")[0]
        nobody = ask_all(url, namespace, [("Hello", None)], urn="py:nobody")[0]
        invalid = ask_all(url, namespace, [("Hello", None)], urn="has space")[0]
    finally:
        raw_redis.delete(f"{namespace}:urn:py:ghost")
    assert isinstance(results[0], conclib.Panicked) and "kaboom" in results[0].text
    assert isinstance(results[1], conclib.NotExposed) and results[1].message == "Internal"
    assert isinstance(results[2], conclib.NotExposed) and isinstance(results[2], conclib.UnknownMessage)
    assert isinstance(results[3], conclib.CodecError)
    assert isinstance(results[4], conclib.CodecError)
    assert results[5] == 1
    for e in (ghost, nobody, invalid):
        assert isinstance(e, conclib.UnknownUrn), e
    assert ghost.urn == "py:ghost"


def test_too_large_both_ways(url: str, namespace: str) -> None:
    async def main() -> list[Any]:
        # The client refuses a message over its own limit before sending it.
        async with conclib.AsyncClient(url, namespace=namespace, max_payload=1000) as small:
            with pytest.raises(conclib.TooLarge):
                await small.ask(SHAPES, "Sum", list(range(200)) * 10)
        # A client with a larger limit than the proxy's (8 MiB): the proxy answers TooLarge.
        async with conclib.AsyncClient(url, namespace=namespace, max_payload=64 << 20) as big:
            return await asyncio.gather(
                big.ask(SHAPES, "Reverse", b"\x01" * (9 << 20), timeout=20),
                # An answer over the proxy's limit.
                big.ask("conf:counter", "test.Blob", 9_000_000, timeout=20),
                big.ask(SHAPES, "Reverse", b"\x02" * (1 << 20), timeout=20),
                return_exceptions=True,
            )

    too_big, answer_too_big, fine = run(main())
    assert isinstance(too_big, conclib.TooLarge), too_big
    assert isinstance(answer_too_big, conclib.TooLarge), answer_too_big
    assert fine == b"\x02" * (1 << 20)


def test_blocking_client(url: str, namespace: str) -> None:
    with conclib.Client(url, namespace=namespace) as client:
        assert client.ask(SHAPES, "Double", 4) == 8
        with pytest.raises(conclib.HandlerError) as e:
            client.ask(SHAPES, "Divide", {"a": 1, "b": 0})
        assert e.value.error == "DivideByZero"
        assert client.resolve(SHAPES) == "pyserver"
        assert client.resolve("py:nobody") is None
        client.tell("py:counter", "Record", 1)
    with pytest.raises(conclib.Closed):
        client.ask(SHAPES, "Double", 4)


def test_blocking_client_from_many_threads(url: str, namespace: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with conclib.Client(url, namespace=namespace) as client:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda n: client.ask(SHAPES, "Double", n), range(200)))
    assert results == [2 * n for n in range(200)]


def test_many_concurrent_asks_share_one_reply_list(url: str, namespace: str, raw_redis: Any) -> None:
    async def main() -> tuple[list[Any], str | None]:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            results = await asyncio.gather(*(client.ask(SHAPES, "Double", n) for n in range(500)))
            return results, client.reply_key

    results, reply_key = run(main())
    assert results == [2 * n for n in range(500)]
    assert reply_key is not None and reply_key.startswith(f"{namespace}:reply:")
    assert len(reply_key.rsplit(":", 1)[1]) == 32
    # Closing deletes the reply list.
    assert raw_redis.exists(reply_key) == 0


def test_closed_client_and_bad_arguments(url: str, namespace: str) -> None:
    async def main() -> None:
        client = await conclib.connect(url, namespace=namespace)
        with pytest.raises(ValueError):
            await client.ask(SHAPES, "Hello", None, priority="urgent")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await client.ask(SHAPES, "Hello", None, timeout=0)
        with pytest.raises(ValueError):
            await client.ask(SHAPES, "Hello", None, traceparent="nonsense")
        with pytest.raises(conclib.CodecError):
            await client.ask(SHAPES, "Hello", object())
        await client.close()
        with pytest.raises(conclib.Closed):
            await client.ask(SHAPES, "Hello")

    run(main())
    with pytest.raises(conclib.ConfigError):
        conclib.AsyncClient(url, namespace="has space")
    with pytest.raises(conclib.ConfigError):
        conclib.AsyncClient("http://localhost", namespace=namespace)
    with pytest.raises(conclib.ConfigError):
        conclib.AsyncClient(url, namespace=namespace, max_payload=-1)


def test_unreachable_redis_is_unavailable() -> None:
    from conftest import free_port

    async def main() -> None:
        with pytest.raises(conclib.Unavailable):
            await conclib.connect(f"redis://127.0.0.1:{free_port()}", connect_timeout=1)
        client = conclib.AsyncClient(f"redis://127.0.0.1:{free_port()}", connect_timeout=1)
        with pytest.raises(conclib.Unavailable):
            await client.ask(SHAPES, "Hello", timeout=2)

    run(main(), timeout=20)
