#!/usr/bin/env bash
# Builds and runs sqlmux. Usage: scripts/run.sh [CONFIG]
# With CONFIG, or with ./sqlmux.toml present, runs that configuration.
# Without either, runs `sqlmux demo`: a throwaway PostgreSQL (and MariaDB
# once MySQL is supported), sqlmux in front and a small workload, with the
# URLs to try printed; Ctrl-C stops it and removes everything.
# Installs a Rust toolchain with rustup if cargo is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
cargo build --release --locked -p sqlmux
if [ $# -eq 0 ] && [ ! -f sqlmux.toml ]; then
  echo "no sqlmux.toml: running the demo (scripts/run.sh CONFIG runs a configuration;"
  echo "  sqlmux init --from \"\$DATABASE_URL\" or sqlmux import pgbouncer.ini writes one)"
  exec ./target/release/sqlmux demo
fi
config="${1:-sqlmux.toml}"
if [ ! -f "$config" ]; then
  cp config.example.toml "$config"
  echo "created $config from config.example.toml; edit [[databases]] and [[users]]"
fi
exec ./target/release/sqlmux --config "$config"
