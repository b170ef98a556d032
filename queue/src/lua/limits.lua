-- Set (replace) a queue's limits. Fetch reads them on every call, so they apply at once.
-- KEYS[1] events (unused); ARGV[1] prefix, ARGV[2] queue, then conc, kconc, rate, rwin,
-- krate, krwin ('' = no such limit), then the queue-wide conc and rate as set (this
-- partition's share of them is what `conc` and `rate` hold; '' = the same).
-- When jobs wait for their key's slot, `kdrain` starts fetch on a pass over the waiting
-- keys, a few per call, letting go as many as the new limit has room for.
local q = ARGV[2]
local key = qkey(q, 'limits')
local names = {'conc', 'kconc', 'rate', 'rwin', 'krate', 'krwin', 'conc_set', 'rate_set'}
redis.call('DEL', key)
local fields = {}
for i, name in ipairs(names) do
  if ARGV[2 + i] ~= '' then
    fields[#fields + 1] = name
    fields[#fields + 1] = ARGV[2 + i]
  end
end
if redis.call('EXISTS', qkey(q, 'kwaiting')) == 1 then
  fields[#fields + 1] = 'kdrain'
  fields[#fields + 1] = '1'
end
if #fields > 0 then redis.call('HSET', key, unpack(fields)) end
wake(q)
return #fields
