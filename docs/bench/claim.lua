-- The Redis reference for a durable all-win claim (issue 15): the same
-- decision microdrop's decider makes for an fcfs drop with a cap of one.
-- KEYS[1]: the drop's stock counter; KEYS[2]: the set of users who won.
-- ARGV[1]: the user id. Returns 1 for a win, 0 for already won, -1 for sold out.
-- Run against a redis-server with appendonly yes and appendfsync always, so
-- the answer comes after the write is on disk.
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 0
end
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left <= 0 then
  return -1
end
redis.call('DECR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
