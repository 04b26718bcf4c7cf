-- Apply a batch of events to per-entity aggregates and read the values the
-- rules need, in one atomic call. A unit is one event's share of one
-- entity: every key it uses shares the entity's hash tag (Redis Cluster: one
-- call per slot).
--
-- An entity's count/sum windows all live in one hash (`:s`), so a unit reads
-- them with one HMGET and writes them with one HSET, however many
-- aggregates the entity has: Redis spends more per redis.call than per
-- field, and an order feeds some ten aggregates of three or four entities.
--
-- Idempotent: a unit that adds to a count or sum first records the event in
-- the entity's duplicate guard (ZSET member = event hash, score = event ms);
-- a duplicate or redelivered event only reads. Time is *event* time
-- throughout: windows and trimming follow the newest event seen for the key,
-- never the wall clock, so a backtest over old data keeps its state.
-- TTLs only reclaim keys nobody writes to any more. A hash's TTL is refreshed
-- on a write once event time reaches the refresh due date kept in the key
-- itself (field `x` = event time of the last refresh + 1/64 of the TTL then
-- set, so a longer TTL after a rule change is applied at once, and a key
-- that expired is refreshed on its next
-- write), and it is 1/64 longer than the state must live.
--
-- KEYS    : every key used by the units
-- ARGV[1] : JSON [specs, groups]; ops and units refer to them by position
--   specs  {1, bucket_ms, buckets, late_buckets, agg_id, guarded}  count/sum
--          {2, window_ms, lateness_ms, ttl_ms, agg_id}             distinct
--          {3, agg_id, ttl_ms, backdate_ms}                        first sighting
--   groups {state kpos, guard kpos, key count, state ttl_ms, then per op:
--          spec, kpos (0 for count/sum: they live in the state hash)}
-- ARGV[2] : JSON array of units, one after another: group, event hash,
--           event ms, the group's keys (indexes into KEYS), then one
--           contribution per op (null: the event only reads it)
-- ARGV[3] : duplicate horizon ms;  ARGV[4] : the guard's TTL ms
--           (integers < 2^53 travel as JSON numbers and are handed to Redis
--           commands as Lua numbers, which Redis formats exactly (%.17g);
--           only small bucket indexes are ever concatenated into strings,
--           where Lua's own %.14g formatting would round large ones)
-- returns : one flat array of integers: per unit its status (1 new,
--           0 duplicate, -1 too old), then value and end per op (value -1 =
--           too late for this aggregate). Flat, because nested replies cost
--           the client far more to parse.
local function I(x) return string.format('%d', x) end
local NULL = cjson.null
local floor = math.floor

-- Commands with many arguments, in chunks: Lua's unpack() stops at a few
-- thousand.
local function chunked(cmd, key, args)
  local out = {}
  for first = 1, #args, 1000 do
    local r = redis.call(cmd, key, unpack(args, first, math.min(first + 999, #args)))
    if type(r) == 'table' then for _, v in ipairs(r) do out[#out + 1] = v end end
  end
  return out
end

-- Values of buckets lo..hi (in order) of the aggregate whose fields start with bp.
local function buckets(key, bp, lo, hi)
  local fields = {}
  for j = lo, hi do fields[#fields + 1] = bp .. j end
  return chunked('HMGET', key, fields)
end

-- Exact value of the window ending at bucket b (a read that must line up with
-- another aggregate's window, e.g. a ratio's denominator).
local function sum_at(key, bp, b, n, nb)
  if b - n + 1 > nb then return 0, b end
  local s = 0
  for _, v in ipairs(buckets(key, bp, b - n + 1, math.min(b, nb))) do s = s + (tonumber(v) or 0) end
  return s, b
end

-- The busiest window containing late bucket b; `cur` is b's value after
-- this event (its write is still pending).
local function sum_late(key, bp, b, n, nb, cur)
  local lo, hi = b - n + 1, math.min(b + n - 1, nb)
  local vals = buckets(key, bp, lo, hi)
  vals[b - lo + 1] = cur
  local best, best_end, s = -1, b, 0
  for idx = 1, #vals do
    s = s + (tonumber(vals[idx]) or 0)
    if idx > n then s = s - (tonumber(vals[idx - n]) or 0) end
    local bucket = lo + idx - 1
    if bucket >= b and s > best then best, best_end = s, bucket end
  end
  return best, best_end
end

-- Queue the deletion of buckets lo..hi. A sparse entity's hash has far fewer
-- fields than a long range spans, so list the fields instead of probing
-- each index (once per unit).
local function drop(unit, bp, lo, hi)
  if hi < lo then return end
  local hdel = unit.hdel
  if hi - lo < 16 then
    for j = lo, hi do hdel[#hdel + 1] = bp .. j end
    return
  end
  if not unit.fields then unit.fields = redis.call('HKEYS', unit.key) end
  local m = #bp
  for _, f in ipairs(unit.fields) do
    if string.sub(f, 1, m) == bp then
      local j = tonumber(string.sub(f, m + 1))
      if j and j >= lo and j <= hi then hdel[#hdel + 1] = f end
    end
  end
end

local function put(hset, f, v)
  hset[#hset + 1] = f
  hset[#hset + 1] = v
end

-- A count or sum. nbv, tv, cv, ov: the stored newest bucket, window total,
-- value of the event's own bucket and oldest bucket that may exist (every
-- stored bucket is >= it, so dropping buckets rarely needs to list fields).
-- want: the event feeds it (else it only reads it, e.g. a ratio's
-- denominator); apply: and it is new. Returns the value and the window's
-- end bucket.
local function sum_op(unit, sp, want, apply, d, t, nbv, tv, cv, ov)
  local n, lb, bp, hset = sp[3], sp[4], sp.bp, unit.hset
  local b = floor(t / sp[2])
  if not nbv then
    if not apply or d == 0 then return 0, b end
    put(hset, sp.fn, b); put(hset, sp.ft, d); put(hset, bp .. b, d); put(hset, sp.fo, b)
    return d, b
  end
  local nb, tt = tonumber(nbv), tonumber(tv)
  local keep = nb - n + 1 - lb  -- the oldest bucket still retained
  if b < keep then return -1, b end
  if not want then
    if b == nb then return tt, b end
    return sum_at(unit.key, bp, b, n, nb)
  end
  local o = math.max(tonumber(ov) or keep, keep)
  if b > nb then
    if b - n - lb >= nb then
      -- Every retained bucket leaves the window and the lateness: start afresh
      -- (a sparse entity's usual case).
      drop(unit, bp, o, nb)
      tt = apply and d or 0
      o = b
    else
      if b - nb >= n then
        tt = 0
      else
        for _, v in ipairs(buckets(unit.key, bp, nb - n + 1, b - n)) do tt = tt - (tonumber(v) or 0) end
      end
      local hi = math.min(b - n - lb, nb)
      drop(unit, bp, o, hi)
      if hi >= o then o = hi + 1 end
      if apply then tt = tt + d end
    end
    -- No bucket above nb exists (nb only grows), so bucket b is new.
    put(hset, sp.fn, b); put(hset, sp.ft, tt); put(hset, sp.fo, o)
    if apply and d ~= 0 then put(hset, bp .. b, d) end
    return tt, b
  end
  local cur = tonumber(cv) or 0
  if apply and d ~= 0 then
    cur = cur + d
    put(hset, bp .. b, cur)
    if b < o then put(hset, sp.fo, b) end
    if b > nb - n then
      tt = tt + d
      put(hset, sp.ft, tt)
    end
  end
  if b == nb then return tt, b end
  return sum_late(unit.key, bp, b, n, nb, cur)
end

-- A distinct count; nv is the stored newest event ms of the aggregate.
local function dst_op(unit, key, sp, apply, member, t, nv)
  local w = sp[2]
  local old = tonumber(nv)
  local newest = old
  if apply then
    local added = redis.call('ZADD', key, 'GT', t, member)
    if not old or t > old then
      newest = t
      put(unit.hset, sp.fn, t)
    end
    local moved = not old or floor(newest / sp.sl) > floor(old / sp.sl)
    if moved and old then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. I(newest - w - sp[3]))
    end
    -- A new member may have created the key: it needs its TTL now. The state
    -- hash, which keeps this set's newest time, is refreshed with it, so it
    -- never expires first.
    if moved or added == 1 then
      redis.call('PEXPIRE', key, sp.ttl)
      unit.refresh = true
    end
  end
  if not newest then return 0, t end
  if t > newest then newest = t end
  return redis.call('ZCOUNT', key, '(' .. I(newest - w), I(newest)), newest
end

-- First sightings of one key. An event may move one back by at most the
-- allowed lateness, so one back-dated event cannot make a new merchant look
-- years old; the TTL follows sightings, so an active entity never "becomes new".
local function first_ops(key, list, t, out, obase)
  local fields = {}
  for k, f in ipairs(list) do fields[k] = f[2][2] end
  fields[#fields + 1] = 'x'
  local cur = redis.call('HMGET', key, unpack(fields))
  local set, applied = {}, false
  for k, f in ipairs(list) do
    local j, sp, apply = f[1], f[2], f[3]
    local c = tonumber(cur[k])
    if apply then
      applied = true
      if not c or (t < c and t >= c - sp[4]) then
        put(set, sp[2], t)
        c = t
      end
    end
    out[obase + 2 * j - 1], out[obase + 2 * j] = c or -1, 0
  end
  local refresh = false
  if applied then
    local x, sp = tonumber(cur[#cur]), list[1][2]  -- one key, one retention
    if not x or t >= x then
      put(set, 'x', t + sp.sl)
      refresh = true
    end
  end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  if refresh then redis.call('PEXPIRE', key, list[1][2].ttl) end
end

local T = cjson.decode(ARGV[1])
local specs, groups = T[1], T[2]
for _, sp in ipairs(specs) do
  -- Field names and TTL arguments, built once per call.
  if sp[1] == 1 then
    sp.fn, sp.ft, sp.fo, sp.bp = sp[5] .. 'n', sp[5] .. 't', sp[5] .. 'o', sp[5] .. ':'
  elseif sp[1] == 2 then
    sp.fn, sp.sl = sp[5] .. 'n', math.max(floor(sp[2] / 64), 1)
    sp.ttl = I(sp[4] + sp.sl)
  else
    sp.sl = math.max(floor(sp[3] / 64), 1)
    sp.ttl = I(sp[3] + sp.sl)
  end
end
for _, g in ipairs(groups) do
  g.sl = math.max(floor(g[4] / 64), 1)
  g.ttl = I(g[4] + g.sl)
  g.ops = {}
  for j = 5, #g, 2 do g.ops[#g.ops + 1] = {specs[g[j]], g[j + 1]} end
end
local a = cjson.decode(ARGV[2])
local horizon, guard_ttl = tonumber(ARGV[3]), ARGV[4]
local gslice = horizon / 64
local guard_newest = {}  -- guard key -> newest event ms (false: empty), within this call
local out, o = {}, 0
local i, len = 1, #a
while i <= len do
  local g, ehash, t = groups[a[i]], a[i + 1], a[i + 2]
  local kbase = i + 2
  local cbase = kbase + g[3]
  local ops = g.ops
  local nops = #ops
  i = cbase + nops + 1
  local unit = {hset = {}, hdel = {}}
  local vals, nv
  if g[1] > 0 then
    unit.key = KEYS[a[kbase + g[1]]]
    local fl = {}
    for j = 1, nops do
      local sp = ops[j][1]
      if sp[1] == 1 then
        fl[#fl + 1] = sp.fn; fl[#fl + 1] = sp.ft; fl[#fl + 1] = sp.bp .. floor(t / sp[2])
        fl[#fl + 1] = sp.fo
      elseif sp[1] == 2 then
        fl[#fl + 1] = sp.fn
      end
    end
    fl[#fl + 1] = 'x'
    vals = redis.call('HMGET', unit.key, unpack(fl))
    nv = #vals
  end
  local status = 1
  if g[2] > 0 then
    local guarded = false
    for j = 1, nops do
      local sp = ops[j][1]
      if sp[1] == 1 and sp[6] == 1 and a[cbase + j] ~= NULL then guarded = true; break end
    end
    if guarded then
      -- The guard's newest event is read from the guard itself (once per key
      -- and call): an expired guard then reads as new and gets its TTL back.
      local gkey = KEYS[a[kbase + g[2]]]
      local newest = guard_newest[gkey]
      if newest == nil then
        local top = redis.call('ZREVRANGE', gkey, 0, 0, 'WITHSCORES')
        newest = top[2] and tonumber(top[2]) or false
      end
      if newest and t < newest - horizon then
        status = -1
      elseif redis.call('ZADD', gkey, 'NX', t, ehash) == 0 then
        status = 0
      else
        if not newest then
          redis.call('PEXPIRE', gkey, guard_ttl)  -- a new guard: nothing to trim
        elseif floor(t / gslice) > floor(newest / gslice) then
          -- Trim and refresh the TTL only when event time enters a new 1/64
          -- of the horizon: bounded staleness, far fewer commands per event.
          redis.call('ZREMRANGEBYSCORE', gkey, '-inf', '(' .. I(t - horizon))
          redis.call('PEXPIRE', gkey, guard_ttl)
        end
        if not newest or t > newest then newest = t end
      end
      guard_newest[gkey] = newest
    end
  end
  o = o + 1
  out[o] = status
  local obase = o
  o = o + 2 * nops
  local firsts
  local p = 1
  for j = 1, nops do
    local sp, kp = ops[j][1], ops[j][2]
    local c = a[cbase + j]
    local want = c ~= NULL
    local apply = want and status == 1
    local kind = sp[1]
    if kind == 1 then
      local v, e = sum_op(unit, sp, want, apply, want and c or 0, t, vals[p], vals[p + 1],
        vals[p + 2], vals[p + 3])
      out[obase + 2 * j - 1], out[obase + 2 * j] = v, e
      p = p + 4
    elseif kind == 2 then
      local v, e = dst_op(unit, KEYS[a[kbase + kp]], sp, apply, want and c or '', t, vals[p])
      out[obase + 2 * j - 1], out[obase + 2 * j] = v, e
      p = p + 1
    else
      firsts = firsts or {}
      local list = firsts[kp]
      if not list then list = {}; firsts[kp] = list end
      list[#list + 1] = {j, sp, apply}
    end
  end
  if firsts then
    for kp, list in pairs(firsts) do first_ops(KEYS[a[kbase + kp]], list, t, out, obase) end
  end
  if unit.key then
    if #unit.hdel > 0 then chunked('HDEL', unit.key, unit.hdel) end
    local hset = unit.hset
    if #hset > 0 or unit.refresh then
      local x = tonumber(vals[nv])
      local refresh = unit.refresh or not x or t >= x
      if refresh then put(hset, 'x', t + g.sl) end
      chunked('HSET', unit.key, hset)
      if refresh then redis.call('PEXPIRE', unit.key, g.ttl) end
    end
  end
end
return out
