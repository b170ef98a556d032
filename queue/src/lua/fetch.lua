-- Reap expired leases, promote due scheduled jobs, then lease up to N ready jobs (none while
-- the queue is paused: reaping and promotion go on, so nothing stalls or is lost).
-- KEYS[1] events
-- ARGV[1] prefix, ARGV[2] queue, ARGV[3] max jobs, ARGV[4] lease ms, ARGV[5] worker id,
-- ARGV[6] promote chunk, ARGV[7] reap chunk, ARGV[8] backoff base ms, ARGV[9] backoff cap ms,
-- ARGV[10] random seed, ARGV[11] priority aging ms, ARGV[12] the kind's execution timeout ms
-- (0 = none), ARGV[13] timeout grace ms (how long past its timeout an attempt's lease lasts).
-- Returns {wait_hint_ms (-1 = nothing pending), then 11 fields per leased job:
--   id, token, attempt, max_attempts, kind, payload, version, workflow id, extra, created_at,
--   the attempt's timeout ms (0 = none)}.
-- The queue's limits (hash `limits`: conc, kconc, rate, rwin, krate, krwin) bound what is
-- leased: at most `conc` running at once, `rate` started per `rwin` ms, and per limit key
-- `kconc` running and `krate` per `krwin` ms. A job over its key's limit waits without
-- spending an attempt: in its key's wait list (concurrency) or scheduled for when the budget
-- allows (rate).
local q = ARGV[2]
local want = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local worker = ARGV[5]
local rng = make_rng(ARGV[10])
local token_salt = ARGV[10]
local now = now_ms()
local now_s = int(now)
local ready, sched, lease = qkey(q, 'ready'), qkey(q, 'sched'), qkey(q, 'lease')
local ready_hi, ready_lo = qkey(q, 'ready:h'), qkey(q, 'ready:l')
local aging = tonumber(ARGV[11])
local paused = redis.call('EXISTS', qkey(q, 'paused')) == 1
local default_timeout = tonumber(ARGV[12])
local grace = tonumber(ARGV[13])
local limits_key = qkey(q, 'limits')
local lim = redis.call('HMGET', limits_key, 'conc', 'kconc', 'rate', 'rwin', 'krate', 'krwin', 'kdrain')
local conc, kconc = tonumber(lim[1]), tonumber(lim[2])
local rate, rwin = tonumber(lim[3]), tonumber(lim[4])
local krate, krwin = tonumber(lim[5]), tonumber(lim[6])

-- 1. Leases that expired: the attempt is spent; retry with backoff or die.
local expired = redis.call('ZRANGEBYSCORE', lease, '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
for _, id in ipairs(expired) do
  redis.call('ZREM', lease, id)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'st', 'a', 'ma', 'k', 'cr', 'dl', 'lk', 'kr')
  if f[1] == 'RUNNING' then
    local a, ma, k = tonumber(f[2]), tonumber(f[3]), f[4]
    local err = 'lease expired (worker ' .. (redis.call('HGET', jk, 'lb') or '?') .. ' stopped renewing)'
    if f[6] and now >= tonumber(f[6]) then
      err = 'timed out: the attempt ran past its execution timeout and was abandoned'
    end
    if f[8] then
      redis.call('HDEL', jk, 'kr')
      free_key_slot(q, f[7], id)
    end
    if f[5] == '1' then
      record_error(jk, a, err, now)
      local eid = emit(id, q, k, 'cancelled', a, 'err', err)
      redis.call('HSET', jk, 'st', 'CANCELLED', 'ua', now, 'le', eid)
      redis.call('HDEL', jk, 'cr')
      redis.call('RPUSH', qkey(q, 'done'), id)
      redis.call('HINCRBY', qkey(q, 'stats'), 'cancelled', 1)
    elseif a >= ma then
      die(id, jk, q, k, a, err, now)
    else
      local run_at = now + backoff(tonumber(ARGV[8]), tonumber(ARGV[9]), a, rng)
      record_error(jk, a, err, now)
      redis.call('HSET', jk, 'st', 'RETRYING', 'ra', run_at, 'ua', now)
      redis.call('ZADD', sched, run_at, id)
      redis.call('HINCRBY', qkey(q, 'stats'), 'retried', 1)
      emit(id, q, k, 'lease_expired', a, 'err', err, 'next', tostring(run_at))
    end
  end
end

-- 2. Scheduled and retrying jobs that fell due, oldest first, a bounded chunk.
local due = redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
if #due > 0 then
  redis.call('ZREMRANGEBYRANK', sched, 0, #due - 1)
  for _, id in ipairs(due) do
    local jk = job_key(id)
    local f = redis.call('HMGET', jk, 'st', 'a', 'k', 'pr')
    if f[1] == 'SCHEDULED' or f[1] == 'RETRYING' then
      redis.call('HSET', jk, 'st', 'QUEUED', 'ua', now)
      redis.call('HDEL', jk, 'ra')
      redis.call('RPUSH', ready_key(q, f[4]), id)
      emit(id, q, f[3], 'promoted', f[2])
    end
  end
end

-- 3. Lease ready jobs. Cancelled jobs left in the list as tombstones are skipped here
--    (at most 1000 per call, so a call stays bounded).
local out = {-1}
local leased = 0
local skipped = 0
local leases = {}
local lease_until = now + lease_ms
local deadline_s = int(lease_until)

-- The queue's own budgets: at most `conc` running (the lease set holds exactly the running
-- jobs, expired ones already reaped above) and `rate` started per window.
local rate_key, rate_tat, rate_interval = qkey(q, 'rl'), nil, nil
local held_back, conc_room = nil, nil
if conc then
  conc_room = conc - redis.call('ZCARD', lease)
  if conc_room < want then want = math.max(0, conc_room) end
end
if rate and rwin then
  local room
  room, rate_tat, rate_interval = gcra_room(rate_key, rate, rwin, now)
  if room < want then
    want = math.max(0, room)
    if room <= 0 then held_back = gcra_next(rate_tat, rate_interval, rwin, now) end
  end
end

-- After the limits changed while jobs waited for their keys (`kdrain` holds how many keys
-- of `kwaiting` were already looked at, plus one): jobs whose key now has room go back to
-- ready, a few keys per call. Otherwise only a job's end lets the next of its key go, one for
-- one, so the key's order holds.
if lim[7] then
  local kwaiting = qkey(q, 'kwaiting')
  local offset = tonumber(lim[7]) - 1
  local keys = redis.call('ZRANGE', kwaiting, offset, offset + 9)
  for _, lk in ipairs(keys) do
    local room = 100
    if kconc then room = math.min(room, kconc - key_running(q, lk)) end
    for _ = 1, room do
      if not release_key_waiter(q, lk) then break end
    end
    if redis.call('LLEN', qkey(q, 'kwait:' .. lk)) == 0 then
      redis.call('ZREM', kwaiting, lk)
    else
      offset = offset + 1
    end
  end
  if #keys == 0 then
    redis.call('HDEL', limits_key, 'kdrain')
  else
    redis.call('HSET', limits_key, 'kdrain', int(offset + 1))
  end
end

local throttled_until = {}

local function lease_one(id)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'st', 'k', 'ma', 'p', 'v', 'wf', 'x', 'ca', 'ikw', 'a', 'tok', 'to', 'lk', 'tb', 'dl')
  local lk = f[13]
  if f[1] == 'QUEUED' and lk and kconc and key_running(q, lk) >= kconc then
    -- Its key is full: it waits, in order, for one of the key's jobs to end.
    redis.call('HSET', jk, 'kw', '1')
    redis.call('RPUSH', qkey(q, 'kwait:' .. lk), id)
    redis.call('ZADD', qkey(q, 'kwaiting'), 'NX', now, lk)
    redis.call('HINCRBY', qkey(q, 'stats'), 'kwait', 1)
    skipped = skipped + 1
    return
  end
  if f[1] == 'QUEUED' and lk and krate and krwin then
    local key = qkey(q, 'krl:' .. lk)
    local room, tat, interval = gcra_room(key, krate, krwin, now)
    if room < 1 then
      -- Its key's budget is spent: it runs when the budget allows, its attempt unspent.
      -- Several held back in one call are spaced one interval apart, in their order.
      local run_at = now + gcra_next(tat, interval, krwin, now)
      local last = throttled_until[lk]
      if last and run_at <= last then run_at = math.ceil(last + interval) end
      throttled_until[lk] = run_at
      redis.call('HSET', jk, 'st', 'SCHEDULED', 'ra', run_at, 'ua', now_s)
      redis.call('ZADD', sched, run_at, id)
      emit(id, q, f[2], 'throttled', f[10], 'next', tostring(run_at))
      skipped = skipped + 1
      return
    end
    gcra_charge(key, tat, interval, 1, now)
  end
  if f[1] == 'QUEUED' then
    local a = int((tonumber(f[10]) or 0) + 1)
    -- The counter keeps tokens of one job distinct; the fetch call's random part keeps them
    -- distinct even if Redis was restored from an older snapshot and the counter went back.
    local tok = int((tonumber(string.match(f[11] or '', '^%d+')) or 0) + 1) .. '.' .. token_salt
    local timeout = tonumber(f[12]) or default_timeout
    if timeout > 0 then
      -- The lease cannot outlast the timeout (plus the grace to stop cooperatively).
      local dl = now + timeout
      redis.call('HSET', jk, 'st', 'RUNNING', 'a', a, 'tok', tok, 'lb', worker, 'ua', now_s, 'dl', int(dl))
      leases[#leases + 1] = int(math.min(lease_until, dl + grace))
    else
      redis.call('HSET', jk, 'st', 'RUNNING', 'a', a, 'tok', tok, 'lb', worker, 'ua', now_s)
      -- An earlier attempt's deadline (its kind's timeout since removed) must not bind this one.
      if f[15] then redis.call('HDEL', jk, 'dl') end
      leases[#leases + 1] = deadline_s
    end
    leases[#leases + 1] = id
    -- Counted against its key (`kr` says so) whether or not a per-key limit is set now, so a
    -- limit set later binds the jobs already running too.
    if lk then
      redis.call('SADD', qkey(q, 'krun:' .. lk), id)
      redis.call('HSET', jk, 'kr', '1')
    end
    -- A key that holds only while the job waits is released when it starts.
    if f[9] and redis.call('GET', f[9]) == id then redis.call('DEL', f[9]) end
    emit(id, q, f[2], 'started', a, 'w', worker)
    leased = leased + 1
    out[#out + 1] = id
    out[#out + 1] = tok
    out[#out + 1] = a
    out[#out + 1] = f[3]
    out[#out + 1] = f[2]
    out[#out + 1] = f[4]
    out[#out + 1] = f[5] or '1'
    out[#out + 1] = f[6] or ''
    out[#out + 1] = f[7] or ''
    out[#out + 1] = f[8] or '0'
    out[#out + 1] = int(timeout)
  else
    skipped = skipped + 1
    -- A cancelled job of a limited key may have been let go from its key's wait list to
    -- take a free slot: the next one waiting takes it instead.
    if lk and kconc and key_running(q, lk) < kconc then release_key_waiter(q, lk) end
    if f[14] == '1' then
      redis.call('HINCRBY', qkey(q, 'stats'), 'tomb', -1)
      redis.call('HDEL', jk, 'tb')
    end
  end
end

local prioritised = not paused and redis.call('EXISTS', ready_hi, ready_lo) > 0
if not prioritised then
  -- Only normal jobs: one list, taken in batches.
  while not paused and leased < want and skipped < 1000 do
    local ids = redis.call('LPOP', ready, want - leased)
    if not ids then break end
    for _, id in ipairs(ids) do lease_one(id) end
  end
else
  -- Several levels: each slot goes to the list whose head has waited longest, counting a
  -- high job as having waited `aging` ms more and a low one `aging` ms less. A higher level
  -- goes first, and no job waits more than `aging` ms per level behind a busier one.
  local lists = {ready_hi, ready, ready_lo}
  local boost = {aging, 0, -aging}
  local function head_score(i)
    local id = redis.call('LINDEX', lists[i], 0)
    if not id then return nil end
    local t = redis.call('HMGET', job_key(id), 'ua', 'ca')
    return now - (tonumber(t[1]) or tonumber(t[2]) or now) + boost[i]
  end
  local scores = {head_score(1), head_score(2), head_score(3)}
  while leased < want and skipped < 1000 do
    local best = nil
    for i = 1, 3 do
      if scores[i] and (not best or scores[i] > scores[best]) then best = i end
    end
    if not best then break end
    lease_one(redis.call('LPOP', lists[best]))
    scores[best] = head_score(best)
  end
end
if #leases > 0 then call_many('ZADD', lease, leases) end
if rate_tat and leased > 0 then gcra_charge(rate_key, rate_tat, rate_interval, leased, now) end

-- Another idle worker may take what is left. A paused queue wakes nobody: resuming does.
local more_ready = not paused and redis.call('EXISTS', ready, ready_hi, ready_lo) > 0
-- At a queue limit, the rest waits for a slot (a completion wakes a worker) or the budget.
local limited = (conc_room and leased >= conc_room) or held_back
if more_ready and not limited then wake(q) end

-- How long an idle worker may block before something here falls due (only an idle worker,
-- one that got nothing, needs to know).
local hint = -1
if leased > 0 then
  out[1] = 0
  return out
end
local first_sched = redis.call('ZRANGE', sched, 0, 0, 'WITHSCORES')
if first_sched[2] and not paused then hint = math.max(0, tonumber(first_sched[2]) - now) end
local first_lease = redis.call('ZRANGE', lease, 0, 0, 'WITHSCORES')
if first_lease[2] then
  local l = math.max(0, tonumber(first_lease[2]) - now)
  if hint < 0 or l < hint then hint = l end
end
if more_ready and held_back then
  if hint < 0 or held_back < hint then hint = held_back end
elseif more_ready and not limited then
  hint = 0
end
out[1] = hint
return out
