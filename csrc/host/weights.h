/* weights.h - looking up named tensors handed to msam_model_create and converting them once:
 * BatchNorm folded into the preceding convolution, tables expanded. Used only at model load. */
#ifndef MSAM_WEIGHTS_H
#define MSAM_WEIGHTS_H

#include "msam.h"

typedef struct {
    const msam_weight *items;
    size_t n;
} msam_weight_table;

/* The tensor called name with exactly numel elements, or NULL with err set. */
const float *msam_wt_get(const msam_weight_table *wt, const char *name, int64_t numel,
                         msam_error *err);

/* A TinyViT Conv2d_BN ("<prefix>.c.weight" + "<prefix>.bn.*", eps 1e-5) folded into one
 * convolution: *w_out (malloc'd, same layout as the conv weight, cout x per_out) and *b_out
 * (malloc'd, cout). Returns MSAM_OK or an error naming the tensor. */
msam_status msam_wt_conv_bn(const msam_weight_table *wt, const char *prefix, int cout,
                            int per_out, float **w_out, float **b_out, msam_error *err);

/* snprintf into err (if not NULL) and return code. */
msam_status msam_fail(msam_error *err, msam_status code, const char *fmt, ...);

#endif
