-- Replace one endpoint's record only if it is still the one the caller read (a
-- compare-and-swap), so of several daemons disabling one endpoint exactly one wins, and
-- only the winner announces it. Any failing state of the endpoint is dropped with it.
-- KEYS[1] the endpoint table, KEYS[2] its version, KEYS[3] failing states, KEYS[4] their
-- version (one slot: the table's name is the others' hash tag).
-- ARGV[1] endpoint id, ARGV[2] the record read, ARGV[3] the new record, ARGV[4] a token.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[4])
if redis.call('HDEL', KEYS[3], ARGV[1]) == 1 then
  redis.call('SET', KEYS[4], ARGV[4])
end
return 1
