-- A circuit breaker shared by every process of a deployment: consecutive failures per named
-- destination, open for a cool-down after `threshold` of them, then half-open: one probe at a
-- time until a success closes it or a failure opens it again.
-- KEYS[1] the breaker hash, KEYS[2] the index of breakers that are not closed.
-- ARGV: op (acquire | success | failure), name, threshold, cool_down_ms, probe_ms, ttl_ms.
-- Replies {gate, wait_ms, failures}: gate is closed, probe or open.
local key, index = KEYS[1], KEYS[2]
local op, name = ARGV[1], ARGV[2]
local threshold = tonumber(ARGV[3])
local cool_down, probe, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(n) return string.format('%d', n) end

local h = redis.call('HMGET', key, 'failures', 'open_until', 'probe_until')
local failures = tonumber(h[1]) or 0
local open_until = tonumber(h[2])
local probe_until = tonumber(h[3]) or 0

if op == 'acquire' then
  if not open_until then return {'closed', 0, failures} end
  if now < open_until then return {'open', int(open_until - now), failures} end
  if now < probe_until then return {'open', int(probe_until - now), failures} end
  redis.call('HSET', key, 'probe_until', int(now + probe))
  return {'probe', 0, failures}
elseif op == 'success' then
  redis.call('DEL', key)
  redis.call('ZREM', index, name)
  return {'closed', 0, 0}
elseif op == 'failure' then
  failures = redis.call('HINCRBY', key, 'failures', 1)
  redis.call('HSET', key, 'last_failure_at', int(now))
  redis.call('PEXPIRE', key, int(ttl))
  -- A failed probe, or the threshold reached: open (again) for a full cool-down.
  if open_until or failures >= threshold then
    redis.call('HSET', key, 'open_until', int(now + cool_down), 'probe_until', '0')
    if not open_until then redis.call('HSET', key, 'opened_at', int(now)) end
    redis.call('ZADD', index, int(now), name)
    return {'open', int(cool_down), failures}
  end
  return {'closed', 0, failures}
end
return redis.error_reply('ERR unknown breaker op ' .. tostring(op))
