/* lib/lwm2m/fmt_json.c - the LwM2M 1.0 JSON format (11543, legacy 1543):
 *   {"bn":"/3/0/","bt":..., "e":[{"n":"0","sv":"..."},{"n":"6/0","v":1},{"n":"13","v":...}]}
 *
 * Names: bn + n, parsed as a path. Without bn, a name starting with '/' is absolute and any
 * other name is relative to the request path. Values: "v" number (model picks Integer /
 * Unsigned / Float / Time), "sv" string (also base64 opaque with padding and, as Leshan writes
 * it, objlnk "o:i" when the model says so), "bv" boolean, "ov" objlnk. Times: "bt" + "t".
 * Unknown keys are ignored. Parsed with jansson like SenML JSON (see fmt_senml.c); written
 * directly. The encoder writes bn as the request path with a trailing '/' and relative names
 * (bn without the '/', n "" for that record and "/r" for the others, when a record sits at
 * the request path itself).
 */
#include "fmt_int.h"

#include "base/err.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static bool num_of(json_t *j, struct lw__m2m_num *n)
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

static double to_double(const struct lw__m2m_num *n)
{
    return n->kind == LW__NUM_INT ? (double)n->i : n->f;
}

static int entry(struct lw__m2m_dec *d, json_t *e, const char *bn, size_t bnl, bool has_bt,
                 double bt, size_t k)
{
    struct lw_m2m_record rec;
    const char *key;
    json_t *val, *vj = NULL;
    const char *name = NULL;
    size_t name_len = 0;
    int vk = 0, rc;
    memset(&rec, 0, sizeof(rec));
    if (!json_is_object(e))
        return lw__m2m_fail(d, LW_EMALFORMED, k);
    json_object_foreach(e, key, val)
    {
        int this_vk = 0;
        if (strcmp(key, "n") == 0) {
            if (!json_is_string(val))
                return lw__m2m_fail(d, LW_EMALFORMED, k);
            name = json_string_value(val);
            name_len = json_string_length(val);
        } else if (strcmp(key, "t") == 0) {
            struct lw__m2m_num n;
            if (!num_of(val, &n))
                return lw__m2m_fail(d, LW_EMALFORMED, k);
            rec.time = to_double(&n);
            rec.has_time = true;
        } else if (strcmp(key, "v") == 0) {
            this_vk = 'v';
        } else if (strcmp(key, "sv") == 0) {
            this_vk = 's';
        } else if (strcmp(key, "bv") == 0) {
            this_vk = 'b';
        } else if (strcmp(key, "ov") == 0) {
            this_vk = 'o';
        }
        if (this_vk) {
            if (vk)
                return lw__m2m_fail(d, LW_EMALFORMED, k);
            vk = this_vk;
            vj = val;
        }
    }
    if (has_bt) {
        rec.time += bt;
        rec.has_time = true;
    }
    if (!isfinite(rec.time))
        return lw__m2m_fail(d, LW_EMALFORMED, k);
    /* name resolution */
    char rel[32];
    const char *base = bn;
    size_t base_len = bnl;
    if (!bn && (!name || name[0] != '/')) {
        int l = lw_m2m_path_format(d->req, rel, sizeof(rel));
        base_len = l > 1 ? (size_t)l : 0;
        if (base_len && name && name_len)
            rel[base_len++] = '/';
        base = rel;
    }
    if (lw__m2m_name_to_path((const uint8_t *)base, base_len, (const uint8_t *)name, name_len,
                             &rec.path))
        return lw__m2m_fail(d, LW_EMALFORMED, k);
    if (vk) {
        enum lw_m2m_type model = lw__m2m_type_of(d, &rec.path);
        struct lw__m2m_num num;
        rec.has_value = true;
        switch (vk) {
        case 'v':
            if (!num_of(vj, &num))
                return lw__m2m_fail(d, LW_EMALFORMED, k);
            if (lw__m2m_num_to_value(&num, model, &rec.value))
                return lw__m2m_fail(d, LW_ETYPE, k);
            break;
        case 's': {
            if (!json_is_string(vj))
                return lw__m2m_fail(d, LW_EMALFORMED, k);
            struct lw_bytes s = {(const uint8_t *)json_string_value(vj), json_string_length(vj)};
            if (s.len > d->cfg.max_value_len * 4 / 3 + 4)
                return lw__m2m_fail(d, LW_ELIMIT, k);
            if (model != LW_M2M_T_OPAQUE && model != LW_M2M_T_OBJLNK) {
                s.ptr = lw_arena_memdup(d->a, s.ptr, s.len);
                if (!s.ptr)
                    return lw__m2m_fail(d, LW_ENOMEM, k);
            }
            if ((rc = lw__m2m_text_to_value(d, s, model, false, &rec.value)))
                return lw__m2m_fail(d, rc, k);
            break;
        }
        case 'b':
            if (!json_is_boolean(vj))
                return lw__m2m_fail(d, LW_EMALFORMED, k);
            if (model != LW_M2M_T_NONE && model != LW_M2M_T_BOOLEAN)
                return lw__m2m_fail(d, LW_ETYPE, k);
            rec.value.type = LW_M2M_T_BOOLEAN;
            rec.value.b = json_is_true(vj);
            break;
        default: /* 'o' */
            if (!json_is_string(vj))
                return lw__m2m_fail(d, LW_EMALFORMED, k);
            if (model != LW_M2M_T_NONE && model != LW_M2M_T_OBJLNK)
                return lw__m2m_fail(d, LW_ETYPE, k);
            rec.value.type = LW_M2M_T_OBJLNK;
            if (lw__m2m_objlnk_parse((const uint8_t *)json_string_value(vj), json_string_length(vj),
                                     &rec.value.lnk))
                return lw__m2m_fail(d, LW_EMALFORMED, k);
            break;
        }
    }
    return lw__m2m_add(d, &rec, k);
}

int lw__m2m_json_decode(struct lw__m2m_dec *d, struct lw_bytes in)
{
    json_error_t err;
    json_t *root = json_loadb((const char *)in.ptr, in.len, JSON_REJECT_DUPLICATES, &err);
    int rc = 0;
    if (!root)
        return lw__m2m_fail(d, LW_EMALFORMED, (size_t)err.position);
    json_t *bn = json_object_get(root, "bn"), *bt = json_object_get(root, "bt");
    json_t *e = json_object_get(root, "e");
    struct lw__m2m_num btn = {LW__NUM_INT, 0, 0, 0};
    if (!json_is_object(root) || !json_is_array(e) || (bn && !json_is_string(bn)) ||
        (bt && !num_of(bt, &btn))) {
        rc = lw__m2m_fail(d, LW_EMALFORMED, 0);
        goto out;
    }
    size_t n = json_array_size(e);
    if (n > d->cfg.max_records) {
        rc = lw__m2m_fail(d, LW_ELIMIT, 0);
        goto out;
    }
    for (size_t k = 0; k < n && rc == 0; k++)
        rc = entry(d, json_array_get(e, k), bn ? json_string_value(bn) : NULL,
                   bn ? json_string_length(bn) : 0, bt != NULL, to_double(&btn), k);
    if (rc)
        d->err_off = lw__m2m_json_elem_off(in, d->err_off, 2);
out:
    json_decref(root);
    return rc;
}

int lw__m2m_json_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                        struct lw_buf *out)
{
    char bn[32], nm[32], tmp[32];
    int l = lw_m2m_path_format(req, bn, sizeof(bn) - 1);
    if (l < 0)
        return LW_EINVAL;
    /* bn "/3/0/" with names "9", "6/0"; but when a record sits at the request path itself,
     * bn "/3/0/9" with names "" and "/1". The root is bn "/" with names "3/0/9". */
    bool deeper = true;
    for (size_t k = 0; k < n; k++)
        if (r[k].path.len == req->len)
            deeper = false;
    bool slash = req->len > 0 && !deeper;
    if (req->len > 0 && deeper)
        bn[l++] = '/';
    lw_buf_put_str(out, "{\"bn\":");
    lw__m2m_json_put_str(out, (const uint8_t *)bn, (size_t)l);
    lw_buf_put_str(out, ",\"e\":[");
    for (size_t k = 0; k < n; k++) {
        const struct lw_m2m_record *x = &r[k];
        const struct lw_m2m_value *v = &x->value;
        size_t nl = 0;
        for (unsigned j = req->len; j < x->path.len; j++) {
            int w = snprintf(nm + nl, sizeof(nm) - nl, (j > req->len || slash) ? "/%u" : "%u",
                             (unsigned)x->path.id[j]);
            nl += (size_t)w;
        }
        lw_buf_put_str(out, k ? ",{\"n\":" : "{\"n\":");
        lw__m2m_json_put_str(out, (const uint8_t *)nm, nl);
        if (x->has_value) {
            switch (v->type) {
            case LW_M2M_T_INTEGER:
            case LW_M2M_T_TIME: lw_buf_printf(out, ",\"v\":%" PRId64, v->i); break;
            case LW_M2M_T_UNSIGNED: lw_buf_printf(out, ",\"v\":%" PRIu64, v->u); break;
            case LW_M2M_T_FLOAT:
                if (!isfinite(v->f))
                    return LW_EINVAL;
                lw_buf_put_str(out, ",\"v\":");
                lw_buf_put(out, tmp, lw__m2m_fmt_double(v->f, tmp, true));
                break;
            case LW_M2M_T_BOOLEAN:
                lw_buf_put_str(out, v->b ? ",\"bv\":true" : ",\"bv\":false");
                break;
            case LW_M2M_T_OPAQUE:
                lw_buf_put_str(out, ",\"sv\":\"");
                lw_b64_encode(out, v->bytes, false);
                lw_buf_put_u8(out, '"');
                break;
            case LW_M2M_T_OBJLNK:
                lw_buf_put_str(out, ",\"ov\":\"");
                lw__m2m_objlnk_put(out, v->lnk);
                lw_buf_put_u8(out, '"');
                break;
            default:
                lw_buf_put_str(out, ",\"sv\":");
                lw__m2m_json_put_str(out, v->bytes.ptr, v->bytes.len);
                break;
            }
        }
        if (x->has_time) {
            if (!isfinite(x->time))
                return LW_EINVAL;
            lw_buf_put_str(out, ",\"t\":");
            lw_buf_put(out, tmp, lw__m2m_fmt_double(x->time, tmp, false));
        }
        lw_buf_put_u8(out, '}');
    }
    lw_buf_put_str(out, "]}");
    return lw_buf_status(out);
}
