/* alloc_probe.c - an allocation counter preloaded (LD_PRELOAD) into a test process: it records the
 * caller of every malloc-family call made while the probe is on, from any thread. predict turns it
 * on around its core call (see predictor.c), so a test can tell the core's allocations (callers in
 * the extension module) from the OpenMP runtime's (its per-region team records). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define MAX_CALLS 65536
static volatile int probe_on;
static volatile long probe_count;
static void *callers[MAX_CALLS];

static void note(void *caller) {
    if (!probe_on) return;
    const long i = __atomic_fetch_add(&probe_count, 1, __ATOMIC_RELAXED);
    if (i < MAX_CALLS) callers[i] = caller;
}

void *malloc(size_t n) { note(__builtin_return_address(0)); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(__builtin_return_address(0)); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(__builtin_return_address(0)); return __libc_realloc(p, n); }
void *memalign(size_t al, size_t n) { note(__builtin_return_address(0)); return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { note(__builtin_return_address(0)); return __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n) {
    note(__builtin_return_address(0));
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void msam_alloc_probe_begin(void) { probe_on = 1; }
void msam_alloc_probe_end(void) { probe_on = 0; }
void msam_alloc_probe_reset(void) { probe_count = 0; }
long msam_alloc_probe_count(void) { return probe_count; }

/* Calls recorded since the reset whose caller lies in a loaded file whose path contains part. */
long msam_alloc_probe_count_from(const char *part) {
    long n = 0, total = probe_count < MAX_CALLS ? probe_count : MAX_CALLS;
    for (long i = 0; i < total; i++) {
        Dl_info d;
        if (dladdr(callers[i], &d) && d.dli_fname && strstr(d.dli_fname, part)) n++;
    }
    return n;
}
