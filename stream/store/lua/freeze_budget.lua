-- Per-rule freeze budgets (detectors.guardrails), atomically per rule: a
-- distinct frozen subject is counted in its 10-minute bucket only while the
-- bucket holds fewer than the budget; the first refusal marks the rule's
-- generation demoted, and every later new subject of that generation is
-- refused too (sticky until a rule-mode record starts a new generation).
-- A subject already counted in its bucket is admitted again (a retried
-- batch decides the same) without counting twice.
--
-- Keys, all under the rule's hash tag (one slot):
--   <p>:<gen>:b:<bucket>  SET   hashed subjects frozen in the bucket
--   <p>:<gen>:demoted     STRING the bucket of the first refusal
--   <p>:hist              HASH  bucket -> subjects admitted (7 days kept)
-- KEYS[1] : <p>, the rule's prefix `<ns>:{gr:<rule_id>}`
-- ARGV[1] : JSON array of {generation, bucket, member, budget}
-- ARGV[2] : history buckets kept, ARGV[3] : TTL of every key (s)
-- returns : per claim {admitted 0|1, subjects counted in the bucket}
local function I(x) return string.format('%d', x) end

local p = KEYS[1]
local keep, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local hist = p .. ':hist'
local out = {}
for i, c in ipairs(cjson.decode(ARGV[1])) do
  local gen, bucket, member, budget = c[1], tonumber(c[2]), c[3], tonumber(c[4])
  local set = p .. ':' .. gen .. ':b:' .. I(bucket)
  local demoted = p .. ':' .. gen .. ':demoted'
  local n = redis.call('SCARD', set)
  if redis.call('SISMEMBER', set, member) == 1 then
    out[i] = {1, n}
  elseif redis.call('EXISTS', demoted) == 1 or n >= budget then
    redis.call('SET', demoted, I(bucket), 'EX', ttl, 'NX')
    out[i] = {0, n}
  else
    redis.call('SADD', set, member)
    redis.call('EXPIRE', set, ttl)
    if redis.call('HINCRBY', hist, I(bucket), 1) == 1 then
      for _, f in ipairs(redis.call('HKEYS', hist)) do
        if tonumber(f) <= bucket - keep then redis.call('HDEL', hist, f) end
      end
    end
    redis.call('EXPIRE', hist, ttl)
    out[i] = {1, n + 1}
  end
end
return out
