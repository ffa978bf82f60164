/* emu_gemm.cu - emulation build only: the emulated cuBLAS's column-major SGEMM computed by the CPU
 * backend's GEMM (msam_gemm_dyn), so an emulated encoder runs in minutes rather than hours of
 * plain loops, with the CPU backend's own arithmetic. Unused (empty) under nvcc. */
#if defined(MSAM_CUDA_EMULATION)
#include <stdlib.h>

#include "cuda_ctx.h"

extern "C" {
#include "cpu/gemm.h"
}

/* C = alpha op(A) op(B) + beta C (column-major). Row-major, C^T (n rows of m, ld ldc) is
 * op(B)^T . op(A)^T: for op(B) = B its rows are B's columns (ldb apart), and op(A)^T is the
 * operand W(i, p) = op(A)(i, p) with strides (1, lda) for N or (lda, 1) for T. */
static void cpu_sgemm(int transa, int transb, int m, int n, int k, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return;
    const int simple = transb == 0 && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && k > 0;
    void *scratch = simple ? malloc(msam_gemm_dyn_scratch_bytes(m, k)) : NULL;
    if (scratch) {
        const ptrdiff_t s_n = transa ? lda : 1, s_k = transa ? 1 : lda;
        msam_gemm_dyn(n, B, ldb, A, s_n, s_k, m, k, NULL, MSAM_ACT_NONE, beta == 1.0f ? C : NULL, ldc, C, ldc,
                      scratch);
        free(scratch);
        return;
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0.0;
            for (int p = 0; p < k; p++) {
                const float a = transa ? A[p + (size_t)i * lda] : A[i + (size_t)p * lda];
                const float b = transb ? B[j + (size_t)p * ldb] : B[p + (size_t)j * ldb];
                s += (double)a * b;
            }
            float *c = C + i + (size_t)j * ldc;
            *c = (float)(alpha * s + (beta != 0.0f ? beta * *c : 0.0f));
        }
}

void msam_cuda_emu_plug_cpu_gemm(void) { msam_emu_set_sgemm(cpu_sgemm); }
#endif
