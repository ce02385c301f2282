//! One URN served by a group of systems: spread, a member SIGKILLed under load, a member
//! joining, a graceful leave, refusals, a member paused past its lease, a member reading
//! again as its entries are claimed, the last member leaving, the group's stream trimmed below
//! what is pending.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conclib_core::AskError;
use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, Message, RequestEnvelope};
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy};
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::common::{config, eventually, plain_client};
use crate::peers::{Peer, noted, peer_config, temp_notes, wait_for_orders};

wire_message! {
    /// Which system answered (an ask).
    Whoami(u64), "scale.Whoami", String
}

wire_message! {
    /// A tell, recorded by the member that handles it (a line in its notes file).
    Tick(u64), "scale.Tick", ()
}

wire_message! {
    /// A tell whose handling takes 5 ms, recorded like [`Tick`]: a member's actor has some
    /// queued in its mailbox at any moment.
    SlowTick(u64), "scale.SlowTick", ()
}

/// A group member's actor.
pub(crate) struct Worker {
    system: String,
    notes: Option<std::fs::File>,
}

impl Actor for Worker {
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<Whoami>(),
        ExposedMessage::of::<Tick>(),
        ExposedMessage::of::<SlowTick>(),
    ];

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
        let req = match req.extract::<Tick>() {
            Ok((Tick(n), r)) => {
                self.note(n);
                return r.respond(Ok(()));
            }
            Err(req) => req,
        };
        match req.extract::<SlowTick>() {
            Ok((SlowTick(n), r)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                self.note(n);
                r.respond(Ok(()))
            }
            Err(req) => req.reject(),
        }
    }
}

impl Worker {
    /// A line in its notes file: the number of a tell it handled.
    fn note(&mut self, n: u64) {
        if let Some(f) = &mut self.notes {
            use std::io::Write;
            let _ = writeln!(f, "{n}");
        }
    }
}

/// `member URL NS SYSTEM URN LEASE_MS NOTES`: a Worker at URN, in the URN's group.
pub(crate) async fn member(args: &[String]) -> i32 {
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

/// `XPENDING stream proxy ARGS..`: the proxy's consumer group's pending entries.
pub(crate) async fn xpending(redis: &fred::prelude::Client, stream: &str, args: &[&str]) -> Value {
    let mut command = vec![stream.to_owned(), "proxy".to_owned()];
    command.extend(args.iter().map(|a| (*a).to_owned()));
    redis.custom(fred::cmd!("XPENDING"), command).await.unwrap()
}

pub(crate) async fn start_members(
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
pub(crate) async fn ask_spread(
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

pub(crate) async fn a_shared_urn_spreads_over_its_members_and_survives_one_killed() {
    let config = config("spread");
    let lease_ms = 2000;
    let (mut members, notes) =
        start_members(&config, "resize", &["m1", "m2", "m3"], lease_ms).await;
    let client = ProxyClient::connect(&config).await.unwrap();
    // The caller cannot tell a group from one actor: it asks the URN.
    let (by, failed) = ask_spread(&client, "resize", 3000, 48, 20).await;
    assert_eq!(failed, 0);
    assert_eq!(by.values().sum::<usize>(), 3000);
    // At equal capacity each member takes a share: at least half of a fair third. (How
    // even the shares are depends on which process the machine runs, so the 2x goal
    // between shares is measured, printed here, not asserted on a shared machine.)
    let shares: Vec<usize> = ["m1", "m2", "m3"]
        .iter()
        .map(|m| by.get(*m).copied().unwrap_or(0))
        .collect();
    let (least, most) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
    eprintln!(
        "RESULT test=group_spread shares={shares:?} max_over_min={:.2}",
        *most as f64 / (*least).max(1) as f64
    );
    assert!(
        *least * 6 >= 3000,
        "each member's share at least half of a third: {by:?}"
    );

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

pub(crate) async fn a_member_leaves_gracefully_and_a_new_one_takes_a_share() {
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

pub(crate) async fn joins_that_cannot_be_and_requests_for_other_urns_are_refused() {
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
    let body =
        conclib_redis::codec::encode_value(&conclib_redis::codec::Bincode, &Whoami(1)).unwrap();
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
    let (id, status, _) = conclib_redis::protocol::decode_reply(&frame).unwrap();
    assert_eq!((id, status), (5, conclib_redis::Status::UnknownUrn as u8));

    assert!(px.leave("g").await);
    assert!(!px.leave("g").await, "leaving twice: not a member any more");
    py.shutdown().await.unwrap();
    px.shutdown().await.unwrap();
}

pub(crate) async fn a_member_paused_past_its_lease_repeats_at_most_what_it_had_taken() {
    paused_member_repeats(false).await;
}

/// As above, with each tell's handling taking 5 ms, so that the paused member's actor has
/// tells queued in its mailbox when it is stopped: the lease's fence keeps it from starting
/// any of them once back (another member handled them meanwhile).
pub(crate) async fn a_member_paused_with_tells_queued_starts_none_of_them_once_back() {
    paused_member_repeats(true).await;
}

async fn paused_member_repeats(slow: bool) {
    let config = config(if slow { "pause-queued" } else { "pause-member" });
    let lease_ms = 1500;
    let (mut members, notes) = start_members(&config, "crop", &["p1", "p2"], lease_ms).await;
    let client = ProxyClient::connect(&config).await.unwrap();
    let told: u64 = if slow { 1500 } else { 4000 };
    let sender = {
        let client = client.clone();
        tokio::spawn(async move {
            for n in 0..told {
                if slow {
                    client.tell("crop", SlowTick(n)).await.unwrap();
                } else {
                    client.tell("crop", Tick(n)).await.unwrap();
                }
                if n % 16 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    eventually(Duration::from_secs(30), "some tells handled", || async {
        noted(&notes).len() > if slow { 200 } else { 500 }
    })
    .await;
    let paused = members.remove(0);
    paused.freeze().await;
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
    eprintln!("RESULT pause_duplicates={duplicates}");
    // What its actor had queued before the pause is fenced out (its lease's fence closed):
    // only a handler running at the very moment of the SIGSTOP can finish after it, and the
    // tells it had handled but not yet acknowledged (their acknowledgement goes with the
    // proxy's next write) are handled again by the other member, as after a crash between
    // handling and acknowledging: at most group_in_flight (4) in all. Before the fence, the
    // requests queued in its mailbox were handled again too (`..._starts_none_of_them_...`
    // shows that with a mailbox kept full).
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
pub(crate) async fn a_member_reading_again_as_its_entries_are_claimed_loses_none() {
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

/// A system `system` whose Worker at URN `g` is the one member of `g`'s group, and a
/// client.
async fn lone_member(
    config: &ProxyConfig,
    system: &str,
) -> (ActorSystem, conclib_redis::ProxyHandle, ProxyClient) {
    let actors = ActorSystem::new(system);
    actors
        .build(Worker {
            system: system.into(),
            notes: None,
        })
        .urn("g")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&actors, config).await.unwrap();
    proxy.join("g").await.unwrap();
    let client = ProxyClient::connect(config).await.unwrap();
    (actors, proxy, client)
}

pub(crate) async fn a_group_whose_last_member_left_leaves_nothing_behind() {
    let mut config = config("expire");
    config.lease_ttl = Duration::from_millis(600);
    config.urn_ttl = Duration::from_millis(600);
    config.queue_ttl = Duration::from_secs(2);
    config.snapshot_interval = None;
    let (_system, proxy, client) = lone_member(&config, "lonely").await;
    assert_eq!(client.ask("g", Whoami(1)).await.unwrap(), "lonely");
    assert!(proxy.leave("g").await);
    let redis = plain_client(&config.url).await;
    let ns = &config.namespace;
    eventually(Duration::from_secs(20), "the group's keys gone", || async {
        let mut left = Vec::new();
        for key in [
            format!("{ns}:urn:g"),
            format!("{ns}:sys:~g:req"),
            format!("{ns}:sys:~g:req:hi"),
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

/// A group's request stream is trimmed once its members acknowledged what they read (at
/// each lease renewal: `GROUP_TRIM_SCRIPT`), and never past an entry still pending.
pub(crate) async fn a_groups_stream_is_trimmed_below_what_is_pending() {
    let mut config = config("trimmed");
    config.lease_ttl = Duration::from_millis(600);
    config.queue_ttl = Duration::from_secs(60);
    config.snapshot_interval = None;
    let (_system, proxy, client) = lone_member(&config, "trimmer").await;
    for n in 0..200 {
        client.tell("g", Tick(n)).await.unwrap();
    }
    // In order: once this is answered, every tell before it was handled.
    assert_eq!(client.ask("g", Whoami(1)).await.unwrap(), "trimmer");
    let redis = plain_client(&config.url).await;
    let ns = &config.namespace;
    let stream = format!("{ns}:sys:~g:req");
    eventually(
        Duration::from_secs(20),
        "the group's stream trimmed",
        || async { redis.xlen::<u64, _>(&stream).await.unwrap() == 0 },
    )
    .await;
    // An entry read by another member that has not acknowledged it yet (`busy`, alive: its
    // member lease is there) holds the trim at its id.
    let _: () = redis
        .set(
            format!("{ns}:sys:~g:member:busy"),
            "a member elsewhere",
            Some(Expiration::EX(600)),
            None,
            false,
        )
        .await
        .unwrap();
    // Added and read in one step: the member, blocked in its own read, would take it first.
    let read: Value = redis
        .eval(
            "redis.call('XADD', KEYS[1], '*', 'v', '1') \
             return redis.call('XREADGROUP', 'GROUP', ARGV[1], 'busy', 'COUNT', '1', 'STREAMS', KEYS[1], '>')",
            vec![stream.clone()],
            vec![conclib_redis::protocol::CONSUMER_GROUP],
        )
        .await
        .unwrap();
    assert!(!matches!(read, Value::Null), "busy read it");
    for n in 200..210 {
        client.tell("g", Tick(n)).await.unwrap();
    }
    assert_eq!(client.ask("g", Whoami(1)).await.unwrap(), "trimmer");
    // Two renewals seen (each renews the stream's TTL, which is set far above it here, then
    // trims): the first one after these entries was done before the second began.
    for _ in 0..2 {
        let _: bool = redis.pexpire(&stream, 3_600_000, None).await.unwrap();
        eventually(Duration::from_secs(20), "a lease renewal", || async {
            redis.pttl::<i64, _>(&stream).await.unwrap() <= 60_000
        })
        .await;
    }
    assert_eq!(
        redis.xlen::<u64, _>(&stream).await.unwrap(),
        12,
        "busy's entry and the 11 after it stay"
    );
    proxy.shutdown().await.unwrap();
}
