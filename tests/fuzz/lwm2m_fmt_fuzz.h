/* tests/fuzz/lwm2m_fmt_fuzz.h - shared harness of the lwm2m_fmt_* fuzz targets (header-only:
 * every .c file in tests/fuzz is a target of its own).
 *
 * Input: byte 0 selects the request path (low nibble), the sub-format (bits 4-5, for targets
 * covering several formats) and path-list mode (bit 7, SenML targets); the rest is the payload.
 * Property: decode never crashes and fails only with a documented code and an offset inside the
 * input; whatever decodes re-encodes without error, and the encoding decodes to equal records.
 */
#ifndef LW_FUZZ_LWM2M_FMT_H
#define LW_FUZZ_LWM2M_FMT_H

#include "base/err.h"
#include "lwm2m/fmt.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct lw_m2m_path fz_reqs[16] = {
    LW_M2M_PATH_ROOT,         LW_M2M_PATH1(3),        LW_M2M_PATH2(3, 0),     LW_M2M_PATH3(3, 0, 6),
    LW_M2M_PATH4(3, 0, 6, 1), LW_M2M_PATH3(3, 0, 13), LW_M2M_PATH2(9, 0),     LW_M2M_PATH3(9, 0, 4),
    LW_M2M_PATH2(13, 26),     LW_M2M_PATH3(0, 0, 3),  LW_M2M_PATH3(3, 0, 22), LW_M2M_PATH3(9, 0, 6),
    LW_M2M_PATH3(9, 0, 1),    LW_M2M_PATH3(9, 0, 5),  LW_M2M_PATH3(9, 0, 8),  LW_M2M_PATH3(9, 0, 3),
};

/* Object 3 per protocol.md §6.4; /9/x/r has type r (1..9); /0/x/3 opaque; /13/x/6 objlnk. */
static enum lw_m2m_type fz_type_of(void *ctx, const struct lw_m2m_path *p)
{
    (void)ctx;
    if (p->len < 3)
        return LW_M2M_T_NONE;
    if (p->id[0] == 9 && p->id[2] >= 1 && p->id[2] <= LW_M2M_T_CORELNK)
        return (enum lw_m2m_type)p->id[2];
    if (p->id[0] == 0 && p->id[2] == 3)
        return LW_M2M_T_OPAQUE;
    if (p->id[0] == 13 && p->id[2] == 6)
        return LW_M2M_T_OBJLNK;
    if (p->id[0] != 3)
        return LW_M2M_T_NONE;
    switch (p->id[2]) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 14:
    case 15:
    case 16:
    case 17:
    case 18:
    case 19: return LW_M2M_T_STRING;
    case 6:
    case 7:
    case 8:
    case 9:
    case 10:
    case 11:
    case 20:
    case 21: return LW_M2M_T_INTEGER;
    case 13: return LW_M2M_T_TIME;
    case 22: return LW_M2M_T_OBJLNK;
    default: return LW_M2M_T_NONE;
    }
}

static bool fz_dbl_eq(double a, double b)
{
    return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

static bool fz_rec_eq(const struct lw_m2m_record *a, const struct lw_m2m_record *b)
{
    if (!lw_m2m_path_eq(&a->path, &b->path) || a->has_value != b->has_value ||
        a->has_time != b->has_time || (a->has_time && !fz_dbl_eq(a->time, b->time)))
        return false;
    if (!a->has_value)
        return true;
    const struct lw_m2m_value *x = &a->value, *y = &b->value;
    if (x->type != y->type)
        return false;
    switch (x->type) {
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME: return x->i == y->i;
    case LW_M2M_T_UNSIGNED: return x->u == y->u;
    case LW_M2M_T_FLOAT: return fz_dbl_eq(x->f, y->f);
    case LW_M2M_T_BOOLEAN: return x->b == y->b;
    case LW_M2M_T_OBJLNK: return x->lnk.obj == y->lnk.obj && x->lnk.inst == y->lnk.inst;
    default: return lw_bytes_eq(x->bytes, y->bytes);
    }
}

static void fz_check_err(int rc, size_t off, size_t size)
{
    if (rc != LW_EMALFORMED && rc != LW_ETYPE && rc != LW_ELIMIT && rc != LW_EINVAL)
        abort();
    if (rc != LW_EINVAL && off > size)
        abort();
}

/* Decode, encode, decode again and compare. */
static void fz_roundtrip(uint16_t cf, const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    const struct lw_m2m_path *req = &fz_reqs[data[0] & 15];
    bool paths = (data[0] & 0x80) && (cf == LW_M2M_CF_SENML_JSON || cf == LW_M2M_CF_SENML_CBOR);
    struct lw_bytes in = LW_BYTES(data + 1, size - 1);
    struct lw_m2m_types types = {fz_type_of, NULL};
    struct lw_m2m_fmt_cfg cfg = {.max_records = 4096, .max_value_len = 1 << 16};
    struct lw_arena a;
    struct lw_m2m_records r1 = {0}, r2 = {0};
    struct lw_buf out;
    size_t off = (size_t)-1;
    lw_arena_init(&a, 0, 64u << 20);
    lw_buf_init(&out, 0);
    int rc = paths ? lw_m2m_decode_paths(cf, in, &cfg, &a, &r1, &off)
                   : lw_m2m_decode(cf, in, req, &types, &cfg, &a, &r1, &off);
    if (rc) {
        fz_check_err(rc, off, in.len);
        goto out;
    }
    if (paths) {
        struct lw_m2m_path *pv = malloc((r1.n + 1) * sizeof(*pv));
        if (!pv)
            abort();
        for (size_t k = 0; k < r1.n; k++)
            pv[k] = r1.v[k].path;
        rc = lw_m2m_encode_paths(cf, pv, r1.n, &out);
        free(pv);
    } else {
        rc = lw_m2m_encode(cf, req, r1.v, r1.n, &out);
    }
    if (rc)
        abort(); /* whatever decodes must re-encode */
    rc = paths ? lw_m2m_decode_paths(cf, lw_buf_bytes(&out), &cfg, &a, &r2, &off)
               : lw_m2m_decode(cf, lw_buf_bytes(&out), req, &types, &cfg, &a, &r2, &off);
    if (rc || r1.n != r2.n)
        abort();
    for (size_t k = 0; k < r1.n; k++)
        if (!fz_rec_eq(&r1.v[k], &r2.v[k]))
            abort();
out:
    lw_buf_deinit(&out);
    lw_arena_deinit(&a);
}

#endif
