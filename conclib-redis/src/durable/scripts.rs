//! The journal's Lua scripts, each on one URN's state key (`KEYS[1]`): the fields are those
//! of `record.rs`. The writing ones are fenced by the store's `owner` field, as the
//! fenced store's own writes are (`proxy/scale/store.rs`): 0 means refused.

use std::sync::OnceLock;

use crate::script::Script;

/// `ARGV[1]` = an execution's key. Its result (`{1, record}`) if it finished, else its
/// recorded steps in order (`{0, step 1, step 2, ...}`).
const BEGIN: &str = r"local r = redis.call('HGET', KEYS[1], 'jr:' .. ARGV[1])
if r then return {1, r} end
local n = tonumber(redis.call('HGET', KEYS[1], 'jn:' .. ARGV[1]) or '0') or 0
local out = {0}
for i = 1, n do
  local s = redis.call('HGET', KEYS[1], 'js:' .. i .. ':' .. ARGV[1])
  if not s then break end
  out[#out + 1] = s
end
return out";

/// `ARGV[1]` = the activation's token, `ARGV[2]` = the execution's key, `ARGV[3]` = the
/// step's number (1-based), `ARGV[4]` = its record. Appends the step if the token owns the
/// key (else 0), the execution has not finished and the step is the next one (else 2: two
/// runs of one execution at once in one activation); 1 when appended.
const APPEND: &str = r"if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'jr:' .. ARGV[2]) == 1 then return 2 end
local n = tonumber(redis.call('HGET', KEYS[1], 'jn:' .. ARGV[2]) or '0') or 0
if n + 1 ~= tonumber(ARGV[3]) then return 2 end
redis.call('HSET', KEYS[1], 'js:' .. ARGV[3] .. ':' .. ARGV[2], ARGV[4], 'jn:' .. ARGV[2], ARGV[3], 'journaled', '1')
redis.call('PERSIST', KEYS[1])
return 1";

/// `ARGV[1]` = the activation's token, `ARGV[2]` = the execution's key, `ARGV[3]` = its
/// result's record, `ARGV[4]` = how many steps this run saw, `ARGV[5..]` = the names of the
/// promises it took. Records the result and deletes the steps, those promises and its wake
/// message if the
/// token owns the key (else 0) and neither another result nor a step this run did not see
/// was recorded (else 2); 1 when recorded.
const FINISH: &str = r"if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'jr:' .. ARGV[2]) == 1 then return 2 end
local n = tonumber(redis.call('HGET', KEYS[1], 'jn:' .. ARGV[2]) or '0') or 0
if n ~= tonumber(ARGV[4]) then return 2 end
for i = 1, n do redis.call('HDEL', KEYS[1], 'js:' .. i .. ':' .. ARGV[2]) end
for i = 5, #ARGV do redis.call('HDEL', KEYS[1], 'jp:' .. ARGV[2] .. '\n' .. ARGV[i]) end
redis.call('HDEL', KEYS[1], 'jw:' .. ARGV[2])
redis.call('HSET', KEYS[1], 'jr:' .. ARGV[2], ARGV[3], 'jn:' .. ARGV[2], n, 'journaled', '1')
redis.call('PERSIST', KEYS[1])
return 1";

/// `ARGV[1]` = the activation's token, `ARGV[2]` = an execution's key. Deletes what the
/// journal holds of it if the token owns the key (else 0); 1 if there was any, else 2.
const FORGET: &str = r"if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local n = tonumber(redis.call('HGET', KEYS[1], 'jn:' .. ARGV[2]) or '0') or 0
for i = 1, n do redis.call('HDEL', KEYS[1], 'js:' .. i .. ':' .. ARGV[2]) end
local gone = redis.call('HDEL', KEYS[1], 'jn:' .. ARGV[2], 'jr:' .. ARGV[2], 'jw:' .. ARGV[2])
if gone > 0 then return 1 end
return 2";

/// `ARGV[1]` = the activation's token, `ARGV[2]` = an execution's key, `ARGV[3]` = its wake
/// message. Leaves the wake message for whoever resolves one of its promises if the token
/// owns the key (else 0); 1 when left.
const SUSPEND: &str = r"if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'jw:' .. ARGV[2], ARGV[3], 'journaled', '1')
redis.call('PERSIST', KEYS[1])
return 1";

/// `ARGV[1]` = the field of an execution's promise (`jp:<key>\n<name>`), `ARGV[2]` = its
/// value. Resolves it unless it is resolved already (0); 1 when resolved. Not fenced: any
/// caller may resolve a promise, once.
const RESOLVE: &str = r"if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'journaled', '1')
redis.call('PERSIST', KEYS[1])
return 1";

pub(crate) struct Scripts {
    pub(crate) begin: Script,
    pub(crate) append: Script,
    pub(crate) finish: Script,
    pub(crate) forget: Script,
    pub(crate) resolve: Script,
    pub(crate) suspend: Script,
}

/// The scripts, their SHAs computed once per process.
pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        begin: Script::new(BEGIN),
        append: Script::new(APPEND),
        finish: Script::new(FINISH),
        forget: Script::new(FORGET),
        resolve: Script::new(RESOLVE),
        suspend: Script::new(SUSPEND),
    })
}
