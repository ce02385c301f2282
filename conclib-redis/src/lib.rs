//! Redis proxy for conclib: processes without an actor system (web server workers, scripts,
//! services in other languages) ask and tell actors by URN through Redis, and get typed
//! answers — or typed errors — back.
//!
//! - [`start_proxy`] serves an [`ActorSystem`](conclib_core::ActorSystem)'s exposed actors
//!   (those listing messages in [`Actor::REMOTE`](conclib_core::Actor::REMOTE)).
//! - [`ProxyClient`] asks ([`ProxyClient::ask`]) and tells ([`ProxyClient::tell`]) them from
//!   anywhere that reaches the same Redis, with per-call timeouts and the core's
//!   [`AskError`](conclib_core::AskError), as from every other kind of ref.
//! - [`Topics`](topics::Topics) publishes events to named [`Topic`](topics::Topic)s and subscribes to them from anywhere on
//!   the same Redis (a `Stream` of typed events, or an actor's mailbox): live (at most once)
//!   or durable (at least once, ordered, resumable); see the [`topics`] module.
//! - [`start_redis`] runs a private `redis-server` child, for tests and single-host setups.
//! - [`ProxyConfig`] holds the URL (password, ACL user, `rediss://` with the `tls` feature and
//!   optionally a private CA in [`tls_ca_file`](ProxyConfig::tls_ca_file),
//!   Sentinel, Cluster), the namespace, timeouts and limits; [`ProxyConfig::from_env`] reads
//!   `CONCLIB_REDIS_URL` and friends.
//!
//! ```no_run
//! use conclib_core::{Actor, ActorSystem, Context, Message, ExposedMessage, RequestEnvelope};
//! use conclib_core::AskError;
//! use conclib_redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Add(u64);
//! impl conclib_core::MessageDecl for Add { type WireError = String; } // `#[message]` writes both
//! impl Message for Add {
//!     type Response = u64;
//!     type Error = String;
//!     fn name() -> &'static str { "Add" }
//! }
//!
//! struct Counter(u64);
//! impl Actor for Counter {
//!     const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Add>()];
//!     async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
//!         match req.extract::<Add>() {
//!             Ok((Add(n), r)) => r.respond(self.0.checked_add(n).map(|t| { self.0 = t; t }).ok_or("overflow".into())),
//!             Err(req) => req.reject(),
//!         }
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The serving process.
//! let redis = start_redis(&ProxyConfig::default()).await?;
//! let config = redis.config(&ProxyConfig::default().with_namespace("shop"));
//! let system = ActorSystem::new("backend");
//! system.build(Counter(0)).urn("counter").spawn().await?;
//! let proxy = start_proxy(&system, &config).await?;
//!
//! // Any other process.
//! let client = ProxyClient::connect(&config).await?;
//! assert_eq!(client.ask("counter", Add(2)).await?, 2);
//! assert_eq!(client.ask("counter", Add(u64::MAX)).await, Err(AskError::Handler("overflow".into())));
//! assert!(matches!(client.ask("nobody", Add(1)).await, Err(AskError::UnknownUrn { .. })));
//!
//! proxy.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! Each of these has a test that injects the fault it is about (`tests/faults/`,
//! `tests/redis_restart.rs`, `tests/load_faults.rs`, `tests/acl.rs`: real redis-server, real
//! processes, SIGKILL and SIGSTOP).
//! - **Typed errors.** Unknown URN (answered at once), message not exposed, the handler's
//!   own error (decoded to `M::Error`), panic, timeout, actor stopped, mailbox full, codec
//!   error, payload too large, Redis unavailable: each is its own
//!   [`AskError`](conclib_core::AskError) variant (the proxy's rejections, Redis errors and
//!   protocol breaches are `AskError::Transport`).
//! - **Deadlines.** Every request carries one, counted from when Redis took it (its entry
//!   id; an id a client chose in the future does not count: the proxy's reading time stands
//!   in). The proxy drops a request whose deadline passed without handling it, and gives
//!   the ask to the actor with what is left as its timeout: an ask still in the actor's
//!   mailbox at its deadline is never started (nobody waits for it); a handler that started
//!   runs to its end (nothing cancels it), its late answer dropped.
//! - **Order.** Requests from one client to one URN are handed to the actor in the order
//!   they were sent while they go through one system's own stream: a fixed URN's system,
//!   or the holder of an activated URN once the client routes there (it looks the URN up
//!   and finds it held). Through a group's stream they are kept in order only while one
//!   member serves the group. With several, each member reads some of the stream's entries:
//!   the first requests for a URN nobody holds are placed on the member chosen for it (moved
//!   to its pending list there) or claimed by the member that read them, and one that a
//!   member passes on or places may be overtaken by a later one that the holder read itself.
//!   A client routes a pattern's URN through its group when it found the URN not activated,
//!   until it looks the URN up again ([`resolve_cache_ttl`](ProxyConfig::resolve_cache_ttl),
//!   1 s): a burst of requests to a new URN in its first second may so be handled out of
//!   order, none lost or handled twice. Measured with two members of `conf:pat:{id}` and 64
//!   callers each sending 8 tells one after the other to a new URN: 0-14 of the 64 URNs
//!   handled theirs out of order with Rust members, 51-64 with Python members; sent to URNs
//!   already activated, none (`python/tests/test_order.py`). A URN's route also changes when
//!   it is moved or passivated; a request sent just after the change may then overtake one
//!   sent just before it. Within a failover's move, order is kept
//!   (`tests/scale_out/failover.rs`: each ask sees the tell sent before it). A caller that
//!   needs order where the route may change sends each request once the one before it was
//!   answered (an ask).
//! - **Overload.** A request may wait for room in a full mailbox until
//!   [`full_mailbox_wait`](ProxyConfig::full_mailbox_wait) (100 ms) after Redis took it (its
//!   entry id, as for its deadline: time queued in the stream and in the proxy counts); a
//!   request older than that when its turn comes gets the room there is or none. Then an ask
//!   is answered `AskError::MailboxFull` (a web server answers 503), not at its timeout, and
//!   a tell is dropped with a warning. The client sees the answer after that wait plus the
//!   proxy's and the reply's trip, which a busy machine lengthens: 256 asks at once on a
//!   mailbox of 64, on 2 cores shared with other builds (load average 17), p50 103 ms,
//!   p99 112 ms; with 4 more spinning threads, p50 112 ms, p99 231 ms
//!   (`examples/overload.rs`, BENCHMARKS.md, 2026-11-27). Limits of pending requests
//!   refuse earlier and without waiting (see "Overload" below).
//! - **At least once across crashes, for asks and tells.** A request stays in its Redis
//!   stream until the proxy has answered it (an ask) or its handler has finished (a tell),
//!   or it was refused. A proxy that stops or crashes before that leaves it in Redis, and the
//!   next proxy of the same system id handles it if its deadline has not passed: a crash
//!   between handling and acknowledging means it is handled again (exactly once otherwise).
//! - **Traffic is never split.** A URN is served by one system (unless its systems serve it
//!   as a group, below): a proxy hands a request to
//!   an actor only while its leases are surely held by its own monotonic clock (their TTL,
//!   less a tenth for clock drift, from before their last renewal). After a pause longer than
//!   that (SIGSTOP, a frozen VM), it re-checks first; if another system took the URN
//!   meanwhile, an ask is answered `NotOwner` (the client resolves again and retries once)
//!   and a tell is passed to the new owner's stream. While the lease cannot be confirmed
//!   and the URN's key names no other system (Redis out of reach; at
//!   [`Durability::Replicas`], no replica taking the renewal, as after a promotion), the
//!   request waits in Redis for the renewal, within its deadline: an ask then ends
//!   answered or `Timeout`, never `UnknownUrn` (`faults/unconfirmed.rs`).
//! - **Takeover.** A proxy started for a system whose previous proxy crashed serves at once
//!   when the crash is provable (the previous one ran on this host, by host name, and its
//!   pid is gone), else after that one's lease ([`lease_ttl`](ProxyConfig::lease_ttl), 4 s).
//!   A previous proxy that was only paused past its lease stops reading once it runs again
//!   and sees the new one's lease; what it read in between goes back into the system's
//!   stream, asks with their reply address, for the new one to handle (a request it had
//!   handed to its actor before the pause may then be handled by both: at least once).
//! - **Nothing grows without bound.** Replies live in per-client lists that expire; handled
//!   requests are trimmed from their stream; a request stream whose proxy is gone for good
//!   expires; ownership keys are leases; a dropped [`ProxyClient`] closes its connections at
//!   once.
//! - **Reconnects.** Proxy and client reconnect by themselves after Redis restarts. While
//!   the client knows Redis is down, an ask or tell fails `AskError::Unavailable` at once
//!   (nothing is written later). An ask whose request Redis took and then lost in a restart
//!   fails `Unavailable` as soon as the client has reconnected and seen the new Redis (a new
//!   `run_id` in `INFO`), not at its deadline: the client takes a Redis to have started
//!   empty unless `INFO` shows it loaded or appends to a persistence file, or is a replica
//!   that took over (in a cluster, every ask pending when a node restarted empty fails).
//!   After a restart that may have kept the data, the ask waits for its answer. An ask
//!   that reaches its deadline while Redis is down, or after a connection to Redis was lost
//!   during it, fails `Unavailable`, not `Timeout`. An ask failed this way may still have
//!   been handled (a proxy that held the request answers into the new Redis). A tell
//!   returns once Redis holds it: a restart without persistence loses it.
//! - **Shutdown is bounded whatever Redis does.** [`ProxyHandle::shutdown`] returns within
//!   [`shutdown_timeout`](ProxyConfig::shutdown_timeout) (5 s by default), also while Redis
//!   is unreachable, frozen or dead: past it, it stops its tasks, drops its connections and
//!   answers [`ServeError::ShutdownCut`]; what it had not handed over stays in Redis for the
//!   next holder, as after a crash (its lease lapses, requests it had taken are read again).
//!   [`ReminderPoller::shutdown`](reminders::ReminderPoller::shutdown), [`ProxyClient::shutdown`] and [`Subscription::close`](topics::Subscription::close)
//!   keep the same bound. `tests/faults/shutdown.rs` (`every_shutdown_returns_within_its_bound_while_redis_is_frozen`)
//!   shuts each down with Redis SIGSTOPped (each returned within 1.1 s of a 1 s bound);
//!   `python/testserver/tests/shutdown_bound.rs` sends SIGTERM to a serving process (proxy
//!   with groups and activations, reminder poller, topics) whose Redis is SIGSTOPped or
//!   SIGKILLed: it exits within its bound (2.0 s of 2 s), its private `redis-server`
//!   ([`start_redis`]) reaped, none left a zombie.
//! - **A restarting system is not an unknown URN.** A graceful shutdown first marks every
//!   URN its system served (its actors and activations, its groups' URNs, its patterns) as
//!   departed for [`departed_grace`](ProxyConfig::departed_grace) (30 s by default; keys
//!   `{ns}:departed:urn:{urn}`, `{ns}:departed:pattern:{prefix}`). A client that then
//!   finds no system serving such a URN looks again every 25 ms until a successor
//!   registers it or the ask's deadline, and answers [`AskError::Unavailable`](conclib_core::AskError::Unavailable)
//!   (retryable), never `UnknownUrn` (a web app's 404); an ask whose request waited in the
//!   departed system's stream past its deadline answers `Unavailable` too (the successor may
//!   still handle it). A URN nobody served answers `UnknownUrn` at once, as before; a URN
//!   served by a system that stopped for good answers `Unavailable` until the grace ends.
//!   The cost is one `GET` (two for a pattern's URN) on look-ups that found no owner, and
//!   one on asks that timed out. `tests/faults/shutdown.rs`
//!   (`a_restarting_system_answers_unavailable_never_unknown_urn`): a system restarted
//!   with [`release_on_shutdown`](ProxyConfig::release_on_shutdown) and a gap longer than
//!   the asks' timeout, 64 callers asking without pause: only answers and `Unavailable`, no
//!   call past its timeout by more than 250 ms; the Python client follows the same rule
//!   (`python/tests/test_system_restart.py`, 64 asyncio callers).
//!   A live actor is not reported unknown because a restarted Redis lost its keys: while
//!   Redis is younger than one lease, a client that knew the URN looks it up again until it
//!   reappears or the ask's deadline passes (then `Unavailable`). (A client that never resolved the URN before the
//!   restart cannot tell, and answers `UnknownUrn` until the owner registers again, which a
//!   proxy does as soon as it has reconnected.)
//!
//!   Recovery does not depend on the callers: a call that fails at once first takes a unit
//!   of tokio's cooperative budget and yields before it returns its error, so tasks that
//!   ask again without pausing cannot starve the client's reconnection or its timers. Proxy
//!   and client try to reconnect after pauses that double from 20 ms up to
//!   [`reconnect_max_delay`](ProxyConfig::reconnect_max_delay) (400 ms), plus up to 100 ms
//!   of jitter. `tests/load_faults.rs` kills Redis and restarts it (empty, and with its
//!   append-only file), freezes it for 3 s, and kills and restarts the serving process, each
//!   under 1, 64 and 256 callers on two worker threads that ask again at once after any
//!   answer or error: in every case the first answer comes within 1 s of the fault's end, no
//!   call returns later than its timeout plus 250 ms, every error is `Unavailable` or
//!   `Timeout`, and every tell Redis accepted is handled unless Redis restarted empty. The
//!   Python client passes the same test (`python/tests/test_load_faults.py`).
//! - **Groups** ([`ProxyHandle::join`], `tests/scale_out/groups.rs`). A URN served by several
//!   systems is asked like any URN. Each member takes from the group's stream only what it
//!   has room for ([`group_in_flight`](ProxyConfig::group_in_flight)), so requests go to
//!   whoever is free. Requests taken by a member that dies (SIGKILL) are handled by the
//!   others once its member lease lapses, or at once when its death is provable (same host,
//!   pid gone): at least once, as for a single system's crash. A member paused past its
//!   lease starts none of the requests it had taken before the pause once it is back: each
//!   request handed to an actor carries the fence of the lease it was read under
//!   ([`Fence`](conclib_core::Fence)), checked by the actor's task as it takes the request,
//!   so one still queued in the mailbox when the lease lapsed is not started (it stays
//!   pending in Redis, for whoever holds it now); only a handler already running at the
//!   moment of the pause finishes, and requests it had handled but whose acknowledgement
//!   (sent with the proxy's next write) had not gone out are handled again by the others,
//!   as at a crash between handling and acknowledging: at most
//!   [`group_in_flight`](ProxyConfig::group_in_flight) in all
//!   (`a_member_paused_with_tells_queued_starts_none_of_them_once_back`: 0 repeats with its
//!   mailbox kept full; before the fence, 1-2 in 2 of 3 runs; with fast handlers, 0 in most
//!   runs, 2 in one run on a machine with a load average of 10). What it
//!   reads once it is back stays pending on it until handled (a gone member's consumer is
//!   deleted only with nothing pending on it, checked and deleted in one script). A graceful
//!   leave finishes what the member took first. With no member left, the group's URN
//!   lapses after its [`urn_ttl`](ProxyConfig::urn_ttl) and its stream after [`queue_ttl`](ProxyConfig::queue_ttl).
//! - **One activation** ([`ProxyHandle::activate`], `tests/scale_out/activation.rs`). A URN
//!   of a pattern is activated by one system of the pattern's group at a time: the claim is
//!   the URN's lease (set only if absent), a system hands a request to its activation only
//!   while that lease is surely held, and an activation whose URN another system took
//!   (this process was paused past its lease) is stopped. Its [`StateStore`](scale::StateStore) refuses the
//!   writes of any activation but the latest ([`StoreError::Fenced`](scale::StoreError::Fenced)), and a told message
//!   whose write was refused goes to the latest activation: with state kept in the store,
//!   a pause past the lease neither loses nor repeats a message sent to the system holding
//!   the URN. A request whose handling wrote the store before its system acknowledged it
//!   (the system was paused or killed, or Redis refused its answer) is not handled again
//!   when another member claims it from the pattern group's stream or its own system reads
//!   it again: each write records, with the state, the requests whose handling wrote it
//!   and that are not acknowledged yet, the next activation reads that record as it loads
//!   the state, the system keeps its own until they are acknowledged, and such
//!   a request is acknowledged without being handed to the actor (an ask is answered
//!   `NoResponse`: its effect is in the state, its answer was lost), and stays in the
//!   record the new activation writes until that answer is acknowledged. What an earlier
//!   activation recorded stays in every record the next one writes, read or not, for five
//!   minutes after the request was first sent: one that comes back later still (its member
//!   paused that long, or down with no other member to take its requests) after the URN moved
//!   on may be handled again. This holds for an
//!   activation that loads its state in its constructor and writes it from its handler, not
//!   from a task the handler spawned: a [`StateStore`](scale::StateStore) is not `Clone`, so a handler cannot
//!   give a spawned task one of its own (a compile error, see its docs). A request reaching a
//!   system that does not hold the URN is passed to the one that does, at most once: the new
//!   entry is appended and the old one acknowledged in one script, only while the old one is
//!   still pending on the system passing it (not one another member claimed meanwhile, not
//!   again after an attempt whose answer was lost); in a cluster, where the two streams may
//!   be on different nodes, a lost answer can pass it twice. Passed on, it keeps its first
//!   entry as its identity (field `first`): one whose handling wrote the state there before
//!   (its system restarted since, and found the URN held elsewhere) is known by the
//!   activation it reaches (`a_request_passed_on_is_known_by_its_first_entry`).
//! - **Failover by membership** (`tests/scale_out/failover.rs`, `failover_load.rs`). When
//!   the system holding activations is gone (its one system lease lapsed, or at once when
//!   its death is provable: same host, pid gone), a member of each of its patterns' groups
//!   (one at a time, by a lock; members look every eighth of a lease, 100 ms at most) chooses, by the
//!   pattern's placement, a live member for each of the pattern's URNs it held, and moves
//!   the requests still queued in the gone system's own stream for each URN, read or not,
//!   to the own stream of the member chosen for it, in their order, each with what is left
//!   of its deadline (one whose deadline passed is dropped: its asker gave up), giving that
//!   member the URN's key in the same script: the URN is activated there and the requests
//!   answered, after the tells sent before them; the client sees latency, not `Timeout`.
//!   Measured with a holder of 20 URNs and 100 requests queued for it (a tell then 4 asks
//!   each, 10 s deadlines, 3 s leases): SIGKILL, every ask answered after the tell it
//!   followed, within 0.3-0.6 s; SIGSTOP past the lease, within 2.4-3.0 s, and back from
//!   its pause the holder handles none of them again; without the move, all 80 asks ended
//!   `Timeout`. At a deployment's size, with the default lease (4 s): 600 URNs on 3 member
//!   processes, 3 client processes asking and telling them, 16 calls in flight each (asks
//!   with a 500 ms or a 10 s deadline), the holder of about 200 SIGKILLed: an ask sent to
//!   each of its URNs at the kill answered after 0.22-0.58 s (p50) and 0.28-0.61 s (max)
//!   in four runs (members then looked every 500 ms); looking every 100 ms, 0.09-0.11 s
//!   (p50) and at most 0.13 s in six runs on a quiet machine (docs/bench-log.md, "Python
//!   member failover: the look period"); SIGSTOPped: 3.8-4.0 s and 3.85-4.14 s; every 10 s ask answered, the 500 ms ones answered or failing `Timeout`
//!   at their deadline, every call back within its timeout and 300 ms, every tell counted
//!   once (the resumed holder repeats none), on a busy 2-core machine in debug builds (the
//!   test prints a `RESULT` line). A holder back from a pause claims again, before it serves,
//!   the URN keys given away meanwhile, which the move (and the freeing of a gone holder's key,
//!   below) adds to the gone system's record (`{ns}:sys:{system}:given`, made anew as the
//!   lease is taken again), and its keys that may have expired, not every key it holds: a
//!   holder of 16 activations and 40,000 other URN keys, paused past its 1 s lease while 64
//!   callers ask the activations, stops the 16 it lost and sends none of the 40,000
//!   (`tests/faults/given_away.rs`). When the record is not whole (lost with a Redis
//!   restarted or a replica promoted, or expired after a lapse longer than any key lives), or
//!   after a reconnection, it claims every key again (`tests/faults/lapse.rs`). A moved request keeps its first entry as
//!   its identity (field `moved`), as does a request a system passes on to the URN's
//!   holder (field `first`), so one whose handling
//!   had written the activation's state is not handled again. Requests the gone system had taken from the
//!   group's stream are claimed from it as a gone member's. Requests for its other actors
//!   (not activations) stay in its stream for that system id to come back, as for any
//!   system. A request for a held URN that reaches a member through the pattern's group
//!   stream instead (a client's route to the pattern cached, [`resolve_cache_ttl`](ProxyConfig::resolve_cache_ttl),
//!   as in the first second after the URN was activated) frees the URN's key from the gone
//!   holder (checked in one script: the key still names it and its system lease is gone)
//!   and activates the URN at once, rather than waiting for the key to lapse
//!   (`tests/scale_out/early_kill.rs`: a holder of 6-17 URNs SIGKILLed 2-7 ms after
//!   activating them, asks with 10 s deadlines and the default route cache: on the same
//!   host every ask answered 11-62 ms after the kill (the most at a load of 20 on 2
//!   cores); on another host, as far as the survivors can tell (the holder in a UTS namespace of its own), killed 0-650 ms after
//!   activating, once its 3 s lease lapsed: 2.3-3.1 s; before, all of them ended `Timeout`). So the failover bound depends on the
//!   deployment: on one host, where a death is provable, well under a second; across
//!   hosts, one system lease ([`lease_ttl`](ProxyConfig::lease_ttl), 4 s by default) plus
//!   a look (an eighth of it, 100 ms at most). Not in a Redis Cluster (the streams live in different slots, where no script
//!   reaches them all): there a held URN is activated again once its key lapses
//!   ([`urn_ttl`](ProxyConfig::urn_ttl), 15 s), and asks queued for the gone holder fail at
//!   their deadline.
//!
//!   Compared with the systems users come from (as their documentation describes them):
//!   Orleans declares a silo dead after about 15 s by default (probes every 10 s, 3 missed,
//!   2 votes) and activates its grains again on their next call, the calls in flight to it
//!   failing for the caller to retry; Akka Cluster Sharding allocates a downed node's shards
//!   again once its downing provider decides (the split-brain resolver waits 20 s of
//!   stability by default) and buffers messages for a shard being moved, while messages
//!   already sent to the dead node are lost unless reliable delivery is used; Dapr places a
//!   failed host's actors anew once its placement tables change, calls in flight failing to
//!   its resiliency policies. Here a death is seen at once when it is provable (same
//!   host) and otherwise after one system lease ([`lease_ttl`](ProxyConfig::lease_ttl),
//!   4 s by default, renewed every 1.3 s; one key per system, so it costs nothing per URN:
//!   the URN keys live longer, [`urn_ttl`](ProxyConfig::urn_ttl), an activation's
//!   [`activation_urn_ttl`](ProxyConfig::activation_urn_ttl), and the takeover moves the
//!   requests for them), and the requests already queued for
//!   the dead holder are answered rather than lost. Liveness is Redis's view, not a
//!   consensus among systems: a system cut off from Redis longer than its lease counts as
//!   dead, and fences itself (it starts none of what it had queued).
//! - **Placement** ([`Activator::placement`](scale::Activator::placement), `tests/scale_out/placement.rs`). Which member
//!   activates a URN nobody holds is chosen per pattern ([`Placement`](scale::Placement)): by default the one
//!   with the fewest activations of the pattern (60 URNs asked one after the other on 3
//!   members: 20/20/20), or at random, by a hash of the URN (the same member across runs
//!   while the members are the same), the asking system, or a function. The member that
//!   reads the URN's first request from the group's stream decides, among the members its
//!   directory (`{ns}:placement:{prefix}`) lists as live, in one round trip with the URN's
//!   key; a request placed elsewhere stays in the group's stream, moved to the chosen
//!   member's pending list in the same script that wakes that member up, and is placed only
//!   once. So the claim is still the URN's lease (one activation at a time, as above), and a
//!   chosen member that dies or is paused before it activates the URN loses nothing: the
//!   others claim its pending entries once its member lease lapses (at once when its death
//!   is provable), and activate the URN themselves (measured: the asks answered after about
//!   a lease, none lost, none activated twice, nothing done by the paused member once back).
//! - **The directory.** Where each activation of a pattern lives, by system:
//!   [`ProxyClient::activations`] (read from the URN keys; `tests/scale_out/placement.rs`);
//!   each member's count: [`ProxyHandle::pattern_members`], the snapshot's
//!   [`PublishedGroup::activations`](snapshots::PublishedGroup::activations), the live view.
//! - **Rebalancing** ([`Activator::rebalance`](scale::Activator::rebalance), `tests/scale_out/rebalance.rs`). With it on,
//!   a member holding more than its share of a pattern's activations (the live members'
//!   total divided evenly, rounded up) passivates the excess as soon as a member joins
//!   (the joiner tells the others in their streams) and every third of a lease, least
//!   recently used first and only those with nothing queued, and gives each one's URN key
//!   to the member with the fewest, which activates them as soon as it reads the hand-over
//!   (outside a Redis Cluster; there at their next requests), their state carried when
//!   their `on_stop` calls [`StateStore::dehydrate`](scale::StateStore::dehydrate); a request that
//!   meets one stopping, or reaches the old holder by a route a client cached, is read
//!   again or passed on rather than failed. Measured: 40 URNs on 2 members under 8
//!   callers telling and asking without pause, a third member joins and holds at least 25%
//!   within 0.12-0.61 s of its start (a debug build on a machine at load 14-39), every moved
//!   activation carrying its count (none loaded from the store again), no request failed, every account counted exactly the tells it was
//!   sent. Only URNs that are asked move (a passivated one waits for its next request).
//! - **A Redis restart keeps accepted tells only with AOF, fsync always** ([`Persistence`](durability::Persistence),
//!   `tests/persistence.rs`; `tests/load_faults.rs` SIGKILLs such a Redis under load and
//!   loses no accepted tell). Requests live in Redis until handled: across a crash or
//!   restart of Redis itself, what the guarantees above say of the requests Redis had
//!   accepted (at least once for a tell that returned `Ok`, an ask waiting for its answer)
//!   holds for all of them only with `appendonly yes` and `appendfsync always` (each write on
//!   disk before Redis answers it). With `appendfsync everysec` (Redis's default once AOF is
//!   on), a crash can lose about the last second of writes (two at worst, by Redis's own
//!   documentation); with `appendfsync no`, what the operating system had not written to
//!   disk when Redis's machine crashed; with RDB snapshots only, every write since the last
//!   snapshot; with neither, all of them. [`start_proxy`] and [`ProxyClient::connect`] read
//!   the settings in one round trip bounded by
//!   [`command_timeout`](ProxyConfig::command_timeout), `CONFIG GET appendonly appendfsync
//!   save` with `INFO persistence` beside it, for when `CONFIG` is refused (an ACL user
//!   without `+config`, as with [`client_acl`](acl::client_acl) and [`proxy_acl`](acl::proxy_acl), or a managed Redis that
//!   renamed it): `INFO` tells whether AOF is on, not how often it is fsynced
//!   ([`Fsync::Unknown`](durability::Fsync::Unknown)). Neither answering makes it [`Persistence::Unknown`](durability::Persistence::Unknown); the start
//!   never fails for it. In a cluster, it is the settings of one node. Unless tells are
//!   known to survive ([`Persistence::tells_survive_restart`](durability::Persistence::tells_survive_restart)), the first proxy started or
//!   client connected in a process logs one warning at WARN, naming the settings and what
//!   a restart can lose ([`Persistence::warning`](durability::Persistence::warning): "Redis persistence: appendonly no, no
//!   RDB snapshots: a restart of Redis loses every tell it holds; for none to be lost, set
//!   \`appendonly yes\` and \`appendfsync always\`"), once per process however many
//!   follow. The value is
//!   [`ProxyHandle::persistence`], [`ProxyClient::persistence`], and the `persistence` of
//!   the system's snapshot ([`PublishedSystem::persistence`](snapshots::PublishedSystem::persistence)), which the live view shows.
//! - **Durable reminders** ([`Reminders`](reminders::Reminders), [`ReminderPoller`](reminders::ReminderPoller), `tests/reminders/`). A
//!   reminder registered for a URN is kept in Redis and delivered as a [`ReminderTick`](reminders::ReminderTick) ask
//!   when due, activating the URN if need be: once per tick across systems absent crashes,
//!   at least once across them, missed periodic ticks coalesced; the guarantees and their
//!   tests are listed on [`Reminders`](reminders::Reminders). The live view (`conclib-view`, `GET
//!   /api/reminders`) shows them through [`SnapshotReader::reminders`](snapshots::SnapshotReader::reminders): how many are
//!   registered and due, a URN's or a prefix's reminders with their next due time, period,
//!   deliveries, fired, coalesced and missed ticks, and each running poller's firing rate and
//!   lag percentiles, which it publishes every [`snapshot_interval`](ProxyConfig::snapshot_interval)
//!   of its client (`conclib-view/tests/reminders.rs`).
//! - **Hostile input.** Malformed entries, unknown wire names, undecodable or oversized
//!   payloads are answered with an error when a reply address can be read, logged, and the
//!   proxy goes on. A stream whose ids a client pushed into the future is replaced by an
//!   empty one once drained. A URN key that holds something other than a string (written by
//!   something other than a proxy) spoils its own URN alone: the proxy refuses that URN,
//!   logs why, and claims it again once the key is deleted (a server that is not a cluster).
//! - **Memory.** A proxy holds at most [`batch_size`](ProxyConfig::batch_size) (256) entries
//!   read at once, each as large as Redis accepts. A Redis from [`start_redis`] refuses a
//!   value over [`max_payload`](ProxyConfig::max_payload) + 64 KiB and a command over twice
//!   that plus 1 MiB; on an existing Redis set `proto-max-bulk-len` and
//!   `client-query-buffer-limit` the same way (the defaults, 512 MiB and 1 GiB, let one
//!   client hand a proxy that much per entry).
//!
//! # Overload
//! Every limit here is off by default ([`ProxyConfig::overload`], an [`Overload`](overload::Overload)).
//!
//! **Pending limits.** A proxy counts the requests it has read and not yet answered (queued in
//! a mailbox or being handled) for each URN, each pattern and the whole system; a request
//! past a limit is refused as it is read, before it reaches a mailbox: an ask is answered
//! status 13, `Overloaded`, with the limit and the depth ([`ProxyError::Overloaded`] with
//! its [`OverloadScope`](overload::OverloadScope); `AskError::Overloaded { limit, depth }` through the typed API;
//! `conclib.Overloaded` in Python), a tell is dropped and counted
//! ([`ProxyStats::overloaded_tells`](stats::ProxyStats::overloaded_tells)); a client refuses
//! some at send (below). The limits: [`Overload::max_pending_per_urn`](overload::Overload::max_pending_per_urn) and
//! [`Overload::max_pending`](overload::Overload::max_pending) (the system), a pattern's own
//! ([`Activator::max_pending_per_urn`](scale::Activator::max_pending_per_urn), [`Activator::max_pending`](scale::Activator::max_pending)), a URN's own
//! ([`ProxyHandle::set_max_pending`]). Requests still in the Redis stream are not counted:
//! the proxy reads at most [`max_in_flight`](ProxyConfig::max_in_flight) at once, and
//! refusing frees their places at once, so the stream drains at the rate of refusals.
//! An older client reads status 13 as a broken reply ([`ProxyError::Protocol`]).
//! Each system counts what it reads: a pattern's request that a member reads and passes on
//! to the system holding its URN is counted by the member while it passes it on, then by
//! the holder, so in a group a URN's requests are limited per reading member.
//!
//! **Refused at send.** A client that had an ask to a URN refused for the URN's own limit
//! keeps that limit for [`Overload::client_hold`](overload::Overload::client_hold) (100 ms) after each such refusal:
//! meanwhile it counts its own asks to the URN in flight, and an ask or a tell that finds
//! them at the limit is refused by the client itself, with the same `Overloaded` (the limit,
//! and its own asks in flight as the depth), without a trip to Redis (the metric
//! `conclib_client_refused_at_send_total`). The proxy would have refused it too, unless some
//! of those asks were answered meanwhile, their replies on their way. The client refuses
//! nothing once the hold after the proxy's last refusal is over, nor once its own asks there
//! are answered. A pattern's or the system's limit counts other clients' requests, which a
//! client cannot see: those refusals are the proxy's alone, as are a URN's whose limit this
//! client's asks do not fill (several clients sharing it). `Duration::ZERO` turns it off.
//!
//! **The activation cap.** [`Overload::activation_cap`](overload::Overload::activation_cap) bounds the activations alive in a
//! system; past it, activations with nothing queued are evicted by [`Overload::eviction`](overload::Overload::eviction)
//! ([`Eviction::Lru`](overload::Eviction::Lru) by default, [`Eviction::Lfu`](overload::Eviction::Lfu), or a score of your own), passivated
//! as after an idle time: stopped gracefully, so that an `on_stop` that saves saves once,
//! their URN released; their next request activates them again on the member the pattern's
//! placement picks. A request that meets an activation being evicted is read again, not
//! refused. [`ProxyHandle::set_activation_cap`] changes the cap at run time.
//!
//! **Memory shedding.** With [`Overload::memory`](overload::Overload::memory) ([`MemoryShedding`](overload::MemoryShedding)), above a share of a
//! memory limit (the cgroup's, or a number of bytes) the proxy passivates the least
//! recently used activations, logs a warning and counts them ([`ProxyStats::shed`](stats::ProxyStats::shed)).
//!
//! ```no_run
//! use conclib_core::ActorSystem;
//! use conclib_redis::{ProxyConfig, start_proxy, overload::{MemoryLimit, MemoryShedding}};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ProxyConfig::default();
//! config.overload.max_pending_per_urn = Some(64);
//! config.overload.activation_cap = Some(100_000);
//! config.overload.memory = Some(MemoryShedding::new(MemoryLimit::Cgroup));
//! let proxy = start_proxy(&ActorSystem::new("web-1"), &config).await?;
//! proxy.set_activation_cap(Some(50_000));
//! let stats = proxy.stats();
//! println!("{} refused, {} evicted, {} shed", stats.overloaded, stats.evicted, stats.shed);
//! # Ok(()) }
//! ```
//!
//! `tests/overload.rs` proves each: 64 callers past a URN's limit get `Overloaded` with
//! its limit and depth and no call outlives its timeout, through a client refusing at send
//! (most refusals then the client's) and one that does not; a client refuses at send only
//! while it holds the URN full, not once its asks are answered nor past the hold; tells past a limit are dropped and
//! counted; a pattern's limit; a cap of 10 over 25 URNs evicts each once, saved once, its
//! state intact when asked again, and a cap lowered at run time; memory shedding.
//! `examples/overload_limits.rs` (the `conclib-examples` crate) measures them.
//! # Redis topologies and durability
//! Redis replicates asynchronously: when a primary dies (Sentinel, Cluster, a managed Redis
//! built the same way), the replica promoted may lack the writes the primary acknowledged
//! last. What conclib keeps across such a promotion depends on
//! [`ProxyConfig::durability`] ([`Durability`]); the proofs are real topologies on loopback
//! (`conclib_testkit::redis_ha`: a primary, 2 replicas and 3 sentinels; 3 primaries with a
//! replica each), their replicas stalled (SIGSTOP) for 2-2.5 s before the primary is
//! SIGKILLed, so that the promoted replica lacks seconds of writes, under 3 member
//! processes activating `acct:{id}` counters saved through the [`StateStore`](scale::StateStore) and 64 callers
//! asking and telling without pause (`examples/redis_failover.rs`; its short form,
//! `examples/tests/redis_failover.rs`, runs in the test command).
//!
//! At every level:
//! - **The client follows promotions** (Sentinel and Cluster): while no primary answers,
//!   calls fail `Unavailable` at once, and no call returns later than its timeout + 250 ms
//!   (`overruns=0` in the example's runs at a load average up to ~25 on 2 cores, the
//!   time a caller's process was not run left out; at 24-37 some Cluster runs overran, the
//!   driver held up for seconds: BENCHMARKS.md, "Redis promotions"; asserted by the short
//!   form).
//! - **A reconnected proxy re-checks what it holds.** The Redis that answers after a
//!   reconnection may be a promoted replica without the last lease renewals: the proxy
//!   counts its lease as lapsed, hands no more requests to its actors (the fence closes,
//!   what was queued is read again), and claims its lease and every URN again, stopping the
//!   activations whose URN another member took, before it serves again.
//!
//! At [`Durability::Primary`] (the default: nothing waits for a replica), a lagging
//! promotion can undo acknowledged writes: a member whose lease the promoted replica lost
//! has its activations taken over by another member that reached the new primary first,
//! and that one loads the replica's stale state. With the example (replicas stalled
//! 2-2.5 s), in 3 of 7 Sentinel runs at this level some activations loaded a count lower
//! than one a caller had been answered with: 18 over 5 promotions, and, before a
//! reconnected proxy re-checked what it holds, 15 over 4 and at least 15 over 1; the other
//! 4 runs (28 promotions) had none, nor had Cluster over 23. No URN was served by two
//! systems at once (the displaced activations' writes are fenced off, and a reconnected
//! member re-checks before it serves), and no accepted tell was lost in these runs (a tell
//! accepted in the last moment before the kill, not read yet, can be). The proxy and the
//! client warn at start-up when they find replicas at this level, naming the topology.
//!
//! At [`Durability::Replicas`] `{ n, timeout }`, each write that must survive a promotion
//! waits (`WAIT n timeout`) until `n` replicas hold it, and fails otherwise (its outcome is
//! then unknown, as after a timeout): the system's lease and its URN claims (a lease is
//! counted held only from a renewal the replicas hold, so the fence closes before the
//! lease can lapse on a promoted replica), the claim of a URN to activate it, the
//! [`StateStore`](scale::StateStore)'s ownership, its writes and their exactly-once record, every tell the
//! client reports accepted (asks need none: their answer is their acknowledgement), a
//! reminder's registration and cancellation ([`Reminders`](reminders::Reminders)), a poller's claims of due
//! ticks, their renewals and acknowledgements ([`ReminderPoller`](reminders::ReminderPoller): a tick whose claim did
//! not reach the replicas is not delivered, and comes again once the claim lapsed), and
//! each event [`Topics::publish`](topics::Topics::publish) reports published on a durable topic (live events wait
//! for nothing: at most once). With `n` equal to the number of replicas that may be
//! promoted, over 20 lagging Sentinel promotions (2 replicas, `n = 2`) and 20 Cluster ones
//! (a replica a shard, `n = 1`) under 64 callers: no split, no state rollback, no accepted
//! tell lost, every durable event whose publish returned `Ok` reached the subscriber group,
//! and every reminder whose registration returned `Ok` fired (Sentinel: 1,970 of 1,970;
//! Cluster: 97,121 of 97,121 over 5 runs of 20 promotions; before a Cluster `WAIT` went to
//! the write's node only, below, 1 of 6,857 and 2 of 22,012 were lost). Handlers of
//! accepted tells ran twice 3-18 times per 20 promotions (the example's `repeated=`: at
//! least once, as after a crash).
//! `examples/tests/redis_failover.rs` asserts each over 2 Sentinel promotions at `n = 2`;
//! the figures are in BENCHMARKS.md, "Redis promotions". With `n`
//! below the number of replicas, a promotion may pick a replica that did not acknowledge:
//! Sentinel chooses by the replication offsets it last read, and in one of 20 promotions at
//! `n = 1` with 2 replicas it rolled 30 activations' state back and lost 31 reminders. While
//! fewer than `n` replicas answer, those writes fail, and the proxy warns at start-up when
//! the primary has fewer.
//!
//! A `WAIT` counts the writes of its own connection only, and answers at once on a
//! connection that wrote nothing since its replicas last acknowledged. So each write's
//! `WAIT` goes out on the connection that sent it (a client has
//! [`pool_size`](ProxyConfig::pool_size) connections, and a reminder's registration and
//! cancellation sent their `WAIT` on the next one; with the only replica frozen, each is
//! `Unavailable` now, under 64 callers too: `a_registration_is_ok_only_once_a_replica_holds_it`
//! in `tests/reminders/`), and a write
//! fails, its fate unknown, when the client's connection was replaced between the write and
//! its `WAIT`'s answer: Sentinel closes every client of a server it reconfigures (`CLIENT
//! KILL TYPE normal`), the client reconnects at once, and a `WAIT` sent on the new
//! connection counts none of the write. Before these two rules, runs of 20 Sentinel
//! promotions at `n = 2` lost 1 of 4,977 reminders whose registration returned `Ok`; with
//! the first alone, 1 of 2,110 and 4 of 2,517. The 4, traced: two pairs, each pair answered
//! `Ok` by one shared `WAIT` ~140 ms after every connection of the members had closed at
//! once, no primary being killed then, while no replica had acknowledged a write for
//! seconds; no poller ever claimed them. With both rules, 0 of 1,959; as released (the lease
//! renewal unchecked, below), 0 of 1,970. In a Cluster, third, each `WAIT` goes to the
//! node that served the write's key when the write was sent, and fails if the client's
//! slot map names another node for it by the answer: fred sends a command whose node it
//! has no connection to (that node just died) to any node it is connected to, where a
//! `WAIT` counts none of the write and answers at once with that node's replicas, and it
//! keeps a dropped connection's `CLIENT ID` until its next slot-map refresh, so the
//! connection check above saw nothing. Traced in the example (22,012 reminders over 20
//! promotions): 2 registrations returned `Ok` 16 ms after their primary was killed, during
//! the replicas' stall, were never claimed and were gone from Redis at the end.
//! `a_wait_for_writes_to_a_cluster_node_that_died_goes_to_no_other_node` (in
//! `durability.rs`'s tests; a real Cluster, the replica stalled, the primary killed, 64
//! callers asking without pause whether their writes were replicated) saw such a write
//! counted as replicated in 1 of 3 runs before the change; after it, never. A lease's
//! renewal is checked the same way: one not known to be replicated leaves the lease
//! unconfirmed until the next, and the requests it meets wait for that (above, "Traffic is
//! never split").
//!
//! A `WAIT` holds its connection until it answers (Redis runs a connection's commands in
//! order), so a connection has one in flight at a time, and the callers that came while it
//! ran share the next one: a write at this level waits for at most two `WAIT`s, however
//! many callers share the connection (`durability.rs`,
//! `callers_coming_during_a_wait_share_the_next_one`). A reminder's registration or
//! cancellation and a durable publish return within
//! [`command_timeout`](ProxyConfig::command_timeout), the write and its `WAIT`s together
//! (`Unavailable` when the time is up, the outcome unknown): with both replicas of a
//! Sentinel topology frozen, 64 callers registering and publishing without pause at a
//! 700 ms command timeout are each answered within it + 250 ms
//! (`durable_writes_return_within_the_command_timeout_while_replicas_lag` in
//! `tests/reminders/`), where two `WAIT`s of 500 ms (+ the 200 ms the client gives each
//! answer) would otherwise take 1.4 s.
//!
//! The Python client takes the level too (`durability=conclib.Durability.replicas(n,
//! timeout=...)`): a tell, a durable publish and a reminder's registration or cancellation
//! are followed by `WAIT` on the connection that wrote them (on a Cluster, in one pipeline
//! to the node serving its key, never redirected) and fail `NotReplicated` when fewer
//! replicas acknowledged (`python/tests/test_durability.py`, on a primary whose replica is
//! frozen, through Sentinel, and on a Cluster with every replica frozen). At the default
//! level it waits for no replica, and a lagging promotion lost 7 of 244 tells it reported
//! accepted in a run of the short form above (16 Python callers beside the 64 Rust ones; its
//! asks, whose answer is their acknowledgement, lose nothing); on a Cluster, 17 of 4,007
//! over 20 promotions. With its callers at `Replicas` as the members, every Python tell
//! reported accepted reached a member's handler: the short form asserts it
//! (`py_lost_accepted=0`), and 20 Cluster promotions at `n = 1` lost none (0 of 3,010;
//! a later run lost 2 of 2,536, not traced: docs/bench-log.md, 2026-11-28 20:00).
//! A Python member (`conclib.host.ActorHost`, on `redis://` or a Sentinel URL) takes it as
//! `durability=`: its activations' claims, their state's fence and each save wait for the
//! replicas as a Rust member's do (`python/tests/test_host_durability.py`, a frozen replica:
//! every save refused `NotReplicated` in time, none reported done), and so do its actors'
//! own client's writes (`self.client`: reminder registrations, tells, durable publishes).
//! Its lease renewals and its reminder poller's claims and acknowledgements wait for no
//! replica, and it refuses a Cluster URL; promotions with Python members at that level are
//! not measured yet.
//!
//! `py_handler_failed=` counts the Python tells reported accepted that reached a handler
//! whose own `StateStore` save then failed, and that were not handled again: a told
//! message's handler that returns an error is acknowledged (logged), not delivered again.
//! In the example each was accepted up to 0.9 s before the replicas were stalled and
//! handled while they were (its save's `WAIT` answered by no replica within the level's
//! timeout, or cut by the primary's kill): 10-15 per 20 Sentinel promotions, 85 of 3,010
//! per 20 Cluster ones. The Rust callers' tells met the same failing saves (91-290 per run)
//! but none the Rust client had reported accepted; why Python's tells wait that long before
//! their handler runs is not known. A handler whose tell must survive its own failed write retries the write itself.
//!
//! At [`Durability::Primary`], the same runs (replicas stalled 2 s and cut from the
//! primary, 6 Sentinel promotions) lost 312 of 2,629 reminders whose registration had
//! returned `Ok` and 3 of 3,127 durable events whose publish had, delivered 239 reminders
//! twice (their acknowledgement lost), and rolled 63 activations' state back.
//!
//! **Recovery after a promotion.** A shard needs `n` replicas again before writes at this
//! level succeed: after a Sentinel promotion one replica of two is left; after a Cluster
//! promotion of a shard with one replica, none, until the old primary has rejoined as a
//! replica and been sent the data set. Redis waits `repl-diskless-sync-delay` (5 s by
//! default) before sending it, for more replicas to share one transfer: with the default,
//! the first answer came 4.5-6.3 s after a Cluster promotion, during which every member
//! stops serving (its lease renewal touches every shard holding its keys); with
//! `repl-diskless-sync-delay 0` (what `conclib_testkit::redis_ha` sets), 0.9-1.2 s (6
//! promotions).
//! So on a Cluster at `Replicas { n }`, give each shard `n + 1` replicas, or set
//! `repl-diskless-sync-delay` low. With the data set sent through the socket
//! (`repl-diskless-sync yes`, Redis 7's default), Redis 7.0 starts sending a rejoined
//! replica the writes that follow the transfer only at the replica's next acknowledgement,
//! once a second, when its first one came before the primary saw the transfer end: the
//! replica then counts for no `WAIT` for up to a second more. In 20 Sentinel promotions at
//! `n = 2` it happened 5 times (the replica's load and the primary's end of transfer 46-90
//! ms apart in the servers' logs), each time the first ok came 1.06-1.25 s after the
//! promotion, against 0.21-0.53 s otherwise; with `repl-diskless-sync no` (the data set
//! through a file: what `conclib_testkit::redis_ha` sets) it cannot happen, and the
//! first ok came 0.20-0.39 s after each of 20 promotions (load 9-12), 0.15-0.78 s at load
//! 13-18 (BENCHMARKS.md, "Redis promotions"). So at `Replicas { n }` with `n` equal to the
//! number of replicas, set `repl-diskless-sync no` where the data set is small enough to go
//! through a file (its cost: the primary writes the data set to disk for each full sync). Not covered at either level: an ask whose answer a
//! promotion lost ends `Unavailable` or `Timeout`.
//!
//! # Metrics
//! Recorded through the `metrics` facade once [`conclib_core::metrics::enable`] was called
//! (the actors' own metrics are listed in [`conclib_core::metrics`]):
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `conclib_proxy_requests_received_total` | counter | system | requests read from the system's stream |
//! | `conclib_proxy_requests_rejected_total` | counter | system, status | requests refused (malformed, unknown URN or message, undecodable, too large, not ours) |
//! | `conclib_proxy_requests_expired_total` | counter | system | requests dropped unprocessed: their deadline had passed |
//! | `conclib_proxy_answers_total` | counter | system, status | asks answered by an actor, by reply status |
//! | `conclib_proxy_answer_seconds` | histogram | system, status | from the request entering Redis to its answer (ms resolution) |
//! | `conclib_proxy_read_batch_size` | histogram | system | requests per read from the stream |
//! | `conclib_proxy_reconnects_total` | counter | system | reconnections to Redis |
//! | `conclib_group_joins_total` | counter | system, group | this system joined a group |
//! | `conclib_group_claimed_total` | counter | system, group | requests pending on a member that is gone, taken over |
//! | `conclib_takeover_moved_total` | counter | system, pattern | requests a gone system left for a pattern's URNs, moved to the members chosen to activate them |
//! | `conclib_takeover_expired_total` | counter | system, pattern | requests a gone system left whose deadline had passed: dropped |
//! | `conclib_takeover_wait_seconds` | histogram | system, pattern | at each takeover that moved requests, how long the oldest of them had waited for the gone system (from its entry into the gone system's stream to the move): what the failover cost the callers who waited longest |
//! | `conclib_activations_total` | counter | system, pattern (its prefix: `user:`), event | `activated`, `passivated`, `refused` (the constructor failed), `forwarded` (to the system holding the URN), `evicted` (by the activation cap), `shed` (for memory) |
//! | `conclib_activations_alive` | gauge | system | activations alive in the system, sampled every 250 ms |
//! | `conclib_proxy_overloaded_total` | counter | system, scope (`urn`, `pattern`, `system`), kind (`ask`, `tell`) | requests refused for too many pending (also in `conclib_proxy_requests_rejected_total` as status `overloaded`) |
//! | `conclib_proxy_pending` | gauge | system | requests read and not yet answered, while a pending limit is set, sampled every 250 ms |
//! | `conclib_client_ask_seconds` | histogram | status | a `ProxyClient` ask's round trip, by reply status or error (`timeout`, `unavailable`, ...) |
//! | `conclib_client_asks_in_flight` | gauge | | asks a process's `ProxyClient`s are waiting for |
//! | `conclib_client_refused_at_send_total` | counter | | asks and tells a `ProxyClient` refused `Overloaded` itself, without sending them (the crate docs, "Overload") |
//! | `conclib_reminders_registrations_total` | counter | namespace | reminders registered through this process |
//! | `conclib_reminders_fired_total` | counter | namespace | ticks delivered and acknowledged by this process's pollers |
//! | `conclib_reminders_coalesced_ticks_total` | counter | namespace | missed ticks folded into those deliveries ([`ReminderTick::missed`](reminders::ReminderTick::missed)) |
//! | `conclib_reminders_retried_total` | counter | namespace | deliveries that failed and were given back to be retried |
//! | `conclib_reminders_lag_seconds` | histogram | namespace | from a tick's due time (the last one a delivery stands for) to its handling |
//! | `conclib_reminders_registered`, `conclib_reminders_due` | gauge | namespace | reminders registered, and those due now, sampled by each poller every second |
//! | `conclib_durable_executions_total` | counter | outcome (`begun`, `resumed`: begun with steps recorded by an earlier run, `reused`: finished already, its result returned, `finished`, `suspended`: a run that let its handler go in a sleep or a promise, to be woken by a reminder) | durable executions ([`durable`]) |
//! | `conclib_durable_steps_total` | counter | outcome (`run`, `replayed`, `fenced`: a record refused) | durable steps |
//! | `conclib_durable_record_seconds` | histogram | — | one record of a durable execution written (its fenced script, and the `WAIT` its durability asks) |
//! | `conclib_topic_published_total` | counter | delivery (`live`, `durable`), outcome (`ok`, `failed`) | events published to topics |
//! | `conclib_topic_received_total` | counter | delivery | events subscriptions received from Redis |
//! | `conclib_topic_dropped_total` | counter | delivery | live events dropped: the subscription's buffer was full |
//! | `conclib_topic_redelivered_total` | counter | delivery | durable events received again (taken before and not acknowledged) |
//! | `conclib_topic_lag` | gauge | delivery (`durable`) | events the groups of the open durable subscriptions have not been delivered yet (`XINFO GROUPS`' `lag`), sampled every [`snapshot_interval`](ProxyConfig::snapshot_interval) |
//! | `conclib_topic_pending` | gauge | delivery (`durable`) | events delivered to those groups and not acknowledged yet, sampled with the lag |
//!
//! # Trust model
//! Anyone who can write to a namespace's request streams can ask its actors anything they
//! expose: expose (`#[handle(remote)]`) only what such clients may do, and check rights in
//! the handler. Give web processes the client role and serving processes the proxy role,
//! as Redis ACL users: [`client_acl`](acl::client_acl) and [`proxy_acl`](acl::proxy_acl) return the rules (`ACL SETUSER name
//! on >password <rules...>`). A client with the client role resolves URNs, appends requests
//! and pops its replies; it cannot list keys, push to any list (so it cannot forge another
//! client's answers), or read leases and other data. Reply lists are named by 128 random
//! bits. The client role allows `PING`, `HELLO`, `AUTH`, `QUIT`, `CLIENT SETNAME`, `CLIENT
//! ID`, `CLIENT UNBLOCK`, `INFO`, `GET` (reading `{ns}:urn:*` and `{ns}:pattern:*`),
//! `EXISTS`, `XADD`, `EVAL` and `EVALSHA` (on `{ns}:sys:*:req`, in a Redis 7 selector of
//! those keys: no `DEL` of a request stream), and `BLMPOP` and `DEL` (on `{ns}:reply:*`, in
//! a selector of their own): a client in another language under it pops its replies with
//! `BLMPOP`, not `LPOP` or `BLPOP`, and takes an ask's time from its own clock. Reminders
//! and topics are granted in two more Redis 7 selectors of their own keys and channels (the
//! reminders' scripts and their commands, `TIME` among them, on the reminders' shard keys,
//! `{ns}:rem:{{ns}:*`; the topics' commands on `{ns}:topic:*` and the channels of the same
//! names): see [`client_acl`](acl::client_acl).

//! # Protocol (version 1)
//!
//! Everything below is what a client in another language needs. `{ns}` is the namespace
//! ([`ProxyConfig::namespace`], default `conclib`). Requires Redis 7.0 or later
//! (`BLMPOP`). All keys are single-key per command, so Redis Cluster works with any slot
//! layout.
//!
//! ## Keys
//! | key | type | content | lifetime |
//! |---|---|---|---|
//! | `{ns}:urn:{urn}` | string | id of the system serving the actor `{urn}` | lease: `PX` [`urn_ttl`](ProxyConfig::urn_ttl) (15 s), or for a pattern's activation outside a Redis Cluster [`activation_urn_ttl`](ProxyConfig::activation_urn_ttl) (2 min); each key renewed by the serving proxy once a third of its TTL passed; deleted when the actor stops, or by a member of its pattern taking it over once its system's lease lapsed |
//! | `{ns}:sys:{system}:req` | stream | requests to system `{system}`, consumer group `proxy`, consumer `proxy` | entries trimmed once answered (at most one stream node of answered entries stays until the next renewal); a group's stream (`{system}` a group id, below) is trimmed at each renewal, below the oldest entry still pending on any member; the key `PEXPIRE`d to [`queue_ttl`](ProxyConfig::queue_ttl) (1 h) at each renewal; deleted at a shutdown with [`release_on_shutdown`](ProxyConfig::release_on_shutdown) if nothing waits in it |
//! | `{ns}:sys:{group}:req:hi` | stream | a group's fast lane (`{group}` a group id, below): its `prio high` requests, read by every member beside the group's stream, as the same consumer (its system id) of a consumer group `proxy`, so that they overtake a backlog of tells there. A client writes a `prio high` request to a group here (`XADD NOMKSTREAM`), and to the group's stream if this stream does not exist (members of an older version); ours writes its plain asks here too with [`asks_overtake_tells`](ProxyConfig::asks_overtake_tells). A system's own stream has none: its proxy reads up to [`max_in_flight`](ProxyConfig::max_in_flight) requests at once, so a high-priority one reaches its actor's high lane past a backlog anyway | as the group's stream: entries acknowledged, trimmed, claimed from a gone member, and the key `PEXPIRE`d, on their own, by each member's instance reading it |
//! | `{ns}:pattern:{prefix}` | string | group id (`~{prefix}*`) of the systems activating URNs `{prefix}{id}` | renewed by each member, like URN keys |
//! | `{ns}:sys:{group}:member:{system}` | string | token of the proxy instance through which `{system}` is a member of `{group}` (group ids: `~{urn}` for a shared URN, `~{prefix}*` for a pattern); the group's stream `{ns}:sys:{group}:req` has one consumer per member, named by its system id | lease: `PX` [`lease_ttl`](ProxyConfig::lease_ttl) (4 s), renewed every third of it; deleted when the member leaves |
//! | `{ns}:placement:{prefix}` | hash | a pattern's directory, read to place its URNs: one field per member system, `"<activations> <live until, ms since the Unix epoch>"` | rewritten by each member at each activation and passivation and every third of a lease, live for a lease; a member's field deleted when it leaves, or, after it lapsed, once ten leases or [`activation_urn_ttl`](ProxyConfig::activation_urn_ttl) and a lease passed, the longer (the takeover looks at the members listed); the key `PEXPIRE`d to the same |
//! | `{ns}:state:{urn}` | hash | an activation's [`StateStore`](scale::StateStore): `owner` (the latest activation's token), `data`, `applied` (the requests whose handling wrote it and that its writer had not acknowledged yet, one `<entry id> <stream key>` a line) | until cleared; without `data` (nor a durable journal: fields `journaled`, `jn:`, `js:`, `jr:`, `jp:`, `jw:`, see [`durable`]), a day |
//! | `{ns}:state:{urn}:carried` | string | the state an activation moved away carried to the URN's next one ([`StateStore::dehydrate`](scale::StateStore::dehydrate)): its writer's token, a line break, the state; taken (deleted) by the next activation's open, a Rust one's claim or a Python actor host's, and used only while its writer still owns `{ns}:state:{urn}` | a minute |
//! | `{ns}:rem:{{ns}:{s}}:due` | sorted set | reminders of shard `{s}` (0 to 15, by FNV-1a of the URN; the outer braces of `{{ns}:{s}}` are literal, the shard's hash tag, so a shard's scripts touch one Cluster slot), member `urn \n name`, scored by when they are next due or, while claimed, when the claim lapses (ms since the Unix epoch, Redis's clock) | until cancelled, or acknowledged once (a one-shot reminder) |
//! | `{ns}:rem:{{ns}:{s}}:r:{urn}\n{name}` | hash | a reminder: `urn`, `name`, `due`, `period`, `payload`, `codec`, `claim` (the token of the poller delivering it), `claims`, `gen` (the registration's, part of every claim's token); `each` (the gap of [`Reminder::deliver_each`](reminders::Reminder::deliver_each)); once a periodic one fired, `fired` and `coalesced` (ticks delivered, and missed ticks folded into them) | as its member |
//! | `{ns}:rem:{{ns}:{s}}:u:{urn}` | set | the names of a URN's reminders (listing without a scan) | as its members |
//! | `{ns}:rem:pollers` | hash | each running [`ReminderPoller`](reminders::ReminderPoller)'s last report for the live view: field its random token, value `"<Redis's clock at the report, ms> <JSON of a PollerReport>"` | rewritten every [`snapshot_interval`](ProxyConfig::snapshot_interval) of the poller's client (none without one); a field deleted a minute after its last report by the next report of any poller; the key `PEXPIRE`d to a minute |
//! | `{ns}:departed:urn:{urn}`, `{ns}:departed:pattern:{prefix}` | string | the id of the system that served the URN (or activated the pattern) and shut down gracefully: a client that finds no owner waits for a successor, then answers `Unavailable`, not `UnknownUrn` | `PX` [`departed_grace`](ProxyConfig::departed_grace) (30 s), written at the start of a graceful shutdown |
//! | `{ns}:sys:{system}:lease` | string | random token of the one proxy instance serving `{system}`, then `@{host}:{pid}` | lease: `PX` [`lease_ttl`](ProxyConfig::lease_ttl) (4 s), renewed every third of it; deleted at shutdown |
//! | `{ns}:reply:{client}` | list | reply frames for one client (`{client}`: 1 to 256 bytes; ours are 32 random hex digits, and the name is what keeps other clients from reading the list: make it unguessable) | `PEXPIRE` [`reply_ttl`](ProxyConfig::reply_ttl) (60 s) at each push; deleted when the client closes |
//! | `{ns}:snapshot:{system}` | string | JSON of a [`PublishedSystem`](snapshots::PublishedSystem): the system's [snapshot](conclib_core::ActorSystem::snapshot) and proxy counters | `PX` three [`snapshot_interval`](ProxyConfig::snapshot_interval)s (at least 1 s), rewritten every interval while `{ns}:snapshots:watched` exists; else every tenth interval, without the actors listed in brief, living thirty intervals; deleted at shutdown |
//! | `{ns}:snapshot-others:{k}:{system}` | string | chunk `k` of the base: the JSON of every actor in brief, published whole now and then (see [`SnapshotReader::others`](snapshots::SnapshotReader::others)) | `PX` 5 minutes and three intervals; a new base every 5 minutes at most, sooner when the changes grow; deleted at shutdown |
//! | `{ns}:snapshot-others:changes:{system}` | string | what changed since the base, published with each snapshot while `{ns}:snapshots:watched` exists: the actors whose figures changed, those gone | as the snapshot; deleted at shutdown |
//! | `{ns}:snapshots:watched` | string | set by every [`SnapshotReader::systems`](snapshots::SnapshotReader::systems) read: someone watches | `PX` 10 s |
//! | `{ns}:moves` | pub/sub channel | hand-over notes: each hand-over of a URN key to another system (a drain's, a rebalance's, a reroute's move), published by the script that makes it, as the target's id, a newline, and the URN key `{ns}:urn:{urn}`; a client with a route to that URN cached sends there from then on (hints only: a client that missed one is passed on by the member left). Not on a Redis Cluster | none (pub/sub) |
//! | `{ns}:topic:{<name>}:live` | pub/sub channel | a live topic's events (the name between braces: the Cluster hash tag), each `0x01`, the codec name's length (1 byte), the codec name (`bincode`, `msgpack`), the encoded event | none (pub/sub) |
//! | `{ns}:topic:{<name>}:log` | stream | a durable topic's events, fields `v` (`1`), `codec`, `body`; one consumer group per subscriber group, one consumer per subscriber (see [`topics`]) | trimmed at each publish to the topic's [`Retention`](topics::Retention) (`MAXLEN ~`, default about 100,000 events, or `MINID ~`) |
//! | `{ns}:snapshots` | sorted set | system ids publishing snapshots, scored by when their snapshot expires (ms since the Unix epoch) | entries removed at shutdown, or an hour after they expired |
//!
//! ## Asking
//! 1. **Resolve** the URN: `GET {ns}:urn:{urn}` (nil: the pattern key, below). Nil: no
//!    such actor, unless `GET {ns}:departed:urn:{urn}` (or, for a pattern's URN,
//!    `{ns}:departed:pattern:{prefix}`) has a value: its system is restarting or being
//!    replaced, so look again (ours: every 25 ms) until the deadline, then fail
//!    retryable (`Unavailable`); else fail at once (`UnknownUrn`). Else the
//!    system id; it may be cached briefly (ours: [`resolve_cache_ttl`](ProxyConfig::resolve_cache_ttl), 1 s).
//!    A URN key outlives a graceful shutdown of its proxy by up to its TTL (unless
//!    [`release_on_shutdown`](ProxyConfig::release_on_shutdown)): requests sent meanwhile
//!    wait in the stream for the next proxy of that system, and expire at their deadline.
//!    With `release_on_shutdown`, the proxy also deletes its request stream at shutdown if
//!    nothing waits in it (one script: every entry delivered and acknowledged), so that a
//!    client still holding the route gets nil from its `XADD NOMKSTREAM` (below).
//!    The keys of a group (a shared URN's, a pattern's) are never released by a member,
//!    which cannot know it is the last: after the last member left they lapse within a
//!    lease, and requests sent to the group meanwhile expire at their deadline unanswered.
//! 2. **Send**: `XADD {ns}:sys:{system}:req NOMKSTREAM * v 1 id <id> urn <urn> msg <name> ttl <ms> reply <reply-key> codec <codec> body <bytes>`.
//!    A nil answer means the stream does not exist: resolve again without the cache. If the
//!    URN names another system now (a drained member handed its URNs on before deleting
//!    its stream), send there; else the system is gone (treat as unknown URN, or as
//!    restarting when a departed marker says so).
//!    A `prio high` request to a group (a system id starting with `~`) goes to the group's
//!    fast lane `{ns}:sys:{group}:req:hi` first, so that it overtakes the group's backlog;
//!    a nil answer there only means the members read no fast lane: send to
//!    `{ns}:sys:{group}:req` (a client that always does is served too, in the backlog's
//!    order).
//!    Always add with id `*`: Redis dates the request (an explicit id in the future only
//!    makes the proxy date it by its reading time).
//!
//!    | field | value |
//!    |---|---|
//!    | `v` | protocol version, `1` |
//!    | `id` | request id, decimal u64 (read as a number: send it without sign or leading zeros): the reply frame carries it. Unique among this client's asks for as long as its reply list lives (ours counts up from 1 and never reuses one; see **Wait** for why a late frame can still come for an id), and required for an ask: an ask without a numeric `id` is dropped unanswered |
//!    | `urn` | the actor's URN (UTF-8) |
//!    | `msg` | the message's wire name ([`Message::name`](conclib_core::Message::name)): for a `#[message]` type, its `name = "..."` option, else the type's name as written, without its module path (`Add`; a generic one `Wrap<u32>`, its arguments as `std::any::type_name` spells them) |
//!    | `ttl` | decimal milliseconds, 1 to 4294967295: the request expires `ttl` after Redis took it (its entry id's millisecond part), on Redis's clock |
//!    | `reply` | the client's reply list key; absent for a tell. A key that does not start with `{ns}:reply:`, or has nothing or more than 256 bytes after it, gets no answer: the request is dropped unanswered (an empty `reply` field is such a key, not a tell) |
//!    | `codec` | payload codec: `bincode`, or `msgpack` (feature `msgpack`) |
//!    | `prio` | optional: `high` puts the request in the actor's high-priority lane (it overtakes queued normal messages); absent or anything else: the normal lane |
//!    | `tp` | optional: the sender's W3C `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`); the actor's `handle` span records its trace id as `trace_id` and its span id as `parent_span_id`, so one trace follows the request across processes. `ProxyClient` sends a child of the task's [`TraceContext`](conclib_core::trace::TraceContext) (or a new trace); a value the proxy cannot read as one is ignored, as is a missing one: the request is handled outside any trace |
//!    | `rt` | optional, an ask's: `1` says the asker reads **route hints**. When the system its route named passes the ask on to the system holding the URN (it moved there: a drain, a rebalance), or a takeover moves it out of a gone member's stream, the holder's answer names itself (see the reply frame below), so that the asker sends there from then on instead of through the route it cached (each such ask costs two trips through Redis). `ProxyClient` and the Python client send it; without it every answer is a plain frame. A proxy passing a request on, or a takeover moving it, writes `2` in the entry it adds: answer with a hint |
//!    | `from` | optional: the id of the asking system (ours sends [`system_id`](ProxyConfig::system_id) when it is set); a pattern placed with [`Placement::PreferAsker`](scale::Placement::PreferAsker) activates the URN on that system when it is a live member of the pattern's group. Ignored otherwise |
//!    | `body` | the message encoded with that codec, at most [`max_payload`](ProxyConfig::max_payload) bytes (default 8 MiB; the same limit applies to answers: a larger response or error is answered `TooLarge`) |
//!
//!    Field order does not matter; unknown fields are ignored; a field given twice counts
//!    with its last value. An entry is one request: to send several in one round trip, use
//!    a script (ours does so for asks made together: `EVAL` of a script that appends them
//!    all if the stream exists — `EXISTS`, then one `XADD` each, no `NOMKSTREAM` needed
//!    inside the script — and returns 0 if it does not), or pipeline the `XADD`s.
//! 3. **Wait**: one reader per client, `BLMPOP <secs> 1 {ns}:reply:{client} LEFT COUNT <n>`,
//!    dispatching each frame by its request id. Frames for ids no longer waited for (timed
//!    out) are discarded. The proxy counts a request's deadline from its entry id on
//!    Redis's clock, which is later than the moment the client sent it from: an answer
//!    can arrive a few milliseconds after the deadline as the client counts it, and a
//!    `Timeout` (status 5) always does (it is sent once the deadline has passed). To see
//!    every answer, wait `ttl` plus a grace for the round trips. Ours waits exactly its
//!    timeout (the `ttl` it sends is the time its ask has left) and reports `Timeout` for
//!    an answer that comes later: such a request may have been handled. So never give a
//!    later ask the id of one whose frame may still come.
//!
//!    **Groups and patterns.** The value of `{ns}:urn:{urn}` may be a group id (it starts
//!    with `~`, which no system id does): it is used exactly as a system id, so the request
//!    goes to `{ns}:sys:~{urn}:req`, the stream all members of the URN's group read. If
//!    `{ns}:urn:{urn}` does not exist and the URN has a `:` followed by at least one
//!    character, take the URN up to and including its last `:` as `prefix` and `GET
//!    {ns}:pattern:{prefix}`: a value there is the group id of the systems that activate
//!    such URNs on demand (`~{prefix}*`); send to its stream like any system's. Only when
//!    both are nil is the URN unknown (so a pattern's `{id}` never contains `:`: the last
//!    `:` of `acct:7:8` makes the prefix `acct:7:`). Once the actor is activated,
//!    `{ns}:urn:{urn}` names the system holding it, and later resolutions go straight
//!    there; a request sent to the pattern's stream meanwhile (a cached resolution) is
//!    passed on to the holder by the member that reads it, so caching a group id like a
//!    system id is safe.
//! 4. **Status 2 or 10** (`UnknownUrn`, `NotOwner`) means the cached resolution is stale:
//!    drop it, resolve again, and if the URN now names another system, send once more
//!    (ours: once, with a new id and the first send's deadline; when the URN names the
//!    same system or none, the answer received stands).
//!
//! ### One ask in raw Redis commands
//! The actor `counter` (at 1) of system `backend` in namespace `shop`, asked `Add(5)` with the
//! MessagePack codec (`tests/raw_protocol.rs` runs exactly this):
//! ```text
//! GET shop:urn:counter                                   -> "backend"
//! XADD shop:sys:backend:req NOMKSTREAM * v 1 id 7 urn counter msg test.Add ttl 5000
//!      reply shop:reply:0123456789abcdef0123456789abcdef codec msgpack body "\x05"
//!                                                        -> "1700000000000-0"
//! BLMPOP 5 1 shop:reply:0123456789abcdef0123456789abcdef LEFT COUNT 16
//!   -> ["shop:reply:0123...", ["\x00\x00\x00\x00\x00\x00\x00\x07\x00\x06"]]
//!      id 7 (8 bytes, big-endian), status 0 (Ok), payload msgpack 6
//! ```
//!
//! ### How Rust types travel as MessagePack
//! (`tests/msgpack_mapping.rs` checks each line.) A newtype struct (`struct Add(u64)`) is its
//! bare value; a unit struct is an empty array (nil is accepted too); `()` and `None` are
//! nil, `Some(x)` is `x`; a struct is a map of field names (an array of the fields in order
//! is accepted too); an enum is externally tagged: a unit variant is its name as a string,
//! any other variant a one-entry map from its name to its content (a tuple variant's
//! content an array); a tuple or tuple struct is an array; a map (`HashMap`, `BTreeMap`) is
//! a map; `Vec<u8>` is an array of integers (use `serde_bytes` for bin); strings are str.
//! Reading, an integer of any width is accepted where its value fits the field (a negative
//! or a float for a `u64` is refused), a struct's unknown fields are ignored and its
//! missing `Option` fields are `None`. Trailing bytes are refused.

//! A **reply frame** is binary: request id (8 bytes, unsigned big-endian), status (1 byte),
//! payload (the rest).
//!
//! | status | name | payload |
//! |---|---|---|
//! | 0 | Ok | the response, encoded with the request's codec |
//! | 1 | HandlerError | the handler's error (`Message::Error`), encoded with the request's codec |
//! | 2 | UnknownUrn | UTF-8 text: no actor with this URN in the serving system |
//! | 3 | UnknownMessage | UTF-8 text: the actor does not expose or handle this message |
//! | 4 | Panicked | UTF-8 panic message |
//! | 5 | Timeout | UTF-8 text: the actor did not answer before the deadline |
//! | 6 | ActorStopped | UTF-8 text |
//! | 7 | NoResponse | UTF-8 text: the actor dropped the request |
//! | 8 | BadRequest | UTF-8 text: missing field, bad version, unknown codec |
//! | 9 | CodecError | UTF-8 text: the body is not the message, or the answer could not be encoded |
//! | 10 | NotOwner | UTF-8 text: another system owns the URN; resolve again |
//! | 11 | TooLarge | UTF-8 text: body or answer over the size limit |
//! | 12 | MailboxFull | UTF-8 text |
//! | 13 | Overloaded | UTF-8 text: `scope=urn limit=8 depth=8` (scope `urn`, `pattern` or `system`; words may be added) |
//!
//! **Route hint.** To an ask whose request had `rt`, a frame whose status byte has its high
//! bit set (`0x80`, [`protocol::HOLDER_FLAG`]) carries after it the length of a system id (one
//! byte) and that id: the system that answered, which holds the URN now; the status is the
//! byte without that bit, and the payload follows the id ([`protocol::split_reply`]). Cache
//! that system as the URN's route (ours replaces the route it cached, only if it is still
//! the one the ask went by). A hint that is wrong by the time it is used costs what any stale
//! route does: the request is passed on again, or answered `NotOwner`.
//!
//! A status not in this table is a broken reply: ours fails the ask with
//! [`ProxyError::Protocol`] (an `AskError::Transport` through the typed API); a version 1
//! proxy sends no other.
//!
//! A **tell** is the same entry without `reply` (and without need of an `id`); nothing is
//! answered. It stays pending until the actor has handled it. A tell refused for any of
//! the reasons an ask would be answered with a status above (a missing field, a body that
//! does not decode, an unknown URN or message, a full mailbox) or expired is dropped, as
//! there is nobody to answer: the proxy logs it (`warn`; `debug` for an expired one), and
//! counts one it refused before handing it to the actor (a full mailbox included) in
//! `conclib_proxy_requests_rejected_total` (by status) and an expired one in
//! `conclib_proxy_requests_expired_total`.
//!
//! ## Serving (what a proxy does)
//! - At start: takes `{ns}:sys:{system}:lease` (value `<random>@<host>:<pid>`) with `SET NX
//!   PX`, at once if the holder provably died (same host, pid gone), else waiting up to one
//!   lease time for a crashed predecessor's lease to lapse, else [`ServeError::SystemInUse`];
//!   `XGROUP CREATE {ns}:sys:{system}:req proxy 0 MKSTREAM` (so requests queued before the
//!   group existed are served); claims every exposed actor's URN key with a script that
//!   sets it if absent or already this system's (a URN owned by another live system is
//!   refused, logged, and listed by [`ProxyHandle::conflicts`]: traffic is never split).
//! - Reads with `XREADGROUP GROUP proxy proxy COUNT <n> [BLOCK <ms>] STREAMS <key> <id>`:
//!   first id `0` (entries delivered before and never acknowledged — a crash, a lost
//!   answer), then `>`. The pending list is read again the same way after an answer could
//!   not be written; an entry still being handled, or acknowledged while that read was on
//!   its way (the reply can still list it), is not handed to the actor again.
//! - For each entry: checks the fields, drops it unanswered if expired, looks the URN up in
//!   the actor system, checks the message is exposed, decodes, checks its leases are fresh
//!   (else renews them first), asks the actor with the remaining time (a tell: waits for its
//!   handler to finish), encodes the answer.
//! - Answers in batches, each in one script call (atomic, so a reply list always has a TTL):
//!   for each reply list `RPUSH key frame...` and `PEXPIRE key reply_ttl`, then `XACK` of
//!   the batch's entries and `XTRIM key MINID ~ <id>`, where `<id>` is the oldest entry
//!   still being handled or, with none, the one after the newest acknowledged (`~`: whole
//!   stream nodes only, no per-entry deletion). Nothing is trimmed until the pending list
//!   was re-read at start. A reply list holding something else than a list loses only its
//!   own frames; any other refusal (out of memory, read-only replica) fails the script
//!   before anything is acknowledged, and the proxy writes the answer again, retrying for a
//!   few seconds, then reading the requests again from its pending list.
//!   The replies of requests answered at once are written on
//!   the reading connection just before its next `XREADGROUP`, so they leave in the same
//!   write; later ones on another connection. In a cluster (keys of several slots) it is one
//!   script per reply list, then `XACK` and `XTRIM`, in one pipeline.
//! - Every third of the lease time: renews its lease, its URN keys (re-creating them after a
//!   Redis restart) and the stream's TTL, and trims the stream exactly (`XTRIM key MINID
//!   <id>`, as at shutdown). Whenever the system takes or frees a URN
//!   (`ActorSystem::urn_changes`), and every [`scan_interval`](ProxyConfig::scan_interval),
//!   it reads the system's URN journal (`ActorSystem::urn_changes_since`: a cost per change,
//!   not per actor), registers actors spawned since and releases (compare-and-delete) the
//!   URNs of stopped ones; every 30 s, and when the journal no longer reaches back to its
//!   last look, it looks at every actor instead. If the stream's ids ran ahead of the clock, it replaces the
//!   stream by an empty one with the same group once every entry was delivered and
//!   acknowledged (one script: `XINFO`, `DEL`, `XGROUP CREATE ... $ MKSTREAM`).
//!
//! ## Codecs
//! Payloads are encoded by a [`Codec`](codec::Codec): [`Bincode`](codec::Bincode) (bincode 2, `config::standard()`,
//! through serde) by default, [`MsgPack`](codec::MsgPack) with the `msgpack` feature (`rmp-serde`, structs as
//! maps) for clients in other languages. The envelope never depends on the codec.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The crate's face: a dozen names for what every user meets (serve, connect, ask, configure,
// the errors), and a module per area for the rest.
pub mod acl;
mod client;
pub mod config;
mod conn;
pub mod daemon;
pub mod durability;
pub mod durable;
mod error;
#[cfg(test)]
mod future_size;
#[cfg(test)]
mod lua_copies;
mod metrics;
pub mod overload;
mod persistence;
pub mod protocol;
mod proxy;
mod random;
pub mod reminders;
mod script;
pub mod snapshots;
pub mod stats;
pub mod topics;
mod unacked;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

pub use client::{ByUrn, ProxyClient, RemoteRef};
pub use config::ProxyConfig;
pub use daemon::start_redis;
pub use durability::Durability;
pub use error::{ConfigError, ProxyError, ServeError};
pub use protocol::Status;
pub use proxy::{ProxyHandle, start_proxy};

/// The codecs a request's payload is written in, from `conclib-codec`: the client and the
/// proxy agree on one per message ([`Bincode`](codec::Bincode) unless the message says
/// otherwise; [`MsgPack`](codec::MsgPack) with feature `msgpack`, what the Python client
/// speaks).
pub mod codec {
    #[cfg(feature = "msgpack")]
    pub use conclib_codec::MsgPack;
    pub use conclib_codec::{
        BINCODE_DECODE_LIMIT, Bincode, Codec, CodecError, DecodeVisitor, DepthLimited, MAX_DEPTH,
        builtin_codec, decode_value, encode_value,
    };
}

/// Scale-out: virtual actors activated by URN pattern on the members of a group, placed by a
/// [`Placement`](scale::Placement), their state kept in a fenced
/// [`StateStore`](scale::StateStore) (ARCHITECTURE.md, "The scale-out").
pub mod scale {
    pub use crate::proxy::{
        Activation, Activator, DEFAULT_PASSIVATE_AFTER, Drained, MemberInfo, PlaceFn, Placement,
        StateStore, StoreError,
    };
}

/// Whether a serving process is ready to take requests: what an orchestrator's readiness
/// probe asks ([`ProxyHandle::readiness`]).
pub mod readiness {
    pub use crate::proxy::{Readiness, ReadinessProbe};
}
