/* array.c (binding) - mobile_sam_c.Array: an n-d array in a model's backend memory (a predictor's
 * outputs) that speaks DLPack from C (__dlpack__ with versioned and legacy capsules,
 * __dlpack_device__) and copies to the host only on request (__array__, numpy(), cpu()). */
#include "binding.h"
#include "dlpack_abi.h"
#include "dlpack_in.h" /* msam_py_device_pair */
#include "py_model.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    msam_buffer *buf;  /* backend memory (owned), or NULL for a host copy */
    void *host;        /* host copy's memory (owned, PyMem_Raw) when buf is NULL */
    PyObject *owner;   /* the Model whose backend holds buf (kept alive while buf is) */
    int ndim;
    int64_t shape[4];
    int typenum;       /* NPY_FLOAT32, NPY_BOOL, NPY_UINT8, NPY_INT32 or NPY_INT64 (see dtypes) */
    int dev_type, dev_id;
} ArrayObject;

PyTypeObject *msam_py_ArrayType = NULL;

/* The element types an Array holds: outputs (float32 logits and IoU, bool masks) and inputs
 * (uint8 frames, int32/int64 labels) made with _device_array. */
static const struct {
    int typenum, dl_code, bits;
    const char *typestr, *name;
} dtypes[] = {{NPY_FLOAT32, MSAM_DL_FLOAT, 32, "<f4", "float32"}, {NPY_BOOL, MSAM_DL_BOOL, 8, "|b1", "bool"},
              {NPY_UINT8, MSAM_DL_UINT, 8, "|u1", "uint8"},      {NPY_INT32, MSAM_DL_INT, 32, "<i4", "int32"},
              {NPY_INT64, MSAM_DL_INT, 64, "<i8", "int64"}};

static int dtype_known(int typenum) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].typenum == typenum) return 1;
    return 0;
}

/* The row of a typenum array_alloc accepted (every Array's is known). */
static size_t dtype_index(int typenum) {
    size_t i = 0;
    while (i + 1 < sizeof dtypes / sizeof dtypes[0] && dtypes[i].typenum != typenum) i++;
    return i;
}

static size_t item_size(int typenum) { return (size_t)dtypes[dtype_index(typenum)].bits / 8; }
static const char *type_str(int typenum) { return dtypes[dtype_index(typenum)].typestr; }

static size_t array_nbytes(const ArrayObject *a) {
    size_t n = item_size(a->typenum);
    for (int d = 0; d < a->ndim; d++) n *= (size_t)a->shape[d];
    return n;
}

static void *array_data(const ArrayObject *a) { return a->buf ? msam_buffer_data(a->buf) : a->host; }

/* A bare Array of the given shape; memory is attached by the caller. */
static ArrayObject *array_alloc(int ndim, const npy_intp *shape, int typenum) {
    if (!dtype_known(typenum) || ndim < 0 || ndim > 4) {
        PyErr_SetString(PyExc_SystemError, "mobile_sam_c.Array: unsupported dtype or rank");
        return NULL;
    }
    ArrayObject *a = PyObject_New(ArrayObject, msam_py_ArrayType);
    if (!a) return NULL;
    a->buf = NULL, a->host = NULL, a->owner = NULL;
    a->ndim = ndim;
    for (int d = 0; d < ndim; d++) a->shape[d] = shape[d];
    a->typenum = typenum;
    a->dev_type = MSAM_DL_CPU, a->dev_id = 0;
    return a;
}

PyObject *msam_py_array_new(PyObject *model_obj, const msam_model *m, int ndim, const npy_intp *shape, int typenum) {
    ArrayObject *a = array_alloc(ndim, shape, typenum);
    if (!a) return NULL;
    msam_error err = {{0}};
    msam_status st = msam_buffer_create(m, array_nbytes(a), &a->buf, &err);
    if (st) {
        Py_DECREF(a);
        return msam_py_raise(st, &err);
    }
    Py_INCREF(model_obj);
    a->owner = model_obj;
    a->dev_type = msam_buffer_device(a->buf) == MSAM_DEVICE_CUDA ? MSAM_DL_CUDA : MSAM_DL_CPU;
    return (PyObject *)a;
}

void *msam_py_array_data(PyObject *arr) { return array_data((ArrayObject *)arr); }

static void Array_dealloc(PyObject *self) {
    ArrayObject *a = (ArrayObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    msam_buffer_free(a->buf); /* before the owner: the buffer's backend lives in the model */
    PyMem_RawFree(a->host);
    Py_XDECREF(a->owner);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* A host copy of a (an Array on the CPU, owning its memory). */
static ArrayObject *host_copy(const ArrayObject *a) {
    npy_intp shape[4];
    for (int d = 0; d < a->ndim; d++) shape[d] = (npy_intp)a->shape[d];
    ArrayObject *c = array_alloc(a->ndim, shape, a->typenum);
    if (!c) return NULL;
    const size_t n = array_nbytes(a);
    if (!(c->host = PyMem_RawMalloc(n ? n : 1))) {
        Py_DECREF(c);
        return (ArrayObject *)PyErr_NoMemory();
    }
    msam_error err = {{0}};
    msam_status st = MSAM_OK;
    if (a->buf) {
        Py_BEGIN_ALLOW_THREADS
        st = msam_buffer_read(a->buf, 0, c->host, n, &err);
        Py_END_ALLOW_THREADS
    } else {
        memcpy(c->host, a->host, n);
    }
    if (st) {
        Py_DECREF(c);
        return (ArrayObject *)msam_py_raise(st, &err);
    }
    return c;
}

/* NumPy view of a host Array, keeping it alive as the view's base. */
static PyObject *numpy_view(ArrayObject *a) {
    npy_intp shape[4];
    for (int d = 0; d < a->ndim; d++) shape[d] = (npy_intp)a->shape[d];
    PyObject *arr = PyArray_SimpleNewFromData(a->ndim, shape, a->typenum, array_data(a));
    if (!arr) return NULL;
    Py_INCREF(a);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)a) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

PyObject *msam_py_array_numpy(PyObject *arr) {
    ArrayObject *a = (ArrayObject *)arr;
    if (a->dev_type == MSAM_DL_CPU) return numpy_view(a);
    ArrayObject *c = host_copy(a);
    if (!c) return NULL;
    PyObject *out = numpy_view(c);
    Py_DECREF(c);
    return out;
}

static PyObject *Array_numpy(PyObject *self, PyObject *unused) { return msam_py_array_numpy(self); }

static PyObject *Array_cpu(PyObject *self, PyObject *unused) {
    ArrayObject *a = (ArrayObject *)self;
    if (a->dev_type == MSAM_DL_CPU) {
        Py_INCREF(self);
        return self;
    }
    return (PyObject *)host_copy(a);
}

/* __array__(dtype=None, copy=None), NumPy 2's protocol: a view where the memory is on the host,
 * else a copy (refused when copy=False). */
static PyObject *Array_array(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"dtype", "copy", NULL};
    PyObject *dtype = Py_None, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO:__array__", kwlist, &dtype, &copy)) return NULL;
    ArrayObject *a = (ArrayObject *)self;
    if (copy == Py_False && a->dev_type != MSAM_DL_CPU) {
        PyErr_SetString(PyExc_ValueError, "copy=False: this array lives on a GPU; reading it needs a copy");
        return NULL;
    }
    PyObject *arr = msam_py_array_numpy(self);
    if (!arr) return NULL;
    if (dtype != Py_None) {
        PyArray_Descr *d = NULL;
        if (!PyArray_DescrConverter(dtype, &d)) {
            Py_DECREF(arr);
            return NULL;
        }
        PyObject *cast = PyArray_CastToType((PyArrayObject *)arr, d, 0); /* steals d */
        Py_DECREF(arr);
        return cast;
    }
    if (copy == Py_True && a->dev_type == MSAM_DL_CPU) {
        PyObject *c = PyArray_NewCopy((PyArrayObject *)arr, NPY_CORDER);
        Py_DECREF(arr);
        return c;
    }
    return arr;
}

/* ---- DLPack export ---------------------------------------------------------------------- */

/* What one export holds: the managed tensor, its shape, and a reference to the Array whose
 * memory it points at (dropped by the deleter, which the consumer calls when done). */
typedef struct {
    msam_dl_managed_v v;
    msam_dl_managed legacy;
    int64_t shape[4];
    PyObject *array;
} export_ctx;

static void export_release(export_ctx *e) {
    if (!e) return;
    if (Py_IsInitialized()) { /* the consumer may call the deleter from any thread */
        PyGILState_STATE g = PyGILState_Ensure();
        Py_XDECREF(e->array);
        PyGILState_Release(g);
    }
    PyMem_RawFree(e);
}

static void deleter_v(msam_dl_managed_v *self) { export_release((export_ctx *)self->manager_ctx); }
static void deleter_legacy(msam_dl_managed *self) { export_release((export_ctx *)self->manager_ctx); }

/* Capsule destructors: an export nobody consumed still owns its tensor. */
static void capsule_free_v(PyObject *cap) {
    if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
        msam_dl_managed_v *m = PyCapsule_GetPointer(cap, "dltensor_versioned");
        if (m && m->deleter) m->deleter(m);
    }
}

static void capsule_free_legacy(PyObject *cap) {
    if (PyCapsule_IsValid(cap, "dltensor")) {
        msam_dl_managed *m = PyCapsule_GetPointer(cap, "dltensor");
        if (m && m->deleter) m->deleter(m);
    }
}

/* DLPack's stream on CUDA: -1 asks for no ordering; None and 1 mean the legacy default stream,
 * which already runs after our (blocking) streams' work; 2 (per-thread default) or a stream handle
 * is made to wait for it with an event, never a host wait. 0 is ambiguous, so refused. */
static int consumer_wait(const ArrayObject *a, PyObject *stream) {
    if (stream == Py_None) return 0;
    long long v = PyLong_Check(stream) ? PyLong_AsLongLong(stream) : -2;
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v == -1 || v == 1) return 0;
    if (v < 1 || !a->buf) {
        PyErr_Format(PyExc_BufferError, "stream must be None, -1, 1, 2 or a CUDA stream handle (an int > 2), got %R",
                     stream);
        return -1;
    }
    msam_error err = {{0}};
    msam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = msam_buffer_export_to(a->buf, (uintptr_t)v, &err);
    Py_END_ALLOW_THREADS
    if (st) {
        msam_py_raise(st, &err);
        return -1;
    }
    return 0;
}

static PyObject *Array_dlpack(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"stream", "max_version", "dl_device", "copy", NULL};
    PyObject *stream = Py_None, *max_version = Py_None, *dl_device = Py_None, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOO:__dlpack__", kwlist, &stream, &max_version, &dl_device,
                                     &copy))
        return NULL;
    ArrayObject *a = (ArrayObject *)self;
    int want_type = a->dev_type, want_id = a->dev_id;
    if (dl_device != Py_None && msam_py_device_pair(dl_device, "dl_device", &want_type, &want_id) < 0) return NULL;
    if (copy != Py_None && copy != Py_True && copy != Py_False)
        return PyErr_Format(msam_py_InputError, "copy must be True, False or None");
    const int to_host = want_type == MSAM_DL_CPU && a->dev_type != MSAM_DL_CPU;
    if (!to_host && (want_type != a->dev_type || want_id != a->dev_id)) {
        PyErr_Format(PyExc_BufferError, "dl_device (%d, %d): this array lives on (%d, %d) and can only be "
                     "exported there or copied to the CPU (1, 0)", want_type, want_id, a->dev_type, a->dev_id);
        return NULL;
    }
    if (to_host && copy == Py_False) {
        PyErr_SetString(PyExc_BufferError, "copy=False: exporting to the CPU needs a copy of this GPU array");
        return NULL;
    }
    if (want_type == MSAM_DL_CPU && stream != Py_None) {
        PyErr_SetString(PyExc_BufferError, "stream must be None for an array exported on the CPU");
        return NULL;
    }
    if (!to_host && a->dev_type == MSAM_DL_CUDA && consumer_wait(a, stream) < 0) return NULL;

    int versioned = 0;
    if (max_version != Py_None) {
        PyObject *major = PySequence_Check(max_version) ? PySequence_GetItem(max_version, 0) : NULL;
        long mj = major ? PyLong_AsLong(major) : -1;
        Py_XDECREF(major);
        if (mj == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return PyErr_Format(msam_py_InputError, "max_version must be a (major, minor) pair of ints");
        }
        versioned = mj >= MSAM_DL_MAJOR;
    }

    ArrayObject *src = a;
    int copied = 0;
    if (to_host || copy == Py_True) {
        if (!(src = host_copy(a))) return NULL; /* a copy on the same device is a host copy on the CPU */
        copied = 1;
        if (!to_host && a->dev_type != MSAM_DL_CPU) {
            Py_DECREF(src);
            PyErr_SetString(PyExc_BufferError, "copy=True on the GPU is not supported: export with copy=None");
            return NULL;
        }
    } else {
        Py_INCREF(src);
    }
    export_ctx *e = PyMem_RawCalloc(1, sizeof *e);
    if (!e) {
        Py_DECREF(src);
        return PyErr_NoMemory();
    }
    e->array = (PyObject *)src; /* the reference taken above */
    for (int d = 0; d < src->ndim; d++) e->shape[d] = src->shape[d];
    msam_dl_tensor t;
    t.data = array_data(src);
    t.device.device_type = src->dev_type;
    t.device.device_id = src->dev_id;
    t.ndim = src->ndim;
    t.dtype.code = (uint8_t)dtypes[dtype_index(src->typenum)].dl_code;
    t.dtype.bits = (uint8_t)dtypes[dtype_index(src->typenum)].bits;
    t.dtype.lanes = 1;
    t.shape = e->shape;
    t.strides = NULL; /* compact row-major */
    t.byte_offset = 0;
    PyObject *cap;
    if (versioned) {
        e->v.major = MSAM_DL_MAJOR, e->v.minor = MSAM_DL_MINOR;
        e->v.manager_ctx = e;
        e->v.deleter = deleter_v;
        e->v.flags = copied ? MSAM_DL_FLAG_IS_COPIED : 0;
        e->v.tensor = t;
        cap = PyCapsule_New(&e->v, "dltensor_versioned", capsule_free_v);
    } else {
        e->legacy.tensor = t;
        e->legacy.manager_ctx = e;
        e->legacy.deleter = deleter_legacy;
        cap = PyCapsule_New(&e->legacy, "dltensor", capsule_free_legacy);
    }
    if (!cap) export_release(e);
    return cap;
}

static PyObject *Array_dlpack_device(PyObject *self, PyObject *unused) {
    ArrayObject *a = (ArrayObject *)self;
    return Py_BuildValue("(ii)", a->dev_type, a->dev_id);
}

/* ---- attributes ------------------------------------------------------------------------- */

static PyObject *Array_get_shape(PyObject *self, void *c) {
    ArrayObject *a = (ArrayObject *)self;
    PyObject *t = PyTuple_New(a->ndim);
    if (!t) return NULL;
    for (int d = 0; d < a->ndim; d++) {
        PyObject *v = PyLong_FromLongLong(a->shape[d]);
        if (!v) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, d, v);
    }
    return t;
}

static PyObject *Array_get_dtype(PyObject *self, void *c) {
    return (PyObject *)PyArray_DescrFromType(((ArrayObject *)self)->typenum);
}

static PyObject *Array_get_device(PyObject *self, void *c) {
    ArrayObject *a = (ArrayObject *)self;
    if (a->dev_type == MSAM_DL_CPU) return PyUnicode_FromString("cpu");
    return PyUnicode_FromFormat("cuda:%d", a->dev_id);
}

/* __cuda_array_interface__ (version 3) of a CUDA array; no such attribute elsewhere, so
 * hasattr() tells consumers which protocol to use. stream 1 (the legacy default stream): work
 * there runs after everything our blocking streams were given, this array's producer included. */
static PyObject *Array_get_cai(PyObject *self, void *c) {
    ArrayObject *a = (ArrayObject *)self;
    if (a->dev_type != MSAM_DL_CUDA) {
        PyErr_SetString(PyExc_AttributeError, "__cuda_array_interface__: this array is not in CUDA memory");
        return NULL;
    }
    PyObject *shape = PyTuple_New(a->ndim);
    if (!shape) return NULL;
    for (int d = 0; d < a->ndim; d++) {
        PyObject *n = PyLong_FromLongLong(a->shape[d]);
        if (!n) {
            Py_DECREF(shape);
            return NULL;
        }
        PyTuple_SET_ITEM(shape, d, n);
    }
    return Py_BuildValue("{sNsss(KO)sisOsi}", "shape", shape, "typestr", type_str(a->typenum),
                         "data", (unsigned long long)(uintptr_t)array_data(a), Py_False, "version", 3, "strides",
                         Py_None, "stream", 1);
}

static PyObject *Array_get_ndim(PyObject *self, void *c) { return PyLong_FromLong(((ArrayObject *)self)->ndim); }

static PyObject *Array_get_nbytes(PyObject *self, void *c) {
    return PyLong_FromSize_t(array_nbytes((ArrayObject *)self));
}

static Py_ssize_t Array_len(PyObject *self) {
    ArrayObject *a = (ArrayObject *)self;
    if (a->ndim == 0) {
        PyErr_SetString(PyExc_TypeError, "len() of a 0-d array");
        return -1;
    }
    return (Py_ssize_t)a->shape[0];
}

static PyObject *Array_repr(PyObject *self) {
    ArrayObject *a = (ArrayObject *)self;
    PyObject *shape = Array_get_shape(self, NULL), *dev = Array_get_device(self, NULL);
    PyObject *r = shape && dev ? PyUnicode_FromFormat("mobile_sam_c.Array(shape=%R, dtype=%s, device='%U')", shape,
                                                      dtypes[dtype_index(a->typenum)].name, dev)
                               : NULL;
    Py_XDECREF(shape);
    Py_XDECREF(dev);
    return r;
}

/* _device_array(model, array): a copy of a host array of one of the dtypes (ndim 1..4) as an
 * Array in the model's backend memory (a frame "already on the GPU" for tests and examples). */
static PyObject *device_array(PyObject *mod, PyObject *args) {
    PyObject *model_obj, *obj;
    if (!PyArg_ParseTuple(args, "O!O:_device_array", msam_py_ModelType, &model_obj, &obj)) return NULL;
    PyArrayObject *h = (PyArrayObject *)PyArray_FROM_OF(obj, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!h) return NULL;
    const int t = PyArray_TYPE(h), nd = PyArray_NDIM(h);
    if (!dtype_known(t) || nd < 1 || nd > 4) {
        Py_DECREF(h);
        return PyErr_Format(msam_py_InputError, "array must be float32, bool, uint8, int32 or int64 with 1..4 dimensions");
    }
    PyObject *arr = msam_py_array_new(model_obj, ((ModelObject *)model_obj)->model, nd, PyArray_DIMS(h), t);
    if (arr) {
        msam_error err = {{0}};
        msam_status st = msam_buffer_write(((ArrayObject *)arr)->buf, 0, PyArray_DATA(h), (size_t)PyArray_NBYTES(h), &err);
        if (st) {
            Py_CLEAR(arr);
            msam_py_raise(st, &err);
        }
    }
    Py_DECREF(h);
    return arr;
}

static PyMethodDef module_functions[] = {
    {"_device_array", device_array, METH_VARARGS,
     "_device_array(model, array) -> Array: a host array copied into the model's backend memory."},
    {NULL, NULL, 0, NULL}};

static PyMethodDef Array_methods[] = {
    {"__dlpack__", (PyCFunction)(void (*)(void))Array_dlpack, METH_VARARGS | METH_KEYWORDS,
     "__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None): a DLPack capsule of this array\n"
     "(versioned when max_version >= (1, 0), else legacy); copy=True or dl_device=(1, 0) for a GPU array copy."},
    {"__dlpack_device__", Array_dlpack_device, METH_NOARGS, "(device_type, device_id): (1, 0) CPU, (2, i) CUDA."},
    {"__array__", (PyCFunction)(void (*)(void))Array_array, METH_VARARGS | METH_KEYWORDS,
     "__array__(dtype=None, copy=None): a NumPy array (a view on the CPU, a copy from a GPU)."},
    {"numpy", Array_numpy, METH_NOARGS, "A NumPy array of the data: a view on the CPU, a host copy from a GPU."},
    {"cpu", Array_cpu, METH_NOARGS, "This array on the CPU: itself on the CPU, else a host copy."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Array_getset[] = {
    {"shape", Array_get_shape, NULL, "The shape, a tuple of ints.", NULL},
    {"dtype", Array_get_dtype, NULL, "The NumPy dtype (float32 or bool).", NULL},
    {"device", Array_get_device, NULL, "'cpu' or 'cuda:<i>': where the data lives.", NULL},
    {"ndim", Array_get_ndim, NULL, "Number of dimensions.", NULL},
    {"nbytes", Array_get_nbytes, NULL, "Bytes of data.", NULL},
    {"__cuda_array_interface__", Array_get_cai, NULL,
     "CUDA Array Interface v3 (CUDA arrays only: AttributeError elsewhere), stream 1 (legacy default).", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot Array_slots[] = {
    {Py_tp_dealloc, Array_dealloc},
    {Py_tp_methods, Array_methods},
    {Py_tp_getset, Array_getset},
    {Py_tp_repr, Array_repr},
    {Py_sq_length, Array_len},
    {Py_mp_length, Array_len},
    {Py_tp_doc, "An array in a model's backend memory (a predictor's output), exported through DLPack."},
    {0, NULL}};

static PyType_Spec Array_spec = {"mobile_sam_c._C.Array", sizeof(ArrayObject), 0, Py_TPFLAGS_DEFAULT, Array_slots};

int msam_py_add_array(PyObject *m) {
    PyObject *tp = PyType_FromModuleAndSpec(m, &Array_spec, NULL);
    if (!tp) return -1;
    msam_py_ArrayType = (PyTypeObject *)tp;
    if (PyModule_AddObject(m, "Array", tp) < 0) {
        Py_DECREF(tp);
        return -1;
    }
    Py_INCREF(tp); /* the global keeps one reference */
    return PyModule_AddFunctions(m, module_functions);
}
