-- Shared by the bench scripts (loaded with dofile): thread numbering and the result line that
-- `cargo xtask bench` parses. Settings come from the environment:
--   BENCH_THREADS  number of wrk threads (-t)
-- Every script sets `threads` in the main state through `setup`, and may keep per-thread
-- globals `used` / `exhausted` that `done` sums.

bench_threads = {}

function setup(thread)
  thread:set("tid", #bench_threads)
  table.insert(bench_threads, thread)
end

function bench_tid()
  return tonumber(wrk.thread:get("tid")) or 0
end

function done(summary, latency, requests)
  local exhausted = 0
  for _, t in ipairs(bench_threads) do
    exhausted = exhausted + (tonumber(t:get("exhausted")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d status_errors=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d exhausted=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), exhausted))
end
