/* prompt_args.c - prompt argument conversion for the Predictor (see prompt_args.h).
 * Mirrors the original's transforms: coordinates scaled in float64, then stored as float32. */
#include "prompt_args.h"

#include <float.h>
#include <math.h>

void msam_py_preprocess_shape(int h, int w, int *nh, int *nw) {
    double scale = 1024.0 / (double)(h > w ? h : w);
    *nh = (int)((double)h * scale + 0.5);
    *nw = (int)((double)w * scale + 0.5);
}

void prompt_args_clear(prompt_args *a) {
    Py_CLEAR(a->coords);
    Py_CLEAR(a->labels);
    Py_CLEAR(a->boxes);
    Py_CLEAR(a->mask);
    Py_CLEAR(a->coords64);
    Py_CLEAR(a->boxes64);
}

static int is_real_numeric(PyArrayObject *arr) {
    int t = PyArray_TYPE(arr);
    return (PyArray_ISINTEGER(arr) || PyArray_ISFLOAT(arr) || t == NPY_BOOL) && !PyArray_ISCOMPLEX(arr);
}

/* Any array-like with real numbers -> new C-contiguous array of type `type`. */
static PyArrayObject *to_array(PyObject *obj, int type, const char *name, const char *expect) {
    PyArrayObject *raw = (PyArrayObject *)PyArray_FROM_O(obj);
    if (!raw) {
        PyErr_Clear();
        PyErr_Format(msam_py_InputError, "%s must be %s, got an object of type %s", name, expect,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    if (!is_real_numeric(raw)) {
        PyErr_Format(msam_py_InputError, "%s must be %s with real numbers, got dtype %R", name,
                     expect, (PyObject *)PyArray_DESCR(raw));
        Py_DECREF(raw);
        return NULL;
    }
    PyArrayObject *out = (PyArrayObject *)PyArray_FROMANY((PyObject *)raw, type, 0, 0,
                                                          NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    Py_DECREF(raw);
    return out;
}

static PyObject *shape_str(PyArrayObject *a) {
    PyObject *shape = PyObject_GetAttrString((PyObject *)a, "shape");
    if (!shape) return NULL;
    PyObject *s = PyObject_Str(shape);
    Py_DECREF(shape);
    return s;
}

static int bad_shape(PyArrayObject *a, const char *name, const char *expect) {
    PyObject *s = shape_str(a);
    if (!s) return -1;
    PyErr_Format(msam_py_InputError, "%s must have shape %s, got %U", name, expect, s);
    Py_DECREF(s);
    return -1;
}

/* a is float32 or float64 (what to_array made); the first non-finite element is reported. */
static int check_finite(PyArrayObject *a, const char *name) {
    const int f64 = PyArray_TYPE(a) == NPY_FLOAT64;
    const void *d = PyArray_DATA(a);
    for (npy_intp i = 0, n = PyArray_SIZE(a); i < n; i++)
        if (!isfinite(f64 ? ((const double *)d)[i] : (double)((const float *)d)[i])) {
            PyErr_Format(msam_py_InputError, "%s must be finite, found a non-finite value at flat index %zd",
                         name, (Py_ssize_t)i);
            return -1;
        }
    return 0;
}

/* float64 coordinates scaled per axis (x by sx, y by sy) into a new float32 array. A value that
 * no longer fits a float32 after scaling is refused by name (converting it would be undefined). */
static PyArrayObject *scaled_f32(PyArrayObject *src, double sx, double sy, const char *name) {
    const double *s = PyArray_DATA(src);
    for (npy_intp i = 0, n = PyArray_SIZE(src); i < n; i++) {
        const double scale = i % 2 ? sy : sx, v = s[i] * scale;
        if (!(fabs(v) <= (double)FLT_MAX)) {
            char got[96];
            snprintf(got, sizeof got, "%g (scaled by %g to %g)", s[i], scale, v);
            PyErr_Format(msam_py_InputError,
                         "%s must be within the float32 range after scaling to the model's 1024-pixel "
                         "input, got %s at flat index %zd", name, got, (Py_ssize_t)i);
            return NULL;
        }
    }
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(src), PyArray_DIMS(src), NPY_FLOAT32);
    if (!out) return NULL;
    float *d = PyArray_DATA(out);
    for (npy_intp i = 0, n = PyArray_SIZE(src); i < n; i++) d[i] = (float)(s[i] * (i % 2 ? sy : sx));
    return out;
}

static int parse_labels(prompt_args *a, PyObject *labels, npy_intp batch, npy_intp n, int single) {
    const char *expect = single ? "a length-N array (N = number of points)" : "a BxN array";
    PyArrayObject *l64 = to_array(labels, NPY_FLOAT64, "point_labels", expect);
    if (!l64) return -1;
    int ok = single ? (PyArray_NDIM(l64) == 1 && PyArray_DIM(l64, 0) == n)
                    : (PyArray_NDIM(l64) == 2 && PyArray_DIM(l64, 0) == batch && PyArray_DIM(l64, 1) == n);
    if (!ok) {
        char want[64];
        if (single) snprintf(want, sizeof want, "(%ld,) to match point_coords", (long)n);
        else snprintf(want, sizeof want, "(%ld, %ld) to match point_coords", (long)batch, (long)n);
        bad_shape(l64, "point_labels", want);
        Py_DECREF(l64);
        return -1;
    }
    npy_intp dims[2] = {batch, n};
    a->labels = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT32);
    if (!a->labels) {
        Py_DECREF(l64);
        return -1;
    }
    const double *src = PyArray_DATA(l64);
    int32_t *dst = PyArray_DATA(a->labels);
    for (npy_intp i = 0; i < batch * n; i++) {
        if (!(src[i] == -1.0 || src[i] == 0.0 || src[i] == 1.0)) {
            char got[64];
            snprintf(got, sizeof got, "%g", src[i]);
            PyErr_Format(msam_py_InputError,
                         "point_labels must each be 1 (foreground), 0 (background) or -1 (padding), got %s", got);
            Py_DECREF(l64);
            return -1;
        }
        dst[i] = (int32_t)src[i];
    }
    Py_DECREF(l64);
    return 0;
}

int prompt_args_parse(prompt_args *a, PyObject *coords, PyObject *labels, PyObject *boxes,
                      PyObject *mask, int single) {
    memset(a, 0, sizeof *a);
    a->single = single;
    if (coords == Py_None) coords = NULL;
    if (labels == Py_None) labels = NULL;
    if (boxes == Py_None) boxes = NULL;
    if (mask == Py_None) mask = NULL;
    if (coords && !labels) {
        PyErr_SetString(msam_py_InputError, "point_labels must be supplied if point_coords is supplied.");
        return -1;
    }
    if (labels && !coords) {
        PyErr_SetString(msam_py_InputError, "point_coords must be supplied if point_labels is supplied.");
        return -1;
    }
    npy_intp batch = -1;
    const char *batch_from = NULL;
    if (coords) {
        PyArrayObject *c = to_array(coords, NPY_FLOAT64, "point_coords", single ? "an Nx2 array" : "a BxNx2 array");
        if (!c) return -1;
        int nd = PyArray_NDIM(c);
        if ((single && (nd != 2 || PyArray_DIM(c, 1) != 2)) || (!single && (nd != 3 || PyArray_DIM(c, 2) != 2))) {
            bad_shape(c, "point_coords", single ? "(N, 2) with (x, y) rows" : "(B, N, 2) with (x, y) rows");
            Py_DECREF(c);
            return -1;
        }
        npy_intp b = single ? 1 : PyArray_DIM(c, 0), n = PyArray_DIM(c, nd - 2);
        if (n < 1 || b < 1) {
            bad_shape(c, "point_coords", "with at least one point");
            Py_DECREF(c);
            return -1;
        }
        if (n > MSAM_PY_MAX_POINTS) {
            PyErr_Format(msam_py_InputError,
                         "point_coords may hold at most %d points per prompt set, got %zd (the decoder's "
                         "cost grows with the square of the count)", MSAM_PY_MAX_POINTS, (Py_ssize_t)n);
            Py_DECREF(c);
            return -1;
        }
        if (check_finite(c, "point_coords") < 0) {
            Py_DECREF(c);
            return -1;
        }
        if (single) {
            a->coords64 = c; /* scaled by prompt_args_scale */
        } else {
            a->coords = scaled_f32(c, 1.0, 1.0, "point_coords");
            Py_DECREF(c);
            if (!a->coords) return -1;
            a->p.coords = PyArray_DATA(a->coords);
        }
        if (parse_labels(a, labels, b, n, single) < 0) return -1;
        batch = b, batch_from = "point_coords";
        a->p.n_points = (int)n;
        a->p.labels = PyArray_DATA(a->labels);
    }
    if (boxes) {
        PyArrayObject *bx = to_array(boxes, NPY_FLOAT64, single ? "box" : "boxes",
                                     single ? "a length-4 array (x0, y0, x1, y1)" : "a Bx4 array");
        if (!bx) return -1;
        const char *name = single ? "box" : "boxes";
        int nd = PyArray_NDIM(bx);
        int ok = single ? ((nd == 1 && PyArray_DIM(bx, 0) == 4) || (nd == 2 && PyArray_DIM(bx, 0) == 1 && PyArray_DIM(bx, 1) == 4))
                        : (nd == 2 && PyArray_DIM(bx, 1) == 4 && PyArray_DIM(bx, 0) >= 1);
        if (!ok) {
            bad_shape(bx, name, single ? "(4,) or (1, 4) as (x0, y0, x1, y1)" : "(B, 4) as (x0, y0, x1, y1) rows");
            Py_DECREF(bx);
            return -1;
        }
        if (check_finite(bx, name) < 0) {
            Py_DECREF(bx);
            return -1;
        }
        npy_intp b = single ? 1 : PyArray_DIM(bx, 0);
        if (batch >= 0 && b != batch) {
            PyErr_Format(msam_py_InputError, "boxes has %zd rows but point_coords has a batch of %zd; they must match",
                         (Py_ssize_t)b, (Py_ssize_t)batch);
            Py_DECREF(bx);
            return -1;
        }
        if (single) {
            a->boxes64 = bx; /* scaled by prompt_args_scale */
        } else {
            a->boxes = scaled_f32(bx, 1.0, 1.0, name);
            Py_DECREF(bx);
            if (!a->boxes) return -1;
            a->p.boxes = PyArray_DATA(a->boxes);
        }
        if (batch < 0) batch = b, batch_from = "boxes";
    }
    if (mask) {
        PyArrayObject *m = to_array(mask, NPY_FLOAT32, "mask_input",
                                    single ? "a 1x256x256 array of low-res logits" : "a Bx1x256x256 array of low-res logits");
        if (!m) return -1;
        int nd = PyArray_NDIM(m);
        int ok = single ? (nd == 3 && PyArray_DIM(m, 0) == 1 && PyArray_DIM(m, 1) == 256 && PyArray_DIM(m, 2) == 256)
                        : (nd == 4 && PyArray_DIM(m, 0) >= 1 && PyArray_DIM(m, 1) == 1 && PyArray_DIM(m, 2) == 256 && PyArray_DIM(m, 3) == 256);
        if (!ok) {
            bad_shape(m, "mask_input", single ? "(1, 256, 256)" : "(B, 1, 256, 256)");
            Py_DECREF(m);
            return -1;
        }
        a->mask = m;
        if (check_finite(m, "mask_input") < 0) return -1;
        npy_intp mb = single ? 1 : PyArray_DIM(m, 0);
        if (batch < 0) batch = mb, batch_from = "mask_input";
        else if (mb != 1 && mb != batch) {
            PyErr_Format(msam_py_InputError, "mask_input has a batch of %zd but %s has %zd; it must be 1 or %zd",
                         (Py_ssize_t)mb, batch_from, (Py_ssize_t)batch, (Py_ssize_t)batch);
            return -1;
        }
        a->p.mask_input = PyArray_DATA(m);
        a->p.mask_batch = (int)mb;
    }
    if (batch < 0) batch = 1; /* no prompt at all: one set, as the original */
    if (batch > 1 << 20) {
        PyErr_Format(msam_py_InputError, "the prompt batch must be at most %d, got %zd", 1 << 20, (Py_ssize_t)batch);
        return -1;
    }
    a->p.batch = (int)batch;
    return 0;
}

int prompt_args_scale(prompt_args *a, int orig_h, int orig_w) {
    if (!a->single) return 0; /* predict_torch's prompts are in the input frame already */
    int nh, nw;
    msam_py_preprocess_shape(orig_h, orig_w, &nh, &nw);
    const double sx = (double)nw / (double)orig_w, sy = (double)nh / (double)orig_h;
    if (a->coords64) {
        Py_CLEAR(a->coords);
        if (!(a->coords = scaled_f32(a->coords64, sx, sy, "point_coords"))) return -1;
        a->p.coords = PyArray_DATA(a->coords);
    }
    if (a->boxes64) {
        Py_CLEAR(a->boxes);
        if (!(a->boxes = scaled_f32(a->boxes64, sx, sy, "box"))) return -1;
        a->p.boxes = PyArray_DATA(a->boxes);
    }
    return 0;
}
