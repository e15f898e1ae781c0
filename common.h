// common.h - the msgq-pair protocol and the helpers sender and receiver share.
//
// Everything both programs must agree on lives here and only here: the
// default key, the message layout, the message types and kinds, the
// checksum, and the small pieces of plumbing (error reporting, signals, the
// watchdog timer, number parsing, buffered input and output) that both of
// them use. README.md, section "The protocol", describes the same thing in
// prose.
#pragma once

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <sys/random.h>  // getentropy; glibc and the BSDs declare it in unistd.h
#endif

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

inline constexpr const char* kVersion = "2.0.0";

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
// The receiver reads with msgtyp = -kLastOtherType: requests first, then
// junk of any type below the replies, so that junk never fills the queue.
inline constexpr long kRequestType = 1;
inline constexpr long kReplyBase = 0x80000000L;
inline constexpr long kLastOtherType = kReplyBase - 1;
static_assert(sizeof(long) >= 8, "reply types need a 64-bit long");
inline long reply_type(pid_t pid) { return kReplyBase + long(pid); }

// ---- Message kinds: what a message means ----------------------------------
enum Kind : uint16_t {
    // sender -> receiver, type kRequestType
    kHello = 1,  // I am starting; hdr.token is our secret; answer with kWelcome (or kRefuse)
    kData = 2,   // data[] holds the next bytes of my input
    kEnd = 3,    // my input ended; data[] is my Tally; answer with kTally
    kBye = 4,    // I have read your kTally; I will not use the queue again
    kLeave = 5,  // I was interrupted and am leaving now; no answer
    kPing = 6,   // no reply for a while: are you there? answer with kAck
    // receiver -> sender, type reply_type(sender's pid)
    kWelcome = 16,  // hdr.token repeats the HELLO's, hdr.pid is the receiver
    kAck = 17,      // request hdr.seq is done (written); data[] is a chat reply
    kTally = 18,    // data[] is the Tally of everything written
    kRefuse = 19,   // no: to HELLO, it serves no more senders; to anything
                    // else, a message before hdr.seq never arrived
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
    uint64_t token;  // the session's secret, chosen by the sender, in every message
};
// The layout README.md documents, byte for byte.
static_assert(sizeof(Header) == 24 && offsetof(Header, kind) == 4 &&
                  offsetof(Header, flags) == 6 && offsetof(Header, seq) == 8 &&
                  offsetof(Header, len) == 12 && offsetof(Header, token) == 16,
              "the header is 24 bytes, no padding");

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

// What one side saw of one sender's data. END carries the sender's, TALLY
// the receiver's, and each side compares. sum and sum2 are Fletcher's
// checksum over 64-bit words: each message's data, padded with zero bytes
// to a multiple of 32, is read as words in native byte order; for each word,
// sum += word, then sum2 += sum, both modulo 2^64. sum2 weighs each word by
// its distance from the end, so it depends on their order. It finds a lost,
// repeated or replaced message, a changed byte, words swapped; not a change
// crafted by someone who read the data (see README.md, "Limits").
struct Tally {
    uint64_t bytes;     // data bytes
    uint64_t messages;  // kData messages
    uint64_t sum;       // the sum of the words
    uint64_t sum2;      // the sum of the running sums

    // Counts p[0..n) as one more DATA message. Given `to`, also copies the
    // bytes there in the same pass, which costs no more than the checksum.
    void add(const char* p, size_t n, char* to = nullptr) {
        // Four lanes, two at a time (GCC and Clang use SSE2 or NEON where
        // there is one, plain adds elsewhere): lane j takes word j of each
        // 32-byte block, with its running sum a_j and their sum b_j. Then
        // sum = a0+a1+a2+a3, and sum2 grows by 4(b0+b1+b2+b3) - (a1 + 2a2 +
        // 3a3): the running sums after words 0, 1 and 2 of each block are
        // the block's end sums less the words after them.
        typedef uint64_t Lanes __attribute__((vector_size(16)));
        Lanes a = {sum, 0}, c = {0, 0}, b = {0, 0}, d = {0, 0}, lo, hi;  // lanes 0-1, 2-3
        size_t i = 0;
        for (; i + 32 <= n; i += 32) {
            memcpy(&lo, p + i, 16);
            memcpy(&hi, p + i + 16, 16);
            if (to != nullptr) {
                memcpy(to + i, &lo, 16);
                memcpy(to + i + 16, &hi, 16);
            }
            a += lo;
            c += hi;
            b += a;
            d += c;
        }
        if (i < n) {
            char last[32] = {};
            memcpy(last, p + i, n - i);
            if (to != nullptr) memcpy(to + i, p + i, n - i);
            memcpy(&lo, last, 16);
            memcpy(&hi, last + 16, 16);
            a += lo;
            c += hi;
            b += a;
            d += c;
        }
        sum2 += 4 * (b[0] + b[1] + d[0] + d[1]) - (a[1] + 2 * c[0] + 3 * c[1]);
        sum = a[0] + a[1] + c[0] + c[1];
        bytes += n;
        ++messages;
    }
    bool operator==(const Tally& o) const {
        return bytes == o.bytes && messages == o.messages && sum == o.sum && sum2 == o.sum2;
    }
};
// END and TALLY are the largest messages of fixed size: a queue that cannot
// hold one can carry no session.
inline constexpr size_t kMinText = kHeaderSize + sizeof(Tally);

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
inline void report_errno(const char* call, int e) {
    if (g_key != 0)
        complain("%s: %s (queue 0x%08x)", call, strerror(e), unsigned(g_key));
    else
        complain("%s: %s", call, strerror(e));
}
inline void syscall_failed(const char* call) { report_errno(call, errno); }

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
// A long option is named as the table spells it, whatever was abbreviated.
[[noreturn]] inline void bad_option(int c, char** argv, const option* longopts) {
    const char* arg = argv[optind - 1];
    if (c == ':') usage_error("option '%s' needs an argument", arg);
    if (strncmp(arg, "--", 2) == 0 && optopt != 0) {  // a known one, given "=VALUE"
        for (const option* o = longopts; o->name != nullptr; ++o)
            if (o->val == optopt) usage_error("option '--%s' takes no argument", o->name);
    }
    if (optopt != 0) usage_error("unknown option '-%c'", optopt);  // a short one
    usage_error("unknown option '%s'", arg);
}

// How an option's number is written, so that a range error speaks alike.
enum class Radix { kDecimal = 10, kOctal = 8, kAny = 0 };

// strtoll with every check (TLPI get_num): the whole string, in range. The
// range is printed as the option is documented: octal as 0777, keys in hex.
inline long long parse_number(const char* s, Radix radix, long long lo, long long hi,
                              const char* what) {
    char* end = nullptr;
    errno = 0;
    long long v = strtoll(s, &end, int(radix));
    if (end == s || *end != '\0')
        usage_error("%s: not a number: '%s'", what, s);
    if (errno == ERANGE || v < lo || v > hi) {
        if (radix == Radix::kOctal)
            usage_error("%s: out of range (%#llo to %#llo): '%s'", what, lo, hi, s);
        if (radix == Radix::kAny)
            usage_error("%s: out of range (%#llx to %#llx): '%s'", what, lo, hi, s);
        usage_error("%s: out of range (%lld to %lld): '%s'", what, lo, hi, s);
    }
    return v;
}

// ---- The queue --------------------------------------------------------------
// The queue is gone: removed under us (EIDRM while blocked, EINVAL after).
inline bool queue_gone(int e) { return e == EIDRM || e == EINVAL; }

// The errno of a failed msgsnd/msgrcv/msgctl on queue qid, read before
// anything else runs. EINVAL means the queue was removed, unless it is still
// there: then a message was bigger than the system's msgmax.
inline int ipc_errno(int qid) {
    int e = errno;
    msqid_ds ds;
    if (e == EINVAL && qid >= 0 && msgctl(qid, IPC_STAT, &ds) < 0) e = EIDRM;
    return e;
}

// The largest mtext the system takes (msgmax). Linux tells it (IPC_INFO);
// elsewhere, or built with `make NO_IPC_INFO=1`, 8192 is assumed, the
// common default.
inline long system_msgmax() {
#if defined(IPC_INFO) && !defined(MSGQ_NO_IPC_INFO)
    msginfo info = {};
    if (msgctl(0, IPC_INFO, reinterpret_cast<msqid_ds*>(&info)) < 0) return -1;
    return info.msgmax < int(kMsgMax) ? info.msgmax : long(kMsgMax);
#else
    return long(kMsgMax);
#endif
}

// The largest message (mtext bytes) queue qid can carry now: msgmax refuses
// bigger ones, and one bigger than msg_qbytes would wait for room forever.
// -1 with errno if msgctl failed.
inline long message_limit(int qid) {
    msqid_ds ds = {};
    long sys = system_msgmax();
    if (sys < 0 || msgctl(qid, IPC_STAT, &ds) < 0) return -1;
    return ds.msg_qbytes < msglen_t(sys) ? long(ds.msg_qbytes) : sys;
}

// The state letter of a process in /proc/PID/stat (R, S, T for stopped, Z
// for a zombie...), or '?' where there is no /proc or it just went away.
inline char process_state(pid_t pid) {
    char path[32], line[256];
    snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return '?';
    ssize_t n = read(fd, line, sizeof line - 1);
    close(fd);
    if (n <= 0) return '?';
    line[n] = '\0';
    // "PID (COMMAND) STATE ...": the command may hold any character but the
    // line's last ')' ends it.
    const char* paren = strrchr(line, ')');
    return paren && paren[1] == ' ' && paren[2] != '\0' ? paren[2] : '?';
}

// A process that exists and is not a zombie: a killed peer whose parent has
// not reaped it yet is dead to us. Where there is no /proc, kill() decides.
inline bool alive(pid_t pid) {
    if (kill(pid, 0) < 0 && errno != EPERM) return false;
    char state = process_state(pid);
    return state != 'Z' && state != 'X';
}

// A queue is ours only if we both own it and created it: a creator keeps
// its rights after handing the queue to someone else with IPC_SET.
inline bool ours(const ipc_perm& p) { return p.uid == getuid() && p.cuid == getuid(); }
inline unsigned stranger(const ipc_perm& p) { return p.uid != getuid() ? p.uid : p.cuid; }

// ---- Process state ----------------------------------------------------------
// A closed 0, 1 or 2 would be handed out by our next open() (of /proc):
// fill it with /dev/null opened the wrong way, so that using it fails with
// EBADF, as a closed descriptor does, and nothing is read or written in
// the wrong place.
inline void guard_std_fds() {
    for (int fd = 0; fd <= 2; ++fd)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
            (void)open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY);  // failing, fd stays closed
}

// ---- Signals --------------------------------------------------------------
// Handlers only record what happened (and arm an alarm, below); the loops
// act on it before each blocking call and when one returns EINTR. They are
// installed without SA_RESTART so that a blocked read() or write() is
// interrupted too, not only msgsnd/msgrcv (which the kernel never restarts:
// signal(7)).
inline volatile sig_atomic_t g_signal = 0;  // a terminating signal received
inline volatile sig_atomic_t g_tick = 0;    // the watchdog timer fired

// A signal that lands after a loop has looked at g_signal but before its
// next blocking call would leave that call asleep: the alarm (which is
// async-signal-safe) interrupts it a second later, whatever it waits for.
extern "C" inline void on_terminate(int sig) {
    g_signal = sig;
    alarm(1);
}
extern "C" inline void on_tick(int) { g_tick = 1; }

// The kernel raises SIGXFSZ itself at a write past the file-size limit
// (Linux names us as the sender, other systems no one), and that write
// fails with EFBIG: reported like a full disk. Only a SIGXFSZ sent by
// another process ends the program.
extern "C" inline void on_xfsz(int sig, siginfo_t* si, void*) {
    if (si->si_pid > 0 && si->si_pid != getpid()) on_terminate(sig);
}

// Every signal whose default action ends the process and that a user or the
// system sends to say "stop" (kill -l). SIGKILL and SIGSTOP cannot be
// caught; SIGALRM is the watchdog; the crash signals are below.
inline constexpr int kStopSignals[] = {
    SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGXCPU, SIGVTALRM, SIGPROF,
#if defined(__linux__)
    SIGPOLL, SIGPWR, SIGSTKFLT,
#endif
};

// The signals that report a crash. Sent by another process with kill, they
// mean "stop", as SIGTERM does. Raised by a real fault, or by abort() (a
// failed allocation), the program cannot go on: the receiver removes its
// queue (a plain system call, safe here), then hands the signal to what had
// it before (the default, which kills, or a sanitizer's report), which takes
// it when the faulting instruction runs again or abort() raises it again.
inline constexpr int kCrashSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
inline constexpr size_t kCrashCount = sizeof kCrashSignals / sizeof kCrashSignals[0];
inline struct sigaction g_before_crash[kCrashCount];
inline volatile sig_atomic_t g_queue_to_remove = -1;  // the receiver's queue, once made

extern "C" inline void on_crash(int sig, siginfo_t* si, void*) {
    size_t i = 0;
    while (kCrashSignals[i] != sig) ++i;
    bool sent = si->si_code == SI_USER || si->si_code == SI_QUEUE;
#if defined(SI_TKILL)
    sent = sent || si->si_code == SI_TKILL;  // tgkill(); abort() uses it too, on itself
#endif
    if (sent && si->si_pid != getpid()) {
        if (g_before_crash[i].sa_handler != SIG_IGN) on_terminate(sig);  // else: stays ignored
        return;
    }
    if (g_queue_to_remove >= 0) msgctl(g_queue_to_remove, IPC_RMID, nullptr);
    sigaction(sig, &g_before_crash[i], nullptr);
}

// On a stack of its own, so that a stack overflow's SIGSEGV is caught too
// (unless a tool, such as a sanitizer, has set one up already).
inline void catch_crashes(sigset_t* used) {
    static char altstack[64 * 1024];
    stack_t ss = {};
    if (sigaltstack(nullptr, &ss) == 0 && (ss.ss_flags & SS_DISABLE)) {
        ss.ss_sp = altstack;
        ss.ss_size = sizeof altstack;
        ss.ss_flags = 0;
        (void)sigaltstack(&ss, nullptr);  // failing, a stack overflow kills as before
    }
    for (size_t i = 0; i < kCrashCount; ++i) {
        struct sigaction sa = {};
        sa.sa_sigaction = on_crash;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        // Even an ignored one: abort() and a real fault kill all the same.
        if (sigaction(kCrashSignals[i], nullptr, &g_before_crash[i]) == 0 &&
            sigaction(kCrashSignals[i], &sa, nullptr) == 0)
            sigaddset(used, kCrashSignals[i]);
    }
}

// sigaction for sig unless it was ignored when we started (a background
// job's SIGINT stays ignored); adds it to *used. A signal a tool such as
// valgrind keeps for itself (sigaction fails) is left to it.
inline void catch_signal(int sig, void (*handler)(int), sigset_t* used, bool override = false) {
    struct sigaction old = {}, sa = {};
    if (sigaction(sig, nullptr, &old) < 0) return;
    if (old.sa_handler == SIG_IGN && !override) return;
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, nullptr) == 0) sigaddset(used, sig);
}

// Catches the stop and crash signals, ignores SIGPIPE (a closed stdout is an EPIPE we
// report), and unblocks what we catch: a signal mask survives exec, and a
// blocked SIGALRM would silence the watchdog.
inline void install_signal_handlers() {
    sigset_t used;
    sigemptyset(&used);
    for (int sig : kStopSignals) catch_signal(sig, on_terminate, &used);
#if defined(SIGRTMIN)
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) catch_signal(sig, on_terminate, &used);
#endif
    catch_signal(SIGALRM, on_tick, &used, true);
    catch_crashes(&used);
    struct sigaction old = {}, sa = {};
    sa.sa_sigaction = on_xfsz;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGXFSZ, nullptr, &old) == 0 && old.sa_handler != SIG_IGN &&
        sigaction(SIGXFSZ, &sa, nullptr) == 0)
        sigaddset(&used, SIGXFSZ);
    signal(SIGPIPE, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &used, nullptr);
}

// While on, SIGALRM interrupts whatever call is blocked once a second, so
// that the program can check that its peer is still alive.
inline void set_watchdog(bool on) {
    struct itimerval t = {};
    if (on) t.it_interval.tv_sec = t.it_value.tv_sec = 1;
    setitimer(ITIMER_REAL, &t, nullptr);
}

// After cleaning up, die of the signal that stopped us, so that the shell
// sees 130, 143, 131... and not a plain failure. No core file: the program
// was not broken, and has cleaned up.
inline void reraise_if_signalled() {
    if (g_signal == 0) return;
    set_watchdog(false);
    rlimit none = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &none);  // failing, a core may be written: harmless
    signal(g_signal, SIG_DFL);
    raise(g_signal);
}

// A descriptor left non-blocking by whoever started us (O_NONBLOCK belongs
// to the open file, shared with them): wait until it is ready, as a blocking
// one would. False with errno EINTR when a signal comes first.
inline bool wait_ready(int fd, short events) {
    pollfd p = {fd, events, 0};
    return poll(&p, 1, -1) >= 0;
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
        ssize_t r;
        while ((r = read(fd_, buf_ + end_, sizeof buf_ - end_)) < 0 && errno == EAGAIN)
            if (!wait_ready(fd_, POLLIN)) return -1;
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
inline bool g_wrote_stdout = false;  // then its final close is checked

// Writes all of p. False on a write error, errno set (EINTR only when a
// terminating signal came: the watchdog's ticks are ridden out).
inline bool write_all(int fd, const char* p, size_t n) {
    if (fd == STDOUT_FILENO && n > 0) g_wrote_stdout = true;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EAGAIN && wait_ready(fd, POLLOUT)) continue;
        if (w < 0 && errno == EINTR && g_signal == 0) continue;
        if (w < 0) return false;
        p += w;
        n -= size_t(w);
    }
    return true;
}

// Closes stdout, to catch an error the kernel kept until then (NFS, a
// quota), if anything was written to it. A program that had nothing to
// write may run with stdout closed.
inline bool close_stdout() {
    if (!g_wrote_stdout || close(STDOUT_FILENO) == 0) return true;
    syscall_failed("close(stdout)");
    return false;
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
    // Writes what is buffered and then p, now. False on a write error.
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
    case kPing: return "PING";
    case kWelcome: return "WELCOME";
    case kAck: return "ACK";
    case kTally: return "TALLY";
    case kRefuse: return "REFUSE";
    default: return "UNKNOWN";
    }
}

// A message type as people read it: a reply's as 2^31+PID, which is what it is.
struct TypeName {
    explicit TypeName(long type) {
        if (type >= kReplyBase)
            snprintf(text, sizeof text, "2^31+%ld", type - kReplyBase);
        else
            snprintf(text, sizeof text, "%ld", type);
    }
    char text[32];
};

// -v: the teaching view, one line per message.
inline void trace(const char* dir, const Message& m) {
    if (!g_verbose) return;
    complain("%s %s type %s seq %u, %u bytes%s, pid %d", dir, kind_name(m.hdr.kind),
             TypeName(m.mtype).text, unsigned(m.hdr.seq), unsigned(m.hdr.len),
             (m.hdr.flags & kMore) ? " (line continues)" : "", int(m.hdr.pid));
}
