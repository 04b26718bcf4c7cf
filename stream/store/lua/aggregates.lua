-- Apply a batch of events to per-entity aggregates and read the values the
-- rules need, in one atomic call. Every op of one unit shares one entity's
-- hash tag, and the call's duplicate guard lies in the same slot (Redis
-- Cluster: one call per slot).
--
-- Idempotent: the first unit of an event in this call that applies a count or
-- sum records the event in the call's duplicate guard (one ZSET per slot:
-- member = event digest, score = event ms); the event's later units in the
-- call reuse that verdict, and a duplicate or redelivered event only reads.
-- An event more than the horizon older than the newest event in the guard is
-- too old: the guard may have forgotten it. Time is *event* time
-- throughout: windows and trimming follow the newest event seen for the key,
-- never the wall clock, so a backtest over old data keeps its state.
-- PEXPIRE only reclaims keys nobody writes to any more; it is issued once per
-- key per call, after the units, and only when a key is created or its
-- newest event time enters a new refresh slice (ARGV[5], half the TTLs'
-- slack, which absorbs the delay). Trimming old members of a distinct set
-- follows the same slices: members it removes are never counted anyway.
--
-- The arguments are flat: nested JSON costs the script a Lua table per op.
-- KEYS    : every key used by the units
-- ARGV[1] : JSON array of the specs ops refer to (by position, from 1):
--           {1, bucket_ms, buckets, late_buckets, ttl_ms, report_at, ring}
--                                      bucketed count/sum (ring 1: keeps one)
--           {2, window_ms, lateness_ms, ttl_ms}              distinct
--           {3, field, ttl_ms, backdate_ms}                  first sighting
-- ARGV[2] : JSON array of units, one after another:
--           guard, event_digest, event_ms, ref, op count, then per op
--           spec, kidx, arg (sum: delta; distinct: member; first: 1;
--           null: the event only reads this aggregate)
--           guard: the guard's kidx for the event's first guarded unit in
--           this call, -1 for its later ones, 0: the unit applies nothing
--           that needs the guard
-- ARGV[3] : duplicate horizon ms;  ARGV[4] : the guard's TTL ms
-- ARGV[5] : refresh slice ms
-- ARGV[6] : ring size: how many counted events a count/sum key keeps
--           (fields p = the newest's sequence number, r<seq % size> =
--           "<seq>|<event ms>|<event id>"; 0: none). The read keeps the
--           entries whose seq is among the size newest, in seq order, so a
--           ring written under another size reads right too. A unit's ref is
--           its event id when it adds to a count or sum and its group has a
--           spec keeping a ring, else 0; only ops whose spec row says ring 1
--           record it.
--           After an op whose value reaches its spec's report_at (> 0), the
--           ring is read in the same step: what an alert lists then depends
--           on the order events were applied in, never on batching.
--           (integers < 2^53 travel as JSON numbers; every one handed to a
--           Redis command goes through I() or S, never Lua's %.14g formatting)
-- returns : one flat array: per unit its status (1 new, 0 duplicate,
--           -1 too old), then value and end per op (value -1 = too late for
--           this aggregate); then per reported op: the position of its value
--           in the array, the number of ring entries, the entries oldest
--           first. Flat, because nested replies cost the client far more to
--           parse.
local function I(x) return string.format('%d', x) end
-- Bucket indices, event times and deltas recur across a batch's ops: each is
-- formatted once per call (a number handed to redis.call costs as much).
local S = setmetatable({}, {__index = function(s, x) local v = I(x); s[x] = v; return v end})

-- Values of buckets lo..hi (in order), fetched in chunks: Lua's unpack() stops
-- at a few thousand arguments.
local function buckets(key, lo, hi)
  local vals = {}
  local i = lo
  while i <= hi do
    local fields = {}
    for j = i, math.min(i + 999, hi) do fields[#fields + 1] = S[j] end
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
    for i = lo, hi do doomed[#doomed + 1] = S[i] end
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
local refresh = tonumber(ARGV[5])
local rsize = tonumber(ARGV[6])
local RF = {}  -- ring field names by seq % size
for j = 0, rsize - 1 do RF[j] = 'r' .. j end

-- Whether event time moved from `old` ms into a later refresh slice at `new` ms.
local function moved(old, new)
  return math.floor(new / refresh) > math.floor(old / refresh)
end

-- apply: 1 to add d; 0 for a duplicate (judged on the same window as the
-- original, nothing added). reader: 1 when the event does not feed this
-- aggregate and only reads it (e.g. a ratio's denominator).
-- Returns the value and the window's end bucket.
local function sum_op(key, apply, reader, b, d, n, lb, ttl, bms, entry)
  local st
  if apply == 0 then st = redis.call('HMGET', key, 'n', 't')
  elseif entry then st = redis.call('HMGET', key, 'n', 't', S[b], 'p')
  else st = redis.call('HMGET', key, 'n', 't', S[b]) end
  -- The ring's next sequence number and field, when this op is counted.
  local seq, rf = 0, nil
  if entry and apply == 1 and d ~= 0 then
    seq = (tonumber(st[4]) or 0) + 1
    rf = RF[seq % rsize]
  end
  if not st[1] then
    if apply == 0 or d == 0 then return 0, b end
    if rf then
      redis.call('HSET', key, 'n', S[b], 't', S[d], S[b], S[d], 'p', '1', RF[1 % rsize], '1|' .. entry)
    else
      redis.call('HSET', key, 'n', S[b], 't', S[d], S[b], S[d])
    end
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
      if rf then
        -- The ring's entries left with the buckets: it starts again.
        redis.call('HSET', key, 'n', S[b], 't', S[t], S[b], S[t], 'p', '1', RF[1 % rsize], '1|' .. entry)
      elseif t ~= 0 then
        redis.call('HSET', key, 'n', S[b], 't', S[t], S[b], S[t])
      else
        redis.call('HSET', key, 'n', S[b], 't', '0')
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
    if rf then
      t = t + d
      redis.call('HSET', key, 'n', S[b], 't', I(t), S[b], S[d], 'p', I(seq), rf, I(seq) .. '|' .. entry)
    elseif apply == 1 and d ~= 0 then
      t = t + d
      redis.call('HSET', key, 'n', S[b], 't', I(t), S[b], S[d])
    else
      redis.call('HSET', key, 'n', S[b], 't', I(t))
    end
    -- The TTL (longer than window + lateness + one bucket) is refreshed when
    -- the window's newest bucket enters a new refresh slice.
    if moved(nb * bms, b * bms) then expire[key] = ttl end
    return t, b
  end
  if apply == 1 and d ~= 0 then
    -- Bucket and total in one write: the script is atomic, so this is what
    -- two increments would leave.
    local v = (tonumber(st[3]) or 0) + d
    if b > nb - n then
      t = t + d
      if rf then redis.call('HSET', key, S[b], I(v), 't', I(t), 'p', I(seq), rf, I(seq) .. '|' .. entry)
      else redis.call('HSET', key, S[b], I(v), 't', I(t)) end
    elseif rf then
      redis.call('HSET', key, S[b], I(v), 'p', I(seq), rf, I(seq) .. '|' .. entry)
    else
      redis.call('HSET', key, S[b], I(v))
    end
  end
  if b == nb then return t, b end
  return sum_late(key, b, n, nb)
end

-- Distinct values: ZADD GT keeps each member's newest time. Trimming what
-- lies beyond the window and lateness only saves memory (those members are
-- never counted), so it runs with the TTL refresh.
local function dst_op(key, apply, member, t, w, lateness, ttl)
  local top = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  local old = top[2] and tonumber(top[2])
  if apply == 1 then
    redis.call('ZADD', key, 'GT', S[t], member)
    if not old or moved(old, t) then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. I(math.max(old or t, t) - w - lateness))
      expire[key] = ttl
    end
  elseif not old then
    return 0, t
  end
  local newest = old and math.max(old, t) or t
  return redis.call('ZCOUNT', key, '(' .. I(newest - w), S[newest]), newest
end

-- First sighting. An event may move it back by at most the allowed lateness,
-- so one back-dated event cannot make a new merchant look years old; the TTL
-- is refreshed when a sighting's time enters a new refresh slice (field '~'
-- holds the slice of the last refresh), so an active entity never "becomes new".
local function first_op(key, field, apply, t, ttl, lateness)
  if apply == 0 then
    local cur = redis.call('HGET', key, field)
    return cur and tonumber(cur) or -1, 0
  end
  local st = redis.call('HMGET', key, field, '~')
  local cur = st[1] and tonumber(st[1])
  local slice = math.floor(t / refresh)
  local mark = st[2] and tonumber(st[2])
  local stale = not mark or slice > mark
  if not cur or (t < cur and t >= cur - lateness) then
    cur = t
    if stale then redis.call('HSET', key, field, S[t], '~', I(slice))
    else redis.call('HSET', key, field, S[t]) end
  elseif stale then
    redis.call('HSET', key, '~', I(slice))
  end
  if stale then expire[key] = ttl end
  return cur, 0
end

-- The ring of a count/sum key, oldest first, appended to `reports` after
-- the position of the op's value in the reply and the number of entries.
local reports, nr = {}, 0
local function report(key, at)
  local vals = redis.call('HMGET', key, 'p', unpack(RF, 0, rsize - 1))
  local p = tonumber(vals[1])
  if not p then return end
  local got = {}
  for j = 2, #vals do
    local seq, rest = string.match(vals[j] or '', '^(%d+)|(.+)$')
    seq = tonumber(seq)
    if seq and seq > p - rsize and seq <= p then got[#got + 1] = {seq, rest} end
  end
  table.sort(got, function(x, y) return x[1] < y[1] end)
  reports[nr + 1], reports[nr + 2] = at, #got
  nr = nr + 2
  for _, e in ipairs(got) do
    nr = nr + 1
    reports[nr] = e[2]
  end
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
local guard, newest  -- the call's guard key and its newest event ms (false: empty)
local verdict = 1  -- the guard's verdict on the event of the last guarded unit
local out, o = {}, 0  -- flat: per unit its status, then value and end per op
local i, len = 1, #a
while i <= len do
  local gk, t, ref, nops = a[i], a[i + 2], a[i + 3], a[i + 4]
  -- The ring entry of this unit's event, when it adds to counts or sums.
  local entry = nil
  if ref ~= 0 then entry = S[t] .. '|' .. ref end
  local status = 1
  if gk > 0 then
    if not guard then
      guard = KEYS[gk]
      local top = redis.call('ZREVRANGE', guard, 0, 0, 'WITHSCORES')
      newest = top[2] and tonumber(top[2]) or false
    end
    if newest and t < newest - horizon then
      verdict = -1
    elseif redis.call('ZADD', guard, 'NX', S[t], a[i + 1]) == 0 then
      verdict = 0
    else
      verdict = 1
      if not newest or t > newest then newest = t end
    end
    status = verdict
  elseif gk < 0 then
    status = verdict
  end
  o = o + 1
  out[o] = status
  i = i + 5
  for _ = 1, nops do
    local spec, key, arg = specs[a[i]], KEYS[a[i + 1]], a[i + 2]
    i = i + 3
    local want = 1
    if arg == null then want, arg = 0, 0 end
    local apply = (status == 1) and want or 0
    local kind, v, e = spec[1], 0, 0
    if kind == 1 then
      -- Exact: event ms and bucket sizes are integers far below 2^53.
      local bms = spec[2]
      local b = math.floor(t / bms)
      local ringed = spec[7] == 1 and entry or nil
      v, e = sum_op(key, apply, 1 - want, b, arg, spec[3], spec[4], spec[5], bms, ringed)
      if spec[6] > 0 and v >= spec[6] and rsize > 0 then report(key, o + 1) end
    elseif kind == 2 then
      v, e = dst_op(key, apply, arg, t, spec[2], spec[3], spec[4])
    else
      v, e = first_op(key, spec[2], apply, t, spec[3], spec[4])
    end
    out[o + 1], out[o + 2] = v, e
    o = o + 2
  end
end
if guard and newest then
  -- Forget what is now too old to be judged anyway, once per call.
  redis.call('ZREMRANGEBYSCORE', guard, '-inf', '(' .. I(newest - horizon))
  expire[guard] = guard_ttl
end
for key, ttl in pairs(expire) do redis.call('PEXPIRE', key, ttl) end
for j = 1, nr do out[o + j] = reports[j] end
return out
