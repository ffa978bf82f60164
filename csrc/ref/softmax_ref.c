/* softmax_ref.c - the plain softmax of strided rows (ops->softmax's reference),
 * with the sum in double. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ref.h"

/* Plain reference: max, exp, sum and divide per vector, in double for the sum. */
void msam_ref_softmax(float *x, int count, ptrdiff_t stride, int len, float scale) {
    for (int a = 0; a < count; a++) {
        float *v = x + (ptrdiff_t)a * stride;
        float mx = -INFINITY;
        for (int j = 0; j < len; j++) mx = fmaxf(mx, v[j] * scale);
        double sum = 0.0;
        for (int j = 0; j < len; j++) sum += exp((double)(v[j] * scale - mx));
        for (int j = 0; j < len; j++) v[j] = (float)(exp((double)(v[j] * scale - mx)) / sum);
    }
}
