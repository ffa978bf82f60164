/* predictor.c - the Predictor type: one core session per predictor. set_image / predict parse
 * and check their arguments, create the outputs in the model's backend memory, and run the core
 * with the GIL released. The predictor's lock covers every read and write of its image state. */
#include "binding.h"
#include "core/msam_test.h" /* _op_trace (test hook) */
#include "device_prompts.h"
#include "dlpack_in.h"
#include "prompt_args.h"
#include "py_model.h"

#include <dlfcn.h>
#include <math.h>
#include <pythread.h>
#include <string.h>

#define IMG MSAM_IMG_SIZE

typedef struct {
    PyObject_HEAD
    ModelObject *model;  /* strong reference: the core model outlives the session */
    msam_session *sess;
    PyThread_type_lock lock; /* one core call at a time per predictor; guards the image state */
    uint8_t *resized;    /* 1024 x 1024 x 3 staging for set_image */
    /* image state, read and written with the lock held */
    int orig_h, orig_w, input_h, input_w;
    PyObject *features;  /* cached 1x256x64x64 embedding array, or NULL */
} PredictorObject;

/* Take the predictor's lock; wait with the GIL released so other Python threads run. */
static void lock_take(PredictorObject *p) {
    if (!PyThread_acquire_lock(p->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(p->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static void lock_give(PredictorObject *p) { PyThread_release_lock(p->lock); }

static int Predictor_init(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"model", NULL};
    PyObject *model;
    PredictorObject *p = (PredictorObject *)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:Predictor", kwlist, &model)) return -1;
    if (p->sess) {
        PyErr_SetString(PyExc_RuntimeError, "Predictor is already initialised");
        return -1;
    }
    if (!PyObject_TypeCheck(model, msam_py_ModelType) || !((ModelObject *)model)->model) {
        PyErr_Format(msam_py_InputError, "model must be a mobile_sam_c Model, got %s", Py_TYPE(model)->tp_name);
        return -1;
    }
    p->lock = PyThread_allocate_lock();
    p->resized = PyMem_RawMalloc((size_t)IMG * IMG * 3);
    if (!p->lock || !p->resized) {
        PyErr_NoMemory();
        return -1;
    }
    msam_error err = {{0}};
    msam_status st;
    msam_session *sess = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = msam_session_create(((ModelObject *)model)->model, &sess, &err);
    Py_END_ALLOW_THREADS
    if (st) {
        msam_py_raise(st, &err);
        return -1;
    }
    Py_INCREF(model);
    p->model = (ModelObject *)model;
    p->sess = sess;
    return 0;
}

static int Predictor_traverse(PyObject *self, visitproc visit, void *arg) {
    PredictorObject *p = (PredictorObject *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(p->model);
    Py_VISIT(p->features);
    return 0;
}

static int Predictor_clear(PyObject *self) {
    PredictorObject *p = (PredictorObject *)self;
    Py_CLEAR(p->features);
    return 0;
}

static void Predictor_dealloc(PyObject *self) {
    PredictorObject *p = (PredictorObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    msam_session_free(p->sess);
    if (p->lock) PyThread_free_lock(p->lock);
    PyMem_RawFree(p->resized);
    Py_CLEAR(p->features);
    Py_CLEAR(p->model);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static int ready(PredictorObject *p) {
    if (!p->sess) {
        PyErr_SetString(PyExc_RuntimeError, "Predictor.__init__ was not called");
        return 0;
    }
    return 1;
}

static int parse_size(PyObject *obj, const char *name, int *h, int *w, int max_side) {
    /* a tuple of our own: an item's __index__ (user code) may change the caller's list meanwhile */
    PyObject *seq = PySequence_Check(obj) ? PySequence_Tuple(obj) : NULL;
    if (!seq || PyTuple_GET_SIZE(seq) != 2) {
        Py_XDECREF(seq);
        PyErr_Clear();
        PyErr_Format(msam_py_InputError, "%s must be a pair of ints (H, W)", name);
        return -1;
    }
    long v[2];
    for (int i = 0; i < 2; i++) {
        PyObject *idx = PyNumber_Index(PyTuple_GET_ITEM(seq, i));
        v[i] = idx ? PyLong_AsLong(idx) : -1;
        Py_XDECREF(idx);
        if (PyErr_Occurred() || v[i] < 1 || v[i] > max_side) {
            PyErr_Clear();
            Py_DECREF(seq);
            PyErr_Format(msam_py_InputError, "%s must be a pair of ints (H, W) in 1..%d", name, max_side);
            return -1;
        }
    }
    Py_DECREF(seq);
    *h = (int)v[0], *w = (int)v[1];
    return 0;
}

/* The documented image limits (msam.h), checked before anything is allocated for the image. */
static int check_image_limits(Py_ssize_t h, Py_ssize_t w, const char *name) {
    if (h < 1 || w < 1 || h > MSAM_MAX_IMAGE_SIDE || w > MSAM_MAX_IMAGE_SIDE ||
        (int64_t)h * (int64_t)w > MSAM_MAX_IMAGE_PIXELS) {
        PyErr_Format(msam_py_InputError,
                     "%s must be at least 1x1, at most %d pixels a side and %lld pixels in all, got %zdx%zd", name,
                     MSAM_MAX_IMAGE_SIDE, (long long)MSAM_MAX_IMAGE_PIXELS, h, w);
        return -1;
    }
    return 0;
}

/* Record a new image's sizes; call with the lock held. */
static void image_set(PredictorObject *p, int oh, int ow, int ih, int iw) {
    p->orig_h = oh, p->orig_w = ow, p->input_h = ih, p->input_w = iw;
    Py_CLEAR(p->features);
}

/* A frame already on the model's GPU (DLPack device (2, 0), uint8 HxWx3, channels 1 byte apart):
 * resized (Pillow-exact) and encoded there, never brought to the host. */
static PyObject *set_image_on_device(PredictorObject *p, PyObject *image, int bgr) {
    msam_py_dl_import in;
    if (msam_py_dlpack_import(image, 1, &in) < 0) return NULL; /* 1: we consume after the legacy stream */
    const msam_dl_tensor *t = in.t;
    const char *bad = NULL;
    if (t->device.device_type != MSAM_DL_CUDA || t->device.device_id != 0)
        bad = "must be on the model's GPU, cuda:0";
    else if (t->dtype.code != MSAM_DL_UINT || t->dtype.bits != 8 || t->dtype.lanes != 1)
        bad = "must be uint8";
    else if (t->ndim != 3 || t->shape[2] != 3 || t->shape[0] < 1 || t->shape[1] < 1)
        bad = "must be HxWx3 with H, W >= 1";
    if (bad) {
        PyErr_Format(msam_py_InputError, "image on a GPU %s (got device (%d, %d), dtype code %d bits %d, ndim %d)", bad,
                     (int)t->device.device_type, (int)t->device.device_id, (int)t->dtype.code, (int)t->dtype.bits,
                     (int)t->ndim);
        msam_py_dlpack_release(&in);
        return NULL;
    }
    const int64_t h = t->shape[0], w = t->shape[1];
    const int64_t rs = t->strides ? t->strides[0] : w * 3, ps = t->strides ? t->strides[1] : 3;
    if ((t->strides && t->strides[2] != 1) || ps < 3 || rs < w * ps) {
        PyErr_Format(msam_py_InputError, "image on a GPU must have its channels 1 byte apart, pixels >= 3 bytes apart "
                     "and rows apart by at least a row (got strides %lld, %lld, %lld): make it contiguous",
                     (long long)rs, (long long)ps, (long long)(t->strides ? t->strides[2] : 1));
        msam_py_dlpack_release(&in);
        return NULL;
    }
    if (check_image_limits(h, w, "image") < 0) {
        msam_py_dlpack_release(&in);
        return NULL;
    }
    int nh, nw;
    msam_py_preprocess_shape((int)h, (int)w, &nh, &nw);
    const uint8_t *src = (const uint8_t *)t->data + t->byte_offset;
    msam_error err = {{0}};
    msam_status st;
    lock_take(p);
    Py_BEGIN_ALLOW_THREADS
    st = msam_session_set_image_rgb8(p->sess, src, (int)h, (int)w, (ptrdiff_t)rs, (ptrdiff_t)ps, bgr, nh, nw, NULL,
                                     NULL, &err);
    Py_END_ALLOW_THREADS
    image_set(p, (int)h, (int)w, nh, nw); /* a failed set leaves no image: its sizes go too */
    lock_give(p);
    msam_py_dlpack_release(&in); /* our stream's reads are ordered before anything the producer does later */
    if (st) return msam_py_raise(st, &err);
    Py_RETURN_NONE;
}

static PyObject *Predictor_set_image(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"image", "image_format", NULL};
    PyObject *image;
    const char *format = "RGB";
    PredictorObject *p = (PredictorObject *)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|s:set_image", kwlist, &image, &format) || !ready(p)) return NULL;
    if (strcmp(format, "RGB") != 0 && strcmp(format, "BGR") != 0)
        return PyErr_Format(msam_py_InputError, "image_format must be in ['RGB', 'BGR'], is %s.", format);
    if (p->model->device != MSAM_DEVICE_CPU) {
        int dev_type, dev_id;
        const int speaks = msam_py_dlpack_device(image, "image", &dev_type, &dev_id);
        if (speaks < 0) return NULL;
        if (speaks && dev_type == MSAM_DL_CUDA) return set_image_on_device(p, image, strcmp(format, "BGR") == 0);
    }
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROM_O(image);
    if (!arr) {
        PyErr_Clear();
        return PyErr_Format(msam_py_InputError, "image must be an HxWx3 uint8 array, got %s", Py_TYPE(image)->tp_name);
    }
    if (PyArray_TYPE(arr) != NPY_UINT8 || PyArray_NDIM(arr) != 3 || PyArray_DIM(arr, 2) != 3 ||
        PyArray_DIM(arr, 0) < 1 || PyArray_DIM(arr, 1) < 1) {
        PyObject *shape = PyObject_GetAttrString((PyObject *)arr, "shape");
        PyErr_Format(msam_py_InputError, "image must be an HxWx3 uint8 array with H, W >= 1, got shape %R dtype %R",
                     shape, (PyObject *)PyArray_DESCR(arr));
        Py_XDECREF(shape);
        Py_DECREF(arr);
        return NULL;
    }
    if (check_image_limits(PyArray_DIM(arr, 0), PyArray_DIM(arr, 1), "image") < 0) { /* before any copy */
        Py_DECREF(arr);
        return NULL;
    }
    /* the resampler takes any row/pixel steps (negative too) but channels 1 byte apart */
    if (PyArray_STRIDE(arr, 2) != 1) {
        PyArrayObject *c = (PyArrayObject *)PyArray_NewCopy(arr, NPY_CORDER);
        Py_DECREF(arr);
        if (!(arr = c)) return NULL;
    }
    int h = (int)PyArray_DIM(arr, 0), w = (int)PyArray_DIM(arr, 1), nh, nw;
    msam_py_preprocess_shape(h, w, &nh, &nw);
    msam_error err = {{0}};
    msam_status st;
    lock_take(p);
    Py_BEGIN_ALLOW_THREADS
    st = msam_resize_rgb8(PyArray_DATA(arr), h, w, PyArray_STRIDE(arr, 0), PyArray_STRIDE(arr, 1),
                          strcmp(format, "BGR") == 0, p->resized, nh, nw, &err);
    if (!st) st = msam_session_set_image_u8(p->sess, p->resized, nh, nw, NULL, NULL, &err);
    Py_END_ALLOW_THREADS
    image_set(p, h, w, nh, nw); /* a failed set leaves no image: its sizes go too */
    lock_give(p);
    Py_DECREF(arr);
    if (st) return msam_py_raise(st, &err);
    Py_RETURN_NONE;
}

/* A float array-like (numeric, not bool/complex) as float32 without changing its layout. */
static PyArrayObject *float_array(PyObject *obj, const char *name, const char *expect) {
    PyArrayObject *raw = (PyArrayObject *)PyArray_FROM_O(obj);
    if (!raw) {
        PyErr_Clear();
        PyErr_Format(msam_py_InputError, "%s must be %s, got %s", name, expect, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    if (!(PyArray_ISINTEGER(raw) || PyArray_ISFLOAT(raw)) || PyArray_ISCOMPLEX(raw)) {
        PyErr_Format(msam_py_InputError, "%s must be %s with real numbers, got dtype %R", name, expect,
                     (PyObject *)PyArray_DESCR(raw));
        Py_DECREF(raw);
        return NULL;
    }
    PyArrayObject *f = (PyArrayObject *)PyArray_FROMANY((PyObject *)raw, NPY_FLOAT32, 0, 0, NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    Py_DECREF(raw);
    return f;
}

typedef struct {
    PyObject *dict;
    int failed;
} stage_sink;

/* Called by the core with the GIL released: take it to store a copy of the stage output. */
static void collect_stage(void *user, const char *name, const float *data, int h, int w, int c) {
    stage_sink *sink = user;
    PyGILState_STATE g = PyGILState_Ensure();
    npy_intp dims[3] = {h, w, c};
    PyObject *arr = PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    if (arr) {
        memcpy(PyArray_DATA((PyArrayObject *)arr), data, sizeof(float) * (size_t)h * w * c);
        if (PyDict_SetItemString(sink->dict, name, arr) < 0) sink->failed = 1;
        Py_DECREF(arr);
    } else {
        sink->failed = 1;
    }
    if (sink->failed) PyErr_Clear();
    PyGILState_Release(g);
}

static PyObject *run_torch_image(PredictorObject *p, PyObject *image, int oh, int ow, int with_stages) {
    PyArrayObject *arr = float_array(image, "transformed_image", "a 1x3xHxW float array");
    if (!arr) return NULL;
    if (PyArray_NDIM(arr) != 4 || PyArray_DIM(arr, 0) != 1 || PyArray_DIM(arr, 1) != 3 ||
        (PyArray_DIM(arr, 2) != IMG && PyArray_DIM(arr, 3) != IMG) || PyArray_DIM(arr, 2) > IMG ||
        PyArray_DIM(arr, 3) > IMG || PyArray_DIM(arr, 2) < 1 || PyArray_DIM(arr, 3) < 1) {
        PyObject *shape = PyObject_GetAttrString((PyObject *)arr, "shape");
        PyErr_Format(msam_py_InputError,
                     "set_torch_image input must be BCHW with long side %d: transformed_image must be 1x3xHxW "
                     "with max(H, W) == %d, got shape %R",
                     IMG, IMG, shape);
        Py_XDECREF(shape);
        Py_DECREF(arr);
        return NULL;
    }
    int h = (int)PyArray_DIM(arr, 2), w = (int)PyArray_DIM(arr, 3);
    const ptrdiff_t es = sizeof(float);
    stage_sink sink = {NULL, 0};
    if (with_stages && !(sink.dict = PyDict_New())) {
        Py_DECREF(arr);
        return NULL;
    }
    msam_error err = {{0}};
    msam_status st;
    lock_take(p);
    Py_BEGIN_ALLOW_THREADS
    st = msam_session_set_image_f32(p->sess, PyArray_DATA(arr), h, w, PyArray_STRIDE(arr, 1) / es,
                                    PyArray_STRIDE(arr, 2) / es, PyArray_STRIDE(arr, 3) / es,
                                    with_stages ? collect_stage : NULL, &sink, &err);
    Py_END_ALLOW_THREADS
    image_set(p, oh, ow, h, w);
    lock_give(p);
    Py_DECREF(arr);
    if (st) {
        Py_XDECREF(sink.dict);
        return msam_py_raise(st, &err);
    }
    if (sink.failed) {
        Py_XDECREF(sink.dict);
        return PyErr_NoMemory();
    }
    if (with_stages) return sink.dict;
    Py_RETURN_NONE;
}

static PyObject *Predictor_set_torch_image(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"transformed_image", "original_image_size", NULL};
    PyObject *image, *size;
    PredictorObject *p = (PredictorObject *)self;
    int oh, ow;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:set_torch_image", kwlist, &image, &size) || !ready(p)) return NULL;
    if (parse_size(size, "original_image_size", &oh, &ow, MSAM_MAX_IMAGE_SIDE) < 0 ||
        check_image_limits(oh, ow, "original_image_size") < 0)
        return NULL;
    return run_torch_image(p, image, oh, ow, 0);
}

static PyObject *Predictor_encoder_stages(PyObject *self, PyObject *image) {
    PredictorObject *p = (PredictorObject *)self;
    if (!ready(p)) return NULL;
    return run_torch_image(p, image, IMG, IMG, 1);
}

static PyObject *Predictor_set_image_embedding(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"embedding", "original_size", "input_size", NULL};
    PyObject *emb, *osize, *isize = Py_None;
    PredictorObject *p = (PredictorObject *)self;
    int oh, ow, ih, iw;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:set_image_embedding", kwlist, &emb, &osize, &isize) || !ready(p))
        return NULL;
    if (parse_size(osize, "original_size", &oh, &ow, MSAM_MAX_IMAGE_SIDE) < 0 ||
        check_image_limits(oh, ow, "original_size") < 0)
        return NULL;
    if (isize == Py_None) msam_py_preprocess_shape(oh, ow, &ih, &iw);
    else if (parse_size(isize, "input_size", &ih, &iw, IMG) < 0) return NULL;
    else if (ih != IMG && iw != IMG)
        return PyErr_Format(msam_py_InputError, "input_size must have its long side equal to %d (the resized "
                            "image before padding, as set_image makes it), got (%d, %d)", IMG, ih, iw);
    PyArrayObject *arr = float_array(emb, "embedding", "a 1x256x64x64 float array");
    if (!arr) return NULL;
    int nd = PyArray_NDIM(arr), off = nd == 4 ? 1 : 0;
    if (!((nd == 4 && PyArray_DIM(arr, 0) == 1) || nd == 3) || PyArray_DIM(arr, off) != 256 ||
        PyArray_DIM(arr, off + 1) != 64 || PyArray_DIM(arr, off + 2) != 64) {
        PyObject *shape = PyObject_GetAttrString((PyObject *)arr, "shape");
        PyErr_Format(msam_py_InputError, "embedding must have shape (1, 256, 64, 64) or (256, 64, 64), got %R", shape);
        Py_XDECREF(shape);
        Py_DECREF(arr);
        return NULL;
    }
    const ptrdiff_t es = sizeof(float);
    msam_error err = {{0}};
    msam_status st;
    lock_take(p);
    Py_BEGIN_ALLOW_THREADS
    st = msam_session_set_embedding(p->sess, PyArray_DATA(arr), PyArray_STRIDE(arr, off) / es,
                                    PyArray_STRIDE(arr, off + 1) / es, PyArray_STRIDE(arr, off + 2) / es, &err);
    Py_END_ALLOW_THREADS
    if (!st || !msam_session_has_image(p->sess)) image_set(p, oh, ow, ih, iw);
    lock_give(p);
    Py_DECREF(arr);
    if (st) return msam_py_raise(st, &err);
    Py_RETURN_NONE;
}

static PyObject *not_set_error(const char *what) {
    PyErr_Format(PyExc_RuntimeError, "An image must be set with .set_image(...) %s.", what);
    return NULL;
}

/* Test instrumentation: tests preload an allocation counter (tests/alloc_probe.c) that exports
 * msam_alloc_probe_begin/end, and predict brackets its core call with them, so a test can show
 * that the core's predict allocates nothing. Absent (the usual case), nothing is called. */
typedef void (*probe_fn)(void);
static probe_fn probe_begin, probe_end;
static int probe_looked;

static void probe_lookup(void) {
    if (probe_looked) return;
    probe_looked = 1; /* under the GIL */
    probe_begin = (probe_fn)dlsym(RTLD_DEFAULT, "msam_alloc_probe_begin");
    probe_end = (probe_fn)dlsym(RTLD_DEFAULT, "msam_alloc_probe_end");
    if (!probe_begin || !probe_end) probe_begin = probe_end = NULL;
}

/* One output in the model's backend memory: an Array, or None when not wanted. */
static PyObject *new_output(PredictorObject *p, int want, int ndim, const npy_intp *dims, int typenum) {
    if (!want) Py_RETURN_NONE;
    return msam_py_array_new((PyObject *)p->model, p->model->model, ndim, dims, typenum);
}

/* What the caller gets for an output Array: NumPy where the model computes on the CPU or
 * as_numpy is set (a view of host memory, or a host copy of device memory), else the Array. */
static PyObject *hand_out(PyObject *arr, int as_numpy, msam_device device) {
    if (arr == Py_None || (!as_numpy && device != MSAM_DEVICE_CPU)) return arr;
    PyObject *np = msam_py_array_numpy(arr);
    Py_DECREF(arr);
    return np;
}

static PyObject *run_predict(PredictorObject *p, PyObject *coords, PyObject *labels, PyObject *boxes,
                             PyObject *mask, int multimask, int return_logits, int return_low_res, int single,
                             int return_masks, int as_numpy, const float *min_iou) {
    /* The prompt arguments are converted (Python code may run) with the lock free; then, under the
     * lock, they are scaled for the image set now and the outputs sized for it (no Python code
     * runs there), so a predict racing set_image uses one image throughout, the newer one. */
    prompt_args a;
    memset(&a, 0, sizeof a);
    msam_py_dl_import gpu_prompts[3];
    int on_gpu = 0; /* predict_torch's prompts on the model's GPU: encoded there, never read back */
    if (!single && p->model->device != MSAM_DEVICE_CPU &&
        (on_gpu = msam_py_device_prompts(coords, labels, boxes, mask, gpu_prompts, &a.p)) < 0)
        return NULL;
    if (!on_gpu && prompt_args_parse(&a, coords, labels, boxes, mask, single) < 0) {
        prompt_args_clear(&a);
        return NULL;
    }
    PyObject *masks = NULL, *iou = NULL, *low = NULL, *kept = NULL;
    msam_error err = {{0}};
    msam_status st = MSAM_OK;
    lock_take(p);
    const int oh = p->orig_h, ow = p->orig_w, ih = p->input_h, iw = p->input_w;
    if (!msam_session_has_image(p->sess)) {
        not_set_error("before mask prediction");
    } else if (on_gpu || prompt_args_scale(&a, oh, ow) == 0) {
        const int B = a.p.batch, C = msam_num_masks(multimask);
        npy_intp mdims[4] = {B, C, oh, ow}, idims[2] = {B, C}, ldims[4] = {B, C, MSAM_LOW_RES, MSAM_LOW_RES};
        const int off = single ? 1 : 0; /* predict() drops the batch axis */
        masks = new_output(p, return_masks, 4 - off, mdims + off, return_logits ? NPY_FLOAT32 : NPY_BOOL);
        iou = masks ? new_output(p, 1, 2 - off, idims + off, NPY_FLOAT32) : NULL;
        npy_intp packed_dims[3] = {(npy_intp)B * C, MSAM_LOW_RES, MSAM_LOW_RES}; /* the filter's, K <= B*C */
        low = !iou ? NULL : min_iou ? new_output(p, 1, 3, packed_dims, NPY_FLOAT32)
                                    : new_output(p, return_low_res, 4 - off, ldims + off, NPY_FLOAT32);
        if (low && min_iou && !(kept = PyArray_ZEROS(2 - off, idims + off, NPY_BOOL, 0))) Py_CLEAR(low);
        if (low) {
            msam_outputs o = {multimask, return_logits, oh, ow, ih, iw,
                              return_masks ? msam_py_array_data(masks) : NULL, msam_py_array_data(iou),
                              return_low_res ? msam_py_array_data(low) : NULL,
                              kept ? PyArray_DATA((PyArrayObject *)kept) : NULL, min_iou ? *min_iou : 0.0f};
            probe_lookup();
            Py_BEGIN_ALLOW_THREADS
            if (probe_begin) probe_begin();
            st = msam_predict(p->sess, &a.p, &o, &err);
            if (probe_end) probe_end();
            Py_END_ALLOW_THREADS
        }
    }
    lock_give(p);
    prompt_args_clear(&a);
    if (on_gpu) msam_py_device_prompts_release(gpu_prompts); /* after predict's reads were enqueued: ordered */
    if (!low || st) {
        Py_XDECREF(masks), Py_XDECREF(iou), Py_XDECREF(low), Py_XDECREF(kept);
        return st ? msam_py_raise(st, &err) : NULL;
    }
    const msam_device dev = p->model->device;
    if (!(masks = hand_out(masks, as_numpy, dev)) || !(iou = hand_out(iou, as_numpy, dev)) ||
        !(low = hand_out(low, as_numpy, dev))) {
        Py_XDECREF(masks), Py_XDECREF(iou), Py_XDECREF(low), Py_XDECREF(kept);
        return NULL;
    }
    if (!kept) return Py_BuildValue("(NNN)", masks, iou, low);
    /* the filtered masks are packed at the front of low: hand out only those */
    Py_ssize_t made = 0;
    const npy_bool *k = PyArray_DATA((PyArrayObject *)kept);
    for (npy_intp i = 0; i < PyArray_SIZE((PyArrayObject *)kept); i++) made += k[i] != 0;
    PyObject *packed = PySequence_GetSlice(low, 0, made);
    Py_DECREF(low);
    if (!packed) {
        Py_XDECREF(masks), Py_DECREF(iou), Py_DECREF(kept);
        return NULL;
    }
    Py_DECREF(masks); /* None: the filter makes no masks */
    return Py_BuildValue("(NNN)", iou, packed, kept);
}

static PyObject *Predictor_predict(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"point_coords", "point_labels", "box", "mask_input", "multimask_output",
                             "return_logits", "as_numpy", "return_low_res", NULL};
    PyObject *coords = Py_None, *labels = Py_None, *box = Py_None, *mask = Py_None;
    int multimask = 1, logits = 0, as_numpy = 0, low_res = 1;
    PredictorObject *p = (PredictorObject *)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OOOOpppp:predict", kwlist, &coords, &labels, &box,
                                     &mask, &multimask, &logits, &as_numpy, &low_res) || !ready(p))
        return NULL;
    return run_predict(p, coords, labels, box, mask, multimask, logits, low_res, 1, 1, as_numpy, NULL);
}

static PyObject *Predictor_predict_torch(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"point_coords", "point_labels", "boxes", "mask_input", "multimask_output",
                             "return_logits", "as_numpy", "return_low_res", "return_masks", NULL};
    PyObject *coords, *labels, *boxes = Py_None, *mask = Py_None;
    int multimask = 1, logits = 0, as_numpy = 0, low_res = 1, masks = 1;
    PredictorObject *p = (PredictorObject *)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOpppp$p:predict_torch", kwlist, &coords, &labels,
                                     &boxes, &mask, &multimask, &logits, &as_numpy, &low_res, &masks) || !ready(p))
        return NULL;
    return run_predict(p, coords, labels, boxes, mask, multimask, logits, low_res, 0, masks, as_numpy, NULL);
}

static PyObject *Predictor_predict_filtered(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"point_coords", "point_labels", "min_iou", "multimask_output", NULL};
    PyObject *coords, *labels;
    float min_iou;
    int multimask = 1;
    PredictorObject *p = (PredictorObject *)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOf|p:_predict_filtered", kwlist, &coords, &labels, &min_iou,
                                     &multimask) || !ready(p))
        return NULL;
    if (!isfinite(min_iou)) {
        PyErr_SetString(msam_py_InputError, "min_iou must be a finite number");
        return NULL;
    }
    return run_predict(p, coords, labels, Py_None, Py_None, multimask, 1, 1, 0, 0, 1, &min_iou);
}

static PyObject *Predictor_encode_prompts(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"points", "labels", "boxes", "masks", NULL};
    PyObject *coords = Py_None, *labels = Py_None, *boxes = Py_None, *mask = Py_None;
    PredictorObject *p = (PredictorObject *)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OOOO:_encode_prompts", kwlist, &coords, &labels,
                                     &boxes, &mask) || !ready(p))
        return NULL;
    prompt_args a;
    if (prompt_args_parse(&a, coords, labels, boxes, mask, 0) < 0) {
        prompt_args_clear(&a);
        return NULL;
    }
    int T = msam_sparse_token_count(&a.p), DB = a.p.mask_input ? a.p.mask_batch : 1;
    npy_intp sd[3] = {a.p.batch, T, 256}, dd[4] = {DB, 64, 64, 256};
    PyObject *sparse = PyArray_SimpleNew(3, sd, NPY_FLOAT32), *dense = PyArray_SimpleNew(4, dd, NPY_FLOAT32);
    if (!sparse || !dense) {
        Py_XDECREF(sparse), Py_XDECREF(dense);
        prompt_args_clear(&a);
        return NULL;
    }
    msam_error err = {{0}};
    msam_status st;
    lock_take(p);
    Py_BEGIN_ALLOW_THREADS
    st = msam_encode_prompts(p->sess, &a.p, PyArray_DATA((PyArrayObject *)sparse), PyArray_DATA((PyArrayObject *)dense), &err);
    Py_END_ALLOW_THREADS
    lock_give(p);
    prompt_args_clear(&a);
    if (st) {
        Py_DECREF(sparse), Py_DECREF(dense);
        return msam_py_raise(st, &err);
    }
    /* dense is computed channels-last; hand it out as B x 256 x 64 x 64 (a transposed view) */
    PyArray_Dims perm;
    npy_intp order[4] = {0, 3, 1, 2};
    perm.ptr = order, perm.len = 4;
    PyObject *dense_nchw = PyArray_Transpose((PyArrayObject *)dense, &perm);
    Py_DECREF(dense);
    if (!dense_nchw) {
        Py_DECREF(sparse);
        return NULL;
    }
    return Py_BuildValue("(NN)", sparse, dense_nchw);
}

static PyObject *Predictor_get_image_embedding(PyObject *self, PyObject *unused) {
    PredictorObject *p = (PredictorObject *)self;
    if (!ready(p)) return NULL;
    PyObject *out = NULL;
    lock_take(p);
    if (!msam_session_has_image(p->sess)) {
        not_set_error("to generate an embedding");
    } else if (p->features) {
        out = p->features;
        Py_INCREF(out);
    } else {
        npy_intp dims[4] = {1, MSAM_EMBED_DIM, MSAM_EMBED_SIDE, MSAM_EMBED_SIDE};
        PyObject *arr = PyArray_SimpleNew(4, dims, NPY_FLOAT32);
        msam_error err = {{0}};
        msam_status st = arr ? msam_session_get_embedding(p->sess, PyArray_DATA((PyArrayObject *)arr), &err) : MSAM_OK;
        if (st) {
            Py_CLEAR(arr);
            msam_py_raise(st, &err);
        }
        if (arr) {
            p->features = arr;
            Py_INCREF(arr);
            out = arr;
        }
    }
    lock_give(p);
    return out;
}

static PyObject *Predictor_transfer_counts(PyObject *self, PyObject *unused) {
    PredictorObject *p = (PredictorObject *)self;
    if (!ready(p)) return NULL;
    msam_counters c;
    lock_take(p);
    msam_session_counters(p->sess, &c);
    lock_give(p);
    return Py_BuildValue("{sKsKsKsKsK}", "h2d", (unsigned long long)c.h2d, "d2h", (unsigned long long)c.d2h,
                         "syncs", (unsigned long long)c.syncs, "allocs", (unsigned long long)c.allocs, "replays",
                         (unsigned long long)c.replays);
}

static PyObject *Predictor_op_trace(PyObject *self, PyObject *unused) {
    PredictorObject *p = (PredictorObject *)self;
    if (!ready(p)) return NULL;
    uint64_t hash, count;
    lock_take(p);
    msam_test_session_trace(p->sess, &hash, &count);
    lock_give(p);
    return Py_BuildValue("(KK)", (unsigned long long)hash, (unsigned long long)count);
}

static PyObject *Predictor_reset_image(PyObject *self, PyObject *unused) {
    PredictorObject *p = (PredictorObject *)self;
    if (!ready(p)) return NULL;
    lock_take(p);
    msam_session_reset(p->sess);
    image_set(p, 0, 0, 0, 0);
    lock_give(p);
    Py_RETURN_NONE;
}

static PyObject *get_is_image_set(PyObject *self, void *c) {
    PredictorObject *p = (PredictorObject *)self;
    if (!p->sess) Py_RETURN_FALSE;
    lock_take(p);
    const int has = msam_session_has_image(p->sess);
    lock_give(p);
    return PyBool_FromLong(has);
}

/* (H, W) of the current image's original (which == 0) or resized (1) size, or None. */
static PyObject *image_size(PredictorObject *p, int which) {
    if (!p->sess) Py_RETURN_NONE;
    lock_take(p);
    const int has = msam_session_has_image(p->sess);
    const int h = which ? p->input_h : p->orig_h, w = which ? p->input_w : p->orig_w;
    lock_give(p);
    if (!has) Py_RETURN_NONE;
    return Py_BuildValue("(ii)", h, w);
}

static PyObject *get_original_size(PyObject *self, void *c) { return image_size((PredictorObject *)self, 0); }

static PyObject *get_input_size(PyObject *self, void *c) { return image_size((PredictorObject *)self, 1); }

static PyObject *get_features(PyObject *self, void *c) {
    PredictorObject *p = (PredictorObject *)self;
    if (!p->sess) Py_RETURN_NONE;
    PyObject *emb = Predictor_get_image_embedding(self, NULL);
    if (!emb && PyErr_ExceptionMatches(PyExc_RuntimeError)) { /* no image: None, as the original's */
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return emb;
}

static PyObject *get_device(PyObject *self, void *c) {
    PredictorObject *p = (PredictorObject *)self;
    return PyUnicode_FromString(p->model && p->model->device == MSAM_DEVICE_CUDA ? "cuda" : "cpu");
}

static PyMethodDef Predictor_methods[] = {
    {"set_image", (PyCFunction)(void (*)(void))Predictor_set_image, METH_VARARGS | METH_KEYWORDS,
     "set_image(image, image_format='RGB'): resize (Pillow-exact), normalise and encode an HxWx3 uint8 image."},
    {"set_torch_image", (PyCFunction)(void (*)(void))Predictor_set_torch_image, METH_VARARGS | METH_KEYWORDS,
     "set_torch_image(transformed_image, original_image_size): encode a 1x3xHxW float image, long side 1024."},
    {"set_image_embedding", (PyCFunction)(void (*)(void))Predictor_set_image_embedding, METH_VARARGS | METH_KEYWORDS,
     "set_image_embedding(embedding, original_size, input_size=None): use a stored 1x256x64x64 embedding."},
    {"predict", (PyCFunction)(void (*)(void))Predictor_predict, METH_VARARGS | METH_KEYWORDS,
     "predict(point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True, "
     "return_logits=False, as_numpy=False, return_low_res=True) -> (masks, iou_predictions, low_res_logits)"},
    {"predict_torch", (PyCFunction)(void (*)(void))Predictor_predict_torch, METH_VARARGS | METH_KEYWORDS,
     "predict_torch(point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True, "
     "return_logits=False, as_numpy=False, return_low_res=True, *, return_masks=True): batched prompts in the\n"
     "1024 frame; return_masks=False skips the post-processing (masks None: IoU and low-res logits only)."},
    {"_predict_filtered", (PyCFunction)(void (*)(void))Predictor_predict_filtered, METH_VARARGS | METH_KEYWORDS,
     "_predict_filtered(point_coords, point_labels, min_iou, multimask_output=True) -> (iou BxC, low Kx256x256,\n"
     "kept BxC bool): segment everything's decode: only the K masks whose IoU is above min_iou (float32) are\n"
     "upscaled, packed in order in low; kept says which (on a non-host backend every mask is kept)."},
    {"transfer_counts", Predictor_transfer_counts, METH_NOARGS,
     "transfer_counts() -> {'h2d', 'd2h', 'syncs', 'allocs', 'replays'}: the core's cumulative counts of copies\n"
     "into and out of op memory, host synchronisations, op-memory allocations and replayed recordings (CUDA\n"
     "graphs) for this predictor (diff two calls)."},
    {"_encode_prompts", (PyCFunction)(void (*)(void))Predictor_encode_prompts, METH_VARARGS | METH_KEYWORDS,
     "_encode_prompts(points, labels, boxes, masks) -> (sparse BxTx256, dense Bx256x64x64): the prompt encoder alone."},
    {"_encoder_stages", Predictor_encoder_stages, METH_O,
     "_encoder_stages(x 1x3x1024x1024 raw pixels) -> {stage: HxWxC array}: per-stage encoder outputs."},
    {"get_image_embedding", Predictor_get_image_embedding, METH_NOARGS, "The 1x256x64x64 image embedding."},
    {"reset_image", Predictor_reset_image, METH_NOARGS, "Forget the current image."},
    {"_op_trace", Predictor_op_trace, METH_NOARGS,
     "_op_trace() -> (hash, count): the session's op trace, an FNV-1a hash of the names of the ops run so far\n"
     "and their count (test hook: equal sequences add equal counts)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Predictor_getset[] = {
    {"is_image_set", get_is_image_set, NULL, "Whether an image (or embedding) is set.", NULL},
    {"original_size", get_original_size, NULL, "(H, W) of the image before resizing, or None.", NULL},
    {"input_size", get_input_size, NULL, "(H, W) after resizing (before padding), or None.", NULL},
    {"features", get_features, NULL, "The image embedding (1x256x64x64) or None.", NULL},
    {"device", get_device, NULL, "'cpu' or 'cuda'.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot Predictor_slots[] = {
    {Py_tp_dealloc, Predictor_dealloc},
    {Py_tp_traverse, Predictor_traverse},
    {Py_tp_clear, Predictor_clear},
    {Py_tp_init, Predictor_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_methods, Predictor_methods},
    {Py_tp_getset, Predictor_getset},
    {Py_tp_doc, "Predictor(model): one image at a time, many prompts (the C core of SamPredictor)."},
    {0, NULL}};

static PyType_Spec Predictor_spec = {"mobile_sam_c._C.Predictor", sizeof(PredictorObject), 0,
                                     Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
                                     Predictor_slots};

int msam_py_add_predictor(PyObject *m) {
    PyObject *tp = PyType_FromModuleAndSpec(m, &Predictor_spec, NULL);
    if (!tp) return -1;
    if (PyModule_AddObject(m, "Predictor", tp) < 0) {
        Py_DECREF(tp);
        return -1;
    }
    return 0;
}
