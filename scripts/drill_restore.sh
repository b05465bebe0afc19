#!/usr/bin/env bash
# The point-in-time restore drill (docs/deployment.md#backups): proves that a pgBackRest
# backup plus archived WAL restores Tolom to a chosen moment T, and measures RPO and RTO.
#
#   scripts/drill restore [--pays N] [--keep]      (or scripts/drill_restore.sh ...)
#   --pays N: pays in each batch (20); --keep or DRILL_KEEP=1: keep the directory (logs).
#   ARCHIVE_TIMEOUT (60): the cluster's archive_timeout; PG_BIN: PostgreSQL's bin directory.
#
# In a temporary directory, on free loopback ports, never touching another cluster:
#  1. initdb a PostgreSQL cluster with archive_mode=on, archive_command = pgBackRest's
#     archive-push (async), stanza-create; tolom secrets init, db upgrade, customers, an agent;
#  2. a full backup; `tolom serve`; batch 1 of OSMP pays; WAL switch; T = the database's now();
#     batch 2 of pays after T; WAL switch (archived); stop everything;
#  3. pgbackrest restore --type=time --target=T into a new data directory, start it (it
#     promotes at T), `tolom serve` on it, and prove: every pay of batch 1 answered 0 is there
#     exactly once, none of batch 2 is, balances match, `tolom ledger verify` passes, and the
#     restored Tolom repeats an old pay and takes a new one;
#  4. print RPO (archive_timeout + archive lag measured) and RTO (restore + start + serve + verify).
# Everything started is stopped and the directory removed in a trap (--keep leaves the
# directory for a look). Needs root (it runs PostgreSQL as the postgres user) or the
# postgres user itself; installs Debian's pgbackrest when root and it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PAYS=20
KEEP="${DRILL_KEEP:-0}"
while [ $# -gt 0 ]; do
  case "$1" in
    --pays) PAYS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: $0 [--pays N] [--keep]" >&2; exit 2 ;;
  esac
done

PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
ARCHIVE_TIMEOUT="${ARCHIVE_TIMEOUT:-60}"
STANZA=tolom
PYTHON="$ROOT/.venv/bin/python"
TOLOM="$ROOT/.venv/bin/tolom"
DRIVER="$ROOT/scripts/drill_restore_driver.py"

say() { printf '\n== %s\n' "$*"; }
die() { echo "drill: $*" >&2; exit 1; }

# --- preconditions ---------------------------------------------------------------------------
[ -x "$PG_BIN/initdb" ] || die "no PostgreSQL server binaries (set PG_BIN; apt-get install postgresql)"
[ -x "$TOLOM" ] || die "no $TOLOM: run scripts/dev setup first"
if [ "$(id -u)" = 0 ]; then
  as_pg() { runuser -u postgres -- "$@"; }
  id postgres >/dev/null 2>&1 || die "no postgres user (apt-get install postgresql)"
elif [ "$(id -un)" = postgres ]; then
  as_pg() { "$@"; }
else
  die "run as root or as the postgres user: PostgreSQL refuses to run as root and the drill starts it"
fi
if ! command -v pgbackrest >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's pgbackrest ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq pgbackrest >/dev/null; } \
      || die "could not install pgbackrest"
  else
    die "pgbackrest is missing: apt-get install pgbackrest (as root)"
  fi
fi

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
since() { "$PYTHON" -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$1" "$(now)"; }

# --- the temporary directory and the trap ----------------------------------------------------
WORK=$(mktemp -d /tmp/tolom-restore-drill.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK"/{repo,log,spool,lock,run,tolom}
chown postgres: "$WORK"/{repo,log,spool,lock,run} 2>/dev/null || true
install -d -m 700 -o postgres -g postgres "$WORK/pg" "$WORK/restored" 2>/dev/null \
  || install -d -m 700 "$WORK/pg" "$WORK/restored"
SERVE_PID=""

stop_serve() {
  if [ -n "$SERVE_PID" ]; then
    kill "$SERVE_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVE_PID" 2>/dev/null || true
    wait "$SERVE_PID" 2>/dev/null || true
    SERVE_PID=""
  fi
}

cleanup() {
  status=$?
  stop_serve
  for data in "$WORK/pg" "$WORK/restored"; do
    [ -f "$data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
  done
  # The async archive-push process, if one is still shipping: only this drill's (its lock path).
  [ -f "$WORK/pgbackrest.conf" ] \
    && as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=$STANZA stop --force >/dev/null 2>&1 || true
  if [ "$status" != 0 ]; then
    echo "drill FAILED (exit $status); logs: PostgreSQL $WORK/log/*.log, Tolom $WORK/tolom/serve*.log" >&2
    tail -n 20 "$WORK"/tolom/serve*.log "$WORK"/log/restored.log 2>/dev/null >&2 || true
  fi
  if [ "$KEEP" = 1 ]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PGPORT=$(free_port)
RESTORED_PORT=$(free_port)
DB=tolom
DSN="host=127.0.0.1 port=$PGPORT user=postgres dbname=$DB"
RESTORED_DSN="host=127.0.0.1 port=$RESTORED_PORT user=postgres dbname=$DB"
STATE="$WORK/tolom/state.json"
export TOLOM_SECRET_KEY_FILE="$WORK/tolom/secret.key"
export TOLOM_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PGPORT/$DB"
# Tolom reads an .env file from the working directory: run it from one with none.
cd "$WORK/tolom"

pgbr() { as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=$STANZA "$@"; }
psql_at() { as_pg "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"; }
driver() { "$PYTHON" "$DRIVER" "$1" --state "$STATE" "${@:2}"; }

start_serve() {  # $1: log name
  local port
  port=$(free_port)
  "$TOLOM" serve --host 127.0.0.1 --port "$port" >"$WORK/tolom/$1.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 300); do
    if "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null; then
      SERVE_PORT=$port
      return 0
    fi
    kill -0 "$SERVE_PID" 2>/dev/null || die "tolom serve exited (see $WORK/tolom/$1.log)"
    sleep 0.1
  done
  die "tolom serve did not answer /health in 30 s"
}

# --- 1. the cluster, pgBackRest, Tolom -------------------------------------------------------
say "cluster on 127.0.0.1:$PGPORT in $WORK/pg, pgBackRest repository $WORK/repo"
cat >"$WORK/pgbackrest.conf" <<EOF
[global]
repo1-path=$WORK/repo
repo1-retention-full=2
log-path=$WORK/log
lock-path=$WORK/lock
spool-path=$WORK/spool
archive-async=y
process-max=2
start-fast=y
log-level-console=warn
log-level-file=info

[$STANZA]
pg1-path=$WORK/pg
pg1-port=$PGPORT
pg1-socket-path=$WORK/run
pg1-user=postgres
EOF
chmod 644 "$WORK/pgbackrest.conf"

as_pg "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/log/initdb.log"
cat >>"$WORK/pg/postgresql.conf" <<EOF

# --- the restore drill ---
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/run'
wal_level = replica
archive_mode = on
archive_command = 'pgbackrest --config=$WORK/pgbackrest.conf --stanza=$STANZA archive-push %p'
archive_timeout = $ARCHIVE_TIMEOUT
max_wal_senders = 3
EOF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/log/postgresql.log" -w start >/dev/null
pgbr stanza-create
pgbr check
psql_at "$PGPORT" postgres "CREATE DATABASE $DB"

"$TOLOM" secrets init >/dev/null
"$TOLOM" db upgrade
driver seed

# --- 2. backup, pays before T, T, pays after T -----------------------------------------------
say "full backup"
started=$(now)
pgbr backup --type=full
echo "full backup took $(since "$started") s"
pgbr info

say "batch 1: $PAYS pays before T"
start_serve serve
driver pays --batch "before T" --count "$PAYS" --port "$SERVE_PORT"
driver mark --dsn "$DSN"
say "batch 2: $PAYS pays after T"
driver pays --batch "after T" --count "$PAYS" --port "$SERVE_PORT"
driver open-wal --dsn "$DSN"
driver switch --dsn "$DSN" --name "batch 2"
stop_serve
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast -w stop >/dev/null
TARGET=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["target"])' "$STATE")

# --- 3. restore to T, start, prove ------------------------------------------------------------
say "restore to T = $TARGET into $WORK/restored (port $RESTORED_PORT)"
t0=$(now)
pgbr --pg1-path="$WORK/restored" --type=time --target="$TARGET" --target-action=promote \
  --archive-mode=off restore
driver time --name restore --seconds "$(since "$t0")"
t1=$(now)
as_pg "$PG_BIN/pg_ctl" -D "$WORK/restored" -l "$WORK/log/restored.log" -o "-p $RESTORED_PORT" -w start >/dev/null
for _ in $(seq 600); do
  [ "$(psql_at "$RESTORED_PORT" postgres 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] && break
  sleep 0.1
done
driver time --name start --seconds "$(since "$t1")"
grep -E "recovery stopping|selected new timeline|archive recovery complete" "$WORK/log/restored.log" || true

export TOLOM_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$RESTORED_PORT/$DB"
t2=$(now)
start_serve serve-restored
driver time --name serve --seconds "$(since "$t2")"
t3=$(now)
"$TOLOM" ledger verify
driver time --name verify --seconds "$(since "$t3")"
driver time --name total --seconds "$(since "$t0")"

say "proof"
driver prove --dsn "$RESTORED_DSN" --port "$SERVE_PORT"
stop_serve

say "RPO and RTO"
driver report
echo
echo "restore drill passed"
