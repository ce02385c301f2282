//! The Lua scripts of the wire protocol: each runs one step atomically in Redis (a URN
//! key's claim, a lease's renewal, a request passed on, a takeover, a state write). The
//! Python actor host runs the same text (`python/tools/gen_lua.py` copies them; the
//! `python_host_scripts` test below checks the copy).

/// `KEYS[1]` = a URN key, `ARGV[1]` = system id, `ARGV[2]` = lease in ms, `ARGV[3]`
/// (optional) = `renew`. Takes or renews the lease when the key is free or already ours;
/// returns 1, or the owner's id. With `renew`, a free key is left free and answered 0: a
/// renewal whose list of keys was made before one of them was released (a passivation, a
/// drain) must not take it back, or the URN would name a system that no longer serves it
/// until the key's TTL.
pub(crate) const CLAIM_SCRIPT: &str = r"local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or (v == false and ARGV[3] ~= 'renew') then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == false then return 0 end
return v";

/// `KEYS` = URN keys, `ARGV[1]` = system id, `ARGV[2]` = lease in ms, `ARGV[3]`
/// (optional) = `renew`: [`CLAIM_SCRIPT`] for each key in one call (a server that is not a cluster: the keys may be in any slot);
/// returns one answer per key. A key that holds something else than a string (written by
/// something other than a proxy) is answered [`FOREIGN_KEY`], as a URN some other owner
/// holds, rather than failing the claim of every key with it.
pub(crate) const CLAIM_MANY_SCRIPT: &str = r"local out = {}
for i = 1, #KEYS do
  local v = redis.pcall('GET', KEYS[i])
  if type(v) == 'table' then
    out[i] = '(a key of another type)'
  elseif v == ARGV[1] or (v == false and ARGV[3] ~= 'renew') then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  elseif v == false then
    out[i] = 0
  else
    out[i] = v
  end
end
return out";

/// What [`CLAIM_MANY_SCRIPT`] answers for a URN key that is not a string.
pub(crate) const FOREIGN_KEY: &str = "(a key of another type)";

/// Frees a URN key whose holder is gone: deletes `KEYS[1]` (the URN key) if it names
/// `ARGV[1]` and that system holds no lease (`KEYS[2]`, its system lease) or, when
/// `KEYS[4]` (its request stream) is given, has no request stream (it drained, and its
/// stream was deleted: `proxy/drain.rs`), and adds the URN (`ARGV[2]`) to the holder's record
/// of URN keys given away (`KEYS[3]`, [`SYSTEM_LEASE_SCRIPT`]) when that record exists. 1:
/// freed.
pub(crate) const FREE_GONE_URN_SCRIPT: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] and (redis.call('EXISTS', KEYS[2]) == 0 or (KEYS[4] ~= nil and redis.call('EXISTS', KEYS[4]) == 0)) then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('SADD', KEYS[3], ARGV[2]) end
  return 1
end
return 0";

/// The mark ([`SYSTEM_LEASE_SCRIPT`]'s `ARGV[4]`) that says a system's record of URN keys
/// given away is whole since it was made: never a URN (a URN holds no whitespace). One text
/// for the Rust proxy and the Python host, which keep the same record.
pub(crate) const GIVEN_WHOLE: &str = r"(record whole)";

/// A system's lease kept, with its record of the URN keys given away while the lease was
/// absent (a set at `{ns}:sys:{system}:given`, [`Keys::given`](super::Keys::given): what the takeover and the
/// freeing of a gone holder's URN key add to, [`TAKE_OVER_SCRIPT`], [`FREE_GONE_URN_SCRIPT`],
/// only while it exists; `ARGV[4]`, never a URN, marks it as whole since it was made).
/// `KEYS[1]` = the lease, `KEYS[2]` = the record; `ARGV[1]` = this instance's token,
/// `ARGV[2]` = the lease's TTL (ms), `ARGV[3]` = the record's, `ARGV[4]` = the mark, `ARGV[5]`
/// = `1` to take the lease again when it is absent. Answers `{1}`: it named this instance and
/// is renewed (the record's TTL with it); `{2, holder}`: another instance holds it; `{0}`:
/// absent, not taken; `{3, given}`: absent, taken again, and `given` the record's URNs (with
/// the mark) if the record was whole, else `false`. Either way the record is emptied and
/// marked whole again in the same step, so that whatever is given away from then on (after
/// another lapse) is in it.
pub(crate) const SYSTEM_LEASE_SCRIPT: &str = r"local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {1}
end
if held then return {2, held} end
if ARGV[5] ~= '1' then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local given = false
if redis.call('SISMEMBER', KEYS[2], ARGV[4]) == 1 then
  given = redis.call('SMEMBERS', KEYS[2])
end
redis.call('DEL', KEYS[2])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {3, given}";

/// `KEYS[1]` = a key, `ARGV[1]` = expected value: deletes the key if it holds that value.
pub(crate) const RELEASE_SCRIPT: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Lua functions the scripts that look at a stream's consumer group share ([`CLOSE_SCRIPT`],
/// [`RESET_SCRIPT`], [`GROUP_TRIM_SCRIPT`]): `last_id(key)`, the id of the last entry ever
/// added to a stream (`nil` when there is no such stream); `group_state(key, group)`, a
/// consumer group's count of entries pending and the last id delivered (`nil` when there is
/// no such stream or group); `group_done(key, group, last)`, whether the group took every
/// entry up to `last` and acknowledged them all (`nil` when there is no such group).
macro_rules! stream_group_lua {
    () => {
        r"local function last_id(key)
  local ok, info = pcall(redis.call, 'XINFO', 'STREAM', key)
  if not ok then return nil end
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1] end
  end
  return nil
end
local function group_state(key, group)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', key)
  if not ok then return nil end
  for _, g in ipairs(groups) do
    local name, pending, delivered
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'pending' then pending = g[i + 1] end
      if g[i] == 'last-delivered-id' then delivered = g[i + 1] end
    end
    if name == group then return pending, delivered end
  end
  return nil
end
local function group_done(key, group, last)
  local pending, delivered = group_state(key, group)
  if pending == nil then return nil end
  return pending == 0 and delivered == last
end
"
    };
}

/// `KEYS[1]` = a system's request stream, `ARGV[1]` = its consumer group. Deletes the
/// stream if every entry in it was delivered and acknowledged (returns 1), else leaves it
/// (0): at a shutdown that releases the system's URNs, so that a client still holding the
/// route appends nothing (`XADD NOMKSTREAM` answers nil) and learns at once that the URN is
/// gone, while a request that came in after the proxy stopped reading stays for the next
/// proxy of the system. One script: a request appended between a check and the delete
/// would be lost.
pub(crate) const CLOSE_SCRIPT: &str = concat!(
    stream_group_lua!(),
    r"local last = last_id(KEYS[1])
if last == nil then return 0 end
if group_done(KEYS[1], ARGV[1], last) ~= true then return 0 end
redis.call('DEL', KEYS[1])
return 1"
);

/// `KEYS[1]` = a request stream, `ARGV[1]` = its consumer group, `ARGV[2]` = how far ahead
/// of Redis's clock (ms) an id may be, `ARGV[3]` = the stream's TTL (ms). A client may add
/// an entry with an id far in the future (up to the largest id there is); every later `*` id
/// then follows it. Once every entry was delivered and acknowledged, this replaces such a
/// stream with an empty one (same group), atomically, so that ids follow the clock again.
/// Returns 1 when it reset the stream, 0 when the stream's ids are sane, -1 when entries are
/// still to be handled (try again later).
pub(crate) const RESET_SCRIPT: &str = concat!(
    stream_group_lua!(),
    r"local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = last_id(KEYS[1])
if last == nil then return 0 end
local ms = tonumber(string.match(last, '^(%d+)'))
if ms == nil or ms <= now + tonumber(ARGV[2]) then return 0 end
if group_done(KEYS[1], ARGV[1], last) == false then return -1 end
redis.call('DEL', KEYS[1])
redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '$', 'MKSTREAM')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1"
);

/// `KEYS[1]` = a request stream; `ARGV` = for each request, its field count (names and
/// values) then its fields. Appends them all if the stream exists (returns 1), else none
/// (returns 0): a client's batch of requests in one command.
pub(crate) const SEND_SCRIPT: &str = r"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + n))
  i = i + 1 + n
end
return 1";

/// `KEYS[1]` = the request stream an entry came in, `KEYS[2]` = the request stream of the
/// system to pass it to; `ARGV[1]` = consumer group, `ARGV[2]` = consumer, `ARGV[3]` = the
/// entry's id, `ARGV[4..]` = the new entry's fields. Appends the new entry and acknowledges
/// the old one, in one step, only while the old one is pending on this consumer: returns 1
/// (passed on), 0 (no stream to pass it to; nothing done) or -1 (not pending on this
/// consumer: another member claimed it, or an earlier call whose answer was lost passed it
/// on already; nothing done). A request is so passed on at most once.
pub(crate) const FORWARD_SCRIPT: &str = r"local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1";

/// `KEYS[1]` = a pattern group's stream, `KEYS[2]` = the request stream of the member
/// system chosen to activate a URN; `ARGV[1]` = consumer group, `ARGV[2]` = this member's
/// consumer, `ARGV[3]` = the entry's id, `ARGV[4]` = the chosen member's consumer,
/// `ARGV[5..]` = the fields of the entry that wakes it up. Moves the entry, still in the
/// group's stream, to the chosen member's pending list, and appends the wake-up entry to
/// its system's stream, in one step, only while the entry is pending on this consumer:
/// returns 1 (placed), 0 (the chosen system has no request stream; nothing done) or -1
/// (not pending here: another member claimed it; nothing done). The entry stays in the
/// group's stream until the chosen member acknowledges it: if that member is gone before
/// it does, the others claim it as any gone member's entries.
pub(crate) const PLACE_SCRIPT: &str = r"local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[4], 0, ARGV[3], 'JUSTID')
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
return 1";

/// `KEYS[1]` = a pattern's directory ([`Keys::placement`](super::Keys::placement)), `ARGV[1]` = a member system,
/// `ARGV[2]` = its count of activations, `ARGV[3]` = its lease (ms), `ARGV[4]` (optional)
/// = how long a member not live stays listed (ms; ten leases when absent). Records the
/// count, live until a lease from now (Redis's clock), forgets the members not live for
/// that long, and keeps the directory for that long: the takeover looks at the members
/// listed, so a gone member stays while the URN keys naming it may live
/// ([`ProxyConfig::activation_urn_ttl`](crate::ProxyConfig::activation_urn_ttl)).
pub(crate) const PLACEMENT_REPORT_SCRIPT: &str = r"local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local keep = tonumber(ARGV[4]) or 10 * lease
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%.0f', now + lease))
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local untl = tonumber(string.match(all[i + 1], ' (%d+)$'))
  if untl == nil or untl + keep < now then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('PEXPIRE', KEYS[1], keep)
return 1";

/// `KEYS[1]` = a pattern's directory: the members live now (Redis's clock), each as its
/// system id then its count of activations.
pub(crate) const PLACEMENT_READ_SCRIPT: &str = r"local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local c, u = string.match(all[i + 1], '^(%d+) (%d+)$')
  if c ~= nil and tonumber(u) > now then
    out[#out + 1] = all[i]
    out[#out + 1] = c
  end
end
return out";

/// `KEYS[1]` = a reply list, `ARGV[1]` = TTL in ms, `ARGV[2..]` = frames: appends the
/// frames and sets the list's TTL, atomically (so no reply list outlives its TTL).
pub(crate) const PUSH_SCRIPT: &str = r"redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1";

/// `KEYS[1]` = a request stream, `KEYS[2..]` = reply lists; `ARGV[1]` = consumer group,
/// `ARGV[2]` = reply TTL in ms, `ARGV[3]` = n, `ARGV[4..3+n]` = entry ids, then for each
/// reply list its frame count and its frames, and last the id below which the stream may be
/// trimmed (empty: none). Pushes the frames (each list getting the TTL in the same step),
/// acknowledges the entries and trims the stream's whole nodes below that id: a batch's
/// whole answer in one command. A reply list that is not a list (`WRONGTYPE`) loses only its
/// own frames; any other refusal (out of memory, read-only) fails the script before anything
/// is acknowledged, so the proxy writes the answer again (frames already pushed are pushed
/// twice; clients drop frames no ask waits for).
pub(crate) const ANSWER_SCRIPT: &str = r"local n = tonumber(ARGV[3])
local pos = 4 + n
for k = 2, #KEYS do
  local c = tonumber(ARGV[pos])
  local pushed = redis.pcall('RPUSH', KEYS[k], unpack(ARGV, pos + 1, pos + c))
  if type(pushed) == 'number' then
    redis.pcall('PEXPIRE', KEYS[k], ARGV[2])
  elseif string.sub(pushed['err'], 1, 9) ~= 'WRONGTYPE' then
    return pushed
  end
  pos = pos + 1 + c
end
if n > 0 then
  redis.pcall('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4, 3 + n))
end
if ARGV[#ARGV] ~= '' then
  redis.pcall('XTRIM', KEYS[1], 'MINID', '~', ARGV[#ARGV])
end
return 1";

/// `KEYS[1]` = a group's request stream, `ARGV[1]` = its consumer group. Trims the entries
/// every member has finished with: below the oldest entry pending on any member, or, with
/// none pending, up to the last one delivered. Returns the number of entries trimmed.
pub(crate) const GROUP_TRIM_SCRIPT: &str = concat!(
    stream_group_lua!(),
    r"local pending, delivered = group_state(KEYS[1], ARGV[1])
if delivered == nil then return 0 end
local minid
if pending > 0 then
  minid = redis.call('XPENDING', KEYS[1], ARGV[1])[2]
else
  local ms, seq = string.match(delivered, '^(%d+)-(%d+)$')
  if ms == nil then return 0 end
  minid = ms .. '-' .. tostring(tonumber(seq) + 1)
end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)"
);

/// `KEYS[1]` = a group's request stream, `ARGV[1]` = its consumer group, `ARGV[2]` = a
/// consumer. Deletes the consumer if nothing is pending on it, and returns 1 (0: kept).
/// One script, because `XGROUP DELCONSUMER` drops whatever is pending on the consumer: a
/// member back from a pause can read entries between a separate count and the delete, and
/// they would be lost (pending nowhere, handled by nobody).
pub(crate) const GROUP_FORGET_SCRIPT: &str = r"local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if not ok or #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1";

/// The hand-over of a URN key, as a Lua function for the scripts that hand one over
/// ([`HAND_URN_SCRIPT`], run by `proxy/serve/urn_keys.rs`, and `proxy/scale/migration.rs`'s `DEHYDRATE_SCRIPT`, which hands the key
/// in the step that carries the state): `hand(urn_key, me, target, ttl, or_free, channel,
/// stream, notice)` gives `urn_key` to `target` for `ttl` ms when it names `me` (or, with
/// `or_free` = `1`, when nobody holds it), publishes on `channel` (unless empty: the
/// hand-over notes of `Keys::moves`) `target`, a newline and
/// `urn_key`, and then, with `stream` (the target's request stream), appends there the
/// entry of fields `notice` (the moved-in notice, `hand_urn`): 1; else the system the key
/// names, or 0 when free. The note is published with `pcall`: a user whose ACL predates the
/// channel still hands its keys over (its clients miss the notes, and are passed on).
macro_rules! hand_urn_lua {
    () => {
        r"local function hand(urn_key, me, target, ttl, or_free, channel, stream, notice)
  local v = redis.call('GET', urn_key)
  if v == me or (v == false and or_free == '1') then
    redis.call('SET', urn_key, target, 'PX', ttl)
    if channel ~= '' then redis.pcall('PUBLISH', channel, target .. '\n' .. urn_key) end
    if stream then redis.call('XADD', stream, 'NOMKSTREAM', '*', unpack(notice)) end
    return 1
  end
  if v == false then return 0 end
  return v
end
"
    };
}
pub(crate) use hand_urn_lua;

/// `hand` (`protocol::hand_urn_lua`) of `KEYS[1]` (the URN key), `ARGV[1]` (this system),
/// `ARGV[2]` (the target), `ARGV[3]` (TTL, ms), `ARGV[4]` (`1`: or free), `ARGV[5]` (the
/// hand-over notes' channel, or empty), `KEYS[2]` (the target's stream, if any),
/// `ARGV[6..]` (the notice's fields).
pub(crate) const HAND_URN_SCRIPT: &str = concat!(
    hand_urn_lua!(),
    r"return hand(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], KEYS[2], {unpack(ARGV, 6)})"
);

/// The body [`STATE_OPEN_SCRIPT`] and [`CLAIM_OPEN_SCRIPT`] share: makes `ARGV[1]` the owner
/// of state key `KEYS[1]`, reads its data into `data`, and lets a key without data (nor a
/// durable journal) live `ARGV[2]` ms.
macro_rules! state_open_lua {
    () => {
        r"redis.call('HSET', KEYS[1], 'owner', ARGV[1])
local data = redis.call('HGET', KEYS[1], 'data')
if data == false and redis.call('HEXISTS', KEYS[1], 'journaled') == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
"
    };
}

/// `KEYS[1]` = an activated actor's state key, `ARGV[1]` = the activation's token,
/// `ARGV[2]` = how long a key without data (nor a durable journal, field `journaled`) lives
/// (ms). Makes this activation the key's
/// owner, so that an earlier activation's writes are refused from now on, and returns the
/// stored data and the requests the last writer had applied but not acknowledged (each nil:
/// none; see `proxy/scale/applied.rs`).
pub(crate) const STATE_OPEN_SCRIPT: &str = concat!(
    state_open_lua!(),
    r"return {data, redis.call('HGET', KEYS[1], 'applied')}"
);

/// The body [`CLAIM_OPEN_SCRIPT`] and [`CARRIED_OPEN_SCRIPT`] share, run before
/// `state_open_lua`: takes (deletes) the state a move carried to this activation from the
/// carried key `ck` (`proxy/scale/migration.rs`) into `carried`, keeping it only when its
/// writer still owns state key `KEYS[1]` (the activation just before; one that came in
/// between and did not take it makes it stale), else `false`.
macro_rules! take_carried_lua {
    () => {
        r"local carried = false
local c = redis.call('GET', ck)
if c then
  redis.call('DEL', ck)
  local sep = string.find(c, '\n', 1, true)
  if sep and redis.call('HGET', KEYS[1], 'owner') == string.sub(c, 1, sep - 1) then carried = string.sub(c, sep + 1) end
end
"
    };
}

/// [`CLAIM_SCRIPT`] then, once the URN is this system's, [`STATE_OPEN_SCRIPT`], in one step
/// (a server that is not a cluster: the keys may be in any slot), taking on the way the
/// state a move carried to this activation (`proxy/scale/migration.rs`): one round trip
/// for all three, which the requests of a moved activation wait for. `KEYS[1]` = the
/// state key, `KEYS[2]` = the URN key, `KEYS[3]` = the state's carried key; `ARGV[1]` =
/// the activation's token, `ARGV[2]` = how long a state key without data lives (ms),
/// `ARGV[3]` = system id, `ARGV[4]` = the URN lease (ms). Returns the owner's id when
/// another system holds the URN; else `{1, data, applied, carried}`: as
/// [`STATE_OPEN_SCRIPT`], and the carried state (nil: none), taken (deleted) if any, and
/// returned only when its writer still owned the state before this activation (the
/// activation just before; one that came in between and did not take it makes it stale).
pub(crate) const CLAIM_OPEN_SCRIPT: &str = concat!(
    r"local v = redis.call('GET', KEYS[2])
if v ~= false and v ~= ARGV[3] then return v end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
local ck = KEYS[3]
",
    take_carried_lua!(),
    state_open_lua!(),
    r"return {1, data, redis.call('HGET', KEYS[1], 'applied'), carried}"
);

/// [`STATE_OPEN_SCRIPT`] taking on the way the state a move carried to this activation, as
/// [`CLAIM_OPEN_SCRIPT`] does without the claim: the Python actor host's open (it claims
/// its URN keys apart). `KEYS[1]` = the state key, `KEYS[2]` = its carried key; `ARGV` as
/// [`STATE_OPEN_SCRIPT`]'s. Returns `{data, applied, carried}` (each nil: none).
///
/// Written out rather than with the macros so that the Python copy stays one; a test
/// checks it is their body.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the Python actor host's: run from its copy, checked by a test"
    )
)]
pub(crate) const CARRIED_OPEN_SCRIPT: &str = r"local ck = KEYS[2]
local carried = false
local c = redis.call('GET', ck)
if c then
  redis.call('DEL', ck)
  local sep = string.find(c, '\n', 1, true)
  if sep and redis.call('HGET', KEYS[1], 'owner') == string.sub(c, 1, sep - 1) then carried = string.sub(c, sep + 1) end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
local data = redis.call('HGET', KEYS[1], 'data')
if data == false and redis.call('HEXISTS', KEYS[1], 'journaled') == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {data, redis.call('HGET', KEYS[1], 'applied'), carried}";

/// The carrying step of a move (`proxy/scale/migration.rs`, `DEHYDRATE_SCRIPT`): when
/// `ARGV[1]` (the activation's token) owns state key `KEYS[1]`, leaves `ARGV[2]` (its
/// state) in the carried key `KEYS[2]` for `ARGV[3]` ms, with the writer's token.
macro_rules! carry_lua {
    () => {
        r"if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1] .. '\n' .. ARGV[2], 'PX', ARGV[3])
"
    };
}
pub(crate) use carry_lua;

/// `carry_lua` alone, answering 1 when it carried, else 0: the Python actor host's
/// dehydration (it releases its URN keys apart). Written out for the Python copy; a test
/// checks it is the macro's body.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the Python actor host's: run from its copy, checked by a test"
    )
)]
pub(crate) const CARRY_SCRIPT: &str = r"if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1] .. '\n' .. ARGV[2], 'PX', ARGV[3])
return 1";

/// `KEYS[1]` = an activated actor's state key, `ARGV[1]` = the activation's token,
/// `ARGV[2]` = `set` (then `ARGV[3]` = the data) or `clear` (then `ARGV[3]` = how long the
/// key without data lives, ms), `ARGV[4]` = the requests whose handling wrote the state and
/// that are not acknowledged yet (empty: none). Writes only while the token owns the key
/// (returns 1), else refuses (returns 0): a fenced write.
pub(crate) const STATE_SAVE_SCRIPT: &str = r"if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if ARGV[2] == 'set' then
  redis.call('HSET', KEYS[1], 'data', ARGV[3])
  redis.call('PERSIST', KEYS[1])
else
  redis.call('HDEL', KEYS[1], 'data')
  if redis.call('HEXISTS', KEYS[1], 'journaled') == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], 'applied')
else
  redis.call('HSET', KEYS[1], 'applied', ARGV[4])
end
return 1";

/// `KEYS[1]` = an activated actor's state key, `ARGV[1]` = the activation's token. At
/// passivation: deletes the key if this activation owns it and it holds no data (nor a
/// durable journal, field `journaled`: `crate::durable`).
pub(crate) const STATE_CLOSE_SCRIPT: &str = r"if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HEXISTS', KEYS[1], 'data') == 0 and redis.call('HEXISTS', KEYS[1], 'journaled') == 0 then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// SHA1 of a script, as EVALSHA wants it.
pub(crate) fn sha1_hex(script: &str) -> String {
    fred::util::sha1_hash(script)
}

/// `KEYS[1]` = a gone system's stream, `KEYS[2]` = a pattern group's stream, `KEYS[3]` = the
/// gone system's lease, `KEYS[4]` = its record of URN keys given away ([`SYSTEM_LEASE_SCRIPT`]),
/// `KEYS[5..4+n]` = URN keys, `KEYS[5+n..]` = the streams of the members chosen to activate
/// them; `ARGV[1]` = consumer group, `ARGV[2]` = the pattern's prefix,
/// `ARGV[3]` = the gone system's id, `ARGV[4]`, `ARGV[5]` = the first and last entry ids to
/// look at, `ARGV[6]` = the URN keys' TTL (ms), `ARGV[7]` = n, then n URNs (those of
/// `KEYS[4..3+n]`), n indexes (1-based) into the chosen members' streams, and their system
/// ids. Unless the pattern has no member (`{-1, 0, 0}`) or the gone system holds a lease
/// again (`{-2, 0, 0}`): each URN key naming the gone system, or absent, is given to the
/// member chosen for it when that member's stream exists (one naming that member already
/// stays its; one given away is added to the record when the record exists), and each request of that range for a URN of the pattern not acknowledged by the
/// gone system (delivered and pending, or never delivered) is appended, fields unchanged but
/// its deadline's `ttl` cut by the time it waited and a `moved` field (its first entry,
/// `<id> <stream>`, unless it has one; an asker's `rt 1` made `rt 2`, so that the member
/// answering names itself: a route hint), to that member's stream (to the group's stream if its
/// URN is held by another system by now), or dropped if its deadline passed; every request
/// of the pattern in the range is then acknowledged and deleted from the gone system's
/// stream, and so is every wake-up entry (`field::PLACED` without a URN: what it stands
/// for is pending on the gone system in a group's stream, which the group's other members
/// claim once its member lease is gone, or a notice only it would read; left, it would
/// keep [`CLOSE_DRAINED_SCRIPT`] from deleting a stopping member's stream). One script: the
/// requests of a URN reach one stream, in their order, before any request sent after they
/// moved. Returns `{moved, expired, waited}` (`waited`: how long the
/// oldest moved request had waited, ms).
pub(crate) const TAKE_OVER_SCRIPT: &str = r"if redis.call('EXISTS', KEYS[2]) == 0 then return {-1, 0, 0} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {-2, 0, 0} end
local n = tonumber(ARGV[7])
local dest = {}
for i = 1, n do
  local key = KEYS[4 + i]
  local target = tonumber(ARGV[7 + n + i])
  local held = redis.call('GET', key)
  local chosen = ARGV[7 + 2 * n + target]
  if redis.call('EXISTS', KEYS[4 + n + target]) == 1
    and (held == ARGV[3] or held == chosen or (held == false and redis.call('SET', key, chosen, 'PX', ARGV[6], 'NX'))) then
    redis.call('SET', key, chosen, 'PX', ARGV[6])
    if held ~= chosen and redis.call('EXISTS', KEYS[4]) == 1 then redis.call('SADD', KEYS[4], ARGV[7 + i]) end
    dest[ARGV[7 + i]] = KEYS[4 + n + target]
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local has_group, last = false, '0-0'
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if ok then
  for _, g in ipairs(groups) do
    local name, ld
    for j = 1, #g, 2 do
      if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then ld = g[j + 1] end
    end
    if name == ARGV[1] then has_group, last = true, ld or '0-0' end
  end
end
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms) or 0, tonumber(seq) or 0
end
local lm, ls = split(last)
local plen = string.len(ARGV[2])
local moved, expired, waited = 0, 0, 0
for _, e in ipairs(redis.call('XRANGE', KEYS[1], ARGV[4], ARGV[5])) do
  local id, f = e[1], e[2]
  local urn, ttl, placed, first
  for j = 1, #f, 2 do
    if f[j] == 'urn' then urn = f[j + 1] elseif f[j] == 'ttl' then ttl = j + 1
    elseif f[j] == 'placed' then placed = true elseif f[j] == 'moved' then first = true
    elseif f[j] == 'rt' and f[j + 1] == '1' then f[j + 1] = '2' end
  end
  local ours = urn and not placed and string.len(urn) > plen and string.sub(urn, 1, plen) == ARGV[2]
    and not string.find(urn, ':', plen + 1, true)
  if ours then
    local ms, seq = split(id)
    local unacked = not has_group or ms > lm or (ms == lm and seq > ls)
      or #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) > 0
    if unacked then
      local left = 0
      if ttl then left = (tonumber(f[ttl]) or 0) - (now - math.min(ms, now)) end
      if left > 0 then
        f[ttl] = string.format('%.0f', left)
        if not first then
          f[#f + 1] = 'moved'
          f[#f + 1] = id .. ' ' .. KEYS[1]
        end
        redis.call('XADD', dest[urn] or KEYS[2], '*', unpack(f))
        moved = moved + 1
        waited = math.max(waited, now - math.min(ms, now))
      else
        expired = expired + 1
      end
    end
  end
  if ours or (placed and not urn) then
    if has_group then redis.call('XACK', KEYS[1], ARGV[1], id) end
    redis.call('XDEL', KEYS[1], id)
  end
end
return {moved, expired, waited}";

/// `KEYS[1]` = a draining system's request stream, `ARGV[1]` = its consumer group. Deletes
/// the stream when nothing in it waits (none pending, none never delivered): 1, else 0. Run
/// by a drained Rust member and a stopping Python actor host after they swept their
/// stream with [`TAKE_OVER_SCRIPT`]: a client that appends there afterwards finds it gone
/// and looks the URN up again.
pub(crate) const CLOSE_DRAINED_SCRIPT: &str = r"local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then return 1 end
local pending, delivered = nil, '0-0'
for _, g in ipairs(groups) do
  local name
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
  end
  if name == ARGV[1] then
    for i = 1, #g, 2 do
      if g[i] == 'pending' then pending = g[i + 1] elseif g[i] == 'last-delivered-id' then delivered = g[i + 1] end
    end
  end
end
if pending == nil or pending > 0 then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local lm, ls = string.match(last[1][1], '^(%d+)-(%d+)$')
  local dm, ds = string.match(delivered, '^(%d+)-(%d+)$')
  lm, ls, dm, ds = tonumber(lm), tonumber(ls), tonumber(dm), tonumber(ds)
  if lm > dm or (lm == dm and ls > ds) then return 0 end
end
redis.call('DEL', KEYS[1])
return 1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_hosts_carrying_scripts_are_the_claims_and_the_moves_bodies() {
        assert_eq!(
            CARRIED_OPEN_SCRIPT,
            concat!(
                "local ck = KEYS[2]\n",
                take_carried_lua!(),
                state_open_lua!(),
                r"return {data, redis.call('HGET', KEYS[1], 'applied'), carried}"
            )
        );
        assert_eq!(CARRY_SCRIPT, concat!(carry_lua!(), "return 1"));
    }

    /// The Python actor host runs these scripts from `python/src/conclib/_lua.py`, written
    /// from this file by `python/tools/gen_lua.py`: one source, checked here.
    #[test]
    fn python_host_scripts() {
        crate::lua_copies::assert_copied_to_python(
            "",
            &[
                ("CLAIM_SCRIPT", CLAIM_SCRIPT),
                ("CLAIM_MANY_SCRIPT", CLAIM_MANY_SCRIPT),
                ("RELEASE_SCRIPT", RELEASE_SCRIPT),
                ("FREE_GONE_URN_SCRIPT", FREE_GONE_URN_SCRIPT),
                ("SYSTEM_LEASE_SCRIPT", SYSTEM_LEASE_SCRIPT),
                ("GIVEN_WHOLE", GIVEN_WHOLE),
                ("ANSWER_SCRIPT", ANSWER_SCRIPT),
                ("FORWARD_SCRIPT", FORWARD_SCRIPT),
                ("PLACEMENT_REPORT_SCRIPT", PLACEMENT_REPORT_SCRIPT),
                ("PLACEMENT_READ_SCRIPT", PLACEMENT_READ_SCRIPT),
                ("PLACE_SCRIPT", PLACE_SCRIPT),
                ("GROUP_FORGET_SCRIPT", GROUP_FORGET_SCRIPT),
                ("TAKE_OVER_SCRIPT", TAKE_OVER_SCRIPT),
                ("CLOSE_DRAINED_SCRIPT", CLOSE_DRAINED_SCRIPT),
                ("STATE_SAVE_SCRIPT", STATE_SAVE_SCRIPT),
                ("STATE_CLOSE_SCRIPT", STATE_CLOSE_SCRIPT),
                ("CARRIED_OPEN_SCRIPT", CARRIED_OPEN_SCRIPT),
                ("CARRY_SCRIPT", CARRY_SCRIPT),
                ("HAND_URN_SCRIPT", HAND_URN_SCRIPT),
            ],
        );
    }
}
