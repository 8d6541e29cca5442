/* tools/fleet/model.c - the simulated device's object model and its answers to the server's
 * Device Management and Information Reporting requests: Read, Discover, Write (replace/partial),
 * Write-Attributes, Execute, Observe / cancel, Read-/Write-/Observe-Composite, firmware update
 * (object 5: push via Block1 to /5/0/0, pull via Package URI with Block2), Create and Delete of
 * object 19 instances, and notifications per pmin/pmax/gt/lt/st.
 *
 * The model is one static table shared by every device; values are computed from the device
 * index and the time, so meter readings change realistically (a daily-like load curve compressed
 * to 10 minutes, noise, monotonic energy counters) without per-device storage. Only writable state
 * (lifetime, firmware state, observations, attributes) is kept per device.
 */
#include "fleet.h"

#include "base/err.h"
#include "base/util.h"
#include "lwm2m/fmt.h"
#include "lwm2m/link.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void dev_reboot(struct fleet_dev *d, uint64_t now);
void dev_trigger_update(struct fleet_dev *d);
int dev_fw_fetch(struct fleet_dev *d, const char *uri, uint64_t now);

enum { OP_R = 1, OP_W = 2, OP_E = 4 };

struct res_def {
    uint16_t obj, rid;
    uint8_t type; /* enum lw_m2m_type; NONE for executables */
    uint8_t ops;
    bool multi;
};

/* Sorted by (obj, rid): Read/Discover output comes out in path order. */
static const struct res_def RES[] = {
    {1, 0, LW_M2M_T_INTEGER, OP_R, false},        /* Short Server ID */
    {1, 1, LW_M2M_T_INTEGER, OP_R | OP_W, false}, /* Lifetime */
    {1, 2, LW_M2M_T_INTEGER, OP_R | OP_W, false}, /* Default Minimum Period */
    {1, 3, LW_M2M_T_INTEGER, OP_R | OP_W, false}, /* Default Maximum Period */
    {1, 6, LW_M2M_T_BOOLEAN, OP_R | OP_W, false}, /* Notification Storing */
    {1, 7, LW_M2M_T_STRING, OP_R | OP_W, false},  /* Binding */
    {1, 8, LW_M2M_T_NONE, OP_E, false},           /* Registration Update Trigger */
    {3, 0, LW_M2M_T_STRING, OP_R, false},
    {3, 1, LW_M2M_T_STRING, OP_R, false},
    {3, 2, LW_M2M_T_STRING, OP_R, false},
    {3, 3, LW_M2M_T_STRING, OP_R, false},
    {3, 4, LW_M2M_T_NONE, OP_E, false},
    {3, 6, LW_M2M_T_INTEGER, OP_R, true},
    {3, 9, LW_M2M_T_INTEGER, OP_R, false},
    {3, 10, LW_M2M_T_INTEGER, OP_R, false},
    {3, 11, LW_M2M_T_INTEGER, OP_R, true},
    {3, 13, LW_M2M_T_TIME, OP_R | OP_W, false},
    {3, 16, LW_M2M_T_STRING, OP_R, false},
    {3, 17, LW_M2M_T_STRING, OP_R, false},
    {3, 19, LW_M2M_T_STRING, OP_R, false},
    {3, 20, LW_M2M_T_INTEGER, OP_R, false},
    {4, 0, LW_M2M_T_INTEGER, OP_R, false},
    {4, 1, LW_M2M_T_INTEGER, OP_R, true},
    {4, 2, LW_M2M_T_INTEGER, OP_R, false},
    {4, 3, LW_M2M_T_INTEGER, OP_R, false},
    {4, 4, LW_M2M_T_STRING, OP_R, true},
    {4, 8, LW_M2M_T_INTEGER, OP_R, false},
    {5, 0, LW_M2M_T_OPAQUE, OP_W, false},
    {5, 1, LW_M2M_T_STRING, OP_R | OP_W, false},
    {5, 2, LW_M2M_T_NONE, OP_E, false},
    {5, 3, LW_M2M_T_INTEGER, OP_R, false},
    {5, 5, LW_M2M_T_INTEGER, OP_R, false},
    {5, 6, LW_M2M_T_STRING, OP_R, false},
    {5, 7, LW_M2M_T_STRING, OP_R, false},
    {5, 8, LW_M2M_T_INTEGER, OP_R, true},
    {5, 9, LW_M2M_T_INTEGER, OP_R, false},
    {5, 10, LW_M2M_T_NONE, OP_E, false},
    /* Cancel (1.1) */ {10243, 0, LW_M2M_T_STRING, OP_R, false},
    {10243, 1, LW_M2M_T_STRING, OP_R, false},
    {10243, 2, LW_M2M_T_STRING, OP_R, false},
    {10243, 4, LW_M2M_T_FLOAT, OP_R, false},  /* Tension (V) */
    {10243, 5, LW_M2M_T_FLOAT, OP_R, false},  /* Current (A) */
    {10243, 6, LW_M2M_T_FLOAT, OP_R, false},  /* Active Power (kW) */
    {10243, 7, LW_M2M_T_FLOAT, OP_R, false},  /* Reactive Power (kvar) */
    {10243, 10, LW_M2M_T_FLOAT, OP_R, false}, /* Apparent Power (kVA) */
    {10243, 11, LW_M2M_T_FLOAT, OP_R, false}, /* Power Factor */
    {10243, 14, LW_M2M_T_FLOAT, OP_R, false}, /* Active Energy (kWh) */
    {10243, 15, LW_M2M_T_FLOAT, OP_R, false}, /* Reactive Energy (kvarh) */
    {10243, 17, LW_M2M_T_FLOAT, OP_R, false}, /* Frequency (Hz) */
};

#define MAX_RECS 64

/* Object version announced in Register and Discover (none: 1.0). 1.1 clients implement the 1.1
 * versions of the Server and Device objects. */
static const char *obj_ver(const struct fleet_dev *d, uint16_t obj)
{
    if (dev_group(d)->lwm2m_minor > 0 && (obj == 1 || obj == 3))
        return "ver=1.1";
    return NULL;
}

static bool has_object(const struct fleet_dev *d, uint16_t obj)
{
    uint32_t o = dev_group(d)->objects;
    switch (obj) {
    case 1: return true;
    case 3: return o & FLEET_OBJ_DEVICE;
    case 4: return o & FLEET_OBJ_CONN;
    case 5: return o & FLEET_OBJ_FIRMWARE;
    case 10243: return o & FLEET_OBJ_METER;
    case 19: return o & FLEET_OBJ_APPDATA;
    default: return false;
    }
}

static const struct res_def *find_res(uint16_t obj, uint16_t rid)
{
    for (size_t i = 0; i < LW_ARRAY_SIZE(RES); i++)
        if (RES[i].obj == obj && RES[i].rid == rid)
            return &RES[i];
    return NULL;
}

/* ---- object 19 BinaryAppDataContainer ---------------------------------------------------- *
 * The one multi-instance object of the model. Instance 0 is fixed and computed: its Data
 * (/19/0/0/0) is APP_BIG_LEN bytes, so any Read of it is served block-wise (RFC 7959 §2.4).
 * Byte i of that value is (i * 7) ^ (i >> 8) (mod 256), the same on every device, so a test can
 * compare what it read. Further instances exist only after a Create from the server (LwM2M 1.1
 * §5.4.5: POST /19 with the new instance's values, 2.01 with Location-Path 19/<id>) and until a
 * Delete (2.02); each is one allocation holding copies of its records, made on Create. */
#define APP_OBJ       19
#define APP_BIG_LEN   4096
#define APP_MAX_INST  8    /* created instances per device */
#define APP_MAX_RECS  12   /* records per created instance */
#define APP_MAX_BYTES 8192 /* string/opaque bytes per created instance */

struct app_inst {
    struct app_inst *next; /* sorted by iid */
    uint16_t iid;
    uint16_t n;
    struct lw_m2m_record rec[]; /* sorted by path; byte values follow the array */
};

static enum lw_m2m_type app_type(uint16_t rid)
{
    switch (rid) {
    case 0: return LW_M2M_T_OPAQUE;  /* Data (multiple) */
    case 1: return LW_M2M_T_INTEGER; /* Data Priority */
    case 2: return LW_M2M_T_TIME;    /* Data Creation Time */
    case 3: return LW_M2M_T_STRING;  /* Data Description */
    case 4: return LW_M2M_T_STRING;  /* Data Format */
    case 5: return LW_M2M_T_INTEGER; /* App ID */
    default: return LW_M2M_T_NONE;
    }
}

static enum lw_m2m_type type_of(void *ctx, const struct lw_m2m_path *p)
{
    (void)ctx;
    if (p->len >= 3 && p->id[0] == APP_OBJ)
        return app_type(p->id[2]);
    const struct res_def *r = p->len >= 3 ? find_res(p->id[0], p->id[2]) : NULL;
    return r ? (enum lw_m2m_type)r->type : LW_M2M_T_NONE;
}
static const struct lw_m2m_types TYPES = {type_of, NULL};

/* ---- values ------------------------------------------------------------------------------ */

/* Uniform noise in [-1, 1] for (device, resource, time step). */
static double noise(uint32_t idx, uint32_t salt, uint64_t step)
{
    uint64_t h = fleet_hash(((uint64_t)idx << 20) ^ salt, step);
    return (double)(h >> 11) / (double)(1ull << 52) - 1.0;
}

#define LOAD_PERIOD_S 600.0 /* one simulated "day" of load */
#define LOAD_SWING    0.35

struct meter {
    double v, i, p, q, s, pf, e_kwh, eq_kvarh, hz;
};

static void meter_read(const struct fleet_dev *d, uint64_t now, struct meter *m)
{
    double base = dev_group(d)->meter_base_kw * (0.5 + (fleet_hash(d->idx, 7) % 1000) / 1000.0);
    double t = (double)(now - E->t0) / 1000.0 + (double)(fleet_hash(d->idx, 1) % 86400);
    double phase = (double)(fleet_hash(d->idx, 2) % 1000) / 1000.0;
    double w = 2.0 * M_PI / LOAD_PERIOD_S;
    uint64_t step = (uint64_t)(t / 10.0);
    m->p =
        base * (1.0 + LOAD_SWING * sin(w * t + 2 * M_PI * phase) + 0.08 * noise(d->idx, 6, step));
    m->pf = 0.92 + 0.04 * noise(d->idx, 11, step);
    m->v = 230.0 + 4.0 * sin(w * t / 3.0) + 1.5 * noise(d->idx, 4, step);
    m->s = m->p / m->pf;
    m->q = sqrt(m->s * m->s - m->p * m->p);
    m->i = m->s * 1000.0 / m->v;
    m->hz = 50.0 + 0.03 * noise(d->idx, 17, step);
    /* The integral of the smooth part of the load: monotonic because the load stays above
     * (1 - LOAD_SWING) of the base. */
    double integ =
        base * (t + LOAD_SWING / w * (cos(2 * M_PI * phase) - cos(w * t + 2 * M_PI * phase)));
    m->e_kwh = 1000.0 + (double)(fleet_hash(d->idx, 3) % 50000) + integ / 3600.0;
    m->eq_kvarh = m->e_kwh * 0.35;
}

static double round3(double v)
{
    return round(v * 1000.0) / 1000.0;
}

/* Fills v for resource r (instance 0, resource instance 0); strings are written into sbuf
 * (cap bytes) which must outlive v. false when the resource has no readable value. */
static bool get_value(struct fleet_dev *d, const struct res_def *r, uint64_t now,
                      struct lw_m2m_value *v, char *sbuf, size_t cap)
{
    const struct fleet_group *g = dev_group(d);
    v->type = (enum lw_m2m_type)r->type;
    const char *s = NULL;
    int64_t i = 0;
    double f = 0;
    struct meter m;
    switch (r->obj * 100u + r->rid) {
    case 100: i = 1; break;
    case 101: i = d->lifetime_s ? d->lifetime_s : g->lifetime_s; break;
    case 102: i = 10; break;
    case 103: i = 300; break;
    case 106: v->b = false; return true;
    case 107: s = g->queue_mode && g->lwm2m_minor == 0 ? "UQ" : "U"; break;
    case 300: s = "lwm2md-fleet"; break;
    case 301: s = (g->objects & FLEET_OBJ_METER) ? "SIM-METER-1P" : "SIM-DEVICE"; break;
    case 302:
        if (dev_endpoint(d, sbuf, cap) < 0)
            return false;
        s = sbuf;
        break;
    case 303:
        snprintf(sbuf, cap, "1.0.%u", d->fw_gen);
        s = sbuf;
        break;
    case 306: i = 6; break; /* AC power */
    case 309: i = 100; break;
    case 310: i = 512 - (int64_t)(fleet_hash(d->idx, 10) % 64); break;
    case 311: i = 0; break;
    case 313: i = (int64_t)(E->wall0 + (double)(now - E->t0) / 1000.0); break;
    case 316: s = g->queue_mode ? "UQ" : "U"; break;
    case 317: s = "smart meter"; break;
    case 319: s = "fleet-sim " LW_VERSION; break;
    case 320: i = 5; break; /* not installed (mains powered) */
    case 400: i = 7; break; /* NB-IoT */
    case 401: i = 7; break;
    case 402:
        i = -75 - (int64_t)(fleet_hash(d->idx, 2) % 30) +
            (int64_t)(3 * noise(d->idx, 402, (now - E->t0) / 15000));
        break;
    case 403: i = 60 + (int64_t)(fleet_hash(d->idx, 3) % 40); break;
    case 404: {
        struct in_addr a = {net_dev_addr(E, d->idx)};
        inet_ntop(AF_INET, &a, sbuf, (socklen_t)cap);
        s = sbuf;
        break;
    }
    case 408: i = 10000 + (int64_t)(d->idx % 5000); break;
    case 501: s = d->x ? d->x->fw_uri : ""; break;
    case 503: i = d->fw_state; break;
    case 505: i = d->fw_result; break;
    case 506: s = "meter-fw"; break;
    case 507:
        snprintf(sbuf, cap, "1.0.%u", d->fw_gen + (d->fw_state >= FW_DOWNLOADED ? 1 : 0));
        s = sbuf;
        break;
    case 508: i = 0; break; /* CoAP */
    case 509: i = 2; break; /* pull and push */
    default:
        if (r->obj != 10243)
            return false;
        meter_read(d, now, &m);
        switch (r->rid) {
        case 0: s = "lwm2md-fleet"; break;
        case 1: s = "SIM-METER-1P"; break;
        case 2:
            snprintf(sbuf, cap, "SN%08u", d->idx);
            s = sbuf;
            break;
        case 4: f = m.v; break;
        case 5: f = m.i; break;
        case 6: f = m.p; break;
        case 7: f = m.q; break;
        case 10: f = m.s; break;
        case 11: f = m.pf; break;
        case 14: f = m.e_kwh; break;
        case 15: f = m.eq_kvarh; break;
        case 17: f = m.hz; break;
        default: return false;
        }
    }
    switch (v->type) {
    case LW_M2M_T_STRING: v->bytes = LW_BYTES_STR(s ? s : ""); break;
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME: v->i = i; break;
    case LW_M2M_T_FLOAT: v->f = round3(f); break;
    default: return false;
    }
    return true;
}

/* Collects the readable resources within `p` (instance 0 only). */
struct recset {
    struct lw_m2m_record r[MAX_RECS];
    size_t n;
    char strs[MAX_RECS][64];
};

static const uint8_t *app_big(void)
{
    static uint8_t big[APP_BIG_LEN];
    static bool done;
    if (!done) {
        for (size_t i = 0; i < sizeof(big); i++)
            big[i] = (uint8_t)((i * 7) ^ (i >> 8));
        done = true;
    }
    return big;
}

void model_free_extra(struct dev_extra *x)
{
    while (x->apps) {
        struct app_inst *a = x->apps;
        x->apps = a->next;
        free(a);
    }
}

static struct app_inst *app_find(const struct fleet_dev *d, uint16_t iid)
{
    for (struct app_inst *a = d->x ? d->x->apps : NULL; a; a = a->next)
        if (a->iid == iid)
            return a;
    return NULL;
}

static int app_add(struct recset *rs, const struct lw_m2m_record *src)
{
    if (rs->n == MAX_RECS)
        return LW_ENOSPC;
    rs->r[rs->n++] = *src;
    return 0;
}

/* Collects the values of object 19 within p (p->id[0] == 19). */
static int app_collect(struct fleet_dev *d, const struct lw_m2m_path *p, struct recset *rs)
{
    if (!has_object(d, APP_OBJ))
        return LW_ENOENT;
    if (p->len >= 3 && app_type(p->id[2]) == LW_M2M_T_NONE)
        return LW_ENOENT;
    size_t before = rs->n;
    int rc = 0;
    if (p->len < 2 || p->id[1] == 0) {
        struct lw_m2m_record fixed[3];
        memset(fixed, 0, sizeof(fixed));
        fixed[0].path = LW_M2M_PATH4(APP_OBJ, 0, 0, 0);
        fixed[0].value.type = LW_M2M_T_OPAQUE;
        fixed[0].value.bytes = LW_BYTES(app_big(), APP_BIG_LEN);
        fixed[1].path = LW_M2M_PATH3(APP_OBJ, 0, 3);
        fixed[1].value.type = LW_M2M_T_STRING;
        fixed[1].value.bytes = LW_BYTES_STR("fleet test pattern");
        fixed[2].path = LW_M2M_PATH3(APP_OBJ, 0, 4);
        fixed[2].value.type = LW_M2M_T_STRING;
        fixed[2].value.bytes = LW_BYTES_STR("application/octet-stream");
        for (size_t i = 0; i < LW_ARRAY_SIZE(fixed) && rc == 0; i++) {
            fixed[i].has_value = true;
            if (lw_m2m_path_within(&fixed[i].path, p))
                rc = app_add(rs, &fixed[i]);
        }
    }
    for (struct app_inst *a = d->x ? d->x->apps : NULL; a && rc == 0; a = a->next) {
        if (p->len >= 2 && p->id[1] != a->iid)
            continue;
        for (size_t i = 0; i < a->n && rc == 0; i++)
            if (lw_m2m_path_within(&a->rec[i].path, p))
                rc = app_add(rs, &a->rec[i]);
    }
    if (rc)
        return rc;
    if (p->len >= 2 && rs->n == before && (p->id[1] != 0 || p->len >= 3) &&
        !(p->len == 2 && app_find(d, p->id[1])))
        return LW_ENOENT;
    return 0;
}

static int cmp_rec(const void *a, const void *b)
{
    return lw_m2m_path_cmp(&((const struct lw_m2m_record *)a)->path,
                           &((const struct lw_m2m_record *)b)->path);
}

/* Builds a new instance from the decoded Create body. 0, or the CoAP code to answer. */
static uint8_t app_create(struct fleet_dev *d, const struct lw_m2m_records *recs, uint16_t *iid_out)
{
    int iid = -1;
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < recs->n; i++) {
        const struct lw_m2m_record *r = &recs->v[i];
        if (r->path.len >= 2) {
            if (iid >= 0 && iid != r->path.id[1])
                return LW_COAP_BAD_REQUEST; /* one instance per Create */
            iid = r->path.id[1];
        }
        if (!r->has_value)
            continue;
        if (r->path.len < 3 || r->path.id[0] != APP_OBJ)
            return LW_COAP_BAD_REQUEST;
        enum lw_m2m_type t = app_type(r->path.id[2]);
        if (t == LW_M2M_T_NONE)
            return LW_COAP_NOT_FOUND;
        if (r->value.type != t || (r->path.id[2] == 0) != (r->path.len == 4))
            return LW_COAP_BAD_REQUEST;
        if (t == LW_M2M_T_OPAQUE || t == LW_M2M_T_STRING)
            bytes += r->value.bytes.len;
        n++;
    }
    if (iid == 0xffff || n > APP_MAX_RECS || bytes > APP_MAX_BYTES)
        return LW_COAP_BAD_REQUEST;
    size_t count = 0;
    struct app_inst **pos;
    if (iid < 0) { /* the device picks: the lowest free id */
        iid = 1;
        for (struct app_inst *a = d->x ? d->x->apps : NULL; a && a->iid == iid; a = a->next)
            iid++;
    }
    if (iid == 0 || app_find(d, (uint16_t)iid))
        return LW_COAP_BAD_REQUEST; /* the instance exists */
    struct dev_extra *x = dev_extra(d);
    if (!x)
        return LW_COAP_INTERNAL_ERROR;
    for (struct app_inst *a = x->apps; a; a = a->next)
        count++;
    if (count >= APP_MAX_INST)
        return LW_COAP_INTERNAL_ERROR; /* no room for another instance */
    struct app_inst *in = malloc(sizeof(*in) + n * sizeof(in->rec[0]) + bytes);
    if (!in)
        return LW_COAP_INTERNAL_ERROR;
    in->iid = (uint16_t)iid;
    in->n = 0;
    uint8_t *store = (uint8_t *)&in->rec[n];
    for (size_t i = 0; i < recs->n; i++) {
        const struct lw_m2m_record *r = &recs->v[i];
        if (!r->has_value)
            continue;
        struct lw_m2m_record *c = &in->rec[in->n++];
        *c = *r;
        c->has_time = false;
        if (c->value.type == LW_M2M_T_OPAQUE || c->value.type == LW_M2M_T_STRING) {
            if (r->value.bytes.len)
                memcpy(store, r->value.bytes.ptr, r->value.bytes.len);
            c->value.bytes = LW_BYTES(store, r->value.bytes.len);
            store += r->value.bytes.len;
        }
    }
    qsort(in->rec, in->n, sizeof(in->rec[0]), cmp_rec);
    for (size_t i = 1; i < in->n; i++) {
        if (lw_m2m_path_eq(&in->rec[i].path, &in->rec[i - 1].path)) {
            free(in);
            return LW_COAP_BAD_REQUEST; /* a resource given twice */
        }
    }
    for (pos = &x->apps; *pos && (*pos)->iid < in->iid; pos = &(*pos)->next)
        ;
    in->next = *pos;
    *pos = in;
    *iid_out = in->iid;
    return 0;
}

static int collect(struct fleet_dev *d, const struct lw_m2m_path *p, uint64_t now,
                   struct recset *rs)
{
    if (p->len >= 1 && p->id[0] == APP_OBJ)
        return app_collect(d, p, rs);
    if (p->len >= 1 && !has_object(d, p->id[0]))
        return LW_ENOENT;
    if (p->len >= 2 && p->id[1] != 0)
        return LW_ENOENT;
    if (p->len >= 3) {
        const struct res_def *r = find_res(p->id[0], p->id[2]);
        if (!r)
            return LW_ENOENT;
        if (!(r->ops & OP_R))
            return LW_EPERM;
        if (p->len == 4 && (!r->multi || p->id[3] != 0))
            return LW_ENOENT;
    }
    size_t before = rs->n;
    for (size_t i = 0; i < LW_ARRAY_SIZE(RES); i++) {
        const struct res_def *r = &RES[i];
        if (!(r->ops & OP_R) || !has_object(d, r->obj))
            continue;
        struct lw_m2m_path rp =
            r->multi ? LW_M2M_PATH4(r->obj, 0, r->rid, 0) : LW_M2M_PATH3(r->obj, 0, r->rid);
        if (!lw_m2m_path_within(&rp, p))
            continue;
        if (rs->n == MAX_RECS)
            return LW_ENOSPC;
        struct lw_m2m_record *rec = &rs->r[rs->n];
        memset(rec, 0, sizeof(*rec));
        if (!get_value(d, r, now, &rec->value, rs->strs[rs->n], sizeof(rs->strs[0])))
            continue;
        rec->path = rp;
        rec->has_value = true;
        rs->n++;
    }
    return rs->n > before || p->len < 3 ? 0 : LW_ENOENT;
}

/* ---- responses --------------------------------------------------------------------------- */

static uint8_t out_mem[LW_COAP_MAX_DGRAM + 8192];

static void respond(struct fleet_dev *d, const struct lw_coap_msg *req, struct lw_coap_msg *resp,
                    uint64_t now)
{
    struct lw_coap_req_ref ref = lw_coap_req_ref_of(req);
    lw_coap_ep_respond(&d->ep, &ref, resp, now);
}

static void respond_code(struct fleet_dev *d, const struct lw_coap_msg *req, uint8_t code,
                         uint64_t now)
{
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, code);
    respond(d, req, &r, now);
}

static uint8_t err_code(int rc)
{
    switch (rc) {
    case LW_ENOENT: return LW_COAP_NOT_FOUND;
    case LW_EPERM: return LW_COAP_METHOD_NOT_ALLOWED;
    case LW_ENOTSUP: return LW_COAP_NOT_ACCEPTABLE;
    case LW_EINVAL:
    case LW_EMALFORMED:
    case LW_ETYPE: return LW_COAP_BAD_REQUEST;
    default: return LW_COAP_INTERNAL_ERROR;
    }
}

/* Picks the response format: Accept when given (4.06 if unusable), else a default for the
 * device's version and the shape of the data. */
static int pick_format(const struct fleet_dev *d, const struct lw_coap_msg *req,
                       const struct lw_m2m_path *p, const struct lw_m2m_record *recs, size_t nrecs,
                       bool composite, uint16_t *cf)
{
    /* Single-value formats carry exactly one value at the request path itself. */
    bool one = nrecs == 1 && lw_m2m_path_eq(&recs[0].path, p);
    uint32_t acc;
    const struct fleet_group *g = dev_group(d);
    if (lw_coap_get_uint(req, LW_COAP_OPT_ACCEPT, &acc) == 0) {
        if (!lw_m2m_cf_supported((uint16_t)acc))
            return LW_ENOTSUP;
        bool single = acc == LW_M2M_CF_TEXT || acc == LW_M2M_CF_OPAQUE || acc == LW_M2M_CF_CBOR;
        if (single && (!one || composite))
            return LW_ENOTSUP;
        if (composite && (acc == LW_M2M_CF_TLV || acc == LW_M2M_CF_JSON))
            return LW_ENOTSUP;
        *cf = (uint16_t)acc;
        return 0;
    }
    if (composite)
        *cf = g->send_format == LW_M2M_CF_SENML_JSON ? LW_M2M_CF_SENML_JSON : LW_M2M_CF_SENML_CBOR;
    else if (one && recs[0].value.type == LW_M2M_T_OPAQUE)
        *cf = LW_M2M_CF_OPAQUE;
    else if (one)
        *cf = LW_M2M_CF_TEXT;
    else
        *cf = g->lwm2m_minor == 0 ? LW_M2M_CF_TLV : g->send_format;
    return 0;
}

static uint64_t payload_hash(struct lw_bytes b)
{
    static const uint8_t key[16] = {1, 2, 3};
    return lw_siphash(key, b.ptr, b.len);
}

/* Encodes the current values of an observation's paths. */
static int encode_paths(struct fleet_dev *d, const struct lw_m2m_path *paths, size_t npaths,
                        bool composite, uint16_t cf, uint64_t now, struct lw_buf *b, double *num,
                        bool *has_num)
{
    static struct recset rs;
    rs.n = 0;
    for (size_t i = 0; i < npaths; i++) {
        int rc = collect(d, &paths[i], now, &rs);
        if (rc && !composite)
            return rc;
    }
    *has_num = false;
    for (size_t i = 0; i < rs.n && num; i++) {
        if (rs.r[i].value.type == LW_M2M_T_FLOAT) {
            *num = rs.r[i].value.f;
            *has_num = true;
            break;
        }
        if (rs.r[i].value.type == LW_M2M_T_INTEGER) {
            *num = (double)rs.r[i].value.i;
            *has_num = true;
            break;
        }
    }
    const struct lw_m2m_path root = LW_M2M_PATH_ROOT;
    return lw_m2m_encode(cf, composite ? &root : &paths[0], rs.r, rs.n, b);
}

/* ---- attributes -------------------------------------------------------------------------- */

/* Effective attributes for path p: object, then instance, then resource level override. */
static void effective_attrs(const struct fleet_dev *d, const struct lw_m2m_path *p,
                            struct dev_attr *out)
{
    memset(out, 0, sizeof(*out));
    out->pmin = 10;  /* /1/0/2 */
    out->pmax = 300; /* /1/0/3 */
    if (!d->x)
        return;
    for (uint8_t lvl = 1; lvl <= p->len && lvl <= 4; lvl++) {
        for (uint8_t i = 0; i < d->x->nattrs; i++) {
            const struct dev_attr *a = &d->x->attrs[i];
            if (a->path.len != lvl || !lw_m2m_path_within(p, &a->path))
                continue;
            if (a->has & ATTR_PMIN)
                out->pmin = a->pmin;
            if (a->has & ATTR_PMAX)
                out->pmax = a->pmax;
            if (a->has & ATTR_GT)
                out->gt = a->gt;
            if (a->has & ATTR_LT)
                out->lt = a->lt;
            if (a->has & ATTR_ST)
                out->st = a->st;
            out->has |= a->has;
        }
    }
}

static int write_attrs(struct fleet_dev *d, const struct lw_coap_msg *req,
                       const struct lw_m2m_path *p)
{
    struct dev_extra *x = dev_extra(d);
    if (!x)
        return LW_ENOMEM;
    struct dev_attr na = {.path = *p};
    uint8_t clear = 0;
    size_t pos = 0;
    const struct lw_coap_opt *o;
    while ((o = lw_coap_next_opt(req, LW_COAP_OPT_URI_QUERY, &pos)) != NULL) {
        char q[64];
        if (o->len >= sizeof(q))
            return LW_EINVAL;
        memcpy(q, lw_coap_opt_data(o), o->len);
        q[o->len] = 0;
        char *eq = strchr(q, '=');
        if (eq)
            *eq++ = 0;
        uint8_t bit;
        if (strcmp(q, "pmin") == 0)
            bit = ATTR_PMIN;
        else if (strcmp(q, "pmax") == 0)
            bit = ATTR_PMAX;
        else if (strcmp(q, "gt") == 0)
            bit = ATTR_GT;
        else if (strcmp(q, "lt") == 0)
            bit = ATTR_LT;
        else if (strcmp(q, "st") == 0)
            bit = ATTR_ST;
        else if (strcmp(q, "epmin") == 0 || strcmp(q, "epmax") == 0 || strcmp(q, "con") == 0 ||
                 strcmp(q, "edge") == 0 || strcmp(q, "hqmax") == 0)
            continue; /* accepted, not simulated */
        else
            return LW_EINVAL;
        if ((bit & (ATTR_GT | ATTR_LT | ATTR_ST)) && p->len < 3)
            return LW_EINVAL; /* resource-level attributes only */
        if (!eq) {
            clear |= bit;
            continue;
        }
        char *end;
        double v = strtod(eq, &end);
        if (*eq == 0 || *end || !isfinite(v))
            return LW_EINVAL;
        if (bit == ATTR_PMIN || bit == ATTR_PMAX) {
            if (v < 0 || v > 1e9 || v != floor(v))
                return LW_EINVAL;
            *(bit == ATTR_PMIN ? &na.pmin : &na.pmax) = (uint32_t)v;
        } else if (bit == ATTR_GT) {
            na.gt = v;
        } else if (bit == ATTR_LT) {
            na.lt = v;
        } else {
            if (v < 0)
                return LW_EINVAL;
            na.st = v;
        }
        na.has |= bit;
    }
    struct dev_attr *slot = NULL;
    for (uint8_t i = 0; i < x->nattrs; i++)
        if (lw_m2m_path_eq(&x->attrs[i].path, p))
            slot = &x->attrs[i];
    if (!slot) {
        if (x->nattrs == DEV_MAX_ATTRS)
            return LW_ENOSPC;
        slot = &x->attrs[x->nattrs++];
        *slot = (struct dev_attr){.path = *p};
    }
    /* Repeated Write-Attributes merge per attribute. */
    slot->has &= (uint8_t)~clear;
    if (na.has & ATTR_PMIN)
        slot->pmin = na.pmin;
    if (na.has & ATTR_PMAX)
        slot->pmax = na.pmax;
    if (na.has & ATTR_GT)
        slot->gt = na.gt;
    if (na.has & ATTR_LT)
        slot->lt = na.lt;
    if (na.has & ATTR_ST)
        slot->st = na.st;
    slot->has |= na.has;
    return 0;
}

/* ---- observations ------------------------------------------------------------------------ */

static void obs_arm(struct fleet_dev *d, uint64_t now)
{
    struct dev_extra *x = d->x;
    uint64_t next = 0;
    for (int i = 0; i < DEV_MAX_OBS; i++) {
        struct dev_obs *o = &x->obs[i];
        if (!o->active)
            continue;
        struct dev_attr a;
        effective_attrs(d, &o->paths[0], &a);
        uint64_t t = o->last_ms + LW_MAX(a.pmin, 1u) * 1000ull;
        if (t < now + 1000)
            t = now + 1000; /* evaluate at most once a second */
        if (!next || t < next)
            next = t;
    }
    x->next_obs = next;
}

static void notify(struct fleet_dev *d, struct dev_obs *o, struct lw_bytes payload, uint64_t now)
{
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, LW_COAP_CONTENT);
    o->seq = (o->seq + 1) & 0xffffff;
    lw_coap_add_uint(&r, LW_COAP_OPT_OBSERVE, o->seq);
    lw_coap_add_uint(&r, LW_COAP_OPT_CONTENT_FORMAT, o->cf);
    r.payload = payload;
    /* NON notifications (RFC 7641 §4.5 allows NON; the simulator does not send the daily CON).
     * The reference gets a fresh MID so the exchange layer does not take it for the already
     * answered registration request. */
    struct lw_coap_req_ref ref = o->ref;
    ref.type = LW_COAP_NON;
    ref.mid = (uint16_t)(ref.mid ^ 0x8000);
    uint64_t t0 = fleet_now_us();
    int rc = lw_coap_ep_respond(&d->ep, &ref, &r, now);
    stats_op(OP_NOTIFY, t0, rc == 0, 0, R_SEND_ERRNO);
    o->last_ms = now;
}

void model_eval_obs(struct fleet_dev *d, uint64_t now)
{
    struct dev_extra *x = d->x;
    if (!x)
        return;
    for (int i = 0; i < DEV_MAX_OBS; i++) {
        struct dev_obs *o = &x->obs[i];
        if (!o->active)
            continue;
        struct dev_attr a;
        effective_attrs(d, &o->paths[0], &a);
        if (now < o->last_ms + a.pmin * 1000ull)
            continue;
        struct lw_buf b;
        lw_buf_init_fixed(&b, out_mem, sizeof(out_mem));
        double num = 0;
        bool has_num = false;
        if (encode_paths(d, o->paths, o->npaths, o->composite, o->cf, now, &b, &num, &has_num) ||
            b.len > LW_COAP_MAX_DGRAM - 64)
            continue;
        uint64_t h = payload_hash(lw_buf_bytes(&b));
        bool pmax_due = a.pmax > a.pmin && now >= o->last_ms + a.pmax * 1000ull;
        bool fire;
        if (has_num && (a.has & (ATTR_GT | ATTR_LT | ATTR_ST)) && o->has_num) {
            double prev = o->last_num;
            fire = false;
            if ((a.has & ATTR_GT) && ((prev <= a.gt) != (num <= a.gt)))
                fire = true;
            if ((a.has & ATTR_LT) && ((prev < a.lt) != (num < a.lt)))
                fire = true;
            if ((a.has & ATTR_ST) && fabs(num - prev) >= a.st)
                fire = true;
        } else {
            fire = h != o->last_hash;
        }
        if (fire || pmax_due) {
            notify(d, o, lw_buf_bytes(&b), now);
            o->last_hash = h;
            o->last_num = num;
            o->has_num = has_num;
        }
    }
    obs_arm(d, now);
}

static struct dev_obs *obs_find(struct fleet_dev *d, const struct lw_coap_msg *req)
{
    if (!d->x)
        return NULL;
    for (int i = 0; i < DEV_MAX_OBS; i++) {
        struct dev_obs *o = &d->x->obs[i];
        if (o->active && o->ref.tkl == req->tkl && memcmp(o->ref.token, req->token, req->tkl) == 0)
            return o;
    }
    return NULL;
}

static void obs_drop(struct dev_obs *o)
{
    if (o->active && E->st.observations)
        E->st.observations--;
    o->active = false;
}

/* ---- read / observe / composite ---------------------------------------------------------- */

static void do_read(struct fleet_dev *d, const struct lw_coap_msg *req,
                    const struct lw_m2m_path *paths, size_t npaths, bool composite, uint64_t now,
                    enum fleet_op op)
{
    uint64_t t0 = fleet_now_us();
    uint32_t obsv = 2;
    bool has_obs = lw_coap_get_uint(req, LW_COAP_OPT_OBSERVE, &obsv) == 0;
    if (has_obs && obsv == 1) {
        struct dev_obs *o = obs_find(d, req);
        if (o)
            obs_drop(o);
        op = OP_OBSERVE_CANCEL;
    } else if (has_obs && obsv == 0) {
        op = OP_OBSERVE;
    }
    static struct recset rs;
    rs.n = 0;
    for (size_t i = 0; i < npaths; i++) {
        int rc = collect(d, &paths[i], now, &rs);
        if (rc && !composite) {
            respond_code(d, req, err_code(rc), now);
            stats_op(op, t0, false, err_code(rc), 0);
            return;
        }
    }
    uint16_t cf;
    const struct lw_m2m_path root = LW_M2M_PATH_ROOT;
    int rc = pick_format(d, req, &paths[0], rs.r, rs.n, composite, &cf);
    struct lw_buf b;
    lw_buf_init_fixed(&b, out_mem, sizeof(out_mem));
    if (rc == 0)
        rc = lw_m2m_encode(cf, composite ? &root : &paths[0], rs.r, rs.n, &b);
    if (rc) {
        respond_code(d, req, err_code(rc), now);
        stats_op(op, t0, false, err_code(rc), 0);
        return;
    }
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, LW_COAP_CONTENT);
    lw_coap_add_uint(&r, LW_COAP_OPT_CONTENT_FORMAT, cf);
    struct dev_obs *o = NULL;
    if (op == OP_OBSERVE) {
        struct dev_extra *x = dev_extra(d);
        o = obs_find(d, req); /* re-registration with the same token refreshes it */
        for (int i = 0; x && !o && i < DEV_MAX_OBS; i++)
            if (!x->obs[i].active)
                o = &x->obs[i];
        if (o) {
            if (!o->active)
                E->st.observations++;
            memset(o, 0, sizeof(*o));
            o->active = true;
            o->ref = lw_coap_req_ref_of(req);
            o->composite = composite;
            o->npaths = (uint8_t)LW_MIN(npaths, (size_t)OBS_MAX_PATHS);
            memcpy(o->paths, paths, o->npaths * sizeof(paths[0]));
            o->cf = cf;
            o->last_ms = now;
            o->last_hash = payload_hash(lw_buf_bytes(&b));
            for (size_t i = 0; i < rs.n; i++) {
                if (rs.r[i].value.type == LW_M2M_T_FLOAT ||
                    rs.r[i].value.type == LW_M2M_T_INTEGER) {
                    o->last_num = rs.r[i].value.type == LW_M2M_T_FLOAT ? rs.r[i].value.f
                                                                       : (double)rs.r[i].value.i;
                    o->has_num = true;
                    break;
                }
            }
            lw_coap_add_uint(&r, LW_COAP_OPT_OBSERVE, 0);
            obs_arm(d, now);
        }
        /* No free slot: served as a plain Read (no Observe option), which tells the server
         * the observation was not established (RFC 7641 §3.2). */
    }
    if (b.len > 1024 || lw_coap_find_opt(req, LW_COAP_OPT_BLOCK2)) {
        /* Big bodies go out block-wise (RFC 7959 §2.4). Every block request re-reads the values,
         * so the ETag (a hash of the body) lets the server notice readings that moved between
         * blocks. */
        uint64_t h = payload_hash(lw_buf_bytes(&b));
        uint8_t etag[8];
        memcpy(etag, &h, sizeof(etag));
        struct lw_coap_msg blk;
        lw_coap_msg_init(&blk, 0, 0);
        if (lw_coap_block2_serve(req, lw_buf_bytes(&b), LW_BYTES(etag, sizeof(etag)), 6, &blk) ==
            0) {
            lw_coap_add_uint(&blk, LW_COAP_OPT_CONTENT_FORMAT, cf);
            if (o && lw_coap_find_opt(&r, LW_COAP_OPT_OBSERVE))
                lw_coap_add_uint(&blk, LW_COAP_OPT_OBSERVE, 0);
            respond(d, req, &blk, now);
            stats_op(op, t0, true, 0, 0);
            return;
        }
    }
    r.payload = lw_buf_bytes(&b);
    respond(d, req, &r, now);
    stats_op(op, t0, true, 0, 0);
}

/* Discover within object 19: the instances and resources that hold values, dim for Data. */
static void app_discover(struct fleet_dev *d, const struct lw_coap_msg *req,
                         const struct lw_m2m_path *p, uint64_t now, uint64_t t0)
{
    static struct recset rs;
    rs.n = 0;
    int rc = p->len > 3 ? LW_ENOENT : app_collect(d, p, &rs);
    struct lw_buf b;
    lw_buf_init_fixed(&b, out_mem, sizeof(out_mem));
    if (rc == 0 && p->len == 1) {
        struct lw_m2m_path op = LW_M2M_PATH1(APP_OBJ);
        lw_m2m_link_write_path(&b, NULL, &op, NULL, 0);
    }
    int last_iid = -1;
    for (size_t i = 0; rc == 0 && i < rs.n;) {
        const struct lw_m2m_path *rp = &rs.r[i].path;
        if (p->len <= 2 && rp->id[1] != last_iid) {
            struct lw_m2m_path ip = LW_M2M_PATH2(APP_OBJ, rp->id[1]);
            lw_m2m_link_write_path(&b, NULL, &ip, NULL, 0);
            last_iid = rp->id[1];
        }
        size_t j = i + 1;
        while (j < rs.n && rs.r[j].path.id[1] == rp->id[1] && rs.r[j].path.id[2] == rp->id[2])
            j++;
        char dim[16];
        const char *params[1] = {dim};
        snprintf(dim, sizeof(dim), "dim=%zu", j - i);
        struct lw_m2m_path res = LW_M2M_PATH3(APP_OBJ, rp->id[1], rp->id[2]);
        lw_m2m_link_write_path(&b, NULL, &res, params, rp->len == 4 ? 1 : 0);
        i = j;
    }
    uint8_t code = rc ? err_code(rc) : lw_buf_status(&b) ? LW_COAP_INTERNAL_ERROR : LW_COAP_CONTENT;
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, code);
    if (code == LW_COAP_CONTENT) {
        lw_coap_add_uint(&r, LW_COAP_OPT_CONTENT_FORMAT, 40);
        r.payload = lw_buf_bytes(&b);
    }
    respond(d, req, &r, now);
    stats_op(OP_DISCOVER, t0, code == LW_COAP_CONTENT, code, 0);
}

static void do_discover(struct fleet_dev *d, const struct lw_coap_msg *req,
                        const struct lw_m2m_path *p, uint64_t now)
{
    uint64_t t0 = fleet_now_us();
    if (p->len >= 1 && p->id[0] == APP_OBJ && has_object(d, APP_OBJ)) {
        app_discover(d, req, p, now, t0);
        return;
    }
    if (p->len == 0 || p->len > 3 || !has_object(d, p->id[0]) || (p->len >= 2 && p->id[1])) {
        respond_code(d, req, p->len == 0 ? LW_COAP_BAD_REQUEST : LW_COAP_NOT_FOUND, now);
        stats_op(OP_DISCOVER, t0, false, LW_COAP_NOT_FOUND, 0);
        return;
    }
    struct lw_buf b;
    lw_buf_init_fixed(&b, out_mem, sizeof(out_mem));
    char pbuf[5][24];
    const char *params[5];
    size_t np;
    uint16_t obj = p->id[0];
    if (p->len == 1) {
        struct lw_m2m_path op = LW_M2M_PATH1(obj);
        np = 0;
        if (obj_ver(d, obj))
            params[np++] = obj_ver(d, obj);
        lw_m2m_link_write_path(&b, NULL, &op, params, np);
    }
    if (p->len <= 2) {
        struct lw_m2m_path ip = LW_M2M_PATH2(obj, 0);
        lw_m2m_link_write_path(&b, NULL, &ip, NULL, 0);
    }
    bool found = false;
    for (size_t i = 0; i < LW_ARRAY_SIZE(RES); i++) {
        const struct res_def *r = &RES[i];
        if (r->obj != obj || (p->len == 3 && r->rid != p->id[2]))
            continue;
        found = true;
        struct lw_m2m_path rp = LW_M2M_PATH3(obj, 0, r->rid);
        np = 0;
        if (r->multi)
            params[np++] = "dim=1";
        if (p->len == 3) {
            /* Resource-level Discover reports the attributes in effect (LwM2M 1.1). */
            struct dev_attr a;
            effective_attrs(d, &rp, &a);
            if (a.has & ATTR_PMIN) {
                snprintf(pbuf[0], sizeof(pbuf[0]), "pmin=%u", a.pmin);
                params[np++] = pbuf[0];
            }
            if (a.has & ATTR_PMAX) {
                snprintf(pbuf[1], sizeof(pbuf[1]), "pmax=%u", a.pmax);
                params[np++] = pbuf[1];
            }
            if (a.has & ATTR_GT) {
                snprintf(pbuf[2], sizeof(pbuf[2]), "gt=%g", a.gt);
                params[np++] = pbuf[2];
            }
            if ((a.has & ATTR_LT) && np < 5) {
                snprintf(pbuf[3], sizeof(pbuf[3]), "lt=%g", a.lt);
                params[np++] = pbuf[3];
            }
            if ((a.has & ATTR_ST) && np < 5) {
                snprintf(pbuf[4], sizeof(pbuf[4]), "st=%g", a.st);
                params[np++] = pbuf[4];
            }
        }
        lw_m2m_link_write_path(&b, NULL, &rp, params, np);
    }
    if (!found || lw_buf_status(&b)) {
        respond_code(d, req, found ? LW_COAP_INTERNAL_ERROR : LW_COAP_NOT_FOUND, now);
        stats_op(OP_DISCOVER, t0, false, LW_COAP_NOT_FOUND, 0);
        return;
    }
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, LW_COAP_CONTENT);
    lw_coap_add_uint(&r, LW_COAP_OPT_CONTENT_FORMAT, 40);
    r.payload = lw_buf_bytes(&b);
    respond(d, req, &r, now);
    stats_op(OP_DISCOVER, t0, true, 0, 0);
}

/* ---- writes ------------------------------------------------------------------------------ */

static void fw_reset(struct fleet_dev *d)
{
    d->fw_state = FW_IDLE;
    d->fw_result = 0;
    if (d->x) {
        d->x->fw_uri[0] = 0;
        d->x->fw_due = 0;
    }
}

/* Applies one decoded record. 0 or an LW_E* code (mapped with err_code). */
static int write_one(struct fleet_dev *d, const struct lw_m2m_record *rec, uint64_t now)
{
    const struct lw_m2m_path *p = &rec->path;
    if (p->len < 3 || !has_object(d, p->id[0]) || p->id[1] != 0)
        return LW_ENOENT;
    const struct res_def *r = find_res(p->id[0], p->id[2]);
    if (!r)
        return LW_ENOENT;
    if (!(r->ops & OP_W))
        return LW_EPERM;
    if (!rec->has_value)
        return LW_EINVAL;
    const struct lw_m2m_value *v = &rec->value;
    switch (r->obj * 100u + r->rid) {
    case 101:
        if (v->type != LW_M2M_T_INTEGER || v->i < 1 || v->i > 0x7fffffff)
            return LW_EINVAL;
        if ((uint32_t)v->i != (d->lifetime_s ? d->lifetime_s : dev_group(d)->lifetime_s)) {
            d->lifetime_s = (uint32_t)v->i;
            dev_trigger_update(d); /* the new lifetime goes to the server in an Update */
        }
        return 0;
    case 501: {
        if (v->type != LW_M2M_T_STRING && v->type != LW_M2M_T_OPAQUE)
            return LW_EINVAL;
        if (v->bytes.len == 0) {
            fw_reset(d);
            return 0;
        }
        struct dev_extra *x = dev_extra(d);
        if (!x)
            return LW_ENOMEM;
        if (d->fw_state != FW_IDLE || v->bytes.len >= sizeof(x->fw_uri))
            return LW_EINVAL;
        memcpy(x->fw_uri, v->bytes.ptr, v->bytes.len);
        x->fw_uri[v->bytes.len] = 0;
        d->fw_result = 0;
        int rc = dev_fw_fetch(d, x->fw_uri, now);
        if (rc) {
            d->fw_state = FW_IDLE;
            d->fw_result = rc == LW_ENOTSUP ? 9 : 7; /* unsupported protocol / invalid URI */
        } else {
            d->fw_state = FW_DOWNLOADING;
            x->fw_start = fleet_now_us();
        }
        return 0;
    }
    case 500:
        if (v->type != LW_M2M_T_OPAQUE && v->type != LW_M2M_T_STRING)
            return LW_EINVAL;
        if (v->bytes.len == 1 && v->bytes.ptr[0] == 0) {
            fw_reset(d);
            return 0;
        }
        if (d->fw_state == FW_UPDATING)
            return LW_EINVAL;
        d->fw_result = 0;
        if (fleet_rand01() < dev_group(d)->fw_download_fail) {
            d->fw_state = FW_IDLE;
            d->fw_result = 5; /* integrity check failure */
        } else {
            d->fw_state = FW_DOWNLOADED;
        }
        return 0;
    default: return 0; /* accepted and forgotten: /1/0/2,3,6,7, /3/0/13 */
    }
}

static void do_write(struct fleet_dev *d, const struct lw_coap_msg *req,
                     const struct lw_m2m_path *p, bool composite, uint64_t now)
{
    enum fleet_op op = composite ? OP_WRITE_COMPOSITE : OP_WRITE;
    uint64_t t0 = fleet_now_us();
    uint32_t cf = 0xffff;
    struct lw_bytes body = req->payload;
    uint8_t code = LW_COAP_CHANGED;
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, LW_COAP_CHANGED);
    bool block1 = lw_coap_find_opt(req, LW_COAP_OPT_BLOCK1) != NULL;
    if (block1) {
        /* Firmware push: atomic Block1 (RFC 7959 §2.5) into /5/0/0 only. */
        if (composite || p->len != 3 || p->id[0] != 5 || p->id[2] != 0 || !has_object(d, 5)) {
            respond_code(d, req, LW_COAP_REQUEST_TOO_LARGE, now);
            stats_op(op, t0, false, LW_COAP_REQUEST_TOO_LARGE, 0);
            return;
        }
        struct dev_extra *x = dev_extra(d);
        if (!x) {
            respond_code(d, req, LW_COAP_INTERNAL_ERROR, now);
            return;
        }
        if (!x->b1_init) {
            lw_coap_b1rx_init(&x->b1, dev_group(d)->fw_max_bytes, 6, 0);
            x->b1_init = true;
        }
        int rc = lw_coap_b1rx_feed(&x->b1, req, now, &r, &body);
        if (rc != 0) {
            if (rc == LW_EAGAIN && d->fw_state == FW_IDLE) {
                d->fw_state = FW_DOWNLOADING;
                d->fw_result = 0;
            }
            respond(d, req, &r, now);
            if (rc == LW_EAGAIN)
                return; /* counted once, on the final block */
            stats_op(OP_FW_PUSH, t0, false, r.code, 0);
            return;
        }
        lw_coap_b1rx_final_opt(req, &r);
        op = OP_FW_PUSH;
    }
    if (lw_coap_get_uint(req, LW_COAP_OPT_CONTENT_FORMAT, &cf) != 0) {
        code = LW_COAP_BAD_REQUEST;
        goto out;
    }
    static struct lw_arena arena;
    static bool arena_ok;
    if (!arena_ok) {
        lw_arena_init(&arena, 16384, 64u << 20);
        arena_ok = true;
    }
    lw_arena_reset(&arena);
    struct lw_m2m_records recs = {0};
    const struct lw_m2m_path root = LW_M2M_PATH_ROOT;
    size_t off;
    int rc =
        lw_m2m_decode((uint16_t)cf, body, composite ? &root : p, &TYPES, NULL, &arena, &recs, &off);
    if (rc == LW_ENOTSUP || (rc == LW_EINVAL && !lw_m2m_cf_supported((uint16_t)cf))) {
        code = LW_COAP_UNSUPPORTED_FORMAT;
        goto out;
    }
    if (rc) {
        code = err_code(rc);
        goto out;
    }
    if (!composite && req->code == LW_COAP_POST && p->len == 3 &&
        !(find_res(p->id[0], p->id[2]) && find_res(p->id[0], p->id[2])->multi)) {
        code = LW_COAP_METHOD_NOT_ALLOWED; /* partial update of a single resource */
        goto out;
    }
    for (size_t i = 0; i < recs.n; i++) {
        if (!recs.v[i].has_value && recs.v[i].path.len < 3)
            continue;
        rc = write_one(d, &recs.v[i], now);
        if (rc) {
            code = err_code(rc);
            goto out;
        }
    }
out:
    r.code = code;
    respond(d, req, &r, now);
    stats_op(op, t0, code == LW_COAP_CHANGED, code, 0);
}

/* ---- execute ----------------------------------------------------------------------------- */

static void do_execute(struct fleet_dev *d, const struct lw_coap_msg *req,
                       const struct lw_m2m_path *p, uint64_t now)
{
    uint64_t t0 = fleet_now_us();
    uint8_t code = LW_COAP_CHANGED;
    const struct res_def *r = p->len == 3 ? find_res(p->id[0], p->id[2]) : NULL;
    if (!r || !has_object(d, p->id[0]) || p->id[1] != 0) {
        code = LW_COAP_NOT_FOUND;
    } else if (!(r->ops & OP_E)) {
        code = LW_COAP_METHOD_NOT_ALLOWED;
    } else if (r->obj == 1) {
        dev_trigger_update(d);
    } else if (r->obj == 3) {
        struct dev_extra *x = dev_extra(d);
        if (x)
            x->reboot_at = now + 50; /* after the response left */
    } else if (r->obj == 5 && r->rid == 10) {
        if (d->fw_state == FW_UPDATING) {
            code = LW_COAP_METHOD_NOT_ALLOWED; /* too late: already installing */
        } else if (d->fw_state != FW_IDLE) {
            fw_reset(d);
            d->fw_result = 10; /* cancelled */
        }
    } else if (r->obj == 5) {
        struct dev_extra *x = dev_extra(d);
        if (d->fw_state != FW_DOWNLOADED || !x) {
            code = LW_COAP_METHOD_NOT_ALLOWED; /* Update only in state Downloaded */
        } else {
            d->fw_state = FW_UPDATING;
            d->fw_result = 0;
            x->fw_due = now + dev_group(d)->fw_update_ms;
        }
    }
    respond_code(d, req, code, now);
    stats_op(OP_EXECUTE, t0, code == LW_COAP_CHANGED, code, 0);
}

void model_fw_step(struct fleet_dev *d, uint64_t now)
{
    if (d->fw_state != FW_UPDATING)
        return;
    if (fleet_rand01() < dev_group(d)->fw_success) {
        d->fw_gen++;
        d->fw_state = FW_IDLE;
        d->fw_result = 1;
        dev_reboot(d, now); /* the new firmware runs: a fresh Register follows */
    } else {
        d->fw_state = FW_DOWNLOADED;
        d->fw_result = 8;
    }
}

void model_fw_pull_done(struct fleet_dev *d, int result, const struct lw_coap_msg *msg,
                        uint64_t now)
{
    (void)now;
    if (d->fw_state != FW_DOWNLOADING || !d->x)
        return;
    uint64_t t0 = d->x->fw_start;
    if (result != LW_COAP_RES_RESPONSE || !msg || msg->code != LW_COAP_CONTENT) {
        d->fw_state = FW_IDLE;
        d->fw_result = result == LW_COAP_RES_RESPONSE ? 7 : 4; /* invalid URI / connection lost */
        stats_op(OP_FW_PULL, t0, false, msg ? msg->code : 0,
                 result == LW_COAP_RES_TIMEOUT ? R_TIMEOUT : R_BLOCKWISE);
        return;
    }
    if (fleet_rand01() < dev_group(d)->fw_download_fail) {
        d->fw_state = FW_IDLE;
        d->fw_result = 5;
        stats_op(OP_FW_PULL, t0, false, 0, R_BLOCKWISE);
        return;
    }
    d->fw_state = FW_DOWNLOADED;
    stats_op(OP_FW_PULL, t0, true, 0, 0);
}

/* ---- create / delete (object 19) --------------------------------------------------------- */

static void do_create(struct fleet_dev *d, const struct lw_coap_msg *req,
                      const struct lw_m2m_path *p, uint64_t now)
{
    uint64_t t0 = fleet_now_us();
    uint32_t cf;
    uint16_t iid = 0;
    uint8_t code = 0;
    char num[8];
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, LW_COAP_CREATED);
    if (lw_coap_get_uint(req, LW_COAP_OPT_CONTENT_FORMAT, &cf) != 0) {
        code = LW_COAP_BAD_REQUEST;
        goto out;
    }
    static struct lw_arena arena;
    static bool arena_ok;
    if (!arena_ok) {
        lw_arena_init(&arena, 4096, 1u << 20);
        arena_ok = true;
    }
    lw_arena_reset(&arena);
    struct lw_m2m_records recs = {0};
    size_t off;
    int rc = lw_m2m_decode((uint16_t)cf, req->payload, p, &TYPES, NULL, &arena, &recs, &off);
    if (rc == LW_ENOTSUP || (rc == LW_EINVAL && !lw_m2m_cf_supported((uint16_t)cf))) {
        code = LW_COAP_UNSUPPORTED_FORMAT;
        goto out;
    }
    if (rc) {
        code = err_code(rc);
        goto out;
    }
    code = app_create(d, &recs, &iid);
    if (code)
        goto out;
    code = LW_COAP_CREATED;
    snprintf(num, sizeof(num), "%u", iid);
    lw_coap_add_opt(&r, LW_COAP_OPT_LOCATION_PATH, "19", 2);
    lw_coap_add_opt(&r, LW_COAP_OPT_LOCATION_PATH, num, strlen(num));
    dev_trigger_update(d); /* the object list changed: the server learns it in an Update */
out:
    r.code = code;
    respond(d, req, &r, now);
    stats_op(OP_CREATE_DELETE, t0, code == LW_COAP_CREATED, code, 0);
}

static void do_delete(struct fleet_dev *d, const struct lw_coap_msg *req,
                      const struct lw_m2m_path *p, uint64_t now)
{
    uint64_t t0 = fleet_now_us();
    uint8_t code = LW_COAP_METHOD_NOT_ALLOWED; /* single-instance objects, fixed instances */
    if (p->len == 2 && p->id[0] == APP_OBJ && has_object(d, APP_OBJ) && p->id[1] != 0) {
        code = LW_COAP_NOT_FOUND;
        for (struct app_inst **pp = d->x ? &d->x->apps : NULL; pp && *pp; pp = &(*pp)->next) {
            if ((*pp)->iid == p->id[1]) {
                struct app_inst *a = *pp;
                *pp = a->next;
                free(a);
                code = LW_COAP_DELETED;
                dev_trigger_update(d);
                break;
            }
        }
    }
    respond_code(d, req, code, now);
    stats_op(OP_CREATE_DELETE, t0, code == LW_COAP_DELETED, code, 0);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static int req_path(const struct lw_coap_msg *req, struct lw_m2m_path *p)
{
    char buf[128];
    if (lw_coap_uri_path(req, buf, sizeof(buf)) != 0)
        return LW_EMALFORMED;
    return lw_m2m_path_parse(buf, strlen(buf), p);
}

void model_on_request(struct fleet_dev *d, const struct lw_coap_msg *req, uint64_t now)
{
    struct lw_m2m_path p;
    if (req_path(req, &p) != 0) {
        respond_code(d, req, LW_COAP_NOT_FOUND, now);
        return;
    }
    uint32_t acc;
    switch (req->code) {
    case LW_COAP_GET:
        if (lw_coap_get_uint(req, LW_COAP_OPT_ACCEPT, &acc) == 0 && acc == 40)
            do_discover(d, req, &p, now);
        else
            do_read(d, req, &p, 1, false, now, OP_READ);
        return;
    case LW_COAP_FETCH:
    case LW_COAP_IPATCH: {
        if (p.len != 0) {
            respond_code(d, req, LW_COAP_METHOD_NOT_ALLOWED, now);
            return;
        }
        if (req->code == LW_COAP_IPATCH) {
            do_write(d, req, &p, true, now);
            return;
        }
        uint32_t cf = 0;
        lw_coap_get_uint(req, LW_COAP_OPT_CONTENT_FORMAT, &cf);
        static struct lw_arena arena;
        static bool arena_ok;
        if (!arena_ok) {
            lw_arena_init(&arena, 4096, 1u << 20);
            arena_ok = true;
        }
        lw_arena_reset(&arena);
        struct lw_m2m_records recs = {0};
        size_t off;
        if (lw_m2m_decode_paths((uint16_t)cf, req->payload, NULL, &arena, &recs, &off) != 0 ||
            recs.n == 0) {
            respond_code(d, req, LW_COAP_BAD_REQUEST, now);
            stats_op(OP_READ_COMPOSITE, 0, false, LW_COAP_BAD_REQUEST, 0);
            return;
        }
        struct lw_m2m_path paths[16];
        size_t n = LW_MIN(recs.n, LW_ARRAY_SIZE(paths));
        for (size_t i = 0; i < n; i++)
            paths[i] = recs.v[i].path;
        do_read(d, req, paths, n, true, now, OP_READ_COMPOSITE);
        return;
    }
    case LW_COAP_PUT:
        if (p.len == 0) {
            respond_code(d, req, LW_COAP_METHOD_NOT_ALLOWED, now);
        } else if (req->payload.len == 0 && !lw_coap_find_opt(req, LW_COAP_OPT_BLOCK1)) {
            uint64_t t0 = fleet_now_us();
            int rc = write_attrs(d, req, &p);
            uint8_t code = rc ? (rc == LW_ENOSPC ? LW_COAP_INTERNAL_ERROR : LW_COAP_BAD_REQUEST)
                              : LW_COAP_CHANGED;
            if (!rc && (p.len < 1 || !has_object(d, p.id[0])))
                code = LW_COAP_NOT_FOUND;
            respond_code(d, req, code, now);
            stats_op(OP_WRITE_ATTR, t0, code == LW_COAP_CHANGED, code, 0);
            if (d->x && d->x->next_obs)
                obs_arm(d, now);
        } else {
            do_write(d, req, &p, false, now);
        }
        return;
    case LW_COAP_POST:
        if (p.len == 3 && req->payload.len == 0 &&
            !lw_coap_find_opt(req, LW_COAP_OPT_CONTENT_FORMAT))
            do_execute(d, req, &p, now);
        else if (p.len == 3 && find_res(p.id[0], p.id[2]) &&
                 (find_res(p.id[0], p.id[2])->ops & OP_E))
            do_execute(d, req, &p, now); /* with arguments (text/plain) */
        else if (p.len == 2 || p.len == 3)
            do_write(d, req, &p, false, now);
        else if (p.len == 1 && p.id[0] == APP_OBJ && has_object(d, APP_OBJ))
            do_create(d, req, &p, now);
        else {
            respond_code(d, req, LW_COAP_METHOD_NOT_ALLOWED, now); /* Create: no such objects */
            stats_op(OP_CREATE_DELETE, 0, false, LW_COAP_METHOD_NOT_ALLOWED, 0);
        }
        return;
    case LW_COAP_DELETE: do_delete(d, req, &p, now); return;
    default: respond_code(d, req, LW_COAP_METHOD_NOT_ALLOWED, now); return;
    }
}

/* ---- uplink payloads --------------------------------------------------------------------- */

void model_reg_links(const struct fleet_dev *d, struct lw_buf *b)
{
    const struct fleet_group *g = dev_group(d);
    bool first = true;
    if (g->lwm2m_minor > 0) {
        lw_buf_printf(b, "</>;rt=\"oma.lwm2m\";ct=%u", g->send_format);
        first = false;
    }
    static const uint16_t objs[] = {1, 3, 4, 5, 19, 10243};
    for (size_t i = 0; i < LW_ARRAY_SIZE(objs); i++) {
        if (!has_object(d, objs[i]))
            continue;
        const char *ver = obj_ver(d, objs[i]);
        if (ver)
            lw_buf_printf(b, "%s</%u>;%s,</%u/0>", first ? "" : ",", objs[i], ver, objs[i]);
        else
            lw_buf_printf(b, "%s</%u/0>", first ? "" : ",", objs[i]);
        first = false;
        for (const struct app_inst *a = objs[i] == APP_OBJ && d->x ? d->x->apps : NULL; a;
             a = a->next)
            lw_buf_printf(b, ",</%u/%u>", objs[i], a->iid);
    }
}

int model_send_payload(struct fleet_dev *d, uint64_t now, struct lw_buf *b)
{
    static struct recset rs;
    rs.n = 0;
    static const struct lw_m2m_path paths[] = {
        LW_M2M_PATH3(10243, 0, 6), LW_M2M_PATH3(10243, 0, 14), LW_M2M_PATH3(10243, 0, 4)};
    size_t np = has_object(d, 10243) ? LW_ARRAY_SIZE(paths) : 0;
    for (size_t i = 0; i < np; i++)
        collect(d, &paths[i], now, &rs);
    if (rs.n == 0) {
        struct lw_m2m_path bp = LW_M2M_PATH3(3, 0, 9);
        collect(d, &bp, now, &rs);
    }
    double t = floor(E->wall0 + (double)(now - E->t0) / 1000.0);
    for (size_t i = 0; i < rs.n; i++) {
        rs.r[i].time = t;
        rs.r[i].has_time = true;
    }
    const struct lw_m2m_path root = LW_M2M_PATH_ROOT;
    return lw_m2m_encode(dev_group(d)->send_format, &root, rs.r, rs.n, b);
}
