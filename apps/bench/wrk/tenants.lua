-- The load script of `silo-bench http --wrk` (and of side-by-side runs against other servers:
-- the same script, the same TOKENS file).
-- wrk script: each request reads one tenant's task list with that tenant's bearer token.
-- TOKENS=file of "slug token" lines; ZIPF=s (e.g. 1.1) picks tenants Zipf-distributed, else uniform.
local pairs_ = {}
local f = assert(io.open(os.getenv("TOKENS") or "tokens.txt"))
for line in f:lines() do
  local slug, tok = line:match("^(%S+)%s+(%S+)")
  if slug then pairs_[#pairs_ + 1] = { slug, tok } end
end
f:close()
local n = #pairs_
local s = tonumber(os.getenv("ZIPF") or "0")
local cdf
if s > 0 then
  cdf = {}
  local total = 0
  for k = 1, n do total = total + 1 / k ^ s; cdf[k] = total end
  for k = 1, n do cdf[k] = cdf[k] / total end
end
local function pick()
  if not cdf then return pairs_[math.random(n)] end
  local u, lo, hi = math.random(), 1, n
  while lo < hi do local mid = math.floor((lo + hi) / 2); if cdf[mid] < u then lo = mid + 1 else hi = mid end end
  return pairs_[lo]
end
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  local p = pick()
  return wrk.format("GET", "/api/v1/w/" .. p[1] .. "/tasks?limit=20", { ["Authorization"] = "Bearer " .. p[2] })
end
local errors = 0
response = function(status) if status ~= 200 then errors = errors + 1 end end
done = function(summary, latency)
  io.write(string.format("non200=%d p50_us=%d p99_us=%d rps=%.0f\n", summary.errors.status,
    latency:percentile(50), latency:percentile(99), summary.requests / (summary.duration / 1e6)))
end
