/* device_prompts.h (binding) - predict_torch's prompts taken from the model's GPU through DLPack
 * (device_prompts.c): the core encodes them there (msam_prompts.on_device). */
#ifndef MSAM_PY_DEVICE_PROMPTS_H
#define MSAM_PY_DEVICE_PROMPTS_H

#include "dlpack_in.h"

/* point_coords (B x N x 2 float32), point_labels (B x N int32/int64), boxes (B x 4 float32) on
 * cuda:0, contiguous, mask_input None: 1 with p filled (on_device) and the tensors held in imp
 * until msam_py_device_prompts_release; 0 when the prompts are host ones (nothing held); -1 with
 * an InputError naming the argument. */
int msam_py_device_prompts(PyObject *coords, PyObject *labels, PyObject *boxes, PyObject *mask,
                           msam_py_dl_import imp[3], msam_prompts *p);
void msam_py_device_prompts_release(msam_py_dl_import imp[3]);

#endif
