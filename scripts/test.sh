#!/usr/bin/env bash
# Runs the whole sqlmux test suite: unit, property and integration tests.
# The integration tests start their own PostgreSQL and MariaDB servers in
# temporary directories on free ports; this script installs the server
# packages first when they are missing (Debian/Ubuntu, needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v pgbench >/dev/null 2>&1 || need+=(postgresql-contrib)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
[ -f /usr/share/java/mariadb-java-client.jar ] || need+=(libmariadb-java)
command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
php -m 2>/dev/null | grep -qx pdo_mysql || need+=(php-cli php-mysql)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#need[@]} -gt 0 ]; then
  echo "installing missing packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# PgBouncer's example configuration for the `sqlmux import` tests: just the
# files from Debian's package (installing it would start a PgBouncer service).
example=usr/share/doc/pgbouncer/examples/pgbouncer.ini
if [ ! -f "/$example" ] && [ ! -f /etc/pgbouncer/pgbouncer.ini ] && [ ! -f "target/pgbouncer-example/$example" ]; then
  mkdir -p target/pgbouncer-example
  (cd target/pgbouncer-example &&
    { apt-get download pgbouncer 2>/dev/null || { $sudo apt-get update -qq && apt-get download pgbouncer; }; } &&
    dpkg-deb -x pgbouncer_*.deb .)
fi

# psycopg 3 and asyncpg for the driver compatibility tests, in a venv under target/.
# PyMySQL and mysql-connector-python for the MySQL driver tests, in the same venv.
if [ ! -x target/pyenv/bin/python ] || ! target/pyenv/bin/python -c "import psycopg, asyncpg, pymysql, mysql.connector" 2>/dev/null; then
  python3 -m venv target/pyenv 2>/dev/null || { apt-get install -y -qq python3-venv && python3 -m venv target/pyenv; }
  target/pyenv/bin/pip install -q "psycopg[binary]>=3.1,<4" "asyncpg>=0.29,<1" "PyMySQL>=1.0,<2" "mysql-connector-python>=8,<10"
fi

# node-postgres and mysql2 for the driver compatibility tests, under target/node.
if [ ! -f target/node/node_modules/pg/package.json ] || [ ! -f target/node/node_modules/mysql2/package.json ]; then
  mkdir -p target/node
  npm install --silent --no-audit --no-fund --prefix target/node "pg@8" "mysql2@3"
fi

# Benches and examples are not run by the tests; make sure they still build.
cargo check --workspace --all-targets --locked
cargo test --workspace --locked "$@"

# Every fuzz target for a few seconds, so a broken target or a shallow
# crash fails the tests (scripts/fuzz.sh without --smoke is the long run).
scripts/fuzz.sh --smoke

# The Dockerfile, the Helm chart and its Grafana dashboard.
scripts/deploy-test.sh
