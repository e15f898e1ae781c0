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
        "  -m, --mode=OCTAL    permissions of the new queue (default 0600)\n"
        "  -n, --senders=N     serve N senders, then exit (default 1)\n"
        "  -r, --reply         chat: answer each line with a line read from stdin\n"
        "  -f, --force         replace a queue of yours left under the key\n"
        "  -q, --quiet         no status lines or prompts on stderr\n"
        "  -v, --verbose       one stderr line per message\n"
        "  -h, --help          show this help and exit\n"
        "  -V, --version       show the version and exit\n"
        "\n"
        "Exit status: 0 every sender finished, 1 failure or a sender that did\n"
        "not finish, 2 usage error; SIGINT, SIGTERM, SIGHUP: killed by it.\n",
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
        case 'k': o.key = key_t(parse_number(optarg, 0, 1, 0xFFFFFFFFLL, "--key")); break;
        case 'm': o.mode = int(parse_number(optarg, 8, 0, 0777, "--mode")); break;
        case 'n': o.senders = unsigned(parse_number(optarg, 10, 1, 1000, "--senders")); break;
        case 'r': o.reply = true; break;
        case 'f': o.force = true; break;
        case 'q': g_quiet = true; break;
        case 'v': g_verbose = true; break;
        case 'h': usage(); exit_after_printing();
        case 'V': printf("receiver (msgq-pair) %s\n", kVersion); exit_after_printing();
        default: bad_option(c, argv);
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

// The key is taken. Replace the queue only if it is ours and --force says so.
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
    if (!o.force) {
        complain("queue 0x%08x already exists (another receiver's, or left by a killed one);"
                 " remove it with 'ipcrm -Q 0x%08x' or use --force",
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

Queue create_queue(const Options& o) {
    // IPC_EXCL: a queue already under the key is never silently shared.
    int id = msgget(o.key, IPC_CREAT | IPC_EXCL | o.mode);
    if (id < 0 && errno == EEXIST)
        id = replace_existing(o);
    else if (id < 0)
        syscall_failed("msgget");
    return Queue(id);
}

// A request of another sender, held back while one sender is mid-line.
struct Held {
    pid_t pid;
    std::string text;  // the mtext as received
};

struct Client {
    enum State { kActive, kClosing, kDone };
    pid_t pid;
    uint32_t next_seq = 1;
    Tally tally = {};
    State state = kActive;
};

class Receiver {
public:
    Receiver(int qid, const Options& o) : q_(qid), opt_(o) { clients_.reserve(o.senders); }
    int run();

private:
    ssize_t next_message(int flags);
    int handle(ssize_t n);
    int hello();
    int data(Client& c);
    int end(Client& c);
    void finish(Client& c, bool clean, const char* how);
    int chat_reply(Client& c);
    bool reply(const Client& c, uint16_t kind, uint16_t flags, const void* p, size_t n);
    int drain_outbox(bool block);
    int check_senders();
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
    bool all_clean_ = true;       // every one of them said BYE
    int owner_ = -1;              // index of the sender in mid-line, or -1
    std::deque<Held> deferred_;   // other senders' requests meanwhile
    std::deque<Message> outbox_;  // replies waiting for room in the queue
    Message m_ = {};              // the request being handled
    Message r_ = {};              // the reply being built
    Writer out_{STDOUT_FILENO};
    LineReader in_{STDIN_FILENO};  // chat replies
};

int Receiver::run() {
    for (;;) {
        if (g_signal) return out_.flush() ? 1 : write_failed();
        if (int st = g_tick ? check_senders() : kGoOn; st != kGoOn) return st;
        if (done_ == opt_.senders && outbox_.empty())
            return out_.flush() ? (all_clean_ ? 0 : 1) : write_failed();
        if (int st = drain_outbox(false); st != kGoOn) return st;
        // Block only with nothing left to do: output written, replies sent.
        bool busy = out_.buffered() || !outbox_.empty();
        ssize_t n = next_message(busy ? IPC_NOWAIT : 0);
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

// The next request to handle: a deferred one when it is due, else one from
// the queue. Its size, or -1 with errno.
ssize_t Receiver::next_message(int flags) {
    auto due = deferred_.begin();
    if (const Client* o = owner())
        while (due != deferred_.end() && due->pid != o->pid) ++due;
    if (due == deferred_.end())
        return receive_message(q_, m_, kRequestType, flags);
    m_.mtype = kRequestType;
    memcpy(&m_.hdr, due->text.data(), due->text.size());
    ssize_t n = ssize_t(due->text.size());
    deferred_.erase(due);
    return n;
}

int Receiver::handle(ssize_t n) {
    if (!well_formed(m_, n)) {
        complain("ignoring a malformed message (%zd bytes)", n);
        return kGoOn;
    }
    trace("got", m_);
    if (m_.hdr.kind == kHello) return hello();
    Client* c = find(m_.hdr.pid);
    unsigned kind = m_.hdr.kind;
    if (c == nullptr || c->state == Client::kDone ||
        (kind != kData && kind != kEnd && kind != kBye && kind != kLeave)) {
        complain("ignoring %s (kind %u) from %d: not a request of a sender in session",
                 kind_name(kind), kind, int(m_.hdr.pid));
        return kGoOn;
    }
    if (owner() != nullptr && owner() != c) {  // keep it until the line ends
        const char* text = reinterpret_cast<const char*>(&m_.hdr);
        deferred_.push_back(Held{c->pid, std::string(text, size_t(n))});
        return kGoOn;
    }
    // A gap means lost or forged messages: refuse, so that a sender waiting
    // for this reply stops instead of waiting forever. LEAVE may skip ahead.
    if (m_.hdr.seq != c->next_seq && !(kind == kLeave && m_.hdr.seq > c->next_seq)) {
        complain("ignoring %s from %d: sequence %u, expected %u", kind_name(kind),
                 int(c->pid), unsigned(m_.hdr.seq), unsigned(c->next_seq));
        return reply(*c, kRefuse, 0, nullptr, 0) ? kGoOn : fail("msgsnd");
    }
    ++c->next_seq;
    if (kind == kData) return data(*c);
    if (kind == kEnd) return end(*c);
    if (kind == kBye)
        finish(*c, c->state == Client::kClosing, "said BYE before END");
    else
        finish(*c, false, "was interrupted");
    return kGoOn;
}

int Receiver::hello() {
    pid_t pid = m_.hdr.pid;
    if (pid <= 0 || find(pid) != nullptr || !alive(pid)) {
        complain("ignoring HELLO from %d: not a new, living process", int(pid));
        return kGoOn;
    }
    Client c{pid};
    if (clients_.size() == opt_.senders) {
        complain("refusing sender %d: already served %u", int(pid), opt_.senders);
        return reply(c, kRefuse, 0, nullptr, 0) ? kGoOn : fail("msgsnd");
    }
    clients_.push_back(c);
    set_watchdog(true);
    note("sender %d connected", int(pid));
    return reply(clients_.back(), kWelcome, 0, nullptr, 0) ? kGoOn : fail("msgsnd");
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
    c.tally.bytes += m_.hdr.len;
    ++c.tally.messages;
    owner_ = (m_.hdr.flags & kMore) ? int(&c - clients_.data()) : -1;
    if (!ack) return kGoOn;
    if (opt_.reply && !(m_.hdr.flags & kMore)) return chat_reply(c);  // a line per line
    return reply(c, kAck, 0, nullptr, 0) ? kGoOn : fail("msgsnd");
}

int Receiver::end(Client& c) {
    if (owner() == &c) owner_ = -1;
    if (!out_.flush()) return write_failed();
    c.state = Client::kClosing;
    note("sender %d finished: %s in %s", int(c.pid), Count(c.tally.bytes, "byte").text,
         Count(c.tally.messages, "message").text);
    return reply(c, kTally, 0, &c.tally, sizeof c.tally) ? kGoOn : fail("msgsnd");
}

// The sender is gone for good: with BYE (clean), LEAVE or death (not).
void Receiver::finish(Client& c, bool clean, const char* how) {
    if (owner() == &c) owner_ = -1;
    if (!clean)
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
    if (isatty(STDIN_FILENO) && !g_quiet) (void)fprintf(stderr, "reply to %d> ", int(c.pid));
    long max = max_data(q_);  // msg_qbytes may have been lowered since we began
    if (max < 0) return fail("msgctl");
    if (max == 0) {
        complain("the queue takes no message bigger than its header: cannot reply");
        return 1;
    }
    for (;;) {
        const char* p = nullptr;
        ssize_t n = in_.next(size_t(max), &p);
        if (n < 0 && errno == EINTR && !g_signal) continue;  // the watchdog's tick
        if (n < 0 && g_signal) return 1;  // run() will say nothing more: it is a signal
        if (n < 0) {
            syscall_failed("read");
            return 1;
        }
        bool more = n > 0 && p[n - 1] != '\n';
        if (!reply(c, kAck, more ? kMore : 0, p, size_t(n))) return fail("msgsnd");
        if (!more) return kGoOn;
    }
}

// Answers the request in m_: sends the reply now if it fits in the queue,
// else keeps it in the outbox. Blocking here could deadlock with a sender
// that waits for room to send us its request.
bool Receiver::reply(const Client& c, uint16_t kind, uint16_t flags, const void* p, size_t n) {
    r_.mtype = reply_type(c.pid);
    r_.hdr = Header{int32_t(me_), kind, flags, m_.hdr.seq, uint32_t(n)};
    if (n > 0) memcpy(r_.data, p, n);
    trace("sent", r_);
    if (outbox_.empty()) {
        if (send_message(q_, r_, IPC_NOWAIT) == 0) return true;
        if (errno != EAGAIN) return false;
    }
    outbox_.push_back(r_);
    return true;
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

// The watchdog ticked: a sender that died without a word is finished. What
// it sent before it died (data, or its LEAVE) is handled first, including
// requests held back for another sender's line: a later tick finishes it.
int Receiver::check_senders() {
    g_tick = 0;
    auto dead = [this] {
        for (const Client& c : clients_)
            if (c.state != Client::kDone && !alive(c.pid)) return true;
        return false;
    };
    if (!dead()) return kGoOn;
    for (ssize_t n; !g_signal && (n = next_message(IPC_NOWAIT)) >= 0;)
        if (int st = handle(n); st != kGoOn) return st;
    for (Client& c : clients_) {
        if (c.state == Client::kDone || alive(c.pid) || holding(c.pid)) continue;
        // Dead after its END: it has everything it asked for.
        if (c.state == Client::kClosing)
            finish(c, true, nullptr);
        else
            finish(c, false, "died");
    }
    return kGoOn;
}

int Receiver::fail(const char* call) {
    ipc_failed(call);
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
    Options opt = parse_options(argc, argv);
    g_key = opt.key;
    install_signal_handlers();
    int status = 1;
    {
        Queue queue = create_queue(opt);
        if (queue) {
            note("queue 0x%08x (id %d) ready; waiting for %u sender%s", unsigned(opt.key),
                 queue.id(), opt.senders, opt.senders == 1 ? "" : "s");
            status = Receiver(queue.id(), opt).run();
            if (!queue.remove()) status = 1;
        }
    }
    if (close(STDOUT_FILENO) < 0) {
        syscall_failed("close(stdout)");
        status = 1;
    }
    reraise_if_signalled();
    return status;
}
