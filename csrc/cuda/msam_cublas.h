/* msam_cublas.h - what a file of the CUDA backend that calls cuBLAS includes: with nvcc our own
 * declarations of the calls we use, resolved from libcublas at run time (backend/cublas_loader.h:
 * no cuBLAS headers or link), with MSAM_CUDA_EMULATION our emulation of them (emu/cublas_emu.h). */
#ifndef MSAM_CUBLAS_H
#define MSAM_CUBLAS_H

#include "msam_cuda.h"

#if defined(MSAM_CUDA_EMULATION)
#include "emu/cublas_emu.h"
#else
#include "backend/cublas_loader.h"
#endif

#endif
