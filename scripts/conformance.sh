#!/usr/bin/env bash
# Driver conformance: runs a database driver's OWN test suite against a
# throwaway server twice, directly and through sqlmux in transaction mode
# (and, with --pgbouncer, a third time through PgBouncer), then prints the
# results side by side and every test whose outcome differs.
#
#   scripts/conformance.sh [options] DRIVER CHECKOUT [-- TEST...]
#
#   DRIVER     psycopg | node-postgres   (PostgreSQL)
#              pymysql | mysql-connector-python   (MariaDB)
#   CHECKOUT   a checkout of the driver's repository (it is only read: the
#              tests run from there, nothing is copied into this repository)
#   TEST...    run only these tests (psycopg, pymysql: pytest node ids or
#              paths relative to the checkout; node-postgres: test files
#              relative to packages/pg; mysql-connector-python: unittest
#              names such as tests.test_cursor or
#              tests.test_cursor.MySQLCursorTests.test_execute), e.g. to
#              rerun the ones that differ
#
# Options:
#   --targets LIST    comma-separated subset of direct,sqlmux,pgbouncer
#                     (default: direct,sqlmux, plus pgbouncer with --pgbouncer)
#   --pgbouncer PATH  a pgbouncer binary: adds a PgBouncer column (skipped
#                     with a note when PATH is not executable, and for the
#                     MySQL drivers)
#   --out DIR         where logs and results go (default target/conformance/out/DRIVER)
#   --pool-size N     servers per pool in sqlmux and PgBouncer (default 4)
#   --sqlmux PATH     the sqlmux binary (default: the release build, built
#                     with `cargo build --release -p sqlmux` when missing)
#   --keep            keep the server directory (data, logs, configs)
#   --compare-only    run nothing: compare the TARGET.tsv files already in
#                     the output directory (e.g. a direct run kept from
#                     before and a fresh sqlmux run)
#
# Per target, DIR gets TARGET.log (the runner's output), TARGET.tsv (one
# line per test: id, outcome, detail) and, for psycopg, TARGET.xml (JUnit);
# summary.txt holds the printed comparison. The servers' logs are copied to
# DIR/server-postgres.log (or server-mariadb.log), DIR/server-sqlmux.log and
# DIR/server-pgbouncer.log.
#
# The PostgreSQL drivers get a throwaway PostgreSQL (initdb, SCRAM, TLS
# offered); the MySQL drivers a throwaway MariaDB (mariadb-install-db into
# the temporary directory, free port, TLS offered, local_infile on, time
# zone tables loaded; root over TCP with an empty password, as in the
# drivers' CI), served by sqlmux's [mysql] listener through a "*" database
# entry with protocol = "mysql".
#
# Each driver is one set of functions named after it (see "Drivers" below):
#   <driver>_protocol      postgres | mysql
#   <driver>_setup         install what the suite needs under target/conformance/
#   <driver>_users         "user password" lines the suite logs in with
#                          (a "-" password: none)
#   <driver>_server_sql    SQL run as superuser on the fresh server
#   <driver>_run T H P     run the suite against host H port P, write T.log and T.tsv
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONF_DIR="$ROOT/target/conformance"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "conformance: $*" >&2; exit 2; }
log() { echo "== $*" >&2; }

TARGETS=""
PGBOUNCER=""
OUT=""
POOL_SIZE=4
SQLMUX_BIN=""
KEEP=0
COMPARE_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --targets) TARGETS="$2"; shift 2 ;;
    --pgbouncer) PGBOUNCER="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --pool-size) POOL_SIZE="$2"; shift 2 ;;
    --sqlmux) SQLMUX_BIN="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --compare-only) COMPARE_ONLY=1; shift ;;
    -h|--help) usage 0 ;;
    --) break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || usage 2
DRIVER="$1"; CHECKOUT="$(cd "$2" && pwd)"; shift 2
[ "${1:-}" = "--" ] && shift
SELECTED=("$@")

if [ -z "$TARGETS" ]; then
  TARGETS="direct,sqlmux"
  [ -n "$PGBOUNCER" ] && TARGETS="$TARGETS,pgbouncer"
fi
if [[ ",$TARGETS," == *",pgbouncer,"* ]] && [ ! -x "${PGBOUNCER:-/nonexistent}" ]; then
  echo "conformance: no PgBouncer binary at '${PGBOUNCER}': skipping the pgbouncer column" >&2
  TARGETS="$(echo ",$TARGETS," | sed 's/,pgbouncer,/,/; s/^,//; s/,$//')"
fi
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
OUT="${OUT:-$CONF_DIR/out/$DRIVER}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# ---------------------------------------------------------------- helpers --

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Servers refuse to run as root: run them as the `postgres` OS user then.
# (MariaDB runs as root with --user=root instead.)
RUN_AS=()

wait_port() { # host port seconds pid
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if ! kill -0 "$4" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

WORK="$(mktemp -d /tmp/sqlmux-conformance.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  local f
  for f in postgres mariadb sqlmux pgbouncer; do
    [ -f "$WORK/$f.log" ] && cp "$WORK/$f.log" "$OUT/server-$f.log" 2>/dev/null
  done
  if [ "$KEEP" -eq 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- servers --

PG_HOST=127.0.0.1
PG_PORT=""
MY_PORT=""
PG_SOCKET=""
PG_BIN=""

server_start_postgres() {
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -x "$PG_BIN/initdb" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
  local data="$WORK/pgdata" su_password
  PG_SOCKET="$WORK/pgsock"
  mkdir -p "$PG_SOCKET"
  su_password="$(driver_superuser_password)"
  printf '%s\n' "$su_password" >"$WORK/pwfile"
  [ ${#RUN_AS[@]} -gt 0 ] && chown -R postgres "$WORK"
  "${RUN_AS[@]}" "$PG_BIN/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$WORK/pwfile" >"$WORK/initdb.log" 2>&1 \
    || "${RUN_AS[@]}" "$PG_BIN/initdb" -D "$data" -U postgres -E UTF8 --locale=C \
      --auth-local=trust --auth-host=scram-sha-256 --pwfile="$WORK/pwfile" >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
  # A self-signed certificate, so that the drivers' TLS tests run too
  # (PostgreSQL, sqlmux and PgBouncer all offer it; clients choose).
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
    -keyout "$WORK/server.key" -out "$WORK/server.crt" >/dev/null 2>&1 || die "openssl failed"
  cp "$WORK/server.key" "$WORK/server.crt" "$data/"
  chmod 600 "$data/server.key"
  [ ${#RUN_AS[@]} -gt 0 ] && chown postgres "$data/server.key" "$data/server.crt" "$WORK/server.key"
  cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
max_connections = 200
max_prepared_transactions = 10
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
lc_messages = 'C'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  local attempt
  for attempt in 1 2 3 4 5; do
    PG_PORT="$(free_port)"
    "${RUN_AS[@]}" "$PG_BIN/postgres" -D "$data" -p "$PG_PORT" -k "$PG_SOCKET" >"$WORK/postgres.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    if wait_port "$PG_HOST" "$PG_PORT" 60 "$pid"; then
      # accepting TCP is not accepting logins yet
      for _ in $(seq 100); do
        "$PG_BIN/pg_isready" -q -h "$PG_SOCKET" -p "$PG_PORT" && break
        sleep 0.1
      done
      log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on $PG_HOST:$PG_PORT"
      return 0
    fi
    grep -q "could not bind\|Address already in use" "$WORK/postgres.log" || { tail -20 "$WORK/postgres.log" >&2; die "postgres did not start"; }
  done
  die "postgres did not start: no free port"
}

server_sql_postgres() { # sql (as superuser, over the Unix socket)
  "${RUN_AS[@]}" psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET" -p "$PG_PORT" -U postgres -d postgres -c "$1" >/dev/null
}

# MariaDB: mariadb-install-db into $WORK/mariadb, mariadbd on a free port
# of 127.0.0.1, --no-defaults so no my.cnf of the machine leaks in, as root
# with --user=root when run as root. TLS is offered with the same
# self-signed certificate sqlmux uses; local_infile is on; the time zone
# tables are loaded from /usr/share/zoneinfo when it exists.
MY_SOCKET=""
server_start_mysql() {
  command -v mariadb-install-db >/dev/null && command -v mariadb >/dev/null \
    || die "no MariaDB server (apt-get install mariadb-server mariadb-client)"
  local mariadbd dir="$WORK/mariadb" user_arg=()
  mariadbd="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
  [ -x "$mariadbd" ] || die "no mariadbd (apt-get install mariadb-server)"
  [ "$(id -u)" -eq 0 ] && user_arg=(--user=root)
  mkdir -p "$dir/tmp"
  MY_SOCKET="$dir/mariadbd.sock"
  mariadb-install-db --no-defaults --auth-root-authentication-method=normal \
    --datadir="$dir/data" --tmpdir="$dir/tmp" --skip-test-db --skip-name-resolve \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=16M "${user_arg[@]}" \
    >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; die "mariadb-install-db failed"; }
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
    -keyout "$WORK/server.key" -out "$WORK/server.crt" >/dev/null 2>&1 || die "openssl failed"
  local attempt pid
  for attempt in 1 2 3 4 5; do
    MY_PORT="$(free_port)"
    "$mariadbd" --no-defaults --datadir="$dir/data" --socket="$MY_SOCKET" \
      --pid-file="$dir/mariadbd.pid" --tmpdir="$dir/tmp" --bind-address=127.0.0.1 \
      --port="$MY_PORT" --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=64M \
      --innodb-log-file-size=16M --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0 \
      --lc-messages=en_US --max-connections=300 --local-infile=1 \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
      --ssl-cert="$WORK/server.crt" --ssl-key="$WORK/server.key" \
      "${user_arg[@]}" >"$WORK/mariadb.log" 2>&1 </dev/null &
    pid=$!
    PIDS+=("$pid")
    if wait_port 127.0.0.1 "$MY_PORT" 60 "$pid"; then
      for _ in $(seq 100); do
        mariadb --no-defaults --socket="$MY_SOCKET" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.1
      done
      log "MariaDB $(mariadb --no-defaults --socket="$MY_SOCKET" -u root -N -B -e 'SELECT VERSION()') on 127.0.0.1:$MY_PORT"
      if [ -d /usr/share/zoneinfo ] && command -v mariadb-tzinfo-to-sql >/dev/null; then
        mariadb-tzinfo-to-sql /usr/share/zoneinfo 2>/dev/null \
          | mariadb --no-defaults --socket="$MY_SOCKET" -u root mysql >/dev/null 2>&1 \
          || log "loading the time zone tables failed (continuing)"
      fi
      return 0
    fi
    grep -q "Address already in use" "$WORK/mariadb.log" || { tail -20 "$WORK/mariadb.log" >&2; die "mariadbd did not start"; }
  done
  die "mariadbd did not start: no free port"
}

server_sql_mysql() { # sql (as root, over the Unix socket)
  mariadb --no-defaults --socket="$MY_SOCKET" -u root -e "$1" >/dev/null
}

server_sql() { "server_sql_$(driver_protocol)" "$@"; }

# ----------------------------------------------------------------- proxies --

SQLMUX_PORT=""
sqlmux_start() {
  if [ -z "$SQLMUX_BIN" ]; then
    local target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
    SQLMUX_BIN="$target_dir/release/sqlmux"
    if [ ! -x "$SQLMUX_BIN" ]; then
      log "building sqlmux (release)"
      (cd "$ROOT" && cargo build --release -p sqlmux)
    fi
  fi
  [ -x "$SQLMUX_BIN" ] || die "no sqlmux binary at $SQLMUX_BIN"
  local admin_port cfg="$WORK/sqlmux.toml" user password
  SQLMUX_PORT="$(free_port)"
  admin_port="$(free_port)"
  if [ "$(driver_protocol)" = mysql ]; then
    sqlmux_config_mysql "$admin_port" >"$cfg"
  else
    sqlmux_config_postgres "$admin_port" >"$cfg"
  fi
  while read -r user password; do
    [ -n "$user" ] || continue
    printf '\n[[users]]\nname = "%s"\n' "$user" >>"$cfg"
    [ "$password" = "-" ] || printf 'password = "%s"\n' "$password" >>"$cfg"
  done < <(driver_users)
  "$SQLMUX_BIN" --config "$cfg" >"$WORK/sqlmux.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port 127.0.0.1 "$SQLMUX_PORT" 30 "$pid" || { tail -20 "$WORK/sqlmux.log" >&2; die "sqlmux did not start"; }
  log "sqlmux $("$SQLMUX_BIN" --version 2>/dev/null | awk '{print $2}') on 127.0.0.1:$SQLMUX_PORT (transaction mode, pool size $POOL_SIZE)"
}

sqlmux_config_postgres() { # admin_port
  local admin_port="$1"
  cat <<EOF
[general]
shutdown_timeout = "1s"

[admin]
listen = "127.0.0.1:$admin_port"
users = ["postgres"]

[postgres]
listen = "127.0.0.1:$SQLMUX_PORT"
auth = "scram-sha-256"
auth_user = "postgres"         # roles a test creates log in too (looked up on the server)
tls = { cert = "$WORK/server.crt", key = "$WORK/server.key", mode = "prefer" }

[pool]
mode = "transaction"
size = $POOL_SIZE

[[databases]]
name = "*"
host = "$PG_HOST"
port = $PG_PORT
EOF
}

# MySQL: the [mysql] listener on SQLMUX_PORT, the PostgreSQL one on another
# free port (it always listens), one "*" entry forwarding every database
# name to the MariaDB server, TLS offered with the server's certificate.
sqlmux_config_mysql() { # admin_port
  local admin_port="$1"
  cat <<EOF
[general]
shutdown_timeout = "1s"

[admin]
listen = "127.0.0.1:$admin_port"
users = ["$(driver_users | awk 'NR == 1 {print $1}')"]

[postgres]
listen = "127.0.0.1:$(free_port)"

[mysql]
listen = "127.0.0.1:$SQLMUX_PORT"
tls = { cert = "$WORK/server.crt", key = "$WORK/server.key", mode = "prefer" }

[pool]
mode = "transaction"
size = $POOL_SIZE

[[databases]]
name = "*"
protocol = "mysql"
host = "127.0.0.1"
port = $MY_PORT
EOF
}

PGBOUNCER_PORT=""
pgbouncer_start() {
  local dir="$WORK/pgbouncer" user password
  mkdir -p "$dir"
  PGBOUNCER_PORT="$(free_port)"
  : >"$dir/userlist.txt"
  while read -r user password; do
    [ -n "$user" ] && printf '"%s" "%s"\n' "$user" "$password" >>"$dir/userlist.txt"
  done < <(driver_users)
  cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=$PG_HOST port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
auth_user = postgres
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 1000
max_prepared_statements = 200
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = allow
client_tls_cert_file = $WORK/server.crt
client_tls_key_file = $WORK/server.key
server_tls_sslmode = prefer
logfile = $WORK/pgbouncer.log
EOF
  [ ${#RUN_AS[@]} -gt 0 ] && chown -R postgres "$dir"
  "${RUN_AS[@]}" "$PGBOUNCER" "$dir/pgbouncer.ini" >>"$WORK/pgbouncer.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port 127.0.0.1 "$PGBOUNCER_PORT" 30 "$pid" || { tail -20 "$WORK/pgbouncer.log" >&2; die "pgbouncer did not start"; }
  log "$("$PGBOUNCER" --version | head -1) on 127.0.0.1:$PGBOUNCER_PORT (transaction mode, pool size $POOL_SIZE)"
}

# ----------------------------------------------------------------- drivers --
# The dispatchers below call <driver>_<hook>.

driver_fn() { local f="${DRIVER//-/_}_$1"; shift; declare -F "$f" >/dev/null || die "unknown driver '$DRIVER'"; "$f" "$@"; }
driver_protocol() { driver_fn protocol; }
driver_setup() { driver_fn setup; }
driver_users() { driver_fn users; }
driver_superuser_password() { driver_users | awk '$1 == "postgres" {print $2}'; }
driver_server_sql() { driver_fn server_sql; }
driver_run() { driver_fn run "$@"; }

PY="$CONF_DIR/pyenv/bin/python"

# One line per test (node id, outcome, detail) from pytest's JUnit file, or
# from its -v lines when the run was killed before writing it.
pytest_tsv() { # junit.xml log
  python3 - "$1" "$2" <<'EOF'
import os, re, sys, xml.etree.ElementTree as ET
xml, logf = sys.argv[1], sys.argv[2]
rows = {}
if os.path.exists(xml) and os.path.getsize(xml):
    for tc in ET.parse(xml).iter("testcase"):
        f = tc.get("file") or ""
        cls = tc.get("classname") or ""
        mod = f[:-3].replace("/", ".") if f.endswith(".py") else ""
        rest = cls[len(mod):].lstrip(".") if mod and cls.startswith(mod) else ""
        nodeid = "::".join(p for p in [f or cls, *rest.split(".")] if p) + "::" + tc.get("name")
        outcome, detail = "passed", ""
        for child in tc:
            msg = (child.get("message") or "").splitlines()[0][:160] if child.get("message") else ""
            if child.tag == "failure":
                outcome, detail = "failed", msg
            elif child.tag == "error" and outcome != "failed":
                outcome, detail = "error", msg
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
                detail = ("xfail: " if child.get("type") == "pytest.xfail" else "") + msg
        rows[nodeid] = (outcome, detail)
else:  # killed before the JUnit file was written: read the -v lines
    pat = re.compile(r"^(\S+\.py::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
    m = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "error",
         "SKIPPED": "skipped", "XFAIL": "skipped"}
    for line in open(logf, errors="replace"):
        g = pat.match(line)
        if g:
            rows[g.group(1)] = (m[g.group(2)], "")
    rows["(run)"] = ("error", "the run was killed before it finished; see the log")
for k, (o, d) in rows.items():
    print(f"{k}\t{o}\t{d}")
EOF
}

# --- psycopg 3: its pytest suite, tests/ of the checkout. The psycopg
# package itself comes from PyPI at the checkout's version (binary
# implementation), with the test requirements, into target/conformance/pyenv.
psycopg_protocol() { echo postgres; }
psycopg_users() { echo "postgres password"; }
psycopg_server_sql() { echo "CREATE DATABASE psycopg_test;"; }
psycopg_version() { sed -n 's/^version = "\(.*\)"/\1/p' "$CHECKOUT/psycopg/pyproject.toml" | head -1; }
psycopg_setup() {
  [ -f "$CHECKOUT/tests/conftest.py" ] && [ -f "$CHECKOUT/psycopg/pyproject.toml" ] \
    || die "$CHECKOUT does not look like a psycopg checkout (tests/conftest.py, psycopg/pyproject.toml)"
  local version; version="$(psycopg_version)"
  [ -n "$version" ] || version="$(grep -o 'psycopg-binary == [0-9.]*' "$CHECKOUT/psycopg/pyproject.toml" | awk '{print $3}')"
  if [ ! -x "$PY" ]; then
    python3 -m venv "$CONF_DIR/pyenv"
  fi
  if ! "$PY" -c "import psycopg, sys; sys.exit(psycopg.__version__ != '$version')" 2>/dev/null \
     || ! "$PY" -c "import pytest, anyio, pytest_timeout, pproxy" 2>/dev/null; then
    log "installing psycopg[binary]==$version and its test requirements into $CONF_DIR/pyenv"
    "$PY" -m pip install -q "psycopg[binary]==$version" "pytest>=8" "anyio>=4" pytest-timeout "pproxy>=2.7"
  fi
}
psycopg_run() { # target host port
  local target="$1" host="$2" port="$3" rc=0
  # -m: the suite's own markers; slow tests, the psycopg_pool package and
  # mypy checks are left out, as is the CockroachDB-only directory.
  local markers="${PSYCOPG_MARKERS:-not slow and not pool and not mypy}"
  local args=("${SELECTED[@]}")
  [ ${#args[@]} -gt 0 ] || args=(tests --ignore=tests/pool --ignore=tests/crdb)
  ( cd "$CHECKOUT" && \
    PSYCOPG_TEST_DSN="host=$host port=$port user=postgres password=password dbname=psycopg_test" \
    timeout --kill-after=30 "${PSYCOPG_RUN_TIMEOUT:-1500}" \
      "$PY" -m pytest -m "$markers" -p no:randomly -p no:cov -o cache_dir="$WORK/pytest-cache-$target" \
        -o junit_family=xunit1 --junitxml="$OUT/$target.xml" --timeout=60 -v -rfE --color=no \
        "${args[@]}" ) >"$OUT/$target.log" 2>&1 || rc=$?
  pytest_tsv "$OUT/$target.xml" "$OUT/$target.log" >"$OUT/$target.tsv"
  return 0
}

# --- node-postgres: packages/pg/test/integration of the checkout, one node
# process per file as its Makefile does (a file stops at its first failing
# test, so a file is one test here). Its runtime dependencies (pg-protocol,
# pg-pool, ... at the checkout's versions) and test dependencies come from
# npm into target/conformance/node-postgres, found through NODE_PATH.
node_postgres_protocol() { echo postgres; }
node_postgres_users() {
  echo "postgres postgres"
  echo "scram_test test4scram"
}
node_postgres_server_sql() {
  echo "CREATE DATABASE ci_db_test;"
  echo "SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_test LOGIN PASSWORD 'test4scram';"
}
node_postgres_setup() {
  local pg="$CHECKOUT/packages/pg"
  [ -d "$pg/test/integration" ] || die "$CHECKOUT does not look like a node-postgres checkout (packages/pg/test/integration)"
  command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed (apt-get install nodejs npm)"
  local deps dir="$CONF_DIR/node-postgres"
  # Runtime deps pinned to the versions in the checkout's monorepo.
  deps="$(node -e '
    const fs = require("fs"), path = require("path");
    const root = process.argv[1], pkg = require(path.join(root, "packages/pg/package.json"));
    const want = Object.assign({}, pkg.dependencies);
    for (const d of ["async", "bluebird", "co", "pg-copy-streams"]) want[d] = pkg.devDependencies[d];
    const out = [];
    for (const [name, range] of Object.entries(want)) {
      let v = range.replace(/^[\^~]/, "");
      const local = path.join(root, "packages", name, "package.json");
      if (fs.existsSync(local)) v = require(local).version;
      out.push(name + "@" + v);
    }
    console.log(out.join(" "));' "$CHECKOUT")"
  mkdir -p "$dir"
  if [ "$(cat "$dir/.deps" 2>/dev/null)" != "$deps" ]; then
    log "installing $deps into $dir"
    echo '{"name": "sqlmux-conformance-node-postgres", "private": true}' >"$dir/package.json"
    rm -rf "$dir/node_modules" "$dir/package-lock.json"
    # shellcheck disable=SC2086
    (cd "$dir" && npm install --silent --no-audit --no-fund --legacy-peer-deps $deps)
    echo "$deps" >"$dir/.deps"
  fi
}
node_postgres_run() { # target host port
  local target="$1" host="$2" port="$3" pg="$CHECKOUT/packages/pg" f rc
  local files=("${SELECTED[@]}")
  if [ ${#files[@]} -eq 0 ]; then
    mapfile -t files < <(cd "$pg" && find test/integration -name "*-tests.js" | sort)
  fi
  : >"$OUT/$target.log"
  : >"$OUT/$target.tsv"
  for f in "${files[@]}"; do
    rc=0
    echo "### $f" >>"$OUT/$target.log"
    ( cd "$pg" && env PGHOST="$host" PGPORT="$port" PGUSER=postgres PGPASSWORD=postgres \
        PGDATABASE=ci_db_test PGTESTNOSSL=true \
        SCRAM_TEST_PGUSER=scram_test SCRAM_TEST_PGPASSWORD=test4scram \
        SCRAM_TEST_PGHOST="$host" SCRAM_TEST_PGPORT="$port" SCRAM_TEST_PGDATABASE=ci_db_test \
        NODE_PATH="$CONF_DIR/node-postgres/node_modules" \
        timeout --kill-after=5 "${NODE_POSTGRES_FILE_TIMEOUT:-120}" node "$f" </dev/null ) >"$WORK/node.out" 2>&1 || rc=$?
    cat "$WORK/node.out" >>"$OUT/$target.log"
    echo "### exit $rc" >>"$OUT/$target.log"
    python3 - "$f" "$rc" "$WORK/node.out" >>"$OUT/$target.tsv" <<'EOF'
import re, sys
f, rc, out = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], errors="replace").read()
ok = [l for l in out.splitlines() if l.rstrip().endswith("\u2714")]
if rc == 0:
    skip = ok and all("skip" in l.lower() for l in ok)
    outcome, detail = ("skipped" if skip else "passed"), f"{len(ok)} subtests"
elif rc in (124, 137):
    outcome, detail = "error", "timed out"
else:
    outcome = "failed"
    # The subtest running when it failed: the last "  name" line without its check mark.
    cur = [l for l in out.splitlines() if re.match(r"^  \S", l) and not l.rstrip().endswith("\u2714")]
    sub = re.split(r" (?:FAILED!|Error: |\(node:)", cur[-1].strip())[0][:80] if cur else ""
    msg = re.search(r"^(?:Message: |\S*Error: |AssertionError.*?: )(.*)$", out, re.M)
    detail = "; ".join(x for x in [f"in '{sub}'" if sub else "", msg.group(1)[:140] if msg else ""] if x)
    detail = detail or (out.strip().splitlines()[-1][:160] if out.strip() else f"exit {rc}")
print(f"{f}\t{outcome}\t{detail}")
EOF
  done
}

# --- PyMySQL: its pytest suite, pymysql/tests of the checkout, set up as
# its CI does (ci/docker-entrypoint-initdb.d: databases test1 and test2, user
# test2 with 'some password', local_infile on, MariaDB's ed25519 plugin).
# The tests live inside the package, so they import the checkout's pymysql
# (pure Python, the code of the PyPI release at the checkout's version,
# which is installed into target/conformance/pyenv with cryptography and
# PyNaCl for the auth tests). The connection list of ci/docker.json
# (databases.json, which the suite reads from its own directory) is given
# by a small pytest plugin instead, so the checkout is not written to; its
# third entry, a Unix socket, is left out. tests/test_auth.py (MySQL 8 only
# in its CI) is not run.
pymysql_protocol() { echo mysql; }
pymysql_users() {
  echo "root -"
  echo "test2 some password"
}
pymysql_server_sql() {
  echo "CREATE DATABASE test1 DEFAULT CHARACTER SET utf8mb4;"
  echo "CREATE DATABASE test2 DEFAULT CHARACTER SET utf8mb4;"
  echo "CREATE USER test2 IDENTIFIED BY 'some password'; GRANT ALL ON test2.* TO test2;"
  echo "CREATE USER test2@localhost IDENTIFIED BY 'some password'; GRANT ALL ON test2.* TO test2@localhost;"
  echo "INSTALL SONAME 'auth_ed25519';"
  echo "CREATE FUNCTION ed25519_password RETURNS STRING SONAME 'auth_ed25519.so';"
}
pymysql_setup() {
  [ -f "$CHECKOUT/pymysql/tests/base.py" ] || die "$CHECKOUT does not look like a PyMySQL checkout (pymysql/tests/base.py)"
  local version
  version="$(sed -n 's/^VERSION_STRING = "\(.*\)"/\1/p' "$CHECKOUT/pymysql/__init__.py")"
  [ -n "$version" ] || die "no VERSION_STRING in $CHECKOUT/pymysql/__init__.py"
  [ -x "$PY" ] || python3 -m venv "$CONF_DIR/pyenv"
  if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('PyMySQL') != '$version')" 2>/dev/null \
     || ! "$PY" -c "import pytest, pytest_timeout, cryptography, nacl" 2>/dev/null; then
    log "installing PyMySQL==$version and its test requirements into $CONF_DIR/pyenv"
    "$PY" -m pip install -q "PyMySQL==$version" cryptography "PyNaCl>=1.4.0" "pytest>=8" pytest-timeout
  fi
}
pymysql_run() { # target host port
  local target="$1" host="$2" port="$3" rc=0
  local args=("${SELECTED[@]}")
  [ ${#args[@]} -gt 0 ] || args=(pymysql/tests)
  mkdir -p "$WORK/pyplugin"
  cat >"$WORK/pyplugin/sqlmux_pymysql_databases.py" <<'EOF'
import json, os

def pytest_configure(config):
    from pymysql.tests import base
    base.PyMySQLTestCase.databases = json.loads(os.environ["SQLMUX_PYMYSQL_DATABASES"])
EOF
  local dbs
  dbs="[{\"host\": \"$host\", \"port\": $port, \"user\": \"root\", \"password\": \"\", \"database\": \"test1\", \"use_unicode\": true, \"local_infile\": true},"
  dbs="$dbs {\"host\": \"$host\", \"port\": $port, \"user\": \"test2\", \"password\": \"some password\", \"database\": \"test2\"}]"
  ( cd "$CHECKOUT" && \
    SQLMUX_PYMYSQL_DATABASES="$dbs" PYTHONPATH="$WORK/pyplugin" \
    timeout --kill-after=30 "${PYMYSQL_RUN_TIMEOUT:-900}" \
      "$PY" -m pytest -p sqlmux_pymysql_databases -p no:randomly -p no:cov \
        -o cache_dir="$WORK/pytest-cache-$target" -o junit_family=xunit1 \
        --junitxml="$OUT/$target.xml" --timeout=60 -v -rfE --color=no \
        "${args[@]}" ) >"$OUT/$target.log" 2>&1 || rc=$?
  pytest_tsv "$OUT/$target.xml" "$OUT/$target.log" >"$OUT/$target.tsv"
  return 0
}

# --- mysql-connector-python: its own runner, unittests.py of the checkout
# (the repository root or its mysql-connector-python/ directory), against
# the throwaway server as an external one: --use-external-server (it only
# creates the database myconnpy; no mysqld of its own is bootstrapped),
# --skip-install (nothing is built), user root without a password. The
# runner puts the checkout's lib/ first on sys.path, so the pure-Python
# connector is the checkout's (the code of the PyPI release at its
# version); the C extension (_mysql_connector) comes from the PyPI package
# at that version in target/conformance/pyenv, so the cext tests run too.
# Subset: every test module the runner finds (tests/, tests/cext, tests/qa,
# tests/issues) except those needing what is not here: Django (skipped by
# the runner itself), OpenTelemetry (instrumentation) and the X DevAPI
# (mysqlx, a separate package and port). Tests that need a MySQL server
# (not MariaDB) skip themselves. Each test is limited to
# MYSQL_CONNECTOR_TEST_TIMEOUT seconds (default 60), the whole run to
# MYSQL_CONNECTOR_RUN_TIMEOUT seconds (default 1800).
# The runner has no per-test limit, and a test can wait forever (one that
# turns on protocol compression, which sqlmux does not offer, sends
# compressed packets anyway): this wrapper runs unittests.py with SIGALRM
# ending any test after MYSQL_CONNECTOR_TEST_TIMEOUT seconds (default 60)
# with a TimeoutError, which counts as that test's error.
MYSQL_CONNECTOR_WRAPPER='
import os, runpy, signal, sys, unittest
limit = int(os.environ["SQLMUX_TEST_TIMEOUT"])
run = unittest.TestCase.run
def limited(self, result=None):
    def expired(*_):
        raise TimeoutError(f"test time limit of {limit} s (conformance.sh) reached")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    try:
        return run(self, result)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
unittest.TestCase.run = limited
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'
mysql_connector_python_protocol() { echo mysql; }
mysql_connector_python_users() { echo "root -"; }
mysql_connector_python_server_sql() { :; }
mysql_connector_python_dir() {
  if [ -f "$CHECKOUT/mysql-connector-python/unittests.py" ]; then
    echo "$CHECKOUT/mysql-connector-python"
  else
    echo "$CHECKOUT"
  fi
}
mysql_connector_python_setup() {
  local dir version
  dir="$(mysql_connector_python_dir)"
  [ -f "$dir/unittests.py" ] && [ -f "$dir/lib/mysql/connector/version.py" ] \
    || die "$CHECKOUT does not look like a mysql-connector-python checkout (unittests.py, lib/mysql/connector/version.py)"
  version="$(python3 -c "
import re, sys
t = open(sys.argv[1]).read()
v = re.search(r'^VERSION = \((\d+), (\d+), (\d+)', t, re.M)
print('.'.join(v.groups()))" "$dir/lib/mysql/connector/version.py")"
  [ -x "$PY" ] || python3 -m venv "$CONF_DIR/pyenv"
  if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('mysql-connector-python') != '$version')" 2>/dev/null; then
    log "installing mysql-connector-python==$version into $CONF_DIR/pyenv"
    "$PY" -m pip install -q "mysql-connector-python==$version"
  fi
}
mysql_connector_python_run() { # target host port
  local target="$1" host="$2" port="$3" dir rc=0 t
  dir="$(mysql_connector_python_dir)"
  local selectors=()
  if [ ${#SELECTED[@]} -gt 0 ]; then
    for t in "${SELECTED[@]}"; do selectors+=("-T" "$t"); done
  else
    selectors=("-r" '^(?!instrumentation$)')
  fi
  : >"$OUT/$target.log"
  local deadline=$(( $(date +%s) + ${MYSQL_CONNECTOR_RUN_TIMEOUT:-1800} )) left
  local i flag
  for ((i = 0; i < ${#selectors[@]}; i += 2)); do
    flag="${selectors[i]}"; t="${selectors[i + 1]}"
    left=$(( deadline - $(date +%s) ))
    [ "$left" -gt 0 ] || { echo "### time limit reached before $t" >>"$OUT/$target.log"; break; }
    rc=0
    echo "### unittests.py $flag $t" >>"$OUT/$target.log"
    ( cd "$dir" && env -u MYSQL_HOST -u MYSQL_PORT -u MYSQL_USER -u MYSQL_PASSWORD \
        SQLMUX_TEST_TIMEOUT="${MYSQL_CONNECTOR_TEST_TIMEOUT:-60}" \
        timeout --kill-after=30 "$left" "$PY" -c "$MYSQL_CONNECTOR_WRAPPER" unittests.py \
          --use-external-server --skip-install \
          --host "$host" --port "$port" --user root --password "" --verbosity 2 \
          "$flag" "$t" ) >>"$OUT/$target.log" 2>&1 </dev/null || rc=$?
    echo "### exit $rc" >>"$OUT/$target.log"
  done
  python3 - "$OUT/$target.log" >"$OUT/$target.tsv" <<'EOF'
import re, sys
# The runner prints "module.Class.test ... RESULT"; a test's own output (a
# traceback printed by the suite's wrapper, logging) may come between the
# name and the result, which is then on a line of its own.
text = open(sys.argv[1], errors="replace").read()
lines = text.splitlines()
rows = {}
start = re.compile(r"^(\w+(?:\.\w+)+) \.\.\. ?(.*)$")
word = {"ok": ("passed", ""), "unexpected success": ("passed", ""),
        "FAIL": ("failed", ""), "ERROR": ("error", ""),
        "skipped": ("skipped", ""), "expected failure": ("skipped", "expected failure")}
tail = re.compile(r"(?:^|\s)(ok|FAIL|ERROR|skipped|expected failure|unexpected success)$")
cur, last = None, ""
for line in lines:
    m = start.match(line)
    if m:
        cur, last = m.group(1), ""
        t = tail.search(m.group(2).strip())
        if t and m.group(2).strip() == t.group(1):
            rows[cur] = word[t.group(1)]; cur = None
        continue
    if cur:
        t = tail.search(line.strip())
        if t:
            o = word[t.group(1)]
            rows[cur] = (o[0], last[:160]) if o[0] in ("failed", "error") else o
            cur, last = None, ""
        elif line.strip() and not line.startswith((" ", "Traceback")):
            last = line.strip()
# FAIL:/ERROR: sections at the end: the failures, with the exception line
sect = re.compile(r"^(FAIL|ERROR): (\S+)")
i = 0
while i < len(lines):
    m = sect.match(lines[i])
    if m:
        kind, tid = m.groups()
        if tid in ("setUpClass", "tearDownClass", "setUpModule", "tearDownModule"):
            g = re.search(r"\(([\w.]+)\)", lines[i])
            tid = f"{g.group(1)}.{tid}" if g else tid
        j, detail = i + 1, ""
        while j < len(lines) and not sect.match(lines[j]) and not lines[j].startswith("Ran ") \
                and not lines[j].startswith("=" * 20) and not lines[j].startswith("### "):
            if lines[j].strip() and not lines[j].startswith("-" * 20) and not lines[j].startswith(" ") \
                    and not lines[j].startswith("Traceback"):
                detail = lines[j].strip()
            j += 1
        rows[tid] = ("failed" if kind == "FAIL" else "error", detail[:160])
        i = j
        continue
    i += 1
for block in re.finditer(r"^### unittests\.py (.*)\n(?:.*\n)*?### exit (\d+)$", text, re.M):
    if block.group(2) in ("124", "137") or "\nRan " not in block.group(0):
        rows[f"(run {block.group(1)})"] = ("error", f"exit {block.group(2)} before the summary; see the log")
if "### time limit reached" in text:
    rows["(run)"] = ("error", "the time limit was reached; see the log")
for k, (o, d) in rows.items():
    print(f"{k}\t{o}\t{d}")
EOF
}

# -------------------------------------------------------------------- main --

PROTOCOL="$(driver_protocol)"
if [ "$PROTOCOL" = mysql ] && [[ ",$TARGETS," == *",pgbouncer,"* ]]; then
  echo "conformance: PgBouncer speaks only PostgreSQL: skipping the pgbouncer column" >&2
  TARGETS="$(echo ",$TARGETS," | sed 's/,pgbouncer,/,/; s/^,//; s/,$//')"
  IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
fi
if [ "$PROTOCOL" = postgres ] && [ "$(id -u)" -eq 0 ] && [ "$COMPARE_ONLY" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root needs the OS user 'postgres' (from the postgresql package)"
  RUN_AS=(runuser -u postgres --)
fi
if [ "$COMPARE_ONLY" -eq 0 ]; then
  driver_setup
  "server_start_$PROTOCOL"
  while read -r stmt; do [ -n "$stmt" ] && server_sql "$stmt"; done < <(driver_server_sql)
  RUN_TARGETS=("${TARGET_LIST[@]}")
else
  RUN_TARGETS=()
fi

for t in "${RUN_TARGETS[@]}"; do
  case "$t" in
    direct) host=127.0.0.1; port="${PG_PORT:-$MY_PORT}" ;;
    sqlmux) [ -n "$SQLMUX_PORT" ] || sqlmux_start; host=127.0.0.1; port="$SQLMUX_PORT" ;;
    pgbouncer) [ -n "$PGBOUNCER_PORT" ] || pgbouncer_start; host=127.0.0.1; port="$PGBOUNCER_PORT" ;;
    *) die "unknown target $t (direct, sqlmux, pgbouncer)" ;;
  esac
  log "$DRIVER: running against $t ($host:$port), log in $OUT/$t.log"
  start=$(date +%s)
  driver_run "$t" "$host" "$port"
  echo "$(( $(date +%s) - start ))" >"$OUT/$t.seconds"
done

python3 - "$OUT" "$DRIVER" "${TARGET_LIST[@]}" <<'EOF' | tee "$OUT/summary.txt"
import sys
out, driver, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
res = {}
for t in targets:
    res[t] = {}
    for line in open(f"{out}/{t}.tsv", errors="replace"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 2:
            res[t][parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
kinds = ["passed", "failed", "skipped", "error"]
secs = {}
for t in targets:
    try:
        secs[t] = open(f"{out}/{t}.seconds").read().strip() + " s"
    except OSError:
        secs[t] = "?"
w = max(12, *(len(t) for t in targets))
print(f"\n{driver}: results ({out})\n")
print(f"{'':10}" + "".join(f"{t:>{w}}" for t in targets))
for k in kinds + ["total", "time"]:
    row = []
    for t in targets:
        if k == "total":
            row.append(str(len(res[t])))
        elif k == "time":
            row.append(secs[t])
        else:
            row.append(str(sum(1 for o, _ in res[t].values() if o == k)))
    print(f"{k:10}" + "".join(f"{v:>{w}}" for v in row))
ids = sorted(set().union(*(res[t].keys() for t in targets)))
diff = [i for i in ids if len({res[t].get(i, ("missing", ""))[0] for t in targets}) > 1]
print(f"\n{len(diff)} test(s) with differing outcomes" + (":" if diff else ""))
for i in diff:
    print(f"\n  {i}")
    for t in targets:
        o, d = res[t].get(i, ("missing", ""))
        print(f"    {t:>{w}}: {o}" + (f"  ({d})" if d and o not in ("passed",) else ""))
print(f"\n{driver}: " + ", ".join(
    f"{t} {sum(1 for o, _ in res[t].values() if o == 'passed')} passed {sum(1 for o, _ in res[t].values() if o in ('failed', 'error'))} failed"
    for t in targets))
EOF
