#!/usr/bin/env bash
# run_demo.sh - the whole sender/receiver conversation in one terminal.
#
# Builds if needed, uses a key of its own (so it never disturbs a session
# you have running; DEMO_KEY chooses another), runs a short scripted
# conversation in normal, chat and async mode with -v so that every message
# shows, and shows `ipcs -q` before and after. Both programs write straight
# to this script's output, stdout and stderr alike, so that lines appear in
# the order they happened, on a terminal or in a file. Headings are bold on
# a terminal only. Exits non-zero if anything went wrong.
set -u
cd "$(dirname "$0")" || exit 1
if [ ! -x sender ] || [ ! -x receiver ]; then
  make -s || exit 1
fi

key=${DEMO_KEY:-$(printf '0x%08x' $((0x7d000000 + $(id -u) % 0x100000)))}
failures=0
bold=''
plain=''
if [ -t 1 ]; then
  bold=$'\033[1m'
  plain=$'\033[0m'
fi

heading() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }

# check WHAT STATUS: note a step that did not exit 0.
check() {
  if [ "$2" -ne 0 ]; then
    echo "run_demo.sh: $1 exited $2" >&2
    failures=$((failures + 1))
  fi
}

# converse RECEIVER-OPTIONS -- SENDER-ARGS: one receiver, one sender, both
# writing to our stdout. The receiver's stdin is $REPLIES (chat mode).
converse() {
  local ropts=() rpid
  while [ "$1" != -- ]; do ropts+=("$1"); shift; done
  shift
  ./receiver -k "$key" -v "${ropts[@]}" <"${REPLIES:-/dev/null}" 2>&1 &
  rpid=$!
  ./sender -k "$key" -v "$@" 2>&1
  check sender $?
  wait "$rpid"
  check receiver $?
}

heading "ipcs -q before (the demo's key is $key)"
ipcs -q
cat <<'EOF'
Lines that begin with "receiver:" or "sender:" are the programs' status
and -v lines (standard error). Bare lines are data: what the receiver
writes to its standard output and, in chat mode, the reply the sender prints.
EOF

heading "1. Synchronous: each message is acknowledged before the next is sent"
converse -- hello "second message"

heading "2. Chat (receiver --reply): each acknowledgment carries a reply line"
REPLIES=<(printf 'hi, sender\nfine, thanks\n') converse --reply -- "hello, receiver" "how are you?"

heading "3. Asynchronous (sender --async): no waiting per message, one tally at the end"
echo "(The receiver buffers async data and writes it when it has nothing to read:"
echo " here, the lines come out after END.)"
seq 1 5 | converse -- --async

heading "ipcs -q after: no queue with the demo's key $key is left"
ipcs -q
if ipcs -q | grep -q "^$key "; then
  echo "run_demo.sh: queue $key was left behind" >&2
  failures=$((failures + 1))
fi

if [ "$failures" -ne 0 ]; then
  echo "run_demo.sh: $failures step(s) failed" >&2
  exit 1
fi
printf '\nrun_demo.sh: all steps succeeded\n'
