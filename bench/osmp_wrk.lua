-- Shared part of bench/pay.lua and bench/check.lua: unique OSMP requests for wrk.
--
-- Configuration comes from environment variables, set by bench/gateway_vs_pgbench.py:
--   TOLOM_BENCH_BASIC     base64 of "agent:secret" (HTTP Basic credentials)
--   TOLOM_BENCH_INNS      comma-separated 14-digit INNs of existing customers
--   TOLOM_BENCH_NONCE     7 digits, different for every wrk run (first digit not 0)
--   TOLOM_BENCH_THREADS   the -t given to wrk
--   TOLOM_BENCH_TXN_DATE  YYYYMMDDHHMMSS in the agent's zone (pay only)
--
-- txn_id = NONCE (7 digits) .. n (13 digits) = 20 digits, where n = counter * THREADS + tid:
-- each thread numbers its own requests, the thread id keeps the threads apart, and the
-- nonce keeps runs apart, so a txn_id never repeats. Like a real agent's, the numbers are
-- consecutive, so the agent's clearing account slots (txn_id mod 16) are used in turn.
--
-- Every response is classified: non-2xx, 2xx whose body lacks <result>0</result>, or OK.
-- done() prints one machine-readable line, "TOLOM_BENCH ...", and a sample of a bad answer.

local M = {}

local function env(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then
    if default == nil then
      error("bench: environment variable " .. name .. " is not set")
    end
    return default
  end
  return value
end

local function split(text)
  local items = {}
  for item in string.gmatch(text, "[^,]+") do
    table.insert(items, item)
  end
  return items
end

function M.install(command)
  -- Main Lua state: thread objects, so done() can read the per-thread counters.
  local threads = {}
  local next_tid = 0

  function setup(thread)
    thread:set("tid", next_tid)
    next_tid = next_tid + 1
    table.insert(threads, thread)
  end

  -- Per-thread Lua state from here on (each wrk thread loads the script itself).
  local inns, nonce, nthreads, txn_date, headers
  local counter = 0

  function init(args)
    inns = split(env("TOLOM_BENCH_INNS"))
    if #inns == 0 then
      error("bench: TOLOM_BENCH_INNS is empty")
    end
    nonce = env("TOLOM_BENCH_NONCE")
    nthreads = tonumber(env("TOLOM_BENCH_THREADS"))
    txn_date = env("TOLOM_BENCH_TXN_DATE", "")
    headers = { ["Authorization"] = "Basic " .. env("TOLOM_BENCH_BASIC") }
    ok, not_ok, non2xx, sample = 0, 0, 0, ""
  end

  function request()
    local n = counter * nthreads + tid
    counter = counter + 1
    local txn_id = nonce .. string.format("%013d", n)
    local account = inns[(n * 7919) % #inns + 1] -- 7919 is prime: every INN in turn
    local query
    if command == "pay" then
      query = "command=pay&txn_id=" .. txn_id .. "&txn_date=" .. txn_date
        .. "&account=" .. account .. "&sum=100.00"
    else
      query = "command=check&txn_id=" .. txn_id .. "&account=" .. account .. "&sum=0.00"
    end
    return wrk.format("GET", wrk.path .. "?" .. query, headers)
  end

  function response(status, headers, body)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
    elseif body ~= nil and string.find(body, "<result>0</result>", 1, true) then
      ok = ok + 1
      return
    else
      not_ok = not_ok + 1
    end
    if sample == "" then
      sample = "HTTP " .. status .. " " .. string.gsub(body or "", "%s+", " ")
    end
  end

  function done(summary, latency, requests)
    local total_ok, total_not_ok, total_non2xx, first_sample = 0, 0, 0, ""
    for _, thread in ipairs(threads) do
      total_ok = total_ok + thread:get("ok")
      total_not_ok = total_not_ok + thread:get("not_ok")
      total_non2xx = total_non2xx + thread:get("non2xx")
      local s = thread:get("sample")
      if first_sample == "" and s ~= nil then
        first_sample = s
      end
    end
    io.write(string.format(
      "TOLOM_BENCH command=%s ok=%d not_ok=%d non2xx=%d responses=%d"
        .. " p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
      command, total_ok, total_not_ok, total_non2xx, summary.requests,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
    ))
    if first_sample ~= "" then
      io.write("TOLOM_BENCH_SAMPLE " .. first_sample .. "\n")
    end
  end
end

return M
