-- Apply a batch of handler outcomes. Each is refused (not applied) unless the job is still
-- RUNNING under the same lease token.
-- KEYS[1] events
-- ARGV[1] prefix, then 5 fields per outcome: id, token, outcome, text, delay ms.
-- outcome: ok (text = result JSON) | retry (text = error, delay = backoff) | fail (permanent)
--          | snooze (delay) | cancel | release (graceful shutdown; the attempt is given back).
-- A pending cancel request turns retry, snooze and release into cancel.
-- Returns per outcome: 'ok', 'stale' (token mismatch or not running), 'dead' (retry refused:
-- attempts exhausted, so the job died), 'missing'.
local now = now_ms()
local now_s = int(now)
local out = {}
local unleased, finished, counts, released = {}, {}, {}, {}
local FIELDS = 5
local n = (#ARGV - 1) / FIELDS

-- Refuse a malformed batch before anything is written.
local KNOWN = {ok = true, retry = true, fail = true, snooze = true, cancel = true, release = true}
for j = 0, n - 1 do
  local outcome = ARGV[1 + j * FIELDS + 3]
  if not KNOWN[outcome] then return redis.error_reply('BAD_OUTCOME ' .. tostring(outcome)) end
end

local function count(q, name)
  local c = bucket(counts, q)
  c[name] = (c[name] or 0) + 1
end

for j = 0, n - 1 do
  local b = 1 + j * FIELDS
  local id, tok, outcome, text = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'st', 'tok', 'q', 'k', 'a', 'ma', 'cr', 'pr', 'lk', 'kr')
  if not f[1] then
    out[#out + 1] = 'missing'
  elseif f[1] ~= 'RUNNING' or f[2] ~= tok then
    out[#out + 1] = 'stale'
  else
    local q, k, a_s = f[3], f[4], f[5]
    local a, ma = tonumber(a_s), tonumber(f[6])
    local lease_ids = bucket(unleased, q)
    lease_ids[#lease_ids + 1] = id
    if f[10] then
      redis.call('HDEL', jk, 'kr')
      free_key_slot(q, f[9], id)
    end
    -- An operator asked to cancel: the job must not come back to run again.
    if f[7] == '1' and (outcome == 'retry' or outcome == 'snooze' or outcome == 'release') then
      outcome = 'cancel'
    end
    local status = 'ok'
    if outcome == 'ok' then
      local eid = emit(id, q, k, 'succeeded', a_s)
      if text ~= '' then
        redis.call('HSET', jk, 'st', 'SUCCEEDED', 'ua', now_s, 'le', eid, 'res', text)
      else
        redis.call('HSET', jk, 'st', 'SUCCEEDED', 'ua', now_s, 'le', eid)
      end
      local d = bucket(finished, q)
      d[#d + 1] = id
      count(q, 'succeeded')
    elseif outcome == 'retry' then
      if a >= ma then
        die(id, jk, q, k, a, text, now)
        status = 'dead'
      else
        local run_at = now + tonumber(ARGV[b + 5])
        record_error(jk, a, text, now)
        redis.call('HSET', jk, 'st', 'RETRYING', 'ra', run_at, 'ua', now)
        redis.call('ZADD', qkey(q, 'sched'), run_at, id)
        count(q, 'retried')
        emit(id, q, k, 'retry_scheduled', a, 'err', text, 'next', tostring(run_at))
      end
    elseif outcome == 'fail' then
      die(id, jk, q, k, a, text, now)
    elseif outcome == 'snooze' then
      local run_at = now + tonumber(ARGV[b + 5])
      a = a - 1
      redis.call('HSET', jk, 'st', 'SCHEDULED', 'a', a, 'ra', run_at, 'ua', now)
      redis.call('ZADD', qkey(q, 'sched'), run_at, id)
      if text ~= '' then
        -- Why it waits (an open breaker, a Retry-After) shows as its last error meanwhile.
        redis.call('HSET', jk, 'err', text)
        emit(id, q, k, 'snoozed', a, 'err', text, 'next', tostring(run_at))
      else
        emit(id, q, k, 'snoozed', a, 'next', tostring(run_at))
      end
    elseif outcome == 'cancel' then
      local eid = emit(id, q, k, 'cancelled', a)
      redis.call('HSET', jk, 'st', 'CANCELLED', 'ua', now, 'le', eid)
      local d = bucket(finished, q)
      d[#d + 1] = id
      count(q, 'cancelled')
    else -- release
      a = a - 1
      redis.call('HSET', jk, 'st', 'QUEUED', 'a', a, 'ua', now)
      redis.call('LPUSH', ready_key(q, f[8]), id)
      released[q] = true
      emit(id, q, k, 'released', a)
    end
    out[#out + 1] = status
  end
end
for q, ids in pairs(unleased) do
  call_many('ZREM', qkey(q, 'lease'), ids)
  -- A queue with limits may have jobs waiting for the slots just freed.
  if redis.call('EXISTS', qkey(q, 'limits')) == 1 then wake(q) end
end
for q, ids in pairs(finished) do call_many('RPUSH', qkey(q, 'done'), ids) end
for q, c in pairs(counts) do
  for name, value in pairs(c) do redis.call('HINCRBY', qkey(q, 'stats'), name, value) end
end
for q in pairs(released) do wake(q) end
return out
