-- The book of merchants' order and payout times (detectors.paid_out): write
-- the orders and payouts of a batch and answer its refunds, in order. Every
-- key of one call lies in one slot (one merchant's hash tag, or several on a
-- standalone Redis).
--
-- Per merchant two ZSETs, member = keyed digest of the order or payout id,
-- score = its event time: `orders` and `payouts`. ZADD NX: an id recorded
-- again keeps its first time, so a retried batch changes nothing.
-- A refund is answered from what lies at or before it and within the retain
-- time: the order's time (ZSCORE) and the latest payout at or before the
-- refund (ZREVRANGEBYSCORE ... LIMIT 0 1). Members older than the retain
-- time before a key's newest are trimmed, and the TTL refreshed, when that
-- newest time enters a new refresh slice: trimming never changes an answer.
--
-- KEYS    : every key used
-- ARGV[1] : JSON flat array, 4 per entry: kind (1 order, 2 payout, 3 refund),
--           key index (orders key for 1 and 3, payouts key for 2), member,
--           event ms; a refund also names the payouts key: 5th value
--           (0 for the others)
-- ARGV[2] : retain ms;  ARGV[3] : TTL ms;  ARGV[4] : refresh slice ms
-- returns : per refund, in order, the order's time and the payout's time
--           (-1: none)
local function I(x) return string.format('%d', x) end
local a = cjson.decode(ARGV[1])
local retain, ttl, refresh = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local newest = {}   -- key -> its newest score before this call (false: empty)
local moved = {}    -- key -> the newest score written by this call
local out, o = {}, 0

local function note(key, t)
  if newest[key] == nil then
    local top = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
    newest[key] = top[2] and tonumber(top[2]) or false
  end
  if not moved[key] or t > moved[key] then moved[key] = t end
end

local i = 1
while i <= #a do
  local kind, key, member, t, pkey = a[i], KEYS[a[i + 1]], a[i + 2], a[i + 3], a[i + 4]
  i = i + 5
  if kind == 1 or kind == 2 then
    note(key, t)
    redis.call('ZADD', key, 'NX', I(t), member)
  else
    local horizon = t - retain
    local s = redis.call('ZSCORE', key, member)
    local order_at = s and tonumber(s) or -1
    if order_at < horizon then order_at = -1 end
    local p = redis.call('ZREVRANGEBYSCORE', KEYS[pkey], I(t), I(horizon), 'WITHSCORES', 'LIMIT', 0, 1)
    out[o + 1], out[o + 2] = order_at, p[2] and tonumber(p[2]) or -1
    o = o + 2
  end
end
for key, t in pairs(moved) do
  local old = newest[key]
  if not old or math.floor(t / refresh) > math.floor(old / refresh) then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. I(math.max(old or t, t) - retain))
    redis.call('PEXPIRE', key, ttl)
  end
end
return out
