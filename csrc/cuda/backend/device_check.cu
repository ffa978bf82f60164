/* device_check.cu - whether the CUDA backend can run here, and if not, why in words: a driver and a
 * GPU, code for that GPU in this build, and cuBLAS. Context creation calls it first, and the
 * registry asks it for the reason when a context cannot be made (csrc/registry/backends.c). */
#include <stdio.h>
#if !defined(MSAM_CUDA_EMULATION)
#include <dlfcn.h>
#endif

#include "cuda_ctx.h"

#if !defined(MSAM_CUDA_EMULATION)
/* The GPU code setup.py compiled in (its -gencode list), for the message. */
#ifndef MSAM_CUDA_ARCHS
#define MSAM_CUDA_ARCHS "sm_80+sm_90+compute_90"
#endif

/* Launched never: asking for its attributes tells whether this build has code the GPU can run. */
static __global__ void msam_probe_kernel(int *p) {
    if (p) *p = 0;
}
#endif

static int say(char *why, size_t n, const char *what, cudaError_t e) {
    if (why && n) snprintf(why, n, "%s: %s", what, cudaGetErrorString(e));
    return -1;
}

/* The runtime reports a missing driver as an insufficient one: tell the two apart. */
static int no_driver(char *why, size_t n, cudaError_t e) {
#if !defined(MSAM_CUDA_EMULATION)
    if (e == cudaErrorInsufficientDriver && why && n) {
        void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
        if (!driver) {
            snprintf(why, n, "CUDA was requested but no CUDA driver/GPU is available: no NVIDIA driver is "
                             "installed (libcuda.so.1 not found)");
            return -1;
        }
        dlclose(driver);
        int have = 0;
        cudaDriverGetVersion(&have);
        snprintf(why, n, "CUDA was requested but the NVIDIA driver is too old: it supports CUDA %d.%d, this "
                         "mobile_sam_c was built with CUDA %d.%d (update the driver)", have / 1000, have % 1000 / 10,
                 CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        return -1;
    }
#endif
    return say(why, n, "CUDA was requested but no CUDA driver/GPU is available", e);
}

extern "C" int msam_cuda_unavailable(char *why, size_t why_size) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaSuccess && count == 0) {
        if (why && why_size)
            snprintf(why, why_size, "CUDA was requested but no CUDA driver/GPU is available: the driver sees no "
                                    "GPU (is CUDA_VISIBLE_DEVICES empty?)");
        return -1;
    }
    if (e != cudaSuccess) {
        cudaGetLastError(); /* not a launch's error: leave nothing behind for msam_cuda_status */
        return no_driver(why, why_size, e);
    }
#if !defined(MSAM_CUDA_EMULATION)
    /* the current device's primary context: fails for a GPU that is busy in exclusive mode, ... */
    if ((e = cudaFree(NULL)) != cudaSuccess) {
        cudaGetLastError();
        return say(why, why_size, "CUDA was requested but the GPU cannot be used", e);
    }
    /* sm_80 and sm_90 code and compute_90 PTX (setup.py): older GPUs (and newer ones without a
     * driver that JIT-compiles the PTX) have nothing to run */
    cudaFuncAttributes attr;
    if ((e = cudaFuncGetAttributes(&attr, msam_probe_kernel)) != cudaSuccess) {
        cudaGetLastError();
        int dev = 0, major = 0, minor = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
        cudaGetLastError();
        if (why && why_size)
            snprintf(why, why_size,
                     "this mobile_sam_c has no CUDA code for the GPU (compute capability %d.%d; the build has "
                     "%s): %s",
                     major, minor, MSAM_CUDA_ARCHS, cudaGetErrorString(e));
        return -1;
    }
    if (msam_cublas_load(why, why_size)) return -1;
#endif
    return 0;
}
