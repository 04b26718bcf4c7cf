-- Settle, atomically per (rule, entity), whether a threshold crossing opens a
-- new incident (publish its alert) or belongs to one already alerted.
--
-- The hash keeps the entity's recent incidents of one rule:
--   i:<alert_id> = "<from_ms>|<until_ms>"
--   t:<alert_id> = trigger event id, q:<alert_id> = trigger position,
--   p:<alert_id> = the published alert
-- A crossing window [start, end) belongs to an incident when it overlaps the
-- incident's span extended by the cooldown on both sides: start <= until and
-- end + cooldown >= from. So an older burst that arrives late is its own
-- incident, and the result does not depend on arrival order.
-- A new incident gets the next number of its (rule, entity, 90-day epoch):
-- alert_id = "al_" .. first 32 hex of sha1("<base>:<epoch>:<seq>"), written
-- into the payload in place of the placeholder. Numbering (not hashing the
-- tipping event) keeps ids equal whatever order the events arrived in.
-- A crossing by an incident's own trigger event at the same source position
-- is a redelivery (e.g. after a crash before the alert was published): the
-- stored alert is returned to be republished unchanged.
--
-- KEYS[i] : incident hashes
-- ARGV[1] : JSON array of {kidx, start_ms, end_ms, cooldown_ms, base,
--           trigger_event_id, trigger_position, payload, ttl_ms, retention_ms,
--           epoch, placeholder}
-- returns : per claim {status, alert_id, payload-or-empty}
local function I(x) return string.format('%d', x) end

local function split(s)
  local parts = {}
  for p in string.gmatch(s, '([^|]*)|?') do parts[#parts + 1] = p end
  return parts
end

local claims = cjson.decode(ARGV[1])
local out = {}
for i, c in ipairs(claims) do
  local key = KEYS[c[1]]
  local start_ms, end_ms, cooldown = tonumber(c[2]), tonumber(c[3]), tonumber(c[4])
  local flat = redis.call('HGETALL', key)
  local match, newest_until = nil, end_ms + cooldown
  local incidents = {}
  for j = 1, #flat, 2 do
    if string.sub(flat[j], 1, 2) == 'i:' then
      local aid = string.sub(flat[j], 3)
      local p = split(flat[j + 1])
      local inc = {aid = aid, from = tonumber(p[1]), until_ms = tonumber(p[2])}
      incidents[#incidents + 1] = inc
      newest_until = math.max(newest_until, inc.until_ms)
      if not match and start_ms <= inc.until_ms and end_ms + cooldown >= inc.from then
        match = inc
      end
    end
  end
  local trigger = match and redis.call('HMGET', key, 't:' .. match.aid, 'q:' .. match.aid)
  if match and trigger[1] == c[6] and trigger[2] == c[7] then
    out[i] = {'reemit', match.aid, redis.call('HGET', key, 'p:' .. match.aid) or ''}
  elseif match then
    match.from = math.min(match.from, start_ms)
    match.until_ms = math.max(match.until_ms, end_ms + cooldown)
    newest_until = math.max(newest_until, match.until_ms)
    redis.call('HSET', key, 'i:' .. match.aid, I(match.from) .. '|' .. I(match.until_ms))
    out[i] = {'open', match.aid, ''}
  else
    local seq = redis.call('HINCRBY', key, 'seq:' .. c[11], 1)
    local aid = 'al_' .. string.sub(redis.sha1hex(c[5] .. ':' .. c[11] .. ':' .. seq), 1, 32)
    local payload = c[8]
    local at = string.find(payload, c[12], 1, true)
    if at then
      payload = string.sub(payload, 1, at - 1) .. aid .. string.sub(payload, at + #c[12])
    end
    redis.call('HSET', key, 'i:' .. aid, I(start_ms) .. '|' .. I(end_ms + cooldown),
      't:' .. aid, c[6], 'q:' .. aid, c[7], 'p:' .. aid, payload)
    out[i] = {'new', aid, payload}
  end
  local retention = tonumber(c[10])
  for _, inc in ipairs(incidents) do
    if inc.until_ms < newest_until - retention then
      redis.call('HDEL', key, 'i:' .. inc.aid, 't:' .. inc.aid, 'q:' .. inc.aid, 'p:' .. inc.aid)
    end
  end
  redis.call('PEXPIRE', key, c[9])
end
return out
