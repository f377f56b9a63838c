-- Decide a batch of checks, one after another, each atomically: all of a check's limits
-- are evaluated first, and only when every one fits (and the check consumes) are they
-- all counted. The arithmetic is that of ratelimiter/window.py, step for step (the
-- comments name the function each step mirrors); tests compare the two on random input.
--
-- ARGV: <number of checks c>, then per check one argument
--   "<ARGV index of its limit set>:<cost>:<consume 0|1>:<now ms, or nothing for TIME>",
--   then the limit sets, each of n limits:
--   <n> <exact 0|1, n> <hash fields: 3 per counter, 1 per log> <amount, n> <window ms, n>
-- KEYS, per check: the key's hash, then one sorted set per exact limit of its set.
-- Reply: one string of numbers separated by spaces (a client parses one string much
-- faster than an array), per check: <now ms> <allowed 0|1>, then per limit:
-- <remaining> <reset ms> <retry ms> (all integers). Each check's and each limit's figures
-- are written by one string.format('%d ...'): Lua's own conversion of numbers ('%.14g',
-- one call per number) was a seventh of the script's time. A check that fails (a key of
-- the wrong type, ...) fails alone: it is answered <now ms> -1 with no limits, and the
-- reply becomes an array of that string followed by one error message per failed check,
-- in order.
-- Commands with many arguments go out in chunks, so that no number of limits overflows
-- Lua's stack ("too many results to unpack").
--
-- The hash holds, per counter <id>: "<id>" the count of window "<id>:i", and "<id>:p"
-- the count of the window before; per sliding log: "log:<id>" = the log's key (so that
-- reset.lua finds it); and "x" = the instant (ms, on the checks' clock) its expiry was
-- last pushed to. Within a window a hit writes its counters' new counts with one HSET
-- (the script read them, and runs atomically); the other fields (and PEXPIRE) are
-- written once per window.
--
-- Redis runs the whole chunk on every call, and a single decision is the common call,
-- so nothing is prepared ahead of the checks: each reads its limit set where it lies
-- in ARGV, and the hash fields go to HMGET straight from there ("x" first).

local ARGV, KEYS, call, tonumber, floor = ARGV, KEYS, redis.call, tonumber, math.floor
local match, format, unpack, min = string.match, string.format, unpack, math.min
local pcall, type, tostring = pcall, type, tostring
local CHUNK = 1000 -- arguments per command, even (HSET takes pairs)

-- floor(a / b) for integers below 2^53, exact despite the division in doubles
local function idiv(a, b)
  local q = floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- HMGET of "x" and ARGV[first..last], in chunks when there are many
local function hmget(hash, first, last)
  if last - first < CHUNK then
    return call('HMGET', hash, 'x', unpack(ARGV, first, last))
  end
  local stored = call('HMGET', hash, 'x')
  for at = first, last, CHUNK do
    local part = call('HMGET', hash, unpack(ARGV, at, min(at + CHUNK - 1, last)))
    for i = 1, #part do
      stored[#stored + 1] = part[i]
    end
  end
  return stored
end

-- Per limit of the check at hand, 8 slots: index (a log's key), current (a log's units
-- in the window), previous (a log's cutoff), elapsed, retry, whether the counter moves
-- to a new window (a log: whether it is registered), amount, window. Reused.
local scratch, reply, errors = {}, {}, {}
local replied, key_at, server_now = 0, 1, nil

-- One check, appended to the reply; an error leaves the reply to the caller.
local function decide(hash, log_key, set, n, logs, cost, consume, now)
  local fields = set + n + 1
  local columns = fields + 3 * n - 2 * logs - 1
  local stored = hmget(hash, fields, columns)

  local allowed, field = true, 2
  for i = 1, n do
    local amount, w = tonumber(ARGV[columns + i]), tonumber(ARGV[columns + n + i])
    local exact = ARGV[set + i] == '1'
    local index, current, previous, elapsed, retry, moves
    if exact then
      log_key = log_key + 1
      index, previous, elapsed, moves = KEYS[log_key], now - w, 0, stored[field]
      field = field + 1
      current = call('ZCOUNT', index, '(' .. previous, '+inf')
      -- log_retry_ms
      local excess = current + cost - amount
      if excess <= 0 then
        retry = 0
      elseif cost > amount then
        retry = w
      else
        local oldest = call(
          'ZRANGEBYSCORE', index, '(' .. previous, '+inf', 'WITHSCORES', 'LIMIT', excess - 1, 1)
        retry = tonumber(oldest[2]) + w - now
      end
    else
      -- counter_at
      index = idiv(now, w)
      elapsed, current, previous, moves = now - index * w, 0, 0, true
      local count = stored[field]
      if count then
        local stored_index = tonumber(stored[field + 1]) or -1
        if stored_index == index then
          current, previous, moves = tonumber(count), tonumber(stored[field + 2]), false
        elseif stored_index == index - 1 then
          previous = tonumber(count)
        elseif stored_index > index then
          index, current, previous = stored_index, tonumber(count), tonumber(stored[field + 2])
          elapsed, moves = 0, false
        end
      end
      field = field + 3
      -- counter_retry_ms
      local room = amount - current - cost
      if room >= 0 and previous * (w - elapsed) <= room * w then
        retry = 0
      elseif cost > amount then
        retry = w
      elseif room >= 0 then
        retry = w - elapsed - idiv(room * w, previous)
      else
        retry = 2 * w - elapsed - idiv((amount - cost) * w, current)
      end
    end
    if retry > 0 then
      allowed = false
    end
    local at = 8 * i
    scratch[at - 7], scratch[at - 6], scratch[at - 5], scratch[at - 4] =
      index, current, previous, elapsed
    scratch[at - 3], scratch[at - 2], scratch[at - 1], scratch[at] = retry, moves, amount, w
  end

  local counting = allowed and consume == '1'
  local expires = tonumber(stored[1] or '0')
  local expiry, updates, updated = expires, nil, 0
  reply[replied + 1] = format('%d %d', now, allowed and 1 or 0)
  replied = replied + 1
  field = fields
  for i = 1, n do
    local at = 8 * i
    local index, current, previous = scratch[at - 7], scratch[at - 6], scratch[at - 5]
    local amount, w = scratch[at - 1], scratch[at]
    local remaining, reset
    if ARGV[set + i] == '1' then
      local newest
      if counting then
        call('ZREMRANGEBYSCORE', index, '-inf', previous)
        local taken = call('ZCOUNT', index, now, now)
        for unit = 0, cost - 1 do
          call('ZADD', index, now, now .. ':' .. (taken + unit))
        end
        call('PEXPIRE', index, w)
        if not scratch[at - 2] then
          updates = updates or {}
          updates[updated + 1], updates[updated + 2] = ARGV[field], index
          updated = updated + 2
        end
        current, newest = current + cost, now
      elseif current > 0 then
        newest = tonumber(call('ZRANGE', index, -1, -1, 'WITHSCORES')[2])
      end
      field = field + 1
      -- log_remaining, log_reset_ms
      remaining = amount - current
      reset = newest and newest + w or now
    else
      if counting then
        current = current + cost
        updates = updates or {}
        updates[updated + 1], updates[updated + 2] = ARGV[field], current
        updated = updated + 2
        if scratch[at - 2] then
          updates[updated + 1], updates[updated + 2] = ARGV[field + 1], index
          updates[updated + 3], updates[updated + 4] = ARGV[field + 2], previous
          updated = updated + 4
        end
      end
      field = field + 3
      -- counter_remaining, counter_reset_ms
      remaining = amount - current + idiv(-previous * (w - scratch[at - 4]), w)
      if current > 0 then
        reset = (index + 2) * w
      elseif previous > 0 then
        reset = (index + 1) * w
      else
        reset = now
      end
    end
    if counting and reset > expiry then
      expiry = reset
    end
    reply[replied + 1] = format('%d %d %d', remaining > 0 and remaining or 0, reset,
      allowed and 0 or scratch[at - 3])
    replied = replied + 1
  end

  if counting and expiry > expires then
    updates = updates or {}
    updates[updated + 1], updates[updated + 2] = 'x', expiry
    updated = updated + 2
  end
  if updates then
    for at = 1, updated, CHUNK do
      call('HSET', hash, unpack(updates, at, min(at + CHUNK - 1, updated)))
    end
  end
  if counting and expiry > expires then
    call('PEXPIRE', hash, expiry - now)
  end
end

for check = 2, tonumber(ARGV[1]) + 1 do
  local set, cost, consume, now = match(ARGV[check], '^(%d+):(%d+):(%d):(%d*)$')
  set, cost, now = tonumber(set), tonumber(cost), tonumber(now)
  if not now then
    if not server_now then
      local time = call('TIME')
      server_now = tonumber(time[1]) * 1000 + floor(tonumber(time[2]) / 1000)
    end
    now = server_now
  end
  local n, logs = tonumber(ARGV[set]), 0
  for i = set + 1, set + n do
    if ARGV[i] == '1' then
      logs = logs + 1
    end
  end
  local hash, log_key = KEYS[key_at], key_at
  key_at = key_at + 1 + logs
  local before = replied
  local ok, failure = pcall(decide, hash, log_key, set, n, logs, cost, consume, now)
  if not ok then
    replied = before
    reply[replied + 1], reply[replied + 2] = now, -1
    replied = replied + 2
    errors[#errors + 1] = type(failure) == 'table' and failure.err or tostring(failure)
  end
end
local numbers = table.concat(reply, ' ', 1, replied)
if #errors == 0 then
  return numbers
end
table.insert(errors, 1, numbers)
return errors
