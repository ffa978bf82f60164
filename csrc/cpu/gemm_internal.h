/* gemm_internal.h - private seam between the GEMM driver (gemm.c) and its per-ISA kernels.
 * A kernel computes one NR-wide column panel of C for a run of rows and one K block, with the
 * epilogue (bias, residual, activation) fused into the final K block's store. */
#ifndef MSAM_CPU_GEMM_INTERNAL_H
#define MSAM_CPU_GEMM_INTERNAL_H

#include <stddef.h>
#include "../core/ops.h"
#include "activation.h" /* the vector GELU's constants */

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

#if defined(__x86_64__) || defined(__i386__)
extern const msam_gemm_kernel msam_gemm_kernel_avx2;
extern const msam_gemm_kernel msam_gemm_kernel_avx512;
/* y = gelu(x) with the AVX2 kernel's vector GELU; only call when msam_gemm_isa() is not "generic". */
void msam_gelu_avx2(float *y, const float *x, size_t n);
#endif

#endif
