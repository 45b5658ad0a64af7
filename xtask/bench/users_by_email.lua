-- GET /api/v2/users-by-email with a backend's token. BENCH_TOKEN is the access token,
-- BENCH_USERS the number of users `bench-user-<i>@example.com` (1..N) the database holds; each
-- request asks for a different one, spread over all of them.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local reqs = {}
local n = 0

function init(args)
  local users = tonumber(os.getenv("BENCH_USERS"))
  local headers = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") }
  local tid = bench_tid()
  -- 4096 requests per thread, prepared once: formatting each request would cost the load
  -- generator more than the server.
  for k = 1, 4096 do
    local i = ((k * 7919 + tid * 104729) % users) + 1
    table.insert(reqs, wrk.format("GET", "/api/v2/users-by-email?email=bench-user-" .. i .. "%40example.com", headers))
  end
end

function request()
  n = n + 1
  return reqs[((n - 1) % #reqs) + 1]
end
