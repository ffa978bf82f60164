/* window_attention.cu - TinyViT's windowed attention with its learned bias and softmax in one
 * kernel: a block per (window, head) stages the window's keys and values in shared memory (keys
 * padded to dh + 1 floats so lanes reading different keys hit different banks); each warp takes
 * queries in turn, lanes over keys for the scores, a shuffle max and sum, then lanes over
 * channels for the output. Positions past the map read pad_qkv; their queries are skipped. */
#include "../msam_cuda.h"

#define WA_THREADS 128
#define WA_WARPS (WA_THREADS / MSAM_WARP)
#define WA_MAX_DH 64
#define WA_MAX_TOKENS 256

/* Head hd's q (then k at +dh, v at +2dh) for window token t, and its map row (-1: padding). */
static __device__ __forceinline__ const float *token_qkv(const float *qkv, const float *pad_qkv, int h, int w,
                                                         int win, int wy, int wx, int t, int hd, int heads, int dh,
                                                         long *row) {
    const int py = wy * win + t / win, px = wx * win + t % win;
    if (py < h && px < w) {
        *row = (long)py * w + px;
        return qkv + (size_t)(*row) * (size_t)(heads * 3 * dh) + (size_t)hd * 3 * dh;
    }
    *row = -1;
    return pad_qkv + (size_t)hd * 3 * dh;
}

/* Shared memory: K n x (dh + 1), V n x dh, then per warp its query (dh) and scores (n). */
static size_t wa_shared_bytes(int n, int dh) {
    return sizeof(float) * ((size_t)n * (dh + 1) + (size_t)n * dh + (size_t)WA_WARPS * (dh + n));
}

static __global__ void window_attention_kernel(float *y, const float *qkv, const float *pad_qkv, int h, int w,
                                               int win, int heads, int dh, const float *bias, float scale) {
    MSAM_DYNAMIC_SHARED(float, sm);
    const int n = win * win, nwx = (w + win - 1) / win;
    const int wy = blockIdx.x / nwx, wx = blockIdx.x % nwx, hd = blockIdx.y;
    const int ldk = dh + 1;
    float *K = sm, *V = K + (size_t)n * ldk;
    const int warp = threadIdx.x / MSAM_WARP, lane = threadIdx.x % MSAM_WARP;
    float *q = V + (size_t)n * dh + (size_t)warp * (dh + n), *p = q + dh;

    for (int e = threadIdx.x; e < n * dh; e += blockDim.x) {
        const int t = e / dh, d = e % dh;
        long row;
        const float *src = token_qkv(qkv, pad_qkv, h, w, win, wy, wx, t, hd, heads, dh, &row);
        K[t * ldk + d] = src[dh + d];
        V[t * dh + d] = src[2 * dh + d];
    }
    __syncthreads();

    const float *bh = bias + (size_t)hd * n * n;
    const int ldy = heads * dh;
    for (int i = warp; i < n; i += WA_WARPS) {
        long qrow;
        const float *qs = token_qkv(qkv, pad_qkv, h, w, win, wy, wx, i, hd, heads, dh, &qrow);
        if (qrow < 0) continue; /* the same for the whole warp: padded queries are cropped */
        for (int d = lane; d < dh; d += MSAM_WARP) q[d] = qs[d];
        __syncwarp();
        float mx = -INFINITY;
        for (int j = lane; j < n; j += MSAM_WARP) {
            float s = 0.0f;
            for (int d = 0; d < dh; d++) s += q[d] * K[j * ldk + d];
            s = s * scale + bh[(size_t)i * n + j];
            p[j] = s;
            mx = fmaxf(mx, s);
        }
        mx = msam_warp_max(mx);
        float sum = 0.0f;
        for (int j = lane; j < n; j += MSAM_WARP) {
            const float e = expf(p[j] - mx);
            p[j] = e;
            sum += e;
        }
        sum = msam_warp_sum(sum);
        __syncwarp(); /* all of p[] written before every lane reads it (a shuffle orders no memory) */
        float *yo = y + (size_t)qrow * ldy + (size_t)hd * dh;
        for (int d = lane; d < dh; d += MSAM_WARP) {
            float acc = 0.0f;
            for (int j = 0; j < n; j++) acc += p[j] * V[j * dh + d];
            yo[d] = acc / sum;
        }
        __syncwarp(); /* q and p are rewritten by the next query */
    }
}

extern "C" int msam_cuda_window_attention(cudaStream_t stream, float *y, const float *qkv, const float *pad_qkv,
                                          int h, int w, int win, int heads, int dh, const float *bias, float scale) {
    if (!y || !qkv || !pad_qkv || !bias || h < 1 || w < 1 || win < 1 || win * win > WA_MAX_TOKENS || heads < 1 ||
        dh < 1 || dh > WA_MAX_DH)
        return (int)cudaErrorInvalidValue;
    const int nwin = ((h + win - 1) / win) * ((w + win - 1) / win);
    if (heads > 65535) return (int)cudaErrorInvalidValue;
    const size_t bytes = wa_shared_bytes(win * win, dh);
    if (bytes > 48 * 1024) {
        /* over the default 48 KiB (win 14, dh 32: 54 KiB): opt in first (a function attribute, not
         * stream work; the backend may as well set it once at load) */
        cudaError_t e = cudaFuncSetAttribute(window_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)bytes);
        if (e != cudaSuccess) return (int)e;
    }
    MSAM_LAUNCH(window_attention_kernel, dim3((unsigned)nwin, (unsigned)heads), dim3(WA_THREADS), bytes, stream)(
        y, qkv, pad_qkv, h, w, win, heads, dh, bias, scale);
    return msam_cuda_status();
}
