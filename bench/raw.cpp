// bench/raw.cpp - the floor for `make bench`: two processes (P + 1 for
// multi) and one System V queue, nothing else. No protocol, no stdin, no
// stdout, no checks beyond the calls' results.
//
//   raw pingpong N SIZE [PATH]
//                         N round trips: SIZE bytes out as type 1, back as
//                         type 2. With PATH, each message's bytes are taken
//                         from the file, read() 64 KiB at a time as the
//                         sender reads its input: the floor for a program
//                         that answers lines it reads.
//   raw stream N SIZE     N messages of SIZE bytes one way, then one ack back
//   raw file SIZE PATH    PATH read() straight into messages of up to SIZE
//                         bytes, sent one way; an empty message ends it, one
//                         ack back. The floor for any program that reads its
//                         input: what `stream` costs plus reading the file.
//   raw multi P N SIZE    P producers at once, N round trips in all (each
//                         N / P, the first N % P one more): each sends SIZE
//                         bytes as type 1, then reads the echo of type 2 + its
//                         index; one consumer echoes each request to the type
//                         carried in its first bytes. The floor for a
//                         receiver with P senders.
#include <fcntl.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

struct Buf {
    long mtype;
    char text[65536];
};

int queue = -1;

// Removing the queue also ends the other process, blocked on it (EIDRM).
[[noreturn]] void die(const char* what) {
    perror(what);
    if (queue >= 0) msgctl(queue, IPC_RMID, nullptr);
    _exit(1);
}

// A stop signal (Ctrl-C, kill) only sets this. A blocked msgsnd or msgrcv
// then fails with EINTR; one that came between two calls is seen before the
// next. Either way die() removes the queue.
volatile sig_atomic_t stopped = 0;
extern "C" void on_stop(int) { stopped = 1; }

void check_stopped() {
    if (!stopped) return;
    errno = EINTR;
    die("raw: stopped by a signal");
}

void put(int q, Buf& b, long type, size_t n) {
    b.mtype = type;
    check_stopped();
    if (msgsnd(q, &b, n, 0) < 0) die("raw: msgsnd");
}

ssize_t get(int q, Buf& b, long type) {
    check_stopped();
    ssize_t n = msgrcv(q, &b, sizeof b.text, type, 0);
    if (n < 0) die("raw: msgrcv");
    return n;
}

// The child's side: echo (pingpong), or swallow then ack (stream: n
// messages; file: n < 0, until an empty one).
void child(int q, bool pingpong, long n, size_t size, Buf& b) {
    for (long i = 0; n < 0 || i < n; ++i) {
        ssize_t got = get(q, b, 1);
        if (pingpong) put(q, b, 2, size);
        if (n < 0 && got == 0) break;
    }
    if (!pingpong) put(q, b, 2, 1);
    _exit(0);
}

// The next SIZE bytes of the input, read 64 KiB at a time, into b.
void next_bytes(int fd, size_t size, Buf& b) {
    static char in[65536];
    static size_t have, at;
    if (have - at < size) {
        memmove(in, in + at, have - at);
        have -= at;
        at = 0;
        while (have < size) {
            ssize_t r = read(fd, in + have, sizeof in - have);
            if (r < 0) die("raw: read");
            if (r == 0) {
                errno = ENODATA;
                die("raw: file shorter than N * SIZE");
            }
            have += size_t(r);
        }
    }
    memcpy(b.text, in + at, size);
    at += size;
}

// Producer i of `multi`: count round trips, its reply type in the first
// bytes of each request.
void producer(int q, long i, long count, size_t size, Buf& b) {
    long mine = 2 + i;
    for (long k = 0; k < count; ++k) {
        memcpy(b.text, &mine, sizeof mine);
        put(q, b, 1, size);
        get(q, b, mine);
    }
    _exit(0);
}

// `multi`: p producers are forked, the parent is the consumer. Each producer
// has one message in the queue at most, so p * size bytes must fit in it, or
// the consumer's echo could wait for room that only it can make. The exit
// status: 0 once all n round trips are done, the producers have exited 0 and
// the queue is removed.
int multi(int q, long p, long n, size_t size, Buf& b) {
    msqid_ds ds;
    if (msgctl(q, IPC_STAT, &ds) < 0) die("raw: msgctl(IPC_STAT)");
    if (msglen_t(p) * size > ds.msg_qbytes) {
        errno = EINVAL;
        die("raw: P * SIZE is more than the queue holds (msg_qbytes)");
    }
    for (long i = 0; i < p; ++i) {
        pid_t pid = fork();
        if (pid < 0) die("raw: fork");
        if (pid == 0) producer(q, i, n / p + (i < n % p ? 1 : 0), size, b);
    }
    for (long k = 0; k < n; ++k) {
        ssize_t got = get(q, b, 1);
        long to;
        memcpy(&to, b.text, sizeof to);
        put(q, b, to, size_t(got));
    }
    int failed = 0;
    for (long i = 0; i < p; ++i) {
        int status;
        if (wait(&status) < 0) die("raw: wait");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
    }
    if (msgctl(q, IPC_RMID, nullptr) < 0) {
        perror("raw: msgctl(IPC_RMID)");
        return 1;
    }
    return failed;
}

// The parent's side of `file`: messages as read, then an empty one.
void send_file(int q, int fd, size_t size, Buf& b) {
    for (;;) {
        ssize_t r = read(fd, b.text, size);
        if (r < 0) die("raw: read");
        put(q, b, 1, size_t(r));
        if (r == 0) return;
    }
}

}  // namespace

int main(int argc, char** argv) {
    const char* mode = argc >= 4 ? argv[1] : "";
    bool pingpong = strcmp(mode, "pingpong") == 0, file = strcmp(mode, "file") == 0;
    bool many = strcmp(mode, "multi") == 0 && argc == 5;  // P first: N and SIZE come one later
    const char* path = file ? argv[3] : pingpong && argc == 5 ? argv[4] : nullptr;
    if ((!pingpong && !file && !many && strcmp(mode, "stream") != 0) ||
        argc > 4 + (pingpong || many)) {
        fprintf(stderr,
                "usage: raw pingpong N SIZE [PATH], raw stream N SIZE, raw file SIZE PATH,\n"
                "       raw multi P N SIZE\n");
        return 2;
    }
    long p = many ? strtol(argv[2], nullptr, 10) : 1;
    long n = file ? -1 : strtol(argv[2 + many], nullptr, 10);
    size_t size = strtoul(argv[file ? 2 : 3 + many], nullptr, 10);
    static Buf b;
    if ((!file && n <= 0) || size == 0 || size > sizeof b.text) {
        fprintf(stderr, "raw: bad N or SIZE\n");
        return 2;
    }
    if (many && (p <= 0 || p > 1000 || size < sizeof(long))) {
        fprintf(stderr, "raw: multi needs P from 1 to 1000 and SIZE of %zu or more\n",
                sizeof(long));
        return 2;
    }
    struct sigaction sa = {};
    sa.sa_handler = on_stop;
    const int signals[] = {SIGHUP, SIGINT, SIGTERM};
    for (int sig : signals)
        if (sigaction(sig, &sa, nullptr) < 0) die("raw: sigaction");
    int fd = path ? open(path, O_RDONLY) : -1;
    if (path && fd < 0) die("raw: open");
    int q = queue = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (q < 0) die("raw: msgget");
    memset(b.text, 'x', size);
    if (many) return multi(q, p, n, size, b);
    pid_t pid = fork();
    if (pid < 0) die("raw: fork");
    if (pid == 0) child(q, pingpong, n, size, b);
    if (file) send_file(q, fd, size, b);
    for (long i = 0; i < n; ++i) {
        if (path) next_bytes(fd, size, b);
        put(q, b, 1, size);
        if (pingpong) get(q, b, 2);
    }
    if (!pingpong) get(q, b, 2);
    int status = 0;
    waitpid(pid, &status, 0);
    msgctl(q, IPC_RMID, nullptr);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
