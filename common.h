// common.h - the msgq-pair protocol and the helpers sender and receiver share.
//
// Everything both programs must agree on lives here and only here: the
// default key, the message layout, the message types and kinds, and the
// small pieces of plumbing (error reporting, signals, the watchdog timer,
// number parsing, buffered input and output) that both of them use.
// README.md, section "The protocol", describes the same thing in prose.
#pragma once

#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

inline constexpr const char* kVersion = "1.0.0";

// ---- The key ------------------------------------------------------------
// The default key is a fixed base plus the real uid, so that two students
// on one lab server never meet in the same queue.
inline constexpr key_t kKeyBase = 0x32600000;
inline key_t default_key() { return kKeyBase + key_t(getuid() & 0xFFFFF); }

// ---- Message types: who reads a message ---------------------------------
// Every request (sender -> receiver) has type kRequestType, so the receiver
// reads all senders' requests in the order they were sent. Each reply
// (receiver -> sender) is addressed to one sender: its type is that sender's
// pid plus kReplyBase. Pids are positive 32-bit values, so reply types are
// always above 2^31 and can never equal kRequestType, not even for pid 1.
inline constexpr long kRequestType = 1;
inline constexpr long kReplyBase = 0x80000000L;
static_assert(sizeof(long) >= 8, "reply types need a 64-bit long");
inline long reply_type(pid_t pid) { return kReplyBase + long(pid); }

// ---- Message kinds: what a message means ----------------------------------
enum Kind : uint16_t {
    // sender -> receiver, type kRequestType
    kHello = 1,  // I am starting; answer with kWelcome (or kRefuse)
    kData = 2,   // data[] holds the next bytes of my input
    kEnd = 3,    // my input ended; answer with kTally
    kBye = 4,    // I have read your kTally; I will not use the queue again
    kLeave = 5,  // I was interrupted and am leaving now; no answer
    // receiver -> sender, type reply_type(sender's pid)
    kWelcome = 16,  // the receiver's pid is in hdr.pid
    kAck = 17,      // data up to hdr.seq is written; data[] is a chat reply
    kTally = 18,    // data[] is a Tally of everything received
    kRefuse = 19,   // no: to HELLO, it serves no more senders; to anything
                    // else, hdr.seq was not the next one expected
};

enum Flag : uint16_t {
    kMore = 1,   // the line goes on in this sender's next message (or reply)
    kNoAck = 2,  // asynchronous data: do not acknowledge this message
};

// The fixed header at the start of mtext. All fields are in the machine's
// own byte order: a System V queue never leaves the machine.
struct Header {
    int32_t pid;     // the process that sent this message
    uint16_t kind;   // a Kind
    uint16_t flags;  // Flag bits
    uint32_t seq;    // sender's message number: kHello is 0, then 1, 2, ...
    uint32_t len;    // bytes of data[] in use
};
// The layout README.md documents, byte for byte.
static_assert(sizeof(Header) == 16 && offsetof(Header, kind) == 4 &&
                  offsetof(Header, flags) == 6 && offsetof(Header, seq) == 8 &&
                  offsetof(Header, len) == 12,
              "the header is 16 bytes, no padding");

// 8192 is Linux's default msgmax: the largest mtext that every queue accepts
// out of the box. A message is never sent bigger than it needs to be: only
// kHeaderSize + len bytes travel.
inline constexpr size_t kMsgMax = 8192;
inline constexpr size_t kHeaderSize = sizeof(Header);
inline constexpr size_t kMaxData = kMsgMax - kHeaderSize;

// The msgbuf both programs send and receive: mtype must come first.
struct Message {
    long mtype;
    Header hdr;
    char data[kMaxData];
};
// msgsnd/msgrcv sizes count mtext only, which begins right after mtype.
static_assert(offsetof(Message, hdr) == sizeof(long), "no padding after mtype");
inline constexpr size_t kTextSize = sizeof(Message) - offsetof(Message, hdr);
static_assert(kTextSize == kMsgMax, "mtext is exactly kMsgMax bytes");

// The data of a kTally reply.
struct Tally {
    uint64_t bytes;     // data bytes received from this sender
    uint64_t messages;  // kData messages received from this sender
};

// ---- Reporting ------------------------------------------------------------
inline const char* g_prog = "msgq-pair";
inline key_t g_key = 0;        // named in error messages once known
inline bool g_quiet = false;   // -q: no status lines, prompts or confirmations
inline bool g_verbose = false; // -v: one line per message

inline void vreport(const char* fmt, va_list ap) {
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "%s: %s\n", g_prog, line);
}

// An error: always shown.
inline void complain(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void complain(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
}

// Status for the person watching: hidden by -q.
inline void note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void note(const char* fmt, ...) {
    if (g_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
}

// "1 message", "2 messages": counts for status lines, as temporaries.
struct Count {
    Count(uint64_t n, const char* noun) {
        snprintf(text, sizeof text, "%llu %s%s", static_cast<unsigned long long>(n), noun,
                 n == 1 ? "" : "s");
    }
    char text[48];
};

// A failed call, err(3) style: "receiver: msgrcv: Identifier removed (queue 0x32600000)".
inline void syscall_failed(const char* call) {
    int e = errno;
    if (g_key != 0)
        complain("%s: %s (queue 0x%08x)", call, strerror(e), unsigned(g_key));
    else
        complain("%s: %s", call, strerror(e));
}

// A bad command line: exits before anything is created.
[[noreturn]] inline void usage_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] inline void usage_error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", g_prog);
    exit(2);
}

// After --help or --version: the output counts, so its flush is checked.
[[noreturn]] inline void exit_after_printing() {
    if (fclose(stdout) != 0) {
        complain("write: %s", strerror(errno));
        exit(1);
    }
    exit(0);
}

// getopt_long's '?' or ':' (opterr is 0, so that this is the only line).
[[noreturn]] inline void bad_option(int c, char** argv) {
    if (c == ':') usage_error("option '%s' needs an argument", argv[optind - 1]);
    if (optopt != 0) usage_error("unknown option '-%c'", optopt);  // a short one
    usage_error("unknown option '%s'", argv[optind - 1]);
}

// strtoll with every check (TLPI get_num): the whole string, in range.
inline long long parse_number(const char* s, int base, long long lo, long long hi,
                              const char* what) {
    char* end = nullptr;
    errno = 0;
    long long v = strtoll(s, &end, base);
    if (end == s || *end != '\0')
        usage_error("%s: not a number: '%s'", what, s);
    if (errno == ERANGE || v < lo || v > hi)
        usage_error("%s: out of range (%lld to %lld): '%s'", what, lo, hi, s);
    return v;
}

// The queue is gone: removed under us (EIDRM while blocked, EINVAL after).
inline bool queue_gone(int e) { return e == EIDRM || e == EINVAL; }

// msgsnd/msgrcv/msgctl on our own queue failed. EINVAL there can only mean
// that the id is no longer valid, so report it as the removal it is.
inline void ipc_failed(const char* call) {
    if (queue_gone(errno)) errno = EIDRM;
    syscall_failed(call);
}

inline bool alive(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

// A queue is ours only if we both own it and created it: a creator keeps
// its rights after handing the queue to someone else with IPC_SET.
inline bool ours(const ipc_perm& p) { return p.uid == getuid() && p.cuid == getuid(); }
inline unsigned stranger(const ipc_perm& p) { return p.uid != getuid() ? p.uid : p.cuid; }

// ---- Signals --------------------------------------------------------------
// Handlers only record what happened (and arm an alarm, below); the loops
// act on it before each blocking call and when one returns EINTR. They are
// installed without SA_RESTART so that a blocked read() or write() is
// interrupted too, not only msgsnd/msgrcv (which the kernel never restarts:
// signal(7)).
inline volatile sig_atomic_t g_signal = 0;  // SIGINT/SIGTERM/SIGHUP received
inline volatile sig_atomic_t g_tick = 0;    // the watchdog timer fired

// A signal that lands after a loop has looked at g_signal but before its
// next blocking call would leave that call asleep: the alarm (which is
// async-signal-safe) interrupts it a second later, whatever it waits for.
extern "C" inline void on_terminate(int sig) {
    g_signal = sig;
    alarm(1);
}
extern "C" inline void on_tick(int) { g_tick = 1; }

inline void catch_signal(int sig, void (*handler)(int)) {
    struct sigaction sa = {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(sig, &sa, nullptr);
}

inline void install_signal_handlers() {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        struct sigaction old = {};
        sigaction(sig, nullptr, &old);
        // A signal ignored at start (a background job's SIGINT) stays ignored.
        if (old.sa_handler != SIG_IGN) catch_signal(sig, on_terminate);
    }
    // A closed stdout must be an EPIPE we report, not a silent death.
    signal(SIGPIPE, SIG_IGN);
    catch_signal(SIGALRM, on_tick);
}

// While on, SIGALRM interrupts whatever call is blocked once a second, so
// that the program can check that its peer is still alive.
inline void set_watchdog(bool on) {
    struct itimerval t = {};
    if (on) t.it_interval.tv_sec = t.it_value.tv_sec = 1;
    setitimer(ITIMER_REAL, &t, nullptr);
}

// After cleaning up, die of the signal that stopped us, so that the shell
// sees 130, 143 or 129 and not a plain failure.
inline void reraise_if_signalled() {
    if (g_signal == 0) return;
    set_watchdog(false);
    signal(g_signal, SIG_DFL);
    raise(g_signal);
}

// ---- Input: chunks of lines -----------------------------------------------
// The first chunk of p[0..n): through the first newline if that fits in max
// bytes, else as many bytes as fit. Lines longer than one message are split,
// never cut.
inline size_t chunk_length(const char* p, size_t n, size_t max) {
    size_t lim = n < max ? n : max;
    const void* nl = memchr(p, '\n', lim);
    return nl ? size_t(static_cast<const char*>(nl) - p) + 1 : lim;
}

// Reads fd in large blocks and hands out chunks that never cross a line end:
// a whole line if it fits in max bytes, else max bytes of it.
class LineReader {
public:
    explicit LineReader(int fd) : fd_(fd) {}

    // A chunk in *out of the returned length; 0 at end of input; -1 on a
    // read error, errno set (EINTR: call again, nothing is lost).
    ssize_t next(size_t max, const char** out) {
        for (;;) {
            const char* p = buf_ + begin_;
            size_t n = chunk_length(p, end_ - begin_, max);
            if (n > 0 && (p[n - 1] == '\n' || n == max || eof_)) {
                begin_ += n;
                *out = p;
                return ssize_t(n);
            }
            if (eof_) return 0;
            if (fill() < 0) return -1;
        }
    }

private:
    ssize_t fill() {
        if (begin_ > 0) {
            memmove(buf_, buf_ + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
        }
        ssize_t r = read(fd_, buf_ + end_, sizeof buf_ - end_);
        if (r == 0) eof_ = true;
        if (r > 0) end_ += size_t(r);
        return r;
    }

    int fd_;
    bool eof_ = false;
    size_t begin_ = 0, end_ = 0;
    char buf_[64 * 1024] = {};  // touched now: memory use does not grow later
    static_assert(sizeof buf_ >= kMaxData, "a chunk fits in the buffer");
};

// ---- Output: buffered, every error reported --------------------------------
// Writes all of p. False on a write error, errno set (EINTR only when a
// terminating signal came: the watchdog's ticks are ridden out).
inline bool write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR && g_signal == 0) continue;
        if (w < 0) return false;
        p += w;
        n -= size_t(w);
    }
    return true;
}

class Writer {
public:
    explicit Writer(int fd) : fd_(fd) {}

    // Buffers p; a full message's worth goes straight out, not copied.
    // Returns false on a write error, errno set (EINTR only for a signal).
    bool put(const char* p, size_t n) {
        if (n > sizeof buf_ - used_ && !flush()) return false;
        if (n >= kMaxData && used_ == 0) return write_all(fd_, p, n);
        memcpy(buf_ + used_, p, n);
        used_ += n;
        return true;
    }
    // Writes what is buffered and then p, now.
    bool put_now(const char* p, size_t n) { return flush() && write_all(fd_, p, n); }
    bool flush() {
        size_t n = used_;
        used_ = 0;
        return write_all(fd_, buf_, n);
    }
    bool buffered() const { return used_ > 0; }

private:
    int fd_;
    size_t used_ = 0;
    char buf_[64 * 1024] = {};  // touched now: memory use does not grow later
};

// A step's "keep going"; any other value is the exit status to return.
inline constexpr int kGoOn = -1;

// ---- Sending and receiving --------------------------------------------------
// Only the header and the bytes in use travel.
inline int send_message(int qid, const Message& m, int flags) {
    return msgsnd(qid, &m, kHeaderSize + m.hdr.len, flags);
}

// MSG_NOERROR: a message too big for us is cut and removed, not left at the
// head of the queue to fail with E2BIG forever. well_formed() rejects it.
inline ssize_t receive_message(int qid, Message& m, long type, int flags) {
    return msgrcv(qid, &m, kTextSize, type, flags | MSG_NOERROR);
}

// The most data[] one message on this queue can carry: msgmax refuses
// bigger messages, and one bigger than msg_qbytes would wait for room
// forever. 0 if not even the header fits; -1 with errno if msgctl failed.
inline long max_data(int qid) {
    msqid_ds ds = {};
    msginfo info = {};
    if (msgctl(qid, IPC_STAT, &ds) < 0 ||
        msgctl(0, IPC_INFO, reinterpret_cast<msqid_ds*>(&info)) < 0)
        return -1;
    size_t limit = size_t(info.msgmax) < ds.msg_qbytes ? size_t(info.msgmax) : ds.msg_qbytes;
    if (limit <= kHeaderSize) return 0;
    return long(limit - kHeaderSize < kMaxData ? limit - kHeaderSize : kMaxData);
}

// A message whose length agrees with its header.
inline bool well_formed(const Message& m, ssize_t n) {
    return n >= ssize_t(kHeaderSize) && m.hdr.len <= kMaxData &&
           size_t(n) == kHeaderSize + m.hdr.len;
}

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

// -v: the teaching view, one line per message. A reply's type shows as
// 2^31+PID, which is what it is.
inline void trace(const char* dir, const Message& m) {
    if (!g_verbose) return;
    char type[32];
    if (m.mtype >= kReplyBase)
        snprintf(type, sizeof type, "2^31+%ld", m.mtype - kReplyBase);
    else
        snprintf(type, sizeof type, "%ld", m.mtype);
    complain("%s %s type %s seq %u, %u bytes%s, pid %d", dir, kind_name(m.hdr.kind), type,
             unsigned(m.hdr.seq), unsigned(m.hdr.len),
             (m.hdr.flags & kMore) ? " (line continues)" : "", int(m.hdr.pid));
}
