-- Append an application event (alerts, deliveries) under the same cap as job events.
-- KEYS[1] the application stream; ARGV[1] prefix, ARGV[2] hard cap, then field, value pairs.
-- Returns the entry id, or the error STREAM_FULL.
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('XLEN', KEYS[1]) >= cap then
  return redis.error_reply('STREAM_FULL application stream is at its cap of ' .. cap .. ' entries')
end
local args = {'XADD', KEYS[1], '*', 'ts', tostring(now_ms())}
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
return redis.call(unpack(args))
