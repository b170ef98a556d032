-- Extend the leases a worker still holds.
-- KEYS[1] events (unused, kept so every script shares the calling convention)
-- ARGV[1] prefix, ARGV[2] queue, ARGV[3] lease ms, then id, token pairs.
-- Returns per job: 1 = renewed and cancel requested, 0 = renewed, -1 = lease lost.
local q = ARGV[2]
local deadline = now_ms() + tonumber(ARGV[3])
local lease = qkey(q, 'lease')
local out = {}
for i = 4, #ARGV, 2 do
  local id, tok = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', job_key(id), 'st', 'tok', 'cr')
  if f[1] == 'RUNNING' and f[2] == tok then
    redis.call('ZADD', lease, 'XX', deadline, id)
    if f[3] == '1' then out[#out + 1] = 1 else out[#out + 1] = 0 end
  else
    out[#out + 1] = -1
  end
end
return out
