/* selftest.cu - small kernels that test the emulation itself (tests/test_cuda_emulation.py builds
 * them; they are no part of the backend): barriers that must hold and ones deliberately missing or
 * divergent, warp shuffles, atomics, launch limits and stream capture. Also compiles with nvcc. */
#include "../msam_cuda.h"

/* ---- barriers: out[t] = in[n - 1 - t] through shared memory ---- */
static __global__ void reverse_kernel(float *out, const float *in, int with_barrier) {
    MSAM_DYNAMIC_SHARED(float, s);
    const int t = threadIdx.x, n = blockDim.x;
    s[t] = in[blockIdx.x * n + t];
    if (with_barrier) __syncthreads();
    out[blockIdx.x * n + t] = s[n - 1 - t];
}

/* with_barrier 0 is the bug under test: the result is wrong on the emulation (and racy on a GPU). */
extern "C" int msam_emu_selftest_reverse(float *out, const float *in, int blocks, int threads, int with_barrier) {
    MSAM_LAUNCH(reverse_kernel, dim3(blocks), dim3(threads), threads * sizeof(float), (cudaStream_t)0)(out, in,
                                                                                                        with_barrier);
    return msam_cuda_status();
}

/* mode 0: threads below 16 return before the barrier the others wait at; mode 1: odd and even
 * threads wait at two different __syncthreads; mode 2: half a warp leaves before a shuffle. */
static __global__ void divergent_kernel(float *out, int mode) {
    const int t = threadIdx.x;
    float v = (float)t;
    if (mode == 0) {
        if (t < 16) return;
        __syncthreads();
    } else if (mode == 1) {
        if (t % 2)
            __syncthreads();
        else
            __syncthreads();
    } else {
        if (t % 32 < 16) return;
        v = msam_warp_sum(v);
    }
    out[t] = v;
}

extern "C" int msam_emu_selftest_divergent(float *out, int mode) {
    MSAM_LAUNCH(divergent_kernel, dim3(1), dim3(64), 0, (cudaStream_t)0)(out, mode);
    return msam_cuda_status();
}

/* ---- shuffles: per lane, the four shuffle forms with the given width ---- */
static __global__ void shuffle_kernel(int *out, int width, int arg) {
    const int t = threadIdx.x, lane = t % 32;
    const int v = t * 10 + 7;
    int *o = out + (size_t)t * 4;
    o[0] = __shfl_xor_sync(MSAM_FULL_MASK, v, arg, width);
    o[1] = __shfl_down_sync(MSAM_FULL_MASK, v, (unsigned)arg, width);
    o[2] = __shfl_up_sync(MSAM_FULL_MASK, v, (unsigned)arg, width);
    o[3] = __shfl_sync(MSAM_FULL_MASK, v, (lane * 3 + arg) % 32, width);
}

extern "C" int msam_emu_selftest_shuffle(int *out, int threads, int width, int arg) {
    MSAM_LAUNCH(shuffle_kernel, dim3(1), dim3(threads), 0, (cudaStream_t)0)(out, width, arg);
    return msam_cuda_status();
}

/* ---- votes: per thread ballot(t % 3 == 0), any(t == 40), all(t < 1000), popc(ballot) ---- */
static __global__ void vote_kernel(unsigned *out) {
    const int t = threadIdx.x;
    const unsigned b = __ballot_sync(MSAM_FULL_MASK, t % 3 == 0);
    out[t * 4 + 0] = b;
    out[t * 4 + 1] = (unsigned)__any_sync(MSAM_FULL_MASK, t == 40);
    out[t * 4 + 2] = (unsigned)__all_sync(MSAM_FULL_MASK, t < 1000);
    out[t * 4 + 3] = (unsigned)__popc(b);
}

extern "C" int msam_emu_selftest_vote(unsigned *out, int threads) {
    MSAM_LAUNCH(vote_kernel, dim3(1), dim3(threads), 0, (cudaStream_t)0)(out);
    return msam_cuda_status();
}

/* ---- block reductions over blockDim.x threads, one value per block ---- */
static __global__ void block_reduce_kernel(float *sums, float *maxs, const float *x, int n) {
    __shared__ float red[32];
    float s = 0.0f, m = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        s += x[(size_t)blockIdx.x * n + i];
        m = fmaxf(m, x[(size_t)blockIdx.x * n + i]);
    }
    s = msam_block_sum(s, red);
    m = msam_block_max(m, red);
    if (threadIdx.x == 0) {
        sums[blockIdx.x] = s;
        maxs[blockIdx.x] = m;
    }
}

extern "C" int msam_emu_selftest_block_reduce(float *sums, float *maxs, const float *x, int blocks, int n,
                                              int threads) {
    MSAM_LAUNCH(block_reduce_kernel, dim3(blocks), dim3(threads), 0, (cudaStream_t)0)(sums, maxs, x, n);
    return msam_cuda_status();
}

/* ---- atomics from every thread of many blocks ---- */
static __global__ void atomics_kernel(int *count, float *fsum, int *imax, float *fmax, const float *x, size_t n) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(count, 1);
    atomicAdd(fsum, x[i]);
    atomicMax(imax, (int)(x[i] * 1000.0f));
    msam_atomic_max_float(fmax, x[i]);
}

extern "C" int msam_emu_selftest_atomics(int *count, float *fsum, int *imax, float *fmax, const float *x, size_t n) {
    MSAM_LAUNCH(atomics_kernel, dim3(msam_blocks_for(n, 64)), dim3(64), 0, (cudaStream_t)0)(count, fsum, imax, fmax,
                                                                                             x, n);
    return msam_cuda_status();
}

/* ---- launch limits: block size, dynamic shared memory with and without the opt-in ---- */
static __global__ void touch_shared_kernel(float *out, int n) {
    MSAM_DYNAMIC_SHARED(float, s);
    for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = (float)i;
    __syncthreads();
    if (threadIdx.x == 0) out[0] = s[n - 1];
}

/* what 0: 2048 threads; 1: 64 KiB of dynamic shared memory without the attribute; 2: with it. */
extern "C" int msam_emu_selftest_limits(float *out, int what) {
    if (what == 0) {
        MSAM_LAUNCH(touch_shared_kernel, dim3(1), dim3(2048), 0, (cudaStream_t)0)(out, 1);
        return msam_cuda_status();
    }
    const int n = 16384; /* 64 KiB */
    if (what == 2) {
        cudaError_t e = cudaFuncSetAttribute(touch_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             n * (int)sizeof(float));
        if (e != cudaSuccess) return (int)e;
    }
    MSAM_LAUNCH(touch_shared_kernel, dim3(1), dim3(256), n * sizeof(float), (cudaStream_t)0)(out, n);
    return msam_cuda_status();
}

/* ---- stream capture: y += x twice per replay, then a device copy of y ---- */
static __global__ void axpy_kernel(float *y, const float *x, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

/* d_y, d_x, d_snapshot: n floats of device memory (msam_emu_selftest_malloc).
 * Captures: y += x; y += x; copy y -> snapshot; copies y to the host right after the capture (to
 * show nothing ran), then replays `replays` times. 101: cudaMalloc was not refused in capture. */
extern "C" int msam_emu_selftest_graph(float *d_y, const float *d_x, float *d_snapshot, int n, int replays,
                                       float *host_y_after_capture) {
    cudaStream_t s;
    cudaGraph_t g;
    cudaGraphExec_t ge;
    cudaError_t e;
    if ((e = cudaStreamCreate(&s))) return (int)e;
    if ((e = cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal))) return (int)e;
    const unsigned blocks = msam_blocks_for((size_t)n, 128);
    MSAM_LAUNCH(axpy_kernel, dim3(blocks), dim3(128), 0, s)(d_y, d_x, n);
    MSAM_LAUNCH(axpy_kernel, dim3(blocks), dim3(128), 0, s)(d_y, d_x, n);
    cudaMemcpyAsync(d_snapshot, d_y, n * sizeof(float), cudaMemcpyDeviceToDevice, s);
    /* a cudaMalloc inside a global-mode capture is refused */
    void *p = nullptr;
    if (cudaMalloc(&p, 16) != cudaErrorStreamCaptureUnsupported) return 101;
    (void)cudaGetLastError();
    if ((e = cudaStreamEndCapture(s, &g))) return (int)e;
    if ((e = cudaMemcpy(host_y_after_capture, d_y, n * sizeof(float), cudaMemcpyDeviceToHost))) return (int)e;
    if ((e = cudaGraphInstantiate(&ge, g, 0))) return (int)e;
    for (int r = 0; r < replays; r++)
        if ((e = cudaGraphLaunch(ge, s))) return (int)e;
    if ((e = cudaStreamSynchronize(s))) return (int)e;
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    cudaStreamDestroy(s);
    return 0;
}

/* cudaMalloc / cudaMemcpy / cudaFree / cudaDeviceSynchronize for the test driver (ctypes), the
 * same names whichever runtime is linked (nvcc's static cudart does not export its own). */
extern "C" int msam_emu_selftest_malloc(void **p, size_t bytes) { return (int)cudaMalloc(p, bytes); }
extern "C" int msam_emu_selftest_free(void *p) { return (int)cudaFree(p); }
extern "C" int msam_emu_selftest_copy(void *dst, const void *src, size_t bytes, int kind) {
    return (int)cudaMemcpy(dst, src, bytes, (cudaMemcpyKind)kind);
}
extern "C" int msam_emu_selftest_sync(void) { return (int)cudaDeviceSynchronize(); }
