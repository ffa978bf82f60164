/* emu_internal.h - what the emulation's runtime (runtime.cpp) and block scheduler (scheduler.cpp)
 * share; not for kernels. */
#ifndef MSAM_CUDA_EMU_INTERNAL_H
#define MSAM_CUDA_EMU_INTERNAL_H

#include <functional>
#include <string>

#include "cuda_emu.h"

namespace msam_emu {

/* Launch limits of the devices we target (sm_80 / sm_90): 48 KiB of dynamic shared memory unless
 * the kernel's cudaFuncAttributeMaxDynamicSharedMemorySize was raised, at most 227 KiB. */
constexpr size_t default_dynamic_shared = 48 * 1024;
constexpr size_t max_dynamic_shared_optin = 227 * 1024;
size_t dynamic_shared_limit(const void *kernel); /* runtime.cpp */

/* cudaSuccess or cudaErrorInvalidConfiguration with *msg saying what is wrong. */
cudaError_t check_config(const void *kernel, dim3 grid, dim3 block, size_t shmem, std::string *msg);

/* Runs every block of a grid (scheduler.cpp); on a failure (divergent barrier, bad shuffle) the
 * remaining blocks are skipped, *msg says what happened and cudaErrorLaunchFailure is returned. */
cudaError_t run_grid(dim3 grid, dim3 block, size_t shmem, const std::function<void()> &body, std::string *msg);

/* Runs node now, or records it when s is capturing (runtime.cpp); what a stream operation of
 * another library (cuBLAS) goes through. */
cudaError_t enqueue_on_stream(cudaStream_t s, std::function<cudaError_t()> node);

} // namespace msam_emu

#endif
