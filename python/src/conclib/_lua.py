"""The Lua scripts of the wire protocol the Python actor host runs: copied verbatim from
``conclib-redis/src/protocol.rs`` by ``python/tools/gen_lua.py`` (do not edit; the tests
fail when the two differ)."""

from typing import Final

CLAIM_SCRIPT: Final = "local v = redis.call('GET', KEYS[1])\nif v == false or v == ARGV[1] then\n  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n  return 1\nend\nreturn v"
CLAIM_MANY_SCRIPT: Final = "local out = {}\nfor i = 1, #KEYS do\n  local v = redis.pcall('GET', KEYS[i])\n  if type(v) == 'table' then\n    out[i] = '(a key of another type)'\n  elseif v == false or v == ARGV[1] then\n    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])\n    out[i] = 1\n  else\n    out[i] = v\n  end\nend\nreturn out"
RELEASE_SCRIPT: Final = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n  return redis.call('DEL', KEYS[1])\nend\nreturn 0"
FREE_GONE_URN_SCRIPT: Final = "if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 0 then\n  redis.call('DEL', KEYS[1])\n  return 1\nend\nreturn 0"
ANSWER_SCRIPT: Final = "local n = tonumber(ARGV[3])\nlocal pos = 4 + n\nfor k = 2, #KEYS do\n  local c = tonumber(ARGV[pos])\n  local pushed = redis.pcall('RPUSH', KEYS[k], unpack(ARGV, pos + 1, pos + c))\n  if type(pushed) == 'number' then\n    redis.pcall('PEXPIRE', KEYS[k], ARGV[2])\n  elseif string.sub(pushed['err'], 1, 9) ~= 'WRONGTYPE' then\n    return pushed\n  end\n  pos = pos + 1 + c\nend\nif n > 0 then\n  redis.pcall('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4, 3 + n))\nend\nif ARGV[#ARGV] ~= '' then\n  redis.pcall('XTRIM', KEYS[1], 'MINID', '~', ARGV[#ARGV])\nend\nreturn 1"
FORWARD_SCRIPT: Final = "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])\nif #p == 0 then return -1 end\nif redis.call('EXISTS', KEYS[2]) == 0 then return 0 end\nredis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))\nredis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\nreturn 1"
PLACEMENT_REPORT_SCRIPT: Final = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\nlocal lease = tonumber(ARGV[3])\nredis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%.0f', now + lease))\nlocal all = redis.call('HGETALL', KEYS[1])\nfor i = 1, #all, 2 do\n  local untl = tonumber(string.match(all[i + 1], ' (%d+)$'))\n  if untl == nil or untl + 10 * lease < now then redis.call('HDEL', KEYS[1], all[i]) end\nend\nredis.call('PEXPIRE', KEYS[1], 10 * lease)\nreturn 1"
GROUP_FORGET_SCRIPT: Final = "local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])\nif not ok or #p > 0 then return 0 end\nredis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])\nreturn 1"
