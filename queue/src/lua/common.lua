-- Shared helpers, prepended to every script of the engine.
-- Every key of a deployment starts with the `{prefix}` hash tag, so keys built here
-- from `P` live in the same cluster slot as the KEYS the caller declared.
-- Every script is called with KEYS[1] = the job-event stream (or the stream it works on),
-- KEYS[2] = its partition's fence and ARGV[1] = the key prefix.
local P = ARGV[1]
local EVENTS = KEYS[1]

-- While a slot moves between cluster nodes its keys are split between them, and a script would
-- see the moved ones as missing (only declared keys are checked by Redis). The fence is set
-- before a move and removed after it; declared, it is either here or the call is redirected
-- to where it is.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('FENCED this partition is being moved between cluster nodes; retry')
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers go to redis.call as strings: a Lua number is formatted with "%.17g", which costs
-- more than the command it is an argument of.
local function int(n) return string.format('%d', n) end

local function job_key(id) return P .. ':job:' .. id end
local function qkey(q, part) return P .. ':q:' .. q .. ':' .. part end

-- A job's priority is its hash field `pr`: 'h' (high), absent (normal) or 'l' (low). Each
-- level has a ready list of its own; normal jobs use the plain `ready` list, so a deployment
-- that never sets a priority runs exactly as before.
local function ready_key(q, pr)
  if pr == 'h' then return qkey(q, 'ready:h') end
  if pr == 'l' then return qkey(q, 'ready:l') end
  return qkey(q, 'ready')
end

-- Appends one job event; returns its stream id. The only writer of the job-event stream.
-- The event's time is its stream id, and the state it enters follows from its name, so neither
-- is stored. Extra field, value pairs (wf, err, next, fp, w) follow `a`.
local function emit(id, q, k, ev, a, ...)
  -- `a` is absent (false) on a job never started. The workflow run rides on every event so a
  -- subscriber filtered to its runs needs no lookup per transition.
  local wf = redis.call('HGET', job_key(id), 'wf')
  if wf then
    return redis.call('XADD', EVENTS, '*', 'id', id, 'q', q, 'k', k, 'ev', ev, 'a', a or '0', 'wf', wf, ...)
  end
  return redis.call('XADD', EVENTS, '*', 'id', id, 'q', q, 'k', k, 'ev', ev, 'a', a or '0', ...)
end

-- Calls `cmd key` with many members in bounded slices (unpack has a stack limit).
local function call_many(cmd, key, items)
  local n = #items
  local i = 1
  while i <= n do
    local last = math.min(i + 999, n)
    redis.call(cmd, key, unpack(items, i, last))
    i = last + 1
  end
end

-- Per-queue batch accumulators, applied once at the end of a script.
local function bucket(t, q)
  local b = t[q]
  if not b then
    b = {}
    t[q] = b
  end
  return b
end

-- Park-Miller generator seeded by the caller: scripts must not depend on Redis's own PRNG.
local function make_rng(seed)
  local s = tonumber(seed) % 2147483646 + 1
  return function()
    s = (s * 16807) % 2147483647
    return s / 2147483647
  end
end

-- Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(attempt-1))].
local function backoff(base, cap, attempt, rng)
  local ceiling = base * (2 ^ (math.max(attempt, 1) - 1))
  if ceiling > cap then ceiling = cap end
  return math.floor(ceiling * rng())
end

-- Kind plus the error text with numbers, ids and quoted values stripped, hashed.
local function fingerprint(kind, err)
  local s = string.lower(err or '')
  s = string.gsub(s, "'[^']*'", "'#'")
  s = string.gsub(s, '"[^"]*"', '"#"')
  s = string.gsub(s, '[%w%-_%.:]*%d[%w%-_%.:]*', '#')
  s = string.gsub(s, '%s+', ' ')
  s = string.sub(s, 1, 240)
  return string.sub(redis.sha1hex(kind .. '\n' .. s), 1, 16)
end

-- Appends one attempt's outcome to the job's bounded error history (JSON array).
local function record_error(jk, attempt, err, now)
  local raw = redis.call('HGET', jk, 'errs')
  local hist = {}
  if raw and raw ~= '' then hist = cjson.decode(raw) end
  hist[#hist + 1] = {attempt = tonumber(attempt), error = err, at = now}
  while #hist > 50 do table.remove(hist, 1) end
  redis.call('HSET', jk, 'errs', cjson.encode(hist), 'err', err)
end

local function wake(q)
  local wk = qkey(q, 'wake')
  if redis.call('LLEN', wk) < 1 then redis.call('RPUSH', wk, '1') end
end

-- Moves a job to the dead set with its fingerprint. Caller has removed it from where it was.
local function die(id, jk, q, k, a, err, now)
  local fp = fingerprint(k, err)
  record_error(jk, a, err, now)
  redis.call('HSET', jk, 'st', 'DEAD', 'da', now, 'ua', now, 'fp', fp)
  redis.call('HDEL', jk, 'ra', 'cr')
  redis.call('ZADD', qkey(q, 'dead'), now, id)
  redis.call('ZADD', qkey(q, 'deadfp:' .. fp), now, id)
  redis.call('HINCRBY', qkey(q, 'deadfp'), fp, 1)
  redis.call('HSET', qkey(q, 'deadfp:sample'), fp, err)
  redis.call('HSET', qkey(q, 'deadfp:last'), fp, now)
  redis.call('HINCRBY', qkey(q, 'stats'), 'dead', 1)
  redis.call('HINCRBY', qkey(q, 'stats'), 'failed', 1)
  emit(id, q, k, 'died', a, 'err', err, 'fp', fp)
end

-- Takes a job out of the dead set and its fingerprint group.
local function forget_dead(q, id, fp)
  redis.call('ZREM', qkey(q, 'dead'), id)
  if fp then
    redis.call('ZREM', qkey(q, 'deadfp:' .. fp), id)
    if redis.call('HINCRBY', qkey(q, 'deadfp'), fp, -1) <= 0 then
      redis.call('HDEL', qkey(q, 'deadfp'), fp)
      redis.call('HDEL', qkey(q, 'deadfp:sample'), fp)
      redis.call('HDEL', qkey(q, 'deadfp:last'), fp)
    end
  end
end

-- Stream ids compare as (ms, seq) pairs.
local function parse_sid(sid)
  local dash = string.find(sid, '-', 1, true)
  if not dash then return tonumber(sid), 0 end
  return tonumber(string.sub(sid, 1, dash - 1)), tonumber(string.sub(sid, dash + 1))
end

local function sid_lt(a, b)
  local am, as = parse_sid(a)
  local bm, bs = parse_sid(b)
  return am < bm or (am == bm and as < bs)
end

-- The oldest stream id some consumer group still needs (entries before it are safe to drop),
-- or nil when no group is registered.
local function groups_safe_point(stream)
  if redis.call('EXISTS', stream) == 0 then return nil end
  local groups = redis.call('XINFO', 'GROUPS', stream)
  local safe = nil
  for _, g in ipairs(groups) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    local point
    if tonumber(info['pending']) > 0 then
      local summary = redis.call('XPENDING', stream, info['name'])
      point = summary[2]
    else
      local ms, seq = parse_sid(info['last-delivered-id'])
      point = ms .. '-' .. (seq + 1)
    end
    if safe == nil or sid_lt(point, safe) then safe = point end
  end
  return safe
end

-- Per-key limits. A job may carry a limit key (`lk`: a sensor, a webhook host); the queue's
-- limits hash says how many jobs of one key may run at once (`kconc`) and how many may start
-- per window (`krate` per `krwin` ms). The running jobs of a key are the set `krun:<key>`
-- (each flagged `kr`); a job that found its key full waits, still
-- QUEUED, in `kwait:<key>` (flag `kw`), and the key is in the `kwaiting` set (scored by when
-- it first waited) until none waits.

-- Jobs of `lk` still running. A member that no longer runs (a path that did not say so, a
-- lost job hash) is dropped here, so a key can never stay full by mistake. Bounded by the
-- set's size, which the limit bounds.
local function key_running(q, lk)
  local run = qkey(q, 'krun:' .. lk)
  local members = redis.call('SMEMBERS', run)
  local n = 0
  for _, id in ipairs(members) do
    if redis.call('HGET', job_key(id), 'st') == 'RUNNING' then
      n = n + 1
    else
      redis.call('SREM', run, id)
    end
  end
  return n
end

-- The oldest job waiting for `lk` goes back to the front of its ready list.
local function release_key_waiter(q, lk)
  local waiting = qkey(q, 'kwait:' .. lk)
  local id = redis.call('LPOP', waiting)
  -- No waiter: the key left `kwaiting` when its last one did.
  if not id then return nil end
  redis.call('HINCRBY', qkey(q, 'stats'), 'kwait', -1)
  local jk = job_key(id)
  redis.call('HDEL', jk, 'kw')
  redis.call('LPUSH', ready_key(q, redis.call('HGET', jk, 'pr')), id)
  wake(q)
  if redis.call('LLEN', waiting) == 0 then redis.call('ZREM', qkey(q, 'kwaiting'), lk) end
  return id
end

-- A job of `lk` stopped running: its slot is free for the next one waiting.
local function free_key_slot(q, lk, id)
  redis.call('SREM', qkey(q, 'krun:' .. lk), id)
  release_key_waiter(q, lk)
end

-- GCRA budgets (`limit` per `win` ms, bursts up to `limit`) kept as the theoretical arrival
-- time under `key`, on Redis's clock. Answers how many may start now, and the state to
-- charge against.
local function gcra_room(key, limit, win, now)
  local interval = win / limit
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  return math.floor((win - (tat - now)) / interval), tat, interval
end

local function gcra_charge(key, tat, interval, n, now)
  local new_tat = tat + interval * n
  redis.call('SET', key, tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
end

-- When the next start fits a budget whose room is 0.
local function gcra_next(tat, interval, win, now)
  return math.max(1, math.ceil(tat + interval - win - now))
end
