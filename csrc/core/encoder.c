/* encoder.c - MobileSAM's TinyViT-5M image encoder (1024x1024x3 -> 64x64x256) on the op table, maps
 * channels-last; stages run in row bands in one workspace sized at create, so forward allocates nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder.h"
#include "model.h" /* msam_norm_w, msam_norm_load, msam_linear_load */

#define IMG 1024
#define PE_MID 32     /* patch_embed's first conv: 3 -> 32, stride 2 -> 512x512 */
#define MB_EXPAND 4   /* MBConv hidden width = 4 x 64 */
#define MLP_RATIO 4
#define NECK 256
#define N_BLOCKS 10   /* TinyViT blocks of layers 1..3: 2 + 6 + 2 */

/* The four layers: width, depth, heads, window, map side (square maps); layer 0 is convolutional.
 * Layers 0..2 end in a PatchMerging to the next width, stride 2 except into the 320-wide layer
 * (MobileSAM keeps 64x64 there: PatchMerging uses stride 1 when out_dim is 320). */
static const struct {
    int dim, depth, heads, win, side;
} LAYER[4] = {{64, 2, 0, 0, 256}, {128, 2, 4, 7, 128}, {160, 6, 5, 14, 64}, {320, 2, 10, 7, 64}};

static int merge_stride(int out_dim) { return out_dim == 320 ? 1 : 2; }

/* Banded stages run a band of rows at a time through their intermediates; how many rows a band
 * holds is the backend's choice (ops->band_rows: the CPU keeps a band in its last-level cache, a
 * GPU takes the whole map). Rows per band for a widest row of row_bytes, in 1..n: */
static int band_rows(const msam_ops *ops, size_t row_bytes, int n) {
    const int rows = ops->band_rows(row_bytes, n);
    return rows < 1 ? 1 : rows < n ? rows : n;
}

/* patch_embed output rows per band (its middle map is 2 rows per output row, 512 x 32 wide). */
static int pe_band(const msam_ops *ops) { return band_rows(ops, (size_t)2 * (IMG / 2) * PE_MID * sizeof(float), IMG / 4); }

/* TinyViT block bands: window rows per band (the MLP hidden map is the widest). */
static int block_band(const msam_ops *ops, int side, int dim, int win) {
    return band_rows(ops, (size_t)win * side * dim * MLP_RATIO * sizeof(float), (side + win - 1) / win);
}

/* Output rows per band of conv3_forward: about BAND_BYTES of conv1 rows, or the whole map when
 * output rows are longer than the input rows they overwrite (the stride-1 merge to 320), as a
 * band's output could then overtake input rows still to be read. */
static int conv3_band(const msam_ops *ops, int side, int cin, int hidden, int cout, int stride) {
    const int so = (side + stride - 1) / stride;
    if ((size_t)so * cout > (size_t)side * cin * stride) return so;
    /* at least 3 rows: the two rows carried into the next band then never overlap their copy
     * (the first band's carry moves down by band - 1 rows at stride 1) */
    const int rows = band_rows(ops, (size_t)stride * side * hidden * sizeof(float), so);
    return rows < 3 ? (so < 3 ? so : 3) : rows;
}

/* Floats of b->h1 / b->h2 that conv3_forward needs. */
static void conv3_sizes(const msam_ops *ops, int side, int cin, int hidden, int cout, int stride, size_t *h1,
                        size_t *h2) {
    const int so = (side + stride - 1) / stride, band = conv3_band(ops, side, cin, hidden, cout, stride);
    int rows = stride * band + 2;
    if (rows > side) rows = side;
    *h1 = (size_t)rows * side * hidden;
    *h2 = (size_t)((rows + stride - 1) / stride) * so * hidden;
}

typedef struct {
    float *w9c, *b; /* op memory: depthwise taps [9][c] and bias [c], BatchNorm folded */
} enc_dw;

/* 1x1 conv -> GELU -> depthwise 3x3 -> GELU -> 1x1 conv: MBConv and PatchMerging alike. */
typedef struct {
    msam_linear *c1, *c3;
    enc_dw c2;
} enc_conv3;

typedef struct {
    msam_norm_w norm1, norm2; /* attn.norm, mlp.norm */
    msam_linear *qkv, *proj, *fc1, *fc2;
    float *pad_qkv; /* op memory, 3*dim: qkv of a zero-padded token, LayerNorm(0) = norm bias */
    float *bias;    /* op memory, [heads][win*win][win*win] attention biases */
    enc_dw local;   /* local_conv */
} enc_block;

struct msam_encoder {
    const msam_ops *ops;
    msam_ctx *ctx; /* the model's loading context, for releasing the weights */
    msam_linear *pe0, *pe2; /* patch_embed.seq.0 / .2 (3x3 convs) */
    enc_conv3 mb[2];        /* layers.0.blocks */
    enc_conv3 merge[3];     /* layers.0..2.downsample */
    enc_block blk[N_BLOCKS];
    msam_linear *neck0, *neck2;
    msam_norm_w neck1, neck3;
    /* workspace layout: byte offsets of the buffers and the total */
    size_t off_x, off_x2, off_t, off_h1, off_h2, off_scratch, ws_bytes;
};

/* ---- loading -------------------------------------------------------------------------- */

/* A dense Conv2d_BN with BatchNorm folded: 1x1 (k == 1) as a linear, 3x3 (k == 3) for conv3x3. */
static msam_status conv_bn_load(msam_linear **out, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                                const char *prefix, int cout, int cin, int k, msam_error *err) {
    float *w, *b;
    msam_status st = msam_wt_conv_bn(wt, prefix, cout, cin * k * k, &w, &b, err);
    if (st != MSAM_OK) return st;
    *out = k == 1 ? ops->linear_create(ctx, w, b, cout, cin) : ops->conv3x3_create(ctx, w, b, cout, cin);
    free(w);
    free(b);
    return *out ? MSAM_OK : msam_fail(err, MSAM_ERR_NOMEM, "out of memory converting '%s'", prefix);
}

/* A depthwise 3x3 Conv2d_BN, [c][1][3][3] repacked tap-major to [9][c]. */
static msam_status dw_load(enc_dw *dw, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                           const char *prefix, int c, msam_error *err) {
    float *w, *b;
    msam_status st = msam_wt_conv_bn(wt, prefix, c, 9, &w, &b, err);
    if (st != MSAM_OK) return st;
    float *t = malloc(sizeof(float) * 9 * (size_t)c);
    if (t) {
        for (int ch = 0; ch < c; ch++)
            for (int k = 0; k < 9; k++) t[(size_t)k * c + ch] = w[(size_t)ch * 9 + k];
        dw->w9c = ops->upload(ctx, t, 9 * (size_t)c);
        dw->b = ops->upload(ctx, b, (size_t)c);
    }
    free(t);
    free(w);
    free(b);
    if (!dw->w9c || !dw->b)
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory converting '%s'", prefix);
    return MSAM_OK;
}

static msam_status conv3_load(enc_conv3 *m, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                              const char *prefix, int cin, int hidden, int cout,
                              msam_error *err) {
    char name[256];
    msam_status st;
    snprintf(name, sizeof name, "%s.conv1", prefix);
    if ((st = conv_bn_load(&m->c1, ops, ctx, wt, name, hidden, cin, 1, err)) != MSAM_OK) return st;
    snprintf(name, sizeof name, "%s.conv2", prefix);
    if ((st = dw_load(&m->c2, ops, ctx, wt, name, hidden, err)) != MSAM_OK) return st;
    snprintf(name, sizeof name, "%s.conv3", prefix);
    return conv_bn_load(&m->c3, ops, ctx, wt, name, cout, hidden, 1, err);
}

/* attention_biases [heads][win*win offsets] expanded to [heads][i][j] for window tokens i, j.
 * The offset index is assigned as the reference does: iterate token pairs (p1, p2) in row-major
 * order and number each new (|dy|, |dx|) on first sight. */
static float *expand_biases(const msam_ops *ops, msam_ctx *ctx, const float *ab, int heads, int win) {
    const int n = win * win;
    int *id = malloc(sizeof(int) * (size_t)n);
    float *full = malloc(sizeof(float) * (size_t)heads * n * n);
    float *dev = NULL;
    if (id && full) {
        int next = 0;
        for (int i = 0; i < n; i++) id[i] = -1;
        for (int p1 = 0; p1 < n; p1++)
            for (int p2 = 0; p2 < n; p2++) {
                const int off = abs(p1 / win - p2 / win) * win + abs(p1 % win - p2 % win);
                if (id[off] < 0) id[off] = next++;
            }
        for (int hd = 0; hd < heads; hd++)
            for (int p1 = 0; p1 < n; p1++)
                for (int p2 = 0; p2 < n; p2++) {
                    const int off = abs(p1 / win - p2 / win) * win + abs(p1 % win - p2 % win);
                    full[((size_t)hd * n + p1) * n + p2] = ab[(size_t)hd * n + id[off]];
                }
        dev = ops->upload(ctx, full, (size_t)heads * n * n);
    }
    free(id);
    free(full);
    return dev;
}

static msam_status block_load(enc_block *b, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                              const char *prefix, int dim, int heads, int win,
                              msam_error *err) {
    char name[256];
    msam_status st;
#define SUB(s) (snprintf(name, sizeof name, "%s.%s", prefix, s), name)
    if ((st = msam_norm_load(&b->norm1, ops, ctx, wt, SUB("attn.norm"), dim, err)) != MSAM_OK) return st;
    if ((st = msam_linear_load(&b->qkv, ops, ctx, wt, SUB("attn.qkv"), 3 * dim, dim, 1, err)) != MSAM_OK) return st;
    if ((st = msam_linear_load(&b->proj, ops, ctx, wt, SUB("attn.proj"), dim, dim, 1, err)) != MSAM_OK) return st;
    if ((st = dw_load(&b->local, ops, ctx, wt, SUB("local_conv"), dim, err)) != MSAM_OK) return st;
    if ((st = msam_norm_load(&b->norm2, ops, ctx, wt, SUB("mlp.norm"), dim, err)) != MSAM_OK) return st;
    if ((st = msam_linear_load(&b->fc1, ops, ctx, wt, SUB("mlp.fc1"), MLP_RATIO * dim, dim, 1, err)) != MSAM_OK) return st;
    if ((st = msam_linear_load(&b->fc2, ops, ctx, wt, SUB("mlp.fc2"), dim, MLP_RATIO * dim, 1, err)) != MSAM_OK) return st;

    const float *ab = msam_wt_get(wt, SUB("attn.attention_biases"), (int64_t)heads * win * win, err);
    if (!ab) return MSAM_ERR_WEIGHTS;
    if (!(b->bias = expand_biases(ops, ctx, ab, heads, win)))
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory expanding '%s'", name);

    /* Padded tokens are zeros before the attention's LayerNorm, so they all normalise to its
     * bias beta and project to one vector: pad_qkv = W_qkv . beta + b_qkv (double accumulation). */
    const float *beta = msam_wt_get(wt, SUB("attn.norm.bias"), dim, err);
    if (!beta) return MSAM_ERR_WEIGHTS;
    const float *wq = msam_wt_get(wt, SUB("attn.qkv.weight"), (int64_t)3 * dim * dim, err);
    if (!wq) return MSAM_ERR_WEIGHTS;
    const float *bq = msam_wt_get(wt, SUB("attn.qkv.bias"), 3 * dim, err);
    if (!bq) return MSAM_ERR_WEIGHTS;
#undef SUB
    float *pad = malloc(sizeof(float) * 3 * (size_t)dim);
    if (!pad) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory converting '%s.attn'", prefix);
    for (int o = 0; o < 3 * dim; o++) {
        double s = bq[o];
        for (int i = 0; i < dim; i++) s += (double)wq[(size_t)o * dim + i] * beta[i];
        pad[o] = (float)s;
    }
    b->pad_qkv = ops->upload(ctx, pad, 3 * (size_t)dim);
    free(pad);
    if (!b->pad_qkv) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory converting '%s.attn'", prefix);
    return MSAM_OK;
}

/* Buffer sizes follow the forward pass below: x and x2 hold running maps (a block reads one and
 * writes the other), t a band of local_conv rows, h1/h2 band intermediates (conv1/dw rows, qkv,
 * attention, MLP hidden) and the patch embedding's 512x512x32 map. */
static void plan_workspace(msam_encoder *e) {
    size_t x = 0, x2 = 0, t = 0, h1 = 0, h2 = 0, scr = 0, c1, c2;
#define AT_LEAST(v, n) do { if ((size_t)(n) > (v)) (v) = (size_t)(n); } while (0)
    const int s0 = LAYER[0].side, half = IMG / 2;
    AT_LEAST(h1, (size_t)(2 * pe_band(e->ops) + 3) * half * PE_MID); /* patch_embed_forward's middle rows */
    AT_LEAST(x, (size_t)s0 * s0 * LAYER[0].dim);
    conv3_sizes(e->ops, s0, LAYER[0].dim, LAYER[0].dim * MB_EXPAND, LAYER[0].dim, 1, &c1, &c2);
    AT_LEAST(h1, c1);
    AT_LEAST(h2, c2);
    for (int l = 0; l < 3; l++) {
        const int side = LAYER[l].side, cout = LAYER[l + 1].dim, st = merge_stride(cout);
        const size_t so = (size_t)(side + st - 1) / st;
        conv3_sizes(e->ops, side, LAYER[l].dim, cout, cout, st, &c1, &c2);
        AT_LEAST(h1, c1);
        AT_LEAST(h2, c2);
        AT_LEAST(x, so * so * cout);
        if (l > 0) AT_LEAST(x2, so * so * cout); /* a merge after blocks may run in x2 */
    }
    for (int l = 1; l < 4; l++) {
        /* block_forward bands: attention on `win` rows, the MLP half on at most win + 1 rows
         * (local_conv on at most win + 2), where win is the band's rows */
        const size_t side = (size_t)LAYER[l].side, c = (size_t)LAYER[l].dim;
        const size_t win = (size_t)block_band(e->ops, LAYER[l].side, LAYER[l].dim, LAYER[l].win) * LAYER[l].win;
        const size_t ra = (win < side ? win : side) * side, rb = (win + 1 < side ? win + 1 : side) * side;
        AT_LEAST(x, side * side * c);
        AT_LEAST(x2, side * side * c);
        AT_LEAST(t, (win + 3 < side ? win + 3 : side) * side * c);
        AT_LEAST(h1, (ra > rb ? ra : rb) * c);
        AT_LEAST(h2, ra * 3 * c);
        AT_LEAST(h2, rb * MLP_RATIO * c);
    }
    AT_LEAST(h1, (size_t)LAYER[3].side * LAYER[3].side * NECK);
    AT_LEAST(scr, e->ops->conv3x3_scratch_bytes(IMG, IMG, 3, 2));
    AT_LEAST(scr, e->ops->conv3x3_scratch_bytes(half, half, PE_MID, 2));
    AT_LEAST(scr, e->ops->conv3x3_scratch_bytes(LAYER[3].side, LAYER[3].side, NECK, 1));
    for (int l = 1; l < 4; l++) /* window attention's per-thread buffers share the conv scratch */
        AT_LEAST(scr, e->ops->window_attention_scratch_bytes(LAYER[l].win, LAYER[l].heads,
                                                             LAYER[l].dim / LAYER[l].heads));
#undef AT_LEAST
    /* 64-byte aligned buffers, one after the other */
#define PLACE(off, bytes) do { (off) = total; total += ((bytes) + 63) & ~(size_t)63; } while (0)
    size_t total = 0;
    PLACE(e->off_x, x * sizeof(float));
    PLACE(e->off_x2, x2 * sizeof(float));
    PLACE(e->off_t, t * sizeof(float));
    PLACE(e->off_h1, h1 * sizeof(float));
    PLACE(e->off_h2, h2 * sizeof(float));
    PLACE(e->off_scratch, scr);
#undef PLACE
    e->ws_bytes = total;
}

static void dw_release(enc_dw *d, const msam_ops *ops, msam_ctx *ctx) {
    if (d->w9c) ops->release(ctx, d->w9c);
    if (d->b) ops->release(ctx, d->b);
}

static void lin_release(msam_linear *l, const msam_ops *ops, msam_ctx *ctx) {
    if (l) ops->linear_free(ctx, l);
}

static void conv3_release(enc_conv3 *m, const msam_ops *ops, msam_ctx *ctx) {
    lin_release(m->c1, ops, ctx);
    lin_release(m->c3, ops, ctx);
    dw_release(&m->c2, ops, ctx);
}


void msam_encoder_free(msam_encoder *e) {
    if (!e) return;
    const msam_ops *ops = e->ops;
    msam_ctx *ctx = e->ctx;
    lin_release(e->pe0, ops, ctx);
    lin_release(e->pe2, ops, ctx);
    for (int i = 0; i < 2; i++) conv3_release(&e->mb[i], ops, ctx);
    for (int i = 0; i < 3; i++) conv3_release(&e->merge[i], ops, ctx);
    for (int i = 0; i < N_BLOCKS; i++) {
        enc_block *b = &e->blk[i];
        msam_norm_release(&b->norm1, ops, ctx);
        msam_norm_release(&b->norm2, ops, ctx);
        lin_release(b->qkv, ops, ctx);
        lin_release(b->proj, ops, ctx);
        lin_release(b->fc1, ops, ctx);
        lin_release(b->fc2, ops, ctx);
        if (b->pad_qkv) ops->release(ctx, b->pad_qkv);
        if (b->bias) ops->release(ctx, b->bias);
        dw_release(&b->local, ops, ctx);
    }
    lin_release(e->neck0, ops, ctx);
    lin_release(e->neck2, ops, ctx);
    msam_norm_release(&e->neck1, ops, ctx);
    msam_norm_release(&e->neck3, ops, ctx);
    free(e);
}

static msam_status encoder_load(msam_encoder *e, const msam_weight_table *wt, msam_error *err) {
    const msam_ops *ops = e->ops;
    msam_ctx *ctx = e->ctx;
    char name[128]; /* prefixes; the loaders append suffixes into 256-byte names */
    msam_status st;
    if ((st = conv_bn_load(&e->pe0, ops, ctx, wt, "image_encoder.patch_embed.seq.0", PE_MID, 3, 3, err))) return st;
    if ((st = conv_bn_load(&e->pe2, ops, ctx, wt, "image_encoder.patch_embed.seq.2", LAYER[0].dim, PE_MID, 3, err))) return st;
    for (int i = 0; i < LAYER[0].depth; i++) {
        snprintf(name, sizeof name, "image_encoder.layers.0.blocks.%d", i);
        const int c = LAYER[0].dim;
        if ((st = conv3_load(&e->mb[i], ops, ctx, wt, name, c, c * MB_EXPAND, c, err))) return st;
    }
    int bi = 0;
    for (int l = 0; l < 4; l++) {
        for (int i = 0; l > 0 && i < LAYER[l].depth; i++, bi++) {
            snprintf(name, sizeof name, "image_encoder.layers.%d.blocks.%d", l, i);
            if ((st = block_load(&e->blk[bi], ops, ctx, wt, name, LAYER[l].dim, LAYER[l].heads,
                                 LAYER[l].win, err)))
                return st;
        }
        if (l < 3) {
            snprintf(name, sizeof name, "image_encoder.layers.%d.downsample", l);
            const int cout = LAYER[l + 1].dim;
            if ((st = conv3_load(&e->merge[l], ops, ctx, wt, name, LAYER[l].dim, cout, cout, err))) return st;
        }
    }
    if ((st = msam_linear_load(&e->neck0, ops, ctx, wt, "image_encoder.neck.0", NECK, LAYER[3].dim, 0, err))) return st;
    if ((st = msam_norm_load(&e->neck1, ops, ctx, wt, "image_encoder.neck.1", NECK, err))) return st;
    const float *w2 = msam_wt_get(wt, "image_encoder.neck.2.weight", (int64_t)NECK * NECK * 9, err);
    if (!w2) return MSAM_ERR_WEIGHTS;
    if (!(e->neck2 = ops->conv3x3_create(ctx, w2, NULL, NECK, NECK)))
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory converting 'image_encoder.neck.2'");
    return msam_norm_load(&e->neck3, ops, ctx, wt, "image_encoder.neck.3", NECK, err);
}

msam_status msam_encoder_create(const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                                msam_encoder **out, msam_error *err) {
    if (!out) return msam_fail(err, MSAM_ERR_ARG, "msam_encoder_create: out is NULL");
    *out = NULL;
    if (!ops || !ctx || !wt) return msam_fail(err, MSAM_ERR_ARG, "msam_encoder_create: ops or weights NULL");
    msam_encoder *e = calloc(1, sizeof *e);
    if (!e) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory creating the image encoder");
    e->ops = ops;
    e->ctx = ctx;
    msam_status st = encoder_load(e, wt, err);
    if (st != MSAM_OK) {
        msam_encoder_free(e);
        return st;
    }
    plan_workspace(e);
    *out = e;
    return MSAM_OK;
}

size_t msam_encoder_workspace_bytes(const msam_encoder *e) { return e ? e->ws_bytes : 0; }

/* ---- forward -------------------------------------------------------------------------- */

/* x: the running map; x2: a block's output map (then swapped with x); t: local_conv rows;
 * h1/h2: band intermediates; scratch: conv3x3 im2col, window attention's per-thread buffers. */
typedef struct {
    const msam_ops *o;
    msam_ctx *ctx;
    float *x, *x2, *t, *h1, *h2;
    void *scratch; /* scratch_bytes */
    size_t scratch_bytes;
} enc_bufs;

/* 1x1 -> GELU -> dw 3x3 (stride) -> GELU -> 1x1 on the side x side x cin map in b->x, result
 * in b->x; MBConv (residual) adds its input before a final GELU, fused into the last linear.
 * Runs in bands of output rows so the wide hidden maps stay in cache: conv1 rows are computed
 * once (the rows a band shares with the next are carried over), the depthwise conv runs on the
 * band's rows plus halo as a small map (its outputs for halo rows are discarded), and conv3
 * writes the band over input rows no later band reads. */
static void conv3_forward(const enc_bufs *b, const enc_conv3 *m, int side, int cin, int hidden,
                          int cout, int stride, int residual) {
    const msam_ops *o = b->o;
    const int so = (side + stride - 1) / stride, band = conv3_band(b->o, side, cin, hidden, cout, stride);
    const size_t row_x = (size_t)side * cin, row_h1 = (size_t)side * hidden;
    const size_t row_h2 = (size_t)so * hidden, row_y = (size_t)so * cout;
    int lo = 0, have = 0; /* b->h1 holds conv1 rows [lo, lo + have) */
    for (int o0 = 0; o0 < so; o0 += band) {
        const int o1 = o0 + band < so ? o0 + band : so;
        /* input rows whose depthwise outputs give rows [o0, o1); for stride 2 the band starts
         * on an even row so the small map's outputs fall on the map's output grid */
        int need_lo = stride == 1 ? o0 - 1 : 2 * o0 - 2, need_hi = stride == 1 ? o1 + 1 : 2 * o1;
        if (need_lo < 0) need_lo = 0;
        if (need_hi > side) need_hi = side;
        if (need_lo > lo) {
            const int keep = lo + have - need_lo > 0 ? lo + have - need_lo : 0;
            if (keep > 0) /* carried rows to the front (the ranges may overlap: copy is a memmove) */
                o->copy(b->ctx, b->h1, b->h1 + (size_t)(need_lo - lo) * row_h1, sizeof(float) * keep * row_h1);
            lo = need_lo;
            have = keep;
        }
        const int r0 = lo + have;
        if (need_hi > r0)
            o->linear(b->ctx, b->h1 + (size_t)have * row_h1, hidden, b->x + (size_t)r0 * row_x, cin,
                      (need_hi - r0) * side, m->c1, MSAM_ACT_GELU, NULL, 0);
        have = need_hi - lo;
        o->dwconv3x3(b->ctx, b->h2, b->h1, have, side, hidden, stride, m->c2.w9c, m->c2.b, MSAM_ACT_GELU);
        const float *h2 = b->h2 + (size_t)(o0 - lo / stride) * row_h2;
        float *y = b->x + (size_t)o0 * row_y;
        o->linear(b->ctx, y, cout, h2, hidden, (o1 - o0) * so, m->c3, residual ? MSAM_ACT_GELU : MSAM_ACT_NONE,
                  residual ? y : NULL, cout);
    }
}

/* TinyViTBlock on the side x side x dim map x, result in xo:
 *   x += proj(window_attention(qkv(LN(x))));  t = local_conv(x);  xo = t + mlp(t).
 * Runs in bands of whole window rows so the qkv and MLP intermediates stay in cache. Attention
 * of band [a, b) only needs its own rows (windows start at a), and its result replaces x[a, b).
 * local_conv needs the rows around it, so the MLP half lags one row: after band [a, b) it runs
 * on rows [c, d) with d = b - 1 (the whole rest at the bottom), reading x[c - 1, d + 1) as a
 * small map whose halo rows' outputs are discarded. */
static void block_forward(const enc_bufs *b, const enc_block *k, int side, int dim, int heads,
                          int win, float *x, float *xo) {
    const msam_ops *o = b->o;
    const int dh = dim / heads;
    const size_t row = (size_t)side * dim;
    const int rows = block_band(b->o, side, dim, win) * win;
    int c = 0; /* rows [0, c) of xo are done */
    for (int a = 0; a < side; a += rows) {
        const int bnd = a + rows < side ? a + rows : side, n = (bnd - a) * side;
        float *xa = x + (size_t)a * row;
        o->layernorm(b->ctx, b->h1, xa, n, dim, k->norm1.g, k->norm1.b, 1e-5f);
        o->linear(b->ctx, b->h2, 3 * dim, b->h1, dim, n, k->qkv, MSAM_ACT_NONE, NULL, 0);
        o->window_attention(b->ctx, b->h1, b->h2, k->pad_qkv, bnd - a, side, win, heads, dh, k->bias,
                            1.0f / sqrtf((float)dh), b->scratch, b->scratch_bytes);
        o->linear(b->ctx, xa, dim, b->h1, dim, n, k->proj, MSAM_ACT_NONE, xa, dim);

        const int d = bnd == side ? side : bnd - 1;
        if (d <= c) continue;
        const int lo = c > 0 ? c - 1 : 0, hi = d + 1 < side ? d + 1 : side, m = (d - c) * side;
        const float *t = b->t + (size_t)(c - lo) * row; /* local_conv output of row c */
        o->dwconv3x3(b->ctx, b->t, x + (size_t)lo * row, hi - lo, side, dim, 1, k->local.w9c,
                     k->local.b, MSAM_ACT_NONE);
        o->layernorm(b->ctx, b->h1, t, m, dim, k->norm2.g, k->norm2.b, 1e-5f);
        o->linear(b->ctx, b->h2, MLP_RATIO * dim, b->h1, dim, m, k->fc1, MSAM_ACT_GELU, NULL, 0);
        o->linear(b->ctx, xo + (size_t)c * row, dim, b->h2, MLP_RATIO * dim, m, k->fc2, MSAM_ACT_NONE, t, dim);
        c = d;
    }
}

/* patch_embed: 3x3 s2 conv 3 -> 32 + GELU, then 3x3 s2 conv 32 -> 64, in bands of output
 * rows so the 512x512x32 middle map never exists whole. Each conv runs on the small map of input
 * rows its band needs; for stride 2 that small map starts on an even row, one output row early.
 * The first conv's extra row lands in scratch (h1); the second conv's lands on the last row of
 * the band above, so bands run bottom to top and the band above rewrites that row correctly. */
static void patch_embed_forward(const msam_encoder *e, const enc_bufs *b, const float *x) {
    const msam_ops *o = b->o;
    const int side = LAYER[0].side, mid = IMG / 2;
    const size_t row_in = (size_t)IMG * 3, row_mid = (size_t)mid * PE_MID, row_out = (size_t)side * LAYER[0].dim;
    const int band = pe_band(o);
    for (int o0 = (side - 1) / band * band; o0 >= 0; o0 -= band) {
        const int o1 = o0 + band < side ? o0 + band : side;
        const int p_lo = o0 > 0 ? 2 * o0 - 2 : 0, p_hi = 2 * o1 < mid ? 2 * o1 : mid;
        const int i_lo = p_lo > 0 ? 2 * p_lo - 2 : 0, i_hi = 2 * p_hi < IMG ? 2 * p_hi : IMG;
        o->conv3x3(b->ctx, b->h1, x + (size_t)i_lo * row_in, i_hi - i_lo, IMG, 3, 2, e->pe0, MSAM_ACT_GELU,
                   b->scratch); /* middle rows [i_lo / 2, ...) */
        o->conv3x3(b->ctx, b->x + (size_t)(p_lo / 2) * row_out, b->h1 + (size_t)(p_lo - i_lo / 2) * row_mid,
                   p_hi - p_lo, mid, PE_MID, 2, e->pe2, MSAM_ACT_NONE, b->scratch);
    }
}

msam_status msam_encoder_forward(const msam_encoder *e, msam_ctx *ctx, const float *x, float *out,
                                 void *workspace, msam_stage_fn stage_fn, void *stage_user,
                                 msam_error *err) {
    if (!e || !x || !out || !workspace)
        return msam_fail(err, MSAM_ERR_ARG, "msam_encoder_forward: encoder, input, output or workspace is NULL");
    /* Stage maps are handed over in place, so they must be host memory. */
    if (stage_fn && !e->ops->host_memory)
        return msam_fail(err, MSAM_ERR_ARG, "stage_fn is only supported on the CPU backend");
    const msam_ops *o = e->ops;
    char *ws = workspace;
    enc_bufs b = {o, ctx, (float *)(ws + e->off_x), (float *)(ws + e->off_x2), (float *)(ws + e->off_t),
                  (float *)(ws + e->off_h1), (float *)(ws + e->off_h2), ws + e->off_scratch,
                  e->ws_bytes - e->off_scratch};
#define STAGE(name, data, side, c) \
    do { if (stage_fn) stage_fn(stage_user, name, data, side, side, c); } while (0)

    /* patch_embed: 1024 -> 512 (GELU) -> 256 */
    patch_embed_forward(e, &b, x);
    STAGE("patch_embed", b.x, LAYER[0].side, LAYER[0].dim);

    int bi = 0;
    for (int l = 0; l < 4; l++) {
        const int side = LAYER[l].side, dim = LAYER[l].dim;
        for (int i = 0; i < LAYER[l].depth; i++) {
            if (l == 0)
                conv3_forward(&b, &e->mb[i], side, dim, dim * MB_EXPAND, dim, 1, 1);
            else {
                block_forward(&b, &e->blk[bi++], side, dim, LAYER[l].heads, LAYER[l].win, b.x, b.x2);
                float *tmp = b.x; /* the block's output becomes the running map */
                b.x = b.x2;
                b.x2 = tmp;
            }
        }
        static const char *const names[4] = {"layers.0", "layers.1", "layers.2", "layers.3"};
        if (l < 3) {
            const int cout = LAYER[l + 1].dim, s = merge_stride(cout);
            conv3_forward(&b, &e->merge[l], side, dim, cout, cout, s, 0);
            STAGE(names[l], b.x, (side + s - 1) / s, cout);
        } else {
            STAGE(names[l], b.x, side, dim);
        }
    }

    /* neck: 1x1 320 -> 256, LayerNorm2d, 3x3 256 -> 256, LayerNorm2d (eps 1e-6) */
    const int side = LAYER[3].side, rows = side * side;
    o->linear(b.ctx, b.h1, NECK, b.x, LAYER[3].dim, rows, e->neck0, MSAM_ACT_NONE, NULL, 0);
    o->layernorm(b.ctx, b.h1, b.h1, rows, NECK, e->neck1.g, e->neck1.b, 1e-6f);
    o->conv3x3(b.ctx, out, b.h1, side, side, NECK, 1, e->neck2, MSAM_ACT_NONE, b.scratch);
    o->layernorm(b.ctx, out, out, rows, NECK, e->neck3.g, e->neck3.b, 1e-6f);
    STAGE("neck", out, side, NECK);
#undef STAGE
    return MSAM_OK;
}
