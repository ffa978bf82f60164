/* threads.c - the thread count every kernel uses (msam_set_num_threads / OMP_NUM_THREADS).
 * Stored once for the process so a call from any Python thread uses the same setting. */
#include "threads.h"

#include <string.h>

#include "msam.h"
#include "thread_guard.h"
#include "weights.h" /* msam_fail */

#ifdef _OPENMP
#include <omp.h>
#endif

static volatile int g_threads = 0; /* 0: the OpenMP default */

static int default_threads(void) {
#ifdef _OPENMP
    static int cached = 0;
    if (!cached) cached = omp_get_max_threads(); /* honours OMP_NUM_THREADS */
    return cached > 0 ? cached : 1;
#else
    return 1;
#endif
}

void msam_set_num_threads(int n) { g_threads = n > 0 ? n : 0; }

int msam_get_num_threads(void) {
    int n = g_threads;
    return n > 0 ? n : default_threads();
}

msam_status msam_set_num_threads_checked(int n, msam_error *err) {
    msam_fork_guard_install();
    const int rc = n > 1 ? msam_try_start_threads(n) : 0;
    if (rc)
        return msam_fail(err, MSAM_ERR_BACKEND, "the system refused to start %d threads (%s); the thread count stays %d",
                         n - 1, strerror(rc), msam_get_num_threads());
    msam_set_num_threads(n);
    return MSAM_OK;
}

/* Every kernel asks here, so the fork guard is in place before the first parallel region. */
int msam_threads(void) {
    msam_fork_guard_install();
    return msam_fork_limit_threads(msam_get_num_threads());
}

int msam_kernel_threads(void) { return msam_threads(); }

int msam_threads_for_sizing(void) {
    int n = msam_threads();
#ifdef _OPENMP
    if (omp_get_num_procs() > n) n = omp_get_num_procs();
#endif
    return n;
}
