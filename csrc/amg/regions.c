/* regions.c - remove small islands and fill small holes of a binary mask, with the results of
 * MobileSAM's remove_small_regions (OpenCV connectedComponentsWithStats, 8-connectivity)
 * without OpenCV: one raster pass of union-find, components numbered in raster order. */
#include <stdio.h>
#include <stdlib.h>
#include "msam_amg.h"

static int32_t find_root(int32_t *parent, int32_t a) {
    while (parent[a] != a) {
        parent[a] = parent[parent[a]];
        a = parent[a];
    }
    return a;
}

/* Join two provisional labels; the smaller (earlier in raster order) becomes the root. */
static int32_t unite(int32_t *parent, int32_t a, int32_t b) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a < b) { parent[b] = a; return a; }
    parent[a] = b;
    return b;
}

msam_status msam_remove_small_regions(uint8_t *mask, int h, int w, double area_thresh, int islands,
                                      int *changed, msam_error *err) {
    if (!changed || h < 0 || w < 0 || (!mask && h > 0 && w > 0) || (int64_t)h * w >= INT32_MAX) {
        if (err) snprintf(err->msg, sizeof err->msg, "remove_small_regions: bad mask (%d x %d)", h, w);
        return MSAM_ERR_ARG;
    }
    *changed = 0;
    const size_t np = (size_t)h * w;
    if (np == 0) return MSAM_OK;
    /* label[p] = provisional label + 1 of a working pixel (0: not in the working set) */
    int32_t *label = malloc(np * sizeof *label);
    int32_t *parent = malloc((np / 2 + 2) * sizeof *parent);
    int64_t *size = NULL;
    int32_t *final_id = NULL;
    uint8_t *flip = NULL;
    msam_status st = MSAM_ERR_NOMEM; /* until every buffer is had */
    if (!label || !parent) goto done;
    const uint8_t want = islands ? 1 : 0; /* holes: the components of the background */
    int32_t next = 0;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = mask + (size_t)y * w;
        int32_t *lr = label + (size_t)y * w, *up = y ? lr - w : NULL;
        for (int x = 0; x < w; x++) {
            if ((row[x] != 0) != want) {
                lr[x] = 0;
                continue;
            }
            int32_t l = 0; /* the neighbours already visited: W, NW, N, NE */
            const int32_t nb[4] = {x ? lr[x - 1] : 0, up && x ? up[x - 1] : 0, up ? up[x] : 0,
                                   up && x + 1 < w ? up[x + 1] : 0};
            for (int k = 0; k < 4; k++) {
                if (!nb[k]) continue;
                l = l ? unite(parent, l - 1, nb[k] - 1) + 1 : nb[k];
            }
            if (!l) {
                /* a new component: at most one per two pixels in 8-connectivity, plus one */
                parent[next] = next;
                l = ++next;
            }
            lr[x] = l;
        }
    }
    /* Final numbering in raster order of each component's first pixel = order of its root. */
    size = calloc((size_t)next + 1, sizeof *size);
    final_id = malloc(((size_t)next + 1) * sizeof *final_id);
    if (!size || !final_id) goto done;
    int32_t n_comp = 0;
    for (int32_t i = 0; i < next; i++) {
        const int32_t r = find_root(parent, i);
        final_id[i] = r == i ? n_comp++ : final_id[r];
    }
    for (size_t p = 0; p < np; p++)
        if (label[p]) size[final_id[label[p] - 1]]++;
    int any_small = 0;
    for (int32_t c = 0; c < n_comp; c++) any_small |= (double)size[c] < area_thresh;
    if (any_small) {
        if (!(flip = malloc((size_t)n_comp))) goto done;
        *changed = 1;
        int32_t largest = 0, n_big = 0;
        for (int32_t c = 0; c < n_comp; c++) {
            if (size[c] > size[largest]) largest = c;
            n_big += !((double)size[c] < area_thresh);
        }
        for (int32_t c = 0; c < n_comp; c++) {
            const int small = (double)size[c] < area_thresh;
            /* holes: fill the small ones; islands: drop the small ones, or all but the largest */
            flip[c] = islands ? (n_big ? small : c != largest) : small;
        }
        for (size_t p = 0; p < np; p++)
            if (label[p] && flip[final_id[label[p] - 1]]) mask[p] = islands ? 0 : 1;
    }
    st = MSAM_OK;
done:
    if (st && err) snprintf(err->msg, sizeof err->msg, "remove_small_regions: out of memory");
    free(label);
    free(parent);
    free(size);
    free(final_id);
    free(flip);
    return st;
}
