/* threads.h - the core's one global setting: how many threads a kernel may use.
 * Kernels pass msam_threads() to OpenMP's num_threads so callers on any thread agree. */
#ifndef MSAM_THREADS_H
#define MSAM_THREADS_H
int msam_threads(void);
#endif
