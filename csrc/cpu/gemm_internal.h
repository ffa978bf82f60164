/* gemm_internal.h - private seam between the GEMM driver (gemm.c) and its per-ISA kernels.
 * A kernel computes one NR-wide column panel of C for a run of rows and one K block, with the
 * epilogue (bias, residual, activation) fused into the final K block's store. */
#ifndef MSAM_CPU_GEMM_INTERNAL_H
#define MSAM_CPU_GEMM_INTERNAL_H

#include <stddef.h>
#include "../core/ops.h"

/* Epilogue of one call. FIRST: this is the first K block, so C is not read as an accumulator
 * but bias (+ residual) is added; otherwise the partial sum already in C is added. LAST: the
 * activation is applied before the store. Both set when K fits in one block. Because the
 * residual is consumed by the first block, R may be C itself: every element is read before it
 * is written, by the thread that owns it. */
enum { MSAM_EPI_FIRST = 1, MSAM_EPI_LAST = 2 };

typedef struct {
    const float *bias; /* bias of the panel's first column, or NULL */
    const float *r;    /* residual at (first row, first column of the panel), or NULL */
    ptrdiff_t ldr;
    int flags;         /* MSAM_EPI_* */
    msam_act act;
} msam_gemm_epi;

/* C[0..m) x [0..n) of one K block: C = A[0..m) x B[.., 0..n) (then the epilogue). A rows are
 * lda apart and only A[i][0..kc) for i < m is read. b is the first packed panel restricted to the
 * block (kc rows of NR floats, zero padded past the last column); panel p starts p*panel_stride
 * floats after it. Only columns [0, n) of C, R and bias are touched. The kernel walks MR-row
 * groups outermost and panels inside, so an MR x kc sliver of A stays in L1 while the panels of
 * B (sized by the driver to fit L2) stream past it, and C is written in whole row segments. */
typedef void (*msam_gemm_block_fn)(int m, int n, int kc, const float *a, ptrdiff_t lda,
                                   const float *b, size_t panel_stride, float *c, ptrdiff_t ldc,
                                   const msam_gemm_epi *epi);

typedef struct {
    const char *name;
    int mr, nr;  /* register tile: rows per micro-tile, floats per packed panel row */
    int kc_max;  /* K block: an MR x kc sliver of A and a kc x NR panel of B sit in L1 */
    msam_gemm_block_fn block;
} msam_gemm_kernel;

/* Vector GELU, 0.5 x (1 + erf(x / sqrt 2)), computes h = 1 + erf(z) = 2 - erfc(|z|) (z >= 0) or
 * erfc(|z|) (z < 0), so the negative tail has no cancellation. erfc(t) = 2^G(t) for t = |z| in
 * [0, 4], G = t (G1 + G2 t + ... + G8 t^7) a minimax fit of log2 erfc weighted by erfc (abs.
 * error of h 1.6e-8); 2^G = 2^f 2^n, f in [-1/2, 1/2] by a degree-6 minimax (rel. 1.9e-9), n into
 * the exponent field. t >= 4 gives erfc = 0 (erfc(4) = 1.5e-8; erff rounds to 1 there too). One
 * path, no division, Estrin evaluation for a short dependency chain. Checked on every float in
 * [-30, 30]: |error| <= 1.2e-7 max(1, |x|) against double precision (msam_gelu: 1.1e-7). */
#define MSAM_GELU_G1 -1.627908587e+00f
#define MSAM_GELU_G2 -9.184163809e-01f
#define MSAM_GELU_G3 -1.484816074e-01f
#define MSAM_GELU_G4 2.825368010e-02f
#define MSAM_GELU_G5 -7.746291230e-04f
#define MSAM_GELU_G6 -1.489441958e-03f
#define MSAM_GELU_G7 4.455076996e-04f
#define MSAM_GELU_G8 -4.535860353e-05f
#define MSAM_EXP2_E0 1.000000000e+00f
#define MSAM_EXP2_E1 6.931471825e-01f
#define MSAM_EXP2_E2 2.402264625e-01f
#define MSAM_EXP2_E3 5.550328642e-02f
#define MSAM_EXP2_E4 9.618489072e-03f
#define MSAM_EXP2_E5 1.339993090e-03f
#define MSAM_EXP2_E6 1.534581243e-04f

#if defined(__x86_64__) || defined(__i386__)
extern const msam_gemm_kernel msam_gemm_kernel_avx2;
extern const msam_gemm_kernel msam_gemm_kernel_avx512;
/* y = gelu(x) with the AVX2 kernel's vector GELU; only call when msam_gemm_isa() is not "generic". */
void msam_gelu_avx2(float *y, const float *x, size_t n);
#endif

#endif
