// receiver.cpp - creates the queue, serves its senders one at a time in the order they came,
// writing each one's bytes to standard output, and removes the queue when they have all finished.
// main() is the lab: msgget(IPC_CREAT | IPC_EXCL), then serve() each sender (msgrcv its requests,
// msgsnd the replies of its type), then msgctl(IPC_RMID).
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
        default: bad_option(c, argv, longopts);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if ((o.mode & 0600) != 0600) usage_error("--mode: the owner needs read and write (0600)");
    return o;
}

// msgget with IPC_CREAT | IPC_EXCL: a new queue, never one already there. If the key is taken
// (EEXIST), says whose queue it is and what to do, and exits: there is no queue of ours to remove.
int create_queue(const Options& o) {
    int q = msgget(o.key, IPC_CREAT | IPC_EXCL | o.mode);
    if (q >= 0) return q;
    unsigned key = unsigned(o.key);
    if (errno != EEXIST) {
        complain("msgget: %s (queue 0x%08x)", strerror(errno), key);
        exit(1);
    }
    msqid_ds ds;
    int old = msgget(o.key, 0);
    bool readable = old >= 0 && msgctl(old, IPC_STAT, &ds) == 0;  // not if another user's
    if (readable && foreign_uid(ds.msg_perm) == kNoUid)
        complain(
            "queue 0x%08x already exists: another receiver uses it, or a killed one left"
            " it; if none runs, remove it with 'ipcrm -Q 0x%08x'",
            key, key);
    else if (readable)
        complain("queue 0x%08x belongs to uid %u; not touching it (use another --key)", key,
                 unsigned(foreign_uid(ds.msg_perm)));
    else if (errno == EACCES)
        complain("queue 0x%08x belongs to another user; not touching it (use another --key)", key);
    exit(1);
}

// A sender that said HELLO: in line for its turn, then served.
struct Session {
    Hello sender;        // its pid, and its start time to tell it from a later process
    long type;           // its reply type
    bool told = false;   // in line: its WAIT went
    Tally written = {};  // served: what we wrote of its DATA
    bool ended = false;  // its END came, and its TALLY went
    bool clean = true;   // its END's tally was ours
    bool gone = false;   // the once-a-second look found it dead
};

class Receiver {
public:
    // The line has room for --senders from the start: if memory runs out, it is here, before any
    // sender is welcomed.
    Receiver(int q, const Options& o) : q_(q), opt_(o) { line_.reserve(o.senders); }

    // The first sender in line that still lives, or else the next to say HELLO. The HELLOs and BYEs
    // that wait in the queue are taken first, so that the line is up to date.
    Session next_sender() {
        for (;;) {
            take_newcomers();
            while (!line_.empty()) {
                Session s = line_.front();
                line_.erase(line_.begin());
                if (alive(s.sender)) return s;
                complain("sender %d died while it waited its turn", int(s.sender.pid));
            }
            Message m;
            ssize_t n = receive(m, 0);  // none in line: wait for a HELLO
            if (n >= 0) newcomer_message(m, n);
        }
    }

    // Serves one sender from WELCOME to its BYE, or to its death once all it sent is handled.
    // Whether it finished cleanly, with equal tallies.
    bool serve(Session s) {
        serving_ = s.type;
        ++begun_;
        reply(s, kWelcome, &me_, sizeof me_);
        note("sender %d connected", int(s.sender.pid));
        for (;;) {
            Message m;
            ssize_t n = receive(m, s.gone ? IPC_NOWAIT : 0);  // once it is dead, only what it sent
            if (n < 0 && s.gone) return finish(s, nullptr);   // all it sent is handled
            if (n < 0) look(s);
            else if (!from(s, m, n)) newcomer_message(m, n);
            else if (m.hdr.kind == kData) data(s, m);
            else if (m.hdr.kind == kEnd) end(s, m);
            else if (m.hdr.kind == kBye) return finish(s, &m);
            else complain("ignoring %s from sender %d", kind_name(m.hdr.kind), int(m.hdr.pid));
        }
    }

private:
    // The next request: msgrcv with msgtyp -2 (kRequestsFirst) takes the lowest type first, so
    // those of the sender being served (type 1) come before newcomers' (type 2). Its size, or -1 if
    // there is none: the tick came (EINTR), or none waits (with IPC_NOWAIT, ENOMSG).
    ssize_t receive(Message& m, int msgflg) {
        answer_newcomers();
        stop_if_signalled();
        ssize_t n = msgrcv(q_, &m, kTextSize, kRequestsFirst, msgflg | MSG_NOERROR);
        if (n < 0 && errno == EINTR) after_eintr("msgrcv");  // it returns after the tick
        if (n < 0 && errno != EINTR && errno != ENOMSG) queue_failed("msgrcv", q_, opt_.key);
        if (n >= 0) trace("msgrcv", m);
        return n;
    }

    // Whether request m (n bytes) is one of session s's. A HELLO never is, whatever type it names.
    static bool from(const Session& s, const Message& m, ssize_t n) {
        return well_formed(m, n) && m.hdr.session == s.type && m.hdr.kind != kHello;
    }

    // A HELLO, a BYE from a sender in line (it gave up, and is forgotten), or junk. A message too
    // big for us was cut by MSG_NOERROR: malformed.
    void newcomer_message(const Message& m, ssize_t n) {
        if (!well_formed(m, n)) {
            complain("ignoring a malformed message (%zd bytes)", n);
            return;
        }
        if (m.hdr.kind == kHello) {
            hello(m);
            return;
        }
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

    // A HELLO gets its sender in line, unless it is refused: another protocol; another PID
    // namespace, where its pid names another process (we could not see it die); a reply type in
    // use; more than --senders.
    void hello(const Message& m) {
        Session s = {};
        memcpy(&s.sender, m.data, sizeof s.sender);
        s.type = m.hdr.session;
        if (s.type < kFirstReplyType || s.sender.pid <= 0 || s.sender.pid != m.hdr.pid) {
            complain("ignoring a HELLO with reply type %ld, pid %d", s.type, int(s.sender.pid));
            return;
        }
        char why[64] = "";
        if (s.sender.protocol != kProtocol)
            snprintf(why, sizeof why, "it speaks protocol %u, this receiver %u", s.sender.protocol,
                     kProtocol);
        else if (s.sender.pid_ns != me_.pid_ns)
            snprintf(why, sizeof why, "it runs in another PID namespace");
        else if (in_use(s.type)) snprintf(why, sizeof why, "its reply type is another sender's");
        else if (begun_ + line_.size() >= opt_.senders)
            snprintf(why, sizeof why, "it serves no more senders");
        if (why[0] == '\0') {
            line_.push_back(s);  // no allocation: reserved for --senders
            return;
        }
        complain("refusing sender %d: %s", int(s.sender.pid), why);
        if (!send_reply(s, kRefuse, why, strlen(why), 0, IPC_NOWAIT))
            complain("the queue is full: sender %d is not told, and gives up after --wait",
                     int(s.sender.pid));
    }

    // Each sender in line hears WAIT once, with our pid, so that it can watch us. With IPC_NOWAIT,
    // as only we take HELLOs out: waiting for room in a queue full of them would never end. What
    // does not fit now goes before a later msgrcv.
    void answer_newcomers() {
        for (Session& s : line_) {
            if (s.told) continue;
            s.told = send_reply(s, kWait, &me_, sizeof me_, 0, IPC_NOWAIT);
            if (!s.told) return;  // the queue is full: the rest later
        }
    }

    // A reply to sender s, with msgsnd's flags. Whether it went: not if EAGAIN (IPC_NOWAIT in a
    // full queue) or EINTR (a signal) ended msgsnd.
    bool send_reply(const Session& s, uint16_t kind, const void* p, size_t n, uint16_t flags,
                    int msgflg) {
        Message r;  // not zeroed: only the header and n bytes travel
        r.mtype = s.type;
        r.hdr = Header{int32_t(s.type), kind, flags, s.sender.pid, uint32_t(n)};
        if (n > 0) memcpy(r.data, p, n);
        bool sent = msgsnd(q_, &r, sizeof(Header) + n, msgflg) == 0;
        if (sent) trace("msgsnd", r, msgflg);
        if (!sent && errno != EAGAIN && errno != EINTR) queue_failed("msgsnd", q_, opt_.key);
        return sent;
    }

    // A reply to the sender being served. msgsnd may wait for room, which senders make as they read
    // their replies. But HELLOs may fill the queue (1000 senders started at once), and only we
    // take them out: waiting then would never end. So the first try is with IPC_NOWAIT; a full
    // queue (EAGAIN) has its HELLOs taken into the line, and with none there, msgsnd waits. Each
    // tick looks at our sender (a dead one gets no reply) and whether the reply still fits.
    void reply(Session& s, uint16_t kind, const void* p, size_t n, uint16_t flags = 0) {
        int msgflg = IPC_NOWAIT;
        while (!send_reply(s, kind, p, n, flags, msgflg)) {
            if (errno == EAGAIN) {
                msgflg = take_newcomers() ? IPC_NOWAIT : 0;
                continue;
            }
            after_eintr("msgsnd");  // the tick: a stop signal ends the program
            check_fits(q_, opt_.key, sizeof(Header) + n);
            look(s);
            if (s.gone) return;
        }
    }

    // Takes the newcomers' messages (type 2) out of the queue. Whether there were any.
    bool take_newcomers() {
        Message m;
        bool took = false;
        for (;;) {
            ssize_t n = msgrcv(q_, &m, kTextSize, kNewcomerType, IPC_NOWAIT | MSG_NOERROR);
            if (n < 0) return took;  // ENOMSG: none left (an error shows at the next call)
            trace("msgrcv", m, IPC_NOWAIT);
            newcomer_message(m, n);
            took = true;
        }
    }

    // DATA goes to stdout at once. A sync DATA is then acknowledged, so that an ACK means written;
    // in chat mode the ACK carries a reply line.
    void data(Session& s, const Message& m) {
        write_all(STDOUT_FILENO, m.data, m.hdr.len);
        s.written.bytes += m.hdr.len;
        s.written.messages++;
        if (m.hdr.flags & kNoAck) return;
        if (opt_.reply && !(m.hdr.flags & kMore)) chat_reply(s);
        else reply(s, kAck, nullptr, 0);
    }

    // END carries the sender's tally, which must be ours; TALLY answers it.
    void end(Session& s, const Message& m) {
        Tally sent;
        memcpy(&sent, m.data, sizeof sent);
        s.ended = true;
        s.clean = sent == s.written;
        if (!s.clean)  // the sender says by how much
            complain("sender %d: its END's tally is not what was written", int(s.sender.pid));
        reply(s, kTally, &s.written, sizeof s.written);
    }

    // Chat: the ACK carries a line read from our stdin; one longer than a message goes in several
    // ACKs, MORE on all but the last. Once our stdin has ended, the ACK is empty. While the user
    // types, each tick looks at the queue (was it removed?) and at the sender.
    void chat_reply(Session& s) {
        bool prompt = isatty(STDIN_FILENO) && !g_quiet && !stdin_ended_;
        if (prompt) fprintf(stderr, "reply to %d> ", int(s.sender.pid));
        const char* limit;  // data bytes a reply may carry; at least 1, so reply() says none fit
        long room = message_limit(q_, opt_.key, &limit) - long(sizeof(Header));
        for (bool more = true; more && !s.gone;) {
            const char* p = nullptr;
            ssize_t n = stdin_ended_ ? 0 : in_.next(room > 0 ? size_t(room) : 1, &p);
            if (n < 0) {  // the tick
                check_fits(q_, opt_.key, 0);
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

    // The once-a-second look at the sender being served: is it still there (not dead, not a
    // zombie, its pid not another process's)?
    void look(Session& s) {
        if (!g_tick) return;
        g_tick = 0;
        s.gone = !alive(s.sender);
    }

    // The session is over, by its BYE (bye) or its death: says how, and takes out the replies it
    // will never read. Whether it finished cleanly.
    bool finish(const Session& s, const Message* bye) {
        serving_ = 0;
        Message m;
        while (msgrcv(q_, &m, kTextSize, s.type, IPC_NOWAIT | MSG_NOERROR) >= 0) {}
        int pid = int(s.sender.pid);
        unsigned long long n = s.written.messages, bytes = s.written.bytes;
        if (bye != nullptr && s.ended && bye->hdr.len == 0) {
            note("sender %d finished: %llu byte%s in %llu message%s", pid, bytes, plural(bytes), n,
                 plural(n));
            return s.clean;
        }
        char count[64];
        snprintf(count, sizeof count, "%llu message%s (%llu byte%s)", n, plural(n), bytes,
                 plural(bytes));
        if (bye == nullptr)
            complain("sender %d %s after %s", pid, s.ended ? "ended without a BYE" : "died", count);
        else complain("sender %d left after %s: %.*s", pid, count, int(bye->hdr.len), bye->data);
        return false;
    }

    bool in_use(long type) const {
        for (const Session& s : line_)
            if (s.type == type) return true;
        return type == serving_;
    }

    const int q_;
    const Options& opt_;
    const Hello me_ = my_hello();  // in WAIT and WELCOME
    std::vector<Session> line_;    // senders waiting their turn, in the order they came
    unsigned begun_ = 0;           // sessions begun: with line_, at most --senders
    long serving_ = 0;             // the reply type of the sender being served, or 0
    bool stdin_ended_ = false;     // chat: no more reply lines
    LineReader in_{STDIN_FILENO};  // chat: the reply lines
};

// The one place the queue is removed. EIDRM: someone removed it first, and the error that told us
// was said. False if it could not be removed.
bool remove_queue(int q, key_t key) {
    if (msgctl(q, IPC_RMID, nullptr) == 0) {
        note("msgctl(%d, IPC_RMID): queue 0x%08x removed", q, unsigned(key));
        return true;
    }
    int e = queue_errno(q);
    if (e == EIDRM) return true;
    complain("msgctl(IPC_RMID): %s (queue 0x%08x): it stays; remove it with 'ipcrm -Q 0x%08x'",
             strerror(e), unsigned(key), unsigned(key));
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    g_prog = "receiver";
    Options opt = parse_options(argc, argv);
    refuse_setuid();
    install_signal_handlers();
    int q = create_queue(opt);  // msgget(key, IPC_CREAT | IPC_EXCL | mode)
    bool clean = true;
    try {
        check_fits(q, opt.key, kMinText);  // a queue that can carry no session is not announced
        note("msgget(0x%08x, IPC_CREAT | IPC_EXCL | %04o): queue id %d; waiting for %u sender%s",
             unsigned(opt.key), unsigned(opt.mode), q, opt.senders, plural(opt.senders));
        Receiver r(q, opt);
        for (unsigned i = 0; i < opt.senders; ++i)      // one at a time, in the order they came:
            clean = r.serve(r.next_sender()) && clean;  // WELCOME, DATA/ACK..., END/TALLY, BYE
    } catch (const Fatal& f) {
        complain("%s", f.line);
        if (f.removed) complain("another process removed the queue: %s", kRemovers);
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
