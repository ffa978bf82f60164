/* window_attention.c - TinyViT's windowed multi-head attention on a projected qkv map. A task gathers
 * one window's q/k/v (keys transposed so score rows vectorise) into a per-thread buffer. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "../ref/ref.h"
#include "threads.h"

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_num_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif

#include "vec_avx2.h"

#define QB 6 /* query rows computed together (their score rows are what lives per thread) */




/* A thread's gathered window for heads [h0, h0 + nh): per head i, q_i (in-map queries only,
 * pre-scaled) nq x dh with QB spare rows, kt_i dh x np (keys transposed; np = n rounded up to 8),
 * v_i np x dh; s holds QB score rows. src[t] is token t's qkv row (pad_qkv outside the map). */
typedef struct {
    int n, np, dh, nh, nq;
    float *q, *kt, *v, *s;
    const float **src;
    long *qrow; /* map row of each gathered query */
    int *qtok;  /* its token index inside the window */
} wbuf;

static float *head_q(const wbuf *b, int i) { return b->q + (size_t)i * (b->n + QB) * b->dh; }
static float *head_kt(const wbuf *b, int i) { return b->kt + (size_t)i * b->dh * b->np; }
static float *head_v(const wbuf *b, int i) { return b->v + (size_t)i * b->np * b->dh; }

/* Bytes of one thread's buffers for windows of n tokens and up to nh heads per task. */
static size_t wbuf_bytes(int n, int dh, int nh) {
    const size_t np = ((size_t)n + 7) & ~(size_t)7;
    const size_t per_head = ((size_t)n + QB) * dh + 2 * (size_t)dh * np;
    const size_t floats = (size_t)nh * per_head + (size_t)QB * np;
    const size_t bytes = floats * sizeof(float) + (size_t)n * (sizeof(float *) + sizeof(long) + sizeof(int));
    return (bytes + 63) & ~(size_t)63;
}

/* Lay one thread's buffers over mem (wbuf_bytes(n, dh, nh) bytes), zeroed: query rows past the
 * window's last query and key columns past n are computed on (not stored), so they must hold
 * defined values. */
static void wbuf_place(wbuf *b, char *mem, int n, int dh, int nh) {
    memset(mem, 0, wbuf_bytes(n, dh, nh));
    b->n = n;
    b->np = (n + 7) & ~7;
    b->dh = dh;
    b->nh = nh;
    b->q = (float *)mem;
    b->kt = b->q + (size_t)nh * (n + QB) * dh;
    b->v = b->kt + (size_t)nh * dh * b->np;
    b->s = b->v + (size_t)nh * b->np * dh;
    b->src = (const float **)(b->s + (size_t)QB * b->np);
    b->qrow = (long *)(b->src + n);
    b->qtok = (int *)(b->qrow + n);
}

size_t msam_cpu_window_attention_scratch_bytes(int win, int heads, int dh, int threads) {
    if (win < 1 || heads < 1 || dh < 1 || threads < 1) return 0;
    return (size_t)threads * wbuf_bytes(win * win, dh, heads) + 64;
}

/* Token rows of window (wy, wx) and its in-map queries. */
static void gather_rows(wbuf *b, const float *qkv, const float *pad_qkv, int h, int w, int win,
                        int wy, int wx, int ld) {
    int nq = 0;
    for (int t = 0; t < b->n; t++) {
        const int py = wy * win + t / win, px = wx * win + t % win;
        if (py < h && px < w) {
            const long row = (long)py * w + px;
            b->src[t] = qkv + (size_t)row * ld;
            b->qrow[nq] = row;
            b->qtok[nq] = t;
            nq++;
        } else {
            b->src[t] = pad_qkv;
        }
    }
    b->nq = nq;
}

/* Copy heads [h0, h0 + nh) of the window's tokens into the per-head buffers, token-major so
 * each token's row is read front to back. */
static void gather_heads_generic(wbuf *b, int h0, float scale) {
    const int dh = b->dh, np = b->np;
    int qi = 0;
    for (int t = 0; t < b->n; t++) {
        const int is_q = qi < b->nq && b->qtok[qi] == t;
        for (int i = 0; i < b->nh; i++) {
            const float *src = b->src[t] + (size_t)(h0 + i) * 3 * dh;
            float *kt = head_kt(b, i), *v = head_v(b, i) + (size_t)t * dh;
            for (int d = 0; d < dh; d++) kt[(size_t)d * np + t] = src[dh + d];
            for (int d = 0; d < dh; d++) v[d] = src[2 * dh + d];
            if (is_q) {
                float *q = head_q(b, i) + (size_t)qi * dh;
                for (int d = 0; d < dh; d++) q[d] = src[d] * scale;
            }
        }
        qi += is_q;
    }
}

/* Portable task for gathered head i (global head hd): score rows one query at a time. */
static void task_generic(const wbuf *b, int i, float *y, int ldy, int hd, const float *bias) {
    const int n = b->n, np = b->np, dh = b->dh;
    const float *bh = bias + (size_t)hd * n * n, *kt = head_kt(b, i), *v = head_v(b, i);
    float *s = b->s;
    for (int r = 0; r < b->nq; r++) {
        const float *qr = head_q(b, i) + (size_t)r * dh, *br = bh + (size_t)b->qtok[r] * n;
        for (int j = 0; j < n; j++) s[j] = br[j];
        for (int d = 0; d < dh; d++) {
            const float qd = qr[d], *kd = kt + (size_t)d * np;
            for (int j = 0; j < n; j++) s[j] += qd * kd[j];
        }
        float mx = s[0], sum = 0.0f;
        for (int j = 1; j < n; j++) mx = s[j] > mx ? s[j] : mx;
        for (int j = 0; j < n; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        float *yo = y + (size_t)b->qrow[r] * ldy + (size_t)hd * dh;
        for (int d = 0; d < dh; d++) yo[d] = 0.0f;
        for (int j = 0; j < n; j++) {
            const float p = s[j], *vj = v + (size_t)j * dh;
            for (int d = 0; d < dh; d++) yo[d] += p * vj[d];
        }
        const float inv = 1.0f / sum;
        for (int d = 0; d < dh; d++) yo[d] *= inv;
    }
}

#if MSAM_HAVE_AVX2
/* gather_heads_generic with vector copies and the keys transposed 8 tokens x 8 channels at a
 * time (tokens past n give zero columns). Needs dh % 8 == 0. */
MSAM_TARGET_AVX2 static void gather_heads_avx2(wbuf *b, int h0, float scale) {
    const int dh = b->dh, np = b->np, n = b->n;
    const __m256 sc = _mm256_set1_ps(scale);
    int qi = 0;
    for (int t0 = 0; t0 < np; t0 += 8) {
        for (int i = 0; i < b->nh; i++) {
            float *kt = head_kt(b, i);
            const size_t off = (size_t)(h0 + i) * 3 * dh + dh;
            for (int d0 = 0; d0 < dh; d0 += 8) {
                __m256 r[8];
                for (int k = 0; k < 8; k++)
                    r[k] = t0 + k < n ? _mm256_loadu_ps(b->src[t0 + k] + off + d0) : _mm256_setzero_ps();
                transpose8(r);
                for (int k = 0; k < 8; k++) _mm256_storeu_ps(kt + (size_t)(d0 + k) * np + t0, r[k]);
            }
        }
        for (int t = t0; t < t0 + 8 && t < n; t++) {
            const int is_q = qi < b->nq && b->qtok[qi] == t;
            for (int i = 0; i < b->nh; i++) {
                const float *src = b->src[t] + (size_t)(h0 + i) * 3 * dh;
                float *v = head_v(b, i) + (size_t)t * dh, *q = head_q(b, i) + (size_t)qi * dh;
                for (int d = 0; d < dh; d += 8) {
                    _mm256_storeu_ps(v + d, _mm256_loadu_ps(src + 2 * dh + d));
                    if (is_q) _mm256_storeu_ps(q + d, _mm256_mul_ps(_mm256_loadu_ps(src + d), sc));
                }
            }
            qi += is_q;
        }
    }
}

/* Ask for the qkv slices [off, off + len) of window (wy, wx)'s in-map tokens to be brought
 * towards L2 while the current window computes: the gather is otherwise bound by misses. */
MSAM_TARGET_AVX2 static void prefetch_window(const float *qkv, int h, int w, int win, int wy,
                                             int wx, int ld, int off, int len) {
    const int x0 = wx * win, nx = w - x0 < win ? w - x0 : win;
    for (int py = wy * win; py < h && py < wy * win + win; py++) {
        const float *row = qkv + ((size_t)py * w + x0) * ld + off;
        if (len == ld) {
            const char *p = (const char *)row, *e = (const char *)(row + (size_t)nx * ld);
            for (; p < e; p += 64) _mm_prefetch(p, _MM_HINT_T1);
        } else {
            for (int x = 0; x < nx; x++) {
                const char *p = (const char *)(row + (size_t)x * ld), *e = p + sizeof(float) * len;
                for (; p < e; p += 64) _mm_prefetch(p, _MM_HINT_T1);
            }
        }
    }
}

/* Scores of QB query rows against keys [j, j + 8*NV): an QB x NV register tile, one step per
 * channel d (kT row d holds the keys' channel d contiguously). Loops over the tile carry unroll
 * pragmas so the accumulators stay in registers. */
#define QK_TILE(NV)                                                                              \
    MSAM_TARGET_AVX2 static inline __attribute__((always_inline)) void qk_tile##NV(             \
        const float *q, int dh, const float *kt, int np, float *s) {                             \
        __m256 a[QB][NV];                                                                        \
        _Pragma("GCC unroll 8") for (int r = 0; r < QB; r++)                                     \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) a[r][v] = _mm256_setzero_ps();  \
        for (int d = 0; d < dh; d++) {                                                           \
            __m256 k[NV];                                                                        \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                                 \
                k[v] = _mm256_loadu_ps(kt + (size_t)d * np + 8 * v);                             \
            _Pragma("GCC unroll 8") for (int r = 0; r < QB; r++) {                               \
                const __m256 qv = _mm256_broadcast_ss(q + (size_t)r * dh + d);                   \
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                             \
                    a[r][v] = _mm256_fmadd_ps(qv, k[v], a[r][v]);                                \
            }                                                                                    \
        }                                                                                        \
        _Pragma("GCC unroll 8") for (int r = 0; r < QB; r++)                                     \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                                 \
                _mm256_storeu_ps(s + (size_t)r * np + 8 * v, a[r][v]);                           \
    }
QK_TILE(1)
QK_TILE(2)

/* Value product of rows [r0, r0 + PV_ROWS) of p (QB x np) for channels [c, c + 8*NV). */
#define PV_ROWS 3
#define PV_TILE(NV)                                                                              \
    MSAM_TARGET_AVX2 static inline __attribute__((always_inline)) void pv_tile##NV(             \
        const float *p, int np, int n, const float *v, int dh, __m256 out[PV_ROWS][4]) {         \
        __m256 a[PV_ROWS][NV];                                                                   \
        _Pragma("GCC unroll 4") for (int r = 0; r < PV_ROWS; r++)                                \
            _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) a[r][u] = _mm256_setzero_ps();  \
        for (int j = 0; j < n; j++) {                                                            \
            __m256 x[NV];                                                                        \
            _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++)                                 \
                x[u] = _mm256_loadu_ps(v + (size_t)j * dh + 8 * u);                              \
            _Pragma("GCC unroll 4") for (int r = 0; r < PV_ROWS; r++) {                          \
                const __m256 pr = _mm256_broadcast_ss(p + (size_t)r * np + j);                   \
                _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++)                             \
                    a[r][u] = _mm256_fmadd_ps(pr, x[u], a[r][u]);                                \
            }                                                                                    \
        }                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < PV_ROWS; r++)                                \
            _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) out[r][u] = a[r][u];            \
    }
PV_TILE(1)
PV_TILE(2)
PV_TILE(3)
PV_TILE(4)

/* AVX2 task (dh a multiple of 8): QB query rows at a time. Scores are QB x 16 register tiles
 * over d (a QB x 8 tile for the last keys); the value product is PV_ROWS x 32-channel tiles
 * over keys. Rows of a partial block past nq compute on defined data and are not stored. */
MSAM_TARGET_AVX2 static void task_avx2(const wbuf *b, int i, float *y, int ldy, int hd,
                                       const float *bias) {
    const int n = b->n, np = b->np, dh = b->dh, n8 = n & ~7;
    const float *bh = bias + (size_t)hd * n * n, *kt = head_kt(b, i), *v = head_v(b, i);
    float *s = b->s;
    for (int r0 = 0; r0 < b->nq; r0 += QB) {
        const int nr = b->nq - r0 < QB ? b->nq - r0 : QB;
        const float *q0 = head_q(b, i) + (size_t)r0 * dh;
        int j = 0;
        for (; j + 16 <= np; j += 16) qk_tile2(q0, dh, kt + j, np, s + j);
        if (j < np) qk_tile1(q0, dh, kt + j, np, s + j);
        float inv[QB];
        for (int r = 0; r < QB; r++) {
            float *sr = s + (size_t)r * np;
            if (r >= nr) { /* unused rows: zero weights, never stored */
                memset(sr, 0, sizeof(float) * (size_t)np);
                inv[r] = 0.0f;
                continue;
            }
            const float *br = bh + (size_t)b->qtok[r0 + r] * n;
            __m256 mv = _mm256_set1_ps(-INFINITY);
            for (j = 0; j < n8; j += 8) {
                const __m256 v = _mm256_add_ps(_mm256_loadu_ps(sr + j), _mm256_loadu_ps(br + j));
                _mm256_storeu_ps(sr + j, v);
                mv = _mm256_max_ps(mv, v);
            }
            float mx = hmax8(mv);
            for (; j < n; j++) {
                sr[j] += br[j];
                mx = sr[j] > mx ? sr[j] : mx;
            }
            for (; j < np; j++) sr[j] = -INFINITY;
            const __m256 m8 = _mm256_set1_ps(mx);
            __m256 sv = _mm256_setzero_ps();
            for (j = 0; j < np; j += 8) {
                const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sr + j), m8));
                _mm256_storeu_ps(sr + j, e);
                sv = _mm256_add_ps(sv, e);
            }
            inv[r] = 1.0f / hsum8(sv);
        }
        for (int rr = 0; rr < nr; rr += PV_ROWS) {
            const float *p = s + (size_t)rr * np;
            for (int c = 0; c < dh; c += 32) {
                __m256 o[PV_ROWS][4];
                const int nv = dh - c >= 32 ? 4 : (dh - c) / 8;
                switch (nv) {
                case 4: pv_tile4(p, np, n, v + c, dh, o); break;
                case 3: pv_tile3(p, np, n, v + c, dh, o); break;
                case 2: pv_tile2(p, np, n, v + c, dh, o); break;
                default: pv_tile1(p, np, n, v + c, dh, o); break;
                }
                for (int r = 0; r < PV_ROWS && rr + r < nr; r++) {
                    float *yo = y + (size_t)b->qrow[r0 + rr + r] * ldy + (size_t)hd * dh + c;
                    const __m256 iv = _mm256_set1_ps(inv[rr + r]);
                    for (int u = 0; u < nv; u++) _mm256_storeu_ps(yo + 8 * u, _mm256_mul_ps(o[r][u], iv));
                }
            }
        }
    }
}
#endif

void msam_cpu_window_attention(float *y, const float *qkv, const float *pad_qkv, int h, int w,
                               int win, int heads, int dh, const float *bias, float scale,
                               void *scratch, size_t scratch_bytes) {
    const int nwy = (h + win - 1) / win, nwx = (w + win - 1) / win, n = win * win;
    const int nwin = nwy * nwx;
    /* one buffer per thread, each sized for all heads (tasks never hold more), 64-byte aligned */
    const size_t per_thread = wbuf_bytes(n, dh, heads);
    char *base = scratch ? (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63) : NULL;
    const size_t usable = base ? scratch_bytes - (size_t)(base - (char *)scratch) : 0;
    const size_t fit = base && scratch_bytes >= 64 ? usable / per_thread : 0;
    int threads = msam_threads();
    if (fit == 0) base = NULL;
    else if ((size_t)threads > fit) threads = (int)fit;
    /* A task is one window and a group of its heads. Whole windows read each token's qkv row
     * front to back; heads are split into groups only when windows alone are too few to keep
     * the threads evenly busy (about 4 tasks per thread). */
    int groups = (4 * threads + nwin - 1) / nwin;
    if (groups > heads) groups = heads;
    if (groups < 1) groups = 1;
    const int per = (heads + groups - 1) / groups;
    groups = (heads + per - 1) / per;
    const int tasks = nwin * groups, ld = heads * 3 * dh, ldy = heads * dh;
#if MSAM_HAVE_AVX2
    const int avx2 = dh % 8 == 0 && msam_use_avx2();
#endif
#pragma omp parallel num_threads(threads) if (tasks > 1)
    {
        wbuf b;
        const int nth = omp_get_num_threads();
        char *mem = base ? base + (size_t)omp_get_thread_num() * per_thread : NULL;
        if (mem) wbuf_place(&b, mem, n, dh, per);
        /* Dynamic: edge windows have fewer queries, and a thread that lost its core to other work
         * must not hold back the rest. Tasks are handed out about round robin, so t + nth is a
         * good guess at this thread's next task to prefetch. */
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < tasks; t++) {
            const int g = t % groups, win_i = t / groups, wy = win_i / nwx, wx = win_i % nwx;
            const int h0 = g * per, nh = heads - h0 < per ? heads - h0 : per;
            if (!mem) {
                for (int hd = h0; hd < h0 + nh; hd++)
                    msam_ref_window_task(y, qkv, pad_qkv, h, w, win, wy, wx, hd, heads, dh, bias, scale);
                continue;
            }
            b.nh = nh;
            gather_rows(&b, qkv, pad_qkv, h, w, win, wy, wx, ld);
#if MSAM_HAVE_AVX2
            if (avx2) {
                gather_heads_avx2(&b, h0, scale);
                if (t + nth < tasks) {
                    const int tn = t + nth, gn = tn % groups, wn = tn / groups;
                    const int hn = heads - gn * per < per ? heads - gn * per : per;
                    prefetch_window(qkv, h, w, win, wn / nwx, wn % nwx, ld, gn * per * 3 * dh,
                                    hn * 3 * dh);
                }
                for (int i = 0; i < nh; i++) task_avx2(&b, i, y, ldy, h0 + i, bias);
                continue;
            }
#endif
            gather_heads_generic(&b, h0, scale);
            for (int i = 0; i < nh; i++) task_generic(&b, i, y, ldy, h0 + i, bias);
        }
    }
}
