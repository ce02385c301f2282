use super::layout::ChangesIn;
use super::*;
use crate::config::ProxyConfig;

/// A snapshot too big for one value is published shrunk, saying what it left out.
#[tokio::test]
async fn a_snapshot_over_the_limit_is_shrunk_to_fit() {
    struct Idle;
    impl conclib_core::Actor for Idle {}
    let system = conclib_core::ActorSystem::new("big");
    system.spawn(Idle).await.unwrap();
    let mut snapshot = system.snapshot();
    let mut actor = snapshot.actors[0].clone();
    actor.last_error = Some("x".repeat(1_000));
    snapshot.actors = vec![actor; 10_000]; // about 10 MB of JSON
    let published = PublishedSystem {
        system_id: "big".into(),
        interval_ms: 1_000,
        proxy: Default::default(),
        snapshot,
        groups: Vec::new(),
        persistence: crate::persistence::Persistence::default(),
        topics: None,
    };
    let json = fitted_json(&published).unwrap();
    assert!(json.len() <= MAX_SNAPSHOT_BYTES, "{} bytes", json.len());
    let back: PublishedSystem = serde_json::from_str(&json).unwrap();
    assert!(
        back.snapshot.actors.len() > 1_000,
        "{}",
        back.snapshot.actors.len()
    );
    assert_eq!(
        back.snapshot.actors.len() + back.snapshot.omitted_actors,
        10_000
    );
    // Small enough: as it was.
    let small = PublishedSystem {
        snapshot: system.snapshot(),
        ..published
    };
    assert_eq!(
        fitted_json(&small).unwrap(),
        serde_json::to_string(&small).unwrap()
    );
}

/// A published system around `snapshot`.
fn published(snapshot: SystemSnapshot) -> PublishedSystem {
    PublishedSystem {
        system_id: "many".into(),
        interval_ms: 1_000,
        proxy: Default::default(),
        snapshot,
        groups: Vec::new(),
        persistence: crate::persistence::Persistence::default(),
        topics: None,
    }
}

/// A base too big for one value is published in chunks and read back whole with its
/// changes (figures changed, actors gone and new); a reader keeps the base it read, and
/// one asking for another snapshot's actors gets `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_in_chunks_and_its_changes_read_back_whole() {
    let base = ProxyConfig::default().with_namespace("snap-others");
    let daemon = crate::daemon::start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let reader = SnapshotReader::connect(&config).await.unwrap();

    struct Idle;
    impl conclib_core::Actor for Idle {}
    let system = conclib_core::ActorSystem::new("many");
    system.build(Idle).urn("idle:0").spawn().await.unwrap();
    let mut snapshot = system.snapshot_first(0);
    let template = snapshot.others[0].clone();
    // Many, with long URNs: several chunks.
    let briefs: Vec<ActorBrief> = (0..30_000u64)
        .map(|n| ActorBrief {
            id: 1_000 + 2 * n,
            urn: Some(format!("a-rather-long-urn-for-a-session:{n:08}")),
            mailbox_len: (n % 7) as usize,
            handled: n * 3,
            rate: (n % 100) as f64 / 4.0,
            errors: n % 2,
            state: if n % 5 == 0 {
                ActorState::Stopping
            } else {
                ActorState::Running
            },
            ..template.clone()
        })
        .collect();
    snapshot.others.clear();
    snapshot.omitted_actors = briefs.len();
    let taken_at = snapshot.taken_at_ms;
    let chunks = base_chunks(&briefs, taken_at).unwrap();
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| c.len() <= OTHERS_CHUNK_BYTES));
    let out = BriefsOut {
        base: Some(chunks),
        changes: changes_json(&[], &[], taken_at, taken_at).unwrap(),
    };
    let ttl = Duration::from_secs(30);
    let first = published(snapshot);
    publish(&reader.client, &reader.keys, &first, Some(out), ttl, 1)
        .await
        .unwrap();
    let systems = reader.systems().await.unwrap();
    assert_eq!(systems.len(), 1);
    assert_eq!(systems[0].snapshot, first.snapshot);
    let read = reader.others("many", taken_at).await.unwrap();
    assert!(read.as_ref() == Some(&briefs), "the base read back");
    assert_eq!(
        reader.others("many", taken_at + 1).await.unwrap(),
        None,
        "another snapshot's"
    );

    // Changes: two actors' figures, one gone, one new between two others and one after.
    let mut expected = briefs.clone();
    expected[3].handled += 1;
    expected[29_000].errors += 1;
    let gone = expected.remove(10).id;
    let new = |id: u64| ActorBrief {
        id,
        ..template.clone()
    };
    expected.insert(20, new(expected[19].id + 1));
    expected.push(new(1_000_000));
    let changed: Vec<ActorBrief> = expected
        .iter()
        .filter(|e| !briefs.contains(e))
        .cloned()
        .collect();
    assert_eq!(changed.len(), 4);
    let mut later = first.clone();
    later.snapshot.taken_at_ms += 1_000;
    let out = BriefsOut {
        base: None,
        changes: changes_json(&changed, &[gone], taken_at, later.snapshot.taken_at_ms).unwrap(),
    };
    publish(&reader.client, &reader.keys, &later, Some(out), ttl, 2)
        .await
        .unwrap();
    // (Compared with `==`: a difference would print 30,000 actors.)
    let now = later.snapshot.taken_at_ms;
    let read = reader.others("many", now).await.unwrap();
    assert!(read.as_ref() == Some(&expected), "changes not applied");
    assert_eq!(reader.others("many", taken_at).await.unwrap(), None);

    // The base is read once: gone from Redis, this reader still has it; a new one not.
    for k in 0..3 {
        let key = brief_key(&reader.keys, "many", k);
        conn::call(&reader.client, keyed("DEL"), vec![owned(key)])
            .await
            .unwrap();
    }
    let read = reader.others("many", now).await.unwrap();
    assert!(read == Some(expected), "the base kept");
    let fresh = SnapshotReader::connect(&config).await.unwrap();
    assert_eq!(
        fresh
            .others("many", later.snapshot.taken_at_ms)
            .await
            .unwrap(),
        None
    );

    // Withdrawn: nothing to read.
    withdraw(&reader.client, &reader.keys, "many")
        .await
        .unwrap();
    assert!(reader.systems().await.unwrap().is_empty());
    assert_eq!(
        fresh
            .others("many", later.snapshot.taken_at_ms)
            .await
            .unwrap(),
        None
    );
    drop((reader, fresh));
    daemon.shutdown().unwrap();
}

/// The changes a proxy publishes list only the actors whose figures changed since the
/// base: none while every actor is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_changed_since_the_base_is_published() {
    use conclib_core::{Context, Handler, Message};
    struct Idle;
    impl conclib_core::Actor for Idle {}
    struct Poke;
    impl Message for Poke {
        type Response = ();
        type Error = String;
    }
    impl Handler<Poke> for Idle {
        async fn handle(&mut self, _: Poke, _: &mut Context<Self>) -> Result<(), String> {
            Ok(())
        }
    }
    let system = conclib_core::ActorSystem::new("changes");
    let mut actors = Vec::new();
    for n in 0..40 {
        actors.push(
            system
                .build(Idle)
                .urn(format!("idle:{n}"))
                .spawn()
                .await
                .unwrap(),
        );
    }
    let changes_of = |out: &BriefsOut| -> ChangesIn { serde_json::from_str(&out.changes).unwrap() };
    let mut briefs = Briefs::default();
    let (snapshot, out) = briefs.take(&system, 5).unwrap();
    let out = out.expect("35 actors not in full");
    assert_eq!(snapshot.actors.len(), 5);
    assert!(snapshot.others.is_empty());
    let base: Vec<ChunkIn> = out
        .base
        .iter()
        .flatten()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    assert_eq!(base.len(), 1);
    assert_eq!(base[0].actors.len(), 40, "every actor, those in full too");
    let name = base[0].taken_at_ms;
    assert_eq!(changes_of(&out).base, name);
    assert!(changes_of(&out).actors.is_empty());

    // Idle: no new base, no changes.
    let (_, out) = briefs.take(&system, 5).unwrap();
    let out = out.unwrap();
    assert!(out.base.is_none());
    let changes = changes_of(&out);
    assert_eq!((changes.base, changes.actors.len()), (name, 0));
    assert!(changes.gone.is_empty());

    // One busy, one stopped, one new: in the changes (the handled count is in once the
    // runner counted it, right after the answer: look again, bounded).
    actors[7].ask(Poke).await.unwrap();
    actors[9].stop();
    actors[9].wait_for_stop().await;
    let new = system.spawn(Idle).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out) = briefs.take(&system, 5).unwrap();
        let out = out.unwrap();
        assert!(out.base.is_none());
        let changes = changes_of(&out);
        let mut ids: Vec<u64> = changes.actors.iter().map(|r| r.0).collect();
        ids.sort_unstable();
        if ids == [actors[7].id().as_u64(), new.id().as_u64()] {
            assert_eq!(changes.gone, [actors[9].id().as_u64()]);
            break;
        }
        assert!(Instant::now() < deadline, "changes: {ids:?}");
        tokio::task::yield_now().await;
    }
}
