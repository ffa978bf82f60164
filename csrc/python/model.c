/* model.c (binding) - the Model type: converts a name -> float32 array mapping into a core
 * msam_model once. Holds no Python references afterwards (the core keeps its own copies). */
#include "binding.h"
#include "py_model.h"

#include <string.h>

static void Model_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    msam_model_free(((ModelObject *)self)->model);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static int Model_init(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "device", NULL};
    PyObject *weights;
    const char *device = "cpu";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|s:Model", kwlist, &weights, &device)) return -1;
    ModelObject *mo = (ModelObject *)self;
    if (mo->model) {
        PyErr_SetString(PyExc_RuntimeError, "Model is already initialised");
        return -1;
    }
    msam_device dev;
    if (strcmp(device, "cpu") == 0) dev = MSAM_DEVICE_CPU;
    else if (strcmp(device, "cuda") == 0 || strncmp(device, "cuda:", 5) == 0) dev = MSAM_DEVICE_CUDA;
    else {
        PyErr_Format(msam_py_InputError, "device must be 'cpu' or 'cuda', got '%s'", device);
        return -1;
    }
    if (!PyDict_Check(weights)) {
        PyErr_SetString(msam_py_InputError, "weights must be a dict of name -> float32 array");
        return -1;
    }
    /* Our own (key, value) pairs first: converting a value may run user code (__array__) that
     * changes the dict, and the table keeps each key's UTF-8 pointer until the core has copied it. */
    PyObject *items = PyDict_Items(weights);
    if (!items) return -1;
    Py_ssize_t n = PyList_GET_SIZE(items), used = 0;
    msam_weight *table = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(msam_weight));
    PyObject **keep = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(PyObject *));
    int rc = -1;
    if (!table || !keep) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i); /* the list owns the pairs, the pairs their items */
        PyObject *key = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyUnicode_Check(key)) {
            PyErr_SetString(msam_py_InputError, "weights keys must be str");
            goto done;
        }
        const char *name = PyUnicode_AsUTF8(key);
        if (!name) goto done;
        /* integer tensors (BatchNorm counters) are validated in Python and not needed here */
        if (PyArray_Check(value) && PyArray_ISINTEGER((PyArrayObject *)value)) continue;
        PyArrayObject *arr = (PyArrayObject *)PyArray_FROMANY(value, NPY_FLOAT32, 0, 4,
                                                               NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
        if (!arr) {
            if (PyErr_ExceptionMatches(PyExc_MemoryError) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) goto done;
            PyErr_Clear();
            PyErr_Format(msam_py_InputError, "weights['%s'] must be a float32 array of at most 4 dimensions", name);
            goto done;
        }
        keep[used] = (PyObject *)arr;
        msam_weight *w = &table[used++];
        w->name = name;
        w->data = (const float *)PyArray_DATA(arr);
        w->ndim = PyArray_NDIM(arr);
        for (int d = 0; d < w->ndim; d++) w->shape[d] = PyArray_DIM(arr, d);
    }
    msam_error err = {{0}};
    msam_status st;
    msam_model *model = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = msam_model_create(table, (size_t)used, dev, &model, &err);
    Py_END_ALLOW_THREADS
    if (st) {
        msam_py_raise(st, &err);
        goto done;
    }
    mo->model = model;
    mo->device = dev;
    rc = 0;
done:
    if (keep)
        for (Py_ssize_t i = 0; i < used; i++) Py_XDECREF(keep[i]);
    PyMem_Free(keep);
    PyMem_Free(table);
    Py_DECREF(items);
    return rc;
}

static PyObject *Model_get_device(PyObject *self, void *closure) {
    return PyUnicode_FromString(((ModelObject *)self)->device == MSAM_DEVICE_CUDA ? "cuda" : "cpu");
}

static PyGetSetDef Model_getset[] = {
    {"device", Model_get_device, NULL, "'cpu' or 'cuda': where the model computes and its outputs live.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot Model_slots[] = {
    {Py_tp_dealloc, Model_dealloc},
    {Py_tp_init, Model_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_getset, Model_getset},
    {Py_tp_doc, "Model(weights: dict[str, ndarray], device='cpu'): MobileSAM vit_t weights converted for the C core."},
    {0, NULL}};

static PyType_Spec Model_spec = {"mobile_sam_c._C.Model", sizeof(ModelObject), 0,
                                 Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, Model_slots};

PyTypeObject *msam_py_ModelType = NULL;

int msam_py_add_model(PyObject *m) {
    PyObject *tp = PyType_FromModuleAndSpec(m, &Model_spec, NULL);
    if (!tp) return -1;
    msam_py_ModelType = (PyTypeObject *)tp;
    if (PyModule_AddObject(m, "Model", tp) < 0) {
        Py_DECREF(tp);
        return -1;
    }
    Py_INCREF(tp); /* the global keeps one reference for predictor.c's type checks */
    return 0;
}
