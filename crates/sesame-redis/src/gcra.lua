-- GCRA over every bucket of one request, all or nothing (see src/gcra.rs for the arithmetic).
--
-- KEYS[i]        the bucket of rule i; all in one hash slot.
-- ARGV[1], [2]   the caller's now: whole Unix seconds, then nanoseconds 0..999999999.
-- ARGV[3i]       rule i's window in nanoseconds (at most 2^53 - 1).
-- ARGV[3i+1]     what rule i takes: max(cost, 1) * emission interval, in nanoseconds.
-- ARGV[3i+2]     "1" when rule i writes (cost > 0), "0" when it only looks.
--
-- A bucket's value is its theoretical arrival time (TAT) as "seconds:nanoseconds". Lua numbers
-- are doubles, exact only below 2^53, and a nanosecond epoch (~1.8e18) is not; so the script
-- only ever works with offsets from now (at most a window, below 2^53) and keeps seconds and
-- nanoseconds apart in what it stores.
--
-- Returns {all_allowed, offset_1, ..., offset_n}: offset_i = max(TAT_i - now, 0) before this
-- request, from which the caller derives remaining, reset and retry exactly.
local now_s = tonumber(ARGV[1])
local now_n = tonumber(ARGV[2])
local n = #KEYS
local result = {1}
for i = 1, n do
  local offset = 0
  local stored = redis.call('GET', KEYS[i])
  if stored then
    local s, ns = string.match(stored, '^(%-?%d+):(%d+)$')
    if s then
      offset = (tonumber(s) - now_s) * 1000000000 + (tonumber(ns) - now_n)
      if offset < 0 then
        offset = 0
      end
    end
  end
  result[i + 1] = offset
  if offset + tonumber(ARGV[3 * i + 1]) > tonumber(ARGV[3 * i]) then
    result[1] = 0
  end
end
if result[1] == 1 then
  for i = 1, n do
    if ARGV[3 * i + 2] == '1' then
      local ahead = result[i + 1] + tonumber(ARGV[3 * i + 1])
      local nanos = now_n + ahead
      local carry = math.floor(nanos / 1000000000)
      -- The key lives until the bucket is full again, measured on the caller's clock.
      redis.call('SET', KEYS[i], string.format('%d:%d', now_s + carry, nanos - carry * 1000000000),
        'PX', math.max(1, math.ceil(ahead / 1000000)))
    end
  end
end
return result
