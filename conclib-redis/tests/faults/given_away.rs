//! A real lapse, with a takeover: a serving process holding 40,000 URN keys and a pattern's
//! activations is paused past its lease (SIGSTOP) while 64 callers ask those activations;
//! another member of the pattern takes its queued requests over and is given their URN
//! keys. Back from its pause, the process must learn which keys it lost (the system's record
//! of URN keys given away, `proxy/serve/given.rs`) and claim those again, not its 40,000
//! others (docs/bench-log.md, "Overload: a lapse claims what it may have lost"), and never
//! answer for an activation it lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// Its activations, each asked by the callers (the lease, the bulk keys, the timeouts are
/// `lapse.rs`'s).
const ACCOUNTS: usize = 16;
/// What each activation of the paused process counts (the taker's start at 0).
const ITS_COUNT: u64 = 1_000;

/// How many `SET`s Redis ran so far (those inside scripts included): every claim or renewal
/// of a URN key is one.
async fn sets_run(redis: &Client) -> u64 {
    let info = raw(redis, vec!["INFO", "commandstats"]).await.unwrap();
    let text = info.as_string().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// The system each account's URN key names.
async fn holders(redis: &Client, ns: &str, accounts: &[String]) -> Vec<String> {
    let mut held = Vec::new();
    for urn in accounts {
        let key = format!("{ns}:urn:{urn}");
        let v = raw(redis, vec!["GET", &key]).await.unwrap();
        held.push(v.as_string().unwrap_or_default());
    }
    held
}

pub(crate) async fn a_lapse_claims_again_only_the_urn_keys_given_away() {
    let config = config("given");
    let ns = config.namespace.clone();
    let notes = temp_file("given");
    // Its 40,000 other keys live far longer than the test: none is due, so a pass that sends
    // them is one over every key.
    let (mut peer, client) = bulk_peer(
        &config,
        "holder",
        &notes,
        Duration::from_secs(600),
        &[("CONCLIB_TEST_PATTERN", "acct:{id}".to_owned())],
    )
    .await;
    // Its activations (the only member yet), each at ITS_COUNT.
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct:{i}")).collect();
    for urn in &accounts {
        let added = client
            .ask(urn.as_str(), Add(ITS_COUNT))
            .timeout(TIMEOUT)
            .await;
        assert_eq!(added, Ok(ITS_COUNT), "{urn}");
    }
    let redis = raw_client(&config).await;
    assert!(
        holders(&redis, &ns, &accounts)
            .await
            .iter()
            .all(|h| h == "holder"),
        "the holder activated every account"
    );

    // The taker: a member of the pattern, in this process.
    let mut taker_config = config.clone().with_system_id("taker");
    taker_config.lease_ttl = LEASE;
    let taker_system = ActorSystem::new("taker");
    let taker = start_proxy(&taker_system, &taker_config).await.unwrap();
    taker
        .activate("acct:{id}", |_activation| async {
            Ok::<_, String>(Counter::default())
        })
        .never_passivate()
        .await
        .unwrap();
    let directory = format!("{ns}:placement:acct:");
    eventually(Duration::from_secs(10), "the taker listed", || {
        let (redis, directory) = (&redis, &directory);
        async move {
            raw(redis, vec!["HEXISTS", directory, "taker"]).await == Ok(Value::Integer(1))
        }
    })
    .await;

    // 64 callers ask the accounts without pause: (started, ended, answer).
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for c in 0..64 {
        let (client, stop, urn) = (client.clone(), stop.clone(), accounts[c % ACCOUNTS].clone());
        callers.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let result = client.ask(urn.as_str(), Get).timeout(TIMEOUT).await;
                calls.push((at, Instant::now(), result));
            }
            calls
        }));
    }
    eventually(Duration::from_secs(10), "the callers answered", || {
        let client = client.clone();
        let urn = accounts[0].clone();
        async move { client.ask(urn.as_str(), Get).timeout(TIMEOUT).await == Ok(ITS_COUNT) }
    })
    .await;

    peer.freeze().await;
    // Past its lease, the taker moves the requests queued for it and takes their URN keys.
    eventually(
        Duration::from_secs(20),
        "every account given to the taker",
        || {
            let (redis, ns, accounts) = (&redis, &ns, &accounts);
            async move {
                holders(redis, ns, accounts)
                    .await
                    .iter()
                    .all(|h| h == "taker")
            }
        },
    )
    .await;
    // The takeover recorded each key it gave away in the holder's record, still whole.
    let record = format!("{ns}:sys:holder:given");
    let recorded = raw(&redis, vec!["SMEMBERS", &record]).await.unwrap();
    let recorded: Vec<String> = recorded
        .into_array()
        .iter()
        .filter_map(Value::as_string)
        .collect();
    for urn in &accounts {
        assert!(recorded.contains(urn), "{urn} recorded: {recorded:?}");
    }
    assert_eq!(
        recorded.len(),
        ACCOUNTS + 1,
        "the accounts and the mark: {recorded:?}"
    );
    let sets_before = sets_run(&redis).await;
    peer.signal(libc::SIGCONT);
    let thawed = Instant::now();
    // Until it serves again, then 3 s more.
    let served_since = serves_again(&client, thawed).await;
    let sets = sets_run(&redis).await - sets_before;
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for caller in callers {
        calls.extend(
            tokio::time::timeout(TIMEOUT + MARGIN * 4, caller)
                .await
                .expect("a caller ends within an ask's timeout")
                .unwrap(),
        );
    }
    let activations = peer.activations().await;
    let held_after = holders(&redis, &ns, &accounts).await;
    let _ = std::fs::remove_file(&notes);
    let Some(served_at) = served_since else {
        peer.kill().await;
        panic!("the holder did not serve again for 3 s within {RECOVERY:?} of its thaw");
    };
    // Killed, not stopped: its graceful shutdown (40,000 actors, debug build) may be cut at
    // its bound on a loaded machine, which is not what this test is about.
    peer.kill().await;
    taker.shutdown().await.unwrap();

    let late: Vec<_> = calls
        .iter()
        .filter(|(at, end, _)| *end - *at > TIMEOUT + MARGIN)
        .collect();
    assert!(
        late.is_empty(),
        "calls returned past their timeout: {late:?}"
    );
    // The holder learned of every account it lost (and stopped its activation), and took
    // none back.
    for urn in &accounts {
        assert!(
            !activations.contains(urn),
            "{urn}: still activated in the holder ({activations:?})"
        );
    }
    assert!(held_after.iter().all(|h| h == "taker"), "{held_after:?}");
    // No call sent after the thaw was answered by an activation the holder lost.
    let stale: Vec<_> = calls
        .iter()
        .filter(|(at, _, r)| *at > thawed && *r == Ok(ITS_COUNT))
        .collect();
    assert!(
        stale.is_empty(),
        "answered by the holder's lost activations after the thaw: {}",
        stale.len()
    );
    // Its other 40,000 keys were not claimed again (a pass over every key is 40,000 `SET`s).
    assert!(
        sets < BULK as u64 / 4,
        "{sets} SETs in Redis from the thaw to the holder serving again for 3 s"
    );
    let after_thaw = calls.iter().filter(|(at, _, _)| *at > thawed).count();
    println!(
        "    served again {:?} after the thaw; {sets} SETs in Redis meanwhile; {} calls ({after_thaw} after the thaw), {} failed",
        served_at - thawed,
        calls.len(),
        calls.iter().filter(|(_, _, r)| r.is_err()).count()
    );
}
