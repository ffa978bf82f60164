/* attention.cu - the mask decoder's multi-head attention (ops->attention) in one pass: a warp per
 * (query, head), lanes over keys with an online softmax (running max, rescaled sum and output
 * per lane), merged across the warp by shuffles, so no score matrix is stored for any nk. */
#include "../msam_cuda.h"

#define AT_THREADS 128
#define AT_WARPS (AT_THREADS / MSAM_WARP)
#define AT_MAX_DH 64

static __global__ void attention_kernel(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                                        const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh,
                                        float scale) {
    __shared__ float qs[AT_WARPS][AT_MAX_DH];
    const int warp = threadIdx.x / MSAM_WARP, lane = threadIdx.x % MSAM_WARP;
    const long task = (long)blockIdx.x * AT_WARPS + warp;
    if (task >= (long)nq * heads) return; /* whole warps; no block barrier below */
    const int i = (int)(task / heads), hd = (int)(task % heads);
    float *qw = qs[warp];
    for (int d = lane; d < dh; d += MSAM_WARP) qw[d] = q[(ptrdiff_t)i * ldq + (ptrdiff_t)hd * dh + d];
    __syncwarp();

    float m = -INFINITY, l = 0.0f, acc[AT_MAX_DH];
#pragma unroll
    for (int d = 0; d < AT_MAX_DH; d++) acc[d] = 0.0f;
    for (int j = lane; j < nk; j += MSAM_WARP) {
        const float *kj = k + (ptrdiff_t)j * ldk + (ptrdiff_t)hd * dh;
        const float *vj = v + (ptrdiff_t)j * ldv + (ptrdiff_t)hd * dh;
        float s = 0.0f;
        for (int d = 0; d < dh; d++) s += qw[d] * kj[d];
        s *= scale;
        if (s > m) { /* a new maximum: rescale what this lane has summed */
            const float f = expf(m - s);
            l *= f;
#pragma unroll
            for (int d = 0; d < AT_MAX_DH; d++) acc[d] *= f;
            m = s;
        }
        const float e = expf(s - m);
        l += e;
#pragma unroll
        for (int d = 0; d < AT_MAX_DH; d++)
            if (d < dh) acc[d] += e * vj[d];
    }
    const float mall = msam_warp_max(m);
    const float f = m == -INFINITY ? 0.0f : expf(m - mall); /* a lane with no key contributes 0 */
    const float lsum = msam_warp_sum(l * f);
    float *o = out + (size_t)i * heads * dh + (size_t)hd * dh;
#pragma unroll
    for (int d = 0; d < AT_MAX_DH; d++) {
        if (d >= dh) break; /* dh is the same for the whole warp */
        const float a = msam_warp_sum(acc[d] * f);
        if (lane == d % MSAM_WARP) o[d] = a / lsum;
    }
}

extern "C" int msam_cuda_attention(cudaStream_t stream, float *out, const float *q, ptrdiff_t ldq, const float *k,
                                   ptrdiff_t ldk, const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh) {
    if (nq == 0) return 0;
    if (!out || !q || !k || !v || nq < 0 || nk < 1 || heads < 1 || dh < 1 || dh > AT_MAX_DH)
        return (int)cudaErrorInvalidValue;
    const size_t tasks = (size_t)nq * heads;
    MSAM_LAUNCH(attention_kernel, dim3(msam_blocks_for(tasks, AT_WARPS)), dim3(AT_THREADS), 0, stream)(
        out, q, ldq, k, ldk, v, ldv, nq, nk, heads, dh, 1.0f / sqrtf((float)dh));
    return msam_cuda_status();
}
