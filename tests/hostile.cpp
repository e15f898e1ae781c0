// tests/hostile.cpp - accidents for the fault tests: stray and malformed
// messages, a lowered msg_qbytes, a queue squatted by another user, a
// peer of another protocol, inherited non-blocking descriptors. Not part of
// the product.
//
//   hostile KEY junk               malformed requests, and requests for no session
//   hostile KEY hello VERSION [TYPE]  a HELLO of protocol VERSION, with reply type
//                                  TYPE (default 1000 + pid); without TYPE, prints
//                                  the reply's kind and data (waits at most 5 s)
//   hostile KEY qbytes N           lower the queue's msg_qbytes to N
//   hostile KEY fill [TYPE]        fill the queue with messages of TYPE (42)
//   hostile KEY squat [MODE]       create the queue under KEY, mode 0666 or MODE
//   hostile KEY handover UID       make UID the owner (the creator stays)
//   hostile KEY count              print how many messages the queue holds
//   hostile nonblock CMD...        run CMD with its stdin and stdout O_NONBLOCK
#include "common.h"

#include <string>

namespace {

int queue_of(key_t key) {
    int id = msgget(key, 0);
    if (id < 0) {
        complain("msgget: %s", strerror(errno));
        exit(1);
    }
    return id;
}

// quiet: a failure is expected (a message bigger than msgmax) and not said.
void put(int id, long type, const std::string& text, bool quiet = false) {
    static Message buf;
    char* mtext = reinterpret_cast<char*>(&buf.hdr);
    buf.mtype = type;
    std::string t = text.substr(0, kTextSize);
    memcpy(mtext, t.data(), t.size());
    if (msgsnd(id, &buf, t.size(), IPC_NOWAIT) < 0 && !quiet) complain("msgsnd: %s", strerror(errno));
}

std::string request(int32_t session, uint16_t kind, uint32_t len, const std::string& data = "") {
    Header h = {session, kind, 0, int32_t(getpid()), len};
    return std::string(reinterpret_cast<const char*>(&h), sizeof h) + data;
}

void junk(int id) {
    for (long type : {kSessionType, kNewcomerType}) {
        put(id, type, "abc");
        put(id, type, "");
        if (type == kSessionType)  // > 8192; only one, as two may not fit the queue at once
            put(id, type, request(77, kData, 8200, std::string(8200, 'x')), true);
        put(id, type, request(77, kData, 500, "short"));
        put(id, type, request(77, 99, 0));
        put(id, type, request(77, kData, 4, "evil"));
        put(id, type, request(77, kHello, 3, "abc"));
    }
    Hello h = my_hello();
    h.pid = 0;
    put(id, kNewcomerType, request(77, kHello, sizeof h, std::string(reinterpret_cast<char*>(&h), sizeof h)));
}

// A HELLO of protocol version; with a given reply type, only sent.
int hello(int id, uint32_t version, long type) {
    Hello h = my_hello();
    h.protocol = version;
    bool wait = type == 0;
    if (wait) type = 1000 + getpid();
    put(id, kNewcomerType, request(int32_t(type), kHello, sizeof h, std::string(reinterpret_cast<char*>(&h), sizeof h)));
    if (!wait) return 0;
    alarm(5);
    Message m;
    ssize_t n = msgrcv(id, &m, kTextSize, type, 0);
    if (n < 0) return complain("msgrcv: %s", strerror(errno)), 1;
    if (m.hdr.kind == kWait) n = msgrcv(id, &m, kTextSize, type, 0);  // then WELCOME or REFUSE
    if (n < 0) return complain("msgrcv: %s", strerror(errno)), 1;
    printf("%s: %.*s\n", kind_name(m.hdr.kind), int(m.hdr.len), m.data);
    return 0;
}

// A parent that leaves stdin and stdout non-blocking, as some tools do.
int exec_nonblocking(char** argv) {
    for (int fd : {STDIN_FILENO, STDOUT_FILENO}) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return complain("fcntl"), 1;
    }
    execvp(argv[0], argv);
    return complain("execvp: %s", strerror(errno)), 1;
}

}  // namespace

int main(int argc, char** argv) {
    g_prog = "hostile";
    if (argc > 2 && strcmp(argv[1], "nonblock") == 0) return exec_nonblocking(argv + 2);
    if (argc < 3) usage_error("usage: hostile KEY junk|hello V|qbytes N|fill [TYPE]|squat|handover UID|count");
    key_t key = key_t(parse_number(argv[1], 0, 1, 0xffffffffLL, "KEY"));
    std::string what = argv[2];
    long long arg = argc > 3 ? parse_number(argv[3], 0, 0, 0x7fffffff, what.c_str()) : 0;
    if (what == "squat") return msgget(key, IPC_CREAT | IPC_EXCL | int(arg ? arg : 0666)) < 0;
    int id = queue_of(key);
    if (what == "junk") junk(id);
    if (what == "hello") return hello(id, uint32_t(arg), argc > 4 ? long(atol(argv[4])) : 0);
    msqid_ds ds = {};
    if (msgctl(id, IPC_STAT, &ds) < 0) return complain("msgctl: %s", strerror(errno)), 1;
    if (what == "fill") {  // to the last byte, or a queue's worth if a reader takes them
        struct {
            long mtype;
            char text[1000];
        } filler = {arg ? long(arg) : 42, {}};
        size_t sent = 0;
        for (size_t len = sizeof filler.text; len > 0; len /= 2)
            while (sent < ds.msg_qbytes && msgsnd(id, &filler, len, IPC_NOWAIT) == 0) sent += len;
    }
    if (what == "count") printf("%lu\n", static_cast<unsigned long>(ds.msg_qnum));
    if (what == "handover" || what == "qbytes") {
        if (what == "handover") ds.msg_perm.uid = uid_t(arg);
        if (what == "qbytes") ds.msg_qbytes = msglen_t(arg);
        if (msgctl(id, IPC_SET, &ds) < 0) return complain("msgctl(IPC_SET): %s", strerror(errno)), 1;
    }
    return 0;
}
