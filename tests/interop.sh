#!/usr/bin/env bash
# tests/interop.sh - a receiver of one build and a sender of another talk
# byte for byte (CI: a 32-bit and a 64-bit build): 1 MB of random bytes,
# sync and async, each way round. Ends with "N passed, N failed".
#
# Usage: tests/interop.sh DIR_A DIR_B   (each holds a sender and a receiver)
set -u
[ $# -eq 2 ] || { echo "usage: tests/interop.sh DIR_A DIR_B" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
key=$(printf '0x%08x' $((0x7c000000 + $$ % 0x10000)))
passed=0
failed=0
head -c 1000000 /dev/urandom >"$tmp/in"

# pair RECEIVER-DIR SENDER-DIR [SENDER-OPTION]: one session, each program
# within 60 s; both exit 0, the output is the input, no queue is left.
pair() {
  local what="receiver of $1, sender of $2 ${3:-(sync)}" rpid s r
  timeout 60 "$1/receiver" -k "$key" -q >"$tmp/out" 2>"$tmp/r.err" &
  rpid=$!
  timeout 60 "$2/sender" -k "$key" -q -w 10 ${3:+"$3"} <"$tmp/in" 2>"$tmp/s.err"
  s=$?
  wait "$rpid"
  r=$?
  if [ "$s" = 0 ] && [ "$r" = 0 ] && cmp -s "$tmp/in" "$tmp/out" && ! ipcs -q | grep -q "^$key "; then
    passed=$((passed + 1))
    echo "ok   $what"
  else
    failed=$((failed + 1))
    echo "FAIL $what: sender $s, receiver $r; $(cat "$tmp/s.err" "$tmp/r.err" | head -c 300)"
    ipcrm -Q "$key" 2>/dev/null
  fi
}

for option in "" --async; do
  pair "$1" "$2" "$option"
  pair "$2" "$1" "$option"
done
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
