/* dlpack_in.c (binding) - taking another library's array through DLPack without a copy (a frame on
 * the GPU for set_image): its tensor is read while the capsule is held, then handed back. */
#include "dlpack_in.h"

#include <string.h>

/* obj.__dlpack__(stream=stream, max_version=(1, 0)), or without max_version for producers that
 * predate it; the capsule's managed tensor is then ours until msam_py_dlpack_release. */
int msam_py_dlpack_import(PyObject *obj, long stream, msam_py_dl_import *out) {
    memset(out, 0, sizeof *out);
    PyObject *meth = PyObject_GetAttrString(obj, "__dlpack__");
    if (!meth) return -1;
    PyObject *args = PyTuple_New(0), *kw = Py_BuildValue("{sls(ii)}", "stream", stream, "max_version", 1, 0);
    PyObject *cap = args && kw ? PyObject_Call(meth, args, kw) : NULL;
    if (!cap && PyErr_ExceptionMatches(PyExc_TypeError)) { /* no max_version keyword: a legacy producer */
        PyErr_Clear();
        Py_DECREF(kw);
        kw = Py_BuildValue("{sl}", "stream", stream);
        cap = kw ? PyObject_Call(meth, args, kw) : NULL;
    }
    Py_DECREF(meth);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    if (!cap) return -1;
    if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
        out->managed_v = PyCapsule_GetPointer(cap, "dltensor_versioned");
        out->t = &out->managed_v->tensor;
        if (out->managed_v->major != MSAM_DL_MAJOR) {
            Py_DECREF(cap); /* still unconsumed: its destructor frees it */
            memset(out, 0, sizeof *out);
            PyErr_SetString(PyExc_BufferError, "the array's DLPack major version is not 1");
            return -1;
        }
        PyCapsule_SetName(cap, "used_dltensor_versioned");
    } else if (PyCapsule_IsValid(cap, "dltensor")) {
        out->managed = PyCapsule_GetPointer(cap, "dltensor");
        out->t = &out->managed->tensor;
        PyCapsule_SetName(cap, "used_dltensor");
    } else {
        Py_DECREF(cap);
        PyErr_SetString(PyExc_BufferError, "__dlpack__ did not return a DLPack capsule");
        return -1;
    }
    out->capsule = cap;
    return 0;
}

void msam_py_dlpack_release(msam_py_dl_import *in) {
    if (in->managed_v && in->managed_v->deleter) in->managed_v->deleter(in->managed_v);
    if (in->managed && in->managed->deleter) in->managed->deleter(in->managed);
    Py_XDECREF(in->capsule);
    memset(in, 0, sizeof *in);
}

int msam_py_device_pair(PyObject *obj, const char *what, int *type, int *id) {
    /* a tuple of our own: an item's __index__ (user code) may change the caller's list meanwhile */
    PyObject *seq = obj && PySequence_Check(obj) ? PySequence_Tuple(obj) : NULL;
    long v[2] = {-1, -1};
    int ok = seq && PyTuple_GET_SIZE(seq) == 2;
    for (int i = 0; ok && i < 2; i++) {
        v[i] = PyLong_AsLong(PyTuple_GET_ITEM(seq, i));
        ok = !(v[i] == -1 && PyErr_Occurred());
    }
    Py_XDECREF(seq);
    if (!ok) {
        PyErr_Clear();
        PyErr_Format(msam_py_InputError, "%s must be a (device_type, device_id) pair of ints", what);
        return -1;
    }
    *type = (int)v[0], *id = (int)v[1];
    return 0;
}

int msam_py_dlpack_device(PyObject *obj, const char *name, int *type, int *id) {
    PyObject *meth = PyObject_GetAttrString(obj, "__dlpack_device__");
    if (!meth) {
        PyErr_Clear();
        return 0;
    }
    char what[96];
    snprintf(what, sizeof what, "what %s.__dlpack_device__() returns", name);
    PyObject *r = PyObject_CallNoArgs(meth);
    Py_DECREF(meth);
    const int st = msam_py_device_pair(r, what, type, id); /* a failed call is reported the same way */
    Py_XDECREF(r);
    return st < 0 ? -1 : 1;
}
