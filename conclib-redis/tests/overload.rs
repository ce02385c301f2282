//! Overload without collapse (the crate docs, "Overload"), against a real redis-server:
//! pending limits per URN, per pattern and per system refuse with `Overloaded` (limit and
//! depth) without waiting, tells past a limit are dropped and counted, the activation cap
//! evicts (each evicted activation saved once, its state intact when asked again) and can
//! be changed at run time, memory shedding passivates activations.
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::actors::*;
use common::{config, eventually};
use conclib_core::{Actor, ActorSystem, AskError, Context, ExposedMessage, RequestEnvelope};
use conclib_redis::{
    ProxyClient,
    overload::{MemoryLimit, MemoryShedding},
    scale::{Activation, StateStore, StoreError},
    start_proxy,
};

/// 64 callers retrying without pause on one URN whose limit is 4: refusals carry the limit
/// and the depth, come without waiting for the mailbox, and no call outlives its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_callers_past_a_urns_limit_are_refused_overloaded_in_time() {
    let mut config = config("hot");
    config.overload.max_pending_per_urn = Some(4);
    let system = ActorSystem::new("hot");
    system
        .build(Counter::default())
        .urn("hot")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let timeout = Duration::from_secs(2);
    let margin = Duration::from_millis(250);
    let until = Instant::now() + Duration::from_millis(1500);
    let mut callers = Vec::new();
    for _ in 0..64 {
        let client = client.clone();
        callers.push(tokio::spawn(async move {
            let (mut ok, mut refused, mut worst) = (0u64, 0u64, Duration::ZERO);
            while Instant::now() < until {
                let t = Instant::now();
                let r = client.ask("hot", Sleep(20)).timeout(timeout).await;
                worst = worst.max(t.elapsed());
                match r {
                    Ok(_) => ok += 1,
                    Err(AskError::Overloaded { limit, depth }) => {
                        assert_eq!(limit, 4);
                        assert!(depth >= limit, "refused at depth {depth}");
                        refused += 1;
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            (ok, refused, worst)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for c in callers {
        let (o, r, worst) = c.await.unwrap();
        assert!(worst <= timeout + margin, "a call took {worst:?}");
        ok += o;
        refused += r;
    }
    assert!(ok > 0, "none admitted");
    assert!(refused > ok, "{refused} refused, {ok} admitted");
    let stats = proxy.stats();
    assert_eq!(stats.overloaded, refused);
    assert_eq!(stats.rejected, 0, "overload is not counted as rejected");
    // Once the load stops, the URN answers normally.
    assert_eq!(client.ask("hot", Get).await.unwrap(), 0);
    assert_eq!(proxy.stats().pending, 0);
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}

/// Tells past a URN's limit are dropped and counted: what was admitted plus what was
/// dropped is what was sent. A URN's own limit beats the config's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_past_the_limit_are_dropped_and_counted() {
    let mut config = config("tells");
    config.overload.max_pending_per_urn = Some(1000);
    let system = ActorSystem::new("tells");
    system
        .build(Counter::default())
        .urn("c")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy.set_max_pending("c", Some(1));
    let client = ProxyClient::connect(&config).await.unwrap();
    // Holds the URN's one place for 400 ms.
    let hold = {
        let client = client.clone();
        tokio::spawn(async move { client.ask("c", Sleep(400)).await })
    };
    eventually(Duration::from_secs(5), "the hold to be pending", || {
        let pending = proxy.stats().pending;
        async move { pending == 1 }
    })
    .await;
    for _ in 0..20 {
        client.tell("c", Add(1)).await.unwrap();
    }
    hold.await.unwrap().unwrap();
    eventually(Duration::from_secs(5), "every tell read", || {
        let s = proxy.stats();
        async move { s.received >= 21 && s.pending == 0 }
    })
    .await;
    let dropped = proxy.stats().overloaded_tells;
    assert!(dropped >= 1, "no tell dropped");
    let added = client.ask("c", Get).await.unwrap();
    assert_eq!(added + dropped, 20, "{added} added, {dropped} dropped");
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}

/// A pattern's limit counts its URNs together and says so in the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patterns_limit_refuses_with_its_scope() {
    let config = config("pattern");
    let system = ActorSystem::new("pattern");
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy
        .activate("slow:{id}", |_a: Activation| async {
            Ok::<_, String>(Counter::default())
        })
        .max_pending(3)
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let asks: Vec<_> = (0..16)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.ask(format!("slow:{i}"), Sleep(300)).await })
        })
        .collect();
    let mut refused = 0;
    for a in asks {
        match a.await.unwrap() {
            Ok(_) => {}
            Err(AskError::Overloaded { limit, depth }) => {
                assert_eq!(limit, 3);
                assert!(depth >= 3);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(refused >= 1, "none refused");
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}

/// An activation that counts its saves (by URN) and saves in `on_stop` only.
struct Saver {
    urn: String,
    count: u64,
    store: StateStore,
    saves: Arc<Mutex<HashMap<String, u32>>>,
}

impl Actor for Saver {
    const REMOTE: &'static [ExposedMessage] =
        &[ExposedMessage::of::<Add>(), ExposedMessage::of::<Get>()];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<Add>() {
            Ok((Add(n), r)) => {
                self.count += n;
                return r.respond(Ok(self.count));
            }
            Err(req) => req,
        };
        match req.extract::<Get>() {
            Ok((Get, r)) => r.respond(Ok(self.count)),
            Err(req) => req.reject(),
        }
    }

    async fn on_stop(
        &mut self,
        _ctx: &mut Context<Self>,
        _reason: &conclib_core::StopReason,
    ) -> Result<(), conclib_core::BoxError> {
        if self.store.save(&self.count).await.is_ok() {
            *self
                .saves
                .lock()
                .unwrap()
                .entry(self.urn.clone())
                .or_default() += 1;
        }
        Ok(())
    }
}

async fn open_saver(
    a: Activation,
    saves: Arc<Mutex<HashMap<String, u32>>>,
) -> Result<Saver, StoreError> {
    let count = a.store().load::<u64>().await?.unwrap_or(0);
    Ok(Saver {
        urn: a.urn().to_owned(),
        count,
        store: a.into_store(),
        saves,
    })
}

/// Cap 10, 25 URNs activated: the cap evicts the excess, each evicted activation saved
/// exactly once, its state intact when asked again; the cap lowered at run time evicts
/// down to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activation_cap_evicts_each_once_with_its_state_and_changes_at_run_time() {
    let mut config = config("cap");
    config.overload.activation_cap = Some(10);
    let system = ActorSystem::new("cap");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let saves: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let s = saves.clone();
    proxy
        .activate("acct:{id}", move |a| open_saver(a, s.clone()))
        .never_passivate()
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let urns: Vec<String> = (0..25).map(|i| format!("acct:{i}")).collect();
    for urn in &urns {
        assert_eq!(client.ask(urn.as_str(), Add(1)).await.unwrap(), 1);
    }
    eventually(Duration::from_secs(10), "the cap to hold", || {
        let live = proxy.activations().len();
        async move { live <= 10 }
    })
    .await;
    // Every activation evicted saved once; those alive not yet.
    eventually(Duration::from_secs(10), "the evicted to have saved", || {
        let evicted = proxy.stats().evicted;
        let saved: u32 = saves.lock().unwrap().values().sum();
        async move { evicted >= 15 && u64::from(saved) == evicted }
    })
    .await;
    let live = proxy.activations();
    for (urn, n) in saves.lock().unwrap().iter() {
        assert_eq!(*n, 1, "{urn} saved {n} times");
        assert!(!live.contains(urn), "{urn} saved while alive");
    }
    // Asked again: each has its count, re-activated from its saved state.
    for urn in &urns {
        assert_eq!(client.ask(urn.as_str(), Get).await.unwrap(), 1, "{urn}");
    }
    // Lowered at run time: evicted down to it at once.
    proxy.set_activation_cap(Some(3));
    assert_eq!(proxy.activation_cap(), Some(3));
    eventually(Duration::from_secs(10), "the lower cap to hold", || {
        let live = proxy.activations().len();
        async move { live <= 3 }
    })
    .await;
    for urn in &urns {
        assert_eq!(client.ask(urn.as_str(), Get).await.unwrap(), 1, "{urn}");
    }
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}

/// Memory above its shedding threshold (a limit of one byte: always above) passivates the
/// least recently used activations, each saving once, counted as shed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_above_its_threshold_sheds_activations() {
    let mut config = config("shed");
    config.overload.memory = Some(MemoryShedding::new(MemoryLimit::Bytes(1)));
    let system = ActorSystem::new("shed");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let saves: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let s = saves.clone();
    proxy
        .activate("acct:{id}", move |a| open_saver(a, s.clone()))
        .never_passivate()
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    for i in 0..8 {
        client.ask(format!("acct:{i}"), Add(5)).await.unwrap();
    }
    eventually(Duration::from_secs(10), "every activation shed", || {
        let (live, shed) = (proxy.activations().len(), proxy.stats().shed);
        async move { live == 0 && shed >= 8 }
    })
    .await;
    assert_eq!(proxy.stats().evicted, 0);
    for (urn, n) in saves.lock().unwrap().iter() {
        assert_eq!(*n, 1, "{urn} saved {n} times");
    }
    assert_eq!(client.ask("acct:3", Get).await.unwrap(), 5);
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}

/// A pattern's limit per URN: a second ask while the first runs is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patterns_limit_per_urn_refuses_the_second_pending() {
    let config = config("perurn");
    let system = ActorSystem::new("perurn");
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy
        .activate("busy:{id}", |_a: Activation| async {
            Ok::<_, String>(Counter::default())
        })
        .max_pending_per_urn(1)
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let hold = {
        let client = client.clone();
        tokio::spawn(async move { client.ask("busy:1", Sleep(800)).await })
    };
    eventually(Duration::from_secs(5), "the hold to be pending", || {
        let pending = proxy.stats().pending;
        async move { pending == 1 }
    })
    .await;
    assert!(matches!(
        client.ask("busy:1", Get).await,
        Err(AskError::Overloaded { limit: 1, depth: 1 })
    ));
    hold.await.unwrap().unwrap();
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
