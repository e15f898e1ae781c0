// common.h - the msgq-pair protocol (key, message types, kinds, the message
// struct; README.md, "The protocol"), then the helpers both programs share.
#pragma once

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/msg.h>
#include <sys/stat.h>
#include <sys/time.h>
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
inline constexpr uint32_t kProtocol = 3;  // in HELLO: a sender of another is refused

// The default key: a fixed base plus the uid, modulo 2^32: each uid has its
// own. The uid whose sum is 0 (IPC_PRIVATE: always a new queue) gets that of
// uid 2^32 - 1, which is no uid ((uid_t)-1 means "none").
inline constexpr uint32_t kKeyBase = 0x32600000;
inline key_t default_key() {
    uint32_t key = kKeyBase + uint32_t(getuid());
    return key_t(key != 0 ? key : kKeyBase - 1);
}

// Message types (msgrcv's msgtyp). Every request has type 1, so that the
// receiver reads them in the order they were sent. Each sender draws a type
// of its own, 2 to 2^31 - 1, for its session: the receiver's replies to it
// have that type, and only that sender reads them. All fit a 32-bit long.
inline constexpr long kRequestType = 1;
inline constexpr long kMaxType = 0x7fffffff;

enum Kind : uint16_t {
    kHello = 1,  // request: a new session; data: Hello. Answer: WELCOME or REFUSE
    kData,       // request: the next bytes of the input. Answer: ACK, unless NOACK
    kEnd,        // request: the input ended; data: the sender's Tally. Answer: TALLY
    kBye,        // request: TALLY read; the sender is done with the queue
    kLeave,      // request: the sender stops early (a signal, an error)
    kWelcome,    // reply: data: the receiver's Hello
    kAck,        // reply: that DATA is written; data: a chat reply, or none
    kTally,      // reply: data: the receiver's Tally of what it wrote
    kRefuse,     // reply: data: why, in words; the session is over
};
enum Flag : uint16_t {
    kMore = 1,   // the line goes on in the next DATA (or ACK, in chat)
    kNoAck = 2,  // async DATA: not acknowledged
};
inline const char* kind_name(unsigned kind) {
    static const char* const names[] = {"UNKNOWN", "HELLO",   "DATA", "END",   "BYE",
                                        "LEAVE",   "WELCOME", "ACK",  "TALLY", "REFUSE"};
    return names[kind <= kRefuse ? kind : 0];
}

// The start of mtext. Only 32-bit fields, so that the layout is the same on
// every ABI (a uint64_t is 4-byte aligned on i386, 8 on armhf). Native byte
// order: a System V queue never leaves its machine.
struct Header {
    int32_t session;  // the session's reply type, in its requests and replies
    uint16_t kind;    // a Kind
    uint16_t flags;   // Flag bits
    uint32_t seq;     // the request's number (HELLO 0, then 1, 2...); a reply repeats it
    uint32_t len;     // bytes of data that follow
};
static_assert(sizeof(Header) == 16 && offsetof(Header, seq) == 8, "no padding");

inline constexpr size_t kMsgMax = 8192;  // mtext bytes at most: Linux's default msgmax
inline constexpr size_t kMaxData = kMsgMax - sizeof(Header);

// The msgbuf of msgsnd(2) and msgrcv(2): a long mtype, then mtext. Their
// sizes count mtext only, of which the header and the data in use travel.
struct Message {
    long mtype;
    Header hdr;
    char data[kMaxData];
};
static_assert(offsetof(Message, hdr) == sizeof(long), "mtext follows mtype");
inline constexpr size_t kTextSize = sizeof(Message) - sizeof(long);

struct Hello {          // HELLO's data (the sender), WELCOME's (the receiver)
    uint32_t protocol;  // kProtocol
    int32_t pid;        // getpid(): the peer watches it to learn of a death
    uint32_t pid_ns;    // pid_namespace(): where that pid names this process
};
struct Tally {          // END's data (sent), TALLY's (written): they must agree
    uint64_t bytes;     // of DATA
    uint64_t messages;  // DATA messages
    bool operator!=(const Tally& o) const { return bytes != o.bytes || messages != o.messages; }
};
static_assert(sizeof(Hello) == 12 && sizeof(Tally) == 16, "no padding");
// END and TALLY are the largest messages of fixed size (32 bytes): a queue
// that cannot carry them carries no session.
inline constexpr size_t kMinText = sizeof(Header) + sizeof(Tally);

// n bytes received (msgrcv's result) agree with the header, and with the kind.
inline bool well_formed(const Message& m, ssize_t n) {
    if (n < ssize_t(sizeof(Header)) || size_t(n) != sizeof(Header) + m.hdr.len) return false;
    switch (m.hdr.kind) {
    case kHello:
    case kWelcome: return m.hdr.len == sizeof(Hello);
    case kEnd:
    case kTally: return m.hdr.len == sizeof(Tally);
    default: return true;
    }
}

// ---- Reporting on stderr, err(3) style: "receiver: msgrcv: Identifier removed"
inline const char* g_prog = "msgq-pair";
inline bool g_quiet = false;    // -q: no status lines
inline bool g_verbose = false;  // -v: one line per message

inline void vsay(const char* prefix, const char* fmt, va_list ap) {
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "%s: %s%s\n", g_prog, prefix, line);
}
// An error. False, so that a failing step can `return complain(...)`.
[[gnu::format(printf, 1, 2)]] inline bool complain(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
    return false;
}
// Junk: said, then skipped. True: go on.
[[gnu::format(printf, 1, 2)]] inline bool ignoring(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay("ignoring ", fmt, ap);
    va_end(ap);
    return true;
}
// A status line, unless -q.
[[gnu::format(printf, 1, 2)]] inline void note(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (!g_quiet) vsay("", fmt, ap);
    va_end(ap);
}
inline const char* plural(unsigned long long n) { return n == 1 ? "" : "s"; }

// -v: a message, the call that moved it and its msgtyp (and flags), and who
// sent it if known: "receiver: msgrcv(type 1) DATA seq 3 from 4711, 12 bytes".
inline void trace(const char* call, const Message& m, int flags, pid_t from = 0) {
    if (!g_verbose) return;
    char who[24] = "";
    if (from > 0) snprintf(who, sizeof who, " from %d", int(from));
    fprintf(stderr, "%s: %s(type %ld%s) %s seq %u%s, %u bytes%s\n", g_prog, call, m.mtype,
            (flags & IPC_NOWAIT) ? ", IPC_NOWAIT" : "", kind_name(m.hdr.kind), unsigned(m.hdr.seq),
            who, unsigned(m.hdr.len), (m.hdr.flags & kMore) ? " (more)" : "");
}

// ---- The command line -----------------------------------------------------------
[[noreturn, gnu::format(printf, 1, 2)]] inline void usage_error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", g_prog);
    exit(2);
}

// getopt_long's '?' (unknown) or ':' (argument missing) in one line of ours
// (opterr is 0). For "--async=yes", glibc sets optopt to the option's val:
// it is named as the table spells it, however it was abbreviated.
[[noreturn]] inline void bad_option(int c, char** argv, const option* longopts) {
    const char* arg = argv[optind - 1];
    if (c == ':') usage_error("option '%s' needs an argument", arg);
    if (strncmp(arg, "--", 2) == 0 && optopt != 0)
        for (const option* o = longopts; o->name != nullptr; ++o)
            if (o->val == optopt) usage_error("option '--%s' takes no argument", o->name);
    if (optopt != 0) usage_error("unknown option '-%c'", optopt);
    usage_error("unknown option '%s'", arg);
}

// strtoll with every check (TLPI's getLong): all of s, in lo..hi. Base 0
// takes decimal, 0x hex and 0 octal.
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

// After --help or --version: the output counts, so its close is checked.
[[noreturn]] inline void exit_after_printing() {
    if (fclose(stdout) == 0) exit(0);
    complain("write: %s", strerror(errno));
    exit(1);
}

// ---- The queue (msgctl(2)) ----------------------------------------------------
// errno of a failed call on queue q. A removed queue gives EIDRM to a call
// blocked on it, EINVAL to later ones: that EINVAL is made EIDRM too.
inline int ipc_errno(int q) {
    int e = errno;
    msqid_ds ds;
    return e == EINVAL && q >= 0 && msgctl(q, IPC_STAT, &ds) < 0 ? EIDRM : e;
}

// Who else owns or created a queue (a creator keeps its rights after handing
// the queue over with IPC_SET): that uid, or kNoUid if both are us.
inline constexpr uid_t kNoUid = uid_t(-1);
inline uid_t foreign_uid(const ipc_perm& p) {
    uid_t me = getuid();
    if (p.uid != me) return p.uid;
    return p.cuid != me ? p.cuid : kNoUid;
}

// The largest message (mtext bytes) queue q carries now, and the limit that
// sets it: msgsnd refuses a bigger one (msgmax: EINVAL) or lets it wait for
// room forever (msg_qbytes). msgmax is known on Linux (IPC_INFO); elsewhere,
// or built with NO_IPC_INFO=1, it is taken to be 8192 or more.
struct Limit {
    long bytes;        // -1: msgctl(IPC_STAT) failed, errno set
    const char* name;  // "msgmax", "msg_qbytes" or "the protocol's maximum"
};
inline Limit message_limit(int q) {
    Limit lim = {long(kMsgMax), "the protocol's maximum"};
    msqid_ds ds;
    if (msgctl(q, IPC_STAT, &ds) < 0) return {-1, ""};
    if (ds.msg_qbytes < msglen_t(lim.bytes)) lim = {long(ds.msg_qbytes), "msg_qbytes"};
#if defined(__linux__) && !defined(MSGQ_NO_IPC_INFO)
    msginfo info;  // IPC_INFO fills a struct msginfo through msgctl's msqid_ds pointer
    if (msgctl(0, IPC_INFO, reinterpret_cast<msqid_ds*>(&info)) >= 0 && info.msgmax < lim.bytes)
        lim = {long(info.msgmax), "msgmax"};
#endif
    return lim;
}

// Whether queue q takes a message of size bytes now; if not, says which
// limit is too small. (A failing msgctl is left to the next call.)
inline bool fits(int q, key_t key, size_t size) {
    Limit lim = message_limit(q);
    if (lim.bytes < 0 || size <= size_t(lim.bytes)) return true;
    return complain(
        "queue 0x%08x takes messages of at most %ld bytes (%s): too small for one of %zu",
        unsigned(key), lim.bytes, lim.name, size);
}

// ---- Is the peer alive? (proc(5), pid_namespaces(7)) ----------------------------
// Our PID namespace: the inode of /proc/self/ns/pid; 0 where none is shown
// (not Linux, no /proc). A pid names the same process only within one.
inline uint32_t pid_namespace() {
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? uint32_t(st.st_ino) : 0;
}

// When process pid started (/proc/PID/stat, field 22: clock ticks since
// boot). 0: it is gone, or a zombie. -1: /proc cannot tell (there is none,
// or it shows another PID namespace than ours, as /proc/self then says).
inline long long start_time(pid_t pid) {
    char path[64], me[32], line[512];
    ssize_t n = readlink("/proc/self", path, sizeof path);  // our pid, if /proc is of our namespace
    snprintf(me, sizeof me, "%d", int(getpid()));
    if (n != ssize_t(strlen(me)) || memcmp(path, me, size_t(n)) != 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    n = read(fd, line, sizeof line - 1);
    close(fd);
    line[n > 0 ? n : 0] = '\0';
    const char* p = strrchr(line, ')');  // "PID (NAME) STATE ...": NAME may hold ')' and spaces
    if (p == nullptr || p[1] != ' ') return -1;
    char state = p[2];  // field 3
    for (int field = 3; p != nullptr && field <= 22; ++field) p = strchr(p + 1, ' ');
    if (p == nullptr) return -1;  // p is now just before field 22
    return state == 'Z' || state == 'X' ? 0 : strtoll(p + 1, nullptr, 10);
}

// A peer, as seen at HELLO or WELCOME: its start time tells it from another
// process given its pid later. Where /proc cannot tell, kill(2) decides (a
// zombie then passes for alive until its parent reaps it).
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

// ---- Signals (signal(7)) --------------------------------------------------------
// The handlers only set these. A blocking call then fails with EINTR (no
// SA_RESTART; msgsnd and msgrcv never restart), and its loop looks at them.
inline volatile sig_atomic_t g_signal = 0;  // a stop signal came: its number
inline volatile sig_atomic_t g_tick = 0;    // the one-second watchdog fired
extern "C" inline void on_stop(int sig) { g_signal = sig; }
extern "C" inline void on_tick(int) { g_tick = 1; }

// The signals people send to stop a process, besides the real-time ones.
struct StopSignal {
    int sig;
    const char* name;
};
inline constexpr StopSignal kStopSignals[] = {
    {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},
    {SIGTERM, "SIGTERM"}, {SIGUSR1, "SIGUSR1"}, {SIGUSR2, "SIGUSR2"},
    {SIGXCPU, "SIGXCPU"}, {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}};
// For the line that says which one came: "msgrcv: Interrupted system call (SIGINT)".
inline const char* signal_name(int sig) {
    for (const StopSignal& s : kStopSignals)
        if (s.sig == sig) return s.name;
    return "a real-time signal";
}

// Catches the stop signals (one ignored when we started, as a background
// job's SIGINT, stays so), and SIGALRM, sent once a second so that no blocked
// call waits without a look at the peer. Ignores SIGPIPE and SIGXFSZ: a
// closed pipe or a file-size limit is a write error (EPIPE, EFBIG). Unblocks
// what it catches: the mask survives exec.
inline void install_signal_handlers() {
    sigset_t caught;
    sigemptyset(&caught);
    auto catch_signal = [&caught](int sig, void (*handler)(int)) {
        struct sigaction sa = {}, old;
        sa.sa_handler = handler;
        sigemptyset(&sa.sa_mask);
        if (sigaction(sig, nullptr, &old) < 0) return;
        if (old.sa_handler == SIG_IGN && sig != SIGALRM) return;  // it stays ignored
        if (sigaction(sig, &sa, nullptr) == 0) sigaddset(&caught, sig);
    };
    for (const StopSignal& s : kStopSignals) catch_signal(s.sig, on_stop);
#if defined(SIGRTMIN)
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) catch_signal(sig, on_stop);
#endif
    catch_signal(SIGALRM, on_tick);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &caught, nullptr);
    itimerval second = {{1, 0}, {1, 0}};
    setitimer(ITIMER_REAL, &second, nullptr);
}

// After cleaning up: die of the stop signal, so that the shell sees 128 + it.
inline void die_if_signalled() {
    if (g_signal == 0) return;
    signal(g_signal, SIG_DFL);
    raise(g_signal);
}

// ---- Input and output -----------------------------------------------------------
// A descriptor left non-blocking by our parent (O_NONBLOCK belongs to the
// open file it shares): wait until it is ready. False on EINTR.
inline bool wait_ready(int fd, short events) {
    pollfd p = {fd, events, 0};
    return poll(&p, 1, -1) >= 0;
}

// Writes all of p. False with errno on an error, EINTR on a stop signal (a
// tick only retries: a stalled reader is waited for, as long as it takes).
inline bool write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EAGAIN && wait_ready(fd, POLLOUT)) continue;
        if (w < 0 && errno == EINTR && !g_signal) continue;  // also a poll() that EINTR ended
        if (w < 0) return false;
        p += w;
        n -= size_t(w);
    }
    return true;
}

// An error the kernel kept until the close (NFS, a quota), as cat(1) checks.
// A stdout closed from the start (EBADF) had nothing written to it.
inline bool close_stdout() {
    if (close(STDOUT_FILENO) == 0 || errno == EBADF) return true;
    return complain("close(stdout): %s", strerror(errno));
}

// Reads fd in 64 KiB blocks, handed out in chunks of at most max bytes that
// end at a newline if one comes soon enough: a longer line is split, not cut.
// A chunk is one line, or with lines set as many whole lines as have come.
class LineReader {
public:
    explicit LineReader(int fd) : fd_(fd) {}
    // A chunk at *out, of the length returned; 0 at the end; -1 with errno
    // (EINTR: call again, nothing is lost).
    ssize_t next(size_t max, const char** out, bool lines = false) {
        for (;;) {
            size_t n = end_ - begin_ < max ? end_ - begin_ : max;
            const char* nl = static_cast<const char*>(memchr(buf_ + begin_, '\n', n));
            if (nl && !lines) n = size_t(nl - (buf_ + begin_)) + 1;   // through the first newline
            while (nl && lines && buf_[begin_ + n - 1] != '\n') --n;  // through the last one
            if (n > 0 && (nl || n == max || eof_)) {  // a line, a full chunk, or the last bytes
                *out = buf_ + begin_;
                begin_ += n;
                return ssize_t(n);
            }
            if (eof_) return 0;
            memmove(buf_, buf_ + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
            ssize_t r = read(fd_, buf_ + end_, sizeof buf_ - end_);
            if (r < 0 && errno == EAGAIN && wait_ready(fd_, POLLIN)) continue;
            if (r < 0) return -1;
            eof_ = r == 0;
            end_ += size_t(r);
        }
    }

private:
    int fd_;
    bool eof_ = false;
    size_t begin_ = 0, end_ = 0;  // buf_[begin_, end_): read, not yet handed out
    char buf_[64 * 1024];
};
