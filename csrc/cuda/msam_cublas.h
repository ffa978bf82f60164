/* msam_cublas.h - what a file of the CUDA backend that calls cuBLAS includes: cublas_v2.h with
 * nvcc, our emulation of the subset we use (emu/cublas_emu.h) with MSAM_CUDA_EMULATION. */
#ifndef MSAM_CUBLAS_H
#define MSAM_CUBLAS_H

#include "msam_cuda.h"

#if defined(MSAM_CUDA_EMULATION)
#include "emu/cublas_emu.h"
#else
#include <cublas_v2.h>
#endif

#endif
