//! A serving process killed (SIGKILL) or frozen (SIGSTOP) past its lease: accepted tells
//! survive, a URN taken over is not served by the frozen one, what a paused process read is
//! handed on.

use super::*;

/// a tell is acknowledged only once handled, so a SIGKILL loses none.
pub(crate) async fn accepted_tells_survive_a_sigkill_of_the_serving_process() {
    let config = config("sigkill-tells");
    let path = temp_file("sigkill");
    let client = ProxyClient::connect(&config).await.unwrap();
    let peer = Peer::serve(&config, "svc", &["notes"], &path, 2_000).await;
    const TOTAL: u64 = 600;
    for i in 0..TOTAL {
        client.tell("notes", Note(i)).await.unwrap();
    }
    // Every tell is in Redis now; kill the server while it is part way through them.
    eventually(Duration::from_secs(20), "some notes handled", || {
        let path = path.clone();
        async move { notes(&path).len() >= 100 }
    })
    .await;
    peer.kill().await;
    let before_restart = notes(&path).len() as u64;
    assert!(
        before_restart < TOTAL,
        "the kill came too late to test anything"
    );

    // The next process of the same system handles what the dead one had not finished.
    let peer = Peer::serve(&config, "svc", &["notes"], &path, 2_000).await;
    eventually(
        Duration::from_secs(30),
        "every accepted tell handled",
        || {
            let path = path.clone();
            async move { notes(&path).len() as u64 == TOTAL }
        },
    )
    .await;
    let seen = notes(&path);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..TOTAL).collect::<Vec<_>>()
    );
    // At least once: the few in the killed process's hands may be handled twice.
    assert!(duplicates <= 64, "{duplicates} duplicates");
    peer.stop().await;
    let _ = std::fs::remove_file(&path);
}

/// Deterministically: a tell that reaches a system which knows another system holds
/// the URN (a stale client wrote it into the wrong stream) is forwarded to the holder, never
/// dropped; an ask there is answered `NotOwner`.
pub(crate) async fn a_tell_in_the_wrong_stream_is_forwarded_to_the_urns_holder() {
    let config = config("wrong-stream");
    let first = ActorSystem::new("first");
    let holder = first
        .build(Counter::default())
        .urn("dup")
        .spawn()
        .await
        .unwrap();
    let second = ActorSystem::new("second");
    let loser = second
        .build(Counter::default())
        .urn("dup")
        .spawn()
        .await
        .unwrap();
    let p1 = start_proxy(&first, &config).await.unwrap();
    let p2 = start_proxy(&second, &config).await.unwrap();
    assert_eq!(p2.conflicts(), vec![("dup".to_owned(), "first".to_owned())]);
    // A tell (no reply address) of `Add(1)` (bincode: the varint 1) into the second's stream.
    let redis = raw_client(&config).await;
    let stream = format!("{}:sys:second:req", config.namespace);
    let added = raw(
        &redis,
        vec![
            "XADD",
            &stream,
            "NOMKSTREAM",
            "*",
            "v",
            "1",
            "urn",
            "dup",
            "msg",
            "test.Add",
            "ttl",
            "10000",
            "codec",
            "bincode",
            "body",
            "\u{1}",
        ],
    )
    .await;
    assert!(added.is_ok_and(|id| !id.is_null()));
    let holder_dyn = holder.to_dyn();
    eventually(
        Duration::from_secs(10),
        "the holder to handle the forwarded tell",
        || {
            let holder = holder_dyn.clone();
            async move { holder.ask(Get).await == Ok(1) }
        },
    )
    .await;
    assert_eq!(loser.to_dyn().ask(Get).await, Ok(0));
    p2.shutdown().await.unwrap();
    p1.shutdown().await.unwrap();
}

/// A serving process frozen past its lease, and replaced meanwhile by a new process of the
/// same system id (a restart by a supervisor that took it for dead): once it runs again, what
/// it reads before it sees it was replaced goes on to the new process. No tell accepted is
/// lost (neither left pending where nobody reads) and no ask fails (the URN still names the
/// system, so an ask answered "not the owner" would end `UnknownUrn`).
pub(crate) async fn a_paused_process_replaced_by_its_own_system_hands_on_what_it_reads() {
    let lease = Duration::from_millis(1_500);
    let mut config = config("same-system");
    config.lease_ttl = lease;
    config.ask_timeout = Duration::from_secs(20);
    let old_notes = temp_file("same-old");
    let new_notes = temp_file("same-new");
    let ms = lease.as_millis() as u64;
    let old = Peer::serve(&config, "alpha", &["counter"], &old_notes, ms).await;
    let client = ProxyClient::connect(&config).await.unwrap();
    client.ask("counter", Note(0)).await.unwrap();
    old.freeze().await;
    // Starts once the frozen one's lease lapsed.
    let new = Peer::serve(&config, "alpha", &["counter"], &new_notes, ms).await;
    // Four senders at full speed, a tell and an ask in turn, while the old process runs
    // again: it reads some of them before its next renewal tells it it was replaced.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (client, next, stop) = (client.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sent = if n % 2 == 0 {
                        client
                            .tell("counter", Note(n))
                            .await
                            .map_err(|e| e.to_string())
                    } else {
                        client
                            .ask("counter", Note(n))
                            .await
                            .map_err(|e| e.to_string())
                    };
                    if let Err(e) = sent {
                        failed.push((n, e));
                    }
                }
                failed
            })
        })
        .collect();
    let sent = |n: u64| {
        let next = next.clone();
        move || {
            let next = next.clone();
            async move { next.load(std::sync::atomic::Ordering::Relaxed) > n }
        }
    };
    eventually(Duration::from_secs(20), "some sent", sent(200)).await;
    old.signal(libc::SIGCONT);
    // Past a lease and a half of sending after it woke (it renews every third of a lease).
    let woke = next.load(std::sync::atomic::Ordering::Relaxed);
    eventually(Duration::from_secs(30), "more sent", sent(woke + 1_500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failed = Vec::new();
    for sender in senders {
        failed.extend(
            tokio::time::timeout(Duration::from_secs(30), sender)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(failed.is_empty(), "sends failed: {failed:?}");
    let total = next.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut all: HashSet<u64> = notes(&old_notes).into_keys().collect();
        all.extend(notes(&new_notes).into_keys());
        let missing: Vec<u64> = (0..total).filter(|n| !all.contains(n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never handled: {missing:?} (even numbers are tells)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    old.kill().await;
    new.stop().await;
}

/// a process frozen past its lease must not serve the URN another system took.
pub(crate) async fn a_process_paused_past_its_lease_does_not_serve_a_urn_taken_over() {
    let lease = Duration::from_millis(1_500);
    let mut config = config("sigstop");
    config.lease_ttl = lease;
    config.resolve_cache_ttl = Duration::from_millis(100);
    let old_notes = temp_file("sigstop-old");
    let old = Peer::serve(
        &config,
        "old",
        &["dup"],
        &old_notes,
        lease.as_millis() as u64,
    )
    .await;
    let client = ProxyClient::connect(&config).await.unwrap();
    // A client whose resolution goes stale: it keeps sending to the old owner's stream.
    let mut stale_config = config.clone();
    stale_config.resolve_cache_ttl = Duration::from_secs(120);
    let stale = ProxyClient::connect(&stale_config).await.unwrap();
    for i in 0..20 {
        stale.tell("dup", Note(i)).await.unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "the old owner handled the first tells",
        || {
            let path = old_notes.clone();
            async move { notes(&path).len() == 20 }
        },
    )
    .await;

    // A second system wants the URN; it gets it only once the old owner's lease lapses.
    let new_notes = temp_file("sigstop-new");
    let new = Peer::serve(
        &config,
        "new",
        &["dup"],
        &new_notes,
        lease.as_millis() as u64,
    )
    .await;
    old.freeze().await;
    let redis = raw_client(&config).await;
    let urn_key = format!("{}:urn:dup", config.namespace);
    eventually(
        Duration::from_secs(15),
        "the new system to own the URN",
        || {
            let redis = redis.clone();
            let key = urn_key.clone();
            async move { raw(&redis, vec!["GET", &key]).await.ok() == Some(Value::from("new")) }
        },
    )
    .await;
    // Tells sent while the old owner is frozen: into its stream (a stale resolution) and
    // into the new owner's.
    for i in 20..220 {
        if i % 2 == 0 {
            stale.tell("dup", Note(i)).await.unwrap();
        } else {
            client.tell("dup", Note(i)).await.unwrap();
        }
    }
    let old_stream = format!("{}:sys:old:req", config.namespace);
    let queued = raw(&redis, vec!["XLEN", &old_stream]).await.unwrap();
    assert!(
        queued.as_u64().is_some_and(|n| n >= 100),
        "the stale client's tells wait in the old owner's stream: {queued:?}"
    );
    old.signal(libc::SIGCONT);
    // After it wakes: every one of those tells is handled, by the new owner only.
    // Polled (the notes are files written by other processes); on failure, say which tells
    // are missing and who handled what.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut all: HashSet<u64> = notes(&old_notes).into_keys().collect();
        all.extend(notes(&new_notes).into_keys());
        if all.len() == 220 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let mut missing: Vec<u64> = (0..220).filter(|n| !all.contains(n)).collect();
            missing.sort_unstable();
            let old_xlen = raw(&redis, vec!["XLEN", &old_stream]).await;
            panic!(
                "tells never handled: {missing:?}; old owner's stream XLEN {old_xlen:?}; old handled {:?}",
                notes(&old_notes)
                    .into_keys()
                    .filter(|n| *n >= 20)
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let handled_by_old: Vec<u64> = notes(&old_notes).into_keys().filter(|n| *n >= 20).collect();
    assert!(
        handled_by_old.is_empty(),
        "the paused owner served {handled_by_old:?}"
    );
    // And asks: the old owner answers NotOwner, the client resolves again.
    assert_eq!(client.ask("dup", Note(999)).await, Ok(()));
    assert!(!notes(&old_notes).contains_key(&999));
    old.kill().await;
    new.stop().await;
    let _ = std::fs::remove_file(&old_notes);
    let _ = std::fs::remove_file(&new_notes);
}
