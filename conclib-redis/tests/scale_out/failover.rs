//! Failover by membership: a system holding activated URNs dies (SIGKILL) or is paused past
//! its lease (SIGSTOP) with requests queued for it in its stream; a member of the pattern's
//! group moves them to the group's stream, in order and with their deadlines, so that they
//! are answered by a new activation instead of ending `Timeout`; a paused holder back from
//! its pause handles none of what was moved.

use std::time::{Duration, Instant};

use conclib_redis::ProxyClient;
use fred::prelude::*;

use crate::activation::{Incr, Total};
use crate::common::{config, eventually, plain_client};
use crate::placement::{holders, shares, start_placers};

/// Callers' asks per URN of the victim, all at once.
const ASKS_PER_URN: usize = 4;
/// The asks' timeout: longer than the failover.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// What a call may take past its timeout.
const MARGIN: Duration = Duration::from_millis(250);

pub(crate) async fn a_killed_holders_queued_requests_are_moved_and_answered() {
    failover(false).await;
}

pub(crate) async fn a_paused_holders_queued_requests_are_moved_and_it_repeats_none() {
    failover(true).await;
}

async fn failover(pause_only: bool) {
    let config = config(if pause_only { "fo-pause" } else { "fo-kill" });
    let lease_ms = 3000;
    let mut peers = start_placers(&config, lease_ms, "spread").await;
    // Every request resolves its URN afresh, so that all of them go to the victim's stream
    // (with a cached route, some would go through the group's stream: held there until the
    // URN is free).
    let mut client_config = config.clone().with_ask_timeout(ASK_TIMEOUT);
    client_config.resolve_cache_ttl = Duration::from_millis(1);
    let client = ProxyClient::connect(&client_config).await.unwrap();
    let redis = plain_client(&config.url).await;
    let ns = config.namespace.clone();
    let urns: Vec<String> = (0..60).map(|i| format!("acct:{i}")).collect();
    for urn in &urns {
        assert_eq!(client.ask(urn.as_str(), Total).await.unwrap(), 0);
    }
    let held = holders(&redis, &ns, &urns).await;
    eprintln!("placed: {:?}", shares(&held));
    // The victim: s1 (placement spreads 20/20/20).
    let victim_index = 0;
    let victim_id = "s1";
    let theirs: Vec<String> = held
        .iter()
        .filter(|(_, h)| h.as_str() == victim_id)
        .map(|(u, _)| u.clone())
        .collect();
    assert!(!theirs.is_empty(), "{held:?}");
    let victim = peers.remove(victim_index);
    victim.freeze().await;
    // Queued for the victim, in its stream: a tell, then asks that must see it handled.
    let queued_at = Instant::now();
    for urn in &theirs {
        client.tell(urn.as_str(), Incr(0)).await.unwrap();
    }
    let mut asks = Vec::new();
    for urn in &theirs {
        for _ in 0..ASKS_PER_URN {
            let client = client.clone();
            let urn = urn.clone();
            asks.push(tokio::spawn(async move {
                let started = Instant::now();
                let r = client.ask(urn.as_str(), Total).await;
                (urn, r.map_err(|e| e.to_string()), started, Instant::now())
            }));
        }
    }
    let queued = theirs.len() * (1 + ASKS_PER_URN);
    let stream = format!("{ns}:sys:{victim_id}:req");
    eventually(
        Duration::from_secs(10),
        "the requests are queued in the victim's stream",
        || async {
            let n = redis.xlen::<usize, _>(&stream).await.unwrap();

            n >= queued
        },
    )
    .await;
    let failed_at = Instant::now();
    let resumed = if pause_only {
        // Not provably dead: its lease lapses.
        Some(victim)
    } else {
        victim.kill().await;
        None
    };
    let mut answers = Vec::new();
    for a in asks {
        answers.push(
            tokio::time::timeout(ASK_TIMEOUT * 2, a)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let mut timeouts = 0;
    let mut failover = Duration::ZERO;
    for (urn, r, started, ended) in &answers {
        assert!(
            *ended - *started <= ASK_TIMEOUT + MARGIN,
            "{urn}: an ask returned {:?} after it started",
            *ended - *started
        );
        match r {
            Ok(total) => assert_eq!(
                *total, 1,
                "{urn}: the tell before the asks handled once, first"
            ),
            Err(e) if e.contains("timeout") || e.contains("Timeout") => timeouts += 1,
            Err(e) => panic!("{urn}: {e}"),
        }
        failover = failover.max(ended.saturating_duration_since(failed_at));
    }
    assert_eq!(
        timeouts, 0,
        "asks with a deadline past the failover are answered"
    );
    let now_held = holders(&redis, &ns, &theirs).await;
    assert!(
        now_held.values().all(|h| !h.is_empty() && h != victim_id),
        "{now_held:?}"
    );
    if let Some(victim) = resumed {
        victim.signal(libc::SIGCONT);
        // Back from its pause, it finds its lease lapsed: what it had queued is fenced
        // out, what was moved is not pending on it. Asked again, every count is still 1.
        tokio::time::sleep(Duration::from_millis(lease_ms)).await;
        for urn in &theirs {
            assert_eq!(
                client.ask(urn.as_str(), Total).await.unwrap(),
                1,
                "{urn}: handled once, not again by the paused holder"
            );
        }
        peers.push(victim);
    }
    println!(
        "RESULT test=failover fault={} urns={} asks={} failover_ms={} moved_requests={queued} timeouts_during_failover={timeouts} lease_ms={lease_ms}",
        if pause_only { "sigstop" } else { "sigkill" },
        theirs.len(),
        answers.len(),
        failover.as_millis(),
    );
    drop(client);
    // The survivors' metrics: every request moved counted once, by whoever moved it, and
    // how long the oldest had waited for the gone holder.
    let (mut moved, mut waits) = (0, Vec::new());
    for p in peers {
        for line in p.stop_saying().await {
            if let Some(rest) = line.strip_prefix("TAKEOVER ") {
                let (n, w) = rest.split_once(' ').unwrap();
                moved += n.parse::<usize>().unwrap();
                waits.extend(
                    w.trim_matches(['[', ']'])
                        .split(", ")
                        .filter(|w| !w.is_empty())
                        .map(|w| w.parse::<u64>().unwrap()),
                );
            }
        }
    }
    assert_eq!(moved, queued, "conclib_takeover_moved_total");
    let longest = waits.iter().max().copied().unwrap_or(0);
    assert!(
        longest > 0
            && Duration::from_millis(longest) <= (failed_at - queued_at) + failover + MARGIN,
        "conclib_takeover_wait_seconds: {waits:?} (ms), the failover took {failover:?} after {:?} of queueing",
        failed_at - queued_at
    );
}
