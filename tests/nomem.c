/* tests/nomem.c - an LD_PRELOAD shim for the tests: malloc, calloc and
 * realloc (and so C++'s operator new) fail with ENOMEM for NOMEM_ABOVE bytes
 * or more, as they would once memory or RLIMIT_AS runs out. Smaller requests
 * go to the C library's allocator. Not part of the product.
 *
 *   LD_PRELOAD=tests/nomem.so NOMEM_ABOVE=16384 ./receiver --senders 1000
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

/* glibc's own allocator, under names no preload takes. */
extern void* __libc_malloc(size_t n);
extern void* __libc_calloc(size_t count, size_t n);
extern void* __libc_realloc(void* p, size_t n);

static int too_big(size_t n) {
    const char* s = getenv("NOMEM_ABOVE");
    return s != NULL && *s != '\0' && n >= strtoull(s, NULL, 10);
}

void* malloc(size_t n) {
    if (too_big(n)) return errno = ENOMEM, NULL;
    return __libc_malloc(n);
}

void* calloc(size_t count, size_t n) {
    if (n != 0 && count > (size_t)-1 / n) return errno = ENOMEM, NULL;
    if (too_big(count * n)) return errno = ENOMEM, NULL;
    return __libc_calloc(count, n);
}

void* realloc(void* p, size_t n) {
    if (too_big(n)) return errno = ENOMEM, NULL;
    return __libc_realloc(p, n);
}
