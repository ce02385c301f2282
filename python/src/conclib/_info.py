"""What the client reads of an ``INFO`` answer: a Redis process's identity (its ``run_id``)
and whether it may hold data from before it started."""

from __future__ import annotations

from typing import Any

from .durability import Durability
from .protocol import text as as_text


def _info_fields(info: Any) -> dict[str, str]:
    if isinstance(info, dict):
        return {str(k): str(v) for k, v in info.items()}
    text = as_text(info)
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def redis_identity(info: Any) -> tuple[str, bool] | None:
    """``run_id`` and whether Redis may hold data from before it started (it loads, loaded
    keys from, or appends to a persistence file, or is a replica that took over), from an
    ``INFO server persistence replication`` answer."""
    f = _info_fields(info)
    run_id = f.get("run_id")
    if not run_id:
        return None
    loaded = f.get("rdb_last_load_keys_loaded", "0")
    kept = (
        f.get("loading") in ("1", "True")
        or f.get("aof_enabled") in ("1", "True")
        or (loaded.isdigit() and int(loaded) > 0)
        or any(c != "0" for c in f.get("master_replid2", "0"))
    )
    return run_id, kept


def server_fields(info: Any) -> tuple[str | None, float | None]:
    """``run_id`` and ``uptime_in_seconds`` of an ``INFO server`` answer."""
    if isinstance(info, dict):
        run_id = info.get("run_id")
        uptime = info.get("uptime_in_seconds")
        return (str(run_id) if run_id is not None else None, float(uptime) if uptime is not None else None)
    text = as_text(info)
    run_id = None
    uptime = None
    for line in text.splitlines():
        if line.startswith("run_id:"):
            run_id = line[7:].strip()
        elif line.startswith("uptime_in_seconds:"):
            try:
                uptime = float(line[18:].strip())
            except ValueError:
                pass
    return run_id, uptime



def topology_warning(info: Any, durability: Durability, kind: str) -> str | None:
    """What the client warns at start-up when the primary's replicas (``connected_slaves``
    of an ``INFO replication`` answer) and its durability disagree, as the Rust client
    does: replicas (or a Sentinel or Cluster URL) at the primary level, or fewer replicas
    than the level asks for. ``None`` when they agree."""
    value = _info_fields(info).get("connected_slaves", "0")
    replicas = int(value) if value.isdigit() else 0
    if durability.n == 0 and (replicas > 0 or kind in ("sentinel", "cluster")):
        return (
            f"Redis has replicas ({replicas}, topology {kind}) and the client's durability is primary: "
            "a promotion of a lagging replica may lose tells it reported accepted (python/README, "
            "\"Redis replicas and durability\"; durability=conclib.Durability.replicas(1))"
        )
    if durability.n > replicas:
        return (
            f"the primary has {replicas} replicas and the client's durability is {durability.label}: "
            "every tell fails NotReplicated until enough replicas connect"
        )
    return None
