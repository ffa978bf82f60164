/* kernels.c - test hooks exposing single CPU kernels to Python (_gemm, _gemm_ref, _gemm_isa,
 * _matmul, _softmax, _transpose, _attention_probs, _upscale_masks): kernels tested alone. */
#include "binding.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "cpu/cpu_kernels.h"
#include "cpu/gemm.h"
#include "core/threads.h"

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
    const float *bias = NULL, *res = NULL;
    if (bias_obj != Py_None) {
        PyArrayObject *b = as_f32(bias_obj, "bias", 1);
        if (!b) return NULL;
        if ((int)PyArray_DIM(b, 0) != N) {
            PyErr_Format(input_error(), "bias must have shape (%d,), got (%d,)", N, (int)PyArray_DIM(b, 0));
            return NULL;
        }
        bias = (const float *)PyArray_DATA(b);
    }
    if (res_obj != Py_None) {
        PyArrayObject *r = as_f32(res_obj, "residual", 2);
        if (!r) return NULL;
        if ((int)PyArray_DIM(r, 0) != M || (int)PyArray_DIM(r, 1) != N) {
            PyErr_Format(input_error(), "residual must have shape (%d, %d), got (%d, %d)", M, N,
                         (int)PyArray_DIM(r, 0), (int)PyArray_DIM(r, 1));
            return NULL;
        }
        res = (const float *)PyArray_DATA(r);
    }
    if (act != MSAM_ACT_NONE && act != MSAM_ACT_GELU && act != MSAM_ACT_RELU) {
        PyErr_Format(input_error(), "act must be 0 (none), 1 (gelu) or 2 (relu), got %d", act);
        return NULL;
    }
    npy_intp dims[2] = {M, N};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) return NULL;
    const float *A = (const float *)PyArray_DATA(a), *W = (const float *)PyArray_DATA(w);
    float *C = (float *)PyArray_DATA(out);
    int nomem = 0;
    Py_BEGIN_ALLOW_THREADS
    if (use_ref) {
        msam_gemm_ref(M, N, K, A, K, W, bias, (msam_act)act, res, N, C, N);
    } else {
        msam_packed_b *B = msam_pack_b(W, N, K);
        if (B) {
            msam_gemm(M, A, K, B, bias, (msam_act)act, res, N, C, N);
            msam_packed_b_free(B);
        } else {
            nomem = 1;
        }
    }
    Py_END_ALLOW_THREADS
    if (nomem) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    return (PyObject *)out;
}

/* _matmul: the per-call-operand product (ops->matmul) with W as [n][k] or, transposed, [k][n]. */
static PyObject *py_matmul(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"a", "w", "w_is_kn", "bias", "residual", NULL};
    PyObject *a_obj, *w_obj, *bias_obj = Py_None, *res_obj = Py_None;
    int kn = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|pOO", kwlist, &a_obj, &w_obj, &kn, &bias_obj, &res_obj))
        return NULL;
    PyArrayObject *a = as_f32(a_obj, "a", 2), *w = a ? as_f32(w_obj, "w", 2) : NULL;
    if (!w) return NULL;
    const int M = (int)PyArray_DIM(a, 0), K = (int)PyArray_DIM(a, 1);
    const int N = (int)PyArray_DIM(w, kn ? 1 : 0);
    if ((int)PyArray_DIM(w, kn ? 0 : 1) != K) {
        PyErr_Format(input_error(), "w must have %d %s to match a", K, kn ? "rows" : "columns");
        return NULL;
    }
    const float *bias = NULL, *res = NULL;
    if (bias_obj != Py_None) {
        PyArrayObject *b = as_f32(bias_obj, "bias", 1);
        if (!b) return NULL;
        if ((int)PyArray_DIM(b, 0) != N) return PyErr_Format(input_error(), "bias must have shape (%d,)", N);
        bias = (const float *)PyArray_DATA(b);
    }
    if (res_obj != Py_None) {
        PyArrayObject *r = as_f32(res_obj, "residual", 2);
        if (!r) return NULL;
        if ((int)PyArray_DIM(r, 0) != M || (int)PyArray_DIM(r, 1) != N)
            return PyErr_Format(input_error(), "residual must have shape (%d, %d)", M, N);
        res = (const float *)PyArray_DATA(r);
    }
    npy_intp dims[2] = {M, N};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) return NULL;
    void *scratch = malloc(msam_gemm_dyn_scratch_bytes(N, K));
    if (!scratch) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    const float *A = (const float *)PyArray_DATA(a), *W = (const float *)PyArray_DATA(w);
    float *C = (float *)PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    msam_gemm_dyn(M, A, K, W, kn ? 1 : K, kn ? N : 1, N, K, bias, MSAM_ACT_NONE, res, N, C, N, scratch);
    Py_END_ALLOW_THREADS
    free(scratch);
    return (PyObject *)out;
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
    float *y = (float *)PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    if (ref) msam_cpu_softmax_ref(y, count, stride, length, scale);
    else msam_cpu_softmax(y, count, stride, length, scale);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

static PyObject *py_transpose(PyObject *self, PyObject *arg) {
    (void)self;
    PyArrayObject *x = as_f32(arg, "x", 2);
    if (!x) return NULL;
    const int rows = (int)PyArray_DIM(x, 0), cols = (int)PyArray_DIM(x, 1);
    npy_intp dims[2] = {cols, rows};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) return NULL;
    float *y = (float *)PyArray_DATA(out);
    const float *xd = (const float *)PyArray_DATA(x);
    Py_BEGIN_ALLOW_THREADS
    if (rows > 0 && cols > 0) msam_cpu_ops()->transpose(y, rows, xd, cols, rows, cols);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
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
    const float *qd = (const float *)PyArray_DATA(q), *kd = (const float *)PyArray_DATA(k);
    Py_BEGIN_ALLOW_THREADS
    if (ref) msam_cpu_attention_probs_ref(P, (ptrdiff_t)heads * nk, qd, width, kd, width, nq, nk, heads, width / heads);
    else msam_cpu_attention_probs(P, (ptrdiff_t)heads * nk, qd, width, kd, width, nq, nk, heads, width / heads);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
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
    for (int i = 0; i < 8; i++) f[i] = (const float *)PyArray_DATA(a[i]);
    npy_intp dims[3] = {n, 4 * g, 4 * g};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    if (!out) return NULL;
    float *low = (float *)PyArray_DATA(out);
    const int threads = msam_threads();
    const size_t u1n = (size_t)pixels * 4 * c1, u2n = (size_t)pixels * 16 * c;
    const size_t scratch_bytes = ref ? 0 : msam_cpu_upscale_masks_scratch_bytes(c1, c, threads);
    float *u = ref ? malloc(sizeof(float) * (u1n + u2n)) : NULL;
    void *scratch = ref ? NULL : malloc(scratch_bytes + 64);
    msam_linear *up1 = ref ? NULL : msam_cpu_linear_create(f[1], f[2], n1, cin);
    msam_linear *up2 = ref ? NULL : msam_cpu_linear_create(f[5], f[6], n2, c1);
    if (ref ? !u : (!scratch || !up1 || !up2)) {
        free(u), free(scratch), msam_cpu_linear_free(up1), msam_cpu_linear_free(up2);
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    if (ref) {
        msam_cpu_upscale_masks_ref(low, f[0], g, cin, c1, c, f[1], f[2], f[3], f[4], eps, f[5], f[6], f[7], n, u,
                                   u + u1n);
    } else {
        void *aligned = (void *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
        msam_cpu_upscale_masks(low, f[0], NULL, g, up1, f[3], f[4], eps, up2, f[7], n, aligned, scratch_bytes);
    }
    Py_END_ALLOW_THREADS
    free(u), free(scratch), msam_cpu_linear_free(up1), msam_cpu_linear_free(up2);
    return (PyObject *)out;
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
    const float *f[14];
    for (int i = 0; i < 14; i++) f[i] = (const float *)PyArray_DATA(a[i]);
    npy_intp dims[3] = {n, 4 * g, 4 * g};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    if (!out) return NULL;
    const size_t scratch_bytes = msam_cpu_upscale_masks_scratch_bytes(c1, c, msam_threads());
    void *scratch = malloc(scratch_bytes + 64);
    float *zeros = calloc((size_t)width, sizeof(float));
    msam_linear *up1 = zeros ? msam_cpu_linear_create(zeros, NULL, width, 1) : NULL; /* widths only */
    msam_linear *up2 = msam_cpu_linear_create(f[11], f[12], n2, c1);
    if (!scratch || !up1 || !up2) {
        free(scratch), free(zeros), msam_cpu_linear_free(up1), msam_cpu_linear_free(up2);
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    msam_upscale_parts parts = {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], k};
    float *low = (float *)PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    void *aligned = (void *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    msam_cpu_upscale_masks(low, NULL, &parts, g, up1, f[9], f[10], eps, up2, f[13], n, aligned, scratch_bytes);
    Py_END_ALLOW_THREADS
    free(scratch), free(zeros), msam_cpu_linear_free(up1), msam_cpu_linear_free(up2);
    return (PyObject *)out;
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
    return PyUnicode_FromString(msam_gemm_isa());
}

static PyMethodDef kernel_methods[] = {
    {"_gemm", (PyCFunction)(void (*)(void))py_gemm, METH_VARARGS | METH_KEYWORDS,
     "_gemm(a, w, bias=None, act=0, residual=None) -> act(a @ w.T + bias + residual), float32,\n"
     "through the packed, threaded kernel (test hook). act: 0 none, 1 gelu (erf), 2 relu."},
    {"_gemm_ref", (PyCFunction)(void (*)(void))py_gemm_ref, METH_VARARGS | METH_KEYWORDS,
     "_gemm_ref(a, w, bias=None, act=0, residual=None): the same through the plain reference."},
    {"_gemm_isa", py_gemm_isa, METH_NOARGS,
     "_gemm_isa() -> 'avx512', 'avx2' or 'generic': the GEMM kernel in use (MSAM_ISA caps it)."},
    {"_matmul", (PyCFunction)(void (*)(void))py_matmul, METH_VARARGS | METH_KEYWORDS,
     "_matmul(a, w, w_is_kn=False, bias=None, residual=None) -> a @ W.T + bias + residual with W\n"
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
