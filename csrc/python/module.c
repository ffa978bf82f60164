/* module.c - mobile_sam_c._C: module init (multi-phase), the InputError exception, status ->
 * exception mapping and the thread-count functions. The other files add the types. */
#define MSAM_BINDING_MAIN
#include "binding.h"

PyObject *msam_py_InputError = NULL;

PyObject *msam_py_raise(msam_status st, const msam_error *err) {
    const char *msg = err && err->msg[0] ? err->msg : "mobile_sam_c core error";
    switch (st) {
    case MSAM_ERR_ARG: PyErr_SetString(msam_py_InputError, msg); break;
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
    msam_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(msam_get_num_threads());
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
    {"cpu_isa", py_cpu_isa, METH_NOARGS, "The GEMM kernel in use: avx512, avx2 or generic."},
    {"weight_spec", py_weight_spec, METH_NOARGS,
     "[(name, shape, dtype)] of every tensor a MobileSAM vit_t state dict holds."},
    {NULL, NULL, 0, NULL}};

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
    if (msam_py_add_model(m) < 0 || msam_py_add_predictor(m) < 0 || msam_py_add_image(m) < 0 ||
        msam_py_add_kernels(m) < 0)
        return -1;
    if (msam_py_add_amg(m) < 0) return -1;
    return 0;
}

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, module_exec}, {0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "mobile_sam_c._C",
    "The C core of mobile_sam_c: MobileSAM vit_t inference (see mobile_sam_c for the API).", 0,
    module_methods, module_slots, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__C(void) { return PyModuleDef_Init(&module_def); }
