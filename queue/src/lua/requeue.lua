-- Requeue dead jobs: by ids, or by filter in one bounded chunk.
-- KEYS[1] events
-- ARGV[1] prefix, ARGV[2] mode ('ids' | 'filter'),
--   ids:    ARGV[3..] job ids
--   filter: ARGV[3] queue, ARGV[4] died since ms, ARGV[5] died until ms, ARGV[6] fingerprint
--           ('' = any), ARGV[7] chunk size
-- Returns per id (mode ids): 'requeued' | 'missing' | the state that is not DEAD;
-- mode filter: the number requeued (0 when the filter matches nothing more).
local now = now_ms()

local function requeue(id)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'st', 'q', 'k', 'fp', 'pr')
  if not f[1] then return 'missing' end
  if f[1] ~= 'DEAD' then return f[1] end
  local q, k, fp = f[2], f[3], f[4]
  forget_dead(q, id, fp)
  redis.call('HSET', jk, 'st', 'QUEUED', 'a', 0, 'ua', now)
  redis.call('HDEL', jk, 'da', 'fp', 'cr')
  redis.call('HINCRBY', jk, 'rnd', 1)
  redis.call('RPUSH', ready_key(q, f[5]), id)
  redis.call('HINCRBY', qkey(q, 'stats'), 'requeued', 1)
  emit(id, q, k, 'requeued', 0)
  wake(q)
  return 'requeued'
end

if ARGV[2] == 'ids' then
  local out = {}
  for i = 3, #ARGV do out[#out + 1] = requeue(ARGV[i]) end
  return out
end

local q, since, untl, fp, chunk = ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local set = qkey(q, 'dead')
if fp ~= '' then set = qkey(q, 'deadfp:' .. fp) end
local ids = redis.call('ZRANGEBYSCORE', set, since, untl, 'LIMIT', 0, chunk)
local count = 0
for _, id in ipairs(ids) do
  if requeue(id) == 'requeued' then count = count + 1 end
end
return count
