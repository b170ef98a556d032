-- Cancel up to N waiting jobs of one queue, ready ones first, then scheduled and retrying
-- ones: an operator's drain. Running jobs are left to finish. Bounded work per call; the
-- caller repeats until nothing is left.
-- KEYS[1] events; ARGV[1] prefix, ARGV[2] queue, ARGV[3] max jobs per call.
-- Returns {cancelled by this call, entries taken off the queue by it, jobs still waiting}.
local q = ARGV[2]
local budget = tonumber(ARGV[3])
local ready, sched, stats = qkey(q, 'ready'), qkey(q, 'sched'), qkey(q, 'stats')
local now = now_ms()
local cancelled = 0
local taken = 0

local function cancel_waiting(id)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'st', 'k', 'a', 'ikw', 'tb')
  if f[5] == '1' then
    -- A tombstone of a job cancelled earlier: it leaves the list here instead of at a fetch.
    redis.call('HINCRBY', stats, 'tomb', -1)
    redis.call('HDEL', jk, 'tb')
    return
  end
  if f[1] ~= 'QUEUED' and f[1] ~= 'SCHEDULED' and f[1] ~= 'RETRYING' then return end
  if f[4] and redis.call('GET', f[4]) == id then redis.call('DEL', f[4]) end
  local eid = emit(id, q, f[2], 'cancelled', f[3], 'err', 'the queue was drained')
  redis.call('HSET', jk, 'st', 'CANCELLED', 'ua', now, 'le', eid)
  redis.call('HDEL', jk, 'ra')
  redis.call('RPUSH', qkey(q, 'done'), id)
  redis.call('HINCRBY', stats, 'cancelled', 1)
  cancelled = cancelled + 1
end

local lists = {qkey(q, 'ready:h'), ready, qkey(q, 'ready:l')}
for _, list in ipairs(lists) do
  local ids = budget > 0 and redis.call('LPOP', list, budget)
  if ids then
    for _, id in ipairs(ids) do cancel_waiting(id) end
    budget = budget - #ids
    taken = taken + #ids
  end
end
-- Jobs waiting for their limit key's slot.
local kwaiting = qkey(q, 'kwaiting')
while budget > 0 do
  local lk = redis.call('ZRANGE', kwaiting, 0, 0)[1]
  if not lk then break end
  local wait_list = qkey(q, 'kwait:' .. lk)
  local ids = redis.call('LPOP', wait_list, budget) or {}
  for _, id in ipairs(ids) do
    redis.call('HDEL', job_key(id), 'kw')
    cancel_waiting(id)
  end
  redis.call('HINCRBY', stats, 'kwait', -#ids)
  budget = budget - #ids
  taken = taken + #ids
  if redis.call('LLEN', wait_list) == 0 then redis.call('ZREM', kwaiting, lk) end
end
if budget > 0 then
  local due = redis.call('ZPOPMIN', sched, budget)
  for i = 1, #due, 2 do cancel_waiting(due[i]) end
  taken = taken + #due / 2
end

local tomb = tonumber(redis.call('HGET', stats, 'tomb') or '0')
local queued = tonumber(redis.call('HGET', stats, 'kwait') or '0')
for _, list in ipairs(lists) do queued = queued + redis.call('LLEN', list) end
local left = math.max(0, queued - tomb) + redis.call('ZCARD', sched)
return {cancelled, taken, left}
