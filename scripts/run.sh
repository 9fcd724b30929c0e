#!/usr/bin/env bash
# Builds and runs sqlmux. Usage: scripts/run.sh [CONFIG]
# Without CONFIG, uses ./sqlmux.toml, creating it from config.example.toml
# on first use. Installs a Rust toolchain with rustup if cargo is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
config="${1:-sqlmux.toml}"
if [ ! -f "$config" ]; then
  cp config.example.toml "$config"
  echo "created $config from config.example.toml; edit [[databases]] and [[users]]"
fi
cargo build --release --locked -p sqlmux
exec ./target/release/sqlmux --config "$config"
