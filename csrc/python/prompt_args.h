/* prompt_args.h - converting and checking predict()/predict_torch() prompt arguments into the
 * core's msam_prompts, with errors that name the argument. Owns the arrays it makes. */
#ifndef MSAM_PROMPT_ARGS_H
#define MSAM_PROMPT_ARGS_H
#include "binding.h"

/* Points per prompt set: the core's limit (its token buffers are sized for it), checked before any
 * conversion, so a small zero-stride array of 100,000 points costs nothing (the decoder's time grows
 * with the square of the count: 10,000 points took a minute, 100,000 hours). */
#define MSAM_PY_MAX_POINTS MSAM_MAX_PROMPT_POINTS

typedef struct {
    msam_prompts p;
    PyArrayObject *coords, *labels, *boxes, *mask; /* owned float32/int32 C-contiguous */
    PyArrayObject *coords64, *boxes64; /* single: the converted coordinates, before scaling */
    int single;
} prompt_args;

/* single != 0: predict() shapes (Nx2, N, 4 or 1x4, 1x256x256) in original-image pixels, to be
 * scaled into the input frame by prompt_args_scale like ResizeLongestSide.apply_coords.
 * single == 0: predict_torch() shapes (BxNx2, BxN, Bx4, Bx1x256x256), already transformed.
 * Conversion may run user code (__array__ and the like); scaling runs none, so a caller can scale
 * for the image it holds under a lock. Each returns 0, or -1 with an InputError set. Always call
 * prompt_args_clear afterwards. */
int prompt_args_parse(prompt_args *a, PyObject *coords, PyObject *labels, PyObject *boxes,
                      PyObject *mask, int single);
int prompt_args_scale(prompt_args *a, int orig_h, int orig_w);
void prompt_args_clear(prompt_args *a);

/* (newh, neww) = ResizeLongestSide.get_preprocess_shape(h, w, 1024) */
void msam_py_preprocess_shape(int h, int w, int *nh, int *nw);
#endif
