#include "err.h"

#include <string.h>

const char *lw_strerror(int err)
{
    switch (err) {
    case LW_OK: return "success";
    case LW_EMALFORMED: return "malformed input";
    case LW_ETRUNCATED: return "truncated input";
    case LW_ELIMIT: return "limit exceeded";
    case LW_EDTLS: return "dtls failure";
    case LW_EDB: return "database failure";
    case LW_ESTALE: return "stale reference";
    case LW_EINTERNAL: return "internal error";
    case LW_ECONFIG: return "configuration error";
    case LW_ETYPE: return "wrong value type";
    case LW_EUNKNOWN: return "unknown item";
    case LW_EBADOPT: return "unrecognised critical option";
    case LW_ERESET: return "reset by peer";
    case LW_EPROTO: return "protocol violation";
    default: break;
    }
    if (err < 0 && err > -1000)
        return strerror(-err); /* glibc's strerror returns a static string for known codes */
    return "unknown error";
}
