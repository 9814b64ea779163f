"""The Lua scripts of the Redis backend; each runs atomically and reads the clock from Redis.

Per endpoint, under `llmclient:{<endpoint>}:`: `slots` (holder -> lease expiry, ms), `queue`
(waiting holder -> arrival number), `wexp` (waiting holder -> expiry), `wait` (waiting holder
-> "limit lease-ms"), `seq`, `conf` (the fleet-wide limit), `pause` (its TTL is the pause),
`rpm`/`tpm` (buckets), `samples`, `leader`. Holders are `<process id>:<number>`.
"""

from __future__ import annotations

__all__ = [
    "BUDGET_RENEW",
    "BUDGET_RESERVE",
    "BUDGET_SETTLE",
    "LEAD",
    "PAUSE",
    "RESERVE",
    "SETTLE",
    "SLOTS",
]

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: slots, queue, wexp, seq, conf, pause, wait.
# ARGV: me, grant channel prefix, lease ms, idle ms, n, releases (n), m, renewals (m), then
# (holder, limit) pairs of waiters to enter (or keep) in line.
# One call does a process's whole slot traffic: it frees released slots, renews held ones
# (written back even if missing, so a restarted Redis relearns live leases), puts new waiters
# at the end of the line, then grants free slots to the line in arrival order: the first in
# line is admitted while fewer slots are held than its limit (and the fleet's), and nobody
# passes it.  Other processes learn of their grants on `<prefix><owner>` ("<held> <pause ms>
# <holders>..."); the caller's own are returned.
# Returns {slots held, pause ms left, fleet limit or 0, the caller's granted holders...}.
SLOTS = (
    _NOW
    + """
local me, prefix, lease, idle = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local function forget(holder)
  redis.call('ZREM', KEYS[2], holder)
  redis.call('ZREM', KEYS[3], holder)
  redis.call('HDEL', KEYS[7], holder)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for i = 1, #gone do forget(gone[i]) end
local at = 5
local n = tonumber(ARGV[at])
for i = at + 1, at + n do
  redis.call('ZREM', KEYS[1], ARGV[i])
  forget(ARGV[i])
end
at = at + n + 1
n = tonumber(ARGV[at])
for i = at + 1, at + n do redis.call('ZADD', KEYS[1], now + lease, ARGV[i]) end
local mine = {}
for i = at + n + 1, #ARGV - 1, 2 do
  local holder = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], holder) then
    mine[#mine + 1] = holder
  else
    if not redis.call('ZSCORE', KEYS[2], holder) then
      redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), holder)
    end
    redis.call('ZADD', KEYS[3], now + lease, holder)
    redis.call('HSET', KEYS[7], holder, ARGV[i + 1] .. ' ' .. lease)
  end
end
local fleet = tonumber(redis.call('HGET', KEYS[5], 'limit'))
local held = redis.call('ZCARD', KEYS[1])
local others = {}
while true do
  local first = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not first then break end
  local terms = redis.call('HGET', KEYS[7], first)
  if terms then
    local limit, ms = string.match(terms, '(%d+) (%d+)')
    limit = tonumber(limit)
    if fleet and fleet < limit then limit = fleet end
    if held >= limit then break end
    redis.call('ZADD', KEYS[1], now + tonumber(ms), first)
    held = held + 1
    local owner = string.match(first, '^[^:]*')
    if owner == me then
      mine[#mine + 1] = first
    else
      others[owner] = (others[owner] or '') .. ' ' .. first
    end
  end
  forget(first)
end
for _, i in ipairs({1, 2, 3, 4, 7}) do redis.call('PEXPIRE', KEYS[i], idle) end
local pause = redis.call('PTTL', KEYS[6])
if pause < 0 then pause = 0 end
for owner, granted in pairs(others) do
  redis.call('PUBLISH', prefix .. owner, held .. ' ' .. pause .. granted)
end
local result = {held, pause, fleet or 0}
for i = 1, #mine do result[#result + 1] = mine[i] end
return result
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

# Budgets, under `llmclient:budget:{<name>}:`: `spent` (a hash: prompt, completion, cost, and
# the reserved rprompt, rcompletion, rcost of requests in flight), `held` (reservation id ->
# expiry, ms) and `holds` (reservation id -> "prompt completion cost"). A reservation whose
# holder died expires after its lease and stops counting as reserved.
_BUDGET_EXPIRE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #gone do
  local v = redis.call('HGET', KEYS[3], gone[i])
  if v then
    local p, c, k = string.match(v, '(%S+) (%S+) (%S+)')
    redis.call('HINCRBYFLOAT', KEYS[1], 'rprompt', -tonumber(p))
    redis.call('HINCRBYFLOAT', KEYS[1], 'rcompletion', -tonumber(c))
    redis.call('HINCRBYFLOAT', KEYS[1], 'rcost', -tonumber(k))
  end
  redis.call('HDEL', KEYS[3], gone[i])
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local function keep(ttl)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
end
"""

# KEYS: spent, held, holds.  ARGV: caps total, prompt, completion, cost (-1: none); the
# estimate prompt, completion, cost; reservation id; lease ms; ttl s.
# Reserves the estimate when spent + reserved + estimate stays within every cap.
# Returns {1 or 0 (reserved or refused), spent prompt, completion, cost, reserved tokens, cost}
# as strings (Redis would cut Lua numbers to integers).
BUDGET_RESERVE = (
    _NOW
    + _BUDGET_EXPIRE
    + """
local h = redis.call('HMGET', KEYS[1], 'prompt', 'completion', 'cost',
  'rprompt', 'rcompletion', 'rcost')
local v = {}
for i = 1, 6 do v[i] = math.max(0, tonumber(h[i] or '0') or 0) end
local ep, ec, ek = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local p, c = v[1] + v[4] + ep, v[2] + v[5] + ec
local function within(cap, value)
  cap = tonumber(cap)
  return cap < 0 or value <= cap + 1e-9
end
local ok = within(ARGV[1], p + c) and within(ARGV[2], p) and within(ARGV[3], c)
  and within(ARGV[4], v[3] + v[6] + ek)
if ok then
  redis.call('HINCRBYFLOAT', KEYS[1], 'rprompt', ep)
  redis.call('HINCRBYFLOAT', KEYS[1], 'rcompletion', ec)
  redis.call('HINCRBYFLOAT', KEYS[1], 'rcost', ek)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[9]), ARGV[8])
  redis.call('HSET', KEYS[3], ARGV[8], ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
end
keep(tonumber(ARGV[10]))
return {ok and 1 or 0, tostring(v[1]), tostring(v[2]), tostring(v[3]),
  tostring(v[4] + v[5]), tostring(v[6])}
"""
)

# KEYS: spent, held, holds.  ARGV: reservation id, actual prompt, completion, cost; ttl s.
# Drops the reservation (if it has not expired) and counts what the request spent.
BUDGET_SETTLE = (
    _NOW
    + _BUDGET_EXPIRE
    + """
local v = redis.call('HGET', KEYS[3], ARGV[1])
if v then
  local p, c, k = string.match(v, '(%S+) (%S+) (%S+)')
  redis.call('HINCRBYFLOAT', KEYS[1], 'rprompt', -tonumber(p))
  redis.call('HINCRBYFLOAT', KEYS[1], 'rcompletion', -tonumber(c))
  redis.call('HINCRBYFLOAT', KEYS[1], 'rcost', -tonumber(k))
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('HINCRBYFLOAT', KEYS[1], 'prompt', ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[1], 'completion', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[1], 'cost', ARGV[4])
keep(tonumber(ARGV[5]))
return 1
"""
)

# KEYS: held.  ARGV: lease ms, then the reservation ids a live process still holds.
BUDGET_RENEW = (
    _NOW
    + """
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return 1
"""
)
