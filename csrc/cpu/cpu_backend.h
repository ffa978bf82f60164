/* cpu_backend.h - the CPU backend's entry point, named only by the registry (csrc/registry/):
 * its op table (host memory, OpenMP threads, AVX2/AVX-512 kernels chosen at run time). */
#ifndef MSAM_CPU_BACKEND_H
#define MSAM_CPU_BACKEND_H
#include "../core/ops.h"

const msam_ops *msam_cpu_ops(void);

#endif
