# tests/accidents.sh - accidents of the world around the pair: a wall clock
# that jumps, input that cannot be read, memory that runs out, a /proc that
# cannot be opened, a stranger that takes a sender's reply type, and senders
# that queue up, die or give up while they wait their turn. Each test asserts
# what the user sees: exit status, the stderr line, the bytes written.
# shellcheck shell=bash disable=SC2154  # NAME_pid and NAME_rc come from start/finish

# LD_PRELOAD shims (Makefile): a wall clock that jumps, a malloc that fails.
# A sanitizer build is told not to mind that its runtime is not loaded first.
CLOCKSTEP_SO=$PWD/tests/clockstep.so
NOMEM_SO=$PWD/tests/nomem.so
RMID_EPERM_SO=$PWD/tests/rmid_eperm.so
SHIM_ENV=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0")

need_shim() { [ -e "$1" ] || { fail "$1 is missing: run 'make test'"; return 1; }; }

# hold [SENDER-OPTION]... : a receiver started by the test gets sender s,
# whose input is a pipe the test writes to on fd 3; s sends "a1" and keeps
# its input open, so that its session goes on until `exec 3>&-`.
hold() {
  wait_queue
  session_sender "$@"
  printf 'a1\n' >&3
  wait_until grep -q '^a1$' "$T/r.out"
}

# queued NAME [SENDER-OPTION]... : sender NAME, whose input is two lines
# ("NAME1", "NAME2", also appended to $T/want), waits its turn.
queued() {
  local name=$1
  shift
  printf '%s1\n%s2\n' "$name" "$name" >"$T/$name.in"
  cat "$T/$name.in" >>"$T/want"
  IN=$T/$name.in start "$name" "${SENDER[@]}" -k "$KEY" -w 10 "$@"
  [[ " $* " == *" -q "* ]] || wait_until grep -q 'waiting for the receiver' "$T/$name.err"
}

# finish_both_clean : sender s and receiver r end, both 0, with no error said.
finish_both_clean() {
  finish s
  finish r
  expect_clean_run s r
}

queue_empty() { [ "$("$HOSTILE" "$KEY" count 2>/dev/null)" = 0 ]; }

elapsed_ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

# clock_steps SECONDS : `sender --wait 3` with no receiver, while the wall
# clock jumps SECONDS after 1 s, still gives up after 3 s, and says so.
clock_steps() {
  local t0 ms
  need_shim "$CLOCKSTEP_SO" || return
  t0=$(date +%s%N)
  start s "${SHIM_ENV[@]}" LD_PRELOAD="$CLOCKSTEP_SO" CLOCKSTEP="$1" \
    "${SENDER[@]}" -k "$KEY" --wait 3 hello
  finish s 10
  ms=$(elapsed_ms "$t0")
  expect_status s 1
  expect_grep "$T/s.err" "^sender: no receiver: queue $KEY does not exist \(waited 3 s\)$"
  [ "$ms" -ge 2900 ] || fail "the sender gave up after $ms ms, not 3 s"
  [ "$ms" -le 8000 ] || fail "the sender gave up after $ms ms, not 3 s"
}

# The wall clock set an hour ahead does not cut a --wait short.
t_wait_survives_clock_jump_ahead() { clock_steps 3600; }

# The wall clock set an hour back does not make --wait last an hour more.
t_wait_survives_clock_jump_back() { clock_steps -3600; }

# unreadable_input NAME ERROR REDIRECTION : sender NAME runs with its stdin
# opened by REDIRECTION, and reading it fails with ERROR: both sides say why,
# and exit 1.
unreadable_input() {
  local name=$1 error=$2 spid
  start "r$name" "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  start "$name" bash -c "exec \"\$@\" $3" _ "${SENDER[@]}" -k "$KEY" -w 5
  finish "$name" 5
  finish "r$name" 5
  spid=${name}_pid
  expect_status "$name" 1
  expect_grep "$T/$name.err" "^sender: read: $error; 0 messages \(0 bytes\) acknowledged$"
  expect_no_grep "$T/$name.err" '\(queue 0x'
  expect_status "r$name" 1
  expect_grep "$T/r$name.err" \
    "^receiver: sender ${!spid} left after 0 messages \(0 bytes\): read: $error$"
}

# A sender whose input cannot be read says the read error, and the receiver
# says it too: not "interrupted".
t_sender_input_unreadable() {
  unreadable_input dir 'Is a directory' '</'
  unreadable_input wronly 'Bad file descriptor' '0>/dev/null'
}

# A receiver that runs out of memory says so in a line and removes its queue.
t_receiver_out_of_memory() {
  [ -z "$WRAP" ] || skip "${wrap_words[0]} brings its own malloc"
  ! grep -q __asan_init ./receiver || skip "AddressSanitizer brings its own malloc"
  need_shim "$NOMEM_SO" || return
  run r env LD_PRELOAD="$NOMEM_SO" NOMEM_ABOVE=16384 "${RECEIVER[@]}" -k "$KEY" --senders 1000
  expect_status r 1
  expect_grep "$T/r.err" '^receiver: out of memory$'
  ! queue_exists || fail "the receiver left queue $KEY"
}

# A receiver at its limit of open files cannot read /proc/PID/stat: a sender
# silent for 2.5 s is not taken for dead. (`ulimit -n 3` before exec would
# stop the dynamic loader itself: the limit is lowered once it runs.)
t_unreadable_proc_is_not_death() {
  start r "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  prlimit --pid "$r_pid" --nofile=3:3 || { fail "prlimit failed"; return; }
  hold
  sleep 2.5
  printf 'a2\n' >&3
  exec 3>&-
  finish_both_clean
  printf 'a1\na2\n' >"$T/in"
  expect_same "$T/in" "$T/r.out"
}

# A stranger's HELLO with a connected sender's reply type is refused, and the
# REFUSE does not end the sender whose type it took.
t_refusal_reaches_only_the_newcomer() {
  local type
  start r "${RECEIVER[@]}" -k "$KEY"
  hold -v
  type=$(sed -nE 's/^sender: msgrcv\(type ([0-9]+)\) WELCOME[ ,].*/\1/p' "$T/s.err")
  [ -n "$type" ] || fail "no WELCOME in the sender's trace"
  run h "$HOSTILE" "$KEY" hello 4 "${type:-3}"
  wait_until grep -q "refusing sender $h_pid" "$T/r.err"
  expect_grep "$T/r.err" "^receiver: refusing sender $h_pid: its reply type is another sender's$"
  printf 'a2\n' >&3
  exec 3>&-
  finish s
  finish r
  expect_status s 0
  expect_no_grep "$T/s.err" 'refused'
  expect_status r 0
  printf 'a1\na2\n' >"$T/in"
  expect_same "$T/in" "$T/r.out"
}

# Senders that come while another is served are told once that they wait
# (nothing with -q), then go one at a time, in the order they came.
t_senders_wait_their_turn() {
  local n
  start r "${RECEIVER[@]}" -k "$KEY" --senders 4
  hold
  printf 'a1\na2\n' >"$T/want"
  queued b
  queued c
  queued d -q
  blocked_in "$d_pid" msgrcv
  wait_until queue_empty  # its HELLO taken, its WAIT read
  printf 'a2\n' >&3
  exec 3>&-
  for n in s b c d; do
    finish "$n"
    expect_clean_run "$n"
  done
  finish r
  expect_clean_run r
  expect_same "$T/want" "$T/r.out"
  for n in b c; do
    [ "$(grep -c 'waiting for the receiver' "$T/$n.err")" = 1 ] ||
      fail "$n said it waits $(grep -c 'waiting for the receiver' "$T/$n.err") times"
    expect_grep "$T/$n.err" \
      "^sender: waiting for the receiver \(pid $r_pid\): it serves another sender$"
  done
  expect_empty "$T/d.err"
}

# A sender waiting its turn notices within seconds that the receiver died.
t_waiting_sender_sees_receiver_die() {
  local t0 ms
  start r "${RECEIVER[@]}" -k "$KEY" --senders 2
  hold
  queued b
  t0=$(date +%s%N)
  kill -9 "$r_pid"
  finish r 2
  finish b 4
  ms=$(elapsed_ms "$t0")
  expect_status b 1
  expect_grep "$T/b.err" "^sender: the receiver \(pid $r_pid\) died$"
  [ "$ms" -le 3000 ] || fail "the waiting sender noticed after $ms ms"
  exec 3>&-
  finish s 4
  expect_status s 1
  ipcrm -Q "$KEY"
}

# A waiting sender stopped by SIGTERM says where; the receiver says that it
# left, and goes on to serve as many senders as it was asked to.
t_waiting_sender_interrupted() {
  start r "${RECEIVER[@]}" -k "$KEY" --senders 2
  hold
  queued b
  blocked_in "$b_pid" msgrcv
  kill -TERM "$b_pid"
  finish b 3
  expect_status b 143
  expect_grep "$T/b.err" '^sender: msgrcv: Interrupted system call \(SIGTERM\)$'
  wait_until grep -q 'left while it waited' "$T/r.err"
  expect_grep "$T/r.err" \
    "^receiver: sender $b_pid left while it waited its turn: msgrcv: Interrupted system call \(SIGTERM\)$"
  queued c
  printf 'a2\n' >&3
  exec 3>&-
  finish c
  finish_both_clean
  expect_clean_run c
  { printf 'a1\na2\n'; cat "$T/c.in"; } >"$T/want"
  expect_same "$T/want" "$T/r.out"
}

# 1000 senders started at once each get their line through, whole. xargs
# starts them (a shell's forks would take seconds) and exits 0 only if they
# all did; their stderr is its own.
t_thousand_senders_at_once() {
  local t0
  [ -z "$WRAP" ] || skip "1000 senders under ${wrap_words[0]} take too long"
  ! grep -q __asan_init ./sender || skip "1000 AddressSanitizer senders take over a minute"
  [ -z "${EMULATED:-}" ] || skip "1000 senders under qemu-user take over a minute"
  [ "$LIMIT" -ge 30 ] || skip "1000 senders need LIMIT=30 or more"
  start r "${RECEIVER[@]}" -k "$KEY" -q --senders 1000
  wait_queue
  seq -f 'line %g' 1000 >"$T/lines"
  IN=$T/lines start x xargs -d '\n' -P 1000 -n 1 "${SENDER[@]}" -k "$KEY" -q -w $((LIMIT - 10))
  t0=$(date +%s%N)
  while kill -0 "$r_pid" 2>/dev/null && [ "$(elapsed_ms "$t0")" -lt $((LIMIT - 15))000 ]; do
    sleep 0.5  # not finish's 20 ms ticks: with 1000 processes about, those slow down
  done
  finish r 1  # if killed, the senders see it die within a second
  finish x 5
  echo "$(elapsed_ms "$t0") ms" >"$T/note"
  expect_status r 0
  expect_empty "$T/r.err"
  expect_status x 0
  expect_empty "$T/x.err"
  sort "$T/lines" >"$T/want"
  sort "$T/r.out" >"$T/got"
  expect_same "$T/want" "$T/got"
}

# A sender beyond --senders is refused at once, told why.
t_sender_beyond_n_refused() {
  start r "${RECEIVER[@]}" -k "$KEY" --senders 1
  hold
  run b "${SENDER[@]}" -k "$KEY" -w 10 late
  expect_status b 1
  expect_grep "$T/b.err" '^sender: the receiver refused: it serves no more senders$'
  printf 'a2\n' >&3
  exec 3>&-
  finish_both_clean  # the receiver says nothing more of the sender it refused
  printf 'a1\na2\n' >"$T/in"
  expect_same "$T/in" "$T/r.out"
}

# A sender that dies while it waits its turn is noticed when its turn comes;
# the receiver then waits for another.
t_sender_dies_waiting_its_turn() {
  start r "${RECEIVER[@]}" -k "$KEY" --senders 2
  hold
  queued b
  kill -9 "$b_pid"
  finish b 2
  printf 'a2\n' >&3
  exec 3>&-
  finish s
  expect_clean_run s
  wait_until grep -q 'died while it waited' "$T/r.err"
  expect_grep "$T/r.err" "^receiver: sender $b_pid died while it waited its turn$"
  run c "${SENDER[@]}" -k "$KEY" -w 10 c1
  expect_clean_run c
  finish r
  expect_status r 0
  printf 'a1\na2\nc1\n' >"$T/in"
  expect_same "$T/in" "$T/r.out"
}

# A queue removed by someone else (ipcrm, systemd-logind's RemoveIPC=yes): both keep the lab's
# EIDRM line, and say once that another process removed the queue.
t_queue_removed_by_another() {
  local removers="'ipcrm -Q', or systemd-logind \\(RemoveIPC=yes\\) as your last login session ended"
  start r "${RECEIVER[@]}" -k "$KEY"
  hold
  ipcrm -Q "$KEY"
  finish r 3
  finish s 3
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: msgrcv: Identifier removed \\(queue $KEY\\)$"
  expect_grep "$T/r.err" "^receiver: another process removed the queue: $removers$"
  expect_status s 1
  expect_grep "$T/s.err" "^sender: msg(rcv|ctl\\(IPC_STAT\\)): Identifier removed \\(queue $KEY\\); 1 message"
  expect_grep "$T/s.err" "^sender: the queue was removed: by its receiver as it stopped, or $removers$"
  [ "$(grep -c 'removed the queue' "$T/r.err")" = 1 ] || fail "the receiver says it more than once"
}

# A removal the system refuses (EPERM under a security policy) is said with its remedy.
t_removal_refused_says_how() {
  [ -z "$WRAP" ] || skip "${wrap_words[0]} and an LD_PRELOAD shim"
  need_shim "$RMID_EPERM_SO" || return
  start r "${SHIM_ENV[@]}" LD_PRELOAD="$RMID_EPERM_SO" "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  run s "${SENDER[@]}" -k "$KEY" -w 5 hello
  finish r
  expect_clean_run s
  expect_status r 1
  expect_grep "$T/r.err" "^receiver: msgctl\\(IPC_RMID\\): Operation not permitted \\(queue $KEY\\): it stays; remove it with 'ipcrm -Q $KEY'$"
  queue_exists && ipcrm -Q "$KEY"
}

# A stopped receiver (Ctrl-Z) is not said to be missing: the sender names the process it sees
# stopped, and the receiver, once continued, says the sender gave up waiting, not that it died.
t_stopped_receiver_is_said() {
  start r "${RECEIVER[@]}" -k "$KEY" --senders 2
  wait_queue
  run a "${SENDER[@]}" -k "$KEY" -w 5 first  # now the receiver was the last to read the queue
  stop "$r_pid"
  run b "${SENDER[@]}" -k "$KEY" -w 1 second
  expect_status b 1
  expect_grep "$T/b.err" "^sender: no answer from a receiver on queue $KEY \\(waited 1 s\\); pid $r_pid, the last to read the queue, is stopped: 'kill -CONT $r_pid' resumes it$"
  kill -CONT "$r_pid"
  wait_until grep -q "sender $b_pid" "$T/r.err"
  expect_grep "$T/r.err" "^receiver: sender $b_pid left while it waited its turn: no answer from a receiver"
  expect_no_grep "$T/r.err" "died|sender $b_pid connected"
  run c "${SENDER[@]}" -k "$KEY" -w 5 third
  finish r
  expect_clean_run a c r
  printf 'first\nthird\n' >"$T/want"
  expect_same "$T/want" "$T/r.out"
}

# Installed setuid, a program would make or use a queue of its owner, not of the user who runs
# it: each refuses to run so, naming both uids.
t_setuid_refused() {
  local dir prog
  need_root
  [ -z "${EMULATED:-}" ] || skip "binfmt_misc runs qemu-user with the caller's uid"
  dir=$(mktemp -d)  # a folder uid 4242 can reach
  chmod 755 "$dir"
  for prog in sender receiver; do
    cp "./$prog" "$dir/"
    chmod 4755 "$dir/$prog"
    run "$prog" as_user 4242 "$dir/$prog" -k "$KEY"
    expect_status "$prog" 1
    expect_grep "$T/$prog.err" "^$prog: refusing to run setuid: real uid 4242, effective uid 0 \\(install it without the setuid bit\\)$"
  done
  rm -rf "$dir"
  ! queue_exists || fail "a setuid program made a queue"
}

TESTS+=(
  t_wait_survives_clock_jump_ahead t_wait_survives_clock_jump_back t_sender_input_unreadable
  t_receiver_out_of_memory t_unreadable_proc_is_not_death t_refusal_reaches_only_the_newcomer
  t_senders_wait_their_turn t_waiting_sender_sees_receiver_die t_waiting_sender_interrupted
  t_thousand_senders_at_once t_sender_beyond_n_refused t_sender_dies_waiting_its_turn
  t_queue_removed_by_another t_removal_refused_says_how t_stopped_receiver_is_said t_setuid_refused)
