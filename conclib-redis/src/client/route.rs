//! Which system serves a URN, and through which connection to write to it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::prelude::*;

use super::departed;
use super::resolved::Resolved;
use super::shared::Shared;
use crate::conn::{self, as_bytes, keyed, owned};
use crate::error::{ProxyError, redis_error};

/// A look-up under way: its entry in the client's `looking_up`, removed when dropped, then
/// its sender, which wakes the waiters.
struct Running<'a> {
    shared: &'a Shared,
    urn: String,
    _wake: tokio::sync::watch::Sender<()>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.shared
            .looking_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.urn);
    }
}

/// What a look-up that finds no owner does about a URN whose system departed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDeparted {
    /// Looks again until a successor serves it or the deadline (then `Unavailable`): an ask.
    WaitForSuccessor,
    /// Answers at once, as for any URN without an owner: "who serves it now".
    Unknown,
}

impl Shared {
    /// A usable command connection, the next in turn (after an outage they reconnect one by
    /// one), or `Unavailable` if none is: Redis is down, and a command would only wait in
    /// fred's queue for its return (see `links`).
    pub(super) fn connection(&self) -> Result<&Client, ProxyError> {
        let clients = self.pool.clients();
        let start = self.next_link.fetch_add(1, Ordering::Relaxed);
        (0..clients.len())
            .map(|i| (start + i) % clients.len())
            // In a cluster a lost link is one node's: the others still take commands.
            .find(|&i| {
                clients[i].is_connected()
                    && (self.clustered || self.links[i].load(Ordering::Acquire))
            })
            .map(|i| &clients[i])
            .ok_or_else(|| ProxyError::Unavailable("not connected to Redis".into()))
    }

    /// The system serving `urn` and its request stream, from the cache unless `fresh`.
    pub(super) async fn resolve(
        &self,
        urn: &str,
        deadline: Instant,
        fresh: bool,
    ) -> Result<Resolved, ProxyError> {
        if !fresh {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = cache.get(urn)
                && r.until > Instant::now()
            {
                return Ok(r.clone());
            }
        }
        // Boxed: the lookup's commands make a future of about 6 KB, which every ask's future
        // would hold (and copy as it is built and moved) for a path most asks never take.
        if fresh {
            Box::pin(self.look_up(urn, deadline, OnDeparted::WaitForSuccessor)).await
        } else {
            Box::pin(self.look_up_once(urn, deadline)).await
        }
    }

    /// [`look_up`](Self::look_up), merged with this client's look-up of `urn` already under
    /// way, if any: a burst of asks to a URN not cached (its entry lapsed) waits for one
    /// look-up, not one each. A waiter that finds nothing cached after it (the look-up
    /// failed) looks up on its own.
    async fn look_up_once(&self, urn: &str, deadline: Instant) -> Result<Resolved, ProxyError> {
        let under_way = {
            let mut running = self.looking_up.lock().unwrap_or_else(|e| e.into_inner());
            match running.get(urn).cloned() {
                Some(done) => Ok(done),
                None => {
                    let (sender, receiver) = tokio::sync::watch::channel(());
                    running.insert(urn.to_owned(), receiver);
                    Err(sender)
                }
            }
        };
        let mut done = match under_way {
            Ok(done) => done,
            Err(sender) => {
                // Removed (waking the waiters) however the look-up ends, dropped too.
                let _running = Running {
                    shared: self,
                    urn: urn.to_owned(),
                    _wake: sender,
                };
                return self
                    .look_up(urn, deadline, OnDeparted::WaitForSuccessor)
                    .await;
            }
        };
        // Ends when the look-up's sender is dropped (with its entry), at once if it was.
        let _ = tokio::time::timeout_at(deadline.into(), done.changed()).await;
        let cached = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache.get(urn).filter(|r| r.until > Instant::now()).cloned()
        };
        match cached {
            Some(r) => Ok(r),
            None => {
                self.look_up(urn, deadline, OnDeparted::WaitForSuccessor)
                    .await
            }
        }
    }

    /// Which system serves `urn` now, without waiting for the successor of a system that
    /// departed (`UnknownUrn` then): [`ProxyClient::resolve`](crate::ProxyClient::resolve).
    pub(super) async fn resolve_now(
        &self,
        urn: &str,
        deadline: Instant,
    ) -> Result<Resolved, ProxyError> {
        Box::pin(self.look_up(urn, deadline, OnDeparted::Unknown)).await
    }

    /// Asks Redis which system serves `urn` (waiting out a Redis restart, and, unless
    /// `departed` says otherwise, a departed system's successor), and caches it.
    async fn look_up(
        &self,
        urn: &str,
        deadline: Instant,
        departed: OnDeparted,
    ) -> Result<Resolved, ProxyError> {
        if conclib_core::validate_urn(urn).is_err() {
            return Err(ProxyError::UnknownUrn {
                urn: urn.to_owned(),
            });
        }
        let value = loop {
            // A GET has no effect: it may be given up at the command timeout.
            let left = deadline.saturating_duration_since(Instant::now());
            let client = self.connection()?.with_options(&Self::command_options(
                left.min(self.config.command_timeout),
            ));
            // A URN of a pattern: its key and the pattern's group in one round trip (the
            // group serves it when nobody holds it: its first request, at the least). Two
            // GETs sent together, not a pipeline: fred writes commands sent at once in one
            // write, and a pipeline costs every look-up about a dozen more allocations
            // (its buffer, copies of its commands, their responders); the two keys may be
            // in different slots of a Cluster, so not an MGET either. Each GET's future
            // boxed: fred's is about 5 KB, and two side by side made this future 11 KB,
            // copied whole a dozen times as it was built, moved and boxed by its callers
            // (docs/bench-log.md, "Reminders' CPU per tick: the look-up's future").
            let urn_key = Box::pin(conn::call(
                &client,
                keyed("GET"),
                vec![owned(self.keys.urn(urn))],
            ));
            let pattern_key = async {
                match crate::protocol::pattern_prefix(urn) {
                    Some(prefix) => {
                        let key = vec![owned(self.keys.pattern(prefix))];
                        Box::pin(conn::call(&client, keyed("GET"), key))
                            .await
                            .map(Some)
                    }
                    None => Ok(None),
                }
            };
            let both = futures_util::future::join(urn_key, pattern_key);
            let (held, pattern) = match tokio::time::timeout_at(deadline.into(), both).await {
                Ok(got) => got,
                Err(_) => return Err(ProxyError::Timeout(Duration::ZERO)),
            };
            let held = held.map_err(|e| redis_error(&e))?;
            if as_bytes(&held).is_some() {
                break held;
            }
            if let Some(group) = pattern.map_err(|e| redis_error(&e))?
                && as_bytes(&group).is_some()
            {
                break group;
            }
            self.forget(urn);
            // Boxed: rare, and each of its waits holds a Redis command's future.
            Box::pin(self.wait_for_owner(&client, urn, deadline, departed)).await?;
        };
        let Some(system) = as_bytes(&value) else {
            unreachable!("the loop ends with a value")
        };
        let resolved = self.route_to(&String::from_utf8_lossy(system));
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            let now = Instant::now();
            cache.retain(|_, r| r.until > now);
        }
        cache.insert(urn.to_owned(), resolved.clone());
        drop(cache);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= 100_000 {
            known.clear();
        }
        if !known.contains(urn) {
            known.insert(urn.to_owned());
        }
        Ok(resolved)
    }

    /// The route to `system` (a system, or a pattern's group), not cached.
    fn route_to(&self, system: &str) -> Resolved {
        Resolved {
            requests_key: self.keys.requests(system).into(),
            fast_key: system
                .starts_with(crate::protocol::GROUP_MARK)
                .then(|| self.keys.fast_requests(system).into()),
            system: system.into(),
            until: Instant::now() + self.config.resolve_cache_ttl,
        }
    }

    /// The route to the group of `urn`'s pattern, not cached; `None` when `urn` has no
    /// pattern or nobody serves it.
    pub(super) async fn group_route(
        &self,
        urn: &str,
        deadline: Instant,
    ) -> Result<Option<Resolved>, ProxyError> {
        let Some(prefix) = crate::protocol::pattern_prefix(urn) else {
            return Ok(None);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let client = self.connection()?.with_options(&Self::command_options(
            left.min(self.config.command_timeout),
        ));
        let key = vec![owned(self.keys.pattern(prefix))];
        let group = Box::pin(conn::call(&client, keyed("GET"), key))
            .await
            .map_err(|e| redis_error(&e))?;
        Ok(as_bytes(&group).map(|g| self.route_to(&String::from_utf8_lossy(g))))
    }

    /// Nobody holds `urn` nor serves its pattern: waits (`Ok`) before it is looked up again
    /// when its system departed within the grace period (unless `departed` says otherwise)
    /// or Redis restarted moments ago; `Err` when it is unknown, or the deadline comes.
    async fn wait_for_owner(
        &self,
        client: &Client,
        urn: &str,
        deadline: Instant,
        departed: OnDeparted,
    ) -> Result<(), ProxyError> {
        if departed == OnDeparted::WaitForSuccessor
            && departed::departed(self, client, urn, deadline).await?
        {
            return departed::wait_for_successor(urn, deadline).await;
        }
        self.wait_if_redis_lost_it(urn, deadline).await
    }

    /// The fast lane of `urn`'s group has no stream (its members are older proxies): write
    /// to the group's stream until the route is looked up again.
    pub(super) fn no_fast_lane(&self, urn: &str) {
        if let Some(r) = self
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(urn)
        {
            r.fast_key = None;
        }
    }

    /// Caches `holder` as `urn`'s route: the system that answered an ask another system
    /// passed on to it (its reply's route hint, `protocol::HOLDER_FLAG`), the ask having
    /// gone by the route to `went_by`. Ignored unless it is a system id as a URN key holds
    /// one (UTF-8, and not a group's, which no answer names) other than `went_by`, and
    /// unless the route cached is still the one to `went_by` (a hint adds no entry, nor
    /// replaces a newer one). A hint that is wrong by the time it is used costs what a
    /// stale route does: the request is passed on, or answered `NotOwner` and resolved again.
    pub(super) fn learn_route(&self, urn: &str, went_by: &str, holder: &[u8]) {
        let Ok(holder) = std::str::from_utf8(holder) else {
            return;
        };
        if holder.is_empty() || holder.starts_with(crate::protocol::GROUP_MARK) || holder == went_by
        {
            return;
        }
        let route = self.route_to(holder);
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = cache.get_mut(urn)
            && &*cached.system == went_by
        {
            *cached = route;
        }
    }

    /// Caches `target` as `urn`'s route, if a route to `urn` is cached and names another
    /// system: a hand-over note (`moves.rs`) said the URN's key was handed to `target`.
    /// Ignored for a group's id (no hand-over names one). No entry is added: a URN this
    /// client has not looked up is not its concern. A note read after a newer look-up (the
    /// URN moved on since) makes the route stale, which costs what any stale route does.
    pub(super) fn follow_move(&self, urn: &str, target: &str) {
        if !target.is_empty() && !target.starts_with(crate::protocol::GROUP_MARK) {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = cache.get_mut(urn)
                && &*cached.system != target
            {
                *cached = self.route_to(target);
            }
        }
        self.moves_seen.send_modify(|n| *n += 1);
    }

    pub(super) fn forget(&self, urn: &str) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(urn);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use fred::prelude::*;

    use super::super::shared::Shared;
    use crate::client::ProxyClient;
    use crate::config::ProxyConfig;
    use crate::conn::{keyed, owned};
    use crate::future_size::{future_size, never};
    use crate::script::Script;

    /// A private Redis server, a client of namespace `ns` connected to it, and a plain
    /// connection to it.
    async fn connected(ns: &str) -> (crate::daemon::RedisDaemon, ProxyClient, Client) {
        let base = ProxyConfig::default().with_namespace(ns);
        let daemon = crate::daemon::start_redis(&base).await.unwrap();
        let client = ProxyClient::connect(&daemon.config(&base)).await.unwrap();
        let redis = Builder::from_config(Config::from_url(&daemon.url()).unwrap())
            .build()
            .unwrap();
        redis.init().await.unwrap();
        (daemon, client, redis)
    }

    /// `GET`s Redis ran so far (`INFO commandstats`).
    async fn gets(redis: &Client) -> u64 {
        let info: String = redis
            .info(Some(fred::types::InfoKind::CommandStats))
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
            .and_then(|v| v.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// A look-up's future holds no Redis command's future (fred's are about 5 KB each):
    /// it is built, moved and boxed at every ask whose cached route lapsed, and each move
    /// copies it whole (11 KB with its two `GET`s inline: `memmove` grew to a sixth of a
    /// reminder poller's CPU).
    #[test]
    fn a_look_ups_future_holds_no_command() {
        let look_up = future_size(|| never::<&Arc<Shared>>().look_up_once("u", Instant::now()));
        assert!(look_up <= 1024, "a look-up's future is {look_up} bytes");
    }

    /// Concurrent look-ups of one URN not cached wait for one look-up (its `GET`s); the
    /// next, once the cache lapsed, look up again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_look_ups_of_one_urn_are_merged() {
        let (daemon, client, redis) = connected("route-merge").await;
        let shared = &client.shared;
        let _: () = redis
            .set(shared.keys.urn("u:1"), "sys-a", None, None, false)
            .await
            .unwrap();
        // What one look-up alone costs: a URN with a pattern's shape reads its key and
        // its pattern's group's in one round trip (two `GET`s).
        let before = gets(&redis).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        shared.resolve("u:1", deadline, false).await.unwrap();
        let one = gets(&redis).await - before;
        assert!((1..=2).contains(&one), "{one}");
        shared.forget("u:1");
        for round in 0..2 {
            let before = gets(&redis).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            let all = (0..20).map(|_| shared.resolve("u:1", deadline, false));
            for resolved in futures_util::future::join_all(all).await {
                assert_eq!(&*resolved.unwrap().system, "sys-a");
            }
            assert_eq!(gets(&redis).await - before, one, "round {round}");
            shared.forget("u:1");
        }
        redis.quit().await.unwrap();
        client.shutdown().await;
        daemon.shutdown().unwrap();
    }

    /// Runs `step`, then waits (up to 10 s) for the client to read a hand-over note; `step`
    /// again each 200 ms until it does (a subscription not up yet misses it).
    async fn until_noted<F: std::future::Future<Output = ()>>(
        client: &ProxyClient,
        mut step: impl FnMut() -> F,
    ) {
        let mut seen = client.shared.moves_seen.subscribe();
        let before = *seen.borrow_and_update();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            step().await;
            let noted =
                tokio::time::timeout(Duration::from_millis(200), seen.wait_for(|n| *n > before));
            if noted.await.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "no hand-over note read in 10 s");
        }
    }

    /// A URN's key handed from `sys-a` to `sys-b` by the hand-over script: the client whose
    /// route to it named `sys-a` now sends to `sys-b`, without a look-up; a note of a URN
    /// it has no route to adds none. After Redis drops the listening connection, the client
    /// subscribes again and follows the next hand-over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cached_route_follows_a_hand_over_note() {
        let (daemon, client, redis) = connected("moves").await;
        let shared = &client.shared;
        let script = Script::new(crate::protocol::HAND_URN_SCRIPT);
        let hand = |urn: &'static str, from: &'static str, to: &'static str| {
            let (redis, script, keys) = (&redis, &script, &shared.keys);
            async move {
                let args = [from, to, "60000", "0"].map(owned).to_vec();
                let mut args = args;
                args.push(owned(keys.moves()));
                let handed = script.eval(redis, vec![owned(keys.urn(urn))], args).await;
                assert_eq!(
                    handed.unwrap(),
                    Value::Integer(1),
                    "{urn} handed {from} → {to}"
                );
            }
        };
        let route = |urn: &str| {
            let cache = shared.cache.read().unwrap();
            cache.get(urn).map(|r| r.system.to_string())
        };
        let set = |urn: &'static str, system: &'static str| {
            let redis = &redis;
            let key = shared.keys.urn(urn);
            async move {
                let _: () = redis.set(key, system, None, None, false).await.unwrap();
            }
        };
        set("acct:1", "sys-a").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let resolved = shared.resolve("acct:1", deadline, false).await.unwrap();
        assert_eq!(&*resolved.system, "sys-a");

        // `acct:2`, not looked up: handed back and forth until the subscription is up.
        set("acct:2", "sys-a").await;
        let mut flip = false;
        until_noted(&client, || {
            flip = !flip;
            let (from, to) = if flip {
                ("sys-a", "sys-c")
            } else {
                ("sys-c", "sys-a")
            };
            hand("acct:2", from, to)
        })
        .await;
        assert_eq!(route("acct:2"), None, "a note adds no route");

        until_noted(&client, || hand("acct:1", "sys-a", "sys-b")).await;
        assert_eq!(route("acct:1").as_deref(), Some("sys-b"));

        // The listening connection dropped by Redis: subscribed again, the next note
        // followed.
        let killed = crate::conn::call(
            &redis,
            keyed("CLIENT"),
            ["KILL", "TYPE", "pubsub"].map(owned).to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(killed, Value::Integer(1));
        let mut next = ("sys-b", "sys-c");
        until_noted(&client, || {
            let (from, to) = next;
            next = (to, from);
            hand("acct:1", from, to)
        })
        .await;
        assert_ne!(route("acct:1").as_deref(), Some("sys-a"));
        let held: String = redis.get(shared.keys.urn("acct:1")).await.unwrap();
        assert_eq!(route("acct:1"), Some(held), "the route follows the key");
        redis.quit().await.unwrap();
        client.shutdown().await;
        daemon.shutdown().unwrap();
    }
}
