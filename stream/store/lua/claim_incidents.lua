-- Settle, atomically per entity, whether a threshold crossing opens a new
-- incident (publish its alert) or belongs to one already alerted.
--
-- An incident covers event time up to `until` = end of its last crossing
-- window + cooldown; a crossing whose window starts at or before `until`
-- extends it. A crossing by the incident's own trigger event at the same
-- source position is a redelivery (e.g. after a crash before the alert was
-- published): the stored alert is returned to be republished unchanged.
--
-- KEYS[i] : incident keys
-- ARGV[1] : JSON array of {key_index, start_ms, end_ms, cooldown_ms, alert_id,
--           trigger_event_id, trigger_position, payload, ttl_ms}
-- returns : per claim {status, alert_id, payload-or-empty}
local claims = cjson.decode(ARGV[1])
local out = {}
for i, c in ipairs(claims) do
  local key = KEYS[c[1]]
  local start_ms, end_ms, cooldown = tonumber(c[2]), tonumber(c[3]), tonumber(c[4])
  local h = redis.call('HMGET', key, 'until', 'alert_id', 'trigger_event_id', 'trigger_position', 'payload')
  if h[1] and start_ms <= tonumber(h[1]) then
    if h[3] == c[6] and h[4] == c[7] then
      out[i] = {'reemit', h[2], h[5]}
    else
      local until_ms = math.max(tonumber(h[1]), end_ms + cooldown)
      redis.call('HSET', key, 'until', string.format('%d', until_ms))
      redis.call('PEXPIRE', key, c[9])
      out[i] = {'open', h[2], ''}
    end
  else
    redis.call('HSET', key, 'until', string.format('%d', end_ms + cooldown), 'alert_id', c[5],
      'trigger_event_id', c[6], 'trigger_position', c[7], 'payload', c[8])
    redis.call('PEXPIRE', key, c[9])
    out[i] = {'new', c[5], ''}
  end
end
return out
