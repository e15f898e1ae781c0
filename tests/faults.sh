# tests/faults.sh - faults and hostile input: signals, a removed queue, a
# dead peer, stale and foreign queues, closed or full output, junk messages.
# Whatever happens: nobody hangs, no queue leaks, the receiver's output is a
# prefix of the input, and the user is told in one line.
# shellcheck shell=bash disable=SC2154  # NAME_pid and NAME_rc come from start/finish

signum() { kill -l "$1"; }

# Lines of 100 bytes: one message each, so a prefix ends on a line end.
make_lines() {
  awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++) printf "%099d\n", i }' >"$T/in"
}

# The sender's input: $T/in, then silence until the test ends, so that a
# fault always meets a session still open.
feed() {
  rm -f "$T/feed"
  mkfifo "$T/feed"
  exec 4<>"$T/feed"
  helper cat "$T/in" >&4
}

# The receiver's output is a prefix of the input that ends on a message
# boundary, and the sender's acknowledged count is what the receiver wrote
# (at most the one message in flight more, when the receiver could write it
# but not acknowledge it).
expect_prefix() {
  local out=$T/r.out size acked fault=${fault:-}  # set by a caller: KILL_r, CUT
  # A sync DATA is a line, so a sync output ends with a newline; an async DATA (async=1) holds
  # any bytes that fit, and ends anywhere.
  size=$(stat -c %s "$out")
  cmp -s -n "$size" "$T/in" "$out" || fail "$out is not a prefix of the input"
  # kill -9, or a file-size limit, can cut a write: then only the prefix is promised.
  [ "$size" -eq 0 ] || [ "$fault" = KILL_r ] || [ "$fault" = CUT ] || [ -n "${async:-}" ] ||
    [ "$(tail -c 1 "$out" | od -An -c | tr -d ' ')" = '\n' ] ||
    fail "$out does not end on a message boundary"
  acked=$(sed -nE 's/.*messages? \(([0-9]+) bytes?\) acknowledged$/\1/p' "$T/s.err")
  [ -n "$acked" ] || return 0
  if [ "$acked" -gt "$size" ] || [ $((size - acked)) -gt 100 ]; then
    fail "acknowledged $acked bytes, but the receiver wrote $size"
  fi
}

# Waits until the receiver has written something: the transfer is under way.
wait_output() { wait_until test -s "$T/r.out"; }

# signal_idle_receivers SIG... : each signal ends an idle receiver, which
# says it ended msgrcv (EINTR), removes its queue and then dies of it.
signal_idle_receivers() {
  local sig pid name
  for sig in "$@"; do
    start "r$sig" "${RECEIVER[@]}" -k "$KEY"
    pid=r${sig}_pid
    blocked_in "${!pid}" msgrcv
    kill -"$sig" "${!pid}"
    finish "r$sig" 3
    expect_status "r$sig" $((128 + $(signum "$sig")))
    ! queue_exists || fail "SIG$sig left the queue"
    name=SIG$sig
    [ "$sig" != RTMIN ] || name='a real-time signal'
    # In msgrcv, or between two calls if it lands just as a tick ends one (valgrind delays it).
    expect_grep "$T/r$sig.err" "^receiver: (msgrcv: Interrupted system call \($name\)|interrupted by $name)$"
    expect_grep "$T/r$sig.err" "^receiver: msgctl\([0-9]+, IPC_RMID\): queue $KEY removed$"
  done
}

t_signal_idle_receiver() { signal_idle_receivers INT TERM HUP; }

t_ignored_sigint_stays_ignored() {
  start r env --default-signal --ignore-signal=INT "${wrap_words[@]}" ./receiver -k "$KEY"
  wait_queue
  kill -INT "$r_pid"
  run s "${SENDER[@]}" -k "$KEY" -w 5 'still here'
  finish r 3
  expect_clean_run r s
  expect_grep "$T/r.out" '^still here$'
}

t_signal_receiver_mid_transfer() {
  local sig
  make_lines 20000
  for sig in INT TERM HUP; do
    feed
    start r "${RECEIVER[@]}" -k "$KEY"
    IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10
    wait_output
    kill -"$sig" "$r_pid"
    finish r 3
    finish s 3
    expect_status r $((128 + $(signum "$sig")))
    expect_status s 1
    expect_grep "$T/s.err" "^sender: msg(snd|rcv|ctl\(IPC_STAT\)): Identifier removed \(queue $KEY\); [0-9]+ messages? \([0-9]+ bytes?\) acknowledged$"
    expect_prefix
  done
}

# The receiver is blocked in write(): its stdout is a pipe nobody reads.
t_signal_receiver_blocked_in_write() {
  make_lines 20000
  feed
  mkfifo "$T/pipe"
  exec 5<>"$T/pipe"
  # shellcheck disable=SC2016
  start r bash -c 'exec "$@" >"$0"' "$T/pipe" "${RECEIVER[@]}" -k "$KEY"
  IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10
  blocked_in "$r_pid" pipe_write
  kill -TERM "$r_pid"
  finish r 2
  finish s 3
  expect_status r 143
  expect_status s 1
  expect_grep "$T/r.err" '^receiver: write: Interrupted system call \(SIGTERM\)$'
}

# The sender waits for an acknowledgment that does not come; Ctrl-C.
t_signal_sender_waiting_for_ack() {
  session
  stop "$r_pid"
  echo hello >&3
  wait_count 1
  blocked_in "$s_pid" msgrcv
  kill -INT "$s_pid"
  finish s 2
  kill -CONT "$r_pid"
  finish r 3
  expect_status s 130
  expect_grep "$T/s.err" '^sender: msgrcv: Interrupted system call \(SIGINT\); 0 messages \(0 bytes\) acknowledged$'
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid left after 1 message \(6 bytes\): (msgrcv|msgsnd|read): Interrupted system call \(SIG[A-Z]+\)$"
}

# An async sender fills the queue while the receiver is stopped; it has
# LINES (default 20000) to send.
fill_behind_stopped_receiver() {
  make_lines "${1:-20000}"
  async=1
  session --async
  stop "$r_pid"
  helper cat "$T/in" >&3
  blocked_in "$s_pid" msgsnd
}

# The sender is blocked in msgsnd on a full queue.
t_signal_sender_blocked_in_msgsnd() {
  fill_behind_stopped_receiver
  kill -TERM "$s_pid"
  finish s 2
  kill -CONT "$r_pid"
  finish r 3
  expect_status s 143
  expect_grep "$T/s.err" '^sender: msgsnd: Interrupted system call \(SIGTERM\); [0-9]+ messages \([0-9]+ bytes\) sent, none confirmed \(--async\)$'
  expect_status r 1
  # LEAVE is sent if it still fits in the full queue; else the watchdog tells.
  expect_grep "$T/r.err" "^receiver: sender $s_pid (left|died) after [0-9]+ messages?"
  expect_prefix
}

# What a sender sent before it died is still written, then it counts as
# gone. The receiver stays stopped past a watchdog tick, so the tick is
# waiting when it resumes, ahead of the messages.
t_dead_sender_data_still_delivered() {
  local queued size
  fill_behind_stopped_receiver
  queued=$("$HOSTILE" "$KEY" count)
  kill -KILL "$s_pid"
  finish s 2
  sleep 1.2
  kill -CONT "$r_pid"
  finish r 3
  expect_status r 1
  size=$(stat -c %s "$T/r.out")
  # One more than counted may have been handed to the sleeping receiver.
  [ "$size" -ge $((queued * 100)) ] || fail "only $size bytes of $queued queued messages written"
  expect_grep "$T/r.err" "^receiver: sender $s_pid died after [0-9]+ messages? \($size bytes\)$"
  expect_no_grep "$T/r.err" ignoring
  expect_prefix
}

t_signal_sender_reading_input() {
  session
  echo first >&3
  wait_output
  blocked_in "$s_pid" pipe
  kill -HUP "$s_pid"
  finish s 2
  finish r 3
  expect_status s 129
  expect_grep "$T/s.err" '^sender: read: Interrupted system call \(SIGHUP\); 1 message \(6 bytes\) acknowledged$'
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid left after 1 message \(6 bytes\): (msgrcv|msgsnd|read): Interrupted system call \(SIG[A-Z]+\)$"
  printf 'first\n' >"$T/want"
  expect_same "$T/want" "$T/r.out"
}

t_queue_removed_mid_transfer() {
  make_lines 20000
  feed
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10
  wait_output
  ipcrm -Q "$KEY"
  finish r 2
  finish s 2
  expect_status r 1
  expect_status s 1
  expect_grep "$T/r.err" "^receiver: msg(snd|rcv|ctl\(IPC_STAT\)): Identifier removed \(queue $KEY\)$"
  expect_grep "$T/s.err" "^sender: msg(snd|rcv|ctl\(IPC_STAT\)): Identifier removed \(queue $KEY\); [0-9]+ messages"
  expect_prefix
}

# kill -9 leaves the queue behind: the next receiver refuses it and says how
# to remove it; --force replaces it.
t_receiver_killed() {
  make_lines 20000
  feed
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10
  wait_output
  kill -9 "$r_pid"
  finish s 2
  finish r 2
  expect_status s 1
  expect_grep "$T/s.err" "^sender: the receiver \(pid $r_pid\) died; [0-9]+ messages? \([0-9]+ bytes?\) acknowledged$"
  local fault=KILL_r
  expect_prefix
  run r2 "${RECEIVER[@]}" -k "$KEY"
  expect_status r2 1
  expect_grep "$T/r2.err" "^receiver: queue $KEY already exists: .*; if none runs, remove it with 'ipcrm -Q $KEY'$"
  queue_exists || fail "the refusing receiver removed the queue"
  ipcrm -Q "$KEY"
  start r3 "${RECEIVER[@]}" -k "$KEY"
  wait_until grep -q 'waiting for' "$T/r3.err"
  run s3 "${SENDER[@]}" -k "$KEY" -w 10 again
  finish r3
  expect_clean_run r3 s3
}

# lines_read N: the receiver has read (-v) N bytes of DATA that ends lines.
lines_read() {
  awk -v n="$1" '/msgrcv\(type 1.*\) DATA seq [0-9]+ from [0-9]+, [0-9]+ bytes$/ { sum += $(NF - 1) }
    END { exit sum < n }' "$T/r.err"
}

t_sender_killed() {
  make_lines 20000
  feed
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10
  wait_output
  kill -9 "$s_pid"
  finish r 2
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid died after [0-9]+ messages?"
  expect_prefix
}

# output_fails SCRIPT ERROR: the receiver runs as "$@" inside bash -c SCRIPT,
# whose stdout fails with ERROR. It says so, acknowledges nothing it could
# not write and removes the queue; the sender stops with its count.
output_fails() {
  make_lines 20000
  feed
  start r bash -c "$1" _ "${RECEIVER[@]}" -k "$KEY"
  IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10
  finish r 3
  finish s 3
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: write: $2$"
  expect_status s 1
  expect_grep "$T/s.err" "Identifier removed \(queue $KEY\); [0-9]+ messages? \([0-9]+ bytes?\) acknowledged$"
}

t_stdout_closed() {
  # shellcheck disable=SC2016
  output_fails '"$@" | head -n 1 >/dev/null; exit "${PIPESTATUS[0]}"' 'Broken pipe'
}

t_stdout_full() {
  # shellcheck disable=SC2016
  output_fails 'exec "$@" >/dev/full' 'No space left on device'
  expect_grep "$T/s.err" '; 0 messages \(0 bytes\) acknowledged$'
}

t_foreign_queue_untouched() {
  need_root
  as_user 4242 "$HOSTILE" "$KEY" squat || fail "could not squat"
  run r "${RECEIVER[@]}" -k "$KEY"
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: queue $KEY belongs to uid 4242; not touching it"
  run r2 as_user 4343 ./receiver -k "$KEY"
  expect_status r2 1
  expect_grep "$T/r2.err" "^receiver: queue $KEY belongs to uid 4242; not touching it"
  queue_exists || fail "the foreign queue was removed"
  ipcrm -Q "$KEY"
  as_user 4242 "$HOSTILE" "$KEY" squat 0600 || fail "could not squat"  # not even readable
  run r3 as_user 4343 ./receiver -k "$KEY"
  expect_status r3 1
  expect_grep "$T/r3.err" "^receiver: queue $KEY belongs to another user; not touching it \(use another --key\)$"
  queue_exists || fail "the foreign queue was removed"
  ipcrm -Q "$KEY"
}

# A squatter (uid 4242) creates our key first, mode 0666, to read what we
# send; it may even hand the queue to us (4343) with IPC_SET, but as its
# creator it keeps every right to it. Nothing is sent either way.
squatted_queue_refused() {
  need_root
  as_user 4242 "$HOSTILE" "$KEY" squat || fail "could not squat"
  [ -z "${1:-}" ] || as_user 4242 "$HOSTILE" "$KEY" handover 4343 || fail "could not hand over"
  run s as_user 4343 ./sender -k "$KEY" -w 2 secret
  expect_status s 1
  expect_grep "$T/s.err" "^sender: queue $KEY belongs to uid 4242, not to you; refusing to send to it$"
  [ "$("$HOSTILE" "$KEY" count)" = 0 ] || fail "something was sent into the squatted queue"
  ipcrm -Q "$KEY"
}

t_sender_refuses_squatted_queue() { squatted_queue_refused; }

t_sender_refuses_handed_over_queue() { squatted_queue_refused handover; }

t_sender_without_permission() {
  need_root
  start r "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  run s as_user 4242 ./sender -k "$KEY" -w 2 hello
  expect_status s 1
  expect_grep "$T/s.err" "^sender: msgctl\(IPC_STAT\): Permission denied \(queue $KEY\)$"
  run s2 "${SENDER[@]}" -k "$KEY" -w 2 hello
  finish r
  expect_clean_run r s2
}

# Junk of type 1 in the queue before the sender comes and while it runs:
# each is reported in one line and skipped, never written.
t_hostile_messages() {
  local old_max=""
  mkfifo "$T/fifo"
  exec 3<>"$T/fifo"
  start r "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  if [ -w /proc/sys/kernel/msgmax ]; then  # to send one bigger than msgmax
    old_max=$(cat /proc/sys/kernel/msgmax)
    echo 16384 >/proc/sys/kernel/msgmax
  fi
  "$HOSTILE" "$KEY" junk
  [ -z "$old_max" ] || echo "$old_max" >/proc/sys/kernel/msgmax
  IN=$T/fifo start s "${SENDER[@]}" -k "$KEY" -w 10
  wait_until grep -q connected "$T/s.err"
  "$HOSTILE" "$KEY" junk
  printf 'real one\nreal two\n' | tee "$T/in" >&3
  exec 3>&-
  finish_intact
  expect_grep "$T/r.err" 'ignoring a malformed message \(3 bytes\)'
  expect_grep "$T/r.err" 'ignoring a malformed message \(0 bytes\)'
  [ -z "$old_max" ] || expect_grep "$T/r.err" 'ignoring a malformed message \(8192 bytes\)'
  expect_grep "$T/r.err" 'ignoring a malformed message \(21 bytes\)'
  expect_grep "$T/r.err" 'ignoring a malformed message \(19 bytes\)'
  expect_grep "$T/r.err" 'ignoring UNKNOWN from pid [0-9]+: no sender in line has reply type 77$'
  expect_grep "$T/r.err" 'ignoring DATA from pid [0-9]+: no sender in line has reply type 77$'
  expect_grep "$T/r.err" 'ignoring a HELLO with reply type 77, pid 0$'
  # Each round: 6 kinds of junk as type 1 and as type 2, one too big for
  # us (if msgmax could be raised to send it), and a HELLO of pid 0.
  [ "$(grep -c 'ignoring' "$T/r.err")" -eq $((2 * (${old_max:+1} + 13))) ] ||
    fail "not 2 rounds of junk reported: $(grep -c ignoring "$T/r.err")"
  expect_no_grep "$T/r.err" 'died|Identifier removed'
}

# ---- Second round: what a hostile process, a shrunk queue or an unusual
# signal did to the promises of the README.

# chat_waiting: a chatting receiver whose user has not typed yet (its stdin
# is open and silent), and a sender that sent 'hello?' and waits for a reply.
chat_waiting() {
  mkfifo "$T/replies"
  exec 3<>"$T/replies"
  IN=$T/replies start r "${RECEIVER[@]}" -k "$KEY" --reply
  start s "${SENDER[@]}" -k "$KEY" -w 10 'hello?'
  wait_until grep -qx 'hello?' "$T/r.out"
}

# Chat mode: the receiver waits for its user to type a reply (stdin open and
# silent) when the sender dies or is interrupted. It notices within 2 s, as
# everywhere else, and ends as the fault table says.
chat_sender_gone() {
  chat_waiting
  kill -"$1" "$s_pid"
  finish s 2
  finish r 3
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid $2 after 1 message \(7 bytes\)$3$"
}

t_chat_sender_killed() { chat_sender_gone KILL died ''; }

t_chat_sender_interrupted() {
  chat_sender_gone INT left ': msgrcv: Interrupted system call \(SIGINT\)'
  expect_status s 130
}

# The queue removed while the chatting receiver waits for its user to type:
# both say so within 2 s; the receiver does not take it for its sender's death.
t_chat_queue_removed() {
  chat_waiting
  ipcrm -Q "$KEY"
  finish s 2
  finish r 3
  expect_status s 1
  expect_grep "$T/s.err" "^sender: msg(rcv|ctl\(IPC_STAT\)): Identifier removed \(queue $KEY\); 0 messages"
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: msgctl\(IPC_STAT\): Identifier removed \(queue $KEY\)$"
  expect_no_grep "$T/r.err" died
}

# The queue removed while the receiver is stopped, and its sender gone of
# that: continued after its watchdog's tick is due, the receiver says that
# the queue is gone, not that its sender died.
t_queue_removed_under_a_stopped_receiver() {
  session
  stop "$r_pid"
  echo hello >&3
  wait_count 1
  ipcrm -Q "$KEY"
  finish s 2
  sleep 1.2
  kill -CONT "$r_pid"
  finish r 3
  expect_status s 1
  expect_grep "$T/s.err" "^sender: msgrcv: Identifier removed \(queue $KEY\); 0 messages"
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: msgrcv: Identifier removed \(queue $KEY\)$"
  expect_no_grep "$T/r.err" died
}

both_connected() { [ "$(grep -c connected "$T/r.err")" -eq 2 ]; }

# The receiver interrupted while it waits for its user to type a reply.
t_chat_receiver_interrupted() {
  chat_waiting
  kill -TERM "$r_pid"
  finish r 2
  finish s 3
  expect_status r 143
  expect_grep "$T/r.err" '^receiver: read: Interrupted system call \(SIGTERM\)$'
  expect_status s 1
  expect_grep "$T/s.err" "^sender: msg(rcv|ctl\(IPC_STAT\)): Identifier removed \(queue $KEY\); 0 messages"
}

# unread_chat_reply BYTES: a chatting receiver answers "hi" with a line of
# BYTES bytes, for a sender that is stopped: it reads none of the pieces.
unread_chat_reply() {
  head -c "$1" /dev/zero | tr '\0' r >"$T/replies"
  echo >>"$T/replies"
  IN=$T/replies start r "${RECEIVER[@]}" -k "$KEY" --reply
  session_sender
  stop "$r_pid"
  echo hi >&3
  wait_count 1
  stop "$s_pid"  # out of msgrcv: the reply's pieces stay in the queue
  kill -CONT "$r_pid"
}

# A long chat reply waits in the receiver's outbox (its sender is stopped,
# the queue full) when msg_qbytes is lowered below its pieces: that reply
# can never be sent, and the receiver says so instead of waiting forever.
t_chat_reply_cannot_fit() {
  unread_chat_reply 30000
  wait_count 2
  blocked_in "$r_pid" msgsnd
  "$HOSTILE" "$KEY" qbytes 1000
  finish r 3
  kill -CONT "$s_pid"
  finish s 3
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: queue $KEY takes messages of at most 1000 bytes \(msg_qbytes\): too small for one of 8192$"
  expect_status s 1
}

# The receiver interrupted while its chat reply waits for room in a full
# queue: it names msgsnd and the signal, and removes the queue.
t_signal_receiver_blocked_in_msgsnd() {
  unread_chat_reply 30000
  wait_count 2
  blocked_in "$r_pid" msgsnd
  kill -TERM "$r_pid"
  finish r 3
  kill -CONT "$s_pid"
  finish s 3
  expect_status r 143
  expect_grep "$T/r.err" '^receiver: msgsnd: Interrupted system call \(SIGTERM\)$'
  expect_grep "$T/r.err" "^receiver: msgctl\([0-9]+, IPC_RMID\): queue $KEY removed$"
  expect_status s 1
}

# A queue lowered below what END and TALLY need (32 bytes) before the sender
# comes: the sender says so at once, instead of waiting for a TALLY forever.
t_queue_too_small_for_a_session() {
  start r "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  "$HOSTILE" "$KEY" qbytes 31
  run s "${SENDER[@]}" -k "$KEY" -w 5 hello
  expect_status s 1
  expect_grep "$T/s.err" "^sender: queue $KEY takes messages of at most 31 bytes \(msg_qbytes\): too small for one of 32$"
  [ "$("$HOSTILE" "$KEY" count)" = 0 ] || fail "the sender sent something"
  kill -TERM "$r_pid"
  finish r 3
  expect_status r 143
}

# msg_qbytes lowered by the queue's owner below a message the sender waits
# to send: it would wait forever. Within a second or two the sender names
# the limit and leaves, sync or async; the receiver ends too.
t_queue_shrinks_below_a_waiting_message() {
  { head -c 30000 /dev/zero | tr '\0' w; echo; } >"$T/long"
  session
  echo first >&3
  wait_until grep -qx first "$T/r.out"
  "$HOSTILE" "$KEY" qbytes 1000
  cat "$T/long" >&3
  finish s 3
  finish r 3
  expect_status s 1
  expect_grep "$T/s.err" "^sender: queue $KEY takes messages of at most 1000 bytes \(msg_qbytes\): too small for one of 8192; 1 message \(6 bytes\) acknowledged$"
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid left after 1 message \(6 bytes\): queue $KEY takes messages of at most 1000 bytes \(msg_qbytes\): too small for one of 8192$"
  fill_behind_stopped_receiver 3000
  "$HOSTILE" "$KEY" qbytes 100
  kill -CONT "$r_pid"
  finish s 3
  finish r 3
  expect_status s 1
  expect_grep "$T/s.err" "^sender: queue $KEY takes messages of at most 100 bytes \(msg_qbytes\): too small for one of [0-9]+; "
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid (left|died) after [0-9]+ messages?"
}

# [IN=FILE] hello_waiting SENDER-ARGS...: a receiver and a new sender, both
# stopped, the sender's HELLO unread in the queue and the sender out of its
# msgrcv for the WELCOME (so that a WELCOME will wait in the queue for it).
hello_waiting() {
  IN=/dev/null start r "${RECEIVER[@]}" -k "$KEY"  # IN is the sender's
  wait_queue
  stop "$r_pid"
  start s "${SENDER[@]}" -k "$KEY" "$@"
  wait_count 1                  # its HELLO
  blocked_in "$s_pid" msgrcv    # for its WELCOME
  stop "$s_pid"
}

# Ctrl-C to a sender waiting for its WELCOME: it says so and sends no
# LEAVE (it has no session yet); the receiver, continued, finds it gone.
# A sender stopped by a signal before its turn says BYE: the receiver forgets
# it, and serves the next sender.
t_signal_sender_before_welcome() {
  hello_waiting hello
  kill -INT "$s_pid"
  kill -CONT "$s_pid"
  finish s 2
  kill -CONT "$r_pid"
  expect_status s 130
  expect_grep "$T/s.err" '^sender: msgrcv: Interrupted system call \(SIGINT\)$'
  wait_until grep -q left "$T/r.err"
  expect_grep "$T/r.err" "^receiver: sender $s_pid left while it waited its turn: msgrcv: Interrupted system call \(SIGINT\)$"
  run s2 "${SENDER[@]}" -k "$KEY" -w 5 next
  finish r 4
  expect_clean_run r s2
  expect_grep "$T/r.out" '^next$'
}

# A sender stopped (Ctrl-Z) between its HELLO and its WELCOME lives, and is
# waited for, not taken for a forged HELLO: continued seconds later, it is
# served.
t_sender_stopped_before_welcome() {
  hello_waiting -w 20 hello
  kill -CONT "$r_pid"
  wait_until grep -q 'sender [0-9]* connected' "$T/r.err"
  sleep 3  # past the two ticks after which an unread WELCOME means a forgery
  kill -CONT "$s_pid"
  finish s
  finish r
  expect_clean_run r s
  expect_grep "$T/r.out" '^hello$'
}

# Every signal that stops a program by default, not only INT, TERM and HUP:
# Ctrl-\, USR1, USR2, XCPU, VTALRM, PROF, a real-time signal. The queue
# is removed, then the program dies of the signal.
t_more_stop_signals() {
  local sigs=(QUIT USR1 USR2 XCPU VTALRM PROF)
  [ -n "${EMULATED:-}" ] || sigs+=(RTMIN)  # qemu-user keeps real-time signals for itself
  signal_idle_receivers "${sigs[@]}"
  make_lines 20000
  feed
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10
  wait_output
  kill -QUIT "$s_pid"
  finish s 2
  finish r 3
  expect_status s 131
  # Blocked, or between two calls: either way it says so.
  expect_grep "$T/s.err" '^sender: (msgsnd: Interrupted system call \(SIGQUIT\)|msgrcv: Interrupted system call \(SIGQUIT\)|read: Interrupted system call \(SIGQUIT\)|interrupted by SIGQUIT); [0-9]+ messages? \([0-9]+ bytes?\) acknowledged$'
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid left after [0-9]+ messages? \([0-9]+ bytes?\): (.*\(SIG[A-Z0-9]+\)|interrupted by SIG[A-Z0-9]+)$"
  expect_prefix
}

size_is() { [ "$(stat -c %s "$1")" -eq "$2" ]; }

# A file-size limit on the output (the shape of a disk quota) is a write
# error like a full disk: the queue is removed, both exit 1. The limit
# (101 KiB) falls inside a message: the output ends there, nothing
# unwritten is acknowledged.
t_output_file_size_limit() {
  local fault=CUT
  # shellcheck disable=SC2016
  output_fails 'ulimit -f 101; exec "$@"' 'File too large'
  [ "$(stat -c %s "$T/r.out")" -eq $((101 * 1024)) ] || fail "the output is not 101 KiB"
  expect_prefix
}

# A sender killed after its END, before it read its TALLY, never said BYE:
# it did not finish, and the receiver exits 1.
t_sender_killed_before_tally() {
  session --async
  stop "$r_pid"
  echo one | tee "$T/in" >&3
  exec 3>&-
  wait_count 2  # DATA and END
  kill -9 "$s_pid"
  finish s 2
  kill -CONT "$r_pid"
  finish r 3
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid ended without a BYE after 1 message \(4 bytes\)$"
  expect_no_grep "$T/r.err" finished
  expect_same "$T/in" "$T/r.out"
}

# SIGPIPE from another process changes nothing: both ignore it, and learn
# of a reader gone from write's EPIPE.
t_sigpipe_ignored() {
  session
  echo one | tee "$T/in" >&3
  wait_until grep -qx one "$T/r.out"
  kill -PIPE "$r_pid" "$s_pid"
  echo two | tee -a "$T/in" >&3
  wait_until grep -qx two "$T/r.out"
  exec 3>&-
  finish s
  finish r
  expect_clean_run r s
  expect_same "$T/in" "$T/r.out"
}

# With nothing to write to stdout, a closed stdout is no error: the sender
# outside chat mode, a receiver that received no data. With data to write,
# it is one.
t_stdout_closed_nothing_to_write() {
  # shellcheck disable=SC2016
  local closed=(bash -c 'exec "$@" >&-' _)
  start r "${RECEIVER[@]}" -k "$KEY"
  run s "${closed[@]}" "${SENDER[@]}" -k "$KEY" -w 10 hello
  finish r
  expect_clean_run r s
  start r2 "${closed[@]}" "${RECEIVER[@]}" -k "$KEY"
  run s2 "${SENDER[@]}" -k "$KEY" -w 10
  finish r2
  expect_clean_run r2 s2
  start r3 "${closed[@]}" "${RECEIVER[@]}" -k "$KEY"
  run s3 "${SENDER[@]}" -k "$KEY" -w 10 hello
  finish r3
  expect_status r3 1
  expect_grep "$T/r3.err" "^receiver: write: Bad file descriptor$"
  expect_status s3 1
}

# A second receiver on a key in use is refused, with the remedy for a queue
# that a killed receiver left; the first goes on unharmed.
t_second_receiver_refused() {
  start r "${RECEIVER[@]}" -k "$KEY"
  wait_until grep -q 'waiting for' "$T/r.err"
  run r2 "${RECEIVER[@]}" -k "$KEY"
  expect_status r2 1
  expect_grep "$T/r2.err" "^receiver: queue $KEY already exists: another receiver uses it, or a killed one left it; if none runs, remove it with 'ipcrm -Q $KEY'$"
  run s "${SENDER[@]}" -k "$KEY" -w 5 'still here'
  finish r
  expect_clean_run r s
  expect_grep "$T/r.out" '^still here$'
}

# --wait waits at least what was asked, wherever in a second it started.
t_wait_is_at_least_asked() {
  local i t0 t1
  for i in 1 2 3; do
    t0=$(date +%s%N)
    run "s$i" "${SENDER[@]}" -k "$KEY" -w 1 hello
    t1=$(date +%s%N)
    expect_status "s$i" 1
    [ $((t1 - t0)) -ge 1000000000 ] || fail "-w 1 gave up after $(((t1 - t0) / 1000000)) ms"
  done
}

# Process state inherited from whoever started the programs: a blocked
# SIGALRM (the mask survives exec) would silence the watchdog, so that a
# dead peer is never noticed.
t_inherited_blocked_alarm() {
  local blocked=(env --default-signal --block-signal=ALRM "${wrap_words[@]}")
  mkfifo "$T/fifo"
  exec 3<>"$T/fifo"
  start r "${blocked[@]}" ./receiver -k "$KEY"
  IN=$T/fifo start s "${blocked[@]}" ./sender -k "$KEY" -w 10
  wait_until grep -q connected "$T/s.err"
  kill -9 "$s_pid"
  finish s 2
  finish r 3
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid died after 0 messages"
  start r2 "${blocked[@]}" ./receiver -k "$KEY"
  IN=$T/fifo start s2 "${blocked[@]}" ./sender -k "$KEY" -w 10
  wait_until grep -q connected "$T/s2.err"
  kill -9 "$r2_pid"
  finish r2 2
  finish s2 3
  expect_status s2 1
  expect_grep "$T/s2.err" "^sender: the receiver \(pid $r2_pid\) died"
  ipcrm -Q "$KEY"
}

# A stdin left non-blocking (O_NONBLOCK belongs to the open file, which the
# parent shares): the sender waits for input instead of failing with EAGAIN.
t_inherited_nonblocking_stdin() {
  mkfifo "$T/fifo"
  exec 3<>"$T/fifo"
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/fifo start s "$HOSTILE" nonblock "${SENDER[@]}" -k "$KEY" -w 10
  wait_until grep -q connected "$T/s.err"
  sleep 0.3  # the sender reads an empty pipe meanwhile
  echo late | tee "$T/in" >&3
  exec 3>&-
  finish s
  finish r
  expect_clean_run r s
  expect_same "$T/in" "$T/r.out"
}

# A stdout left non-blocking, on a pipe whose reader is slow at first: the
# receiver waits for room (poll) instead of failing with EAGAIN.
t_inherited_nonblocking_stdout() {
  head -c 300000 /dev/urandom | base64 >"$T/in"
  # shellcheck disable=SC2016
  start r bash -c '"$@" | { sleep 1; cat; }' _ "$HOSTILE" nonblock "${RECEIVER[@]}" -k "$KEY"
  IN=$T/in run s "${SENDER[@]}" -k "$KEY" -w 10 --async
  finish r
  expect_clean_run r s
  expect_same "$T/in" "$T/r.out"
}

# unreaped NAME CMD... : CMD (stdin from $IN) under a parent that never
# reaps it; killed, it stays a zombie until the test ends. Its pid is in
# $T/NAME.pid, its output in $T/NAME.out and .err.
unreaped() {
  local name=$1
  shift
  # shellcheck disable=SC2016
  helper bash -c 'in=$1 base=$2; shift 2; "$@" <"$in" >"$base.out" 2>"$base.err" &
    echo "$!" >"$base.pid"; exec sleep 120' _ "${IN:-/dev/null}" "$T/$name" "$@"
  wait_until test -s "$T/$name.pid"
}

# A killed peer that its parent has not reaped yet (a zombie) is dead, on
# either side.
t_zombie_peer() {
  local pid
  mkfifo "$T/fifo"
  exec 3<>"$T/fifo"
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/fifo unreaped s "${SENDER[@]}" -k "$KEY" -w 10
  wait_until grep -q connected "$T/s.err"
  pid=$(cat "$T/s.pid")
  kill -9 "$pid"
  finish r 3
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $pid died after 0 messages"
  unreaped r2 "${RECEIVER[@]}" -k "$KEY"
  IN=$T/fifo start s2 "${SENDER[@]}" -k "$KEY" -w 10
  wait_until grep -q connected "$T/s2.err"
  pid=$(cat "$T/r2.pid")
  kill -9 "$pid"
  finish s2 3
  expect_status s2 1
  expect_grep "$T/s2.err" "^sender: the receiver \(pid $pid\) died"
  ipcrm -Q "$KEY"
}

# Faults at random moments, many times (SOAK=1: many more). The input
# stalls after its data, so every fault meets a live session.
t_random_faults() {
  local i rounds=${ROUNDS:-8} fault
  [ -z "${SOAK:-}" ] || rounds=${ROUNDS:-200}
  local faults=(KILL_r KILL_s INT_r INT_s TERM_r TERM_s HUP_r HUP_s QUIT_r USR1_s ipcrm)
  make_lines 20000
  for ((i = 0; i < rounds; i++)); do
    fault=${faults[RANDOM % ${#faults[@]}]}
    feed
    rm -f "$T"/r*.* "$T"/s*.*
    start r "${RECEIVER[@]}" -k "$KEY"
    async=$((RANDOM % 2))
    [ "$async" = 1 ] || async=
    IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10 ${async:+--async}
    # Faults meet a session: before the handshake only --wait bounds the sender.
    wait_until grep -q connected "$T/s.err"
    sleep "0.$((RANDOM % 400))"
    case $fault in
      ipcrm) ipcrm -Q "$KEY" ;;
      *_r) kill -"${fault%_r}" "$r_pid" ;;
      *_s) kill -"${fault%_s}" "$s_pid" ;;
    esac
    finish r 3
    finish s 3
    check_fault "$fault"
    [ ! -s "$T/failures" ] || { fail "round $i: $fault"; return; }
  done
  echo "$rounds rounds" >"$T/note"  # shown after ok
}

check_fault() {
  local fault=$1  # expect_prefix looks at it
  expect_prefix
  case $fault in
    ipcrm)
      expect_status r 1
      expect_status s 1
      ;;
    *_r)
      expect_status r $((128 + $(signum "${fault%_r}")))
      expect_status s 1
      ;;
    *_s)
      expect_status s $((128 + $(signum "${fault%_s}")))
      expect_status r 1
      ;;
  esac
  if [ "$fault" = KILL_r ]; then  # the queue is left: refused, then removed
    run r2 "${RECEIVER[@]}" -k "$KEY" -q
    expect_status r2 1
    ipcrm -Q "$KEY"
    start r3 "${RECEIVER[@]}" -k "$KEY"
    wait_until grep -q 'waiting for' "$T/r3.err"
    run s3 "${SENDER[@]}" -k "$KEY" -q -w 2 again
    finish r3
    expect_clean_run r3 s3
  fi
  ! queue_exists || fail "$fault left the queue"
}

# ---- Containers, small limits, another protocol.

# A sender in a PID namespace of its own that shares the IPC namespace
# (docker run --ipc=host without --pid=host): its pid names another process
# here, so that its death could not be told. It is refused at once, saying
# why, and the receiver goes on; the same with the receiver in its own.
t_pid_namespace_of_its_own() {
  [ -z "${EMULATED:-}" ] || skip "qemu-user and a PID namespace of its own"
  need_root
  start r "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  run s unshare --pid --fork --kill-child "${SENDER[@]}" -k "$KEY" -w 10 hello
  expect_status s 1
  expect_grep "$T/s.err" '^sender: the receiver refused: it runs in another PID namespace$'
  expect_grep "$T/r.err" '^receiver: refusing sender 1: it runs in another PID namespace$'
  run s2 "${SENDER[@]}" -k "$KEY" -w 5 after
  finish r
  expect_clean_run s2
  expect_status r 0
  start r2 unshare --pid --fork --kill-child "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  run s3 "${SENDER[@]}" -k "$KEY" -w 10 hello
  expect_status s3 1
  expect_grep "$T/s3.err" '^sender: the receiver refused: it runs in another PID namespace$'
  pkill -INT -P "$r2_pid"
  finish r2 3
  expect_grep "$T/r2.err" '^receiver: refusing sender [0-9]+: it runs in another PID namespace$'
}

# Both in one PID namespace of their own, with its /proc mounted or with the
# host's (where their pids name other processes): they work, and idle
# seconds bring no false death.
t_pid_namespace_shared() {
  need_root
  local i mount=(--mount-proc --fork)
  printf 'a\nb\n' >"$T/in"
  for i in 0 1; do
    # shellcheck disable=SC2016
    run "p$i" unshare --pid --fork --kill-child "${mount[i]}" bash -c '"$1" -k "$2" >"$3" & sleep 1.5
      { head -n 1 "$4"; sleep 1.5; tail -n 1 "$4"; } | "$5" -k "$2" -w 5; s=$?
      wait $!; echo "sender $s, receiver $?"' _ ./receiver "$KEY" "$T/out$i" "$T/in" ./sender
    expect_grep "$T/p$i.out" '^sender 0, receiver 0$'
    expect_same "$T/in" "$T/out$i"
    expect_no_grep "$T/p$i.err" 'died|refus'
  done
}

# The receiver is stopped; its sender is killed, and its pid handed to a new
# process (ns_last_pid, in a PID namespace of the test's own, where nothing
# else forks). Continued, the receiver must not take the newcomer for its
# sender: it says the sender died, within 2 s, and ends. (SIGINT would not
# do as a last resort: a script's background job starts with it ignored.)
t_pid_reused_after_death() {
  need_root
  cat >"$T/inner.sh" <<'EOF'
mkfifo "$3/fifo"
exec 3<>"$3/fifo"
"$1" -k "$4" 2>"$3/r.err" &
r=$!
"$2" -k "$4" -w 5 <"$3/fifo" 2>"$3/s.err" &
s=$!
until grep -q connected "$3/s.err"; do sleep 0.02; done
sleep 0.1  # start times count 10 ms ticks: the newcomer must start in a later one
kill -STOP $r
kill -KILL $s
wait $s
echo $((s - 1)) >/proc/sys/kernel/ns_last_pid
sleep 60 &
echo "pid $s given to $!"
kill -CONT $r
for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 $r 2>/dev/null && sleep 0.2; done
kill -0 $r 2>/dev/null && echo "the receiver still waits after 2 s" && kill -TERM $r
wait $r
echo "receiver $?"
kill %2
EOF
  run p unshare --pid --fork --kill-child --mount-proc bash "$T/inner.sh" ./receiver ./sender "$T" "$KEY"
  local pid
  pid=$(sed -n 's/^pid \([0-9]*\) given to \1$/\1/p' "$T/p.out")
  [ -n "$pid" ] || fail "the pid was not reused: $(cat "$T/p.out")"
  expect_grep "$T/p.out" '^receiver 1$'
  expect_grep "$T/r.err" "^receiver: sender $pid died after 0 messages \(0 bytes\)$"
}

# A system whose msgmax is too small for a session (a private IPC namespace,
# msgmax 20): the receiver names msgmax and announces no queue. At 55 bytes,
# enough for one, messages are cut to fit and everything goes through.
t_tiny_msgmax() {
  need_root
  [ -z "${NO_IPC_INFO:-}" ] || skip "built without IPC_INFO: msgmax is not known"
  printf 'a line longer than fifty-five bytes, which goes in pieces\nshort\n' >"$T/in"
  # shellcheck disable=SC2016
  run p unshare --ipc bash -c 'echo 20 >/proc/sys/kernel/msgmax || exit 9
    "$1" -k "$2" 2>"$3/r1.err"; echo "receiver $?, $(ipcs -q | grep -c ^0x) queues"
    echo 55 >/proc/sys/kernel/msgmax
    "$1" -k "$2" >"$3/out" & "$4" -k "$2" -w 5 <"$3/in"; s=$?
    wait $!; echo "sender $s, receiver $?"' _ ./receiver "$KEY" "$T" ./sender
  expect_grep "$T/p.out" '^receiver 1, 0 queues$'
  expect_grep "$T/r1.err" "^receiver: queue $KEY takes messages of at most 20 bytes \(msgmax\): too small for one of 32$"
  expect_no_grep "$T/r1.err" 'msgget|waiting for'
  expect_grep "$T/p.out" '^sender 0, receiver 0$'
  expect_same "$T/in" "$T/out"
}

# macOS's and FreeBSD's limits (msgmnb = msgmax = 2048), in a private IPC
# namespace: 1 MB of random bytes, sync and async, byte for byte.
t_small_system_limits() {
  need_root
  head -c 1000000 /dev/urandom >"$T/in"
  # shellcheck disable=SC2016
  run p unshare --ipc bash -c 'echo 2048 >/proc/sys/kernel/msgmax && echo 2048 >/proc/sys/kernel/msgmnb || exit 9
    for mode in --quiet --async; do
      "$1" -k "$2" -q >"$3/out$mode" & "$4" -k "$2" -w 5 -q "$mode" <"$3/in"; s=$?
      wait $!; echo "$mode: sender $s, receiver $?"
    done' _ ./receiver "$KEY" "$T" ./sender
  expect_grep "$T/p.out" '^--quiet: sender 0, receiver 0$'
  expect_grep "$T/p.out" '^--async: sender 0, receiver 0$'
  expect_same "$T/in" "$T/out--quiet"
  expect_same "$T/in" "$T/out--async"
}

# Chat over a small queue: replies of 30 to 150 KB, msg_qbytes lowered to 100
# by the owner before the sender comes. Each reply goes in 84-byte pieces as
# the sender reads them: nothing cut, nothing refused.
t_chat_long_replies_small_queue() {
  local n
  printf 'one\ntwo\nthree\n' >"$T/in"
  for n in 30000 150000 60000; do head -c "$n" /dev/zero | tr '\0' r; echo; done >"$T/replies"
  chat 100
  expect_same "$T/replies" "$T/s.out"
}

# A sender of another protocol is refused, told why; the receiver goes on.
t_other_protocol_refused() {
  start r "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  "$HOSTILE" "$KEY" hello 99 >"$T/h.out"
  expect_grep "$T/h.out" '^REFUSE: it speaks protocol 99, this receiver 4$'
  expect_grep "$T/r.err" '^receiver: refusing sender [0-9]+: it speaks protocol 99, this receiver 4$'
  run s "${SENDER[@]}" -k "$KEY" -w 5 fine
  finish r
  expect_clean_run s
  expect_status r 0
}

TESTS+=(
  t_signal_idle_receiver t_ignored_sigint_stays_ignored t_signal_receiver_mid_transfer
  t_signal_receiver_blocked_in_write t_signal_sender_waiting_for_ack
  t_signal_sender_blocked_in_msgsnd t_dead_sender_data_still_delivered
  t_signal_sender_reading_input t_queue_removed_mid_transfer t_receiver_killed
  t_sender_killed t_stdout_closed t_stdout_full
  t_foreign_queue_untouched t_sender_refuses_squatted_queue t_sender_refuses_handed_over_queue
  t_sender_without_permission t_hostile_messages t_chat_sender_killed t_chat_sender_interrupted
  t_chat_receiver_interrupted t_chat_queue_removed t_queue_removed_under_a_stopped_receiver t_chat_reply_cannot_fit t_signal_receiver_blocked_in_msgsnd t_queue_too_small_for_a_session
  t_sender_stopped_before_welcome t_signal_sender_before_welcome t_more_stop_signals
  t_output_file_size_limit t_sender_killed_before_tally t_sigpipe_ignored
  t_stdout_closed_nothing_to_write t_second_receiver_refused t_wait_is_at_least_asked
  t_inherited_blocked_alarm t_inherited_nonblocking_stdin t_inherited_nonblocking_stdout
  t_zombie_peer t_queue_shrinks_below_a_waiting_message t_pid_namespace_of_its_own t_pid_namespace_shared
  t_pid_reused_after_death t_tiny_msgmax t_small_system_limits t_chat_long_replies_small_queue
  t_other_protocol_refused t_random_faults)
