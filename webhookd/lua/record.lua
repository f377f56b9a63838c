-- Apply a batch of delivery outcomes in one round trip, in order, so that an entry's
-- XACK always lands after the records of every delivery it produced.
-- ARGV[1] key prefix, ARGV[2] record ttl seconds, ARGV[3] consumer group, ARGV[4] the ops:
-- one JSON array of strings (one argument, so the client encodes a batch in one go):
--   attempt <event_id> <endpoint_id> <state_json> <attempt_json>
--   schedule <member> <due_ms> <payload_json>
--   settle <member>
--   dead <stream> <fields_json>
--   ack <stream> <entry_id>
--   undead <stream> <entry_id>      (XDEL a redriven dead letter)
local prefix, ttl, group = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local retry_key, payload_key = prefix .. ':retry', prefix .. ':retry:payload'
local ARGS = cjson.decode(ARGV[4])
local i = 1
while i <= #ARGS do
  local op = ARGS[i]
  if op == 'attempt' then
    local event_key = prefix .. ':event:' .. ARGS[i + 1]
    local attempts_key = prefix .. ':attempts:' .. ARGS[i + 1]
    redis.call('HSET', event_key, ARGS[i + 2], ARGS[i + 3])
    redis.call('RPUSH', attempts_key, ARGS[i + 4])
    redis.call('EXPIRE', event_key, ttl)
    redis.call('EXPIRE', attempts_key, ttl)
    i = i + 5
  elseif op == 'schedule' then
    redis.call('ZADD', retry_key, ARGS[i + 2], ARGS[i + 1])
    redis.call('HSET', payload_key, ARGS[i + 1], ARGS[i + 3])
    i = i + 4
  elseif op == 'settle' then
    redis.call('ZREM', retry_key, ARGS[i + 1])
    redis.call('HDEL', payload_key, ARGS[i + 1])
    i = i + 2
  elseif op == 'dead' then
    local fields = cjson.decode(ARGS[i + 2])
    local flat = {}
    for _, pair in ipairs(fields) do
      flat[#flat + 1] = pair[1]
      flat[#flat + 1] = pair[2]
    end
    redis.call('XADD', ARGS[i + 1], '*', unpack(flat))
    i = i + 3
  elseif op == 'ack' then
    redis.call('XACK', ARGS[i + 1], group, ARGS[i + 2])
    i = i + 3
  elseif op == 'undead' then
    redis.call('XDEL', ARGS[i + 1], ARGS[i + 2])
    i = i + 3
  else
    return redis.error_reply('unknown op ' .. tostring(op))
  end
end
return 1
