#!/usr/bin/env bash
# Driver conformance: runs a database driver's OWN test suite against a
# throwaway server twice, directly and through sqlmux in transaction mode
# (and, with --pgbouncer, a third time through PgBouncer), then prints the
# results side by side and every test whose outcome differs.
#
#   scripts/conformance.sh [options] DRIVER CHECKOUT [-- TEST...]
#
#   DRIVER     psycopg | node-postgres
#   CHECKOUT   a checkout of the driver's repository (it is only read: the
#              tests run from there, nothing is copied into this repository)
#   TEST...    run only these tests (psycopg: pytest node ids or paths
#              relative to the checkout; node-postgres: test files relative
#              to packages/pg), e.g. to rerun the ones that differ
#
# Options:
#   --targets LIST    comma-separated subset of direct,sqlmux,pgbouncer
#                     (default: direct,sqlmux, plus pgbouncer with --pgbouncer)
#   --pgbouncer PATH  a pgbouncer binary: adds a PgBouncer column (skipped
#                     with a note when PATH is not executable)
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
# DIR/server-postgres.log, DIR/server-sqlmux.log and DIR/server-pgbouncer.log.
#
# Each driver is one set of functions named after it (see "Drivers" below):
#   <driver>_protocol      postgres (mysql later: server_start_mysql)
#   <driver>_setup         install what the suite needs under target/conformance/
#   <driver>_users         "user password" lines the suite logs in with
#   <driver>_server_sql    SQL run as superuser on the fresh server
#   <driver>_run T H P     run the suite against host H port P, write T.log and T.tsv
# so PyMySQL or mysql-connector-python become one more set of functions plus
# a server_start_mysql next to server_start_postgres.
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
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root needs the OS user 'postgres' (from the postgresql package)"
  RUN_AS=(runuser -u postgres --)
fi

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
  for f in postgres sqlmux pgbouncer; do
    [ -f "$WORK/$f.log" ] && cp "$WORK/$f.log" "$OUT/server-$f.log" 2>/dev/null
  done
  if [ "$KEEP" -eq 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- servers --

PG_HOST=127.0.0.1
PG_PORT=""
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

server_sql() { # sql (as superuser, over the Unix socket)
  "${RUN_AS[@]}" psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET" -p "$PG_PORT" -U postgres -d postgres -c "$1" >/dev/null
}

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
  cat >"$cfg" <<EOF
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
  while read -r user password; do
    [ -n "$user" ] || continue
    printf '\n[[users]]\nname = "%s"\npassword = "%s"\n' "$user" "$password" >>"$cfg"
  done < <(driver_users)
  "$SQLMUX_BIN" --config "$cfg" >"$WORK/sqlmux.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port 127.0.0.1 "$SQLMUX_PORT" 30 "$pid" || { tail -20 "$WORK/sqlmux.log" >&2; die "sqlmux did not start"; }
  log "sqlmux $("$SQLMUX_BIN" --version 2>/dev/null | awk '{print $2}') on 127.0.0.1:$SQLMUX_PORT (transaction mode, pool size $POOL_SIZE)"
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
  python3 - "$OUT/$target.xml" "$OUT/$target.log" >"$OUT/$target.tsv" <<'EOF'
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
    pat = re.compile(r"^(tests/\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
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

# -------------------------------------------------------------------- main --

[ "$(driver_protocol)" = "postgres" ] || die "protocol $(driver_protocol) is not supported yet"
if [ "$COMPARE_ONLY" -eq 0 ]; then
  driver_setup
  server_start_postgres
  while read -r stmt; do [ -n "$stmt" ] && server_sql "$stmt"; done < <(driver_server_sql)
  RUN_TARGETS=("${TARGET_LIST[@]}")
else
  RUN_TARGETS=()
fi

for t in "${RUN_TARGETS[@]}"; do
  case "$t" in
    direct) host="$PG_HOST"; port="$PG_PORT" ;;
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
