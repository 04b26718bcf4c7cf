-- Apply a batch of events to per-entity aggregates and read the values the
-- rules need, in one atomic call. Every op of one unit shares one entity's
-- hash tag (Redis Cluster: one call per slot).
--
-- Idempotent: each unit that applies anything first records the event in the
-- entity's duplicate guard (ZSET member = event hash, score = event ms);
-- a duplicate or redelivered event only reads. Time is *event* time
-- throughout: windows and trimming follow the newest event seen for the key,
-- never the wall clock, so a backtest over old data keeps its state.
-- PEXPIRE only reclaims keys nobody writes to any more.
--
-- KEYS    : every key used by the units
-- ARGV[1] : JSON array of units {guard_kidx, event_hash, event_ms, horizon_ms, ttl_ms, ops}
--           guard_kidx = 0: the unit only reads
--           op {"sum", kidx, apply, bucket, delta, buckets, late_buckets, ttl_ms}
--           op {"dst", kidx, apply, member, event_ms, window_ms, lateness_ms, ttl_ms}
--           op {"first", kidx, field, apply, event_ms, ttl_ms, lateness_ms}
--           (integers < 2^53 travel as JSON numbers; every one handed to a
--           Redis command goes through I(), never Lua's %.14g formatting)
-- returns : one flat array of integers: per unit its status (1 new,
--           0 duplicate, -1 too old), then value and end per op (value -1 =
--           too late for this aggregate). Flat, because nested replies cost
--           the client far more to parse.
local function I(x) return string.format('%d', x) end

-- Values of buckets lo..hi (in order), fetched in chunks: Lua's unpack() stops
-- at a few thousand arguments.
local function buckets(key, lo, hi)
  local vals = {}
  local i = lo
  while i <= hi do
    local fields = {}
    for j = i, math.min(i + 999, hi) do fields[#fields + 1] = I(j) end
    for _, v in ipairs(redis.call('HMGET', key, unpack(fields))) do vals[#vals + 1] = v end
    i = i + 1000
  end
  return vals
end

-- Exact value of the window ending at bucket b (a read that must line up with
-- another aggregate's window, e.g. a ratio's denominator).
local function sum_at(key, b, n, nb)
  if b - n + 1 > nb then return {0, b} end
  local s = 0
  for _, v in ipairs(buckets(key, b - n + 1, math.min(b, nb))) do s = s + (tonumber(v) or 0) end
  return {s, b}
end

local function sum_late(key, b, n, nb)
  local lo, hi = b - n + 1, math.min(b + n - 1, nb)
  local vals = buckets(key, lo, hi)
  local best, best_end, s = -1, b, 0
  for idx = 1, #vals do
    s = s + (tonumber(vals[idx]) or 0)
    if idx > n then s = s - (tonumber(vals[idx - n]) or 0) end
    local bucket = lo + idx - 1
    if bucket >= b and s > best then best, best_end = s, bucket end
  end
  return {best, best_end}
end

-- Delete buckets lo..hi. Sparse keys (a user's few orders) have far fewer
-- fields than the range spans, so list the fields instead of probing each index.
local function drop_buckets(key, lo, hi)
  if hi < lo then return end
  local doomed = {}
  if hi - lo < 8 then
    for i = lo, hi do doomed[#doomed + 1] = I(i) end
  else
    for _, f in ipairs(redis.call('HKEYS', key)) do
      local i = tonumber(f)
      if i and i >= lo and i <= hi then doomed[#doomed + 1] = f end
    end
  end
  for first = 1, #doomed, 1000 do
    redis.call('HDEL', key, unpack(doomed, first, math.min(first + 999, #doomed)))
  end
end

-- apply: 1 to add d; 0 for a duplicate (judged on the same window as the
-- original, nothing added). reader: 1 when the event does not feed this
-- aggregate and only reads it (e.g. a ratio's denominator).
local function sum_op(key, apply, reader, b, d, n, lb, ttl)
  local st = redis.call('HMGET', key, 'n', 't')
  if not st[1] then
    if apply == 0 or d == 0 then return {0, b} end
    redis.call('HSET', key, 'n', I(b), 't', I(d), I(b), I(d))
    redis.call('PEXPIRE', key, ttl)
    return {d, b}
  end
  local nb, t = tonumber(st[1]), tonumber(st[2])
  if b < nb - n + 1 - lb then return {-1, b} end
  if reader == 1 then
    if b == nb then return {t, b} end
    return sum_at(key, b, n, nb)
  end
  if b > nb then
    if b - nb >= n then
      t = 0
    else
      for _, v in ipairs(buckets(key, nb - n + 1, b - n)) do t = t - (tonumber(v) or 0) end
    end
    drop_buckets(key, nb - n + 1 - lb, math.min(b - n - lb, nb))
    if apply == 1 and d ~= 0 then
      redis.call('HINCRBY', key, I(b), I(d))
      t = t + d
    end
    redis.call('HSET', key, 'n', I(b), 't', I(t))
    -- The TTL is refreshed when the window moves (at least once per bucket of
    -- event time); it is longer than window + lateness + one bucket.
    redis.call('PEXPIRE', key, ttl)
    return {t, b}
  end
  if apply == 1 and d ~= 0 then
    redis.call('HINCRBY', key, I(b), I(d))
    if b > nb - n then t = redis.call('HINCRBY', key, 't', I(d)) end
  end
  if b == nb then return {t, b} end
  return sum_late(key, b, n, nb)
end

local function dst_op(key, apply, member, t, w, lateness, ttl)
  if apply == 1 then redis.call('ZADD', key, 'GT', I(t), member) end
  local top = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  if not top[2] then return {0, t} end
  local newest = math.max(tonumber(top[2]), t)
  if apply == 1 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. I(newest - w - lateness))
    redis.call('PEXPIRE', key, ttl)
  end
  return {redis.call('ZCOUNT', key, '(' .. I(newest - w), I(newest)), newest}
end

-- First sighting. An event may move it back by at most the allowed lateness,
-- so one back-dated event cannot make a new merchant look years old; the TTL
-- is refreshed on every sighting, so an active entity never "becomes new".
local function first_op(key, field, apply, t, ttl, lateness)
  local cur = redis.call('HGET', key, field)
  if apply == 1 then
    if not cur or (t < tonumber(cur) and t >= tonumber(cur) - lateness) then
      redis.call('HSET', key, field, I(t))
      cur = t
    end
    redis.call('PEXPIRE', key, ttl)
  end
  return {cur and tonumber(cur) or -1, 0}
end

local units = cjson.decode(ARGV[1])
local out = {}  -- flat: per unit its status, then value and end per op
for _, unit in ipairs(units) do
  local status = 1
  if unit[1] > 0 then
    local guard = KEYS[unit[1]]
    local t, horizon = tonumber(unit[3]), tonumber(unit[4])
    local top = redis.call('ZREVRANGE', guard, 0, 0, 'WITHSCORES')
    local newest = top[2] and tonumber(top[2])
    if newest and t < newest - horizon then
      status = -1
    elseif redis.call('ZADD', guard, 'NX', I(t), unit[2]) == 0 then
      status = 0
    elseif not newest or math.floor(t / (horizon / 64)) > math.floor(newest / (horizon / 64)) then
      -- Trim and refresh the TTL only when event time enters a new 1/64 of
      -- the horizon: bounded staleness, far fewer commands per event.
      redis.call('ZREMRANGEBYSCORE', guard, '-inf', '(' .. I(t - horizon))
      redis.call('PEXPIRE', guard, I(unit[5]))
    end
  end
  out[#out + 1] = status
  for _, op in ipairs(unit[6]) do
    local key = KEYS[op[2]]
    local r
    if op[1] == 'sum' then
      local apply = (status == 1) and op[3] or 0
      r = sum_op(key, apply, 1 - op[3], op[4], op[5], op[6], op[7], I(op[8]))
    elseif op[1] == 'dst' then
      local apply = (status == 1) and op[3] or 0
      r = dst_op(key, apply, op[4], op[5], op[6], op[7], I(op[8]))
    else
      local apply = (status == 1) and op[4] or 0
      r = first_op(key, op[3], apply, op[5], I(op[6]), op[7])
    end
    out[#out + 1] = r[1]
    out[#out + 1] = r[2]
  end
end
return out
