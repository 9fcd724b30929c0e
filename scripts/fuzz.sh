#!/usr/bin/env bash
# Fuzzes every sqlmux-protocol decoder and the fingerprinter with cargo-fuzz
# (libFuzzer), one target at a time.
#
#   scripts/fuzz.sh                  the long campaign: 10 million inputs per target
#   scripts/fuzz.sh --smoke          3 seconds per target (the test command runs this)
#   scripts/fuzz.sh [--smoke] T...   only the named targets
#
# RUNS=N changes the inputs per target of the campaign. Seeds come from
# protocol/fuzz/corpus/<target> (kept in the repository, read only); what
# the fuzzer learns goes to protocol/fuzz/corpus-work/<target>, crashes to
# protocol/fuzz/artifacts/<target>/. Prints the executions per target and
# exits non-zero when a target crashed or failed to build.
#
# Builds have debug assertions and overflow checks on. The protocol crate
# has no unsafe code, so no sanitizer by default (several times more
# inputs per second); FUZZ_SANITIZER=address turns AddressSanitizer on.
# Uses the nightly toolchain when installed, else stable.
set -euo pipefail
cd "$(dirname "$0")/../protocol"

smoke=0
if [ "${1:-}" = "--smoke" ]; then
  smoke=1
  shift
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

toolchain=(+nightly)
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "no nightly toolchain: fuzzing on stable"
  toolchain=()
fi
build=(--sanitizer "${FUZZ_SANITIZER:-none}" --debug-assertions)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi
if [ $smoke -eq 1 ]; then
  limit=(-max_total_time=3)
else
  limit=("-runs=${RUNS:-10000000}")
fi

cargo "${toolchain[@]}" fuzz build "${build[@]}"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus-work/$t" "fuzz/artifacts/$t"
  log=$(mktemp)
  start=$(date +%s)
  if cargo "${toolchain[@]}" fuzz run "${build[@]}" "$t" "fuzz/corpus-work/$t" "fuzz/corpus/$t" \
    -- "${limit[@]}" "-artifact_prefix=fuzz/artifacts/$t/" >"$log" 2>&1; then
    done_line=$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1)
    echo "$t: ok, ${done_line:-no summary} ($(($(date +%s) - start)) s wall)"
  else
    echo "$t: FAILED (artifacts in protocol/fuzz/artifacts/$t/)"
    tail -n 40 "$log"
    failed+=("$t")
  fi
  rm -f "$log"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets that failed: ${failed[*]}"
  exit 1
fi
