//! Rebalancing: a member that joins a pattern's group under load takes its share of the
//! activations (members above their share passivate the excess, which their next requests
//! activate on the newcomer), with nothing lost or repeated and no request failing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib_redis::{ProxyClient, ProxyConfig};
use fred::prelude::KeysInterface;

use crate::activation::{Incr, Total};
use crate::common::{config, eventually, plain_client};
use crate::peers::Peer;
use crate::placement::{holders, shares, start_placers};

/// Stops the callers (each within 30 s) and checks that none of their requests failed.
async fn stop_load(stop: &AtomicBool, load: Vec<tokio::task::JoinHandle<()>>, errors: &AtomicU64) {
    stop.store(true, Ordering::Relaxed);
    for l in load {
        tokio::time::timeout(Duration::from_secs(30), l)
            .await
            .expect("the callers stop")
            .unwrap();
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0, "no request failed");
}

/// Rebalancing placers of `config` (leases of `lease_ms`), the first `keep` left running,
/// holding `acct:{tag}0` .. `acct:{tag}{n - 1}` (each asked once); a client (10 s
/// deadline) and a plain Redis client.
async fn placers_holding(
    config: &ProxyConfig,
    lease_ms: u64,
    keep: usize,
    tag: &str,
    n: usize,
) -> (Vec<Peer>, ProxyClient, fred::prelude::Client, Vec<String>) {
    let mut peers = start_placers(config, lease_ms, "rebalance").await;
    for p in peers.drain(keep..) {
        p.stop().await;
    }
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(10)))
        .await
        .unwrap();
    let redis = plain_client(&config.url).await;
    let urns: Vec<String> = (0..n).map(|i| format!("acct:{tag}{i}")).collect();
    for urn in &urns {
        assert_eq!(client.ask(urn.as_str(), Total).await.unwrap(), 0);
    }
    (peers, client, redis, urns)
}

pub(crate) async fn a_member_joining_under_load_takes_its_share_with_rebalancing() {
    let config = config("rebalance");
    let lease_ms: u64 = 1500;
    // Two members to start with.
    let (mut peers, client, redis, urns) = placers_holding(&config, lease_ms, 2, "r", 40).await;
    let ns = config.namespace.clone();
    eprintln!("before: {:?}", shares(&holders(&redis, &ns, &urns).await));
    // Load: each URN told and asked in turn, by 8 callers at once.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let told: Arc<Vec<AtomicU64>> = Arc::new(urns.iter().map(|_| AtomicU64::new(0)).collect());
    let mut load = Vec::new();
    for caller in 0..8usize {
        let (client, stop, errors, told, urns) = (
            client.clone(),
            stop.clone(),
            errors.clone(),
            told.clone(),
            urns.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut i = caller;
            while !stop.load(Ordering::Relaxed) {
                let k = i % urns.len();
                match client.tell(urns[k].as_str(), Incr(0)).await {
                    Ok(()) => {
                        told[k].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("tell {}: {e}", urns[k]);
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Err(e) = client.ask(urns[k].as_str(), Total).await {
                    eprintln!("ask {}: {e}", urns[k]);
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 8;
            }
        }));
    }
    let lease = lease_ms.to_string();
    let joined_at = Instant::now();
    let newcomer = Peer::start(&[
        "placer",
        &config.url,
        &config.namespace,
        "s3",
        &lease,
        "rebalance",
    ])
    .await;
    // Where the time goes: the newcomer's start (until it serves and is listed), then
    // until the first URN is handed to it, then until it holds its quarter.
    let ready_ms = joined_at.elapsed().as_millis();
    let first_ms = Arc::new(std::sync::OnceLock::new());
    peers.push(newcomer);
    let spread = eventually(
        Duration::from_secs(60),
        "the newcomer holds at least 25% of the activations",
        || {
            let (redis, ns, urns, first_ms) =
                (redis.clone(), ns.clone(), urns.clone(), first_ms.clone());
            async move {
                let by = shares(&holders(&redis, &ns, &urns).await);
                let held = by.get("s3").copied().unwrap_or(0);
                if held > 0 {
                    first_ms.get_or_init(|| joined_at.elapsed().as_millis());
                }
                (held * 4 >= urns.len()).then_some(by)
            }
        },
    )
    .await;
    let rebalance_ms = joined_at.elapsed().as_millis();
    stop_load(&stop, load, &errors).await;
    // Nothing lost, nothing repeated: every account counts exactly the tells it was told.
    let mut wrong = BTreeMap::new();
    for (k, urn) in urns.iter().enumerate() {
        let total = client.ask(urn.as_str(), Total).await.unwrap();
        let sent = told[k].load(Ordering::Relaxed);
        if total != sent {
            wrong.insert(urn.clone(), (total, sent));
        }
    }
    assert!(wrong.is_empty(), "counted vs told: {wrong:?}");
    // Live migration, no store reload: every activation after the first 40 (one per URN)
    // took the count its predecessor carried (`StateStore::rehydrate`).
    let count = |key: &'static str| {
        let (redis, key) = (redis.clone(), format!("{ns}:test:{key}"));
        async move { redis.get::<Option<u64>, _>(key).await.unwrap().unwrap_or(0) }
    };
    let (activations, carried) = (count("activations").await, count("carried").await);
    let reloaded = activations - urns.len() as u64 - carried;
    assert!(carried > 0, "the moved activations carried their counts");
    assert_eq!(
        reloaded, 0,
        "activations that loaded their count from the store again"
    );
    let sent: u64 = told.iter().map(|t| t.load(Ordering::Relaxed)).sum();
    println!(
        "RESULT test=rebalance members=3 urns={} rebalance_ms={rebalance_ms} newcomer_ready_ms={ready_ms} first_handed_ms={} newcomer_share_pct={} carried={carried} reloaded={reloaded} tells={sent} errors=0",
        urns.len(),
        first_ms.get().copied().unwrap_or(rebalance_ms),
        spread.get("s3").copied().unwrap_or(0) * 100 / urns.len(),
    );
    eprintln!("after: {spread:?}");
    drop(client);
    for p in peers {
        p.stop().await;
    }
}

/// Two members joining at once while callers ask every URN: the one holding them all looks
/// at each join, and a join noticed while its look for the other is under way makes it look
/// again once that look ends, so that both joiners hold activations well before the next
/// renewal's look (a 30 s lease: one every 10 s, and none within 10 s of a look that
/// moved). Nothing fails meanwhile.
pub(crate) async fn two_members_joining_at_once_each_take_their_share() {
    let config = config("rebalance-two");
    let lease_ms: u64 = 30_000;
    // One member to start with.
    let (mut peers, client, redis, urns) = placers_holding(&config, lease_ms, 1, "j", 48).await;
    let ns = config.namespace.clone();
    // Every URN asked in turn by 8 callers: a URN handed over counts for its new member
    // once asked there.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for caller in 0..8usize {
        let (client, stop, errors, urns) =
            (client.clone(), stop.clone(), errors.clone(), urns.clone());
        load.push(tokio::spawn(async move {
            let mut i = caller;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = client.ask(urns[i % urns.len()].as_str(), Total).await {
                    eprintln!("ask {}: {e}", urns[i % urns.len()]);
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 8;
            }
        }));
    }
    let lease = lease_ms.to_string();
    let args = |system: &'static str| {
        [
            "placer".to_owned(),
            config.url.clone(),
            ns.clone(),
            system.to_owned(),
            lease.clone(),
            "rebalance".to_owned(),
        ]
    };
    let (a, b) = (args("s2"), args("s3"));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let joined_at = Instant::now();
    let (s2, s3) = tokio::join!(Peer::start(&a), Peer::start(&b));
    peers.extend([s2, s3]);
    // Polled until both hold activations, for 8 s at most (said with the spreads seen). Not
    // a quarter each: a URN handed over counts for its new member only once asked there, so
    // the second look, reading counts that lag, may give the second joiner less than its
    // share; the renewals' looks even it out later.
    let holds = |by: &BTreeMap<String, usize>, s: &str| by.get(s).copied().unwrap_or(0) > 0;
    let mut spread = shares(&holders(&redis, &ns, &urns).await);
    let mut seen = Vec::new();
    while !(holds(&spread, "s2") && holds(&spread, "s3")) {
        assert!(
            joined_at.elapsed() < Duration::from_secs(8),
            "each joiner holds activations within 8 s: {spread:?}, before: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = shares(&holders(&redis, &ns, &urns).await);
        if now != spread {
            seen.push(std::mem::replace(&mut spread, now));
        }
    }
    println!(
        "RESULT test=rebalance_two_joiners urns={} both_hold_ms={} spread={spread:?}",
        urns.len(),
        joined_at.elapsed().as_millis()
    );
    stop_load(&stop, load, &errors).await;
    drop(client);
    for p in peers {
        p.stop().await;
    }
}
