-- Extend the leases a worker still holds, never past an attempt's execution timeout plus the
-- grace it has to stop.
-- KEYS[1] events (unused, kept so every script shares the calling convention)
-- ARGV[1] prefix, ARGV[2] queue, ARGV[3] lease ms, ARGV[4] timeout grace ms, then id, token
-- pairs.
-- Returns per job: 1 = renewed and cancel requested, 0 = renewed, -1 = lease lost,
-- 2 = past its timeout (the lease runs out at the end of the grace).
local q = ARGV[2]
local now = now_ms()
local deadline = now + tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local lease = qkey(q, 'lease')
local out = {}
for i = 5, #ARGV, 2 do
  local id, tok = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', job_key(id), 'st', 'tok', 'cr', 'dl')
  if f[1] == 'RUNNING' and f[2] == tok then
    local until_ms = deadline
    local dl = tonumber(f[4])
    if dl and dl + grace < until_ms then until_ms = dl + grace end
    redis.call('ZADD', lease, 'XX', int(until_ms), id)
    if dl and now >= dl then
      out[#out + 1] = 2
    elseif f[3] == '1' then
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  else
    out[#out + 1] = -1
  end
end
return out
