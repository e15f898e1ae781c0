// tests/hostile.cpp - what any process with write access can do to a queue,
// for the fault tests. Not part of the product.
//
//   hostile KEY junk               malformed requests and strangers' messages
//   hostile KEY forge PID          replies and requests forged for sender PID
//   hostile KEY qbytes N           lower the queue's msg_qbytes to N
//   hostile KEY inject PID         a first async DATA message in the name of PID
//   hostile KEY steal              take the first DATA request out of the queue
//   hostile KEY fill               fill the queue with messages nobody reads
//   hostile KEY squat              create the queue under KEY with mode 0666
//   hostile KEY handover UID       make UID the owner (the creator stays)
//   hostile KEY count              print how many messages the queue holds
#include "common.h"

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

void put(int id, long type, const void* text, size_t n) {
    struct {
        long mtype;
        char text[16384];
    } buf = {};
    buf.mtype = type;
    memcpy(buf.text, text, n);
    if (msgsnd(id, &buf, n, IPC_NOWAIT) < 0) syscall_failed("msgsnd");
}

void put(int id, long type, Header h, size_t extra = 0) {
    char text[16384] = {};
    memcpy(text, &h, sizeof h);
    put(id, type, text, sizeof h + extra);
}

// Requests no receiver should act on: short, empty, oversized, lying about
// their length, of unknown kinds, from strangers.
void junk(int id) {
    put(id, kRequestType, "abc", 3);
    put(id, kRequestType, "", 0);
    msginfo info = {};
    msgctl(0, IPC_INFO, reinterpret_cast<msqid_ds*>(&info));
    if (size_t(info.msgmax) > kTextSize) put(id, kRequestType, Header{1, kData, 0, 1, 9000}, 9000);
    put(id, kRequestType, Header{1, kData, 0, 1, 500}, 20);
    put(id, kRequestType, Header{int32_t(getpid()), 99, 0, 1, 0});
    put(id, kRequestType, Header{999999, kData, 0, 1, 4}, 4);
    put(id, kRequestType, Header{999999, kHello, 0, 0, 0});
    put(id, kRequestType, Header{1, kEnd, 0, 1, 0});
}

// A forger who knows a sender's pid: replies it never asked for, and
// requests in its name with a wrong sequence number.
void forge(int id, pid_t pid) {
    put(id, reply_type(pid), Header{1, kAck, 0, 777, 0});
    put(id, reply_type(pid), Header{1, kTally, 0, 777, 0});
    put(id, reply_type(pid), "xy", 2);
    put(id, kRequestType, Header{int32_t(pid), kData, 0, 777, 6}, 6);
    put(id, kRequestType, Header{int32_t(pid), kEnd, 0, 778, 0});
}

void inject(int id, pid_t pid) {
    Header h{int32_t(pid), kData, kNoAck, 1, 5};
    char text[sizeof h + 5];
    memcpy(text, &h, sizeof h);
    memcpy(text + sizeof h, "evil\n", 5);
    put(id, kRequestType, text, sizeof text);
}

int steal(int id) {
    Message m;
    for (;;) {
        ssize_t n = receive_message(id, m, kRequestType, IPC_NOWAIT);
        if (n < 0) return syscall_failed("msgrcv"), 1;
        if (m.hdr.kind == kData) return 0;
        send_message(id, m, IPC_NOWAIT);  // not the one: put it back (at the end)
    }
}

}  // namespace

int main(int argc, char** argv) {
    g_prog = "hostile";
    if (argc < 3)
        usage_error("usage: hostile KEY junk|forge PID|inject PID|qbytes N|steal|fill|squat|"
                    "handover UID|count");
    g_key = key_t(parse_number(argv[1], 0, 1, 0xFFFFFFFFLL, "KEY"));
    std::string what = argv[2];
    if (what == "squat") return msgget(g_key, IPC_CREAT | IPC_EXCL | 0666) < 0 ? 1 : 0;
    int id = qid_of(g_key);
    if (what == "junk") junk(id);
    if (what == "forge" && argc > 3) forge(id, pid_t(parse_number(argv[3], 10, 1, INT_MAX, "PID")));
    if (what == "inject" && argc > 3)
        inject(id, pid_t(parse_number(argv[3], 10, 1, INT_MAX, "PID")));
    if (what == "steal") return steal(id);
    if (what == "fill") {
        struct {
            long mtype = 42;
            char text[1000] = {};
        } junk;
        for (size_t n = sizeof junk.text; n > 0; n /= 2)  // to the last byte
            while (msgsnd(id, &junk, n, IPC_NOWAIT) == 0) {
            }
    }
    msqid_ds ds = {};
    if (msgctl(id, IPC_STAT, &ds) < 0) return syscall_failed("msgctl"), 1;
    if (what == "count") printf("%lu\n", static_cast<unsigned long>(ds.msg_qnum));
    if (what == "handover" && argc > 3) {
        ds.msg_perm.uid = uid_t(parse_number(argv[3], 10, 0, INT_MAX, "UID"));
        if (msgctl(id, IPC_SET, &ds) < 0) return syscall_failed("msgctl(IPC_SET)"), 1;
    }
    if (what == "qbytes" && argc > 3) {
        ds.msg_qbytes = msglen_t(parse_number(argv[3], 10, 1, 1 << 20, "N"));
        if (msgctl(id, IPC_SET, &ds) < 0) return syscall_failed("msgctl(IPC_SET)"), 1;
    }
    return 0;
}
