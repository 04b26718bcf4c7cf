-- The global circuit breaker's counts (detectors.guardrails), atomically:
-- a fund freeze is counted only while the trailing hour (the claim's bucket
-- and the BREAKER_BUCKETS - 1 before it) holds fewer than
-- max(min_freezes, floor(share * active merchants)) freezes and, when its
-- currency has a cap, less payout value than the cap. The first refusal
-- marks the generation tripped: every later claim of it is refused (until a
-- human reset starts a new generation). A freeze id already counted in its
-- bucket is admitted again (a retried batch) without counting twice.
--
-- Keys, all under the `{brk}` hash tag (one slot):
--   <p>:active:<bucket>     HLL    hashed merchants with events in the bucket
--   <p>:<gen>:f:<bucket>    SET    fund freeze ids counted
--   <p>:<gen>:v:<bucket>    HASH   currency -> payout value held (minor units)
--   <p>:<gen>:tripped       STRING the bucket of the first refusal
-- KEYS[1] : <p>, `<ns>:{brk}`
-- ARGV[1] : JSON array of {generation, bucket, freeze_id, amount_minor,
--           currency or "", value cap or -1}
-- ARGV[2] : share, ARGV[3] : min_freezes, ARGV[4] : buckets per hour,
-- ARGV[5] : TTL of every key (s)
-- returns : per claim {admitted 0|1, freezes, active, limit, value, refusal or ""}
local function I(x) return string.format('%d', x) end

local p = KEYS[1]
local share, min_freezes = tonumber(ARGV[2]), tonumber(ARGV[3])
local span, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for i, c in ipairs(cjson.decode(ARGV[1])) do
  local gen, bucket, id = c[1], tonumber(c[2]), c[3]
  local amount, currency, cap = tonumber(c[4]), c[5], tonumber(c[6])
  local g = p .. ':' .. gen
  local freezes, value, active_keys = 0, 0, {}
  for b = bucket - span + 1, bucket do
    freezes = freezes + redis.call('SCARD', g .. ':f:' .. I(b))
    value = value + tonumber(redis.call('HGET', g .. ':v:' .. I(b), currency) or '0')
    active_keys[#active_keys + 1] = p .. ':active:' .. I(b)
  end
  local active = redis.call('PFCOUNT', unpack(active_keys))
  local limit = math.max(min_freezes, math.floor(share * active))
  local fset = g .. ':f:' .. I(bucket)
  local refusal = ''
  if redis.call('SISMEMBER', fset, id) == 1 then
    refusal = ''
  elseif redis.call('EXISTS', g .. ':tripped') == 1 then
    refusal = 'tripped'
  elseif freezes + 1 > limit then
    refusal = 'count'
  elseif cap >= 0 and value + amount > cap then
    refusal = 'value'
  else
    redis.call('SADD', fset, id)
    redis.call('EXPIRE', fset, ttl)
    if currency ~= '' and amount > 0 then
      redis.call('HINCRBY', g .. ':v:' .. I(bucket), currency, amount)
      redis.call('EXPIRE', g .. ':v:' .. I(bucket), ttl)
    end
  end
  if refusal ~= '' then
    redis.call('SET', g .. ':tripped', I(bucket), 'EX', ttl, 'NX')
  end
  out[i] = {refusal == '' and 1 or 0, freezes, active, limit, value, refusal}
end
return out
