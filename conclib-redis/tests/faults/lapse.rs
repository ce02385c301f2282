//! A serving process paused past its lease while it holds many URN keys and Redis is slow,
//! its record of URN keys given away lost meanwhile (as after a Redis restart, or a lapse
//! longer than the record lives): every key must be claimed again before the lease counts (a
//! takeover may have given some away), and that pass takes longer than a lease. The lease must be kept beside the pass,
//! or each renewal finds it lapsed again and starts the pass over, and the process never
//! serves again (docs/bench-log.md, "Overload: a starved member's lease").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// The lease of the paused process.
pub(crate) const LEASE: Duration = Duration::from_millis(1_000);
/// URN keys it holds besides the one asked: at 200 keys a call, 200 calls, each waiting for
/// Redis's busy script (below): longer than a lease.
pub(crate) const BULK: usize = 40_000;
/// How long each of Redis's busy scripts runs (a slow Redis, another tenant's scripts).
const BUSY_US: u64 = 15_000;
/// Each ask's timeout, and how much later than it a call may return.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const MARGIN: Duration = Duration::from_millis(500);
/// How long after its thaw the process must serve again (it claims 40,000 keys from a slow
/// Redis first: 5-12 s in debug builds on a loaded machine).
pub(crate) const RECOVERY: Duration = Duration::from_secs(30);

/// Keeps Redis busy in scripts of `BUSY_US` one after another until `stop`.
async fn keep_redis_busy(redis: Client, stop: Arc<AtomicBool>) {
    let script = "local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat
  local n = redis.call('TIME')
  t = n[1] * 1000000 + n[2]
until t - start >= tonumber(ARGV[1])
return 1";
    while !stop.load(Ordering::Relaxed) {
        let busy = raw(&redis, vec!["EVAL", script, "0", &BUSY_US.to_string()]).await;
        assert!(busy.is_ok(), "the busy script runs: {busy:?}");
    }
}

/// A serving process `system` with a counter at `hot`, `BULK` more URN keys living `urn_ttl`
/// and `env`, its lease `LEASE`; a client whose routes live 2 minutes (callers keep sending
/// to its stream), once it serves (40,000 keys claimed on a loaded machine: bounded, not at
/// once).
pub(crate) async fn bulk_peer(
    config: &ProxyConfig,
    system: &str,
    notes: &Path,
    urn_ttl: Duration,
    env: &[(&str, String)],
) -> (Peer, Arc<ProxyClient>) {
    let mut all = vec![
        ("CONCLIB_TEST_BULK_URNS", BULK.to_string()),
        ("CONCLIB_TEST_URN_TTL_MS", urn_ttl.as_millis().to_string()),
    ];
    all.extend(env.iter().cloned());
    let peer = Peer::serve_env(
        config,
        system,
        &["hot"],
        notes,
        LEASE.as_millis() as u64,
        &all,
    )
    .await;
    let mut caller_config = config.clone();
    caller_config.resolve_cache_ttl = Duration::from_secs(120);
    let client = Arc::new(ProxyClient::connect(&caller_config).await.unwrap());
    eventually(Duration::from_secs(30), "the process serves", || {
        let client = client.clone();
        async move { client.ask("hot", Get).timeout(TIMEOUT).await == Ok(0) }
    })
    .await;
    (peer, client)
}

/// Asks `hot` every 100 ms from `thawed` on until it has answered for 3 s in a row, within
/// `RECOVERY`: since when it answers, if it did.
pub(crate) async fn serves_again(client: &ProxyClient, thawed: Instant) -> Option<Instant> {
    let mut served_since: Option<Instant> = None;
    while thawed.elapsed() < RECOVERY {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh = client.ask("hot", Get).timeout(TIMEOUT).await.is_ok();
        match (fresh, served_since) {
            (true, None) => served_since = Some(Instant::now()),
            (false, _) => served_since = None,
            (true, Some(at)) if at.elapsed() >= Duration::from_secs(3) => break,
            _ => {}
        }
    }
    served_since
}

/// 64 callers ask without pause while the process is paused past its lease (SIGSTOP) and
/// Redis is slow: no call returns later than its timeout plus the margin, and once thawed
/// the process serves again within `RECOVERY` and keeps serving.
pub(crate) async fn a_process_paused_past_its_lease_with_many_urn_keys_serves_again() {
    let config = config("lapse");
    let notes = temp_file("lapse");
    // The URN keys outlive the pause: only the lease lapses.
    let (peer, client) = bulk_peer(&config, "lapsing", &notes, Duration::from_secs(60), &[]).await;

    let stop = Arc::new(AtomicBool::new(false));
    // Each caller: (when each call ended, whether it succeeded), and the calls that
    // returned later than their timeout plus the margin.
    let mut callers = Vec::new();
    for _ in 0..64 {
        let (client, stop) = (client.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut ends = Vec::new();
            let mut late = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let result = client.ask("hot", Get).timeout(TIMEOUT).await;
                let took = at.elapsed();
                if took > TIMEOUT + MARGIN {
                    late.push((took, format!("{result:?}")));
                }
                ends.push((Instant::now(), result.is_ok()));
            }
            (ends, late)
        }));
    }
    let busy = tokio::spawn(keep_redis_busy(raw_client(&config).await, stop.clone()));

    tokio::time::sleep(Duration::from_millis(300)).await;
    peer.freeze().await;
    // Past its lease: Redis lets the lease key lapse. Its record of the URN keys given away
    // is lost: nothing says which keys it still holds (`faults/given_away.rs` keeps it).
    let record = format!("{}:sys:lapsing:given", config.namespace);
    let redis = raw_client(&config).await;
    assert_eq!(
        raw(&redis, vec!["DEL", &record]).await,
        Ok(Value::Integer(1))
    );
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    peer.signal(libc::SIGCONT);
    let thawed = Instant::now();
    // Until it serves again, then 3 s more.
    let lease_key = format!("{}:sys:lapsing:lease", config.namespace);
    let served_since = serves_again(&client, thawed).await;
    stop.store(true, Ordering::Relaxed);
    let lease_ttl = raw(&redis, vec!["PTTL", &lease_key]).await;
    let mut ends = Vec::new();
    let mut late = Vec::new();
    for caller in callers {
        let (e, l) = tokio::time::timeout(TIMEOUT + MARGIN * 4, caller)
            .await
            .expect("a caller ends within an ask's timeout")
            .unwrap();
        ends.extend(e);
        late.extend(l);
    }
    tokio::time::timeout(Duration::from_secs(5), busy)
        .await
        .expect("the busy loop ends")
        .unwrap();
    let _ = std::fs::remove_file(&notes);
    let recovered = served_since.map(|at| at.duration_since(thawed));
    let after_thaw = |ok: bool| {
        ends.iter()
            .filter(|(at, o)| *at > thawed && *o == ok)
            .count()
    };
    if recovered.is_none() {
        peer.kill().await;
        panic!(
            "the process did not serve again for 3 s within {RECOVERY:?} of its thaw (its lease key's TTL then: {lease_ttl:?}); calls ok / failed after the thaw: {} / {}",
            after_thaw(true),
            after_thaw(false),
        );
    }
    peer.stop().await;
    assert!(
        late.is_empty(),
        "calls returned past their timeout: {late:?}"
    );
    println!(
        "    served again {recovered:?} after the thaw; {} calls, {} failed",
        ends.len(),
        ends.iter().filter(|(_, ok)| !ok).count()
    );
}
