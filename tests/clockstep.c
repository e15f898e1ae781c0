/* tests/clockstep.c - an LD_PRELOAD shim for the tests: the wall clock
 * (time, gettimeofday, clock_gettime of CLOCK_REALTIME...) jumps by CLOCKSTEP
 * seconds (may be negative) once 1 s has passed since the first clock call,
 * as `date -s` or NTP would step it. CLOCK_MONOTONIC is left alone. Not part
 * of the product.
 *
 *   LD_PRELOAD=tests/clockstep.so CLOCKSTEP=3600 ./sender --wait 3
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The real clocks, by the system call: no symbol of ours is in the way. */
static int real_clock(clockid_t id, struct timespec* ts) {
    return (int)syscall(SYS_clock_gettime, id, ts);
}

static int is_wall(clockid_t id) {
    return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI;
}

/* Seconds to add to the wall clock now: 0 for the first second. */
static time_t step(void) {
    static double first = -1;
    struct timespec m;
    real_clock(CLOCK_MONOTONIC, &m);
    double now = (double)m.tv_sec + (double)m.tv_nsec / 1e9;
    if (first < 0) first = now;
    const char* s = getenv("CLOCKSTEP");
    return now - first >= 1.0 && s != NULL ? (time_t)atol(s) : 0;
}

int clock_gettime(clockid_t id, struct timespec* ts) {
    time_t add = step();
    int rc = real_clock(id, ts);
    if (rc == 0 && is_wall(id)) ts->tv_sec += add;
    return rc;
}

int gettimeofday(struct timeval* restrict tv, void* restrict tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t* t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t != NULL) *t = ts.tv_sec;
    return ts.tv_sec;
}
