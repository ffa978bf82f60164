/* cuda_backend_probe.c - a test program linked with the emulation build's objects: what the CUDA
 * op table does that Python cannot reach (counters, first-error recording, the op trace's scheme,
 * overlapping copies, matmul's packed strides) and what reaches the emulated runtime in a predict.
 * Prints one line per failed check; exit status 1 then. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"
#include "cpu/cpu_backend.h"
#include "cuda/backend/cuda_backend.h"
#include "ref/ref.h"

/* The emulated runtime's own counters (csrc/cuda/emu/cuda_emu.h, C linkage): what reached the
 * runtime, independent of the op table's bookkeeping. */
typedef struct {
    long long launches, mallocs, h2d, d2h, syncs;
} emu_counters;
void msam_emu_get_counters(emu_counters *c);

static int failures;
#define CHECK(cond, ...)                                                                                   \
    do {                                                                                                   \
        if (!(cond)) {                                                                                     \
            failures++;                                                                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                    \
            printf(__VA_ARGS__);                                                                           \
            printf("\n");                                                                                  \
        }                                                                                                  \
    } while (0)

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 8388608.0f - 1.0f;
}

/* copy_in counts h2d, copy_out d2h (no sync), sync syncs, alloc allocs; ctx == NULL counts nothing. */
static void counters(const msam_ops *o) {
    msam_ctx *ctx = o->ctx_create();
    msam_counters c;
    float host[64] = {0}, back[64];
    for (int i = 0; i < 64; i++) host[i] = (float)i;
    void *d = o->alloc(ctx, sizeof host), *e = o->alloc(NULL, sizeof host);
    o->copy_in(ctx, d, host, sizeof host);
    o->copy_in(NULL, e, host, sizeof host);
    o->copy(NULL, e, d, sizeof host);
    o->copy_out(ctx, back, d, sizeof host);
    o->copy_out(NULL, back, e, sizeof host);
    o->counters(ctx, &c);
    CHECK(c.allocs == 1 && c.h2d == 1 && c.d2h == 1 && c.syncs == 0, "counters %llu %llu %llu %llu",
          (unsigned long long)c.allocs, (unsigned long long)c.h2d, (unsigned long long)c.d2h,
          (unsigned long long)c.syncs);
    CHECK(memcmp(back, host, sizeof host) == 0, "copies lost data");
    o->sync(ctx);
    o->counters(ctx, &c);
    CHECK(c.syncs == 1, "sync not counted");
    o->release(ctx, d);
    o->release(NULL, e);
    o->ctx_free(ctx);
}

/* The same op names give the CPU backend's trace: one FNV-1a scheme for both. */
static void trace(const msam_ops *cuda) {
    const msam_ops *cpu = msam_cpu_ops();
    uint64_t h[2], n[2];
    for (int b = 0; b < 2; b++) {
        const msam_ops *o = b ? cuda : cpu;
        msam_ctx *ctx = o->ctx_create();
        float host[32];
        for (int i = 0; i < 32; i++) host[i] = (float)i;
        float *x = o->alloc(ctx, sizeof host), *g = o->alloc(ctx, 8 * sizeof(float));
        o->copy_in(ctx, x, host, sizeof host);
        o->copy_in(ctx, g, host, 8 * sizeof(float));
        o->add(ctx, x, x, x, 32);
        o->layernorm(ctx, x, x, 4, 8, g, g, 1e-5f);
        o->softmax(ctx, x, 4, 8, 8, 1.0f);
        o->copy(ctx, x, x + 8, 8 * sizeof(float));
        o->trace(ctx, &h[b], &n[b]);
        o->release(ctx, x);
        o->release(ctx, g);
        o->ctx_free(ctx);
    }
    CHECK(h[0] == h[1] && n[0] == n[1] && n[0] == 6, "traces differ: cpu %llx/%llu cuda %llx/%llu",
          (unsigned long long)h[0], (unsigned long long)n[0], (unsigned long long)h[1], (unsigned long long)n[1]);
}

/* A failing launch is recorded, and the first error stays. */
static void errors(const msam_ops *o) {
    msam_ctx *ctx = o->ctx_create();
    CHECK(msam_cuda_ctx_error(ctx) == 0, "a new context has an error");
    float *buf = o->alloc(ctx, 4096 * sizeof(float));
    o->add(ctx, buf, buf, buf, 16);
    CHECK(msam_cuda_ctx_error(ctx) == 0, "a good op recorded an error");
    o->attention(ctx, buf, buf, 80, buf, 80, buf, 80, 1, 1, 1, 80); /* dh > 64: invalid */
    const int first = msam_cuda_ctx_error(ctx);
    CHECK(first == 1 /* cudaErrorInvalidValue */, "attention with dh 80 recorded %d", first);
    o->window_attention(ctx, buf, buf, buf, 4, 4, 20, 1, 8, buf, 1.0f, NULL, 0); /* win*win > 256 */
    CHECK(msam_cuda_ctx_error(ctx) == first, "a later error replaced the first");
    o->release(ctx, buf);
    o->ctx_free(ctx);
}

/* ops->copy is a memmove: overlapping ranges either way, odd sizes and shifts. */
static void memmoves(const msam_ops *o) {
    static const size_t sizes[] = {1, 7, 255, 256, 257, 1000, 5000};
    static const long shifts[] = {1, -1, 3, -5, 200, -300, 999};
    unsigned char host[8000], want[8000], got[8000]; /* src 1000 + 5000 bytes + a shift of 999 fits */
    msam_ctx *ctx = o->ctx_create();
    unsigned char *d = o->alloc(ctx, sizeof host);
    for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++)
        for (size_t b = 0; b < sizeof shifts / sizeof *shifts; b++) {
            for (size_t i = 0; i < sizeof host; i++) host[i] = (unsigned char)(i * 131 + a * 7 + b);
            const size_t n = sizes[a], src = 1000, dst = (size_t)((long)src + shifts[b]);
            memcpy(want, host, sizeof host);
            memmove(want + dst, want + src, n);
            o->copy_in(ctx, d, host, sizeof host);
            o->copy(b & 1 ? NULL : ctx, d + dst, d + src, n);
            o->copy_out(ctx, got, d, sizeof host);
            CHECK(memcmp(got, want, sizeof host) == 0, "memmove of %zu bytes by %ld", n, shifts[b]);
        }
    CHECK(msam_cuda_ctx_error(ctx) == 0, "memmove recorded %d", msam_cuda_ctx_error(ctx));
    o->release(ctx, d);
    o->ctx_free(ctx);
}

/* matmul with strides cuBLAS cannot take (packed first), and the two it can, against the reference. */
static void matmul_strides(const msam_ops *o) {
    enum { M = 9, N = 13, K = 11, SPAN = 4 * N * K };
    static const ptrdiff_t strides[][2] = {{K, 1}, {1, N}, {2 * K, 2}, {3, 3 * N}, {K + 3, 1}, {1, N + 5}};
    unsigned seed = 7;
    float x[M * K], w[SPAN], bias[N], r[M * N], want[M * N], got[M * N];
    for (int i = 0; i < M * K; i++) x[i] = frand(&seed);
    for (int i = 0; i < SPAN; i++) w[i] = frand(&seed);
    for (int i = 0; i < N; i++) bias[i] = frand(&seed);
    for (int i = 0; i < M * N; i++) r[i] = frand(&seed);
    msam_ctx *ctx = o->ctx_create();
    float *xd = o->alloc(ctx, sizeof x), *wd = o->alloc(ctx, sizeof w), *bd = o->alloc(ctx, sizeof bias);
    float *yd = o->alloc(ctx, sizeof r), *rd = o->alloc(ctx, sizeof r);
    void *scratch = o->alloc(ctx, o->matmul_scratch_bytes(N, K));
    o->copy_in(ctx, xd, x, sizeof x);
    o->copy_in(ctx, wd, w, sizeof w);
    o->copy_in(ctx, bd, bias, sizeof bias);
    o->copy_in(ctx, rd, r, sizeof r);
    for (size_t s = 0; s < sizeof strides / sizeof *strides; s++) {
        const ptrdiff_t sn = strides[s][0], sk = strides[s][1];
        msam_ref_matmul(want, N, x, K, M, w, sn, sk, N, K, bias, r, N);
        o->matmul(ctx, yd, N, xd, K, M, wd, sn, sk, N, K, bd, rd, N, scratch);
        o->copy_out(ctx, got, yd, sizeof got);
        float err = 0.0f;
        for (int i = 0; i < M * N; i++) {
            const float e = got[i] > want[i] ? got[i] - want[i] : want[i] - got[i];
            if (!(e <= err)) err = e;
        }
        CHECK(err <= 1e-5f, "matmul strides (%td, %td): error %g", sn, sk, err);
    }
    CHECK(msam_cuda_ctx_error(ctx) == 0, "matmul recorded %d", msam_cuda_ctx_error(ctx));
    void *bufs[] = {xd, wd, bd, yd, rd, scratch};
    for (int i = 0; i < 6; i++) o->release(ctx, bufs[i]);
    o->ctx_free(ctx);
}

/* A whole GPU-resident predict through the core's C API (random weights from the spec, a random
 * embedding): at the runtime, kernels and the prompt's one upload, and no cudaMalloc, no
 * synchronisation, no device->host copy; the outputs stay in device buffers until read. */
static void resident_predict(void) {
    const size_t n = msam_weight_spec_count();
    msam_weight *w = calloc(n, sizeof *w);
    size_t used = 0;
    unsigned seed = 3;
    for (size_t i = 0; i < n; i++) {
        const msam_weight_spec *sp = msam_weight_spec_at(i);
        if (sp->is_int64) continue; /* BatchNorm's counters: not read */
        size_t numel = 1;
        for (int d = 0; d < sp->ndim; d++) numel *= (size_t)sp->shape[d];
        float *data = malloc(sizeof(float) * (numel ? numel : 1));
        const int var = strstr(sp->name, "running_var") != NULL;
        for (size_t j = 0; j < numel; j++) data[j] = var ? 1.0f + 0.1f * frand(&seed) : 0.05f * frand(&seed);
        w[used].name = sp->name, w[used].data = data, w[used].ndim = sp->ndim;
        memcpy(w[used].shape, sp->shape, sizeof sp->shape);
        used++;
    }
    msam_error err = {{0}};
    msam_model *model = NULL;
    msam_session *sess = NULL;
    msam_buffer *masks = NULL, *iou = NULL;
    float *emb = malloc(sizeof(float) * 256 * 64 * 64);
    for (int i = 0; i < 256 * 64 * 64; i++) emb[i] = frand(&seed);
    int ok = !msam_model_create(w, used, MSAM_DEVICE_CUDA, &model, &err) && !msam_session_create(model, &sess, &err) &&
             !msam_session_set_embedding(sess, emb, 64 * 64, 64, 1, &err) &&
             !msam_buffer_create(model, 3 * 300 * 400, &masks, &err) &&
             !msam_buffer_create(model, 3 * sizeof(float), &iou, &err);
    CHECK(ok, "setting up a cuda session: %s", err.msg);
    if (ok) {
        const float coords[2] = {500.0f, 400.0f};
        const int32_t labels[1] = {1};
        msam_prompts p = {1, 1, coords, labels, NULL, NULL, 0, 0, 0};
        msam_outputs o = {1, 0, 300, 400, 768, 1024, msam_buffer_data(masks), msam_buffer_data(iou), NULL, NULL, 0.0f};
        emu_counters e0, e1;
        msam_counters c0, c1;
        msam_session_counters(sess, &c0);
        msam_emu_get_counters(&e0);
        CHECK(!msam_predict(sess, &p, &o, &err), "predict: %s", err.msg);
        msam_emu_get_counters(&e1);
        msam_session_counters(sess, &c1);
        CHECK(e1.launches > e0.launches && e1.mallocs == e0.mallocs && e1.syncs == e0.syncs && e1.d2h == e0.d2h &&
                  e1.h2d == e0.h2d + 1,
              "runtime during predict: %lld launches, %lld mallocs, %lld syncs, %lld d2h, %lld h2d",
              e1.launches - e0.launches, e1.mallocs - e0.mallocs, e1.syncs - e0.syncs, e1.d2h - e0.d2h,
              e1.h2d - e0.h2d);
        CHECK(c1.h2d == c0.h2d + 1 && c1.d2h == c0.d2h && c1.syncs == c0.syncs && c1.allocs == c0.allocs,
              "the session's counters moved");
        float scores[3] = {NAN, NAN, NAN};
        CHECK(!msam_buffer_read(iou, 0, scores, sizeof scores, &err), "reading iou: %s", err.msg);
        CHECK(isfinite(scores[0]) && isfinite(scores[1]) && isfinite(scores[2]), "iou not finite");
    }
    msam_buffer_free(masks);
    msam_buffer_free(iou);
    msam_session_free(sess);
    msam_model_free(model);
    free(emb);
    for (size_t i = 0; i < used; i++) free((void *)w[i].data);
    free(w);
}

int main(void) {
    const msam_ops *o = msam_backend_ops(MSAM_DEVICE_CUDA);
    if (!o || o != msam_cuda_ops() || strcmp(o->name, "cuda") != 0 || o->host_memory) {
        printf("FAIL: the registry has no cuda table\n");
        return 1;
    }
    counters(o);
    trace(o);
    errors(o);
    memmoves(o);
    matmul_strides(o);
    resident_predict();
    printf("%s (%d failed)\n", failures ? "FAILED" : "ok", failures);
    return failures != 0;
}
