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
  local out=$T/r.out size acked fault=${fault:-}  # set by a caller after kill -9
  size=$(stat -c %s "$out")
  cmp -s -n "$size" "$T/in" "$out" || fail "$out is not a prefix of the input"
  # kill -9 can cut a write in progress: then only the prefix is promised.
  [ "$size" -eq 0 ] || [ "$fault" = KILL_r ] ||
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

t_signal_idle_receiver() {
  local sig
  for sig in INT TERM HUP; do
    start "r$sig" "${RECEIVER[@]}" -k "$KEY"
    wait_queue
    kill -"$sig" "$(eval echo "\$r${sig}_pid")"
    finish "r$sig" 3
    expect_status "r$sig" $((128 + $(signum "$sig")))
    ! queue_exists || fail "SIG$sig left the queue"
  done
}

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
  expect_no_grep "$T/r.err" 'write:'
}

# The sender waits for an acknowledgment that does not come; Ctrl-C.
t_signal_sender_waiting_for_ack() {
  mkfifo "$T/fifo"
  exec 3<>"$T/fifo"
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/fifo start s "${SENDER[@]}" -k "$KEY" -w 10
  wait_until grep -q connected "$T/s.err"
  stop "$r_pid"
  echo hello >&3
  wait_count 1
  kill -INT "$s_pid"
  finish s 2
  kill -CONT "$r_pid"
  finish r 3
  expect_status s 130
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid was interrupted after 1 message \(6 bytes\)$"
}

# An async sender fills the queue while the receiver is stopped.
fill_behind_stopped_receiver() {
  make_lines 20000
  mkfifo "$T/fifo"
  exec 3<>"$T/fifo"
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/fifo start s "${SENDER[@]}" -k "$KEY" -w 10 --async
  wait_until grep -q connected "$T/s.err"
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
  expect_status r 1
  # LEAVE is sent if it still fits in the full queue; else the watchdog tells.
  expect_grep "$T/r.err" "^receiver: sender $s_pid (was interrupted|died) after [0-9]+ messages"
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
  expect_grep "$T/r.err" "^receiver: sender $s_pid died after $((size / 100)) messages \($size bytes\)$"
  expect_no_grep "$T/r.err" ignoring
  expect_prefix
}

t_signal_sender_reading_input() {
  mkfifo "$T/fifo"
  exec 3<>"$T/fifo"
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/fifo start s "${SENDER[@]}" -k "$KEY" -w 10
  echo first >&3
  wait_output
  kill -HUP "$s_pid"
  finish s 2
  finish r 3
  expect_status s 129
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: sender $s_pid was interrupted after 1 message \(6 bytes\)$"
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
  expect_grep "$T/r2.err" "^receiver: queue $KEY already exists .*; remove it with 'ipcrm -Q $KEY' or use --force$"
  queue_exists || fail "the refusing receiver removed the queue"
  start r3 "${RECEIVER[@]}" -k "$KEY" --force
  wait_until grep -q ready "$T/r3.err"
  run s3 "${SENDER[@]}" -k "$KEY" -w 10 again
  finish r3
  expect_clean_run r3 s3
  expect_grep "$T/r3.err" 'removed the old queue'
}

# Sender a stalls in the middle of a long line, so async sender b's lines
# are held back; then b is killed. Its lines were sent before it died: once
# a's line ends they are written, and only then is b finished.
t_dead_sender_held_lines_written() {
  mkfifo "$T/fa" "$T/fb"
  exec 3<>"$T/fa" 5<>"$T/fb"
  start r "${RECEIVER[@]}" -k "$KEY" --senders 2 -v
  IN=$T/fa start a "${SENDER[@]}" -k "$KEY" -w 10
  IN=$T/fb start b "${SENDER[@]}" -k "$KEY" -w 10 --async
  head -c 10000 /dev/zero | tr '\0' a >&3
  wait_until grep -q "got DATA .*(line continues), pid $a_pid" "$T/r.err"
  printf 'b1\nb2\nb3\n' >&5
  wait_until grep -q "got DATA type 1 seq 3, .*pid $b_pid" "$T/r.err"  # b3 (held)
  kill -9 "$b_pid"
  finish b 2
  sleep 1.5  # a watchdog tick finds b dead while its lines are held
  printf '\n' >&3
  exec 3>&-
  finish a 3
  finish r 3
  expect_status a 0
  expect_status r 1
  { head -c 10000 /dev/zero | tr '\0' a; printf '\nb1\nb2\nb3\n'; } >"$T/want"
  expect_same "$T/want" "$T/r.out"
  expect_grep "$T/r.err" "^receiver: sender $b_pid died after 3 messages \(9 bytes\)$"
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
  expect_grep "$T/r.err" "^receiver: sender $s_pid died after [0-9]+ messages"
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
  expect_grep "$T/r.err" "^receiver: write: $2 \(queue $KEY\)$"
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
  run r "${RECEIVER[@]}" -k "$KEY" --force
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: queue $KEY belongs to uid 4242; not touching it"
  run r2 as_user 4343 ./receiver -k "$KEY" --force
  expect_status r2 1
  expect_grep "$T/r2.err" "^receiver: queue $KEY belongs to uid 4242; not touching it"
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

# Junk in the queue before the sender comes, forged replies and requests
# while it runs: each is reported in one line and skipped.
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
  "$HOSTILE" "$KEY" forge "$s_pid"
  printf 'real one\nreal two\n' | tee "$T/in" >&3
  exec 3>&-
  finish s
  finish r
  expect_status s 0
  expect_status r 0
  expect_same "$T/in" "$T/r.out"
  expect_grep "$T/r.err" 'ignoring a malformed message \(3 bytes\)'
  expect_grep "$T/r.err" 'ignoring a malformed message \(0 bytes\)'
  [ -z "$old_max" ] || expect_grep "$T/r.err" 'ignoring a malformed message \(8192 bytes\)'
  expect_grep "$T/r.err" 'ignoring UNKNOWN \(kind 99\)'
  expect_grep "$T/r.err" 'ignoring HELLO from 999999'
  expect_grep "$T/r.err" 'ignoring a message of type 42: not a request'
  expect_grep "$T/r.err" "ignoring DATA from $s_pid: not its session's token"
  expect_grep "$T/r.err" "ignoring END from $s_pid: not its session's token"
  expect_grep "$T/s.err" 'ignoring a reply ACK from 1: not from our session'
  expect_grep "$T/s.err" 'ignoring a malformed reply \(2 bytes\)'
  expect_no_grep "$T/r.err" 'died|Identifier removed'
}

# Faults at random moments, many times (SOAK=1: many more). The input
# stalls after its data, so every fault meets a live session.
t_random_faults() {
  local i rounds=${ROUNDS:-8} fault
  [ -z "${SOAK:-}" ] || rounds=${ROUNDS:-200}
  local faults=(KILL_r KILL_s INT_r INT_s TERM_r TERM_s HUP_r HUP_s ipcrm)
  make_lines 20000
  for ((i = 0; i < rounds; i++)); do
    fault=${faults[RANDOM % ${#faults[@]}]}
    feed
    rm -f "$T"/r*.* "$T"/s*.*
    start r "${RECEIVER[@]}" -k "$KEY"
    if ((RANDOM % 2)); then
      IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10
    else
      IN=$T/feed start s "${SENDER[@]}" -k "$KEY" -w 10 --async
    fi
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
  if [ "$fault" = KILL_r ]; then  # the queue is left: refused, then replaced
    run r2 "${RECEIVER[@]}" -k "$KEY" -q
    expect_status r2 1
    start r3 "${RECEIVER[@]}" -k "$KEY" --force
    wait_until grep -q ready "$T/r3.err"
    run s3 "${SENDER[@]}" -k "$KEY" -q -w 2 again
    finish r3
    expect_clean_run r3 s3
  fi
  ! queue_exists || fail "$fault left the queue"
}

TESTS+=(t_signal_idle_receiver t_ignored_sigint_stays_ignored t_signal_receiver_mid_transfer
  t_signal_receiver_blocked_in_write t_signal_sender_waiting_for_ack t_signal_sender_blocked_in_msgsnd t_dead_sender_data_still_delivered
  t_signal_sender_reading_input t_queue_removed_mid_transfer t_receiver_killed
  t_dead_sender_held_lines_written t_sender_killed t_stdout_closed t_stdout_full t_foreign_queue_untouched
  t_sender_refuses_squatted_queue t_sender_refuses_handed_over_queue t_sender_without_permission t_hostile_messages
  t_random_faults)
