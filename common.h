// common.h - the msgq-pair protocol (key, message types, kinds, the message
// struct), then the few helpers that sender.cpp and receiver.cpp share.
// README.md, "The protocol", says the same in prose.
#pragma once

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <sys/random.h>  // getentropy; glibc and the BSDs declare it in unistd.h
#endif

#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

inline constexpr const char* kVersion = "3.0.0";
inline constexpr uint32_t kProtocol = 3;  // sent in HELLO: another is refused

// ---- The key ------------------------------------------------------------
// A fixed base plus the real uid, modulo 2^32: each uid gets a key of its
// own. The one uid whose sum is 0 (IPC_PRIVATE, "always a new queue") gets
// the key of uid 2^32 - 1, which is no uid ((uid_t)-1 means "none").
inline constexpr uint32_t kKeyBase = 0x32600000;
inline key_t default_key() {
    uint32_t key = kKeyBase + uint32_t(getuid());
    return key_t(key != 0 ? key : kKeyBase - 1);
}

// ---- Message types: who reads a message (msgrcv's msgtyp) -----------------
// Every request (sender -> receiver) has type 1: the receiver reads them in
// the order they were sent. Each sender draws at random a type of its own,
// from 2 to 2^31 - 1, for its session: the receiver's replies to it have
// that type, and only that sender reads them. Types fit a 32-bit long.
inline constexpr long kRequestType = 1;
inline constexpr long kMaxType = 0x7fffffff;

// ---- Message kinds: what a message means ----------------------------------
enum Kind : uint16_t {
    // requests, type 1
    kHello = 1,  // a new session; data: Hello. Answered by WELCOME or REFUSE
    kData = 2,   // data: the next bytes of the sender's input
    kEnd = 3,    // the input ended; data: the sender's Tally. Answered by TALLY
    kBye = 4,    // the TALLY was read: the sender is done with the queue
    kLeave = 5,  // the sender stops early (a signal, an error); no answer
    // replies, of the session's type
    kWelcome = 16,  // data: the receiver's Hello
    kAck = 17,      // the DATA of this seq is written; data: a chat reply, or none
    kTally = 18,    // data: the receiver's Tally of what it wrote
    kRefuse = 19,   // data: why, in words; the session is over
};

enum Flag : uint16_t {
    kMore = 1,   // the line goes on in the next DATA (or ACK, in chat)
    kNoAck = 2,  // async DATA: not acknowledged
};

// The start of mtext. 32-bit fields only, so that the layout is the same on
// every ABI (a uint64_t is 4-byte aligned on i386, 8 on armhf); in the
// machine's byte order, since a System V queue never leaves the machine.
struct Header {
    int32_t session;  // the session's reply type, in requests and replies
    uint16_t kind;    // a Kind
    uint16_t flags;   // Flag bits
    uint32_t seq;     // the request's number: HELLO 0, then 1, 2...; a reply repeats it
    uint32_t len;     // bytes of data that follow
};
static_assert(sizeof(Header) == 16 && offsetof(Header, kind) == 4 && offsetof(Header, seq) == 8 &&
                  offsetof(Header, len) == 12,
              "the header is 16 bytes, no padding");

// 8192 is Linux's default msgmax. A message's size is that of its mtext
// (header and data), and only the data in use travels.
inline constexpr size_t kMsgMax = 8192;
inline constexpr size_t kMaxData = kMsgMax - sizeof(Header);

// The msgbuf of msgsnd(2) and msgrcv(2): a long mtype, then mtext.
struct Message {
    long mtype;
    Header hdr;
    char data[kMaxData];
};
static_assert(offsetof(Message, hdr) == sizeof(long), "mtext follows mtype");
inline constexpr size_t kTextSize = sizeof(Message) - sizeof(long);

// HELLO's data (the sender) and WELCOME's (the receiver).
struct Hello {
    uint32_t protocol;  // kProtocol
    int32_t pid;        // getpid(): the peer watches it to learn of a death
    uint32_t pid_ns;    // pid_namespace(): a pid means something only in it
};
// END's data (what the sender sent) and TALLY's (what the receiver wrote).
struct Tally {
    uint64_t bytes;     // of DATA
    uint64_t messages;  // DATA messages
    bool operator!=(const Tally& o) const { return bytes != o.bytes || messages != o.messages; }
};
static_assert(sizeof(Hello) == 12 && sizeof(Tally) == 16, "no padding");
// END and TALLY are the largest messages of fixed size: a queue or a system
// that cannot carry them can carry no session.
inline constexpr size_t kMinText = sizeof(Header) + sizeof(Tally);

inline const char* kind_name(unsigned kind) {
    switch (kind) {
    case kHello: return "HELLO";
    case kData: return "DATA";
    case kEnd: return "END";
    case kBye: return "BYE";
    case kLeave: return "LEAVE";
    case kWelcome: return "WELCOME";
    case kAck: return "ACK";
    case kTally: return "TALLY";
    case kRefuse: return "REFUSE";
    default: return "UNKNOWN";
    }
}

// n bytes received (msgrcv's result): the size agrees with the header, and a
// kind with fixed data has exactly that.
inline bool well_formed(const Message& m, ssize_t n) {
    if (n < ssize_t(sizeof(Header)) || size_t(n) != sizeof(Header) + m.hdr.len) return false;
    if (m.hdr.kind == kHello || m.hdr.kind == kWelcome) return m.hdr.len == sizeof(Hello);
    if (m.hdr.kind == kEnd || m.hdr.kind == kTally) return m.hdr.len == sizeof(Tally);
    return true;
}

inline const char* plural(unsigned long long n) { return n == 1 ? "" : "s"; }

// ---- Reporting, err(3) style: "receiver: msgrcv: Identifier removed" ---------
inline const char* g_prog = "msgq-pair";
inline bool g_quiet = false;    // -q: no status lines
inline bool g_verbose = false;  // -v: one line per message

inline void vsay(const char* fmt, va_list ap) {
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "%s: %s\n", g_prog, line);
}
// An error: always shown.
[[gnu::format(printf, 1, 2)]] inline void complain(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
}
// A status line: hidden by -q.
[[gnu::format(printf, 1, 2)]] inline void note(const char* fmt, ...) {
    if (g_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
}

// -v: the message, and the call that moved it with its msgtyp.
inline void trace(const char* call, const Message& m, int flags) {
    if (g_verbose)
        complain("%s(type %ld%s) %s seq %u, %u bytes%s", call, m.mtype,
                 (flags & IPC_NOWAIT) ? ", IPC_NOWAIT" : "", kind_name(m.hdr.kind),
                 unsigned(m.hdr.seq), unsigned(m.hdr.len), (m.hdr.flags & kMore) ? " (more)" : "");
}

// A bad command line: one line, a hint, exit status 2.
[[noreturn, gnu::format(printf, 1, 2)]] inline void usage_error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", g_prog);
    exit(2);
}

// getopt_long's '?' or ':' as one line of ours (opterr is 0). A long option
// given an argument it does not take is named as the table spells it.
[[noreturn]] inline void bad_option(int c, char** argv, const option* longopts) {
    const char* arg = argv[optind - 1];
    if (c == ':') usage_error("option '%s' needs an argument", arg);
    for (const option* o = longopts; o->name && strncmp(arg, "--", 2) == 0; ++o)
        if (o->val == optopt && optopt != 0) usage_error("option '--%s' takes no argument", o->name);
    if (optopt != 0) usage_error("unknown option '-%c'", optopt);
    usage_error("unknown option '%s'", arg);
}

// strtoll with every check (TLPI's getLong): all of s, within lo..hi. Base
// 0 takes decimal, 0x hex and 0 octal; the range is shown as documented.
inline long long parse_number(const char* s, int base, long long lo, long long hi,
                              const char* what) {
    char* end = nullptr;
    errno = 0;
    long long v = strtoll(s, &end, base);
    if (end == s || *end != '\0') usage_error("%s: not a number: '%s'", what, s);
    if (errno == ERANGE || v < lo || v > hi) {
        const char* fmt = base == 8   ? "%s: out of range (%#llo to %#llo): '%s'"
                          : base == 0 ? "%s: out of range (%#llx to %#llx): '%s'"
                                      : "%s: out of range (%lld to %lld): '%s'";
        usage_error(fmt, what, lo, hi, s);
    }
    return v;
}

// After --help or --version: the output counts, so its close is checked.
[[noreturn]] inline void exit_after_printing() {
    if (fclose(stdout) == 0) exit(0);
    complain("write: %s", strerror(errno));
    exit(1);
}

// ---- The queue's limits (msgctl(2)) -----------------------------------------
// The queue is gone: removed under us (EIDRM while blocked, EINVAL after).
inline bool queue_gone(int e) { return e == EIDRM || e == EINVAL; }

// errno after a call on queue q failed, with EINVAL told as EIDRM
// ("Identifier removed") if the queue is gone; if it is there, EINVAL
// stays (a message bigger than msgmax).
inline int ipc_errno(int q) {
    int e = errno;
    msqid_ds ds;
    return e == EINVAL && msgctl(q, IPC_STAT, &ds) < 0 ? EIDRM : e;
}

// The largest message (mtext bytes) queue q carries now, and the limit that
// sets it: msgmax refuses a bigger one, msg_qbytes would leave it waiting
// for room forever. Linux tells msgmax (IPC_INFO); elsewhere, or built with
// NO_IPC_INFO=1, it is taken to be at least 8192. bytes -1: msgctl failed.
struct Limit {
    long bytes;
    const char* name;
};
inline Limit message_limit(int q) {
    Limit lim = {long(kMsgMax), "the protocol's maximum"};
    msqid_ds ds;
    if (msgctl(q, IPC_STAT, &ds) < 0) return {-1, "msgctl(IPC_STAT)"};
    if (ds.msg_qbytes < msglen_t(lim.bytes)) lim = {long(ds.msg_qbytes), "msg_qbytes"};
#if defined(__linux__) && !defined(MSGQ_NO_IPC_INFO)
    msginfo info;
    if (msgctl(0, IPC_INFO, reinterpret_cast<msqid_ds*>(&info)) >= 0 && info.msgmax < lim.bytes)
        lim = {long(info.msgmax), "msgmax"};
#endif
    return lim;
}

// Whether queue q takes a message of size bytes now. If not, says in one
// line which limit is too small. (A failing msgctl is left to the next call
// on the queue, which will tell why.)
inline bool fits(int q, key_t key, size_t size) {
    Limit lim = message_limit(q);
    if (lim.bytes < 0 || size <= size_t(lim.bytes)) return true;
    complain("queue 0x%08x takes messages of at most %ld bytes (%s): too small for one of %zu",
             unsigned(key), lim.bytes, lim.name, size);
    return false;
}

// ---- Is the peer alive? (proc(5), pid_namespaces(7)) ------------------------
// Our PID namespace: the inode of /proc/self/ns/pid, 0 where none is shown
// (no /proc, not Linux). A pid names the same process only within one.
inline uint32_t pid_namespace() {
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? uint32_t(st.st_ino) : 0;
}

// When process pid started (field 22 of /proc/PID/stat, clock ticks since
// boot): 0 if it is gone or a zombie; -1 if /proc cannot tell (there is
// none, or it shows another PID namespace than ours).
inline long long start_time(pid_t pid) {
    char path[64], me[32], line[512];
    ssize_t n = readlink("/proc/self", path, sizeof path - 1);
    snprintf(me, sizeof me, "%d", int(getpid()));
    if (n < 0 || size_t(n) != strlen(me) || memcmp(path, me, size_t(n)) != 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    n = read(fd, line, sizeof line - 1);
    close(fd);
    line[n > 0 ? n : 0] = '\0';
    const char* name_end = strrchr(line, ')');  // "PID (NAME) STATE ...": NAME may hold ')'
    char state = 0;
    unsigned long long start = 0;
    if (!name_end || sscanf(name_end + 2, "%c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s"
                                          " %*s %*s %*s %*s %*s %llu", &state, &start) != 2)
        return -1;
    return state == 'Z' || state == 'X' ? 0 : (long long)start;
}

// A peer as seen when it said HELLO or WELCOME. Its start time tells it from
// another process given its pid later; where /proc cannot tell, kill(2)
// decides (and a zombie passes for alive until its parent reaps it).
struct Peer {
    pid_t pid = 0;  // 0: none yet
    long long start = -1;
};
inline Peer peer(pid_t pid) { return Peer{pid, start_time(pid)}; }
inline bool alive(const Peer& p) {
    long long now = start_time(p.pid);
    if (now < 0 || p.start < 0) return kill(p.pid, 0) == 0 || errno == EPERM;
    return now > 0 && now == p.start;
}

// ---- Signals (signal(7)) ----------------------------------------------------
// The handlers only set these; the loops look at them before blocking and
// when a call fails with EINTR. msgsnd and msgrcv are never restarted after
// a handler, and SA_RESTART is not set, so that read and write end too.
inline volatile sig_atomic_t g_signal = 0;  // a stop signal came: its number
inline volatile sig_atomic_t g_tick = 0;    // the one-second watchdog fired
extern "C" inline void on_stop(int sig) { g_signal = sig; }
extern "C" inline void on_tick(int) { g_tick = 1; }

inline void catch_signal(int sig, void (*handler)(int), sigset_t* caught) {
    struct sigaction sa = {}, old = {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    // One ignored when we started (a background job's SIGINT) stays ignored.
    if (sigaction(sig, nullptr, &old) == 0 && (old.sa_handler != SIG_IGN || sig == SIGALRM) &&
        sigaction(sig, &sa, nullptr) == 0)
        sigaddset(caught, sig);
}

// Catches the signals that end a process by default and that people send
// to stop one; ticks once a second (SIGALRM) so that no blocked call waits
// without a look at the peer; ignores SIGPIPE and SIGXFSZ, so that a closed
// pipe or a file-size limit is a write error we report (EPIPE, EFBIG). The
// mask is inherited across exec: unblock what we catch.
inline void install_signal_handlers() {
    sigset_t caught;
    sigemptyset(&caught);
    const int stop_signals[] = {SIGHUP,  SIGINT,  SIGQUIT,   SIGTERM, SIGUSR1,
                                SIGUSR2, SIGXCPU, SIGVTALRM, SIGPROF};
    for (int sig : stop_signals) catch_signal(sig, on_stop, &caught);
#if defined(SIGRTMIN)
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) catch_signal(sig, on_stop, &caught);
#endif
    catch_signal(SIGALRM, on_tick, &caught);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &caught, nullptr);
    itimerval second = {{1, 0}, {1, 0}};
    setitimer(ITIMER_REAL, &second, nullptr);
}

// After cleaning up: die of the stop signal, so that the shell sees 128+N.
inline void die_if_signalled() {
    if (g_signal == 0) return;
    signal(g_signal, SIG_DFL);
    raise(g_signal);
}

// ---- Input and output ---------------------------------------------------------
// A descriptor left non-blocking by whoever started us (the flag belongs to
// the open file they share): wait until it is ready. False on EINTR.
inline bool wait_ready(int fd, short events) {
    pollfd p = {fd, events, 0};
    return poll(&p, 1, -1) >= 0;
}

// Writes all of p. False with errno on a write error, or EINTR on a stop
// signal (the watchdog's ticks are ridden out).
inline bool write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EAGAIN && wait_ready(fd, POLLOUT)) continue;
        if (w < 0 && errno == EINTR && !g_signal) continue;
        if (w < 0) return false;
        p += w;
        n -= size_t(w);
    }
    return true;
}

// Reports an error the kernel kept until the close (NFS, a quota), as cat(1)
// does. A stdout that was closed from the start (EBADF) wrote nothing.
inline bool close_stdout() {
    if (close(STDOUT_FILENO) == 0 || errno == EBADF) return true;
    complain("close(stdout): %s", strerror(errno));
    return false;
}

// Reads fd in 64 KiB blocks and hands it out in chunks of at most max bytes
// that end at a newline where one comes soon enough: a line longer than max
// is split, never cut.
class LineReader {
public:
    explicit LineReader(int fd) : fd_(fd) {}
    // A chunk at *out, of the length returned; 0 at the end of the input; -1
    // with errno on a read error (EINTR: call again, nothing is lost).
    ssize_t next(size_t max, const char** out) {
        for (;;) {
            size_t n = end_ - begin_ < max ? end_ - begin_ : max;
            const void* nl = memchr(buf_ + begin_, '\n', n);
            if (nl) n = size_t(static_cast<const char*>(nl) - (buf_ + begin_)) + 1;
            if (n > 0 && (nl || n == max || eof_)) {
                *out = buf_ + begin_;
                begin_ += n;
                return ssize_t(n);
            }
            if (eof_) return 0;
            if (!fill()) return -1;
        }
    }

private:
    bool fill() {
        memmove(buf_, buf_ + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
        ssize_t r;
        while ((r = read(fd_, buf_ + end_, sizeof buf_ - end_)) < 0 && errno == EAGAIN)
            if (!wait_ready(fd_, POLLIN)) return false;
        if (r == 0) eof_ = true;
        if (r > 0) end_ += size_t(r);
        return r >= 0;
    }

    int fd_;
    bool eof_ = false;
    size_t begin_ = 0, end_ = 0;  // the bytes read, not yet handed out
    char buf_[64 * 1024];
    static_assert(sizeof buf_ >= kMaxData, "a chunk fits");
};
