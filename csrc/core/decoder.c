/* decoder.c - MobileSAM's mask decoder: two-way transformer (tokens <-> 64x64 image), output
 * upscaling (two transposed 2x2 convs), hypernetwork mask logits and the IoU head. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoder.h"


/* Which folded-form pieces a cross attention needs (cross_attention.c). Layer 0's image side is
 * cached per image, so its token->image needs none and its image->token only the output side. */
typedef enum { CROSS_NONE, CROSS_T2I, CROSS_I2T, CROSS_I2T_OUT } cross_kind;

/* One linear per head of the 16-column slice cols [h*16, h*16+16) of w ([rows][w_cols], host) as
 * a 16 -> rows map: out[h] = linear(W'), W'[r][d] = w[r][h*16 + d]. */
static msam_status head_slices(msam_linear **out, const msam_ops *ops, msam_ctx *ctx, const float *w, int rows,
                               int w_cols, const char *what, msam_error *err) {
    float *tmp = malloc(sizeof(float) * (size_t)rows * MSAM_CROSS_DH);
    if (!tmp) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", what);
    for (int h = 0; h < MSAM_HEADS; h++) {
        for (int r = 0; r < rows; r++)
            for (int d = 0; d < MSAM_CROSS_DH; d++)
                tmp[(size_t)r * MSAM_CROSS_DH + d] = w[(size_t)r * w_cols + h * MSAM_CROSS_DH + d];
        if (!(out[h] = ops->linear_create(ctx, tmp, NULL, rows, MSAM_CROSS_DH))) {
            free(tmp);
            return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", what);
        }
    }
    free(tmp);
    return MSAM_OK;
}

/* For a cross projection w [128][256]: per head, its 16 rows transposed as a 16 -> 256 linear
 * (W'[c][d] = w[h*16 + d][c]), which maps a head's 16 channels back through the projection. */
static msam_status head_rows_transposed(msam_linear **out, const msam_ops *ops, msam_ctx *ctx, const float *w,
                                        const char *what, msam_error *err) {
    float *wt = malloc(sizeof(float) * (size_t)MSAM_CROSS * MSAM_EMB);
    if (!wt) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", what);
    for (int o = 0; o < MSAM_CROSS; o++)
        for (int c = 0; c < MSAM_EMB; c++) wt[(size_t)c * MSAM_CROSS + o] = w[(size_t)o * MSAM_EMB + c];
    msam_status st = head_slices(out, ops, ctx, wt, MSAM_EMB, MSAM_CROSS, what, err);
    free(wt);
    return st;
}

/* The folded form's per-head linears (see msam_attn_w), from the host weights. */
static msam_status cross_load(msam_attn_w *a, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                              const char *prefix, cross_kind kind, msam_error *err) {
    char name[320]; /* prefix (< 256) + a suffix */
    const int64_t wn = (int64_t)MSAM_CROSS * MSAM_EMB;
#define GET(var, suffix, n)                                                   \
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);                     \
    const float *var = msam_wt_get(wt, name, n, err);                         \
    if (!var) return MSAM_ERR_WEIGHTS
    msam_status st;
    if (kind == CROSS_T2I) {
        GET(wk, "k_proj.weight", wn);
        GET(wv, "v_proj.weight", wn);
        GET(bv, "v_proj.bias", MSAM_CROSS);
        if ((st = head_rows_transposed(a->k_t, ops, ctx, wk, prefix, err))) return st;
        for (int h = 0; h < MSAM_HEADS; h++)
            if (!(a->v_h[h] = ops->linear_create(ctx, wv + (size_t)h * MSAM_CROSS_DH * MSAM_EMB, bv + h * MSAM_CROSS_DH,
                                                 MSAM_CROSS_DH, MSAM_EMB)))
                return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", prefix);
    } else if (kind == CROSS_I2T || kind == CROSS_I2T_OUT) {
        GET(wo, "out_proj.weight", wn);
        GET(bo, "out_proj.bias", MSAM_EMB);
        if (kind == CROSS_I2T) {
            GET(wq, "q_proj.weight", wn);
            GET(bq, "q_proj.bias", MSAM_CROSS);
            if ((st = head_rows_transposed(a->q_t, ops, ctx, wq, prefix, err))) return st;
            if ((st = head_slices(a->bq_t, ops, ctx, bq, 1, MSAM_CROSS, prefix, err))) return st;
        }
        if ((st = head_slices(a->o_h, ops, ctx, wo, MSAM_EMB, MSAM_CROSS, prefix, err))) return st;
        if (!(a->bo = ops->upload(ctx, bo, MSAM_EMB))) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", prefix);
    }
#undef GET
    return MSAM_OK;
}

static msam_status attn_load(msam_attn_w *a, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                             const char *prefix, int inner, cross_kind kind, msam_error *err) {
    char name[256];
    msam_status st;
    a->inner = inner;
    snprintf(name, sizeof name, "%s.q_proj", prefix);
    if ((st = msam_linear_load(&a->q, ops, ctx, wt, name, inner, MSAM_EMB, 1, err))) return st;
    snprintf(name, sizeof name, "%s.k_proj", prefix);
    if ((st = msam_linear_load(&a->k, ops, ctx, wt, name, inner, MSAM_EMB, 1, err))) return st;
    snprintf(name, sizeof name, "%s.v_proj", prefix);
    if ((st = msam_linear_load(&a->v, ops, ctx, wt, name, inner, MSAM_EMB, 1, err))) return st;
    snprintf(name, sizeof name, "%s.out_proj", prefix);
    if ((st = msam_linear_load(&a->out, ops, ctx, wt, name, MSAM_EMB, inner, 1, err))) return st;
    return cross_load(a, ops, ctx, wt, prefix, kind, err);
}

static void attn_release(msam_attn_w *a, const msam_ops *ops, msam_ctx *ctx) {
    ops->linear_free(ctx, a->q);
    ops->linear_free(ctx, a->k);
    ops->linear_free(ctx, a->v);
    ops->linear_free(ctx, a->out);
    a->q = a->k = a->v = a->out = NULL;
    for (int h = 0; h < MSAM_HEADS; h++) {
        msam_linear **per_head[] = {&a->k_t[h], &a->v_h[h], &a->q_t[h], &a->bq_t[h], &a->o_h[h]};
        for (size_t i = 0; i < sizeof per_head / sizeof per_head[0]; i++) {
            ops->linear_free(ctx, *per_head[i]);
            *per_head[i] = NULL;
        }
    }
    ops->release(ctx, a->bo);
    a->bo = NULL;
}

/* ConvTranspose2d(cin, cout, 2, stride 2) [cin][cout][dy][dx] as a linear cin -> 4*cout whose
 * output channel (dy*2+dx)*cout + o belongs to sub-pixel (dy, dx) of its input pixel. */
static msam_status convT_load(msam_linear **out, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                              const char *prefix, int cin, int cout, msam_error *err) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const float *w = msam_wt_get(wt, name, (int64_t)cin * cout * 4, err);
    if (!w) return MSAM_ERR_WEIGHTS;
    snprintf(name, sizeof name, "%s.bias", prefix);
    const float *b = msam_wt_get(wt, name, cout, err);
    if (!b) return MSAM_ERR_WEIGHTS;
    float *rw = malloc(sizeof(float) * (size_t)cin * cout * 4);
    float *rb = malloc(sizeof(float) * (size_t)cout * 4);
    if (!rw || !rb) {
        free(rw);
        free(rb);
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", prefix);
    }
    for (int t = 0; t < 4; t++)
        for (int o = 0; o < cout; o++) {
            rb[t * cout + o] = b[o];
            for (int ci = 0; ci < cin; ci++)
                rw[((size_t)t * cout + o) * cin + ci] = w[((size_t)ci * cout + o) * 4 + t];
        }
    *out = ops->linear_create(ctx, rw, rb, 4 * cout, cin);
    free(rw);
    free(rb);
    if (!*out) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", prefix);
    return MSAM_OK;
}

/* The first upscaling product split through the LayerNorms before it. With r0 = keys0 + S0 N0 +
 * bo0 (layer 0's image->token update, S0 its probabilities and N0 the folded value rows, see
 * cross_attention.c), k1 = LN0(r0), r1 = k1 + S1 N1 + bo1, k2 = LN1(r1) and a LayerNorm written
 * LN(r) = g (C r) s + b (C = I - 11^T/256 removes the mean, s = 1/sqrt(var + eps) per row):
 *   up1(k2) = W1 k2 + c = s1 (s0 (a10 keys0 + a10 bo0 + S0 N0 a10^T) + S1 N1 a1^T + f1) + h
 * with a1 = W1 diag(g1) C, a10 = a1 diag(g0) C, f1 = a1 (b0 + bo1), h = W1 b1 + c. a10 keys0 is the
 * same for every prompt (cached with proj0), so a prompt pays two K = heads*T products instead
 * of the 4096 x 256 x 256 one. C is applied to the weights in double, so nothing cancels at run
 * time: every term is already centred. */
static msam_status split_load(msam_decoder_w *dw, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                              msam_error *err) {
    enum { E = MSAM_EMB, C1 = 64 };
    const char *names[] = {"mask_decoder.output_upscaling.0.weight", "mask_decoder.output_upscaling.0.bias",
                           "mask_decoder.transformer.layers.0.norm4.weight", "mask_decoder.transformer.layers.0.norm4.bias",
                           "mask_decoder.transformer.layers.1.norm4.weight", "mask_decoder.transformer.layers.1.norm4.bias",
                           "mask_decoder.transformer.layers.0.cross_attn_image_to_token.out_proj.bias",
                           "mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.bias"};
    const int64_t sizes[] = {(int64_t)E * C1 * 4, C1, E, E, E, E, E, E};
    const float *t[8];
    for (int i = 0; i < 8; i++)
        if (!(t[i] = msam_wt_get(wt, names[i], sizes[i], err))) return MSAM_ERR_WEIGHTS;
    const float *w = t[0], *c = t[1], *g0 = t[2], *b0 = t[3], *g1 = t[4], *b1 = t[5], *bo0 = t[6], *bo1 = t[7];
    double *W1 = malloc(sizeof(double) * 3 * E * E);
    float *buf = malloc(sizeof(float) * (2 * E * E + 4 * E));
    if (!W1 || !buf) {
        free(W1), free(buf);
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading the upscaling");
    }
    double *A1 = W1 + E * E, *A10 = A1 + E * E;
    /* W1 in convT_load's order: row (dy*2+dx)*64 + o, column ci */
    for (int tt = 0; tt < 4; tt++)
        for (int o = 0; o < C1; o++)
            for (int ci = 0; ci < E; ci++) W1[(size_t)(tt * C1 + o) * E + ci] = w[((size_t)ci * C1 + o) * 4 + tt];
    for (int o = 0; o < E; o++) { /* A1 = W1 diag(g1) C, then A10 = A1 diag(g0) C, row by row */
        double m1 = 0.0, m10 = 0.0;
        for (int i = 0; i < E; i++) m1 += W1[(size_t)o * E + i] * g1[i];
        for (int i = 0; i < E; i++) A1[(size_t)o * E + i] = W1[(size_t)o * E + i] * g1[i] - m1 / E;
        for (int i = 0; i < E; i++) m10 += A1[(size_t)o * E + i] * g0[i];
        for (int i = 0; i < E; i++) A10[(size_t)o * E + i] = A1[(size_t)o * E + i] * g0[i] - m10 / E;
    }
    float *a1 = buf, *a10 = buf + E * E, *f1 = a10 + E * E, *h = f1 + E, *e0 = h + E;
    for (int o = 0; o < E; o++) {
        double sf = 0.0, sh = c[o % C1], se = 0.0;
        for (int i = 0; i < E; i++) {
            sf += A1[(size_t)o * E + i] * ((double)b0[i] + bo1[i]);
            sh += W1[(size_t)o * E + i] * b1[i];
            se += A10[(size_t)o * E + i] * bo0[i];
            a1[(size_t)o * E + i] = (float)A1[(size_t)o * E + i];
            a10[(size_t)o * E + i] = (float)A10[(size_t)o * E + i];
        }
        f1[o] = (float)sf, h[o] = (float)sh, e0[o] = (float)se;
    }
    dw->a1 = ops->upload(ctx, a1, (size_t)E * E);
    dw->a10 = ops->upload(ctx, a10, (size_t)E * E);
    dw->f1 = ops->upload(ctx, f1, E);
    dw->h = ops->upload(ctx, h, E);
    dw->u0 = ops->linear_create(ctx, a10, e0, E, E);
    free(W1), free(buf);
    if (!dw->a1 || !dw->a10 || !dw->f1 || !dw->h || !dw->u0)
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading the upscaling");
    return MSAM_OK;
}

msam_status msam_decoder_init(msam_decoder_w *dw, const msam_ops *ops, msam_ctx *ctx,
                              const msam_weight_table *wt, msam_error *err) {
    char p[192], q[256];
    msam_status st;
    float tokens[1 + MSAM_MASK_TOKENS][MSAM_EMB]; /* iou token, mask tokens: uploaded once */
    const float *t = msam_wt_get(wt, "mask_decoder.iou_token.weight", MSAM_EMB, err);
    if (!t) return MSAM_ERR_WEIGHTS;
    memcpy(tokens[0], t, sizeof(float) * MSAM_EMB);
    t = msam_wt_get(wt, "mask_decoder.mask_tokens.weight", MSAM_MASK_TOKENS * MSAM_EMB, err);
    if (!t) return MSAM_ERR_WEIGHTS;
    memcpy(tokens[1], t, sizeof(float) * MSAM_MASK_TOKENS * MSAM_EMB);
    if (!(dw->tokens = ops->upload(ctx, &tokens[0][0], (size_t)(1 + MSAM_MASK_TOKENS) * MSAM_EMB)))
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading the mask decoder");

    for (int l = 0; l < 2; l++) {
        msam_twoway_layer *L = &dw->layers[l];
        snprintf(p, sizeof p, "mask_decoder.transformer.layers.%d", l);
#define SUB(fmt) (snprintf(q, sizeof q, fmt, p), q)
        if ((st = attn_load(&L->self_attn, ops, ctx, wt, SUB("%s.self_attn"), MSAM_EMB, CROSS_NONE, err))) return st;
        /* layer 0's attentions read the cached projections on the image side */
        if ((st = attn_load(&L->t2i, ops, ctx, wt, SUB("%s.cross_attn_token_to_image"), MSAM_CROSS,
                            l == 0 ? CROSS_NONE : CROSS_T2I, err))) return st;
        if ((st = attn_load(&L->i2t, ops, ctx, wt, SUB("%s.cross_attn_image_to_token"), MSAM_CROSS,
                            l == 0 ? CROSS_I2T_OUT : CROSS_I2T, err))) return st;
        if ((st = msam_norm_load(&L->norm1, ops, ctx, wt, SUB("%s.norm1"), MSAM_EMB, err))) return st;
        if ((st = msam_norm_load(&L->norm2, ops, ctx, wt, SUB("%s.norm2"), MSAM_EMB, err))) return st;
        if ((st = msam_norm_load(&L->norm3, ops, ctx, wt, SUB("%s.norm3"), MSAM_EMB, err))) return st;
        if ((st = msam_norm_load(&L->norm4, ops, ctx, wt, SUB("%s.norm4"), MSAM_EMB, err))) return st;
        if ((st = msam_linear_load(&L->lin1, ops, ctx, wt, SUB("%s.mlp.lin1"), MSAM_MLP, MSAM_EMB, 1, err))) return st;
        if ((st = msam_linear_load(&L->lin2, ops, ctx, wt, SUB("%s.mlp.lin2"), MSAM_EMB, MSAM_MLP, 1, err))) return st;
#undef SUB
    }
    if ((st = attn_load(&dw->final_attn, ops, ctx, wt, "mask_decoder.transformer.final_attn_token_to_image", MSAM_CROSS,
                        CROSS_T2I, err))) return st;
    if ((st = msam_norm_load(&dw->norm_final, ops, ctx, wt, "mask_decoder.transformer.norm_final_attn", MSAM_EMB, err))) return st;
    if ((st = convT_load(&dw->up1, ops, ctx, wt, "mask_decoder.output_upscaling.0", MSAM_EMB, 64, err))) return st;
    if ((st = msam_norm_load(&dw->up_norm, ops, ctx, wt, "mask_decoder.output_upscaling.1", 64, err))) return st;
    if ((st = convT_load(&dw->up2, ops, ctx, wt, "mask_decoder.output_upscaling.3", 64, 32, err))) return st;
    if ((st = split_load(dw, ops, ctx, wt, err))) return st;
    for (int m = 0; m < MSAM_MASK_TOKENS; m++) {
        for (int l = 0; l < 3; l++) {
            snprintf(q, sizeof q, "mask_decoder.output_hypernetworks_mlps.%d.layers.%d", m, l);
            if ((st = msam_linear_load(&dw->hyper[m][l], ops, ctx, wt, q, l == 2 ? 32 : MSAM_EMB, MSAM_EMB, 1, err))) return st;
        }
    }
    for (int l = 0; l < 3; l++) {
        snprintf(q, sizeof q, "mask_decoder.iou_prediction_head.layers.%d", l);
        if ((st = msam_linear_load(&dw->iou[l], ops, ctx, wt, q, l == 2 ? MSAM_MASK_TOKENS : MSAM_EMB, MSAM_EMB, 1, err))) return st;
    }
    return MSAM_OK;
}

void msam_decoder_release(msam_decoder_w *dw, const msam_ops *ops, msam_ctx *ctx) {
    for (int l = 0; l < 2; l++) {
        msam_twoway_layer *L = &dw->layers[l];
        attn_release(&L->self_attn, ops, ctx);
        attn_release(&L->t2i, ops, ctx);
        attn_release(&L->i2t, ops, ctx);
        msam_norm_release(&L->norm1, ops, ctx);
        msam_norm_release(&L->norm2, ops, ctx);
        msam_norm_release(&L->norm3, ops, ctx);
        msam_norm_release(&L->norm4, ops, ctx);
        ops->linear_free(ctx, L->lin1);
        ops->linear_free(ctx, L->lin2);
        L->lin1 = L->lin2 = NULL;
    }
    attn_release(&dw->final_attn, ops, ctx);
    msam_norm_release(&dw->norm_final, ops, ctx);
    msam_norm_release(&dw->up_norm, ops, ctx);
    ops->linear_free(ctx, dw->up1);
    ops->linear_free(ctx, dw->up2);
    dw->up1 = dw->up2 = NULL;
    ops->linear_free(ctx, dw->u0);
    dw->u0 = NULL;
    float **split[] = {&dw->a1, &dw->a10, &dw->f1, &dw->h};
    for (size_t i = 0; i < sizeof split / sizeof split[0]; i++) ops->release(ctx, *split[i]), *split[i] = NULL;
    for (int m = 0; m < MSAM_MASK_TOKENS; m++)
        for (int l = 0; l < 3; l++) ops->linear_free(ctx, dw->hyper[m][l]), dw->hyper[m][l] = NULL;
    for (int l = 0; l < 3; l++) ops->linear_free(ctx, dw->iou[l]), dw->iou[l] = NULL;
    ops->release(ctx, dw->tokens);
    dw->tokens = NULL;
}

#define PROJ0_LD (3 * MSAM_CROSS)

/* Token buffers inside ws->tok, each max_tokens rows. */
enum { TB_PE, TB_Q, TB_T, TB_A, TB_B, TB_C, TB_ATT, TB_COUNT };
#define TOK_ROW_FLOATS (TB_COUNT * MSAM_EMB + MSAM_MLP)

size_t msam_decoder_tok_floats(int max_tokens) { return (size_t)max_tokens * TOK_ROW_FLOATS; }

void msam_decoder_image_side(const msam_model *m, msam_ctx *ctx, const msam_image_side *side) {
    /* Layer 0's image side is keys0 = embedding + dense prompt for every prompt: keys0 + pe, the
     * token-to-image projections t2i.k(keys0 + pe) | t2i.v(keys0) and the image-to-token queries
     * i2t.q(keys0 + pe), side by side (ld 384), and the image's share of the split up1. */
    const msam_ops *ops = m->ops;
    const msam_twoway_layer *L = &m->decoder.layers[0];
    ops->add(ctx, side->keys0pe, side->keys0, m->prompt.dense_pe, (size_t)MSAM_PIX * MSAM_EMB);
    ops->linear(ctx, side->proj0, PROJ0_LD, side->keys0pe, MSAM_EMB, MSAM_PIX, L->t2i.k, MSAM_ACT_NONE, NULL, 0);
    ops->linear(ctx, side->proj0 + MSAM_CROSS, PROJ0_LD, side->keys0, MSAM_EMB, MSAM_PIX, L->t2i.v, MSAM_ACT_NONE, NULL, 0);
    ops->linear(ctx, side->proj0 + 2 * MSAM_CROSS, PROJ0_LD, side->keys0pe, MSAM_EMB, MSAM_PIX, L->i2t.q, MSAM_ACT_NONE,
                NULL, 0);
    ops->linear(ctx, side->u0, MSAM_EMB, side->keys0, MSAM_EMB, MSAM_PIX, m->decoder.u0, MSAM_ACT_NONE, NULL, 0);
}

/* queries = norm(queries + attn.out(attention(attn.q(xq), attn.k(xk), attn.v(xv)))) for the
 * token side, where the image side is given as ready projections kh/vh, or (kh == NULL) folded
 * from the image x and xpe = x + PE. */
static void token_to_image(const msam_ops *ops, msam_ctx *ctx, const msam_attn_w *a, const msam_norm_w *norm,
                           float *Q, const float *PE, int T, const float *kh, const float *vh,
                           ptrdiff_t ldkv, const float *x, const float *xpe, float *tbuf,
                           float *qh, float *att, msam_decoder_ws *ws) {
    ops->add(ctx, tbuf, Q, PE, (size_t)T * MSAM_EMB);
    ops->linear(ctx, qh, MSAM_CROSS, tbuf, MSAM_EMB, T, a->q, MSAM_ACT_NONE, NULL, 0);
    if (kh) ops->attention(ctx, att, qh, MSAM_CROSS, kh, ldkv, vh, ldkv, T, MSAM_PIX, MSAM_HEADS, MSAM_CROSS / MSAM_HEADS);
    else msam_t2i_folded(ops, ctx, a, qh, T, xpe, x, att, ws);
    ops->linear(ctx, Q, MSAM_EMB, att, MSAM_CROSS, T, a->out, MSAM_ACT_NONE, Q, MSAM_EMB);
    ops->layernorm(ctx, Q, Q, T, MSAM_EMB, norm->g, norm->b, 1e-5f);
}

float *msam_decoder_sparse_slot(msam_decoder_ws *ws) {
    return ws->tok + (size_t)TB_PE * ws->max_tokens * MSAM_EMB + (size_t)(1 + MSAM_MASK_TOKENS) * MSAM_EMB;
}

int msam_decode_one(const msam_model *m, msam_ctx *ctx, msam_decoder_ws *ws, const msam_image_side *side, int Ts,
                    int multimask, const float *min_iou, uint8_t *kept, float *low, float *iou) {
    const msam_ops *ops = m->ops;
    const msam_decoder_w *dw = &m->decoder;
    const int T = 1 + MSAM_MASK_TOKENS + Ts;
    const size_t mt = (size_t)ws->max_tokens;
    float *tb[TB_COUNT];
    for (int i = 0; i < TB_COUNT; i++) tb[i] = ws->tok + (size_t)i * mt * MSAM_EMB;
    float *hidden = ws->tok + (size_t)TB_COUNT * mt * MSAM_EMB; /* T x 2048 */
    float *PE = tb[TB_PE], *Q = tb[TB_Q], *tmp = tb[TB_T];

    /* tokens = [iou token, mask tokens, sparse prompts (already in their slot)]; they are also
     * the query PE. */
    ops->copy(ctx, PE, dw->tokens, sizeof(float) * (1 + MSAM_MASK_TOKENS) * MSAM_EMB);
    ops->copy(ctx, Q, PE, sizeof(float) * T * MSAM_EMB);

    const int fold = T <= MSAM_FOLD_MAX_TOKENS;
    for (int l = 0; l < 2; l++) {
        const msam_twoway_layer *L = &dw->layers[l];
        const float *keys_in = l == 0 ? side->keys0 : ws->keys;
        float *qa = tb[TB_A], *ka = tb[TB_B], *va = tb[TB_C], *att = tb[TB_ATT];

        /* self-attention: the first layer neither adds the PE nor keeps a residual */
        const float *qk_in = Q;
        if (l > 0) {
            ops->add(ctx, tmp, Q, PE, (size_t)T * MSAM_EMB);
            qk_in = tmp;
        }
        ops->linear(ctx, qa, MSAM_EMB, qk_in, MSAM_EMB, T, L->self_attn.q, MSAM_ACT_NONE, NULL, 0);
        ops->linear(ctx, ka, MSAM_EMB, qk_in, MSAM_EMB, T, L->self_attn.k, MSAM_ACT_NONE, NULL, 0);
        ops->linear(ctx, va, MSAM_EMB, Q, MSAM_EMB, T, L->self_attn.v, MSAM_ACT_NONE, NULL, 0);
        ops->attention(ctx, att, qa, MSAM_EMB, ka, MSAM_EMB, va, MSAM_EMB, T, T, MSAM_HEADS, MSAM_EMB / MSAM_HEADS);
        ops->linear(ctx, Q, MSAM_EMB, att, MSAM_EMB, T, L->self_attn.out, MSAM_ACT_NONE, l > 0 ? Q : NULL, MSAM_EMB);
        ops->layernorm(ctx, Q, Q, T, MSAM_EMB, L->norm1.g, L->norm1.b, 1e-5f);

        /* tokens attend to the image (layer 0: through the cached projections); xpe = keys + PE,
         * made with the keys by the previous layer's norm4 */
        const float *xpe = l == 0 ? side->keys0pe : ws->tmp;
        if (l == 0) {
            token_to_image(ops, ctx, &L->t2i, &L->norm2, Q, PE, T, side->proj0, side->proj0 + MSAM_CROSS, PROJ0_LD,
                           NULL, NULL, tmp, qa, att, ws);
        } else if (fold) {
            token_to_image(ops, ctx, &L->t2i, &L->norm2, Q, PE, T, NULL, NULL, 0, keys_in, xpe, tmp, qa, att, ws);
        } else {
            ops->linear(ctx, ws->kp, MSAM_CROSS, xpe, MSAM_EMB, MSAM_PIX, L->t2i.k, MSAM_ACT_NONE, NULL, 0);
            ops->linear(ctx, ws->vp, MSAM_CROSS, keys_in, MSAM_EMB, MSAM_PIX, L->t2i.v, MSAM_ACT_NONE, NULL, 0);
            token_to_image(ops, ctx, &L->t2i, &L->norm2, Q, PE, T, ws->kp, ws->vp, MSAM_CROSS, NULL, NULL, tmp, qa, att, ws);
        }

        /* token MLP (ReLU) */
        ops->linear(ctx, hidden, MSAM_MLP, Q, MSAM_EMB, T, L->lin1, MSAM_ACT_RELU, NULL, 0);
        ops->linear(ctx, Q, MSAM_EMB, hidden, MSAM_MLP, T, L->lin2, MSAM_ACT_NONE, Q, MSAM_EMB);
        ops->layernorm(ctx, Q, Q, T, MSAM_EMB, L->norm3.g, L->norm3.b, 1e-5f);

        /* the image attends to the tokens: queries from the image (+PE), keys tokens (+PE) */
        ops->add(ctx, tmp, Q, PE, (size_t)T * MSAM_EMB);
        ops->linear(ctx, ka, MSAM_CROSS, tmp, MSAM_EMB, T, L->i2t.k, MSAM_ACT_NONE, NULL, 0);
        ops->linear(ctx, va, MSAM_CROSS, Q, MSAM_EMB, T, L->i2t.v, MSAM_ACT_NONE, NULL, 0);
        /* layer 0: its image queries are cached next to the t2i projections */
        const float *q0 = l == 0 ? side->proj0 + 2 * MSAM_CROSS : NULL;
        if (fold) {
            /* keep this layer's probabilities and its folded value rows through the up1 split */
            float *S = l == 0 ? ws->kp : ws->vp, *Msplit = ws->split_m + (size_t)l * MSAM_CROSS * MSAM_EMB;
            msam_i2t_folded(ops, ctx, &L->i2t, ka, va, T, xpe, q0, PROJ0_LD, keys_in, ws->keys, S,
                            l == 0 ? dw->a10 : dw->a1, Msplit, ws);
        } else {
            if (!q0) ops->linear(ctx, ws->qp, MSAM_CROSS, xpe, MSAM_EMB, MSAM_PIX, L->i2t.q, MSAM_ACT_NONE, NULL, 0);
            ops->attention(ctx, ws->att, q0 ? q0 : ws->qp, q0 ? PROJ0_LD : MSAM_CROSS, ka, MSAM_CROSS, va, MSAM_CROSS,
                           MSAM_PIX, T, MSAM_HEADS, MSAM_CROSS / MSAM_HEADS);
            ops->linear(ctx, ws->keys, MSAM_EMB, ws->att, MSAM_CROSS, MSAM_PIX, L->i2t.out, MSAM_ACT_NONE, keys_in, MSAM_EMB);
        }
        ops->layernorm_pe(ctx, ws->keys, ws->tmp, ws->rstd + (size_t)l * MSAM_PIX, ws->keys, m->prompt.dense_pe, MSAM_PIX,
                          MSAM_EMB, L->norm4.g, L->norm4.b, 1e-5f);
    }

    /* final token-to-image attention, for the output tokens only: the IoU head and the
     * hypernetworks read nothing else, and each token's path here is its own. Five tokens always
     * fit the folded form. */
    token_to_image(ops, ctx, &dw->final_attn, &dw->norm_final, Q, PE, 1 + MSAM_MASK_TOKENS, NULL, NULL, 0, ws->keys,
                   ws->tmp, tmp, tb[TB_A], tb[TB_ATT], ws);

    /* IoU head on the IoU token (first: an IoU filter decides which masks to make) */
    const int first = multimask ? 1 : 0, n = msam_num_masks(multimask);
    float *h1 = tb[TB_A], *h2 = tb[TB_B], *hyper = tb[TB_C];
    ops->linear(ctx, h1, MSAM_EMB, Q, MSAM_EMB, 1, dw->iou[0], MSAM_ACT_RELU, NULL, 0);
    ops->linear(ctx, h2, MSAM_EMB, h1, MSAM_EMB, 1, dw->iou[1], MSAM_ACT_RELU, NULL, 0);
    ops->linear(ctx, tmp, MSAM_MASK_TOKENS, h2, MSAM_EMB, 1, dw->iou[2], MSAM_ACT_NONE, NULL, 0);
    /* the selected masks' scores, straight into the caller's op memory */
    ops->copy(ctx, iou, tmp + first, sizeof(float) * n);

    /* which masks to make: all, or (min_iou, host memory only) those whose IoU is above it */
    int made = 0, which[MSAM_MASK_TOKENS];
    for (int i = 0; i < n; i++) {
        const int keep = !min_iou || tmp[first + i] > *min_iou;
        if (kept) kept[i] = (uint8_t)keep;
        if (keep) which[made++] = first + i;
    }
    if (!made) return 0;

    /* hypernetwork MLPs on the masks' tokens -> 32 each, packed */
    for (int j = 0; j < made; j++) {
        const float *tok = Q + (size_t)(1 + which[j]) * MSAM_EMB;
        ops->linear(ctx, h1, MSAM_EMB, tok, MSAM_EMB, 1, dw->hyper[which[j]][0], MSAM_ACT_RELU, NULL, 0);
        ops->linear(ctx, h2, MSAM_EMB, h1, MSAM_EMB, 1, dw->hyper[which[j]][1], MSAM_ACT_RELU, NULL, 0);
        ops->linear(ctx, hyper + (size_t)j * 32, 32, h2, MSAM_EMB, 1, dw->hyper[which[j]][2], MSAM_ACT_NONE, NULL, 0);
    }
    /* upscale (convT 2x2 s2 256->64, LayerNorm2d, GELU, convT 2x2 s2 64->32, GELU) and the masks
     * the hypernetwork vectors make of it, in one op; on the folded path the first product comes
     * in parts (split_load) */
    msam_upscale_parts parts, *pp = NULL;
    if (fold) {
        parts.p0 = ws->kp, parts.p1 = ws->vp, parts.k = MSAM_HEADS * T;
        parts.m0 = ws->split_m, parts.m1 = ws->split_m + (size_t)MSAM_CROSS * MSAM_EMB;
        parts.u0 = side->u0, parts.f1 = dw->f1, parts.h = dw->h, parts.s0 = ws->rstd, parts.s1 = ws->rstd + MSAM_PIX;
        pp = &parts;
    }
    ops->upscale_masks(ctx, low, ws->keys, pp, MSAM_GRID, dw->up1, dw->up_norm.g, dw->up_norm.b, 1e-6f, dw->up2,
                       hyper, made, ws->up_scratch, ws->up_scratch_bytes);
    return made;
}
