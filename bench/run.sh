#!/usr/bin/env bash
# bench/run.sh - `make bench`: the pair against the raw queue floor.
#
# bench/raw does the same transfers with bare processes and one queue.
# Each comparison runs raw and the pair interleaved, ROUNDS times (default
# 3; 9 for the short 50 MB runs, whose times are noisier), and prints
# medians. The pair's time starts once the receiver has made its queue and
# includes starting the senders and the handshakes; raw's includes making
# its queue and forking. ONLY=TEXT runs only the rows whose case contains
# TEXT (ONLY=senders), and skips the memory and idle checks. Nothing here
# asserts a time: it reports.
set -u
cd "$(dirname "$0")/.." || exit 2
ROUNDS=${ROUNDS:-3}
key=$(printf '0x%08x' $((0x7b000000 + $$ % 0x10000)))
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

now() { date +%s%N; }

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# raw_ns PIN MODE N SIZE: one raw run, in nanoseconds.
raw_ns() {
  local pin=$1 t0
  shift
  t0=$(now)
  $pin bench/raw "$@" || { echo "bench: raw $* failed" >&2; exit 1; }
  echo $(($(now) - t0))
}

# queue_made RPID: until receiver RPID has made its queue (the bench ends if it died).
queue_made() {
  until ipcs -q | grep -q "^$key "; do
    kill -0 "$1" 2>/dev/null || { echo "bench: receiver failed" >&2; exit 1; }
    sleep 0.001
  done
}

# pair_ns PIN INPUT SENDER-OPTION...: one sender/receiver run, in nanoseconds.
pair_ns() {
  local pin=$1 input=$2 t0 rpid
  shift 2
  $pin ./receiver -q -k "$key" >/dev/null &
  rpid=$!
  queue_made "$rpid"  # a sender that comes first polls every 50 ms for it: not timed
  t0=$(now)
  $pin ./sender -q -k "$key" "$@" <"$input" || { echo "bench: sender failed" >&2; exit 1; }
  wait "$rpid" || { echo "bench: receiver failed" >&2; exit 1; }
  echo $(($(now) - t0))
}

# senders_ns PIN INPUT COUNT: `receiver --senders COUNT` and COUNT senders
# started at once, each reading INPUT on its own stdin, in nanoseconds: from
# the receiver having made its queue until it exits, having served them all
# one after another.
senders_ns() {
  local pin=$1 input=$2 count=$3 t0 t1 rpid spids=() pid i ok=1
  $pin ./receiver -q -k "$key" --senders "$count" >/dev/null &
  rpid=$!
  queue_made "$rpid"
  t0=$(now)
  for ((i = 0; i < count; i++)); do
    $pin ./sender -q -k "$key" <"$input" &
    spids+=($!)
  done
  wait "$rpid" || ok=0
  t1=$(now)
  for pid in "${spids[@]}"; do wait "$pid" || ok=0; done
  [ "$ok" = 1 ] || { echo "bench: receiver --senders $count or a sender failed" >&2; exit 1; }
  echo $((t1 - t0))
}

# row LABEL PIN N BYTES RAW-NS PAIR-NS: one line of the table.
row() {
  awk -v l="$1" -v p="${2:+pinned}" -v n="$3" -v b="$4" -v rt="$5" -v pt="$6" '
    BEGIN { printf "%-28s %-8s %8d %8.2f %8.2f %10.0f %10.0f %7.1f %7.1f %6.2f\n",
            l, (p ? p : "unpinned"), n, rt / n / 1000, pt / n / 1000, n / (rt / 1e9),
            n / (pt / 1e9), b / 1e6 / (rt / 1e9), b / 1e6 / (pt / 1e9), pt / rt }'
}

# compare LABEL PIN N BYTES INPUT RAW-ARGS -- SENDER-OPTIONS: one table row.
# With SECOND set (raw arguments and a label), that raw run joins each round
# and gets a row of its own, so that both baselines are measured in the
# same rounds. With PAIR set, that function times the pair instead of
# pair_ns, with the same arguments. A failed run ends the benchmark.
compare() {
  local label=$1 pin=$2 n=$3 bytes=$4 input=$5 raw=() r rt=() pt=() ft=() pair_med
  local rounds=${ROUNDS_NOW:-$ROUNDS} floor=()
  [[ $label == *"${ONLY:-}"* ]] || return 0
  read -r -a floor <<<"${SECOND:-}"
  shift 5
  while [ "$1" != -- ]; do raw+=("$1"); shift; done
  shift
  for ((r = 0; r < rounds; r++)); do
    rt+=("$(raw_ns "$pin" "${raw[@]}")") || exit 1
    [ ${#floor[@]} -eq 0 ] || ft+=("$(raw_ns "$pin" "${floor[@]}")") || exit 1
    pt+=("$("${PAIR:-pair_ns}" "$pin" "$input" "$@")") || exit 1
  done
  pair_med=$(printf '%s\n' "${pt[@]}" | median)
  row "$label" "$pin" "$n" "$bytes" "$(printf '%s\n' "${rt[@]}" | median)" "$pair_med"
  [ ${#floor[@]} -eq 0 ] ||
    row "  $SECOND_LABEL" "$pin" "$n" "$bytes" "$(printf '%s\n' "${ft[@]}" | median)" "$pair_med"
}

# Inputs: 64-byte and 4 KiB lines, seq's short lines, 50 MB of long lines.
# lines N SIZE: exactly N lines of SIZE bytes, the newline included.
lines() { yes "$(head -c "$(($2 - 1))" /dev/zero | tr '\0' a)" | head -n "$1"; }
lines 100000 64 >"$tmp/l64"
lines 20000 64 >"$tmp/l64u"
lines 12500 64 >"$tmp/l64x8"   # for each of 8 senders: 100000 lines in all
lines 2500 64 >"$tmp/l64x8u"   # 20000 in all
lines 10000 4096 >"$tmp/l4k"
seq 1 1000000 >"$tmp/seq"
base64 -w 200000 /dev/urandom | head -c 50000000 >"$tmp/big"
seq_bytes=$(stat -c %s "$tmp/seq")
msgmax=$(cat /proc/sys/kernel/msgmax)
big_msgs=$(((50000000 + msgmax - 17) / (msgmax - 16)))  # the pair's: 16-byte header

echo "msgq-pair benchmark on $(nproc) cores, $(uname -r); medians of $ROUNDS rounds ($((ROUNDS * 3)) for 50 MB)"
echo "(pair/raw is the time ratio: 1.00 means no cost beyond the kernel's queue)"
printf '%-28s %-8s %8s %8s %8s %10s %10s %7s %7s %6s\n' case cpus messages \
  'raw us' 'pair us' 'raw msg/s' 'pair msg/s' 'raw MB/s' 'pair MB/s' pair/raw
for pin in "taskset -c 0" ""; do
  if [ -n "$pin" ]; then
    compare "sync, 64-byte lines" "$pin" 100000 6400000 "$tmp/l64" pingpong 100000 64 --
    PAIR=senders_ns compare "sync, --senders 8" "$pin" 100000 6400000 "$tmp/l64x8" \
      multi 8 100000 64 -- 8
  else
    compare "sync, 64-byte lines" "$pin" 20000 1280000 "$tmp/l64u" pingpong 20000 64 --
    PAIR=senders_ns compare "sync, --senders 8" "$pin" 20000 1280000 "$tmp/l64x8u" \
      multi 8 20000 64 -- 8
  fi
  SECOND="pingpong 10000 4096 $tmp/l4k" SECOND_LABEL="same, raw reads the file" \
    compare "sync, 4 KiB lines" "$pin" 10000 40960000 "$tmp/l4k" pingpong 10000 4096 --
  compare "async, seq 1 1000000" "$pin" 1000000 "$seq_bytes" "$tmp/seq" stream 1000000 7 -- --async
  SECOND="stream $big_msgs $msgmax" SECOND_LABEL="same, raw reads nothing" \
    ROUNDS_NOW=$((ROUNDS * 3)) compare "async, 50 MB long lines" \
    "$pin" "$big_msgs" 50000000 "$tmp/big" file "$msgmax" "$tmp/big" -- --async
done
cat <<'EOF'
Pinned: every process on CPU 0 (taskset -c 0). Unpinned, each wake-up of
the other process may cross cores, which on small VMs costs tens of
microseconds and dominates ping-pong; the unpinned sync 64-byte rows use
20000 lines to keep the runs short. In the 50 MB row the raw sender read()s
the same file straight into its messages: the floor for any program that
reads its input. "Raw reads nothing" sends one buffer over and over, for
information. Both split the file into fewer messages than the pair, whose
messages are cut at line ends and carry a header: compare MB/s and time.
Under the 4 KiB rows, also for information, "raw reads the file" is the
ping-pong with its messages read from the pair's input, 64 KiB at a time.
"--senders 8": 8 senders started at once, each with an eighth of the lines,
served one after another by one receiver, against `raw multi`: 8 producers
at once, each with its own reply type, and one consumer.
EOF
[ -z "${ONLY:-}" ] || exit 0

# Peak memory must not grow with the number of messages.
echo
printf '%-34s %12s %12s\n' 'peak RSS (KiB)' receiver sender
for n in 1000 1000000; do
  for mode in sync async; do
    [ "$mode$n" = sync1000000 ] && continue  # a million round trips: too slow here
    seq 1 "$n" >"$tmp/in"
    opt=()
    [ "$mode" = async ] && opt=(--async)
    /usr/bin/time -f %M -o "$tmp/rrss" ./receiver -q -k "$key" >/dev/null &
    rpid=$!
    /usr/bin/time -f %M -o "$tmp/srss" ./sender -q -k "$key" "${opt[@]}" <"$tmp/in"
    wait "$rpid"
    printf '%-34s %12s %12s\n' "$mode, $n lines" "$(tail -1 "$tmp/rrss")" "$(tail -1 "$tmp/srss")"
  done
done

# An idle receiver sleeps in msgrcv: no polling, no timer until a sender comes.
./receiver -q -k "$key" >/dev/null &
rpid=$!
sleep 5
read -r -a stat <"/proc/$rpid/stat"
./sender -q -k "$key" </dev/null
wait "$rpid"
echo
echo "CPU time of a receiver idle for 5 s: $(((stat[13] + stat[14]) * 1000 / $(getconf CLK_TCK))) ms"
