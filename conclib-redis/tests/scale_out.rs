//! Scale-out on Redis, with real processes: one URN served by a group of systems (spread,
//! a member SIGKILLed under load, a member joining, a graceful leave, a member reading again
//! as its entries are claimed), and actors activated on demand by URN pattern (one
//! activation under a race of 8 client processes, a holder SIGSTOPped past its lease under
//! 10,000 tells with an exact final count, passivation that saves and frees the URN). The
//! member systems are this test binary started again in a peer role; every wait is bounded
//! and every child is killed and reaped by PID.
mod common;

use conclib_core::AskError;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{config, eventually, plain_client};
use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, Message, RequestEnvelope};
use conclib_redis::{Activation, ProxyClient, ProxyConfig, StateStore, StoreError, start_proxy};
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ROLE: &str = "CONCLIB_SCALE_OUT_PEER";

fn main() {
    if std::env::var_os(ROLE).is_some() {
        peer_main();
    }
    conclib_testkit::run(conclib_testkit::tests![
        a_shared_urn_spreads_over_its_members_and_survives_one_killed,
        a_member_leaves_gracefully_and_a_new_one_takes_a_share,
        eight_clients_racing_activate_a_urn_once,
        a_holder_paused_past_its_lease_never_runs_beside_its_successor,
        an_idle_activation_saves_frees_its_urn_and_comes_back,
        a_constructor_that_refuses_answers_unknown_urn,
        joins_that_cannot_be_and_requests_for_other_urns_are_refused,
        a_member_paused_past_its_lease_repeats_at_most_what_it_had_taken,
        a_member_reading_again_as_its_entries_are_claimed_loses_none,
        a_group_whose_last_member_left_leaves_nothing_behind,
    ]);
}

// ---- the actors -------------------------------------------------------------------------

/// A message with a wire name, a response and a `String` error (what `#[message]` writes;
/// these tests stay on the core crate).
macro_rules! wire_message {
    ($(#[$doc:meta])* $ty:ident $(($field:ty))?, $name:literal, $response:ty) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize)]
        struct $ty $(($field))?;
        impl conclib_core::MessageDecl for $ty {
            type WireError = String;
        }
        impl Message for $ty {
            type Response = $response;
            type Error = String;
            fn name() -> &'static str {
                $name
            }
        }
    };
}

wire_message! {
    /// Which system answered (an ask).
    Whoami(u64), "scale.Whoami", String
}

wire_message! {
    /// A tell, recorded by the member that handles it (a line in its notes file).
    Tick(u64), "scale.Tick", ()
}

/// A group member's actor.
struct Worker {
    system: String,
    notes: Option<std::fs::File>,
}

impl Actor for Worker {
    const REMOTE: &'static [ExposedMessage] =
        &[ExposedMessage::of::<Whoami>(), ExposedMessage::of::<Tick>()];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<Whoami>() {
            Ok((Whoami(spin), r)) => {
                // Some CPU work, so that a member with work in hand reads less.
                let mut x = spin;
                for i in 0..spin * 1000 {
                    x = x.wrapping_mul(31).wrapping_add(i);
                }
                std::hint::black_box(x);
                return r.respond(Ok(self.system.clone()));
            }
            Err(req) => req,
        };
        match req.extract::<Tick>() {
            Ok((Tick(n), r)) => {
                if let Some(f) = &mut self.notes {
                    use std::io::Write;
                    let _ = writeln!(f, "{n}");
                }
                r.respond(Ok(()))
            }
            Err(req) => req.reject(),
        }
    }
}

wire_message! {
    /// Adds one to an account (a tell; the number names the tell in the notes); its count is
    /// saved on every change.
    Incr(u64), "scale.Incr", ()
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
struct Account {
    count: u64,
    store: StateStore,
    /// Saved by `on_stop` (passivation) rather than on every change.
    save_on_stop: bool,
    /// Where the numbers of the tells whose count this activation saved are written, one a
    /// line.
    notes: Option<Arc<std::sync::Mutex<std::fs::File>>>,
}

impl Actor for Account {
    // A burst of 10,000 tells waits in the mailbox rather than meeting the proxy's overload
    // answer (a tell finding a full mailbox for 100 ms is dropped): this test is about
    // single activation, not overload.
    const MAILBOX: conclib_core::MailboxConfig = conclib_core::MailboxConfig::Unbounded;
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<Incr>(),
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
            Ok((Incr(n), r)) => {
                let next = self.count + 1;
                if !self.save_on_stop
                    && let Err(e) = self.store.save(&next).await
                {
                    return r.respond(Err(e.to_string()));
                }
                self.count = next;
                if let Some(notes) = &self.notes {
                    use std::io::Write;
                    let mut f = notes.lock().unwrap();
                    let _ = writeln!(f, "{n}");
                }
                return r.respond(Ok(()));
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
        Ok(())
    }
}

/// The constructor: counts activations in Redis (`{ns}:test:activations`), loads the count.
async fn open_account(
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
    let count = a.store().load::<u64>().await?.unwrap_or(0);
    Ok(Account {
        count,
        store: a.store(),
        save_on_stop,
        notes,
    })
}

// ---- the peer processes -----------------------------------------------------------------

fn peer_main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let code = rt.block_on(async {
        match args.get(1).map(String::as_str) {
            Some("member") => member(&args[2..]).await,
            Some("activator") => activator(&args[2..]).await,
            Some("client") => client(&args[2..]).await,
            _ => 2,
        }
    });
    std::process::exit(code);
}

fn peer_config(url: &str, ns: &str, system: &str, lease_ms: &str) -> ProxyConfig {
    let mut config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_system_id(system)
        .with_snapshot_interval(None);
    config.lease_ttl = Duration::from_millis(lease_ms.parse().unwrap());
    config.group_in_flight = 4;
    config
}

/// Waits for `stop` (graceful), `leave URN` (prints LEFT) or `crash` on stdin.
async fn wait_for_orders(proxy: &conclib_redis::ProxyHandle) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().to_owned()).is_err() {
                return;
            }
        }
        let _ = tx.send("stop".to_owned());
    });
    while let Some(cmd) = rx.recv().await {
        if let Some(urn) = cmd.strip_prefix("leave ") {
            assert!(proxy.leave(urn).await);
            println!("LEFT");
        } else if cmd == "stop" {
            break;
        }
    }
}

/// `member URL NS SYSTEM URN LEASE_MS NOTES`: a Worker at URN, in the URN's group.
async fn member(args: &[String]) -> i32 {
    let [url, ns, system_id, urn, lease_ms, notes] = args else {
        return 2;
    };
    let config = peer_config(url, ns, system_id, lease_ms);
    let system = ActorSystem::new(system_id);
    let notes = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(notes)
        .unwrap();
    system
        .build(Worker {
            system: system_id.clone(),
            notes: Some(notes),
        })
        .urn(urn.clone())
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy.join(urn).await.unwrap();
    println!("READY");
    wait_for_orders(&proxy).await;
    proxy.shutdown().await.unwrap();
    println!("STOPPED");
    0
}

/// `activator URL NS SYSTEM LEASE_MS IDLE_MS NOTES`: activates `acct:{id}` Accounts, which
/// note the tells they counted in the file NOTES.
async fn activator(args: &[String]) -> i32 {
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
async fn client(args: &[String]) -> i32 {
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

/// A peer process: this test binary in a role.
struct Peer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: i32,
}

impl Peer {
    async fn start(args: &[&str]) -> Peer {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "1")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id().unwrap()).unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut peer = Peer {
            child,
            stdin,
            stdout,
            pid,
        };
        assert_eq!(peer.line(30).await, "READY", "{args:?} starts");
        peer
    }

    async fn line(&mut self, secs: u64) -> String {
        tokio::time::timeout(Duration::from_secs(secs), self.stdout.next_line())
            .await
            .expect("the peer answers in time")
            .unwrap()
            .unwrap_or_default()
    }

    async fn say(&mut self, what: &str) {
        self.stdin
            .write_all(format!("{what}\n").as_bytes())
            .await
            .unwrap();
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0);
    }

    async fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("a killed child is reaped");
    }

    async fn stop(mut self) {
        self.say("stop").await;
        assert_eq!(self.line(30).await, "STOPPED");
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the peer exits")
            .unwrap();
        assert!(status.success());
    }
}

fn temp_notes(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "conclib-scale-{}-{tag}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

fn rand_suffix() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed) as u64
}

/// `XPENDING stream proxy ARGS..`: the proxy's consumer group's pending entries.
async fn xpending(redis: &fred::prelude::Client, stream: &str, args: &[&str]) -> Value {
    let mut command = vec![stream.to_owned(), "proxy".to_owned()];
    command.extend(args.iter().map(|a| (*a).to_owned()));
    redis.custom(fred::cmd!("XPENDING"), command).await.unwrap()
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

/// The numbers recorded in notes files, with how often each was.
fn noted(paths: &[PathBuf]) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for p in paths {
        if let Ok(text) = std::fs::read_to_string(p) {
            for line in text.lines() {
                if let Ok(n) = line.parse() {
                    *seen.entry(n).or_insert(0) += 1;
                }
            }
        }
    }
    seen
}

async fn start_members(
    config: &ProxyConfig,
    urn: &str,
    names: &[&str],
    lease_ms: u64,
) -> (Vec<Peer>, Vec<PathBuf>) {
    let mut peers = Vec::new();
    let mut notes = Vec::new();
    for name in names {
        let path = temp_notes(name);
        peers.push(
            Peer::start(&[
                "member",
                &config.url,
                &config.namespace,
                name,
                urn,
                &lease_ms.to_string(),
                path.to_str().unwrap(),
            ])
            .await,
        );
        notes.push(path);
    }
    (peers, notes)
}

/// Asks `total` Whoami, `concurrency` at a time; the answers by system.
async fn ask_spread(
    client: &ProxyClient,
    urn: &str,
    total: usize,
    concurrency: usize,
    spin: u64,
) -> (BTreeMap<String, usize>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        let urn = urn.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut by: BTreeMap<String, usize> = BTreeMap::new();
            let mut failed = 0;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                match client
                    .ask(urn.as_str(), Whoami(spin))
                    .timeout(Duration::from_secs(20))
                    .await
                {
                    Ok(s) => *by.entry(s).or_default() += 1,
                    Err(AskError::Timeout(_)) => failed += 1,
                    Err(e) => panic!("an ask to a group failed: {e}"),
                }
            }
            (by, failed)
        }));
    }
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    for t in tasks {
        let (b, f) = t.await.unwrap();
        failed += f;
        for (k, v) in b {
            *by.entry(k).or_default() += v;
        }
    }
    (by, failed)
}

// ---- groups -----------------------------------------------------------------------------

async fn a_shared_urn_spreads_over_its_members_and_survives_one_killed() {
    let config = config("spread");
    let lease_ms = 2000;
    let (mut members, notes) =
        start_members(&config, "resize", &["m1", "m2", "m3"], lease_ms).await;
    let client = ProxyClient::connect(&config).await.unwrap();
    // The caller cannot tell a group from one actor: it asks the URN.
    let (by, failed) = ask_spread(&client, "resize", 3000, 48, 20).await;
    assert_eq!(failed, 0);
    assert_eq!(by.values().sum::<usize>(), 3000);
    for m in ["m1", "m2", "m3"] {
        let share = by.get(m).copied().unwrap_or(0);
        assert!(share >= 600, "each member serves at least 20%: {by:?}");
    }

    // Tells under load, one member SIGKILLed midway: every accepted tell handled.
    let told = 3000u64;
    let sender = {
        let client = client.clone();
        tokio::spawn(async move {
            for n in 0..told {
                client.tell("resize", Tick(n)).await.unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    eventually(Duration::from_secs(30), "some tells handled", || async {
        noted(&notes).len() > 300
    })
    .await;
    let victim = members.remove(0);
    victim.kill().await;
    tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the tells are sent")
        .unwrap();
    eventually(
        Duration::from_secs((lease_ms / 1000) + 20),
        "every told number handled, the killed member's pending ones by the others",
        || async { noted(&notes).len() as u64 == told },
    )
    .await;
    let seen = noted(&notes);
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    assert!(
        duplicates < 300,
        "duplicates only for what the killed member held: {duplicates}"
    );
    // Asks still answered by the two left.
    let (by, failed) = ask_spread(&client, "resize", 300, 16, 1).await;
    assert_eq!(failed, 0);
    assert!(!by.contains_key("m1"), "{by:?}");
    for m in members {
        m.stop().await;
    }
    for p in notes {
        let _ = std::fs::remove_file(p);
    }
}

async fn a_member_leaves_gracefully_and_a_new_one_takes_a_share() {
    let config = config("leave");
    let (mut members, notes) = start_members(&config, "thumbs", &["a", "b"], 3000).await;
    let client = ProxyClient::connect(&config).await.unwrap();
    // Load running while a joins and b leaves.
    let load = {
        let client = client.clone();
        tokio::spawn(async move { ask_spread(&client, "thumbs", 4000, 32, 20).await })
    };
    let (mut joined, more_notes) = start_members(&config, "thumbs", &["c"], 3000).await;
    members[1].say("leave thumbs").await;
    assert_eq!(members[1].line(30).await, "LEFT");
    let (by, failed) = tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load ends")
        .unwrap();
    assert_eq!(failed, 0, "no ask lost across a join and a leave");
    assert_eq!(by.values().sum::<usize>(), 4000);
    let (after, _) = ask_spread(&client, "thumbs", 400, 16, 20).await;
    assert!(
        !after.contains_key("b"),
        "a member that left serves nothing: {after:?}"
    );
    assert!(
        after.get("c").copied().unwrap_or(0) > 0,
        "the new member takes a share: {after:?}"
    );
    // The member that left has no consumer in the group any more.
    let redis = plain_client(&config.url).await;
    let consumers: Value = redis
        .custom(
            fred::cmd!("XINFO"),
            vec![
                "CONSUMERS".to_owned(),
                format!("{}:sys:~thumbs:req", config.namespace),
                "proxy".to_owned(),
            ],
        )
        .await
        .unwrap();
    let text = format!("{consumers:?}");
    assert!(!text.contains("\"b\""), "{text}");
    members.append(&mut joined);
    for m in members {
        m.stop().await;
    }
    for p in notes.into_iter().chain(more_notes) {
        let _ = std::fs::remove_file(p);
    }
}

// ---- activation -------------------------------------------------------------------------

async fn activations(redis: &Client, ns: &str) -> i64 {
    redis
        .get::<Option<i64>, _>(format!("{ns}:test:activations"))
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn eight_clients_racing_activate_a_urn_once() {
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

async fn a_holder_paused_past_its_lease_never_runs_beside_its_successor() {
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
    holder.signal(libc::SIGSTOP);
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

async fn an_idle_activation_saves_frees_its_urn_and_comes_back() {
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
    assert_eq!(client.ask("acct:9", Total).await.unwrap(), 5);
    assert_eq!(proxy.activations(), vec!["acct:9".to_owned()]);
    // The snapshot shows the group and the activation, which lives in this system.
    proxy.publish_snapshot().await.unwrap();
    let reader = conclib_redis::SnapshotReader::connect(&config)
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

async fn a_constructor_that_refuses_answers_unknown_urn() {
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

async fn joins_that_cannot_be_and_requests_for_other_urns_are_refused() {
    let config = config("refusals");
    let spawn = |name: &'static str| async move {
        let system = ActorSystem::new(name);
        for urn in ["solo", "g"] {
            system
                .build(Worker {
                    system: name.to_owned(),
                    notes: None,
                })
                .urn(urn)
                .spawn()
                .await
                .unwrap();
        }
        system
    };
    let x = spawn("x").await;
    let y = spawn("y").await;
    let px = start_proxy(&x, &config.clone().with_system_id("x"))
        .await
        .unwrap();
    let py = start_proxy(&y, &config.clone().with_system_id("y"))
        .await
        .unwrap();
    // `solo` is x's alone (x claimed it first): y cannot serve it as a group.
    if py.served_urns().contains(&"solo".to_owned()) {
        panic!("y should not own solo: x claimed it first");
    }
    match py.join("solo").await {
        Err(conclib_redis::ServeError::UrnInUse { urn, owner }) => {
            assert_eq!((urn.as_str(), owner.as_str()), ("solo", "x"));
        }
        other => panic!("expected UrnInUse, got {other:?}"),
    }
    assert!(matches!(
        py.join("missing").await,
        Err(conclib_redis::ServeError::Invalid(_))
    ));
    // g: x owned it alone until it joined; then both serve it.
    px.join("g").await.unwrap();
    py.join("g").await.unwrap();
    assert_eq!(px.groups(), ["g"]);
    let client = ProxyClient::connect(&config).await.unwrap();
    let (by, _) = ask_spread(&client, "g", 200, 8, 1).await;
    assert_eq!(by.values().sum::<usize>(), 200);

    // A hostile client writes a request for another URN into the group's stream: it is
    // answered UnknownUrn, not served by whatever actor has that URN locally.
    let redis = plain_client(&config.url).await;
    let ns = &config.namespace;
    let reply = format!("{ns}:reply:00000000000000000000000000000001");
    let body = conclib_redis::encode_value(&conclib_redis::Bincode, &Whoami(1)).unwrap();
    let _: Value = redis
        .custom(
            fred::cmd!("XADD"),
            vec![
                Value::from(format!("{ns}:sys:~g:req")),
                "*".into(),
                "v".into(),
                "1".into(),
                "id".into(),
                "5".into(),
                "urn".into(),
                "solo".into(),
                "msg".into(),
                "scale.Whoami".into(),
                "ttl".into(),
                "5000".into(),
                "reply".into(),
                Value::from(reply.clone()),
                "codec".into(),
                "bincode".into(),
                "body".into(),
                Value::Bytes(body.into()),
            ],
        )
        .await
        .unwrap();
    let frame: Option<(String, Value)> = redis.blpop(reply.as_str(), 10.0).await.unwrap();
    let (_, frame) = frame.expect("an answer within 10 s");
    let frame = frame.as_bytes().unwrap().to_vec();
    let (id, status, _) = conclib_redis::decode_reply(&frame).unwrap();
    assert_eq!((id, status), (5, conclib_redis::Status::UnknownUrn as u8));

    assert!(px.leave("g").await);
    assert!(!px.leave("g").await, "leaving twice: not a member any more");
    py.shutdown().await.unwrap();
    px.shutdown().await.unwrap();
}

async fn a_member_paused_past_its_lease_repeats_at_most_what_it_had_taken() {
    let config = config("pause-member");
    let lease_ms = 1500;
    let (mut members, notes) = start_members(&config, "crop", &["p1", "p2"], lease_ms).await;
    let client = ProxyClient::connect(&config).await.unwrap();
    let told = 4000u64;
    let sender = {
        let client = client.clone();
        tokio::spawn(async move {
            for n in 0..told {
                client.tell("crop", Tick(n)).await.unwrap();
                if n % 16 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    eventually(Duration::from_secs(30), "some tells handled", || async {
        noted(&notes).len() > 500
    })
    .await;
    let paused = members.remove(0);
    paused.signal(libc::SIGSTOP);
    // Past its lease: the other member takes over what the paused one had taken.
    let redis = plain_client(&config.url).await;
    let lease_key = format!("{}:sys:~crop:member:p1", config.namespace);
    let stream = format!("{}:sys:~crop:req", config.namespace);
    eventually(
        Duration::from_secs(30),
        "the paused member's lease lapsed",
        || async { !redis.exists::<bool, _>(&lease_key).await.unwrap() },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the other member took the paused one's requests",
        || async {
            let pending = xpending(&redis, &stream, &["-", "+", "10", "p1"]).await;
            matches!(pending, Value::Array(a) if a.is_empty())
        },
    )
    .await;
    paused.signal(libc::SIGCONT);
    tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the tells are sent")
        .unwrap();
    let all_handled = tokio::time::timeout(Duration::from_secs(40), async {
        while (noted(&notes).len() as u64) < told {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if all_handled.is_err() {
        let seen = noted(&notes);
        let missing: Vec<u64> = (0..told).filter(|n| !seen.contains_key(n)).collect();
        let pending = xpending(&redis, &stream, &[]).await;
        panic!(
            "{} of {told} told numbers never handled (first: {:?}); the group's pending \
             entries: {pending:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    let duplicates: usize = noted(&notes).values().map(|c| c - 1).sum();
    // group_in_flight is 4: what it had handed to its actor, at most.
    assert!(duplicates <= 4, "{duplicates} handled twice");
    members.push(paused);
    for m in members {
        m.stop().await;
    }
    for p in notes {
        let _ = std::fs::remove_file(p);
    }
}

/// A member whose lease lapsed (paused, then back) reads again just as another member has
/// claimed what it had: what it reads then stays pending on it (it is not forgotten with the
/// consumer the claimer deletes), so it is claimed and handled in turn. The "member" here is
/// this test, reading the group's stream as consumer `ghost` with no lease, each read right
/// after its last entry was claimed from it: the moment the claimer decides whether the
/// consumer it emptied can be deleted.
async fn a_member_reading_again_as_its_entries_are_claimed_loses_none() {
    let config = config("ghost");
    let (mut members, notes) = start_members(&config, "haunt", &["live"], 300).await;
    let redis = plain_client(&config.url).await;
    let stream = format!("{}:sys:~haunt:req", config.namespace);
    // A tell of `Tick(n)` (bincode: the varint n, n < 251) added and read by `ghost` in one
    // script, so that the live member, blocked reading the stream, never gets it first.
    let add_and_take = "redis.call('XADD', KEYS[1], '*', 'v', '1', 'urn', 'haunt', \
        'msg', 'scale.Tick', 'ttl', '60000', 'codec', 'bincode', 'body', ARGV[1]) \
        return redis.call('XREADGROUP', 'GROUP', 'proxy', 'ghost', 'COUNT', 1, 'STREAMS', KEYS[1], '>')";
    let rounds = 16u8;
    for n in 0..rounds {
        let body = Value::Bytes(vec![n].into());
        let taken: Value = redis
            .custom(
                fred::cmd!("EVAL"),
                vec![
                    Value::from(add_and_take),
                    Value::from(1),
                    Value::from(stream.as_str()),
                    body,
                ],
            )
            .await
            .unwrap();
        assert!(!taken.is_null(), "the ghost read entry {n}");
        // Until the live member claimed it (idle 500 ms, checked every 100 ms); then at
        // once the next round's read.
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let pending = xpending(&redis, &stream, &["-", "+", "1", "ghost"]).await;
                if matches!(pending, Value::Array(a) if a.is_empty()) {
                    break;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("entry {n} was never claimed from the ghost"));
    }
    let all_handled = tokio::time::timeout(Duration::from_secs(30), async {
        while (noted(&notes).len() as u64) < u64::from(rounds) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let seen = noted(&notes);
    let missing: Vec<u8> = (0..rounds)
        .filter(|n| !seen.contains_key(&u64::from(*n)))
        .collect();
    assert!(
        all_handled.is_ok(),
        "entries read by the ghost never handled: {missing:?}; the group's pending entries: {:?}",
        xpending(&redis, &stream, &[]).await
    );
    for m in members.drain(..) {
        m.stop().await;
    }
    for p in notes {
        let _ = std::fs::remove_file(p);
    }
}

async fn a_group_whose_last_member_left_leaves_nothing_behind() {
    let mut config = config("expire");
    config.lease_ttl = Duration::from_millis(600);
    config.queue_ttl = Duration::from_secs(2);
    config.snapshot_interval = None;
    let system = ActorSystem::new("lonely");
    system
        .build(Worker {
            system: "lonely".into(),
            notes: None,
        })
        .urn("g")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy.join("g").await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    assert_eq!(client.ask("g", Whoami(1)).await.unwrap(), "lonely");
    assert!(proxy.leave("g").await);
    let redis = plain_client(&config.url).await;
    let ns = &config.namespace;
    eventually(Duration::from_secs(20), "the group's keys gone", || async {
        let mut left = Vec::new();
        for key in [
            format!("{ns}:urn:g"),
            format!("{ns}:sys:~g:req"),
            format!("{ns}:sys:~g:member:lonely"),
        ] {
            if redis.exists::<bool, _>(&key).await.unwrap() {
                left.push(key);
            }
        }
        left.is_empty()
    })
    .await;
    // Unknown now (its system serves it no more, as the docs of leave say).
    assert!(matches!(
        client.ask("g", Whoami(1)).await,
        Err(AskError::UnknownUrn { .. })
    ));
    proxy.shutdown().await.unwrap();
}
