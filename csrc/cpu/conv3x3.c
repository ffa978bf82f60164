/* conv3x3.c - dense 3x3 convolution (padding 1, stride 1 or 2) on channels-last maps as im2col +
 * the packed GEMM. im2col is built a block of output rows at a time so its scratch stays a few MB. */
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "cpu_kernels.h"
#include "threads.h"

/* Target size of one im2col block; at least one output row is always taken. */
#define CONV_BLOCK_BYTES ((size_t)4 << 20)

msam_linear *msam_cpu_conv3x3_create(const float *w, const float *bias, int cout, int cin) {
    const size_t k = (size_t)9 * cin;
    float *wr = malloc(sizeof(float) * k * (size_t)cout);
    msam_linear *lin = calloc(1, sizeof *lin);
    if (!wr || !lin) {
        free(wr);
        free(lin);
        return NULL;
    }
    /* [cout][cin][ky][kx] -> [cout][(ky*3+kx)*cin + ci]: the order im2col lays a patch out in. */
    for (int o = 0; o < cout; o++)
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < 9; t++)
                wr[(size_t)o * k + (size_t)t * cin + ci] = w[((size_t)o * cin + ci) * 9 + t];
    lin->n_out = cout;
    lin->k_in = (int)k;
    lin->b = msam_pack_b(wr, cout, (int)k);
    free(wr);
    if (bias) {
        lin->bias = malloc(sizeof(float) * (size_t)cout);
        if (lin->bias) memcpy(lin->bias, bias, sizeof(float) * (size_t)cout);
    }
    if (!lin->b || (bias && !lin->bias)) {
        msam_cpu_linear_free(lin);
        return NULL;
    }
    return lin;
}

/* Output rows per im2col block for a wo-wide output with 9*cin-wide patches. */
static int block_rows(int ho, int wo, int cin) {
    const size_t row_bytes = (size_t)wo * 9 * cin * sizeof(float);
    size_t rows = CONV_BLOCK_BYTES / (row_bytes ? row_bytes : 1);
    if (rows < 1) rows = 1;
    return rows > (size_t)ho ? ho : (int)rows;
}

size_t msam_cpu_conv3x3_scratch_bytes(int h, int w, int cin, int stride) {
    const int ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride;
    return (size_t)block_rows(ho, wo, cin) * wo * 9 * cin * sizeof(float);
}

void msam_cpu_conv3x3(float *y, const float *x, int h, int w, int cin, int stride,
                      const msam_linear *conv, msam_act act, void *scratch) {
    const int ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride;
    const int rows = block_rows(ho, wo, cin), cout = conv->n_out;
    const size_t k = (size_t)9 * cin;
    float *a = scratch;
    for (int oy0 = 0; oy0 < ho; oy0 += rows) {
        const int nr = ho - oy0 < rows ? ho - oy0 : rows;
        const int m = nr * wo;
        /* One patch row per output pixel: taps (ky, kx) each cin wide, zeros outside the map. */
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (m * k > 65536)
        for (int p = 0; p < m; p++) {
            const int oy = oy0 + p / wo, ox = p % wo;
            float *dst = a + (size_t)p * k;
            for (int ky = 0; ky < 3; ky++) {
                const int iy = oy * stride - 1 + ky;
                for (int kx = 0; kx < 3; kx++, dst += cin) {
                    const int ix = ox * stride - 1 + kx;
                    if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                        memset(dst, 0, sizeof(float) * (size_t)cin);
                    else
                        memcpy(dst, x + ((size_t)iy * w + ix) * cin, sizeof(float) * (size_t)cin);
                }
            }
        }
        msam_gemm(m, a, (ptrdiff_t)k, conv->b, conv->bias, act, NULL, 0,
                  y + (size_t)oy0 * wo * cout, cout);
    }
}

