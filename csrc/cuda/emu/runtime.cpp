/* runtime.cpp - the CUDA runtime calls of cuda_emu.h as host equivalents: device memory is host
 * memory (tracked, so copies are checked against their allocation), streams run work at once in
 * call order, and stream capture records closures that a graph launch replays. */
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "emu_internal.h"

struct CUstream_st {
    bool capturing = false;
    bool invalidated = false;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
    CUgraph_st *graph = nullptr;
};
struct CUevent_st {
    std::chrono::steady_clock::time_point t;
    bool recorded = false;
};
struct CUgraph_st {
    std::vector<std::function<cudaError_t()>> nodes;
};
struct CUgraphExec_st {
    std::vector<std::function<cudaError_t()>> nodes;
};

namespace msam_emu {
namespace {

std::mutex g_mu; /* guards everything below */
cudaError_t g_last = cudaSuccess, g_sticky = cudaSuccess;
std::string g_message;
std::map<uintptr_t, size_t> g_allocs; /* cudaMalloc'ed ranges */
std::map<const void *, size_t> g_shared_limit;
int g_global_captures = 0; /* captures in global mode: unsafe calls are refused meanwhile */
msam_emu_counters g_counters{};

cudaError_t set_error(cudaError_t e, const std::string &msg, bool sticky) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_last = e;
    if (sticky && g_sticky == cudaSuccess) g_sticky = e;
    g_message = msg;
    return e;
}

cudaError_t sticky() {
    std::lock_guard<std::mutex> lock(g_mu);
    return g_sticky;
}

/* A call that a global-mode capture forbids (it would synchronise or allocate): invalidates the
 * captures and fails, as the real runtime does. */
bool refused_during_capture(const char *what) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_global_captures == 0) return false;
    g_last = cudaErrorStreamCaptureUnsupported;
    g_message = std::string(what) + " called while a stream is being captured";
    return true;
}

/* Is [p, p + bytes) inside one cudaMalloc allocation? */
bool in_device_alloc(const void *p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mu);
    const uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return false;
    --it;
    return a >= it->first && a + bytes <= it->first + it->second;
}

cudaError_t check_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return cudaSuccess;
    if (!dst || !src || (int)kind < 0 || (int)kind > 4)
        return set_error(cudaErrorInvalidValue, "cudaMemcpy: bad arguments", false);
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (dst_dev && !in_device_alloc(dst, bytes))
        return set_error(cudaErrorInvalidValue, "cudaMemcpy: destination range is not inside a cudaMalloc allocation",
                         false);
    if (src_dev && !in_device_alloc(src, bytes))
        return set_error(cudaErrorInvalidValue, "cudaMemcpy: source range is not inside a cudaMalloc allocation",
                         false);
    return cudaSuccess;
}

cudaError_t do_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    memmove(dst, src, bytes);
    std::lock_guard<std::mutex> lock(g_mu);
    if (kind == cudaMemcpyHostToDevice) g_counters.h2d++;
    if (kind == cudaMemcpyDeviceToHost) g_counters.d2h++;
    return cudaSuccess;
}

/* Work on a stream: recorded if it is capturing, else run now. */
cudaError_t enqueue(cudaStream_t s, std::function<cudaError_t()> node) {
    if (s && s->capturing) {
        if (s->invalidated) return cudaErrorStreamCaptureInvalidated;
        s->graph->nodes.push_back(std::move(node));
        return cudaSuccess;
    }
    return node();
}

cudaError_t count_sync() {
    std::lock_guard<std::mutex> lock(g_mu);
    g_counters.syncs++;
    return g_sticky;
}

} // namespace

cudaError_t enqueue_on_stream(cudaStream_t s, std::function<cudaError_t()> node) {
    cudaError_t e = sticky();
    return e ? e : enqueue(s, std::move(node));
}

size_t dynamic_shared_limit(const void *kernel) {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_shared_limit.find(kernel);
    return it == g_shared_limit.end() ? default_dynamic_shared : it->second;
}

cudaError_t func_set_attribute(const void *kernel, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || (size_t)value > max_dynamic_shared_optin)
        return set_error(cudaErrorInvalidValue, "cudaFuncSetAttribute: unsupported attribute or value", false);
    std::lock_guard<std::mutex> lock(g_mu);
    g_shared_limit[kernel] = (size_t)value;
    return cudaSuccess;
}

cudaError_t launch(const void *kernel, dim3 grid, dim3 block, size_t shmem, cudaStream_t s,
                   std::function<void()> body) {
    std::string msg;
    cudaError_t e = sticky();
    if (e) return e;
    if ((e = check_config(kernel, grid, block, shmem, &msg))) return set_error(e, msg, false);
    return enqueue(s, [grid, block, shmem, body]() {
        std::string m;
        {
            std::lock_guard<std::mutex> lock(g_mu);
            g_counters.launches++;
        }
        cudaError_t r = run_grid(grid, block, shmem, body, &m);
        return r ? set_error(r, m, true) : cudaSuccess;
    });
}

} // namespace msam_emu

using namespace msam_emu;

extern "C" {

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }

cudaError_t cudaGetLastError(void) {
    std::lock_guard<std::mutex> lock(g_mu);
    cudaError_t e = g_last;
    g_last = g_sticky;
    return e;
}

cudaError_t cudaPeekAtLastError(void) {
    std::lock_guard<std::mutex> lock(g_mu);
    return g_last;
}

const char *msam_emu_error_message(void) {
    std::lock_guard<std::mutex> lock(g_mu);
    static thread_local std::string copy;
    copy = g_message;
    return copy.c_str();
}

cudaError_t cudaGetDeviceCount(int *n) {
    if (!n) return cudaErrorInvalidValue;
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int *d) {
    if (!d) return cudaErrorInvalidValue;
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    if (refused_during_capture("cudaDeviceSynchronize")) return cudaErrorStreamCaptureUnsupported;
    return count_sync();
}

cudaError_t cudaDeviceReset(void) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_last = g_sticky = cudaSuccess;
    g_message.clear();
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (!p) return set_error(cudaErrorInvalidValue, "cudaMalloc: NULL pointer", false);
    if (refused_during_capture("cudaMalloc")) return cudaErrorStreamCaptureUnsupported;
    /* 256-byte aligned like the real allocator; a zero-byte request still gets a pointer */
    void *m = aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
    if (!m) return set_error(cudaErrorMemoryAllocation, "cudaMalloc: out of memory", false);
    std::lock_guard<std::mutex> lock(g_mu);
    g_allocs[(uintptr_t)m] = bytes;
    g_counters.mallocs++;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        auto it = g_allocs.find((uintptr_t)p);
        if (it == g_allocs.end()) {
            g_last = cudaErrorInvalidValue;
            g_message = "cudaFree of a pointer cudaMalloc did not return";
            return cudaErrorInvalidValue;
        }
        g_allocs.erase(it);
    }
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
    if (!p) return cudaErrorInvalidValue;
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) {
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (refused_during_capture("cudaMemcpy")) return cudaErrorStreamCaptureUnsupported;
    cudaError_t e = check_copy(dst, src, bytes, kind);
    if (e || bytes == 0) return e;
    if ((e = sticky())) return e;
    do_copy(dst, src, bytes, kind);
    return count_sync();
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
    cudaError_t e = check_copy(dst, src, bytes, kind);
    if (e || bytes == 0) return e;
    if ((e = sticky())) return e;
    return enqueue(s, [dst, src, bytes, kind]() { return do_copy(dst, src, bytes, kind); });
}

cudaError_t cudaMemset(void *dst, int value, size_t bytes) {
    if (refused_during_capture("cudaMemset")) return cudaErrorStreamCaptureUnsupported;
    if (bytes && !in_device_alloc(dst, bytes))
        return set_error(cudaErrorInvalidValue, "cudaMemset: range is not inside a cudaMalloc allocation", false);
    memset(dst, value, bytes);
    return count_sync();
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s) {
    if (bytes && !in_device_alloc(dst, bytes))
        return set_error(cudaErrorInvalidValue, "cudaMemsetAsync: range is not inside a cudaMalloc allocation", false);
    return enqueue(s, [dst, value, bytes]() {
        memset(dst, value, bytes);
        return cudaSuccess;
    });
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    if (!s) return cudaErrorInvalidValue;
    *s = new CUstream_st;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!s) return cudaErrorInvalidResourceHandle;
    if (s->capturing) {
        std::lock_guard<std::mutex> lock(g_mu);
        if (s->mode == cudaStreamCaptureModeGlobal) g_global_captures--;
        delete s->graph;
    }
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (s && s->capturing) {
        s->invalidated = true;
        return set_error(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize on a capturing stream", false);
    }
    if (refused_during_capture("cudaStreamSynchronize")) return cudaErrorStreamCaptureUnsupported;
    return count_sync();
}

cudaError_t cudaStreamQuery(cudaStream_t s) {
    (void)s;
    return sticky();
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    (void)s;
    (void)flags;
    return e ? cudaSuccess : cudaErrorInvalidResourceHandle; /* all work is already done in order */
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    (void)flags;
    if (!e) return cudaErrorInvalidValue;
    *e = new CUevent_st;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!e) return cudaErrorInvalidResourceHandle;
    return enqueue(s, [e]() {
        e->t = std::chrono::steady_clock::now();
        e->recorded = true;
        return cudaSuccess;
    });
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e) return cudaErrorInvalidResourceHandle;
    if (refused_during_capture("cudaEventSynchronize")) return cudaErrorStreamCaptureUnsupported;
    return count_sync();
}

cudaError_t cudaEventQuery(cudaEvent_t e) { return e ? sticky() : cudaErrorInvalidResourceHandle; }

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    if (!ms || !a || !b) return cudaErrorInvalidValue;
    if (!a->recorded || !b->recorded) return cudaErrorNotReady;
    *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    if (!s) return set_error(cudaErrorStreamCaptureUnsupported, "the legacy default stream cannot be captured", false);
    if (s->capturing) return set_error(cudaErrorInvalidValue, "the stream is already capturing", false);
    s->capturing = true;
    s->invalidated = false;
    s->mode = mode;
    s->graph = new CUgraph_st;
    if (mode == cudaStreamCaptureModeGlobal) {
        std::lock_guard<std::mutex> lock(g_mu);
        g_global_captures++;
    }
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    if (!s || !g || !s->capturing) return cudaErrorInvalidValue;
    s->capturing = false;
    if (s->mode == cudaStreamCaptureModeGlobal) {
        std::lock_guard<std::mutex> lock(g_mu);
        g_global_captures--;
    }
    if (s->invalidated) {
        delete s->graph;
        s->graph = nullptr;
        *g = nullptr;
        return set_error(cudaErrorStreamCaptureInvalidated, "the capture was invalidated", false);
    }
    *g = s->graph;
    s->graph = nullptr;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    if (!status) return cudaErrorInvalidValue;
    *status = !s || !s->capturing ? cudaStreamCaptureStatusNone
              : s->invalidated    ? cudaStreamCaptureStatusInvalidated
                                  : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t g, unsigned long long flags) {
    (void)flags;
    if (!exec || !g) return cudaErrorInvalidValue;
    *exec = new CUgraphExec_st{g->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (!exec) return cudaErrorInvalidResourceHandle;
    cudaError_t e = sticky();
    if (e) return e;
    /* captured into another graph: the replay becomes one node of it */
    return enqueue(s, [exec]() {
        for (auto &node : exec->nodes) {
            cudaError_t r = node();
            if (r) return r;
        }
        return cudaSuccess;
    });
}

cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return cudaSuccess;
}

void msam_emu_get_counters(msam_emu_counters *c) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (c) *c = g_counters;
}

void msam_emu_reset_counters(void) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_counters = msam_emu_counters{};
}

} // extern "C"
