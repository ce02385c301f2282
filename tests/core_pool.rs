//! Pools: routing (round-robin, least loaded, key hash, custom, broadcast), back-pressure
//! policies, asks that expire in the queue, replacement after a panic, a death or a hang,
//! resizing under load with nothing lost, and a pool reached by URN.

use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

async fn promptly<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("did not finish promptly")
}

/// Answers with the id of the member that handled it.
#[message(response = ActorId)]
#[derive(Clone)]
struct Who;

/// Recorded by the member that handles it, into the shared log.
#[message]
struct Work(u64);

/// Holds the member until the gate opens.
#[message]
struct Hold(Arc<Notify>, Option<oneshot::Sender<()>>);

/// Never finishes.
#[message]
struct Hang;

#[message]
struct Explode;

#[message(response = u64)]
struct Handled;

#[actor]
struct Worker {
    log: Arc<Mutex<Vec<u64>>>,
    handled: u64,
}

#[actor]
impl Worker {
    #[handle]
    fn who(&mut self, _: Who, ctx: &mut Context<Self>) -> ActorId {
        self.handled += 1;
        ctx.id()
    }

    #[handle]
    fn work(&mut self, Work(n): Work) {
        self.handled += 1;
        self.log.lock().unwrap().push(n);
    }

    #[handle]
    async fn hold(&mut self, Hold(gate, entered): Hold) {
        if let Some(entered) = entered {
            let _ = entered.send(());
        }
        gate.notified().await;
    }

    #[handle]
    async fn hang(&mut self, _: Hang) {
        std::future::pending::<()>().await;
    }

    #[handle]
    fn explode(&mut self, _: Explode) {
        panic!("exploded");
    }

    #[handle]
    fn handled(&mut self, _: Handled) -> u64 {
        self.handled
    }
}

fn worker_factory(log: &Arc<Mutex<Vec<u64>>>) -> impl FnMut() -> Worker + Send + 'static {
    let log = log.clone();
    move || Worker {
        log: log.clone(),
        handled: 0,
    }
}

async fn pool_of(size: usize, routing: Routing) -> (ActorSystem, Pool<Worker>) {
    let system = ActorSystem::new("t");
    let log = Arc::default();
    let pool = system
        .pool(worker_factory(&log))
        .size(size)
        .routing(routing)
        .spawn()
        .await
        .unwrap();
    (system, pool)
}

/// Blocks `member` in a handler; returns the gate.
async fn hold(member: &ActorRef<Worker>) -> Arc<Notify> {
    let gate = Arc::new(Notify::new());
    let (entered, is_in) = oneshot::channel();
    member
        .tell(Hold(gate.clone(), Some(entered)))
        .await
        .unwrap();
    is_in.await.unwrap();
    gate
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let (_system, pool) = pool_of(4, Routing::RoundRobin).await;
    let mut counts: HashMap<ActorId, usize> = HashMap::new();
    for _ in 0..40 {
        *counts.entry(pool.ask(Who).await.unwrap()).or_default() += 1;
    }
    assert_eq!(counts.len(), 4);
    assert!(counts.values().all(|&n| n == 10), "{counts:?}");
}

#[tokio::test]
async fn least_loaded_avoids_a_busy_member() {
    let (_system, pool) = pool_of(3, Routing::LeastLoaded).await;
    let busy = pool.members()[0].clone();
    let gate = hold(&busy).await;
    // The busy member has one ask in flight through the pool; queue one more behind it.
    let queued = tokio::spawn({
        let busy = busy.clone();
        async move { busy.ask(Who).await }
    });
    while busy.mailbox_len() < 1 {
        tokio::task::yield_now().await;
    }
    for _ in 0..20 {
        assert_ne!(pool.ask(Who).await.unwrap(), busy.id());
    }
    gate.notify_one();
    assert_eq!(promptly(queued).await.unwrap().unwrap(), busy.id());
}

/// A member at work counts as loaded whatever put it to work: a tell, or an ask whose asker
/// gave up (neither is in the pool's in-flight count any more, nor in the queue).
#[tokio::test]
async fn least_loaded_avoids_a_member_at_work_on_a_tell_or_a_given_up_ask() {
    let (_system, pool) = pool_of(3, Routing::LeastLoaded).await;
    let members = pool.members();
    let idle_everywhere = |pool: &Pool<Worker>| {
        pool.stats()
            .members
            .iter()
            .all(|m| (m.queued, m.in_flight, m.working) == (0, 0, false))
    };
    promptly(async {
        while !idle_everywhere(&pool) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // A tell through the pool holds one member (its handler waits at the gate).
    let gate = Arc::new(Notify::new());
    let (entered, is_in) = oneshot::channel();
    pool.tell(Hold(gate.clone(), Some(entered))).await.unwrap();
    promptly(is_in).await.unwrap();
    let at_work: Vec<_> = pool
        .stats()
        .members
        .into_iter()
        .filter(|m| m.working)
        .collect();
    assert_eq!(at_work.len(), 1, "{:?}", pool.stats());
    assert_eq!(
        (at_work[0].queued, at_work[0].in_flight, at_work[0].load()),
        (0, 0, 1)
    );
    let held = at_work[0].id;
    for _ in 0..20 {
        assert_ne!(promptly(pool.ask(Who)).await.unwrap(), held);
    }
    // An ask whose asker gives up while its handler runs: the member still works on it.
    let gate2 = Arc::new(Notify::new());
    let (entered2, is_in2) = oneshot::channel();
    let given_up = tokio::spawn({
        let pool = pool.clone();
        let gate2 = gate2.clone();
        async move { pool.ask(Hold(gate2, Some(entered2))).await }
    });
    promptly(is_in2).await.unwrap();
    given_up.abort();
    let _ = given_up.await;
    let second = pool
        .stats()
        .members
        .into_iter()
        .find(|m| m.working && m.id != held)
        .expect("the given-up ask's member is at work");
    assert_eq!((second.in_flight, second.load()), (0, 1));
    for _ in 0..20 {
        let who = promptly(pool.ask(Who)).await.unwrap();
        assert!(
            who != held && who != second.id,
            "routed to a member at work"
        );
    }
    // Done with their work, both are idle again and routed to.
    gate.notify_one();
    gate2.notify_one();
    promptly(async {
        while !idle_everywhere(&pool) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut seen = HashSet::new();
    for _ in 0..30 {
        seen.insert(promptly(pool.ask(Who)).await.unwrap());
    }
    assert_eq!(seen.len(), members.len());
}

/// Many senders routing at the same moment (on two worker threads) each see what the others
/// routed: a burst of asks to held members splits evenly, asks and tells alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_counts_what_concurrent_senders_routed() {
    let (_system, pool) = pool_of(2, Routing::LeastLoaded).await;
    let members = pool.members();
    let gates = [hold(&members[0]).await, hold(&members[1]).await];
    let asks: Vec<_> = (0..40)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.ask(Who).timeout(Duration::from_secs(60)).await })
        })
        .collect();
    let queued = || members.iter().map(|m| m.mailbox_len()).collect::<Vec<_>>();
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while queued().iter().sum::<usize>() < 40 {
        assert!(std::time::Instant::now() < give_up, "queued {:?}", queued());
        tokio::task::yield_now().await;
    }
    let split = queued();
    assert!(split[0].abs_diff(split[1]) <= 2, "uneven split {split:?}");
    for stats in pool.stats().members {
        assert!(stats.working, "a held member is at work: {stats:?}");
        assert_eq!(stats.load(), (stats.queued + 1).max(stats.in_flight));
    }
    for gate in &gates {
        gate.notify_one();
    }
    for ask in asks {
        promptly(ask).await.unwrap().unwrap();
    }
}

/// A pool's entry in the system's snapshot bookkeeping goes with the pool, snapshots or not.
#[tokio::test]
async fn stopped_pools_leave_no_snapshot_entry() {
    let system = ActorSystem::new("t");
    let log = Arc::default();
    for _ in 0..20 {
        let pool = system
            .pool(worker_factory(&log))
            .size(2)
            .spawn()
            .await
            .unwrap();
        assert_eq!(system.snapshot_side_entries(), 1);
        pool.stop();
        promptly(pool.wait_for_stop()).await;
        assert_eq!(system.snapshot_side_entries(), 0);
    }
}

#[tokio::test]
async fn a_key_always_reaches_the_same_member() {
    let (_system, pool) = pool_of(4, Routing::KeyHash).await;
    let mut by_key: HashMap<String, HashSet<ActorId>> = HashMap::new();
    for round in 0..5 {
        for k in 0..16 {
            let key = format!("user-{k}");
            let who = pool.ask(Who).key(&key).await.unwrap();
            by_key.entry(key).or_default().insert(who);
            let _ = round;
        }
    }
    assert!(
        by_key.values().all(|members| members.len() == 1),
        "{by_key:?}"
    );
    let used: HashSet<ActorId> = by_key.values().flatten().copied().collect();
    assert!(used.len() >= 2, "16 keys over 4 members used {used:?}");
}

#[tokio::test]
async fn a_custom_router_decides() {
    let (_system, pool) = pool_of(
        3,
        Routing::Custom(Arc::new(|_key, loads: &[MemberLoad]| loads.len() - 1)),
    )
    .await;
    let last = pool.members()[2].id();
    for _ in 0..5 {
        assert_eq!(pool.ask(Who).await.unwrap(), last);
    }
}

#[tokio::test]
async fn broadcast_reaches_every_member_with_its_outcome() {
    let (_system, pool) = pool_of(3, Routing::RoundRobin).await;
    let outcomes = pool.broadcast(Who).await;
    let ids: Vec<ActorId> = pool.members().iter().map(ActorRef::id).collect();
    assert_eq!(outcomes.len(), 3);
    for ((id, outcome), expected) in outcomes.into_iter().zip(ids) {
        assert_eq!(id, expected);
        assert_eq!(outcome, Ok(expected));
    }
}

#[tokio::test]
async fn a_full_pool_rejects_at_once_or_waits_as_configured() {
    let system = ActorSystem::new("t");
    let log = Arc::default();
    let rejecting = system
        .pool(worker_factory(&log))
        .size(1)
        .member_mailbox(MailboxConfig::Bounded(1))
        .when_full(WhenFull::Reject)
        .spawn()
        .await
        .unwrap();
    let gate = hold(&rejecting.members()[0]).await;
    rejecting.tell(Work(1)).await.unwrap(); // fills the one place
    assert!(matches!(
        rejecting.tell(Work(2)).await,
        Err(SendError::MailboxFull(Work(2)))
    ));
    assert_eq!(
        rejecting.ask(Who).timeout(Duration::from_secs(3600)).await,
        Err(AskError::MailboxFull)
    );
    gate.notify_one();

    let waiting = system
        .pool(worker_factory(&log))
        .size(1)
        .member_mailbox(MailboxConfig::Bounded(1))
        .spawn()
        .await
        .unwrap();
    let gate = hold(&waiting.members()[0]).await;
    waiting.tell(Work(3)).await.unwrap();
    let blocked = tokio::spawn({
        let waiting = waiting.clone();
        async move { waiting.tell(Work(4)).await }
    });
    tokio::task::yield_now().await;
    assert!(!blocked.is_finished(), "a waiting pool waits for room");
    gate.notify_one();
    promptly(blocked).await.unwrap().unwrap();
    assert_eq!(waiting.ask(Handled).await.unwrap(), 2); // Work(3), Work(4)
}

#[tokio::test]
async fn a_full_pool_told_to_drops_its_oldest_queued_message() {
    let system = ActorSystem::new("t");
    let log: Arc<Mutex<Vec<u64>>> = Arc::default();
    let pool = system
        .pool(worker_factory(&log))
        .size(1)
        .member_mailbox(MailboxConfig::Bounded(2))
        .when_full(WhenFull::DropOldest)
        .urn("droppers")
        .spawn()
        .await
        .unwrap();
    let member = pool.members()[0].clone();
    let gate = hold(&member).await;
    let oldest = tokio::spawn({
        let pool = pool.clone();
        async move { pool.ask(Who).timeout(Duration::from_secs(3600)).await }
    });
    while member.mailbox_len() < 1 {
        tokio::task::yield_now().await;
    }
    pool.tell(Work(1)).await.unwrap(); // the second and last place
    // Full: Work(2) takes the place of the oldest, the ask, which fails at once.
    pool.tell(Work(2)).await.unwrap();
    assert_eq!(promptly(oldest).await.unwrap(), Err(AskError::MailboxFull));
    // Full again: Work(3) takes the place of Work(1), a tell: dropped.
    pool.tell(Work(3)).await.unwrap();
    assert_eq!(member.mailbox_len(), 2);
    gate.notify_one();
    // (Asked directly: through the full pool this ask would drop Work(2).)
    assert_eq!(promptly(member.ask(Handled)).await.unwrap(), 2); // Work(2), Work(3)
    assert_eq!(*log.lock().unwrap(), vec![2, 3]);

    // High-priority messages are never dropped: with only those queued, a send is refused.
    let gate = hold(&member).await;
    for n in [4, 5] {
        pool.ask(Work(n))
            .priority(Priority::High)
            .tell()
            .await
            .unwrap();
    }
    assert!(matches!(
        pool.tell(Work(6)).await,
        Err(SendError::MailboxFull(Work(6)))
    ));
    gate.notify_one();
    promptly(member.ask(Handled)).await.unwrap();
    assert_eq!(*log.lock().unwrap(), vec![2, 3, 4, 5]);

    // A request that came by the pool's URN (a dynamic request) is dropped the same way.
    let gate = hold(&member).await;
    let by_urn = tokio::spawn({
        let system = system.clone();
        async move {
            let pool = system.lookup("droppers").unwrap();
            pool.ask(Who).timeout(Duration::from_secs(3600)).await
        }
    });
    while member.mailbox_len() < 1 {
        tokio::task::yield_now().await;
    }
    pool.tell(Work(7)).await.unwrap();
    pool.tell(Work(8)).await.unwrap();
    assert!(matches!(
        promptly(by_urn).await.unwrap(),
        Err(AskError::MailboxFull)
    ));
    gate.notify_one();
    promptly(member.ask(Handled)).await.unwrap();
    assert_eq!(*log.lock().unwrap(), vec![2, 3, 4, 5, 7, 8]);
}

#[tokio::test]
async fn an_ask_that_expires_in_the_queue_never_reaches_a_member() {
    let (_system, pool) = pool_of(1, Routing::RoundRobin).await;
    let member = pool.members()[0].clone();
    let gate = hold(&member).await;
    assert_eq!(
        pool.ask(Who).timeout(Duration::from_millis(20)).await,
        Err(AskError::Timeout(Duration::from_millis(20)))
    );
    gate.notify_one();
    // Hold and this ask only: the expired `Who` was skipped.
    assert_eq!(pool.ask(Handled).await.unwrap(), 0);
    assert_eq!(member.asks_skipped(), 1);
}

#[tokio::test]
async fn members_restart_after_a_panic_and_are_replaced_after_a_death() {
    let (_system, pool) = pool_of(2, Routing::RoundRobin).await;
    let first = pool.members()[0].clone();
    assert!(matches!(
        first.ask(Explode).await,
        Err(AskError::Panicked(_))
    ));
    // Restarted in place: same member, fresh state.
    assert!(first.is_alive());
    first.ask(Who).await.unwrap();
    assert_eq!(first.ask(Handled).await.unwrap(), 1);

    first.kill();
    assert_eq!(promptly(first.wait_for_stop()).await, StopReason::Killed);
    promptly(async {
        while pool.stats().replaced < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let members = pool.members();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.id() != first.id() && m.is_alive()));
    for _ in 0..4 {
        pool.ask(Who).await.unwrap();
    }
}

#[tokio::test]
async fn an_unresponsive_member_is_killed_and_replaced() {
    let system = ActorSystem::new("t");
    let log = Arc::default();
    let pool = system
        .pool(worker_factory(&log))
        .size(2)
        .unresponsive_after(Duration::from_millis(500))
        .spawn()
        .await
        .unwrap();
    let stuck = pool.members()[0].clone();
    stuck.tell(Hang).await.unwrap();
    assert_eq!(promptly(stuck.wait_for_stop()).await, StopReason::Killed);
    promptly(async {
        while pool.stats().replaced < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(pool.members().len(), 2);
    assert!(pool.members().iter().all(|m| m.id() != stuck.id()));
    // Healthy members are left alone by the switch.
    let healthy = pool.members();
    for _ in 0..3 {
        pool.ask(Who).await.unwrap();
    }
    assert!(healthy.iter().all(ActorRef::is_alive));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizing_under_load_loses_nothing() {
    let system = ActorSystem::new("t");
    let log: Arc<Mutex<Vec<u64>>> = Arc::default();
    let pool = system
        .pool(worker_factory(&log))
        .size(4)
        .member_mailbox(MailboxConfig::Bounded(8))
        .spawn()
        .await
        .unwrap();
    let sender = tokio::spawn({
        let pool = pool.clone();
        async move {
            for i in 0..2000 {
                pool.tell(Work(i)).await.unwrap();
            }
        }
    });
    for size in [1, 3, 2, 5, 1] {
        pool.resize(size).await.unwrap();
        assert_eq!(pool.members().len(), size);
        tokio::task::yield_now().await;
    }
    promptly(sender).await.unwrap();
    pool.stop();
    promptly(pool.wait_for_stop()).await;
    let mut seen = log.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..2000).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_pool_is_reached_by_its_urn() {
    let system = ActorSystem::new("t");
    let log = Arc::default();
    let pool = system
        .pool(worker_factory(&log))
        .size(3)
        .urn("workers")
        .spawn()
        .await
        .unwrap();
    let by_urn = system.lookup("workers").unwrap();
    let members: HashSet<ActorId> = pool.members().iter().map(ActorRef::id).collect();
    let mut reached = HashSet::new();
    for _ in 0..6 {
        let who = by_urn.ask(Who).await.unwrap();
        assert!(members.contains(&who));
        reached.insert(who);
    }
    assert_eq!(reached.len(), 3, "round-robin through the URN too");
    assert_eq!(
        pool.urn().map(ToString::to_string).as_deref(),
        Some("workers")
    );
}

#[actor]
struct Refuses;

#[actor]
impl Refuses {
    #[on_start]
    fn start(&mut self) -> Result<(), String> {
        Err("no room here".to_owned())
    }
}

/// A member that cannot start fails the pool's spawn with the member's own error, said once.
#[tokio::test]
async fn a_member_that_cannot_start_fails_the_spawn_with_its_own_error() {
    let system = ActorSystem::new("t");
    let error = system
        .pool(|| Refuses)
        .size(2)
        .spawn()
        .await
        .expect_err("no member starts");
    assert!(matches!(error, SpawnError::StartFailed(_)), "{error:?}");
    assert_eq!(error.to_string(), "on_start failed: no room here");
}

/// A pool of size 0 fails asks and tells with `ActorStopped` (nothing waits for a member that
/// may never come), stays alive, and routes again once resized.
#[tokio::test]
async fn a_pool_of_no_member_fails_sends_until_resized() {
    let (_system, pool) = pool_of(0, Routing::RoundRobin).await;
    assert!(matches!(
        promptly(pool.ask(Who)).await,
        Err(AskError::ActorStopped)
    ));
    assert!(matches!(
        promptly(pool.tell(Work(1))).await,
        Err(SendError::ActorStopped(Work(1)))
    ));
    assert!(pool.is_alive());
    promptly(pool.resize(2)).await.unwrap();
    promptly(pool.ask(Who)).await.unwrap();
}
