-- A GCRA (generic cell rate) limiter: `limit` calls per `window_ms`, with bursts up to `limit`.
-- KEYS[1] the limiter's key. ARGV: limit, window_ms, cost.
-- Answers {allowed (1/0), retry_after_ms, remaining}. The clock is Redis's, so every process
-- that shares the key counts against one timeline.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = window / limit
local burst = window
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - burst
if allow_at > now then
  return {0, math.ceil(allow_at - now), 0}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
local remaining = math.floor((burst - (new_tat - now)) / interval)
return {1, 0, remaining}
