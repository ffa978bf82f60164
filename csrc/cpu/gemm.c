/* gemm.c - fp32 GEMM driver: B packing, run-time ISA choice, cache blocking, OpenMP split,
 * plus the portable C micro-kernel and the plain reference. Per-ISA kernels live beside it. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "gemm_internal.h"
#include "activation.h"
#include "threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- portable kernel ---------------------------------------------------------------------- */
/* 4 x 8 register tile written as plain loops with constant bounds, so the compiler keeps the
 * accumulators in vector registers with whatever baseline SIMD the target has (SSE2 on x86-64). */
enum { GEN_MR = 4, GEN_NR = 8 };

static inline float epi_scalar(float v, const float *c, const float *r, const float *bias, int flags,
                               msam_act act) {
    if (flags & MSAM_EPI_FIRST) {
        if (bias) v += *bias;
        if (r) v += *r;
    } else {
        v += *c;
    }
    return (flags & MSAM_EPI_LAST) ? msam_apply_act(v, act) : v;
}

static void generic_block(int m, int n, int kc, const float *a, ptrdiff_t lda, const float *b,
                          size_t panel_stride, float *c, ptrdiff_t ldc, const msam_gemm_epi *e) {
    for (int i0 = 0; i0 < m; i0 += GEN_MR) {
        const int mr = m - i0 < GEN_MR ? m - i0 : GEN_MR;
        const float *ai = a + (ptrdiff_t)i0 * lda;
        for (int j0 = 0, p = 0; j0 < n; j0 += GEN_NR, p++) {
            const int nr = n - j0 < GEN_NR ? n - j0 : GEN_NR;
            const float *bp = b + (size_t)p * panel_stride;
            float acc[GEN_MR][GEN_NR];
            memset(acc, 0, sizeof acc);
            if (mr == GEN_MR) {
                for (int q = 0; q < kc; q++) {
                    const float *bq = bp + (ptrdiff_t)q * GEN_NR;
                    for (int i = 0; i < GEN_MR; i++) {
                        const float av = ai[(ptrdiff_t)i * lda + q];
                        for (int j = 0; j < GEN_NR; j++) acc[i][j] += av * bq[j];
                    }
                }
            } else {
                for (int q = 0; q < kc; q++) {
                    const float *bq = bp + (ptrdiff_t)q * GEN_NR;
                    for (int i = 0; i < mr; i++) {
                        const float av = ai[(ptrdiff_t)i * lda + q];
                        for (int j = 0; j < GEN_NR; j++) acc[i][j] += av * bq[j];
                    }
                }
            }
            for (int i = 0; i < mr; i++) {
                float *ci = c + (ptrdiff_t)(i0 + i) * ldc + j0;
                const float *ri = e->r ? e->r + (ptrdiff_t)(i0 + i) * e->ldr + j0 : NULL;
                const float *bias = e->bias ? e->bias + j0 : NULL;
                for (int j = 0; j < nr; j++)
                    ci[j] = epi_scalar(acc[i][j], ci + j, ri ? ri + j : NULL, bias ? bias + j : NULL,
                                       e->flags, e->act);
            }
        }
    }
}

static const msam_gemm_kernel kernel_generic = {"generic", GEN_MR, GEN_NR, 512, generic_block};

/* ---- ISA choice --------------------------------------------------------------------------- */
enum { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

static int hw_isa(void) {
#ifdef MSAM_EMULATE_AVX512
    return ISA_AVX512; /* test build: the AVX-512 kernel runs on SIMDe, on any CPU this build runs on */
#endif
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the wide register state (XCR0). */
    if (__builtin_cpu_supports("avx512f")) return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
#endif
    return ISA_GENERIC;
}

/* Computed once; racing first callers compute the same value, so a relaxed store is enough. */
static atomic_int g_isa = -1;

static int chosen_isa(void) {
    int isa = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (isa >= 0) return isa;
    isa = hw_isa();
    const char *cap = getenv("MSAM_ISA");
    if (cap) {
        int c = isa;
        if (!strcmp(cap, "generic")) c = ISA_GENERIC;
        else if (!strcmp(cap, "avx2")) c = ISA_AVX2;
        else if (!strcmp(cap, "avx512")) c = ISA_AVX512;
        if (c < isa) isa = c; /* a cap never raises the choice above what the CPU has */
    }
    atomic_store_explicit(&g_isa, isa, memory_order_relaxed);
    return isa;
}

static const msam_gemm_kernel *kernel_for(int isa) {
#if defined(__x86_64__) || defined(__i386__)
    if (isa == ISA_AVX512) return &msam_gemm_kernel_avx512;
    if (isa == ISA_AVX2) return &msam_gemm_kernel_avx2;
#else
    (void)isa;
#endif
    return &kernel_generic;
}

const char *msam_gemm_isa(void) { return kernel_for(chosen_isa())->name; }

/* ---- packed B ----------------------------------------------------------------------------- */
/* Panel p holds columns [p*NR, p*NR+NR) of B = W^T as k rows of NR floats (row kk at kk*NR),
 * zero padded past column n, so a K block [k0, k0+kc) of a panel is one contiguous run and the
 * kernel never needs a column mask on B. Panels are 64-byte aligned. */
struct msam_packed_b {
    int n, k, npanels;
    const msam_gemm_kernel *kern;
    float *data;
    void *raw;
};

/* Fill the panels at data from W, whose element (j, kk) is w[j*s_n + kk*s_k]. A large W is
 * packed by several threads. */
static void pack_panels(float *data, const float *w, ptrdiff_t s_n, ptrdiff_t s_k, int n, int k,
                        int nr) {
    const int npanels = (n + nr - 1) / nr;
    const size_t per_panel = (size_t)k * (size_t)nr;
    const int threads = (size_t)n * (size_t)k >= (1u << 18) ? msam_threads() : 1;
    if (s_n == 1) {
        /* W stored [k][n] (the decoder's image as a right operand): row kk is read once, front to
         * back, and dealt to the panels, each of which is written sequentially. Walking a panel
         * at a time instead reads W down its rows, a stride the hardware prefetcher does not
         * follow past a page. */
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (int kk = 0; kk < k; kk++) {
            const float *src = w + (ptrdiff_t)kk * s_k;
            for (int p = 0; p < npanels; p++) {
                float *row = data + (size_t)p * per_panel + (size_t)kk * (size_t)nr;
                const int j0 = p * nr;
                const int jn = n - j0 < nr ? n - j0 : nr;
                if (jn == 16) { /* whole AVX2 / AVX-512 rows: fixed sizes, copied inline */
                    memcpy(row, src + j0, 16 * sizeof(float));
                } else if (jn == 32) {
                    memcpy(row, src + j0, 32 * sizeof(float));
                } else {
                    int j = 0;
                    for (; j < jn; j++) row[j] = src[j0 + j];
                    for (; j < nr; j++) row[j] = 0.0f;
                }
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int p = 0; p < npanels; p++) {
        float *dst = data + (size_t)p * per_panel;
        const int j0 = p * nr;
        const int jn = n - j0 < nr ? n - j0 : nr;
        for (int kk = 0; kk < k; kk++) {
            float *row = dst + (size_t)kk * (size_t)nr;
            int j = 0;
            for (; j < jn; j++) row[j] = w[(ptrdiff_t)(j0 + j) * s_n + (ptrdiff_t)kk * s_k];
            for (; j < nr; j++) row[j] = 0.0f;
        }
    }
}

msam_packed_b *msam_pack_b(const float *w_nk, int n, int k) {
    if (n < 0 || k < 0 || (!w_nk && (size_t)n * (size_t)k > 0)) return NULL;
    const msam_gemm_kernel *kern = kernel_for(chosen_isa());
    const int nr = kern->nr;
    const size_t npanels = ((size_t)n + (size_t)nr - 1) / (size_t)nr;
    const size_t per_panel = (size_t)k * (size_t)nr;
    if (per_panel && npanels > (SIZE_MAX - 64) / sizeof(float) / per_panel) return NULL;
    const size_t bytes = npanels * per_panel * sizeof(float);

    msam_packed_b *b = (msam_packed_b *)calloc(1, sizeof *b);
    if (!b) return NULL;
    b->raw = malloc(bytes + 64);
    if (!b->raw) {
        free(b);
        return NULL;
    }
    b->data = (float *)(((uintptr_t)b->raw + 63) & ~(uintptr_t)63);
    b->n = n;
    b->k = k;
    b->npanels = (int)npanels;
    b->kern = kern;
    pack_panels(b->data, w_nk, k, 1, n, k, nr);
    return b;
}

void msam_packed_b_free(msam_packed_b *b) {
    if (!b) return;
    free(b->raw);
    free(b);
}

int msam_packed_b_n(const msam_packed_b *b) { return b ? b->n : 0; }
int msam_packed_b_k(const msam_packed_b *b) { return b ? b->k : 0; }

/* ---- driver ------------------------------------------------------------------------------- */
typedef struct {
    int M, n, k, nkb, kc, groups, mb, nb; /* groups: MR-row groups, dealt evenly to mb blocks */
    const float *A;
    ptrdiff_t lda;
    const msam_packed_b *B;
    const float *bias;
    msam_act act;
    const float *R;
    ptrdiff_t ldr;
    float *C;
    ptrdiff_t ldc;
} gemm_job;

/* One task: rows [m0, m1) x panels [p0, p1), every K block, the K loop outermost so the partial
 * sums of a block stay in this thread's C tile (and a residual aliasing C is read first). The
 * panels go to the kernel in chunks of about 192 KiB of B, which stay in L2 while the kernel
 * passes every MR-row sliver of A over them. */
static void run_task(const gemm_job *J, int t) {
    const msam_gemm_kernel *kern = J->B->kern;
    const int nr = kern->nr;
    const int mi = t / J->nb, ni = t % J->nb;
    const long long mr = kern->mr;
    const long long g0 = (long long)J->groups * mi / J->mb, g1 = (long long)J->groups * (mi + 1) / J->mb;
    const int m0 = (int)(g0 * mr);
    const int m1 = g1 * mr < J->M ? (int)(g1 * mr) : J->M;
    if (m0 >= m1) return;
    const int np = J->B->npanels;
    const int p0 = (int)((long long)np * ni / J->nb), p1 = (int)((long long)np * (ni + 1) / J->nb);
    const size_t per_panel = (size_t)J->k * (size_t)nr;
    int chunk = (int)((192u << 10) / ((size_t)J->kc * (size_t)nr * sizeof(float)));
    if (chunk < 1) chunk = 1;
    for (int kb = 0; kb < J->nkb; kb++) {
        const int k0 = kb * J->kc;
        const int kc = J->k - k0 < J->kc ? J->k - k0 : J->kc;
        msam_gemm_epi e;
        e.flags = (kb == 0 ? MSAM_EPI_FIRST : 0) | (kb == J->nkb - 1 ? MSAM_EPI_LAST : 0);
        e.act = J->act;
        e.ldr = J->ldr;
        for (int p = p0; p < p1; p += chunk) {
            const int pe = p + chunk < p1 ? p + chunk : p1;
            const int j0 = p * nr;
            const int j1 = pe * nr < J->n ? pe * nr : J->n;
            e.bias = J->bias ? J->bias + j0 : NULL;
            e.r = J->R ? J->R + (ptrdiff_t)m0 * J->ldr + j0 : NULL;
            kern->block(m1 - m0, j1 - j0, kc, J->A + (ptrdiff_t)m0 * J->lda + k0, J->lda,
                        J->B->data + (size_t)p * per_panel + (size_t)k0 * (size_t)nr, per_panel,
                        J->C + (ptrdiff_t)m0 * J->ldc + j0, J->ldc, &e);
        }
    }
}

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

static void gemm_run(int M, const float *A, ptrdiff_t lda, const msam_packed_b *B, const float *bias,
                     msam_act act, const float *R, ptrdiff_t ldr, float *C, ptrdiff_t ldc, int max_threads) {
    if (M <= 0 || !B || !C || B->n <= 0) return;
    const int n = B->n, k = B->k;
    if (k == 0 || !A) {
        /* empty sum: only the epilogue (A is not read, so may be NULL when k == 0) */
        if (k != 0) return;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < n; j++) {
                float v = (bias ? bias[j] : 0.0f) + (R ? R[(ptrdiff_t)i * ldr + j] : 0.0f);
                C[(ptrdiff_t)i * ldc + j] = msam_apply_act(v, act);
            }
        return;
    }
    const msam_gemm_kernel *kern = B->kern;
    gemm_job J;
    J.M = M; J.n = n; J.k = k;
    J.A = A; J.lda = lda; J.B = B; J.bias = bias; J.act = act;
    J.R = R; J.ldr = ldr; J.C = C; J.ldc = ldc;

    /* K blocks of equal size <= kc_max (an MR x kc sliver of A stays in L1 while kc x NR
     * panels of B stream past it). */
    J.nkb = ceil_div(k, kern->kc_max);
    J.kc = ceil_div(k, J.nkb);

    int threads = 1;
#ifdef _OPENMP
    threads = max_threads;
    if (threads < 1) threads = 1;
    {
        /* at least ~128 K multiply-adds per thread, or the fork and join (a microsecond or two
         * with the pool spinning) cost more than they save; the decoder's token-side linears
         * (7 x 256 x 256) are that small, and mostly wait on their weights, which two cores
         * fetch faster than one (predict -1..3% against a 512 K threshold) */
        const double per = (double)M * (double)n * (double)k / 131072.0;
        if (per < threads) threads = per < 1.0 ? 1 : (int)per;
    }
#endif
    /* Row blocks of whole MR-row groups. Each block passes over every B chunk once, so it should
     * be tall enough to reuse a chunk from L2 many times; with several K blocks its C (rows x n)
     * is revisited once per K block, so it should also stay about L2-sized. */
    const int groups = ceil_div(M, kern->mr);
    int rows = J.nkb > 1 ? 65536 / n : 384;
    if (rows < kern->mr) rows = kern->mr;
    int mb = ceil_div(M, rows), nb = 1;
    if (threads > 1) {
        if (mb >= threads) {
            /* at least 4 blocks per thread (of 8+ row groups each) for the dynamic schedule, so
             * a thread that loses its core to other work does not hold the rest back */
            int want = 4 * threads;
            if (want > groups / 8) want = groups / 8;
            if (mb < want) mb = want;
            mb = ceil_div(mb, threads) * threads;
        } else {
            /* few rows: split the columns, so each thread reads only its share of B */
            nb = ceil_div(threads, mb);
            if (nb > B->npanels) nb = B->npanels;
        }
    }
    if (mb > groups) mb = groups;
    J.groups = groups; J.mb = mb; J.nb = nb;
    const int tasks = mb * nb;
    if (threads > tasks) threads = tasks;
    if (threads <= 1) {
        for (int t = 0; t < tasks; t++) run_task(&J, t);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int t = 0; t < tasks; t++) run_task(&J, t);
#endif
}

void msam_gemm(int M, const float *A, ptrdiff_t lda, const msam_packed_b *B, const float *bias,
               msam_act act, const float *R, ptrdiff_t ldr, float *C, ptrdiff_t ldc) {
    gemm_run(M, A, lda, B, bias, act, R, ldr, C, ldc, msam_threads());
}

void msam_gemm_serial(int M, const float *A, ptrdiff_t lda, const msam_packed_b *B, const float *bias,
                      msam_act act, const float *R, ptrdiff_t ldr, float *C, ptrdiff_t ldc) {
    gemm_run(M, A, lda, B, bias, act, R, ldr, C, ldc, 1);
}

/* ---- per-call operands ---------------------------------------------------------------- */
size_t msam_gemm_dyn_scratch_bytes(int n, int k) {
    if (n <= 0 || k <= 0) return 64;
    const int nr = kernel_for(chosen_isa())->nr;
    return ((size_t)n + (size_t)nr - 1) / (size_t)nr * (size_t)nr * (size_t)k * sizeof(float) + 64;
}

/* A packed-B header over the caller's scratch (nothing to free), packing w unless it is there. */
static void dyn_operand(msam_packed_b *b, const float *w, ptrdiff_t s_n, ptrdiff_t s_k, int n, int k,
                        void *scratch, int packed) {
    const msam_gemm_kernel *kern = kernel_for(chosen_isa());
    b->n = n;
    b->k = k;
    b->npanels = (n + kern->nr - 1) / kern->nr;
    b->kern = kern;
    b->raw = NULL;
    b->data = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    if (k > 0 && !packed) pack_panels(b->data, w, s_n, s_k, n, k, kern->nr);
}

void msam_gemm_dyn(int M, const float *A, ptrdiff_t lda, const float *w, ptrdiff_t s_n,
                   ptrdiff_t s_k, int n, int k, const float *bias, msam_act act, const float *R,
                   ptrdiff_t ldr, float *C, ptrdiff_t ldc, void *scratch) {
    if (M <= 0 || n <= 0 || !C || !scratch) return;
    msam_packed_b b;
    dyn_operand(&b, w, s_n, s_k, n, k, scratch, 0);
    msam_gemm(M, A, lda, &b, bias, act, R, ldr, C, ldc);
}

void msam_gemm_dyn_serial(int M, const float *A, ptrdiff_t lda, const float *w, ptrdiff_t s_n,
                          ptrdiff_t s_k, int n, int k, const float *bias, msam_act act, const float *R,
                          ptrdiff_t ldr, float *C, ptrdiff_t ldc, void *scratch, int packed) {
    if (M <= 0 || n <= 0 || !C || !scratch) return;
    msam_packed_b b;
    dyn_operand(&b, w, s_n, s_k, n, k, scratch, packed);
    msam_gemm_serial(M, A, lda, &b, bias, act, R, ldr, C, ldc);
}

