/* thread_guard.c - fork and thread-creation guards for the OpenMP kernels (see thread_guard.h).
 * A fork child handler marks the child; kernels then ask for one thread, which libgomp runs on
 * the calling thread without touching the inherited (dead) pool. */
#include "thread_guard.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static atomic_int g_pool_started = 0; /* a region with more than one thread ran in this process */
static atomic_int g_single = 0;       /* forked after the pool was started: one thread only */
static pthread_once_t g_install_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void) {
    if (!atomic_load(&g_pool_started)) return; /* no pool yet: the child may start its own */
    atomic_store(&g_single, 1);
#ifdef _OPENMP
    omp_set_num_threads(1); /* the forking thread's default too, for any region without num_threads */
#endif
}

static void install(void) { (void)pthread_atfork(NULL, NULL, on_fork_child); }

void msam_fork_guard_install(void) { (void)pthread_once(&g_install_once, install); }

int msam_fork_limit_threads(int n) {
    if (atomic_load(&g_single)) return 1;
    if (n > 1 && !atomic_load_explicit(&g_pool_started, memory_order_relaxed))
        atomic_store(&g_pool_started, 1);
    return n;
}

/* libgomp's worker stack: OMP_STACKSIZE / GOMP_STACKSIZE ("<n>[B|K|M|G]", default unit K),
 * else the default thread attributes (0 here). */
static size_t omp_stack_bytes(void) {
    const char *s = getenv("OMP_STACKSIZE");
    if (!s || !*s) s = getenv("GOMP_STACKSIZE");
    if (!s || !*s) return 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return 0;
    while (*end && isspace((unsigned char)*end)) end++;
    unsigned long long unit = 1024;
    switch (toupper((unsigned char)*end)) {
    case 'B': unit = 1; break;
    case 'M': unit = 1024ull * 1024; break;
    case 'G': unit = 1024ull * 1024 * 1024; break;
    default: break;
    }
    return (size_t)(v * unit);
}

static void *return_at_once(void *arg) { return arg; }

int msam_try_start_threads(int n) {
    if (n <= 1) return 0;
    pthread_t *ids = malloc(sizeof(pthread_t) * (size_t)(n - 1));
    if (!ids) return ENOMEM;
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc) {
        free(ids);
        return rc;
    }
    size_t stack = omp_stack_bytes();
    if (stack) (void)pthread_attr_setstacksize(&attr, stack);
    int started = 0;
    for (; started < n - 1; started++) { /* all alive at once: joinable stacks stay until joined */
        rc = pthread_create(&ids[started], &attr, return_at_once, NULL);
        if (rc) break;
    }
    for (int i = 0; i < started; i++) pthread_join(ids[i], NULL);
    pthread_attr_destroy(&attr);
    free(ids);
    return rc;
}
