/* backends.c - the registry of backends built into this library, keyed by device: the one place
 * that names them (core asks msam_backend_ops; a CUDA build, MSAM_WITH_CUDA, adds its table). */
#include "core/ops.h"
#include "cpu/cpu_backend.h"
#ifdef MSAM_WITH_CUDA
#include "cuda/backend/cuda_backend.h"
#endif

const msam_ops *msam_backend_ops(msam_device device) {
    switch (device) {
    case MSAM_DEVICE_CPU: return msam_cpu_ops();
#ifdef MSAM_WITH_CUDA
    case MSAM_DEVICE_CUDA: return msam_cuda_ops();
#endif
    default: return NULL; /* not built into this library */
    }
}

int msam_device_available(msam_device device) { return msam_backend_ops(device) != NULL; }
