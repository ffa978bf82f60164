/* cpu_ops.c - the CPU backend's op table and its small ops (linear via the packed GEMM,
 * LayerNorm, elementwise, decoder attention, 2x2 space/depth shuffles). Host memory throughout. */
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "cpu_kernels.h"
#include "gemm_internal.h"
#include "resize.h"
#include "threads.h"

static void *cpu_alloc(size_t bytes) {
    /* 64-byte aligned so kernels may use aligned vector loads on rows that start a buffer. */
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

static void cpu_release(void *p) { free(p); }

msam_linear *msam_cpu_linear_create(const float *w, const float *bias, int n_out, int k_in) {
    msam_linear *lin = calloc(1, sizeof *lin);
    if (!lin) return NULL;
    lin->n_out = n_out;
    lin->k_in = k_in;
    lin->b = msam_pack_b(w, n_out, k_in);
    if (bias) {
        lin->bias = malloc(sizeof(float) * (size_t)n_out);
        if (lin->bias) memcpy(lin->bias, bias, sizeof(float) * (size_t)n_out);
    }
    if (!lin->b || (bias && !lin->bias)) {
        msam_cpu_linear_free(lin);
        return NULL;
    }
    return lin;
}

void msam_cpu_linear_free(msam_linear *lin) {
    if (!lin) return;
    msam_packed_b_free(lin->b);
    free(lin->bias);
    free(lin);
}

static void cpu_linear(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                       const msam_linear *lin, msam_act act, const float *residual,
                       ptrdiff_t ldr) {
    msam_gemm(rows, x, ldx, lin->b, lin->bias, act, residual, ldr, y, ldy);
}

/* Two-pass mean/variance per row, as torch's LayerNorm: var is the biased mean of squares.
 * Rows are independent; the row loop is cloned for AVX2 (chosen at load by the ifunc resolver). */
__attribute__((target_clones("avx2", "default"))) static void layernorm_rows(
    float *restrict y, const float *restrict x, int first, int last, int c,
    const float *restrict gamma, const float *restrict beta, float eps) {
    for (int r = first; r < last; r++) {
        const float *xr = x + (size_t)r * c;
        float *yr = y + (size_t)r * c;
        float sum = 0.0f;
        for (int i = 0; i < c; i++) sum += xr[i];
        float mean = sum / (float)c, sq = 0.0f;
        for (int i = 0; i < c; i++) {
            float d = xr[i] - mean;
            sq += d * d;
        }
        float rstd = 1.0f / sqrtf(sq / (float)c + eps);
        for (int i = 0; i < c; i++) yr[i] = (xr[i] - mean) * rstd * gamma[i] + beta[i];
    }
}

static void cpu_layernorm(float *y, const float *x, int rows, int c, const float *gamma,
                          const float *beta, float eps) {
    const int nt = rows > 64 ? msam_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++)
        layernorm_rows(y, x, (int)((long)rows * t / nt), (int)((long)rows * (t + 1) / nt), c, gamma, beta, eps);
}

static void cpu_add(float *y, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void cpu_activate(float *y, const float *x, size_t n, msam_act act) {
#if defined(__x86_64__) || defined(__i386__)
    if (act == MSAM_ACT_GELU && strcmp(msam_gemm_isa(), "generic") != 0) {
        /* the GEMM epilogue's vector GELU (same accuracy as erff), in chunks over threads */
        const size_t chunk = 16384, nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (n > 65536)
        for (size_t c = 0; c < nchunks; c++) {
            size_t lo = c * chunk, len = n - lo < chunk ? n - lo : chunk;
            msam_gelu_avx2(y + lo, x + lo, len);
        }
        return;
    }
#endif
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (n > 16384)
    for (size_t i = 0; i < n; i++) y[i] = msam_apply_act(x[i], act);
}

static float *cpu_upload(const float *host, size_t n) {
    float *p = cpu_alloc(sizeof(float) * n);
    if (p) memcpy(p, host, sizeof(float) * n);
    return p;
}

static void cpu_copy(float *dst, const float *src, size_t n) {
    if (dst != src) memcpy(dst, src, sizeof(float) * n);
}

static void cpu_space_to_depth2(float *y, const float *x, int h, int w, int c) {
    const int ho = h / 2, wo = w / 2;
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (h * w * c > 65536)
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++)
            for (int t = 0; t < 4; t++)
                memcpy(y + ((size_t)oy * wo + ox) * 4 * c + (size_t)t * c,
                       x + ((size_t)(2 * oy + t / 2) * w + (2 * ox + t % 2)) * c,
                       sizeof(float) * (size_t)c);
}

static void cpu_depth_to_space2(float *y, const float *x, int h, int w, int c) {
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (h * w * c > 16384)
    for (int iy = 0; iy < h; iy++)
        for (int ix = 0; ix < w; ix++)
            for (int t = 0; t < 4; t++)
                memcpy(y + ((size_t)(2 * iy + t / 2) * (2 * w) + (2 * ix + t % 2)) * c,
                       x + ((size_t)iy * w + ix) * 4 * c + (size_t)t * c, sizeof(float) * (size_t)c);
}

/* dot products of 32-wide pixels with n <= 4 hypernetwork vectors, cloned for AVX2 */
__attribute__((target_clones("avx2", "default"))) static void mask_logit_rows(
    float *restrict low, const float *restrict up, const float *restrict hyper, int first,
    int last, int rows, int c, int n) {
    for (int r = first; r < last; r++) {
        const float *u = up + (size_t)r * c;
        for (int i = 0; i < n; i++) {
            const float *hy = hyper + (size_t)i * c;
            float acc = 0.0f;
            for (int k = 0; k < c; k++) acc += u[k] * hy[k];
            low[(size_t)i * rows + r] = acc;
        }
    }
}

static void cpu_mask_logits(float *low, const float *up, const float *hyper, int rows, int c,
                            int n) {
    const int nt = rows > 4096 ? msam_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++)
        mask_logit_rows(low, up, hyper, (int)((long)rows * t / nt), (int)((long)rows * (t + 1) / nt), rows, c, n);
}

static const msam_ops g_cpu_ops = {
    .name = "cpu",
    .device = MSAM_DEVICE_CPU,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .linear_create = msam_cpu_linear_create,
    .linear_free = msam_cpu_linear_free,
    .linear = cpu_linear,
    .layernorm = cpu_layernorm,
    .add = cpu_add,
    .activate = cpu_activate,
    .upload = cpu_upload,
    .copy_in = cpu_copy,
    .copy_out = cpu_copy,
    .conv3x3_create = msam_cpu_conv3x3_create,
    .conv3x3_scratch_bytes = msam_cpu_conv3x3_scratch_bytes,
    .conv3x3 = msam_cpu_conv3x3,
    .dwconv3x3 = msam_cpu_dwconv3x3,
    .window_attention = msam_cpu_window_attention,
    .attention = msam_cpu_attention,
    .space_to_depth2 = cpu_space_to_depth2,
    .depth_to_space2 = cpu_depth_to_space2,
    .mask_logits = cpu_mask_logits,
    .resize_bilinear = msam_resize_bilinear_f32,
    .resize_bilinear_mask = msam_resize_bilinear_mask,
};

const msam_ops *msam_cpu_ops(void) { return &g_cpu_ops; }

const char *msam_cpu_isa(void) { return msam_gemm_isa(); }
