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
local out = {}
local woken = {}
local FIELDS = 5
local n = (#ARGV - 1) / FIELDS
for j = 0, n - 1 do
  local b = 1 + j * FIELDS
  local id, tok, outcome, text, delay = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], tonumber(ARGV[b + 5])
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'st', 'tok', 'q', 'k', 'a', 'ma', 'cr')
  if not f[1] then
    out[#out + 1] = 'missing'
  elseif f[1] ~= 'RUNNING' or f[2] ~= tok then
    out[#out + 1] = 'stale'
  else
    local q, k, a, ma = f[3], f[4], tonumber(f[5]), tonumber(f[6])
    redis.call('ZREM', qkey(q, 'lease'), id)
    -- An operator asked to cancel: the job must not come back to run again.
    if f[7] == '1' and (outcome == 'retry' or outcome == 'snooze' or outcome == 'release') then
      outcome = 'cancel'
    end
    local status = 'ok'
    if outcome == 'ok' then
      redis.call('HSET', jk, 'st', 'SUCCEEDED', 'fa', now, 'ua', now)
      if text ~= '' then redis.call('HSET', jk, 'res', text) end
      redis.call('HDEL', jk, 'tok', 'cr')
      redis.call('ZADD', qkey(q, 'done'), now, id)
      redis.call('HINCRBY', qkey(q, 'stats'), 'succeeded', 1)
      emit(id, q, k, 'succeeded', 'SUCCEEDED', a, now)
    elseif outcome == 'retry' then
      if a >= ma then
        die(id, jk, q, k, a, text, now)
        status = 'dead'
      else
        local run_at = now + delay
        record_error(jk, a, text, now)
        redis.call('HSET', jk, 'st', 'RETRYING', 'ra', run_at, 'ua', now)
        redis.call('HDEL', jk, 'tok', 'cr')
        redis.call('ZADD', qkey(q, 'sched'), run_at, id)
        redis.call('HINCRBY', qkey(q, 'stats'), 'retried', 1)
        emit(id, q, k, 'retry_scheduled', 'RETRYING', a, now, {'err', text, 'next', tostring(run_at)})
      end
    elseif outcome == 'fail' then
      die(id, jk, q, k, a, text, now)
    elseif outcome == 'snooze' then
      local run_at = now + delay
      a = redis.call('HINCRBY', jk, 'a', -1)
      redis.call('HSET', jk, 'st', 'SCHEDULED', 'ra', run_at, 'ua', now)
      redis.call('HDEL', jk, 'tok', 'cr')
      redis.call('ZADD', qkey(q, 'sched'), run_at, id)
      emit(id, q, k, 'snoozed', 'SCHEDULED', a, now, {'next', tostring(run_at)})
    elseif outcome == 'cancel' then
      redis.call('HSET', jk, 'st', 'CANCELLED', 'fa', now, 'ua', now)
      redis.call('HDEL', jk, 'tok', 'cr')
      redis.call('ZADD', qkey(q, 'done'), now, id)
      redis.call('HINCRBY', qkey(q, 'stats'), 'cancelled', 1)
      emit(id, q, k, 'cancelled', 'CANCELLED', a, now)
    elseif outcome == 'release' then
      a = redis.call('HINCRBY', jk, 'a', -1)
      redis.call('HSET', jk, 'st', 'QUEUED', 'ua', now)
      redis.call('HDEL', jk, 'tok')
      redis.call('LPUSH', qkey(q, 'ready'), id)
      emit(id, q, k, 'released', 'QUEUED', a, now)
      if not woken[q] then
        wake(q)
        woken[q] = true
      end
    else
      return redis.error_reply('BAD_OUTCOME ' .. outcome)
    end
    out[#out + 1] = status
  end
end
return out
