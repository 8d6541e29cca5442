/* LwM2M records <-> API JSON values (values.h). Base64 is written here: jansson, libcbor and
 * expat have none, and the TLS library's helpers are not linked into every build of the server
 * objects. */
#include "values.h"

#include "base/b64.h"

#include "base/err.h"
#include "base/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void values_rfc3339(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00Z");
        return;
    }
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

#define TWO53 9007199254740992.0

static json_t *int_json(int64_t v)
{
    if ((double)v <= TWO53 && (double)v >= -TWO53)
        return json_integer(v);
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)v);
    return json_string(b);
}

static json_t *value_json(const struct lw_m2m_value *v, json_t *obj)
{
    char b[48];
    switch (v->type) {
    case LW_M2M_T_STRING:
    case LW_M2M_T_CORELNK: return json_stringn_nocheck((const char *)v->bytes.ptr, v->bytes.len);
    case LW_M2M_T_INTEGER: return int_json(v->i);
    case LW_M2M_T_UNSIGNED:
        if (v->u <= (uint64_t)TWO53)
            return json_integer((json_int_t)v->u);
        snprintf(b, sizeof(b), "%llu", (unsigned long long)v->u);
        return json_string(b);
    case LW_M2M_T_FLOAT: return isfinite(v->f) ? json_real(v->f) : json_null();
    case LW_M2M_T_BOOLEAN: return json_boolean(v->b);
    case LW_M2M_T_OPAQUE: {
        struct lw_buf enc;
        lw_buf_init(&enc, lw_b64_len(v->bytes.len, false));
        lw_b64_encode(&enc, v->bytes, false);
        json_t *j = lw_buf_status(&enc) ? NULL : json_stringn((const char *)enc.data, enc.len);
        lw_buf_deinit(&enc);
        return j;
    }
    case LW_M2M_T_TIME:
        json_object_set_new(obj, "epoch", int_json(v->i));
        values_rfc3339(v->i, b);
        return json_string(b);
    case LW_M2M_T_OBJLNK:
        snprintf(b, sizeof(b), "%u:%u", v->lnk.obj, v->lnk.inst);
        return json_string(b);
    case LW_M2M_T_NONE: break;
    }
    return json_null();
}

json_t *values_record_json(const struct lw_m2m_record *rec)
{
    char path[32];
    json_t *o = json_object();
    if (!o)
        return NULL;
    lw_m2m_path_format(&rec->path, path, sizeof(path));
    json_object_set_new(o, "path", json_string(path));
    if (rec->has_value) {
        json_object_set_new(o, "type", json_string(lw_m2m_type_api_name(rec->value.type)));
        json_t *v = value_json(&rec->value, o);
        json_object_set_new(o, "value", v ? v : json_null());
    }
    if (rec->has_time)
        json_object_set_new(o, "time", json_real(rec->time));
    return o;
}

json_t *values_records_json(const struct lw_m2m_record *recs, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, values_record_json(&recs[i]));
    return a;
}

static int parse_time(const char *s, int64_t *out)
{
    struct tm tm = {0};
    const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!e)
        return LW_EINVAL;
    if (*e == '.')
        for (e++; *e >= '0' && *e <= '9'; e++)
            ;
    int64_t off = 0;
    if (*e == 'Z' && e[1] == '\0') {
        off = 0;
    } else if ((*e == '+' || *e == '-') && strlen(e) == 6 && e[3] == ':') {
        int hh = (e[1] - '0') * 10 + (e[2] - '0'), mm = (e[4] - '0') * 10 + (e[5] - '0');
        off = (int64_t)(hh * 3600 + mm * 60) * (*e == '-' ? -1 : 1);
    } else {
        return LW_EINVAL;
    }
    *out = (int64_t)timegm(&tm) - off;
    return 0;
}

/* JSON integer (number or decimal string) into a signed or unsigned value. */
static int get_int(const json_t *v, bool is_unsigned, struct lw_m2m_value *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (is_unsigned && i < 0)
            return LW_ETYPE;
        if (is_unsigned)
            out->u = (uint64_t)i;
        else
            out->i = i;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d) || fabs(d) > TWO53 || (is_unsigned && d < 0))
            return LW_ETYPE;
        if (is_unsigned)
            out->u = (uint64_t)d;
        else
            out->i = (int64_t)d;
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (is_unsigned)
            return lw_parse_u64(s, n, &out->u) == 0 ? 0 : LW_ETYPE;
        return lw_parse_i64(s, n, &out->i) == 0 ? 0 : LW_ETYPE;
    }
    return LW_ETYPE;
}

static int set_value(const json_t *v, enum lw_m2m_type t, struct lw_arena *a,
                     struct lw_m2m_value *out)
{
    out->type = t;
    switch (t) {
    case LW_M2M_T_STRING:
    case LW_M2M_T_CORELNK:
        if (!json_is_string(v))
            return LW_ETYPE;
        out->bytes = LW_BYTES(json_string_value(v), json_string_length(v));
        return 0;
    case LW_M2M_T_INTEGER: return get_int(v, false, out);
    case LW_M2M_T_UNSIGNED: return get_int(v, true, out);
    case LW_M2M_T_FLOAT:
        if (!json_is_number(v))
            return LW_ETYPE;
        out->f = json_number_value(v);
        return 0;
    case LW_M2M_T_BOOLEAN:
        if (!json_is_boolean(v))
            return LW_ETYPE;
        out->b = json_is_true(v);
        return 0;
    case LW_M2M_T_OPAQUE:
        if (!json_is_string(v))
            return LW_ETYPE;
        return lw_b64_decode(a, json_string_value(v), json_string_length(v), &out->bytes) == 0
                   ? 0
                   : LW_ETYPE;
    case LW_M2M_T_TIME:
        if (json_is_string(v))
            return parse_time(json_string_value(v), &out->i) == 0 ? 0 : LW_ETYPE;
        return get_int(v, false, out);
    case LW_M2M_T_OBJLNK: {
        unsigned o, i;
        char tail;
        if (!json_is_string(v) || sscanf(json_string_value(v), "%u:%u%c", &o, &i, &tail) != 2 ||
            o > 65535 || i > 65535)
            return LW_ETYPE;
        out->lnk.obj = (uint16_t)o;
        out->lnk.inst = (uint16_t)i;
        return 0;
    }
    case LW_M2M_T_NONE: break;
    }
    return LW_ETYPE;
}

int values_from_json(const json_t *j, const struct lw_m2m_path *within,
                     const struct lw_m2m_types *types, struct lw_arena *a,
                     struct lw_m2m_records *out, char *err, size_t cap)
{
    const json_t *list = json_is_object(j) ? json_object_get(j, "values") : j;
    size_t i;
    const json_t *e;
    if (!json_is_array(list)) {
        snprintf(err, cap, "the body needs a \"values\" array");
        return LW_EINVAL;
    }
    json_array_foreach(list, i, e)
    {
        const json_t *jp = json_object_get(e, "path"), *jt = json_object_get(e, "type"),
                     *jv = json_object_get(e, "value");
        struct lw_m2m_path p;
        if (!json_is_string(jp) ||
            lw_m2m_path_parse(json_string_value(jp), json_string_length(jp), &p) != 0 ||
            p.len < 3) {
            snprintf(err, cap, "values[%zu]: \"path\" must be a resource path like /3/0/1", i);
            return LW_EINVAL;
        }
        if (within && !lw_m2m_path_within(&p, within)) {
            snprintf(err, cap, "values[%zu]: %s is outside the target path", i,
                     json_string_value(jp));
            return LW_EINVAL;
        }
        if (!jv) {
            snprintf(err, cap, "values[%zu]: \"value\" is missing", i);
            return LW_EINVAL;
        }
        enum lw_m2m_type known =
            types && types->type_of ? types->type_of(types->ctx, &p) : LW_M2M_T_NONE;
        enum lw_m2m_type t = known;
        if (jt) {
            enum lw_m2m_type given = json_is_string(jt) ? lw_m2m_type_parse(json_string_value(jt),
                                                                            json_string_length(jt))
                                                        : LW_M2M_T_NONE;
            if (given == LW_M2M_T_NONE) {
                snprintf(err, cap, "values[%zu]: unknown type", i);
                return LW_EINVAL;
            }
            if (known != LW_M2M_T_NONE && given != known) {
                snprintf(err, cap, "values[%zu]: %s is of type %s, not %s", i,
                         json_string_value(jp), lw_m2m_type_api_name(known),
                         lw_m2m_type_api_name(given));
                return LW_ETYPE;
            }
            t = given;
        }
        if (t == LW_M2M_T_NONE) {
            snprintf(err, cap, "values[%zu]: the type of %s is unknown: give \"type\"", i,
                     json_string_value(jp));
            return LW_EINVAL;
        }
        struct lw_m2m_record *r = lw_m2m_records_push(out, a);
        if (!r)
            return LW_ENOMEM;
        r->path = p;
        r->has_value = true;
        if (set_value(jv, t, a, &r->value) != 0) {
            snprintf(err, cap, "values[%zu]: the value of %s is not a valid %s", i,
                     json_string_value(jp), lw_m2m_type_api_name(t));
            return LW_ETYPE;
        }
    }
    return 0;
}
