-- Make one partition's delivery outcomes durable in one round trip, in order, so an
-- entry's XACK always lands after the records of every delivery it produced.
-- Every key comes in KEYS (one slot: they share the partition's hash tag):
--   KEYS[1] the stream, KEYS[2] the retry set, KEYS[3] the retry payloads,
--   KEYS[4] the held set, KEYS[5] the held payloads, KEYS[6] the history stream,
--   KEYS[7] every deferred member, KEYS[8..] event records, vendors' deferred sets and
--   minutes' figures, referred to by position from the ops.
-- ARGV[1] record ttl seconds, ARGV[2] consumer group, ARGV[3] history length (about),
-- ARGV[4] ttl of the minutes' figures, ARGV[5..] the ops, one after the other (see
-- webhookd/keyspace.py encode_record):
--   a <key index> <endpoint id> <state json> <attempt field> <attempt json>
--   y <field count> <field> <value> ...
--   s <member> <due ms> <payload json>
--   d <key index> <member>   (SADD to a vendor's deferred set and to KEYS[7])
--   u <key index> <member>   (SREM from both)
--   c <member>
--   h <member> <held ms> <payload json>
--   r <member>
--   m <key index> <delivered> <failed> <latency ms>
--   k <entry id>
local ttl, group = tonumber(ARGV[1]), ARGV[2]
local history_length, minute_ttl = ARGV[3], tonumber(ARGV[4])
local ops = ARGV
local touched = {}
local i = 5
while i <= #ops do
  local op = ops[i]
  if op == 'a' then
    local key = KEYS[tonumber(ops[i + 1])]
    if ops[i + 4] == '' then
      redis.call('HSET', key, ops[i + 2], ops[i + 3])
    else
      redis.call('HSET', key, ops[i + 2], ops[i + 3], ops[i + 4], ops[i + 5])
    end
    touched[key] = true
    i = i + 6
  elseif op == 'y' then
    local count = tonumber(ops[i + 1])
    local entry = {}
    for j = 1, count * 2 do
      entry[j] = ops[i + 1 + j]
    end
    redis.call('XADD', KEYS[6], 'MAXLEN', '~', history_length, '*', unpack(entry))
    i = i + 2 + count * 2
  elseif op == 's' then
    redis.call('ZADD', KEYS[2], ops[i + 2], ops[i + 1])
    redis.call('HSET', KEYS[3], ops[i + 1], ops[i + 3])
    i = i + 4
  elseif op == 'd' then
    local key = KEYS[tonumber(ops[i + 1])]
    redis.call('SADD', key, ops[i + 2])
    redis.call('SADD', KEYS[7], ops[i + 2])
    touched[key] = true
    i = i + 3
  elseif op == 'u' then
    redis.call('SREM', KEYS[tonumber(ops[i + 1])], ops[i + 2])
    redis.call('SREM', KEYS[7], ops[i + 2])
    i = i + 3
  elseif op == 'c' then
    redis.call('ZREM', KEYS[2], ops[i + 1])
    redis.call('HDEL', KEYS[3], ops[i + 1])
    i = i + 2
  elseif op == 'h' then
    redis.call('ZADD', KEYS[4], ops[i + 2], ops[i + 1])
    redis.call('HSET', KEYS[5], ops[i + 1], ops[i + 3])
    i = i + 4
  elseif op == 'r' then
    redis.call('ZREM', KEYS[4], ops[i + 1])
    redis.call('HDEL', KEYS[5], ops[i + 1])
    i = i + 2
  elseif op == 'm' then
    local key = KEYS[tonumber(ops[i + 1])]
    redis.call('HINCRBY', key, 'delivered', ops[i + 2])
    redis.call('HINCRBY', key, 'failed', ops[i + 3])
    redis.call('HINCRBYFLOAT', key, 'latency_ms', ops[i + 4])
    redis.call('EXPIRE', key, minute_ttl)
    i = i + 5
  elseif op == 'k' then
    redis.call('XACK', KEYS[1], group, ops[i + 1])
    i = i + 2
  else
    return redis.error_reply('record.lua: unknown op ' .. tostring(op))
  end
end
for key in pairs(touched) do
  redis.call('EXPIRE', key, ttl)
end
return 1
