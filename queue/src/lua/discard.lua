-- Delete dead jobs for good.
-- KEYS[1] events; ARGV[1] prefix, ARGV[2..] job ids.
-- Returns per id: 'discarded', 'missing', or the state that is not DEAD.
local function discard(id)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'st', 'q', 'k', 'fp', 'a')
  if not f[1] then return 'missing' end
  if f[1] ~= 'DEAD' then return f[1] end
  local q, k, fp = f[2], f[3], f[4]
  forget_dead(q, id, fp)
  redis.call('HINCRBY', qkey(q, 'stats'), 'discarded', 1)
  emit(id, q, k, 'discarded', f[5])
  redis.call('DEL', jk)
  return 'discarded'
end

local out = {}
for i = 2, #ARGV do out[#out + 1] = discard(ARGV[i]) end
return out
