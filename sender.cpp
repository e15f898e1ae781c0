// sender.cpp - sends its arguments, or else its standard input, line by line
// through the receiver's queue, and exits 0 only when the receiver reports
// that it wrote exactly what was sent. It opens the queue (msgget), sends
// requests of type 1 (msgsnd) and reads replies of its own type (msgrcv).
#include <algorithm>
#include <ctime>
#include <string>

#include "common.h"

namespace {

struct Options {
    key_t key = default_key();
    long wait = 30;  // seconds, for the queue and then for WELCOME
    bool async = false;
    char** messages = nullptr;  // the MESSAGE arguments, null-terminated
};

void usage() {
    printf(
        "Usage: sender [OPTION]... [MESSAGE]...\n"
        "Send each MESSAGE as a line, or else standard input, to the receiver.\n"
        "\n"
        "  -k, --key=KEY       queue key: decimal, 0x hex or 0 octal\n"
        "                      (default 0x%08x: a fixed base plus your uid)\n"
        "  -w, --wait=SECONDS  wait this long for the receiver (default 30)\n"
        "  -a, --async         send with IPC_NOWAIT, as many lines per message as\n"
        "                      fit, and wait only for the receiver's final tally\n"
        "  -q, --quiet         no status lines on stderr\n"
        "  -v, --verbose       one stderr line per msgsnd and msgrcv\n"
        "  -h, --help          show this help and exit\n"
        "  -V, --version       show the version and exit\n"
        "\n"
        "Exit status: 0 if all was delivered and the tallies agree, 1 if not, 2 for a\n"
        "usage error. A stop signal (SIGINT...) sends LEAVE to the receiver, then ends it.\n",
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
        case 'k': o.key = key_t(parse_number(optarg, 0, 1, 0xffffffffLL, "--key")); break;
        case 'w': o.wait = long(parse_number(optarg, 10, 0, 86400, "--wait")); break;
        case 'a': o.async = true; break;
        case 'q': g_quiet = true; break;
        case 'v': g_verbose = true; break;
        case 'h': usage(); exit_after_printing();
        case 'V': printf("sender (msgq-pair) %s\n", kVersion); exit_after_printing();
        default: bad_option(c, argv, longopts);
        }
    }
    o.messages = argv + optind;
    return o;
}

class Sender {
public:
    explicit Sender(const Options& o) : opt_(o), deadline_(time(nullptr) + o.wait) {}

    // Either program may start first: wait, within --wait, for the receiver
    // to create the queue (nothing tells when one appears: look every 50 ms).
    // Use it only if we own and created it: anyone may create a queue under
    // our key first, with mode 0666, to read what we send.
    bool open_queue() {
        bool said = false;
        while ((q_ = msgget(opt_.key, 0)) < 0) {
            if (errno != ENOENT) return failed("msgget");
            if (g_signal) return interrupted(nullptr);
            if (time(nullptr) > deadline_)
                return complain("no receiver: queue 0x%08x does not exist (waited %ld s)",
                                unsigned(opt_.key), opt_.wait);
            if (!said) note("waiting for the receiver to create queue 0x%08x", unsigned(opt_.key));
            said = true;
            timespec pause = {0, 50'000'000};
            nanosleep(&pause, nullptr);
        }
        if (g_verbose) note("msgget(0x%08x, 0): queue id %d", unsigned(opt_.key), q_);
        msqid_ds ds;
        if (msgctl(q_, IPC_STAT, &ds) < 0) return failed("msgctl(IPC_STAT)");
        if (uid_t uid = foreign_uid(ds.msg_perm); uid != kNoUid)
            return complain("queue 0x%08x belongs to uid %u, not to you; refusing to send to it",
                            unsigned(opt_.key), unsigned(uid));
        Limit limit = message_limit(q_);
        if (limit.bytes < 0) return failed("msgctl(IPC_STAT)");
        if (!fits(q_, opt_.key, kMinText)) return false;
        chunk_ = size_t(limit.bytes) - sizeof(Header);
        return true;
    }

    // HELLO says who we are and which reply type we drew; WELCOME, of that
    // type, who the receiver is.
    bool hello() {
        uint32_t r;
        if (getentropy(&r, sizeof r) < 0) return failed("getentropy");
        session_ = 2 + long(r % uint32_t(kMaxType - 1));
        Hello me = {kProtocol, int32_t(getpid()), pid_namespace()}, them;
        Message reply;
        if (!send(kHello, 0, &me, sizeof me) || !await(reply, kWelcome, 0)) return false;
        memcpy(&them, reply.data, sizeof them);
        receiver_ = peer(them.pid);
        note("connected to receiver %d", int(them.pid));
        if (interactive_ && *opt_.messages == nullptr) note("type lines to send; Ctrl-D ends");
        return true;
    }

    // Each argument is a line; without arguments, standard input is read. A
    // line longer than a message goes in several DATA.
    bool send_input() {
        for (char** arg = opt_.messages; *arg != nullptr; ++arg) {
            std::string line = std::string(*arg) + '\n';
            for (size_t at = 0; at < line.size(); at += chunk_)
                if (!send_data(line.data() + at, std::min(chunk_, line.size() - at))) return false;
        }
        if (*opt_.messages != nullptr) return true;
        LineReader in(STDIN_FILENO);
        for (;;) {
            const char* p = nullptr;
            ssize_t n = in.next(chunk_, &p, opt_.async);  // async: as many lines as have come
            if (n == 0) return true;
            if (n > 0 && !send_data(p, size_t(n))) return false;
            if (n < 0 && !keep_waiting("read")) return false;
            if (n < 0 && refused()) return false;
        }
    }

    // END carries our tally; the receiver's TALLY must match it. BYE says we
    // have read it, so that the receiver may remove the queue.
    bool end() {
        Message reply;
        Tally written;
        if (!send(kEnd, 0, &sent_, sizeof sent_) || !await(reply, kTally, seq_)) return false;
        memcpy(&written, reply.data, sizeof written);
        if (!send(kBye, 0, nullptr, 0)) return false;
        said_bye_ = true;
        unsigned long long bytes = sent_.bytes, n = sent_.messages;
        if (written != sent_)
            return complain(
                "the receiver wrote %llu bytes in %llu messages, but %llu bytes in %llu"
                " were sent",
                (unsigned long long)written.bytes, (unsigned long long)written.messages, bytes, n);
        note("done: %llu byte%s in %llu message%s delivered", bytes, plural(bytes), n, plural(n));
        return true;
    }

    // Stopping early (a signal, an error): tell the receiver, so that it ends
    // now. IPC_NOWAIT: in a full queue it will find us gone instead.
    void leave() {
        if (!welcomed() || said_bye_) return;
        Message m;
        m.mtype = kRequestType;
        m.hdr = Header{int32_t(session_), kLeave, 0, ++seq_, 0};
        if (msgsnd(q_, &m, sizeof(Header), IPC_NOWAIT) == 0)  // traced if sent: the queue
            trace("msgsnd", m, IPC_NOWAIT);                     // may be gone, or full
    }

private:
    bool welcomed() const { return receiver_.pid != 0; }

    // One DATA: MORE if it does not end a line. Sync: then its ACK, which may
    // carry a chat reply, in as many ACKs as it takes.
    bool send_data(const char* p, size_t n) {
        uint16_t flags = (p[n - 1] == '\n' ? 0 : kMore) | (opt_.async ? kNoAck : 0);
        if (!send(kData, flags, p, n)) return false;
        sent_.bytes += n;
        sent_.messages++;
        if (opt_.async) return true;
        Message reply;
        do {
            if (!await(reply, kAck, seq_)) return false;
            if (!write_all(STDOUT_FILENO, reply.data, reply.hdr.len)) return failed("write");
        } while (reply.hdr.flags & kMore);
        acked_ = sent_;
        if (interactive_) note("delivered message %u (%zu byte%s)", unsigned(seq_), n, plural(n));
        return true;
    }

    // A request, of type 1. Async DATA goes with IPC_NOWAIT: msgsnd returns
    // at once, EAGAIN if the queue is full. Nothing is dropped: msgsnd then
    // waits for room, and from then on always (an offer refused is a copy
    // wasted). Other requests wait for room at once.
    bool send(uint16_t kind, uint16_t flags, const void* data, size_t n) {
        if (g_signal) return interrupted(nullptr);  // one that came between calls
        if (kind != kHello) ++seq_;  // HELLO is 0; each later request counts one more
        Message m;                   // not zeroed: only the header and n bytes travel
        m.mtype = kRequestType;
        m.hdr = Header{int32_t(session_), kind, flags, kind == kHello ? 0 : seq_, uint32_t(n)};
        if (n > 0) memcpy(m.data, data, n);
        int nowait = (flags & kNoAck) && !queue_full_ ? IPC_NOWAIT : 0;
        trace("msgsnd", m, nowait);
        while (msgsnd(q_, &m, sizeof(Header) + n, nowait) < 0) {
            if (errno == EAGAIN && nowait) {
                if (g_verbose)
                    complain("msgsnd: %s (EAGAIN): the queue is full; from now on msgsnd waits",
                             strerror(EAGAIN));
                queue_full_ = true;
                nowait = 0;
                trace("msgsnd", m, nowait);  // the same message, now waiting for room
            } else if (!keep_waiting("msgsnd") || (welcomed() && refused()) ||
                       !fits(q_, opt_.key, sizeof(Header) + n)) {
                return false;  // a REFUSE may take the room we wait for; msg_qbytes may shrink
            }
        }
        return true;
    }

    // Waits for the reply of this kind to request seq. A REFUSE ends the session.
    bool await(Message& reply, uint16_t kind, uint32_t seq) {
        for (;;) {
            if (g_signal) return interrupted(nullptr);  // one that came between calls
            ssize_t n = msgrcv(q_, &reply, kTextSize, session_, MSG_NOERROR);
            if (n < 0 && !keep_waiting("msgrcv")) return false;
            if (n < 0) continue;
            trace("msgrcv", reply, 0);
            if (report_refusal(reply, n)) return false;
            if (well_formed(reply, n) && reply.hdr.kind == kind && reply.hdr.seq == seq)
                return true;
            ignoring("a reply that is no %s to message %u (%zd bytes)", kind_name(kind),
                     unsigned(seq), n);
        }
    }

    // While we wait for input, or for room to send, only a REFUSE can come for
    // us (our line stalled while others waited): a look once a second. True
    // if it came.
    bool refused() {
        Message reply;
        ssize_t n = msgrcv(q_, &reply, kTextSize, session_, IPC_NOWAIT | MSG_NOERROR);
        if (n < 0) return false;  // ENOMSG; anything else, the next call will tell
        trace("msgrcv", reply, IPC_NOWAIT);
        if (report_refusal(reply, n)) return true;
        ignoring("a reply that answers nothing (%zd bytes)", n);
        return false;
    }

    // A REFUSE says why the session is over: said, true.
    bool report_refusal(const Message& reply, ssize_t n) {
        if (!well_formed(reply, n) || reply.hdr.kind != kRefuse) return false;
        complain("the receiver refused: %.*s", int(reply.hdr.len), reply.data);
        return true;
    }

    // A blocking call failed: true if it is to be called again. That is after
    // the watchdog's EINTR, as long as the session may go on: no stop signal,
    // --wait not over before WELCOME, the queue and the receiver still there.
    bool keep_waiting(const char* call) {
        if (errno != EINTR) return failed(call);
        if (g_signal) return interrupted(call);
        if (!g_tick) return true;
        g_tick = 0;
        msqid_ds ds;
        if (!welcomed() && time(nullptr) > deadline_)
            return complain("no answer from a receiver on queue 0x%08x (waited %ld s)",
                            unsigned(opt_.key), opt_.wait);
        if (msgctl(q_, IPC_STAT, &ds) < 0) return failed("msgctl(IPC_STAT)");
        if (!welcomed() || alive(receiver_)) return true;
        char what[64];
        snprintf(what, sizeof what, "the receiver (pid %d) died", int(receiver_.pid));
        return report(what);
    }

    // A failed call, err(3) style. False.
    bool failed(const char* call) {
        int e = ipc_errno(q_);
        if (e == EINTR && g_signal) return interrupted(call);
        char what[160];
        snprintf(what, sizeof what, "%s: %s (queue 0x%08x)", call, strerror(e), unsigned(opt_.key));
        return report(what);
    }

    // A stop signal came: said, with the call it interrupted (EINTR), or
    // none if it came between calls. False.
    bool interrupted(const char* call) {
        char what[80];
        if (call == nullptr)
            snprintf(what, sizeof what, "interrupted by %s", signal_name(g_signal));
        else
            snprintf(what, sizeof what, "%s: %s (%s)", call, strerror(EINTR), signal_name(g_signal));
        return report(what);
    }

    // What went wrong, in one line with how much the receiver had acknowledged
    // (async: how much was sent). False.
    bool report(const char* what) {
        const Tally& t = opt_.async ? sent_ : acked_;
        unsigned long long n = t.messages, bytes = t.bytes;
        if (!welcomed()) return complain("%s", what);
        return complain("%s; %llu message%s (%llu byte%s) %s", what, n, plural(n), bytes,
                        plural(bytes),
                        opt_.async ? "sent, none confirmed (--async)" : "acknowledged");
    }

    const Options& opt_;
    const bool interactive_ = isatty(STDIN_FILENO) && !g_quiet;  // prompt, and confirm each line
    time_t deadline_;          // for the queue, then WELCOME: once past it, --wait is over
    int q_ = -1;               // the queue id
    long session_ = 0;         // our reply type, drawn at random
    Peer receiver_;            // once it has welcomed us
    uint32_t seq_ = 0;         // of the last request sent
    size_t chunk_ = 0;         // data bytes per message: what the queue takes, less the header
    bool queue_full_ = false;  // an async msgsnd met a full queue
    bool said_bye_ = false;
    Tally sent_ = {};   // what we sent
    Tally acked_ = {};  // what the receiver acknowledged
};

}  // namespace

int main(int argc, char** argv) {
    g_prog = "sender";
    Options opt = parse_options(argc, argv);
    install_signal_handlers();
    Sender s(opt);
    bool ok = s.open_queue()     // msgget(key, 0): the receiver's queue, once it exists
              && s.hello()       // HELLO; WELCOME
              && s.send_input()  // DATA for each line; in sync mode an ACK for each
              && s.end();        // END; TALLY, the receiver's count; BYE
    if (!ok) s.leave();          // LEAVE, unless BYE was said
    if (!close_stdout()) ok = false;
    die_if_signalled();
    return ok ? 0 : 1;
}
