// bench/raw.cpp - the floor for `make bench`: two processes and one System V
// queue, nothing else. No protocol, no stdin, no stdout, no checks beyond
// the calls' results.
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
#include <fcntl.h>
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

void put(int q, Buf& b, long type, size_t n) {
    b.mtype = type;
    if (msgsnd(q, &b, n, 0) < 0) die("raw: msgsnd");
}

ssize_t get(int q, Buf& b, long type) {
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
    const char* path = file ? argv[3] : pingpong && argc == 5 ? argv[4] : nullptr;
    if ((!pingpong && !file && strcmp(mode, "stream") != 0) || argc > 4 + pingpong) {
        fprintf(stderr, "usage: raw pingpong N SIZE [PATH], raw stream N SIZE, raw file SIZE PATH\n");
        return 2;
    }
    long n = file ? -1 : strtol(argv[2], nullptr, 10);
    size_t size = strtoul(argv[file ? 2 : 3], nullptr, 10);
    static Buf b;
    if ((!file && n <= 0) || size == 0 || size > sizeof b.text) {
        fprintf(stderr, "raw: bad N or SIZE\n");
        return 2;
    }
    int fd = path ? open(path, O_RDONLY) : -1;
    if (path && fd < 0) die("raw: open");
    int q = queue = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (q < 0) die("raw: msgget");
    memset(b.text, 'x', size);
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
