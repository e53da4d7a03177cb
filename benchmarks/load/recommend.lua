-- wrk script: GET /recommend/{user} over a list of user ids, one random user per request.
-- usage: wrk -t2 -c32 -d20s -s recommend.lua http://127.0.0.1:8000 -- users.txt 10
local users = {}
local n = "10"
function init(args)
   local path = args[1] or "users.txt"
   n = args[2] or "10"
   for line in io.lines(path) do users[#users + 1] = line end
   math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
   local user = users[math.random(#users)]
   return wrk.format("GET", "/recommend/" .. user .. "?n=" .. n)
end
function done(summary, latency, requests)
   io.write(string.format("RESULT requests=%d duration_s=%.3f rps=%.1f non2xx=%d errors=%d p50_ms=%.2f p99_ms=%.2f\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
