-- wrk script for scenario 9 (bench/dns.py): every request names a host never asked
-- before, hNNNN.bB.TAG.bench.test (1,000 names per batch B), on the origin's port, over
-- a new connection. Arguments (after `--`): 1: origin port, 2: run tag.
-- done() prints one BENCH_JSON line, as bench/wrk.lua does.
-- setup(), response() and done() are bench/wrk.lua's, loaded from beside this file.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk.lua")

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
