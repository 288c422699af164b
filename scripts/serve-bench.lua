-- wrk script for scripts/serve-bench.sh: POST the file named by the first script argument as
-- application/json, and print one machine-readable summary line (latencies in microseconds).
-- usage: wrk ... -s scripts/serve-bench.lua http://127.0.0.1:PORT/invocations -- BODY.json
function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  wrk.headers["Content-Type"] = "application/json"
  f:close()
end

function done(summary, latency, requests)
  io.write(string.format(
    "JSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"err_connect\":%d,\"err_read\":%d,\"err_write\":%d,\"err_status\":%d,\"err_timeout\":%d,\"lat_mean_us\":%.1f,\"lat_p50_us\":%d,\"lat_p90_us\":%d,\"lat_p99_us\":%d,\"lat_p999_us\":%d,\"lat_max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
