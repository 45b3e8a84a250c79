-- wrk script: PUT a 1 KiB body, with HTTP basic auth when BENCH_AUTH is set
-- (the base64 of user:password). Prints one machine-readable line at the end.
wrk.method = "PUT"
wrk.body = string.rep("a", 1023) .. "\n"
wrk.headers["Content-Type"] = "application/octet-stream"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Basic " .. auth
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
