/* amg.c (binding) - the automatic mask generator's C kernels (msam_amg.h) for Python: argument
 * checks naming the bad argument, NumPy in and out, the GIL released while they compute. */
#include "binding.h"
#include "msam_amg.h"

/* obj as a C-contiguous array of dtype with ndim in [lo, hi] (new reference), or InputError. */
static PyArrayObject *array_of(PyObject *obj, int dtype, int lo, int hi, const char *name,
                               const char *expect) {
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROM_O(obj);
    if (!arr) {
        PyErr_Clear();
        PyErr_Format(msam_py_InputError, "%s must be %s, got %s", name, expect, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    const char kind = PyArray_DESCR(arr)->kind;
    const int ok_kind = dtype == NPY_BOOL ? (kind == 'b' || kind == 'u' || kind == 'i')
                                          : (kind == 'f' || kind == 'u' || kind == 'i' || kind == 'b');
    if (!ok_kind || PyArray_NDIM(arr) < lo || PyArray_NDIM(arr) > hi) {
        PyErr_Format(msam_py_InputError, "%s must be %s, got an array of %d dimensions, dtype %S",
                     name, expect, PyArray_NDIM(arr), (PyObject *)PyArray_DESCR(arr));
        Py_DECREF(arr);
        return NULL;
    }
    PyArrayObject *c = (PyArrayObject *)PyArray_FROMANY((PyObject *)arr, dtype, lo, hi,
                                                        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED |
                                                            NPY_ARRAY_FORCECAST);
    Py_DECREF(arr);
    return c;
}

static PyObject *counts_list(const msam_rle *r) {
    PyObject *list = PyList_New((Py_ssize_t)r->n);
    if (!list) return NULL;
    for (size_t i = 0; i < r->n; i++) {
        PyObject *v = PyLong_FromUnsignedLong(r->counts[i]);
        if (!v) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    return list;
}

/* A sequence of n ints (a tuple, a list, an array) into out, or InputError naming it. */
static int int_seq(PyObject *obj, const char *name, const char *expect, int n, int *out) {
    PyObject *seq = PySequence_Check(obj) ? PySequence_Tuple(obj) : NULL;
    int ok = seq && PyTuple_GET_SIZE(seq) == n;
    for (int i = 0; ok && i < n; i++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(seq, i));
        ok = !(v == -1 && PyErr_Occurred()) && v >= INT32_MIN && v <= INT32_MAX;
        out[i] = (int)v;
    }
    Py_XDECREF(seq);
    if (!ok) {
        PyErr_Clear();
        PyErr_Format(msam_py_InputError, "%s must be %s, got %R", name, expect, obj);
        return -1;
    }
    return 0;
}

/* amg_process_masks(low_res Nx256x256, orig_size, crop_box, input_size, offset, thresh, mask_threshold) */
static PyObject *py_process_masks(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"low_res", "orig_size", "crop_box", "input_size",
                             "stability_score_offset", "stability_score_thresh", "mask_threshold", NULL};
    PyObject *low_obj, *orig_obj, *crop_obj, *input_obj;
    double offset, thresh, mask_threshold = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOdd|d:amg_process_masks", kwlist, &low_obj,
                                     &orig_obj, &crop_obj, &input_obj, &offset, &thresh, &mask_threshold))
        return NULL;
    msam_amg_crop c;
    memset(&c, 0, sizeof c);
    int orig[2], input[2], crop[4];
    if (int_seq(orig_obj, "orig_size", "2 ints (h, w)", 2, orig) < 0 ||
        int_seq(input_obj, "input_size", "2 ints (h, w)", 2, input) < 0 ||
        int_seq(crop_obj, "crop_box", "4 ints (x0, y0, x1, y1)", 4, crop) < 0)
        return NULL;
    c.orig_h = orig[0];
    c.orig_w = orig[1];
    c.input_h = input[0];
    c.input_w = input[1];
    c.crop_x0 = crop[0];
    c.crop_y0 = crop[1];
    c.crop_x1 = crop[2];
    c.crop_y1 = crop[3];
    c.mask_threshold = (float)mask_threshold;
    c.stability_offset = (float)offset;
    c.stability_thresh = (float)thresh;
    c.edge_atol = 20.0f;
    PyArrayObject *low = array_of(low_obj, NPY_FLOAT32, 3, 3, "low_res", "an Nx256x256 float32 array");
    if (!low) return NULL;
    if (PyArray_DIM(low, 1) != 256 || PyArray_DIM(low, 2) != 256 || PyArray_DIM(low, 0) > INT32_MAX) {
        Py_DECREF(low);
        return PyErr_Format(msam_py_InputError, "low_res must be an Nx256x256 float32 array");
    }
    msam_amg_masks m;
    msam_error err = {{0}};
    msam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = msam_amg_process_masks((const float *)PyArray_DATA(low), (int)PyArray_DIM(low, 0), &c, &m, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(low);
    if (st != MSAM_OK) return msam_py_raise(st, &err);
    npy_intp n1 = m.n, n4[2] = {m.n, 4};
    PyArrayObject *index = (PyArrayObject *)PyArray_SimpleNew(1, &n1, NPY_INT64);
    PyArrayObject *stab = (PyArrayObject *)PyArray_SimpleNew(1, &n1, NPY_FLOAT32);
    PyArrayObject *boxes = (PyArrayObject *)PyArray_SimpleNew(2, n4, NPY_INT64);
    PyObject *rles = PyList_New(m.n);
    PyObject *result = NULL;
    if (index && stab && boxes && rles) {
        int ok = 1;
        for (int i = 0; i < m.n && ok; i++) {
            ((int64_t *)PyArray_DATA(index))[i] = m.index[i];
            ((float *)PyArray_DATA(stab))[i] = m.stability[i];
            memcpy((int64_t *)PyArray_DATA(boxes) + 4 * (size_t)i, m.box + 4 * (size_t)i, 4 * sizeof(int64_t));
            PyObject *counts = counts_list(&m.rle[i]);
            if (!counts) ok = 0;
            else PyList_SET_ITEM(rles, i, counts);
        }
        if (ok) result = Py_BuildValue("(OOOO)", index, stab, boxes, rles);
    }
    msam_amg_masks_free(&m);
    Py_XDECREF(index);
    Py_XDECREF(stab);
    Py_XDECREF(boxes);
    Py_XDECREF(rles);
    return result;
}

static PyObject *py_nms(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"boxes", "scores", "iou_threshold", NULL};
    PyObject *b_obj, *s_obj;
    double thr;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOd:amg_nms", kwlist, &b_obj, &s_obj, &thr)) return NULL;
    PyArrayObject *boxes = array_of(b_obj, NPY_FLOAT32, 2, 2, "boxes", "an Nx4 array (x0, y0, x1, y1)");
    if (!boxes) return NULL;
    PyArrayObject *scores = array_of(s_obj, NPY_FLOAT32, 1, 1, "scores", "an N array");
    if (!scores) {
        Py_DECREF(boxes);
        return NULL;
    }
    const npy_intp n = PyArray_DIM(boxes, 0);
    if (PyArray_DIM(boxes, 1) != 4 || PyArray_DIM(scores, 0) != n || n > INT32_MAX) {
        PyErr_Format(msam_py_InputError, "boxes must be Nx4 and scores N, got %zd x %zd boxes and %zd scores",
                     (Py_ssize_t)n, (Py_ssize_t)PyArray_DIM(boxes, 1), (Py_ssize_t)PyArray_DIM(scores, 0));
        Py_DECREF(boxes);
        Py_DECREF(scores);
        return NULL;
    }
    PyArrayObject *keep = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_INT64);
    if (!keep) {
        Py_DECREF(boxes);
        Py_DECREF(scores);
        return NULL;
    }
    int n_keep = 0;
    msam_error err = {{0}};
    msam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = msam_nms((const float *)PyArray_DATA(boxes), (const float *)PyArray_DATA(scores), (int)n, thr,
                  (int64_t *)PyArray_DATA(keep), &n_keep, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(boxes);
    Py_DECREF(scores);
    if (st != MSAM_OK) {
        Py_DECREF(keep);
        return msam_py_raise(st, &err);
    }
    PyObject *out = PySequence_GetSlice((PyObject *)keep, 0, n_keep);
    Py_DECREF(keep);
    return out;
}

static PyObject *py_remove_small_regions(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"mask", "area_thresh", "islands", NULL};
    PyObject *m_obj;
    double thr;
    int islands;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Odp:amg_remove_small_regions", kwlist, &m_obj, &thr, &islands))
        return NULL;
    PyArrayObject *in = array_of(m_obj, NPY_BOOL, 2, 2, "mask", "an HxW bool array");
    if (!in) return NULL;
    PyArrayObject *mask = (PyArrayObject *)PyArray_NewCopy(in, NPY_CORDER);
    Py_DECREF(in);
    if (!mask) return NULL;
    int changed = 0;
    msam_error err = {{0}};
    msam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = msam_remove_small_regions((uint8_t *)PyArray_DATA(mask), (int)PyArray_DIM(mask, 0),
                                   (int)PyArray_DIM(mask, 1), thr, islands, &changed, &err);
    Py_END_ALLOW_THREADS
    if (st != MSAM_OK) {
        Py_DECREF(mask);
        return msam_py_raise(st, &err);
    }
    return Py_BuildValue("(NO)", mask, changed ? Py_True : Py_False);
}

static PyObject *py_rle_encode(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"mask", NULL};
    PyObject *m_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:amg_rle_encode", kwlist, &m_obj)) return NULL;
    PyArrayObject *mask = array_of(m_obj, NPY_BOOL, 2, 2, "mask", "an HxW bool array");
    if (!mask) return NULL;
    const int h = (int)PyArray_DIM(mask, 0), w = (int)PyArray_DIM(mask, 1);
    msam_rle r = {NULL, 0, 0};
    msam_error err = {{0}};
    msam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = msam_rle_encode((const uint8_t *)PyArray_DATA(mask), h, w, w, 0, 0, h, w, &r, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(mask);
    if (st != MSAM_OK) return msam_py_raise(st, &err);
    PyObject *out = counts_list(&r);
    msam_rle_free(&r);
    return out;
}

static PyObject *py_rle_decode(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"counts", "h", "w", NULL};
    PyObject *c_obj;
    int h, w;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oii:amg_rle_decode", kwlist, &c_obj, &h, &w)) return NULL;
    if (h < 0 || w < 0)
        return PyErr_Format(msam_py_InputError, "rle size must be two ints >= 0, got (%d, %d)", h, w);
    PyObject *seq = PySequence_Fast(c_obj, "rle counts must be a sequence of ints");
    if (!seq) {
        PyErr_Clear();
        return PyErr_Format(msam_py_InputError, "rle counts must be a sequence of ints, got %s",
                            Py_TYPE(c_obj)->tp_name);
    }
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    uint32_t *counts = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *counts);
    if (!counts) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PySequence_Fast_GET_ITEM(seq, i);
        long long x = PyLong_AsLongLong(v);
        if ((x == -1 && PyErr_Occurred()) || x < 0 || x > (long long)UINT32_MAX) {
            PyErr_Clear();
            PyMem_Free(counts);
            Py_DECREF(seq);
            return PyErr_Format(msam_py_InputError, "rle counts must be ints in 0..2^32-1, got %R at %zd", v, i);
        }
        counts[i] = (uint32_t)x;
    }
    Py_DECREF(seq);
    npy_intp dims[2] = {w, h}; /* the column-major walk: transposed on return, as the original */
    PyArrayObject *t = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_BOOL);
    if (!t) {
        PyMem_Free(counts);
        return NULL;
    }
    msam_error err = {{0}};
    msam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = msam_rle_decode(counts, (size_t)n, h, w, 1, (uint8_t *)PyArray_DATA(t), &err);
    Py_END_ALLOW_THREADS
    PyMem_Free(counts);
    if (st != MSAM_OK) {
        Py_DECREF(t);
        return msam_py_raise(st, &err);
    }
    PyObject *out = PyArray_Transpose(t, NULL);
    Py_DECREF(t);
    return out;
}

static PyObject *py_mask_box(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"masks", NULL};
    PyObject *m_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:amg_mask_box", kwlist, &m_obj)) return NULL;
    PyArrayObject *masks = array_of(m_obj, NPY_BOOL, 3, 3, "masks", "an NxHxW bool array");
    if (!masks) return NULL;
    const npy_intp n = PyArray_DIM(masks, 0), h = PyArray_DIM(masks, 1), w = PyArray_DIM(masks, 2);
    npy_intp dims[2] = {n, 4};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT64);
    if (!out) {
        Py_DECREF(masks);
        return NULL;
    }
    const uint8_t *src = PyArray_DATA(masks);
    int64_t *dst = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    for (npy_intp i = 0; i < n; i++) msam_mask_box(src + (size_t)i * h * w, (int)h, (int)w, w, dst + 4 * i);
    Py_END_ALLOW_THREADS
    Py_DECREF(masks);
    return (PyObject *)out;
}

static PyObject *py_stability_score(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"masks", "mask_threshold", "threshold_offset", NULL};
    PyObject *m_obj;
    double thr, off;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Odd:amg_stability_score", kwlist, &m_obj, &thr, &off)) return NULL;
    PyArrayObject *masks = array_of(m_obj, NPY_FLOAT32, 3, 3, "masks", "an NxHxW float array of logits");
    if (!masks) return NULL;
    const npy_intp n = PyArray_DIM(masks, 0), h = PyArray_DIM(masks, 1), w = PyArray_DIM(masks, 2);
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT32);
    if (!out) {
        Py_DECREF(masks);
        return NULL;
    }
    const float *src = PyArray_DATA(masks);
    float *dst = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    for (npy_intp i = 0; i < n; i++)
        dst[i] = msam_stability_score(src + (size_t)i * h * w, (int)h, (int)w, w, (float)thr, (float)off);
    Py_END_ALLOW_THREADS
    Py_DECREF(masks);
    return (PyObject *)out;
}

static PyMethodDef amg_methods[] = {
    {"amg_process_masks", (PyCFunction)(void (*)(void))py_process_masks, METH_VARARGS | METH_KEYWORDS,
     "Upscale, score, filter, box and RLE-encode one batch of low-res masks of one crop."},
    {"amg_nms", (PyCFunction)(void (*)(void))py_nms, METH_VARARGS | METH_KEYWORDS,
     "torchvision-exact NMS: kept indices by descending score."},
    {"amg_remove_small_regions", (PyCFunction)(void (*)(void))py_remove_small_regions,
     METH_VARARGS | METH_KEYWORDS, "(mask, changed): small holes filled or small islands removed."},
    {"amg_rle_encode", (PyCFunction)(void (*)(void))py_rle_encode, METH_VARARGS | METH_KEYWORDS,
     "COCO uncompressed RLE counts of an HxW mask."},
    {"amg_rle_decode", (PyCFunction)(void (*)(void))py_rle_decode, METH_VARARGS | METH_KEYWORDS,
     "The HxW bool mask of RLE counts."},
    {"amg_mask_box", (PyCFunction)(void (*)(void))py_mask_box, METH_VARARGS | METH_KEYWORDS,
     "Nx4 XYXY boxes of N masks (0, 0, 0, 0 when empty)."},
    {"amg_stability_score", (PyCFunction)(void (*)(void))py_stability_score, METH_VARARGS | METH_KEYWORDS,
     "Stability scores of N logit planes."},
    {NULL, NULL, 0, NULL}};

int msam_py_add_amg(PyObject *m) { return PyModule_AddFunctions(m, amg_methods); }
