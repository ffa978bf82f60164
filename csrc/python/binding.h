/* binding.h - pieces of the CPython binding of mobile_sam_c._C, one file each:
 * module.c (init, errors), model.c (Model type), predictor.c (Predictor type), array.c (Array
 * type), image.c, kernels.c. */
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

/* image.c: 0 when 1 <= v <= MSAM_MAX_IMAGE_SIDE, else -1 with an InputError naming name. */
int msam_py_check_side(Py_ssize_t v, const char *name);

/* Raise the Python exception matching an msam_status with the core's message. */
PyObject *msam_py_raise(msam_status st, const msam_error *err);

/* Each file adds its functions / types to the module; return 0 or -1 with an exception set. */
int msam_py_add_array(PyObject *m);    /* array.c: Array (backend memory, DLPack) */
int msam_py_add_image(PyObject *m);    /* image.c: resize_rgb8, _resize_bilinear_f32 */
int msam_py_add_kernels(PyObject *m);  /* kernels.c: _gemm, _gemm_ref (test hooks) */
int msam_py_add_model(PyObject *m);    /* model.c: Model, weight_spec */
int msam_py_add_predictor(PyObject *m);/* predictor.c: Predictor */
int msam_py_add_amg(PyObject *m);      /* amg.c: amg_* (automatic mask generator kernels) */


/* array.c: a new Array of op memory of the model's backend (ndim <= 4, NPY_FLOAT32 or NPY_BOOL),
 * keeping model_obj alive; its data pointer; and the Array as NumPy (a view of host memory, or a
 * host copy of device memory). NULL with an exception on failure. */
extern PyTypeObject *msam_py_ArrayType;
PyObject *msam_py_array_new(PyObject *model_obj, const msam_model *m, int ndim, const npy_intp *shape, int typenum);
void *msam_py_array_data(PyObject *arr);
PyObject *msam_py_array_numpy(PyObject *arr);

#endif
