/* weight_spec.c - the names, shapes and dtypes of every tensor in a MobileSAM vit_t state dict,
 * generated from the architecture so loaders can validate a checkpoint like strict load_state_dict. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "msam.h"

#define MAX_SPECS 512
#define NAME_POOL (MAX_SPECS * 80)

static msam_weight_spec g_specs[MAX_SPECS];
static char g_names[NAME_POOL];
static size_t g_count, g_pool_used;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void add(int is_int64, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                const char *fmt, ...) __attribute__((format(printf, 7, 8)));

#include <stdarg.h>
static void add(int is_int64, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                const char *fmt, ...) {
    if (g_count >= MAX_SPECS) return;
    va_list ap;
    va_start(ap, fmt);
    char *dst = g_names + g_pool_used;
    int n = vsnprintf(dst, NAME_POOL - g_pool_used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + 1 > NAME_POOL - g_pool_used) return;
    g_pool_used += (size_t)n + 1;
    msam_weight_spec *s = &g_specs[g_count++];
    s->name = dst;
    s->ndim = ndim;
    s->shape[0] = d0, s->shape[1] = d1, s->shape[2] = d2, s->shape[3] = d3;
    s->is_int64 = is_int64;
}

static void vec(const char *name, const char *suffix, int64_t n) { add(0, 1, n, 0, 0, 0, "%s.%s", name, suffix); }
static void mat(const char *name, int64_t o, int64_t i) {
    add(0, 2, o, i, 0, 0, "%s.weight", name);
    vec(name, "bias", o);
}
static void conv_bn(const char *name, int64_t o, int64_t i_per_group, int64_t k) {
    add(0, 4, o, i_per_group, k, k, "%s.c.weight", name);
    vec(name, "bn.weight", o);
    vec(name, "bn.bias", o);
    vec(name, "bn.running_mean", o);
    vec(name, "bn.running_var", o);
    add(1, 0, 0, 0, 0, 0, "%s.bn.num_batches_tracked", name);
}
static void layernorm(const char *name, int64_t c) {
    vec(name, "weight", c);
    vec(name, "bias", c);
}

static void build(void) {
    char p[160], q[200];
    static const int dims[4] = {64, 128, 160, 320}, depths[4] = {2, 2, 6, 2};
    static const int heads[4] = {2, 4, 5, 10}, windows[4] = {7, 7, 14, 7};

    conv_bn("image_encoder.patch_embed.seq.0", 32, 3, 3);
    conv_bn("image_encoder.patch_embed.seq.2", 64, 32, 3);
    for (int l = 0; l < 4; l++) {
        int d = dims[l];
        for (int b = 0; b < depths[l]; b++) {
            snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.%d", l, b);
            if (l == 0) {
                snprintf(q, sizeof q, "%s.conv1", p), conv_bn(q, 4 * d, d, 1);
                snprintf(q, sizeof q, "%s.conv2", p), conv_bn(q, 4 * d, 1, 3);
                snprintf(q, sizeof q, "%s.conv3", p), conv_bn(q, d, 4 * d, 1);
                continue;
            }
            int w = windows[l];
            /* TinyViT's attention bias table has one entry per distinct (|dy|,|dx|): w*w. */
            add(0, 2, heads[l], (int64_t)w * w, 0, 0, "%s.attn.attention_biases", p);
            snprintf(q, sizeof q, "%s.attn.norm", p), layernorm(q, d);
            snprintf(q, sizeof q, "%s.attn.qkv", p), mat(q, 3 * d, d);
            snprintf(q, sizeof q, "%s.attn.proj", p), mat(q, d, d);
            snprintf(q, sizeof q, "%s.mlp.norm", p), layernorm(q, d);
            snprintf(q, sizeof q, "%s.mlp.fc1", p), mat(q, 4 * d, d);
            snprintf(q, sizeof q, "%s.mlp.fc2", p), mat(q, d, 4 * d);
            snprintf(q, sizeof q, "%s.local_conv", p), conv_bn(q, d, 1, 3);
        }
        if (l < 3) {
            int o = dims[l + 1];
            snprintf(p, sizeof p, "image_encoder.layers.%d.downsample", l);
            snprintf(q, sizeof q, "%s.conv1", p), conv_bn(q, o, d, 1);
            snprintf(q, sizeof q, "%s.conv2", p), conv_bn(q, o, 1, 3);
            snprintf(q, sizeof q, "%s.conv3", p), conv_bn(q, o, o, 1);
        }
    }
    add(0, 4, 256, 320, 1, 1, "image_encoder.neck.0.weight");
    layernorm("image_encoder.neck.1", 256);
    add(0, 4, 256, 256, 3, 3, "image_encoder.neck.2.weight");
    layernorm("image_encoder.neck.3", 256);

    add(0, 2, 2, 128, 0, 0, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
    for (int i = 0; i < 4; i++) add(0, 2, 1, 256, 0, 0, "prompt_encoder.point_embeddings.%d.weight", i);
    add(0, 2, 1, 256, 0, 0, "prompt_encoder.not_a_point_embed.weight");
    add(0, 4, 4, 1, 2, 2, "prompt_encoder.mask_downscaling.0.weight");
    vec("prompt_encoder.mask_downscaling.0", "bias", 4);
    layernorm("prompt_encoder.mask_downscaling.1", 4);
    add(0, 4, 16, 4, 2, 2, "prompt_encoder.mask_downscaling.3.weight");
    vec("prompt_encoder.mask_downscaling.3", "bias", 16);
    layernorm("prompt_encoder.mask_downscaling.4", 16);
    add(0, 4, 256, 16, 1, 1, "prompt_encoder.mask_downscaling.6.weight");
    vec("prompt_encoder.mask_downscaling.6", "bias", 256);
    add(0, 2, 1, 256, 0, 0, "prompt_encoder.no_mask_embed.weight");

    static const char *attn_names[3] = {"self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"};
    for (int l = 0; l < 2; l++) {
        for (int a = 0; a < 3; a++) {
            int inner = a == 0 ? 256 : 128;
            snprintf(p, sizeof p, "mask_decoder.transformer.layers.%d.%s", l, attn_names[a]);
            snprintf(q, sizeof q, "%s.q_proj", p), mat(q, inner, 256);
            snprintf(q, sizeof q, "%s.k_proj", p), mat(q, inner, 256);
            snprintf(q, sizeof q, "%s.v_proj", p), mat(q, inner, 256);
            snprintf(q, sizeof q, "%s.out_proj", p), mat(q, 256, inner);
            if (a == 0) {
                snprintf(q, sizeof q, "mask_decoder.transformer.layers.%d.norm1", l), layernorm(q, 256);
            } else if (a == 1) {
                snprintf(q, sizeof q, "mask_decoder.transformer.layers.%d.norm2", l), layernorm(q, 256);
                snprintf(q, sizeof q, "mask_decoder.transformer.layers.%d.mlp.lin1", l), mat(q, 2048, 256);
                snprintf(q, sizeof q, "mask_decoder.transformer.layers.%d.mlp.lin2", l), mat(q, 256, 2048);
                snprintf(q, sizeof q, "mask_decoder.transformer.layers.%d.norm3", l), layernorm(q, 256);
                snprintf(q, sizeof q, "mask_decoder.transformer.layers.%d.norm4", l), layernorm(q, 256);
            }
        }
    }
    mat("mask_decoder.transformer.final_attn_token_to_image.q_proj", 128, 256);
    mat("mask_decoder.transformer.final_attn_token_to_image.k_proj", 128, 256);
    mat("mask_decoder.transformer.final_attn_token_to_image.v_proj", 128, 256);
    mat("mask_decoder.transformer.final_attn_token_to_image.out_proj", 256, 128);
    layernorm("mask_decoder.transformer.norm_final_attn", 256);
    add(0, 2, 1, 256, 0, 0, "mask_decoder.iou_token.weight");
    add(0, 2, 4, 256, 0, 0, "mask_decoder.mask_tokens.weight");
    add(0, 4, 256, 64, 2, 2, "mask_decoder.output_upscaling.0.weight");
    vec("mask_decoder.output_upscaling.0", "bias", 64);
    layernorm("mask_decoder.output_upscaling.1", 64);
    add(0, 4, 64, 32, 2, 2, "mask_decoder.output_upscaling.3.weight");
    vec("mask_decoder.output_upscaling.3", "bias", 32);
    for (int m = 0; m < 4; m++) {
        snprintf(p, sizeof p, "mask_decoder.output_hypernetworks_mlps.%d.layers", m);
        snprintf(q, sizeof q, "%s.0", p), mat(q, 256, 256);
        snprintf(q, sizeof q, "%s.1", p), mat(q, 256, 256);
        snprintf(q, sizeof q, "%s.2", p), mat(q, 32, 256);
    }
    mat("mask_decoder.iou_prediction_head.layers.0", 256, 256);
    mat("mask_decoder.iou_prediction_head.layers.1", 256, 256);
    mat("mask_decoder.iou_prediction_head.layers.2", 4, 256);
}

static void ensure(void) { pthread_once(&g_once, build); }

size_t msam_weight_spec_count(void) {
    ensure();
    return g_count;
}

const msam_weight_spec *msam_weight_spec_at(size_t i) {
    ensure();
    return i < g_count ? &g_specs[i] : NULL;
}
