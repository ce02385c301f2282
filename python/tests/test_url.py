"""URLs are read as the Rust ``ProxyConfig`` reads them (fred's ``Config::from_url``), and each
kind gets the matching redis-py client."""

from __future__ import annotations

import pytest

import conclib
from conclib.url import RedisTarget, build_client, parse_url, redact


def test_standalone() -> None:
    assert parse_url("redis://127.0.0.1:6400") == RedisTarget("standalone", False, (("127.0.0.1", 6400),))
    t = parse_url("redis://user:p%40ss@h:7000/2")
    assert (t.username, t.password, t.db, t.nodes) == ("user", "p@ss", 2, (("h", 7000),))
    assert parse_url("redis://:secret@h").password == "secret"
    assert parse_url("redis://h").nodes == (("h", 6379),)
    assert parse_url("rediss://h:6380").tls
    assert parse_url("valkey://h:1").kind == "standalone"


def test_cluster() -> None:
    t = parse_url("redis-cluster://u:pw@127.0.0.1:30001?node=127.0.0.1:30002&node=h3:30003")
    assert t.kind == "cluster" and not t.tls
    assert t.nodes == (("127.0.0.1", 30001), ("127.0.0.1", 30002), ("h3", 30003))
    assert (t.username, t.password) == ("u", "pw")
    assert parse_url("rediss-cluster://h:1").tls


def test_sentinel() -> None:
    t = parse_url(
        "redis-sentinel://u:pw@127.0.0.1:26379/1?sentinelServiceName=mymaster&node=127.0.0.1:26380"
        "&sentinelUsername=su&sentinelPassword=sp"
    )
    assert t.kind == "sentinel" and t.service_name == "mymaster" and t.db == 1
    assert t.nodes == (("127.0.0.1", 26379), ("127.0.0.1", 26380))
    assert (t.username, t.password, t.sentinel_username, t.sentinel_password) == ("u", "pw", "su", "sp")
    assert parse_url("redis-sentinel://h?sentinelServiceName=m").nodes == (("h", 26379),)


def test_unix() -> None:
    t = parse_url("redis+unix:///run/redis.sock")
    assert t.kind == "unix" and t.path == "/run/redis.sock"


@pytest.mark.parametrize(
    "url",
    [
        "http://h:1",
        "redis://",
        "redis-sentinel://h:1",  # no sentinelServiceName
        "redis-cluster://h:1?node=nohostport",
        "redis://h:1/notanumber",
        "redis://h:port",
    ],
)
def test_unusable_urls(url: str) -> None:
    with pytest.raises(conclib.ConfigError):
        conclib.AsyncClient(url)


def test_clients_per_kind() -> None:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    def build(url: str) -> object:
        return build_client(parse_url(url), connect_timeout=1, command_timeout=1)

    assert isinstance(build("redis://127.0.0.1:1"), Redis)
    assert isinstance(build("redis+unix:///tmp/x.sock"), Redis)
    assert isinstance(build("redis-sentinel://127.0.0.1:1?sentinelServiceName=m"), Redis)
    assert isinstance(build("redis-cluster://127.0.0.1:1"), RedisCluster)
    with pytest.raises(conclib.ConfigError):
        build_client(parse_url("redis://h:1"), connect_timeout=1, command_timeout=1, tls_ca_file="/ca.pem")


def test_redact() -> None:
    assert redact("redis://user:pw@h:1") == "redis://user:***@h:1"
    assert redact("redis://h:1") == "redis://h:1"
    assert "pw" not in repr(conclib.AsyncClient("redis://u:pw@h:1"))
