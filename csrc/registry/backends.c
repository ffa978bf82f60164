/* backends.c - the registry of backends built into this library, keyed by device: the one place
 * that names them (core asks msam_backend_ops; a CUDA build, MSAM_WITH_CUDA, adds its table). */
#include "core/ops.h"
#include "cpu/cpu_backend.h"
#include "host/weights.h"
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

/* Core calls this when a device's table is missing or its context cannot be made, so the error
 * says what is missing rather than "out of memory". */
msam_status msam_device_check(msam_device device, msam_error *err) {
    if (device == MSAM_DEVICE_CUDA && !msam_backend_ops(device))
        return msam_fail(err, MSAM_ERR_DEVICE,
                         "device 'cuda' is not built into this mobile_sam_c: it was built without CUDA (no "
                         "CUDA toolkit was found, or MOBILE_SAM_C_CUDA=0); install a CUDA toolkit, set "
                         "CUDA_HOME or put nvcc on PATH, and reinstall");
    if (!msam_backend_ops(device))
        return msam_fail(err, MSAM_ERR_DEVICE, "device %d is not built into this mobile_sam_c", (int)device);
#ifdef MSAM_WITH_CUDA
    if (device == MSAM_DEVICE_CUDA) {
        char why[sizeof err->msg];
        if (msam_cuda_unavailable(why, sizeof why)) return msam_fail(err, MSAM_ERR_DEVICE, "%s", why);
    }
#endif
    return MSAM_OK;
}
