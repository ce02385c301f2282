//! Least-privilege Redis ACL rules for the two roles that share a namespace: clients (which
//! ask and tell) and proxies (which serve).
//!
//! Who can do what on a shared Redis, with these rules:
//! - A **client** may resolve URNs (`GET {ns}:urn:*`, and `GET {ns}:pattern:*` for URNs
//!   activated on demand), append requests to request streams
//!   (`XADD`, or the batching script: `EXISTS` + `XADD` on `{ns}:sys:*:req`), and pop and
//!   delete reply lists (`BLMPOP`, `DEL` on `{ns}:reply:*`). It cannot list keys (`SCAN`,
//!   `KEYS`), so it cannot find another client's reply list (its name holds 128 random bits),
//!   and it cannot push to any list (`RPUSH`, `LPUSH`), so it cannot forge an answer. It
//!   cannot read or write anything else: leases, other namespaces, other data.
//! - A **proxy** may do everything its protocol needs in its namespace (`{ns}:*`): claim
//!   URNs and its lease, read, acknowledge and trim request streams, take over a gone group
//!   member's requests, keep activations' state, push replies, publish its system's
//!   snapshot.
//! - A **viewer** (the live view) may read the published snapshots and the reminders,
//!   nothing else.
//!
//! Not covered yet: durable reminders ([`Reminders`](crate::Reminders),
//! [`ReminderPoller`](crate::ReminderPoller)) and topics ([`Topics`](crate::Topics)). A
//! client or proxy connected under these rules cannot register or poll reminders, nor
//! publish or subscribe to topics (their commands and pub/sub channels are not granted);
//! give such a process a user of its own with those keys, commands and channels.
//!
//! What remains possible for a client, by design of the protocol: to send any request to
//! any actor the namespace exposes, with any `reply` list name under `{ns}:reply:` (the
//! proxy answers there; a guessed name is 128 bits of luck), and to delete or pop a reply
//! list whose name it knows.
//!
//! ```
//! let rules = conclib_redis::client_acl("shop");
//! assert!(rules.iter().any(|r| r == "~shop:reply:*"));
//! // ACL SETUSER web on >secret <rules...>, then connect as redis://web:secret@host:6379
//! ```

/// The rules (arguments of `ACL SETUSER <user> on ><password> ...`) of a client of
/// namespace `namespace`: see the module docs for what they allow.
#[must_use]
pub fn client_acl(namespace: &str) -> Vec<String> {
    let mut rules = base();
    rules.extend(
        [
            "+get",
            "+exists",
            "+xadd",
            "+blmpop",
            "+del",
            "+evalsha",
            "+eval",
            "+info",
            "+client|unblock",
        ]
        .map(str::to_owned),
    );
    rules.push(format!("%R~{namespace}:urn:*"));
    rules.push(format!("%R~{namespace}:pattern:*"));
    rules.push(format!("~{namespace}:sys:*:req"));
    rules.push(format!("~{namespace}:reply:*"));
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
        ]
        .map(str::to_owned),
    );
    rules.push(format!("~{namespace}:*"));
    rules
}

/// The rules of a reader of the published snapshots (the live view): it may read them,
/// say that it watches them (`SET {ns}:snapshots:watched`), and read the reminders
/// ([`SnapshotReader::reminders`](crate::SnapshotReader::reminders): `{ns}:rem:*`, with
/// plain read commands and `TIME`), nothing else.
///
/// ```
/// let rules = conclib_redis::viewer_acl("shop");
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
