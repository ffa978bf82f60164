/* prompt_tokens.cu - the prompt encoder's sparse tokens from prompts already on the GPU (a
 * detector's boxes, tracked points), so predict needs no device->host read of them. One thread per
 * (token, frequency) writes that frequency's sine and cosine channels plus the learned embeddings;
 * the plain form is csrc/ref/prompt_ref.c (sinf/cosf here are within 2 ulp of the host's). */
#include "../msam_cuda.h"

static __global__ void prompt_tokens_kernel(float *out, const float *coords, const void *labels, int labels_int64,
                                            int n, int pad, const float *box, const float *tables) {
    const int tokens = n + pad + (box ? 2 : 0), total = tokens * 128;
    const float *gauss = tables, *point_emb = tables + 256, *not_a_point = point_emb + 4 * 256;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x) {
        const int t = e / 128, j = e % 128;
        float *row = out + (size_t)t * 256;
        int emb; /* the learned embedding added: point_emb[emb], none when -1 */
        float x, y;
        if (t < n + pad) {
            const long long label = t >= n ? -1 : labels_int64 ? ((const int64_t *)labels)[t] : ((const int32_t *)labels)[t];
            if (label == -1) { /* the encoding is zeroed, then not-a-point added */
                row[j] = not_a_point[j];
                row[128 + j] = not_a_point[128 + j];
                continue;
            }
            emb = label == 0 || label == 1 ? (int)label : -1;
            x = coords[2 * t], y = coords[2 * t + 1];
        } else {
            const int corner = t - (n + pad);
            emb = 2 + corner;
            x = box[2 * corner], y = box[2 * corner + 1];
        }
        x = 2.0f * ((x + 0.5f) / 1024.0f) - 1.0f;
        y = 2.0f * ((y + 0.5f) / 1024.0f) - 1.0f;
        const float a = 6.283185307179586f * (x * gauss[j] + y * gauss[128 + j]);
        float s = sinf(a), c = cosf(a);
        if (emb >= 0) s += point_emb[emb * 256 + j], c += point_emb[emb * 256 + 128 + j];
        row[j] = s;
        row[128 + j] = c;
    }
}

extern "C" int msam_cuda_prompt_tokens(cudaStream_t stream, float *out, const float *coords, const void *labels,
                                       int labels_int64, int n, int pad, const float *box, const float *tables) {
    if (!out || !tables || n < 0 || (n > 0 && (!coords || !labels)) || (n + pad == 0 && !box))
        return (int)cudaErrorInvalidValue;
    const int total = (n + pad + (box ? 2 : 0)) * 128;
    MSAM_LAUNCH(prompt_tokens_kernel, dim3((total + 127) / 128), dim3(128), 0, stream)(
        out, coords, labels, labels_int64, n, pad, box, tables);
    return msam_cuda_status();
}
