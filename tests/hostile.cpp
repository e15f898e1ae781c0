// tests/hostile.cpp - what any process with write access can do to a queue,
// or a parent to the process state it passes on, for the fault tests. Not
// part of the product.
//
//   hostile KEY junk               malformed requests and strangers' messages
//   hostile KEY forge PID          replies and requests forged for sender PID
//   hostile KEY forgedata PID SEQ TEXT   a DATA with TEXT in the name of PID
//   hostile KEY hello PID [N]      a HELLO in the name of PID (N of them)
//   hostile KEY session PID TEXT   a whole forged session's start: HELLO and
//                                  a DATA with TEXT, in the name of PID
//   hostile KEY welcome PID        read sender PID's HELLO (and put it back),
//                                  then answer it first: a WELCOME from pid 1
//   hostile KEY tkill PID SIG      send SIG to PID with tgkill(), not kill()
//   hostile KEY qbytes N           lower the queue's msg_qbytes to N
//   hostile KEY steal [TYPE]       take the first DATA request (or the first
//                                  message of TYPE) out of the queue
//   hostile KEY await             wait for the next request and take it
//   hostile KEY tamper             change a byte of the first DATA request,
//                                  header and token untouched
//   hostile KEY swap               swap its first two 8-byte words instead
//   hostile KEY twice              put the first END request back, and a copy
//                                  with the next seq
//   hostile KEY fill [TYPE]        fill the queue with messages nobody reads
//   hostile KEY touch              send and receive one message: be the last user
//   hostile KEY squat              create the queue under KEY with mode 0666
//   hostile KEY handover UID       make UID the owner (the creator stays)
//   hostile KEY count              print how many messages the queue holds
//   hostile nonblock CMD...        run CMD with its stdin and stdout O_NONBLOCK
#include "common.h"

#include <sys/syscall.h>

#include <string>

namespace {

int qid_of(key_t key) {
    int id = msgget(key, 0);
    if (id < 0) {
        syscall_failed("msgget");
        exit(1);
    }
    return id;
}

// quiet: a failure is expected (a message bigger than msgmax, unless the
// test raised it) and not reported.
void put(int id, long type, const void* text, size_t n, bool quiet = false) {
    struct {
        long mtype;
        char text[16384];
    } buf = {};
    buf.mtype = type;
    memcpy(buf.text, text, n);
    if (msgsnd(id, &buf, n, IPC_NOWAIT) < 0 && !quiet) syscall_failed("msgsnd");
}

void put(int id, long type, Header h, size_t extra = 0, bool quiet = false) {
    char text[16384] = {};
    memcpy(text, &h, sizeof h);
    put(id, type, text, sizeof h + extra, quiet);
}

// Requests no receiver should act on: short, empty, oversized, lying about
// their length, of unknown kinds, from strangers, of types nobody reads.
void junk(int id) {
    put(id, kRequestType, "abc", 3);
    put(id, kRequestType, "", 0);
    put(id, kRequestType, Header{1, kData, 0, 1, 9000, 0}, 9000, true);  // > 8192
    put(id, kRequestType, Header{1, kData, 0, 1, 500, 0}, 20);
    put(id, kRequestType, Header{int32_t(getpid()), 99, 0, 1, 0, 0});
    put(id, kRequestType, Header{999999, kData, 0, 1, 4, 0}, 4);
    put(id, kRequestType, Header{999999, kHello, 0, 0, 0, 42});
    put(id, kRequestType, Header{1, kHello, 0, 7, 0, 42});  // a living pid, not seq 0
    put(id, kRequestType, Header{1, kEnd, 0, 1, 0, 0});
    put(id, 42, Header{1, kData, 0, 1, 0, 0});
}

// A forger who knows a sender's pid but not its session's token: replies
// it never asked for, and requests in its name.
void forge(int id, pid_t pid) {
    put(id, reply_type(pid), Header{1, kWelcome, 0, 0, 0, 42});
    put(id, reply_type(pid), Header{1, kRefuse, 0, 0, 0, 0});
    put(id, reply_type(pid), Header{1, kAck, 0, 777, 0, 0});
    put(id, reply_type(pid), Header{1, kTally, 0, 777, 0, 0});
    put(id, reply_type(pid), "xy", 2);
    put(id, kRequestType, Header{int32_t(pid), kData, 0, 777, 6, 0}, 6);
    put(id, kRequestType, Header{int32_t(pid), kEnd, 0, 778, 0, 0});
}

void forge_data(int id, pid_t pid, uint32_t seq, const std::string& text, uint64_t token = 0) {
    Header h{int32_t(pid), kData, 0, seq, uint32_t(text.size()), token};
    std::string m(reinterpret_cast<const char*>(&h), sizeof h);
    put(id, kRequestType, (m + text).data(), m.size() + text.size());
}

// Takes out the first message of the type, or else the first request of
// that kind. Others taken on the way go back (at the end). 0 if found.
int take(int id, long type, uint16_t kind, Message& m, ssize_t* len) {
    for (size_t tries = 0; tries < 10000; ++tries) {
        ssize_t n = receive_message(id, m, type != 0 ? type : kRequestType, IPC_NOWAIT);
        if (n < 0) return syscall_failed("msgrcv"), 1;
        *len = n;
        if (type != 0 || m.hdr.kind == kind) return 0;
        send_message(id, m, IPC_NOWAIT);  // not the one: put it back
    }
    return 1;
}

// A parent that leaves stdin and stdout non-blocking, as some tools do.
int exec_nonblocking(char** argv) {
    for (int fd : {STDIN_FILENO, STDOUT_FILENO}) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return syscall_failed("fcntl"), 1;
    }
    execvp(argv[0], argv);
    return syscall_failed("execvp"), 1;
}

}  // namespace

int main(int argc, char** argv) {
    g_prog = "hostile";
    if (argc > 2 && strcmp(argv[1], "nonblock") == 0) return exec_nonblocking(argv + 2);
    if (argc > 4 && strcmp(argv[2], "tkill") == 0) {  // no queue needed
        pid_t pid = pid_t(parse_number(argv[3], Radix::kDecimal, 1, INT_MAX, "PID"));
        int sig = int(parse_number(argv[4], Radix::kDecimal, 1, 64, "SIG"));
        return syscall(SYS_tgkill, pid, pid, sig) < 0 ? (syscall_failed("tgkill"), 1) : 0;
    }
    if (argc < 3)
        usage_error("usage: hostile KEY junk|forge PID|forgedata PID SEQ TEXT|hello PID|qbytes N|"
                    "steal [TYPE]|await|tamper|swap|twice|fill [TYPE]|squat|handover UID|count");
    g_key = key_t(parse_number(argv[1], Radix::kAny, 1, 0xFFFFFFFFLL, "KEY"));
    std::string what = argv[2];
    auto arg = [&](int i, long long lo, long long hi) {
        if (argc <= i) usage_error("%s needs more arguments", what.c_str());
        return parse_number(argv[i], Radix::kAny, lo, hi, what.c_str());
    };
    if (what == "squat") return msgget(g_key, IPC_CREAT | IPC_EXCL | 0666) < 0 ? 1 : 0;
    int id = qid_of(g_key);
    Message m;
    ssize_t n = 0;
    if (what == "junk") junk(id);
    if (what == "touch") {
        m.mtype = reply_type(getpid());
        m.hdr = Header{};
        if (send_message(id, m, IPC_NOWAIT) < 0 || receive_message(id, m, m.mtype, IPC_NOWAIT) < 0)
            return syscall_failed("msgsnd/msgrcv"), 1;
    }
    if (what == "forge") forge(id, pid_t(arg(3, 1, INT_MAX)));
    if (what == "hello")
        for (long long i = argc > 4 ? arg(4, 1, 100000) : 1; i > 0; --i)
            put(id, kRequestType, Header{int32_t(arg(3, 1, INT_MAX)), kHello, 0, 0, 0, 42});
    if (what == "session" && argc > 4) {
        put(id, kRequestType, Header{int32_t(arg(3, 1, INT_MAX)), kHello, 0, 0, 0, 42});
        forge_data(id, pid_t(arg(3, 1, INT_MAX)), 1, argv[4], 42);
    }
    if (what == "welcome") {
        pid_t pid = pid_t(arg(3, 1, INT_MAX));
        for (size_t tries = 0; tries < 100; ++tries) {  // its HELLO, put back at the end
            if (take(id, 0, kHello, m, &n) != 0) return 1;
            send_message(id, m, IPC_NOWAIT);
            if (m.hdr.pid == pid) break;
        }
        put(id, reply_type(pid), Header{1, kWelcome, 0, 0, 0, m.hdr.token});
    }
    if (what == "forgedata" && argc > 5)
        forge_data(id, pid_t(arg(3, 1, INT_MAX)), uint32_t(arg(4, 0, UINT32_MAX)), argv[5]);
    if (what == "steal") return take(id, argc > 3 ? long(arg(3, 1, LONG_MAX)) : 0, kData, m, &n);
    if (what == "await")
        return receive_message(id, m, kRequestType, 0) < 0 ? (syscall_failed("msgrcv"), 1) : 0;
    if (what == "twice") {
        if (take(id, 0, kEnd, m, &n) != 0) return 1;
        for (int i = 0; i < 2; ++i, ++m.hdr.seq)
            if (send_message(id, m, IPC_NOWAIT) < 0) return syscall_failed("msgsnd"), 1;
    }
    if (what == "tamper" || what == "swap") {
        if (take(id, 0, kData, m, &n) != 0) return 1;
        char word[8];
        if (what == "tamper") m.data[0] ^= 1;
        if (what == "swap" && m.hdr.len >= 16) {
            memcpy(word, m.data, 8);
            memmove(m.data, m.data + 8, 8);
            memcpy(m.data + 8, word, 8);
        }
        if (send_message(id, m, IPC_NOWAIT) < 0) return syscall_failed("msgsnd"), 1;
    }
    msqid_ds ds = {};
    if (msgctl(id, IPC_STAT, &ds) < 0) return syscall_failed("msgctl"), 1;
    if (what == "fill") {  // to the last byte, or a queue's worth if a reader takes them
        struct {
            long mtype = 42;
            char text[1000] = {};
        } junk;
        if (argc > 3) junk.mtype = long(arg(3, 1, LONG_MAX));
        size_t sent = 0;
        for (size_t len = sizeof junk.text; len > 0; len /= 2)
            while (sent < ds.msg_qbytes && msgsnd(id, &junk, len, IPC_NOWAIT) == 0) sent += len;
    }
    if (what == "count") printf("%lu\n", static_cast<unsigned long>(ds.msg_qnum));
    if (what == "handover") {
        ds.msg_perm.uid = uid_t(arg(3, 0, INT_MAX));
        if (msgctl(id, IPC_SET, &ds) < 0) return syscall_failed("msgctl(IPC_SET)"), 1;
    }
    if (what == "qbytes") {
        ds.msg_qbytes = msglen_t(arg(3, 1, 1 << 20));
        if (msgctl(id, IPC_SET, &ds) < 0) return syscall_failed("msgctl(IPC_SET)"), 1;
    }
    return 0;
}
