"""Redis URLs, parsed as the Rust ``ProxyConfig`` (fred's ``Config::from_url``) parses them,
and the redis-py client each one needs.

- ``redis://[[user]:password@]host[:port][/db]``: one server; ``rediss://`` for TLS;
- ``redis-cluster://[[user]:password@]host:port?node=host2:port2&node=...``: a cluster
  (``RedisCluster``; every command of the protocol names one key, so any slot layout works);
- ``redis-sentinel://[[user]:password@]host:port[/db]?sentinelServiceName=NAME&node=host2:port2``:
  the primary the sentinels name (``Sentinel.master_for``); ``sentinelUsername`` and
  ``sentinelPassword`` authenticate to the sentinels, the URL's own credentials to the primary;
- ``redis+unix:///path/to/redis.sock``.

``valkey`` works wherever ``redis`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigError

__all__ = ["RedisTarget", "parse_url", "redact"]

Kind = Literal["standalone", "cluster", "sentinel", "unix"]


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is, from a URL."""

    kind: Kind
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    """The server (standalone), the known cluster nodes, or the sentinels; the URL's host first."""
    db: int = 0
    username: str | None = None
    password: str | None = None
    service_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    path: str | None = None


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    scheme = url.find("://")
    at = url.rfind("@")
    if scheme >= 0 and at > scheme:
        creds = url[scheme + 3 : at]
        colon = creds.find(":")
        if colon >= 0:
            return f"{url[: scheme + 3]}{creds[:colon]}:***{url[at:]}"
    return url


def _host_port(text: str, what: str, url: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"cannot use Redis URL {redact(url)}: {what} {text!r} is not host:port")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError(f"cannot use Redis URL {redact(url)}: bad port in {text!r}") from None


def parse_url(url: str) -> RedisTarget:
    """Reads a Redis URL; ``ConfigError`` if it cannot be used."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"cannot use Redis URL {redact(url)}: {e}") from None
    scheme = parts.scheme.lower()
    base, _, suffix = scheme.partition("-")
    unix = base.endswith("+unix")
    if unix:
        base = base[: -len("+unix")]
    if base not in ("redis", "rediss", "valkey", "valkeys") or suffix not in ("", "cluster", "sentinel"):
        raise ConfigError(
            f"cannot use Redis URL {redact(url)}: the scheme must be redis, rediss, redis-cluster, "
            "rediss-cluster, redis-sentinel, rediss-sentinel or redis+unix (or valkey...)"
        )
    tls = base in ("rediss", "valkeys")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    query = parse_qsl(parts.query, keep_blank_values=True)
    if unix:
        if not parts.path:
            raise ConfigError(f"cannot use Redis URL {redact(url)}: no socket path")
        return RedisTarget("unix", False, (), 0, username, password, path=parts.path)
    if not parts.hostname:
        raise ConfigError(f"cannot use Redis URL {redact(url)}: invalid or missing host")
    kind: Kind = "cluster" if suffix == "cluster" else "sentinel" if suffix == "sentinel" else "standalone"
    default_port = 26379 if kind == "sentinel" else 6379
    nodes = [(parts.hostname, port if port is not None else default_port)]
    for key, value in query:
        if key == "node" and kind != "standalone":
            nodes.append(_host_port(value, "node", url))
    db = 0
    path = parts.path.strip("/")
    if path and kind != "cluster":
        if "/" in path:
            raise ConfigError(f"cannot use Redis URL {redact(url)}: invalid database path")
        try:
            db = int(path)
        except ValueError:
            raise ConfigError(f"cannot use Redis URL {redact(url)}: database {path!r} is not a number") from None
    params = dict(query)
    service = params.get("sentinelServiceName")
    if kind == "sentinel" and not service:
        raise ConfigError(f"cannot use Redis URL {redact(url)}: a sentinel URL needs sentinelServiceName=NAME")
    return RedisTarget(
        kind,
        tls,
        tuple(nodes),
        db,
        username,
        password,
        service_name=service,
        sentinel_username=params.get("sentinelUsername"),
        sentinel_password=params.get("sentinelPassword"),
    )


def build_client(
    target: RedisTarget,
    *,
    connect_timeout: float,
    command_timeout: float | None,
    tls_ca_file: str | None = None,
    max_connections: int = 32,
) -> Any:
    """A redis-py asyncio client for ``target`` that never retries a command by itself (a
    request written once must not be written again after a reconnection: the caller decides).
    ``command_timeout`` ``None``: no socket timeout (a host's blocking reads)."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    common: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": command_timeout,
        "retry": Retry(NoBackoff(), 0),
        "username": target.username,
        "password": target.password,
    }
    tls: dict[str, Any] = {}
    if target.tls:
        tls["ssl"] = True
        if tls_ca_file:
            tls["ssl_ca_certs"] = tls_ca_file
    elif tls_ca_file:
        raise ConfigError(f"tls_ca_file {tls_ca_file} is set but the URL does not use TLS (rediss://)")
    if target.kind in ("standalone", "unix"):
        from redis.asyncio import BlockingConnectionPool
        from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

        where: dict[str, Any]
        if target.kind == "unix":
            where = {"path": target.path, "connection_class": UnixDomainSocketConnection}
        else:
            host, port = target.nodes[0]
            where = {"host": host, "port": port, "connection_class": SSLConnection if target.tls else Connection}
            where.update({k: v for k, v in tls.items() if k != "ssl"})
        # A burst of asks waits for a free connection (up to the command timeout) instead of
        # failing with "too many connections".
        pool = BlockingConnectionPool(
            max_connections=max_connections, timeout=command_timeout, db=target.db, **where, **common
        )
        return Redis(connection_pool=pool)
    if target.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        common.pop("retry")
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
            **common,
            **tls,
        )
    from redis.asyncio import sentinel as sentinel_module

    sentinel_class: Any = sentinel_module.Sentinel

    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": command_timeout,
        **tls,
    }
    if target.sentinel_username:
        sentinel_kwargs["username"] = target.sentinel_username
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel = sentinel_class(list(target.nodes), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(target.service_name or "", redis_class=Redis, db=target.db,
                               connection_class=_primary_checked(bool(target.tls)),
                               connection_pool_class=_blocking_sentinel_pool(), max_connections=max_connections,
                               timeout=command_timeout, **common, **tls)


def _blocking_sentinel_pool() -> Any:
    """redis-py's pool of connections to the primary the sentinels name, bounded as the
    standalone one is: past ``max_connections`` a command waits (up to the command timeout)
    for a free connection instead of failing with "too many connections" (redis-py's
    Sentinel pool refuses it, or is unbounded without a size)."""
    from redis.asyncio import BlockingConnectionPool
    from redis.asyncio.sentinel import SentinelConnectionPool

    class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
        pass

    return BlockingSentinelPool


def _primary_checked(tls: bool) -> Any:
    """redis-py's connection to the server the sentinels name as primary, which asks that
    server its ``ROLE`` once connected and gives up (a ``ConnectionError``: ``Unavailable``,
    the client's "no primary answers") unless it answers ``master``, as the Rust client's
    fred does. Right after a promotion a sentinel that has not learnt of it yet names the old
    primary's address, where that server may already be back as a replica of the new one,
    empty until its first sync: reads there find no URN key (each call ``UnknownUrn``) and
    writes are refused (python/README, "Redis replicas and durability")."""
    from redis.asyncio import sentinel as sentinel_module
    from redis.exceptions import ConnectionError as RedisConnectionError

    base: Any = sentinel_module.SentinelManagedSSLConnection if tls else sentinel_module.SentinelManagedConnection

    class PrimaryChecked(base):  # type: ignore[misc]
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            # A connection held outside the pool (the client's request writer and reply
            # reader) reconnects here: through the sentinels, not to its last address,
            # where the old primary may be back as a replica (redis-py reconnects a
            # closed connection to its last address).
            if not self.is_connected:
                await self.connect()
            await super().send_packed_command(command, check_health)

        async def connect_to(self, address: Any) -> None:
            await super().connect_to(address)
            await self.send_command("ROLE", check_health=False)
            role = await self.read_response()
            name = role[0] if isinstance(role, (list, tuple)) and role else role
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            if name != "master":
                await self.disconnect(nowait=True)
                raise RedisConnectionError(
                    f"{self.host}:{self.port}, which the sentinels name as the primary, answers as a {name} "
                    "(a failover under way)"
                )

    return PrimaryChecked


async def close_client(redis: Any) -> None:
    """Closes a client ``build_client`` made, and its connection pool."""
    close = getattr(redis, "aclose", None) or redis.close
    await close()
    pool = getattr(redis, "connection_pool", None)
    if pool is not None:
        await pool.disconnect()
