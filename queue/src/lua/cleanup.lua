-- Forget finished (succeeded or cancelled) jobs past their retention, a bounded chunk per call,
-- and never before every consumer group of the job-event stream has read the job's last event.
-- KEYS[1] events; ARGV[1] prefix, ARGV[2] queue, ARGV[3] retention ms, ARGV[4] max kept,
-- ARGV[5] chunk. Returns the number of jobs removed.
local q = ARGV[2]
local done = qkey(q, 'done')
local chunk = tonumber(ARGV[5])
local now = now_ms()
local safe = groups_safe_point(EVENTS)
local candidates = redis.call('ZRANGEBYSCORE', done, '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, chunk)
local excess = redis.call('ZCARD', done) - tonumber(ARGV[4])
if #candidates == 0 and excess > 0 then
  candidates = redis.call('ZRANGE', done, 0, math.min(excess, chunk) - 1)
end
local removed = 0
for _, id in ipairs(candidates) do
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'le', 'tb')
  if safe and f[1] and not sid_lt(f[1], safe) then break end
  -- A cancelled job still sitting in the ready list as a tombstone is kept until fetch drops it.
  if f[2] ~= '1' then
    redis.call('DEL', jk)
    redis.call('ZREM', done, id)
    removed = removed + 1
  end
end
return removed
