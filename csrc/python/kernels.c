/* kernels.c - test hooks exposing single ops to Python (_gemm, _matmul, _softmax, _transpose,
 * _attention_probs, _upscale_masks, _resize_bilinear_*), run through a backend's op table (the one
 * the model uses) with inputs staged in its memory, or through the plain references (ref=True). */
#include "binding.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "core/msam_test.h"

static PyObject *input_error(void) { return msam_py_InputError ? msam_py_InputError : PyExc_ValueError; }

/* A borrowed reference to obj as a float32 ndarray of ndim dimensions, native byte order, aligned
 * and C-contiguous, else NULL with an error naming the argument. */
static PyArrayObject *as_f32(PyObject *obj, const char *name, int ndim) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(input_error(), "%s must be a numpy.ndarray", name);
        return NULL;
    }
    PyArrayObject *arr = (PyArrayObject *)obj;
    if (PyArray_TYPE(arr) != NPY_FLOAT32 || !PyArray_ISNOTSWAPPED(arr)) {
        PyErr_Format(input_error(), "%s must have dtype float32", name);
        return NULL;
    }
    if (PyArray_NDIM(arr) != ndim) {
        PyErr_Format(input_error(), "%s must have %d dimension%s, got %d", name, ndim, ndim == 1 ? "" : "s",
                     PyArray_NDIM(arr));
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(arr) || !PyArray_ISALIGNED(arr)) {
        PyErr_Format(input_error(), "%s must be C-contiguous and aligned", name);
        return NULL;
    }
    for (int d = 0; d < ndim; d++) {
        if (PyArray_DIM(arr, d) > INT_MAX) {
            PyErr_Format(input_error(), "%s is too large", name);
            return NULL;
        }
    }
    return arr;
}

static const float *f32(PyArrayObject *a) { return a ? (const float *)PyArray_DATA(a) : NULL; }

/* ---- running one op through a backend's table ----------------------------------------------- */

/* A context of the CPU backend's table and the op memory made for one call (released by rb_close). */
#define RB_MAX 24
typedef struct {
    const msam_ops *ops;
    msam_ctx *ctx;
    void *mem[RB_MAX];
    msam_linear *lin[4];
    int n_mem, n_lin, failed;
} run_backend;

/* Open a run for the output array out (released, with MemoryError, when the run cannot start). */
static int rb_open(run_backend *r, PyArrayObject *out) {
    memset(r, 0, sizeof *r);
    r->ops = msam_test_ops(MSAM_DEVICE_CPU);
    if (r->ops && (r->ctx = r->ops->ctx_create())) return 0;
    Py_DECREF(out);
    PyErr_NoMemory();
    return -1;
}

/* Op memory of bytes holding a copy of host (or uninitialised with host NULL); NULL from NULL. */
static void *rb_in(run_backend *r, const void *host, size_t bytes, int wanted) {
    if (!wanted || r->failed) return NULL;
    void *p = r->n_mem < RB_MAX ? r->ops->alloc(r->ctx, bytes ? bytes : 1) : NULL;
    if (!p) {
        r->failed = 1;
        return NULL;
    }
    r->mem[r->n_mem++] = p;
    if (host && bytes) r->ops->copy_in(r->ctx, p, host, bytes);
    return p;
}

static msam_linear *rb_linear(run_backend *r, const float *w, const float *b, int n, int k) {
    if (r->failed) return NULL;
    msam_linear *l = r->ops->linear_create(r->ctx, w, b, n, k);
    if (!l) r->failed = 1;
    else r->lin[r->n_lin++] = l;
    return l;
}

static void rb_close(run_backend *r) {
    if (!r->ctx) return;
    r->ops->sync(r->ctx);
    for (int i = 0; i < r->n_mem; i++) r->ops->release(r->ctx, r->mem[i]);
    for (int i = 0; i < r->n_lin; i++) r->ops->linear_free(r->ctx, r->lin[i]);
    r->ops->ctx_free(r->ctx);
    r->ctx = NULL;
}

/* Close the run and hand out out, or MemoryError if staging failed (out is released). */
static PyObject *rb_finish(run_backend *r, PyArrayObject *out) {
    const int failed = r->failed;
    rb_close(r);
    if (failed) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    return (PyObject *)out;
}

/* ---- hooks --------------------------------------------------------------------------------- */

static PyObject *gemm_common(PyObject *args, PyObject *kwargs, int use_ref) {
    static char *kwlist[] = {"a", "w", "bias", "act", "residual", NULL};
    PyObject *a_obj, *w_obj, *bias_obj = Py_None, *res_obj = Py_None;
    int act = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OiO", kwlist, &a_obj, &w_obj, &bias_obj, &act,
                                     &res_obj))
        return NULL;
    PyArrayObject *a = as_f32(a_obj, "a", 2);
    if (!a) return NULL;
    PyArrayObject *w = as_f32(w_obj, "w", 2);
    if (!w) return NULL;
    const int M = (int)PyArray_DIM(a, 0), K = (int)PyArray_DIM(a, 1), N = (int)PyArray_DIM(w, 0);
    if ((int)PyArray_DIM(w, 1) != K) {
        PyErr_Format(input_error(), "w must have shape (N, %d) to match a, got (%d, %d)", K, N,
                     (int)PyArray_DIM(w, 1));
        return NULL;
    }
    PyArrayObject *b = NULL, *r = NULL;
    if (bias_obj != Py_None) {
        if (!(b = as_f32(bias_obj, "bias", 1))) return NULL;
        if ((int)PyArray_DIM(b, 0) != N) {
            PyErr_Format(input_error(), "bias must have shape (%d,), got (%d,)", N, (int)PyArray_DIM(b, 0));
            return NULL;
        }
    }
    if (res_obj != Py_None) {
        if (!(r = as_f32(res_obj, "residual", 2))) return NULL;
        if ((int)PyArray_DIM(r, 0) != M || (int)PyArray_DIM(r, 1) != N) {
            PyErr_Format(input_error(), "residual must have shape (%d, %d), got (%d, %d)", M, N,
                         (int)PyArray_DIM(r, 0), (int)PyArray_DIM(r, 1));
            return NULL;
        }
    }
    if (act != MSAM_ACT_NONE && act != MSAM_ACT_GELU && act != MSAM_ACT_RELU) {
        PyErr_Format(input_error(), "act must be 0 (none), 1 (gelu) or 2 (relu), got %d", act);
        return NULL;
    }
    npy_intp dims[2] = {M, N};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) return NULL;
    float *C = (float *)PyArray_DATA(out);
    const size_t cb = sizeof(float) * (size_t)M * N;
    if (use_ref || M == 0 || N == 0 || K == 0) { /* empty products: the reference's definition */
        Py_BEGIN_ALLOW_THREADS
        msam_ref_gemm(M, N, K, f32(a), K, f32(w), f32(b), (msam_act)act, f32(r), N, C, N);
        Py_END_ALLOW_THREADS
        return (PyObject *)out;
    }
    run_backend rb;
    if (rb_open(&rb, out) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    float *x = rb_in(&rb, f32(a), sizeof(float) * (size_t)M * K, 1);
    float *y = rb_in(&rb, f32(r), cb, 1); /* the residual is read from y itself */
    msam_linear *lin = rb_linear(&rb, f32(w), f32(b), N, K);
    if (!rb.failed) {
        rb.ops->linear(rb.ctx, y, N, x, K, M, lin, (msam_act)act, r ? y : NULL, N);
        rb.ops->copy_out(rb.ctx, C, y, cb);
    }
    Py_END_ALLOW_THREADS
    return rb_finish(&rb, out);
}

/* _matmul: the per-call-operand product (ops->matmul) with W as [n][k] or, transposed, [k][n]. */
static PyObject *py_matmul(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"a", "w", "w_is_kn", "bias", "residual", "ref", NULL};
    PyObject *a_obj, *w_obj, *bias_obj = Py_None, *res_obj = Py_None;
    int kn = 0, ref = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|pOOp", kwlist, &a_obj, &w_obj, &kn, &bias_obj, &res_obj, &ref))
        return NULL;
    PyArrayObject *a = as_f32(a_obj, "a", 2), *w = a ? as_f32(w_obj, "w", 2) : NULL;
    if (!w) return NULL;
    const int M = (int)PyArray_DIM(a, 0), K = (int)PyArray_DIM(a, 1);
    const int N = (int)PyArray_DIM(w, kn ? 1 : 0);
    if ((int)PyArray_DIM(w, kn ? 0 : 1) != K) {
        PyErr_Format(input_error(), "w must have %d %s to match a", K, kn ? "rows" : "columns");
        return NULL;
    }
    PyArrayObject *b = NULL, *r = NULL;
    if (bias_obj != Py_None) {
        if (!(b = as_f32(bias_obj, "bias", 1))) return NULL;
        if ((int)PyArray_DIM(b, 0) != N) return PyErr_Format(input_error(), "bias must have shape (%d,)", N);
    }
    if (res_obj != Py_None) {
        if (!(r = as_f32(res_obj, "residual", 2))) return NULL;
        if ((int)PyArray_DIM(r, 0) != M || (int)PyArray_DIM(r, 1) != N)
            return PyErr_Format(input_error(), "residual must have shape (%d, %d)", M, N);
    }
    npy_intp dims[2] = {M, N};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) return NULL;
    float *C = (float *)PyArray_DATA(out);
    const ptrdiff_t s_n = kn ? 1 : K, s_k = kn ? N : 1;
    if (ref || M == 0 || N == 0) {
        Py_BEGIN_ALLOW_THREADS
        msam_ref_matmul(C, N, f32(a), K, M, f32(w), s_n, s_k, N, K, f32(b), f32(r), N);
        Py_END_ALLOW_THREADS
        return (PyObject *)out;
    }
    run_backend rb;
    if (rb_open(&rb, out) < 0) return NULL;
    const size_t cb = sizeof(float) * (size_t)M * N;
    Py_BEGIN_ALLOW_THREADS
    float *x = rb_in(&rb, f32(a), sizeof(float) * (size_t)M * K, 1);
    float *wd = rb_in(&rb, f32(w), sizeof(float) * (size_t)N * K, 1);
    float *bd = rb_in(&rb, f32(b), sizeof(float) * (size_t)N, b != NULL);
    float *y = rb_in(&rb, f32(r), cb, 1);
    void *scratch = rb_in(&rb, NULL, rb.ops ? rb.ops->matmul_scratch_bytes(N, K) : 0, 1);
    if (!rb.failed) {
        rb.ops->matmul(rb.ctx, y, N, x, K, M, wd, s_n, s_k, N, K, bd, r ? y : NULL, N, scratch);
        rb.ops->copy_out(rb.ctx, C, y, cb);
    }
    Py_END_ALLOW_THREADS
    return rb_finish(&rb, out);
}

/* Run one in-place or single-output op on staged memory: in (in_bytes) -> out (out_bytes). */
typedef void (*one_op_fn)(run_backend *rb, float *dev_in, float *dev_out, void *arg);

static PyObject *run_one(PyArrayObject *out, const void *in, size_t in_bytes, size_t out_bytes, int in_place,
                         one_op_fn fn, void *arg) {
    run_backend rb;
    if (rb_open(&rb, out) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    float *x = rb_in(&rb, in, in_bytes, 1);
    float *y = in_place ? x : rb_in(&rb, NULL, out_bytes, 1);
    if (!rb.failed) {
        fn(&rb, x, y, arg);
        rb.ops->copy_out(rb.ctx, PyArray_DATA(out), y, out_bytes);
    }
    Py_END_ALLOW_THREADS
    return rb_finish(&rb, out);
}

typedef struct {
    int count, stride, length;
    float scale;
} softmax_args;

static void softmax_op(run_backend *rb, float *x, float *y, void *arg) {
    const softmax_args *s = arg;
    rb->ops->softmax(rb->ctx, y, s->count, s->stride, s->length, s->scale);
}

/* _softmax: ops->softmax (or its reference) on a copy of x (count x stride), over the first
 * length floats of each row. */
static PyObject *py_softmax(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"x", "length", "scale", "ref", NULL};
    PyObject *x_obj;
    int length = -1, ref = 0;
    float scale = 1.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|ifp", kwlist, &x_obj, &length, &scale, &ref)) return NULL;
    PyArrayObject *x = as_f32(x_obj, "x", 2);
    if (!x) return NULL;
    const int count = (int)PyArray_DIM(x, 0), stride = (int)PyArray_DIM(x, 1);
    if (length < 0) length = stride;
    if (length < 1 || length > stride)
        return PyErr_Format(input_error(), "length must be in 1..%d, got %d", stride, length);
    PyArrayObject *out = (PyArrayObject *)PyArray_NewCopy(x, NPY_CORDER);
    if (!out) return NULL;
    if (ref) {
        float *y = (float *)PyArray_DATA(out);
        Py_BEGIN_ALLOW_THREADS
        msam_ref_softmax(y, count, stride, length, scale);
        Py_END_ALLOW_THREADS
        return (PyObject *)out;
    }
    softmax_args sa = {count, stride, length, scale};
    const size_t bytes = sizeof(float) * (size_t)count * stride;
    return run_one(out, PyArray_DATA(x), bytes, bytes, 1, softmax_op, &sa);
}

typedef struct {
    int rows, cols;
} transpose_args;

static void transpose_op(run_backend *rb, float *x, float *y, void *arg) {
    const transpose_args *t = arg;
    if (t->rows > 0 && t->cols > 0) rb->ops->transpose(rb->ctx, y, t->rows, x, t->cols, t->rows, t->cols);
}

static PyObject *py_transpose(PyObject *self, PyObject *arg) {
    (void)self;
    PyArrayObject *x = as_f32(arg, "x", 2);
    if (!x) return NULL;
    transpose_args t = {(int)PyArray_DIM(x, 0), (int)PyArray_DIM(x, 1)};
    npy_intp dims[2] = {t.cols, t.rows};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) return NULL;
    const size_t bytes = sizeof(float) * (size_t)t.rows * t.cols;
    return run_one(out, PyArray_DATA(x), bytes, bytes, 0, transpose_op, &t);
}

static PyObject *py_attention_probs(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"q", "k", "heads", "ref", NULL};
    PyObject *q_obj, *k_obj;
    int heads, ref = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOi|p", kwlist, &q_obj, &k_obj, &heads, &ref)) return NULL;
    PyArrayObject *q = as_f32(q_obj, "q", 2);
    if (!q) return NULL;
    PyArrayObject *k = as_f32(k_obj, "k", 2);
    if (!k) return NULL;
    const int nq = (int)PyArray_DIM(q, 0), width = (int)PyArray_DIM(q, 1), nk = (int)PyArray_DIM(k, 0);
    if (heads < 1 || width % heads || nk < 1 || PyArray_DIM(k, 1) != width)
        return PyErr_Format(input_error(), "q (nq, heads*dh) and k (nk >= 1, heads*dh) must share a width "
                                           "divisible by heads, got %d, %d and heads %d", width,
                            (int)PyArray_DIM(k, 1), heads);
    npy_intp dims[2] = {nq, (npy_intp)heads * nk};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) return NULL;
    float *P = (float *)PyArray_DATA(out);
    const ptrdiff_t ldp = (ptrdiff_t)heads * nk;
    if (ref) {
        Py_BEGIN_ALLOW_THREADS
        msam_ref_attention_probs(P, ldp, f32(q), width, f32(k), width, nq, nk, heads, width / heads);
        Py_END_ALLOW_THREADS
        return (PyObject *)out;
    }
    run_backend rb;
    if (rb_open(&rb, out) < 0) return NULL;
    const size_t pb = sizeof(float) * (size_t)nq * ldp;
    Py_BEGIN_ALLOW_THREADS
    float *qd = rb_in(&rb, f32(q), sizeof(float) * (size_t)nq * width, 1);
    float *kd = rb_in(&rb, f32(k), sizeof(float) * (size_t)nk * width, 1);
    float *pd = rb_in(&rb, NULL, pb, 1);
    if (!rb.failed) {
        rb.ops->attention_probs(rb.ctx, pd, ldp, qd, width, kd, width, nq, nk, heads, width / heads);
        rb.ops->copy_out(rb.ctx, P, pd, pb);
    }
    Py_END_ALLOW_THREADS
    return rb_finish(&rb, out);
}

/* x (g*g, cin); w1 (4*c1, cin), b1 (4*c1); gamma, beta (c1); w2 (4*c, c1), b2 (4*c); hyper (n, c). */
static PyObject *py_upscale_masks(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"x", "w1", "b1", "gamma", "beta", "w2", "b2", "hyper", "eps", "ref", NULL};
    PyObject *o[8];
    float eps = 1e-6f;
    int ref = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOO|fp", kwlist, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                                     &o[6], &o[7], &eps, &ref))
        return NULL;
    static const char *names[] = {"x", "w1", "b1", "gamma", "beta", "w2", "b2", "hyper"};
    static const int ndims[] = {2, 2, 1, 1, 1, 2, 1, 2};
    PyArrayObject *a[8];
    for (int i = 0; i < 8; i++)
        if (!(a[i] = as_f32(o[i], names[i], ndims[i]))) return NULL;
    const int pixels = (int)PyArray_DIM(a[0], 0), cin = (int)PyArray_DIM(a[0], 1);
    const int n1 = (int)PyArray_DIM(a[1], 0), c1 = n1 / 4, n2 = (int)PyArray_DIM(a[5], 0), c = n2 / 4;
    const int n = (int)PyArray_DIM(a[7], 0);
    int g = 0;
    while ((long)(g + 1) * (g + 1) <= pixels) g++;
    if (pixels < 1 || g * g != pixels) return PyErr_Format(input_error(), "x must have g*g rows, got %d", pixels);
    if (n1 < 4 || n1 % 4 || PyArray_DIM(a[1], 1) != cin || PyArray_DIM(a[2], 0) != n1 || PyArray_DIM(a[3], 0) != c1 ||
        PyArray_DIM(a[4], 0) != c1 || n2 < 4 || n2 % 4 || PyArray_DIM(a[5], 1) != c1 || PyArray_DIM(a[6], 0) != n2 ||
        PyArray_DIM(a[7], 1) != c || n < 1 || n > 4)
        return PyErr_Format(input_error(), "inconsistent shapes: x (g*g, cin), w1 (4*c1, cin), b1 (4*c1), gamma and "
                                           "beta (c1), w2 (4*c, c1), b2 (4*c), hyper (1..4, c)");
    const float *f[8];
    for (int i = 0; i < 8; i++) f[i] = f32(a[i]);
    npy_intp dims[3] = {n, 4 * g, 4 * g};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    if (!out) return NULL;
    float *low = (float *)PyArray_DATA(out);
    const size_t lb = sizeof(float) * (size_t)n * 16 * pixels;
    if (ref) {
        const size_t u1n = (size_t)pixels * 4 * c1, u2n = (size_t)pixels * 16 * c;
        float *u = PyMem_RawMalloc(sizeof(float) * (u1n + u2n));
        if (!u) {
            Py_DECREF(out);
            return PyErr_NoMemory();
        }
        Py_BEGIN_ALLOW_THREADS
        msam_ref_upscale_masks(low, f[0], g, cin, c1, c, f[1], f[2], f[3], f[4], eps, f[5], f[6], f[7], n, u, u + u1n);
        Py_END_ALLOW_THREADS
        PyMem_RawFree(u);
        return (PyObject *)out;
    }
    run_backend rb;
    if (rb_open(&rb, out) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    float *x = rb_in(&rb, f[0], sizeof(float) * (size_t)pixels * cin, 1);
    float *gd = rb_in(&rb, f[3], sizeof(float) * c1, 1), *bd = rb_in(&rb, f[4], sizeof(float) * c1, 1);
    float *hd = rb_in(&rb, f[7], sizeof(float) * (size_t)n * c, 1);
    float *ld = rb_in(&rb, NULL, lb, 1);
    const size_t sb = rb.ops->upscale_masks_scratch_bytes(c1, c);
    void *scratch = rb_in(&rb, NULL, sb, 1);
    msam_linear *up1 = rb_linear(&rb, f[1], f[2], n1, cin), *up2 = rb_linear(&rb, f[5], f[6], n2, c1);
    if (!rb.failed) {
        rb.ops->upscale_masks(rb.ctx, ld, x, NULL, g, up1, gd, bd, eps, up2, hd, n, scratch, sb);
        rb.ops->copy_out(rb.ctx, low, ld, lb);
    }
    Py_END_ALLOW_THREADS
    return rb_finish(&rb, out);
}

/* The split input of upscale_masks (msam_upscale_parts): p0, p1 (g*g, k); m0, m1 (k, 4*c1);
 * u0 (g*g, 4*c1); f1, h (4*c1); s0, s1 (g*g); then gamma, beta, w2, b2, hyper as above. */
static PyObject *py_upscale_masks_parts(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"p0", "p1", "m0", "m1", "u0", "f1", "h", "s0", "s1", "gamma", "beta", "w2", "b2",
                             "hyper", "eps", NULL};
    PyObject *o[14];
    float eps = 1e-6f;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOOOOOOOO|f", kwlist, &o[0], &o[1], &o[2], &o[3], &o[4],
                                     &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13], &eps))
        return NULL;
    static const int ndims[] = {2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1, 2};
    PyArrayObject *a[14];
    for (int i = 0; i < 14; i++)
        if (!(a[i] = as_f32(o[i], kwlist[i], ndims[i]))) return NULL;
    const int pixels = (int)PyArray_DIM(a[0], 0), k = (int)PyArray_DIM(a[0], 1), width = (int)PyArray_DIM(a[2], 1);
    const int c1 = width / 4, n2 = (int)PyArray_DIM(a[11], 0), c = n2 / 4, n = (int)PyArray_DIM(a[13], 0);
    int g = 0;
    while ((long)(g + 1) * (g + 1) <= pixels) g++;
    if (pixels < 1 || g * g != pixels || k < 1 || k > MSAM_UPSCALE_MAX_K || width < 4 || width % 4 ||
        PyArray_DIM(a[1], 0) != pixels || PyArray_DIM(a[1], 1) != k || PyArray_DIM(a[2], 0) != k ||
        PyArray_DIM(a[3], 0) != k || PyArray_DIM(a[3], 1) != width || PyArray_DIM(a[4], 0) != pixels ||
        PyArray_DIM(a[4], 1) != width || PyArray_DIM(a[5], 0) != width || PyArray_DIM(a[6], 0) != width ||
        PyArray_DIM(a[7], 0) != pixels || PyArray_DIM(a[8], 0) != pixels || PyArray_DIM(a[9], 0) != c1 ||
        PyArray_DIM(a[10], 0) != c1 || n2 < 4 || n2 % 4 || PyArray_DIM(a[11], 1) != c1 ||
        PyArray_DIM(a[12], 0) != n2 || PyArray_DIM(a[13], 1) != c || n < 1 || n > 4)
        return PyErr_Format(input_error(), "inconsistent shapes for the split upscaling input (g*g pixels, "
                                           "1 <= k <= %d, width 4*c1)", MSAM_UPSCALE_MAX_K);
    npy_intp dims[3] = {n, 4 * g, 4 * g};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    float *zeros = PyMem_RawCalloc((size_t)width, sizeof(float));
    if (!out || !zeros) {
        Py_XDECREF(out);
        PyMem_RawFree(zeros);
        return PyErr_NoMemory();
    }
    run_backend rb;
    if (rb_open(&rb, out) < 0) {
        PyMem_RawFree(zeros);
        return NULL;
    }
    /* sizes of the staged arrays, in the order of kwlist (p0 .. s1, gamma, beta, hyper) */
    const size_t P = (size_t)pixels, W = (size_t)width;
    const size_t counts[14] = {P * k, P * k, (size_t)k * W, (size_t)k * W, P * W, W, W, P, P, c1, c1, 0, 0,
                               (size_t)n * c};
    const size_t lb = sizeof(float) * (size_t)n * 16 * pixels;
    float *low = (float *)PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    float *d[14] = {0};
    for (int i = 0; i < 14; i++) d[i] = rb_in(&rb, f32(a[i]), sizeof(float) * counts[i], counts[i] > 0);
    float *ld = rb_in(&rb, NULL, lb, 1);
    const size_t sb = rb.ops->upscale_masks_scratch_bytes(c1, c);
    void *scratch = rb_in(&rb, NULL, sb, 1);
    msam_linear *up1 = rb_linear(&rb, zeros, NULL, width, 1); /* its widths only */
    msam_linear *up2 = rb_linear(&rb, f32(a[11]), f32(a[12]), n2, c1);
    if (!rb.failed) {
        msam_upscale_parts parts = {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], k};
        rb.ops->upscale_masks(rb.ctx, ld, NULL, &parts, g, up1, d[9], d[10], eps, up2, d[13], n, scratch, sb);
        rb.ops->copy_out(rb.ctx, low, ld, lb);
    }
    Py_END_ALLOW_THREADS
    PyObject *res = rb_finish(&rb, out);
    PyMem_RawFree(zeros);
    return res;
}

typedef struct {
    int sh, sw, dh, dw, crop_h, crop_w, mask;
} resize_args;

static void resize_op(run_backend *rb, float *x, float *y, void *arg) {
    const resize_args *r = arg;
    if (r->mask)
        rb->ops->resize_bilinear_mask(rb->ctx, x, r->sh, r->sw, r->sw, (uint8_t *)y, r->dh, r->dw, r->crop_w,
                                      r->crop_h, r->crop_w);
    else
        rb->ops->resize_bilinear(rb->ctx, x, r->sh, r->sw, r->sw, y, r->dh, r->dw, r->crop_w, r->crop_h, r->crop_w);
}

/* Both mask resampler hooks: float results (NPY_FLOAT32) or the mask of those > 0 (NPY_BOOL). */
static PyObject *resize_bilinear(PyObject *args, PyObject *kwargs, const char *format, int out_type) {
    static char *kwlist[] = {"plane", "dh", "dw", "crop_h", "crop_w", NULL};
    PyObject *plane;
    Py_ssize_t dh, dw, crop_h = -1, crop_w = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, kwlist, &plane, &dh, &dw, &crop_h, &crop_w))
        return NULL;
    if (msam_py_check_side(dh, "dh") < 0 || msam_py_check_side(dw, "dw") < 0) return NULL;
    if (crop_h == -1) crop_h = dh;
    if (crop_w == -1) crop_w = dw;
    if (crop_h < 1 || crop_h > dh)
        return PyErr_Format(msam_py_InputError, "crop_h must be between 1 and dh=%zd, got %zd", dh, crop_h);
    if (crop_w < 1 || crop_w > dw)
        return PyErr_Format(msam_py_InputError, "crop_w must be between 1 and dw=%zd, got %zd", dw, crop_w);
    /* a 2-D float32 array (any strides: staged as packed rows) */
    static const char *expect = "plane must be a 2-D float32 array with both sides >= 1";
    PyArrayObject *raw = (PyArrayObject *)PyArray_FROM_O(plane);
    if (!raw) {
        PyErr_Clear();
        return PyErr_Format(msam_py_InputError, "%s, got %s", expect, Py_TYPE(plane)->tp_name);
    }
    if (PyArray_NDIM(raw) != 2 || PyArray_TYPE(raw) != NPY_FLOAT32 || PyArray_DIM(raw, 0) < 1 ||
        PyArray_DIM(raw, 1) < 1) {
        Py_DECREF(raw);
        return PyErr_Format(msam_py_InputError, "%s", expect);
    }
    if (msam_py_check_side(PyArray_DIM(raw, 0), "plane's height") < 0 ||
        msam_py_check_side(PyArray_DIM(raw, 1), "plane's width") < 0) {
        Py_DECREF(raw);
        return NULL;
    }
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROMANY((PyObject *)raw, NPY_FLOAT32, 2, 2,
                                                          NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    Py_DECREF(raw);
    if (!arr) return NULL;
    npy_intp dims[2] = {crop_h, crop_w};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, out_type);
    if (!out) {
        Py_DECREF(arr);
        return NULL;
    }
    resize_args ra = {(int)PyArray_DIM(arr, 0), (int)PyArray_DIM(arr, 1), (int)dh, (int)dw, (int)crop_h, (int)crop_w,
                      out_type == NPY_BOOL};
    const size_t in_bytes = sizeof(float) * (size_t)ra.sh * ra.sw;
    const size_t out_bytes = (size_t)crop_h * crop_w * (out_type == NPY_BOOL ? 1 : sizeof(float));
    PyObject *res = run_one(out, PyArray_DATA(arr), in_bytes, out_bytes, 0, resize_op, &ra);
    Py_DECREF(arr);
    return res;
}

static PyObject *py_resize_bilinear_f32(PyObject *self, PyObject *args, PyObject *kwargs) {
    return resize_bilinear(args, kwargs, "Onn|nn:_resize_bilinear_f32", NPY_FLOAT32);
}

static PyObject *py_resize_bilinear_mask(PyObject *self, PyObject *args, PyObject *kwargs) {
    return resize_bilinear(args, kwargs, "Onn|nn:_resize_bilinear_mask", NPY_BOOL);
}

static PyObject *py_gemm(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    return gemm_common(args, kwargs, 0);
}

static PyObject *py_gemm_ref(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    return gemm_common(args, kwargs, 1);
}

static PyObject *py_gemm_isa(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(msam_cpu_isa());
}

/* _conformance(device="cpu", seed=0) -> [(op, case, err, tol)]: the op-conformance suite. */
static void collect_case(void *user, const char *op, const char *shape, double err, double tol) {
    PyObject *list = user, *item = Py_BuildValue("(ssdd)", op, shape, err, tol);
    if (!item || PyList_Append(list, item) < 0) PyErr_Clear();
    Py_XDECREF(item);
}

static PyObject *py_conformance(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"device", "seed", NULL};
    const char *device = "cpu";
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|sK:_conformance", kwlist, &device, &seed)) return NULL;
    msam_device d;
    if (strcmp(device, "cpu") == 0) d = MSAM_DEVICE_CPU;
    else if (strcmp(device, "cuda") == 0) d = MSAM_DEVICE_CUDA;
    else return PyErr_Format(msam_py_InputError, "device must be 'cpu' or 'cuda', got '%s'", device);
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    msam_error err = {{0}};
    /* the callback appends to a Python list: the GIL stays held (the suite runs small shapes) */
    msam_status st = msam_test_conformance(d, (uint64_t)seed, collect_case, list, &err);
    if (st) {
        Py_DECREF(list);
        return msam_py_raise(st, &err);
    }
    return list;
}

static PyMethodDef kernel_methods[] = {
    {"_gemm", (PyCFunction)(void (*)(void))py_gemm, METH_VARARGS | METH_KEYWORDS,
     "_gemm(a, w, bias=None, act=0, residual=None) -> act(a @ w.T + bias + residual), float32,\n"
     "through the CPU backend's ops->linear (test hook). act: 0 none, 1 gelu (erf), 2 relu."},
    {"_gemm_ref", (PyCFunction)(void (*)(void))py_gemm_ref, METH_VARARGS | METH_KEYWORDS,
     "_gemm_ref(a, w, bias=None, act=0, residual=None): the same through the plain reference."},
    {"_gemm_isa", py_gemm_isa, METH_NOARGS,
     "_gemm_isa() -> 'avx512', 'avx2' or 'generic': the GEMM kernel in use (MSAM_ISA caps it)."},
    {"_matmul", (PyCFunction)(void (*)(void))py_matmul, METH_VARARGS | METH_KEYWORDS,
     "_matmul(a, w, w_is_kn=False, bias=None, residual=None, ref=False) -> a @ W.T + bias + residual with W\n"
     "packed during the call (ops->matmul); w is W [n][k], or W.T [k][n] when w_is_kn (test hook)."},
    {"_softmax", (PyCFunction)(void (*)(void))py_softmax, METH_VARARGS | METH_KEYWORDS,
     "_softmax(x, length=x.shape[1], scale=1.0, ref=False) -> a copy of x whose rows' first length\n"
     "floats are softmax(scale * row) (ops->softmax, or its plain reference; test hook)."},
    {"_transpose", py_transpose, METH_O, "_transpose(x) -> x.T through ops->transpose (test hook)."},
    {"_attention_probs", (PyCFunction)(void (*)(void))py_attention_probs, METH_VARARGS | METH_KEYWORDS,
     "_attention_probs(q, k, heads, ref=False) -> (nq, heads*nk) softmax(q.k / sqrt(dh)) per head\n"
     "(ops->attention_probs, or its plain reference; test hook)."},
    {"_upscale_masks", (PyCFunction)(void (*)(void))py_upscale_masks, METH_VARARGS | METH_KEYWORDS,
     "_upscale_masks(x, w1, b1, gamma, beta, w2, b2, hyper, eps=1e-6, ref=False) -> (n, 4g, 4g) mask\n"
     "logits of the decoder's fused upscaling (ops->upscale_masks, or its plain reference; test hook)."},
    {"_upscale_masks_parts", (PyCFunction)(void (*)(void))py_upscale_masks_parts, METH_VARARGS | METH_KEYWORDS,
     "_upscale_masks_parts(p0, p1, m0, m1, u0, f1, h, s0, s1, gamma, beta, w2, b2, hyper, eps=1e-6) -> the\n"
     "same logits with the first map given in parts, u = s1 (s0 (p0 m0 + u0) + p1 m1 + f1) + h (test hook)."},
    {"_resize_bilinear_f32", (PyCFunction)(void (*)(void))py_resize_bilinear_f32, METH_VARARGS | METH_KEYWORDS,
     "_resize_bilinear_f32(plane, dh, dw, crop_h=dh, crop_w=dw)\n--\n\n"
     "Test hook: torch.nn.functional.interpolate(bilinear, align_corners=False) of a 2-D float32\n"
     "plane to dh x dw, returning only the top-left crop_h x crop_w (ops->resize_bilinear)."},
    {"_resize_bilinear_mask", (PyCFunction)(void (*)(void))py_resize_bilinear_mask, METH_VARARGS | METH_KEYWORDS,
     "_resize_bilinear_mask(plane, dh, dw, crop_h=dh, crop_w=dw)\n--\n\n"
     "Test hook: _resize_bilinear_f32(plane, dh, dw, crop_h, crop_w) > 0 as a bool array, computed\n"
     "without the float plane (ops->resize_bilinear_mask, the kernel predict uses for masks)."},
    {"_conformance", (PyCFunction)(void (*)(void))py_conformance, METH_VARARGS | METH_KEYWORDS,
     "_conformance(device='cpu', seed=0) -> [(op, case, err, tol)]: every op of the device's table against\n"
     "its plain reference on random shapes (test hook)."},
    {NULL, NULL, 0, NULL}};

int msam_py_add_kernels(PyObject *m) {
    if (PyModule_AddFunctions(m, kernel_methods) < 0) return -1;
    /* 1 in test builds whose AVX-512 kernel runs on SIMDe (setup.py, MSAM_EMULATE_AVX512) */
#ifdef MSAM_EMULATE_AVX512
    return PyModule_AddIntConstant(m, "_avx512_emulated", 1);
#else
    return PyModule_AddIntConstant(m, "_avx512_emulated", 0);
#endif
}
