-- wrk script: pre-signed REST `pay` requests, POST /api/v1/agent/payments.
-- Usage: wrk -t2 -c16 -d30s --latency -s bench/rest_pay.lua http://127.0.0.1:PORT
-- with the TOLOM_BENCH_* environment variables set; bench/gateway_vs_pgbench.py does it all.
--
-- wrk's Lua has no HMAC, so the requests are signed beforehand (by the Python bench, just
-- before the run: a signature's timestamp must be within 5 minutes of the server's clock).
-- Configuration from environment variables:
--   TOLOM_BENCH_REQUESTS  a file of pre-signed requests, one a line:
--                         <Authorization header value> TAB <JSON body>
--                         each with its own txn_id (a new payment)
--   TOLOM_BENCH_THREADS   the -t given to wrk
--
-- Thread tid sends lines tid, tid + THREADS, tid + 2*THREADS, ... so no two threads send the
-- same line. A thread that has sent all its lines starts again from its first: those
-- requests are idempotent replays of payments already made (the server answers 200 with
-- the original receipt and the header Idempotent-Replayed: true), not new payments. They
-- are counted apart ("replayed"), and the bench makes the file long enough that they are
-- rare or absent.
--
-- Every response is classified: non-2xx; 2xx whose body lacks "receipt"; a replay (200 with
-- "receipt" and Idempotent-Replayed: true); or OK (200 with "receipt", a new payment).
-- done() prints one machine-readable line, "TOLOM_BENCH ...", and a sample of a bad answer.

local PATH = "/api/v1/agent/payments"

local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

-- Per-thread Lua state from here on.
local auths, bodies = {}, {}
local count, position, wrapped = 0, 0, false
local headers = { ["Content-Type"] = "application/json" }

local function env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("bench: environment variable " .. name .. " is not set")
  end
  return value
end

function init(args)
  local path = env("TOLOM_BENCH_REQUESTS")
  local nthreads = tonumber(env("TOLOM_BENCH_THREADS"))
  local file = io.open(path, "r")
  if file == nil then
    error("bench: cannot open " .. path)
  end
  local index = 0
  for line in file:lines() do
    if index % nthreads == tid then
      local tab = string.find(line, "\t", 1, true)
      if tab == nil then
        error("bench: line " .. (index + 1) .. " of " .. path .. " has no TAB")
      end
      count = count + 1
      auths[count] = string.sub(line, 1, tab - 1)
      bodies[count] = string.sub(line, tab + 1)
    end
    index = index + 1
  end
  file:close()
  if count == 0 then
    error("bench: no requests for thread " .. tid .. " in " .. path)
  end
  ok, replayed, not_ok, non2xx, sent_again, sample = 0, 0, 0, 0, 0, ""
end

function request()
  position = position + 1
  if position > count then
    position = 1
    wrapped = true
  end
  if wrapped then
    sent_again = sent_again + 1
  end
  headers["Authorization"] = auths[position]
  return wrk.format("POST", PATH, headers, bodies[position])
end

local function replay_header(response_headers)
  for name, value in pairs(response_headers) do
    if string.lower(name) == "idempotent-replayed" then
      return string.lower(value) == "true"
    end
  end
  return false
end

function response(status, response_headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif status == 200 and body ~= nil and string.find(body, '"receipt"', 1, true) then
    if replay_header(response_headers) then
      replayed = replayed + 1
    else
      ok = ok + 1
    end
    return
  else
    not_ok = not_ok + 1
  end
  if sample == "" then
    sample = "HTTP " .. status .. " " .. string.gsub(body or "", "%s+", " ")
  end
end

function done(summary, latency, requests)
  local total = { ok = 0, replayed = 0, not_ok = 0, non2xx = 0, sent_again = 0 }
  local first_sample = ""
  for _, thread in ipairs(threads) do
    for name, _ in pairs(total) do
      total[name] = total[name] + thread:get(name)
    end
    local s = thread:get("sample")
    if first_sample == "" and s ~= nil then
      first_sample = s
    end
  end
  io.write(string.format(
    "TOLOM_BENCH command=rest_pay ok=%d not_ok=%d non2xx=%d responses=%d"
      .. " p50_us=%d p90_us=%d p99_us=%d max_us=%d replayed=%d sent_again=%d\n",
    total.ok, total.not_ok, total.non2xx, summary.requests,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    total.replayed, total.sent_again
  ))
  if first_sample ~= "" then
    io.write("TOLOM_BENCH_SAMPLE " .. first_sample .. "\n")
  end
end
