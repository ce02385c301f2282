//! What the live view shows of a namespace's reminders, read on request with plain read
//! commands (no script: the viewer's ACL role reads, nothing else) and bounded: at most
//! [`MAX_REMINDERS_LISTED`] reminders per answer, at most [`SCAN_PER_SHARD`] members of each
//! shard looked at for a prefix, at most [`MAX_POLLERS`] pollers' reports.

use fred::prelude::*;
use futures_util::future::join_all;
use serde::Serialize;

use super::keys::{SHARDS, ShardKeys};
use super::report::{MAX_REPORT_LEN, PollerReport, pollers_key};
use super::store::ReminderError;
use crate::conn::{self, as_bytes, keyed, owned, s, unkeyed};
use crate::conn::{int, text};

/// The most reminders one [`RemindersOverview`] lists.
pub const MAX_REMINDERS_LISTED: usize = 500;

/// The longest URN prefix a [`ReminderQuery::prefix`] takes, in bytes (a URN's longest).
pub const MAX_REMINDER_PREFIX_LEN: usize = conclib_core::MAX_URN_LEN;

/// How many members of each shard's due set, soonest first, a prefix query looks at: past
/// that, its answer says it is not [`complete`](RemindersOverview::complete).
pub const SCAN_PER_SHARD: usize = 2_000;

/// The most pollers' reports read.
pub const MAX_POLLERS: usize = 256;

/// Which reminders a [`SnapshotReader::reminders`](crate::snapshots::SnapshotReader::reminders) lists,
/// and how many at most (1 to [`MAX_REMINDERS_LISTED`]).
///
/// ```
/// use conclib_redis::reminders::ReminderQuery;
/// assert!(ReminderQuery::urn("user:42", 50).is_ok());
/// assert!(ReminderQuery::prefix("user:", 50).is_ok());
/// assert!(ReminderQuery::soonest(0).is_err());
/// assert!(ReminderQuery::prefix(&"u".repeat(1000), 50).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderQuery {
    filter: Filter,
    limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Soonest,
    Urn(String),
    Prefix(String),
}

fn check_limit(limit: usize) -> Result<(), ReminderError> {
    if limit == 0 || limit > MAX_REMINDERS_LISTED {
        return Err(ReminderError::Invalid(format!(
            "a limit is 1 to {MAX_REMINDERS_LISTED}, not {limit}"
        )));
    }
    Ok(())
}

impl ReminderQuery {
    /// The `limit` reminders of the namespace due soonest (of any URN).
    ///
    /// # Errors
    /// [`ReminderError::Invalid`] for a limit out of bounds.
    pub fn soonest(limit: usize) -> Result<Self, ReminderError> {
        check_limit(limit)?;
        Ok(ReminderQuery {
            filter: Filter::Soonest,
            limit,
        })
    }

    /// `urn`'s reminders (all of them, up to `limit`), read through its index.
    ///
    /// # Errors
    /// [`ReminderError::Invalid`] for a URN that is not valid, a limit out of bounds.
    pub fn urn(urn: &str, limit: usize) -> Result<Self, ReminderError> {
        check_limit(limit)?;
        conclib_core::validate_urn(urn).map_err(|e| ReminderError::Invalid(e.to_string()))?;
        Ok(ReminderQuery {
            filter: Filter::Urn(urn.to_owned()),
            limit,
        })
    }

    /// The `limit` reminders due soonest whose URN starts with `prefix` (a pattern's prefix,
    /// `user:`, or any start of a URN), among the first [`SCAN_PER_SHARD`] of each shard.
    ///
    /// # Errors
    /// [`ReminderError::Invalid`] for a prefix empty, longer than
    /// [`MAX_REMINDER_PREFIX_LEN`] or with whitespace or control characters, a limit out of
    /// bounds.
    pub fn prefix(prefix: &str, limit: usize) -> Result<Self, ReminderError> {
        check_limit(limit)?;
        if prefix.is_empty() || prefix.len() > MAX_REMINDER_PREFIX_LEN {
            return Err(ReminderError::Invalid(format!(
                "a prefix is 1 to {MAX_REMINDER_PREFIX_LEN} bytes, not {}",
                prefix.len()
            )));
        }
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ReminderError::Invalid(
                "a prefix has no whitespace or control characters".into(),
            ));
        }
        Ok(ReminderQuery {
            filter: Filter::Prefix(prefix.to_owned()),
            limit,
        })
    }
}

/// A namespace's reminders as the live view shows them: counts, the reminders a
/// [`ReminderQuery`] asked for, and what each running poller reported of itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RemindersOverview {
    /// Redis's clock at the read, ms since the Unix epoch.
    pub now_ms: u64,
    /// Reminders registered in the namespace (every shard's due set).
    pub registered: u64,
    /// Of those, due by now and not being delivered (or whose claim lapsed).
    pub due: u64,
    /// The reminders asked for, soonest due first (a URN's: by due time).
    pub reminders: Vec<RegisteredReminder>,
    /// How many matched the query among those looked at (a URN's: how many it has).
    pub matched: u64,
    /// Whether `reminders` holds every reminder that matches the query (false when more
    /// matched than the limit, or a prefix query stopped at [`SCAN_PER_SHARD`]).
    pub complete: bool,
    /// The pollers that reported within three of their intervals, by system id then pid.
    pub pollers: Vec<PollerReport>,
}

/// One registered reminder, as the live view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RegisteredReminder {
    /// The URN it wakes.
    pub urn: String,
    /// Its name.
    pub name: String,
    /// When its next tick is due (ms since the Unix epoch, Redis's clock).
    pub due_ms: u64,
    /// Its period in ms (0: once).
    pub period_ms: u64,
    /// Whether a system is delivering it now.
    pub claimed: bool,
    /// How often it was claimed for delivery (retries and takeovers included).
    pub deliveries: u64,
    /// Ticks of a periodic reminder delivered and acknowledged since it was registered.
    pub fired: u64,
    /// Missed ticks coalesced into those deliveries.
    pub coalesced: u64,
    /// Ticks after `due_ms` that are due by now too: the next delivery, coalescing, stands
    /// for them ([`ReminderTick::missed`](crate::reminders::ReminderTick::missed)); 0 while claimed.
    pub missed: u64,
    /// With [`Reminder::deliver_each`](crate::reminders::Reminder::deliver_each): the least gap
    /// between missed ticks delivered one by one, in ms.
    pub each_ms: Option<u64>,
    /// The size of its payload in bytes (0: none).
    pub payload_bytes: u64,
    /// Its payload's codec.
    pub codec: String,
}

type Failure = String;

async fn call(client: &Client, name: &'static str, args: Vec<Value>) -> Result<Value, Failure> {
    conn::call(client, keyed(name), args)
        .await
        .map_err(|e| e.to_string())
}

/// Redis's clock, ms since the Unix epoch.
async fn redis_now(client: &Client) -> Result<u64, Failure> {
    let time = conn::call(client, unkeyed("TIME"), Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    match time {
        Value::Array(t) if t.len() == 2 => {
            Ok(int(&t[0]).unwrap_or(0) * 1000 + int(&t[1]).unwrap_or(0) / 1000)
        }
        other => Err(format!("unexpected TIME answer {other:?}")),
    }
}

/// Reads `query`'s overview of namespace `ns`.
pub(crate) async fn read(
    client: &Client,
    ns: &str,
    query: &ReminderQuery,
) -> Result<RemindersOverview, Failure> {
    let now_ms = redis_now(client).await?;
    let shards: Vec<ShardKeys> = (0..SHARDS).map(|s| ShardKeys::new(ns, s)).collect();
    let counts = join_all(shards.iter().map(|k| async move {
        let registered = call(client, "ZCARD", vec![owned(k.due())]).await?;
        let due = call(
            client,
            "ZCOUNT",
            vec![owned(k.due()), s("-inf"), owned(now_ms.to_string())],
        )
        .await?;
        Ok::<_, Failure>((int(&registered).unwrap_or(0), int(&due).unwrap_or(0)))
    }))
    .await;
    let (mut registered, mut due) = (0, 0);
    for c in counts {
        let (r, d) = c?;
        registered += r;
        due += d;
    }
    let (records, matched, complete) = match &query.filter {
        Filter::Urn(urn) => of_urn(client, ns, urn, query.limit).await?,
        Filter::Soonest => {
            let (found, _) = soonest(client, &shards, query.limit, None).await?;
            let complete = registered as usize <= query.limit;
            (found, registered, complete)
        }
        Filter::Prefix(prefix) => {
            let (found, cut) = soonest(client, &shards, SCAN_PER_SHARD, Some(prefix)).await?;
            let matched = found.len() as u64;
            let complete = !cut && found.len() <= query.limit;
            (found, matched, complete)
        }
    };
    let mut reminders: Vec<RegisteredReminder> = join_all(
        records
            .iter()
            .take(query.limit)
            .map(|(key, _)| record(client, key, now_ms)),
    )
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .flatten()
    .collect();
    if matches!(query.filter, Filter::Urn(_)) {
        reminders.sort_by(|a, b| (a.due_ms, &a.name).cmp(&(b.due_ms, &b.name)));
    }
    Ok(RemindersOverview {
        now_ms,
        registered,
        due,
        reminders,
        matched,
        complete,
        pollers: pollers(client, ns, now_ms).await?,
    })
}

/// The records of the reminders due soonest across `shards`, at most `per_shard` looked at
/// in each, those whose URN starts with `prefix` if one is given, soonest first; and
/// whether some shard had more than `per_shard`.
async fn soonest(
    client: &Client,
    shards: &[ShardKeys],
    per_shard: usize,
    prefix: Option<&str>,
) -> Result<(Vec<(String, f64)>, bool), Failure> {
    let reads = shards.iter().map(|k| async move {
        let answer = call(
            client,
            "ZRANGEBYSCORE",
            vec![
                owned(k.due()),
                s("-inf"),
                s("+inf"),
                s("WITHSCORES"),
                s("LIMIT"),
                s("0"),
                owned(per_shard.to_string()),
            ],
        )
        .await?;
        Ok::<_, Failure>((k, scored(&answer)))
    });
    let mut found = Vec::new();
    let mut cut = false;
    for read in join_all(reads).await {
        let (keys, members) = read?;
        cut |= members.len() >= per_shard;
        for (m, score) in members {
            let urn = m.split_once('\n').map_or(m.as_str(), |(urn, _)| urn);
            if prefix.is_none_or(|p| urn.starts_with(p)) {
                found.push((format!("{}{m}", keys.record_prefix()), score));
            }
        }
    }
    found.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok((found, cut))
}

/// The members and scores of a `WITHSCORES` answer (flat pairs, or RESP3's nested ones).
fn scored(answer: &Value) -> Vec<(String, f64)> {
    let Value::Array(items) = answer else {
        return Vec::new();
    };
    let score = |v: &Value| match v {
        Value::Double(f) => Some(*f),
        Value::Integer(i) => Some(*i as f64),
        other => as_bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok()),
    };
    if items
        .iter()
        .all(|i| matches!(i, Value::Array(p) if p.len() == 2))
    {
        return items
            .iter()
            .filter_map(|i| match i {
                Value::Array(p) => Some((text(&p[0]), score(&p[1])?)),
                _ => None,
            })
            .collect();
    }
    items
        .chunks_exact(2)
        .filter_map(|p| Some((text(&p[0]), score(&p[1])?)))
        .collect()
}

/// Up to `limit` of `urn`'s reminders' record keys, through its index; with how many it
/// has, and whether those are all.
async fn of_urn(
    client: &Client,
    ns: &str,
    urn: &str,
    limit: usize,
) -> Result<(Vec<(String, f64)>, u64, bool), Failure> {
    let keys = ShardKeys::of_urn(ns, urn);
    let index = keys.index(urn);
    let total = int(&call(client, "SCARD", vec![owned(index.clone())]).await?).unwrap_or(0);
    let mut names = std::collections::BTreeSet::new();
    let mut cursor = "0".to_owned();
    // A bounded number of SSCAN rounds: each returns about `limit` names.
    for _ in 0..16 {
        let answer = call(
            client,
            "SSCAN",
            vec![
                owned(index.clone()),
                owned(cursor.clone()),
                s("COUNT"),
                owned(limit.to_string()),
            ],
        )
        .await?;
        let Value::Array(parts) = answer else { break };
        let [next, Value::Array(found)] = parts.as_slice() else {
            break;
        };
        names.extend(found.iter().map(text));
        cursor = text(next);
        if cursor == "0" || names.len() >= limit {
            break;
        }
    }
    let complete = total as usize <= limit && cursor == "0";
    let records = names
        .iter()
        .take(limit)
        .map(|name| (keys.record(urn, name), 0.0))
        .collect();
    Ok((records, total, complete))
}

/// One reminder's record, `None` if it is gone or was not written by the reminders'
/// scripts.
async fn record(
    client: &Client,
    key: &str,
    now_ms: u64,
) -> Result<Option<RegisteredReminder>, Failure> {
    let fields = call(
        client,
        "HMGET",
        [
            key,
            "urn",
            "name",
            "due",
            "period",
            "claim",
            "claims",
            "fired",
            "coalesced",
            "each",
            "codec",
        ]
        .into_iter()
        .map(owned)
        .collect(),
    )
    .await?;
    let Value::Array(f) = fields else {
        return Ok(None);
    };
    if f.len() != 10 || as_bytes(&f[0]).is_none() || as_bytes(&f[1]).is_none() {
        return Ok(None);
    }
    let Some(due_ms) = int(&f[2]) else {
        return Ok(None);
    };
    let payload = call(client, "HSTRLEN", vec![owned(key), s("payload")]).await?;
    let period_ms = int(&f[3]).unwrap_or(0);
    let claimed = as_bytes(&f[4]).is_some_and(|c| !c.is_empty());
    let missed = if period_ms > 0 && !claimed && now_ms >= due_ms.saturating_add(period_ms) {
        (now_ms - due_ms) / period_ms
    } else {
        0
    };
    let (urn, name) = (text(&f[0]), text(&f[1]));
    Ok(Some(RegisteredReminder {
        urn,
        name,
        due_ms,
        period_ms,
        claimed,
        deliveries: int(&f[5]).unwrap_or(0),
        fired: int(&f[6]).unwrap_or(0),
        coalesced: int(&f[7]).unwrap_or(0),
        missed,
        each_ms: int(&f[8]),
        payload_bytes: int(&payload).unwrap_or(0),
        codec: text(&f[9]),
    }))
}

/// The pollers that reported lately (within three of their intervals, at least 1 s).
async fn pollers(client: &Client, ns: &str, now_ms: u64) -> Result<Vec<PollerReport>, Failure> {
    let key = pollers_key(ns);
    let mut out = Vec::new();
    let mut cursor = "0".to_owned();
    for _ in 0..8 {
        let answer = call(
            client,
            "HSCAN",
            vec![
                owned(key.clone()),
                owned(cursor.clone()),
                s("COUNT"),
                owned(MAX_POLLERS.to_string()),
            ],
        )
        .await?;
        let Value::Array(parts) = answer else { break };
        let [next, Value::Array(found)] = parts.as_slice() else {
            break;
        };
        for pair in found.chunks_exact(2) {
            if out.len() < MAX_POLLERS
                && let Some(report) = parse_report(&pair[1], now_ms)
            {
                out.push(report);
            }
        }
        cursor = text(next);
        if cursor == "0" || out.len() >= MAX_POLLERS {
            break;
        }
    }
    out.sort_by(|a, b| (&a.system, a.pid).cmp(&(&b.system, b.pid)));
    Ok(out)
}

/// A report as the `REPORT` script stored it (`at json`), `None` when it is garbled, too
/// long, or older than three of its intervals (at least 1 s).
pub(crate) fn parse_report(value: &Value, now_ms: u64) -> Option<PollerReport> {
    let raw = as_bytes(value)?;
    if raw.len() > MAX_REPORT_LEN {
        return None;
    }
    let raw = std::str::from_utf8(raw).ok()?;
    let (at, json) = raw.split_once(' ')?;
    let at: u64 = at.parse().ok()?;
    let mut report: PollerReport = serde_json::from_str(json).ok()?;
    report.age_ms = now_ms.saturating_sub(at);
    let live_for = report.interval_ms.saturating_mul(3).max(1000);
    (report.age_ms <= live_for).then_some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_bounded() {
        assert!(ReminderQuery::soonest(MAX_REMINDERS_LISTED).is_ok());
        assert!(ReminderQuery::soonest(MAX_REMINDERS_LISTED + 1).is_err());
        assert!(ReminderQuery::urn("not a urn", 5).is_err());
        assert!(ReminderQuery::prefix("a\nb", 5).is_err());
        assert!(ReminderQuery::prefix(&"a".repeat(MAX_REMINDER_PREFIX_LEN), 5).is_ok());
        assert!(ReminderQuery::prefix(&"a".repeat(MAX_REMINDER_PREFIX_LEN + 1), 5).is_err());
    }

    #[test]
    fn reports_that_are_garbled_long_or_old_are_skipped() {
        let json = r#"{"system":"s","pid":1,"interval_ms":2000,"claimed":0,"fired":0,"coalesced":0,"retried":0,"stale":0,"in_flight":0,"fired_per_s":0.0,"lag_p50_ms":null,"lag_p99_ms":null}"#;
        let at = |t: u64, j: &str| Value::from(format!("{t} {j}"));
        assert_eq!(
            parse_report(&at(10_000, json), 12_000).map(|r| r.age_ms),
            Some(2000)
        );
        assert!(parse_report(&at(1_000, json), 12_000).is_none(), "old");
        assert!(parse_report(&at(10_000, "{"), 12_000).is_none());
        assert!(parse_report(&Value::from("x"), 12_000).is_none());
        let long = format!("{json}{}", " ".repeat(MAX_REPORT_LEN));
        assert!(parse_report(&at(10_000, &long), 12_000).is_none());
    }

    #[test]
    fn scores_come_flat_or_nested() {
        let flat = Value::Array(vec!["a".into(), "1".into(), "b".into(), "2.5".into()]);
        assert_eq!(scored(&flat), vec![("a".into(), 1.0), ("b".into(), 2.5)]);
        let nested = Value::Array(vec![Value::Array(vec!["a".into(), Value::Double(3.0)])]);
        assert_eq!(scored(&nested), vec![("a".into(), 3.0)]);
    }
}
