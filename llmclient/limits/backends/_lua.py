"""The Lua scripts of the Redis backend; each runs atomically and reads the clock from Redis.

Per endpoint, under `llmclient:{<endpoint>}:`: `slots` (holder -> lease expiry, ms), `queue`
(waiting holder -> arrival number), `wexp` (waiting holder -> expiry), `seq`, `conf` (the
fleet-wide limit), `pause` (its TTL is the pause), `rpm`/`tpm` (buckets), `samples`, `leader`.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "LEAD", "PAUSE", "RELEASE", "RENEW", "RESERVE", "SETTLE"]

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: slots, queue, wexp, seq, conf, pause.  ARGV: holder, limit, lease ms, idle ms.
# A slot goes to a waiter only when fewer waiters stand before it than slots are free, so
# processes are served in arrival order.  Returns {granted, slots held, pause ms left, limit}.
ACQUIRE = (
    _NOW
    + """
local holder, lease, idle = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for i = 1, #gone do
  redis.call('ZREM', KEYS[2], gone[i])
  redis.call('ZREM', KEYS[3], gone[i])
end
local limit = tonumber(ARGV[2])
local fleet = tonumber(redis.call('HGET', KEYS[5], 'limit'))
if fleet and fleet < limit then limit = fleet end
local held = redis.call('ZCARD', KEYS[1])
local pause = redis.call('PTTL', KEYS[6])
if pause < 0 then pause = 0 end
local granted = 0
if held < limit then
  local ahead = redis.call('ZRANK', KEYS[2], holder)
  if not ahead then ahead = redis.call('ZCARD', KEYS[2]) end
  if ahead < limit - held then
    redis.call('ZADD', KEYS[1], now + lease, holder)
    redis.call('ZREM', KEYS[2], holder)
    redis.call('ZREM', KEYS[3], holder)
    held = held + 1
    granted = 1
  end
end
if granted == 0 then
  if not redis.call('ZSCORE', KEYS[2], holder) then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), holder)
  end
  redis.call('ZADD', KEYS[3], now + lease, holder)
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], idle) end
return {granted, held, pause, fleet or 0}
"""
)

# KEYS: slots, queue, wexp.  ARGV: channel, holders...  Frees holders (or waiting places).
RELEASE = """
local freed = 0
for i = 2, #ARGV do
  freed = freed + redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
end
if freed > 0 then redis.call('PUBLISH', ARGV[1], freed) end
return freed
"""

# KEYS: slots, wexp.  ARGV: lease ms, idle ms, number of holders, holders..., waiters...
# Holders are written back even if missing, so a restarted Redis relearns live leases.
RENEW = (
    _NOW
    + """
local lease, idle, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, 3 + n do redis.call('ZADD', KEYS[1], now + lease, ARGV[i]) end
for i = 4 + n, #ARGV do redis.call('ZADD', KEYS[2], 'XX', now + lease, ARGV[i]) end
if n > 0 then redis.call('PEXPIRE', KEYS[1], idle) end
return redis.call('ZCARD', KEYS[1])
"""
)

# KEYS: pause.  ARGV: ms.  Extends, never shortens, the pause.
PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""

_BUCKET = """
local function take(key, size, per_ms, amount, idle)
  local level = tonumber(redis.call('HGET', key, 'level')) or 0
  local since = tonumber(redis.call('HGET', key, 'at')) or now
  level = math.max(0, level - (now - since) * per_ms) + amount
  redis.call('HSET', key, 'level', tostring(level), 'at', now)
  redis.call('PEXPIRE', key, idle)
  if level <= size then return 0 end
  return (level - size) / per_ms
end
"""

# KEYS: rpm, tpm.  ARGV: rpm size, rpm per ms, tpm size, tpm per ms, tokens, idle ms.
# Reserves now (a size of 0 skips that bucket) and returns the ms to wait for the reservation:
# leaky buckets that take reservations in turn, with the burst of aiolimiter's.
RESERVE = (
    _NOW
    + _BUCKET
    + """
local idle, wait = tonumber(ARGV[6]), 0
if tonumber(ARGV[1]) > 0 then
  wait = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 1, idle)
end
if tonumber(ARGV[3]) > 0 then
  local tokens = take(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), idle)
  wait = math.max(wait, tokens)
end
return math.ceil(wait)
"""
)

# KEYS: bucket.  ARGV: per ms, delta, idle ms.  Adds (debt) or refunds capacity; never waits.
SETTLE = (
    _NOW
    + _BUCKET
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  take(KEYS[1], 0, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
end
return 1
"""
)

# KEYS: leader.  ARGV: me, ttl ms.  Takes or keeps the leader lease; returns 1 when held.
LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
