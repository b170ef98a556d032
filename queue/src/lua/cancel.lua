-- Cancel one job. Waiting jobs are cancelled at once; a running job is asked to stop and
-- is cancelled when its handler observes the request.
-- KEYS[1] events; ARGV[1] prefix, ARGV[2] job id.
-- Returns 'cancelled', 'requested', 'missing', or the state that cannot be cancelled.
local id = ARGV[2]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'st', 'q', 'k', 'a', 'ikw')
local st = f[1]
if not st then return 'missing' end
local q, k, a = f[2], f[3], f[4]
local now = now_ms()
if st == 'QUEUED' or st == 'SCHEDULED' or st == 'RETRYING' then
  if st == 'QUEUED' then
    -- No LREM over the queue: the id stays in the ready list as a tombstone that fetch skips.
    redis.call('HSET', jk, 'tb', '1')
    redis.call('HINCRBY', qkey(q, 'stats'), 'tomb', 1)
  else
    redis.call('ZREM', qkey(q, 'sched'), id)
  end
  if f[5] and redis.call('GET', f[5]) == id then redis.call('DEL', f[5]) end
  local eid = emit(id, q, k, 'cancelled', a)
  redis.call('HSET', jk, 'st', 'CANCELLED', 'ua', now, 'le', eid)
  redis.call('HDEL', jk, 'ra')
  redis.call('RPUSH', qkey(q, 'done'), id)
  redis.call('HINCRBY', qkey(q, 'stats'), 'cancelled', 1)
  return 'cancelled'
elseif st == 'RUNNING' then
  redis.call('HSET', jk, 'cr', '1')
  return 'requested'
end
return st
