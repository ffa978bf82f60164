/* thread_guard.h - keeping the CPU backend's OpenMP threads safe around fork() and thread limits.
 * libgomp's pool does not survive fork, and libgomp exits the process when it cannot start a thread. */
#ifndef MSAM_THREAD_GUARD_H
#define MSAM_THREAD_GUARD_H

/* Register the fork handler (once per process; any later call does nothing). */
void msam_fork_guard_install(void);

/* The thread count a kernel may use, given the setting n: 1 in a child forked after this process
 * ran a parallel region (its pool's threads do not exist there; asking libgomp for more than one
 * thread would wait for them forever), else n. Records that a pool was started when n > 1. */
int msam_fork_limit_threads(int n);

/* 0 if n - 1 threads with libgomp's stack size can be started and joined now, else the errno of
 * the failure. Lets set_num_threads raise where libgomp would print and exit(1). */
int msam_try_start_threads(int n);

#endif
