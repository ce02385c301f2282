//! Failover under load, at the size of a deployment: three member systems hold 600
//! activated URNs (about 200 each), three client processes ask and tell all of them at
//! once, 16 calls in flight each, and one member is SIGKILLed, or SIGSTOPped past its lease
//! and resumed. Every ask returns within its timeout (and a small margin), answered or
//! failed `Timeout` (no other error); every ask with the long deadline (10 s, longer than
//! any failover) is answered, the short ones (500 ms) fail at their deadline when the
//! failover outlasts them; every tell a client sent is counted once, no more (the resumed
//! holder handles nothing the others took). An ask may return later by the time its loader's
//! runtime thread waited for a CPU meanwhile (Linux's schedstat, read by a task ticking every
//! 10 ms: on a loaded 2-core machine a runnable thread waits up to a second for a core, and
//! the client cannot answer on time while it is not run). Failover per URN: from the fault to the answer
//! to an ask the test sends to each of the victim's URNs at the fault.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclib_core::AskError;
use conclib_redis::{ProxyClient, ProxyConfig};

use crate::activation::{Incr, Total};
use crate::common::{config, eventually, plain_client};
use crate::peers::{Peer, temp_notes};
use crate::placement::{holders, shares, start_placers};

/// URNs activated over the three members.
pub(crate) const URNS: u64 = 600;
/// Requests each client process keeps in flight.
const IN_FLIGHT: u64 = 16;
/// The two deadlines of the asks, taken in turn: one shorter than a failover, one longer.
pub(crate) const SHORT: Duration = Duration::from_millis(500);
pub(crate) const LONG: Duration = Duration::from_secs(10);
/// What a call may take past its timeout.
pub(crate) const MARGIN: Duration = Duration::from_millis(300);
/// How long the clients send: load before the fault, then the failover and after.
const LOAD: Duration = Duration::from_secs(15);
const BEFORE_FAULT: Duration = Duration::from_secs(3);

pub(crate) fn micros_now() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// `loader URL NS SEED OUT`: asks and tells `acct:0` to `acct:{URNS - 1}`, `IN_FLIGHT` at
/// a time, for as many milliseconds as `go MS` says on stdin; writes what each call did to
/// OUT (`A urn start_us end_us timeout_ms ok|timeout|<error>`, `T urn n ok|<error>`), then
/// prints DONE.
pub(crate) async fn loader(args: &[String]) -> i32 {
    let [url, ns, seed, out] = args else {
        return 2;
    };
    let seed: u64 = seed.parse().unwrap();
    let client = ProxyClient::connect(&ProxyConfig::new(url).with_namespace(ns))
        .await
        .unwrap();
    println!("READY");
    let mut orders = crate::common::orders();
    let Some(go) = orders.recv().await else {
        return 2;
    };
    let ms: u64 = go.strip_prefix("go ").unwrap().parse().unwrap();
    let until = Instant::now() + Duration::from_millis(ms);
    let stalls = watch_stalls(until);
    let tells = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..IN_FLIGHT {
        let client = client.clone();
        let tells = tells.clone();
        workers.push(tokio::spawn(async move {
            let mut lines = Vec::new();
            let mut k = 0u64;
            while Instant::now() < until {
                k += 1;
                let urn_i = (seed * 101 + w * 37 + k * 11) % URNS;
                let urn = format!("acct:{urn_i}");
                if k.is_multiple_of(4) {
                    let n = (seed << 32) | tells.fetch_add(1, Ordering::Relaxed);
                    let r = client.tell(urn.as_str(), Incr(n)).await;
                    let outcome =
                        r.map_or_else(|e| e.to_string().replace(' ', "_"), |()| "ok".into());
                    lines.push(format!("T {urn_i} {n} {outcome}"));
                    continue;
                }
                let timeout = if k.is_multiple_of(2) { SHORT } else { LONG };
                let start = micros_now();
                let r = client.ask(urn.as_str(), Total).timeout(timeout).await;
                let end = micros_now();
                let outcome = match r {
                    Ok(_) => "ok".to_owned(),
                    Err(AskError::Timeout(_)) => "timeout".to_owned(),
                    Err(e) => e.to_string().replace(' ', "_"),
                };
                lines.push(format!(
                    "A {urn_i} {start} {end} {} {outcome}",
                    timeout.as_millis()
                ));
            }
            lines
        }));
    }
    let mut text = String::new();
    for (start, end, starved) in stalls.await.unwrap() {
        text.push_str(&format!("S {start} {end} {starved}\n"));
    }
    for w in workers {
        for line in w.await.unwrap() {
            text.push_str(&line);
            text.push('\n');
        }
    }
    std::fs::write(out, text).unwrap();
    println!("DONE");
    0
}

/// How late a 10 ms tick may come before it counts as a stall.
const STALL: Duration = Duration::from_millis(100);

/// The loader's stalls until `until`, each `(start_us, end_us, starved_us)`: a 10 ms tick of
/// a task on its runtime's one worker thread (where the asks run) came at least `STALL`
/// late, and of that, how long the thread waited for a CPU while it could run (the
/// machine starved it; the rest of the stall, the runtime was busy or blocked).
fn watch_stalls(until: Instant) -> tokio::task::JoinHandle<Vec<(u64, u64, u64)>> {
    const TICK: Duration = Duration::from_millis(10);
    tokio::spawn(async move {
        let mut stalls = Vec::new();
        while Instant::now() < until {
            let (late, waited) = conclib_testkit::stalls::late_tick(TICK).await;
            if late >= STALL {
                let starved = waited.min(late);
                let end = micros_now();
                let us = |d: Duration| u64::try_from(d.as_micros()).unwrap();
                stalls.push((end - us(late), end, us(starved)));
            }
        }
        stalls
    })
}

/// A stall of a loader's runtime, and how much of it the machine starved its thread.
pub(crate) struct Stall {
    pub(crate) loader: usize,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) starved: u64,
}

/// How long the runtime of the loader that sent `ask` was stalled during it, and how much
/// of that its thread waited for a CPU (each stall's starved share, prorated).
pub(crate) fn stalled(stalls: &[Stall], ask: &AskRecord) -> (Duration, Duration) {
    let (mut stalled, mut starved) = (0, 0);
    for s in stalls.iter().filter(|s| s.loader == ask.loader) {
        let overlap = s.end.min(ask.end).saturating_sub(s.start.max(ask.start));
        stalled += overlap;
        starved += overlap * s.starved / (s.end - s.start).max(1);
    }
    (
        Duration::from_micros(stalled),
        Duration::from_micros(starved),
    )
}

/// One ask, as a loader wrote it.
pub(crate) struct AskRecord {
    pub(crate) loader: usize,
    pub(crate) urn: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) timeout: Duration,
    pub(crate) outcome: String,
}

/// The asks, the tells (`urn`, `ok`) and the stalls the loaders wrote.
pub(crate) fn read_records(paths: &[PathBuf]) -> (Vec<AskRecord>, Vec<(u64, bool)>, Vec<Stall>) {
    let (mut asks, mut tells, mut stalls) = (Vec::new(), Vec::new(), Vec::new());
    for (loader, p) in paths.iter().enumerate() {
        for line in std::fs::read_to_string(p).unwrap().lines() {
            let f: Vec<&str> = line.split(' ').collect();
            match f[0] {
                "A" => asks.push(AskRecord {
                    loader,
                    urn: f[1].parse().unwrap(),
                    start: f[2].parse().unwrap(),
                    end: f[3].parse().unwrap(),
                    timeout: Duration::from_millis(f[4].parse().unwrap()),
                    outcome: f[5].to_owned(),
                }),
                "T" => tells.push((f[1].parse().unwrap(), f[3] == "ok")),
                "S" => stalls.push(Stall {
                    loader,
                    start: f[1].parse().unwrap(),
                    end: f[2].parse().unwrap(),
                    starved: f[3].parse().unwrap(),
                }),
                _ => panic!("{line}"),
            }
        }
    }
    (asks, tells, stalls)
}

pub(crate) async fn a_killed_holder_of_200_urns_fails_over_under_load_from_three_clients() {
    failover_under_load(false).await;
}

pub(crate) async fn a_paused_holder_of_200_urns_fails_over_under_load_and_repeats_nothing() {
    failover_under_load(true).await;
}

async fn failover_under_load(pause_only: bool) {
    let config = config(if pause_only { "fol-pause" } else { "fol-kill" });
    // The default lease.
    let lease_ms = ProxyConfig::new("").lease_ttl.as_millis() as u64;
    let mut peers = start_placers(&config, lease_ms, "spread").await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(LONG))
        .await
        .unwrap();
    let urns: Vec<String> = (0..URNS).map(|i| format!("acct:{i}")).collect();
    // Activated 50 at a time.
    for chunk in urns.chunks(50) {
        let asks = chunk.iter().map(|u| client.ask(u.as_str(), Total));
        for r in futures_util::future::join_all(asks).await {
            assert_eq!(r.unwrap(), 0);
        }
    }
    let redis = plain_client(&config.url).await;
    let held = holders(&redis, &config.namespace, &urns).await;
    let placed = shares(&held);
    eprintln!("placed: {placed:?}");
    let victim_id = "s1";
    let theirs: BTreeSet<u64> = held
        .iter()
        .filter(|(_, h)| h.as_str() == victim_id)
        .map(|(u, _)| u["acct:".len()..].parse().unwrap())
        .collect();
    assert!(theirs.len() >= 150, "{placed:?}");
    let outs: Vec<PathBuf> = (0..3).map(|i| temp_notes(&format!("load{i}"))).collect();
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
    // Load before the fault: a duration by design, not a wait for an event.
    tokio::time::sleep(BEFORE_FAULT).await;
    let victim = peers.remove(0);
    let fault_at = micros_now();
    let probe = |victim_froze: tokio::sync::oneshot::Receiver<()>| {
        // One ask to each of the victim's URNs sent at the fault: when each is back.
        let client = client.clone();
        let theirs = theirs.clone();
        tokio::spawn(async move {
            let _ = victim_froze.await;
            let asks = theirs.iter().map(|u| {
                let client = client.clone();
                async move {
                    let r = client.ask(format!("acct:{u}"), Total).timeout(LONG).await;
                    (r.is_ok(), micros_now())
                }
            });
            futures_util::future::join_all(asks).await
        })
    };
    let (froze, victim_froze) = tokio::sync::oneshot::channel();
    let probes = probe(victim_froze);
    let resumed = if pause_only {
        victim.freeze().await;
        let _ = froze.send(());
        // Resumed once the others took its URNs over (a lease, then a member's check).
        eventually(
            Duration::from_secs(20),
            "the paused holder's URNs are taken over",
            || async {
                let now = holders(&redis, &config.namespace, &urns).await;
                now.values().all(|h| h != victim_id)
            },
        )
        .await;
        victim.signal(libc::SIGCONT);
        Some(victim)
    } else {
        victim.signal(libc::SIGKILL);
        let _ = froze.send(());
        victim.kill().await;
        None
    };
    for l in &mut loaders {
        assert_eq!(l.line(60).await, "DONE");
    }
    let (asks, tells, stalls) = read_records(&outs);
    for out in &outs {
        let _ = std::fs::remove_file(out);
    }

    eprintln!(
        "loaders' runtime stalls ≥ {STALL:?}: {}, longest {} ms, {} ms of them waiting for a CPU",
        stalls.len(),
        stalls.iter().map(|s| s.end - s.start).max().unwrap_or(0) / 1000,
        stalls.iter().map(|s| s.starved).sum::<u64>() / 1000,
    );

    // Every ask within its timeout, a margin, and the time its loader's runtime thread waited
    // for a CPU meanwhile (a machine starved of CPU, measured beside it); only `Timeout` as
    // an error.
    let mut others = BTreeMap::<String, usize>::new();
    let mut starved = 0;
    for a in &asks {
        let took = Duration::from_micros(a.end - a.start);
        let (stall, not_run) = stalled(&stalls, a);
        assert!(
            took <= a.timeout + MARGIN + not_run,
            "acct:{} asked with a {:?} timeout returned after {took:?} ({}); its loader's runtime stalled {stall:?} of it, waiting for a CPU {not_run:?}",
            a.urn,
            a.timeout,
            a.outcome,
        );
        starved += usize::from(took > a.timeout + MARGIN);
        if a.outcome != "ok" && a.outcome != "timeout" {
            *others.entry(a.outcome.clone()).or_default() += 1;
        }
    }
    assert!(others.is_empty(), "errors other than Timeout: {others:?}");
    // Failover per URN of the victim: from the fault to the answer to the ask sent to it
    // then.
    eprintln!(
        "asks past their timeout + {MARGIN:?} while their loader waited for a CPU: {starved}"
    );
    let mut failovers: Vec<u64> = Vec::new();
    for (ok, at) in tokio::time::timeout(LONG + MARGIN, probes)
        .await
        .unwrap()
        .unwrap()
    {
        assert!(
            ok,
            "an ask sent to the victim's URN at the fault is answered"
        );
        failovers.push(at.saturating_sub(fault_at) / 1000);
    }
    failovers.sort_unstable();
    let timed_out = |long: bool, victims: bool| {
        asks.iter()
            .filter(|a| a.outcome == "timeout")
            .filter(|a| (a.timeout == LONG) == long && theirs.contains(&a.urn) == victims)
            .count()
    };
    let (short_victims, short_others) = (timed_out(false, true), timed_out(false, false));
    let long_timeouts = timed_out(true, true) + timed_out(true, false);
    eprintln!(
        "asks {}, tells {}, victim URNs {}, short asks timed out: {short_victims} of the victim's URNs, {short_others} of others; long: {long_timeouts}",
        asks.len(),
        tells.len(),
        theirs.len(),
    );
    // The short asks fail at their deadline (typed, on time: checked above) when the
    // failover outlasts them; the long ones, whose deadline outlasts any failover, never.
    assert_eq!(
        long_timeouts, 0,
        "asks whose deadline outlasts the failover are answered"
    );

    // Every tell sent counted once: none lost, none repeated by the resumed holder.
    if let Some(victim) = resumed {
        // Back from its pause, it renews, finds its URNs taken and stops its activations.
        peers.push(victim);
    }
    let mut sent = BTreeMap::<u64, u64>::new();
    let mut failed_tells = 0;
    for (urn, ok) in &tells {
        if *ok {
            *sent.entry(*urn).or_default() += 1;
        } else {
            failed_tells += 1;
        }
    }
    assert_eq!(failed_tells, 0, "tells refused");
    for u in 0..URNS {
        let total = client.ask(format!("acct:{u}"), Total).await.unwrap();
        assert_eq!(
            total,
            sent.get(&u).copied().unwrap_or(0),
            "acct:{u} ({}): each tell counted once",
            if theirs.contains(&u) {
                "the victim's"
            } else {
                "not the victim's"
            }
        );
    }
    let pct = |p: usize| failovers[(failovers.len() - 1) * p / 100];
    println!(
        "RESULT test=failover_load fault={} urns={URNS} victim_urns={} clients=3 asks={} tells={} failover_p50_ms={} failover_p99_ms={} failover_max_ms={} timeouts_short_victim={short_victims} timeouts_short_other={short_others} timeouts_long={long_timeouts} lease_ms={lease_ms}",
        if pause_only { "sigstop" } else { "sigkill" },
        theirs.len(),
        asks.len(),
        tells.len(),
        pct(50),
        pct(99),
        pct(100),
    );
    for l in loaders {
        drop(l);
    }
    drop(client);
    for p in peers {
        p.stop().await;
    }
}
