-- POST /passwordless/start with a distinct email per request:
--   bench-<BENCH_RUN>-<BENCH_PREFIX>-t<thread>-<n>@example.com
-- With BENCH_DELAY_MS set, every connection waits that long on average before each request (an
-- exponential gap): a paced, open-ish load below the peak, close to Poisson arrivals.
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
  -- The gaps are exponential with mean `pace` (whole milliseconds, the fraction dithered): with
  -- a fixed gap, the connections, which all start together, stay in step and the server sees
  -- bursts of one request per connection instead of a steady rate.
  function delay()
    local gap = -pace * math.log(1 - math.random())
    local whole = math.floor(gap)
    if math.random() < gap - whole then
      return whole + 1
    end
    return whole
  end
end
