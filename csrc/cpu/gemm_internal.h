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

/* Rows [0, m) of C (rows ldc apart, starting at the panel's first column) get
 * A[0..m) x Bpanel over one K block of kc. A rows are lda apart; only A[i][0..kc) for i < m is
 * read. bp is the packed panel restricted to the block: kc rows of NR floats (zero padded past
 * column n). Only columns [0, nr) of C / R / bias are touched (nr <= NR). */
typedef void (*msam_gemm_panel_fn)(int m, int kc, const float *a, ptrdiff_t lda, const float *bp,
                                   float *c, ptrdiff_t ldc, int nr, const msam_gemm_epi *epi);

typedef struct {
    const char *name;
    int mr, nr;  /* register tile: rows per micro-tile, floats per packed panel row */
    int kc_max;  /* K block so a kc x NR panel of B stays in L1 */
    msam_gemm_panel_fn panel;
} msam_gemm_kernel;

#if defined(__x86_64__) || defined(__i386__)
extern const msam_gemm_kernel msam_gemm_kernel_avx2;
extern const msam_gemm_kernel msam_gemm_kernel_avx512;
#endif

#endif
