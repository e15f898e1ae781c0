// receiver.cpp - creates the queue, writes what senders send to stdout,
// acknowledges it, and removes the queue when every sender has finished.
//
// One loop reads requests (type kRequestType) in arrival order. A sender in
// the middle of a line "owns" stdout until the line ends; requests of other
// senders that arrive meanwhile wait in memory, so lines never mix. Replies
// that do not fit in a full queue wait in an outbox, so the receiver never
// blocks sending while senders block on it.
#include "common.h"

#include <getopt.h>
#include <sys/stat.h>

#include <deque>
#include <string>
#include <vector>

namespace {

struct Options {
    key_t key = default_key();
    int mode = S_IRUSR | S_IWUSR;
    unsigned senders = 1;
    bool reply = false;
    bool force = false;
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
        "  -f, --force         replace a queue of yours that no running process\n"
        "                      uses (one left behind by a killed receiver)\n"
        "  -q, --quiet         no status lines or prompts on stderr\n"
        "  -v, --verbose       one stderr line per message\n"
        "  -h, --help          show this help and exit\n"
        "  -V, --version       show the version and exit\n"
        "\n"
        "Exit status: 0 every sender finished (said BYE, its data intact), 1 failure\n"
        "or a sender that did not finish, 2 usage error. On SIGINT, SIGTERM, SIGHUP,\n"
        "SIGQUIT and other stop signals it removes the queue, then dies of the signal.\n",
        unsigned(default_key()));
}

Options parse_options(int argc, char** argv) {
    static const option longopts[] = {
        {"key", required_argument, nullptr, 'k'}, {"mode", required_argument, nullptr, 'm'},
        {"senders", required_argument, nullptr, 'n'}, {"reply", no_argument, nullptr, 'r'},
        {"force", no_argument, nullptr, 'f'},     {"quiet", no_argument, nullptr, 'q'},
        {"verbose", no_argument, nullptr, 'v'},   {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, 'V'},   {nullptr, 0, nullptr, 0}};
    Options o;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":k:m:n:rfqvhV", longopts, nullptr)) != -1) {
        switch (c) {
        case 'k': o.key = key_t(parse_number(optarg, Radix::kAny, 1, 0xFFFFFFFFLL, "--key")); break;
        case 'm': o.mode = int(parse_number(optarg, Radix::kOctal, 0, 0777, "--mode")); break;
        case 'n':
            o.senders = unsigned(parse_number(optarg, Radix::kDecimal, 1, 1000, "--senders"));
            break;
        case 'r': o.reply = true; break;
        case 'f': o.force = true; break;
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

// Owns the queue the way unique_fd owns a descriptor: whoever holds it
// removes the queue, on every path out of main.
class Queue {
public:
    Queue() = default;
    explicit Queue(int id) : id_(id) {}
    Queue(Queue&& o) noexcept : id_(o.release()) {}
    Queue& operator=(Queue&& o) noexcept {
        if (this != &o) {
            remove();
            id_ = o.release();
        }
        return *this;
    }
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;
    ~Queue() { remove(); }

    int id() const { return id_; }
    explicit operator bool() const { return id_ >= 0; }
    int release() {
        int id = id_;
        id_ = -1;
        return id;
    }
    // False if the queue could not be removed (a queue removed by someone
    // else already is: that was reported where it was noticed).
    bool remove() {
        int id = release();
        if (id < 0 || msgctl(id, IPC_RMID, nullptr) == 0 || queue_gone(errno)) return true;
        syscall_failed("msgctl(IPC_RMID)");
        return false;
    }

private:
    int id_ = -1;
};

// The process that used the queue last (msg_lrpid, msg_lspid), if it still
// runs: the queue's receiver, or one of its senders. 0: nobody serves the
// queue any more; it was left behind.
pid_t user_of(const msqid_ds& ds) {
    for (pid_t pid : {ds.msg_lrpid, ds.msg_lspid})
        if (pid > 0 && alive(pid)) return pid;
    return 0;
}

// The key is taken. Replace the queue only if it is ours, nobody uses it,
// and --force says so.
int replace_existing(const Options& o) {
    msqid_ds ds = {};
    int old = msgget(o.key, 0);
    if (old < 0 || msgctl(old, IPC_STAT, &ds) < 0) {
        if (errno == EACCES)
            complain("queue 0x%08x belongs to another user; not touching it (use another --key)",
                     unsigned(o.key));
        else
            syscall_failed(old < 0 ? "msgget" : "msgctl(IPC_STAT)");
        return -1;
    }
    if (!ours(ds.msg_perm)) {
        complain("queue 0x%08x belongs to uid %u; not touching it (use another --key)",
                 unsigned(o.key), stranger(ds.msg_perm));
        return -1;
    }
    if (pid_t pid = user_of(ds)) {
        complain("queue 0x%08x is in use by process %d (its receiver or a sender);"
                 " not touching it (use another --key)", unsigned(o.key), int(pid));
        return -1;
    }
    if (!o.force) {
        complain("queue 0x%08x already exists and no process uses it (left by a killed"
                 " receiver?); remove it with 'ipcrm -Q 0x%08x' or use --force",
                 unsigned(o.key), unsigned(o.key));
        return -1;
    }
    if (msgctl(old, IPC_RMID, nullptr) < 0) {
        syscall_failed("msgctl(IPC_RMID)");
        return -1;
    }
    note("removed the old queue (id %d)", old);
    int id = msgget(o.key, IPC_CREAT | IPC_EXCL | o.mode);
    if (id < 0) syscall_failed("msgget");
    return id;
}

// A message to ourselves, sent and taken back, leaves our pid in msg_lspid
// and msg_lrpid: another receiver's user_of() sees the queue is in use
// before any sender has come. Done again once a second, since any process
// that sends and receives leaves its own pid there. False with errno.
bool mark_in_use(int id) {
    struct {
        long mtype;
    } beacon = {reply_type(getpid())};
    return msgsnd(id, &beacon, 0, IPC_NOWAIT) == 0 &&
           msgrcv(id, &beacon, 0, beacon.mtype, IPC_NOWAIT) == 0;
}

Queue create_queue(const Options& o) {
    // IPC_EXCL: a queue already under the key is never silently shared.
    int id = msgget(o.key, IPC_CREAT | IPC_EXCL | o.mode);
    if (id < 0 && errno == EEXIST)
        id = replace_existing(o);
    else if (id < 0)
        syscall_failed("msgget");
    Queue queue(id);
    if (queue && !mark_in_use(queue.id())) {
        syscall_failed("msgsnd");
        queue.remove();
    }
    return queue;
}

// What the receiver keeps in memory at most: requests held back while a
// sender is in mid-line, and replies waiting for room.
constexpr size_t kKeptMax = size_t(4) << 20;
constexpr size_t kHeldCost = 64;  // what keeping one costs beyond its bytes
constexpr size_t kRefusedMax = 1024;  // processes refused and remembered

// A request of another sender, held back while one sender is mid-line.
struct Held {
    pid_t pid;
    std::string text;  // the mtext as received
};

struct Client {
    // Active, then closing after its END; refused after a gap in its
    // messages (it is told once, and only its LEAVE is read); done once it
    // said BYE or LEAVE, or died.
    enum State { kActive, kClosing, kRefused, kDone };
    pid_t pid;
    uint64_t token = 0;     // the session's secret: every request carries it
    uint32_t next_seq = 1;
    Tally tally = {};       // of what was written for it
    State state = kActive;
    bool intact = false;    // its END's tally equals ours
    bool read_welcome = false;  // seen to have read its WELCOME: a real sender
    unsigned ticks = 0;         // watchdog ticks since its HELLO, until then
};

class Receiver {
public:
    Receiver(int qid, const Options& o) : q_(qid), opt_(o) { clients_.reserve(o.senders); }
    int run();

private:
    ssize_t next_message(int flags);
    int handle(ssize_t n);
    int hold(ssize_t n);
    int request(Client& c);
    int hello();
    int data(Client& c);
    int end(Client& c);
    void finish(Client& c, bool clean, const char* how);
    int chat_reply(Client& c);
    int reply(const Client& c, uint16_t kind, uint16_t flags, const void* p, size_t n);
    int refuse(Client& c, uint32_t seq, const char* reason);
    int drain_outbox(bool block);
    int on_tick();
    int check_senders();
    void drop_false_hellos();
    bool welcome_unread(Client& c);
    void drop(Client& c);
    bool our_reply(const Message& m, ssize_t n, const Client& c) const;
    int sweep(const msqid_ds& ds);
    int fail(const char* call);
    int write_failed();
    Client* find(pid_t pid);
    bool holding(pid_t pid) const;
    Client* owner() { return owner_ < 0 ? nullptr : &clients_[size_t(owner_)]; }

    int q_;
    const Options& opt_;
    pid_t me_ = getpid();
    std::vector<Client> clients_;
    unsigned done_ = 0;           // senders finished, one way or another
    bool all_clean_ = true;       // every one of them said BYE, its data intact
    int owner_ = -1;              // index of the sender in mid-line, or -1
    bool idle_ = false;           // the last look for a request found none
    bool stdin_ended_ = false;    // chat: no more replies to read
    std::vector<pid_t> refused_;  // sent a REFUSE to their HELLO
    std::deque<Held> deferred_;   // other senders' requests meanwhile
    size_t held_ = 0;             // their bytes
    std::deque<Message> outbox_;  // replies waiting for room in the queue
    Message m_ = {};              // the request being handled
    Message r_ = {};              // the reply being built
    Writer out_{STDOUT_FILENO};
    LineReader in_{STDIN_FILENO};  // chat replies
};

int Receiver::run() {
    for (;;) {
        if (g_signal) return out_.flush() ? 1 : write_failed();
        if (int st = g_tick ? on_tick() : kGoOn; st != kGoOn) return st;
        if (done_ == opt_.senders && outbox_.empty())
            return out_.flush() ? (all_clean_ ? 0 : 1) : write_failed();
        if (int st = drain_outbox(false); st != kGoOn) return st;
        // Block only with nothing left to do: output written, replies sent.
        bool busy = out_.buffered() || !outbox_.empty();
        ssize_t n = next_message(busy ? IPC_NOWAIT : 0);
        idle_ = n < 0;
        if (n >= 0) {
            if (int st = handle(n); st != kGoOn) return st;
            continue;
        }
        if (errno == ENOMSG) {  // nothing to read: finish the pending work
            if (out_.buffered() && !out_.flush()) return write_failed();
            if (int st = drain_outbox(true); st != kGoOn) return st;
        } else if (errno != EINTR) {  // EINTR: a signal or the watchdog, seen above
            return fail("msgrcv");
        }
    }
}

// The next message to handle: a held-back request when it is due, else one
// from the queue. Requests come first (type 1 is the lowest); then junk of
// any type below the replies, so that it never fills the queue (junk in the
// replies' range is for sweep()). Its size, or -1 with errno.
ssize_t Receiver::next_message(int flags) {
    auto due = deferred_.begin();
    if (const Client* o = owner())
        while (due != deferred_.end() && due->pid != o->pid) ++due;
    if (due == deferred_.end())
        return receive_message(q_, m_, -kLastOtherType, flags);
    m_.mtype = kRequestType;
    memcpy(&m_.hdr, due->text.data(), due->text.size());
    ssize_t n = ssize_t(due->text.size());
    held_ -= due->text.size() + kHeldCost;
    deferred_.erase(due);
    return n;
}

int Receiver::handle(ssize_t n) {
    if (m_.mtype != kRequestType) {
        complain("ignoring a message of type %s: not a request", TypeName(m_.mtype).text);
        return kGoOn;
    }
    if (!well_formed(m_, n)) {
        complain("ignoring a malformed message (%zd bytes)", n);
        return kGoOn;
    }
    trace("got", m_);
    if (m_.hdr.kind == kHello) return hello();
    Client* c = find(m_.hdr.pid);
    unsigned kind = m_.hdr.kind;
    if (c == nullptr || c->state == Client::kDone || kind < kData || kind > kPing) {
        complain("ignoring %s (kind %u) from %d: not a request of a sender in session",
                 kind_name(kind), kind, int(m_.hdr.pid));
        return kGoOn;
    }
    // Anyone who may write to the queue can use a sender's pid; only the
    // sender (and whoever can read the queue) knows its session's token.
    if (m_.hdr.token != c->token) {
        complain("ignoring %s from %d: not its session's token (forged?)", kind_name(kind),
                 int(c->pid));
        return kGoOn;
    }
    if (c->state == Client::kRefused) {  // it has been told: only its LEAVE counts
        if (kind == kLeave) finish(*c, false, "left");
        return kGoOn;
    }
    if (owner() != nullptr && owner() != c) return hold(n);  // until the line ends
    return request(*c);
}

// Keeps the request in m_ until the line of the sender in mid-line ends.
// A line that stalls while kKeptMax of other senders' requests wait ends
// that sender's session: memory stays bounded, and the others go on.
int Receiver::hold(ssize_t n) {
    const char* text = reinterpret_cast<const char*>(&m_.hdr);
    deferred_.push_back(Held{m_.hdr.pid, std::string(text, size_t(n))});
    held_ += size_t(n) + kHeldCost;
    if (held_ < kKeptMax) return kGoOn;
    Client& o = *owner();
    complain("sender %d stalled in the middle of a line while %zu MiB of other senders'"
             " requests waited; refusing the rest", int(o.pid), kKeptMax >> 20);
    return refuse(o, o.next_seq, "its line stalled while other senders waited");
}

// A request of a sender in session, in its turn. LEAVE may skip ahead: a
// sender interrupted in msgsnd has used a number it never sent.
int Receiver::request(Client& c) {
    unsigned kind = m_.hdr.kind;
    if (!c.read_welcome && welcome_unread(c)) {  // no sender sends before it is welcomed
        complain("ignoring %s from %d: it did not read its WELCOME (a forged session)",
                 kind_name(kind), int(c.pid));
        // Told why, in case it is a sender fooled by a WELCOME that a process
        // reading the queue forged: otherwise it would wait on that one.
        Client forged = c;
        drop(c);
        const char* why = "its WELCOME was not read: a forged session";
        return reply(forged, kRefuse, 0, why, strlen(why));
    }
    if (m_.hdr.seq != c.next_seq && !(kind == kLeave && m_.hdr.seq > c.next_seq)) {
        complain("sender %d: message %u never arrived (got %s seq %u); refusing the rest",
                 int(c.pid), unsigned(c.next_seq), kind_name(kind), unsigned(m_.hdr.seq));
        return refuse(c, m_.hdr.seq, "a message before it never arrived");
    }
    ++c.next_seq;
    switch (kind) {
    case kData: return data(c);
    case kEnd: return end(c);
    case kPing: return reply(c, kAck, 0, nullptr, 0);
    case kBye:
        if (c.state != Client::kClosing) {
            finish(c, false, "said BYE before END");
        } else {
            if (c.intact)  // end() has said if it was not
                note("sender %d finished: %s in %s", int(c.pid),
                     Count(c.tally.bytes, "byte").text, Count(c.tally.messages, "message").text);
            finish(c, c.intact, nullptr);
        }
        return kGoOn;
    default: finish(c, false, "was interrupted"); return kGoOn;  // kLeave
    }
}

int Receiver::hello() {
    pid_t pid = m_.hdr.pid;
    if (m_.hdr.seq != 0 || m_.hdr.token == 0) {
        complain("ignoring HELLO from %d: its seq must be 0 and its token not", int(pid));
        return kGoOn;
    }
    if (pid <= 0 || find(pid) != nullptr || !alive(pid)) {
        complain("ignoring HELLO from %d: not a new, living process", int(pid));
        return kGoOn;
    }
    Client c{pid};
    c.token = m_.hdr.token;  // the sender's secret: its replies and requests carry it
    if (clients_.size() == opt_.senders) {
        // One REFUSE per process: a sender says HELLO once, and HELLOs
        // repeated in the name of a process that reads nothing must not pile
        // up replies. Past kRefusedMax of them, no more REFUSEs at all.
        for (pid_t p : refused_)
            if (p == pid) return kGoOn;
        complain("refusing sender %d: already served %u", int(pid), opt_.senders);
        if (refused_.size() == kRefusedMax) return kGoOn;
        refused_.push_back(pid);
        const char* why = "it serves no more senders";
        return reply(c, kRefuse, 0, why, strlen(why));
    }
    clients_.push_back(c);
    note("sender %d connected", int(pid));
    return reply(clients_.back(), kWelcome, 0, nullptr, 0);
}

int Receiver::data(Client& c) {
    if (c.state != Client::kActive) {
        complain("ignoring DATA from %d after its END", int(c.pid));
        return kGoOn;
    }
    // An acknowledgment promises the data is written: write it now, unless
    // the sender waits for no acknowledgment.
    bool ack = !(m_.hdr.flags & kNoAck);
    if (!(ack ? out_.put_now(m_.data, m_.hdr.len) : out_.put(m_.data, m_.hdr.len)))
        return write_failed();
    c.tally.add(m_.data, m_.hdr.len);
    owner_ = (m_.hdr.flags & kMore) ? int(&c - clients_.data()) : -1;
    if (!ack) return kGoOn;
    if (opt_.reply && !(m_.hdr.flags & kMore)) return chat_reply(c);  // a line per line
    return reply(c, kAck, 0, nullptr, 0);
}

// END carries the sender's tally: what it sent must be what was written.
int Receiver::end(Client& c) {
    if (c.state != Client::kActive) {
        complain("ignoring END from %d after its END", int(c.pid));
        return kGoOn;
    }
    if (owner() == &c) owner_ = -1;
    if (!out_.flush()) return write_failed();
    c.state = Client::kClosing;
    Tally sent = {};
    if (m_.hdr.len == sizeof sent) memcpy(&sent, m_.data, sizeof sent);
    c.intact = m_.hdr.len == sizeof sent && sent == c.tally;
    const Tally& got = c.tally;  // an intact one is reported at the BYE
    if (m_.hdr.len != sizeof sent)
        complain("sender %d: its END carries no tally (%u bytes)", int(c.pid),
                 unsigned(m_.hdr.len));
    else if (sent.bytes != got.bytes || sent.messages != got.messages)
        complain("sender %d sent %s in %s, but %s in %s were written", int(c.pid),
                 Count(sent.bytes, "byte").text, Count(sent.messages, "message").text,
                 Count(got.bytes, "byte").text, Count(got.messages, "message").text);
    else if (!c.intact)
        complain("sender %d sent %s in %s, as many as were written, but not the same bytes"
                 " (the checksums differ)", int(c.pid), Count(sent.bytes, "byte").text,
                 Count(sent.messages, "message").text);
    return reply(c, kTally, 0, &c.tally, sizeof c.tally);
}

// Ends a session, telling the sender once why, in a REFUSE of request seq:
// a message of its never arrived (another process took it out of the
// queue), or its line stalled. From then on only its LEAVE is read:
// answering each later request would fill the queue with REFUSEs that an
// async sender does not read until the end.
int Receiver::refuse(Client& c, uint32_t seq, const char* reason) {
    c.state = Client::kRefused;
    if (owner() == &c) owner_ = -1;
    uint32_t request = m_.hdr.seq;
    m_.hdr.seq = seq;  // reply() answers the request in m_
    int st = reply(c, kRefuse, 0, reason, strlen(reason));
    m_.hdr.seq = request;
    return st;
}

// The sender is gone for good: with BYE (clean), LEAVE or death (not).
// how, if given, says what went wrong.
void Receiver::finish(Client& c, bool clean, const char* how) {
    if (owner() == &c) owner_ = -1;
    if (how != nullptr)
        complain("sender %d %s after %s (%s)", int(c.pid), how,
                 Count(c.tally.messages, "message").text, Count(c.tally.bytes, "byte").text);
    c.state = Client::kDone;
    all_clean_ = all_clean_ && clean;
    ++done_;
    // Replies it will never read must not fill the queue.
    for (auto it = outbox_.begin(); it != outbox_.end();)
        it = it->mtype == reply_type(c.pid) ? outbox_.erase(it) : it + 1;
    while (receive_message(q_, r_, reply_type(c.pid), IPC_NOWAIT) >= 0) {
    }
}

// Chat mode: the acknowledgment carries a line read from our stdin, in as
// many replies as it takes; at end of input, an empty one.
int Receiver::chat_reply(Client& c) {
    bool prompt = isatty(STDIN_FILENO) && !g_quiet && !stdin_ended_;
    if (prompt) (void)fprintf(stderr, "reply to %d> ", int(c.pid));
    long limit = message_limit(q_);  // msg_qbytes may have been lowered since we began
    if (limit < 0) return fail("msgctl(IPC_STAT)");
    if (size_t(limit) <= kHeaderSize) {
        complain("the queue takes no message bigger than its header: cannot reply");
        return 1;
    }
    for (;;) {
        const char* p = nullptr;
        ssize_t n = stdin_ended_ ? 0 : in_.next(size_t(limit) - kHeaderSize, &p);
        if (n < 0 && errno == EINTR && !g_signal) {
            // A tick while the user types. A sender that died or left
            // meanwhile gets no reply: run()'s look at the tick finishes it.
            if (g_tick && !alive(c.pid)) {
                if (prompt) (void)fputc('\n', stderr);
                return kGoOn;
            }
            msqid_ds ds;
            if (g_tick && msgctl(q_, IPC_STAT, &ds) < 0) return fail("msgctl(IPC_STAT)");
            if (g_tick) (void)mark_in_use(q_);  // as on_tick() does
            g_tick = 0;
            continue;
        }
        if (n < 0 && g_signal) return 1;  // run() will say nothing more: it is a signal
        if (n < 0) {
            syscall_failed("read");
            return 1;
        }
        if (n == 0 && !stdin_ended_) {
            stdin_ended_ = true;
            if (prompt) (void)fputc('\n', stderr);
            note("standard input ended: the replies are empty from now on");
        }
        bool more = n > 0 && p[n - 1] != '\n';
        if (int st = reply(c, kAck, more ? kMore : 0, p, size_t(n)); st != kGoOn) return st;
        if (!more) return kGoOn;
    }
}

// Answers the request in m_: sends the reply now if it fits in the queue,
// else keeps it in the outbox. Blocking here could deadlock with a sender
// that waits for room to send us its request. Chat replies of more than
// kKeptMax that their sender does not read end the receiver: memory stays
// bounded.
int Receiver::reply(const Client& c, uint16_t kind, uint16_t flags, const void* p, size_t n) {
    r_.mtype = reply_type(c.pid);
    r_.hdr = Header{int32_t(me_), kind, flags, m_.hdr.seq, uint32_t(n), c.token};
    if (n > 0) memcpy(r_.data, p, n);
    trace("sent", r_);
    if (outbox_.empty()) {
        if (send_message(q_, r_, IPC_NOWAIT) == 0) return kGoOn;
        if (errno != EAGAIN) return fail("msgsnd");
    }
    size_t waiting = n;  // chat replies' data: others are few, one or two per sender
    for (const Message& m : outbox_) waiting += m.hdr.len;
    if ((n > 0 && waiting > kKeptMax) || outbox_.size() > 4 * opt_.senders + kKeptMax / kMaxData) {
        complain("replies to sender %d wait for room beyond %zu MiB: it does not read them",
                 int(c.pid), kKeptMax >> 20);
        return 1;
    }
    outbox_.push_back(r_);
    return kGoOn;
}

// Sends what the outbox holds. With block, waits for room for the first
// reply: only done when no request is waiting, so senders will make room.
int Receiver::drain_outbox(bool block) {
    while (!outbox_.empty()) {
        if (send_message(q_, outbox_.front(), block ? 0 : IPC_NOWAIT) < 0) {
            if (errno == EAGAIN || errno == EINTR) return kGoOn;  // EINTR: run() looks
            return fail("msgsnd");
        }
        outbox_.pop_front();
        block = false;
    }
    return kGoOn;
}

// Once a second while senders are connected: senders that died, a queue
// removed or shrunk under us, junk taking the room that senders need.
int Receiver::on_tick() {
    g_tick = 0;
    if (int st = check_senders(); st != kGoOn) return st;
    drop_false_hellos();
    (void)mark_in_use(q_);  // a full queue has no room for it: the senders are its users
    msqid_ds ds = {};
    if (msgctl(q_, IPC_STAT, &ds) < 0) return fail("msgctl(IPC_STAT)");
    if (!outbox_.empty()) {  // a reply bigger than msg_qbytes would wait forever
        long limit = message_limit(q_);
        size_t size = kHeaderSize + outbox_.front().hdr.len;
        if (limit < 0) return fail("msgctl(IPC_STAT)");
        if (size > size_t(limit)) {
            complain("queue 0x%08x now takes messages of at most %ld bytes: a reply of %zu"
                     " bytes can never be sent", unsigned(g_key), limit, size);
            return 1;
        }
    }
    return idle_ ? sweep(ds) : kGoOn;
}

// A sender that died without a word is finished. What it sent before it
// died (data, or its LEAVE) is handled first, including requests held back
// for another sender's line: a later tick finishes it. Dead before its BYE,
// it did not finish, even after its END.
int Receiver::check_senders() {
    auto dead = [this] {
        for (const Client& c : clients_)
            if (c.state != Client::kDone && !alive(c.pid)) return true;
        return false;
    };
    if (!dead()) return kGoOn;
    for (ssize_t n; !g_signal && (n = next_message(IPC_NOWAIT)) >= 0;)
        if (int st = handle(n); st != kGoOn) return st;
    for (Client& c : clients_)  // after its END: killed, or its BYE taken
        if (c.state != Client::kDone && !alive(c.pid) && !holding(c.pid))
            finish(c, false, c.state == Client::kClosing ? "ended without a BYE" : "died");
    return kGoOn;
}

// A HELLO can name any living process. One that has not read its WELCOME
// a tick or two later (a sender reads it at once) sent no HELLO: it must not
// take a sender's place, nor keep the receiver waiting for it to finish. A
// stopped process (Ctrl-Z) is waited for: it will read it when continued.
void Receiver::drop_false_hellos() {
    for (size_t i = clients_.size(); i-- > 0;) {
        Client& c = clients_[i];
        if (c.read_welcome || c.state != Client::kActive || c.next_seq > 1 || ++c.ticks < 2)
            continue;
        char state = process_state(c.pid);
        if (state == 'T' || state == 't') continue;
        bool unsent = false;  // still in the outbox: it cannot have read it yet
        for (const Message& m : outbox_) unsent = unsent || m.mtype == reply_type(c.pid);
        if (unsent) continue;
        if (welcome_unread(c)) {
            complain("ignoring HELLO from %d: it did not read its WELCOME (not a sender)",
                     int(c.pid));
            drop(c);
        }
    }
}

// Whether the WELCOME of a client that has not been seen to read it is still
// waiting: in the outbox, or in the queue (taken out then, with any junk in
// its type: before its first request nothing else is addressed to it).
bool Receiver::welcome_unread(Client& c) {
    for (const Message& m : outbox_)
        if (m.mtype == reply_type(c.pid)) return true;
    for (ssize_t n; (n = receive_message(q_, r_, reply_type(c.pid), IPC_NOWAIT)) >= 0;) {
        if (our_reply(r_, n, c) && r_.hdr.kind == kWelcome) return true;
        complain("ignoring a message of type %s: no reply of ours to a sender",
                 TypeName(r_.mtype).text);
    }
    c.read_welcome = true;  // it has (or the queue is gone: the next call on it says)
    return false;
}

// A client that sent no HELLO: it leaves no trace, and counts for nothing.
void Receiver::drop(Client& c) {
    for (auto it = outbox_.begin(); it != outbox_.end();)
        it = it->mtype == reply_type(c.pid) ? outbox_.erase(it) : it + 1;
    size_t i = size_t(&c - clients_.data());
    if (owner_ == int(i)) owner_ = -1;
    if (owner_ > int(i)) --owner_;
    clients_.erase(clients_.begin() + ptrdiff_t(i));
}

// A reply of ours to this client, well formed: what the sweep keeps.
bool Receiver::our_reply(const Message& m, ssize_t n, const Client& c) const {
    return well_formed(m, n) && m.hdr.pid == me_ && m.hdr.token == c.token;
}

// Junk of a type we do not read (above 2^31: in the replies' range) can
// fill the queue, and senders then wait for room forever. When we have
// nothing to read and a sender's next message might not fit, we take every
// message out: requests that came meanwhile are held to be handled next,
// our own replies to our senders go back in the same order (first in the
// outbox), the rest is dropped. Bounded by the count: junk may keep coming.
int Receiver::sweep(const msqid_ds& ds) {
    size_t biggest = ds.msg_qbytes < kMsgMax ? size_t(ds.msg_qbytes) : kMsgMax;
    size_t room = ds.msg_cbytes < ds.msg_qbytes ? size_t(ds.msg_qbytes - ds.msg_cbytes) : 0;
    if (ds.msg_qnum == 0 || (room >= biggest && ds.msg_qnum < ds.msg_qbytes)) return kGoOn;
    std::deque<Message> kept;
    for (msgqnum_t i = 0; i < ds.msg_qnum; ++i) {
        ssize_t n = receive_message(q_, r_, -LONG_MAX, IPC_NOWAIT);
        if (n < 0 && errno == ENOMSG) break;
        if (n < 0) return fail("msgrcv");
        long pid = r_.mtype - kReplyBase;
        const Client* c = pid > 0 && pid <= INT_MAX ? find(pid_t(pid)) : nullptr;
        if (r_.mtype == kRequestType) {
            deferred_.push_back(
                Held{r_.hdr.pid, std::string(reinterpret_cast<const char*>(&r_.hdr), size_t(n))});
            held_ += size_t(n) + kHeldCost;
        } else if (c != nullptr && c->state != Client::kDone && our_reply(r_, n, *c)) {
            kept.push_back(r_);
        } else {
            complain("ignoring a message of type %s: no reply of ours to a sender",
                     TypeName(r_.mtype).text);
        }
    }
    outbox_.insert(outbox_.begin(), kept.begin(), kept.end());
    return kGoOn;
}

int Receiver::fail(const char* call) {
    report_errno(call, ipc_errno(q_));
    if (!out_.flush()) write_failed();  // what was received is still written
    return 1;
}

// Nothing more is acknowledged; removing the queue tells the senders.
int Receiver::write_failed() {
    if (!g_signal) syscall_failed("write");  // a signal interrupted it: no error
    return 1;
}

bool Receiver::holding(pid_t pid) const {
    for (const Held& h : deferred_)
        if (h.pid == pid) return true;
    return false;
}

Client* Receiver::find(pid_t pid) {
    for (Client& c : clients_)
        if (c.pid == pid) return &c;
    return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    g_prog = "receiver";
    guard_std_fds();
    Options opt = parse_options(argc, argv);
    g_key = opt.key;
    install_signal_handlers();
    int status = 1;
    {
        Queue queue = create_queue(opt);
        if (queue) {
            g_queue_to_remove = queue.id();  // even by a crash
            set_watchdog(true);  // marks the queue as in use every second (on_tick)
            note("queue 0x%08x (id %d) ready; waiting for %u sender%s", unsigned(opt.key),
                 queue.id(), opt.senders, opt.senders == 1 ? "" : "s");
            status = Receiver(queue.id(), opt).run();
            if (!queue.remove()) status = 1;
            g_queue_to_remove = -1;
        }
    }
    if (!close_stdout()) status = 1;
    reraise_if_signalled();
    return status;
}
