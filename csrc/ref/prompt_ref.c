/* prompt_ref.c - the sparse prompt tokens (random-Fourier encoding of points and box corners plus
 * their learned embeddings) from prompts in op memory: the plain form of ops->prompt_tokens. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ref.h"

#define PE_FEATS 128
#define TWO_PI_F 6.283185307179586f

/* PositionEmbeddingRandom._pe_encode of a point in the 1024 frame (+0.5, normalised, 2x - 1). */
static void encode(const float *gauss, float x, float y, float *out) {
    x = 2.0f * ((x + 0.5f) / 1024.0f) - 1.0f;
    y = 2.0f * ((y + 0.5f) / 1024.0f) - 1.0f;
    for (int j = 0; j < PE_FEATS; j++) {
        const float a = TWO_PI_F * (x * gauss[j] + y * gauss[PE_FEATS + j]);
        out[j] = sinf(a);
        out[PE_FEATS + j] = cosf(a);
    }
}

void msam_ref_prompt_tokens(float *out, const float *coords, const void *labels, int labels_int64, int n, int pad,
                            const float *box, const float *tables) {
    const float *gauss = tables, *point_emb = tables + 2 * PE_FEATS, *not_a_point = point_emb + 4 * 256;
    for (int i = 0; i < n + pad; i++, out += 256) {
        const long long label = i >= n ? -1 : labels_int64 ? ((const int64_t *)labels)[i] : ((const int32_t *)labels)[i];
        if (label == -1) { /* the encoding is zeroed, then not-a-point added */
            memcpy(out, not_a_point, sizeof(float) * 256);
            continue;
        }
        encode(gauss, coords[2 * i], coords[2 * i + 1], out);
        if (label == 0 || label == 1)
            for (int c = 0; c < 256; c++) out[c] += point_emb[label * 256 + c];
    }
    if (box)
        for (int corner = 0; corner < 2; corner++, out += 256) {
            encode(gauss, box[2 * corner], box[2 * corner + 1], out);
            for (int c = 0; c < 256; c++) out[c] += point_emb[(2 + corner) * 256 + c];
        }
}
