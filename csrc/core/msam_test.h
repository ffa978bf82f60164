/* msam_test.h - test-only access to the core, for the binding's test hooks and nothing else: the
 * op table of a built backend (the very table a model of that device uses), the plain references,
 * a session's op trace and the op-conformance suite. */
#ifndef MSAM_TEST_H
#define MSAM_TEST_H

#include "msam.h"
#include "ops.h"
#include "../ref/ref.h"

/* The op table of device, or NULL when it is not built in. */
const msam_ops *msam_test_ops(msam_device device);

/* The session's op trace (ops->trace of its context): an FNV-1a hash of the op names run so far
 * and their count. Two calls that ran the same op sequence add the same to both. */
void msam_test_session_trace(const msam_session *s, uint64_t *hash, uint64_t *count);

/* The op-conformance suite (conformance.c): every op of device's table against its reference on
 * random shapes (edge sizes included), seeded. fn is called once per case with the op, a
 * description of the case, the largest error and the tolerance it must stay within. */
typedef void (*msam_conformance_fn)(void *user, const char *op, const char *shape, double err, double tol);
msam_status msam_test_conformance(msam_device device, uint64_t seed, msam_conformance_fn fn, void *user,
                                  msam_error *err);

#endif
