-- wrk script for scenario 9 (bench/dns.py): every request names a host never asked
-- before, hNNNN.bB.TAG.bench.test (1,000 names per batch B), on the origin's port, over
-- a new connection. Arguments (after `--`): 1: origin port, 2: run tag.
-- done() prints one BENCH_JSON line, as bench/wrk.lua does.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   port = args[1]
   tag = args[2]
   counter = 0
   non200 = 0
end

function request()
   local name = string.format("h%04d.b%d.%s.bench.test:%s",
      counter % 1000, math.floor(counter / 1000), tag, port)
   counter = counter + 1
   return wrk.format("GET", "http://" .. name .. "/small",
      { ["Host"] = name, ["Connection"] = "close" })
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
