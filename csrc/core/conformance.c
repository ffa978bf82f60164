/* conformance.c - the op-conformance suite: every op of a backend's table (the one its models
 * use) against the plain references of csrc/ref on seeded random shapes, edge sizes included, so
 * each backend (CPU now, CUDA later, through the same code) is checked op by op. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msam_test.h"
#include "pillow_resize.h" /* host/: the Pillow-exact resize and its plan */
#include "weights.h"       /* msam_fail */

#define MAX_BUFS 48

typedef struct {
    const msam_ops *ops;
    msam_ctx *ctx;
    uint64_t rng;
    msam_conformance_fn fn;
    void *user;
    int nomem;
    void *dev[MAX_BUFS], *host[MAX_BUFS];
    msam_linear *lin[4];
    int n_dev, n_host, n_lin;
} suite;

static uint32_t next_u32(suite *s) { /* xorshift64* */
    s->rng ^= s->rng >> 12, s->rng ^= s->rng << 25, s->rng ^= s->rng >> 27;
    return (uint32_t)((s->rng * 2685821657736338717ull) >> 32);
}

static int pick(suite *s, const int *choices, int n) { return choices[next_u32(s) % (uint32_t)n]; }

/* n host floats, uniform in [-scale, scale) (freed with the case) */
static float *rnd(suite *s, size_t n, float scale) {
    float *p = s->n_host < MAX_BUFS ? malloc(sizeof(float) * (n ? n : 1)) : NULL;
    if (!p) {
        s->nomem = 1;
        return NULL;
    }
    s->host[s->n_host++] = p;
    for (size_t i = 0; i < n; i++) p[i] = scale * ((float)next_u32(s) / 2147483648.0f - 1.0f);
    return p;
}

/* op memory holding a copy of host (bytes), or uninitialised when host is NULL */
static void *dev(suite *s, const void *host, size_t bytes) {
    void *p = !s->nomem && s->n_dev < MAX_BUFS ? s->ops->alloc(s->ctx, bytes ? bytes : 1) : NULL;
    if (!p) {
        s->nomem = 1;
        return NULL;
    }
    s->dev[s->n_dev++] = p;
    if (host && bytes) s->ops->copy_in(s->ctx, p, host, bytes);
    return p;
}

static msam_linear *lin(suite *s, msam_linear *l) {
    if (!l) s->nomem = 1;
    else s->lin[s->n_lin++] = l;
    return l;
}

/* host copy of n floats of op memory (freed with the case) */
static float *back(suite *s, const void *d, size_t n) {
    float *h = rnd(s, n, 0.0f);
    if (h && d) s->ops->copy_out(s->ctx, h, d, sizeof(float) * n);
    return h;
}

static void end_case(suite *s) {
    s->ops->sync(s->ctx);
    for (int i = 0; i < s->n_dev; i++) s->ops->release(s->ctx, s->dev[i]);
    for (int i = 0; i < s->n_host; i++) free(s->host[i]);
    for (int i = 0; i < s->n_lin; i++) s->ops->linear_free(s->ctx, s->lin[i]);
    s->n_dev = s->n_host = s->n_lin = 0;
}

/* max |got - want| over max(1, max |want|): absolute near zero, relative for large values */
static double rel_err(const float *got, const float *want, size_t n) {
    double e = 0.0, m = 1.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]);
        if (!(d <= e)) e = isnan(d) ? INFINITY : d;
        if (fabs(want[i]) > m) m = fabs(want[i]);
    }
    return e / m;
}

static void report(suite *s, const char *op, double err, double tol, const char *fmt, ...) {
    char shape[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(shape, sizeof shape, fmt, ap);
    va_end(ap);
    if (s->nomem) return;
    s->fn(s->user, op, shape, err, tol);
}

static const int ROWS[] = {1, 3, 8, 17, 64, 129, 300};
static const int WIDTHS[] = {1, 4, 7, 16, 33, 64, 256};
static const int ACTS[] = {MSAM_ACT_NONE, MSAM_ACT_GELU, MSAM_ACT_RELU};

static void case_linear(suite *s) {
    const int m = pick(s, ROWS, 7), k = pick(s, WIDTHS, 7), n = pick(s, WIDTHS, 7);
    const msam_act act = (msam_act)pick(s, ACTS, 3);
    const int with_res = next_u32(s) & 1;
    float *x = rnd(s, (size_t)m * k, 1.0f), *w = rnd(s, (size_t)n * k, 0.5f), *b = rnd(s, n, 0.5f);
    float *r = rnd(s, (size_t)m * n, 1.0f), *want = rnd(s, (size_t)m * n, 0.0f);
    if (s->nomem) return;
    msam_ref_gemm(m, n, k, x, k, w, b, act, with_res ? r : NULL, n, want, n);
    float *xd = dev(s, x, sizeof(float) * m * k), *yd = dev(s, r, sizeof(float) * m * n);
    msam_linear *l = lin(s, s->ops->linear_create(s->ctx, w, b, n, k));
    if (s->nomem) return;
    s->ops->linear(s->ctx, yd, n, xd, k, m, l, act, with_res ? yd : NULL, n);
    report(s, "linear", rel_err(back(s, yd, (size_t)m * n), want, (size_t)m * n), 1e-5, "%dx%d . %dx%d act %d res %d",
           m, k, n, k, act, with_res);
}

static void case_matmul(suite *s) {
    const int m = pick(s, ROWS, 7), k = pick(s, WIDTHS, 7), n = pick(s, WIDTHS, 7), kn = next_u32(s) & 1;
    float *x = rnd(s, (size_t)m * k, 1.0f), *w = rnd(s, (size_t)n * k, 0.5f), *b = rnd(s, n, 0.5f);
    float *r = rnd(s, (size_t)m * n, 1.0f), *want = rnd(s, (size_t)m * n, 0.0f);
    if (s->nomem) return;
    const ptrdiff_t sn = kn ? 1 : k, sk = kn ? n : 1;
    msam_ref_matmul(want, n, x, k, m, w, sn, sk, n, k, b, r, n);
    float *xd = dev(s, x, sizeof(float) * m * k), *wd = dev(s, w, sizeof(float) * n * k), *bd = dev(s, b, sizeof(float) * n);
    float *yd = dev(s, r, sizeof(float) * m * n);
    void *scr = dev(s, NULL, s->ops->matmul_scratch_bytes(n, k));
    if (s->nomem) return;
    s->ops->matmul(s->ctx, yd, n, xd, k, m, wd, sn, sk, n, k, bd, yd, n, scr);
    report(s, "matmul", rel_err(back(s, yd, (size_t)m * n), want, (size_t)m * n), 1e-5, "%dx%d . W(%d, %d) %s", m, k,
           n, k, kn ? "[k][n]" : "[n][k]");
}

static void case_layernorm(suite *s) {
    const int rows = pick(s, ROWS, 7), c = pick(s, WIDTHS + 1, 6), pe = next_u32(s) & 1;
    const size_t n = (size_t)rows * c;
    float *x = rnd(s, n, 3.0f), *g = rnd(s, c, 1.0f), *b = rnd(s, c, 1.0f), *p = rnd(s, n, 1.0f);
    float *want = rnd(s, n, 0.f), *want_pe = rnd(s, n, 0.f), *want_rs = rnd(s, rows, 0.f);
    if (s->nomem) return;
    for (size_t i = 0; i < n; i++) x[i] += 2.0f; /* a mean to remove */
    msam_ref_layernorm_pe(want, want_pe, want_rs, x, p, rows, c, g, b, 1e-5f);
    float *xd = dev(s, x, sizeof(float) * n), *gd = dev(s, g, sizeof(float) * c), *bd = dev(s, b, sizeof(float) * c);
    float *pd = dev(s, p, sizeof(float) * n), *ped = dev(s, NULL, sizeof(float) * n), *rsd = dev(s, NULL, sizeof(float) * rows);
    if (s->nomem) return;
    if (pe) {
        s->ops->layernorm_pe(s->ctx, xd, ped, rsd, xd, pd, rows, c, gd, bd, 1e-5f);
        double e = rel_err(back(s, ped, n), want_pe, n), e2 = rel_err(back(s, rsd, rows), want_rs, rows);
        report(s, "layernorm_pe", e > e2 ? e : e2, 1e-5, "%d rows x %d (ype, rstd)", rows, c);
    } else {
        s->ops->layernorm(s->ctx, xd, xd, rows, c, gd, bd, 1e-5f);
    }
    report(s, pe ? "layernorm_pe" : "layernorm", rel_err(back(s, xd, n), want, n), 1e-5, "%d rows x %d in place", rows, c);
}

static void case_elementwise(suite *s) {
    const int rows = pick(s, ROWS, 7), c = pick(s, WIDTHS, 7);
    const size_t n = (size_t)rows * c;
    float *a = rnd(s, n, 4.0f), *b = rnd(s, n, 4.0f), *row = rnd(s, c, 1.0f), *want = rnd(s, n, 0.f);
    if (s->nomem) return;
    float *ad = dev(s, a, sizeof(float) * n), *bd = dev(s, b, sizeof(float) * n), *rd = dev(s, row, sizeof(float) * c);
    float *yd = dev(s, NULL, sizeof(float) * n);
    if (s->nomem) return;
    msam_ref_add(want, a, b, n);
    s->ops->add(s->ctx, yd, ad, bd, n);
    report(s, "add", rel_err(back(s, yd, n), want, n), 0.0, "%zu floats", n);
    for (int i = 0; i < 3; i++) {
        msam_ref_activate(want, a, n, (msam_act)ACTS[i]);
        s->ops->activate(s->ctx, yd, ad, n, (msam_act)ACTS[i]);
        report(s, "activate", rel_err(back(s, yd, n), want, n), 2e-7, "%zu floats act %d", n, ACTS[i]);
    }
    msam_ref_add_row(want, a, row, rows, c);
    s->ops->add_row(s->ctx, yd, ad, rd, rows, c);
    report(s, "add_row", rel_err(back(s, yd, n), want, n), 0.0, "%d rows x %d", rows, c);
    msam_ref_add_row(want, NULL, row, rows, c);
    s->ops->add_row(s->ctx, yd, NULL, rd, rows, c);
    report(s, "add_row", rel_err(back(s, yd, n), want, n), 0.0, "%d rows x %d onto zeros", rows, c);
    /* copies between op buffers, overlapping (memmove) */
    const size_t shift = n / 3;
    memcpy(want, a, sizeof(float) * n);
    memmove(want, want + shift, sizeof(float) * (n - shift));
    s->ops->copy(s->ctx, ad, ad + shift, sizeof(float) * (n - shift));
    report(s, "copy", rel_err(back(s, ad, n), want, n), 0.0, "%zu floats, overlapping by %zu", n - shift, n - 2 * shift);
}

static void case_transpose(suite *s) {
    const int rows = pick(s, ROWS, 7), cols = pick(s, WIDTHS, 7), pad = (int)(next_u32(s) % 5);
    const int ldx = cols + pad, ldy = rows + pad;
    float *x = rnd(s, (size_t)rows * ldx, 1.0f), *want = rnd(s, (size_t)cols * ldy, 0.f);
    if (s->nomem) return;
    msam_ref_transpose(want, ldy, x, ldx, rows, cols);
    float *xd = dev(s, x, sizeof(float) * rows * ldx), *yd = dev(s, want, sizeof(float) * cols * ldy);
    if (s->nomem) return;
    s->ops->transpose(s->ctx, yd, ldy, xd, ldx, rows, cols);
    report(s, "transpose", rel_err(back(s, yd, (size_t)cols * ldy), want, (size_t)cols * ldy), 0.0, "%dx%d ld %d -> ld %d",
           rows, cols, ldx, ldy);
}

static void case_space_to_depth(suite *s) {
    static const int sides[] = {2, 4, 6, 16, 34};
    const int h = pick(s, sides, 5), w = pick(s, sides, 5), c = pick(s, WIDTHS, 5);
    const size_t n = (size_t)h * w * c;
    float *x = rnd(s, n, 1.0f), *want = rnd(s, n, 0.f);
    if (s->nomem) return;
    msam_ref_space_to_depth2(want, x, h, w, c);
    float *xd = dev(s, x, sizeof(float) * n), *yd = dev(s, NULL, sizeof(float) * n);
    if (s->nomem) return;
    s->ops->space_to_depth2(s->ctx, yd, xd, h, w, c);
    report(s, "space_to_depth2", rel_err(back(s, yd, n), want, n), 0.0, "%dx%dx%d", h, w, c);
}

static void case_normalize(suite *s) {
    static const int sides[] = {1, 5, 31, 64};
    const int side = 64, h = pick(s, sides, 4), w = pick(s, sides, 4), u8 = next_u32(s) & 1;
    const float mean[3] = MSAM_PIXEL_MEAN_INIT, std[3] = MSAM_PIXEL_STD_INIT;
    const size_t out_n = (size_t)side * side * 3, in_n = (size_t)3 * h * w;
    float *xf = rnd(s, in_n, 128.0f), *want = rnd(s, out_n, 0.f);
    if (s->nomem) return;
    const void *x = xf;
    ptrdiff_t sc = (ptrdiff_t)h * w, sy = w, sx = 1; /* f32: planar CHW */
    uint8_t *x8 = (uint8_t *)xf;                    /* u8: packed HWC, written over the floats */
    if (u8) {
        for (size_t i = 0; i < in_n; i++) x8[i] = (uint8_t)(next_u32(s) & 255);
        sc = 1, sy = (ptrdiff_t)w * 3, sx = 3, x = x8;
    }
    msam_ref_normalize_pad(want, side, x, u8 ? MSAM_U8 : MSAM_F32, h, w, sc, sy, sx, mean, std);
    void *xd = dev(s, x, u8 ? in_n : sizeof(float) * in_n);
    float *yd = dev(s, NULL, sizeof(float) * out_n);
    if (s->nomem) return;
    s->ops->normalize_pad(s->ctx, yd, side, xd, u8 ? MSAM_U8 : MSAM_F32, h, w, sc, sy, sx, mean, std);
    report(s, "normalize_pad", rel_err(back(s, yd, out_n), want, out_n), 0.0, "%s %dx%d into %d", u8 ? "u8" : "f32", h,
           w, side);
}

static void case_conv(suite *s) {
    static const int sides[] = {1, 2, 5, 9, 16};
    static const int chans[] = {1, 3, 8, 16, 32};
    const int h = pick(s, sides, 5), w = pick(s, sides, 5), cin = pick(s, chans, 5), cout = pick(s, chans, 5);
    const int stride = 1 + (int)(next_u32(s) & 1);
    const msam_act act = (msam_act)pick(s, ACTS, 3);
    const int ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride;
    const size_t xn = (size_t)h * w * cin, yn = (size_t)ho * wo * cout, dn = (size_t)ho * wo * cin;
    float *x = rnd(s, xn, 1.0f), *wt = rnd(s, (size_t)cout * cin * 9, 0.3f), *b = rnd(s, cout, 0.5f);
    float *w9 = rnd(s, (size_t)9 * cin, 0.5f), *db = rnd(s, cin, 0.5f);
    float *want = rnd(s, yn, 0.f), *want_dw = rnd(s, dn, 0.f);
    if (s->nomem) return;
    msam_ref_conv3x3(want, x, h, w, cin, cout, stride, wt, b, act);
    msam_ref_dwconv3x3(want_dw, x, h, w, cin, stride, w9, db, act);
    float *xd = dev(s, x, sizeof(float) * xn), *yd = dev(s, NULL, sizeof(float) * yn);
    float *w9d = dev(s, w9, sizeof(float) * 9 * cin), *dbd = dev(s, db, sizeof(float) * cin);
    float *dyd = dev(s, NULL, sizeof(float) * dn);
    void *scr = dev(s, NULL, s->ops->conv3x3_scratch_bytes(h, w, cin, stride));
    msam_linear *l = s->nomem ? NULL : lin(s, s->ops->conv3x3_create(s->ctx, wt, b, cout, cin));
    if (s->nomem) return;
    s->ops->conv3x3(s->ctx, yd, xd, h, w, cin, stride, l, act, scr);
    report(s, "conv3x3", rel_err(back(s, yd, yn), want, yn), 1e-5, "%dx%dx%d -> %d stride %d act %d", h, w, cin, cout,
           stride, act);
    s->ops->dwconv3x3(s->ctx, dyd, xd, h, w, cin, stride, w9d, dbd, act);
    report(s, "dwconv3x3", rel_err(back(s, dyd, dn), want_dw, dn), 1e-5, "%dx%dx%d stride %d act %d", h, w, cin,
           stride, act);
}

static void case_window_attention(suite *s) {
    static const int wins[] = {2, 3, 7};
    static const int dhs[] = {4, 8, 16, 32};
    const int win = pick(s, wins, 3), heads = 1 + (int)(next_u32(s) % 3), dh = pick(s, dhs, 4);
    const int h = 1 + (int)(next_u32(s) % 17), w = 1 + (int)(next_u32(s) % 17), n = win * win;
    const size_t qn = (size_t)h * w * 3 * heads * dh, yn = (size_t)h * w * heads * dh;
    float *qkv = rnd(s, qn, 1.0f), *pad = rnd(s, (size_t)3 * heads * dh, 1.0f);
    float *bias = rnd(s, (size_t)heads * n * n, 1.0f), *want = rnd(s, yn, 0.f);
    if (s->nomem) return;
    const float scale = 1.0f / sqrtf((float)dh);
    msam_ref_window_attention(want, qkv, pad, h, w, win, heads, dh, bias, scale);
    float *qd = dev(s, qkv, sizeof(float) * qn), *pd = dev(s, pad, sizeof(float) * 3 * heads * dh);
    float *bd = dev(s, bias, sizeof(float) * heads * n * n), *yd = dev(s, NULL, sizeof(float) * yn);
    const size_t sb = s->ops->window_attention_scratch_bytes(win, heads, dh);
    void *scr = dev(s, NULL, sb);
    if (s->nomem) return;
    s->ops->window_attention(s->ctx, yd, qd, pd, h, w, win, heads, dh, bd, scale, scr, sb);
    report(s, "window_attention", rel_err(back(s, yd, yn), want, yn), 1e-5, "%dx%d win %d heads %d dh %d", h, w, win,
           heads, dh);
}

static void case_attention(suite *s) {
    static const int nqs[] = {1, 5, 7, 16, 40, 300};
    static const int nks[] = {1, 5, 16, 64, 300, 4096};
    static const int dhs[] = {8, 16, 32};
    const int nq = pick(s, nqs, 6), nk = pick(s, nks, 6), heads = 1 + (int)(next_u32(s) % 8), dh = pick(s, dhs, 3);
    const int width = heads * dh;
    float *q = rnd(s, (size_t)nq * width, 1.0f), *k = rnd(s, (size_t)nk * width, 1.0f), *v = rnd(s, (size_t)nk * width, 1.0f);
    float *want = rnd(s, (size_t)nq * width, 0.f);
    if (s->nomem) return;
    msam_ref_attention(want, q, width, k, width, v, width, nq, nk, heads, dh);
    float *qd = dev(s, q, sizeof(float) * nq * width), *kd = dev(s, k, sizeof(float) * nk * width);
    float *vd = dev(s, v, sizeof(float) * nk * width), *yd = dev(s, NULL, sizeof(float) * nq * width);
    if (s->nomem) return;
    s->ops->attention(s->ctx, yd, qd, width, kd, width, vd, width, nq, nk, heads, dh);
    report(s, "attention", rel_err(back(s, yd, (size_t)nq * width), want, (size_t)nq * width), 1e-5,
           "%d queries x %d keys, %d heads of %d", nq, nk, heads, dh);
    if (nk > 64) return; /* attention_probs takes the decoder's few tokens as keys */
    const size_t pn = (size_t)nq * heads * nk;
    float *wp = rnd(s, pn, 0.f), *pd = dev(s, NULL, sizeof(float) * pn);
    if (s->nomem) return;
    msam_ref_attention_probs(wp, (ptrdiff_t)heads * nk, q, width, k, width, nq, nk, heads, dh);
    s->ops->attention_probs(s->ctx, pd, (ptrdiff_t)heads * nk, qd, width, kd, width, nq, nk, heads, dh);
    report(s, "attention_probs", rel_err(back(s, pd, pn), wp, pn), 1e-5, "%d queries x %d keys, %d heads of %d", nq, nk,
           heads, dh);
}

static void case_softmax(suite *s) {
    static const int lens[] = {1, 3, 8, 56, 100, 4096};
    const int count = pick(s, ROWS, 6), len = pick(s, lens, 6), stride = len + (int)(next_u32(s) % 3);
    const size_t n = (size_t)count * stride;
    float *x = rnd(s, n, 6.0f), *want = rnd(s, n, 0.f);
    if (s->nomem) return;
    memcpy(want, x, sizeof(float) * n);
    msam_ref_softmax(want, count, stride, len, 0.25f);
    float *xd = dev(s, x, sizeof(float) * n);
    if (s->nomem) return;
    s->ops->softmax(s->ctx, xd, count, stride, len, 0.25f);
    report(s, "softmax", rel_err(back(s, xd, n), want, n), 1e-6, "%d rows of %d (stride %d)", count, len, stride);
}

static void case_upscale(suite *s) {
    static const int gs[] = {1, 2, 5, 8};
    const int g = pick(s, gs, 4), cin = pick(s, WIDTHS + 2, 4), c1 = 4 * (1 + (int)(next_u32(s) % 4));
    const int c = 4 * (1 + (int)(next_u32(s) % 4)), n = 1 + (int)(next_u32(s) % 4), parts = next_u32(s) & 1;
    const int P = g * g, W = 4 * c1, k = 1 + (int)(next_u32(s) % 16);
    float *x = rnd(s, (size_t)P * cin, 1.0f), *w1 = rnd(s, (size_t)W * cin, 0.3f), *b1 = rnd(s, W, 0.3f);
    float *gm = rnd(s, c1, 1.0f), *bt = rnd(s, c1, 0.5f), *w2 = rnd(s, (size_t)4 * c * c1, 0.3f), *b2 = rnd(s, 4 * c, 0.3f);
    float *hy = rnd(s, (size_t)n * c, 1.0f), *want = rnd(s, (size_t)n * 16 * P, 0.f);
    float *u1 = rnd(s, (size_t)P * 4 * c1, 0.f), *u2 = rnd(s, (size_t)P * 16 * c, 0.f);
    /* the parts form: u = s1 (s0 (P0 M0 + u0) + P1 M1 + f1) + h */
    float *p0 = rnd(s, (size_t)P * k, 1.0f), *p1 = rnd(s, (size_t)P * k, 1.0f), *m0 = rnd(s, (size_t)k * W, 0.3f);
    float *m1 = rnd(s, (size_t)k * W, 0.3f), *u0 = rnd(s, (size_t)P * W, 1.0f), *f1 = rnd(s, W, 0.5f), *hh = rnd(s, W, 0.5f);
    float *s0 = rnd(s, P, 1.0f), *s1 = rnd(s, P, 1.0f), *u = rnd(s, (size_t)P * W, 0.f), *eye = rnd(s, (size_t)W * W, 0.f);
    if (s->nomem) return;
    if (parts) { /* u in double, then the reference from u through an identity first product */
        for (int p = 0; p < P; p++)
            for (int j = 0; j < W; j++) {
                double a = 0.0, b = 0.0;
                for (int i = 0; i < k; i++) a += (double)p0[p * k + i] * m0[i * W + j], b += (double)p1[p * k + i] * m1[i * W + j];
                u[(size_t)p * W + j] = (float)(s1[p] * (s0[p] * (a + u0[(size_t)p * W + j]) + b + f1[j]) + hh[j]);
            }
        for (int i = 0; i < W; i++) eye[(size_t)i * W + i] = 1.0f;
        msam_ref_upscale_masks(want, u, g, W, c1, c, eye, NULL, gm, bt, 1e-6f, w2, b2, hy, n, u1, u2);
    } else {
        msam_ref_upscale_masks(want, x, g, cin, c1, c, w1, b1, gm, bt, 1e-6f, w2, b2, hy, n, u1, u2);
    }
    const size_t sb = s->ops->upscale_masks_scratch_bytes(c1, c);
    float *xd = dev(s, x, sizeof(float) * P * cin), *gd = dev(s, gm, sizeof(float) * c1), *bd = dev(s, bt, sizeof(float) * c1);
    float *hd = dev(s, hy, sizeof(float) * n * c), *ld = dev(s, NULL, sizeof(float) * n * 16 * P);
    void *scr = dev(s, NULL, sb);
    msam_upscale_parts pt = {dev(s, p0, sizeof(float) * P * k), dev(s, p1, sizeof(float) * P * k),
                             dev(s, m0, sizeof(float) * k * W), dev(s, m1, sizeof(float) * k * W),
                             dev(s, u0, sizeof(float) * P * W), dev(s, f1, sizeof(float) * W),
                             dev(s, hh, sizeof(float) * W), dev(s, s0, sizeof(float) * P),
                             dev(s, s1, sizeof(float) * P), k};
    msam_linear *up1 = s->nomem ? NULL : lin(s, s->ops->linear_create(s->ctx, w1, b1, W, cin));
    msam_linear *up2 = s->nomem ? NULL : lin(s, s->ops->linear_create(s->ctx, w2, b2, 4 * c, c1));
    if (s->nomem) return;
    s->ops->upscale_masks(s->ctx, ld, xd, parts ? &pt : NULL, g, up1, gd, bd, 1e-6f, up2, hd, n, scr, sb);
    report(s, "upscale_masks", rel_err(back(s, ld, (size_t)n * 16 * P), want, (size_t)n * 16 * P), 1e-5,
           "g %d cin %d c1 %d c %d n %d%s", g, cin, c1, c, n, parts ? " from parts" : "");
}

static void case_resize(suite *s) {
    static const int sides[] = {1, 3, 16, 64, 256};
    static const int outs[] = {1, 7, 64, 100, 1024};
    const int sh = pick(s, sides, 5), sw = pick(s, sides, 5), dh = pick(s, outs, 5), dw = pick(s, outs, 5);
    const int ch = 1 + (int)(next_u32(s) % (uint32_t)dh), cw = 1 + (int)(next_u32(s) % (uint32_t)dw);
    const size_t n = (size_t)ch * cw;
    float *x = rnd(s, (size_t)sh * sw, 8.0f), *want = rnd(s, n, 0.f);
    if (s->nomem) return;
    msam_ref_resize_bilinear(x, sh, sw, sw, want, dh, dw, cw, ch, cw);
    float *xd = dev(s, x, sizeof(float) * sh * sw), *yd = dev(s, NULL, sizeof(float) * n);
    uint8_t *md = dev(s, NULL, n);
    if (s->nomem) return;
    s->ops->resize_bilinear(s->ctx, xd, sh, sw, sw, yd, dh, dw, cw, ch, cw);
    report(s, "resize_bilinear", rel_err(back(s, yd, n), want, n), 2e-6, "%dx%d -> %dx%d crop %dx%d", sh, sw, dh, dw, ch,
           cw);
    s->ops->resize_bilinear_mask(s->ctx, xd, sh, sw, sw, md, dh, dw, cw, ch, cw);
    uint8_t *m = (uint8_t *)rnd(s, n / 4 + 1, 0.f);
    if (!m) return;
    s->ops->copy_out(s->ctx, m, md, n);
    size_t wrong = 0; /* away from the threshold the mask is the reference's sign */
    for (size_t i = 0; i < n; i++)
        if (fabsf(want[i]) > 1e-4f && m[i] != (want[i] > 0.0f)) wrong++;
    report(s, "resize_bilinear_mask", (double)wrong, 0.0, "%dx%d -> %dx%d crop %dx%d (pixels wrong)", sh, sw, dh, dw, ch,
           cw);
}

/* GPU prompts' tokens: points (int32 or int64 labels, -1..2), padding, a box, against the plain form. */
static void case_prompt_tokens(suite *s) {
    const int n = (int)(next_u32(s) % 6u), has_box = n == 0 || (next_u32(s) & 1), pad = n > 0 && !has_box;
    const int l64 = (int)(next_u32(s) & 1), T = n + pad + 2 * has_box;
    float *coords = rnd(s, 2 * (size_t)n + 1, 600.0f), *box = rnd(s, 4, 600.0f), *tables = rnd(s, 256 + 5 * 256, 1.0f);
    float *want = rnd(s, (size_t)T * 256, 0.f);
    int64_t *labels = (int64_t *)rnd(s, 2 * (size_t)n + 2, 0.f);
    if (s->nomem) return;
    for (int i = 0; i < 2 * n; i++) coords[i] += 500.0f; /* -100 .. 1100: in and outside the frame */
    for (int i = 0; i < n; i++) {
        const int32_t l = (int32_t)(next_u32(s) % 4u) - 1;
        if (l64) labels[i] = l;
        else ((int32_t *)labels)[i] = l;
    }
    msam_ref_prompt_tokens(want, coords, labels, l64, n, pad, has_box ? box : NULL, tables);
    float *cd = dev(s, coords, sizeof(float) * (2 * (size_t)n + 1)), *bd = dev(s, box, sizeof(float) * 4);
    float *td = dev(s, tables, sizeof(float) * (256 + 5 * 256)), *yd = dev(s, NULL, sizeof(float) * T * 256);
    void *ld = dev(s, labels, sizeof(int64_t) * ((size_t)n + 1));
    if (s->nomem) return;
    s->ops->prompt_tokens(s->ctx, yd, n ? cd : NULL, n ? ld : NULL, l64, n, pad, has_box ? bd : NULL, td);
    report(s, "prompt_tokens", rel_err(back(s, yd, (size_t)T * 256), want, (size_t)T * 256), 1e-5,
           "%d points%s%s, int%d labels", n, pad ? " + pad" : "", has_box ? " + box" : "", l64 ? 64 : 32);
}

/* Pillow's resize of a strided RGB8 image in op memory: the table's op, and the plain reference
 * from the plan, both bit for bit against the host resize (itself tested against Pillow). */
static void case_resize_rgb8(suite *s) {
    static const int sides[] = {1, 2, 5, 17, 40, 97};
    const int h = pick(s, sides, 6), w = pick(s, sides, 6), nh = pick(s, sides, 6), nw = pick(s, sides, 6);
    const int ps = 3 + (int)(next_u32(s) % 3u), bgr = (int)(next_u32(s) & 1); /* pixels 3..5 bytes apart */
    const ptrdiff_t rs = (ptrdiff_t)w * ps + (ptrdiff_t)(next_u32(s) % 7u);
    const size_t in_n = (size_t)rs * h, out_n = (size_t)nh * nw * 3, plan_n = msam_resize_plan_len(h, w, nh, nw);
    uint8_t *x = (uint8_t *)rnd(s, in_n / 4 + 1, 0.f), *want = (uint8_t *)rnd(s, out_n / 4 + 1, 0.f);
    uint8_t *ref = (uint8_t *)rnd(s, out_n / 4 + 1, 0.f), *got = (uint8_t *)rnd(s, out_n / 4 + 1, 0.f);
    int32_t *plan = (int32_t *)rnd(s, plan_n, 0.f);
    if (s->nomem) return;
    for (size_t i = 0; i < in_n; i++) x[i] = (uint8_t)(next_u32(s) & 255);
    if (msam_resize_plan(h, w, nh, nw, plan, plan_n) != plan_n ||
        msam_resize_rgb8_pillow(x, h, w, rs, ps, bgr, want, nh, nw) != MSAM_OK) {
        s->nomem = 1;
        return;
    }
    msam_ref_resize_rgb8(plan, x, rs, ps, bgr, ref, nh, nw);
    uint8_t *xd = dev(s, x, in_n), *yd = dev(s, NULL, out_n);
    void *pd = dev(s, NULL, sizeof(int32_t) * plan_n);
    if (s->nomem) return;
    s->ops->resize_rgb8(s->ctx, yd, nh, nw, xd, h, w, rs, ps, bgr, plan, plan_n, pd);
    s->ops->copy_out(s->ctx, got, yd, out_n);
    size_t wrong = 0, ref_wrong = 0;
    for (size_t i = 0; i < out_n; i++) wrong += got[i] != want[i], ref_wrong += ref[i] != want[i];
    report(s, "resize_rgb8", (double)wrong, 0.0, "%dx%d (px %d, row %td%s) -> %dx%d (bytes wrong)", h, w, ps, rs,
           bgr ? ", BGR" : "", nh, nw);
    report(s, "resize_rgb8 (reference from the plan)", (double)ref_wrong, 0.0, "%dx%d -> %dx%d (bytes wrong)", h, w,
           nh, nw);
}

msam_status msam_test_conformance(msam_device device, uint64_t seed, msam_conformance_fn fn, void *user,
                                  msam_error *err) {
    suite s;
    memset(&s, 0, sizeof s);
    if (!fn) return msam_fail(err, MSAM_ERR_ARG, "fn must not be NULL");
    if (!(s.ops = msam_backend_ops(device))) return msam_device_check(device, err); /* not built in */
    if (!(s.ctx = s.ops->ctx_create())) {
        const msam_status st = msam_device_check(device, err); /* no driver, GPU or library: why */
        return st ? st : msam_fail(err, MSAM_ERR_NOMEM, "out of memory for a context");
    }
    s.rng = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    s.fn = fn, s.user = user;
    void (*const cases[])(suite *) = {case_linear, case_matmul, case_layernorm, case_elementwise, case_transpose,
                                      case_space_to_depth, case_normalize, case_conv, case_window_attention,
                                      case_attention, case_softmax, case_upscale, case_resize, case_resize_rgb8, case_prompt_tokens};
    enum { REPEATS = 6 };
    for (int r = 0; r < REPEATS && !s.nomem; r++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0] && !s.nomem; c++) {
            cases[c](&s);
            end_case(&s);
        }
    end_case(&s);
    s.ops->ctx_free(s.ctx);
    if (s.nomem) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory running the conformance suite");
    return MSAM_OK;
}
