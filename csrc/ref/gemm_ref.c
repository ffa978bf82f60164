/* gemm_ref.c - the plain matrix product every linear, conv and matmul is checked against:
 * double sums, single-threaded, obviously correct (the accurate side of each comparison). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ref.h"

/* ---- reference ---------------------------------------------------------------------------- */
void msam_ref_gemm(int M, int n, int k, const float *A, ptrdiff_t lda, const float *w_nk,
                   const float *bias, msam_act act, const float *R, ptrdiff_t ldr, float *C,
                   ptrdiff_t ldc) {
    if (M <= 0 || n <= 0 || k < 0 || !C || (k > 0 && (!A || !w_nk))) return;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0.0; /* double sum: the reference is the accurate side of comparisons */
            for (int p = 0; p < k; p++)
                s += (double)A[(ptrdiff_t)i * lda + p] * (double)w_nk[(ptrdiff_t)j * k + p];
            if (bias) s += bias[j];
            if (R) s += R[(ptrdiff_t)i * ldr + j]; /* read before C[i][j] is written (R may be C) */
            C[(ptrdiff_t)i * ldc + j] = msam_apply_act((float)s, act);
        }
    }
}
