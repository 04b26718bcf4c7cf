-- Merchants with events in a 10-minute bucket: the circuit breaker's active
-- merchants (breaker.lua counts the trailing hour's union).
-- KEYS[1] : `<ns>:{brk}:active:<bucket>` (HyperLogLog of hashed merchants)
-- ARGV[1] : TTL (s), ARGV[2..] : members
redis.call('PFADD', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
