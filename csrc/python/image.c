/* image.c (binding) - resize_rgb8, the Pillow-exact preprocessing resize of a host image (a
 * host utility of the public API), validating the array and releasing the GIL. */
#include "binding.h"

/* Sides up to the library's image limit (msam.h; Pillow's resampler, working from float box
 * edges, stays exact far beyond it). */
#define MAX_SIDE MSAM_MAX_IMAGE_SIDE

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

int msam_py_check_side(Py_ssize_t v, const char *name) {
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
    if (msam_py_check_side(nh, "new_h") < 0 || msam_py_check_side(nw, "new_w") < 0) return NULL;

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

static PyMethodDef image_methods[] = {
    {"resize_rgb8", (PyCFunction)(void (*)(void))py_resize_rgb8, METH_VARARGS | METH_KEYWORDS,
     "resize_rgb8(image, new_h, new_w, bgr=False)\n--\n\n"
     "Resize an HxWx3 uint8 image (any strides) to new_h x new_w x 3 RGB, bit-identical to\n"
     "PIL.Image.resize((new_w, new_h), Image.BILINEAR). bgr=True reads the channels reversed."},
    {NULL, NULL, 0, NULL}};

int msam_py_add_image(PyObject *m) { return PyModule_AddFunctions(m, image_methods); }
