/* tests/rmid_eperm.c - an LD_PRELOAD shim for the tests: msgctl(IPC_RMID) fails with EPERM, as
 * under a security policy that lets a process make a queue but not remove it. Other msgctl
 * commands go to the C library. Not part of the product.
 *
 *   LD_PRELOAD=tests/rmid_eperm.so ./receiver
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/msg.h>

int msgctl(int id, int cmd, struct msqid_ds* buf) {
    static int (*real)(int, int, struct msqid_ds*);
    if (cmd == IPC_RMID) {
        errno = EPERM;
        return -1;
    }
    if (real == NULL) real = (int (*)(int, int, struct msqid_ds*))dlsym(RTLD_NEXT, "msgctl");
    return real(id, cmd, buf);
}
