//! A holder killed (SIGKILL) moments after it activated its URNs (within its first second of
//! holding them), asked by a client with the default route cache (so that the asks go
//! through the pattern's group stream, not the holder's own): every URN it held is answered
//! by another member within the failover bound, none of the asks (10 s deadline) ends
//! `Timeout`. On this host its death is provable (at once); on another host (a UTS
//! namespace of its own) its lease must lapse first.

use std::time::{Duration, Instant};

use conclib_redis::ProxyClient;
use fred::interfaces::KeysInterface;

use crate::activation::Total;
use crate::common::{config, plain_client};
use crate::peers::Peer;
use crate::placement::{holders, start_placers_on};

/// The asks' timeout: longer than the failover.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// What a call may take past its timeout.
const MARGIN: Duration = Duration::from_millis(250);

pub(crate) async fn a_holder_killed_within_a_second_of_activating_fails_over() {
    early_kill(None, Duration::ZERO).await;
}

pub(crate) async fn a_holder_on_another_host_killed_within_a_second_of_activating_fails_over() {
    // Later in the first second: the asks' routes to the pattern are still cached.
    early_kill(Some("conclib-other-host"), Duration::from_millis(600)).await;
}

/// Kills the holder `gap` after its URNs were activated.
async fn early_kill(victim_host: Option<&str>, gap: Duration) {
    let config = config("fo-early");
    let lease_ms = 3000;
    let (mut peers, client, redis, theirs) =
        activate_on_three(victim_host, &config, lease_ms).await;
    let activated_at = Instant::now();
    tokio::time::sleep(gap.saturating_sub(activated_at.elapsed())).await;
    peers.remove(0).kill().await;
    let killed_after = activated_at.elapsed();
    let killed_at = Instant::now();
    let answers = ask_each(&client, &theirs).await;
    let failover = killed_at.elapsed();
    let failed: Vec<_> = answers.iter().filter(|(_, r, _)| r.is_err()).collect();
    println!(
        "RESULT test=early_kill host={} lease_ms={lease_ms} urns={} killed_after_ms={} failover_ms={} failed={}",
        if victim_host.is_some() {
            "other"
        } else {
            "same"
        },
        theirs.len(),
        killed_after.as_millis(),
        failover.as_millis(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    answered_in_time(&answers);
    let now_held = holders(&redis, &config.namespace, &theirs).await;
    assert!(
        now_held.values().all(|h| !h.is_empty() && h != "s1"),
        "{now_held:?}"
    );
    for p in peers {
        p.stop().await;
    }
}

/// A holder killed, its URNs asked only once ten of its leases passed, by a client with no
/// route cached (so the asks go to the dead holder's own stream, which its URN keys still
/// name): an activation's URN key lives `activation_urn_ttl` (2 minutes) rather than
/// `urn_ttl`, and the pattern's directory keeps the gone holder listed as long, so the
/// takeover still moves those asks and each is answered by another member.
pub(crate) async fn a_holder_killed_and_asked_after_ten_leases_fails_over() {
    let config = config("fo-late");
    let lease_ms = 300;
    let (mut peers, client, redis, theirs) = activate_on_three(None, &config, lease_ms).await;
    let ns = &config.namespace;
    let ttl: i64 = redis.pttl(format!("{ns}:urn:{}", theirs[0])).await.unwrap();
    assert!(
        ttl > 15_000,
        "an activation's URN key lives longer than urn_ttl: {ttl} ms"
    );
    client.shutdown().await;
    peers.remove(0).kill().await;
    tokio::time::sleep(Duration::from_millis(10 * lease_ms + 1000)).await;
    let still = holders(&redis, ns, &theirs).await;
    assert!(still.values().all(|h| h == "s1"), "{still:?}");
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(ASK_TIMEOUT))
        .await
        .unwrap();
    let started = Instant::now();
    let answers = ask_each(&client, &theirs).await;
    let failed: Vec<_> = answers.iter().filter(|(_, r, _)| r.is_err()).collect();
    println!(
        "RESULT test=late_ask lease_ms={lease_ms} urns={} answered_ms={} failed={}",
        theirs.len(),
        started.elapsed().as_millis(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    answered_in_time(&answers);
    let now_held = holders(&redis, ns, &theirs).await;
    assert!(
        now_held.values().all(|h| !h.is_empty() && h != "s1"),
        "{now_held:?}"
    );
    client.shutdown().await;
    for p in peers {
        p.stop().await;
    }
}

/// Each URN asked once, all at once: the URN, the answer (or the error's text), how long
/// the call took.
async fn ask_each(
    client: &ProxyClient,
    urns: &[String],
) -> Vec<(String, Result<u64, String>, Duration)> {
    let asks = urns.iter().map(|urn| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            let r = client.ask(urn.as_str(), Total).await;
            (urn.clone(), r.map_err(|e| e.to_string()), started.elapsed())
        }
    });
    futures_util::future::join_all(asks).await
}

/// Every call came back within its timeout and the margin.
fn answered_in_time(answers: &[(String, Result<u64, String>, Duration)]) {
    for (urn, _, took) in answers {
        assert!(*took <= ASK_TIMEOUT + MARGIN, "{urn}: {took:?}");
    }
}

/// Three placers (`s1` on `s1_host`), 30 URNs activated over them by a client asking with
/// [`ASK_TIMEOUT`]: the placers, that client, a plain Redis client and the URNs `s1` holds
/// (at least one).
async fn activate_on_three(
    s1_host: Option<&str>,
    config: &conclib_redis::ProxyConfig,
    lease_ms: u64,
) -> (Vec<Peer>, ProxyClient, fred::clients::Client, Vec<String>) {
    let peers = start_placers_on(s1_host, config, lease_ms, "spread").await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(ASK_TIMEOUT))
        .await
        .unwrap();
    let redis = plain_client(&config.url).await;
    let urns: Vec<String> = (0..30).map(|i| format!("acct:{i}")).collect();
    let activated =
        futures_util::future::join_all(urns.iter().map(|urn| client.ask(urn.as_str(), Total)))
            .await;
    assert!(activated.iter().all(Result::is_ok), "{activated:?}");
    let held = holders(&redis, &config.namespace, &urns).await;
    let theirs: Vec<String> = held
        .iter()
        .filter(|(_, h)| h.as_str() == "s1")
        .map(|(u, _)| u.clone())
        .collect();
    assert!(!theirs.is_empty(), "{held:?}");
    (peers, client, redis, theirs)
}
