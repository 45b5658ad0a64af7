-- First use of a single-use value, judged on the caller's clock (not Redis's, which tests
-- cannot move): a plain SET NX would keep refusing the value until Redis's own clock says it
-- expired.
--
-- KEYS[1]        the entry.
-- ARGV[1], [2]   the caller's now: whole Unix seconds, then nanoseconds.
-- ARGV[3], [4]   until: whole Unix seconds, then nanoseconds.
-- ARGV[5]        milliseconds from now until `until`, at least 1: the entry's lifetime in Redis.
--
-- Returns 1 for the first use (now recorded), 0 when the value was seen and has not expired.
local stored = redis.call('GET', KEYS[1])
if stored then
  local s, ns = string.match(stored, '^(%-?%d+):(%d+)$')
  if s then
    local now_s, until_s = tonumber(ARGV[1]), tonumber(s)
    if until_s > now_s or (until_s == now_s and tonumber(ns) > tonumber(ARGV[2])) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[3] .. ':' .. ARGV[4], 'PX', ARGV[5])
return 1
