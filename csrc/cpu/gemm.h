/* gemm.h - fp32 matrix multiply for the CPU backend: C = act(A . B + bias + residual).
 * B (a weight) is packed once at load for the micro-kernel chosen at run time (AVX-512, AVX2/FMA
 * or generic C); A and C are row-major activations. Its reference is msam_ref_gemm (ref/). */
#ifndef MSAM_CPU_GEMM_H
#define MSAM_CPU_GEMM_H

#include <stddef.h>
#include "../core/ops.h"

typedef struct msam_packed_b msam_packed_b;

/* Pack B = W^T from a PyTorch Linear weight W [n][k] (row-major). NULL on no memory. */
msam_packed_b *msam_pack_b(const float *w_nk, int n, int k);
void msam_packed_b_free(msam_packed_b *b);
int msam_packed_b_n(const msam_packed_b *b);
int msam_packed_b_k(const msam_packed_b *b);

/* C[m, j] = act(sum_p A[m, p] * B[p, j] + bias[j] + R[m, j]) for m < M, j < n, p < k.
 * A rows lda apart, C rows ldc apart, R (may be NULL, or exactly C with ldr == ldc) rows ldr
 * apart; bias may be NULL. Threads: up to msam_threads(), split over rows and columns. */
void msam_gemm(int M, const float *A, ptrdiff_t lda, const msam_packed_b *B, const float *bias,
               msam_act act, const float *R, ptrdiff_t ldr, float *C, ptrdiff_t ldc);

/* The same on the calling thread only (for kernels that already run one task per thread). */
void msam_gemm_serial(int M, const float *A, ptrdiff_t lda, const msam_packed_b *B, const float *bias,
                      msam_act act, const float *R, ptrdiff_t ldr, float *C, ptrdiff_t ldc);

/* Same contract with B = W^T made during the call: W's element (j, p) is w[j*s_n + p*s_k]
 * (s_n = k, s_k = 1: a Linear weight [n][k]; s_n = 1, s_k = ldw: a row-major [k][n] matrix). W is
 * packed into scratch, which holds msam_gemm_dyn_scratch_bytes(n, k) bytes (no allocation). */
size_t msam_gemm_dyn_scratch_bytes(int n, int k);
void msam_gemm_dyn(int M, const float *A, ptrdiff_t lda, const float *w, ptrdiff_t s_n,
                   ptrdiff_t s_k, int n, int k, const float *bias, msam_act act, const float *R,
                   ptrdiff_t ldr, float *C, ptrdiff_t ldc, void *scratch);

/* msam_gemm_dyn on the calling thread only; with packed != 0, scratch already holds this w's
 * packing from an earlier call (a kernel multiplying blocks by the same operand packs it once). */
void msam_gemm_dyn_serial(int M, const float *A, ptrdiff_t lda, const float *w, ptrdiff_t s_n,
                          ptrdiff_t s_k, int n, int k, const float *bias, msam_act act, const float *R,
                          ptrdiff_t ldr, float *C, ptrdiff_t ldc, void *scratch, int packed);


/* "avx512", "avx2" or "generic"; MSAM_ISA=generic|avx2|avx512 in the environment caps it. */
const char *msam_gemm_isa(void);

#endif
