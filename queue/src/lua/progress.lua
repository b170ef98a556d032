-- Record how far a running attempt has got (a percent and a message) and tell subscribers.
-- KEYS[1] events; ARGV[1] prefix, ARGV[2] job id, ARGV[3] lease token, ARGV[4] percent
-- (0-100), ARGV[5] message.
-- Returns 1 when recorded, 0 when the job is not running under this token (nothing written).
local id = ARGV[2]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'st', 'tok', 'q', 'k', 'a')
if f[1] ~= 'RUNNING' or f[2] ~= ARGV[3] then return 0 end
-- Kept with its attempt, so a retry shows none until it reports its own.
redis.call('HSET', jk, 'pg', ARGV[4], 'pgm', ARGV[5], 'pga', f[5])
emit(id, f[3], f[4], 'progress', f[5], 'pct', ARGV[4], 'msg', ARGV[5])
return 1
