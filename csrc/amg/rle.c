/* rle.c - COCO uncompressed run-length encoding of binary masks (column-major runs of 0 and 1)
 * and the mask box: the compact form every generated mask is kept in until output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "msam_amg.h"

static void set_err(msam_error *err, const char *msg) {
    if (err) snprintf(err->msg, sizeof err->msg, "%s", msg);
}

void msam_rle_free(msam_rle *r) {
    if (!r) return;
    free(r->counts);
    r->counts = NULL;
    r->n = r->cap = 0;
}

static int rle_push(msam_rle *r, uint32_t v) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        uint32_t *c = realloc(r->counts, cap * sizeof *c);
        if (!c) return -1;
        r->counts = c;
        r->cap = cap;
    }
    r->counts[r->n++] = v;
    return 0;
}

/* The encoder's state: the value of the run in progress and its length. */
typedef struct {
    msam_rle *r;
    int value;
    uint64_t run;
    int failed;
} run_state;

static void run_add(run_state *s, int v, uint64_t len) {
    if (len == 0) return;
    if (v != s->value) {
        if (rle_push(s->r, (uint32_t)s->run) < 0) s->failed = 1;
        s->value = v;
        s->run = 0;
    }
    s->run += len;
}

/* Tile-transpose an h x w row-major block into column-major (w rows of h), so the column walk
 * reads memory in order. */
static void transpose_u8(const uint8_t *src, int h, int w, ptrdiff_t ld, uint8_t *dst) {
    enum { T = 32 };
    for (int y0 = 0; y0 < h; y0 += T)
        for (int x0 = 0; x0 < w; x0 += T) {
            const int y1 = y0 + T < h ? y0 + T : h, x1 = x0 + T < w ? x0 + T : w;
            for (int x = x0; x < x1; x++)
                for (int y = y0; y < y1; y++) dst[(size_t)x * h + y] = src[y * ld + x] != 0;
        }
}

msam_status msam_rle_encode(const uint8_t *mask, int h, int w, ptrdiff_t ld, int x0, int y0,
                            int full_h, int full_w, msam_rle *out, msam_error *err) {
    if (!out || (!mask && h > 0 && w > 0) || h < 0 || w < 0 || x0 < 0 || y0 < 0 ||
        (int64_t)x0 + w > full_w || (int64_t)y0 + h > full_h || (int64_t)full_h * full_w > UINT32_MAX) {
        set_err(err, "rle_encode: the mask must lie inside the image, which must have < 2^32 pixels");
        return MSAM_ERR_ARG;
    }
    out->n = 0;
    uint8_t *colmajor = NULL;
    if (h > 0 && w > 0) {
        colmajor = malloc((size_t)h * w);
        if (!colmajor) {
            set_err(err, "rle_encode: out of memory");
            return MSAM_ERR_NOMEM;
        }
        transpose_u8(mask, h, w, ld, colmajor);
    }
    run_state s = {out, 0, 0, 0};
    run_add(&s, 0, (uint64_t)x0 * full_h);                 /* columns left of the mask */
    for (int x = 0; x < w; x++) {
        const uint8_t *col = colmajor + (size_t)x * h;
        run_add(&s, 0, (uint64_t)y0);                     /* above it */
        int y = 0;
        while (y < h) {                                   /* runs inside the column */
            const uint8_t v = col[y];
            int e = y + 1;
            if (v) {
                while (e < h && col[e]) e++;
            } else {
                const uint8_t *p = memchr(col + e, 1, (size_t)(h - e));
                e = p ? (int)(p - col) : h;
            }
            run_add(&s, v, (uint64_t)(e - y));
            y = e;
        }
        run_add(&s, 0, (uint64_t)full_h - y0 - h);         /* below it */
    }
    run_add(&s, 0, (uint64_t)(full_w - x0 - w) * full_h);  /* columns right of it */
    if (rle_push(out, (uint32_t)s.run) < 0) s.failed = 1;
    free(colmajor);
    if (s.failed) {
        set_err(err, "rle_encode: out of memory");
        return MSAM_ERR_NOMEM;
    }
    return MSAM_OK;
}

msam_status msam_rle_decode(const uint32_t *counts, size_t n, int h, int w, int transposed,
                            uint8_t *mask, msam_error *err) {
    const uint64_t total = (uint64_t)(h > 0 ? h : 0) * (uint64_t)(w > 0 ? w : 0);
    uint64_t sum = 0;
    if (h < 0 || w < 0 || (n && !counts) || (total && !mask)) {
        set_err(err, "rle_decode: bad size or buffer");
        return MSAM_ERR_ARG;
    }
    for (size_t i = 0; i < n; i++) sum += counts[i];
    if (sum != total) {
        if (err)
            snprintf(err->msg, sizeof err->msg,
                     "rle counts must sum to size[0] * size[1] = %llu, got %llu",
                     (unsigned long long)total, (unsigned long long)sum);
        return MSAM_ERR_ARG;
    }
    if (transposed) {                                     /* the walk order itself */
        uint64_t at = 0;
        for (size_t i = 0; i < n; i++) {
            memset(mask + at, (int)(i & 1), counts[i]);
            at += counts[i];
        }
        return MSAM_OK;
    }
    int x = 0, y = 0;                                     /* scatter runs down the columns */
    for (size_t i = 0; i < n; i++) {
        const uint8_t v = (uint8_t)(i & 1);
        uint64_t len = counts[i];
        while (len > 0) {
            const int take = len < (uint64_t)(h - y) ? (int)len : h - y;
            uint8_t *p = mask + (size_t)y * w + x;
            for (int k = 0; k < take; k++) p[(size_t)k * w] = v;
            y += take;
            len -= (uint64_t)take;
            if (y == h) {
                y = 0;
                x++;
            }
        }
    }
    return MSAM_OK;
}

void msam_mask_box(const uint8_t *mask, int h, int w, ptrdiff_t ld, int64_t box[4]) {
    int top = -1, bottom = -1, left = w, right = -1;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = mask + y * ld;
        int l = 0, r = w - 1;
        while (l < w && !row[l]) l++;
        if (l == w) continue;
        while (!row[r]) r--;
        if (top < 0) top = y;
        bottom = y;
        if (l < left) left = l;
        if (r > right) right = r;
    }
    if (top < 0) {
        box[0] = box[1] = box[2] = box[3] = 0;
        return;
    }
    box[0] = left;
    box[1] = top;
    box[2] = right;
    box[3] = bottom;
}
