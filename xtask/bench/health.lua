-- Baseline: GET /health. The request goes through a Lua `request()` like the other scripts, so
-- the load generator pays the same per-request scripting cost in every phase.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local req

function init(args)
  req = wrk.format("GET", "/health")
end

function request()
  return req
end
