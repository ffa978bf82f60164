/* dlpack_abi.h - the DLPack 1.0 structures this binding exchanges, written from the protocol's
 * published ABI (field order and sizes are the contract; names follow ours). */
#ifndef MSAM_DLPACK_ABI_H
#define MSAM_DLPACK_ABI_H

#include <stdint.h>

enum { MSAM_DL_CPU = 1, MSAM_DL_CUDA = 2 };              /* DLDeviceType values we use */
enum { MSAM_DL_INT = 0, MSAM_DL_UINT = 1, MSAM_DL_FLOAT = 2, MSAM_DL_BOOL = 6 }; /* DLDataTypeCode values */
#define MSAM_DL_MAJOR 1
#define MSAM_DL_MINOR 0
#define MSAM_DL_FLAG_READ_ONLY ((uint64_t)1)
#define MSAM_DL_FLAG_IS_COPIED ((uint64_t)2)

typedef struct {
    int32_t device_type;
    int32_t device_id;
} msam_dl_device;

typedef struct {
    uint8_t code, bits;
    uint16_t lanes;
} msam_dl_dtype;

typedef struct {
    void *data;
    msam_dl_device device;
    int32_t ndim;
    msam_dl_dtype dtype;
    int64_t *shape;
    int64_t *strides; /* in elements; NULL means compact row-major */
    uint64_t byte_offset;
} msam_dl_tensor;

/* The legacy managed tensor (capsule "dltensor", renamed "used_dltensor" when consumed). */
typedef struct msam_dl_managed {
    msam_dl_tensor tensor;
    void *manager_ctx;
    void (*deleter)(struct msam_dl_managed *self);
} msam_dl_managed;

/* The versioned one (capsule "dltensor_versioned" / "used_dltensor_versioned"). */
typedef struct msam_dl_managed_v {
    uint32_t major, minor;
    void *manager_ctx;
    void (*deleter)(struct msam_dl_managed_v *self);
    uint64_t flags;
    msam_dl_tensor tensor;
} msam_dl_managed_v;

#endif
