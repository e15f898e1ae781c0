// bench/raw.cpp - the floor for `make bench`: two processes and one System V
// queue, nothing else. No protocol, no stdin, no stdout, no checks beyond
// the calls' results.
//
//   raw pingpong N SIZE   N round trips: SIZE bytes out as type 1, back as type 2
//   raw stream N SIZE     N messages of SIZE bytes one way, then one ack back
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

struct Buf {
    long mtype;
    char text[65536];
};

[[noreturn]] void die(const char* what) {
    perror(what);
    _exit(1);
}

void put(int q, Buf& b, long type, size_t n) {
    b.mtype = type;
    if (msgsnd(q, &b, n, 0) < 0) die("raw: msgsnd");
}

void get(int q, Buf& b, long type) {
    if (msgrcv(q, &b, sizeof b.text, type, 0) < 0) die("raw: msgrcv");
}

// The child's side: echo (pingpong) or swallow then ack (stream).
void child(int q, bool pingpong, long n, size_t size, Buf& b) {
    for (long i = 0; i < n; ++i) {
        get(q, b, 1);
        if (pingpong) put(q, b, 2, size);
    }
    if (!pingpong) put(q, b, 2, 1);
    _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4 || (strcmp(argv[1], "pingpong") != 0 && strcmp(argv[1], "stream") != 0)) {
        fprintf(stderr, "usage: raw pingpong|stream N SIZE\n");
        return 2;
    }
    bool pingpong = strcmp(argv[1], "pingpong") == 0;
    long n = strtol(argv[2], nullptr, 10);
    size_t size = strtoul(argv[3], nullptr, 10);
    static Buf b;
    if (n <= 0 || size == 0 || size > sizeof b.text) {
        fprintf(stderr, "raw: bad N or SIZE\n");
        return 2;
    }
    int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (q < 0) die("raw: msgget");
    memset(b.text, 'x', size);
    pid_t pid = fork();
    if (pid < 0) die("raw: fork");
    if (pid == 0) child(q, pingpong, n, size, b);
    for (long i = 0; i < n; ++i) {
        put(q, b, 1, size);
        if (pingpong) get(q, b, 2);
    }
    if (!pingpong) get(q, b, 2);
    int status = 0;
    waitpid(pid, &status, 0);
    msgctl(q, IPC_RMID, nullptr);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
