-- One POST per request with the body the benchmark passes in BENCH_BODY; at the end, one line of
-- exact numbers (wrk's text summary rounds them), parsed by bench/wrk.py.
-- No response() callback: defining one makes wrk hand every body to Lua, which costs load-generator
-- CPU on a machine whose two cores the servers need too.

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d, "mean_us": %.3f, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(99), latency.max))
end
