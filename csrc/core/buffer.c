/* buffer.c - msam_buffer: a block of a model's backend memory with its size, for outputs the
 * caller owns (a predictor's masks, IoU and low-res logits) and for reading them back. */
#include <stdlib.h>

#include "model.h"

struct msam_buffer {
    const msam_model *model;
    void *data;
    size_t bytes;
};

msam_status msam_buffer_create(const msam_model *m, size_t bytes, msam_buffer **out, msam_error *err) {
    if (!m || !out) return msam_fail(err, MSAM_ERR_ARG, "model and out must not be NULL");
    *out = NULL;
    msam_buffer *b = calloc(1, sizeof *b);
    if (!b) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory for a buffer");
    b->model = m;
    b->bytes = bytes;
    if (!(b->data = m->ops->alloc(NULL, bytes ? bytes : 1))) {
        free(b);
        return msam_fail(err, MSAM_ERR_NOMEM, "out of %s memory for a buffer of %zu bytes", m->ops->name, bytes);
    }
    *out = b;
    return MSAM_OK;
}

void msam_buffer_free(msam_buffer *b) {
    if (!b) return;
    b->model->ops->release(NULL, b->data);
    free(b);
}

void *msam_buffer_data(const msam_buffer *b) { return b ? b->data : NULL; }
size_t msam_buffer_size(const msam_buffer *b) { return b ? b->bytes : 0; }
msam_device msam_buffer_device(const msam_buffer *b) { return b->model->device; }

msam_status msam_buffer_read(const msam_buffer *b, size_t offset, void *host, size_t bytes, msam_error *err) {
    if (!b || (!host && bytes)) return msam_fail(err, MSAM_ERR_ARG, "buffer and host must not be NULL");
    if (offset > b->bytes || bytes > b->bytes - offset)
        return msam_fail(err, MSAM_ERR_ARG, "reading %zu bytes at %zu overruns a buffer of %zu", bytes, offset, b->bytes);
    if (bytes) b->model->ops->copy_out(NULL, host, (const char *)b->data + offset, bytes);
    return MSAM_OK;
}

msam_status msam_buffer_export_to(const msam_buffer *b, uintptr_t consumer_stream, msam_error *err) {
    if (!b) return msam_fail(err, MSAM_ERR_ARG, "buffer must not be NULL");
    const msam_ops *ops = b->model->ops;
    if (!ops->export_to) return MSAM_OK;
    const int code = ops->export_to(NULL, consumer_stream);
    if (code) return msam_fail(err, MSAM_ERR_BACKEND, "the %s backend could not order stream %#llx after this "
                               "array's producer (error %d)", ops->name, (unsigned long long)consumer_stream, code);
    return MSAM_OK;
}

msam_status msam_buffer_write(msam_buffer *b, size_t offset, const void *host, size_t bytes, msam_error *err) {
    if (!b || (!host && bytes)) return msam_fail(err, MSAM_ERR_ARG, "buffer and host must not be NULL");
    if (offset > b->bytes || bytes > b->bytes - offset)
        return msam_fail(err, MSAM_ERR_ARG, "writing %zu bytes at %zu overruns a buffer of %zu", bytes, offset, b->bytes);
    if (bytes) b->model->ops->copy_in(NULL, (char *)b->data + offset, host, bytes); /* ctx NULL: synchronous */
    return MSAM_OK;
}
