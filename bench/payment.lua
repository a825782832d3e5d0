-- wrk script for bench/api.py: each connection creates a payment and confirms it, again and
-- again, as fast as the server answers. BENCH_KEY is the agency's API key. With BENCH_KEYED=1
-- every POST carries a fresh Idempotency-Key, as README tells every backend to send. done()
-- prints one JSON line of whole-payment figures.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local key = os.getenv("BENCH_KEY") or ""
local keyed = os.getenv("BENCH_KEYED") == "1"
local headers = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }

-- The headers of one POST: with a fresh Idempotency-Key when keyed.
local function headers_for(step)
  if not keyed then return headers end
  return {
    ["Authorization"] = headers["Authorization"],
    ["Content-Type"] = headers["Content-Type"],
    ["Idempotency-Key"] = string.format("bench-%s-%d-%d-%s", run, tid, n, step),
  }
end
local create_body = '{"amount":12500,"currency":"OMR","description":"Benchmark fee",'
  .. '"return_url":"https://moh.example.om/done","reference":"BENCH-%s-%d-%d"}'
local confirm_body = '{"payment_method":{"type":"card","card":{"number":"4242424242424242",'
  .. '"exp_month":12,"exp_year":2034,"cvc":"123"}}}'

function init(args)
  payments = 0
  errors = 0
  latencies = {}
  pending = nil
  started = 0
  n = 0
  run = os.time()
end

function request()
  if pending == nil then
    n = n + 1
    started = now_ms()
    return wrk.format(
      "POST", "/v1/payments", headers_for("create"), string.format(create_body, run, tid, n)
    )
  end
  return wrk.format(
    "POST", "/v1/payments/" .. pending .. "/confirm", headers_for("confirm"), confirm_body
  )
end

function response(status, hdrs, body)
  if pending == nil then
    if status == 201 then
      pending = body:match('"id"%s*:%s*"(pay_[^"]+)"')
    end
    if pending == nil then errors = errors + 1 end
  else
    if status == 200 and body:find('"status"%s*:%s*"succeeded"') then
      payments = payments + 1
      latencies[#latencies + 1] = now_ms() - started
    else
      errors = errors + 1
    end
    pending = nil
  end
end

function done(summary, latency, requests)
  local all, total, failed = {}, 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("payments")
    failed = failed + thread:get("errors")
    for _, value in ipairs(thread:get("latencies")) do all[#all + 1] = value end
  end
  table.sort(all)
  local function pct(p)
    if #all == 0 then return -1 end
    return all[math.max(1, math.ceil(#all * p))]
  end
  local e = summary.errors
  io.write(string.format(
    '{"payments": %d, "errors": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, '
      .. '"socket_errors": %d}\n',
    total, failed, summary.duration / 1e6, pct(0.5), pct(0.99),
    e.connect + e.read + e.write + e.timeout))
end
