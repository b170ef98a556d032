-- Trim an event stream behind its slowest consumer group and a resume window.
-- Near the hard cap the resume window gives way; what a group has not yet acknowledged never does.
-- Records the newest id removed, so a reader can tell that its cursor fell behind the trim.
-- KEYS[1] the stream to trim (the job-event stream or the application stream)
-- ARGV[1] prefix, ARGV[2] resume window ms, ARGV[3] hard cap.
-- Returns the number of entries removed.
local stream = KEYS[1]
local cap = tonumber(ARGV[3])
local len = redis.call('XLEN', stream)
if len == 0 then return 0 end
local near_cap = cap > 0 and len * 10 >= cap * 9
local window_point = tostring(now_ms() - tonumber(ARGV[2])) .. '-0'
local marks = P .. ':trimmed'

local function note_removed(id)
  local prev = redis.call('HGET', marks, stream)
  if not prev or sid_lt(prev, id) then redis.call('HSET', marks, stream, id) end
end

local function trim_before(point)
  local last = redis.call('XREVRANGE', stream, '(' .. point, '-', 'COUNT', 1)
  if #last == 0 then return 0 end
  note_removed(last[1][1])
  return redis.call('XTRIM', stream, 'MINID', point)
end

local safe = groups_safe_point(stream)
if safe then
  local point = safe
  if not near_cap and sid_lt(window_point, safe) then point = window_point end
  return trim_before(point)
end
if near_cap then
  -- No group depends on this stream: keep the newest 80%. The mark is set just below the
  -- first entry kept (a reader exactly at the last removed entry may be told to reload).
  local removed = redis.call('XTRIM', stream, 'MAXLEN', math.floor(cap * 8 / 10))
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #first > 0 then
    local ms, seq = parse_sid(first[1][1])
    if seq > 0 then note_removed(ms .. '-' .. (seq - 1)) else note_removed((ms - 1) .. '-18446744073709551615') end
  end
  return removed
end
return trim_before(window_point)
