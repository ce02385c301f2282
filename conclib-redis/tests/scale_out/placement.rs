//! Placement of a pattern's URNs over its members: spread by activation count (60
//! sequential activations on 3 members, each member ≥ 25%), hash of the URN (the same URN
//! on the same member across runs), the asking system, and a member chosen that is paused
//! or killed before it activates (no request lost, no URN activated twice).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, ProxyConfig, scale::Placement, start_proxy};
use fred::prelude::*;
use metrics_util::debugging::DebugValue;

use crate::activation::{Total, open_account};
use crate::common::{config, plain_client};
use crate::peers::{Peer, peer_config, wait_for_orders};

/// `placer URL NS SYSTEM LEASE_MS PLACEMENT`: activates `acct:{id}` Accounts placed by
/// `spread`, `random`, `hash` or `asker` (`rebalance`: spread, rebalancing).
pub(crate) async fn placer(args: &[String]) -> i32 {
    let [url, ns, system_id, lease_ms, placement] = args else {
        return 2;
    };
    let rebalance = placement == "rebalance";
    let placement = match placement.as_str() {
        "spread" | "rebalance" => Placement::Spread,
        "random" => Placement::Random,
        "hash" => Placement::HashOfUrn,
        "asker" => Placement::PreferAsker,
        _ => return 2,
    };
    let config = peer_config(url, ns, system_id, lease_ms);
    // The metrics this peer records, printed as it stops (`TAKEOVER moved waits`).
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    conclib_core::metrics::enable();
    let system = ActorSystem::new(system_id);
    let proxy = start_proxy(&system, &config).await.unwrap();
    let redis = plain_client(url).await;
    let ns2 = ns.clone();
    let mut activator = proxy
        .activate("acct:{id}", move |a| {
            open_account(a, redis.clone(), ns2.clone(), false, None)
        })
        .placement(placement)
        .never_passivate();
    if rebalance {
        activator = activator.rebalance();
    }
    activator.await.unwrap();
    println!("READY");
    wait_for_orders(&proxy).await;
    proxy.shutdown().await.unwrap();
    let (mut moved, mut waits) = (0u64, Vec::new());
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        match (key.key().name(), value) {
            ("conclib_takeover_moved_total", DebugValue::Counter(n)) => moved += n,
            ("conclib_takeover_wait_seconds", DebugValue::Histogram(v)) => {
                waits.extend(v.iter().map(|w| (w.into_inner() * 1000.0) as u64));
            }
            _ => {}
        }
    }
    println!("TAKEOVER {moved} {waits:?}");
    println!("STOPPED");
    0
}

pub(crate) async fn start_placers(
    config: &ProxyConfig,
    lease_ms: u64,
    placement: &str,
) -> Vec<Peer> {
    start_placers_on(None, config, lease_ms, placement).await
}

/// [`start_placers`], `s1` on another host (`Peer::start_on`) when `s1_host` is set.
pub(crate) async fn start_placers_on(
    s1_host: Option<&str>,
    config: &ProxyConfig,
    lease_ms: u64,
    placement: &str,
) -> Vec<Peer> {
    let lease = lease_ms.to_string();
    let mut peers = Vec::new();
    for system in ["s1", "s2", "s3"] {
        let host = s1_host.filter(|_| system == "s1");
        peers.push(
            Peer::start_on(
                host,
                &[
                    "placer",
                    &config.url,
                    &config.namespace,
                    system,
                    &lease,
                    placement,
                ],
            )
            .await,
        );
    }
    peers
}

/// The system holding each URN.
pub(crate) async fn holders(redis: &Client, ns: &str, urns: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for urn in urns {
        let holder: Option<String> = redis.get(format!("{ns}:urn:{urn}")).await.unwrap();
        out.insert(urn.clone(), holder.unwrap_or_default());
    }
    out
}

pub(crate) fn shares(holders: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for h in holders.values() {
        *out.entry(h.clone()).or_default() += 1;
    }
    out
}

/// The pattern's directory: system → `"<count> <live until>"`.
async fn directory(redis: &Client, ns: &str) -> BTreeMap<String, String> {
    let all: Value = redis
        .custom(fred::cmd!("HGETALL"), vec![format!("{ns}:placement:acct:")])
        .await
        .unwrap();
    let text = |v: &Value| v.as_string().unwrap_or_default();
    let mut out = BTreeMap::new();
    match all {
        Value::Array(flat) => {
            for pair in flat.chunks(2) {
                out.insert(text(&pair[0]), text(&pair[1]));
            }
        }
        Value::Map(map) => {
            for (k, v) in map.inner() {
                out.insert(k.as_str().unwrap_or_default().to_string(), text(&v));
            }
        }
        _ => {}
    }
    out
}

async fn activations(redis: &Client, ns: &str) -> i64 {
    redis
        .get::<Option<i64>, _>(format!("{ns}:test:activations"))
        .await
        .unwrap()
        .unwrap_or(0)
}

pub(crate) async fn sixty_sequential_activations_spread_over_three_members() {
    let config = config("spread");
    let peers = start_placers(&config, 3000, "spread").await;
    let client = ProxyClient::connect(&config).await.unwrap();
    let urns: Vec<String> = (0..60).map(|i| format!("acct:{i}")).collect();
    for urn in &urns {
        assert_eq!(client.ask(urn.as_str(), Total).await.unwrap(), 0);
    }
    let redis = plain_client(&config.url).await;
    let by_member = shares(&holders(&redis, &config.namespace, &urns).await);
    eprintln!("60 sequential activations on 3 members: {by_member:?}");
    assert_eq!(activations(&redis, &config.namespace).await, 60);
    assert_eq!(
        by_member.len(),
        3,
        "every member activated some: {by_member:?}"
    );
    assert!(
        by_member.values().all(|&n| n >= 15),
        "each member ≥ 25%: {by_member:?}"
    );
    // The directory the spread reads says the same.
    let listed = directory(&redis, &config.namespace).await;
    let counted: BTreeMap<String, usize> = listed
        .iter()
        .map(|(s, v)| (s.clone(), v.split(' ').next().unwrap().parse().unwrap()))
        .collect();
    assert_eq!(counted, by_member, "the directory: {listed:?}");
    // Where each activation lives, as an operator reads it: the same, URN by URN.
    let placed = client.activations("acct:{id}").await.unwrap();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (urn, system) in holders(&redis, &config.namespace, &urns).await {
        expected.entry(system).or_default().push(urn);
    }
    for urns in expected.values_mut() {
        urns.sort();
    }
    assert_eq!(placed, expected);
    assert_eq!(client.activations("acct:").await.unwrap(), expected);
    assert!(client.activations("acct").await.is_err(), "not a pattern");
    assert!(client.activations("nobody:{id}").await.unwrap().is_empty());
    for p in peers {
        p.stop().await;
    }
    // Members that left are out of the directory.
    let left = directory(&redis, &config.namespace).await;
    assert!(left.is_empty(), "{left:?}");
}

pub(crate) async fn hash_placement_puts_a_urn_on_the_same_member_across_runs() {
    let urns: Vec<String> = (0..30).map(|i| format!("acct:{i}")).collect();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let config = config("hash");
        let peers = start_placers(&config, 3000, "hash").await;
        let client = ProxyClient::connect(&config).await.unwrap();
        for urn in &urns {
            assert_eq!(client.ask(urn.as_str(), Total).await.unwrap(), 0);
        }
        let redis = plain_client(&config.url).await;
        runs.push(holders(&redis, &config.namespace, &urns).await);
        for p in peers {
            p.stop().await;
        }
    }
    eprintln!("hash placement, per member: {:?}", shares(&runs[0]));
    assert_eq!(runs[0], runs[1], "the same URN on the same member");
    assert_eq!(shares(&runs[0]).len(), 3, "{:?}", shares(&runs[0]));
}

pub(crate) async fn prefer_asker_places_on_the_asking_system() {
    let config = config("asker");
    let peers = start_placers(&config, 3000, "asker").await;
    let client = ProxyClient::connect(&config.clone().with_system_id("s2"))
        .await
        .unwrap();
    let urns: Vec<String> = (0..10).map(|i| format!("acct:{i}")).collect();
    for urn in &urns {
        assert_eq!(client.ask(urn.as_str(), Total).await.unwrap(), 0);
    }
    let redis = plain_client(&config.url).await;
    let by_member = shares(&holders(&redis, &config.namespace, &urns).await);
    assert_eq!(by_member.get("s2"), Some(&10), "{by_member:?}");
    // A client of no member system: spread.
    let anonymous = ProxyClient::connect(&config).await.unwrap();
    let more: Vec<String> = (10..40).map(|i| format!("acct:{i}")).collect();
    for urn in &more {
        assert_eq!(anonymous.ask(urn.as_str(), Total).await.unwrap(), 0);
    }
    let by_member = shares(&holders(&redis, &config.namespace, &more).await);
    assert!(
        by_member.get("s1").is_some_and(|&n| n >= 10)
            && by_member.get("s3").is_some_and(|&n| n >= 10),
        "{by_member:?}"
    );
    for p in peers {
        p.stop().await;
    }
}

/// Asks `Total` of each URN at once; every one answered 0; how long the slowest took.
async fn ask_all(client: &ProxyClient, urns: &[String]) -> Duration {
    let started = Instant::now();
    let mut asks = Vec::new();
    for urn in urns {
        let client = client.clone();
        let urn = urn.clone();
        asks.push(tokio::spawn(async move {
            let r = client.ask(urn.as_str(), Total).await;
            (urn, r.map_err(|e| e.to_string()), started.elapsed())
        }));
    }
    let mut slowest = Duration::ZERO;
    for a in asks {
        let (urn, r, took) = a.await.unwrap();
        assert_eq!(r, Ok(0), "{urn}");
        slowest = slowest.max(took);
    }
    slowest
}

pub(crate) async fn a_chosen_member_paused_or_killed_loses_no_request() {
    let config = config("chosen");
    let lease_ms = 1500;
    let mut peers = start_placers(&config, lease_ms, "spread").await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    let redis = plain_client(&config.url).await;
    let ns = &config.namespace;

    // s3 paused: still in the directory for up to a lease, with the fewest activations, so
    // the spread chooses it until its entry lapses; the others claim what was placed on it
    // once its member lease lapses.
    let s3 = peers.pop().unwrap();
    s3.freeze().await;
    let paused: Vec<String> = (0..30).map(|i| format!("acct:p{i}")).collect();
    let slowest = ask_all(&client, &paused).await;
    let on = shares(&holders(&redis, ns, &paused).await);
    eprintln!("s3 paused: {on:?}, slowest ask {slowest:?}");
    assert!(!on.contains_key("s3"), "{on:?}");
    assert!(
        slowest >= Duration::from_millis(lease_ms / 2),
        "some requests were placed on the paused member and waited for its lease: {slowest:?}"
    );
    assert_eq!(activations(&redis, ns).await, 30);
    s3.signal(libc::SIGCONT);
    // Back from its pause, it activates nothing another member took.
    tokio::time::sleep(Duration::from_millis(lease_ms * 2)).await;
    assert_eq!(activations(&redis, ns).await, 30, "nothing activated twice");
    assert_eq!(
        shares(&holders(&redis, ns, &paused).await),
        on,
        "nothing moved"
    );

    // s2 killed: in the directory for up to a lease; on this host its death is seen at once.
    let s2 = peers.pop().unwrap();
    s2.kill().await;
    let killed: Vec<String> = (0..30).map(|i| format!("acct:k{i}")).collect();
    let slowest = ask_all(&client, &killed).await;
    let on = shares(&holders(&redis, ns, &killed).await);
    eprintln!("s2 killed: {on:?}, slowest ask {slowest:?}");
    assert!(!on.contains_key("s2"), "{on:?}");
    assert_eq!(activations(&redis, ns).await, 60);
    s3.stop().await;
    for p in peers {
        p.stop().await;
    }
}
