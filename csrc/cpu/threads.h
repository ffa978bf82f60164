/* threads.h - the core's one global setting: how many threads a kernel may use.
 * Kernels pass msam_threads() to OpenMP's num_threads so callers on any thread agree. */
#ifndef MSAM_THREADS_H
#define MSAM_THREADS_H
int msam_threads(void);
/* Threads to size per-thread scratch for at load: the current setting or the CPU count, whichever
 * is larger (a kernel given less scratch than a later, larger setting asks for uses fewer). */
int msam_threads_for_sizing(void);
#endif
