/* image.c (binding) - resize_rgb8 (the Pillow-exact preprocessing resize) and the test hooks
 * _resize_bilinear_f32 / _mask (the mask resampler), validating arrays and releasing the GIL. */
#include "binding.h"

#include "cpu/resize.h"

/* Sides up to 2^24: Pillow's resampler works from float box edges, exact up to there. */
#define MAX_SIDE (1 << 24)

/* shape of an array as a tuple, for messages (NULL with an exception on failure) */
static PyObject *shape_tuple(PyArrayObject *arr) {
    int nd = PyArray_NDIM(arr);
    PyObject *t = PyTuple_New(nd);
    if (!t) return NULL;
    for (int d = 0; d < nd; d++) {
        PyObject *v = PyLong_FromSsize_t(PyArray_DIM(arr, d));
        if (!v) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, d, v);
    }
    return t;
}

/* Raise InputError "<name> must be <expect>, got shape (...) dtype <dtype>" and return NULL. */
static PyObject *bad_array(PyArrayObject *arr, const char *name, const char *expect) {
    PyObject *shape = shape_tuple(arr);
    if (!shape) return NULL;
    PyErr_Format(msam_py_InputError, "%s must be %s, got shape %R dtype %S", name, expect, shape,
                 (PyObject *)PyArray_DESCR(arr));
    Py_DECREF(shape);
    return NULL;
}

/* obj as an ndarray without conversion (new reference), or NULL with InputError. */
static PyArrayObject *as_array(PyObject *obj, const char *name, const char *expect) {
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROM_O(obj);
    if (!arr) {
        PyErr_Clear();
        PyErr_Format(msam_py_InputError, "%s must be %s, got %s", name, expect, Py_TYPE(obj)->tp_name);
    }
    return arr;
}

static int check_side(Py_ssize_t v, const char *name) {
    if (v < 1 || v > MAX_SIDE) {
        PyErr_Format(msam_py_InputError, "%s must be between 1 and %d, got %zd", name, MAX_SIDE, v);
        return -1;
    }
    return 0;
}

static PyObject *py_resize_rgb8(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"image", "new_h", "new_w", "bgr", NULL};
    static const char *expect = "an HxWx3 uint8 array";
    PyObject *image;
    Py_ssize_t nh, nw;
    int bgr = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Onn|p:resize_rgb8", kwlist, &image, &nh, &nw, &bgr))
        return NULL;
    if (check_side(nh, "new_h") < 0 || check_side(nw, "new_w") < 0) return NULL;

    PyArrayObject *arr = as_array(image, "image", expect);
    if (!arr) return NULL;
    if (PyArray_NDIM(arr) != 3 || PyArray_DIM(arr, 2) != 3 || PyArray_TYPE(arr) != NPY_UBYTE ||
        PyArray_DIM(arr, 0) < 1 || PyArray_DIM(arr, 1) < 1) {
        bad_array(arr, "image", expect);
        Py_DECREF(arr);
        return NULL;
    }
    if (PyArray_DIM(arr, 0) > MAX_SIDE || PyArray_DIM(arr, 1) > MAX_SIDE) {
        Py_DECREF(arr);
        return PyErr_Format(msam_py_InputError, "image sides must be at most %d pixels", MAX_SIDE);
    }
    /* the resampler takes any row and pixel steps (negative too) but channels 1 byte apart */
    if (PyArray_STRIDE(arr, 2) != 1) {
        PyArrayObject *c = (PyArrayObject *)PyArray_NewCopy(arr, NPY_CORDER);
        Py_DECREF(arr);
        if (!(arr = c)) return NULL;
    }

    npy_intp dims[3] = {nh, nw, 3};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_UINT8);
    if (!out) {
        Py_DECREF(arr);
        return NULL;
    }
    msam_error err = {{0}};
    msam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = msam_resize_rgb8((const uint8_t *)PyArray_DATA(arr), (int)PyArray_DIM(arr, 0),
                          (int)PyArray_DIM(arr, 1), PyArray_STRIDE(arr, 0), PyArray_STRIDE(arr, 1), bgr,
                          (uint8_t *)PyArray_DATA(out), (int)nh, (int)nw, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(arr);
    if (st) {
        Py_DECREF(out);
        return msam_py_raise(st, &err);
    }
    return (PyObject *)out;
}

/* Both mask resampler hooks: float results (NPY_FLOAT32) or the mask of those > 0 (NPY_BOOL). */
static PyObject *resize_bilinear(PyObject *args, PyObject *kwargs, const char *format, int out_type) {
    static char *kwlist[] = {"plane", "dh", "dw", "crop_h", "crop_w", NULL};
    static const char *expect = "a 2-D float32 array";
    PyObject *plane;
    Py_ssize_t dh, dw, crop_h = -1, crop_w = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, kwlist, &plane, &dh, &dw, &crop_h, &crop_w))
        return NULL;
    if (check_side(dh, "dh") < 0 || check_side(dw, "dw") < 0) return NULL;
    if (crop_h == -1) crop_h = dh;
    if (crop_w == -1) crop_w = dw;
    if (crop_h < 1 || crop_h > dh)
        return PyErr_Format(msam_py_InputError, "crop_h must be between 1 and dh=%zd, got %zd", dh, crop_h);
    if (crop_w < 1 || crop_w > dw)
        return PyErr_Format(msam_py_InputError, "crop_w must be between 1 and dw=%zd, got %zd", dw, crop_w);

    PyArrayObject *arr = as_array(plane, "plane", expect);
    if (!arr) return NULL;
    if (PyArray_NDIM(arr) != 2 || PyArray_TYPE(arr) != NPY_FLOAT32 || PyArray_DIM(arr, 0) < 1 ||
        PyArray_DIM(arr, 1) < 1 || PyArray_DIM(arr, 0) > MAX_SIDE || PyArray_DIM(arr, 1) > MAX_SIDE) {
        bad_array(arr, "plane", expect);
        Py_DECREF(arr);
        return NULL;
    }
    /* rows may be any whole number of floats apart; elements must be adjacent and aligned */
    if (PyArray_STRIDE(arr, 1) != (npy_intp)sizeof(float) || PyArray_STRIDE(arr, 0) % (npy_intp)sizeof(float) ||
        !PyArray_ISALIGNED(arr) || PyArray_ISBYTESWAPPED(arr)) {
        PyArrayObject *c = (PyArrayObject *)PyArray_FROMANY((PyObject *)arr, NPY_FLOAT32, 2, 2,
                                                             NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
        Py_DECREF(arr);
        if (!(arr = c)) return NULL;
    }

    npy_intp dims[2] = {crop_h, crop_w};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, out_type);
    if (!out) {
        Py_DECREF(arr);
        return NULL;
    }
    const float *src = (const float *)PyArray_DATA(arr);
    const int sh = (int)PyArray_DIM(arr, 0), sw = (int)PyArray_DIM(arr, 1);
    const ptrdiff_t src_ld = PyArray_STRIDE(arr, 0) / (npy_intp)sizeof(float);
    Py_BEGIN_ALLOW_THREADS
    if (out_type == NPY_BOOL)
        msam_resize_bilinear_mask(src, sh, sw, src_ld, (uint8_t *)PyArray_DATA(out), (int)dh, (int)dw,
                                  (ptrdiff_t)crop_w, (int)crop_h, (int)crop_w);
    else
        msam_resize_bilinear_f32(src, sh, sw, src_ld, (float *)PyArray_DATA(out), (int)dh, (int)dw,
                                 (ptrdiff_t)crop_w, (int)crop_h, (int)crop_w);
    Py_END_ALLOW_THREADS
    Py_DECREF(arr);
    return (PyObject *)out;
}

static PyObject *py_resize_bilinear_f32(PyObject *self, PyObject *args, PyObject *kwargs) {
    return resize_bilinear(args, kwargs, "Onn|nn:_resize_bilinear_f32", NPY_FLOAT32);
}

static PyObject *py_resize_bilinear_mask(PyObject *self, PyObject *args, PyObject *kwargs) {
    return resize_bilinear(args, kwargs, "Onn|nn:_resize_bilinear_mask", NPY_BOOL);
}

static PyMethodDef image_methods[] = {
    {"resize_rgb8", (PyCFunction)(void (*)(void))py_resize_rgb8, METH_VARARGS | METH_KEYWORDS,
     "resize_rgb8(image, new_h, new_w, bgr=False)\n--\n\n"
     "Resize an HxWx3 uint8 image (any strides) to new_h x new_w x 3 RGB, bit-identical to\n"
     "PIL.Image.resize((new_w, new_h), Image.BILINEAR). bgr=True reads the channels reversed."},
    {"_resize_bilinear_f32", (PyCFunction)(void (*)(void))py_resize_bilinear_f32, METH_VARARGS | METH_KEYWORDS,
     "_resize_bilinear_f32(plane, dh, dw, crop_h=dh, crop_w=dw)\n--\n\n"
     "Test hook: torch.nn.functional.interpolate(bilinear, align_corners=False) of a 2-D float32\n"
     "plane to dh x dw, returning only the top-left crop_h x crop_w."},
    {"_resize_bilinear_mask", (PyCFunction)(void (*)(void))py_resize_bilinear_mask, METH_VARARGS | METH_KEYWORDS,
     "_resize_bilinear_mask(plane, dh, dw, crop_h=dh, crop_w=dw)\n--\n\n"
     "Test hook: _resize_bilinear_f32(plane, dh, dw, crop_h, crop_w) > 0 as a bool array, computed\n"
     "without the float plane (the kernel predict uses for masks)."},
    {NULL, NULL, 0, NULL}};

int msam_py_add_image(PyObject *m) { return PyModule_AddFunctions(m, image_methods); }
