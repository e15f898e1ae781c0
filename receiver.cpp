// receiver.cpp - creates the queue, serves its senders one at a time in the
// order they came (each sender's bytes go to standard output and are
// acknowledged), and removes the queue when they have all finished.
// main() is the lab: msgget(IPC_CREAT | IPC_EXCL) creates the queue,
// Receiver::serve() reads a sender's requests (msgrcv) and replies to them
// (msgsnd of the sender's type), msgctl(IPC_RMID) removes the queue.
#include <new>
#include <vector>

#include "common.h"

namespace {

struct Options {
    key_t key = default_key();
    int mode = S_IRUSR | S_IWUSR;  // 0600
    unsigned senders = 1;
    bool reply = false;
};

void usage() {
    printf(
        "Usage: receiver [OPTION]...\n"
        "Create a System V message queue, write what senders send to standard\n"
        "output, and remove the queue when they have finished.\n"
        "\n"
        "  -k, --key=KEY       queue key: decimal, 0x hex or 0 octal\n"
        "                      (default 0x%08x: a fixed base plus your uid)\n"
        "  -m, --mode=OCTAL    permissions of the new queue (0600, the default, or more)\n"
        "  -n, --senders=N     serve N senders (1 to 1000) one after another, in the\n"
        "                      order they came, then exit (default 1)\n"
        "  -r, --reply         chat: answer each line with a line read from stdin\n"
        "  -q, --quiet         no status lines or prompts on stderr\n"
        "  -v, --verbose       one stderr line per msgsnd and msgrcv\n"
        "  -h, --help          show this help and exit\n"
        "  -V, --version       show the version and exit\n"
        "\n"
        "Exit status: 0 if every sender finished with equal tallies, 1 if not, 2 for a\n"
        "usage error. A stop signal (SIGINT...) removes the queue, then ends it.\n",
        unsigned(default_key()));
}

Options parse_options(int argc, char** argv) {
    static const option longopts[] = {{"key", required_argument, nullptr, 'k'},
                                      {"mode", required_argument, nullptr, 'm'},
                                      {"senders", required_argument, nullptr, 'n'},
                                      {"reply", no_argument, nullptr, 'r'},
                                      {"quiet", no_argument, nullptr, 'q'},
                                      {"verbose", no_argument, nullptr, 'v'},
                                      {"help", no_argument, nullptr, 'h'},
                                      {"version", no_argument, nullptr, 'V'},
                                      {nullptr, 0, nullptr, 0}};
    Options o;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":k:m:n:rqvhV", longopts, nullptr)) != -1) {
        switch (c) {
        case 'k': o.key = key_t(parse_number(optarg, 0, 1, 0xffffffffLL, "--key")); break;
        case 'm': o.mode = int(parse_number(optarg, 8, 0, 0777, "--mode")); break;
        case 'n': o.senders = unsigned(parse_number(optarg, 10, 1, 1000, "--senders")); break;
        case 'r': o.reply = true; break;
        case 'q': g_quiet = true; break;
        case 'v': g_verbose = true; break;
        case 'h': usage(); exit_after_printing();
        case 'V': printf("receiver (msgq-pair) %s\n", kVersion); exit_after_printing();
        default: bad_option(c, argc, argv, longopts);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if ((o.mode & 0600) != 0600) usage_error("--mode: the owner needs read and write (0600)");
    return o;
}

// msgget with IPC_CREAT | IPC_EXCL: a new queue, never one already there. If
// the key is taken (EEXIST), says whose queue it is and what to do, and exits:
// there is no queue of ours to remove.
int create_queue(const Options& o) {
    int q = msgget(o.key, IPC_CREAT | IPC_EXCL | o.mode);
    if (q >= 0) return q;
    unsigned key = unsigned(o.key);
    msqid_ds ds;
    int old = errno == EEXIST ? msgget(o.key, 0) : -1;
    if (old >= 0 && msgctl(old, IPC_STAT, &ds) == 0 && foreign_uid(ds.msg_perm) != kNoUid)
        complain("queue 0x%08x belongs to uid %u; not touching it (use another --key)", key,
                 unsigned(foreign_uid(ds.msg_perm)));
    else if (old >= 0 && errno != EACCES)
        complain("queue 0x%08x already exists: another receiver uses it, or a killed one left"
                 " it; if none runs, remove it with 'ipcrm -Q 0x%08x'", key, key);
    else if (errno == EACCES)  // msgget or IPC_STAT: it may not even be read
        complain("queue 0x%08x belongs to another user; not touching it (use another --key)", key);
    else
        complain("msgget: %s (queue 0x%08x)", strerror(errno), key);
    exit(1);
}

// A sender that sent HELLO and waits for its turn.
struct Newcomer {
    Hello sender;  // its pid, and its start time to tell it from a later process
    long type;     // its reply type
    bool told;     // its WAIT was sent
};

// The sender being served.
struct Session {
    Hello sender;
    long type;
    Tally written = {};  // what we wrote of its DATA
    bool ended = false;  // its END came, and its TALLY went
    bool clean = true;   // its END's tally was ours
    bool gone = false;   // the once-a-second look found it dead
};

class Receiver {
public:
    // The line of newcomers has room for --senders from the start: memory runs
    // out here, before any sender is welcomed, if it does.
    Receiver(int q, const Options& o) : q_(q), opt_(o) { line_.reserve(o.senders); }

    // The first sender in line that still lives, or else the next to say HELLO.
    // Newcomers' messages are taken first: one in line may have left (BYE).
    // One that died while it waited is said, and forgotten.
    Newcomer next_sender() {
        Message m;
        for (;;) {
            take_newcomers();
            while (!line_.empty()) {
                Newcomer n = line_.front();
                line_.erase(line_.begin());
                if (alive(n.sender)) return n;
                complain("sender %d died while it waited its turn", int(n.sender.pid));
            }
            receive(m, 0, 0);  // no session: a HELLO gets in line
        }
    }

    // Serves one sender from WELCOME to its BYE, or to its death once all it
    // sent is handled. Whether it finished cleanly, with equal tallies.
    bool serve(const Newcomer& n) {
        Session s = {n.sender, n.type};
        serving_ = s.type;
        ++begun_;
        reply(s, kWelcome, &me_, sizeof me_);
        note("sender %d connected", int(s.sender.pid));
        Message m;
        for (;;) {
            ssize_t got = receive(m, s.type, s.gone ? IPC_NOWAIT : 0);
            if (got == kNothing) return finish(s, nullptr);  // it is gone, its requests done
            if (got == kOther)
                look(s);
            else if (m.hdr.kind == kData)
                data(s, m);
            else if (m.hdr.kind == kEnd)
                end(s, m);
            else if (m.hdr.kind == kBye)
                return finish(s, &m);
            else
                complain("ignoring %s from sender %d", kind_name(m.hdr.kind), int(s.sender.pid));
        }
    }

private:
    static constexpr ssize_t kNothing = -1;  // receive(): with IPC_NOWAIT, no request waits
    static constexpr ssize_t kOther = -2;    // receive(): the tick, or another's message handled

    // One request. msgtyp -2 takes the lowest type first: the session's (type
    // 1) before the newcomers' (type 2). Returns the size of a request of the
    // session whose reply type is `session`; a newcomer's message is handled
    // here (kOther), as is junk.
    ssize_t receive(Message& m, long session, int flags) {
        answer_newcomers();
        stop_if_signalled();
        ssize_t n = msgrcv(q_, &m, kTextSize, -kNewcomerType, flags | MSG_NOERROR);
        if (n < 0 && errno == EINTR) return after_eintr("msgrcv"), kOther;  // the tick
        if (n < 0 && errno == ENOMSG) return kNothing;
        if (n < 0) queue_failed("msgrcv", q_, opt_.key);
        trace("msgrcv", m);
        if (well_formed(m, n) && m.hdr.session == session && session != 0) return n;
        newcomer_message(m, n);
        return kOther;
    }

    // A message not of the session in progress: a HELLO, a BYE from a sender
    // in line (it gave up: it is forgotten), or junk. One too big for us was
    // cut by MSG_NOERROR, and so is malformed.
    void newcomer_message(const Message& m, ssize_t n) {
        if (!well_formed(m, n)) return complain("ignoring a malformed message (%zd bytes)", n);
        if (m.hdr.kind == kHello) return hello(m);
        for (auto it = line_.begin(); it != line_.end(); ++it) {
            if (m.hdr.kind != kBye || it->type != m.hdr.session) continue;
            note("sender %d left while it waited its turn: %.*s", int(it->sender.pid),
                 int(m.hdr.len), m.data);
            line_.erase(it);
            return;
        }
        complain("ignoring %s from pid %d: no sender in line has reply type %ld",
                 kind_name(m.hdr.kind), int(m.hdr.pid), long(m.hdr.session));
    }

    // A HELLO gets the sender in line, or is refused: one of another protocol;
    // one in another PID namespace, whose pid names another process here (its
    // death could not be seen); one whose reply type is in use; one beyond
    // --senders. WAIT and REFUSE go with IPC_NOWAIT: see answer_newcomers().
    void hello(const Message& m) {
        Hello h;
        memcpy(&h, m.data, sizeof h);
        long type = m.hdr.session;
        if (type < kFirstReplyType || h.pid <= 0 || h.pid != m.hdr.pid)
            return complain("ignoring a HELLO with reply type %ld, pid %d", type, int(h.pid));
        char why[64] = "";
        if (h.protocol != kProtocol)
            snprintf(why, sizeof why, "it speaks protocol %u, this receiver %u", h.protocol,
                     kProtocol);
        else if (h.pid_ns != me_.pid_ns)
            snprintf(why, sizeof why, "it runs in another PID namespace");
        else if (in_use(type))
            snprintf(why, sizeof why, "its reply type is another sender's");
        else if (begun_ + line_.size() >= opt_.senders)
            snprintf(why, sizeof why, "it serves no more senders");
        if (why[0] == '\0') return line_.push_back(Newcomer{h, type, false});
        complain("refusing sender %d: %s", int(h.pid), why);
        if (!tell(type, h.pid, kRefuse, why, strlen(why)))
            complain("the queue is full: sender %d is not told, and gives up after --wait",
                     int(h.pid));
    }

    // Each sender in line hears WAIT once, with our pid, so that it can watch
    // us. With IPC_NOWAIT: a reply that waited for room in a queue full of
    // HELLOs would wait for ever, as only we take them out. What does not fit
    // now is sent before a later msgrcv.
    void answer_newcomers() {
        for (Newcomer& n : line_)
            if (!n.told && !(n.told = tell(n.type, n.sender.pid, kWait, &me_, sizeof me_))) return;
    }

    Message make_reply(long type, pid_t pid, uint16_t kind, const void* p, size_t n,
                       uint16_t flags) const {
        Message r;  // not zeroed: only the header and n bytes travel
        r.mtype = type;
        r.hdr = Header{int32_t(type), kind, flags, int32_t(pid), uint32_t(n)};
        if (n > 0) memcpy(r.data, p, n);
        return r;
    }

    // A reply to a newcomer, if the queue has room for it now. Whether it went.
    bool tell(long type, pid_t pid, uint16_t kind, const void* p, size_t n) {
        Message r = make_reply(type, pid, kind, p, n, 0);
        if (msgsnd(q_, &r, sizeof(Header) + n, IPC_NOWAIT) == 0) return trace("msgsnd", r, IPC_NOWAIT), true;
        if (errno != EAGAIN && errno != EINTR) queue_failed("msgsnd", q_, opt_.key);
        return false;
    }

    // A reply to the sender being served. If the queue is full, newcomers'
    // HELLOs are taken out to make room (they are answered later): they would
    // never leave it while we wait. Otherwise msgsnd waits for a sender to
    // read its replies, and the tick looks at ours, and whether the reply still
    // fits (msg_qbytes may shrink). A dead sender gets no reply.
    void reply(Session& s, uint16_t kind, const void* p, size_t n, uint16_t flags = 0) {
        Message r = make_reply(s.type, s.sender.pid, kind, p, n, flags);
        trace("msgsnd", r);
        for (int nowait = IPC_NOWAIT;;) {
            stop_if_signalled();
            if (msgsnd(q_, &r, sizeof(Header) + n, nowait) == 0) return;
            if (errno == EAGAIN) {
                nowait = take_newcomers() ? IPC_NOWAIT : 0;
                continue;
            }
            if (errno != EINTR) queue_failed("msgsnd", q_, opt_.key);
            after_eintr("msgsnd");
            check_fits(q_, opt_.key, sizeof(Header) + n);
            look(s);
            if (s.gone) return;
        }
    }

    // Takes newcomers' messages (type 2) out of the queue. Whether there were any.
    bool take_newcomers() {
        Message m;
        bool took = false;
        ssize_t n;
        while ((n = msgrcv(q_, &m, kTextSize, kNewcomerType, IPC_NOWAIT | MSG_NOERROR)) >= 0) {
            trace("msgrcv", m, IPC_NOWAIT);
            newcomer_message(m, n);
            took = true;
        }
        return took;
    }

    // DATA: its bytes go to stdout at once. A sync DATA is then acknowledged,
    // so that an ACK means written; in chat mode the ACK carries a reply line.
    void data(Session& s, const Message& m) {
        write_all(STDOUT_FILENO, m.data, m.hdr.len);
        s.written.bytes += m.hdr.len;
        s.written.messages++;
        if (m.hdr.flags & kNoAck) return;
        if (opt_.reply && !(m.hdr.flags & kMore))
            chat_reply(s);
        else
            reply(s, kAck, nullptr, 0);
    }

    // END carries the sender's tally, which must be ours; TALLY answers it.
    void end(Session& s, const Message& m) {
        Tally sent;
        memcpy(&sent, m.data, sizeof sent);
        s.ended = true;
        if (sent != s.written) {  // the sender says by how much
            complain("sender %d: its END's tally is not what was written", int(s.sender.pid));
            s.clean = false;
        }
        reply(s, kTally, &s.written, sizeof s.written);
    }

    // Chat: the ACK carries a line of our stdin, in as many ACKs as it takes
    // (MORE on all but the last); once stdin has ended, an empty one. While the
    // user types, the tick looks at the queue and at the sender.
    void chat_reply(Session& s) {
        bool prompt = isatty(STDIN_FILENO) && !g_quiet && !stdin_ended_;
        if (prompt) fprintf(stderr, "reply to %d> ", int(s.sender.pid));
        for (bool more = true; more;) {
            const char* limit;  // the data a reply may carry now, at least 1 byte, so
            long room = message_limit(q_, opt_.key, &limit) - long(sizeof(Header));
            if (s.gone) return;       // that a queue too small for any is told by reply()
            const char* p = nullptr;
            ssize_t n = stdin_ended_ ? 0 : in_.next(room > 0 ? size_t(room) : 1, &p);
            if (n < 0) {  // the tick
                look(s);
                continue;
            }
            if (n == 0 && !stdin_ended_) {
                stdin_ended_ = true;
                if (prompt) fputc('\n', stderr);
                note("standard input ended: the replies are empty from now on");
            }
            more = n > 0 && p[n - 1] != '\n';
            reply(s, kAck, p, size_t(n), more ? kMore : 0);
        }
    }

    // The once-a-second look at the sender being served: is it still there
    // (not dead, not a zombie, its pid not another process's)?
    void look(Session& s) {
        if (!g_tick) return;
        g_tick = 0;
        s.gone = !alive(s.sender);
    }

    // The session is over: by its BYE (bye), else by its death. Says how, and
    // takes out the replies it will never read. Whether it finished cleanly.
    bool finish(const Session& s, const Message* bye) {
        serving_ = 0;
        Message m;
        while (msgrcv(q_, &m, kTextSize, s.type, IPC_NOWAIT | MSG_NOERROR) >= 0) {
        }
        int pid = int(s.sender.pid);
        unsigned long long n = s.written.messages, bytes = s.written.bytes;
        if (bye != nullptr && s.ended && bye->hdr.len == 0) {
            note("sender %d finished: %llu byte%s in %llu message%s", pid, bytes, plural(bytes), n,
                 plural(n));
            return s.clean;
        }
        if (bye != nullptr)
            complain("sender %d left after %llu message%s (%llu byte%s): %.*s", pid, n, plural(n),
                     bytes, plural(bytes), int(bye->hdr.len), bye->hdr.len ? bye->data : "no reason given");
        else
            complain("sender %d %s after %llu message%s (%llu byte%s)", pid,
                     s.ended ? "ended without a BYE" : "died", n, plural(n), bytes, plural(bytes));
        return false;
    }

    bool in_use(long type) const {
        if (type == serving_) return true;
        for (const Newcomer& n : line_)
            if (n.type == type) return true;
        return false;
    }

    const int q_;
    const Options& opt_;
    const Hello me_ = my_hello();   // in WAIT and WELCOME
    std::vector<Newcomer> line_;    // senders waiting their turn, in the order they came
    unsigned begun_ = 0;            // sessions begun: with line_, at most --senders
    long serving_ = 0;              // the reply type of the sender being served, or 0
    bool stdin_ended_ = false;      // chat: no more reply lines
    LineReader in_{STDIN_FILENO};   // chat: the reply lines
};

// The one place the queue is removed. EIDRM: someone removed it first (the
// error that told us is said). False if it could not be removed.
bool remove_queue(int q, key_t key) {
    if (msgctl(q, IPC_RMID, nullptr) == 0) {
        note("msgctl(%d, IPC_RMID): queue 0x%08x removed", q, unsigned(key));
        return true;
    }
    int e = queue_errno(q);
    if (e == EIDRM) return true;
    complain("msgctl(IPC_RMID): %s (queue 0x%08x)", strerror(e), unsigned(key));
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    g_prog = "receiver";
    Options opt = parse_options(argc, argv);
    install_signal_handlers();
    int q = create_queue(opt);  // msgget(key, IPC_CREAT | IPC_EXCL | mode)
    bool clean = true;
    try {
        check_fits(q, opt.key, kMinText);  // a queue that can carry no session is not announced
        note("msgget(0x%08x, IPC_CREAT | IPC_EXCL | %04o): queue id %d; waiting for %u sender%s",
             unsigned(opt.key), unsigned(opt.mode), q, opt.senders, plural(opt.senders));
        Receiver r(q, opt);
        for (unsigned i = 0; i < opt.senders; ++i)  // one at a time, in the order they came:
            clean = r.serve(r.next_sender()) && clean;  // WELCOME, DATA/ACK..., END/TALLY, BYE
    } catch (const Fatal& f) {
        complain("%s", f.line);
        clean = false;
    } catch (const std::bad_alloc&) {
        complain("out of memory");
        clean = false;
    }
    if (!remove_queue(q, opt.key)) clean = false;  // msgctl(IPC_RMID)
    if (!close_stdout()) clean = false;
    die_if_signalled();
    return clean ? 0 : 1;
}
