-- A rule's per-bucket history of distinct frozen subjects (freeze_budget.lua
-- keeps it): read through a script so errors map like every other store call.
-- KEYS[1] : `<ns>:{gr:<rule_id>}:hist`
return redis.call('HGETALL', KEYS[1])
