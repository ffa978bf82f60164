/* dlpack_in.h (binding) - importing an array through DLPack: the consumer's side of the protocol
 * (dlpack_in.c), for inputs that already live on the model's device. */
#ifndef MSAM_PY_DLPACK_IN_H
#define MSAM_PY_DLPACK_IN_H

#include "binding.h"
#include "dlpack_abi.h"

typedef struct {
    PyObject *capsule;             /* renamed "used_...": we call the deleter */
    msam_dl_managed *managed;      /* one of these two */
    msam_dl_managed_v *managed_v;
    msam_dl_tensor *t;             /* the tensor: read it until release */
} msam_py_dl_import;

/* Take obj's DLPack tensor, with stream the consumer stream (1: the legacy default stream). 0,
 * or -1 with an exception set and nothing held. */
int msam_py_dlpack_import(PyObject *obj, long stream, msam_py_dl_import *out);
/* obj, a (device_type, device_id) pair of ints, as (type, id): 0, or -1 with an InputError saying
 * "<what> must be a (device_type, device_id) pair of ints" (also for obj NULL). */
int msam_py_device_pair(PyObject *obj, const char *what, int *type, int *id);
/* obj.__dlpack_device__() as (type, id): 1, or 0 when obj has no such method, or -1 with an
 * InputError naming name when it misbehaves. */
int msam_py_dlpack_device(PyObject *obj, const char *name, int *type, int *id);
/* Hand the tensor back (its deleter), with the GIL held. */
void msam_py_dlpack_release(msam_py_dl_import *in);

#endif
