//! The reminders' Lua scripts: each touches one shard (its keys share a hash tag), runs on
//! Redis's clock (`TIME`), and is one round trip. The Python client sends the same texts
//! (`python/src/conclib/reminders.py`; `tests/reminders.rs` checks they are equal).

use crate::script::Script;

/// Registers (or replaces) a reminder. KEYS: due set, record, URN index. ARGV: urn, name,
/// `at` (ms since the epoch; used when `after` is empty), `after` (ms from Redis's now),
/// period (ms, 0 for once), payload, codec, member, and optionally `each` (ms: missed ticks
/// are delivered one by one, at least this far apart, instead of coalesced). Returns the
/// due time. The record's `gen` (Redis's clock in µs, above the record's earlier `gen`)
/// goes into every token of its claims: a delivery of an earlier registration of the same
/// URN and name acknowledged late then matches no claim of this one (the claims counter
/// starts again at 0).
pub(crate) const REGISTER: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due
if ARGV[4] ~= '' then due = now + tonumber(ARGV[4]) else due = tonumber(ARGV[3]) end
local d = string.format('%.0f', due)
local gen = tonumber(t[1]) * 1000000 + tonumber(t[2])
local before = tonumber(redis.call('HMGET', KEYS[2], 'gen')[1] or '')
if before and before >= gen then gen = before + 1 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'urn', ARGV[1], 'name', ARGV[2], 'due', d, 'period', ARGV[5],
  'payload', ARGV[6], 'codec', ARGV[7], 'claim', '', 'claims', '0',
  'gen', string.format('%.0f', gen))
if ARGV[9] and ARGV[9] ~= '' then redis.call('HSET', KEYS[2], 'each', ARGV[9]) end
redis.call('ZADD', KEYS[1], d, ARGV[8])
redis.call('SADD', KEYS[3], ARGV[2])
return due
";

/// Cancels a reminder. KEYS: due set, record, URN index. ARGV: member, name. Returns 1 if
/// it was registered.
pub(crate) const CANCEL: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
return redis.call('DEL', KEYS[2])
";

/// A URN's reminders. KEYS: URN index. ARGV: record prefix, urn. Returns, per reminder,
/// name, due, period, payload, codec, claimed (1 while a system is delivering it).
pub(crate) const LIST: &str = r"
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local r = redis.call('HMGET', ARGV[1] .. ARGV[2] .. '\n' .. name,
    'due', 'period', 'payload', 'codec', 'claim')
  if r[1] then
    local claimed = 0
    if r[5] and r[5] ~= '' then claimed = 1 end
    table.insert(out, {name, r[1], r[2], r[3], r[4], claimed})
  end
end
return out
";

/// Claims up to ARGV[1] due reminders of a shard for ARGV[2] ms (their score becomes the
/// claim's end, renewed by `RENEW` while the delivery runs, so a firer that dies is taken
/// over once it lapses). KEYS: due set. ARGV:
/// limit, lease (ms), claim token prefix, record prefix. Returns Redis's now, then per
/// reminder: member, urn, name, due, period, missed, payload, codec, token (`prefix:gen:n`,
/// `n` counting the record's claims). `missed`: the
/// ticks of a periodic reminder that came due before now after `due`, coalesced into this
/// delivery. The due set is written once per call (one `ZADD` for every claim, one `ZREM`
/// for every member without a record), not once per reminder: per reminder, only its record
/// is read and written.
pub(crate) const CLAIM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {now}
local until_ms = string.format('%.0f', now + tonumber(ARGV[2]))
local claimed, gone = {}, {}
for _, m in ipairs(members) do
  local rk = ARGV[4] .. m
  local r = redis.call('HMGET', rk, 'urn', 'name', 'due', 'period', 'payload', 'codec', 'claims', 'each', 'gen')
  local due = tonumber(r[3] or '')
  if not r[1] or not r[2] or not due then
    -- Gone, or not a reminder this script wrote: never delivered, never in the way.
    gone[#gone + 1] = m
  else
    local period = tonumber(r[4] or '') or 0
    local missed = 0
    if period > 0 and now >= due + period and not r[8] then
      missed = math.floor((now - due) / period)
    end
    local claims = (tonumber(r[7] or '') or 0) + 1
    local token = ARGV[3] .. ':' .. (r[9] or '') .. ':' .. claims
    redis.call('HSET', rk, 'claim', token, 'claims', claims)
    claimed[#claimed + 1] = until_ms
    claimed[#claimed + 1] = m
    table.insert(out, {m, r[1], r[2], r[3], tostring(period), missed, r[5] or '', r[6] or '', token})
  end
end
-- In slices: unpack's arguments are bounded by Lua's stack.
for i = 1, #gone, 4000 do
  redis.call('ZREM', KEYS[1], unpack(gone, i, math.min(i + 3999, #gone)))
end
for i = 1, #claimed, 4000 do
  redis.call('ZADD', KEYS[1], unpack(claimed, i, math.min(i + 3999, #claimed)))
end
return out
";

/// Acknowledges delivered ticks of one shard, each if its claim is still the one it was
/// delivered under (not lapsed and taken over, not re-registered): a periodic reminder moves
/// to its next tick after the ones coalesced (or, delivering each, to the next tick, due no
/// sooner than `each` ms from now) and counts the delivery (`fired`) and the ticks coalesced
/// into it (`coalesced`) in its record, for the live view; a one-shot one is removed. KEYS:
/// due set. ARGV: record prefix, URN index prefix, then per tick: member, token, name,
/// missed, urn. Returns per tick, in order, the next due time, -1 (removed) or 0 (the claim
/// was not this one's any more). Per tick only its record is read (and a periodic one's
/// written); the due set, the records removed and each URN's index are written once per
/// call, after the loop (a one-shot record acknowledged stays readable until then; a
/// periodic one's claim is cleared at once, so a second tick of it in the call is not
/// this claim's).
pub(crate) const ACK: &str = r"
local out = {}
local now = nil
local moved, removed, records, names, urns = {}, {}, {}, {}, {}
for i = 3, #ARGV, 5 do
  local m, missed = ARGV[i], tonumber(ARGV[i + 3])
  local rk = ARGV[1] .. m
  local r = redis.call('HMGET', rk, 'claim', 'due', 'period', 'each', 'fired', 'coalesced')
  local period = tonumber(r[3] or '') or 0
  local due = tonumber(r[2] or '')
  if r[1] ~= ARGV[i + 1] then
    out[#out + 1] = 0
  elseif period > 0 and due then
    local fired = (tonumber(r[5] or '') or 0) + 1
    local coalesced = (tonumber(r[6] or '') or 0) + missed
    local next_due = due + (missed + 1) * period
    local score = next_due
    local each = tonumber(r[4] or '')
    if each then
      -- Missed ticks one by one: the next no sooner than `each` ms from now.
      if not now then
        local t = redis.call('TIME')
        now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      end
      if score < now + each then score = now + each end
    end
    redis.call('HSET', rk, 'due', string.format('%.0f', next_due), 'claim', '',
      'fired', fired, 'coalesced', coalesced)
    moved[#moved + 1] = string.format('%.0f', score)
    moved[#moved + 1] = m
    out[#out + 1] = next_due
  else
    removed[#removed + 1] = m
    records[#records + 1] = rk
    local urn = ARGV[i + 4]
    if not names[urn] then
      names[urn] = {}
      urns[#urns + 1] = urn
    end
    table.insert(names[urn], ARGV[i + 2])
    out[#out + 1] = -1
  end
end
-- In slices: unpack's arguments are bounded by Lua's stack.
for i = 1, #moved, 4000 do
  redis.call('ZADD', KEYS[1], unpack(moved, i, math.min(i + 3999, #moved)))
end
for i = 1, #removed, 4000 do
  redis.call('ZREM', KEYS[1], unpack(removed, i, math.min(i + 3999, #removed)))
  redis.call('DEL', unpack(records, i, math.min(i + 3999, #records)))
end
for _, urn in ipairs(urns) do
  local n = names[urn]
  for i = 1, #n, 4000 do
    redis.call('SREM', ARGV[2] .. urn, unpack(n, i, math.min(i + 3999, #n)))
  end
end
return out
";

/// Gives a claim back to be tried again in ARGV[3] ms (its delivery failed), if it is
/// still this one's. KEYS: due set, record. ARGV: member, token, delay (ms).
pub(crate) const RELEASE: &str = r"
local claim = redis.call('HGET', KEYS[2], 'claim')
if claim ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], 'claim', '')
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[1])
return 1
";

/// Renews claims a poller still holds (their deliveries run): each claim's end becomes now
/// plus ARGV[1] ms, if the record's claim is still that token. KEYS: due set. ARGV: lease
/// (ms), record prefix, then per claim: member, token. Returns how many were renewed.
pub(crate) const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = string.format('%.0f', now + tonumber(ARGV[1]))
local renewed = {}
for i = 3, #ARGV, 2 do
  if redis.call('HGET', ARGV[2] .. ARGV[i], 'claim') == ARGV[i + 1] then
    renewed[#renewed + 1] = until_ms
    renewed[#renewed + 1] = ARGV[i]
  end
end
for i = 1, #renewed, 4000 do
  redis.call('ZADD', KEYS[1], 'XX', unpack(renewed, i, math.min(i + 3999, #renewed)))
end
return #renewed / 2
";

/// A shard's counts: registered, due now. KEYS: due set.
pub(crate) const COUNTS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCOUNT', KEYS[1], '-inf', now)}
";

/// Records a poller's report. KEYS: the pollers' hash. ARGV: token, JSON, forget-after (ms).
/// Deletes the reports older than forget-after, and lets the hash expire that long after
/// the last report. Returns Redis's now.
pub(crate) const REPORT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local forget = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now) .. ' ' .. ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local at = tonumber(string.match(all[i + 1], '^(%d+) '))
  if at == nil or at + forget < now then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('PEXPIRE', KEYS[1], forget)
return now
";

/// The scripts, SHA computed once.
pub(crate) struct Scripts {
    pub(crate) register: Script,
    pub(crate) cancel: Script,
    pub(crate) list: Script,
    pub(crate) claim: Script,
    pub(crate) ack: Script,
    pub(crate) release: Script,
    pub(crate) renew: Script,
    pub(crate) counts: Script,
    pub(crate) report: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            register: Script::new(REGISTER),
            cancel: Script::new(CANCEL),
            list: Script::new(LIST),
            claim: Script::new(CLAIM),
            ack: Script::new(ACK),
            release: Script::new(RELEASE),
            renew: Script::new(RENEW),
            counts: Script::new(COUNTS),
            report: Script::new(REPORT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ACK, CLAIM, REGISTER, RELEASE, RENEW, REPORT, Script};
    use crate::conn::owned;
    use fred::prelude::*;

    fn s(text: &str) -> Value {
        owned(text.to_owned())
    }

    /// The Python actor host's reminder poller runs these texts: `python/tools/gen_lua.py`
    /// copies them into `python/src/conclib/_lua.py` (one source).
    #[test]
    fn python_host_scripts() {
        crate::lua_copies::assert_copied_to_python(
            "REMINDER_",
            &[
                ("CLAIM", CLAIM),
                ("ACK", ACK),
                ("RELEASE", RELEASE),
                ("RENEW", RENEW),
                ("REPORT", REPORT),
            ],
        );
    }

    /// The token of the only reminder a `CLAIM` answer holds.
    fn token(answer: &Value) -> String {
        let Value::Array(parts) = answer else {
            panic!("not an array: {answer:?}")
        };
        let Some(Value::Array(tick)) = parts.get(1) else {
            panic!("nothing claimed: {answer:?}")
        };
        tick[8].as_string().expect("a token")
    }

    /// A delivery of an earlier registration acknowledged late does not acknowledge a tick
    /// of the registration that replaced it, even when the same poller claimed both (its
    /// claims counter starts again with every registration; the registration's `gen` keeps
    /// the tokens apart).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_acknowledgement_of_an_earlier_registration_acknowledges_nothing() {
        // The server lives to the end of the test.
        let (_daemon, client) =
            crate::daemon::with_client("rem-gen", std::time::Duration::from_secs(5)).await;
        let (due, prefix, index) = ("{t}:due", "{t}:r:", "{t}:u:");
        let member = "user:1\nwake";
        let (register_script, claim_script, ack_script) =
            (Script::new(REGISTER), Script::new(CLAIM), Script::new(ACK));
        let record = format!("{prefix}{member}");
        let register = || {
            register_script.eval(
                &client,
                vec![due.into(), record.clone(), format!("{index}user:1")],
                ["user:1", "wake", "", "0", "0", "", "msgpack", member]
                    .map(s)
                    .to_vec(),
            )
        };
        let claim = || {
            claim_script.eval(
                &client,
                vec![due],
                vec![s("10"), s("60000"), s("poller-a"), s(prefix)],
            )
        };
        let ack = |token: &str| {
            ack_script.eval(
                &client,
                vec![due],
                [prefix, index, member, token, "wake", "0", "user:1"]
                    .map(s)
                    .to_vec(),
            )
        };

        register().await.unwrap();
        let first = token(&claim().await.unwrap());
        register().await.unwrap();
        let second = token(&claim().await.unwrap());
        assert_ne!(first, second, "two registrations' claims share a token");
        assert_eq!(
            ack(&first).await.unwrap(),
            Value::Array(vec![Value::Integer(0)])
        );
        assert_eq!(
            ack(&second).await.unwrap(),
            Value::Array(vec![Value::Integer(-1)]),
            "the tick of the registration claimed now is acknowledged (one-shot: removed)"
        );
        client.quit().await.unwrap();
    }
}
