#!/usr/bin/env bash
# Soak test (not part of scripts/test.sh): 10,000 concurrent clients on
# both sqlmux ports (PostgreSQL and MySQL) doing short transactions through
# small pools for 10 minutes, with a RELOAD every second. Starts throwaway
# PostgreSQL and MariaDB servers and the release sqlmux binary; prints the
# transactions, the checkout timeouts (expected: the pools are small on
# purpose), every other error (must be none), sqlmux's RSS over time
# (flat after warm-up) and the checkout wait p99. Exit status 1 on an
# unexpected error or RSS growth above --max-rss-growth.
#
#   scripts/soak.sh                       # 10,000 clients, 600 s
#   CLIENTS=2000 SECS=60 scripts/soak.sh  # shorter
#   scripts/soak.sh --pool-size 4 --think-ms 500   # more sqlmux-bench soak options
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p sqlmux -p sqlmux-bench
bin="${CARGO_TARGET_DIR:-target}/release"
exec "$bin/sqlmux-bench" soak \
  --clients "${CLIENTS:-10000}" --secs "${SECS:-600}" \
  --sqlmux "$bin/sqlmux" "$@"
