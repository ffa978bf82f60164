/* backends.c - the registry of backends built into this library, keyed by device: the one place
 * that names them (core asks msam_backend_ops; a CUDA build adds its table here). */
#include "core/ops.h"
#include "cpu/cpu_backend.h"

const msam_ops *msam_backend_ops(msam_device device) {
    switch (device) {
    case MSAM_DEVICE_CPU: return msam_cpu_ops();
    default: return NULL; /* MSAM_DEVICE_CUDA: not built into this library yet */
    }
}

int msam_device_available(msam_device device) { return msam_backend_ops(device) != NULL; }
