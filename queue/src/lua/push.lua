-- Push a batch of jobs.
-- KEYS[1] events stream
-- ARGV[1] prefix, ARGV[2] stream hard cap, ARGV[3] default idempotency TTL ms,
-- then 16 fields per job: id, id given by the caller ('1') or generated ('0'), queue, kind,
-- payload, version, max_attempts, run_at_ms (0 = now), idempotency key ('' = none),
-- key mode ('ttl' | 'wait'), key ttl ms (0 = default), workflow id, extra JSON ('' = none),
-- priority ('h', 'l', or '' = normal), execution timeout ms ('' = the kind's), limit key
-- ('' = none: the key the queue's per-key concurrency and rate limits count by).
-- Returns a flat array: id, duplicate flag (0/1) per job; or the error STREAM_FULL.
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('XLEN', EVENTS) >= cap then
  return redis.error_reply('STREAM_FULL job-event stream is at its cap of ' .. cap .. ' entries')
end
local default_ttl = tonumber(ARGV[3])
local now = now_ms()
local now_s = int(now)
local FIELDS = 16

-- The job hash with every optional field; also takes the idempotency key.
local function write_full(jk, b, st, ik)
  local fields = {'HSET', jk, 'q', ARGV[b + 3], 'k', ARGV[b + 4], 'p', ARGV[b + 5],
    'ma', ARGV[b + 7], 'ca', now, 'st', st}
  local function add(name, value)
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
  if ARGV[b + 6] ~= '1' then add('v', ARGV[b + 6]) end
  -- A job pushed again under a known id (after Redis lost it) starts its lease tokens past
  -- any an earlier incarnation handed out.
  if ARGV[b + 2] == '1' then add('tok', now) end
  if st == 'SCHEDULED' then add('ra', ARGV[b + 8]) end
  if ARGV[b + 12] ~= '' then add('wf', ARGV[b + 12]) end
  if ARGV[b + 13] ~= '' then add('x', ARGV[b + 13]) end
  if ARGV[b + 14] ~= '' then add('pr', ARGV[b + 14]) end
  if ARGV[b + 15] ~= '' then add('to', ARGV[b + 15]) end
  if ARGV[b + 16] ~= '' then add('lk', ARGV[b + 16]) end
  if ik then
    add('ik', ARGV[b + 9])
    add('ikm', ARGV[b + 10])
    if ARGV[b + 10] == 'wait' then
      -- The key's full name, so fetch and cancel can release it without rebuilding it.
      add('ikw', ik)
      redis.call('SET', ik, ARGV[b + 1])
    else
      local ttl = tonumber(ARGV[b + 11])
      if ttl <= 0 then ttl = default_ttl end
      redis.call('SET', ik, ARGV[b + 1], 'PX', ttl)
    end
  end
  redis.call(unpack(fields))
end

local out = {}
-- Ready ids by ready list, and the queue of each list (to wake its workers).
local ready_ids, list_queue, pushed = {}, {}, {}
local n = (#ARGV - 3) / FIELDS
for j = 0, n - 1 do
  local b = 3 + j * FIELDS
  local id, explicit, q, k = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local run_at = tonumber(ARGV[b + 8])
  local ik, existing = nil, nil
  if ARGV[b + 9] ~= '' then
    ik = P .. ':idem:' .. q .. ':' .. ARGV[b + 9]
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
    if not delayed and not ik and explicit ~= '1' and ARGV[b + 6] == '1'
        and ARGV[b + 12] == '' and ARGV[b + 13] == '' and ARGV[b + 14] == ''
        and ARGV[b + 15] == '' and ARGV[b + 16] == '' then
      -- The common shape, without building an argument table.
      redis.call('HSET', jk, 'q', q, 'k', k, 'p', ARGV[b + 5], 'ma', ARGV[b + 7], 'ca', now_s, 'st', 'QUEUED')
    elseif delayed then
      write_full(jk, b, 'SCHEDULED', ik)
    else
      write_full(jk, b, 'QUEUED', ik)
    end
    local qp = bucket(pushed, q)
    qp[1] = (qp[1] or 0) + 1
    if delayed then
      redis.call('ZADD', qkey(q, 'sched'), run_at, id)
      emit(id, q, k, 'scheduled', 0, 'next', tostring(run_at))
    else
      local list = ready_key(q, ARGV[b + 14])
      local r = bucket(ready_ids, list)
      list_queue[list] = q
      r[#r + 1] = id
      emit(id, q, k, 'enqueued', '0')
    end
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
for q, counts in pairs(pushed) do
  redis.call('HINCRBY', qkey(q, 'stats'), 'pushed', counts[1])
  redis.call('SADD', P .. ':queues', q)
end
for list, ids in pairs(ready_ids) do
  call_many('RPUSH', list, ids)
  wake(list_queue[list])
end
return out
