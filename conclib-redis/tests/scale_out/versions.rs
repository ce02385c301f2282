//! Two builds serving one pattern side by side (a rolling upgrade's middle): member `v1`
//! exposes `Deposit` at version 1 and `Balance`; member `v2` exposes `Deposit` at version 2
//! (an optional field added), `Balance` and a new message, `Audit`. With `v1` alone, 64
//! callers asking `Audit` without pause are each refused `UnsupportedVersion` at once (no
//! call past its deadline, none a timeout), and so is a version-2 `Deposit` in bincode
//! (fields by position), while in MessagePack (fields by name) `v1` decodes it. Once `v2`
//! serves, the same 64 callers' `Audit`s are answered by `v2`, the URNs moved there from
//! `v1`; a version-1 `Deposit` in bincode then moves its URN back to `v1`, the member that
//! decodes it. No request is decoded by a member of the other version under bincode.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conclib_core::{
    Actor, ActorSystem, AskError, Context, ExposedMessage, Message, MessageDecl, RequestEnvelope,
};
use conclib_redis::scale::{Activation, StoreError};
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy};
use serde::{Deserialize, Serialize};

use crate::common::config;
use crate::peers::{Peer, peer_config, wait_for_orders};

/// Each ask's deadline, and what a call may take beyond it.
const DEADLINE: Duration = Duration::from_secs(5);
const MARGIN: Duration = Duration::from_secs(1);
/// Callers asking at once, and how many asks each sends in a row.
const CALLERS: usize = 64;
const ROUNDS: usize = 4;
/// The peers' lease: a rebalancing one looks at its share with each renewal, a third of it.
const LEASE: Duration = Duration::from_millis(2000);
/// The URNs asked (`ver:0` .. `ver:15`).
const URNS: usize = 16;

/// Version 1 of `Deposit`: adds `n`.
#[derive(Serialize, Deserialize)]
pub(crate) struct DepositV1 {
    n: u64,
}

/// Version 2 of `Deposit`: an optional note added.
#[derive(Serialize, Deserialize)]
pub(crate) struct DepositV2 {
    n: u64,
    note: Option<String>,
}

/// The total, and the member that answered.
#[derive(Serialize, Deserialize)]
pub(crate) struct Balance;

/// New in version 2: the member that answered.
#[derive(Serialize, Deserialize)]
pub(crate) struct Audit;

macro_rules! versioned {
    ($ty:ident, $name:literal, $version:literal, $response:ty) => {
        impl MessageDecl for $ty {
            type WireError = String;
        }
        impl Message for $ty {
            type Response = $response;
            type Error = String;
            fn name() -> &'static str {
                $name
            }
            fn version() -> u32 {
                $version
            }
        }
    };
}
versioned!(DepositV1, "Deposit", 1, u64);
versioned!(DepositV2, "Deposit", 2, u64);
versioned!(Balance, "Balance", 1, (u64, String));
versioned!(Audit, "Audit", 1, String);

/// A ledger of build 1 or 2 (`BUILD`), answering with its system's id.
pub(crate) struct Ledger<const BUILD: u32> {
    total: u64,
    system: String,
}

impl Actor for Ledger<1> {
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<DepositV1>(),
        ExposedMessage::of::<Balance>(),
    ];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<DepositV1>() {
            Ok((d, r)) => {
                self.total += d.n;
                return r.respond(Ok(self.total));
            }
            Err(req) => req,
        };
        match req.extract::<Balance>() {
            Ok((Balance, r)) => r.respond(Ok((self.total, self.system.clone()))),
            Err(req) => req.reject(),
        }
    }
}

impl Actor for Ledger<2> {
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<DepositV2>(),
        ExposedMessage::of::<Balance>(),
        ExposedMessage::of::<Audit>(),
    ];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<DepositV2>() {
            Ok((d, r)) => {
                self.total += d.n + u64::from(d.note.is_some());
                return r.respond(Ok(self.total));
            }
            Err(req) => req,
        };
        let req = match req.extract::<Audit>() {
            Ok((Audit, r)) => return r.respond(Ok(self.system.clone())),
            Err(req) => req,
        };
        match req.extract::<Balance>() {
            Ok((Balance, r)) => r.respond(Ok((self.total, self.system.clone()))),
            Err(req) => req.reject(),
        }
    }
}

/// `versioned URL NS SYSTEM BUILD [rebalance]`: activates `ver:{id}` ledgers of build 1 or
/// 2 (rebalanced among the members with `rebalance`).
pub(crate) async fn versioned(args: &[String]) -> i32 {
    let (url, ns, system_id, build, rebalance) = match args {
        [url, ns, system_id, build] => (url, ns, system_id, build, false),
        [url, ns, system_id, build, r] if r == "rebalance" => (url, ns, system_id, build, true),
        _ => return 2,
    };
    let config = peer_config(url, ns, system_id, &LEASE.as_millis().to_string());
    let system = ActorSystem::new(system_id);
    let proxy = start_proxy(&system, &config).await.unwrap();
    let id = system_id.clone();
    let activator = if build == "2" {
        proxy.activate("ver:{id}", move |_: Activation| {
            let system = id.clone();
            async move { Ok::<_, StoreError>(Ledger::<2> { total: 0, system }) }
        })
    } else {
        proxy.activate("ver:{id}", move |_: Activation| {
            let system = id.clone();
            async move { Ok::<_, StoreError>(Ledger::<1> { total: 0, system }) }
        })
    };
    let activator = activator.never_passivate();
    if rebalance {
        activator.rebalance().await.unwrap();
    } else {
        activator.await.unwrap();
    }
    println!("READY");
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::select! {
        () = wait_for_orders(&proxy) => proxy.shutdown().await.unwrap(),
        // SIGTERM: drained, as in a roll (`drain.rs` says what it prints).
        _ = term.recv() => crate::drain::drain_and_say(proxy).await,
    }
    println!("STOPPED");
    0
}

/// `CALLERS` callers asking `ask(urn)` `ROUNDS` times each without pause, over
/// `ver:0..URNS`: every outcome, each checked to come within its deadline.
async fn from_64_callers<T, F, Fut>(
    client: &ProxyClient,
    ask: F,
) -> Vec<Result<T, AskError<String>>>
where
    T: Send + 'static,
    F: Fn(ProxyClient, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<T, AskError<String>>> + Send,
{
    let callers = (0..CALLERS).map(|i| {
        let (client, ask) = (client.clone(), ask.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for round in 0..ROUNDS {
                let urn = format!("ver:{}", (i + round) % URNS);
                let started = Instant::now();
                let outcome = ask(client.clone(), urn).await;
                let took = started.elapsed();
                assert!(took <= DEADLINE + MARGIN, "a call took {took:?}");
                outcomes.push(outcome);
            }
            outcomes
        })
    });
    let mut all = Vec::new();
    for c in futures_util::future::join_all(callers).await {
        all.extend(c.unwrap());
    }
    all
}

pub(crate) async fn a_message_only_the_new_build_has_is_answered_by_it_or_refused_unsupported_version()
 {
    let config = config("versions");
    let start = |system: &'static str, build: &'static str| {
        let (url, ns) = (config.url.clone(), config.namespace.clone());
        async move { Peer::start(&["versioned", &url, &ns, system, build]).await }
    };
    let v1 = start("v1", "1").await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(DEADLINE))
        .await
        .unwrap();
    for u in 0..URNS {
        let (_, by) = client.ask(format!("ver:{u}"), Balance).await.unwrap();
        assert_eq!(by, "v1");
    }

    // `v1` alone: the new message is refused at once, by every caller.
    let refused = from_64_callers(&client, |c, urn| async move { c.ask(urn, Audit).await }).await;
    assert_eq!(refused.len(), CALLERS * ROUNDS);
    for r in &refused {
        assert!(
            matches!(r, Err(AskError::UnsupportedVersion { message, .. }) if message == "Audit"),
            "{r:?}"
        );
    }
    // Version 2 of `Deposit` in bincode (fields by position): refused, never decoded as
    // version 1; version 1 is answered.
    let v2_deposit = DepositV2 {
        n: 5,
        note: Some("hi".into()),
    };
    assert!(matches!(
        client.ask("ver:0", v2_deposit).await,
        Err(AskError::UnsupportedVersion { .. })
    ));
    assert_eq!(client.ask("ver:0", DepositV1 { n: 1 }).await, Ok(1));
    additive_in_msgpack(&config).await;

    // `v2` joins while callers ask `Audit` without pause (refused until then: `v1`'s
    // looks at the directories, one reused for the next reroutes, named nobody): every
    // `Audit` asked once `v2` is ready is answered by it, none refused by a look taken
    // before it joined.
    let asking = Arc::new(AtomicBool::new(true));
    let asked = Arc::new(AtomicUsize::new(0));
    let joining = (0..8).map(|i| {
        let (client, asking, asked) = (client.clone(), asking.clone(), asked.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for round in 0.. {
                if !asking.load(Ordering::Relaxed) {
                    break;
                }
                let urn = format!("ver:{}", (i + round) % URNS);
                let started = Instant::now();
                let outcome = client.ask(urn, Audit).await;
                assert!(
                    started.elapsed() <= DEADLINE + MARGIN,
                    "a call took too long"
                );
                outcomes.push((started, outcome));
                asked.fetch_add(1, Ordering::Relaxed);
            }
            outcomes
        })
    });
    let joining: Vec<_> = joining.collect();
    let v2 = start("v2", "2").await;
    let ready = Instant::now();
    // Until the callers asked 4 times each since (an ask of its own each time round).
    let mark = asked.load(Ordering::Relaxed) + 4 * 8;
    while asked.load(Ordering::Relaxed) < mark && ready.elapsed() < DEADLINE {
        client.ask("ver:0", Balance).await.unwrap();
    }
    asking.store(false, Ordering::Relaxed);
    let mut after_ready = 0;
    for caller in futures_util::future::join_all(joining).await {
        for (started, outcome) in caller.unwrap() {
            if started >= ready {
                after_ready += 1;
                assert_eq!(
                    outcome.as_deref(),
                    Ok("v2"),
                    "an Audit asked after v2 joined"
                );
            }
        }
    }
    assert!(after_ready > 0, "no Audit was asked after v2 joined");

    // The same 64 callers' `Audit`s are answered by `v2`, each URN moved there from `v1`
    // by its first `Audit` (or by one just above).
    let audited = from_64_callers(&client, |c, urn| async move { c.ask(urn, Audit).await }).await;
    for r in &audited {
        assert_eq!(r.as_deref(), Ok("v2"), "{r:?}");
    }
    for u in 0..URNS {
        let (_, by) = client.ask(format!("ver:{u}"), Balance).await.unwrap();
        assert_eq!(by, "v2", "ver:{u} moved to the member that decodes Audit");
    }
    // Version 1 of `Deposit` in bincode: `v2` does not decode it; the URN goes back to
    // `v1`, which does (its total started again there: nothing is saved in this test).
    let deposited = from_64_callers(&client, |c, urn| async move {
        c.ask(urn, DepositV1 { n: 1 }).await
    })
    .await;
    assert!(deposited.iter().all(Result::is_ok), "{deposited:?}");
    for u in 0..URNS {
        let (_, by) = client.ask(format!("ver:{u}"), Balance).await.unwrap();
        assert_eq!(
            by, "v1",
            "ver:{u} moved to the member that decodes Deposit@1"
        );
    }
    client.shutdown().await;
    v1.stop().await;
    v2.stop().await;
}

/// The member holding each of `ver:0..URNS`, asked in turn.
async fn holders(client: &ProxyClient) -> Vec<String> {
    let mut by = Vec::new();
    for u in 0..URNS {
        by.push(client.ask(format!("ver:{u}"), Balance).await.unwrap().1);
    }
    by
}

/// `CALLERS` callers asking `Balance` (both builds decode it) over `ver:0..URNS` without
/// pause until `asking` turns false, each call checked to be answered within its deadline.
fn asking_balance(
    client: &ProxyClient,
    asking: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CALLERS)
        .map(|i| {
            let (client, asking) = (client.clone(), asking.clone());
            tokio::spawn(async move {
                let mut round = 0;
                while asking.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let r = client
                        .ask(format!("ver:{}", (i + round) % URNS), Balance)
                        .await;
                    assert!(
                        started.elapsed() <= DEADLINE + MARGIN,
                        "a call took too long"
                    );
                    assert!(r.is_ok(), "{r:?}");
                    round += 1;
                }
            })
        })
        .collect()
}

/// Mid-roll (a member of build 1 and one of build 2, which adds `Audit`, both rebalancing):
/// once `Audit`s moved every URN to build 2, its member keeps them, rather than rebalancing
/// half of them onto build 1 at its next look (where the next `Audit` would move them back,
/// and so on for as long as the roll lasts). 64 callers ask `Balance` (both builds decode
/// it) throughout, each call answered within its deadline.
pub(crate) async fn mid_roll_a_member_of_the_new_build_never_rebalances_onto_the_old() {
    let config = config("versions-roll");
    let start = |system: &'static str, build: &'static str| {
        let (url, ns) = (config.url.clone(), config.namespace.clone());
        async move { Peer::start(&["versioned", &url, &ns, system, build, "rebalance"]).await }
    };
    let v1 = start("v1", "1").await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(DEADLINE))
        .await
        .unwrap();
    assert!(holders(&client).await.iter().all(|by| by == "v1"));
    let v2 = start("v2", "2").await;
    let asking = Arc::new(AtomicBool::new(true));
    let callers = asking_balance(&client, &asking);
    // Every URN to build 2 by an `Audit` each; then `v2`'s next lease renewals, each a look
    // at its share (an absence has no event to await: the time for two such looks).
    for u in 0..URNS {
        assert_eq!(
            client.ask(format!("ver:{u}"), Audit).await.as_deref(),
            Ok("v2")
        );
    }
    tokio::time::sleep(LEASE * 2 / 3 + Duration::from_millis(500)).await;
    asking.store(false, Ordering::Relaxed);
    for c in futures_util::future::join_all(callers).await {
        c.unwrap();
    }
    let kept = holders(&client).await;
    assert!(kept.iter().all(|by| by == "v2"), "{kept:?}");
    client.shutdown().await;
    v1.stop().await;
    v2.stop().await;
}

/// A roll's middle: two members of build 1 holding every URN, then one of build 2 joins
/// (none rebalancing: a look racing the drain would move URNs of its own). All but one of
/// the other member's URNs moved to build 2 by an `Audit` each, a member of build 1 drains,
/// and every URN it held goes to build 2, none to the other member of build 1 (where it
/// would move once more when that one drains), although that one then holds fewer. 64
/// callers ask `Balance` throughout, each call answered within its deadline.
pub(crate) async fn mid_roll_a_drain_hands_to_the_new_build_only() {
    let config = config("versions-roll-drain");
    let start = |system: &'static str, build: &'static str| {
        let (url, ns) = (config.url.clone(), config.namespace.clone());
        async move { Peer::start(&["versioned", &url, &ns, system, build]).await }
    };
    let v1a = start("v1a", "1").await;
    let v1b = start("v1b", "1").await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(DEADLINE))
        .await
        .unwrap();
    // Placed by `Spread`: each member of build 1 holds some.
    let before = holders(&client).await;
    assert!(
        before.iter().all(|by| by == "v1a" || by == "v1b"),
        "{before:?}"
    );
    assert!(before.iter().any(|by| by == "v1a") && before.iter().any(|by| by == "v1b"));
    let v2 = start("v2", "2").await;
    let asking = Arc::new(AtomicBool::new(true));
    let callers = asking_balance(&client, &asking);
    // All but one of `v1b`'s URNs to build 2 by an `Audit` each: `v2` then holds more than
    // `v1b`, so that only the drain's choice of build (not the fewest activations) sends
    // all of `v1a`'s to `v2`.
    let mut expected: Vec<&str> = before
        .iter()
        .map(|by| if by == "v1b" { "v1b" } else { "v2" })
        .collect();
    let of_v1b: Vec<usize> = (0..URNS).filter(|&u| before[u] == "v1b").collect();
    for &u in &of_v1b[1..] {
        assert_eq!(
            client.ask(format!("ver:{u}"), Audit).await.as_deref(),
            Ok("v2")
        );
        expected[u] = "v2";
    }
    v1a.signal(libc::SIGTERM);
    let said = v1a.said_until_stopped(30).await;
    assert!(said.iter().any(|l| l.starts_with("DRAINED ")), "{said:?}");
    let after = holders(&client).await;
    for (u, (was, is)) in before.iter().zip(&after).enumerate() {
        assert_eq!(is, expected[u], "ver:{u}, held by {was} before the drain");
    }
    asking.store(false, Ordering::Relaxed);
    for c in futures_util::future::join_all(callers).await {
        c.unwrap();
    }
    client.shutdown().await;
    v1b.stop().await;
    v2.stop().await;
}

/// In MessagePack (fields by name), `v1` decodes version 2 of `Deposit`: its note is
/// skipped, the change additive.
#[cfg(feature = "msgpack")]
async fn additive_in_msgpack(config: &ProxyConfig) {
    let client = ProxyClient::connect(
        &config
            .clone()
            .with_ask_timeout(DEADLINE)
            .with_codec(conclib_codec::MsgPack),
    )
    .await
    .unwrap();
    let note = Some("skipped by v1".to_owned());
    assert_eq!(client.ask("ver:1", DepositV2 { n: 3, note }).await, Ok(3));
    client.shutdown().await;
}

#[cfg(not(feature = "msgpack"))]
async fn additive_in_msgpack(_: &ProxyConfig) {}
