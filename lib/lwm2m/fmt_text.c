/* lib/lwm2m/fmt_text.c - text/plain (0) and application/octet-stream (42): one value at the
 * request path (a resource or resource instance).
 *
 * text/plain: integers and times in decimal, unsigned in decimal, floats in decimal notation
 * (exponent allowed, no inf/nan), booleans "0"/"1", opaque as base64 (standard alphabet, the
 * URL-safe one and missing padding tolerated), objlnk "oid:iid", strings and core links as
 * UTF-8. The model type picks the reading; an unknown type reads as STRING.
 * opaque: the raw bytes; the model type must be Opaque or unknown (else LW_ETYPE).
 */
#include "fmt_int.h"

#include "base/err.h"

#include <string.h>

int lw__m2m_text_decode(struct lw__m2m_dec *d, struct lw_bytes in)
{
    struct lw_m2m_record rec;
    int rc;
    if (d->req->len < 3)
        return LW_EINVAL;
    memset(&rec, 0, sizeof(rec));
    rec.path = *d->req;
    rec.has_value = true;
    if (in.len > d->cfg.max_value_len * 4 / 3 + 4)
        return lw__m2m_fail(d, LW_ELIMIT, 0);
    rc = lw__m2m_text_to_value(d, in, lw__m2m_type_of(d, d->req), true, &rec.value);
    if (rc)
        return lw__m2m_fail(d, rc, 0);
    return lw__m2m_add(d, &rec, 0);
}

static int single(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n)
{
    if (n != 1 || req->len < 3 || !lw_m2m_path_eq(&r->path, req) || !r->has_value)
        return LW_EINVAL;
    return 0;
}

int lw__m2m_text_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                        struct lw_buf *out)
{
    int rc = single(req, r, n);
    if (rc == 0)
        rc = lw__m2m_put_text_value(out, &r->value);
    return rc ? rc : lw_buf_status(out);
}

int lw__m2m_opaque_decode(struct lw__m2m_dec *d, struct lw_bytes in)
{
    struct lw_m2m_record rec;
    if (d->req->len < 3)
        return LW_EINVAL;
    enum lw_m2m_type model = lw__m2m_type_of(d, d->req);
    if (model != LW_M2M_T_NONE && model != LW_M2M_T_OPAQUE)
        return lw__m2m_fail(d, LW_ETYPE, 0);
    if (in.len > d->cfg.max_value_len)
        return lw__m2m_fail(d, LW_ELIMIT, d->cfg.max_value_len);
    memset(&rec, 0, sizeof(rec));
    rec.path = *d->req;
    rec.has_value = true;
    rec.value.type = LW_M2M_T_OPAQUE;
    rec.value.bytes = in.ptr ? in : LW_BYTES("", 0);
    return lw__m2m_add(d, &rec, 0);
}

int lw__m2m_opaque_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                          struct lw_buf *out)
{
    int rc = single(req, r, n);
    if (rc)
        return rc;
    if (r->value.type != LW_M2M_T_OPAQUE)
        return LW_EINVAL;
    lw_buf_put(out, r->value.bytes.ptr, r->value.bytes.len);
    return lw_buf_status(out);
}
