/* binding.h - pieces of the CPython binding of mobile_sam_c._C, one file each:
 * module.c (init, errors), model.c (Model type), predictor.c (Predictor type), image.c, kernels.c. */
#ifndef MSAM_BINDING_H
#define MSAM_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define PY_ARRAY_UNIQUE_SYMBOL msam_ARRAY_API
#ifndef MSAM_BINDING_MAIN
#define NO_IMPORT_ARRAY
#endif
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include "msam.h"

/* The module's exception for bad input: a subclass of ValueError and AssertionError (the
 * original MobileSAM validates with assert, so callers catching either keep working). */
extern PyObject *msam_py_InputError;

/* Raise the Python exception matching an msam_status with the core's message. */
PyObject *msam_py_raise(msam_status st, const msam_error *err);

/* Each file adds its functions / types to the module; return 0 or -1 with an exception set. */
int msam_py_add_image(PyObject *m);    /* image.c: resize_rgb8, _resize_bilinear_f32 */
int msam_py_add_kernels(PyObject *m);  /* kernels.c: _gemm, _gemm_ref (test hooks) */
int msam_py_add_model(PyObject *m);    /* model.c: Model, weight_spec */
int msam_py_add_predictor(PyObject *m);/* predictor.c: Predictor */
int msam_py_add_amg(PyObject *m);      /* amg.c: amg_* (automatic mask generator kernels) */

#endif
