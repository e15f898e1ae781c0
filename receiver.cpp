// receiver.cpp - creates the queue, writes what senders send to standard
// output, acknowledges it, and removes the queue when they have finished.
// main() is the lab: msgget(IPC_CREAT | IPC_EXCL) creates the queue,
// Receiver::serve() takes each request (msgrcv of type 1) and sends each
// reply (msgsnd of the sender's type), msgctl(IPC_RMID) removes the queue.
#include <algorithm>
#include <deque>
#include <string>
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
        "  -n, --senders=N     serve N senders (1 to 1000), then exit (default 1)\n"
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

// msgget with IPC_CREAT | IPC_EXCL: a new queue, never one already there
// (EEXIST): then says whose it is, and what to do. -1 once said why.
int create_queue(const Options& o) {
    int q = msgget(o.key, IPC_CREAT | IPC_EXCL | o.mode);
    if (q >= 0) return q;
    unsigned key = unsigned(o.key);
    msqid_ds ds;
    int old = errno == EEXIST ? msgget(o.key, 0) : -1;
    if (old >= 0 && msgctl(old, IPC_STAT, &ds) == 0) {
        if (uid_t uid = foreign_uid(ds.msg_perm); uid != kNoUid)
            complain("queue 0x%08x belongs to uid %u; not touching it (use another --key)", key,
                     uid);
        else
            complain(
                "queue 0x%08x already exists: another receiver uses it, or a killed one left"
                " it; if none runs, remove it with 'ipcrm -Q 0x%08x'",
                key, key);
    } else if (errno == EACCES) {  // IPC_STAT needs read permission
        complain("queue 0x%08x belongs to another user; not touching it (use another --key)", key);
    } else {
        complain("%s: %s (queue 0x%08x)", old < 0 ? "msgget" : "msgctl(IPC_STAT)", strerror(errno),
                 key);
    }
    return -1;
}

struct Session {
    // Open until its END, ended until its BYE; refused (its line stalled)
    // until its LEAVE; then done, as it is when it dies.
    enum State { kOpen, kEnded, kRefused, kDone };
    long type;    // its replies' type, which its requests carry as hdr.session
    Peer sender;  // to tell when it dies
    Tally written = {};
    State state = kOpen;
};

// Others' requests held while a line is open, at most (bytes, counting
// kHeldCost for what holding one costs beyond its mtext).
constexpr size_t kHeldMax = size_t(4) << 20;
constexpr size_t kHeldCost = 64;
constexpr size_t kOutMax = 64 * 1024;  // bytes of async data buffered before a write

struct Held {           // a request taken out of the queue before its turn
    int32_t session;    // its hdr.session (0 if too short to have one)
    std::string mtext;  // as msgrcv gave it
};

class Receiver {
public:
    Receiver(int q, const Options& o) : q_(q), opt_(o) { sessions_.reserve(o.senders); }

    // Requests in order of arrival, until every sender has finished; then
    // all that was received is written. True if all went well.
    bool serve() {
        bool ok = true;
        while (ok && finished_ < opt_.senders) ok = step();
        return flush() && ok && all_clean_;
    }

private:
    // One turn: the end if a stop signal came, the watchdog's look, or the
    // next request, or, with none waiting, the output flushed. msgrcv blocks
    // only once all is written.
    bool step() {
        if (g_signal) return complain("interrupted by %s", signal_name(g_signal));  // between calls
        if (g_tick) return check_senders();
        Message m;
        ssize_t n = next_request(m, out_.empty() ? 0 : IPC_NOWAIT);
        if (n >= 0) return handle(m, n);
        if (errno == ENOMSG) return flush();
        if (errno == EINTR && !g_signal) return true;  // the watchdog: the next step() looks
        return failed("msgrcv");
    }

    // A held request whose turn has come (any; while a line is open, only
    // its sender's), else msgrcv of type 1: the next request in the queue.
    // Its size, or -1 with errno.
    ssize_t next_request(Message& m, int flags) {
        for (auto it = held_.begin(); it != held_.end(); ++it) {
            if (owner_ != nullptr && it->session != owner_->type) continue;
            m.mtype = kRequestType;
            memcpy(&m.hdr, it->mtext.data(), it->mtext.size());
            ssize_t n = ssize_t(it->mtext.size());
            held_bytes_ -= it->mtext.size() + kHeldCost;
            held_.erase(it);
            return n;
        }
        ssize_t n = msgrcv(q_, &m, kTextSize, kRequestType, flags | MSG_NOERROR);
        if (n >= 0 && g_verbose) trace("msgrcv", m, flags, sender_of(m, n));
        return n;
    }

    // For -v: who sent request m (n bytes), as its HELLO says or its session
    // knows; 0 if neither.
    pid_t sender_of(const Message& m, ssize_t n) {
        if (!well_formed(m, n)) return 0;
        if (m.hdr.kind == kHello) {
            Hello h;
            memcpy(&h, m.data, sizeof h);
            return h.pid;
        }
        const Session* s = find(m.hdr.session);
        return s != nullptr ? s->sender.pid : 0;
    }

    // A request in its turn. One too big for us was cut (MSG_NOERROR): malformed.
    bool handle(const Message& m, ssize_t n) {
        if (!well_formed(m, n)) return ignoring("a malformed message (%zd bytes)", n);
        if (m.hdr.kind == kHello) return hello(m);
        Session* s = find(m.hdr.session);
        if (s == nullptr || s->state == Session::kDone)
            return ignoring("%s seq %u: no sender in session has reply type %ld",
                            kind_name(m.hdr.kind), unsigned(m.hdr.seq), long(m.hdr.session));
        if (s->state == Session::kRefused && m.hdr.kind != kLeave) return true;  // it was told
        if (owner_ != nullptr && owner_ != s) return hold(m, n);  // until the open line ends
        switch (m.hdr.kind) {
        case kData: return data(*s, m);
        case kEnd: return end(*s, m);
        case kBye:
            return s->state == Session::kEnded ? finished(*s) : gone(*s, "said BYE before END");
        case kLeave: return gone(*s, s->state == Session::kRefused ? "left" : "was interrupted");
        }
        return ignoring("%s from sender %d: no request", kind_name(m.hdr.kind), int(s->sender.pid));
    }

    // A new sender. Refused: one of another protocol; one in another PID
    // namespace, where its pid names another process than here (its death
    // could not be told); one beyond --senders.
    bool hello(const Message& m) {
        Hello h, me = {kProtocol, int32_t(getpid()), pid_namespace()};
        memcpy(&h, m.data, sizeof h);
        if (m.hdr.session < 2 || h.pid <= 0)
            return ignoring("a HELLO with reply type %ld, pid %d", long(m.hdr.session), int(h.pid));
        char why[64] = "";
        if (h.protocol != kProtocol)
            snprintf(why, sizeof why, "it speaks protocol %u, this receiver %u", h.protocol,
                     kProtocol);
        else if (h.pid_ns != me.pid_ns)
            strcpy(why, "it runs in another PID namespace");
        else if (find(m.hdr.session) != nullptr)
            strcpy(why, "its reply type is another sender's");
        else if (sessions_.size() == opt_.senders)
            strcpy(why, "it serves no more senders");
        Session s = {m.hdr.session, peer(h.pid)};
        if (why[0] != '\0') {
            complain("refusing sender %d: %s", int(h.pid), why);
            return reply(s, kRefuse, 0, why, strlen(why));
        }
        sessions_.push_back(s);
        note("sender %d connected", int(h.pid));
        return reply(sessions_.back(), kWelcome, 0, &me, sizeof me);
    }

    // The sender's bytes go to stdout. A sync DATA is acknowledged once
    // written (in chat mode its ACK carries a reply line); async data waits
    // in the buffer until no request waits.
    bool data(Session& s, const Message& m) {
        bool ack = !(m.hdr.flags & kNoAck);
        out_.append(m.data, m.hdr.len);
        if ((ack || out_.size() >= kOutMax) && !flush()) return false;
        s.written.bytes += m.hdr.len;
        s.written.messages++;
        owner_ = (m.hdr.flags & kMore) ? &s : nullptr;
        if (!ack) return true;
        if (opt_.reply && !(m.hdr.flags & kMore)) return chat_reply(s, m);
        return reply(s, kAck, m.hdr.seq, nullptr, 0);
    }

    // END carries the sender's tally, which must be ours. It also ends a
    // line that had no final newline.
    bool end(Session& s, const Message& m) {
        Tally sent;
        memcpy(&sent, m.data, sizeof sent);
        if (owner_ == &s) owner_ = nullptr;
        s.state = Session::kEnded;
        if (sent != s.written) {  // the sender says by how much
            complain("sender %d: its END's tally is not what was written", int(s.sender.pid));
            all_clean_ = false;
        }
        return flush() && reply(s, kTally, m.hdr.seq, &s.written, sizeof s.written);
    }

    // Another sender's request while a line is open waits here, so that lines
    // never mix. Past kHeldMax, the open line's sender is refused: it stalled.
    bool hold(const Message& m, ssize_t n) {
        keep(m, n);
        if (held_bytes_ <= kHeldMax) return true;
        Session& o = *owner_;
        complain(
            "sender %d stalled in the middle of a line while %zu MiB of other senders'"
            " requests waited; refusing the rest",
            int(o.sender.pid), kHeldMax >> 20);
        owner_ = nullptr;
        o.state = Session::kRefused;
        all_clean_ = false;
        const char* why = "its line stalled while other senders waited";
        return reply(o, kRefuse, 0, why, strlen(why));
    }

    // Chat: the ACK carries a line read from our stdin, in as many ACKs as it
    // takes (MORE on all but the last); once stdin has ended, an empty one.
    bool chat_reply(Session& s, const Message& m) {
        bool prompt = isatty(STDIN_FILENO) && !g_quiet && !stdin_ended_;
        if (prompt) fprintf(stderr, "reply to %d> ", int(s.sender.pid));
        for (bool more = true; more;) {
            // Data bytes a reply may carry now (msg_qbytes may have shrunk); at least 1,
            // so that a queue too small for any reply is told by reply()'s fits().
            long room = message_limit(q_).bytes - long(sizeof(Header));
            const char* p = nullptr;
            ssize_t n = stdin_ended_ ? 0 : in_.next(room > 0 ? size_t(room) : 1, &p);
            if (n < 0 && errno == EINTR && !g_signal) {  // the watchdog: is the queue there,
                msqid_ds ds;                             // and does the sender still wait?
                if (msgctl(q_, IPC_STAT, &ds) < 0) return failed("msgctl(IPC_STAT)");
                if (alive(s.sender)) continue;
                break;  // no: check_senders() ends its session
            }
            if (n < 0) return failed("read");
            if (n == 0 && !stdin_ended_) {
                stdin_ended_ = true;
                if (prompt) fputc('\n', stderr);
                note("standard input ended: the replies are empty from now on");
            }
            more = n > 0 && p[n - 1] != '\n';
            if (!reply(s, kAck, m.hdr.seq, p, size_t(n), more ? kMore : 0)) return false;
            if (!alive(s.sender)) break;
        }
        return true;
    }

    // Sends a reply. A full queue (EAGAIN) that holds a request has it taken
    // out and held, to make room: waiting while senders wait for room to send
    // us their requests would be a deadlock. With none there, msgsnd waits
    // for the senders to read their replies; each second the watchdog checks
    // that this one lives, and that the reply still fits (msg_qbytes).
    bool reply(Session& s, uint16_t kind, uint32_t seq, const void* p, size_t n,
               uint16_t flags = 0) {
        Message r;
        r.mtype = s.type;
        r.hdr = Header{int32_t(s.type), kind, flags, seq, uint32_t(n)};
        if (n > 0) memcpy(r.data, p, n);
        int nowait = IPC_NOWAIT;
        trace("msgsnd", r, nowait);
        while (msgsnd(q_, &r, sizeof(Header) + n, nowait) < 0) {
            if (errno == EAGAIN) {  // full: make room, or else wait for it
                nowait = make_room() ? IPC_NOWAIT : 0;
                continue;
            }
            if (errno != EINTR || g_signal) return failed("msgsnd");
            if (!fits(q_, opt_.key, sizeof(Header) + n)) return false;
            if (!alive(s.sender))
                return true;  // it reads no more: check_senders() ends its session
            for (const Session& o : sessions_)  // replies to the dead take room nobody frees
                if (o.state != Session::kDone && !alive(o.sender)) drop_replies(o);
            nowait = IPC_NOWAIT;
        }
        return true;
    }

    // Takes a request out of a full queue and holds it, to be handled in its
    // turn. True if there was one. Not bounded by kHeldMax: a cap here could
    // leave the reply, and so everyone, waiting; each request taken makes room.
    bool make_room() {
        Message m;
        ssize_t n = msgrcv(q_, &m, kTextSize, kRequestType, IPC_NOWAIT | MSG_NOERROR);
        if (n < 0) return false;
        if (g_verbose) trace("msgrcv", m, IPC_NOWAIT, sender_of(m, n));
        keep(m, n);
        return true;
    }

    void keep(const Message& m, ssize_t n) {
        int32_t session = size_t(n) >= sizeof(Header) ? m.hdr.session : 0;
        held_.push_back(
            Held{session, std::string(reinterpret_cast<const char*>(&m.hdr), size_t(n))});
        held_bytes_ += size_t(n) + kHeldCost;
    }

    // Once a second: a sender that died without a word has its session ended,
    // but only after all it sent before it died, in the queue or held, is
    // handled (so every waiting request is handled first). One dead after its
    // END never said BYE: it did not finish. A queue removed meanwhile (a
    // sender dies of that too) is said as such.
    bool check_senders() {
        g_tick = 0;
        Message m;
        for (Session& s : sessions_) {
            if (s.state == Session::kDone || alive(s.sender)) continue;
            ssize_t n;
            while (!g_signal && (n = next_request(m, IPC_NOWAIT)) >= 0)
                if (!handle(m, n)) return false;
            if (g_signal) return true;  // step() says so
            if (errno != ENOMSG) return failed("msgrcv");
            if (s.state != Session::kDone && !holds(s))
                gone(s, s.state == Session::kEnded ? "ended without a BYE" : "died");
        }
        return true;
    }

    // BYE: the sender read its TALLY, and is done with the queue. True.
    bool finished(Session& s) {
        unsigned long long n = s.written.messages, bytes = s.written.bytes;
        note("sender %d finished: %llu byte%s in %llu message%s", int(s.sender.pid), bytes,
             plural(bytes), n, plural(n));
        return close_session(s);
    }

    // The session ended another way: how says which, in an error line. True.
    bool gone(Session& s, const char* how) {
        unsigned long long n = s.written.messages, bytes = s.written.bytes;
        complain("sender %d %s after %llu message%s (%llu byte%s)", int(s.sender.pid), how, n,
                 plural(n), bytes, plural(bytes));
        all_clean_ = false;
        return close_session(s);
    }

    // Either way: no more requests are read from it, and replies it will never
    // read are taken out of the queue (msgrcv of its type). True.
    bool close_session(Session& s) {
        if (owner_ == &s) owner_ = nullptr;
        s.state = Session::kDone;
        ++finished_;
        drop_replies(s);
        return true;
    }

    // Takes out of the queue the replies that sender will never read.
    void drop_replies(const Session& s) {
        Message m;
        while (msgrcv(q_, &m, kTextSize, s.type, IPC_NOWAIT | MSG_NOERROR) >= 0) {
        }
    }

    // Writes what the output buffer holds.
    bool flush() {
        bool ok = write_all(STDOUT_FILENO, out_.data(), out_.size());
        out_.clear();
        return ok || failed("write");
    }

    // A failed call in one line, err(3) style; for EINTR, the stop signal
    // that ended it. False.
    bool failed(const char* call) {
        int e = ipc_errno(q_);
        if (e == EINTR && g_signal)
            return complain("%s: %s (%s)", call, strerror(e), signal_name(g_signal));
        return complain("%s: %s (queue 0x%08x)", call, strerror(e), unsigned(opt_.key));
    }

    Session* find(long type) {
        for (Session& s : sessions_)
            if (s.type == type) return &s;
        return nullptr;
    }
    bool holds(const Session& s) const {
        for (const Held& h : held_)
            if (h.session == s.type) return true;
        return false;
    }

    int q_;
    const Options& opt_;
    std::vector<Session> sessions_;  // reserved for --senders: pointers stay valid
    unsigned finished_ = 0;          // sessions done, one way or another
    bool all_clean_ = true;          // each done with its BYE, the tallies equal
    Session* owner_ = nullptr;       // the session whose line is open (its DATA had MORE)
    std::deque<Held> held_;          // requests taken out before their turn, in order
    size_t held_bytes_ = 0;          // what they cost, counted as for kHeldMax
    bool stdin_ended_ = false;       // chat: no more replies to read
    std::string out_;                // data received, not yet written
    LineReader in_{STDIN_FILENO};    // chat replies
};

}  // namespace

int main(int argc, char** argv) {
    g_prog = "receiver";
    Options opt = parse_options(argc, argv);
    install_signal_handlers();
    int q = create_queue(opt);  // msgget(key, IPC_CREAT | IPC_EXCL | mode)
    if (q < 0) return 1;
    bool announced = fits(q, opt.key, kMinText);  // not a queue that can carry no session
    if (announced)
        note("msgget(0x%08x, IPC_CREAT | IPC_EXCL | %04o): queue id %d; waiting for %u sender%s",
             unsigned(opt.key), unsigned(opt.mode), q, opt.senders, plural(opt.senders));
    bool ok = announced && Receiver(q, opt).serve();  // msgrcv each request, msgsnd each reply
    int e = msgctl(q, IPC_RMID, nullptr) < 0 ? ipc_errno(q) : 0;  // remove the queue
    if (e == 0) {
        if (announced) note("msgctl(%d, IPC_RMID): queue 0x%08x removed", q, unsigned(opt.key));
    } else if (e != EIDRM) {  // EIDRM: someone removed it first, as we were told
        complain("msgctl(IPC_RMID): %s (queue 0x%08x)", strerror(e), unsigned(opt.key));
        ok = false;
    }
    if (!close_stdout()) ok = false;
    die_if_signalled();
    return ok ? 0 : 1;
}
