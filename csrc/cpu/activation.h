/* activation.h - scalar activations shared by CPU kernels (exact erf GELU as torch's default). */
#ifndef MSAM_CPU_ACTIVATION_H
#define MSAM_CPU_ACTIVATION_H
#include <math.h>
#include "../core/ops.h"

static inline float msam_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

static inline float msam_apply_act(float x, msam_act act) {
    if (act == MSAM_ACT_GELU) return msam_gelu(x);
    if (act == MSAM_ACT_RELU) return x > 0.0f ? x : 0.0f;
    return x;
}
#endif
