/* lib/base/err.h - error codes shared by every lwm2md module.
 *
 * Functions return int: 0 on success, a negative LW_E* code on failure. Codes that mirror an
 * errno value are that value negated; project codes start at -1000. A CoAP response code is a
 * value, never an error (see lib/coap). Any thread may call these functions.
 */
#ifndef LW_BASE_ERR_H
#define LW_BASE_ERR_H

#include <errno.h>

enum {
    LW_OK = 0,
    LW_ENOMEM = -ENOMEM,
    LW_EINVAL = -EINVAL,
    LW_ENOENT = -ENOENT,
    LW_EEXIST = -EEXIST,
    LW_EAGAIN = -EAGAIN,
    LW_ENOSPC = -ENOSPC, /* output buffer or table full */
    LW_ERANGE = -ERANGE, /* value out of range for its type */
    LW_ETIMEDOUT = -ETIMEDOUT,
    LW_ECANCELED = -ECANCELED,
    LW_EBUSY = -EBUSY,
    LW_EPERM = -EPERM,
    LW_EIO = -EIO,
    LW_ENOTSUP = -ENOTSUP,

    LW_EMALFORMED = -1000, /* input violates its format; see the parser's offset out-param */
    LW_ETRUNCATED = -1001, /* input ended before the structure did */
    LW_ELIMIT = -1002,     /* a configured size/depth/count limit was hit */
    LW_EDTLS = -1003,      /* DTLS failure; the raw wolfSSL code is kept by the caller */
    LW_EDB = -1004,        /* database failure other than a mapped SQLSTATE */
    LW_ESTALE = -1005,     /* (id, generation) no longer names a live object */
    LW_EINTERNAL = -1006,  /* an internal invariant failed (lw_fails_assert) */
    LW_ECONFIG = -1007,    /* configuration error */
    LW_ETYPE = -1008,      /* value has the wrong type for its resource */
    LW_EUNKNOWN = -1009,   /* unknown object / resource / option that must be understood */
    LW_EBADOPT = -1010,    /* unrecognised critical CoAP option (4.02 in requests) */
    LW_ERESET = -1011,     /* peer answered with a CoAP Reset */
    LW_EPROTO = -1012,     /* peer violated the protocol (unexpected message in this state) */
};

/* Returns a static, human-readable description of any LW_E* code (or a negated errno). */
const char *lw_strerror(int err);

#endif
