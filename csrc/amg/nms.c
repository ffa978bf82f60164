/* nms.c - non-maximum suppression with torchvision's arithmetic and tie-breaking (float32 IoU,
 * compared in double; stable descending score order), for the generator's duplicate removal. */
#include <stdio.h>
#include <stdlib.h>
#include "msam_amg.h"

typedef struct {
    float score;
    int index;
} ranked;

/* Descending score, then ascending index: the order of a stable descending sort. NaN scores
 * rank first, as they do in torch.sort(descending=True). */
static int by_score_desc(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    const int an = a->score != a->score, bn = b->score != b->score;
    if (an != bn) return an ? -1 : 1;
    if (!an && a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

msam_status msam_nms(const float *boxes, const float *scores, int n, double iou_threshold,
                     int64_t *keep, int *n_keep, msam_error *err) {
    if (n < 0 || (n > 0 && (!boxes || !scores || !keep)) || !n_keep) {
        if (err) snprintf(err->msg, sizeof err->msg, "nms: bad arguments (n = %d)", n);
        return MSAM_ERR_ARG;
    }
    *n_keep = 0;
    if (n == 0) return MSAM_OK;
    ranked *order = malloc((size_t)n * sizeof *order);
    float *area = malloc((size_t)n * sizeof *area);
    unsigned char *dropped = calloc((size_t)n, 1);
    if (!order || !area || !dropped) {
        free(order);
        free(area);
        free(dropped);
        if (err) snprintf(err->msg, sizeof err->msg, "nms: out of memory for %d boxes", n);
        return MSAM_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        const float *b = boxes + 4 * (size_t)i;
        order[i].score = scores[i];
        order[i].index = i;
        area[i] = (b[2] - b[0]) * (b[3] - b[1]);
    }
    qsort(order, (size_t)n, sizeof *order, by_score_desc);
    int kept = 0;
    for (int a = 0; a < n; a++) {
        const int i = order[a].index;
        if (dropped[i]) continue;
        keep[kept++] = i;
        const float *bi = boxes + 4 * (size_t)i;
        for (int c = a + 1; c < n; c++) {
            const int j = order[c].index;
            if (dropped[j]) continue;
            const float *bj = boxes + 4 * (size_t)j;
            const float xx1 = bi[0] > bj[0] ? bi[0] : bj[0], yy1 = bi[1] > bj[1] ? bi[1] : bj[1];
            const float xx2 = bi[2] < bj[2] ? bi[2] : bj[2], yy2 = bi[3] < bj[3] ? bi[3] : bj[3];
            const float iw = xx2 - xx1 > 0.0f ? xx2 - xx1 : 0.0f;
            const float ih = yy2 - yy1 > 0.0f ? yy2 - yy1 : 0.0f;
            const float inter = iw * ih;
            const float iou = inter / (area[i] + area[j] - inter);
            if ((double)iou > iou_threshold) dropped[j] = 1;
        }
    }
    *n_keep = kept;
    free(order);
    free(area);
    free(dropped);
    return MSAM_OK;
}
