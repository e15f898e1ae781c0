// receiver.cpp - creates the queue, writes what senders send to standard
// output, acknowledges it, and removes the queue when they have finished.
//
// main() is the lab: msgget(IPC_CREAT | IPC_EXCL) creates the queue,
// Receiver::serve() takes each request (msgrcv of type 1) and sends each
// reply (msgsnd of the sender's type), msgctl(IPC_RMID) removes the queue.
#include "common.h"

#include <deque>
#include <string>
#include <vector>

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
        "  -n, --senders=N     serve N senders, then exit (default 1)\n"
        "  -r, --reply         chat: answer each line with a line read from stdin\n"
        "  -q, --quiet         no status lines or prompts on stderr\n"
        "  -v, --verbose       one stderr line per message\n"
        "  -h, --help          show this help and exit\n"
        "  -V, --version       show the version and exit\n"
        "\n"
        "Exit status: 0 every sender finished (said BYE, its tally equal), 1 failure\n"
        "or a sender that did not finish, 2 usage error. On SIGINT, SIGTERM, SIGHUP,\n"
        "SIGQUIT and other stop signals it removes the queue, then dies of the signal.\n",
        unsigned(default_key()));
}

Options parse_options(int argc, char** argv) {
    static const option longopts[] = {
        {"key", required_argument, nullptr, 'k'}, {"mode", required_argument, nullptr, 'm'},
        {"senders", required_argument, nullptr, 'n'}, {"reply", no_argument, nullptr, 'r'},
        {"quiet", no_argument, nullptr, 'q'},     {"verbose", no_argument, nullptr, 'v'},
        {"help", no_argument, nullptr, 'h'},      {"version", no_argument, nullptr, 'V'},
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

// msgget with IPC_CREAT | IPC_EXCL: a new queue, never one that is already
// there (EEXIST). Its id, or -1 once said why.
int create_queue(const Options& o) {
    int q = msgget(o.key, IPC_CREAT | IPC_EXCL | o.mode);
    if (q >= 0 || errno != EEXIST) {
        if (q < 0) complain("msgget: %s (queue 0x%08x)", strerror(errno), unsigned(o.key));
        return q;
    }
    msqid_ds ds;
    int old = msgget(o.key, 0);
    if (old < 0 || msgctl(old, IPC_STAT, &ds) < 0)
        complain("queue 0x%08x belongs to another user; not touching it (use another --key)",
                 unsigned(o.key));
    else if (ds.msg_perm.uid != getuid() || ds.msg_perm.cuid != getuid())
        complain("queue 0x%08x belongs to uid %u; not touching it (use another --key)",
                 unsigned(o.key), unsigned(ds.msg_perm.uid != getuid() ? ds.msg_perm.uid : ds.msg_perm.cuid));
    else
        complain("queue 0x%08x already exists: another receiver uses it, or a killed one left it;"
                 " if none runs, remove it with 'ipcrm -Q 0x%08x'", unsigned(o.key), unsigned(o.key));
    return -1;
}

// Standard output, with a buffer for async data. False with errno on a
// write error.
class Output {
public:
    // A message's worth, with nothing buffered, is written where it lies.
    bool put(const char* p, size_t n) {
        if (n > sizeof buf_ - used_ && !flush()) return false;
        if (used_ == 0 && n >= kMaxData / 2) return write_all(STDOUT_FILENO, p, n);
        memcpy(buf_ + used_, p, n);
        used_ += n;
        return true;
    }
    bool flush() {
        size_t n = used_;
        used_ = 0;
        return write_all(STDOUT_FILENO, buf_, n);
    }
    bool buffered() const { return used_ > 0; }

private:
    size_t used_ = 0;
    char buf_[64 * 1024];
};

// The session a held request names (0 for one too short to name any).
long session_of(const std::string& mtext) {
    Header h = {};
    memcpy(&h, mtext.data(), mtext.size() < sizeof h ? mtext.size() : sizeof h);
    return h.session;
}

// One sender's session.
struct Session {
    // Open until its END; ended until its BYE; refused (a stalled line)
    // until its LEAVE; then done, as it is when it dies.
    enum State { kOpen, kEnded, kRefused, kDone };
    long type;        // its replies' type; its requests carry it as hdr.session
    Peer sender;      // to tell when it dies
    Tally written = {};
    State state = kOpen;
};

// Others' requests held while a line is open, at most (bytes, counting what
// holding one costs beyond its size).
constexpr size_t kHeldMax = size_t(1) << 20;
constexpr size_t kHeldCost = 64;

class Receiver {
public:
    Receiver(int q, const Options& o) : q_(q), opt_(o) { sessions_.reserve(o.senders); }
    bool serve();

private:
    bool step();
    ssize_t next_request(Message& m, int flags);
    bool handle(const Message& m, ssize_t n);
    bool hello(const Message& m);
    bool data(Session& s, const Message& m);
    bool end(Session& s, const Message& m);
    bool hold(const Message& m, ssize_t n);
    bool chat_reply(Session& s, uint32_t seq);
    bool reply(Session& s, uint16_t kind, uint16_t flags, uint32_t seq, const void* p, size_t n);
    bool make_room();
    bool on_tick();
    void finish(Session& s, const char* how);
    bool flush() { return out_.flush() || failed("write"); }
    bool failed(const char* call);
    Session* find(long type);
    bool holds(const Session& s) const;

    int q_;
    const Options& opt_;
    std::vector<Session> sessions_;  // reserved for --senders: pointers stay valid
    unsigned finished_ = 0;          // sessions done, one way or another
    bool all_clean_ = true;          // each with its BYE and equal tallies
    Session* owner_ = nullptr;       // the session whose line is open (its DATA had MORE)
    std::deque<std::string> held_;   // others' requests (mtext) meanwhile, in order
    size_t held_bytes_ = 0;          // what they cost, counted as for kHeldMax
    bool stdin_ended_ = false;       // chat: no more replies to read
    Output out_;
    LineReader in_{STDIN_FILENO};    // chat replies
};

// Requests in order of arrival until every sender has finished; then all
// that was received is written. True if all went well.
bool Receiver::serve() {
    bool ok = true;
    while (ok && finished_ < opt_.senders && !g_signal) ok = step();
    return flush() && ok && all_clean_;
}

// One turn: the watchdog's look, or the next request, or (none waiting) the
// output flushed. It blocks in msgrcv only once all output is written.
bool Receiver::step() {
    if (g_tick) return on_tick();
    Message m;
    ssize_t n = next_request(m, out_.buffered() ? IPC_NOWAIT : 0);
    if (n >= 0) return handle(m, n);
    if (errno == ENOMSG) return flush();
    return errno == EINTR || failed("msgrcv");  // EINTR: a signal, seen by the caller
}

// A held request whose turn has come (any; only the open line's while there
// is one), else the next in the queue: msgrcv of type 1, the requests in
// order of arrival. Its size, or -1 with errno.
ssize_t Receiver::next_request(Message& m, int flags) {
    for (auto it = held_.begin(); it != held_.end(); ++it) {
        if (owner_ != nullptr && session_of(*it) != owner_->type) continue;
        ssize_t n = ssize_t(it->size());
        m.mtype = kRequestType;
        memcpy(&m.hdr, it->data(), it->size());
        held_bytes_ -= it->size() + kHeldCost;
        held_.erase(it);
        return n;
    }
    ssize_t n = msgrcv(q_, &m, kTextSize, kRequestType, flags | MSG_NOERROR);
    if (n >= 0) trace("msgrcv", m, flags);
    return n;
}

// A request in its turn. MSG_NOERROR cut one too big for us: malformed.
bool Receiver::handle(const Message& m, ssize_t n) {
    if (!well_formed(m, n)) {
        complain("ignoring a malformed message (%zd bytes)", n);
        return true;
    }
    if (m.hdr.kind == kHello) return hello(m);
    Session* s = find(m.hdr.session);
    if (s == nullptr || s->state == Session::kDone) {
        complain("ignoring %s seq %u: no sender in session has reply type %ld",
                 kind_name(m.hdr.kind), unsigned(m.hdr.seq), long(m.hdr.session));
        return true;
    }
    if (s->state == Session::kRefused && m.hdr.kind != kLeave) return true;  // it has been told
    if (owner_ != nullptr && owner_ != s) return hold(m, n);  // until the open line ends
    switch (m.hdr.kind) {
    case kData: return data(*s, m);
    case kEnd: return end(*s, m);
    case kBye: finish(*s, s->state == Session::kEnded ? nullptr : "said BYE before END"); return true;
    case kLeave: finish(*s, s->state == Session::kRefused ? "left" : "was interrupted"); return true;
    }
    complain("ignoring kind %u from sender %d: not a request", unsigned(m.hdr.kind),
             int(s->sender.pid));
    return true;
}

// A new sender. Refused: one of another protocol; one in another PID
// namespace, where its pid names another process than here (we could not
// tell when it dies); one beyond --senders.
bool Receiver::hello(const Message& m) {
    Hello h;
    memcpy(&h, m.data, sizeof h);
    if (m.hdr.session < 2 || h.pid <= 0) {
        complain("ignoring a HELLO with reply type %ld, pid %d", long(m.hdr.session), int(h.pid));
        return true;
    }
    char why[80] = "";
    if (h.protocol != kProtocol)
        snprintf(why, sizeof why, "it speaks protocol %u, this receiver %u", h.protocol, kProtocol);
    else if (h.pid_ns != pid_namespace())
        snprintf(why, sizeof why, "it runs in another PID namespace");
    else if (find(m.hdr.session) != nullptr)
        snprintf(why, sizeof why, "its reply type is another sender's");
    else if (sessions_.size() == opt_.senders)
        snprintf(why, sizeof why, "it serves no more senders");
    Session s = {m.hdr.session, peer(h.pid)};
    if (why[0] != '\0') {
        complain("refusing sender %d: %s", int(h.pid), why);
        return reply(s, kRefuse, 0, 0, why, strlen(why));
    }
    sessions_.push_back(s);
    note("sender %d connected", int(h.pid));
    Hello me = {kProtocol, int32_t(getpid()), pid_namespace()};
    return reply(sessions_.back(), kWelcome, 0, 0, &me, sizeof me);
}

// Bytes of the sender's input go to stdout. A sync DATA is acknowledged
// once written (in chat mode its ACK carries a reply line); async data waits
// in the buffer until the queue has no more requests.
bool Receiver::data(Session& s, const Message& m) {
    if (s.state != Session::kOpen) {
        complain("ignoring DATA from sender %d after its END", int(s.sender.pid));
        return true;
    }
    bool ack = !(m.hdr.flags & kNoAck);
    if (!out_.put(m.data, m.hdr.len) || (ack && !out_.flush())) return failed("write");
    s.written.bytes += m.hdr.len;
    s.written.messages++;
    owner_ = (m.hdr.flags & kMore) ? &s : nullptr;
    if (!ack) return true;
    if (opt_.reply && !(m.hdr.flags & kMore)) return chat_reply(s, m.hdr.seq);
    return reply(s, kAck, 0, m.hdr.seq, nullptr, 0);
}

// END carries the sender's tally: what it sent must be what was written.
// It also closes a line that had no final newline.
bool Receiver::end(Session& s, const Message& m) {
    if (s.state != Session::kOpen) {
        complain("ignoring END from sender %d after its END", int(s.sender.pid));
        return true;
    }
    if (owner_ == &s) owner_ = nullptr;
    if (!flush()) return false;  // the TALLY says it is written
    s.state = Session::kEnded;
    Tally sent;
    memcpy(&sent, m.data, sizeof sent);
    if (sent != s.written) {
        complain("sender %d sent %llu bytes in %llu messages, but %llu bytes in %llu were written",
                 int(s.sender.pid), (unsigned long long)sent.bytes, (unsigned long long)sent.messages,
                 (unsigned long long)s.written.bytes, (unsigned long long)s.written.messages);
        all_clean_ = false;
    }
    return reply(s, kTally, 0, m.hdr.seq, &s.written, sizeof s.written);
}

// Another sender's request while a line is open waits here, so that lines
// never mix. Past kHeldMax held, the open line's sender is refused: it
// stalled, and memory stays bounded.
bool Receiver::hold(const Message& m, ssize_t n) {
    held_.emplace_back(reinterpret_cast<const char*>(&m.hdr), size_t(n));
    held_bytes_ += size_t(n) + kHeldCost;
    if (held_bytes_ <= kHeldMax) return true;
    Session& o = *owner_;
    complain("sender %d stalled in the middle of a line while %zu KiB of other senders'"
             " requests waited; refusing the rest", int(o.sender.pid), kHeldMax >> 10);
    owner_ = nullptr;
    o.state = Session::kRefused;
    all_clean_ = false;
    const char* why = "its line stalled while other senders waited";
    return reply(o, kRefuse, 0, 0, why, strlen(why));
}

// Chat: the ACK carries a line read from our stdin, in as many ACKs as it
// takes (MORE on all but the last); once stdin has ended, an empty one.
bool Receiver::chat_reply(Session& s, uint32_t seq) {
    bool prompt = isatty(STDIN_FILENO) && !g_quiet && !stdin_ended_;
    if (prompt) fprintf(stderr, "reply to %d> ", int(s.sender.pid));
    for (;;) {
        long room = message_limit(q_).bytes - long(sizeof(Header));  // msg_qbytes may shrink
        const char* p = nullptr;
        ssize_t n = stdin_ended_ ? 0 : in_.next(room > 0 ? size_t(room) : 1, &p);
        if (n < 0 && errno == EINTR && !g_signal) {  // the watchdog: does the sender still wait?
            if (alive(s.sender)) continue;
            break;  // no: on_tick() finishes it
        }
        if (n < 0) return failed("read");
        if (n == 0 && !stdin_ended_) {
            stdin_ended_ = true;
            if (prompt) fputc('\n', stderr);
            note("standard input ended: the replies are empty from now on");
        }
        bool more = n > 0 && p[n - 1] != '\n';
        if (!reply(s, kAck, more ? kMore : 0, seq, p, size_t(n))) return false;
        if (!more || !alive(s.sender)) return true;
    }
    if (prompt) fputc('\n', stderr);
    return true;
}

// Sends a reply. A full queue (EAGAIN) that holds a request has it taken out
// and held, to make room: waiting for room while senders wait for room to
// send us their requests would be a deadlock. With no request there, msgsnd
// waits: the senders are reading their replies. Each second the watchdog
// checks that this one still lives, and that msg_qbytes was not lowered
// below the reply (it would wait forever).
bool Receiver::reply(Session& s, uint16_t kind, uint16_t flags, uint32_t seq, const void* p,
                     size_t n) {
    Message r;
    r.mtype = s.type;
    r.hdr = Header{int32_t(s.type), kind, flags, seq, uint32_t(n)};
    memcpy(r.data, p, n);
    int wait = IPC_NOWAIT;
    trace("msgsnd", r, wait);
    while (msgsnd(q_, &r, sizeof(Header) + n, wait) < 0) {
        if (errno == EAGAIN) {
            wait = make_room() ? IPC_NOWAIT : 0;
            continue;
        }
        if (errno != EINTR) return failed("msgsnd");
        if (g_signal || !fits(q_, opt_.key, sizeof(Header) + n)) return false;
        if (!alive(s.sender)) return true;  // it reads no more: on_tick() finishes it
        wait = IPC_NOWAIT;
    }
    return true;
}

// Takes a request out of a full queue and holds it (handled in its turn),
// unless kHeldMax is held already. True if one was taken.
bool Receiver::make_room() {
    Message m;
    ssize_t n = held_bytes_ < kHeldMax ? msgrcv(q_, &m, kTextSize, kRequestType,
                                                IPC_NOWAIT | MSG_NOERROR) : -1;
    if (n < 0) return false;
    trace("msgrcv", m, IPC_NOWAIT);
    held_.emplace_back(reinterpret_cast<const char*>(&m.hdr), size_t(n));
    held_bytes_ += size_t(n) + kHeldCost;
    return true;
}

// Once a second: a sender that died without a word is finished, but first
// what it sent before it died (in the queue, or held) is handled. One dead
// after its END never said BYE: it did not finish.
bool Receiver::on_tick() {
    g_tick = 0;
    bool dead = false;
    for (const Session& s : sessions_) dead = dead || (s.state != Session::kDone && !alive(s.sender));
    if (!dead) return true;
    Message m;
    for (ssize_t n; !g_signal && (n = next_request(m, IPC_NOWAIT)) >= 0;)
        if (!handle(m, n)) return false;
    for (Session& s : sessions_)
        if (s.state != Session::kDone && !alive(s.sender) && !holds(s))
            finish(s, s.state == Session::kEnded ? "ended without a BYE" : "died");
    return true;
}

// The session is over: with BYE (how is null), or as how says.
void Receiver::finish(Session& s, const char* how) {
    unsigned long long n = s.written.messages, bytes = s.written.bytes;
    if (how == nullptr)
        note("sender %d finished: %llu byte%s in %llu message%s", int(s.sender.pid), bytes,
             plural(bytes), n, plural(n));
    else
        complain("sender %d %s after %llu message%s (%llu byte%s)", int(s.sender.pid), how, n,
                 plural(n), bytes, plural(bytes));
    all_clean_ = all_clean_ && how == nullptr;
    if (owner_ == &s) owner_ = nullptr;
    s.state = Session::kDone;
    ++finished_;
    Message m;  // replies it will never read must not fill the queue
    while (msgrcv(q_, &m, kTextSize, s.type, IPC_NOWAIT | MSG_NOERROR) >= 0) {
    }
}

// A failed call in one line, err(3) style; nothing after a stop signal,
// which is no error. False, for the caller.
bool Receiver::failed(const char* call) {
    int e = ipc_errno(q_);
    if (e != EINTR || !g_signal)
        complain("%s: %s (queue 0x%08x)", call, strerror(e), unsigned(opt_.key));
    return false;
}

Session* Receiver::find(long type) {
    for (Session& s : sessions_)
        if (s.type == type) return &s;
    return nullptr;
}

bool Receiver::holds(const Session& s) const {
    for (const std::string& text : held_)
        if (session_of(text) == s.type) return true;
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    g_prog = "receiver";
    Options opt = parse_options(argc, argv);
    install_signal_handlers();
    int q = create_queue(opt);  // msgget(key, IPC_CREAT | IPC_EXCL | mode)
    if (q < 0) return 1;
    bool ok = fits(q, opt.key, kMinText);  // a queue that can carry no session is not announced
    if (ok) {
        note("queue 0x%08x (id %d) ready; waiting for %u sender%s", unsigned(opt.key), q,
             opt.senders, opt.senders == 1 ? "" : "s");
        ok = Receiver(q, opt).serve();  // msgrcv each request, msgsnd each reply
    }
    if (msgctl(q, IPC_RMID, nullptr) < 0 && !queue_gone(errno)) {  // remove the queue
        complain("msgctl(IPC_RMID): %s (queue 0x%08x)", strerror(errno), unsigned(opt.key));
        ok = false;
    }
    if (!close_stdout()) ok = false;
    die_if_signalled();
    return ok ? 0 : 1;
}
