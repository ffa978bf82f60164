/* device_prompts.c (binding) - predict_torch's prompts when they already live on the model's GPU
 * (a detector's boxes): taken through DLPack without a copy and encoded on the device, so a frame's
 * decode reads nothing back to the host. */
#include "device_prompts.h"

#include <string.h>

/* One GPU prompt argument: on cuda:0, C-contiguous, of the dtype and shape asked (dims[i] < 0:
 * any size, then stored back). 0, or -1 with an InputError naming the argument. */
static int take(PyObject *obj, const char *name, int ndim, int64_t *dims, int int_labels, msam_py_dl_import *imp,
                int *int64) {
    if (msam_py_dlpack_import(obj, 1, imp) < 0) return -1; /* 1: we consume after the legacy stream */
    const msam_dl_tensor *t = imp->t;
    const char *bad = NULL;
    if (t->device.device_type != MSAM_DL_CUDA || t->device.device_id != 0) bad = "be on the model's GPU, cuda:0";
    else if (t->ndim != ndim) bad = "have the documented number of dimensions";
    else if (int_labels ? !(t->dtype.code == MSAM_DL_INT && (t->dtype.bits == 32 || t->dtype.bits == 64))
                        : !(t->dtype.code == MSAM_DL_FLOAT && t->dtype.bits == 32))
        bad = int_labels ? "be int32 or int64" : "be float32";
    else if (t->dtype.lanes != 1) bad = "have one lane";
    for (int d = 0; !bad && d < ndim; d++)
        if (dims[d] >= 0 ? t->shape[d] != dims[d] : t->shape[d] < 0) bad = "match the other prompts' shapes";
    if (!bad && t->strides) { /* compact row-major, in elements */
        int64_t want = 1;
        for (int d = ndim - 1; d >= 0; d--) {
            if (t->shape[d] > 1 && t->strides[d] != want) bad = "be contiguous (call .contiguous())";
            want *= t->shape[d];
        }
    }
    if (bad) {
        PyErr_Format(msam_py_InputError, "%s on a GPU must %s (got device (%d, %d), ndim %d, dtype code %d bits %d)",
                     name, bad, (int)t->device.device_type, (int)t->device.device_id, (int)t->ndim,
                     (int)t->dtype.code, (int)t->dtype.bits);
        msam_py_dlpack_release(imp);
        return -1;
    }
    for (int d = 0; d < ndim; d++) dims[d] = t->shape[d];
    if (int64) *int64 = t->dtype.bits == 64;
    return 0;
}

static int on_gpu(PyObject *obj, const char *name, int *gpu) {
    int type = 0, id;
    *gpu = 0;
    if (obj == Py_None) return 0;
    const int r = msam_py_dlpack_device(obj, name, &type, &id);
    if (r < 0) return -1;
    *gpu = r == 1 && type == MSAM_DL_CUDA;
    return 0;
}

int msam_py_device_prompts(PyObject *coords, PyObject *labels, PyObject *boxes, PyObject *mask,
                           msam_py_dl_import imp[3], msam_prompts *p) {
    memset(imp, 0, 3 * sizeof *imp);
    int gc, gl, gb;
    if (on_gpu(coords, "point_coords", &gc) < 0 || on_gpu(labels, "point_labels", &gl) < 0 ||
        on_gpu(boxes, "boxes", &gb) < 0)
        return -1;
    if (!gc && !gl && !gb) return 0; /* host prompts */
    if ((coords != Py_None && !gc) || (labels != Py_None && !gl) || (boxes != Py_None && !gb) || (coords == Py_None) != (labels == Py_None)) {
        PyErr_SetString(msam_py_InputError, "point_coords, point_labels and boxes must all be on the GPU or all in host "
                        "memory (and point_coords and point_labels given together)");
        return -1;
    }
    if (mask != Py_None) {
        PyErr_SetString(msam_py_InputError, "mask_input with GPU prompts is not supported: pass the prompts in host "
                        "memory, or no mask_input");
        return -1;
    }
    memset(p, 0, sizeof *p);
    int64_t cd[3] = {-1, -1, 2}, ld[2], bd[2] = {-1, 4};
    int l64 = 0;
    if (coords != Py_None) {
        if (take(coords, "point_coords", 3, cd, 0, &imp[0], NULL) < 0) return -1;
        ld[0] = cd[0], ld[1] = cd[1];
        if (take(labels, "point_labels", 2, ld, 1, &imp[1], &l64) < 0) goto fail;
        bd[0] = cd[0];
    }
    if (boxes != Py_None && take(boxes, "boxes", 2, bd, 0, &imp[2], NULL) < 0) goto fail;
    const int64_t batch = coords != Py_None ? cd[0] : bd[0], n = coords != Py_None ? cd[1] : 0;
    if (batch < 1 || batch > 65536 || n > MSAM_MAX_PROMPT_POINTS) {
        PyErr_Format(msam_py_InputError, "GPU prompts must have a batch of 1..65536 sets and at most %d points a set, "
                     "got %lld sets of %lld points", MSAM_MAX_PROMPT_POINTS, (long long)batch, (long long)n);
        goto fail;
    }
    p->batch = (int)batch, p->n_points = (int)n;
    if (imp[0].t) p->coords = (const float *)((const char *)imp[0].t->data + imp[0].t->byte_offset);
    if (imp[1].t) p->labels = (const int32_t *)((const char *)imp[1].t->data + imp[1].t->byte_offset);
    if (imp[2].t) p->boxes = (const float *)((const char *)imp[2].t->data + imp[2].t->byte_offset);
    p->on_device = 1, p->labels_int64 = l64;
    return 1;
fail:
    msam_py_device_prompts_release(imp);
    return -1;
}

void msam_py_device_prompts_release(msam_py_dl_import imp[3]) {
    for (int i = 0; i < 3; i++)
        if (imp[i].capsule) msam_py_dlpack_release(&imp[i]);
}
