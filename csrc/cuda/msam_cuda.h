/* msam_cuda.h - what every kernel file of the CUDA backend includes: the CUDA runtime (or, with
 * MSAM_CUDA_EMULATION, our host shim), the one launch macro, and the warp/block reductions.
 *
 * Kernels are written in the subset the shim emulates (emu/cuda_emu.h): launches only through
 * MSAM_LAUNCH, dynamic shared memory only through MSAM_DYNAMIC_SHARED, shuffles with the full
 * mask, block sizes a multiple of 32 wherever a shuffle is used. */
#ifndef MSAM_CUDA_H
#define MSAM_CUDA_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(MSAM_CUDA_EMULATION)
#include "emu/cuda_emu.h"
/* MSAM_LAUNCH(kernel, grid, block, shmem, stream)(args...) */
#define MSAM_LAUNCH(kernel, grid, block, shmem, stream) MSAM_EMU_LAUNCH(kernel, grid, block, shmem, stream)
#define MSAM_DYNAMIC_SHARED(type, name) type *name = static_cast<type *>(::msam_emu::dynamic_shared())
#elif defined(__CUDACC__)
#include <cuda_runtime.h>
#define MSAM_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<grid, block, shmem, stream>>>
/* One untyped extern array for the whole translation unit (typed ones of different types clash). */
#define MSAM_DYNAMIC_SHARED(type, name)                                                                    \
    extern __shared__ __align__(16) unsigned char msam_dynamic_shared_[];                                 \
    type *name = reinterpret_cast<type *>(msam_dynamic_shared_)
#else
#error "csrc/cuda is compiled by nvcc, or by a C++ compiler with MSAM_CUDA_EMULATION defined"
#endif

#include "cuda_kernels.h"

#define MSAM_FULL_MASK 0xffffffffu
#define MSAM_WARP 32

/* Blocks of `per` threads (or items) covering n, at least one. */
static inline unsigned msam_blocks_for(size_t n, unsigned per) {
    size_t b = (n + per - 1) / per;
    return b ? (unsigned)b : 1u;
}

/* Butterfly reductions: every lane ends with the warp's total / maximum. */
static __device__ __forceinline__ float msam_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(MSAM_FULL_MASK, v, o);
    return v;
}
static __device__ __forceinline__ float msam_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(MSAM_FULL_MASK, v, o));
    return v;
}

/* Sum / maximum over a whole block (blockDim.x a multiple of 32, at most 1024) through `red`,
 * 32 floats of shared memory; every thread gets the result. Ends with a barrier so red can be
 * reused at once. */
static __device__ __forceinline__ float msam_block_sum(float v, float *red) {
    const int lane = threadIdx.x % MSAM_WARP, warp = threadIdx.x / MSAM_WARP;
    const int nwarps = blockDim.x / MSAM_WARP;
    v = msam_warp_sum(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < nwarps ? red[lane] : 0.0f;
        t = msam_warp_sum(t);
        if (lane == 0) red[0] = t;
    }
    __syncthreads();
    const float total = red[0];
    __syncthreads();
    return total;
}
static __device__ __forceinline__ float msam_block_max(float v, float *red) {
    const int lane = threadIdx.x % MSAM_WARP, warp = threadIdx.x / MSAM_WARP;
    const int nwarps = blockDim.x / MSAM_WARP;
    v = msam_warp_max(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < nwarps ? red[lane] : -INFINITY;
        t = msam_warp_max(t);
        if (lane == 0) red[0] = t;
    }
    __syncthreads();
    const float m = red[0];
    __syncthreads();
    return m;
}

/* CUDA has no float atomicMax: compare-and-swap on the bits. */
static __device__ __forceinline__ float msam_atomic_max_float(float *addr, float v) {
    int *p = reinterpret_cast<int *>(addr);
    int old = *p;
    while (__int_as_float(old) < v) {
        const int seen = atomicCAS(p, old, __float_as_int(v));
        if (seen == old) break;
        old = seen;
    }
    return __int_as_float(old);
}

/* The launchers' status: the launch error, if any (no synchronisation). */
static inline int msam_cuda_status(void) { return (int)cudaGetLastError(); }

#endif
