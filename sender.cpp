// sender.cpp - sends its arguments, or else its standard input, line by line through the receiver's
// queue, and exits 0 only when the receiver reports that it wrote exactly what was sent. It opens
// the queue (msgget), sends requests (msgsnd) and reads the replies of the type it drew for itself
// (msgrcv).
#include <algorithm>
#include <new>
#include <string>

#include "common.h"

namespace {

struct Options {
    key_t key = default_key();
    long wait = 30;  // seconds: for the queue to appear, then for a first answer
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
        "  -w, --wait=SECONDS  wait this long for a receiver to answer (default 30);\n"
        "                      once it has, wait for our turn as long as it lives\n"
        "  -a, --async         send with IPC_NOWAIT, as many bytes per message as\n"
        "                      fit, and wait only for the receiver's final tally\n"
        "  -q, --quiet         no status lines on stderr\n"
        "  -v, --verbose       one stderr line per msgsnd and msgrcv\n"
        "  -h, --help          show this help and exit\n"
        "  -V, --version       show the version and exit\n"
        "\n"
        "Exit status: 0 if all was delivered and the tallies agree, 1 if not, 2 for a\n"
        "usage error. A stop signal (SIGINT...) sends BYE to the receiver, then ends it.\n",
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
    explicit Sender(const Options& o) : opt_(o), deadline_(monotonic_seconds() + double(o.wait)) {}

    // Either program may start first: wait, within --wait, for the receiver to create the queue
    // (nothing tells when one appears: look every 50 ms). Use it only if our uid owns and created
    // it: anyone may create a queue under our key first, with mode 0666, to read what we send.
    void open_queue() {
        for (bool said = false; (q_ = msgget(opt_.key, 0)) < 0; said = true) {
            if (errno != ENOENT) fail("msgget: %s (queue 0x%08x)", strerror(errno), key());
            stop_if_signalled();
            if (monotonic_seconds() > deadline_)
                fail("no receiver: queue 0x%08x does not exist (waited %ld s)", key(), opt_.wait);
            if (!said) note("waiting for the receiver to create queue 0x%08x", key());
            timespec pause = {0, 50'000'000};
            nanosleep(&pause, nullptr);
        }
        if (g_verbose) note("msgget(0x%08x, 0): queue id %d", key(), q_);
        msqid_ds ds;
        if (msgctl(q_, IPC_STAT, &ds) < 0) queue_failed("msgctl(IPC_STAT)", q_, opt_.key);
        if (uid_t uid = foreign_uid(ds.msg_perm); uid != kNoUid)
            fail("queue 0x%08x belongs to uid %u, not to you; refusing to send to it", key(),
                 unsigned(uid));
        check_fits(q_, opt_.key, kMinText);
        const char* limit;  // each DATA as large as the queue takes
        chunk_ = size_t(message_limit(q_, opt_.key, &limit)) - sizeof(Header);
    }

    // HELLO (type 2) says who we are and which reply type we drew at random. The answer comes with
    // that type: WELCOME, or first WAIT while the receiver serves another sender, or REFUSE.
    void hello() {
        uint32_t r;
        if (getentropy(&r, sizeof r) < 0) fail("getentropy: %s", strerror(errno));
        type_ = kFirstReplyType + long(r % uint32_t(kLastReplyType - kFirstReplyType + 1));
        Hello me = my_hello();
        send(kHello, 0, &me, sizeof me);
        bye_due_ = true;  // the receiver knows us now
        Message welcome;
        await(welcome, kWelcome);
        memcpy(&receiver_, welcome.data, sizeof receiver_);
        request_type_ = kSessionType;  // our requests now go before newcomers' HELLOs
        note("connected to receiver %d", int(receiver_.pid));
        if (interactive_ && *opt_.messages == nullptr) note("type lines to send; Ctrl-D ends");
    }

    // Each argument is a line; without arguments, standard input is read. A line longer than a
    // message goes in several DATA.
    void send_input() {
        for (char** arg = opt_.messages; *arg != nullptr; ++arg) {
            std::string line = std::string(*arg) + '\n';
            for (size_t at = 0; at < line.size(); at += chunk_)
                send_data(line.data() + at, std::min(chunk_, line.size() - at));
        }
        if (*opt_.messages != nullptr) return;
        LineReader in(STDIN_FILENO);
        const char* p = nullptr;
        ssize_t n;
        while ((n = in.next(chunk_, &p, opt_.async)) != 0) {  // async: all the bytes read
            if (n > 0) send_data(p, size_t(n));
            else look(0);  // the tick, while we wait for input
        }
    }

    // END carries our tally; the receiver's TALLY must match it. BYE says we have read it, so that
    // the receiver may go on to the next sender.
    void end() {
        Message tally;
        Tally written;
        send(kEnd, 0, &sent_, sizeof sent_);
        await(tally, kTally);
        memcpy(&written, tally.data, sizeof written);
        send(kBye, 0, nullptr, 0);
        bye_due_ = false;
        unsigned long long bytes = sent_.bytes, n = sent_.messages;
        if (!(written == sent_))
            fail("the receiver wrote %llu bytes in %llu messages, but %llu bytes in %llu were sent",
                 (unsigned long long)written.bytes, (unsigned long long)written.messages, bytes, n);
        note("done: %llu byte%s in %llu message%s delivered", bytes, plural(bytes), n, plural(n));
    }

    // An error ended the run: says it, with what the receiver had confirmed, and tells the receiver
    // why in a BYE, so that it can say so and go on. IPC_NOWAIT: in a full queue the receiver finds
    // us gone instead.
    void leave(const char* why) {
        const Tally& t = opt_.async ? sent_ : acked_;
        unsigned long long n = t.messages, bytes = t.bytes;
        if (request_type_ != kSessionType)  // not welcomed: nothing was sent yet
            complain("%s", why);
        else
            complain("%s; %llu message%s (%llu byte%s) %s", why, n, plural(n), bytes, plural(bytes),
                     opt_.async ? "sent, none confirmed (--async)" : "acknowledged");
        if (!bye_due_) return;
        Message m = {request_type_, {int32_t(type_), kBye, 0, pid_, uint32_t(strlen(why))}, {}};
        memcpy(m.data, why, m.hdr.len);
        if (msgsnd(q_, &m, sizeof(Header) + m.hdr.len, IPC_NOWAIT) == 0)
            trace("msgsnd", m, IPC_NOWAIT);
    }

private:
    unsigned key() const { return unsigned(opt_.key); }

    // One DATA, flagged MORE if it does not end its line. Sync: then its ACK, whose data (a chat
    // reply, in as many ACKs as it takes) goes to stdout.
    void send_data(const char* p, size_t n) {
        uint16_t flags = (p[n - 1] == '\n' ? 0 : kMore) | (opt_.async ? kNoAck : 0);
        send(kData, flags, p, n);
        sent_.bytes += n;
        sent_.messages++;
        if (opt_.async) return;
        Message ack;
        do {
            await(ack, kAck);
            write_all(STDOUT_FILENO, ack.data, ack.hdr.len);
        } while (ack.hdr.flags & kMore);
        acked_ = sent_;
        if (interactive_)
            note("delivered message %llu (%zu byte%s)", (unsigned long long)sent_.messages, n,
                 plural(n));
    }

    // Sends a request. Async DATA goes with IPC_NOWAIT: msgsnd returns at once, with EAGAIN if the
    // queue is full. Nothing is dropped: msgsnd then waits for room, and from then on waits at once
    // (queue_full_), as each refused try would copy the message into the kernel again.
    void send(uint16_t kind, uint16_t flags, const void* data, size_t n) {
        Message m;  // not zeroed: only the header and n bytes travel
        m.mtype = request_type_;
        m.hdr = Header{int32_t(type_), kind, flags, pid_, uint32_t(n)};
        if (n > 0) memcpy(m.data, data, n);
        int msgflg = (flags & kNoAck) && !queue_full_ ? IPC_NOWAIT : 0;
        for (;;) {
            stop_if_signalled();
            if (msgsnd(q_, &m, sizeof(Header) + n, msgflg) == 0) break;
            if (errno == EAGAIN && msgflg == IPC_NOWAIT) {
                if (g_verbose)
                    complain("msgsnd: %s (EAGAIN): the queue is full; from now on msgsnd waits",
                             strerror(EAGAIN));
                queue_full_ = true;
                msgflg = 0;
            } else if (errno == EINTR) {
                after_eintr("msgsnd");
                look(sizeof(Header) + n);  // msg_qbytes may have shrunk below it
            } else {
                queue_failed("msgsnd", q_, opt_.key);
            }
        }
        trace("msgsnd", m, msgflg);
    }

    // Waits for the reply of this kind. A REFUSE ends the run. A WAIT, before WELCOME, says another
    // sender goes first. A reply for another pid (a newcomer that drew our type) is not ours.
    void await(Message& m, uint16_t kind) {
        for (;;) {
            stop_if_signalled();
            ssize_t n = msgrcv(q_, &m, kTextSize, type_, MSG_NOERROR);
            if (n < 0 && errno == EINTR) {
                after_eintr("msgrcv");
                look(0);
                continue;
            }
            if (n < 0) queue_failed("msgrcv", q_, opt_.key);
            trace("msgrcv", m);
            bool ours = well_formed(m, n) && m.hdr.pid == pid_;
            if (ours && m.hdr.kind == kRefuse) {
                bye_due_ = false;  // it has forgotten us
                fail("the receiver refused: %.*s", int(m.hdr.len), m.data);
            }
            if (ours && m.hdr.kind == kind) return;
            if (ours && m.hdr.kind == kWait && kind == kWelcome) {  // we wait as long as it lives
                memcpy(&receiver_, m.data, sizeof receiver_);
                note("waiting for the receiver (pid %d): it serves another sender",
                     int(receiver_.pid));
            } else {
                complain("ignoring a reply that is no %s for pid %d (%zd bytes)", kind_name(kind),
                         int(pid_), n);
            }
        }
    }

    // Once a second, while a call waits: is waiting still worth it? Before any answer, until --wait
    // is over. After one, while the receiver lives. And while the queue is there and takes the
    // message we wait to send (pending bytes; 0: none): msgctl fails if it was removed.
    void look(size_t pending) {
        if (!g_tick) return;
        g_tick = 0;
        bool answered = receiver_.pid != 0;  // by WAIT or WELCOME
        if (!answered && monotonic_seconds() > deadline_) no_answer();
        check_fits(q_, opt_.key, pending);  // first: a receiver that ends removes the queue
        if (answered && !alive(receiver_)) fail("the receiver (pid %d) died", int(receiver_.pid));
    }

    // No answer within --wait. Says what the queue shows of its receiver: msg_lrpid, the last
    // process to read it (once a session has been served, the receiver), and its state.
    [[noreturn]] void no_answer() {
        msqid_ds ds;
        if (msgctl(q_, IPC_STAT, &ds) < 0) queue_failed("msgctl(IPC_STAT)", q_, opt_.key);
        int pid = int(ds.msg_lrpid);
        char state = '?', seen[200];
        if (pid == 0)
            snprintf(seen, sizeof seen,
                     "no process has read the queue: is its receiver stopped?"
                     " If none runs, remove it with 'ipcrm -Q 0x%08x'",
                     key());
        else if (start_time(pid, &state) == 0)
            snprintf(seen, sizeof seen,
                     "pid %d, the last to read the queue, is gone: if no"
                     " receiver runs, remove it with 'ipcrm -Q 0x%08x'",
                     pid, key());
        else if (state == 'T' || state == 't')
            snprintf(seen, sizeof seen,
                     "pid %d, the last to read the queue, is stopped: 'kill -CONT %d' resumes it",
                     pid, pid);
        else
            snprintf(seen, sizeof seen,
                     "pid %d, the last to read the queue, runs: is it blocked writing its output?",
                     pid);
        fail("no answer from a receiver on queue 0x%08x (waited %ld s); %s", key(), opt_.wait,
             seen);
    }

    const Options& opt_;
    const int32_t pid_ = getpid();  // in each request: kept, as getpid() is a system call
    const bool interactive_ = isatty(STDIN_FILENO) && !g_quiet;  // prompt, confirm each line
    const double deadline_;              // monotonic seconds: --wait is over after it
    int q_ = -1;                         // the queue id
    long type_ = 0;                      // our reply type, drawn at random; 0 before HELLO
    long request_type_ = kNewcomerType;  // kSessionType from WELCOME on
    Hello receiver_ = {};                // from its WAIT or WELCOME; pid 0 before
    size_t chunk_ = 0;         // data bytes per message: what the queue takes, less the header
    bool queue_full_ = false;  // an async msgsnd met a full queue
    bool bye_due_ = false;     // the receiver has our HELLO, and no BYE yet
    Tally sent_ = {};          // what we sent
    Tally acked_ = {};         // what the receiver acknowledged
};

}  // namespace

int main(int argc, char** argv) {
    g_prog = "sender";
    Options opt = parse_options(argc, argv);
    refuse_setuid();
    install_signal_handlers();
    Sender s(opt);
    int status = 0;
    try {
        s.open_queue();  // msgget(key, 0): the receiver's queue, once it exists
        s.hello();       // HELLO; WAIT while another sender is served; WELCOME
        s.send_input();  // DATA for each line; in sync mode an ACK for each
        s.end();         // END; TALLY, what the receiver wrote; BYE
    } catch (const Fatal& f) {
        s.leave(f.line);
        if (f.removed)
            complain("the queue was removed: by its receiver as it stopped, or %s", kRemovers);
        status = 1;
    } catch (const std::bad_alloc&) {
        s.leave("out of memory");
        status = 1;
    }
    if (!close_stdout()) status = 1;
    die_if_signalled();
    return status;
}
