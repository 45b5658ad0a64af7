-- POST /passwordless/start with a distinct email per request:
--   bench-<BENCH_RUN>-<BENCH_PREFIX>-t<thread>-<n>@example.com
-- With BENCH_DELAY_MS set, every connection waits that long (on average; the fraction of a
-- millisecond is dithered) before each request: a paced, open-ish load below the peak.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local counter = 0
local prefix
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  prefix = "bench-" .. (os.getenv("BENCH_RUN") or "0") .. "-" .. (os.getenv("BENCH_PREFIX") or "start")
    .. "-t" .. bench_tid() .. "-"
  math.randomseed(os.time() + bench_tid())
end

function request()
  counter = counter + 1
  local body = '{"client_id":"sesame-dev","connection":"email","email":"' .. prefix .. counter
    .. '@example.com","send":"code"}'
  return wrk.format("POST", "/passwordless/start", headers, body)
end

local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pace then
  local whole = math.floor(pace)
  local frac = pace - whole
  function delay()
    if math.random() < frac then
      return whole + 1
    end
    return whole
  end
end
