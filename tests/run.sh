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

# The longest tests start first, so that the run does not end waiting on one.
slow=" t_thousand_senders_at_once t_demo_in_a_file t_random_faults t_pid_namespace_shared t_demo_stops_at_a_failed_step t_more_stop_signals "
chosen=()
for t in ${slow} "${TESTS[@]}"; do
  [[ $t =~ ${ONLY:-.} ]] || continue
  [[ " ${chosen[*]} " == *" $t "* ]] || chosen+=("$t")
done
run_tests "${chosen[@]}"
summary
