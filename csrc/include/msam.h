/* msam.h - the public C API of the mobile_sam_c core (MobileSAM vit_t inference).
 * Opaque handles with explicit lifetimes, status codes and messages; no Python, no globals but the thread count. */
#ifndef MSAM_H
#define MSAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MSAM_OK = 0,
    MSAM_ERR_ARG = 1,      /* a bad argument; the message names it */
    MSAM_ERR_NOMEM = 2,    /* an allocation failed */
    MSAM_ERR_WEIGHTS = 3,  /* a weight is missing or has the wrong shape */
    MSAM_ERR_STATE = 4,    /* call out of order (e.g. predict before an image) */
    MSAM_ERR_BACKEND = 5,  /* the device backend failed */
    MSAM_ERR_DEVICE = 6    /* the device cannot be used here: not built in, no driver or GPU, a
                              library it needs missing; the message says which and what to do */
} msam_status;

typedef enum { MSAM_DEVICE_CPU = 0, MSAM_DEVICE_CUDA = 1 } msam_device;

/* 1 when this library was built with the backend for device (the CPU always is). */
int msam_device_available(msam_device device);

/* ---- the model's fixed sizes and the library's limits (their one home) ---------- */
#define MSAM_IMG_SIZE 1024      /* encoder input side: the long side after ResizeLongestSide */
#define MSAM_EMBED_DIM 256      /* image embedding: 256 x 64 x 64 */
#define MSAM_EMBED_SIDE 64
#define MSAM_LOW_RES 256        /* low-resolution mask logits: 256 x 256 */
/* Sam.pixel_mean / pixel_std (RGB, 0..255 scale) */
#define MSAM_PIXEL_MEAN_INIT {123.675f, 116.28f, 103.53f}
#define MSAM_PIXEL_STD_INIT {58.395f, 57.12f, 57.375f}
/* The largest image a predictor takes (checked before anything is allocated): each side at most
 * MSAM_MAX_IMAGE_SIDE pixels and at most MSAM_MAX_IMAGE_PIXELS pixels in all (16384 x 16384). */
#define MSAM_MAX_IMAGE_SIDE 65536
#define MSAM_MAX_IMAGE_PIXELS ((int64_t)1 << 28)
/* Points (and box) per prompt set: the decoder's token buffers are sized for this many when a
 * session is created, so predict never allocates. */
#define MSAM_MAX_PROMPT_POINTS 256

/* Every fallible call takes an error buffer (may be NULL) that receives a message. */
typedef struct {
    char msg[512];
} msam_error;

/* MSAM_OK when models can be made on device on this machine; otherwise MSAM_ERR_DEVICE with the
 * reason (not built into this library; for CUDA: no driver or GPU, no code for the GPU in this
 * build, cuBLAS not found). May initialise the device (for CUDA: its primary context). */
msam_status msam_device_check(msam_device device, msam_error *err);

/* ---- weights ------------------------------------------------------------ */
/* One named float32 tensor in PyTorch layout (Linear [out,in], Conv [out,in/groups,kh,kw]). */
typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[4];
} msam_weight;

/* The table of tensors a MobileSAM vit_t state dict holds (int64 BatchNorm counters
 * included, flagged is_int64; the unused classifier head is not listed). */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    int is_int64;
} msam_weight_spec;

size_t msam_weight_spec_count(void);
const msam_weight_spec *msam_weight_spec_at(size_t i);

/* ---- model (immutable converted weights, shareable between sessions/threads) -- */
typedef struct msam_model msam_model;

msam_status msam_model_create(const msam_weight *weights, size_t n_weights, msam_device device,
                              msam_model **out, msam_error *err);
void msam_model_free(msam_model *model);
msam_device msam_model_device(const msam_model *model);

/* ---- buffers in the model's backend memory (outputs; host memory on the CPU) ---- */
typedef struct msam_buffer msam_buffer;

/* bytes of op memory of m's backend; the model must outlive the buffer. */
msam_status msam_buffer_create(const msam_model *m, size_t bytes, msam_buffer **out, msam_error *err);
void msam_buffer_free(msam_buffer *b);
void *msam_buffer_data(const msam_buffer *b);
size_t msam_buffer_size(const msam_buffer *b);
msam_device msam_buffer_device(const msam_buffer *b);
/* Copy bytes from offset of b into host memory, waiting for the copy (a device->host transfer
 * on a GPU backend). */
msam_status msam_buffer_read(const msam_buffer *b, size_t offset, void *host, size_t bytes, msam_error *err);
/* Copy bytes from host memory into b at offset, waiting for the copy. */
msam_status msam_buffer_write(msam_buffer *b, size_t offset, const void *host, size_t bytes, msam_error *err);
/* Order work later submitted to consumer_stream (a cudaStream_t as an integer, valid on b's device:
 * DLPack's __dlpack__(stream=...)) after everything issued so far that may write b, with no host
 * wait. MSAM_OK and nothing to do on the CPU. */
msam_status msam_buffer_export_to(const msam_buffer *b, uintptr_t consumer_stream, msam_error *err);

/* ---- session (one predictor: arena, image embedding, sizes) ------------------ */
typedef struct msam_session msam_session;

msam_status msam_session_create(const msam_model *model, msam_session **out, msam_error *err);
void msam_session_free(msam_session *s);

/* Called after each encoder stage when given (debugging and per-stage parity).
 * data is host float32 in H x W x C order (channels last). */
typedef void (*msam_stage_fn)(void *user, const char *stage, const float *data, int h, int w, int c);

/* Pillow-exact antialiased bilinear resize of an 8-bit image with 3 channels.
 * src rows are src_row_stride bytes apart, pixels src_px_stride bytes apart, channels 1 byte
 * apart (channel order reversed when bgr != 0). dst is packed nh x nw x 3. */
msam_status msam_resize_rgb8(const uint8_t *src, int h, int w, ptrdiff_t src_row_stride,
                             ptrdiff_t src_px_stride, int bgr, uint8_t *dst, int nh, int nw,
                             msam_error *err);

/* Encode an image already resized so its long side is 1024 (h x w x 3 packed uint8 RGB). */
msam_status msam_session_set_image_u8(msam_session *s, const uint8_t *rgb, int h, int w,
                                      msam_stage_fn stage_fn, void *stage_user, msam_error *err);
/* Resize (Pillow-exact BILINEAR, as msam_resize_rgb8) and encode an RGB8 image that is already in
 * the model's backend memory (a frame on the GPU): h x w pixels, rows row_stride bytes apart,
 * pixels px_stride, channels 1 byte apart (BGR when bgr), resized to nh x nw (long side 1024). */
msam_status msam_session_set_image_rgb8(msam_session *s, const uint8_t *src, int h, int w, ptrdiff_t row_stride,
                                        ptrdiff_t px_stride, int bgr, int nh, int nw, msam_stage_fn stage_fn,
                                        void *stage_user, msam_error *err);
/* Encode a 3 x h x w float image of raw pixel values (not normalised; long side 1024),
 * addressed through element strides (c, y, x). */
msam_status msam_session_set_image_f32(msam_session *s, const float *chw, int h, int w,
                                       ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x,
                                       msam_stage_fn stage_fn, void *stage_user, msam_error *err);
/* Use a stored 256 x 64 x 64 (C,H,W) embedding instead of running the encoder. */
msam_status msam_session_set_embedding(msam_session *s, const float *chw_256x64x64,
                                       ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x,
                                       msam_error *err);
/* Copy the current embedding out as packed 256 x 64 x 64 (C,H,W) host floats. */
msam_status msam_session_get_embedding(msam_session *s, float *out, msam_error *err);
void msam_session_reset(msam_session *s);
int msam_session_has_image(const msam_session *s);

/* ---- prompts and outputs ------------------------------------------------------ */
/* Prompts for B prompt sets, all in the 1024 input frame (ResizeLongestSide applied). */
typedef struct {
    int batch;                /* B >= 1 */
    int n_points;             /* N >= 0 points per set */
    const float *coords;      /* B x N x 2 (x, y), or NULL when n_points == 0 */
    const int32_t *labels;    /* B x N, each in {-1, 0, 1} */
    const float *boxes;       /* B x 4 (x0, y0, x1, y1), or NULL */
    const float *mask_input;  /* mask_batch x 256 x 256 low-res logits, or NULL */
    int mask_batch;           /* 1 (broadcast) or B */
    /* GPU prompts: coords, labels and boxes are in the model's backend memory (mask_input stays
     * host memory) and are encoded there, never read back, so never validated: non-finite values
     * give NaN outputs; a label other than -1, 0, 1 gets the position encoding alone. */
    int on_device;
    int labels_int64;         /* labels are int64 (torch's default), not int32 */
} msam_prompts;

typedef struct {
    int multimask;            /* 1: masks 1..3, 0: mask 0 */
    int return_logits;        /* 1: masks are float logits, 0: uint8 0/1 */
    int orig_h, orig_w;       /* original image size */
    int input_h, input_w;     /* resized size before padding */
    /* All three in the model's backend memory (msam_buffer_data; on the CPU any host memory): */
    void *masks;              /* B x C x orig_h x orig_w, float or uint8; NULL: no post-processing */
    float *iou;               /* B x C */
    float *low_res;           /* B x C x 256 x 256, or NULL to skip */
    /* Optional IoU filter (segment everything): with kept (B x C flags, host memory) set, only the
     * masks whose IoU is above min_iou are made (the others are never upscaled); their low-res
     * logits are packed into low_res in order, kept says which, and masks must be NULL. A backend
     * whose op memory is not host memory makes every mask (kept all 1): filter the IoU yourself. */
    uint8_t *kept;
    float min_iou;
} msam_outputs;

int msam_num_masks(int multimask);

/* What a session has moved and waited for since it was created: copies from host memory into op
 * memory (h2d) and back (d2h), host synchronisations with the device, and op-memory allocations.
 * A GPU-resident predict adds 0 to d2h, syncs and allocs (on the CPU op memory is host memory,
 * and outputs are written in place). replays: recorded op sequences launched again whole (CUDA
 * graphs: a decode of a prompt shape seen before); 0 on the CPU. */
typedef struct {
    uint64_t h2d, d2h, syncs, allocs, replays;
} msam_counters;
void msam_session_counters(const msam_session *s, msam_counters *out);

/* Prompt encoder alone (stage parity): sparse B x T x 256 (T = n_points + pad + 2*box),
 * dense B' x 64 x 64 x 256 channels-last where B' = mask_batch or 1. */
int msam_sparse_token_count(const msam_prompts *p);
msam_status msam_encode_prompts(msam_session *s, const msam_prompts *p, float *sparse,
                                float *dense_hwc, msam_error *err);

msam_status msam_predict(msam_session *s, const msam_prompts *p, msam_outputs *o,
                         msam_error *err);

/* ---- threads ------------------------------------------------------------------ */
void msam_set_num_threads(int n); /* n <= 0: back to the default (OMP_NUM_THREADS or cores) */
int msam_get_num_threads(void);
/* The same after checking that n - 1 threads can be started now (the OpenMP runtime ends the
 * process when it cannot start one): MSAM_ERR_BACKEND with the system's reason, the setting kept. */
msam_status msam_set_num_threads_checked(int n, msam_error *err);
/* The threads a kernel may use now: the setting, or 1 in a process forked after this one's thread
 * pool started (the pool's threads do not exist in the child). Host utilities use it too. */
int msam_kernel_threads(void);
const char *msam_cpu_isa(void);   /* "avx512", "avx2" or "generic": the GEMM kernel in use */

#ifdef __cplusplus
}
#endif
#endif
