-- Append events to per-entity event logs (ZSET member=event_id, score=event ms)
-- and read each log around the event, in one atomic call for the whole batch.
--
-- Idempotent: ZADD NX never re-adds a known event id, so a redelivered or
-- duplicated event changes no count. Trimming follows the newest *event*
-- time in the log, never the wall clock, so old (backtest) events keep their
-- state; PEXPIRE only reclaims logs nobody writes to any more.
--
-- KEYS[i]  : event log keys
-- ARGV[1]  : JSON array of ops {key_index, event_id, event_ms, span_ms, retention_ms, ttl_ms, cap}
--            (times as strings: exact integers, no float formatting)
-- returns  : per op {status, {id1, ms1, id2, ms2, ...}, truncated(0|1)}
local ops = cjson.decode(ARGV[1])
local out = {}
for i, op in ipairs(ops) do
  local key = KEYS[op[1]]
  local id, ms = op[2], op[3]
  local t, span, retention = tonumber(ms), tonumber(op[4]), tonumber(op[5])
  local newest = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  local newest_ms = t
  if newest[2] then newest_ms = math.max(t, tonumber(newest[2])) end
  local status
  if newest[2] and t < tonumber(newest[2]) - retention + span then
    status = 'late'
  elseif redis.call('ZADD', key, 'NX', ms, id) == 1 then
    status = 'new'
  else
    status = 'dup'
  end
  local entries = {}
  local truncated = 0
  if status ~= 'late' then
    local cap = tonumber(op[7])
    entries = redis.call('ZRANGEBYSCORE', key, string.format('(%d', t - span),
      string.format('(%d', t + span), 'WITHSCORES', 'LIMIT', 0, cap + 1)
    if #entries > 2 * cap then
      truncated = 1
      entries[#entries] = nil
      entries[#entries] = nil
    end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%d', newest_ms - retention))
    redis.call('PEXPIRE', key, op[6])
  end
  out[i] = {status, entries, truncated}
end
return out
