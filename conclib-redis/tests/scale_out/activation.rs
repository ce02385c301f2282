//! Actors activated on demand by URN pattern: one activation under a race of 8 client
//! processes, a holder SIGSTOPped past its lease under 10,000 tells with an exact final count,
//! a holder killed between saving a request's effect and acknowledging it (counted once), a
//! request read again after Redis refused its answer (counted once),
//! passivation that saves and frees the URN, a constructor that refuses.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conclib_core::AskError;
use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, Message, RequestEnvelope};
use conclib_redis::{
    ProxyClient, ProxyConfig,
    scale::{Activation, StateStore, StoreError},
    start_proxy,
};
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::common::{command, config, eventually, plain_client};
use crate::peers::{Peer, noted, peer_config, temp_notes, wait_for_orders};

wire_message! {
    /// Adds one to an account (a tell; the number names the tell in the notes); its count is
    /// saved on every change.
    Incr(u64), "scale.Incr", ()
}

wire_message! {
    /// Adds one and saves as `Incr` does, then holds its handler for a minute (a tell): the
    /// request is handled and its effect saved, but not acknowledged until then.
    IncrAndHold(u64), "scale.IncrAndHold", ()
}

wire_message! {
    /// The account's count (an ask).
    Total, "scale.Total", u64
}

wire_message! {
    /// Stops the account by itself (a tell).
    Quit, "scale.Quit", ()
}

/// An activated actor: its count lives in its fenced store.
pub(crate) struct Account {
    count: u64,
    store: StateStore,
    /// Saved by `on_stop` (passivation) rather than on every change.
    save_on_stop: bool,
    /// Where the numbers of the tells whose count this activation saved are written, one a
    /// line.
    notes: Option<Arc<std::sync::Mutex<std::fs::File>>>,
}

impl Account {
    /// Adds one, saved (unless saved at stop) before it counts, and notes tell `n`.
    async fn incr(&mut self, n: u64) -> Result<(), String> {
        let next = self.count + 1;
        if !self.save_on_stop {
            self.store.save(&next).await.map_err(|e| e.to_string())?;
        }
        self.count = next;
        if let Some(notes) = &self.notes {
            use std::io::Write;
            let mut f = notes.lock().unwrap();
            let _ = writeln!(f, "{n}");
        }
        Ok(())
    }
}

impl Actor for Account {
    // A burst of 10,000 tells waits in the mailbox rather than meeting the proxy's overload
    // answer (a tell finding a full mailbox for 100 ms is dropped): this test is about
    // single activation, not overload.
    const MAILBOX: conclib_core::MailboxConfig = conclib_core::MailboxConfig::Unbounded;
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<Incr>(),
        ExposedMessage::of::<IncrAndHold>(),
        ExposedMessage::of::<Total>(),
        ExposedMessage::of::<Quit>(),
    ];

    async fn handle_request(&mut self, req: RequestEnvelope, ctx: &mut Context<Self>) {
        let req = match req.extract::<Quit>() {
            Ok((Quit, r)) => {
                ctx.stop();
                return r.respond(Ok(()));
            }
            Err(req) => req,
        };
        let req = match req.extract::<Incr>() {
            Ok((Incr(n), r)) => return r.respond(self.incr(n).await),
            Err(req) => req,
        };
        let req = match req.extract::<IncrAndHold>() {
            Ok((IncrAndHold(n), r)) => {
                let done = self.incr(n).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
                return r.respond(done);
            }
            Err(req) => req,
        };
        match req.extract::<Total>() {
            Ok((Total, r)) => r.respond(Ok(self.count)),
            Err(req) => req.reject(),
        }
    }

    async fn on_stop(
        &mut self,
        _ctx: &mut Context<Self>,
        _reason: &conclib_core::StopReason,
    ) -> Result<(), conclib_core::BoxError> {
        if self.save_on_stop {
            let _ = self.store.save(&self.count).await;
        }
        // Moved to another member (a rebalance, a drain): the count carried there.
        let _ = self.store.dehydrate(&self.count).await;
        Ok(())
    }
}

/// The constructor: counts activations in Redis (`{ns}:test:activations`), takes the count
/// its previous activation carried when it was moved here (counted in `{ns}:test:carried`),
/// else loads it.
pub(crate) async fn open_account(
    a: Activation,
    redis: Client,
    ns: String,
    save_on_stop: bool,
    notes: Option<Arc<std::sync::Mutex<std::fs::File>>>,
) -> Result<Account, StoreError> {
    if a.id() == "refused" {
        return Err(StoreError::Codec("no such account".into()));
    }
    let _: i64 = redis
        .incr(format!("{ns}:test:activations"))
        .await
        .map_err(|e| StoreError::Redis(e.to_string()))?;
    let count = match a.store().rehydrate::<u64>().await? {
        Some(carried) => {
            let _: i64 = redis
                .incr(format!("{ns}:test:carried"))
                .await
                .map_err(|e| StoreError::Redis(e.to_string()))?;
            carried
        }
        None => a.store().load::<u64>().await?.unwrap_or(0),
    };
    Ok(Account {
        count,
        store: a.into_store(),
        save_on_stop,
        notes,
    })
}

/// `activator URL NS SYSTEM LEASE_MS IDLE_MS NOTES`: activates `acct:{id}` Accounts, which
/// note the tells they counted in the file NOTES.
pub(crate) async fn activator(args: &[String]) -> i32 {
    let [url, ns, system_id, lease_ms, idle_ms, notes] = args else {
        return 2;
    };
    let notes = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(notes)
        .unwrap();
    let notes = Arc::new(std::sync::Mutex::new(notes));
    let config = peer_config(url, ns, system_id, lease_ms);
    let system = ActorSystem::new(system_id);
    let proxy = start_proxy(&system, &config).await.unwrap();
    let redis = plain_client(url).await;
    let ns2 = ns.clone();
    proxy
        .activate("acct:{id}", move |a| {
            open_account(a, redis.clone(), ns2.clone(), false, Some(notes.clone()))
        })
        .passivate_after(Duration::from_millis(idle_ms.parse().unwrap()))
        .await
        .unwrap();
    println!("READY");
    wait_for_orders(&proxy).await;
    proxy.shutdown().await.unwrap();
    println!("STOPPED");
    0
}

/// `client URL NS URN`: connects, prints READY, asks `Total` once `go` comes on stdin,
/// prints `OK <total>` or `ERR <error>`.
pub(crate) async fn client(args: &[String]) -> i32 {
    let [url, ns, urn] = args else { return 2 };
    let client = ProxyClient::connect(&ProxyConfig::new(url).with_namespace(ns))
        .await
        .unwrap();
    println!("READY");
    // Blocks this thread until `go`: the runtime has its own worker.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
    match client.ask(urn.as_str(), Total).await {
        Ok(n) => println!("OK {n}"),
        Err(e) => println!("ERR {e}"),
    }
    0
}

/// An activator peer (`system` hosts the `acct:{id}` pattern with this lease; its actors are
/// not passivated within a test), and its notes file.
async fn start_activator(config: &ProxyConfig, system: &str, lease_ms: u64) -> (Peer, PathBuf) {
    let lease = lease_ms.to_string();
    let notes = temp_notes(system);
    let peer = Peer::start(&[
        "activator",
        &config.url,
        &config.namespace,
        system,
        &lease,
        "600000",
        notes.to_str().unwrap(),
    ])
    .await;
    (peer, notes)
}

async fn activations(redis: &Client, ns: &str) -> i64 {
    redis
        .get::<Option<i64>, _>(format!("{ns}:test:activations"))
        .await
        .unwrap()
        .unwrap_or(0)
}

pub(crate) async fn eight_clients_racing_activate_a_urn_once() {
    let config = config("race");
    let (a, _) = start_activator(&config, "s1", 3000).await;
    let (b, _) = start_activator(&config, "s2", 3000).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(Peer::start(&["client", &config.url, &config.namespace, "acct:1"]).await);
    }
    for c in &mut clients {
        c.say("go").await;
    }
    for c in &mut clients {
        assert_eq!(c.line(30).await, "OK 0");
    }
    let redis = plain_client(&config.url).await;
    assert_eq!(
        activations(&redis, &config.namespace).await,
        1,
        "exactly one activation"
    );
    for c in clients {
        c.kill().await;
    }
    a.stop().await;
    b.stop().await;
}

pub(crate) async fn a_holder_paused_past_its_lease_never_runs_beside_its_successor() {
    let config = config("pause");
    let lease_ms = 1500u64;
    let (a, a_notes) = start_activator(&config, "s1", lease_ms).await;
    let (b, b_notes) = start_activator(&config, "s2", lease_ms).await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(client.ask("acct:7", Total).await.unwrap(), 0);
    let redis = plain_client(&config.url).await;
    let holder_name: String = redis
        .get(format!("{}:urn:acct:7", config.namespace))
        .await
        .unwrap();
    let (holder, other, other_name) = if holder_name == "s1" {
        (a, b, "s2")
    } else {
        (b, a, "s1")
    };
    let total = 10_000u64;
    let sent = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        let sent = sent.clone();
        senders.push(tokio::spawn(async move {
            loop {
                let n = sent.fetch_add(1, Ordering::Relaxed) as u64;
                if n >= total {
                    break;
                }
                client.tell("acct:7", Incr(n)).await.unwrap();
            }
        }));
    }
    eventually(
        Duration::from_secs(60),
        "a quarter of the tells sent",
        || async { sent.load(Ordering::Relaxed) > total as usize / 4 },
    )
    .await;
    holder.freeze().await;
    // Past its lease: the other system activates the account meanwhile.
    eventually(
        Duration::from_secs(30),
        "the other system holds the URN",
        || async {
            redis
                .get::<Option<String>, _>(format!("{}:urn:acct:7", config.namespace))
                .await
                .unwrap()
                .as_deref()
                == Some(other_name)
        },
    )
    .await;
    holder.signal(libc::SIGCONT);
    for s in senders {
        tokio::time::timeout(Duration::from_secs(120), s)
            .await
            .expect("tells sent")
            .unwrap();
    }
    eventually(Duration::from_secs(60), "every tell counted", || async {
        client.ask("acct:7", Total).await.is_ok_and(|n| n >= total)
    })
    .await;
    let counted = client.ask("acct:7", Total).await.unwrap();
    if counted != total {
        // Which tells were counted twice, and by which system (the tells whose count a
        // system saved, from each one's notes).
        let (on_a, on_b) = (
            noted(std::slice::from_ref(&a_notes)),
            noted(std::slice::from_ref(&b_notes)),
        );
        let twice: Vec<_> = (0..total)
            .filter_map(|n| {
                let (x, y) = (
                    on_a.get(&n).copied().unwrap_or(0),
                    on_b.get(&n).copied().unwrap_or(0),
                );
                (x + y != 1).then_some((n, x, y))
            })
            .take(20)
            .collect();
        panic!(
            "exactly once: nothing lost, nothing twice; counted {counted} of {total}; \
             (tell, times on s1, times on s2) not noted once: {twice:?}"
        );
    }
    assert!(
        activations(&redis, &config.namespace).await >= 2,
        "the account moved"
    );
    holder.stop().await;
    other.stop().await;
    let _ = std::fs::remove_file(a_notes);
    let _ = std::fs::remove_file(b_notes);
}

pub(crate) async fn a_request_saved_by_a_holder_killed_before_its_acknowledgement_counts_once() {
    let config = config("saved");
    let (a, a_notes) = start_activator(&config, "s1", 1500).await;
    let (b, b_notes) = start_activator(&config, "s2", 1500).await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(20)))
        .await
        .unwrap();
    // The account's first message goes to the pattern group's stream; the member that reads
    // it activates the account, saves the count and holds the handler: the request stays
    // pending on that member, its effect saved.
    client.tell("acct:9", IncrAndHold(1)).await.unwrap();
    let holder = eventually(
        Duration::from_secs(30),
        "a member saved the tell",
        || async {
            let on = |notes: &PathBuf| noted(std::slice::from_ref(notes)).contains_key(&1);
            (on(&a_notes) || on(&b_notes)).then(|| on(&a_notes))
        },
    )
    .await;
    let ((holder, holder_notes), (other, other_notes), other_name) = if holder {
        ((a, a_notes), (b, b_notes), "s2")
    } else {
        ((b, b_notes), (a, a_notes), "s1")
    };
    holder.kill().await;
    // Once the holder's leases lapse, the other member claims the request and activates
    // the account with the saved count: the request is acknowledged, not handled again.
    let redis = plain_client(&config.url).await;
    let urn_key = format!("{}:urn:acct:9", config.namespace);
    let stream = format!("{}:sys:~acct:*:req", config.namespace);
    let handled_again = || noted(std::slice::from_ref(&other_notes)).contains_key(&1);
    eventually(
        Duration::from_secs(30),
        "the other member took the account and the request over",
        || async {
            let owner: Option<String> = redis.get(&urn_key).await.unwrap();
            let pending: Value = redis
                .custom(
                    fred::cmd!("XPENDING"),
                    vec![stream.clone(), "proxy".to_owned()],
                )
                .await
                .unwrap();
            let none_pending =
                matches!(&pending, Value::Array(p) if p.first().and_then(Value::as_i64) == Some(0));
            (owner.as_deref() == Some(other_name) && none_pending) || handled_again()
        },
    )
    .await;
    assert!(
        !handled_again(),
        "the other member handled the request again"
    );
    assert_eq!(
        client.ask("acct:9", Total).await.unwrap(),
        1,
        "a request whose effect was saved is not applied again"
    );
    other.stop().await;
    let _ = std::fs::remove_file(holder_notes);
    let _ = std::fs::remove_file(other_notes);
}

/// A system serving `acct:{id}` accounts as a Redis user with the proxy role, whose answer
/// to an `Incr` ask is refused (it may no longer write reply lists; every other key of its
/// namespace stays writable: its leases hold): the ask is handled and its count saved, its
/// request never acknowledged, and read again.
struct AnswerRefused {
    admin: Client,
    ns: String,
    user: String,
    proxy: conclib_redis::ProxyHandle,
    client: ProxyClient,
    /// The `Incr` ask under way: whether it was answered `NoResponse`, and its answer.
    asking: tokio::task::JoinHandle<(bool, String)>,
    /// The request's entry read again: `(stream, id)`.
    entry: (String, String),
}

impl AnswerRefused {
    async fn start(name: &str) -> AnswerRefused {
        let config = config(name);
        let ns = config.namespace.clone();
        let admin = plain_client(&config.url).await;
        let user = format!("{ns}-proxy");
        let mut words = vec![
            "ACL".to_owned(),
            "SETUSER".into(),
            user.clone(),
            "on".into(),
        ];
        words.push(">secret".into());
        words.extend(conclib_redis::acl::proxy_acl(&ns));
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        command(&admin, &words).await.unwrap();
        let port = crate::common::daemon().port();
        let proxy_config = config
            .clone()
            .with_url(format!("redis://{user}:secret@127.0.0.1:{port}"));
        let system_id = format!("{name}-sys");
        let system = ActorSystem::new(system_id.as_str());
        let proxy = start_proxy(&system, &proxy_config).await.unwrap();
        let (r2, ns2) = (admin.clone(), ns.clone());
        proxy
            .activate("acct:{id}", move |a| {
                open_account(a, r2.clone(), ns2.clone(), false, None)
            })
            .await
            .unwrap();
        let client =
            ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(30)))
                .await
                .unwrap();
        assert_eq!(client.ask("acct:1", Total).await, Ok(0));
        command(
            &admin,
            &[
                "ACL",
                "SETUSER",
                &user,
                "resetkeys",
                &format!("~{ns}:[^r]*"),
                &format!("%R~{ns}:reply:*"),
            ],
        )
        .await
        .unwrap();
        let asking = {
            let client = client.clone();
            tokio::spawn(async move {
                let answer = client.ask("acct:1", Incr(1)).await;
                (
                    matches!(answer, Err(AskError::NoResponse)),
                    format!("{answer:?}"),
                )
            })
        };
        // The client sends it to the pattern's stream, which this proxy reads as a member,
        // or (its route cached for a second only) to the stream of the system holding it.
        let streams = [
            format!("{ns}:sys:~acct:*:req"),
            format!("{ns}:sys:{system_id}:req"),
        ];
        let entry = eventually(
            Duration::from_secs(30),
            "the request is read again after its answer failed",
            || async {
                for stream in &streams {
                    let pending = command(&admin, &["XPENDING", stream, "proxy", "-", "+", "10"])
                        .await
                        .unwrap();
                    // Each pending entry: [id, consumer, idle ms, delivery count].
                    let Value::Array(entries) = pending else {
                        continue;
                    };
                    for e in entries {
                        if let Value::Array(f) = e
                            && f.get(3).and_then(Value::as_i64).is_some_and(|n| n >= 2)
                            && let Some(id) = f.first().and_then(Value::as_string)
                        {
                            return Some((stream.clone(), id));
                        }
                    }
                }
                None
            },
        )
        .await;
        AnswerRefused {
            admin,
            ns,
            user,
            proxy,
            client,
            asking,
            entry,
        }
    }

    /// Appends a copy of the request read again to its stream, as `forward.rs` passes a
    /// request on (its fields, and `first` naming the entry): the copy's entry id.
    async fn pass_on_a_copy(&self) -> String {
        let (stream, id) = &self.entry;
        let entry = command(&self.admin, &["XRANGE", stream, id, id])
            .await
            .unwrap();
        let Value::Array(mut entries) = entry else {
            panic!("the entry: {entry:?}")
        };
        let Some(Value::Array(mut parts)) = entries.pop() else {
            panic!("an entry")
        };
        let Some(Value::Array(fields)) = parts.pop() else {
            panic!("its fields")
        };
        let mut words: Vec<String> = vec!["XADD".into(), stream.clone(), "*".into()];
        words.extend(fields.iter().map(|v| v.as_string().unwrap()));
        words.extend(["first".to_owned(), format!("{id} {stream}")]);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        command(&self.admin, &words)
            .await
            .unwrap()
            .as_string()
            .unwrap()
    }

    /// Answers may be written again: the request read again is answered as handled already
    /// (`NoResponse`: its effect is in the state, its answer was lost).
    async fn answers_again(&mut self, what: &str) {
        let (admin, ns, user) = (&self.admin, &self.ns, &self.user);
        command(
            admin,
            &["ACL", "SETUSER", user, "resetkeys", &format!("~{ns}:*")],
        )
        .await
        .unwrap();
        let (no_response, answer) = tokio::time::timeout(Duration::from_secs(40), &mut self.asking)
            .await
            .expect("the ask is answered")
            .unwrap();
        assert!(
            no_response,
            "{what}: answered NoResponse, not handled again: {answer}"
        );
    }

    /// [`answers_again`](Self::answers_again), and the count is 1.
    async fn answered_once(mut self, what: &str) {
        self.answers_again(what).await;
        assert_eq!(
            self.client.ask("acct:1", Total).await,
            Ok(1),
            "{what}: a request whose effect was saved is not applied again"
        );
        self.client.shutdown().await;
        self.proxy.shutdown().await.unwrap();
    }
}

pub(crate) async fn a_request_read_again_after_its_answer_failed_counts_once() {
    // Read again, the request is not handed to the actor: its effect is in the state.
    AnswerRefused::start("reread")
        .await
        .answered_once("read again")
        .await;
}

/// A request a system passes on carries its first entry (`field::FIRST`): a system that
/// handled and saved it, then found its URN held elsewhere as it read it again (after a
/// restart that forgot which requests await their acknowledgement), passes it on, and the
/// activation that reads it there knows it from the record saved with the state. Here the
/// copy passed on is appended by the test, as `forward.rs` writes it (its unit test checks
/// that), beside the request still pending: the activation answers it as handled already,
/// and the count stays 1 (it was 2 before the field was read).
pub(crate) async fn a_request_passed_on_is_known_by_its_first_entry() {
    let refused = AnswerRefused::start("passedon").await;
    refused.pass_on_a_copy().await;
    refused.answered_once("passed on").await;
}

/// What an earlier activation recorded with the state stays in the records of the next,
/// read or not, so that a request pending on a member that died comes back known to every
/// activation after it: here the request answered as handled already (count 1), a second
/// activation that never reads it saves another `Incr` (count 2) and stops, and a copy of
/// the request passed on (as `forward.rs` writes it, by the test) reaches a third
/// activation, which answers it as handled already. Before the record kept it, the second
/// activation's write left it out and the third counted it again (3).
pub(crate) async fn a_request_recorded_by_an_earlier_activation_is_known_two_activations_on() {
    let mut refused = AnswerRefused::start("earlier").await;
    refused.answers_again("read again").await;
    let (admin, client) = (&refused.admin, &refused.client);
    let stream = refused.entry.0.clone();
    let stopped = || async {
        client.tell("acct:1", Quit).await.unwrap();
        eventually(
            Duration::from_secs(10),
            "the activation stopped",
            || async { refused.proxy.activations().is_empty() },
        )
        .await;
    };
    stopped().await;
    assert_eq!(client.ask("acct:1", Incr(2)).await, Ok(()));
    assert_eq!(client.ask("acct:1", Total).await, Ok(2));
    stopped().await;
    // The request passed on, as a member that read it again would.
    let copy = refused.pass_on_a_copy().await;
    let entry_ms_seq = |id: &str| -> (u64, u64) {
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse().unwrap(), seq.parse().unwrap())
    };
    eventually(
        Duration::from_secs(30),
        "the copy read and acknowledged",
        || async {
            let groups = command(admin, &["XINFO", "GROUPS", &stream]).await.unwrap();
            let Value::Array(groups) = groups else {
                return false;
            };
            groups.iter().any(|g| {
                let Value::Array(f) = g else { return false };
                let field = |name: &str| {
                    f.chunks(2)
                        .find(|kv| kv[0].as_string().as_deref() == Some(name))
                        .map(|kv| kv[1].clone())
                };
                field("name").and_then(|v| v.as_string()).as_deref() == Some("proxy")
                    && field("pending").and_then(|v| v.as_i64()) == Some(0)
                    && field("last-delivered-id")
                        .and_then(|v| v.as_string())
                        .is_some_and(|last| entry_ms_seq(&last) >= entry_ms_seq(&copy))
            })
        },
    )
    .await;
    assert_eq!(
        client.ask("acct:1", Total).await,
        Ok(2),
        "a request an activation two before recorded is not applied again"
    );
    client.shutdown().await;
    refused.proxy.shutdown().await.unwrap();
}

pub(crate) async fn an_idle_activation_saves_frees_its_urn_and_comes_back() {
    let config = config("idle");
    let system = ActorSystem::new("idle-sys");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let redis = plain_client(&config.url).await;
    let ns = config.namespace.clone();
    let r2 = redis.clone();
    proxy
        .activate("acct:{id}", move |a| {
            open_account(a, r2.clone(), ns.clone(), true, None)
        })
        .passivate_after(Duration::from_millis(300))
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    for _ in 0..5 {
        client.tell("acct:9", Incr(0)).await.unwrap();
    }
    // Eventually rather than at once: the first tells go through the pattern group's
    // stream, and a later request may go straight to the system's once the client looks
    // the URN up again (its route is cached for a second, which a loaded machine can
    // outlast): two streams, no order between them (the crate's docs, "Order").
    eventually(
        Duration::from_secs(10),
        "the five tells counted",
        || async { client.ask("acct:9", Total).await.unwrap() == 5 },
    )
    .await;
    assert_eq!(proxy.activations(), vec!["acct:9".to_owned()]);
    // The snapshot shows the group and the activation, which lives in this system.
    proxy.publish_snapshot().await.unwrap();
    let reader = conclib_redis::snapshots::SnapshotReader::connect(&config)
        .await
        .unwrap();
    let published = reader.systems().await.unwrap();
    let me = published
        .iter()
        .find(|p| p.system_id == "idle-sys")
        .unwrap();
    assert_eq!(me.groups.len(), 1);
    assert_eq!(
        (
            me.groups[0].name.as_str(),
            me.groups[0].group.as_str(),
            me.groups[0].activations
        ),
        ("acct:{id}", "~acct:*", 1)
    );
    assert!(
        me.snapshot
            .actors
            .iter()
            .any(|a| a.urn.as_deref() == Some("acct:9"))
    );
    let key = format!("{}:urn:acct:9", config.namespace);
    eventually(
        Duration::from_secs(20),
        "the idle account passivated and its URN released",
        || async {
            proxy.activations().is_empty() && !redis.exists::<bool, _>(&key).await.unwrap()
        },
    )
    .await;
    assert!(system.lookup("acct:9").is_err());
    // Activated again by the next request, with what on_stop saved.
    assert_eq!(client.ask("acct:9", Total).await.unwrap(), 5);
    assert_eq!(activations(&redis, &config.namespace).await, 2);
    proxy.shutdown().await.unwrap();
    // Shutdown passivates (and saves) too, releasing the URN for the group.
    assert!(!redis.exists::<bool, _>(&key).await.unwrap());
    system.shutdown(Duration::from_secs(5)).await.unwrap();
}

pub(crate) async fn a_constructor_that_refuses_answers_unknown_urn() {
    let config = config("refuse");
    let system = ActorSystem::new("refuse-sys");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let redis = plain_client(&config.url).await;
    let ns = config.namespace.clone();
    proxy
        .activate("acct:{id}", move |a| {
            open_account(a, redis.clone(), ns.clone(), false, None)
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    match client.ask("acct:refused", Total).await {
        Err(AskError::UnknownUrn { .. }) => {}
        other => panic!("expected UnknownUrn, got {other:?}"),
    }
    // An activation that stops by itself is forgotten; the next request activates it
    // again, with its saved state.
    client.tell("acct:2", Incr(0)).await.unwrap();
    assert_eq!(client.ask("acct:2", Total).await.unwrap(), 1);
    client.tell("acct:2", Quit).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the stopped activation forgotten",
        || async { proxy.activations().is_empty() },
    )
    .await;
    assert_eq!(client.ask("acct:2", Total).await.unwrap(), 1);
    assert_eq!(proxy.activations(), ["acct:2"]);
    // A URN of no pattern is unknown at once, as before.
    assert!(matches!(
        client.ask("nothing:1", Total).await,
        Err(AskError::UnknownUrn { .. })
    ));
    // Invalid patterns are refused with a message saying how to write one.
    let never = plain_client(&config.url).await;
    let err = proxy
        .activate("acct", move |a| {
            open_account(a, never.clone(), String::new(), false, None)
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("prefix:{id}"), "{err}");
    proxy.shutdown().await.unwrap();
    system.shutdown(Duration::from_secs(5)).await.unwrap();
}
