// sender.cpp - sends its input (or its arguments) to the receiver through
// the receiver's queue, line by line, and waits for each acknowledgment
// (or, with --async, only for the final tally).
//
// The sender never creates or removes the queue: it waits for the receiver
// to create it, checks that it belongs to us, and says HELLO, END and BYE.
#include "common.h"

#include <getopt.h>

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
        "Exit status: 0 all delivered, 1 failure, 2 usage error;\n"
        "SIGINT, SIGTERM, SIGHUP: killed by it.\n",
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
        case 'k': o.key = key_t(parse_number(optarg, 0, 1, 0xFFFFFFFFLL, "--key")); break;
        case 'w': o.wait = long(parse_number(optarg, 10, 0, 86400, "--wait")); break;
        case 'a': o.async = true; break;
        case 'q': g_quiet = true; break;
        case 'v': g_verbose = true; break;
        case 'h': usage(); exit_after_printing();
        case 'V': printf("sender (msgq-pair) %s\n", kVersion); exit_after_printing();
        default: bad_option(c, argv);
        }
    }
    o.messages.assign(argv + optind, argv + argc);
    return o;
}

time_t now() {
    timespec ts = {};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

class Sender {
public:
    explicit Sender(const Options& o) : opt_(o), deadline_(now() + o.wait) {}
    int run();

private:
    int open_queue();
    int check_queue();
    int say_hello();
    int send_lines(const char* p, size_t n);
    int send_input();
    int send_data(const char* p, size_t n);
    int say_goodbye();
    int send(uint16_t kind, uint16_t flags, const char* p, size_t n);
    int await(uint16_t kind);
    int await_ack();
    int refused(uint16_t kind);
    int check_receiver();
    int on_interrupt();
    int fail(const char* call);

    const Options& opt_;
    bool interactive_ = isatty(STDIN_FILENO) && !g_quiet;  // prompt and confirm
    time_t deadline_;       // for the receiver to show up
    int q_ = -1;
    pid_t me_ = getpid();
    pid_t peer_ = 0;        // the receiver, once it has welcomed us
    uint32_t seq_ = 0;      // of the last request sent
    size_t chunk_ = 0;      // data bytes per message that the queue accepts
    bool queue_filled_ = false;  // an IPC_NOWAIT send met a full queue
    Tally sent_ = {}, acked_ = {};
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
    long max = max_data(q_);
    if (max < 0) return fail("msgctl");
    if (max == 0) {
        complain("queue 0x%08x takes no message bigger than its header", unsigned(g_key));
        return 1;
    }
    chunk_ = size_t(max);
    return kGoOn;
}

int Sender::say_hello() {
    int st = send(kHello, opt_.async ? kNoAck : 0, nullptr, 0);
    if (st == kGoOn) st = await(kWelcome);
    if (st != kGoOn) return st;
    peer_ = r_.hdr.pid;
    note("connected to receiver %d", int(peer_));
    if (interactive_ && opt_.messages.empty()) note("type lines to send; Ctrl-D ends");
    return kGoOn;
}

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
        const char* p = nullptr;
        ssize_t n = in.next(chunk_, &p);
        if (n == 0) return kGoOn;
        if (n > 0) {
            if (int st = send_data(p, size_t(n)); st != kGoOn) return st;
            continue;
        }
        if (errno != EINTR) {
            syscall_failed("read");
            on_interrupt();  // tell the receiver we go
            return 1;
        }
        // A blocked read ends with EINTR for a signal (seen above) or the watchdog.
        if (int st = check_receiver(); st != kGoOn) return st;
    }
}

int Sender::send_data(const char* p, size_t n) {
    uint16_t flags = (p[n - 1] == '\n' ? 0 : kMore) | (opt_.async ? kNoAck : 0);
    if (int st = send(kData, flags, p, n); st != kGoOn) return st;
    sent_.bytes += n;
    ++sent_.messages;
    if (opt_.async) return kGoOn;
    if (int st = await_ack(); st != kGoOn) return st;
    acked_.bytes += n;
    ++acked_.messages;
    if (interactive_)
        note("delivered message %u (%s)", unsigned(seq_), Count(n, "byte").text);
    return kGoOn;
}

// END, then the tally, which must match what we sent, then BYE.
int Sender::say_goodbye() {
    if (int st = send(kEnd, 0, nullptr, 0); st != kGoOn) return st;
    if (int st = await(kTally); st != kGoOn) return st;
    Tally got = {};
    if (r_.hdr.len == sizeof got) memcpy(&got, r_.data, sizeof got);
    acked_ = got;
    if (int st = send(kBye, 0, nullptr, 0); st != kGoOn) return st;
    if (got.bytes != sent_.bytes || got.messages != sent_.messages) {
        complain("the receiver got %s in %s, but %s in %s were sent",
                 Count(got.bytes, "byte").text, Count(got.messages, "message").text,
                 Count(sent_.bytes, "byte").text, Count(sent_.messages, "message").text);
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
// waits at once.
int Sender::send(uint16_t kind, uint16_t flags, const char* p, size_t n) {
    m_.mtype = kRequestType;
    m_.hdr = Header{int32_t(me_), kind, flags, kind == kHello ? 0 : ++seq_, uint32_t(n)};
    if (n > 0) memcpy(m_.data, p, n);
    int wait = (flags & kNoAck) && kind == kData && !queue_filled_ ? IPC_NOWAIT : 0;
    for (;;) {
        if (g_signal) return on_interrupt();
        if (send_message(q_, m_, wait) == 0) {
            trace("sent", m_);
            return kGoOn;
        }
        if (errno == EAGAIN && wait) {
            if (g_verbose) complain("the queue is full: waiting for room from now on");
            queue_filled_ = true;
            wait = 0;
        } else if (errno != EINTR) {  // msgsnd is never restarted: EINTR comes back
            return fail("msgsnd");
        } else if (int st = check_receiver(); st != kGoOn) {
            return st;
        }
    }
}

// Waits for the reply of this kind to our last request; anything else sent
// to our reply type is reported and skipped.
int Sender::await(uint16_t kind) {
    for (;;) {
        if (g_signal) return on_interrupt();
        ssize_t n = receive_message(q_, r_, reply_type(me_), 0);
        if (n < 0 && errno != EINTR) return fail("msgrcv");
        if (n < 0) {  // a signal (seen above), or the watchdog: anyone there?
            if (int st = check_receiver(); st != kGoOn) return st;
            continue;
        }
        uint32_t want = kind == kWelcome ? 0 : seq_;
        if (!well_formed(r_, n)) {
            complain("ignoring a malformed reply (%zd bytes)", n);
            continue;
        }
        trace("got", r_);
        if (r_.hdr.kind == kRefuse && r_.hdr.seq == want && (!peer_ || r_.hdr.pid == peer_))
            return refused(kind);
        else if (r_.hdr.kind != kind || r_.hdr.seq != want || (peer_ && r_.hdr.pid != peer_))
            complain("ignoring a reply %s seq %u from %d: waiting for %s seq %u",
                     kind_name(r_.hdr.kind), unsigned(r_.hdr.seq), int(r_.hdr.pid),
                     kind_name(kind), unsigned(want));
        else
            return kGoOn;
    }
}

// The receiver said no: to HELLO when it serves enough senders already,
// to anything else when it saw a gap in our sequence numbers.
int Sender::refused(uint16_t kind) {
    if (kind == kWelcome) {
        complain("the receiver refused: it serves no more senders");
        return 1;
    }
    complain("the receiver refused message %u: it did not get all the messages before it",
             unsigned(seq_));
    return on_interrupt();
}

// An acknowledgment may carry a chat reply, over several messages.
int Sender::await_ack() {
    do {
        if (int st = await(kAck); st != kGoOn) return st;
        if (!write_all(STDOUT_FILENO, r_.data, r_.hdr.len)) {  // chat reply
            syscall_failed("write");
            on_interrupt();
            return 1;
        }
    } while (r_.hdr.flags & kMore);
    return kGoOn;
}

// The watchdog ticked: the queue may be gone, or the receiver dead without
// removing it, or (before WELCOME) --wait over. Each ends the transfer.
int Sender::check_receiver() {
    if (!g_tick) return kGoOn;
    g_tick = 0;
    if (peer_ == 0) {  // not welcomed yet: only --wait applies
        if (now() < deadline_) return kGoOn;
        complain("no answer from a receiver on queue 0x%08x (waited %ld s)", unsigned(g_key),
                 opt_.wait);
        return 1;
    }
    msqid_ds ds;
    if (msgctl(q_, IPC_STAT, &ds) < 0) return fail("msgctl(IPC_STAT)");
    return alive(peer_) ? kGoOn : fail(nullptr);
}

// Stopping early: tell the receiver, if there is room, so that it ends now.
int Sender::on_interrupt() {
    if (peer_ == 0) return 1;
    m_.mtype = kRequestType;
    m_.hdr = Header{int32_t(me_), kLeave, 0, ++seq_, 0};
    if (send_message(q_, m_, IPC_NOWAIT) == 0) trace("sent", m_);
    return 1;
}

// One line: what failed (the call, or the receiver's death if call is
// null) and how much the receiver had acknowledged by then (with --async,
// how much was sent: the receiver confirms only at the end).
int Sender::fail(const char* call) {
    char what[160];
    if (call == nullptr) {
        snprintf(what, sizeof what, "the receiver (pid %d) died", int(peer_));
    } else {
        int e = queue_gone(errno) && q_ >= 0 ? EIDRM : errno;
        snprintf(what, sizeof what, "%s: %s (queue 0x%08x)", call, strerror(e), unsigned(g_key));
    }
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
    Options opt = parse_options(argc, argv);
    g_key = opt.key;
    install_signal_handlers();
    set_watchdog(true);
    int status = Sender(opt).run();
    if (close(STDOUT_FILENO) < 0) {
        syscall_failed("close(stdout)");
        status = 1;
    }
    reraise_if_signalled();
    return status;
}
