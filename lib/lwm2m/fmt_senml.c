/* lib/lwm2m/fmt_senml.c - SenML JSON (110) and SenML CBOR (112) as profiled by LwM2M, and the
 * path lists of Read-/Observe-Composite. Profile rules are listed in fmt.h.
 *
 * JSON is parsed with jansson (json_loadb, arrays/objects only, duplicate keys rejected); its
 * tree is heap-allocated, bounded by cfg.max_input, and freed before returning. Strings are
 * copied into the arena. jansson reads integers as int64, so a JSON integer above INT64_MAX is
 * rejected as malformed. CBOR is read with the pull reader in fmt_cbor.c.
 * JSON output is written directly (no intermediate tree) so that floats get their shortest
 * exact decimal form.
 */
#include "fmt_int.h"

#include "base/err.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

enum vkind { V_NONE, V_NUM, V_STR, V_BOOL, V_DATA, V_LNK };

/* One SenML record as read, before name/time resolution. */
struct srec {
    struct lw_bytes n;
    bool has_n, has_t;
    double t;
    enum vkind vk;
    struct lw__m2m_num num;
    struct lw_bytes s; /* V_STR, V_DATA (decoded), V_LNK */
    bool b;
    size_t voff;
};

struct sbase {
    struct lw_bytes bn;
    double bt;
    bool has_bt;
};

static double num_double(const struct lw__m2m_num *n)
{
    return n->kind == LW__NUM_INT ? (double)n->i : n->kind == LW__NUM_UINT ? (double)n->u : n->f;
}

static int emit(struct lw__m2m_dec *d, const struct sbase *base, const struct srec *s,
                bool paths_only, size_t off)
{
    struct lw_m2m_record rec;
    int rc;
    memset(&rec, 0, sizeof(rec));
    if (lw__m2m_name_to_path(base->bn.ptr, base->bn.len, s->n.ptr, s->n.len, &rec.path))
        return lw__m2m_fail(d, LW_EMALFORMED, off);
    rec.has_time = s->has_t || base->has_bt;
    rec.time = (base->has_bt ? base->bt : 0) + (s->has_t ? s->t : 0);
    if (!isfinite(rec.time))
        return lw__m2m_fail(d, LW_EMALFORMED, off);
    if (paths_only) { /* a path list: times carry no meaning and are dropped */
        if (s->vk != V_NONE)
            return lw__m2m_fail(d, LW_EMALFORMED, s->voff);
        rec.has_time = false;
        rec.time = 0;
        return lw__m2m_add(d, &rec, off);
    }
    if (s->vk == V_NONE)
        return lw__m2m_add(d, &rec, off);
    if (rec.path.len < 3)
        return lw__m2m_fail(d, LW_EMALFORMED, off);
    enum lw_m2m_type model = lw__m2m_type_of(d, &rec.path);
    struct lw_m2m_value *v = &rec.value;
    rec.has_value = true;
    switch (s->vk) {
    case V_NUM:
        if (model == LW_M2M_T_FLOAT) { /* the usual sensor value: lw__m2m_num_to_value inlined */
            v->type = model;
            v->f = num_double(&s->num);
        } else if (lw__m2m_num_to_value(&s->num, model, v)) {
            return lw__m2m_fail(d, LW_ETYPE, s->voff);
        }
        break;
    case V_STR:
        if (model == LW_M2M_T_OBJLNK) { /* vlo is the profile's field; tolerate vs */
            v->type = model;
            if (lw__m2m_objlnk_parse(s->s.ptr, s->s.len, &v->lnk))
                return lw__m2m_fail(d, LW_ETYPE, s->voff);
            break;
        }
        if (model != LW_M2M_T_NONE && model != LW_M2M_T_STRING && model != LW_M2M_T_CORELNK)
            return lw__m2m_fail(d, LW_ETYPE, s->voff);
        v->type = model == LW_M2M_T_CORELNK ? model : LW_M2M_T_STRING;
        v->bytes = s->s;
        break;
    case V_BOOL:
        if (model != LW_M2M_T_NONE && model != LW_M2M_T_BOOLEAN)
            return lw__m2m_fail(d, LW_ETYPE, s->voff);
        v->type = LW_M2M_T_BOOLEAN;
        v->b = s->b;
        break;
    case V_DATA:
        if (model != LW_M2M_T_NONE && model != LW_M2M_T_OPAQUE)
            return lw__m2m_fail(d, LW_ETYPE, s->voff);
        v->type = LW_M2M_T_OPAQUE;
        v->bytes = s->s;
        break;
    default: /* V_LNK */
        if (model != LW_M2M_T_NONE && model != LW_M2M_T_OBJLNK)
            return lw__m2m_fail(d, LW_ETYPE, s->voff);
        v->type = LW_M2M_T_OBJLNK;
        if (lw__m2m_objlnk_parse(s->s.ptr, s->s.len, &v->lnk))
            return lw__m2m_fail(d, LW_EMALFORMED, s->voff);
        break;
    }
    rc = lw__m2m_add(d, &rec, off);
    return rc;
}

/* Labels the LwM2M profile rejects: base value / base sum / sum, and RFC 8428 §4.4
 * must-understand labels (ending in '_'). */
static bool rejected_label(const char *k, size_t n)
{
    return (n == 2 && (memcmp(k, "bv", 2) == 0 || memcmp(k, "bs", 2) == 0)) ||
           (n == 1 && k[0] == 's') || (n > 0 && k[n - 1] == '_');
}

/* ---- SenML JSON decode ---- */

static bool json_num(json_t *j, struct lw__m2m_num *n)
{
    if (json_is_integer(j)) {
        n->kind = LW__NUM_INT;
        n->i = json_integer_value(j);
        return true;
    }
    if (json_is_real(j)) {
        n->kind = LW__NUM_FLOAT;
        n->f = json_real_value(j);
        return true;
    }
    return false;
}

static int jstr(struct lw__m2m_dec *d, json_t *j, struct lw_bytes *out)
{
    size_t n = json_string_length(j);
    if (n > d->cfg.max_value_len)
        return LW_ELIMIT;
    const char *s = json_string_value(j);
    void *c = lw_arena_memdup(d->a, s, n);
    if (!c)
        return LW_ENOMEM;
    *out = (struct lw_bytes){c, n};
    return 0;
}

static int json_record(struct lw__m2m_dec *d, json_t *o, struct sbase *base, bool paths_only,
                       size_t off)
{
    struct srec s;
    const char *key;
    json_t *val;
    int rc = 0;
    memset(&s, 0, sizeof(s));
    s.voff = off;
    if (!json_is_object(o))
        return lw__m2m_fail(d, LW_EMALFORMED, off);
    json_object_foreach(o, key, val)
    {
        size_t kl = strlen(key);
        enum vkind vk = V_NONE;
        if (strcmp(key, "bn") == 0) {
            if (!json_is_string(val))
                return lw__m2m_fail(d, LW_EMALFORMED, off);
            rc = jstr(d, val, &base->bn);
        } else if (strcmp(key, "bt") == 0) {
            struct lw__m2m_num n;
            if (!json_num(val, &n))
                return lw__m2m_fail(d, LW_EMALFORMED, off);
            base->bt = num_double(&n);
            base->has_bt = true;
        } else if (strcmp(key, "n") == 0) {
            if (!json_is_string(val))
                return lw__m2m_fail(d, LW_EMALFORMED, off);
            s.has_n = true;
            s.n =
                (struct lw_bytes){(const uint8_t *)json_string_value(val), json_string_length(val)};
        } else if (strcmp(key, "t") == 0) {
            struct lw__m2m_num n;
            if (!json_num(val, &n))
                return lw__m2m_fail(d, LW_EMALFORMED, off);
            s.t = num_double(&n);
            s.has_t = true;
        } else if (strcmp(key, "v") == 0) {
            if (!json_num(val, &s.num))
                return lw__m2m_fail(d, LW_EMALFORMED, off);
            vk = V_NUM;
        } else if (strcmp(key, "vs") == 0 || strcmp(key, "vlo") == 0) {
            if (!json_is_string(val))
                return lw__m2m_fail(d, LW_EMALFORMED, off);
            vk = key[1] == 's' ? V_STR : V_LNK;
            rc = jstr(d, val, &s.s);
        } else if (strcmp(key, "vb") == 0) {
            if (!json_is_boolean(val))
                return lw__m2m_fail(d, LW_EMALFORMED, off);
            vk = V_BOOL;
            s.b = json_is_true(val);
        } else if (strcmp(key, "vd") == 0) {
            if (!json_is_string(val))
                return lw__m2m_fail(d, LW_EMALFORMED, off);
            vk = V_DATA;
            if (json_string_length(val) / 4 * 3 > d->cfg.max_value_len + 3)
                return lw__m2m_fail(d, LW_ELIMIT, off);
            rc = lw_b64_decode(d->a, (const uint8_t *)json_string_value(val),
                               json_string_length(val), &s.s);
        } else if (rejected_label(key, kl)) {
            return lw__m2m_fail(d, LW_EMALFORMED, off);
        }
        if (rc)
            return lw__m2m_fail(d, rc, off);
        if (vk != V_NONE) {
            if (s.vk != V_NONE)
                return lw__m2m_fail(d, LW_EMALFORMED, off); /* two values */
            s.vk = vk;
        }
    }
    /* s.n points into the jansson tree, still alive here. */
    return emit(d, base, &s, paths_only, off);
}

int lw__m2m_senml_json_decode(struct lw__m2m_dec *d, struct lw_bytes in, bool paths_only)
{
    json_error_t err;
    json_t *root = json_loadb((const char *)in.ptr, in.len, JSON_REJECT_DUPLICATES, &err);
    struct sbase base;
    int rc = 0;
    memset(&base, 0, sizeof(base));
    if (!root)
        return lw__m2m_fail(d, LW_EMALFORMED, (size_t)err.position);
    if (!json_is_array(root)) {
        rc = lw__m2m_fail(d, LW_EMALFORMED, 0);
        goto out;
    }
    size_t n = json_array_size(root);
    if (n > d->cfg.max_records) {
        rc = lw__m2m_fail(d, LW_ELIMIT, 0);
        goto out;
    }
    lw__m2m_reserve(d, n);
    for (size_t k = 0; k < n && rc == 0; k++)
        rc = json_record(d, json_array_get(root, k), &base, paths_only, k);
    if (rc && d->err_off < n) /* err_off holds the record index: turn it into a byte offset */
        d->err_off = lw__m2m_json_elem_off(in, d->err_off, 1);
out:
    json_decref(root);
    return rc;
}

/* ---- SenML CBOR decode ---- */

enum { L_BVER = -1, L_BN = -2, L_BT = -3, L_BU = -4, L_BV = -5, L_BS = -6 };
enum { L_N = 0, L_U = 1, L_V = 2, L_VS = 3, L_VB = 4, L_S = 5, L_T = 6, L_UT = 7, L_VD = 8 };
#define REJECTED_BITS (1u << (L_BV + 6) | 1u << (L_BS + 6) | 1u << (L_S + 6))

static int cbor_time(struct lw__m2m_cbor_rd *r, double *out)
{
    struct lw__m2m_cbor_tok t;
    struct lw__m2m_num n;
    bool tag1;
    int rc = lw__m2m_cbor_leaf_fast(r, &t, &tag1);
    if (rc)
        return rc;
    if (t.kind == LW__CB_UINT) { /* the usual case, same result as the general one below */
        *out = (double)t.u;
        return 0;
    }
    if (!lw__m2m_cbor_tok_num(&t, &n))
        return lw__m2m_fail(r->d, LW_EMALFORMED, t.off);
    *out = num_double(&n);
    return 0;
}

/* Whole-record fast path for the common shape of a SenML-CBOR record: a definite map of n (0),
 * v (2), vb (4) and t (6) with short heads (n a definite text string, numbers and booleans
 * without tags). It reads into *s without side effects and returns false at the first thing it
 * does not handle (any other label, a duplicate, tags, limits, truncation, ...); the caller then
 * reads the same record with the general code below, which also reports every error. So what it
 * accepts, the general code accepts with the same srec. This is most of the SenML-CBOR decode
 * speed-up: no token structs, reader calls or label bookkeeping per pair. */
/* A number head (unsigned, negative up to INT64_MIN, half/single/double float) at p, as
 * lw__m2m_cbor_tok_num gives it; false for anything else or when truncated. */
static inline bool fast_num(const uint8_t *p, size_t left, struct lw__m2m_num *num, size_t *used)
{
    unsigned ib = p[0], major = ib >> 5, ai = ib & 31;
    uint64_t arg = ai;
    size_t u = 1;
    if (ai >= 24) {
        if (ai >= 28)
            return false;
        u += (size_t)1 << (ai - 24);
        if (left < u)
            return false;
        arg = ai == 24   ? p[1]
              : ai == 25 ? lw_load_be16(p + 1)
              : ai == 26 ? lw_load_be32(p + 1)
                         : lw_load_be64(p + 1);
    }
    *used = u;
    if (major == 0) {
        num->kind = LW__NUM_UINT;
        num->u = arg;
        return true;
    }
    if (major == 1 && arg <= INT64_MAX) {
        num->kind = LW__NUM_INT;
        num->i = -1 - (int64_t)arg;
        return true;
    }
    if (major != 7 || ai < 25)
        return false;
    num->kind = LW__NUM_FLOAT;
    if (ai == 25) {
        num->f = lw__m2m_half_to_double((uint16_t)arg);
    } else if (ai == 26) {
        uint32_t bits = (uint32_t)arg;
        float f;
        memcpy(&f, &bits, sizeof(f));
        num->f = f;
    } else {
        memcpy(&num->f, &arg, sizeof(num->f));
    }
    return true;
}

/* Whole-record fast path for the common shape of a SenML-CBOR record: a definite map of n (0),
 * v (2), vb (4) and t (6) with short heads (n a definite text string, numbers and booleans
 * without tags). It reads into *s without side effects and returns false at the first thing it
 * does not handle (any other label, a duplicate, tags, limits, truncation, ...); the caller then
 * reads the same record with the general code below, which also reports every error. So what it
 * accepts, the general code accepts with the same srec. This is most of the SenML-CBOR decode
 * speed-up: no token structs, reader calls or label bookkeeping per pair. */
static bool cbor_record_fast(const struct lw__m2m_cbor_rd *r, struct srec *s, size_t *end)
{
    const uint8_t *p = r->p;
    size_t off = r->off, len = r->len;
    if (off >= len)
        return false;
    unsigned mb = p[off];
    if (mb < 0xA1 || mb > 0xA7 || (size_t)(mb & 0x1F) > (len - off - 1) / 2)
        return false;
    unsigned pairs = mb & 0x1F, seen = 0;
    off++;
    for (unsigned i = 0; i < pairs; i++) {
        if (len - off < 2)
            return false;
        unsigned key = p[off], ib = p[off + 1];
        if (key > L_T || (seen >> key) & 1)
            return false;
        seen |= 1u << key;
        size_t voff = off + 1, left = len - voff, used;
        struct lw__m2m_num num;
        switch (key) {
        case L_N: {
            size_t sl = ib - 0x60u; /* a text string of up to 24 + 255 bytes */
            used = 1;
            if (ib == 0x78) {
                if (left < 2)
                    return false;
                sl = p[voff + 1];
                used = 2;
            } else if (ib < 0x60 || ib > 0x77) {
                return false;
            }
            if (sl > left - used || sl > r->d->cfg.max_value_len)
                return false;
            s->n = (struct lw_bytes){p + voff + used, sl};
            s->has_n = true;
            used += sl;
            break;
        }
        case L_V:
            if (!fast_num(p + voff, left, &s->num, &used)) /* s is zeroed by the caller */
                return false;
            s->vk = V_NUM;
            s->voff = voff;
            break;
        case L_VB:
            if (ib != 0xF4 && ib != 0xF5)
                return false;
            used = 1;
            s->b = ib == 0xF5;
            s->vk = V_BOOL;
            s->voff = voff;
            break;
        case L_T:
            if (!fast_num(p + voff, left, &num, &used))
                return false;
            s->t = num.kind == LW__NUM_UINT  ? (double)num.u
                   : num.kind == LW__NUM_INT ? (double)num.i
                                             : num.f;
            s->has_t = true;
            break;
        default: return false; /* u, vs, s: the general code */
        }
        off = voff + used;
    }
    if ((seen >> L_V & 1) && (seen >> L_VB & 1))
        return false; /* two values: an error, reported by the general code */
    *end = off;
    return true;
}

static int cbor_record(struct lw__m2m_cbor_rd *r, struct sbase *base, bool paths_only)
{
    struct lw__m2m_dec *d = r->d;
    struct lw__m2m_cbor_tok m, k, v;
    struct srec s;
    uint32_t seen = 0;
    bool tag1;
    int rc;
    memset(&s, 0, sizeof(s));
    size_t end;
    if (cbor_record_fast(r, &s, &end)) {
        size_t moff = r->off;
        r->off = end;
        return emit(d, base, &s, paths_only, moff);
    }
    memset(&s, 0, sizeof(s));
    /* fast path: a definite map of up to 23 pairs, same count check as lw__m2m_cbor_next */
    uint8_t mb = r->off < r->len ? r->p[r->off] : 0xFF;
    if (mb >= 0xA0 && mb < 0xB8 && (size_t)(mb & 0x1F) <= (r->len - r->off - 1) / 2) {
        m.kind = LW__CB_MAP;
        m.indef = false;
        m.u = mb & 0x1F;
        m.off = r->off++;
    } else if ((rc = lw__m2m_cbor_next(r, &m))) {
        return rc;
    }
    if (m.kind != LW__CB_MAP)
        return lw__m2m_fail(d, LW_EMALFORMED, m.off);
    for (uint64_t i = 0; m.indef || i < m.u; i++) {
        int64_t label;
        size_t koff = r->off; /* the key's offset, as the reader would report it */
        /* fast path: the integer labels SenML uses fit the initial byte (0..23, -1..-24) */
        uint8_t kb = r->off < r->len ? r->p[r->off] : 0xFF;
        if (kb < 0x18) {
            label = kb;
            r->off++;
        } else if (kb >= 0x20 && kb < 0x38) {
            label = -1 - (int64_t)(kb & 0x1F);
            r->off++;
        } else if ((rc = lw__m2m_cbor_next(r, &k))) {
            return rc;
        } else if (k.kind == LW__CB_BREAK && m.indef) {
            break;
        } else if (k.kind == LW__CB_UINT && k.u < 64) {
            label = (int64_t)k.u;
        } else if (k.kind == LW__CB_NEG && k.u < 64) {
            label = -1 - (int64_t)k.u;
        } else if (k.kind == LW__CB_TEXT && k.s.len == 3 && memcmp(k.s.ptr, "vlo", 3) == 0) {
            label = 100;
        } else if (k.kind == LW__CB_TEXT) {
            if (rejected_label((const char *)k.s.ptr, k.s.len))
                return lw__m2m_fail(d, LW_EMALFORMED, koff);
            label = 101; /* unknown text label: skip its value */
        } else if (k.kind == LW__CB_UINT || k.kind == LW__CB_NEG) {
            label = 101;
        } else {
            return lw__m2m_fail(d, LW_EMALFORMED, koff);
        }
        if (label >= -6 && label <= 8) {
            /* one bit per known label: rejected labels (bv, bs, s) and duplicates in one test */
            uint32_t bit = 1u << (label + 6);
            if ((seen | REJECTED_BITS) & bit)
                return lw__m2m_fail(d, LW_EMALFORMED, koff);
            seen |= bit;
        }
        enum vkind vk = V_NONE;
        switch (label) {
        case L_BT:
            if ((rc = cbor_time(r, &base->bt)))
                return rc;
            base->has_bt = true;
            continue;
        case L_T:
            if ((rc = cbor_time(r, &s.t)))
                return rc;
            s.has_t = true;
            continue;
        case L_BN:
        case L_N:
        case L_VS:
        case 100:
            if ((rc = lw__m2m_cbor_leaf_fast(r, &v, &tag1)))
                return rc;
            /* names are checked by the path parser (ASCII only); values must be UTF-8 */
            if (v.kind != LW__CB_TEXT ||
                ((label == L_VS || label == 100) && !lw__m2m_utf8_valid(v.s.ptr, v.s.len)))
                return lw__m2m_fail(d, LW_EMALFORMED, v.off);
            if (label == L_BN) {
                base->bn = v.s;
            } else if (label == L_N) {
                s.n = v.s;
                s.has_n = true;
            } else {
                vk = label == L_VS ? V_STR : V_LNK;
                s.s = v.s;
            }
            break;
        case L_V:
            if ((rc = lw__m2m_cbor_leaf_fast(r, &v, &tag1)))
                return rc;
            if (!lw__m2m_cbor_tok_num(&v, &s.num))
                return lw__m2m_fail(d, LW_EMALFORMED, v.off);
            vk = V_NUM;
            break;
        case L_VB:
            if ((rc = lw__m2m_cbor_leaf_fast(r, &v, &tag1)))
                return rc;
            if (v.kind != LW__CB_BOOL)
                return lw__m2m_fail(d, LW_EMALFORMED, v.off);
            vk = V_BOOL;
            s.b = v.b;
            break;
        case L_VD:
            if ((rc = lw__m2m_cbor_leaf_fast(r, &v, &tag1)))
                return rc;
            if (v.kind != LW__CB_BYTES)
                return lw__m2m_fail(d, LW_EMALFORMED, v.off);
            vk = V_DATA;
            s.s = v.s;
            break;
        default: /* bver, bu, u, ut and unknown labels: skip the value */
            if ((rc = lw__m2m_cbor_next(r, &v)) || (rc = lw__m2m_cbor_skip(r, &v, 2)))
                return rc;
            if (v.kind == LW__CB_BREAK)
                return lw__m2m_fail(d, LW_EMALFORMED, v.off);
            continue;
        }
        if (vk != V_NONE) {
            if (s.vk != V_NONE)
                return lw__m2m_fail(d, LW_EMALFORMED, koff);
            s.vk = vk;
            s.voff = v.off;
        }
    }
    return emit(d, base, &s, paths_only, m.off);
}

int lw__m2m_senml_cbor_decode(struct lw__m2m_dec *d, struct lw_bytes in, bool paths_only)
{
    struct lw__m2m_cbor_rd r = {in.ptr, in.len, 0, d};
    struct lw__m2m_cbor_tok a, t;
    struct sbase base;
    int rc;
    memset(&base, 0, sizeof(base));
    if ((rc = lw__m2m_cbor_next(&r, &a)))
        return rc;
    if (a.kind != LW__CB_ARRAY)
        return lw__m2m_fail(d, LW_EMALFORMED, a.off);
    if (!a.indef)
        lw__m2m_reserve(d, (size_t)a.u); /* a.u <= input bytes, checked by the reader */
    for (uint64_t i = 0; a.indef || i < a.u; i++) {
        if (a.indef) {
            size_t save = r.off;
            if ((rc = lw__m2m_cbor_next(&r, &t)))
                return rc;
            if (t.kind == LW__CB_BREAK)
                break;
            r.off = save;
        }
        if ((rc = cbor_record(&r, &base, paths_only)))
            return rc;
    }
    if (r.off != r.len)
        return lw__m2m_fail(d, LW_EMALFORMED, r.off);
    return 0;
}

/* ---- encoders ---- */

/* Name split: bn = request path (first record, omitted for the root), n = the rest. */
static void split_name(const struct lw_m2m_path *req, const struct lw_m2m_record *r, char *bn,
                       size_t *bn_len, char *n, size_t *n_len)
{
    struct lw_m2m_path rest = {{0, 0, 0, 0}, 0};
    *bn_len = req->len ? lw__m2m_path_text(req, bn) : 0;
    for (unsigned k = req->len; k < r->path.len; k++)
        rest.id[rest.len++] = r->path.id[k];
    if (req->len == 0 || rest.len) {
        *n_len = lw__m2m_path_text(&rest, n);
    } else {
        *n_len = 0;
    }
}

static void json_num_out(struct lw_buf *b, double d)
{
    char tmp[32];
    size_t n = lw__m2m_fmt_double(d, tmp, false);
    lw_buf_put(b, tmp, n);
}

int lw__m2m_senml_json_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r,
                              size_t n, struct lw_buf *out)
{
    char bn[32], nm[32], tmp[32];
    size_t bnl, nml;
    lw_buf_put_u8(out, '[');
    for (size_t k = 0; k < n; k++) {
        const struct lw_m2m_record *x = &r[k];
        const struct lw_m2m_value *v = &x->value;
        bool comma = false;
        split_name(req, x, bn, &bnl, nm, &nml);
        lw_buf_put_str(out, k ? ",{" : "{");
        if (k == 0 && bnl) {
            lw_buf_put_str(out, "\"bn\":");
            lw__m2m_json_put_str(out, (const uint8_t *)bn, bnl);
            comma = true;
        }
        if (nml) {
            lw_buf_put_str(out, comma ? ",\"n\":" : "\"n\":");
            lw__m2m_json_put_str(out, (const uint8_t *)nm, nml);
            comma = true;
        }
        if (x->has_value) {
            lw_buf_put_str(out, comma ? "," : "");
            comma = true;
            switch (v->type) {
            case LW_M2M_T_INTEGER:
            case LW_M2M_T_TIME: lw_buf_printf(out, "\"v\":%" PRId64, v->i); break;
            case LW_M2M_T_UNSIGNED: lw_buf_printf(out, "\"v\":%" PRIu64, v->u); break;
            case LW_M2M_T_FLOAT:
                if (!isfinite(v->f))
                    return LW_EINVAL;
                lw_buf_put_str(out, "\"v\":");
                lw_buf_put(out, tmp, lw__m2m_fmt_double(v->f, tmp, true));
                break;
            case LW_M2M_T_BOOLEAN:
                lw_buf_put_str(out, v->b ? "\"vb\":true" : "\"vb\":false");
                break;
            case LW_M2M_T_OPAQUE:
                lw_buf_put_str(out, "\"vd\":\"");
                lw_b64_encode(out, v->bytes, true);
                lw_buf_put_u8(out, '"');
                break;
            case LW_M2M_T_OBJLNK:
                lw_buf_put_str(out, "\"vlo\":\"");
                lw__m2m_objlnk_put(out, v->lnk);
                lw_buf_put_u8(out, '"');
                break;
            default: /* STRING, CORELNK */
                lw_buf_put_str(out, "\"vs\":");
                lw__m2m_json_put_str(out, v->bytes.ptr, v->bytes.len);
                break;
            }
        }
        if (x->has_time) {
            if (!isfinite(x->time))
                return LW_EINVAL;
            lw_buf_put_str(out, comma ? ",\"t\":" : "\"t\":");
            json_num_out(out, x->time);
        }
        lw_buf_put_u8(out, '}');
    }
    lw_buf_put_u8(out, ']');
    return lw_buf_status(out);
}

static void cbor_time_out(struct lw_buf *b, double t)
{
    if (t == floor(t) && t >= -9.2e18 && t <= 9.2e18)
        lw__m2m_cbor_put_int(b, (int64_t)t);
    else
        lw__m2m_cbor_put_float(b, t);
}

int lw__m2m_senml_cbor_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r,
                              size_t n, struct lw_buf *out)
{
    char bn[32], nm[32];
    size_t bnl, nml;
    lw__m2m_cbor_put_array(out, n);
    for (size_t k = 0; k < n; k++) {
        const struct lw_m2m_record *x = &r[k];
        const struct lw_m2m_value *v = &x->value;
        split_name(req, x, bn, &bnl, nm, &nml);
        bool with_bn = k == 0 && bnl;
        lw__m2m_cbor_put_map(out, (size_t)with_bn + (nml > 0) + x->has_value + x->has_time);
        if (with_bn) {
            lw__m2m_cbor_put_int(out, L_BN);
            lw__m2m_cbor_put_text(out, bn, bnl);
        }
        if (nml) {
            lw__m2m_cbor_put_uint(out, L_N);
            lw__m2m_cbor_put_text(out, nm, nml);
        }
        if (x->has_value) {
            switch (v->type) {
            case LW_M2M_T_INTEGER:
            case LW_M2M_T_TIME:
            case LW_M2M_T_UNSIGNED:
            case LW_M2M_T_FLOAT: lw__m2m_cbor_put_uint(out, L_V); break;
            case LW_M2M_T_BOOLEAN: lw__m2m_cbor_put_uint(out, L_VB); break;
            case LW_M2M_T_OPAQUE: lw__m2m_cbor_put_uint(out, L_VD); break;
            case LW_M2M_T_OBJLNK: lw__m2m_cbor_put_text(out, "vlo", 3); break;
            default: lw__m2m_cbor_put_uint(out, L_VS); break;
            }
            if (lw__m2m_cbor_put_value(out, v, false))
                return LW_EINVAL;
        }
        if (x->has_time) {
            lw__m2m_cbor_put_uint(out, L_T);
            cbor_time_out(out, x->time);
        }
    }
    return lw_buf_status(out);
}
