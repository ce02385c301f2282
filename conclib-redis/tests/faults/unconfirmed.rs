//! A lease that cannot be confirmed: at `Durability::Replicas` a renewal counts only once a
//! replica holds it, so with the primary's one replica frozen (SIGSTOP) the serving system's
//! lease runs out by its own clock while its URN key still names it, as after the promotion
//! of a replica that has not taken the last renewals yet. Its asks must wait for the renewal
//! (answered `NotOwner`, a client would look the same system up again and end with
//! `UnknownUrn`, a URN unknown that is not).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use conclib_redis::Durability;

use crate::common::system_with;

use super::*;

pub(crate) async fn an_ask_while_the_lease_is_unconfirmed_waits_for_it_never_unknown_urn() {
    const CALLERS: usize = 64;
    const TIMEOUT: Duration = Duration::from_millis(2000);
    const MARGIN: Duration = Duration::from_millis(250);
    let pair = tokio::task::spawn_blocking(conclib_testkit::redis_ha::Replicated::start)
        .await
        .unwrap();
    let client_config = ProxyConfig::default()
        .with_namespace("unconfirmed")
        .with_url(pair.url())
        .with_ask_timeout(TIMEOUT);
    let mut serving = client_config.clone();
    serving.lease_ttl = Duration::from_millis(1000);
    serving.command_timeout = Duration::from_secs(1);
    serving.durability = Durability::Replicas {
        n: 1,
        timeout: Duration::from_millis(200),
    };
    let system = system_with("unconfirmed", &["held"]).await;
    let proxy = start_proxy(&system, &serving).await.unwrap();
    let client = ProxyClient::connect(&client_config).await.unwrap();
    eventually(Duration::from_secs(10), "the system answers", || async {
        client.ask("held", Get).await.is_ok()
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let thawed = Arc::new(AtomicBool::new(false));
    let (timeouts, back) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (client, stop, thawed) = (client.clone(), stop.clone(), thawed.clone());
            let (timeouts, back) = (timeouts.clone(), back.clone());
            tokio::spawn(async move {
                let (mut ok, mut other, mut late) = (0u64, Vec::new(), 0u64);
                let mut served_since_thaw = false;
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    let after_thaw = thawed.load(Ordering::Relaxed);
                    match client.ask("held", Get).await {
                        Ok(_) => {
                            ok += 1;
                            if after_thaw && !served_since_thaw {
                                served_since_thaw = true;
                                back.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(AskError::Timeout(_) | AskError::Unavailable(_)) => {
                            timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => other.push(e.to_string()),
                    }
                    if began.elapsed() > TIMEOUT + MARGIN {
                        late += 1;
                    }
                }
                (ok, other, late)
            })
        })
        .collect();

    // Frozen until the callers have waited out three asks each: the lease ran out by the
    // system's clock, and its asks waited rather than being answered (before, a few asks a
    // second got past the system's re-check of its lease, each answered `NotOwner`).
    pair.servers[1].signal(libc::SIGSTOP);
    eventually(
        Duration::from_secs(30),
        "asks waiting while the lease is unconfirmed",
        || async { timeouts.load(Ordering::Relaxed) >= 3 * CALLERS as u64 },
    )
    .await;
    pair.servers[1].signal(libc::SIGCONT);
    thawed.store(true, Ordering::Relaxed);
    eventually(
        Duration::from_secs(30),
        "every caller served once the replica runs again",
        || async { back.load(Ordering::Relaxed) >= CALLERS as u64 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut other, mut late) = (0, Vec::new(), 0);
    for caller in callers {
        let (o, e, l) = tokio::time::timeout(TIMEOUT + MARGIN * 4, caller)
            .await
            .expect("a caller returns within its ask's bound")
            .unwrap();
        ok += o;
        other.extend(e);
        late += l;
    }
    eprintln!(
        "unconfirmed lease, {CALLERS} callers: {ok} ok, {} timed out or unavailable, {} other, {late} late",
        timeouts.load(Ordering::Relaxed),
        other.len()
    );
    assert!(other.is_empty(), "errors other than a wait: {other:?}");
    assert_eq!(late, 0, "asks past their timeout and {MARGIN:?}");
    let _ = tokio::time::timeout(Duration::from_secs(10), proxy.shutdown()).await;
    drop(pair);
}
