-- Push a batch of jobs.
-- KEYS[1] events stream
-- ARGV[1] prefix, ARGV[2] stream hard cap, ARGV[3] default idempotency TTL ms,
-- then 12 fields per job: id, queue, kind, payload, version, max_attempts, run_at_ms (0 = now),
-- idempotency key ('' = none), key mode ('ttl' | 'wait'), key ttl ms (0 = default),
-- workflow id, extra JSON (correlation id, trace context; '' = none).
-- Returns a flat array: id, duplicate flag (0/1) per job; or the error STREAM_FULL.
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('XLEN', EVENTS) >= cap then
  return redis.error_reply('STREAM_FULL job-event stream is at its cap of ' .. cap .. ' entries')
end
local default_ttl = tonumber(ARGV[3])
local now = now_ms()
local out = {}
local woken = {}
local FIELDS = 12
local n = (#ARGV - 3) / FIELDS
for j = 0, n - 1 do
  local b = 3 + j * FIELDS
  local id, q, k, payload, version = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  local ma, run_at = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local ikey, imode, ittl = ARGV[b + 8], ARGV[b + 9], tonumber(ARGV[b + 10])
  local wf, extra = ARGV[b + 11], ARGV[b + 12]
  local ik = nil
  local existing = nil
  if ikey ~= '' then
    ik = P .. ':idem:' .. q .. ':' .. ikey
    existing = redis.call('GET', ik)
  end
  local jk = job_key(id)
  if not existing and redis.call('EXISTS', jk) == 1 then existing = id end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 1
  else
    redis.call('HSET', jk, 'id', id, 'q', q, 'k', k, 'p', payload, 'v', version, 'a', 0,
      'ma', ma, 'ca', now, 'ua', now)
    if wf ~= '' then redis.call('HSET', jk, 'wf', wf) end
    if extra ~= '' then redis.call('HSET', jk, 'x', extra) end
    if ik then
      redis.call('HSET', jk, 'ik', ikey, 'ikm', imode)
      if imode == 'wait' then
        redis.call('SET', ik, id)
      else
        local ttl = ittl
        if ttl <= 0 then ttl = default_ttl end
        redis.call('SET', ik, id, 'PX', ttl)
      end
    end
    redis.call('HINCRBY', qkey(q, 'stats'), 'pushed', 1)
    redis.call('SADD', P .. ':queues', q)
    if run_at > now then
      redis.call('HSET', jk, 'st', 'SCHEDULED', 'ra', run_at)
      redis.call('ZADD', qkey(q, 'sched'), run_at, id)
      emit(id, q, k, 'scheduled', 'SCHEDULED', 0, now, {'next', tostring(run_at)})
    else
      redis.call('HSET', jk, 'st', 'QUEUED')
      redis.call('RPUSH', qkey(q, 'ready'), id)
      emit(id, q, k, 'enqueued', 'QUEUED', 0, now)
      if not woken[q] then
        wake(q)
        woken[q] = true
      end
    end
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
return out
