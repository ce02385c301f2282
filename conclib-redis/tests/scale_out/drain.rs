//! A member drained on SIGTERM under load (a rolling update's step): three members hold 600
//! activated URNs (about 200 each), four client processes ask and tell all of them, 16
//! calls in flight each (64 callers), and one member gets SIGTERM. Its readiness turns
//! `draining` at once; it exits by itself within its drain and shutdown bounds, having
//! handed its URNs to the others; every ask returns within its timeout (and a small
//! margin, and the time its loader waited for a CPU meanwhile), none fails but by its deadline, none with a deadline of 10 s fails; every tell
//! a client sent is counted once. The 500 ms asks that time out before and after the
//! SIGTERM, and the answered asks' p99 before and during the drain, are printed (on a
//! loaded machine the short asks time out in the steady state too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use conclib_redis::readiness::Readiness;
use conclib_redis::{ProxyClient, ProxyConfig, ProxyHandle};
use fred::prelude::*;

use crate::activation::{IncrAndHold, Total};
use crate::common::{config, plain_client};
use crate::failover_load::{LONG, MARGIN, URNS, read_records, stalled};
use crate::peers::{Peer, temp_notes};
use crate::placement::{holders, shares, start_placers};

/// How long the clients send, and how long before the SIGTERM.
const LOAD: Duration = Duration::from_secs(10);
const BEFORE_DRAIN: Duration = Duration::from_secs(3);
/// Client processes (16 calls in flight each).
const LOADERS: usize = 4;

/// A peer's answer to SIGTERM: drains `proxy`, printing its readiness as the drain began
/// (`READINESS draining`) and what the drain did (`DRAINED handed longest_ms moved expired
/// took_ms`), or the error it ended in (`DRAIN_ERROR ..`: one cut at its bound).
pub(crate) async fn drain_and_say(proxy: ProxyHandle) {
    let probe = proxy.readiness();
    let drain = tokio::spawn(proxy.drain());
    let seen = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let now = probe.check();
            if now != Readiness::Ready {
                return now;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or(Readiness::Ready);
    println!("READINESS {}", seen.as_str());
    let d = match drain.await.unwrap() {
        Ok(d) => d,
        Err(e) => return println!("DRAIN_ERROR {e}"),
    };
    println!(
        "DRAINED {} {} {} {} {} {}",
        d.handed,
        d.longest_handing.as_millis(),
        d.moved,
        d.expired,
        d.took.as_millis(),
        d.within_bound
    );
}

pub(crate) async fn a_member_drained_by_sigterm_under_load_hands_everything_over() {
    let config = config("drain");
    let lease_ms = ProxyConfig::new("").lease_ttl.as_millis() as u64;
    let mut peers = start_placers(&config, lease_ms, "spread").await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(LONG))
        .await
        .unwrap();
    let urns: Vec<String> = (0..URNS).map(|i| format!("acct:{i}")).collect();
    for chunk in urns.chunks(50) {
        let asks = chunk.iter().map(|u| client.ask(u.as_str(), Total));
        for r in futures_util::future::join_all(asks).await {
            assert_eq!(r.unwrap(), 0);
        }
    }
    let redis = plain_client(&config.url).await;
    let held = holders(&redis, &config.namespace, &urns).await;
    let victim_id = "s1";
    let theirs: BTreeSet<u64> = held
        .iter()
        .filter(|(_, h)| h.as_str() == victim_id)
        .map(|(u, _)| u["acct:".len()..].parse().unwrap())
        .collect();
    assert!(theirs.len() >= 150, "{:?}", shares(&held));
    let outs: Vec<PathBuf> = (0..LOADERS)
        .map(|i| temp_notes(&format!("drain{i}")))
        .collect();
    let mut loaders = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        loaders.push(
            Peer::start(&[
                "loader",
                &config.url,
                &config.namespace,
                &(i + 1).to_string(),
                out.to_str().unwrap(),
            ])
            .await,
        );
    }
    for l in &mut loaders {
        l.say(&format!("go {}", LOAD.as_millis())).await;
    }
    // Load before the drain: a duration by design, not a wait for an event.
    tokio::time::sleep(BEFORE_DRAIN).await;
    let victim = peers.remove(0);
    let termed = Instant::now();
    let termed_us = crate::failover_load::micros_now();
    victim.signal(libc::SIGTERM);
    let bound = config.drain_timeout + config.shutdown_timeout;
    let said = victim.said_until_stopped(bound.as_secs() + 5).await;
    let exited = termed.elapsed();
    assert!(exited <= bound + MARGIN, "exited {exited:?} after SIGTERM");
    assert!(said.contains(&"READINESS draining".to_owned()), "{said:?}");
    let drained: Vec<&str> = said
        .iter()
        .find_map(|l| l.strip_prefix("DRAINED "))
        .expect("the drain's report")
        .split(' ')
        .collect();
    assert_eq!(drained[5], "true", "handed over within its bound: {said:?}");
    assert_eq!(drained[0].parse::<usize>().unwrap(), theirs.len());
    let now_held = holders(&redis, &config.namespace, &urns).await;
    assert!(
        now_held.values().all(|h| h != victim_id),
        "the drained member holds nothing: {:?}",
        shares(&now_held)
    );
    for l in &mut loaders {
        assert_eq!(l.line(60).await, "DONE");
    }
    let (asks, tells, stalls) = read_records(&outs);
    for out in &outs {
        let _ = std::fs::remove_file(out);
    }
    let mut outcomes = BTreeMap::<String, usize>::new();
    for a in &asks {
        let took = Duration::from_micros(a.end - a.start);
        // Plus the time its loader waited for a CPU (failover_load.rs says why).
        let (stall, not_run) = stalled(&stalls, a);
        assert!(
            took <= a.timeout + MARGIN + not_run,
            "acct:{} asked with a {:?} timeout returned after {took:?} ({}); its loader's runtime stalled {stall:?} of it, waiting for a CPU {not_run:?}",
            a.urn,
            a.timeout,
            a.outcome
        );
        if a.outcome != "ok" {
            *outcomes.entry(a.outcome.clone()).or_default() += 1;
        }
    }
    // Where the failures were: (victim's URN, sent before the SIGTERM, deadline ms,
    // outcome) → count. On a loaded machine the short asks (500 ms) time out in the
    // steady state too: only the long ones' (10 s) outcome is the drain's.
    let mut failed_where = BTreeMap::<(bool, bool, u128, String), usize>::new();
    for a in asks.iter().filter(|a| a.outcome != "ok") {
        let key = (
            theirs.contains(&a.urn),
            a.start < termed_us,
            a.timeout.as_millis(),
            a.outcome.clone(),
        );
        *failed_where.entry(key).or_default() += 1;
    }
    eprintln!("failed asks (victim's, before the SIGTERM, deadline ms, outcome): {failed_where:?}");
    let failed_long = asks
        .iter()
        .filter(|a| a.timeout == LONG && a.outcome != "ok")
        .count();
    let failed_short = |before: bool| {
        asks.iter()
            .filter(|a| a.timeout != LONG && a.outcome != "ok")
            .filter(|a| (a.start < termed_us) == before)
            .count()
    };
    let not_timeouts: Vec<&str> = asks
        .iter()
        .filter(|a| a.outcome != "ok" && a.outcome != "timeout")
        .map(|a| a.outcome.as_str())
        .collect();
    // The answered asks' p99 in the 3 s before the SIGTERM and from it to the drain's end.
    let p99 = |from: u64, to: u64| {
        let mut took: Vec<u64> = asks
            .iter()
            .filter(|a| a.outcome == "ok" && a.start >= from && a.start < to)
            .map(|a| a.end - a.start)
            .collect();
        took.sort_unstable();
        took.get((took.len().max(1) - 1) * 99 / 100)
            .copied()
            .unwrap_or(0)
            / 1000
    };
    let exited_us = termed_us + exited.as_micros() as u64;
    let (steady_p99, drain_p99) = (
        p99(termed_us - BEFORE_DRAIN.as_micros() as u64, termed_us),
        p99(termed_us, exited_us),
    );
    let mut sent = BTreeMap::<u64, u64>::new();
    let mut failed_tells = 0;
    for (urn, ok) in &tells {
        if *ok {
            *sent.entry(*urn).or_default() += 1;
        } else {
            failed_tells += 1;
        }
    }
    let mut miscounted = BTreeMap::new();
    for u in 0..URNS {
        let total = client.ask(format!("acct:{u}"), Total).await.unwrap();
        let told = sent.get(&u).copied().unwrap_or(0);
        if total != told {
            miscounted.insert(u, (total, told));
        }
    }
    println!(
        "RESULT test=drain urns={URNS} victim_urns={} callers={} asks={} tells={} failed_long_asks={failed_long} timeouts_short_before={} timeouts_short_after={} errors_other={} failed_tells={failed_tells} miscounted={} p99_steady_ms={steady_p99} p99_drain_ms={drain_p99} drain_ms={} exit_ms={} handed={} longest_handing_ms={} swept={} expired={}",
        theirs.len(),
        LOADERS * 16,
        asks.len(),
        tells.len(),
        failed_short(true),
        failed_short(false),
        not_timeouts.len(),
        miscounted.len(),
        drained[4],
        exited.as_millis(),
        drained[0],
        drained[1],
        drained[2],
        drained[3],
    );
    assert!(
        not_timeouts.is_empty(),
        "asks failed other than by their deadline: {not_timeouts:?}"
    );
    assert_eq!(
        failed_long, 0,
        "asks whose deadline outlasts the drain are answered"
    );
    assert_eq!(failed_tells, 0, "tells refused");
    assert!(miscounted.is_empty(), "(counted, told): {miscounted:?}");
    for l in loaders {
        drop(l);
    }
    drop(client);
    for p in peers {
        p.stop().await;
    }
}

/// A client of `config` that keeps its routes for a minute (its asks go where it looked
/// last), asking with `deadline`.
pub(crate) async fn client_keeping_routes(config: &ProxyConfig, deadline: Duration) -> ProxyClient {
    let mut cached = config.clone().with_ask_timeout(deadline);
    cached.resolve_cache_ttl = Duration::from_secs(60);
    ProxyClient::connect(&cached).await.unwrap()
}

/// 64 asks at once, each of one of `urns` in turn, each answered within `deadline` (and a
/// small margin): the longest.
pub(crate) async fn sixty_four_answered(
    client: &ProxyClient,
    urns: &[&str],
    deadline: Duration,
) -> Duration {
    let asks = (0..64).map(|i| async move {
        let urn = urns[i % urns.len()];
        let started = Instant::now();
        let r = client.ask(urn, Total).await;
        (urn, r, started.elapsed())
    });
    let mut longest = Duration::ZERO;
    for (urn, r, took) in futures_util::future::join_all(asks).await {
        assert!(r.is_ok(), "{urn}: {r:?} after {took:?}");
        assert!(took <= deadline + MARGIN, "{urn} answered after {took:?}");
        longest = longest.max(took);
    }
    longest
}

/// A drained member's activations are each activated at once by the member it handed them
/// to (its moved-in notice), before any request for them: their states' owner is that
/// member's activation. And a URN whose key names a member that drains without knowing it
/// holds it (a hand-over that sent no notice, an earlier build's, or one read by its target
/// once draining, leaves it so): that member's stream gone, 64 callers asking it at once are
/// each answered (by the member left) within their deadline, none refused `UnknownUrn`.
pub(crate) async fn a_drained_members_urns_are_activated_at_once_and_a_key_left_naming_it_is_answered()
 {
    let config = config("drain-handed");
    let lease_ms = ProxyConfig::new("").lease_ttl.as_millis() as u64;
    let mut peers = start_placers(&config, lease_ms, "spread").await;
    let deadline = Duration::from_secs(5);
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(deadline))
        .await
        .unwrap();
    let redis = plain_client(&config.url).await;
    let urns: Vec<String> = (0..6).map(|i| format!("acct:h{i}")).collect();
    for u in &urns {
        assert_eq!(client.ask(u.as_str(), Total).await.unwrap(), 0);
    }
    let bound = config.drain_timeout + config.shutdown_timeout;
    let drain = |peer: Peer| async move {
        peer.signal(libc::SIGTERM);
        let said = peer.said_until_stopped(bound.as_secs() + 5).await;
        assert!(said.iter().any(|l| l.starts_with("DRAINED ")), "{said:?}");
    };
    // `s1` drained: its URNs handed to `s2` and `s3`, none asked since.
    let held = holders(&redis, &config.namespace, &urns).await;
    let moved: Vec<String> = held
        .iter()
        .filter(|(_, h)| *h == "s1")
        .map(|(u, _)| u.clone())
        .collect();
    assert!(!moved.is_empty(), "s1 holds none of {:?}", shares(&held));
    drain(peers.remove(0)).await;
    let handed = holders(&redis, &config.namespace, &moved).await;
    let waited = Instant::now();
    for (urn, holder) in &handed {
        assert!(
            ["s2", "s3"].contains(&holder.as_str()),
            "{urn} handed to {holder:?}"
        );
        // Activated there: the state's owner is an activation of that member (`{token}@s2`).
        let state = format!("{}:state:{urn}", config.namespace);
        loop {
            let owner: Value = redis
                .custom(fred::cmd!("HGET"), vec![state.clone(), "owner".to_owned()])
                .await
                .unwrap();
            if owner
                .as_string()
                .is_some_and(|o| o.ends_with(&format!("@{holder}")))
            {
                break;
            }
            assert!(
                waited.elapsed() < deadline,
                "{urn}, handed to {holder}, not activated there without a request: owner {owner:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let activated_ms = waited.elapsed().as_millis();
    // A key naming `s2` that `s2` never knew of, then `s2` drained: its stream is gone.
    let urn = "acct:left".to_owned();
    let key = format!("{}:urn:{urn}", config.namespace);
    let _: () = redis
        .set(&key, "s2", Some(Expiration::PX(60_000)), None, false)
        .await
        .unwrap();
    // The peers left are `s2` and `s3`, in this order.
    drain(peers.remove(0)).await;
    let now = holders(&redis, &config.namespace, std::slice::from_ref(&urn)).await;
    assert_eq!(now[&urn], "s2", "the key names the drained member");
    let longest = sixty_four_answered(&client, &[urn.as_str()], deadline).await;
    let held = holders(&redis, &config.namespace, std::slice::from_ref(&urn)).await;
    println!(
        "RESULT test=drain_handed moved={} activated_without_request_ms={activated_ms} urn={urn} now={} longest_ms={}",
        handed.len(),
        held[&urn],
        longest.as_millis()
    );
    drop(client);
    for p in peers {
        p.stop().await;
    }
}

/// A request a member reads from its own stream for a URN whose key names a member that
/// drained (its stream gone) while that member's system lease still lives (a drained
/// member's lease outlives its stream until it has departed): passed on there, found
/// without a stream, it goes to the pattern's group, whose member frees the key (its
/// holder's stream missing: `FREE_GONE_URN_SCRIPT`'s third key) and activates the URN. 64
/// callers whose route to the member reading was cached before are each answered within
/// their deadline, none refused `UnknownUrn`.
pub(crate) async fn a_request_passed_on_to_a_drained_holder_goes_to_the_group() {
    let config = config("drain-streamless");
    let lease_ms = ProxyConfig::new("").lease_ttl.as_millis() as u64;
    let mut peers = start_placers(&config, lease_ms, "spread").await;
    let deadline = Duration::from_secs(5);
    let client = client_keeping_routes(&config, deadline).await;
    let redis = plain_client(&config.url).await;
    let bound = config.drain_timeout + config.shutdown_timeout;
    // `s1` and `s2` drained: their streams gone, their leases released.
    for _ in 0..2 {
        let peer = peers.remove(0);
        peer.signal(libc::SIGTERM);
        let said = peer.said_until_stopped(bound.as_secs() + 5).await;
        assert!(said.iter().any(|l| l.starts_with("DRAINED ")), "{said:?}");
    }
    let ns = &config.namespace;
    let lease = |s: &str| format!("{ns}:sys:{s}:lease");
    for gone in ["s1", "s2"] {
        let exists: i64 = redis.exists(format!("{ns}:sys:{gone}:req")).await.unwrap();
        assert_eq!(exists, 0, "{gone}'s stream is gone");
    }
    // A URN never asked: its key named `s3` as the client looked it up, then names `s2`,
    // with `s2`'s lease living (as `s3`'s: a process that runs), as a drained member that
    // was handed the URN but never asked it leaves its key until it departs.
    let urn = "acct:streamless";
    let key = format!("{ns}:urn:{urn}");
    let _: () = redis.set(&key, "s3", None, None, false).await.unwrap();
    assert_eq!(client.resolve(urn).await.unwrap().as_deref(), Some("s3"));
    let _: () = redis.set(&key, "s2", None, None, false).await.unwrap();
    let alive: String = redis.get(lease("s3")).await.unwrap();
    let _: () = redis
        .set(
            lease("s2"),
            alive,
            Some(fred::types::Expiration::PX(10_000)),
            None,
            false,
        )
        .await
        .unwrap();
    let longest = sixty_four_answered(&client, &[urn], deadline).await;
    let now: Option<String> = redis.get(&key).await.unwrap();
    assert_eq!(
        now.as_deref(),
        Some("s3"),
        "freed and activated by the member left"
    );
    println!(
        "RESULT test=drain_streamless urn={urn} now=s3 longest_ms={}",
        longest.as_millis()
    );
    drop(client);
    for p in peers {
        p.stop().await;
    }
}

/// A URN whose key names a member that is draining but holds no activation of it (handed
/// there by a look taken before the drain began, as a reroute's may be): the requests that
/// member reads for it go to the pattern's group with the key released, and the member
/// left activates it during the drain, not after it. The drain is held open by an
/// activation whose handler runs past the drain's bound (`IncrAndHold`); 64 callers ask the
/// URN with a deadline of 3 s, against a drain of 10 s: each is answered within its
/// deadline, and before the member departs.
pub(crate) async fn a_urn_handed_to_a_draining_member_is_answered_during_its_drain() {
    let config = config("drain-handed-late");
    let lease_ms = ProxyConfig::new("").lease_ttl.as_millis() as u64;
    let mut peers = start_placers(&config, lease_ms, "spread").await;
    let deadline = Duration::from_secs(3);
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(deadline))
        .await
        .unwrap();
    let redis = plain_client(&config.url).await;
    let ns = &config.namespace;
    // An account `s1` holds, its handler held for a minute: `s1`'s drain waits for it.
    let mut held = None;
    for i in 0..30 {
        let urn = format!("acct:held{i}");
        assert_eq!(client.ask(urn.as_str(), Total).await.unwrap(), 0);
        if holders(&redis, ns, std::slice::from_ref(&urn)).await[&urn] == "s1" {
            held = Some(urn);
            break;
        }
    }
    let held = held.expect("s1 holds one of 30 accounts");
    // Its route cached, so that the tell goes to `s1`'s own stream.
    assert_eq!(client.resolve(&held).await.unwrap().as_deref(), Some("s1"));
    client.tell(held.as_str(), IncrAndHold(1)).await.unwrap();
    // A URN whose key names `s1`, with no activation there.
    let urn = "acct:late";
    let _: () = redis
        .set(
            format!("{ns}:urn:{urn}"),
            "s1",
            Some(Expiration::PX(60_000)),
            None,
            false,
        )
        .await
        .unwrap();
    let mut s1 = peers.remove(0);
    let sigterm = Instant::now();
    s1.signal(libc::SIGTERM);
    loop {
        let line = s1.line(5).await;
        if line.starts_with("READINESS") {
            assert_eq!(line, "READINESS draining");
            break;
        }
    }
    // Its readiness turns first; it activates nothing more once it has found another
    // member to hand to, and then leaves the pattern's directory: asked before, it would
    // activate the URN itself.
    let directory = format!("{ns}:placement:acct:");
    crate::common::eventually(Duration::from_secs(5), "s1 out of the directory", || {
        let (redis, directory) = (&redis, &directory);
        async move {
            let listed: i64 = redis
                .custom(
                    fred::cmd!("HEXISTS"),
                    vec![directory.clone(), "s1".to_owned()],
                )
                .await
                .unwrap();
            listed == 0
        }
    })
    .await;
    let longest = sixty_four_answered(&client, &[urn], deadline).await;
    let answered_ms = sigterm.elapsed().as_millis();
    // `s1` has not departed: its drain still waits for the held handler.
    let lease: i64 = redis.exists(format!("{ns}:sys:s1:lease")).await.unwrap();
    assert_eq!(lease, 1, "s1 departed before its URN was answered");
    let now = holders(&redis, ns, &[urn.to_owned()]).await;
    assert!(
        ["s2", "s3"].contains(&now[urn].as_str()),
        "{urn} held by {:?}",
        now[urn]
    );
    // Its drain ends at its bound, cut: the handler still holds.
    let bound = config.drain_timeout + config.shutdown_timeout;
    let said = s1.said_until_stopped(bound.as_secs() + 5).await;
    assert!(said.iter().any(|l| l.starts_with("DRAIN")), "{said:?}");
    let drain_ms = sigterm.elapsed().as_millis();
    println!(
        "RESULT test=drain_handed_late urn={urn} now={} longest_ms={} answered_ms={answered_ms} drain_ms={drain_ms}",
        now[urn],
        longest.as_millis()
    );
    drop(client);
    for p in peers {
        p.stop().await;
    }
}
