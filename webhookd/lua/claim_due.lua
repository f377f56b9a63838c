-- Claim retries that are due: lease each one (move its due time to now + lease) and
-- return member, payload pairs. A process that dies mid-attempt leaves the lease to
-- expire, and the retry comes due again for another process.
-- KEYS[1] retry zset, KEYS[2] payload hash; ARGV[1] now_ms, ARGV[2] lease_ms, ARGV[3] limit
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local lease_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
local out = {}
for _, member in ipairs(due) do
  local payload = redis.call('HGET', KEYS[2], member)
  if payload then
    redis.call('ZADD', KEYS[1], lease_until, member)
    out[#out + 1] = member
    out[#out + 1] = payload
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return out
