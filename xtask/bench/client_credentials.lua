-- POST /oauth/token with grant_type=client_credentials, as a backend gets its Management API
-- token. BENCH_CLIENT, BENCH_SECRET and BENCH_AUDIENCE name the client and the API.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local req

local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  local body = "grant_type=client_credentials&client_id=" .. enc(os.getenv("BENCH_CLIENT"))
    .. "&client_secret=" .. enc(os.getenv("BENCH_SECRET")) .. "&audience=" .. enc(os.getenv("BENCH_AUDIENCE"))
  req = wrk.format("POST", "/oauth/token", { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end

function request()
  return req
end
