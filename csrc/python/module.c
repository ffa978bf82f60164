/* module.c - mobile_sam_c._C: module init (multi-phase), the InputError exception, status ->
 * exception mapping and the thread-count functions. The other files add the types. */
#define MSAM_BINDING_MAIN
#include "binding.h"

#include <string.h>

PyObject *msam_py_InputError = NULL;

PyObject *msam_py_raise(msam_status st, const msam_error *err) {
    const char *msg = err && err->msg[0] ? err->msg : "mobile_sam_c core error";
    switch (st) {
    case MSAM_ERR_ARG:
    case MSAM_ERR_DEVICE: PyErr_SetString(msam_py_InputError, msg); break; /* a device that cannot be used here */
    case MSAM_ERR_NOMEM: PyErr_SetString(PyExc_MemoryError, msg); break;
    case MSAM_ERR_WEIGHTS: PyErr_SetString(PyExc_ValueError, msg); break;
    case MSAM_ERR_STATE: PyErr_SetString(PyExc_RuntimeError, msg); break;
    default: PyErr_SetString(PyExc_RuntimeError, msg); break;
    }
    return NULL;
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0 || n > 1024) {
        PyErr_Format(msam_py_InputError, "n must be an int in 0..1024 (0 = default), got %ld", n);
        return NULL;
    }
    /* the OpenMP runtime prints and exit(1)s when it cannot start a thread: the core finds out first */
    msam_error err = {{0}};
    msam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = msam_set_num_threads_checked((int)n, &err);
    Py_END_ALLOW_THREADS
    if (st) {
        PyErr_Format(PyExc_RuntimeError, "set_num_threads(%ld): %s", n, err.msg);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(msam_get_num_threads());
}

/* check_device(device): None when a model can be made on device ('cpu', 'cuda', 'cuda:N') here,
 * else InputError saying what is missing (may initialise the GPU; the GIL is released meanwhile). */
static PyObject *py_check_device(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!name) {
        if (!PyErr_Occurred()) PyErr_SetString(msam_py_InputError, "device must be a str ('cpu' or 'cuda')");
        return NULL;
    }
    msam_device dev;
    if (strcmp(name, "cpu") == 0) dev = MSAM_DEVICE_CPU;
    else if (strcmp(name, "cuda") == 0 || strncmp(name, "cuda:", 5) == 0) dev = MSAM_DEVICE_CUDA;
    else return PyErr_Format(msam_py_InputError, "device must be 'cpu' or 'cuda', got '%s'", name);
    msam_error err = {{0}};
    msam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = msam_device_check(dev, &err);
    Py_END_ALLOW_THREADS
    if (st) return msam_py_raise(st, &err);
    Py_RETURN_NONE;
}

static PyObject *py_cpu_isa(PyObject *self, PyObject *unused) { return PyUnicode_FromString(msam_cpu_isa()); }

static PyObject *py_weight_spec(PyObject *self, PyObject *unused) {
    size_t n = msam_weight_spec_count();
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (size_t i = 0; i < n; i++) {
        const msam_weight_spec *s = msam_weight_spec_at(i);
        PyObject *shape = PyTuple_New(s->ndim);
        if (!shape) goto fail;
        for (int d = 0; d < s->ndim; d++) PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(s->shape[d]));
        PyObject *item = Py_BuildValue("(sNs)", s->name, shape, s->is_int64 ? "int64" : "float32");
        if (!item) goto fail;
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
fail:
    Py_DECREF(list);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"set_num_threads", py_set_num_threads, METH_O, "Set the threads the core uses (0: default)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "Threads the core uses."},
    {"check_device", py_check_device, METH_O,
     "check_device(device): None when a model can be made on device here, else InputError saying what is "
     "missing (built without CUDA; no driver or GPU; cuBLAS not found)."},
    {"cpu_isa", py_cpu_isa, METH_NOARGS, "The GEMM kernel in use: avx512, avx2 or generic."},
    {"weight_spec", py_weight_spec, METH_NOARGS,
     "[(name, shape, dtype)] of every tensor a MobileSAM vit_t state dict holds."},
    {NULL, NULL, 0, NULL}};

/* The model's fixed sizes and the library's limits, from their one home (msam.h). */
static int add_constants(PyObject *m) {
    static const float mean[3] = MSAM_PIXEL_MEAN_INIT, std[3] = MSAM_PIXEL_STD_INIT;
    PyObject *pm = Py_BuildValue("(ddd)", (double)mean[0], (double)mean[1], (double)mean[2]);
    PyObject *ps = Py_BuildValue("(ddd)", (double)std[0], (double)std[1], (double)std[2]);
    PyObject *cuda = PyBool_FromLong(msam_device_available(MSAM_DEVICE_CUDA));
    if (!pm || !ps || !cuda || PyModule_AddObject(m, "PIXEL_MEAN", pm) < 0) goto fail;
    pm = NULL;
    if (PyModule_AddObject(m, "PIXEL_STD", ps) < 0) goto fail;
    ps = NULL;
    if (PyModule_AddObject(m, "CUDA_BUILT", cuda) < 0) goto fail;
    cuda = NULL;
    if (PyModule_AddIntConstant(m, "IMG_SIZE", MSAM_IMG_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "LOW_RES", MSAM_LOW_RES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_IMAGE_SIDE", MSAM_MAX_IMAGE_SIDE) < 0 ||
        PyModule_AddObject(m, "MAX_IMAGE_PIXELS", PyLong_FromLongLong(MSAM_MAX_IMAGE_PIXELS)) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PROMPT_POINTS", MSAM_MAX_PROMPT_POINTS) < 0)
        return -1;
    return 0;
fail:
    Py_XDECREF(pm), Py_XDECREF(ps), Py_XDECREF(cuda);
    return -1;
}

static int module_exec(PyObject *m) {
    if (_import_array() < 0) return -1;
    if (!msam_py_InputError) {
        PyObject *bases = PyTuple_Pack(2, PyExc_ValueError, PyExc_AssertionError);
        if (!bases) return -1;
        msam_py_InputError = PyErr_NewExceptionWithDoc(
            "mobile_sam_c.InputError",
            "A bad argument: the message names it and what was expected. Subclasses ValueError "
            "and AssertionError (the original MobileSAM checks its inputs with assert).",
            bases, NULL);
        Py_DECREF(bases);
        if (!msam_py_InputError) return -1;
    }
    Py_INCREF(msam_py_InputError);
    if (PyModule_AddObject(m, "InputError", msam_py_InputError) < 0) {
        Py_DECREF(msam_py_InputError);
        return -1;
    }
    if (msam_py_add_model(m) < 0 || msam_py_add_predictor(m) < 0 || msam_py_add_array(m) < 0 ||
        msam_py_add_image(m) < 0 || msam_py_add_kernels(m) < 0)
        return -1;
    if (msam_py_add_amg(m) < 0) return -1;
    return add_constants(m);
}

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, module_exec}, {0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "mobile_sam_c._C",
    "The C core of mobile_sam_c: MobileSAM vit_t inference (see mobile_sam_c for the API).", 0,
    module_methods, module_slots, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__C(void) { return PyModuleDef_Init(&module_def); }
