//! Start-up honesty: a proxy and a client read the persistence settings of a real Redis (a
//! `redis-server` of the test's own on a free port) and say whether a restart of it can
//! lose accepted tells, through their accessors and in the published snapshot; where
//! `CONFIG` is refused (renamed away, or an ACL user without `+config`), from `INFO`.
mod common;
#[path = "common/servers.rs"]
mod servers;

use common::actors::*;
use conclib_core::ActorSystem;
use conclib_redis::{
    ProxyClient, ProxyConfig,
    acl::{client_acl, proxy_acl},
    durability::{Fsync, Persistence, TellLoss},
    snapshots::SnapshotReader,
    start_proxy,
};

/// What each side saw of Redis's persistence.
#[derive(Debug)]
struct Seen {
    proxy: Persistence,
    client: Persistence,
    /// As published in the system's snapshot, read back by a `SnapshotReader`.
    published: Persistence,
}

impl Seen {
    /// All three the same: that one.
    fn agreed(&self) -> Persistence {
        assert_eq!(self.proxy, self.client, "{self:?}");
        assert_eq!(self.proxy, self.published, "{self:?}");
        self.proxy
    }
}

/// Starts a proxy (with `proxy`'s configuration) and a client (with `client`'s), publishes
/// the system's snapshot, reads it back (with `admin`'s), and stops them.
async fn seen(proxy: &ProxyConfig, client: &ProxyConfig, admin: &ProxyConfig) -> Seen {
    let system = ActorSystem::new("persist");
    system
        .build(Counter::default())
        .urn("c")
        .spawn()
        .await
        .unwrap();
    let handle = start_proxy(&system, proxy).await.unwrap();
    let connected = ProxyClient::connect(client).await.unwrap();
    // Both work: reading the settings took nothing away.
    assert_eq!(connected.ask("c", Add(1)).await, Ok(1));
    handle.publish_snapshot().await.unwrap();
    let reader = SnapshotReader::connect(admin).await.unwrap();
    let systems = reader.systems().await.unwrap();
    let [published] = &systems[..] else {
        panic!("one system expected: {systems:?}");
    };
    let seen = Seen {
        proxy: handle.persistence(),
        client: connected.persistence(),
        published: published.persistence,
    };
    connected.shutdown().await;
    handle.shutdown().await.unwrap();
    seen
}

/// A configuration for the Redis on `port`, as `user` (with password `secret`) if any.
fn config(port: u16, user: Option<&str>) -> ProxyConfig {
    let url = match user {
        Some(user) => format!("redis://{user}:secret@127.0.0.1:{port}"),
        None => format!("redis://127.0.0.1:{port}"),
    };
    ProxyConfig::default()
        .with_namespace("persist")
        .with_url(url)
}

/// A Redis of the test's own: with an append-only file fsynced at each write (`aof`), or
/// without any persistence; `extra` options after those.
async fn redis(aof: bool, extra: &[&str]) -> (servers::OwnRedis, u16, servers::TempDir) {
    let dir = servers::TempDir::new("persistence");
    let port = servers::free_ports(1)[0];
    assert_ne!(port, 6379, "never the default Redis port");
    let redis = servers::OwnRedis::start_with(port, dir.path(), aof, extra).await;
    (redis, port, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_persistence_tells_can_be_lost() {
    let (_redis, port, _dir) = redis(false, &[]).await;
    let config = config(port, None);
    let persistence = seen(&config, &config, &config).await.agreed();
    assert_eq!(persistence, Persistence::None);
    assert!(!persistence.tells_survive_restart());
    assert_eq!(persistence.tell_loss(), TellLoss::All);
    assert!(persistence.warning().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rdb_snapshots_only_tells_since_the_last_one_can_be_lost() {
    let (_redis, port, _dir) = redis(false, &["--save", "3600 1"]).await;
    let config = config(port, None);
    let persistence = seen(&config, &config, &config).await.agreed();
    assert_eq!(persistence, Persistence::SnapshotsOnly);
    assert!(!persistence.tells_survive_restart());
    assert_eq!(persistence.tell_loss(), TellLoss::SinceLastSnapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_aof_fsynced_always_tells_survive() {
    let (_redis, port, _dir) = redis(true, &[]).await;
    let config = config(port, None);
    let persistence = seen(&config, &config, &config).await.agreed();
    assert_eq!(
        persistence,
        Persistence::AppendOnly {
            fsync: Fsync::Always
        }
    );
    assert!(persistence.tells_survive_restart());
    assert_eq!(persistence.warning(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_aof_fsynced_every_second_the_last_second_can_be_lost() {
    let (_redis, port, _dir) = redis(true, &["--appendfsync", "everysec"]).await;
    let config = config(port, None);
    let persistence = seen(&config, &config, &config).await.agreed();
    assert_eq!(
        persistence,
        Persistence::AppendOnly {
            fsync: Fsync::EverySec
        }
    );
    assert!(!persistence.tells_survive_restart());
    assert_eq!(persistence.tell_loss(), TellLoss::LastSecond);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_config_renamed_away_info_still_answers() {
    // Without persistence: INFO says the append-only file is off.
    let (server, port, dir) = redis(false, &["--rename-command", "CONFIG", ""]).await;
    let plain = config(port, None);
    let persistence = seen(&plain, &plain, &plain).await.agreed();
    assert_eq!(persistence, Persistence::AppendOnlyOff);
    assert!(!persistence.tells_survive_restart());
    assert_eq!(persistence.tell_loss(), TellLoss::SinceLastSnapshot);
    drop((server, dir));

    // With the append-only file: INFO says it is on, not how often it is fsynced.
    let (_redis, port, _dir) = redis(true, &["--rename-command", "CONFIG", ""]).await;
    let aof = config(port, None);
    let persistence = seen(&aof, &aof, &aof).await.agreed();
    assert_eq!(
        persistence,
        Persistence::AppendOnly {
            fsync: Fsync::Unknown
        }
    );
    assert!(!persistence.tells_survive_restart());
    assert_eq!(persistence.tell_loss(), TellLoss::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_users_without_config_read_info() {
    let (_redis, port, _dir) = redis(false, &[]).await;
    let admin = config(port, None);
    let plain = common::plain_client(&admin.url).await;
    let ns = "persist";
    for (user, rules) in [("web", client_acl(ns)), ("svc", proxy_acl(ns))] {
        assert!(!rules.iter().any(|r| r.contains("config")), "{rules:?}");
        let mut args = vec!["ACL", "SETUSER", user, "on", ">secret"];
        args.extend(rules.iter().map(String::as_str));
        common::command(&plain, &args).await.unwrap();
    }
    let seen = seen(
        &config(port, Some("svc")),
        &config(port, Some("web")),
        &admin,
    )
    .await;
    // The users cannot run CONFIG; INFO tells them the append-only file is off.
    assert_eq!(seen.proxy, Persistence::AppendOnlyOff);
    assert_eq!(seen.client, Persistence::AppendOnlyOff);
    assert_eq!(seen.published, Persistence::AppendOnlyOff);
    // The admin, who can, learns more.
    let client = ProxyClient::connect(&admin).await.unwrap();
    assert_eq!(client.persistence(), Persistence::None);
    client.shutdown().await;
}
