-- wrk script for the performance benchmark (bench/perf/run.py).
-- The POST body is read from the file named by WRK_BODY; extra request headers come from
-- WRK_HEADERS as "name: value" lines. At the end one JSON line with the results is printed, so that
-- the harness does not have to parse wrk's human-readable summary.

local path = os.getenv("WRK_BODY")
local file = assert(io.open(path, "rb"), "cannot open WRK_BODY file " .. tostring(path))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, '
      .. '"status_errors": %d, "timeouts": %d, "p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "mean_us": %.1f}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write, errors.status,
    errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean
  ))
end
