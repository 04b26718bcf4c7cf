-- Apply a batch of events to per-entity aggregates and read the values the
-- rules need, in one atomic call. Every op of one unit shares one entity's
-- hash tag (Redis Cluster: one call per slot).
--
-- Idempotent: each unit that applies anything first records the event in the
-- entity's duplicate guard (ZSET member = event hash, score = event ms);
-- a duplicate or redelivered event only reads. Time is *event* time
-- throughout: windows and trimming follow the newest event seen for the key,
-- never the wall clock, so a backtest over old data keeps its state.
-- PEXPIRE only reclaims keys nobody writes to any more; it is issued once per
-- key per call, after the units (time stands still inside a script, and no
-- key written here is ever emptied, so the TTLs are the same as if each op
-- had set its own).
--
-- The arguments are flat: nested JSON costs the script a Lua table per op.
-- KEYS    : every key used by the units
-- ARGV[1] : JSON array of the specs ops refer to (by position, from 1):
--           {1, bucket_ms, buckets, late_buckets, ttl_ms}    bucketed count/sum
--           {2, window_ms, lateness_ms, ttl_ms}              distinct
--           {3, field, ttl_ms, backdate_ms}                  first sighting
-- ARGV[2] : JSON array of units, one after another:
--           guard_kidx, event_hash, event_ms, op count, then per op
--           spec, kidx, arg (sum: delta; distinct: member; first: 1;
--           null: the event only reads this aggregate)
--           guard_kidx = 0: the unit applies nothing that needs the guard
-- ARGV[3] : duplicate horizon ms;  ARGV[4] : the guard's TTL ms
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
  if b - n + 1 > nb then return 0, b end
  local s = 0
  for _, v in ipairs(buckets(key, b - n + 1, math.min(b, nb))) do s = s + (tonumber(v) or 0) end
  return s, b
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
  return best, best_end
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

-- Keys to PEXPIRE once the units are done: key -> TTL ms (a string).
local expire = {}

-- apply: 1 to add d; 0 for a duplicate (judged on the same window as the
-- original, nothing added). reader: 1 when the event does not feed this
-- aggregate and only reads it (e.g. a ratio's denominator).
-- Returns the value and the window's end bucket.
local function sum_op(key, apply, reader, b, d, n, lb, ttl)
  local st = redis.call('HMGET', key, 'n', 't')
  if not st[1] then
    if apply == 0 or d == 0 then return 0, b end
    redis.call('HSET', key, 'n', I(b), 't', I(d), I(b), I(d))
    expire[key] = ttl
    return d, b
  end
  local nb, t = tonumber(st[1]), tonumber(st[2])
  if b < nb - n + 1 - lb then return -1, b end
  if reader == 1 then
    if b == nb then return t, b end
    return sum_at(key, b, n, nb)
  end
  if b > nb then
    if b - n - lb >= nb then
      -- Every retained bucket (all lie in nb-n+1-lb .. nb) leaves the window
      -- and the lateness: the state the bucket-by-bucket path below ends in
      -- is a fresh key, so write that directly (a sparse entity's usual case).
      t = (apply == 1) and d or 0
      redis.call('DEL', key)
      if t ~= 0 then
        redis.call('HSET', key, 'n', I(b), 't', I(t), I(b), I(t))
      else
        redis.call('HSET', key, 'n', I(b), 't', '0')
      end
      expire[key] = ttl
      return t, b
    end
    if b - nb >= n then
      t = 0
    else
      for _, v in ipairs(buckets(key, nb - n + 1, b - n)) do t = t - (tonumber(v) or 0) end
    end
    drop_buckets(key, nb - n + 1 - lb, math.min(b - n - lb, nb))
    -- No field above nb exists (nb only grows), so bucket b is new: set it
    -- in the same HSET as the head.
    if apply == 1 and d ~= 0 then
      t = t + d
      redis.call('HSET', key, 'n', I(b), 't', I(t), I(b), I(d))
    else
      redis.call('HSET', key, 'n', I(b), 't', I(t))
    end
    -- The TTL is refreshed when the window moves (at least once per bucket of
    -- event time); it is longer than window + lateness + one bucket.
    expire[key] = ttl
    return t, b
  end
  if apply == 1 and d ~= 0 then
    redis.call('HINCRBY', key, I(b), I(d))
    if b > nb - n then t = redis.call('HINCRBY', key, 't', I(d)) end
  end
  if b == nb then return t, b end
  return sum_late(key, b, n, nb)
end

local function dst_op(key, apply, member, t, w, lateness, ttl)
  if apply == 1 then redis.call('ZADD', key, 'GT', I(t), member) end
  local top = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  if not top[2] then return 0, t end
  local newest = math.max(tonumber(top[2]), t)
  if apply == 1 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. I(newest - w - lateness))
    expire[key] = ttl
  end
  return redis.call('ZCOUNT', key, '(' .. I(newest - w), I(newest)), newest
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
    expire[key] = ttl
  end
  return cur and tonumber(cur) or -1, 0
end

local specs = cjson.decode(ARGV[1])
for _, spec in ipairs(specs) do
  -- TTLs as command arguments, formatted once per call.
  if spec[1] == 1 then spec[5] = I(spec[5]) elseif spec[1] == 2 then spec[4] = I(spec[4])
  else spec[3] = I(spec[3]) end
end
local a = cjson.decode(ARGV[2])
local null = cjson.null
local horizon, guard_ttl = tonumber(ARGV[3]), ARGV[4]
local slice = horizon / 64
local out, o = {}, 0  -- flat: per unit its status, then value and end per op
local i, len = 1, #a
while i <= len do
  local gk, t, nops = a[i], a[i + 2], a[i + 3]
  local status = 1
  if gk > 0 then
    local guard = KEYS[gk]
    local top = redis.call('ZREVRANGE', guard, 0, 0, 'WITHSCORES')
    local newest = top[2] and tonumber(top[2])
    if newest and t < newest - horizon then
      status = -1
    elseif redis.call('ZADD', guard, 'NX', I(t), a[i + 1]) == 0 then
      status = 0
    elseif not newest or math.floor(t / slice) > math.floor(newest / slice) then
      -- Trim and refresh the TTL only when event time enters a new 1/64 of
      -- the horizon: bounded staleness, far fewer commands per event.
      redis.call('ZREMRANGEBYSCORE', guard, '-inf', '(' .. I(t - horizon))
      expire[guard] = guard_ttl
    end
  end
  o = o + 1
  out[o] = status
  i = i + 4
  for _ = 1, nops do
    local spec, key, arg = specs[a[i]], KEYS[a[i + 1]], a[i + 2]
    i = i + 3
    local want = 1
    if arg == null then want, arg = 0, 0 end
    local apply = (status == 1) and want or 0
    local kind, v, e = spec[1], 0, 0
    if kind == 1 then
      -- Exact: event ms and bucket sizes are integers far below 2^53.
      local b = math.floor(t / spec[2])
      v, e = sum_op(key, apply, 1 - want, b, arg, spec[3], spec[4], spec[5])
    elseif kind == 2 then
      v, e = dst_op(key, apply, arg, t, spec[2], spec[3], spec[4])
    else
      v, e = first_op(key, spec[2], apply, t, spec[3], spec[4])
    end
    out[o + 1], out[o + 2] = v, e
    o = o + 2
  end
end
for key, ttl in pairs(expire) do redis.call('PEXPIRE', key, ttl) end
return out
