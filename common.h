// common.h - the msgq-pair protocol (README.md, "The protocol"): the key, the message types, the
// message struct; then the helpers both programs share.
#pragma once

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/msg.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

inline constexpr const char* kVersion = "4.0.0";
inline constexpr uint32_t kProtocol = 4;  // in HELLO: a sender of another protocol is refused

// The default key: a fixed base plus the uid, so that each user has their own. The uid whose sum is
// 0 (IPC_PRIVATE: always a new queue) gets uid 2^32 - 1's.
inline key_t default_key() {
    uint32_t key = 0x32600000 + uint32_t(getuid());
    return key_t(key != 0 ? key : 0x325fffff);
}

// Message types (msgtyp in msgrcv(2)). The receiver reads with msgtyp -2, the lowest type first:
// the sender being served before newcomers. Each sender draws a reply type of its own at random,
// and only it reads that type.
inline constexpr long kSessionType = 1;     // requests of the sender being served
inline constexpr long kNewcomerType = 2;    // HELLO, and BYE from a sender still waiting
inline constexpr long kRequestsFirst = -2;  // the receiver's msgtyp: types 1 and 2, 1 first
inline constexpr long kFirstReplyType = 3, kLastReplyType = 0x7fffffff;  // a 32-bit long

enum Kind : uint16_t {
    kHello = 1,  // sender: let me in; data: its Hello. Answer: WAIT, WELCOME or REFUSE
    kData,       // sender: bytes of its input. Answer: ACK, unless flagged NOACK
    kEnd,        // sender: my input has ended; data: its Tally. Answer: TALLY
    kBye,        // sender: I am done with the queue; data: empty, or why it stops early
    kWait,       // receiver: another sender goes first; data: the receiver's Hello
    kWelcome,    // receiver: your turn; data: the receiver's Hello
    kAck,        // receiver: that DATA is written; data: a chat reply, or none
    kTally,      // receiver: data: the Tally of what it wrote for you
    kRefuse,     // receiver: no session for you; data: why, in ASCII words
};
enum Flag : uint16_t {
    kMore = 1,   // DATA (or a chat ACK) whose line goes on in the next one
    kNoAck = 2,  // async DATA: the receiver sends no ACK
};
inline const char* kind_name(unsigned kind) {
    const char* names[] = {"UNKNOWN", "HELLO",   "DATA", "END",   "BYE",
                           "WAIT",    "WELCOME", "ACK",  "TALLY", "REFUSE"};
    return names[kind <= kRefuse ? kind : 0];
}

// The start of mtext. No field over 32 bits, so that the layout is the same on every ABI; native
// byte order, as a queue never leaves its machine.
struct Header {
    int32_t session;  // the sender's reply type: whose request or reply this is
    uint16_t kind;    // a Kind
    uint16_t flags;   // Flag bits
    int32_t pid;      // the sender's pid, in its requests and in the replies to it
    uint32_t len;     // bytes of data after the header
};
// The msgbuf of msgsnd(2) and msgrcv(2): a long mtype, then mtext. Their size argument counts mtext
// only: the header and the len bytes of data in use.
inline constexpr size_t kMsgMax = 8192;  // mtext bytes at most: Linux's default msgmax
struct Message {
    long mtype;
    Header hdr;
    char data[kMsgMax - sizeof(Header)];
};
inline constexpr size_t kTextSize = sizeof(Message) - sizeof(long);
static_assert(sizeof(Header) == 16 && offsetof(Message, hdr) == sizeof(long), "no padding");

struct Hello {          // HELLO's data (the sender), WAIT's and WELCOME's (the receiver)
    uint32_t protocol;  // kProtocol
    int32_t pid;        // getpid(): the peer watches it to see a death
    uint32_t pid_ns;    // its PID namespace: a pid names a process only within one
    uint32_t start;     // start_time(pid) modulo 2^32, or 0: tells it from a later process
};
struct Tally {          // END's data (what was sent), TALLY's (what was written)
    uint64_t bytes;     // of DATA
    uint64_t messages;  // DATA messages
    bool operator==(const Tally& o) const { return bytes == o.bytes && messages == o.messages; }
};
static_assert(sizeof(Hello) == 16 && sizeof(Tally) == 16, "no padding");
// END and TALLY, the largest fixed messages: a queue too small for them carries no session.
inline constexpr size_t kMinText = sizeof(Header) + sizeof(Tally);

// Whether n bytes from msgrcv agree with the header and its kind.
inline bool well_formed(const Message& m, ssize_t n) {
    if (n < ssize_t(sizeof(Header)) || size_t(n) != sizeof(Header) + m.hdr.len) return false;
    if (m.hdr.kind == kHello || m.hdr.kind == kWait || m.hdr.kind == kWelcome)
        return m.hdr.len == sizeof(Hello);
    return (m.hdr.kind != kEnd && m.hdr.kind != kTally) || m.hdr.len == sizeof(Tally);
}

// ---- Lines on stderr, as err(3) writes them: "receiver: msgrcv: Identifier removed"
inline const char* g_prog = "msgq-pair";
inline bool g_quiet = false;    // -q: no status lines
inline bool g_verbose = false;  // -v: a line for each message

[[gnu::format(printf, 2, 0)]] inline void say(bool status, const char* fmt, va_list ap) {
    char line[512];  // one write: lines of processes sharing a stderr do not mix
    vsnprintf(line, sizeof line, fmt, ap);
    if (!status || !g_quiet) fprintf(stderr, "%s: %s\n", g_prog, line);
}
// complain: something went wrong, the program goes on. note: a status line, unless -q.
[[gnu::format(printf, 1, 2)]] inline void complain(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(false, fmt, ap);
    va_end(ap);
}
[[gnu::format(printf, 1, 2)]] inline void note(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(true, fmt, ap);
    va_end(ap);
}
inline const char* plural(unsigned long long n) { return n == 1 ? "" : "s"; }

// An error that ends the program: thrown at the failing call and caught in main, which says it,
// cleans up (the receiver removes the queue, the sender says BYE) and exits 1. Its line needs no
// heap, so out of memory can be said.
struct Fatal {
    char line[300];
    bool removed;  // the queue was removed (EIDRM): main says who may have done it
};
[[noreturn, gnu::format(printf, 1, 2)]] inline void fail(const char* fmt, ...) {
    Fatal f = {"", false};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f.line, sizeof f.line, fmt, ap);
    va_end(ap);
    throw f;
}

// -v: the call, the message's type (and IPC_NOWAIT), its kind and sender's pid, so that a student
// sees the turns: "msgrcv(type 1) DATA, pid 4711, 12 bytes".
inline void trace(const char* call, const Message& m, int flags = 0) {
    if (!g_verbose) return;
    fprintf(stderr, "%s: %s(type %ld%s) %s, pid %d, %u bytes%s\n", g_prog, call, m.mtype,
            (flags & IPC_NOWAIT) ? ", IPC_NOWAIT" : "", kind_name(m.hdr.kind), int(m.hdr.pid),
            unsigned(m.hdr.len), (m.hdr.flags & kMore) ? " (more)" : "");
}

// ---- The command line -------------------------------------------------------------
[[noreturn, gnu::format(printf, 1, 2)]] inline void usage_error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(false, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", g_prog);
    exit(2);
}

// getopt_long found a bad option (opterr is 0: we say it). optopt names it: its letter, or the
// val of a long option, or 0 for an unknown long option. After a missing argument POSIX lets
// optind pass argc (musl does), so argv[optind - 1] is read only for that last case.
[[noreturn]] inline void bad_option(int c, char** argv, const option* longopts) {
    const option* o = longopts;  // the option named, if it is ours
    while (o->name != nullptr && (optopt == 0 || o->val != optopt)) ++o;
    if (o->name != nullptr && c == ':')  // "-k" or "--key" at the end
        usage_error("option '--%s' (-%c) needs an argument", o->name, optopt);
    if (o->name != nullptr)  // "--async=yes"
        usage_error("option '--%s' (-%c) takes no argument", o->name, optopt);
    if (optopt != 0) usage_error("unknown option '-%c'", optopt);  // "-x"
    usage_error("unknown option '%s'", argv[optind - 1]);          // "--bogus"
}

// A number in lo..hi, all of s, checked as TLPI's getLong does. Base 0 takes decimal, 0x hex and 0
// octal.
inline long long parse_number(const char* s, int base, long long lo, long long hi,
                              const char* what) {
    char* end = nullptr;
    errno = 0;
    long long v = strtoll(s, &end, base);
    if (end == s || *end != '\0') usage_error("%s: not a number: '%s'", what, s);
    if (errno != ERANGE && v >= lo && v <= hi) return v;
    if (base == 8) usage_error("%s: out of range (%#llo to %#llo): '%s'", what, lo, hi, s);
    if (base == 0) usage_error("%s: out of range (%#llx to %#llx): '%s'", what, lo, hi, s);
    usage_error("%s: out of range (%lld to %lld): '%s'", what, lo, hi, s);
}

// After --help or --version: that the text was written counts too.
[[noreturn]] inline void exit_after_printing() {
    if (fclose(stdout) == 0) exit(0);
    complain("write: %s", strerror(errno));
    exit(1);
}

// ---- The queue (msgctl(2)) ----------------------------------------------------------
// Why a call on queue q failed: errno. A removed queue ends a blocked call with EIDRM but later
// calls with EINVAL: that is EIDRM too.
inline int queue_errno(int q) {
    int e = errno;
    msqid_ds ds;
    return e == EINVAL && msgctl(q, IPC_STAT, &ds) < 0 ? EIDRM : e;
}
// A failed call on queue q ends the program: "msgrcv: Identifier removed (queue 0x32600000)".
[[noreturn]] inline void queue_failed(const char* call, int q, key_t key) {
    int e = queue_errno(q);
    Fatal f = {"", e == EIDRM};
    snprintf(f.line, sizeof f.line, "%s: %s (queue 0x%08x)", call, strerror(e), unsigned(key));
    throw f;
}
// Who else removes a queue: a person, or systemd-logind (README: Troubleshooting).
inline constexpr const char* kRemovers =
    "'ipcrm -Q', or systemd-logind (RemoveIPC=yes) as your last login session ended";

// The uid other than ours that owns or created a queue, or kNoUid if both are us. A creator keeps
// its rights over a queue it handed over with IPC_SET.
inline constexpr uid_t kNoUid = uid_t(-1);
inline uid_t foreign_uid(const ipc_perm& p) {
    if (p.uid != getuid()) return p.uid;
    return p.cuid != getuid() ? p.cuid : kNoUid;
}

// The largest message (mtext bytes) queue q takes now: msgsnd refuses a larger one (msgmax: EINVAL)
// or waits for room for ever (msg_qbytes). Linux tells msgmax (IPC_INFO); other systems, and
// NO_IPC_INFO=1 builds, assume 8192.
inline long message_limit(int q, key_t key, const char** limit) {
    long bytes = long(kMsgMax);
    *limit = "the protocol's maximum";
    msqid_ds ds;
    if (msgctl(q, IPC_STAT, &ds) < 0) queue_failed("msgctl(IPC_STAT)", q, key);
    if (ds.msg_qbytes < msglen_t(bytes)) bytes = long(ds.msg_qbytes), *limit = "msg_qbytes";
#if defined(__linux__) && !defined(MSGQ_NO_IPC_INFO)
    msginfo info;  // IPC_INFO fills a struct msginfo through msgctl's msqid_ds pointer
    if (msgctl(0, IPC_INFO, reinterpret_cast<msqid_ds*>(&info)) >= 0 && info.msgmax < bytes)
        bytes = info.msgmax, *limit = "msgmax";
#endif
    return bytes;
}

// Ends the program if queue q cannot take a message of size bytes (mtext).
inline void check_fits(int q, key_t key, size_t size) {
    const char* limit;
    long bytes = message_limit(q, key, &limit);
    if (size > size_t(bytes))
        fail("queue 0x%08x takes messages of at most %ld bytes (%s): too small for one of %zu",
             unsigned(key), bytes, limit, size);
}

// ---- Is the peer alive? (proc(5), pid_namespaces(7)) --------------------------------
// When process pid started: field 22 of /proc/PID/stat, in clock ticks since boot; its state (field
// 3: R, S, T for stopped, Z...) in *state if asked. 0: it is gone (ENOENT), or a zombie. -1: /proc
// cannot tell (none is mounted, it shows another PID namespace, or open failed: EMFILE, EACCES).
inline long long start_time(pid_t pid, char* state = nullptr) {
    char self[32] = "", path[64], line[512];
    if (readlink("/proc/self", self, sizeof self - 1) < 0 || atoi(self) != getpid()) return -1;
    // Our own through thread-self (the same for our one thread): qemu-user, which runs the 32-bit
    // builds on a 64-bit-only kernel, rewrites /proc/self/stat and /proc/OURPID/stat.
    if (pid == getpid()) snprintf(path, sizeof path, "/proc/thread-self/stat");
    else snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ESRCH ? 0 : -1;
    ssize_t n = read(fd, line, sizeof line - 1);
    close(fd);
    line[n > 0 ? n : 0] = '\0';
    // "4711 (sender) S 1 4711 ...": fields are split by spaces, but NAME may hold ')' and ' '.
    const char* p = strrchr(line, ')');
    if (p == nullptr || p[1] != ' ') return -1;
    char field3 = p[2];
    if (state != nullptr) *state = field3;
    for (int field = 3; p != nullptr && field <= 22; ++field) p = strchr(p + 1, ' ');
    if (p == nullptr) return -1;  // p is now just before field 22
    return field3 == 'Z' || field3 == 'X' ? 0 : strtoll(p + 1, nullptr, 10);
}

// Whether the process a Hello describes still runs: its pid, with the same start time, so that a
// later process given that pid is not taken for it. Where /proc cannot tell, kill(2) does (a zombie
// passes until it is reaped).
inline bool alive(const Hello& h) {
    long long now = start_time(h.pid);
    if (now < 0 || h.start == 0) return kill(h.pid, 0) == 0 || errno == EPERM;
    return uint32_t(now) == h.start;
}

// Our own Hello, as HELLO, WAIT and WELCOME carry it. Our PID namespace is the inode of
// /proc/self/ns/pid, or 0 where there is none.
inline Hello my_hello() {
    struct stat ns;
    long long start = start_time(getpid());
    return Hello{kProtocol, int32_t(getpid()),
                 stat("/proc/self/ns/pid", &ns) == 0 ? uint32_t(ns.st_ino) : 0,
                 uint32_t(start > 0 ? start : 0)};
}

// Seconds on the monotonic clock, which a step of the wall clock (date -s) does not move.
inline double monotonic_seconds() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return double(t.tv_sec) + double(t.tv_nsec) / 1e9;
}

// Installed setuid, a program would make or use queues of its owner's uid, and the other one, run
// by you, would refuse them: it refuses to run so instead.
inline void refuse_setuid() {
    if (getuid() == geteuid()) return;
    complain(
        "refusing to run setuid: real uid %u, effective uid %u (install it without the setuid"
        " bit)",
        unsigned(getuid()), unsigned(geteuid()));
    exit(1);
}

// ---- Signals (signal(7)) --------------------------------------------------------------
// The handlers only set these flags. Without SA_RESTART a blocked call then fails with EINTR
// (msgsnd and msgrcv never restart), and its caller looks.
inline volatile sig_atomic_t g_signal = 0;  // a stop signal came: its number
inline volatile sig_atomic_t g_tick = 0;    // the one-second SIGALRM came
extern "C" inline void on_stop(int sig) { g_signal = sig; }
extern "C" inline void on_tick(int) { g_tick = 1; }

// The signals people send to stop a process, besides the real-time ones.
inline constexpr int kStopSignals[] = {SIGHUP,  SIGINT,  SIGQUIT,   SIGTERM, SIGUSR1,
                                       SIGUSR2, SIGXCPU, SIGVTALRM, SIGPROF};
inline const char* signal_name(int sig) {
    static const char* const names[] = {"SIGHUP",  "SIGINT",  "SIGQUIT",   "SIGTERM", "SIGUSR1",
                                        "SIGUSR2", "SIGXCPU", "SIGVTALRM", "SIGPROF"};
    for (size_t i = 0; i < sizeof names / sizeof *names; ++i)
        if (kStopSignals[i] == sig) return names[i];
    return "a real-time signal";
}

// Catches the stop signals, but one ignored when we started (a background job's SIGINT) stays
// ignored. SIGALRM comes once a second: a peer killed with kill -9 sends no message, so every
// blocked call is ended (EINTR) that often, to look whether the peer still lives. SIGPIPE and
// SIGXFSZ are ignored: a closed pipe or a file-size limit is then a write error (EPIPE, EFBIG).
// The caught ones are unblocked: a blocked mask survives exec.
inline void install_signal_handlers() {
    sigset_t caught;
    sigemptyset(&caught);
    auto catch_signal = [&caught](int sig, void (*handler)(int)) {
        struct sigaction sa = {}, old;
        sa.sa_handler = handler;
        sigemptyset(&sa.sa_mask);
        if (sigaction(sig, nullptr, &old) < 0) return;
        if (old.sa_handler == SIG_IGN && sig != SIGALRM) return;
        if (sigaction(sig, &sa, nullptr) == 0) sigaddset(&caught, sig);
    };
    for (int sig : kStopSignals) catch_signal(sig, on_stop);
#if defined(SIGRTMIN)
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) catch_signal(sig, on_stop);
#endif
    catch_signal(SIGALRM, on_tick);
    signal(SIGPIPE, SIG_IGN);  // cannot fail: valid signals
    signal(SIGXFSZ, SIG_IGN);
    itimerval second = {{1, 0}, {1, 0}};
    if (sigprocmask(SIG_UNBLOCK, &caught, nullptr) < 0 ||
        setitimer(ITIMER_REAL, &second, nullptr) < 0) {
        complain("setting up signals: %s", strerror(errno));
        exit(1);
    }
}

// A stop signal between two calls, which it could not interrupt, ends the program before the next
// blocking call.
inline void stop_if_signalled() {
    if (g_signal) fail("interrupted by %s", signal_name(g_signal));
}
// A blocked call failed with EINTR: a stop signal ends the program, naming the call; after the tick
// the caller looks at its peer, then calls again.
inline void after_eintr(const char* call) {
    if (g_signal) fail("%s: %s (%s)", call, strerror(EINTR), signal_name(g_signal));
}
// After main's cleanup: die of the stop signal, so that the shell sees 128 + it.
inline void die_if_signalled() {
    if (g_signal == 0) return;
    signal(g_signal, SIG_DFL);
    raise(g_signal);
}

// ---- Input and output -----------------------------------------------------------------
// A descriptor our parent left non-blocking (EAGAIN): waits until it is ready. False if the tick
// came first.
inline bool wait_ready(int fd, short events) {
    pollfd p = {fd, events, 0};
    if (poll(&p, 1, -1) >= 0) return true;
    if (errno == EINTR) after_eintr("poll");
    return false;
}

// Writes all of p to fd. A stalled reader is waited for as long as it takes: the tick only retries,
// a stop signal ends the program.
inline void write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w >= 0) p += w, n -= size_t(w);
        else if (errno == EAGAIN) wait_ready(fd, POLLOUT);
        else if (errno == EINTR) after_eintr("write");
        else fail("write: %s", strerror(errno));
    }
}

// An error the kernel kept until the close (NFS, a quota), as cat(1) checks; false once said. A
// stdout closed from the start (EBADF) had nothing written.
inline bool close_stdout() {
    if (close(STDOUT_FILENO) == 0 || errno == EBADF) return true;
    complain("close(stdout): %s", strerror(errno));
    return false;
}

// Reads fd 64 KiB at a time and hands it out in pieces of at most max bytes: a line (through its
// newline), or with any_bytes all that has been read. A line longer than max comes in pieces of
// max bytes: split, never cut.
class LineReader {
public:
    explicit LineReader(int fd) : fd_(fd) {}

    // The next piece at *out, its length returned; 0 at the end of the input; -1 when the tick
    // came (call again: nothing is lost).
    ssize_t next(size_t max, const char** out, bool any_bytes = false) {
        for (;;) {
            const char* start = buf_ + begin_;
            size_t n = end_ - begin_ < max ? end_ - begin_ : max;  // what the piece may hold
            size_t cut = n;                                        // with any_bytes, all of it
            if (!any_bytes) {
                const char* newline = static_cast<const char*>(memchr(start, '\n', n));
                if (newline != nullptr) cut = size_t(newline - start) + 1;  // one line
                else if (n < max && !eof_) cut = 0;  // the line goes on: read more first
            }
            if (cut > 0) {
                *out = start;
                begin_ += cut;
                return ssize_t(cut);
            }
            if (eof_) return 0;
            if (!fill()) return -1;
        }
    }

private:
    // Reads more after what is left; false if the tick came first. A read error or a stop signal
    // ends the program.
    bool fill() {
        memmove(buf_, buf_ + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
        ssize_t r = read(fd_, buf_ + end_, sizeof buf_ - end_);
        if (r >= 0) {
            eof_ = r == 0;
            end_ += size_t(r);
            return true;
        }
        if (errno == EAGAIN) return wait_ready(fd_, POLLIN);
        if (errno != EINTR) fail("read: %s", strerror(errno));
        after_eintr("read");
        return false;
    }

    int fd_;
    bool eof_ = false;
    size_t begin_ = 0, end_ = 0;  // buf_[begin_, end_): read, not yet handed out
    char buf_[64 * 1024];
};
