# tests/lib.sh - helpers for the end-to-end tests, sourced by tests/run.sh.
#
# Each test is a function run in a subshell with its own folder ($T), its
# own queue key ($KEY) and a time limit. Programs run in the background
# with `start NAME CMD...` (output in $T/NAME.out and $T/NAME.err, pid in
# $NAME_pid) and are waited for with `finish NAME [SECONDS]`. Failed checks
# are written to $T/failures. A test's key is one that no queue uses when it
# starts; after the test, anything it left running is killed and a queue it
# left under its key is removed: both count as failures. A queue that was
# there before is someone else's, and never touched.
# shellcheck shell=bash disable=SC2034  # the suites use these variables

WRAP=${WRAP:-}          # e.g. "valgrind -q --error-exitcode=1"
EMULATED=${EMULATED:-}  # 1: the programs run under qemu-user (.ci/run's 32-bit build, here)
LIMIT=${LIMIT:-60}      # seconds a test may take
JOBS=${JOBS:-4}         # tests run at once
read -r -a wrap_words <<<"$WRAP"
SENDER=(env --default-signal "${wrap_words[@]}" ./sender)
RECEIVER=(env --default-signal "${wrap_words[@]}" ./receiver)
HOSTILE=./tests/hostile

TOP=$(mktemp -d)
trap 'rm -rf "$TOP"' EXIT
# pause SECONDS : sleep without a fork (a read that times out on a fifo nothing writes to). The
# tests poll often, and each forked sleep costs milliseconds on a small VM.
mkfifo "$TOP/never"
exec {NEVER}<>"$TOP/never"
pause() { read -r -t "$1" -u "$NEVER" _ || true; }
passed=0
failed=0
skipped=0
key_base=$((0x7e000000 + ($$ % 256) * 0x10000))  # test i has key_base + i
TESTS=()

fail() { printf '%s\n' "$*" >>"$T/failures"; }
skip() { printf '%s\n' "$*" >"$T/skipped"; exit 0; }

# start NAME CMD... : run CMD in the background; stdin from $IN if set.
start() {
  local name=$1
  shift
  : >"$T/$name.out"  # now, not later in the child: callers look at it at once
  : >"$T/$name.err"
  "$@" <"${IN:-/dev/null}" >"$T/$name.out" 2>"$T/$name.err" 3>&- 4>&- 5>&- {NEVER}>&- &
  printf -v "${name}_pid" '%s' "$!"
  echo "$!" >>"$T/pids"
}

# finish NAME [SECONDS] : wait for it, at most SECONDS (default 20); its exit
# status goes to $NAME_rc. Still running then: a failure, and it is killed.
# After a signal the fault tests allow 2 s: a signal that lands just before
# a blocking call is acted on when the alarm it arms fires, a second later.
finish() {
  local name=$1 limit=${2:-20} pid ticks=0
  pid=${name}_pid
  pid=${!pid}
  while kill -0 "$pid" 2>/dev/null && [ "$ticks" -lt $((limit * 50)) ]; do
    pause 0.02
    ticks=$((ticks + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    fail "$name still running after ${limit}s"
    kill -9 "$pid" 2>/dev/null
  fi
  wait "$pid"
  printf -v "${name}_rc" '%s' "$?"
}

# session [SENDER-OPTION]... : a receiver, and a connected sender (with these
# options) whose input is a pipe: what a test writes to fd 3 is sent.
session() {
  start r "${RECEIVER[@]}" -k "$KEY"
  session_sender "$@"
}

# session_sender [SENDER-OPTION]... : the sender alone, for a receiver r
# started otherwise.
session_sender() {
  rm -f "$T/fifo"
  mkfifo "$T/fifo"
  exec 3<>"$T/fifo"
  IN=$T/fifo start s "${SENDER[@]}" -k "$KEY" -w 10 "$@"
  wait_until grep -q connected "$T/s.err"
}

# chat [QBYTES]: $T/in from the sender, $T/replies as the receiver's stdin
# in --reply mode, on a queue lowered to QBYTES if given.
chat() {
  IN=$T/replies start r "${RECEIVER[@]}" -k "$KEY" --reply
  if [ -n "${1:-}" ]; then
    wait_queue
    "$HOSTILE" "$KEY" qbytes "$1"
  fi
  IN=$T/in run s "${SENDER[@]}" -k "$KEY"
  finish r
  expect_clean_run r s
  expect_same "$T/in" "$T/r.out"
}

# helper CMD... : a background helper (not under test), killed after the test.
helper() {
  "$@" &
  echo "$!" >>"$T/helpers"
}

# run NAME CMD... : start and finish.
run() {
  start "$@"
  finish "$1"
}

expect_status() {
  local rc=${1}_rc
  [ "${!rc}" = "$2" ] ||
    fail "$1 exited ${!rc}, expected $2; its stderr: $(head -c 600 "$T/$1.err")"
}

expect_same() {
  cmp -s "$1" "$2" || fail "$2 differs from $1: $(cmp "$1" "$2" 2>&1 | head -1)"
}

expect_grep() {
  grep -Eq -- "$2" "$1" || fail "$1 lacks /$2/: $(head -c 600 "$1")"
}

expect_no_grep() {
  ! grep -Eq -- "$2" "$1" || fail "$1 has /$2/: $(grep -E -- "$2" "$1" | head -3)"
}

expect_empty() {
  [ ! -s "$1" ] || fail "$1 is not empty: $(head -c 300 "$1")"
}

# finish_intact : sender s and receiver r end, both 0, and the receiver
# wrote exactly $T/in.
finish_intact() {
  finish s
  finish r
  expect_status s 0
  expect_status r 0
  expect_same "$T/in" "$T/r.out"
}

# Both sides of a normal run: no error, no removed queue seen, no leak.
expect_clean_run() {
  local name
  for name in "$@"; do
    expect_status "$name" 0
    expect_no_grep "$T/$name.err" 'Identifier removed|ignoring|died|AddressSanitizer|runtime error'
  done
}

queue_exists() { ipcs -q | grep -q "^$KEY "; }

# wait_queue : until the queue under $KEY exists.
wait_queue() { wait_until queue_exists; }

# wait_count N : until the queue holds at least N messages.
wait_count() { wait_until holds "$1"; }
holds() { [ "$("$HOSTILE" "$KEY" count 2>/dev/null || echo 0)" -ge "$1" ]; }

# wait_until CMD... : until CMD succeeds, for at most 5 s. Waiting on what a
# program says, not on a sleep, keeps the tests right on a loaded machine.
wait_until() {
  local ticks=0
  until "$@"; do
    [ "$ticks" -lt 250 ] || { fail "gave up waiting for: $*"; return 1; }
    pause 0.02
    ticks=$((ticks + 1))
  done
}

# stop PID : SIGSTOP, then wait until it has really stopped. Until then the
# process may still be waiting in msgrcv, and the kernel hands a new message
# straight to a waiting receiver instead of queueing it.
stop() {
  local state ticks=0
  kill -STOP "$1"
  while read -r _ _ state _ <"/proc/$1/stat" && [ "$state" != T ]; do
    [ "$ticks" -lt 250 ] || { fail "process $1 did not stop"; return 1; }
    pause 0.01
    ticks=$((ticks + 1))
  done
}

# blocked_in PID WORD : until PID sleeps in a kernel function whose name has
# WORD in it (/proc/PID/wchan). Where the kernel hides it, a second's wait.
blocked_in() {
  local ticks=0 where
  while where=$(cat "/proc/$1/wchan" 2>/dev/null) && [[ $where != *"$2"* ]]; do
    if [ -z "$where" ] || [ "$where" = 0 ]; then
      pause 1
      return 0
    fi
    [ "$ticks" -lt 250 ] || { fail "process $1 never blocked in $2 (it is in $where)"; return 1; }
    pause 0.02
    ticks=$((ticks + 1))
  done
}

# as_user UID CMD... : run CMD as an unprivileged user (root only).
as_user() {
  local uid=$1
  shift
  setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"
}

need_root() { [ "$(id -u)" = 0 ] || skip "needs root to switch users"; }

# After each test: nothing left running, no queue left behind.
after_test() {
  local pid
  while read -r pid; do
    if kill -0 "$pid" 2>/dev/null; then
      fail "left process $pid running"
      kill -9 "$pid" 2>/dev/null
    fi
  done <"$T/pids"
  while read -r pid; do kill -9 "$pid" 2>/dev/null; done <"$T/helpers"
  if grep -lE 'AddressSanitizer|LeakSanitizer|runtime error:|^==[0-9]+== ' "$T"/*.err 2>/dev/null; then
    fail "a sanitizer or valgrind report: $(grep -hE 'Sanitizer|runtime error:|^==' "$T"/*.err | head -5)"
  fi
  if queue_exists; then
    fail "left queue $KEY behind"
    ipcrm -Q "$KEY"
  fi
}

# run_test NAME INDEX : runs test NAME in its folder $TOP/NAME with the key
# key_base + INDEX (or, if someone else's queue has it, one 0x1000 further);
# its verdict (ok, FAIL, skip) and the lines to print go to files there.
run_test() {
  local t=$1 tp ticks=0 verdict
  KEY=$(printf '0x%08x' $((key_base + $2)))
  while queue_exists; do KEY=$(printf '0x%08x' $((KEY + 0x1000))); done
  T=$TOP/$t
  mkdir -p "$T"
  : >"$T/pids"
  : >"$T/helpers"
  ("$t") >"$T/log" 2>&1 &
  tp=$!
  while kill -0 "$tp" 2>/dev/null && [ "$ticks" -lt $((LIMIT * 20)) ]; do
    pause 0.05
    ticks=$((ticks + 1))
  done
  if kill -0 "$tp" 2>/dev/null; then
    kill -9 "$tp"
    fail "timed out after ${LIMIT}s"
  fi
  wait "$tp"
  after_test
  if [ -s "$T/failures" ]; then
    verdict=FAIL
    { printf 'FAIL %s\n' "$t"; sed 's/^/    /' "$T/failures" "$T/log" | head -40; } >"$T/result"
  elif [ -e "$T/skipped" ]; then
    verdict=skip
    printf 'skip %s: %s\n' "$t" "$(cat "$T/skipped")" >"$T/result"
  else
    verdict=ok
    printf 'ok   %s%s\n' "$t" "$([ ! -s "$T/note" ] || printf ' (%s)' "$(cat "$T/note")")" >"$T/result"
  fi
  echo "$verdict" >"$T/verdict"
}

# run_tests NAME... : runs them, JOBS at a time (they wait on seconds-long
# ticks more than on the CPU), then prints their results in order.
run_tests() {
  local t i=0
  for t in "$@"; do
    while [ "$(jobs -pr | wc -l)" -ge "$JOBS" ]; do wait -n; done
    run_test "$t" "$i" &
    i=$((i + 1))
  done
  wait
  for t in "$@"; do
    cat "$TOP/$t/result" 2>/dev/null || printf 'FAIL %s: no result\n' "$t"
    case $(cat "$TOP/$t/verdict" 2>/dev/null) in
      ok) passed=$((passed + 1)) ;;
      skip) skipped=$((skipped + 1)) ;;
      *) failed=$((failed + 1)) ;;
    esac
  done
}

summary() {
  if [ "$skipped" -gt 0 ]; then
    printf '%d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
  else
    printf '%d passed, %d failed\n' "$passed" "$failed"
  fi
  [ "$failed" -eq 0 ]
}
