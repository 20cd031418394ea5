-- wrk script for bench/run.sh. Arguments (after `--`):
--   1: request target: an absolute URI when wrk talks to a proxy, a path when direct
--   2: Host header value (the origin's host:port)
--   3: "close" to send Connection: close (a new connection per request), else "keep"
--   4: "check" to count non-200 responses in a response() hook, else "nocheck"
--      (for 1 MiB bodies the hook would copy each body into Lua; there the
--      harness checks wrk's status-error count and bytes per response instead)
-- done() prints one BENCH_JSON line that bench/scenarios.py parses.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   wrk.path = args[1]
   wrk.headers["Host"] = args[2]
   if args[3] == "close" then
      wrk.headers["Connection"] = "close"
   end
   non200 = 0
   if args[4] ~= "check" then
      response = nil
   end
end

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, thread in ipairs(threads) do
      bad = bad + (thread:get("non200") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non200":%d,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,' ..
      '"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, bad,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
