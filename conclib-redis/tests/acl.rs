//! The least-privilege roles, against a real Redis with real ACL users: a client with the
//! client role asks and tells (a single actor, a group's URN, a URN activated on demand); it
//! cannot forge an answer, list keys or read other keys. A proxy with the proxy role serves
//! all three. Under the same roles, clients register, list and cancel reminders, a poller
//! with the proxy role fires them, and both roles publish and subscribe to topics, with
//! nothing refused (`ACL LOG`).
mod common;

use common::actors::*;
use conclib_core::ActorSystem;
use conclib_core::AskError;
use conclib_redis::{
    ProxyClient, ProxyConfig,
    acl::{client_acl, proxy_acl, viewer_acl},
    snapshots::SnapshotReader,
    start_proxy, start_redis,
    topics::TopicError,
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
    let requests = format!("{ns}:sys:svc:req");
    assert!(
        denied(raw(&web, &["DEL", &requests]).await),
        "delete a system's queued requests"
    );
    assert!(
        denied(raw(&web, &["XADD", &other_reply, "*", "f", "v"]).await),
        "append to a reply list"
    );
    assert!(
        denied(raw(&web, &["BLMPOP", "0.01", "1", &requests, "LEFT"]).await),
        "pop a request stream as a list"
    );
    // What the protocol docs tell a client in another language to do without: replies
    // are popped with BLMPOP (the ProxyClient above did). (`TIME` is granted: the
    // reminders' scripts read Redis's clock.)
    assert!(
        denied(raw(&web, &["LPOP", &other_reply]).await),
        "pop with LPOP"
    );
    assert!(
        denied(raw(&web, &["HSET", &format!("{ns}:rem:pollers"), "p", "x"]).await),
        "forge a poller's report"
    );
    assert!(
        denied(
            raw(
                &web,
                &[
                    "XREADGROUP",
                    "GROUP",
                    "proxy",
                    "web",
                    "STREAMS",
                    &format!("{ns}:sys:svc:req"),
                    ">"
                ]
            )
            .await
        ),
        "read requests"
    );

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
    conclib_redis::reminders::Reminders::new(&admin_client)
        .register(
            "c",
            conclib_redis::reminders::Reminder::after("r", std::time::Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let overview = reader
        .reminders(&conclib_redis::reminders::ReminderQuery::urn("c", 10).unwrap())
        .await
        .unwrap();
    assert_eq!(overview.registered, 1);
    assert_eq!(overview.reminders[0].name, "r");
    let overview = reader
        .reminders(&conclib_redis::reminders::ReminderQuery::prefix("c", 10).unwrap())
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
        .activate(
            "acct:{id}",
            |a: conclib_redis::scale::Activation| async move {
                let store = a.into_store();
                let opened = store.load::<u64>().await?.unwrap_or(0) + 1;
                store.save(&opened).await?;
                Ok::<_, conclib_redis::scale::StoreError>(Counter {
                    count: opened * 100,
                    log: Vec::new(),
                })
            },
        )
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

    // `WAIT` (the `Replicas` durability level) is granted to both roles.
    raw(&web, &["WAIT", "0", "0"]).await.unwrap();
    raw(&svc, &["WAIT", "0", "0"]).await.unwrap();

    // A graceful shutdown under the proxy role marks its URNs departed, and the client role
    // reads the marks: a URN whose system shut down moments ago is restarting, not unknown
    // (nor a refused command).
    member_proxy.shutdown().await.unwrap();
    proxy.shutdown().await.unwrap();
    match client
        .ask("c", Add(1))
        .timeout(std::time::Duration::from_millis(300))
        .await
    {
        Err(AskError::Unavailable(_)) => {}
        other => panic!("a departed URN under the client role: {other:?}"),
    }
    assert_eq!(
        client.ask("nobody", Add(1)).await,
        Err(AskError::UnknownUrn {
            urn: "nobody".into()
        })
    );
    client.shutdown().await;
    daemon.shutdown().unwrap();
}

/// An actor that reports each reminder tick it handles (its name) on a channel.
struct Woken(tokio::sync::mpsc::UnboundedSender<String>);

impl conclib_core::Actor for Woken {
    const REMOTE: &'static [conclib_core::ExposedMessage] = &[conclib_core::ExposedMessage::of::<
        conclib_redis::reminders::ReminderTick,
    >()];
    async fn handle_request(
        &mut self,
        req: conclib_core::RequestEnvelope,
        _: &mut conclib_core::Context<Self>,
    ) {
        match req.extract::<conclib_redis::reminders::ReminderTick>() {
            Ok((tick, r)) => {
                let _ = self.0.send(tick.name().to_owned());
                r.respond(Ok(()));
            }
            Err(req) => req.reject(),
        }
    }
}

/// Waits (at most 20 s) until `done` holds, looking every 20 ms: for what has no event.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "{what} within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Redis's count of calls of `command` (`INFO commandstats`), refused ones included.
async fn calls(admin: &Client, command: &str) -> u64 {
    let Ok(Value::String(info)) = raw(admin, &["INFO", "commandstats"]).await else {
        return 0;
    };
    let Some(line) = info
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
    else {
        return 0;
    };
    line.split([':', ','])
        .filter_map(|f| f.split_once('='))
        .filter(|(k, _)| *k == "calls" || *k == "rejected_calls")
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

/// What Redis refused (`ACL LOG`): user, reason and object of each refusal, but for the
/// reads of Redis's settings that fall back by design (`CONFIG GET`, refused to every
/// role, then `INFO persistence`; `INFO`, refused to the viewer).
async fn refused(admin: &Client) -> Vec<String> {
    let Value::Array(entries) = raw(admin, &["ACL", "LOG"]).await.unwrap() else {
        panic!("ACL LOG answers an array");
    };
    let field = |entry: &Value, name: &str| match entry {
        Value::Array(kv) => kv
            .chunks(2)
            .find(|p| p[0].as_str().as_deref() == Some(name))
            .and_then(|p| p[1].as_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    entries
        .iter()
        .map(|e| (field(e, "username"), field(e, "reason"), field(e, "object")))
        .filter(|(user, _, object)| object != "config|get" && !(user == "view" && object == "info"))
        .map(|(user, reason, object)| format!("{user}: {reason} {object}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_and_proxy_roles_use_reminders_and_topics() {
    use conclib_redis::{
        reminders::{Reminder, ReminderPoller, ReminderPollerOptions, ReminderQuery, Reminders},
        topics::Topic,
    };
    use std::time::Duration;
    // The poller counts the registered and due reminders too (a script of its own).
    conclib_core::metrics::enable();
    let ns = "aclr";
    let base = ProxyConfig::default()
        .with_namespace(ns)
        .with_snapshot_interval(Some(Duration::from_millis(200)));
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
    // Applied again, the client role's rules replace its five selectors (requests, replies,
    // reminders, topics, hand-over notes).
    let mut again = vec!["ACL", "SETUSER", "web"];
    let rules = client_acl(ns);
    again.extend(rules.iter().map(String::as_str));
    raw(&admin, &again).await.unwrap();
    let Value::Array(user) = raw(&admin, &["ACL", "GETUSER", "web"]).await.unwrap() else {
        panic!("ACL GETUSER answers an array");
    };
    let selectors = user
        .chunks(2)
        .find(|p| p[0].as_str().as_deref() == Some("selectors"))
        .map(|p| match &p[1] {
            Value::Array(s) => s.len(),
            _ => 0,
        });
    assert_eq!(selectors, Some(5));
    // The hand-over notes: the proxy publishes them (from its scripts), the client
    // subscribes to them, and neither reaches another channel that way.
    let moves = format!("{ns}:moves");
    for (user, command) in [("svc", "PUBLISH"), ("web", "SUBSCRIBE")] {
        let mut dry = vec!["ACL", "DRYRUN", user, command, moves.as_str()];
        if command == "PUBLISH" {
            dry.push("note");
        }
        let answer = raw(&admin, &dry).await.unwrap();
        assert_eq!(answer.as_str().as_deref(), Some("OK"), "{user} {command}");
        let other = raw(&admin, &["ACL", "DRYRUN", user, "SUBSCRIBE", "other:moves"])
            .await
            .unwrap();
        assert_ne!(other.as_str().as_deref(), Some("OK"), "{user} other:moves");
    }
    let url_as = |user: &str| format!("redis://{user}:secret@127.0.0.1:{}", daemon.port());
    let as_web = base.clone().with_url(url_as("web"));
    let as_svc = base.clone().with_url(url_as("svc"));

    let (woken, mut wakes) = tokio::sync::mpsc::unbounded_channel();
    let system = ActorSystem::new("svc");
    system
        .build(Woken(woken))
        .urn("timer")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &as_svc).await.unwrap();
    let web = ProxyClient::connect(&as_web).await.unwrap();
    let svc = ProxyClient::connect(&as_svc).await.unwrap();

    // The client role registers, lists and cancels; so does the proxy role.
    let by_web = Reminders::new(&web);
    let by_svc = Reminders::new(&svc);
    by_web
        .register("timer", Reminder::after("gone", Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(by_web.list("timer").await.unwrap().len(), 1);
    assert!(by_web.cancel("timer", "gone").await.unwrap());
    by_svc
        .register("timer", Reminder::after("gone", Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(by_svc.list("timer").await.unwrap().len(), 1);
    assert!(by_svc.cancel("timer", "gone").await.unwrap());
    // Fired by a poller under the proxy role: a one-shot reminder (removed once
    // acknowledged), a periodic one (moved to its next tick), and one for a URN nobody
    // serves (its claim given back after each failed delivery).
    by_web
        .register("timer", Reminder::after("once", Duration::ZERO))
        .await
        .unwrap();
    by_web
        .register(
            "timer",
            Reminder::after("every", Duration::ZERO).every(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    by_svc
        .register("nobody", Reminder::after("lost", Duration::ZERO))
        .await
        .unwrap();
    let poller = ReminderPoller::start(
        &svc,
        ReminderPollerOptions::default()
            .with_poll_interval(Duration::from_millis(20))
            .with_retry_after(Duration::from_millis(50)),
    )
    .unwrap();
    let (mut once, mut every) = (0, 0);
    while once < 1 || every < 3 {
        let name = tokio::time::timeout(Duration::from_secs(20), wakes.recv())
            .await
            .expect("a tick within 20 s")
            .unwrap();
        match name.as_str() {
            "once" => once += 1,
            _ => every += 1,
        }
    }
    // Nothing else ran `ZCOUNT` yet (the viewer reads later).
    assert!(calls(&admin, "zcount").await >= 1, "the poller counted");
    until("the one-shot reminder acknowledged (removed)", async || {
        by_web
            .list("timer")
            .await
            .unwrap()
            .iter()
            .all(|r| r.name != "once")
    })
    .await;
    // Given back twice: the first claim was released (else it would hold for 30 s).
    until("a failed delivery given back and tried again", async || {
        poller.stats().retried >= 2
    })
    .await;
    let reader = SnapshotReader::connect(&base.clone().with_url(url_as("view")))
        .await
        .unwrap();
    until("the poller's report", async || {
        let query = ReminderQuery::soonest(10).unwrap();
        !reader.reminders(&query).await.unwrap().pollers.is_empty()
    })
    .await;
    poller.shutdown().await;
    let left = by_web.list("timer").await.unwrap();
    assert_eq!(left.len(), 1, "the periodic one stays: {left:?}");

    // Topics: each role publishes to the other and subscribes (a system's
    // `ProxyHandle::topics` and a `ProxyClient`'s), live and durable; the durable
    // subscriptions take over idle entries (`XAUTOCLAIM`) and forget gone subscribers (a
    // script) every 100 ms.
    let live = Topic::live("news").unwrap();
    let durable = Topic::durable("orders").unwrap();
    for (publisher, subscriber) in [
        (proxy.topics(), web.topics()),
        (web.topics(), svc.topics()),
        (svc.topics(), proxy.topics()),
    ] {
        let mut live_sub = subscriber.subscribe::<u64>(&live).await.unwrap();
        let mut durable_sub = subscriber
            .subscribe::<u64>(&durable)
            .group("g")
            .claim_idle(Duration::from_millis(200))
            .await
            .unwrap();
        publisher.publish(&live, &7u64).await.unwrap();
        publisher.publish(&durable, &8u64).await.unwrap();
        for (sub, want) in [(&mut live_sub, 7u64), (&mut durable_sub, 8u64)] {
            let got = tokio::time::timeout(Duration::from_secs(10), sub.recv())
                .await
                .expect("an event within 10 s")
                .expect("the subscription goes on")
                .expect("an event, not an error");
            assert_eq!(got, want);
        }
        assert_eq!(durable_sub.lag().await.unwrap(), Some(0));
        let (claims, scripts) = (
            calls(&admin, "xautoclaim").await,
            calls(&admin, "xinfo|consumers").await,
        );
        until("a durable subscription's claim", async || {
            // A durable subscription reads, and so claims, only while asked for events.
            let _ = tokio::time::timeout(Duration::from_millis(50), durable_sub.recv()).await;
            calls(&admin, "xautoclaim").await > claims
                && calls(&admin, "xinfo|consumers").await > scripts
        })
        .await;
        durable_sub.close().await;
        live_sub.close().await;
    }
    let log = refused(&admin).await;
    assert!(log.is_empty(), "Redis refused: {log:#?}");

    // A pattern subscription is refused by Redis (it compares a PSUBSCRIBE pattern with the
    // user's channel rules literally) until a selector grants its own channel pattern.
    // `subscribe` answers Redis's NOPERM as a typed error when fred matches the refusal to
    // the command, else `Ok` with a subscription that receives nothing; either way ACL LOG
    // shows it.
    let pattern = Topic::live_pattern("new*").unwrap();
    let refused_patterns = (
        web.subscribe::<u64>(&pattern).await,
        svc.subscribe::<u64>(&pattern).await,
    );
    for refusal in [&refused_patterns.0, &refused_patterns.1] {
        match refusal {
            Err(TopicError::Redis(text)) => assert!(text.contains("NOPERM"), "{text}"),
            Err(other) => panic!("not Redis's refusal: {other}"),
            Ok(_) => {}
        }
    }
    for user in ["web", "svc"] {
        until("Redis's refusal of the pattern", async || {
            refused(&admin)
                .await
                .iter()
                .any(|r| r.starts_with(&format!("{user}: channel")) && r.contains("{new*}"))
        })
        .await;
    }
    drop(refused_patterns);
    let grant = format!("(+psubscribe +punsubscribe &{ns}:topic:{{new*}}:live)");
    raw(&admin, &["ACL", "SETUSER", "web", &grant])
        .await
        .unwrap();
    let mut by_pattern = web.subscribe::<u64>(&pattern).await.unwrap();
    proxy.topics().publish(&live, &9u64).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), by_pattern.recv())
        .await
        .expect("an event within 10 s");
    assert_eq!(got.unwrap().unwrap(), 9);
    by_pattern.close().await;

    web.shutdown().await;
    svc.shutdown().await;
    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}
