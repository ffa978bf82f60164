/* weights.c - named-tensor lookup and the one-time conversions done at model load
 * (BatchNorm folded into the convolution before it), with errors that name the tensor. */
#include "weights.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

msam_status msam_fail(msam_error *err, msam_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int64_t numel_of(const msam_weight *w) {
    int64_t n = 1;
    for (int i = 0; i < w->ndim; i++) n *= w->shape[i];
    return n;
}

const float *msam_wt_get(const msam_weight_table *wt, const char *name, int64_t numel,
                         msam_error *err) {
    for (size_t i = 0; i < wt->n; i++) {
        const msam_weight *w = &wt->items[i];
        if (w->name && strcmp(w->name, name) == 0) {
            if (!w->data) {
                msam_fail(err, MSAM_ERR_WEIGHTS, "weight '%s' has no data", name);
                return NULL;
            }
            if (numel_of(w) != numel) {
                msam_fail(err, MSAM_ERR_WEIGHTS, "weight '%s' has %lld elements, expected %lld",
                          name, (long long)numel_of(w), (long long)numel);
                return NULL;
            }
            return w->data;
        }
    }
    msam_fail(err, MSAM_ERR_WEIGHTS, "weight '%s' is missing", name);
    return NULL;
}

msam_status msam_wt_conv_bn(const msam_weight_table *wt, const char *prefix, int cout,
                            int per_out, float **w_out, float **b_out, msam_error *err) {
    char name[256];
    const float *w, *g, *beta, *mean, *var;
#define GET(dst, suffix, n)                                              \
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);                \
    if (!(dst = msam_wt_get(wt, name, (n), err))) return MSAM_ERR_WEIGHTS;
    GET(w, "c.weight", (int64_t)cout * per_out);
    GET(g, "bn.weight", cout);
    GET(beta, "bn.bias", cout);
    GET(mean, "bn.running_mean", cout);
    GET(var, "bn.running_var", cout);
#undef GET
    float *wf = malloc(sizeof(float) * (size_t)cout * (size_t)per_out);
    float *bf = malloc(sizeof(float) * (size_t)cout);
    if (!wf || !bf) {
        free(wf);
        free(bf);
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory folding '%s'", prefix);
    }
    /* Same arithmetic as Conv2d_BN.fuse: scale = gamma / sqrt(var + eps) in float. */
    for (int o = 0; o < cout; o++) {
        float scale = g[o] / sqrtf(var[o] + 1e-5f);
        for (int i = 0; i < per_out; i++)
            wf[(size_t)o * per_out + i] = w[(size_t)o * per_out + i] * scale;
        bf[o] = beta[o] - mean[o] * scale;
    }
    *w_out = wf;
    *b_out = bf;
    return MSAM_OK;
}
