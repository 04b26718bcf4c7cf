-- The book of active freezes (stream/store/freezes.py; keys in keys.freeze_book).
-- KEYS: info, expiry, releases, leases, done, refused. ARGV[1]: the operation.
-- JSON values are opaque here but for a held release's control_id.
local INFO, EXPIRY, RELEASES, LEASES, DONE, REFUSED = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local op = ARGV[1]

local function take(id, spec, until_ms)
  redis.call('HSET', RELEASES, id, spec)
  redis.call('ZADD', LEASES, until_ms, id)
  redis.call('ZREM', EXPIRY, id)
end

-- ARGV[2]: [[id, expires_at ms, info JSON], ...] → 'new' | 'active' | 'released' each
if op == 'register' then
  local out = {}
  for i, f in ipairs(cjson.decode(ARGV[2])) do
    if redis.call('HEXISTS', RELEASES, f[1]) == 1 then
      out[i] = 'released'
    elseif redis.call('HSETNX', INFO, f[1], f[3]) == 1 then
      redis.call('ZADD', EXPIRY, f[2], f[1])
      out[i] = 'new'
    else
      out[i] = 'active'
    end
  end
  return out
end

-- A release command refused (nothing to release): 1 for the first caller that
-- refuses this command for this freeze, 0 for the others.
local function first_refusal(id, control_id, now)
  return redis.call('ZADD', REFUSED, 'NX', now, id .. ' ' .. control_id)
end

-- ARGV[2] now, ARGV[3] lease ms, ARGV[4] [[id, spec JSON, control id], ...]
-- → [status, spec, info, first refusal] each
if op == 'claim' then
  local now, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
  local out = {}
  for i, r in ipairs(cjson.decode(ARGV[4])) do
    local id, spec, control_id = r[1], r[2], r[3]
    local held = redis.call('HGET', RELEASES, id)
    if held then
      local until_ms = redis.call('ZSCORE', LEASES, id)
      if until_ms and tonumber(until_ms) <= now then
        redis.call('ZADD', LEASES, now + lease, id)
        out[i] = {'claimed', held, redis.call('HGET', INFO, id) or '', 0}
      elseif cjson.decode(held)['control_id'] == control_id then
        out[i] = {'in_hand', held, '', 0}
      else
        out[i] = {'released', held, '', first_refusal(id, control_id, now)}
      end
    else
      local info = redis.call('HGET', INFO, id)
      if info then
        take(id, spec, now + lease)
        out[i] = {'claimed', spec, info, 0}
      else
        out[i] = {'unknown', '', '', first_refusal(id, control_id, now)}
      end
    end
  end
  return out
end

-- ARGV[2] now, ARGV[3] lease ms, ARGV[4] limit, ARGV[5] the expired spec
-- → [id, spec, info] per claim: lapsed leases first, then due expiries
if op == 'due' then
  local now, lease, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, limit)) do
    redis.call('ZADD', LEASES, now + lease, id)
    out[#out + 1] = {id, redis.call('HGET', RELEASES, id), redis.call('HGET', INFO, id) or ''}
  end
  local room = limit - #out
  if room > 0 then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now, 'LIMIT', 0, room)) do
      take(id, ARGV[5], now + lease)
      out[#out + 1] = {id, ARGV[5], redis.call('HGET', INFO, id) or ''}
    end
  end
  return out
end

-- ARGV[2] now, ARGV[3] retention ms, ARGV[4] trim batch, ARGV[5] [id, ...] → how many were claimed
if op == 'done' then
  local now = tonumber(ARGV[2])
  local n = 0
  for _, id in ipairs(cjson.decode(ARGV[5])) do
    if redis.call('ZREM', LEASES, id) == 1 then
      redis.call('HDEL', INFO, id)
      redis.call('ZREM', EXPIRY, id)
      redis.call('ZADD', DONE, now, id)
      n = n + 1
    end
  end
  local floor = now - tonumber(ARGV[3])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', DONE, '-inf', floor, 'LIMIT', 0, tonumber(ARGV[4]))) do
    redis.call('ZREM', DONE, id)
    redis.call('HDEL', RELEASES, id)
  end
  redis.call('ZREMRANGEBYSCORE', REFUSED, '-inf', floor)
  return n
end

return redis.error_reply('freeze_book: unknown operation ' .. tostring(op))
