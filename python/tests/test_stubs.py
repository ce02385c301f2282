"""Typed stubs generated from the Rust declarations (the library's ``conclib::schema::Export``,
as ``conclib-pyserver --export-schema`` prints it → ``python -m conclib.stubgen``), with
dataclasses and with pydantic v2 models, for the async and the blocking client: they
type-check under mypy --strict and pyright, work against the real server, and a field
renamed on the Rust side makes code using the old name fail both."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import run, server_binary
from test_typing import mypy, pyright

USE = '''
import conclib
import api


async def main(client: conclib.AsyncClient) -> list[object]:
    counter = api.Counter(client, "py:counter")
    await counter.reset()
    total: int = await counter.add(n=5)
    await counter.tell_record(7)
    history: list[int] = await counter.history()
    shapes = api.Shapes(client)
    moved: api.Point = await shapes.move(point=api.Point(x=1, y=2), dx=3, dy=4)
    size: api.Size = await shapes.classify(12345)
    area: api.Measured = await shapes.measure(api.ShapeRect(width=2, height=3))
    unit: api.Measured = await shapes.measure("Empty")
    swapped: tuple[int, str] = await shapes.swap("a", 1)
    greeting: str | None = await shapes.greet(name=None)
    reversed_: bytes = await shapes.reverse(b"abc")
    tally: dict[str, int] = await shapes.tally(["x", "y", "x"])
    receipt = await shapes.place_order(
        customer=api.Customer(name="Ada", address=api.Address(city="Paris", zip="75001")),
        lines=[api.Line(sku="a", qty=2)],
    )
    try:
        await shapes.divide(a=1, b=0)
        error: api.MathError | None = None
    except api.ShapesDivideError as e:  # a conclib.HandlerError[api.MathError]
        error = e.error
    # A durable workflow activated by pattern: started typed, its promise resolved, its
    # result read by key, and the same key asked again.
    orders = api.Orders(client, "py:order:stubs")
    await orders.tell_place(key="stubs-1", cents=5)
    await client.resolve_promise("py:order:stubs", "stubs-1", "approved", True)
    placed: str = await client.wait_execution("py:order:stubs", "stubs-1", timeout=20)
    again: str = await orders.place(key="stubs-1", cents=6)
    charged: int = await orders.charges()
    return [total, history, moved, size, area, unit, swapped, greeting, reversed_, tally, receipt, error,
            (placed, again, charged)]
'''


USE_BLOCKING = '''
import conclib
import api


def main(client: conclib.Client) -> list[object]:
    counter = api.BlockingCounter(client, "py:counter")
    counter.reset()
    total: int = counter.add(n=5)
    counter.tell_record(7)
    history: list[int] = counter.history()
    shapes = api.BlockingShapes(client)
    moved: api.Point = shapes.move(point=api.Point(x=1, y=2), dx=3, dy=4)
    size: api.Size = shapes.classify(12345)
    area: api.Measured = shapes.measure(api.ShapeRect(width=2, height=3))
    swapped: tuple[int, str] = shapes.swap("a", 1)
    receipt = shapes.place_order(
        customer=api.Customer(name="Ada", address=api.Address(city="Paris", zip="75001")),
        lines=[api.Line(sku="a", qty=2)],
    )
    try:
        shapes.divide(a=1, b=0)
        error: api.MathError | None = None
    except api.ShapesDivideError as e:
        error = e.error
    return [total, history, moved, size, area, swapped, receipt, error]
'''


_SCHEMA: dict[str, Any] = {}


def schema_document() -> dict[str, Any]:
    """What the test server's actors expose, as the library's export writes it."""
    if not _SCHEMA:
        done = subprocess.run([str(server_binary()), "--export-schema"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        _SCHEMA.update(json.loads(done.stdout))
    return json.loads(json.dumps(_SCHEMA))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return schema_document()


def generate_from(schema: dict[str, Any], where: Path, models: str = "dataclass") -> Path:
    """``api.py`` made by ``python -m conclib.stubgen`` in ``where``, with ``use.py`` (async)
    and ``use_blocking.py`` beside it."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "schema.json").write_text(json.dumps(schema))
    done = subprocess.run(
        [sys.executable, "-m", "conclib.stubgen", str(where / "schema.json"), "-o", str(where / "api.py"),
         "--models", models],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (where / "use.py").write_text(USE)
    (where / "use_blocking.py").write_text(USE_BLOCKING)
    return where


def generate(schema: dict[str, Any], where: Path) -> Path:
    return generate_from(schema, where)


def load(where: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, where / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stubs_type_check_and_work(schema: dict[str, Any], tmp_path: Path, url: str, namespace: str) -> None:
    where = generate(schema, tmp_path / "good")
    checked = mypy("api.py", "use.py", cwd=where)
    assert checked.returncode == 0, checked.stdout

    sys.path.insert(0, str(where))
    try:
        spec = importlib.util.spec_from_file_location("use", where / "use.py")
        assert spec is not None and spec.loader is not None
        use = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(use)
        import api
        import conclib

        async def main() -> list[object]:
            async with conclib.AsyncClient(url, namespace=namespace) as client:
                result: list[object] = await use.main(client)
                return result

        (total, history, moved, size, area, unit, swapped, greeting, reversed_, tally, receipt, error,
         workflow) = run(main())
    finally:
        sys.path.remove(str(where))
        sys.modules.pop("api", None)
    assert total == 5
    assert history == [7]
    assert moved == api.Point(x=4, y=6)
    assert size == api.SizeLarge(value=12345, digits=5)
    assert area == api.Measured(area=6, perimeter=10, kind="Rect")
    assert unit == api.Measured(area=0, perimeter=0, kind="Empty")
    assert swapped == (1, "a")
    assert greeting is None
    assert reversed_ == b"cba"
    assert tally == {"x": 2, "y": 1}
    assert receipt == api.Receipt(
        customer=api.Customer(name="Ada", address=api.Address(city="Paris", zip="75001")),
        total_qty=2, skus=["a"], note=None,
    )
    assert error == "DivideByZero"
    assert workflow == ("charged 5 approved=true", "charged 5 approved=true", 1)


def test_a_renamed_field_fails_mypy(schema: dict[str, Any], tmp_path: Path) -> None:
    # On the Rust side, `Add { n }` becomes `Add { amount }`: code still passing n= no longer
    # type-checks.
    renamed = json.loads(json.dumps(schema))
    add = renamed["$defs"]["Add"]
    add["properties"] = {"amount": add["properties"].pop("n")}
    add["required"] = ["amount"]
    where = generate(renamed, tmp_path / "renamed")
    checked = mypy("api.py", "use.py", cwd=where)
    assert checked.returncode != 0
    assert 'Unexpected keyword argument "n"' in checked.stdout, checked.stdout
    assert "use.py" in checked.stdout


def test_the_library_exports_the_schema(schema: dict[str, Any]) -> None:
    """``conclib::schema::Export`` (the test server uses it): every actor at its own URN,
    errors where a message can fail, named types under ``$defs``."""
    assert schema["conclib_schema"] == 1
    actors = {a["name"]: a for a in schema["actors"]}
    assert {n: a["urn"] for n, a in actors.items()} == {
        "Shapes": "py:shapes", "Counter": "py:counter", "Narrow": "py:narrow", "Orders": None,
    }
    add = next(m for m in actors["Counter"]["messages"] if m["name"] == "Add")
    assert add["request"] == {"$ref": "#/$defs/Add"} and add["error"] == {"type": "string"}
    get = next(m for m in actors["Counter"]["messages"] if m["name"] == "Get")
    assert get["error"] is None
    assert schema["$defs"]["Add"]["required"] == ["n"]


@pytest.mark.parametrize("models", ["dataclass", "pydantic"])
def test_blocking_handles_type_check_and_work(
    schema: dict[str, Any], tmp_path: Path, url: str, namespace: str, models: str
) -> None:
    if models == "pydantic":
        pytest.importorskip("pydantic")
    where = generate_from(schema, tmp_path / models, models)
    checked = mypy("api.py", "use.py", "use_blocking.py", cwd=where)
    assert checked.returncode == 0, checked.stdout
    checked = pyright("api.py", "use.py", "use_blocking.py", cwd=where)
    assert checked.returncode == 0, checked.stdout

    sys.path.insert(0, str(where))
    try:
        use_blocking = load(where, "use_blocking")
        use = load(where, "use")
        import api
        import conclib

        with conclib.Client(url, namespace=namespace) as client:
            total, history, moved, size, area, swapped, receipt, error = use_blocking.main(client)

        async def main() -> list[object]:
            async with conclib.AsyncClient(url, namespace=namespace) as client:
                result: list[object] = await use.main(client)
                return result

        async_results = run(main())
        if models == "pydantic":
            from pydantic import BaseModel

            assert isinstance(moved, BaseModel) and isinstance(async_results[2], BaseModel)
    finally:
        sys.path.remove(str(where))
        sys.modules.pop("api", None)
    assert (total, history) == (5, [7])
    assert moved == api.Point(x=4, y=6) == async_results[2]
    assert size == api.SizeLarge(value=12345, digits=5) == async_results[3]
    assert area == api.Measured(area=6, perimeter=10, kind="Rect")
    assert swapped == (1, "a")
    assert receipt == api.Receipt(
        customer=api.Customer(name="Ada", address=api.Address(city="Paris", zip="75001")),
        total_qty=2, skus=["a"], note=None,
    )
    assert error == "DivideByZero"


def test_pydantic_models_validate_at_the_boundary(schema: dict[str, Any], tmp_path: Path) -> None:
    pydantic = pytest.importorskip("pydantic")
    where = generate_from(schema, tmp_path / "pydantic", "pydantic")
    sys.path.insert(0, str(where))
    try:
        import api

        with pytest.raises(pydantic.ValidationError):
            api.Point(x="not a number", y=1)
        with pytest.raises(pydantic.ValidationError):
            api.Customer(name="Ada", address={"city": "Paris"})  # zip missing
        order = api.Customer(name="Ada", address={"city": "Paris", "zip": "75001"})
        assert order.address == api.Address(city="Paris", zip="75001")
        assert api.Receipt.model_validate(
            {"customer": order.model_dump(), "total_qty": 1, "skus": ["a"]}
        ).note is None
    finally:
        sys.path.remove(str(where))
        sys.modules.pop("api", None)


@pytest.mark.parametrize("models", ["dataclass", "pydantic"])
@pytest.mark.parametrize("module", ["use.py", "use_blocking.py"])
def test_a_renamed_field_fails_mypy_with_either_client_and_either_models(
    schema: dict[str, Any], tmp_path: Path, models: str, module: str
) -> None:
    renamed = json.loads(json.dumps(schema))
    add = renamed["$defs"]["Add"]
    add["properties"] = {"amount": add["properties"].pop("n")}
    add["required"] = ["amount"]
    # And a struct field, checked where a model is made: `Point { x, y }` becomes `{ col, y }`.
    point = renamed["$defs"]["Point"]
    point["properties"] = {"col": point["properties"].pop("x"), "y": point["properties"]["y"]}
    point["required"] = ["col", "y"]
    where = generate_from(renamed, tmp_path / "renamed", models)
    checked = mypy("api.py", module, cwd=where)
    assert checked.returncode != 0
    assert 'Unexpected keyword argument "n"' in checked.stdout, checked.stdout
    assert 'Unexpected keyword argument "x"' in checked.stdout, checked.stdout
    assert module in checked.stdout
    checked = pyright("api.py", module, cwd=where)
    assert checked.returncode != 0
    assert 'No parameter named "n"' in checked.stdout, checked.stdout
    assert 'No parameter named "x"' in checked.stdout, checked.stdout


WRONG_ERROR = '''
import conclib
import api


async def main(client: conclib.AsyncClient) -> int:
    try:
        return await api.Shapes(client).divide(a=1, b=0)
    except api.ShapesDivideError as e:
        wrong: int = e.error  # a MathError, not an int
        return wrong


def blocking(client: conclib.Client) -> bool:
    try:
        api.BlockingShapes(client).divide(a=1, b=0)
        return False
    except api.ShapesDivideError as e:
        return e.error == "DivideByZero"  # renamed on the Rust side (below): no longer a MathError
'''


@pytest.mark.parametrize("models", ["dataclass", "pydantic"])
def test_handler_errors_are_typed_per_message(
    schema: dict[str, Any], tmp_path: Path, url: str, namespace: str, models: str
) -> None:
    """A message's handler error is a ``HandlerError[ItsRustErrorType]`` subclass: code
    reading ``e.error`` as another type, or comparing it to a variant the Rust side renamed,
    fails mypy --strict and pyright; at run time the error is decoded into that type."""
    where = generate_from(schema, tmp_path / models, models)
    (where / "wrong.py").write_text(WRONG_ERROR.replace('"DivideByZero"  # renamed', '"Overflow"  # not'))
    checked = mypy("api.py", "wrong.py", cwd=where)
    assert checked.returncode != 0
    assert "wrong.py:10: error: Incompatible types in assignment" in checked.stdout, checked.stdout
    assert checked.stdout.count("error:") == 2, checked.stdout  # and the comparison to a non-variant
    checked = pyright("api.py", "wrong.py", cwd=where)
    assert checked.returncode != 0 and "wrong.py:10" in checked.stdout, checked.stdout

    renamed = json.loads(json.dumps(schema))
    unit = renamed["$defs"]["MathError"]["oneOf"][0]
    assert unit["const"] == "DivideByZero"
    unit["const"] = "ByZero"
    where = generate_from(renamed, tmp_path / f"{models}-renamed", models)
    (where / "wrong.py").write_text(WRONG_ERROR.replace("wrong: int = e.error", "wrong: int = 0"))
    checked = mypy("api.py", "wrong.py", cwd=where)
    assert "wrong.py:19: error: Non-overlapping equality check" in checked.stdout, checked.stdout

    good = where.parent / models
    sys.path.insert(0, str(good))
    try:
        sys.modules.pop("api", None)
        api = importlib.import_module("api")
        import conclib

        with conclib.Client(url, namespace=namespace) as client:
            with pytest.raises(api.ShapesDivideError) as caught:
                api.BlockingShapes(client).divide(a=1, b=0)
            assert isinstance(caught.value, conclib.HandlerError)
            assert caught.value.error == "DivideByZero" and caught.value.urn == "py:shapes"
            # Asked without the handle: a plain HandlerError, its error as decoded.
            with pytest.raises(conclib.HandlerError) as plain:
                client.ask("py:shapes", "Divide", {"a": 1, "b": 0})
            assert type(plain.value) is conclib.HandlerError and plain.value.error == "DivideByZero"
    finally:
        sys.path.remove(str(good))
        sys.modules.pop("api", None)


TAGGED_APP = '''
from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

import api
import conclib

app = FastAPI()
client = conclib.AsyncClient(os.environ["TEST_URL"], namespace=os.environ["TEST_NAMESPACE"])


@app.get("/classify/{n}")
async def classify(n: int) -> api.Size:
    return await api.Shapes(client).classify(n)


@app.post("/echo")
async def echo(size: api.Size) -> api.Size:
    return size


@app.get("/unannotated/{n}")
async def unannotated(n: int) -> Any:
    return await api.Shapes(client).classify(n)
'''


@pytest.mark.parametrize("models", ["dataclass", "pydantic"])
def test_enums_are_tagged_in_fastapi_as_on_the_wire(
    schema: dict[str, Any], tmp_path: Path, url: str, namespace: str, models: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A response enum of unit, newtype and struct variants returned by a FastAPI route is
    written as serde's external tagging, as the Rust actor's own answer on the wire is
    (asked without the handle), and read back from it in a request body."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    where = generate_from(schema, tmp_path / models, models)
    (where / "app.py").write_text(TAGGED_APP)
    checked = mypy("api.py", "app.py", cwd=where)
    assert checked.returncode == 0, checked.stdout
    monkeypatch.setenv("TEST_URL", url)
    monkeypatch.setenv("TEST_NAMESPACE", namespace)
    sys.path.insert(0, str(where))
    try:
        for name in ("api", "app"):
            sys.modules.pop(name, None)
        app = importlib.import_module("app")
        import conclib

        with conclib.Client(url, namespace=namespace) as raw:
            wire = {n: raw.ask("py:shapes", "Classify", n) for n in (0, 7, 12345)}
        assert wire == {0: "Zero", 7: {"Small": 7}, 12345: {"Large": {"value": 12345, "digits": 5}}}
        with TestClient(app.app) as http:
            for n, answer in wire.items():
                assert http.get(f"/classify/{n}").json() == answer
                assert http.post("/echo", json=answer).json() == answer
                if models == "pydantic":  # a model writes itself tagged even where FastAPI is not told the type
                    assert http.get(f"/unannotated/{n}").json() == answer
            assert http.post("/echo", json={"Tiny": 1}).status_code == 422
            assert http.get("/openapi.json").status_code == 200
    finally:
        sys.path.remove(str(where))
        for name in ("api", "app"):
            sys.modules.pop(name, None)
