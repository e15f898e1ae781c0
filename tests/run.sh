#!/usr/bin/env bash
# tests/run.sh - the end-to-end test suite; `make test` runs it.
#
# Usage: tests/run.sh [SUITE]...   SUITE: basic, faults, accidents (default: all)
# Environment: WRAP="valgrind ..." runs every sender and receiver under it;
# SOAK=1 makes the random fault run long; ONLY=REGEX runs matching tests;
# JOBS=N runs N tests at once (default 4).
set -u
cd "$(dirname "$0")/.." || exit 2
# shellcheck source=tests/lib.sh
. tests/lib.sh

for bin in ./sender ./receiver "$HOSTILE"; do
  [ -x "$bin" ] || { echo "run.sh: $bin is missing: run 'make test'" >&2; exit 2; }
done

suites=("$@")
[ "${#suites[@]}" -gt 0 ] || suites=(basic faults accidents)
for suite in "${suites[@]}"; do
  # shellcheck source=/dev/null
  . "tests/$suite.sh"
done

chosen=()
for t in "${TESTS[@]}"; do
  [[ $t =~ ${ONLY:-.} ]] && chosen+=("$t")
done
run_tests "${chosen[@]}"
summary
