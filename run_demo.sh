#!/usr/bin/env bash
# run_demo.sh - the lab notes (README.md, "System V message queues"), live,
# in one terminal: a receiver, a few senders and their queue, in five steps.
#
# Each step opens with one sentence naming what it shows, then shows it
# happen: the commands, as typed at a prompt, then what the programs print
# (-v: one line per msgsnd and msgrcv). Everything goes through one pipe,
# so lines appear in the order they happened, on a terminal or in a file;
# headings are bold on a terminal only. The script waits for what the
# programs say, not for time, and exits non-zero if a step did not do what
# its sentence says. It uses a key of its own (DEMO_KEY chooses another),
# and leaves no queue and no process behind.
set -u
cd "$(dirname "$0")" || exit 1
if [ ! -x sender ] || [ ! -x receiver ]; then
  make -s || exit 1
fi

key=${DEMO_KEY:-$(printf '0x%08x' $((0x7d000000 + $(id -u) % 0x100000)))}
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
tmp=$(mktemp -d)
log=$tmp/log  # a copy of all we print, to look at what the programs said
received=$tmp/received  # what the receivers write
current=0     # the step under way
from=1        # the first line of $log that it printed
receiver='' async='' asker='' waiter=''  # their pids, set by start

# On the way out, however early: what still runs is ended (a receiver
# removes its queue on SIGTERM), and all we printed is let out.
cleanup() {
  local pid
  for pid in $(jobs -p); do
    kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
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
  current=${1%%.*}
  from=$(($(wc -l <"$log") + 1))
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

# printed PATTERN: a line this step printed matches PATTERN (grep -E).
printed() { tail -n "+$from" "$log" | grep -Eq -- "$1"; }

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
# its input from $IN and its output to $OUT if they are set. A script's
# background job starts with SIGINT ignored; `trap - INT` gives it back,
# for step 4b. It does not hold the fifo open (fd 4): its input could not end.
start() {
  local name=$1
  shift
  printf '$ %s%s%s &\n' "$*" "${IN:+ < $IN}" "${OUT:+ > $OUT}"
  (trap - INT; exec "$@" <"${IN:-/dev/null}" >"${OUT:-/dev/stdout}" 4>&-) &
  printf -v "$name" '%s' "$!"
  echo "[pid $!]"
}

# ended NAME STATUS: waits for process $NAME (${!1}: the pid it holds),
# which must exit with STATUS.
ended() {
  local rc
  wait "${!1}"
  rc=$?
  if [ "$rc" -gt 128 ]; then
    echo "(process ${!1} exited $rc: 128 + $((rc - 128)), killed by SIG$(kill -l "$rc"))"
  else
    echo "(process ${!1} exited $rc)"
  fi
  [ "$rc" -eq "$2" ] || broken "$1 exited $rc, not $2"
}

# blocked PID: until PID sleeps in msgsnd or msgrcv (its kernel wait
# channel); where ps cannot tell, a second's wait.
blocked() {
  local i where
  for ((i = 0; i < 250; i++)); do
    where=$(ps -o wchan= -p "$1" 2>/dev/null)
    case $where in *msg*) return 0 ;; '' | 0 | '?') sleep 1; return 0 ;; esac
    sleep 0.02
  done
  broken "process $1 never blocked in msgsnd or msgrcv"
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

# input NAME: a fifo for a sender's input, held open for writing on fd 4
# (so that the input ends only when we close it), its path in $fifo.
input() {
  fifo=$tmp/$1
  show mkfifo "$fifo"
  printf '$ exec 4<>%s\n' "$fifo"
  exec 4<>"$fifo"
}
# feed CMD...: CMD's output into the fifo.
feed() {
  printf '$ %s >&4\n' "$*"
  "$@" >&4
}
close_input() {
  printf '$ exec 4>&-\n'
  exec 4>&-
}

echo "run_demo.sh: the System V message-queue lab, live, on key $key."
echo '"$ ..." lines are the commands this script runs, each followed by what it'
echo 'prints; "[pid N]" is a process started in the background, "(... exited S)"'
echo 'how it ended. "receiver: ..." and "sender: ..." lines are what the programs'
echo 'say on stderr: with -v, one per msgsnd and msgrcv, naming the kind of message'
echo '(HELLO, DATA, ACK...: README.md, "The protocol"). Receivers write data to a file.'

step "1. msgget(key, IPC_CREAT | IPC_EXCL | 0600) creates a new queue that only its owner may read and write (0600 = 0x180 = S_IRUSR | S_IWUSR); a second receiver on the same key is refused (EEXIST)."
OUT=$received start receiver ./receiver -k "$key" -v --senders 4
await '^receiver: msgget\(.*IPC_CREAT \| IPC_EXCL \| 0600\): queue id [0-9]+; waiting for 4 senders$'
show_queue
[ "$(queue_row | awk '{ print $4 }')" = 600 ] || broken "the queue's perms are not 600"
! show ./receiver -k "$key" || broken "a second receiver was let in"
await "^receiver: queue $key already exists"

step "2. Types select who reads what: a sender says HELLO as type 2 and, once welcomed, sends its lines as type 1; the receiver reads both (msgrcv with msgtyp -2: type 1 first) and answers each line (ACK) with a type the sender picked at random, which only that sender reads."
show ./sender -k "$key" -v hello again || broken "the sender failed"
await '^sender: msgrcv\(type [0-9]+\) ACK, pid [0-9]+, 0 bytes$'
show cat "$received"

step "3. With IPC_NOWAIT, msgsnd never waits: when the queue is full (the next message would pass its msg_qbytes, 16384 bytes) it fails with EAGAIN; this sender then waits in a plain msgsnd until the receiver makes room."
input async
IN=$fifo start async ./sender -k "$key" -v --async
await "^receiver: sender $async connected$"
stopped "$receiver"
feed seq 1 10000
close_input
await '^sender: msgsnd: .* \(EAGAIN\): the queue is full; from now on msgsnd waits$'
blocked "$async"
show ps -o pid,stat,wchan:12,args -p "$async"
show_queue
show kill -CONT "$receiver"
ended async 0
await '^sender: msgsnd\(type 1, IPC_NOWAIT\) DATA, pid [0-9]+, [0-9]+ bytes$'
show tail -n 2 "$received"
seq 1 10000 | cmp -s - <(tail -n 10000 "$received") || broken "the receiver did not write what was sent"

step "4a. A blocked call ends in one of three ways; first, it succeeds: a sender waits in msgrcv for its own type, though the queue holds a message (its DATA, of type 1), until the stopped receiver goes on and its ACK comes."
input chat
IN=$fifo start asker ./sender -k "$key" -v
await "^receiver: sender $asker connected$"
stopped "$receiver"
feed echo are you there
blocked "$asker"
show ps -o pid,stat,wchan:12,args -p "$asker"
show_queue
[ "$(queue_row | awk '{ print $6 }')" = 1 ] || broken "the queue does not hold the DATA"
show kill -CONT "$receiver"
await '^sender: msgrcv\(type [0-9]+\) ACK, pid [0-9]+, 0 bytes$'

step "4b. A signal arrives: the sender, waiting for its second ACK, gets $said; msgrcv fails with EINTR (\"Interrupted system call\"), and the sender tells the receiver why (BYE) and dies."
stopped "$receiver"
feed echo still there
blocked "$asker"
show kill -"$sig" "$asker"
await "^sender: msgrcv: Interrupted system call \\(SIG$sig\\); 1 message \\(14 bytes\\) acknowledged$"
ended asker $((128 + $(kill -l "$sig")))
close_input
show kill -CONT "$receiver"
await "^receiver: sender $asker left after 2 messages \\(26 bytes\\): msgrcv: Interrupted system call \\(SIG$sig\\)$"

step "4c. The queue is removed: ipcrm -Q deletes it while the sender waits in msgrcv, which fails with EIDRM (\"Identifier removed\"); the receiver finds it gone too."
input last
IN=$fifo start waiter ./sender -k "$key" -v
await "^receiver: sender $waiter connected$"
stopped "$receiver"
feed echo anyone
blocked "$waiter"
show ipcrm -Q "$key"
await '^sender: msgrcv: Identifier removed \(queue 0x[0-9a-f]+\); 0 messages \(0 bytes\) acknowledged$'
ended waiter 1
close_input
show kill -CONT "$receiver"
await '^receiver: msgrcv: Identifier removed \(queue 0x[0-9a-f]+\)$'
ended receiver 1

step "5. msgctl(IPC_RMID): a receiver removes its queue once its last sender has said BYE, and ipcs -q shows it gone."
OUT=$received start receiver ./receiver -k "$key" -v
await '^receiver: msgget\(.*\): queue id [0-9]+; waiting for 1 sender$'
show ./sender -k "$key" goodbye || broken "the sender failed"
ended receiver 0
await '^receiver: msgctl\([0-9]+, IPC_RMID\): queue 0x[0-9a-f]+ removed$'
show_queue
[ -z "$(queue_row)" ] || broken "queue $key is still there"

printf '\nrun_demo.sh: each step did what it said\n'
