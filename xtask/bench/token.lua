-- POST /oauth/token (passwordless OTP grant), one exchange per pre-generated code.
-- BENCH_CODES names a file of "email code" lines; thread t of BENCH_THREADS takes the lines
-- i with i % BENCH_THREADS == t. When a thread has used all its codes it starts over: those
-- exchanges fail (a code works once) and are counted in `exhausted` and as non-2xx.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local reqs = {}
used = 0
exhausted = 0

function init(args)
  local tid = bench_tid()
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local headers = { ["Content-Type"] = "application/json" }
  local i = 0
  for line in io.lines(os.getenv("BENCH_CODES")) do
    if i % threads == tid then
      local email, code = line:match("^(%S+) (%S+)$")
      if email then
        local body = '{"grant_type":"http://auth0.com/oauth/grant-type/passwordless/otp",'
          .. '"client_id":"sesame-dev","realm":"email","username":"' .. email .. '","otp":"' .. code
          .. '","scope":"openid profile email"}'
        table.insert(reqs, wrk.format("POST", "/oauth/token", headers, body))
      end
    end
    i = i + 1
  end
end

function request()
  used = used + 1
  if used > #reqs then
    exhausted = exhausted + 1
  end
  return reqs[((used - 1) % #reqs) + 1]
end
