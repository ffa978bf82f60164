/* attention_probs.cu - the decoder's attention probabilities alone (ops->attention_probs, the
 * image->token attention of layer 0 whose value side is folded into the output projection): a
 * warp per (query, head), lanes over keys, the row's max and sum by shuffles; each lane
 * normalises the probabilities it wrote. */
#include "../msam_cuda.h"

#define AP_THREADS 128
#define AP_WARPS (AP_THREADS / MSAM_WARP)
#define AP_MAX_DH 64

static __global__ void attention_probs_kernel(float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq, const float *k,
                                              ptrdiff_t ldk, int nq, int nk, int heads, int dh, float scale) {
    __shared__ float qs[AP_WARPS][AP_MAX_DH];
    const int warp = threadIdx.x / MSAM_WARP, lane = threadIdx.x % MSAM_WARP;
    const long task = (long)blockIdx.x * AP_WARPS + warp;
    if (task >= (long)nq * heads) return; /* whole warps; no block barrier below */
    const int i = (int)(task / heads), hd = (int)(task % heads);
    float *qw = qs[warp];
    for (int d = lane; d < dh; d += MSAM_WARP) qw[d] = q[(ptrdiff_t)i * ldq + (ptrdiff_t)hd * dh + d];
    __syncwarp();
    float *p = P + (ptrdiff_t)i * ldp + (ptrdiff_t)hd * nk;
    float mx = -INFINITY;
    for (int j = lane; j < nk; j += MSAM_WARP) {
        const float *kj = k + (ptrdiff_t)j * ldk + (ptrdiff_t)hd * dh;
        float s = 0.0f;
        for (int d = 0; d < dh; d++) s += qw[d] * kj[d];
        p[j] = s * scale;
        mx = fmaxf(mx, p[j]);
    }
    mx = msam_warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < nk; j += MSAM_WARP) {
        const float e = expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    sum = msam_warp_sum(sum);
    for (int j = lane; j < nk; j += MSAM_WARP) p[j] = p[j] / sum;
}

extern "C" int msam_cuda_attention_probs(cudaStream_t stream, float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq,
                                         const float *k, ptrdiff_t ldk, int nq, int nk, int heads, int dh) {
    if (nq == 0) return 0;
    if (!P || !q || !k || nq < 0 || nk < 1 || heads < 1 || dh < 1 || dh > AP_MAX_DH ||
        ldp < (ptrdiff_t)heads * nk)
        return (int)cudaErrorInvalidValue;
    MSAM_LAUNCH(attention_probs_kernel, dim3(msam_blocks_for((size_t)nq * heads, AP_WARPS)), dim3(AP_THREADS), 0,
                stream)(P, ldp, q, ldq, k, ldk, nq, nk, heads, dh, 1.0f / sqrtf((float)dh));
    return msam_cuda_status();
}
