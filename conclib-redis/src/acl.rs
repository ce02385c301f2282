//! Least-privilege Redis ACL rules for the two roles that share a namespace: clients (which
//! ask and tell) and proxies (which serve).
//!
//! Who can do what on a shared Redis, with these rules:
//! - A **client** may resolve URNs (`GET {ns}:urn:*`, and `GET {ns}:pattern:*` for URNs
//!   activated on demand, and `GET {ns}:departed:*` for one whose system is restarting),
//!   wait for replicas (`WAIT`, at [`Durability::Replicas`](crate::Durability::Replicas)),
//!   append requests to request streams
//!   (`XADD`, or the batching script: `EXISTS` + `XADD` on `{ns}:sys:*:req`), and pop and
//!   delete reply lists (`BLMPOP`, `DEL` on `{ns}:reply:*`). It cannot list keys (`SCAN`,
//!   `KEYS`), so it cannot find another client's reply list (its name holds 128 random bits),
//!   and it cannot push to any list (`RPUSH`, `LPUSH`), so it cannot forge an answer. It
//!   may register, cancel and list any URN's reminders ([`Reminders`](crate::reminders::Reminders):
//!   their scripts, with `TIME`, `HSET`, `HMGET`, `ZADD`, `ZREM`, `SADD`, `SREM`,
//!   `SMEMBERS` and `DEL`, on the reminders' shard keys only: `shop:rem:{shop:*` for the
//!   namespace `shop`), but not
//!   poll them (the pollers' reports, `{ns}:rem:pollers`, are not its keys). It may publish
//!   and subscribe to topics ([`Topics`](crate::topics::Topics)): live ones on the channels
//!   `{ns}:topic:*` (`PUBLISH`, `SUBSCRIBE`, and their sharded forms for a Cluster),
//!   durable ones on the streams `{ns}:topic:*` only (`XADD`, `XGROUP CREATE`,
//!   `XREADGROUP`, `XACK`, `XAUTOCLAIM`, `XINFO GROUPS`, `XINFO CONSUMERS`, `XGROUP
//!   DELCONSUMER`, and `EVALSHA`/`EVAL` of the script that forgets gone subscribers). The reminders'
//!   and the topics' commands are each granted in a selector (Redis 7) of their own keys
//!   and channels: they reach neither the request streams nor the reply lists (it cannot
//!   read requests with `XREADGROUP`, nor write the pollers' reports). The request streams'
//!   and the reply lists' commands are likewise each in a selector of their own keys: it
//!   cannot delete a request stream (a system's queued requests) nor append to a reply
//!   list. It may subscribe to the channel of hand-over notes (`{ns}:moves`, in the
//!   crate's protocol docs), in a selector of its own. It cannot
//!   read or write anything else: leases, other namespaces, other data.
//! - A **proxy** may do everything its protocol needs in its namespace (`{ns}:*`): claim
//!   URNs and its lease, read, acknowledge and trim request streams, take over a gone group
//!   member's requests, keep activations' state, push replies, publish its system's
//!   snapshot and its hand-over notes; and what a client may, so a [`ProxyClient`](crate::ProxyClient) of a
//!   serving process may ask, register reminders and run a
//!   [`ReminderPoller`](crate::reminders::ReminderPoller) (claim, deliver, acknowledge, give back,
//!   count and report), and its [`ProxyHandle::topics`](crate::ProxyHandle::topics) and
//!   clients publish and subscribe to topics.
//! - A **viewer** (the live view) may read the published snapshots and the reminders,
//!   nothing else.
//!
//! A live pattern subscription ([`Topic::live_pattern`](crate::topics::Topic::live_pattern)) is
//! refused by Redis under the client and proxy roles, and `ACL LOG` shows the refusal:
//! `subscribe` returns [`TopicError::Redis`](crate::topics::TopicError::Redis) with Redis's
//! `NOPERM` when the refusal is matched to the command in time, else `Ok` with a
//! subscription that receives nothing (both seen). Redis compares a `PSUBSCRIBE` pattern literally with the
//! user's channel rules, so it is allowed only once a selector grants its own channel
//! pattern (`ACL SETUSER <user> '(+psubscribe +punsubscribe &{ns}:topic:{<pattern>}:live)'`).
//!
//! What remains possible for a client, by design of the protocol: to send any request to
//! any actor the namespace exposes, with any `reply` list name under `{ns}:reply:` (the
//! proxy answers there; a guessed name is 128 bits of luck), and to delete or pop a reply
//! list whose name it knows; to register, change or cancel any reminder of the namespace
//! (so to have a tick delivered to any URN, as an ask could); to publish to any topic of
//! the namespace and read any durable one.
//!
//! ```
//! let rules = conclib_redis::acl::client_acl("shop");
//! assert!(rules.iter().any(|r| r == "(+blmpop +del ~shop:reply:*)"));
//! // The reminders' and the topics' commands each in a selector of their own keys.
//! assert!(rules.iter().any(|r| r.starts_with('(') && r.ends_with(" ~shop:rem:{shop:*)")));
//! assert!(rules.iter().any(|r| r.starts_with('(') && r.ends_with(" &shop:topic:*)")));
//! // ACL SETUSER web on >secret <rules...>, then connect as redis://web:secret@host:6379
//! ```

/// The rules (arguments of `ACL SETUSER <user> on ><password> ...`) of a client of
/// namespace `namespace`: see the module docs for what they allow.
#[must_use]
pub fn client_acl(namespace: &str) -> Vec<String> {
    let mut rules = base();
    // The rules applied again to a user replace its selectors too.
    rules.push("clearselectors".to_owned());
    // `WAIT`: a tell counts as accepted only once replicas hold it, at `Durability::Replicas`.
    rules.extend(["+get", "+info", "+wait", "+client|unblock"].map(str::to_owned));
    rules.push(format!("%R~{namespace}:urn:*"));
    rules.push(format!("%R~{namespace}:pattern:*"));
    // A URN whose system shut down moments ago (restarting, not unknown).
    rules.push(format!("%R~{namespace}:departed:*"));
    // Selectors (Redis 7): each command of a selector only on its keys and channels, so
    // that a request stream takes only appends (a `DEL` there would lose a system's queued
    // requests), a reply list only pops and deletes, and the reminders' and topics'
    // commands reach neither.
    rules.push(format!(
        "(+exists +xadd +evalsha +eval ~{namespace}:sys:*:req)"
    ));
    rules.push(format!("(+blmpop +del ~{namespace}:reply:*)"));
    rules.push(format!(
        "({} ~{namespace}:rem:{{{namespace}:*)",
        reminder_commands().join(" ")
    ));
    rules.push(format!("({})", topic_rules(namespace).join(" ")));
    rules.push(format!("(+subscribe +unsubscribe &{namespace}:moves)"));
    rules
}

/// What registering, cancelling and listing reminders runs: their scripts, and the
/// scripts' commands.
fn reminder_commands() -> Vec<String> {
    [
        "+evalsha",
        "+eval",
        "+time",
        "+hset",
        "+hmget",
        "+zadd",
        "+zrem",
        "+sadd",
        "+srem",
        "+smembers",
        "+del",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Publishing and subscribing to topics: commands, the topics' keys and channels.
fn topic_rules(namespace: &str) -> Vec<String> {
    let mut rules: Vec<String> = [
        "+publish",
        "+spublish",
        "+subscribe",
        "+ssubscribe",
        "+psubscribe",
        "+unsubscribe",
        "+sunsubscribe",
        "+punsubscribe",
        "+xadd",
        "+xgroup|create",
        "+xgroup|delconsumer",
        "+xreadgroup",
        "+xack",
        "+xautoclaim",
        "+xinfo|groups",
        "+xinfo|consumers",
        "+evalsha",
        "+eval",
    ]
    .map(str::to_owned)
    .to_vec();
    rules.push(format!("~{namespace}:topic:*"));
    rules.push(format!("&{namespace}:topic:*"));
    rules
}

/// The rules of a proxy serving namespace `namespace`.
#[must_use]
pub fn proxy_acl(namespace: &str) -> Vec<String> {
    let mut rules = base();
    rules.extend(
        [
            "+get",
            "+set",
            "+del",
            "+exists",
            "+pexpire",
            "+time",
            "+info",
            // Writes that must survive a promotion, at `Durability::Replicas`.
            "+wait",
            "+evalsha",
            "+eval",
            "+rpush",
            "+xadd",
            "+xreadgroup",
            "+xack",
            "+xtrim",
            "+xpending",
            "+xclaim",
            "+xgroup|create",
            "+xgroup|delconsumer",
            "+hget",
            "+hgetall",
            "+hset",
            "+hdel",
            "+hexists",
            "+persist",
            "+xinfo|stream",
            "+xinfo|groups",
            "+zadd",
            "+zrem",
            "+zremrangebyscore",
            "+client|unblock",
            // A `ProxyClient` of the serving process: its asks' replies.
            "+blmpop",
            // Polling reminders (their scripts): claim, acknowledge, count, report.
            "+zrangebyscore",
            "+zcard",
            "+zcount",
        ]
        .map(str::to_owned),
    );
    rules.extend(reminder_commands());
    rules.push(format!("~{namespace}:*"));
    rules.extend(topic_rules(namespace));
    // The hand-over notes its scripts publish, and its clients' subscription to them.
    rules.push(format!("&{namespace}:moves"));
    rules
}

/// The rules of a reader of the published snapshots (the live view): it may read them,
/// say that it watches them (`SET {ns}:snapshots:watched`), and read the reminders
/// ([`SnapshotReader::reminders`](crate::snapshots::SnapshotReader::reminders): `{ns}:rem:*`, with
/// plain read commands and `TIME`), nothing else.
///
/// ```
/// let rules = conclib_redis::acl::viewer_acl("shop");
/// assert!(rules.iter().any(|r| r == "%R~shop:snapshot*"));
/// assert!(rules.iter().any(|r| r == "%R~shop:rem:*"));
/// ```
#[must_use]
pub fn viewer_acl(namespace: &str) -> Vec<String> {
    let mut rules = base();
    rules.extend(
        [
            "+get",
            "+zrangebyscore",
            "+set",
            "+time",
            "+zcard",
            "+zcount",
            "+scard",
            "+sscan",
            "+hmget",
            "+hstrlen",
            "+hscan",
        ]
        .map(str::to_owned),
    );
    rules.push(format!("%R~{namespace}:snapshot*"));
    rules.push(format!("%R~{namespace}:rem:*"));
    // Says a viewer is watching: proxies then publish in full every interval.
    rules.push(format!("%W~{namespace}:snapshots:watched"));
    rules
}

/// What every role starts from: nothing, then what a connection needs.
fn base() -> Vec<String> {
    [
        "resetkeys",
        "resetchannels",
        "-@all",
        "+ping",
        "+hello",
        "+auth",
        "+quit",
        "+client|setname",
        "+client|id",
    ]
    .map(str::to_owned)
    .to_vec()
}
