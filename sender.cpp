// sender.cpp - sends its input (or its arguments) to the receiver through
// the receiver's queue, line by line, and waits for each acknowledgment
// (or, with --async, only for the final tally).
//
// The sender never creates or removes the queue: it waits for the receiver
// to create it, checks that it belongs to us, and says HELLO, END and BYE.
// Every message of the session carries the secret token it chose for its
// HELLO; END carries a checksum of everything sent, which the receiver's
// TALLY must match.
#include "common.h"

#include <getopt.h>

#include <cctype>
#include <ctime>
#include <string>
#include <vector>

namespace {

struct Options {
    key_t key = default_key();
    long wait = 30;
    bool async = false;
    std::vector<const char*> messages;
};

void usage() {
    printf(
        "Usage: sender [OPTION]... [MESSAGE]...\n"
        "Send each MESSAGE as a line, or else standard input, to the receiver.\n"
        "\n"
        "  -k, --key=KEY       queue key: decimal, 0x hex or 0 octal\n"
        "                      (default 0x%08x: a fixed base plus your uid)\n"
        "  -w, --wait=SECONDS  wait this long for the receiver (default 30)\n"
        "  -a, --async         do not wait for each acknowledgment, only for the\n"
        "                      receiver's final tally\n"
        "  -q, --quiet         no status lines, prompts or confirmations on stderr\n"
        "  -v, --verbose       one stderr line per message\n"
        "  -h, --help          show this help and exit\n"
        "  -V, --version       show the version and exit\n"
        "\n"
        "Exit status: 0 all delivered and the receiver's tally agrees, 1 failure,\n"
        "2 usage error. On SIGINT, SIGTERM, SIGHUP, SIGQUIT and other stop signals\n"
        "it tells the receiver it leaves, then dies of the signal.\n",
        unsigned(default_key()));
}

Options parse_options(int argc, char** argv) {
    static const option longopts[] = {
        {"key", required_argument, nullptr, 'k'}, {"wait", required_argument, nullptr, 'w'},
        {"async", no_argument, nullptr, 'a'},     {"quiet", no_argument, nullptr, 'q'},
        {"verbose", no_argument, nullptr, 'v'},   {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, 'V'},   {nullptr, 0, nullptr, 0}};
    Options o;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":k:w:aqvhV", longopts, nullptr)) != -1) {
        switch (c) {
        case 'k': o.key = key_t(parse_number(optarg, Radix::kAny, 1, 0xFFFFFFFFLL, "--key")); break;
        case 'w': o.wait = long(parse_number(optarg, Radix::kDecimal, 0, 86400, "--wait")); break;
        case 'a': o.async = true; break;
        case 'q': g_quiet = true; break;
        case 'v': g_verbose = true; break;
        case 'h': usage(); exit_after_printing();
        case 'V': printf("sender (msgq-pair) %s\n", kVersion); exit_after_printing();
        default: bad_option(c, argv, longopts);
        }
    }
    o.messages.assign(argv + optind, argv + argc);
    return o;
}

// Seconds on a clock that never jumps, to the nanosecond: --wait waits at
// least what it says, wherever in a second it started.
double now() {
    timespec ts = {};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

// judge()'s "this is the reply we wait for"; kGoOn is "read on".
constexpr int kGot = -2;

class Sender {
public:
    explicit Sender(const Options& o) : opt_(o), deadline_(now() + double(o.wait)) {}
    int run();

private:
    int open_queue();
    int check_queue();
    int fit_queue();
    int say_hello();
    int send_lines(const char* p, size_t n);
    int send_input();
    int send_data(const char* p, size_t n);
    int say_goodbye();
    int send(uint16_t kind, uint16_t flags, size_t n);
    int await(uint16_t kind, uint32_t want);
    int await_ack(uint32_t seq);
    int judge(ssize_t n, uint16_t kind, uint32_t want);
    struct Reason {
        char text[128];
    };
    Reason reason() const;
    void ping();
    int drain_replies();
    int on_tick();
    int on_interrupt();
    int fail(const char* call);

    const Options& opt_;
    bool interactive_ = isatty(STDIN_FILENO) && !g_quiet;  // prompt and confirm
    double deadline_;       // for the receiver to show up
    int q_ = -1;
    pid_t me_ = getpid();
    pid_t peer_ = 0;        // the receiver, once it has welcomed us
    uint64_t token_ = 0;    // the session's secret, chosen for our HELLO
    uint32_t seq_ = 0;      // of the last request sent
    uint32_t pinged_ = 0;   // seq of the last PING sent, 0 if none
    size_t chunk_ = 0;      // data bytes per message that the queue accepts
    bool queue_filled_ = false;  // an IPC_NOWAIT send met a full queue
    Tally sent_ = {};       // everything sent, with its checksum
    Tally acked_ = {};      // bytes and messages acknowledged (or tallied)
    Message m_ = {};        // the request being sent
    Message r_ = {};        // the reply being read
};

int Sender::run() {
    int st = open_queue();
    if (st == kGoOn) st = check_queue();
    if (st == kGoOn) st = say_hello();
    if (st == kGoOn && opt_.messages.empty()) st = send_input();
    for (size_t i = 0; st == kGoOn && i < opt_.messages.size(); ++i) {
        std::string line = std::string(opt_.messages[i]) + '\n';
        st = send_lines(line.data(), line.size());
    }
    if (st == kGoOn) st = say_goodbye();
    return st;
}

// Either program may start first: wait, bounded by --wait, for the queue.
int Sender::open_queue() {
    bool said = false;
    while ((q_ = msgget(g_key, 0)) < 0) {
        if (g_signal) return 1;
        if (errno != ENOENT) return fail("msgget");
        if (now() >= deadline_) {
            complain("no receiver: queue 0x%08x does not exist (waited %ld s)", unsigned(g_key),
                     opt_.wait);
            return 1;
        }
        if (!said) note("waiting for the receiver to create queue 0x%08x", unsigned(g_key));
        said = true;
        timespec pause = {0, 50'000'000};  // 50 ms: no notice exists for a new queue
        nanosleep(&pause, nullptr);
    }
    return kGoOn;
}

// Anyone may create a queue under our key first, with mode 0666, to read
// what we send: only a queue that is entirely ours is used.
int Sender::check_queue() {
    msqid_ds ds = {};
    if (msgctl(q_, IPC_STAT, &ds) < 0) return fail("msgctl(IPC_STAT)");
    if (!ours(ds.msg_perm)) {
        complain("queue 0x%08x belongs to uid %u, not to you; refusing to send to it",
                 unsigned(g_key), stranger(ds.msg_perm));
        return 1;
    }
    return fit_queue();
}

// Sizes our messages to what the queue takes now: msg_qbytes may be lowered
// at any time by the queue's owner. A queue too small for END and TALLY can
// carry no session.
int Sender::fit_queue() {
    long limit = message_limit(q_);
    if (limit < 0) return fail("msgctl(IPC_STAT)");
    if (size_t(limit) < kMinText) {
        complain("queue 0x%08x takes messages of at most %ld bytes; msgq-pair needs %zu",
                 unsigned(g_key), limit, kMinText);
        return on_interrupt();
    }
    if (chunk_ != 0 && size_t(limit) - kHeaderSize < chunk_)
        note("queue 0x%08x now takes messages of at most %ld bytes: sending smaller ones",
             unsigned(g_key), limit);
    chunk_ = size_t(limit) - kHeaderSize;
    return kGoOn;
}

// The token makes our session ours: a reply without it (a WELCOME or REFUSE
// forged by whoever may write to the queue) is not from our receiver.
int Sender::say_hello() {
    if (getentropy(&token_, sizeof token_) < 0) {
        syscall_failed("getentropy");
        return 1;
    }
    token_ |= 1;  // never 0
    int st = send(kHello, opt_.async ? kNoAck : 0, 0);
    if (st == kGoOn) st = await(kWelcome, 0);
    if (st != kGoOn) return st;
    peer_ = r_.hdr.pid;
    token_ = r_.hdr.token;
    note("connected to receiver %d", int(peer_));
    if (interactive_ && opt_.messages.empty()) note("type lines to send; Ctrl-D ends");
    return kGoOn;
}

// Arguments: each chunk ends at a newline or at the message size.
int Sender::send_lines(const char* p, size_t n) {
    while (n > 0) {
        size_t len = chunk_length(p, n, chunk_);
        if (int st = send_data(p, len); st != kGoOn) return st;
        p += len;
        n -= len;
    }
    return kGoOn;
}

int Sender::send_input() {
    LineReader in(STDIN_FILENO);
    for (;;) {
        if (g_signal) return on_interrupt();
        if (g_tick) {  // while we wait for input: is the session still there?
            if (int st = on_tick(); st != kGoOn) return st;
            if (int st = drain_replies(); st != kGoOn) return st;
        }
        const char* p = nullptr;
        ssize_t n = in.next(chunk_, &p);
        if (n == 0) return kGoOn;
        if (n > 0) {
            if (int st = send_data(p, size_t(n)); st != kGoOn) return st;
            continue;
        }
        if (errno != EINTR) {  // EINTR: a signal or the watchdog, seen above
            syscall_failed("read");
            on_interrupt();  // tell the receiver we go
            return 1;
        }
    }
}

// One chunk of input, in one DATA, or in more if the queue shrinks while
// we send it. The chunk is copied into the message as its checksum is taken.
int Sender::send_data(const char* p, size_t n) {
    while (n > 0) {
        size_t len = n < chunk_ ? n : chunk_;
        uint16_t flags = (p[len - 1] == '\n' ? 0 : kMore) | (opt_.async ? kNoAck : 0);
        Tally before = sent_;
        sent_.add(p, len, m_.data);
        if (int st = send(kData, flags, len); st != kGoOn) return st;
        if (m_.hdr.len < len) {  // send() cut it to fit a shrunk queue
            len = m_.hdr.len;
            sent_ = before;
            sent_.add(p, len);
        }
        uint32_t seq = seq_;
        p += len;
        n -= len;
        if (opt_.async) continue;
        if (int st = await_ack(seq); st != kGoOn) return st;
        acked_.bytes += len;
        ++acked_.messages;
        if (interactive_)
            note("delivered message %u (%s)", unsigned(seq), Count(len, "byte").text);
    }
    return kGoOn;
}

// END with our tally, the receiver's TALLY, BYE. The two tallies must
// agree, checksum included: the receiver wrote exactly what we sent.
int Sender::say_goodbye() {
    memcpy(m_.data, &sent_, sizeof sent_);
    if (int st = send(kEnd, 0, sizeof sent_); st != kGoOn) return st;
    if (int st = await(kTally, seq_); st != kGoOn) return st;
    Tally got = {};
    if (r_.hdr.len == sizeof got) memcpy(&got, r_.data, sizeof got);
    acked_ = got;
    if (int st = send(kBye, 0, 0); st != kGoOn) return st;
    if (got.bytes != sent_.bytes || got.messages != sent_.messages) {
        complain("the receiver got %s in %s, but %s in %s were sent",
                 Count(got.bytes, "byte").text, Count(got.messages, "message").text,
                 Count(sent_.bytes, "byte").text, Count(sent_.messages, "message").text);
        return 1;
    }
    if (!(got == sent_)) {
        complain("the receiver wrote %s in %s, as many as were sent, but not the same bytes"
                 " (the checksums differ)",
                 Count(got.bytes, "byte").text, Count(got.messages, "message").text);
        return 1;
    }
    note("done: %s in %s delivered", Count(got.bytes, "byte").text,
         Count(got.messages, "message").text);
    return 0;
}

// Async data is offered with IPC_NOWAIT; a full queue (EAGAIN) means wait
// for room, never drop. The kernel copies a message before it finds the
// queue full, so a refused offer costs a whole copy: once the queue has
// filled up, the sender lets msgsnd wait from then on. Everything else
// waits at once. A queue that shrinks below a waiting DATA gets less of it
// now; send_data() sends the rest. The caller has put the n bytes of data
// in m_.data.
int Sender::send(uint16_t kind, uint16_t flags, size_t n) {
    m_.mtype = kRequestType;
    m_.hdr = Header{int32_t(me_), kind, flags, kind == kHello ? 0 : ++seq_, uint32_t(n), token_};
    int wait = (flags & kNoAck) && kind == kData && !queue_filled_ ? IPC_NOWAIT : 0;
    trace("sent", m_);  // before: the receiver may say "got" before msgsnd returns
    for (;;) {
        if (g_signal) return on_interrupt();
        if (g_tick) {
            if (int st = on_tick(); st != kGoOn) return st;
            if (int st = drain_replies(); st != kGoOn) return st;
            if (kind == kData && m_.hdr.len > chunk_) {
                m_.hdr.len = uint32_t(chunk_);
                m_.hdr.flags |= kMore;
                trace("sent", m_);  // a smaller message, in its place
            }
        }
        if (send_message(q_, m_, wait) == 0) return kGoOn;
        if (errno == EAGAIN && wait) {
            if (g_verbose) complain("the queue is full: waiting for room from now on");
            queue_filled_ = true;
            wait = 0;
        } else if (errno != EINTR) {  // msgsnd is never restarted: EINTR comes back
            return fail("msgsnd");
        }
    }
}

// Waits for the reply of this kind to request `want`. While the receiver
// stays silent, a PING after 2, 4, 8... seconds asks whether a message went
// missing (see ping()), our WELCOME too.
int Sender::await(uint16_t kind, uint32_t want) {
    for (unsigned ticks = 0;;) {
        if (g_signal) return on_interrupt();
        if (g_tick) {
            if (int st = on_tick(); st != kGoOn) return st;
            ++ticks;
            if (ticks >= 2 && (ticks & (ticks - 1)) == 0) ping();  // after 2, 4, 8... s
        }
        ssize_t n = receive_message(q_, r_, reply_type(me_), 0);
        if (n < 0 && errno != EINTR) return fail("msgrcv");
        if (n < 0) continue;  // a signal or the watchdog: seen above
        if (int st = judge(n, kind, want); st != kGoOn) return st == kGot ? kGoOn : st;
    }
}

// An acknowledgment may carry a chat reply, over several messages.
int Sender::await_ack(uint32_t seq) {
    do {
        if (int st = await(kAck, seq); st != kGoOn) return st;
        if (!write_all(STDOUT_FILENO, r_.data, r_.hdr.len)) {  // chat reply
            syscall_failed("write");
            on_interrupt();
            return 1;
        }
    } while (r_.hdr.flags & kMore);
    return kGoOn;
}

// What a reply addressed to us means while we wait for the reply of this
// kind to request `want` (kind 0: while we wait for none). kGot: it is that
// reply; kGoOn: read on; anything else: the exit status.
int Sender::judge(ssize_t n, uint16_t kind, uint32_t want) {
    if (!well_formed(r_, n)) {
        complain("ignoring a malformed reply (%zd bytes)", n);
        return kGoOn;
    }
    trace("got", r_);
    const Header& h = r_.hdr;
    if (h.token != token_) {
        complain("ignoring a reply %s from %d: not of our session", kind_name(h.kind),
                 int(h.pid));
        return kGoOn;
    }
    if (peer_ == 0) {  // the answer to our HELLO, from a receiver not known yet
        if (kind == kWelcome && h.seq == 0 && h.kind == kWelcome) return kGot;
        if (kind == kWelcome && h.seq == 0 && h.kind == kRefuse) {
            complain("the receiver refused: %s", reason().text);
            return 1;
        }
        if (kind == kWelcome && h.kind == kAck && h.seq != 0 && h.seq <= pinged_) {
            complain("the receiver's WELCOME never came, but its answer to a later PING did"
                     " (taken out of the queue by another process?)");
            peer_ = h.pid;  // so that it hears we go
            return on_interrupt();
        }
    } else if (h.pid != peer_) {  // our token, not our receiver: one of them is forged
        complain("a reply %s from %d carries our session's token, but our receiver is %d:"
                 " forged by a process that read the queue?", kind_name(h.kind), int(h.pid),
                 int(peer_));
        return on_interrupt();
    } else if (h.kind == kRefuse) {
        complain("the receiver refused message %u: %s", unsigned(h.seq), reason().text);
        return on_interrupt();
    } else if (kind != 0 && h.kind == kind && h.seq == want) {
        return kGot;
    } else if (h.kind == kAck && h.seq <= pinged_) {
        if (kind == 0 || h.seq < want) return kGoOn;  // a late answer to an earlier PING
        complain("the receiver's reply to message %u never came, but its answer to a later"
                 " PING did (taken out of the queue by another process?)", unsigned(want));
        return on_interrupt();
    }
    complain("ignoring an unexpected reply %s seq %u from %d", kind_name(h.kind),
             unsigned(h.seq), int(h.pid));
    return kGoOn;
}

// A REFUSE's reason, as the receiver wrote it, printable characters only.
Sender::Reason Sender::reason() const {
    Reason why = {};
    size_t n = 0;
    for (uint32_t i = 0; i < r_.hdr.len && n + 1 < sizeof why.text; ++i)
        why.text[n++] = isprint(static_cast<unsigned char>(r_.data[i])) ? r_.data[i] : '?';
    if (n == 0) snprintf(why.text, sizeof why.text, "no reason given");
    return why;
}

// A PING is a request like any other. If one of ours went missing, the
// receiver sees the gap and refuses; if its reply to us went missing, its
// answer to the PING comes first. Either ends the wait (judge()). Sent with
// IPC_NOWAIT and not checked: in a full queue the receiver has work waiting,
// and a later tick asks again.
void Sender::ping() {
    m_.mtype = kRequestType;
    m_.hdr = Header{int32_t(me_), kPing, 0, seq_ + 1, 0, token_};
    trace("sent", m_);
    if (send_message(q_, m_, IPC_NOWAIT) == 0) pinged_ = ++seq_;
}

// Between replies only late answers to our PINGs are addressed to us, or a
// REFUSE (an async sender reads nothing else until the end). Reading them
// once a second finds a REFUSE early, and keeps junk sent to our type from
// filling the queue.
int Sender::drain_replies() {
    if (peer_ == 0) return kGoOn;
    for (;;) {
        ssize_t n = receive_message(q_, r_, reply_type(me_), IPC_NOWAIT);
        if (n < 0) return errno == ENOMSG ? kGoOn : fail("msgrcv");
        if (int st = judge(n, 0, 0); st != kGoOn) return st;
    }
}

// The watchdog ticked: is there still someone to talk to? Before WELCOME
// only --wait bounds the wait. After it, the queue must still exist, the
// receiver live, and msg_qbytes still let END and TALLY through.
int Sender::on_tick() {
    g_tick = 0;
    if (peer_ == 0) {
        if (now() < deadline_) return kGoOn;
        complain("no answer from a receiver on queue 0x%08x (waited %ld s)", unsigned(g_key),
                 opt_.wait);
        return 1;
    }
    if (int st = fit_queue(); st != kGoOn) return st;
    return alive(peer_) ? kGoOn : fail(nullptr);
}

// Stopping early: tell the receiver, if there is room, so that it ends now.
int Sender::on_interrupt() {
    if (peer_ == 0) return 1;
    m_.mtype = kRequestType;
    m_.hdr = Header{int32_t(me_), kLeave, 0, ++seq_, 0, token_};
    trace("sent", m_);
    (void)send_message(q_, m_, IPC_NOWAIT);  // no room: the receiver sees us die
    return 1;
}

// One line: what failed (the call, or the receiver's death if call is
// null) and how much the receiver had acknowledged by then (with --async,
// how much was sent: the receiver confirms only at the end).
int Sender::fail(const char* call) {
    int e = call != nullptr ? ipc_errno(q_) : 0;
    char what[160];
    if (call == nullptr)
        snprintf(what, sizeof what, "the receiver (pid %d) died", int(peer_));
    else
        snprintf(what, sizeof what, "%s: %s (queue 0x%08x)", call, strerror(e), unsigned(g_key));
    if (peer_ == 0)
        complain("%s", what);
    else if (opt_.async)  // nothing is confirmed before the tally
        complain("%s; %s (%s) sent, none confirmed (--async)", what,
                 Count(sent_.messages, "message").text, Count(sent_.bytes, "byte").text);
    else
        complain("%s; %s (%s) acknowledged", what, Count(acked_.messages, "message").text,
                 Count(acked_.bytes, "byte").text);
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    g_prog = "sender";
    guard_std_fds();
    Options opt = parse_options(argc, argv);
    g_key = opt.key;
    install_signal_handlers();
    set_watchdog(true);
    int status = Sender(opt).run();
    if (!close_stdout()) status = 1;
    reraise_if_signalled();
    return status;
}
