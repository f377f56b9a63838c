-- Forget a key: delete its counter hash and every sliding log the hash registered
-- (fields "log:<id>" hold the log's key name, which shares the hash's {hash tag}).
-- KEYS[1]: the key's counter hash. Reply: the number of keys deleted.
local entries = redis.call('HGETALL', KEYS[1])
local deleted = 0
for i = 1, #entries, 2 do
  if string.sub(entries[i], 1, 4) == 'log:' then
    deleted = deleted + redis.call('DEL', entries[i + 1])
  end
end
return deleted + redis.call('DEL', KEYS[1])
