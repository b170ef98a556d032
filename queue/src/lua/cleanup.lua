-- Forget finished (succeeded or cancelled) jobs past their retention, a bounded chunk per call,
-- and never before every consumer group of the job-event stream has read the job's final event.
-- The done list holds finished jobs in the order they finished, oldest at the head.
-- KEYS[1] events; ARGV[1] prefix, ARGV[2] queue, ARGV[3] retention ms, ARGV[4] max kept,
-- ARGV[5] chunk. Returns the number of jobs removed.
local q = ARGV[2]
local done = qkey(q, 'done')
local chunk = tonumber(ARGV[5])
local now = now_ms()
local cutoff = now - tonumber(ARGV[3])
local excess = redis.call('LLEN', done) - tonumber(ARGV[4])
local safe = groups_safe_point(EVENTS)
local removed, looked = 0, 0
while looked < chunk do
  local id = redis.call('LINDEX', done, 0)
  if not id then break end
  looked = looked + 1
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'ua', 'le', 'tb')
  if f[1] and tonumber(f[1]) > cutoff and removed >= excess then break end
  if safe and f[2] and not sid_lt(f[2], safe) then break end
  redis.call('LPOP', done)
  if f[3] == '1' then
    -- A cancelled job still in the ready list as a tombstone waits until fetch drops it.
    redis.call('RPUSH', done, id)
  else
    redis.call('DEL', jk)
    removed = removed + 1
  end
end
return removed
