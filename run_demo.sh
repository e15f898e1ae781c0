#!/usr/bin/env bash
# run_demo.sh - the lab notes (README.md, "System V message queues"), live,
# in one terminal: a receiver, a few senders and their queue, in five steps
# (the fourth in three parts: the three ways a blocked call ends).
#
# Each step opens with one sentence naming what it shows, then shows it
# happen: the commands, as typed at a prompt, then what the programs print.
# A student reads it to the end: under 100 lines, so the programs trace
# each msgsnd and msgrcv (-v) only in the steps about those calls, and the
# senders that only hold a turn are quiet (-q); --long gives every program
# -v, the full trace. Everything goes through one pipe, so lines appear in
# the order they happened, on a terminal or in a file; headings are bold on
# a terminal only. The script waits for what the programs say, not for
# time, and exits 1 if a step did not do what its sentence says. It uses a
# key of its own, and leaves no queue and no process behind.
set -u
cd "$(dirname "$0")" || exit 1

usage() {
  cat <<'EOF'
Usage: ./run_demo.sh [--long] [--key KEY]
Runs the System V message-queue lab live (README.md, "The demo"): a receiver,
a few senders and their queue, in five steps, each checked. Exit status: 0 if
each step did what it says, 1 if one did not (it names the step), 2 for a usage
error, 130 on Ctrl-C. It leaves no queue and no process behind.

  --long      the full trace: every msgsnd and msgrcv of every program (-v)
  --key KEY   the queue key (default: $DEMO_KEY if set, else 0x7d000000 plus
              your uid); the demo creates, then removes, its queue
  -h, --help  show this help and exit
EOF
}

# An option we do not know, or an argument, is a mistake: say so, and do
# nothing (2).
usage_error() {
  echo "run_demo.sh: $*" >&2
  echo "Try './run_demo.sh --help'." >&2
  exit 2
}

long=''
key=${DEMO_KEY:-$(printf '0x%08x' $((0x7d000000 + $(id -u) % 0x100000)))}
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --long) long=1 ;;
    --key) [ $# -ge 2 ] || usage_error "option '--key' needs a KEY"; key=$2; shift ;;
    --key=*) key=${1#--key=} ;;
    -*) usage_error "unknown option '$1'" ;;
    *) usage_error "unexpected argument '$1'" ;;
  esac
  shift
done

if [ ! -x sender ] || [ ! -x receiver ]; then
  make -s || exit 1
fi

# What the programs say. Short: -v only where a step is about the calls
# (their senders pass -v themselves, and step 3's shows only the lines of
# its IPC_NOWAIT), and -q for a sender that only holds the receiver's turn.
# --long: -v for all, and every line.
v=() hush=(-q) nowait_lines='IPC_NOWAIT|EAGAIN'
[ -z "$long" ] || v=(-v) hush=(-v) nowait_lines=''

bold=''
plain=''
if [ -t 1 ]; then
  bold=$'\033[1m'
  plain=$'\033[0m'
fi
# Step 4b interrupts a sender with SIGINT, Ctrl-C's signal. A script started
# in the background has SIGINT ignored (trap -p INT shows it), and so would
# the sender have: there, SIGTERM does instead.
sig=INT
said='SIGINT (Ctrl-C)'
if [ -n "$(trap -p INT)" ]; then
  sig=TERM
  said=SIGTERM
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/demo.XXXXXX")
log=$tmp/log  # a copy of all we print, to look at what the programs said
received=$tmp/received  # what the receivers write
current=0     # the step under way
from=1        # the first line of $log that it printed
found=0       # a line number, set by find_line
receiver='' async='' first='' second='' third='' fourth=''  # pids, set by start

# On the way out, however early: what still runs is ended (a receiver
# removes its queue on SIGTERM), and all we printed is let out.
cleanup() {
  local pid
  for pid in $(jobs -p); do
    kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    gone "$pid" || kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  exec >/dev/null 2>&1
  wait "$tee_pid"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "run_demo.sh: interrupted in step $current"; exit 130' INT
trap 'echo "run_demo.sh: terminated in step $current"; exit 143' TERM

# All output goes through tee, which keeps a copy in $log. It ignores
# Ctrl-C, so that what the programs say as they end still gets out.
: >"$log"
exec > >(trap '' INT TERM; exec tee "$log") 2>&1
tee_pid=$!  # $! of a process substitution: tee's

# step SENTENCE: a new step, and the one sentence that says what it shows.
step() {
  local lines
  current=${1%%.*}
  mapfile -t lines <"$log"
  from=$((${#lines[@]} + 1))
  printf '\n%s== %s%s\n' "$bold" "$*" "$plain"
}

# show CMD...: prints CMD as typed at a prompt, then runs it; a failure
# is shown with its exit status.
show() {
  local rc
  printf '$ %s\n' "$*"
  "$@" </dev/null
  rc=$?
  [ "$rc" -eq 0 ] || echo "(exit status $rc)"
  return "$rc"
}

# broken WHAT: a step did not do what its sentence says; the rest would
# not either.
broken() {
  echo "run_demo.sh: step $current did not do what it says: $*"
  exit 1
}

# find_line PATTERN [N]: the Nth (first) line this step printed that matches
# PATTERN, an extended regular expression: its number in $found, or false.
# Bash reads the log itself: a look costs no process, which counts on a
# loaded machine, where each takes tens of ms.
find_line() {
  local lines i seen=0
  mapfile -t -s $((from - 1)) lines <"$log"
  for i in "${!lines[@]}"; do
    if [[ ${lines[i]} =~ $1 ]] && ((++seen == ${2:-1})); then
      found=$((i + 1))
      return 0
    fi
  done
  return 1
}
# line_of PATTERN [N]: the same number, printed (empty if none), to check
# what came before what.
line_of() { find_line "$@" && echo "$found"; }
# printed PATTERN: this step printed a line that matches PATTERN. (No
# redirection of a function here: a trap run inside it would find stdout
# saved on another fd, still open, and cleanup would wait for tee forever.)
printed() { find_line "$1"; }

# await PATTERN: until this step has printed such a line; 5 s at most, by the
# clock (on a loaded machine each look takes longer than its pause).
await() {
  local until=$((${EPOCHREALTIME/./} + 5000000))
  until printed "$1"; do
    [ "${EPOCHREALTIME/./}" -lt "$until" ] || broken "never printed: $1"
    sleep 0.02
  done
}

# start NAME CMD...: CMD in the background, its pid in $NAME (printf -v),
# its input from $IN and its output to $OUT if they are set, its stderr
# through grep -E "$KEEP" if that is set: the lines that matter, each as it
# comes (--line-buffered), not when grep's buffer fills. The command line,
# with the pid, is printed by the process itself before it becomes CMD, so
# that it comes before anything CMD says. A script's background job starts
# with SIGINT ignored; `trap - INT` gives it back, for step 4b. It does not
# hold the fifos open (fds 4, 5): its input could not end.
start() {
  local name=$1 keep=''
  shift
  [ -z "${KEEP:-}" ] || keep=" 2> >(grep --line-buffered -E '$KEEP')"
  (
    trap - INT
    printf '$ %s%s%s%s &  # pid %s\n' "$*" "${IN:+ < $IN}" "${OUT:+ > $OUT}" "$keep" "$BASHPID"
    if [ -n "${KEEP:-}" ]; then
      exec "$@" <"${IN:-/dev/null}" >"${OUT:-/dev/stdout}" 4>&- 5>&- 2> >(exec grep --line-buffered -E -- "$KEEP")
    fi
    exec "$@" <"${IN:-/dev/null}" >"${OUT:-/dev/stdout}" 4>&- 5>&-
  ) &
  printf -v "$name" '%s' "$!"
  await "  # pid $!\$"
}

# ended STATUS NAME...: waits for the processes $NAME... (${!name}: the pid
# each holds), which must all exit with STATUS. Unless that is 0 (they say
# so themselves: done, finished, removed), one line says how they ended.
ended() {
  local status=$1 name rc pids=()
  shift
  for name in "$@"; do
    gone "${!name}" || broken "$name (process ${!name}) did not end"
    wait "${!name}"
    rc=$?
    [ "$rc" -eq "$status" ] || broken "$name (process ${!name}) exited $rc, not $status"
    pids+=("${!name}")
  done
  [ "$status" -ne 0 ] || return 0
  local how="exited $status"
  [ "$status" -le 128 ] || how+=": 128 + $((status - 128)), killed by SIG$(kill -l "$status")"
  if [ "${#pids[@]}" -eq 1 ]; then
    echo "(process ${pids[0]} $how)"
  else
    local list
    printf -v list '%s, ' "${pids[@]}"
    echo "(processes ${list%, } $how)"
  fi
}

# gone PID: until process PID, a child, has ended and bash has taken its
# status (a look every 20 ms; false after 10 s, by the clock). Only then
# `wait`, which returns at once: a Ctrl-C that lands in a blocked wait runs
# the trap, and so cleanup, inside it; there bash may wait for good for a
# child it has already taken.
gone() {
  local until=$((${EPOCHREALTIME/./} + 10000000))
  while kill -0 "$1" 2>/dev/null; do
    [ "${EPOCHREALTIME/./}" -lt "$until" ] || return 1
    sleep 0.02
  done
}

# blocked PID CALL: until PID sleeps in CALL, msgsnd or msgrcv (its kernel
# wait channel, do_msgrcv...); where ps cannot tell, a second's wait.
blocked() {
  local i where
  for ((i = 0; i < 250; i++)); do
    where=$(ps -o wchan= -p "$1" 2>/dev/null)
    case $where in *"$2"*) return 0 ;; '' | 0 | '?') sleep 1; return 0 ;; esac
    sleep 0.02
  done
  broken "process $1 never blocked in $2 (it is in $where)"
}
# show_blocked PID CALL: the same, then ps shows where it sleeps.
show_blocked() {
  blocked "$1" "$2"
  show ps -o wchan= -p "$1"
}

# stopped PID: SIGSTOP (what Ctrl-Z sends), and until it has taken effect.
stopped() {
  show kill -STOP "$1"
  local i
  for ((i = 0; i < 250; i++)); do
    case $(ps -o stat= -p "$1") in T*) return 0 ;; esac
    sleep 0.02
  done
  broken "process $1 did not stop"
}

# queue_row: the line of `ipcs -q` for our key (empty if there is none).
queue_row() { ipcs -q | grep "^$key "; }
show_queue() {
  printf '$ ipcs -q | grep -e msqid -e %s\n' "$key"
  ipcs -q | grep -e msqid -e "^$key "
}

# input NAME FD [LINE]: a fifo for a sender's input, held open for writing
# on FD (4 or 5), so that the input ends only when we close it; its path in
# $fifo. LINE, if given, is written to it at once.
input() {
  fifo=$tmp/$1
  printf '$ mkfifo %s; exec %s<>%s%s\n' "$fifo" "$2" "$fifo" "${3:+; echo $3 >&$2}"
  mkfifo "$fifo" && eval "exec $2<>\"\$fifo\""
  [ -z "${3:-}" ] || echo "$3" >&"$2"
}
# last_input FD CMD...: CMD's output into the fifo on FD, and its input ends.
last_input() {
  local fd=$1
  shift
  printf '$ %s >&%s; exec %s>&-\n' "$*" "$fd" "$fd"
  "$@" >&"$fd"
  eval "exec $fd>&-"
}
close_input() {
  printf '$ exec %s>&-\n' "$1"
  eval "exec $1>&-"
}

# wrote LINE...: until the receiver's output ends with these lines (5 s at
# most): a sender without -v says nothing when its line is acknowledged.
wrote() {
  local want until=$((${EPOCHREALTIME/./} + 5000000))
  want=$(printf '%s\n' "$@")
  until [ "$(tail -n $# "$received")" = "$want" ]; do
    [ "${EPOCHREALTIME/./}" -lt "$until" ] || broken "the receiver did not write: $*"
    sleep 0.02
  done
}

echo "run_demo.sh: the System V message-queue lab, live, on key $key (--long: every call)."
echo '"$ ...": a command it runs, then what that prints ("# pid N": started in the background).'

step "1. msgget(key, IPC_CREAT | IPC_EXCL | 0600) creates a new queue that only its owner may read and write (ipcs -q: perms 600); a second receiver on the key is refused (EEXIST)."
OUT=$received start receiver ./receiver -k "$key" "${v[@]}" --senders 8
await '^receiver: msgget\(.*IPC_CREAT \| IPC_EXCL \| 0600\): queue id [0-9]+; waiting for 8 senders$'
show_queue
[ "$(queue_row | awk '{ print $4 }')" = 600 ] || broken "the queue's perms are not 600"
! show ./receiver -k "$key" || broken "a second receiver was let in"
await "^receiver: queue $key already exists"

step "2. Types select who reads what. A sender (-v: each msgsnd and msgrcv) says HELLO as type 2, then sends its lines as type 1; the receiver reads both (msgtyp -2: type 1 first) and answers with a type the sender drew, which only that sender reads."
show ./sender -k "$key" -v hello again || broken "the sender failed"
await '^sender: msgsnd\(type 2\) HELLO, pid [0-9]+, 16 bytes$'
await '^sender: msgsnd\(type 1\) DATA, pid [0-9]+, 6 bytes$'
await '^sender: msgrcv\(type ([3-9]|[1-9][0-9]+)\) ACK, pid [0-9]+, 0 bytes$'
# Sync: the second line goes only once the first one's ACK has come.
ack=$(line_of '^sender: msgrcv\(type [0-9]+\) ACK')
again=$(line_of '^sender: msgsnd\(type 1\) DATA' 2)
if [ -z "$again" ] || [ "$ack" -gt "$again" ]; then
  broken "the second line went before the first one's ACK"
fi
await '^receiver: sender [0-9]+ finished: 12 bytes in 2 messages$'
[ "$(cat "$received")" = $'hello\nagain' ] || broken "the receiver did not write hello, again"
[ -z "$long" ] || show cat "$received"

step "3. With IPC_NOWAIT, msgsnd never waits: the receiver stopped (SIGSTOP, as Ctrl-Z sends), the queue fills up, and once the next message would pass msg_qbytes (16384 bytes) msgsnd fails with EAGAIN; the sender then waits in a plain msgsnd for room."
input numbers 4
KEEP=$nowait_lines IN=$fifo start async ./sender -k "$key" -v --async
await "^receiver: sender $async connected$"
stopped "$receiver"
last_input 4 seq 1 4000
await '^sender: msgsnd\(type 1, IPC_NOWAIT\) DATA, pid [0-9]+, [0-9]+ bytes'
await '^sender: msgsnd: .* \(EAGAIN\): the queue is full; from now on msgsnd waits$'
show_blocked "$async" msgsnd
[ -z "$long" ] || show_queue
[ "$(queue_row | awk '{ print $5 }')" -gt 8192 ] || broken "the queue is not full: it holds 8192 bytes or less"
show kill -CONT "$receiver"
ended 0 async
await "^receiver: sender $async finished: 18893 bytes in [0-9]+ messages$"
seq 1 4000 | cmp -s - <(tail -n 4000 "$received") || broken "the receiver did not write what was sent"

step "4a. A blocked call ends in one of three ways; first, it succeeds. The receiver serves one sender at a time: a second sender, told to wait, waits in msgrcv until the first has finished, then is served."
input first 4
IN=$fifo start first ./sender -k "$key" "${hush[@]}"
await "^receiver: sender $first connected$"
input second 5 second
IN=$fifo start second ./sender -k "$key" "${v[@]}"
await "^sender: waiting for the receiver \(pid $receiver\): it serves another sender$"
show_blocked "$second" msgrcv
last_input 4 echo first
await "^receiver: sender $second connected$"
ended 0 first
[ "$(line_of "^receiver: sender $first finished")" -lt "$(line_of "^receiver: sender $second connected")" ] ||
  broken "the second sender was served before the first had finished"
wrote first second
show tail -n 2 "$received"

step "4b. A signal arrives: a third sender, waiting its turn in msgrcv, gets $said; msgrcv fails with EINTR (\"Interrupted system call\"); the sender tells the receiver (BYE) and dies."
start third ./sender -k "$key" "${v[@]}" third
await "^sender: waiting for the receiver \(pid $receiver\): it serves another sender$"
blocked "$third" msgrcv
show kill -"$sig" "$third"
await "^sender: msgrcv: Interrupted system call \(SIG$sig\)"
ended $((128 + $(kill -l "$sig"))) third
await "^receiver: sender $third left while it waited its turn: msgrcv: Interrupted system call \(SIG$sig\)$"

step "4c. The queue is removed: ipcrm -Q deletes it while a fourth sender waits its turn in msgrcv, which fails with EIDRM (\"Identifier removed\"), as does the receiver's; the second sender, being served, finds it gone too."
start fourth ./sender -k "$key" "${v[@]}" fourth
await "^sender: waiting for the receiver \(pid $receiver\): it serves another sender$"
blocked "$fourth" msgrcv
show ipcrm -Q "$key"
await "^sender: msgrcv: Identifier removed \(queue $key\)"
await "^receiver: msgrcv: Identifier removed \(queue $key\)$"
ended 1 fourth receiver second
close_input 5

step "5. msgctl(IPC_RMID): a receiver removes its queue once its last sender has said BYE, and ipcs -q shows it gone."
OUT=$received start receiver ./receiver -k "$key" "${v[@]}"
await '^receiver: msgget\(.*\): queue id [0-9]+; waiting for 1 sender$'
show ./sender -k "$key" "${hush[@]}" goodbye || broken "the sender failed"
ended 0 receiver
await '^receiver: msgctl\([0-9]+, IPC_RMID\): queue 0x[0-9a-f]+ removed$'
show_queue
[ -z "$(queue_row)" ] || broken "queue $key is still there"

printf '\nrun_demo.sh: each step did what it said\n'
