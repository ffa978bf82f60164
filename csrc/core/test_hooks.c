/* test_hooks.c - the core's test-only entry points (msam_test.h) other than the conformance
 * suite: a backend's table by device, a session's op trace. */
#include "model.h"
#include "msam_test.h"

const msam_ops *msam_test_ops(msam_device device) { return msam_backend_ops(device); }

void msam_test_session_trace(const msam_session *s, uint64_t *hash, uint64_t *count) {
    *hash = 0, *count = 0;
    if (s) s->model->ops->trace(s->ctx, hash, count);
}
