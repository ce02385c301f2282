//! A flood of asks on a slow actor: `MailboxFull` at once, expired asks never run, refused
//! tells counted.

use super::*;

/// A tell the proxy drops because the actor's mailbox stayed full is counted as a rejected
/// request (`ProxyStats::rejected`; the metric by status), as an ask refused so is answered.
pub(crate) async fn a_tell_refused_for_a_full_mailbox_is_counted_as_rejected() {
    let config = config("full-tells");
    let system = ActorSystem::new("full-tells");
    let (_slow, gate, started) = Slow::spawn(&system, 1).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    client.tell("slow", Work).await.unwrap();
    eventually(Duration::from_secs(10), "the first tell to start", || {
        let started = started.clone();
        async move { started.load(std::sync::atomic::Ordering::SeqCst) == 1 }
    })
    .await;
    let before = proxy.stats().rejected;
    // The actor holds the first; one more finds room in its mailbox, five do not.
    for _ in 0..6 {
        client.tell("slow", Work).await.unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "five refused tells counted",
        || {
            let rejected = proxy.stats().rejected - before;
            async move { rejected == 5 }
        },
    )
    .await;
    // The first and the queued one go through; nothing more is refused.
    for handled in 1..=2 {
        eventually(Duration::from_secs(10), "the next tell to start", || {
            let started = started.clone();
            async move { started.load(std::sync::atomic::Ordering::SeqCst) == handled }
        })
        .await;
        gate.notify_one();
    }
    assert_eq!(proxy.stats().rejected - before, 5);
    proxy.shutdown().await.unwrap();
}

/// under a flood, a full mailbox answers MailboxFull at once, and asks whose
/// deadline passed in the mailbox are never started.
pub(crate) async fn a_flood_gets_mailbox_full_at_once_and_expired_asks_never_run() {
    let config = config("flood");
    let system = ActorSystem::new("flood");
    let (slow, gate, started) = Slow::spawn(&system, 4).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let timeout = Duration::from_millis(800);
    let mut asks = Vec::new();
    for _ in 0..60 {
        let client = client.clone();
        asks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client.ask("slow", Work).timeout(timeout).await;
            (r, t.elapsed())
        }));
    }
    let (mut full, mut timed_out) = (0, 0);
    for ask in asks {
        let (result, took) = ask.await.unwrap();
        match result {
            Err(AskError::MailboxFull) => {
                full += 1;
                assert!(
                    took < timeout,
                    "MailboxFull only at the deadline ({took:?})"
                );
            }
            Err(AskError::Timeout(_)) => timed_out += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // One handler running, four queued: the rest were refused.
    assert!(full >= 50, "{full} MailboxFull, {timed_out} timeouts");
    assert_eq!(full + timed_out, 60);
    // The proxy has answered every request: refused, or timed out (the running one, and
    // the queued ones). The client's deadlines are its own clock's: the proxy's come a
    // little later, and an ask the proxy still waits for is rightly started once the gate
    // opens, so the gate opens only after the proxy has given up all of them.
    eventually(
        Duration::from_secs(10),
        "the proxy to answer 60 requests",
        || {
            let completed = proxy.stats().completed;
            async move { completed >= 60 }
        },
    )
    .await;
    // Release the actor: the queued asks' askers have all given up; none is started.
    let started_before = started.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(started_before, 1);
    gate.notify_one();
    // The probe below must find room: until the actor has taken (and skipped) the four
    // expired asks, its mailbox is full and would refuse it.
    eventually(
        Duration::from_secs(30),
        "the actor to drain its mailbox",
        || {
            let queued = slow.mailbox_len();
            async move { queued == 0 }
        },
    )
    .await;
    // A fresh ask through the proxy is answered once handled: when it returns, the
    // actor has drained its mailbox.
    // Generous bounds: a loaded CI machine once took more than 5 s here; a skipped ask that
    // was started anyway would hold the gate and fail the probe however long it waits.
    let probe = client.ask("slow", Work).timeout(Duration::from_secs(30));
    let release = async {
        // The probe's own handler waits at the gate too: open it again once it started.
        eventually(Duration::from_secs(30), "the probe to start", || {
            let started = started.clone();
            async move { started.load(std::sync::atomic::Ordering::SeqCst) >= 2 }
        })
        .await;
        gate.notify_one();
    };
    let (probe, ()) = tokio::join!(probe, release);
    assert_eq!(
        probe,
        Ok(()),
        "handlers started: {}",
        started.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert_eq!(
        started.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "asks whose deadline passed in the mailbox were started"
    );
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}

/// The wait for room counts from when Redis took the request (its entry id),
/// not from when the proxy got to it. A request already older than `full_mailbox_wait` when
/// dispatched is answered `MailboxFull` at once if the mailbox is full (not after another
/// full wait), and handled if there is room.
pub(crate) async fn a_request_older_than_the_room_wait_gets_the_room_there_is_or_mailbox_full_at_once()
 {
    let mut config = config("stale-room");
    // Far longer than the reply is waited for below: only a request refused at once is
    // answered in time.
    config.full_mailbox_wait = Duration::from_secs(60);
    let system = ActorSystem::new("stale-room");
    let (slow, gate, started) = Slow::spawn(&system, 1).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    // The mailbox filled here (told), not through the stream: the stream's next id stays
    // free for the requests below.
    let mut local = Vec::new();
    for _ in 0..2 {
        let slow = conclib_core::DynActorRef::from(&slow);
        local.push(tokio::spawn(async move {
            slow.tell_erased(
                "faults.Work",
                std::any::TypeId::of::<Work>(),
                Box::new(Work),
                conclib_core::Priority::Normal,
            )
            .await
            .is_ok()
        }));
    }
    eventually(
        Duration::from_secs(10),
        "one handler to run, one ask to wait",
        || {
            let (started, queued) = (
                started.load(std::sync::atomic::Ordering::SeqCst),
                slow.mailbox_len(),
            );
            async move { started == 1 && queued == 1 }
        },
    )
    .await;
    let redis = raw_client(&config).await;
    let stream = format!("{}:sys:stale-room:req", config.namespace);
    let reply_key = format!("{}:reply:stale-room-test", config.namespace);
    let body = conclib_redis::codec::encode_value(&conclib_redis::codec::Bincode, &Work).unwrap();
    let body = String::from_utf8(body).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Taken by Redis (its entry id) 120 s ago, twice the wait; its deadline 10 min away.
    let ask = |entry: String, id: &'static str| {
        let (redis, stream, reply_key, body) = (
            redis.clone(),
            stream.clone(),
            reply_key.clone(),
            body.clone(),
        );
        async move {
            raw(
                &redis,
                vec![
                    "XADD",
                    &stream,
                    &entry,
                    "v",
                    "1",
                    "id",
                    id,
                    "urn",
                    "slow",
                    "msg",
                    "faults.Work",
                    "ttl",
                    "600000",
                    "reply",
                    &reply_key,
                    "codec",
                    "bincode",
                    "body",
                    &body,
                ],
            )
            .await
            .unwrap();
            let popped = raw(
                &redis,
                vec!["BLMPOP", "20", "1", &reply_key, "LEFT", "COUNT", "1"],
            )
            .await
            .unwrap();
            let Value::Array(mut parts) = popped else {
                panic!("no reply within 20 s: {popped:?}")
            };
            let Some(Value::Array(frames)) = parts.pop() else {
                panic!("{parts:?}")
            };
            let frame = frames[0].as_bytes().unwrap().to_vec();
            let (id, status, _) = conclib_redis::protocol::decode_reply(&frame).unwrap();
            (id, status)
        }
    };
    // The mailbox is full: refused at once, not after another 60 s.
    let refused = ask(format!("{}-0", now_ms - 120_000), "7").await;
    assert_eq!(refused, (7, conclib_redis::Status::MailboxFull as u8));
    // It never ran; the two local asks do once the gate opens.
    gate.notify_one();
    gate.notify_one();
    for told in local {
        assert!(told.await.unwrap());
    }
    eventually(
        Duration::from_secs(10),
        "the told messages to be handled",
        || {
            let (started, queued) = (
                started.load(std::sync::atomic::Ordering::SeqCst),
                slow.mailbox_len(),
            );
            async move { started == 2 && queued == 0 }
        },
    )
    .await;
    // With room, a request as old is handled.
    let handled = ask(format!("{}-1", now_ms - 120_000), "8");
    let release = async {
        eventually(Duration::from_secs(20), "the old request to start", || {
            let started = started.load(std::sync::atomic::Ordering::SeqCst);
            async move { started == 3 }
        })
        .await;
        gate.notify_one();
    };
    let (handled, ()) = tokio::join!(handled, release);
    assert_eq!(handled, (8, conclib_redis::Status::Ok as u8));
    proxy.shutdown().await.unwrap();
}

/// Holds every `Work` until the gate opens; counts the ones it started.
struct Slow {
    gate: Arc<tokio::sync::Notify>,
    started: Arc<std::sync::atomic::AtomicU64>,
}

#[message(error = String, name = "faults.Work")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Work;

impl Slow {
    /// `slow`, with a mailbox of `room`: its ref, its gate and its count of started work.
    async fn spawn(
        system: &ActorSystem,
        room: usize,
    ) -> (
        conclib_core::ActorRef<Slow>,
        Arc<tokio::sync::Notify>,
        Arc<std::sync::atomic::AtomicU64>,
    ) {
        let gate = Arc::new(tokio::sync::Notify::new());
        let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let slow = system
            .build(Slow {
                gate: gate.clone(),
                started: started.clone(),
            })
            .urn("slow")
            .mailbox(MailboxConfig::Bounded(room))
            .spawn()
            .await
            .unwrap();
        (slow, gate, started)
    }
}

impl Actor for Slow {
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Work>()];
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        match req.extract::<Work>() {
            Ok((Work, r)) => {
                self.started
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.gate.notified().await;
                r.respond(Ok(()));
            }
            Err(req) => req.reject(),
        }
    }
}
