-- Push a batch of jobs.
-- KEYS[1] events stream
-- ARGV[1] prefix, ARGV[2] stream hard cap, ARGV[3] default idempotency TTL ms,
-- then 13 fields per job: id, id given by the caller ('1') or generated ('0'), queue, kind,
-- payload, version, max_attempts, run_at_ms (0 = now), idempotency key ('' = none),
-- key mode ('ttl' | 'wait'), key ttl ms (0 = default), workflow id, extra JSON ('' = none).
-- Returns a flat array: id, duplicate flag (0/1) per job; or the error STREAM_FULL.
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('XLEN', EVENTS) >= cap then
  return redis.error_reply('STREAM_FULL job-event stream is at its cap of ' .. cap .. ' entries')
end
local default_ttl = tonumber(ARGV[3])
local now = now_ms()
local out = {}
local ready_ids, pushed = {}, {}
local FIELDS = 13
local n = (#ARGV - 3) / FIELDS
for j = 0, n - 1 do
  local b = 3 + j * FIELDS
  local id, explicit, q, k = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local run_at = tonumber(ARGV[b + 8])
  local ikey, imode = ARGV[b + 9], ARGV[b + 10]
  local ik = nil
  local existing = nil
  if ikey ~= '' then
    ik = P .. ':idem:' .. q .. ':' .. ikey
    existing = redis.call('GET', ik)
  end
  local jk = job_key(id)
  -- Generated ids are fresh ULIDs; only a caller's id can already exist.
  if not existing and explicit == '1' and redis.call('EXISTS', jk) == 1 then existing = id end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 1
  else
    local delayed = run_at > now
    local st = 'QUEUED'
    if delayed then st = 'SCHEDULED' end
    local fields = {'HSET', jk, 'q', q, 'k', k, 'p', ARGV[b + 5], 'ma', ARGV[b + 7], 'ca', now, 'st', st}
    if ARGV[b + 6] ~= '1' then
      fields[#fields + 1] = 'v'
      fields[#fields + 1] = ARGV[b + 6]
    end
    if explicit == '1' then
      fields[#fields + 1] = 'tok'
      fields[#fields + 1] = now
    end
    if delayed then
      fields[#fields + 1] = 'ra'
      fields[#fields + 1] = run_at
    end
    local wf, extra = ARGV[b + 12], ARGV[b + 13]
    if wf ~= '' then
      fields[#fields + 1] = 'wf'
      fields[#fields + 1] = wf
    end
    if extra ~= '' then
      fields[#fields + 1] = 'x'
      fields[#fields + 1] = extra
    end
    if ik then
      fields[#fields + 1] = 'ik'
      fields[#fields + 1] = ikey
      fields[#fields + 1] = 'ikm'
      fields[#fields + 1] = imode
      if imode == 'wait' then
        redis.call('SET', ik, id)
      else
        local ttl = tonumber(ARGV[b + 11])
        if ttl <= 0 then ttl = default_ttl end
        redis.call('SET', ik, id, 'PX', ttl)
      end
    end
    redis.call(unpack(fields))
    local qp = bucket(pushed, q)
    qp[1] = (qp[1] or 0) + 1
    if delayed then
      redis.call('ZADD', qkey(q, 'sched'), run_at, id)
      emit(id, q, k, 'scheduled', 'SCHEDULED', 0, now, {'next', tostring(run_at)})
    else
      local r = bucket(ready_ids, q)
      r[#r + 1] = id
      emit(id, q, k, 'enqueued', 'QUEUED', 0, now)
    end
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
for q, counts in pairs(pushed) do
  redis.call('HINCRBY', qkey(q, 'stats'), 'pushed', counts[1])
  redis.call('SADD', P .. ':queues', q)
end
for q, ids in pairs(ready_ids) do
  call_many('RPUSH', qkey(q, 'ready'), ids)
  wake(q)
end
return out
