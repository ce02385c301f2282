//! Passing a request on to the system that holds its URN: a tell for a URN another system
//! took while this one was paused, or a request for a URN activated elsewhere.
//!
//! A request is passed on at most once. Its new entry is appended and its old one
//! acknowledged in one script ([`FORWARD_SCRIPT`]), and only while the old one is still
//! pending on this instance's consumer: a member of a group that another member took the
//! entry from (it was paused past its lease) passes nothing on, and an attempt whose answer
//! was lost (a command timeout right after a pause, a dropped connection) finds the entry
//! acknowledged when the request is read again. In a cluster the two streams may live on
//! different nodes, where no script reaches both: there it is a plain `XADD` after the
//! pending check, and a request may be passed on twice when an answer is lost.
//!
//! [`FORWARD_SCRIPT`]: crate::protocol::FORWARD_SCRIPT

use std::time::Duration;

use fred::prelude::*;

use super::request::{Request, RouteHint};
use super::stream::Handled;
use crate::conn::{self, bytes, keyed, owned, s};
use crate::protocol::{CONSUMER_GROUP, PROTOCOL_VERSION, Status, field};
use crate::proxy::scale::applied::request_key;
use crate::proxy::shared::Shared;
use crate::unacked::EntryId;

/// What became of a request to pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forwarded {
    /// Appended to the owner's stream (and, but in a cluster, acknowledged here).
    Added,
    /// The owner has no request stream: nothing was appended.
    NoStream,
    /// No longer pending on this instance: another member of its group took it, or an
    /// earlier attempt passed it on. Nothing was appended.
    NotPending,
}

/// Where a request to pass on came in: the stream, and the entry pending there.
#[derive(Clone, Copy)]
pub(in crate::proxy) struct Origin<'a> {
    pub(in crate::proxy) shared: &'a Shared,
    pub(in crate::proxy) entry: EntryId,
}

/// The system a URN key names now, unless it is this one.
pub(in crate::proxy) async fn current_owner(shared: &Shared, urn: &str) -> Option<String> {
    let v = conn::call(&shared.cmd, keyed("GET"), vec![owned(shared.keys.urn(urn))])
        .await
        .ok()?;
    let owner = String::from_utf8_lossy(conn::as_bytes(&v)?).into_owned();
    (owner != shared.system_id).then_some(owner)
}

/// A request for a URN this proxy cannot confirm it still serves. An ask is answered
/// `NotOwner` (its client resolves the URN again); a tell goes to the URN's new owner's
/// stream, or stays pending here when the owner is not known yet. Returns the reply and
/// whether to leave the request pending.
pub(in crate::proxy) async fn not_ours(
    shared: &Shared,
    origin: Origin<'_>,
    req: &Request,
    owner: Option<String>,
    reply_to: &Option<(String, u64)>,
    remaining: Duration,
) -> Handled {
    if reply_to.is_some() {
        let text = match &owner {
            Some(owner) => format!("URN {} is served by system {owner}", req.urn),
            None => format!("this proxy cannot confirm it still serves {}", req.urn),
        };
        tracing::info!(urn = %req.urn, "{text}");
        return Handled::reply(reply_to, Status::NotOwner, text.as_bytes());
    }
    let Some(owner) = owner else {
        return Handled::LeavePending;
    };
    // Boxed: a rare path holding Redis commands, which every request's future (that
    // awaits this one) would otherwise hold too.
    Box::pin(forward(shared, origin, req, &owner, &None, remaining)).await
}

/// Passes a request on to system `owner` ([`append_to`]), and says
/// what to do with it here: the reply to write (none: the owner answers) and whether
/// to leave it pending (it could not be passed on, or is not this instance's any more).
pub(in crate::proxy) async fn forward(
    shared: &Shared,
    origin: Origin<'_>,
    req: &Request,
    owner: &str,
    reply_to: &Option<(String, u64)>,
    remaining: Duration,
) -> Handled {
    match append_to(shared, origin, req, owner, reply_to, remaining).await {
        Ok(Forwarded::Added) => {
            tracing::debug!(urn = %req.urn, %owner, "passed a request on to the system holding its URN");
            Handled::Acknowledge
        }
        Ok(Forwarded::NoStream) => {
            // A pattern's URN whose key names a member that drained (its stream gone)
            // before the URN was asked there: to the pattern's group, whose members free
            // the key and activate the URN (`scale/takeover.rs`, `free_urn_of_gone`).
            if let Some(prefix) = crate::protocol::pattern_prefix(&req.urn) {
                let group = crate::protocol::pattern_group(prefix);
                if owner != group {
                    let to_group = forward(shared, origin, req, &group, reply_to, remaining);
                    return Box::pin(to_group).await;
                }
            }
            tracing::warn!(urn = %req.urn, %owner, "dropped a request: the system holding its URN has no request stream");
            Handled::Acknowledge
        }
        // Not ours to acknowledge either: it may be pending on another member.
        Ok(Forwarded::NotPending) => Handled::LeavePending,
        Err(e) => {
            tracing::warn!(urn = %req.urn, %owner, error = %e, "could not pass a request on to the system holding its URN; it stays pending");
            Handled::LeavePending
        }
    }
}

/// Appends a request to the stream of system `owner`, with what is left of its time and,
/// for an ask, its reply address (the answer goes straight to the client), and
/// acknowledges it at `origin`: at most once (the module docs).
async fn append_to(
    shared: &Shared,
    origin: Origin<'_>,
    req: &Request,
    owner: &str,
    reply_to: &Option<(String, u64)>,
    remaining: Duration,
) -> Result<Forwarded, fred::error::Error> {
    let first = request_key(&origin.shared.stream.requests_key, origin.entry);
    let fields = entry_fields(req, reply_to, remaining, &first);
    let target = shared.keys.requests(owner);
    if shared.cmd.is_clustered() {
        if !origin.shared.still_mine(origin.entry).await {
            return Ok(Forwarded::NotPending);
        }
        let mut args = vec![owned(target), s("NOMKSTREAM"), s("*")];
        args.extend(fields);
        let added = conn::call(&shared.cmd, keyed("XADD"), args).await?;
        return Ok(if added.is_null() {
            Forwarded::NoStream
        } else {
            Forwarded::Added
        });
    }
    let keys = vec![
        owned(origin.shared.stream.requests_key.clone()),
        owned(target),
    ];
    let mut args = vec![
        s(CONSUMER_GROUP),
        owned(origin.shared.stream.consumer.clone()),
        owned(origin.entry.to_string()),
    ];
    args.extend(fields);
    let answer = shared.scripts.pass_on.eval(&shared.cmd, keys, args).await?;
    Ok(match answer.as_i64() {
        Some(1) => Forwarded::Added,
        Some(0) => Forwarded::NoStream,
        _ => Forwarded::NotPending,
    })
}

/// The fields of a request's entry in another system's stream; `first`: its entry where it
/// was read (`<entry id> <stream key>`), its identity from then on unless it has one.
pub(in crate::proxy) fn entry_fields(
    req: &Request,
    reply_to: &Option<(String, u64)>,
    remaining: Duration,
    first: &str,
) -> Vec<Value> {
    let mut fields = vec![
        s(field::VERSION),
        s(PROTOCOL_VERSION),
        s(field::URN),
        owned(req.urn.clone()),
        s(field::MESSAGE),
        owned(req.message.clone()),
        s(field::TTL),
        Value::Integer(remaining.as_millis().max(1) as i64),
        s(field::CODEC),
        bytes(req.codec.clone()),
        s(field::BODY),
        bytes(req.body.clone()),
    ];
    if let Some((key, id)) = reply_to {
        fields.extend([
            s(field::REPLY),
            owned(key.clone()),
            s(field::ID),
            owned(id.to_string()),
        ]);
    }
    if req.version != 1 {
        fields.extend([s(field::MESSAGE_VERSION), owned(req.version.to_string())]);
    }
    if req.priority == conclib_core::Priority::High {
        fields.extend([s(field::PRIORITY), s("high")]);
    }
    if let Some(trace) = req.trace {
        fields.extend([s(field::TRACEPARENT), owned(trace.to_string())]);
    }
    // Its identity goes with it (`scale/record.rs`): a handling that saved its effect
    // here or anywhere before is known again wherever it is read next.
    if let Some(moved) = &req.moved {
        fields.extend([s(field::MOVED), owned(moved.clone())]);
    }
    match &req.first {
        Some(earlier) => fields.extend([s(field::FIRST), owned(earlier.clone())]),
        None if req.moved.is_none() => fields.extend([s(field::FIRST), owned(first.to_owned())]),
        None => {}
    }
    if let Some(asker) = &req.asker {
        fields.extend([s(field::FROM), owned(asker.clone())]);
    }
    // The system that answers names itself to an asker that reads it (a client's route
    // cached before its URN moved: its next asks go there, not through this one).
    if req.route_hint != RouteHint::Unread && reply_to.is_some() {
        fields.extend([s(field::ROUTE_HINT), s("2")]);
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyConfig;
    use crate::protocol::FORWARD_SCRIPT;

    /// A request read from `fields` (name, value, ...), as a proxy reads an entry.
    fn request(fields: &[&str]) -> Request {
        let fields = fields.iter().map(|f| Value::from(*f)).collect();
        crate::proxy::serve::request::RawEnvelope::parse(fields)
            .validate()
            .unwrap()
    }

    /// Passed on, a request keeps one identity (`scale/record.rs`): the entry it was first
    /// read as, given by the first pass (`first`) or the first takeover (`moved`) and kept
    /// by every later one.
    #[test]
    fn a_request_passed_on_keeps_the_identity_of_its_first_entry() {
        let base = [
            "v",
            PROTOCOL_VERSION,
            "urn",
            "a:1",
            "msg",
            "M",
            "ttl",
            "5000",
            "codec",
            "msgpack",
            "body",
            "",
        ];
        let identity = |req: &Request| (req.moved.clone(), req.first.clone());
        let pass = |req: &Request, at: &str| {
            let fields: Vec<String> = entry_fields(req, &None, Duration::from_secs(5), at)
                .into_iter()
                .map(|v| match v {
                    Value::Integer(i) => i.to_string(),
                    v => String::from_utf8_lossy(conn::as_bytes(&v).unwrap()).into_owned(),
                })
                .collect();
            request(&fields.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let once = pass(&request(&base), "7-0 sys:a:req");
        assert_eq!(identity(&once), (None, Some("7-0 sys:a:req".into())));
        let twice = pass(&once, "9-1 sys:b:req");
        assert_eq!(identity(&twice), (None, Some("7-0 sys:a:req".into())));
        let moved = [&base[..], &["moved", "3-0 sys:gone:req"]].concat();
        let moved_on = pass(&request(&moved), "9-1 sys:b:req");
        assert_eq!(identity(&moved_on), (Some("3-0 sys:gone:req".into()), None));
        // Passed on, then moved by a takeover (which adds `moved`, naming the entry it was
        // passed on as), then passed on again: both kept, `first` the identity.
        let both = [
            &base[..],
            &["first", "7-0 sys:a:req", "moved", "8-0 sys:gone:req"],
        ]
        .concat();
        let both_on = pass(&request(&both), "9-1 sys:b:req");
        assert_eq!(
            identity(&both_on),
            (
                Some("8-0 sys:gone:req".into()),
                Some("7-0 sys:a:req".into())
            )
        );
    }

    /// Runs one command given as words (the crate's own raw call).
    async fn cmd(client: &Client, name: &'static str, args: &[&str]) -> Value {
        let args = args.iter().map(|a| owned(*a)).collect();
        conn::call(client, keyed(name), args).await.unwrap()
    }

    /// Passes entry `id` of `from` on to `to` as consumer `consumer`: the script's answer.
    async fn pass_on(client: &Client, consumer: &str, id: &str) -> i64 {
        let args = [
            FORWARD_SCRIPT,
            "2",
            "from",
            "to",
            CONSUMER_GROUP,
            consumer,
            id,
            "urn",
            "x",
        ];
        cmd(client, "EVAL", &args).await.as_i64().unwrap()
    }

    async fn len(client: &Client, key: &str) -> i64 {
        cmd(client, "XLEN", &[key]).await.as_i64().unwrap()
    }

    async fn pending_on(client: &Client, consumer: &str) -> usize {
        match cmd(
            client,
            "XPENDING",
            &["from", CONSUMER_GROUP, "-", "+", "10", consumer],
        )
        .await
        {
            Value::Array(list) => list.len(),
            other => panic!("{other:?}"),
        }
    }

    /// The script passes an entry on once, acknowledging it in the same step, and never one
    /// that is pending on another consumer: the two ways a told message was handled twice
    /// after a holder's pause (an attempt whose answer was lost, then repeated; an entry
    /// another member claimed meanwhile).
    #[tokio::test]
    async fn an_entry_is_passed_on_at_most_once_and_only_by_its_holder() {
        let daemon = crate::daemon::start_redis(&ProxyConfig::default())
            .await
            .unwrap();
        let client = Builder::from_config(Config::from_url(&daemon.url()).unwrap())
            .build()
            .unwrap();
        client.init().await.unwrap();
        for key in ["from", "to"] {
            cmd(
                &client,
                "XGROUP",
                &["CREATE", key, CONSUMER_GROUP, "$", "MKSTREAM"],
            )
            .await;
        }
        for n in ["1", "2", "3"] {
            cmd(&client, "XADD", &["from", &format!("{n}-0"), "n", n]).await;
        }
        let read = ["GROUP", CONSUMER_GROUP, "s1", "STREAMS", "from", ">"];
        cmd(&client, "XREADGROUP", &read).await;
        assert_eq!(pending_on(&client, "s1").await, 3);

        // Passed on once, acknowledged with it; a repeat finds it gone and adds nothing.
        assert_eq!(pass_on(&client, "s1", "1-0").await, 1);
        assert_eq!(
            (len(&client, "to").await, pending_on(&client, "s1").await),
            (1, 2)
        );
        assert_eq!(pass_on(&client, "s1", "1-0").await, -1);
        assert_eq!(len(&client, "to").await, 1);

        // Claimed by another member: its old holder passes nothing on, acknowledges nothing.
        cmd(
            &client,
            "XCLAIM",
            &["from", CONSUMER_GROUP, "s2", "0", "2-0"],
        )
        .await;
        assert_eq!(pass_on(&client, "s1", "2-0").await, -1);
        assert_eq!(len(&client, "to").await, 1);
        assert_eq!(pending_on(&client, "s2").await, 1);

        // No stream to pass it to: nothing done, still pending here.
        cmd(&client, "DEL", &["to"]).await;
        assert_eq!(pass_on(&client, "s1", "3-0").await, 0);
        assert_eq!(pending_on(&client, "s1").await, 1);

        client.quit().await.unwrap();
        daemon.shutdown().unwrap();
    }
}
