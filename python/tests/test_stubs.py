"""Typed stubs generated from the Rust declarations (``conclib-pyserver --export-schema`` →
``python -m conclib.stubgen``): they type-check under mypy --strict, work against the real
server, and a field renamed on the Rust side makes code using the old name fail mypy."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import run, server_binary
from test_typing import mypy

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
        error: object = None
    except conclib.HandlerError as e:
        error = e.error
    return [total, history, moved, size, area, unit, swapped, greeting, reversed_, tally, receipt, error]
'''


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    done = subprocess.run([str(server_binary()), "--export-schema"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    exported: dict[str, Any] = json.loads(done.stdout)
    return exported


def generate(schema: dict[str, Any], where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "schema.json").write_text(json.dumps(schema))
    done = subprocess.run(
        [sys.executable, "-m", "conclib.stubgen", str(where / "schema.json"), "-o", str(where / "api.py")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (where / "use.py").write_text(USE)
    return where


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

        total, history, moved, size, area, unit, swapped, greeting, reversed_, tally, receipt, error = run(main())
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
