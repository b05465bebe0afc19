-- wrk script: unique OSMP `pay` requests to /gateway/osmp/sochi (see bench/osmp_wrk.lua).
-- Usage: wrk -t2 -c16 -d30s --latency -s bench/pay.lua http://127.0.0.1:PORT/gateway/osmp/sochi
-- with the TOLOM_BENCH_* environment variables set; bench/gateway_vs_pgbench.py does it all.
local here = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(here .. "osmp_wrk.lua").install("pay")
