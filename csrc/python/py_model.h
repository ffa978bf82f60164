/* py_model.h - the Model object's layout, shared by model.c and predictor.c (which keeps a
 * reference to its Model so the core model outlives every session created from it). */
#ifndef MSAM_PY_MODEL_H
#define MSAM_PY_MODEL_H
#include "binding.h"

typedef struct {
    PyObject_HEAD
    msam_model *model;
    msam_device device;
} ModelObject;

extern PyTypeObject *msam_py_ModelType;
#endif
