//! The least-privilege roles, against a real Redis with real ACL users: a client with the
//! client role asks and tells (a single actor, a group's URN, a URN activated on demand); it
//! cannot forge an answer, list keys or read other keys. A proxy with the proxy role serves
//! all three.
mod common;

use common::actors::*;
use conclib_core::ActorSystem;
use conclib_core::AskError;
use conclib_redis::{
    ProxyClient, ProxyConfig, SnapshotReader, client_acl, proxy_acl, start_proxy, start_redis,
    viewer_acl,
};
use fred::prelude::*;

async fn connect(url: &str) -> Client {
    common::plain_client(url).await
}

async fn raw(client: &Client, args: &[&str]) -> Result<Value, fred::error::Error> {
    common::command(client, args).await
}

fn denied(result: Result<Value, fred::error::Error>) -> bool {
    matches!(result, Err(e) if e.to_string().contains("NOPERM") || e.to_string().contains("no permissions"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_role_asks_but_cannot_forge_list_or_read() {
    let ns = "acl";
    let base = ProxyConfig::default().with_namespace(ns);
    let daemon = start_redis(&base).await.unwrap();
    let admin = connect(&daemon.url()).await;
    for (user, rules) in [
        ("web", client_acl(ns)),
        ("svc", proxy_acl(ns)),
        ("view", viewer_acl(ns)),
    ] {
        let mut args = vec!["ACL", "SETUSER", user, "on", ">secret"];
        args.extend(rules.iter().map(String::as_str));
        raw(&admin, &args).await.unwrap();
    }
    let url_as = |user: &str| format!("redis://{user}:secret@127.0.0.1:{}", daemon.port());

    let system = ActorSystem::new("svc");
    system
        .build(Counter::default())
        .urn("c")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &base.clone().with_url(url_as("svc")))
        .await
        .unwrap();
    let client = ProxyClient::connect(&base.clone().with_url(url_as("web")))
        .await
        .unwrap();
    assert_eq!(client.ask("c", Add(2)).await, Ok(2));
    client.tell("c", Record(3)).await.unwrap();
    assert_eq!(client.ask("c", History).await, Ok(vec![3]));
    assert_eq!(
        client.ask("nobody", Add(1)).await,
        Err(AskError::UnknownUrn {
            urn: "nobody".into()
        })
    );

    // What the same user cannot do with its own connection.
    let web = connect(&url_as("web")).await;
    let other_reply = format!("{ns}:reply:0123456789abcdef0123456789abcdef");
    assert!(
        denied(raw(&web, &["RPUSH", &other_reply, "forged"]).await),
        "forge an answer"
    );
    assert!(
        denied(raw(&web, &["LPUSH", &other_reply, "forged"]).await),
        "forge an answer"
    );
    assert!(denied(raw(&web, &["SCAN", "0"]).await), "list keys");
    assert!(denied(raw(&web, &["KEYS", "*"]).await), "list keys");
    assert!(
        denied(raw(&web, &["GET", &format!("{ns}:sys:svc:lease")]).await),
        "read a lease"
    );
    assert!(
        denied(raw(&web, &["SET", &format!("{ns}:urn:c"), "mine"]).await),
        "steal a URN"
    );
    assert!(
        denied(raw(&web, &["GET", "elsewhere"]).await),
        "read other data"
    );
    assert!(denied(raw(&web, &["FLUSHALL"]).await), "flush");
    // What the protocol docs tell a client in another language to do without: replies
    // are popped with BLMPOP (the ProxyClient above did), the time is the client's own.
    assert!(
        denied(raw(&web, &["LPOP", &other_reply]).await),
        "pop with LPOP"
    );
    assert!(denied(raw(&web, &["TIME"]).await), "read Redis's clock");

    // The proxy role publishes the snapshot; the viewer role reads it and nothing else.
    proxy.publish_snapshot().await.unwrap();
    let reader = SnapshotReader::connect(&base.clone().with_url(url_as("view")))
        .await
        .unwrap();
    let systems = reader.systems().await.unwrap();
    assert_eq!(systems.len(), 1);
    assert_eq!(systems[0].snapshot.actors[0].urn.as_deref(), Some("c"));
    // ... and the reminders, with plain reads (an admin registers one: the reminders'
    // scripts are not part of the client role).
    let admin_client = ProxyClient::connect(&base.clone().with_url(daemon.url()))
        .await
        .unwrap();
    conclib_redis::Reminders::new(&admin_client)
        .register(
            "c",
            conclib_redis::Reminder::after("r", std::time::Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let overview = reader
        .reminders(&conclib_redis::ReminderQuery::urn("c", 10).unwrap())
        .await
        .unwrap();
    assert_eq!(overview.registered, 1);
    assert_eq!(overview.reminders[0].name, "r");
    let overview = reader
        .reminders(&conclib_redis::ReminderQuery::prefix("c", 10).unwrap())
        .await
        .unwrap();
    assert_eq!(overview.matched, 1);
    admin_client.shutdown().await;
    let view = connect(&url_as("view")).await;
    assert!(
        denied(raw(&view, &["GET", &format!("{ns}:urn:c")]).await),
        "read a URN"
    );
    assert!(
        denied(raw(&view, &["DEL", &format!("{ns}:rem:pollers")]).await),
        "delete a reminders key"
    );
    assert!(
        denied(raw(&view, &["SET", &format!("{ns}:snapshot:svc"), "{}"]).await),
        "forge a snapshot"
    );
    assert!(
        denied(
            raw(
                &view,
                &["XADD", &format!("{ns}:sys:svc:req"), "*", "a", "b"]
            )
            .await
        ),
        "send a request"
    );

    // The proxy role serves a group and activates actors with a fenced store.
    let member = ActorSystem::new("svc2");
    member
        .build(Counter::default())
        .urn("shared")
        .spawn()
        .await
        .unwrap();
    let member_proxy = start_proxy(&member, &base.clone().with_url(url_as("svc")))
        .await
        .unwrap();
    member_proxy.join("shared").await.unwrap();
    assert_eq!(client.ask("shared", Add(5)).await, Ok(5));
    proxy
        .activate("acct:{id}", |a: conclib_redis::Activation| async move {
            let store = a.into_store();
            let opened = store.load::<u64>().await?.unwrap_or(0) + 1;
            store.save(&opened).await?;
            Ok::<_, conclib_redis::StoreError>(Counter {
                count: opened * 100,
                log: Vec::new(),
            })
        })
        .await
        .unwrap();
    assert_eq!(client.ask("acct:1", Get).await, Ok(100));
    let saved = raw(&admin, &["HGET", &format!("{ns}:state:acct:1"), "owner"])
        .await
        .unwrap();
    assert!(!saved.is_null(), "the activation's store was written");
    // What a member does when another is gone or paused past its lease: read the group's
    // pending lists, claim entries.
    let svc = connect(&url_as("svc")).await;
    let group_stream = format!("{ns}:sys:~shared:req");
    raw(&svc, &["XPENDING", &group_stream, "proxy"])
        .await
        .unwrap();
    raw(
        &svc,
        &["XCLAIM", &group_stream, "proxy", "svc2", "0", "0-1"],
    )
    .await
    .unwrap();

    client.shutdown().await;
    member_proxy.shutdown().await.unwrap();
    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}
