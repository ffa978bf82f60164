/* cuda_emu.h - the CUDA subset our kernels use, for the host C++ compiler (MSAM_CUDA_EMULATION):
 * built-in indices, shared memory, barriers, warp shuffles, atomics, math and the runtime calls.
 *
 * Why: GPUs are rarely at hand here, so the .cu files are also compiled by g++ against this shim
 * and run on the CPU in CI. Each block runs on one worker OS thread, its threads as fibers (one
 * stack each) that switch only at __syncthreads, at a shuffle, vote or __syncwarp (a warp
 * barrier) and at exit,
 * so barriers are real: a missing __syncthreads reads data the other threads have not written
 * yet (dynamic shared memory starts as NaN bytes), and a barrier not every thread reaches is
 * reported as a launch failure instead of hanging. Blocks run concurrently on worker threads.
 *
 * What it cannot show: speed, coalescing, bank conflicts, occupancy, tensor-core paths, the real
 * (weak) memory model between blocks, independent scheduling inside a warp (lanes of a warp run
 * one after another between sync points; a shuffle orders their memory here, not on a GPU),
 * out-of-bounds device accesses (device memory is host
 * memory; run under a host sanitizer for that), and GPU math accuracy (expf, erff ... are the
 * host's correctly rounded-ish libm, GPU ones are within 2 ulp). Static __shared__ arrays are
 * per worker thread and keep what the previous block on that worker left (hardware: undefined).
 * Launches and copies run synchronously in the calling thread's order; streams are in-order
 * queues that are always drained. Stream capture records launches, copies and memsets as closures
 * with their arguments; a graph launch replays them. */
#ifndef MSAM_CUDA_EMU_H
#define MSAM_CUDA_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- qualifiers ------------------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __align__(n) alignas(n)
#define __launch_bounds__(...)
/* A block runs on one worker thread, so a per-thread static is a per-block shared variable. */
#define __shared__ static thread_local
#define __constant__ static

/* ---- vector types and indices ----------------------------------------------------------- */
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

namespace msam_emu {
/* What a running fiber sees of itself; set by the scheduler before every switch into a fiber. */
struct thread_coords {
    uint3 tid, bid;
    dim3 bdim, gdim;
};
extern thread_local const thread_coords *tls_coords;

void syncthreads(const char *file, int line);
/* Writes this lane's bits, waits for the warp, returns lane `src`'s bits (full mask only). */
uint64_t warp_exchange(unsigned mask, uint64_t mine, int src, const char *what);
/* The warp's predicates as a bit mask (lane l at bit l); also a warp barrier. */
unsigned warp_ballot(unsigned mask, int pred);
void syncwarp();
int lane_id();
void *dynamic_shared();
} // namespace msam_emu

#define threadIdx (::msam_emu::tls_coords->tid)
#define blockIdx (::msam_emu::tls_coords->bid)
#define blockDim (::msam_emu::tls_coords->bdim)
#define gridDim (::msam_emu::tls_coords->gdim)
static constexpr int warpSize = 32;

#define __syncthreads() ::msam_emu::syncthreads(__FILE__, __LINE__)
/* A warp barrier: lanes of a warp run one after another between sync points, so what one lane
 * wrote is seen by the others only after a __syncwarp (or a shuffle), as on Volta and later. */
#define __syncwarp(...) ::msam_emu::syncwarp()
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_block() __atomic_thread_fence(__ATOMIC_SEQ_CST)

/* ---- warp shuffles (width a power of two <= 32, as on the GPU) --------------------------- */
namespace msam_emu {
template <class T> static inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a 1-8 byte value");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> static inline T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}
} // namespace msam_emu

template <class T> static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    const int lane = msam_emu::lane_id(), base = lane & ~(width - 1);
    const int src = base + (src_lane & (width - 1));
    return msam_emu::from_bits<T>(msam_emu::warp_exchange(mask, msam_emu::to_bits(v), src, "__shfl_sync"));
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    const int lane = msam_emu::lane_id(), base = lane & ~(width - 1);
    int src = lane ^ lane_mask;
    if (src >= base + width) src = lane; /* a later group: own value */
    return msam_emu::from_bits<T>(msam_emu::warp_exchange(mask, msam_emu::to_bits(v), src, "__shfl_xor_sync"));
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    const int lane = msam_emu::lane_id();
    const int src = (lane & (width - 1)) + (int)delta < width ? lane + (int)delta : lane;
    return msam_emu::from_bits<T>(msam_emu::warp_exchange(mask, msam_emu::to_bits(v), src, "__shfl_down_sync"));
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    const int lane = msam_emu::lane_id();
    const int src = (lane & (width - 1)) >= (int)delta ? lane - (int)delta : lane;
    return msam_emu::from_bits<T>(msam_emu::warp_exchange(mask, msam_emu::to_bits(v), src, "__shfl_up_sync"));
}

/* ---- warp votes and bit counts --------------------------------------------------------------- */
static inline unsigned __ballot_sync(unsigned mask, int pred) { return msam_emu::warp_ballot(mask, pred); }
static inline int __any_sync(unsigned mask, int pred) { return msam_emu::warp_ballot(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) { return msam_emu::warp_ballot(mask, !pred) == 0; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
template <class T> static inline T __ldg(const T *p) { return *p; }

/* ---- atomics (real ones: blocks run concurrently) ---------------------------------------- */
static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline float atomicAdd(float *p, float v) {
    float old, desired;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do {
        desired = old + v;
    } while (!__atomic_compare_exchange(p, &old, &desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
namespace msam_emu {
template <class T, class Better> static inline T atomic_pick(T *p, T v, Better better) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (better(v, old) && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
} // namespace msam_emu
static inline int atomicMax(int *p, int v) { return msam_emu::atomic_pick(p, v, [](int a, int b) { return a > b; }); }
static inline unsigned atomicMax(unsigned *p, unsigned v) {
    return msam_emu::atomic_pick(p, v, [](unsigned a, unsigned b) { return a > b; });
}
static inline int atomicMin(int *p, int v) { return msam_emu::atomic_pick(p, v, [](int a, int b) { return a < b; }); }
static inline int atomicCAS(int *p, int expected, int desired) {
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return expected; /* the old value either way */
}
static inline unsigned atomicCAS(unsigned *p, unsigned expected, unsigned desired) {
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return expected;
}
static inline int atomicExch(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }

/* ---- math: device intrinsics as plain host functions ------------------------------------ */
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
/* glibc declares __expf and __logf itself: macros, not functions, here */
#define __expf(x) ::expf(x)
#define __logf(x) ::logf(x)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
static inline float __int_as_float(int i) { float x; std::memcpy(&x, &i, 4); return x; }
static inline unsigned __float_as_uint(float x) { unsigned i; std::memcpy(&i, &x, 4); return i; }
static inline float __uint_as_float(unsigned i) { float x; std::memcpy(&x, &i, 4); return x; }
using std::max;
using std::min;

/* ---- runtime API subset (C linkage, CUDA's names and error numbers) ----------------------- */
/* The runtime's entry points get our own link names, so a process that also loads the real
 * libcudart (torch does) never binds our calls to it or its callers to us. */
#define cudaGetErrorString msam_emu_cudaGetErrorString
#define cudaGetErrorName msam_emu_cudaGetErrorName
#define cudaGetLastError msam_emu_cudaGetLastError
#define cudaPeekAtLastError msam_emu_cudaPeekAtLastError
#define cudaGetDeviceCount msam_emu_cudaGetDeviceCount
#define cudaSetDevice msam_emu_cudaSetDevice
#define cudaGetDevice msam_emu_cudaGetDevice
#define cudaDeviceSynchronize msam_emu_cudaDeviceSynchronize
#define cudaDeviceReset msam_emu_cudaDeviceReset
#define cudaMalloc msam_emu_cudaMalloc
#define cudaFree msam_emu_cudaFree
#define cudaMallocHost msam_emu_cudaMallocHost
#define cudaFreeHost msam_emu_cudaFreeHost
#define cudaMemcpy msam_emu_cudaMemcpy
#define cudaMemcpyAsync msam_emu_cudaMemcpyAsync
#define cudaMemset msam_emu_cudaMemset
#define cudaMemsetAsync msam_emu_cudaMemsetAsync
#define cudaStreamCreate msam_emu_cudaStreamCreate
#define cudaStreamCreateWithFlags msam_emu_cudaStreamCreateWithFlags
#define cudaStreamDestroy msam_emu_cudaStreamDestroy
#define cudaStreamSynchronize msam_emu_cudaStreamSynchronize
#define cudaStreamQuery msam_emu_cudaStreamQuery
#define cudaStreamWaitEvent msam_emu_cudaStreamWaitEvent
#define cudaEventCreate msam_emu_cudaEventCreate
#define cudaEventCreateWithFlags msam_emu_cudaEventCreateWithFlags
#define cudaEventDestroy msam_emu_cudaEventDestroy
#define cudaEventRecord msam_emu_cudaEventRecord
#define cudaEventSynchronize msam_emu_cudaEventSynchronize
#define cudaEventQuery msam_emu_cudaEventQuery
#define cudaEventElapsedTime msam_emu_cudaEventElapsedTime
#define cudaStreamBeginCapture msam_emu_cudaStreamBeginCapture
#define cudaStreamEndCapture msam_emu_cudaStreamEndCapture
#define cudaStreamIsCapturing msam_emu_cudaStreamIsCapturing
#define cudaGraphInstantiate msam_emu_cudaGraphInstantiate
#define cudaGraphLaunch msam_emu_cudaGraphLaunch
#define cudaGraphDestroy msam_emu_cudaGraphDestroy
#define cudaGraphExecDestroy msam_emu_cudaGraphExecDestroy
#define cudaFuncSetAttribute msam_emu_cudaFuncSetAttribute

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorLaunchFailure = 719,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureImplicit = 906,
} cudaError_t;

typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
} cudaMemcpyKind;

typedef enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
} cudaStreamCaptureMode;

typedef enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
} cudaStreamCaptureStatus;

typedef enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02

extern "C" {
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);

cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s);

cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);

cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

/* Emulation only: the message of the last failed launch ("" if none), and counters since start
 * (or msam_emu_reset_counters): launches, cudaMalloc calls, host->device and device->host
 * copies, host synchronisations (stream/event/device synchronize and blocking copies). */
const char *msam_emu_error_message(void);
typedef struct {
    long long launches, mallocs, h2d, d2h, syncs;
} msam_emu_counters;
void msam_emu_get_counters(msam_emu_counters *c);
void msam_emu_reset_counters(void);
/* Order in which a block's runnable threads are resumed between sync points: 0 ascending
 * (default, or MSAM_EMU_ORDER=forward), 1 descending, 2 shuffled with the seed. */
void msam_emu_set_order(int order, unsigned seed);
}

template <class T> static inline cudaError_t cudaMalloc(T **p, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void **>(p), bytes);
}

/* ---- kernel launch ----------------------------------------------------------------------- */
namespace msam_emu {
cudaError_t launch(const void *kernel, dim3 grid, dim3 block, size_t shmem, cudaStream_t s,
                   std::function<void()> body);
cudaError_t func_set_attribute(const void *kernel, cudaFuncAttribute attr, int value);

template <class... P> struct launcher {
    void (*kernel)(P...);
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;
    /* Arguments convert to the parameter types once, as a real launch copies them. */
    template <class... A> void operator()(A &&...a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
        std::tuple<typename std::decay<P>::type...> args(std::forward<A>(a)...);
        void (*k)(P...) = kernel;
        launch(reinterpret_cast<const void *>(k), grid, block, shmem, stream, [k, args]() { std::apply(k, args); });
    }
};
template <class... P>
static inline launcher<P...> make_launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem,
                                           cudaStream_t stream) {
    return launcher<P...>{kernel, grid, block, shmem, stream};
}
} // namespace msam_emu

template <class... P>
static inline cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
    return msam_emu::func_set_attribute(reinterpret_cast<const void *>(kernel), attr, value);
}

#define MSAM_EMU_LAUNCH(kernel, grid, block, shmem, stream)                                                           \
    ::msam_emu::make_launcher(kernel, grid, block, shmem, stream)

#endif
