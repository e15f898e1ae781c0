# tests/basic.sh - what users do: the interface, turn-taking, byte-exact
# transfer, several senders, chat and async modes, small queues.
# shellcheck shell=bash disable=SC2154  # NAME_pid and NAME_rc come from start/finish

# Transfer $T/in from one sender to one receiver; extra args go to the sender.
transfer() {
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/in run s "${SENDER[@]}" -k "$KEY" -w 10 "$@"
  finish r
  expect_clean_run r s
  expect_same "$T/in" "$T/r.out"
  expect_empty "$T/s.out"
}

t_help_and_version() {
  run rh ./receiver --help
  run sh ./sender -h
  run rv ./receiver -V
  expect_status rh 0
  expect_status sh 0
  expect_status rv 0
  expect_grep "$T/rh.out" '^Usage: receiver \[OPTION\]\.\.\.$'
  expect_grep "$T/sh.out" '^Usage: sender \[OPTION\]\.\.\. \[MESSAGE\]\.\.\.$'
  expect_grep README.md 'receiver \[OPTION\]\.\.\.'
  expect_grep README.md 'sender \[OPTION\]\.\.\. \[MESSAGE\]\.\.\.'
  local opt
  for opt in --key --mode --senders --reply --quiet --verbose; do
    expect_grep "$T/rh.out" -- "$opt"
    expect_grep README.md -- "$opt"
  done
  for opt in --wait --async; do
    expect_grep "$T/sh.out" -- "$opt"
    expect_grep README.md -- "$opt"
  done
  expect_grep "$T/rv.out" '^receiver \(msgq-pair\) [0-9.]+$'
  ./receiver --help >/dev/full 2>"$T/full.err" && fail "--help to /dev/full exited 0"
  expect_grep "$T/full.err" '^receiver: write: No space left on device$'
}

# README.md quotes both --help texts word for word (with root's default key).
t_readme_quotes_help() {
  local prog
  for prog in receiver sender; do
    awk -v p="Usage: $prog " 'index($0, p) == 1 { on = 1 } on && /^```/ { exit } on' \
      README.md >"$T/$prog.readme"
    "./$prog" --help | sed 's/(default 0x[0-9a-f]*:/(default 0x32600000:/' >"$T/$prog.help"
    expect_same "$T/$prog.help" "$T/$prog.readme"
  done
}

t_usage_errors() {
  local args i=0
  for args in "--key 0" "--key -5" "--key 12abc" "--key 0x1ffffffff" "--key" \
    "--mode 0400" "--mode 9" "--senders 0" "--bogus" "extra"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    run "u$i" ./receiver $args
    expect_status "u$i" 2
    expect_grep "$T/u$i.err" '^receiver: '
    expect_grep "$T/u$i.err" "^Try 'receiver --help'"
    [ "$(wc -l <"$T/u$i.err")" -eq 2 ] || fail "receiver $args: not one line: $(cat "$T/u$i.err")"
    expect_no_grep "$T/u$i.err" '^\./receiver'  # getopt's own message
  done
  run s1 ./sender --wait soon
  expect_status s1 2
  expect_grep "$T/s1.err" "^sender: --wait: not a number: 'soon'"
  run s3 ./sender -qx
  expect_status s3 2
  expect_grep "$T/s3.err" "^sender: unknown option '-x'$"
  run s2 ./sender --key 0
  expect_status s2 2
  expect_grep "$T/s2.err" '^sender: --key: out of range \(0x1 to 0xffffffff\)'
  run r1 ./receiver --mode 1777
  expect_grep "$T/r1.err" "^receiver: --mode: out of range \(0 to 0777\): '1777'$"
  # A long option that takes no argument, given one (even abbreviated).
  run s4 ./sender --async=yes
  expect_status s4 2
  expect_grep "$T/s4.err" "^sender: option '--async' \\(-a\\) takes no argument$"
  run s5 ./sender --asy=yes
  expect_grep "$T/s5.err" "^sender: option '--async' \\(-a\\) takes no argument$"
  run r2 ./receiver --reply=x
  expect_grep "$T/r2.err" "^receiver: option '--reply' \\(-r\\) takes no argument$"
  ! queue_exists || fail "a usage error created a queue"
}

# Every uid gets a key of its own: 1000 and 1000 + 2^20 too. The uid whose
# sum would be 0 (IPC_PRIVATE) gets the key of uid 2^32 - 1, which is none.
t_default_key_from_uid() {
  need_root
  run h as_user 4242 ./receiver --help
  expect_grep "$T/h.out" 'default 0x32601092'
  run h1 as_user 1000 ./sender --help
  expect_grep "$T/h1.out" 'default 0x326003e8'
  run h3 as_user 1049576 ./sender --help
  expect_grep "$T/h3.out" 'default 0x327003e8'
  run h4 as_user 3449815040 ./receiver --help
  expect_grep "$T/h4.out" 'default 0x325fffff'
  run h2 ./receiver --help
  expect_grep "$T/h2.out" "default $(printf '0x%08x' $((0x32600000 + $(id -u))))"
}

t_args_as_messages() {
  start r "${RECEIVER[@]}" -k "$KEY"
  run s "${SENDER[@]}" -k "$KEY" -w 10 hello "second message"
  finish r
  expect_clean_run r s
  printf 'hello\nsecond message\n' >"$T/want"
  expect_same "$T/want" "$T/r.out"
  expect_empty "$T/s.out"
  # The queue's creation and removal are status lines: the call, and the queue id.
  local id
  id=$(sed -nE "s/^receiver: msgget\($KEY, IPC_CREAT \| IPC_EXCL \| 0600\): queue id ([0-9]+); waiting for 1 sender$/\1/p" "$T/r.err")
  [ -n "$id" ] || fail "no msgget line: $(head -2 "$T/r.err")"
  expect_grep "$T/r.err" "^receiver: msgctl\($id, IPC_RMID\): queue $KEY removed$"
  expect_grep "$T/s.err" 'done: 21 bytes in 2 messages delivered'
  expect_no_grep "$T/s.err" 'type lines|delivered message'
}

t_sender_starts_first() {
  printf 'early bird\n' >"$T/in"
  IN=$T/in start s "${SENDER[@]}" -k "$KEY" -w 10
  wait_until grep -q 'waiting for the receiver' "$T/s.err"
  run r "${RECEIVER[@]}" -k "$KEY"
  finish s
  expect_clean_run r s
  expect_same "$T/in" "$T/r.out"
  expect_grep "$T/s.err" "waiting for the receiver to create queue $KEY"
}

t_no_receiver_times_out() {
  run s "${SENDER[@]}" -k "$KEY" -w 1 hello
  expect_status s 1
  expect_grep "$T/s.err" "^sender: no receiver: queue $KEY does not exist \(waited 1 s\)$"
}

# A queue with no receiver behind it (left by a killed one): the sender
# gives up after --wait, whether its HELLO got in or the queue was full.
t_stale_queue_without_receiver() {
  "$HOSTILE" "$KEY" squat
  run s "${SENDER[@]}" -k "$KEY" -w 1 hello
  expect_status s 1
  expect_grep "$T/s.err" "^sender: no answer from a receiver on queue $KEY \(waited 1 s\); no process has read the queue: is its receiver stopped\? If none runs, remove it with 'ipcrm -Q $KEY'$"
  "$HOSTILE" "$KEY" fill
  start s2 "${SENDER[@]}" -k "$KEY" -w 1 hello
  finish s2 4
  expect_status s2 1
  expect_grep "$T/s2.err" "^sender: no answer from a receiver on queue $KEY \(waited 1 s\); no process has read the queue: is its receiver stopped\? If none runs, remove it with 'ipcrm -Q $KEY'$"
  ipcrm -Q "$KEY"
}

t_empty_input() {
  : >"$T/in"
  transfer
}

t_no_final_newline_crlf_nul() {
  printf 'dos line\r\nnul\0byte\0\nlast line without newline' >"$T/in"
  transfer
}

t_long_lines_split_not_cut() {
  head -c 100000 /dev/zero | tr '\0' 'x' >"$T/in"
  printf '\nshort\n' >>"$T/in"
  head -c 30000 /dev/zero | tr '\0' 'y' >>"$T/in"
  transfer -v
  expect_grep "$T/s.err" '^sender: msgsnd\(type 1\) DATA, pid [0-9]+, 8176 bytes \(more\)$'
}

t_random_binary() {
  head -c 2000000 /dev/urandom >"$T/in"
  transfer
}

t_random_20mb_async() {
  head -c 20000000 /dev/urandom >"$T/in"
  transfer --async
  expect_grep "$T/s.err" 'done: 20000000 bytes in [0-9]+ messages delivered'
}

t_async_short_lines() {
  seq 1 200000 >"$T/in"
  transfer --async
  # As many whole lines per message as fit: a few hundred messages, not 200000.
  expect_grep "$T/s.err" 'done: 1288895 bytes in [0-9]{1,3} messages delivered'
}

# Both programs with OPTION; $T/in goes through unchanged.
run_pair() {
  start r "${RECEIVER[@]}" -k "$KEY" "$1"
  IN=$T/in run s "${SENDER[@]}" -k "$KEY" "$1"
  finish r
  expect_clean_run r s
  expect_same "$T/in" "$T/r.out"
}

# An async sender meets a full queue (the receiver is stopped): it waits,
# says so once with -v, and nothing is lost.
t_async_waits_for_room() {
  seq 1 20000 >"$T/in"
  session --async -v
  stop "$r_pid"
  helper cat "$T/in" >&3
  wait_until grep -q 'EAGAIN' "$T/s.err"
  blocked_in "$s_pid" msgsnd  # waiting, not spinning on EAGAIN
  kill -CONT "$r_pid"
  exec 3>&-  # the sender's input ends when the helper has written it all
  finish s
  finish r
  expect_clean_run r s
  expect_same "$T/in" "$T/r.out"
  [ "$(grep -Ec '^sender: msgsnd: .* \(EAGAIN\): the queue is full; from now on msgsnd waits$' "$T/s.err")" -eq 1 ] ||
    fail "the EAGAIN not said exactly once"
  # The message EAGAIN refused is sent again, without IPC_NOWAIT.
  awk '/IPC_NOWAIT\) DATA/ { len = $8 }
       /\(EAGAIN\)/ { getline; exit !($0 ~ ("^sender: msgsnd\\(type 1\\) DATA, pid [0-9]+, " len " bytes$")) }' "$T/s.err" ||
    fail "the blocking msgsnd after EAGAIN is not traced: $(grep -A1 EAGAIN "$T/s.err")"
}

t_verbose_shows_each_message() {
  printf 'one\ntwo\n' >"$T/in"
  run_pair -v
  local type id
  id=$(sed -nE 's/^receiver: msgget\(.*\): queue id ([0-9]+);.*/\1/p' "$T/r.err")
  expect_grep "$T/s.err" "^sender: msgget\($KEY, 0\): queue id ${id:-none}$"
  expect_grep "$T/s.err" "^sender: msgsnd\(type 2\) HELLO, pid $s_pid, 16 bytes$"
  expect_grep "$T/r.err" "^receiver: msgrcv\(type 2\) HELLO, pid $s_pid, 16 bytes$"
  type=$(sed -nE "s/^sender: msgrcv\(type ([0-9]+)\) WELCOME, pid $s_pid, 16 bytes$/\1/p" "$T/s.err")
  [ "${type:-0}" -ge 3 ] || fail "no WELCOME of the sender's type traced"
  expect_grep "$T/r.err" "^receiver: msgrcv\(type 1\) DATA, pid $s_pid, 4 bytes$"
  expect_grep "$T/r.err" "^receiver: msgsnd\(type $type, IPC_NOWAIT\) ACK, pid $s_pid, 0 bytes$"
  expect_grep "$T/s.err" "^sender: msgsnd\(type 1\) END, pid $s_pid, 16 bytes$"
  expect_grep "$T/s.err" "^sender: msgrcv\(type $type\) TALLY, pid $s_pid, 16 bytes$"
}

# On a terminal (script(1) gives it one, and merges its stderr into the
# transcript) the sender prompts and confirms each delivery, and a chatting
# receiver prompts for its reply. On a pipe neither does: t_args_as_messages.
t_terminal_prompts() {
  printf 'typed line\n' >"$T/typed"
  printf 'my answer\n' >"$T/answer"
  IN=$T/answer start r script -qec "${RECEIVER[*]} -k $KEY --reply" /dev/null
  IN=$T/typed run s script -qec "${SENDER[*]} -k $KEY" /dev/null
  finish r
  expect_status s 0
  expect_status r 0
  expect_grep "$T/s.out" '^sender: type lines to send; Ctrl-D ends'
  expect_grep "$T/s.out" '^sender: delivered message 1 \(11 bytes\)'
  expect_grep "$T/s.out" '^my answer'
  expect_grep "$T/r.out" "reply to [0-9]+> "
  # Messages given as arguments: confirmed, but nothing to type.
  start r2 "${RECEIVER[@]}" -k "$KEY"
  run s2 script -qec "${SENDER[*]} -k $KEY hello" /dev/null
  finish r2
  expect_status s2 0
  expect_grep "$T/s2.out" '^sender: delivered message 1 \(6 bytes\)'
  expect_no_grep "$T/s2.out" 'type lines'
}

# Chat on a terminal after Ctrl-D on the receiver's side: it says once that
# the replies are empty from now on, and prompts no more.
t_terminal_chat_replies_run_out() {
  printf 'my answer\n' >"$T/answer"
  IN=$T/answer start r script -qec "${RECEIVER[*]} -k $KEY --reply" /dev/null
  run s "${SENDER[@]}" -k "$KEY" -w 10 one two three
  finish r
  expect_status s 0
  expect_status r 0
  printf 'my answer\n' >"$T/want"
  expect_same "$T/want" "$T/s.out"
  [ "$(grep -o 'reply to [0-9]*> ' "$T/r.out" | wc -l)" -eq 2 ] ||
    fail "not two prompts: $(grep -o 'reply to [0-9]*> ' "$T/r.out" | wc -l)"
  [ "$(grep -c 'standard input ended: the replies are empty from now on' "$T/r.out")" -eq 1 ] ||
    fail "the end of the replies is not said once"
}

t_quiet_is_quiet() {
  printf 'x\n' >"$T/in"
  run_pair -q
  expect_empty "$T/r.err"
  expect_empty "$T/s.err"
}

t_mode_default_and_widened() {
  start r "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  [ "$(ipcs -q | awk -v k="$KEY" '$1 == k { print $4 }')" = 600 ] || fail "default mode is not 600"
  run s "${SENDER[@]}" -k "$KEY" x
  finish r
  start r2 "${RECEIVER[@]}" -k "$KEY" --mode 0666
  wait_queue
  [ "$(ipcs -q | awk -v k="$KEY" '$1 == k { print $4 }')" = 666 ] || fail "--mode 0666 is not 666"
  run s2 "${SENDER[@]}" -k "$KEY" x
  finish r2
  expect_clean_run r s r2 s2
}

# Three senders at once, one of them async, with lines longer than a message:
# every line arrives whole and each sender's lines keep their order.
lines_of() {
  awk -v p="$1" -v n="$2" 'BEGIN { for (i = 1; i <= n; i++) {
    s = p " " i; if (i % 40 == 0) { s = s " "; while (length(s) < 20000) s = s "x" }
    print s } }'
}

three_senders() {
  lines_of A 400 >"$T/A"
  lines_of B 400 >"$T/B"
  lines_of C 400 >"$T/C"
  start r "${RECEIVER[@]}" -k "$KEY" --senders 3 -q
  if [ -n "${1:-}" ]; then
    wait_queue
    "$HOSTILE" "$KEY" qbytes "$1"
  fi
  IN=$T/A start a "${SENDER[@]}" -k "$KEY" -w 10 -q
  IN=$T/B start b "${SENDER[@]}" -k "$KEY" -w 10 -q --async
  IN=$T/C start c "${SENDER[@]}" -k "$KEY" -w 10 -q
  finish a 40
  finish b 40
  finish c 40
  finish r
  expect_clean_run r a b c
  local p
  for p in A B C; do
    grep "^$p " "$T/r.out" >"$T/got$p"
    expect_same "$T/$p" "$T/got$p"
  done
  [ "$(wc -l <"$T/r.out")" -eq 1200 ] || fail "$(wc -l <"$T/r.out") lines arrived, not 1200"
  expect_no_grep "$T/r.out" '^([^ABC]|[ABC] [0-9]+[^0-9 ]|.[^ ]|[ABC] [0-9]+ x*[^x])'
}

t_three_senders() { three_senders; }

t_three_senders_small_queue() { three_senders 600; }

t_small_queue_sync_and_async() {
  base64 -w 1000 </dev/urandom | head -c 300000 >"$T/in"
  start r "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  "$HOSTILE" "$KEY" qbytes 300
  IN=$T/in run s "${SENDER[@]}" -k "$KEY"
  finish r
  expect_clean_run r s
  expect_same "$T/in" "$T/r.out"
  start r2 "${RECEIVER[@]}" -k "$KEY"
  wait_queue
  "$HOSTILE" "$KEY" qbytes 200
  IN=$T/in run s2 "${SENDER[@]}" -k "$KEY" --async
  finish r2
  expect_clean_run r2 s2
  expect_same "$T/in" "$T/r2.out"
}

t_chat_mode() {
  { printf 'hi\n'; head -c 20000 /dev/zero | tr '\0' 'y'; printf '\nbye\n'; } >"$T/in"
  { printf 'hello back\n'; head -c 20000 /dev/zero | tr '\0' 'z'; printf '\nsee you\n'; } >"$T/want"
  { cat "$T/want"; printf 'one reply too many\n'; } >"$T/replies"
  chat
  # One reply per line, however many messages the line took.
  expect_same "$T/want" "$T/s.out"
}

# Long replies on a queue of 200 bytes: split into many small replies.
t_chat_mode_small_queue() {
  { head -c 5000 /dev/zero | tr '\0' 'q'; printf '\nsecond\n'; } >"$T/in"
  { head -c 3000 /dev/zero | tr '\0' 'a'; printf '\nok\n'; } >"$T/replies"
  chat 200
  expect_same "$T/replies" "$T/s.out"
}

# At the end of its input the receiver answers with empty replies.
t_chat_mode_replies_run_out() {
  printf 'one\ntwo\nthree\n' >"$T/in"
  printf 'only reply\n' >"$T/replies"
  chat
  expect_same "$T/replies" "$T/s.out"
}

t_extra_sender_refused() {
  mkfifo "$T/fifo"
  exec 3<>"$T/fifo"
  start r "${RECEIVER[@]}" -k "$KEY"
  IN=$T/fifo start s1 "${SENDER[@]}" -k "$KEY"
  echo first >&3
  wait_until grep -q 'sender [0-9]* connected' "$T/r.err"
  run s2 "${SENDER[@]}" -k "$KEY" intruder
  expect_status s2 1
  expect_grep "$T/s2.err" '^sender: the receiver refused: it serves no more senders$'
  echo last >&3
  exec 3>&-
  finish s1
  finish r
  expect_status s1 0
  expect_status r 0
  printf 'first\nlast\n' >"$T/want"
  expect_same "$T/want" "$T/r.out"
}

# make demo, its output in a file, as a student reads it: at most 100 lines
# and 15 s; plain text; exit 0; nothing left behind; and each concept of the
# lab notes happens, in order, shown by what the programs print. One line
# per msgsnd and msgrcv (-v) only in steps 2 and 3, which are about the
# calls. (It runs as make demo would, SIGINT not ignored.) Then in the
# background, where SIGINT is ignored: SIGTERM instead; and with --long and
# --key, every program's trace, on that key.
t_demo_in_a_file() {
  local began took lines heads
  began=${EPOCHREALTIME/./}
  DEMO_KEY=$KEY run d env --default-signal ./run_demo.sh
  took=$(((${EPOCHREALTIME/./} - began) / 1000))
  expect_status d 0
  lines=$(wc -l <"$T/d.out")
  [ "$lines" -le 100 ] || fail "the demo printed $lines lines, more than 100"
  [ -n "${EMULATED:-}" ] || [ "$took" -le 15000 ] || fail "the demo took $took ms, more than 15 s"
  echo "$lines lines, $((took / 1000)).$((took % 1000 / 100)) s" >"$T/note"
  expect_no_grep "$T/d.out" $'\033'
  heads=$(sed -n 's/^== \([0-9a-c]*\)\. .*/\1/p' "$T/d.out" | tr '\n' ' ')
  [ "$heads" = "1 2 3 4a 4b 4c 5 " ] || fail "the steps are not 1 to 5: $heads"
  awk '/^== 2\./ { calls = 1 } /^== 4a\./ { calls = 0 }
       /^(sender|receiver): msg(snd|rcv)\(/ && !calls { print; bad = 1 } END { exit bad }' "$T/d.out" ||
    fail "msgsnd and msgrcv traced outside steps 2 and 3: $(grep -m 3 -E '^(sender|receiver): msg(snd|rcv)\(' "$T/d.out")"
  # 1: msgget's flags; ipcs -q's perms column while the queue exists; IPC_EXCL.
  expect_grep "$T/d.out" "^receiver: msgget\($KEY, IPC_CREAT \| IPC_EXCL \| 0600\): queue id [0-9]+; waiting"
  expect_grep "$T/d.out" "^$KEY +[0-9]+ +[^ ]+ +600 +0 +0 *$"
  expect_grep "$T/d.out" "^receiver: queue $KEY already exists"
  expect_grep "$T/d.out" '^\(exit status 1\)$'
  # 2: types: HELLO as type 2, DATA as type 1, the replies of the sender's
  # own type (3 or more); sync: the first ACK before the second DATA.
  expect_grep "$T/d.out" '^sender: msgsnd\(type 2\) HELLO, pid [0-9]+, 16 bytes$'
  expect_grep "$T/d.out" '^sender: msgsnd\(type 1\) DATA, pid [0-9]+, 6 bytes$'
  expect_grep "$T/d.out" '^sender: msgrcv\(type ([3-9]|[1-9][0-9]+)\) WELCOME, pid [0-9]+, 16 bytes$'
  awk '/^sender: msgrcv\(type [0-9]+\) ACK, pid [0-9]+, 0 bytes$/ && !ack { ack = NR }
       /^sender: msgsnd\(type 1\) DATA, pid [0-9]+, 6 bytes$/ { data++; if (data == 2) next_data = NR }
       END { exit !(ack && ack < next_data) }' "$T/d.out" ||
    fail "DATA 2 went before ACK 1: $(grep -n -m 4 -e 'ACK' -e 'DATA' "$T/d.out")"
  expect_grep "$T/d.out" '^sender: done: 12 bytes in 2 messages delivered$'
  # 3: IPC_NOWAIT, then EAGAIN on a full queue, then a blocking msgsnd.
  expect_grep "$T/d.out" '^sender: msgsnd\(type 1, IPC_NOWAIT\) DATA, pid [0-9]+, [0-9]+ bytes'
  expect_grep "$T/d.out" '^sender: msgsnd: Resource temporarily unavailable \(EAGAIN\): the queue is full; from now on msgsnd waits$'
  expect_grep "$T/d.out" '^receiver: sender [0-9]+ finished: 18893 bytes in [0-9]+ messages$'
  # 4a: one sender at a time; a blocked msgrcv that succeeds: the second
  # sender waits, visibly, then is served after the first, its bytes after
  # the first's.
  sed -n '/^== 4a\./,/^== 4b\./p' "$T/d.out" >"$T/4a"
  expect_grep "$T/4a" '^sender: waiting for the receiver \(pid [0-9]+\): it serves another sender$'
  awk '/^sender: waiting for the receiver/ && !waiting { waiting = NR }
       /^receiver: sender [0-9]+ finished: 6 bytes/ { first = NR }
       /^receiver: sender [0-9]+ connected$/ { served = NR }
       END { exit !(waiting && waiting < first && first < served) }' "$T/4a" ||
    fail "the second sender was not served after the first: $(cat "$T/4a")"
  grep -A 2 '^\$ tail -n 2 .*/received$' "$T/4a" | tail -2 | tr '\n' ' ' | grep -qx 'first second ' ||
    fail "the received file does not end with first, second"
  # 4b, 4c: EINTR and EIDRM, and what each side said.
  expect_grep "$T/d.out" '^sender: msgrcv: Interrupted system call \(SIGINT\)$'
  expect_grep "$T/d.out" '^\(process [0-9]+ exited 130: 128 \+ 2, killed by SIGINT\)$'
  expect_grep "$T/d.out" '^receiver: sender [0-9]+ left while it waited its turn: msgrcv: Interrupted system call \(SIGINT\)$'
  expect_grep "$T/d.out" "^sender: msgrcv: Identifier removed \(queue $KEY\)$"
  expect_grep "$T/d.out" "^receiver: msgrcv: Identifier removed \(queue $KEY\)$"
  # 5: msgctl(IPC_RMID) after the BYE, then no queue in ipcs -q.
  expect_grep "$T/d.out" "^receiver: msgctl\([0-9]+, IPC_RMID\): queue $KEY removed$"
  [ "$(tail -3 "$T/d.out" | head -1)" = "$(ipcs -q | grep msqid)" ] ||
    fail "ipcs -q does not end the demo: $(tail -3 "$T/d.out")"
  expect_grep "$T/d.out" '^run_demo.sh: each step did what it said$'
  ! pgrep -f -- "-k $KEY" >/dev/null || fail "the demo left $(pgrep -fa -- "-k $KEY")"
  run bg ./run_demo.sh --long --key "$KEY"
  expect_status bg 0
  [ "$(wc -l <"$T/bg.out")" -gt 100 ] || fail "--long printed $(wc -l <"$T/bg.out") lines, not the full trace"
  expect_grep "$T/bg.out" "^receiver: msgget\($KEY, "
  expect_grep "$T/bg.out" '^receiver: msgrcv\(type 2\) HELLO, pid [0-9]+, 16 bytes$'
  expect_grep "$T/bg.out" '^receiver: msgrcv\(type 1\) DATA, pid [0-9]+, 6 bytes$'
  expect_grep "$T/bg.out" '^receiver: msgsnd\(type [0-9]+, IPC_NOWAIT\) WAIT, pid [0-9]+, 16 bytes$'
  expect_grep "$T/bg.out" '^sender: msgrcv\(type [0-9]+\) WAIT, pid [0-9]+, 16 bytes$'
  expect_grep "$T/bg.out" '^receiver: msgrcv\(type 1\) BYE, pid [0-9]+, 0 bytes$'
  expect_grep "$T/bg.out" '^sender: msgrcv: Interrupted system call \(SIGTERM\)$'
  expect_grep "$T/bg.out" '^\(process [0-9]+ exited 143: 128 \+ 15, killed by SIGTERM\)$'
  expect_grep "$T/bg.out" '^run_demo.sh: each step did what it said$'
}

# --help says what the demo does and its options, and runs nothing; an
# option it does not know, or --key without a key, is a usage error (2).
t_demo_options() {
  DEMO_KEY=$KEY run h ./run_demo.sh --help
  expect_status h 0
  expect_grep "$T/h.out" '^Usage: \./run_demo\.sh \[--long\] \[--key KEY\]$'
  expect_grep "$T/h.out" '^  --long '
  expect_grep "$T/h.out" '^  --key KEY '
  expect_grep "$T/h.out" 'DEMO_KEY'
  expect_no_grep "$T/h.out" '^== |^receiver:|^\$ '
  expect_empty "$T/h.err"
  DEMO_KEY=$KEY run u ./run_demo.sh --lon
  expect_status u 2
  expect_grep "$T/u.err" "^run_demo.sh: unknown option '--lon'$"
  expect_empty "$T/u.out"
  DEMO_KEY=$KEY run k ./run_demo.sh --key
  expect_status k 2
  expect_grep "$T/k.err" "^run_demo.sh: option '--key' needs a KEY$"
  ! queue_exists || fail "the demo made a queue though it was told not to run"
}

# Ctrl-C in the middle of the demo: each process of its group gets SIGINT.
# The demo says in which step; the receiver still says what happened and
# removes its queue; nothing is left behind. Once as it starts, once as it
# stops the receiver in step 3 (a loaded machine may be further on by then).
t_demo_interrupted() {
  DEMO_KEY=$KEY start d setsid env --default-signal ./run_demo.sh
  wait_until grep -q 'waiting for 8 senders' "$T/d.out"
  kill -INT -- "-$d_pid"
  finish d 5
  expect_status d 130
  expect_grep "$T/d.out" '^run_demo.sh: interrupted in step [1-5][a-c]?$'
  expect_grep "$T/d.out" '^receiver: (.*: Interrupted system call|interrupted by) \(?SIGINT\)?$'
  expect_grep "$T/d.out" "^receiver: msgctl\([0-9]+, IPC_RMID\): queue $KEY removed$"
  ! pgrep -f -- "-k $KEY" >/dev/null || fail "the demo left $(pgrep -fa -- "-k $KEY")"
  DEMO_KEY=$KEY start e setsid env --default-signal ./run_demo.sh
  wait_until grep -q '^\$ kill -STOP' "$T/e.out"
  kill -INT -- "-$e_pid"
  finish e 5
  expect_status e 130
  expect_grep "$T/e.out" '^run_demo.sh: interrupted in step [3-5][a-c]?$'
  expect_grep "$T/e.out" "^receiver: msgctl\([0-9]+, IPC_RMID\): queue $KEY removed$"
  ! pgrep -f -- "-k $KEY" >/dev/null || fail "the demo left $(pgrep -fa -- "-k $KEY")"
}

# A step that does not do what it says stops the demo, with status 1: here
# the key has a queue already, so the receiver cannot create one. That
# queue is left alone.
t_demo_stops_at_a_failed_step() {
  "$HOSTILE" "$KEY" squat 0600 || fail "could not create the queue"
  DEMO_KEY=$KEY run d ./run_demo.sh
  expect_status d 1
  expect_grep "$T/d.out" "^receiver: queue $KEY already exists"
  expect_grep "$T/d.out" '^run_demo.sh: step 1 did not do what it says: never printed: '
  expect_no_grep "$T/d.out" '^== 2'
  queue_exists || fail "the demo removed a queue that was not its own"
  ipcrm -Q "$KEY"
  ! pgrep -f -- "-k $KEY" >/dev/null || fail "the demo left $(pgrep -fa -- "-k $KEY")"
}

t_install_uninstall() {
  make -s install DESTDIR="$T/root" PREFIX=/usr >"$T/make.out" 2>&1 || fail "make install failed"
  [ -x "$T/root/usr/bin/sender" ] || fail "sender not installed"
  [ -x "$T/root/usr/bin/receiver" ] || fail "receiver not installed"
  make -s uninstall DESTDIR="$T/root" PREFIX=/usr >>"$T/make.out" 2>&1 || fail "uninstall failed"
  [ -e "$T/root/usr/bin/sender" ] && fail "uninstall left sender"
  [ -x bench/raw ] || fail "make test did not build the benchmark (bench/raw)"
}

TESTS+=(t_help_and_version t_readme_quotes_help t_usage_errors t_default_key_from_uid t_args_as_messages
  t_terminal_chat_replies_run_out t_sender_starts_first t_no_receiver_times_out
  t_stale_queue_without_receiver t_empty_input
  t_no_final_newline_crlf_nul t_long_lines_split_not_cut t_random_binary
  t_random_20mb_async t_async_short_lines t_async_waits_for_room t_verbose_shows_each_message t_terminal_prompts t_quiet_is_quiet
  t_mode_default_and_widened t_three_senders t_three_senders_small_queue
  t_small_queue_sync_and_async t_chat_mode t_chat_mode_small_queue t_chat_mode_replies_run_out t_extra_sender_refused
  t_demo_in_a_file t_demo_interrupted t_demo_stops_at_a_failed_step t_install_uninstall
  t_demo_options)
