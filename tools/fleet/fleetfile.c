/* tools/fleet/fleetfile.c - fleet file parser (see fleetfile.h). The INI syntax itself is read by
 * inih (Debian libinih); this file interprets sections and keys.
 *
 * Also compiled into tests/fuzz/fleet_ini.c by #include (fuzz targets do not link tools/), so it
 * must stay self-contained: it depends on lib/base and inih only.
 */
#include "fleetfile.h"

#include "base/err.h"
#include "base/util.h"
#include "lwm2m/fmt.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void fleet_file_init(struct fleet_file *f)
{
    memset(f, 0, sizeof(*f));
    f->scenario = -1;
    f->deregister = true;
}

void fleet_group_init(struct fleet_group *g, const char *name)
{
    memset(g, 0, sizeof(*g));
    snprintf(g->name, sizeof(g->name), "%s", name);
    snprintf(g->endpoint, sizeof(g->endpoint), "fleet-{g}-{n:7}");
    snprintf(g->psk_identity, sizeof(g->psk_identity), "{ep}");
    g->lwm2m_minor = 1;
    g->security = FLEET_SEC_NOSEC;
    g->dtls_version = 12;
    g->objects = FLEET_OBJ_DEVICE | FLEET_OBJ_CONN | FLEET_OBJ_FIRMWARE | FLEET_OBJ_METER;
    g->lifetime_s = 300;
    g->awake_ms = 93000; /* MAX_TRANSMIT_WAIT, LwM2M queue mode default */
    g->send_format = LW_M2M_CF_SENML_CBOR;
    g->meter_base_kw = 0.8;
    g->fw_success = 0.95;
    g->fw_download_fail = 0.0;
    g->fw_update_ms = 3000;
    g->fw_max_bytes = 4u << 20;
    g->reboot_ms = 2000;
}

/* ---- value parsers ----------------------------------------------------------------------- */

static int parse_double(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s))
        return LW_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return LW_EINVAL;
    *out = v;
    return 0;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (lw_parse_u64(s, strlen(s), &v) || v > max)
        return LW_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

int fleet_parse_duration(const char *s, uint64_t *ms)
{
    size_t n = strlen(s);
    double mult = 1000.0;
    size_t cut = 0;
    if (n > 2 && strcmp(s + n - 2, "ms") == 0) {
        mult = 1.0;
        cut = 2;
    } else if (n > 1 && s[n - 1] == 's') {
        cut = 1;
    } else if (n > 1 && s[n - 1] == 'm') {
        mult = 60000.0;
        cut = 1;
    } else if (n > 1 && s[n - 1] == 'h') {
        mult = 3600000.0;
        cut = 1;
    }
    char tmp[32];
    if (n - cut == 0 || n - cut >= sizeof(tmp))
        return LW_EINVAL;
    memcpy(tmp, s, n - cut);
    tmp[n - cut] = 0;
    double v;
    if (parse_double(tmp, &v) || v < 0 || v * mult > 1e15)
        return LW_EINVAL;
    *ms = (uint64_t)(v * mult + 0.5);
    return 0;
}

int fleet_parse_rate(const char *s, double *per_s)
{
    size_t n = strlen(s);
    double div = 1.0;
    size_t cut = 0;
    if (n > 2 && strcmp(s + n - 2, "/s") == 0) {
        cut = 2;
    } else if (n > 2 && strcmp(s + n - 2, "/m") == 0) {
        div = 60.0;
        cut = 2;
    }
    char tmp[32];
    if (n - cut == 0 || n - cut >= sizeof(tmp))
        return LW_EINVAL;
    memcpy(tmp, s, n - cut);
    tmp[n - cut] = 0;
    double v;
    if (parse_double(tmp, &v) || v <= 0 || v > 1e9)
        return LW_EINVAL;
    *per_s = v / div;
    return 0;
}

int fleet_parse_fraction(const char *s, double *out)
{
    size_t n = strlen(s);
    char tmp[32];
    if (n == 0 || n >= sizeof(tmp))
        return LW_EINVAL;
    bool pct = s[n - 1] == '%';
    memcpy(tmp, s, n - pct);
    tmp[n - pct] = 0;
    double v;
    if (parse_double(tmp, &v))
        return LW_EINVAL;
    if (pct)
        v /= 100.0;
    if (v < 0 || v > 1)
        return LW_EINVAL;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return LW_EINVAL;
}

/* "3,4,5,10243" (object 1 is implied; 3 is mandatory for an LwM2M client). */
static int parse_objects(const char *s, uint32_t *out)
{
    uint32_t set = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *q = p;
        while (*q && *q != ',' && *q != ' ')
            q++;
        uint64_t id;
        if (lw_parse_u64(p, (size_t)(q - p), &id))
            return LW_EINVAL;
        switch (id) {
        case 1: break;
        case 3: set |= FLEET_OBJ_DEVICE; break;
        case 4: set |= FLEET_OBJ_CONN; break;
        case 5: set |= FLEET_OBJ_FIRMWARE; break;
        case 10243: set |= FLEET_OBJ_METER; break;
        case 19: set |= FLEET_OBJ_APPDATA; break;
        default: return LW_EINVAL;
        }
        p = q;
    }
    if (!(set & FLEET_OBJ_DEVICE))
        return LW_EINVAL;
    *out = set;
    return 0;
}

/* Checks a pattern by expanding it for a sample device. */
static int check_pattern(const char *pat, bool allow_ep)
{
    char out[256];
    int rc = fleet_pattern_expand(pat, 1234567, "group", allow_ep ? "ep" : NULL, out, sizeof(out));
    return rc < 0 ? rc : 0;
}

/* ---- patterns ---------------------------------------------------------------------------- */

int fleet_pattern_expand(const char *pat, uint64_t n, const char *group, const char *ep, char *out,
                         size_t cap)
{
    size_t o = 0;
    int rc = 0;
    if (cap == 0)
        return LW_ENOSPC;
    for (const char *p = pat; *p;) {
        char tmp[64];
        const char *piece = tmp;
        size_t plen;
        if (p[0] == '{' && p[1] == '{') {
            piece = "{";
            plen = 1;
            p += 2;
        } else if (p[0] == '}' && p[1] == '}') {
            piece = "}";
            plen = 1;
            p += 2;
        } else if (*p == '}') {
            rc = LW_EINVAL;
            goto out;
        } else if (*p == '{') {
            const char *end = strchr(p, '}');
            if (!end) {
                rc = LW_EINVAL;
                goto out;
            }
            size_t klen = (size_t)(end - p - 1);
            const char *key = p + 1;
            if (klen == 1 && key[0] == 'n') {
                snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)n);
            } else if (klen > 2 && key[0] == 'n' && key[1] == ':') {
                uint64_t w;
                if (lw_parse_u64(key + 2, klen - 2, &w) || w < 1 || w > 20) {
                    rc = LW_EINVAL;
                    goto out;
                }
                snprintf(tmp, sizeof(tmp), "%0*llu", (int)w, (unsigned long long)n);
            } else if (klen == 1 && key[0] == 'g') {
                piece = group;
            } else if (klen == 2 && key[0] == 'e' && key[1] == 'p' && ep) {
                piece = ep;
            } else {
                rc = LW_EINVAL;
                goto out;
            }
            plen = strlen(piece);
            p = end + 1;
        } else {
            piece = p;
            plen = 1;
            p++;
        }
        if (o + plen >= cap) {
            rc = LW_ENOSPC;
            goto out;
        }
        memcpy(out + o, piece, plen);
        o += plen;
    }
    rc = (int)o;
out:
    out[rc < 0 ? 0 : o] = 0;
    return rc;
}

/* ---- INI handler ------------------------------------------------------------------------- */

struct pctx {
    struct fleet_file *f;
    char *err;
    size_t errcap;
    bool failed;
};

static int fail(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct pctx *c, const char *fmt, ...)
{
    if (!c->failed && c->errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errcap, fmt, ap);
        va_end(ap);
    }
    c->failed = true;
    return 0; /* tells inih to report this line */
}

static int copy_str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return LW_ENOSPC;
    memcpy(dst, v, n + 1);
    return 0;
}

static int fleet_key(struct pctx *c, const char *k, const char *v)
{
    struct fleet_file *f = c->f;
    uint64_t ms;
    if (strcmp(k, "server") == 0) {
        if (copy_str(f->server, sizeof(f->server), v) || strncmp(v, "coap", 4) != 0)
            return fail(c, "server: expected a coap:// or coaps:// URI");
    } else if (strcmp(k, "rate") == 0) {
        if (fleet_parse_rate(v, &f->rate))
            return fail(c, "rate: expected a positive number, e.g. 500/s");
    } else if (strcmp(k, "duration") == 0) {
        if (fleet_parse_duration(v, &ms) || ms > UINT32_MAX)
            return fail(c, "duration: expected a duration such as 60s or 10m");
        f->duration_ms = (uint32_t)ms;
        f->has_duration = true;
    } else if (strcmp(k, "sockets") == 0) {
        if (parse_u32(v, 1024, &f->sockets) || f->sockets == 0)
            return fail(c, "sockets: expected 1..1024");
    } else if (strcmp(k, "scenario") == 0) {
        if (strcmp(v, "steady") == 0)
            f->scenario = FLEET_SC_STEADY;
        else if (strcmp(v, "storm") == 0)
            f->scenario = FLEET_SC_STORM;
        else if (strcmp(v, "rebind") == 0)
            f->scenario = FLEET_SC_REBIND;
        else
            return fail(c, "scenario: expected steady, storm or rebind");
    } else if (strcmp(k, "loss") == 0 || strcmp(k, "duplicate") == 0 || strcmp(k, "reorder") == 0) {
        double *dst = k[0] == 'l' ? &f->loss : k[0] == 'd' ? &f->dup : &f->reorder;
        if (fleet_parse_fraction(v, dst))
            return fail(c, "%s: expected a fraction 0..1 or a percentage", k);
    } else if (strcmp(k, "deregister") == 0) {
        if (parse_bool(v, &f->deregister))
            return fail(c, "deregister: expected true or false");
    } else {
        return fail(c, "unknown key \"%s\" in [fleet]", k);
    }
    return 1;
}

static int group_key(struct pctx *c, struct fleet_group *g, const char *k, const char *v)
{
    uint64_t ms;
    double d;
    if (strcmp(k, "count") == 0) {
        if (parse_u32(v, FLEET_MAX_DEVICES, &g->count))
            return fail(c, "count: expected 0..%u", FLEET_MAX_DEVICES);
    } else if (strcmp(k, "endpoint") == 0) {
        if (copy_str(g->endpoint, sizeof(g->endpoint), v) || !*v || check_pattern(v, false))
            return fail(c, "endpoint: bad pattern (placeholders {n} {n:W} {g})");
    } else if (strcmp(k, "psk_identity") == 0) {
        if (copy_str(g->psk_identity, sizeof(g->psk_identity), v) || !*v || check_pattern(v, true))
            return fail(c, "psk_identity: bad pattern (placeholders {n} {n:W} {g} {ep})");
    } else if (strcmp(k, "psk_key") == 0) {
        if (copy_str(g->psk_key, sizeof(g->psk_key), v) || !*v || check_pattern(v, true))
            return fail(c, "psk_key: bad pattern (hex, placeholders {n} {n:W} {g} {ep})");
    } else if (strcmp(k, "lwm2m") == 0) {
        if (strcmp(v, "1.0") == 0)
            g->lwm2m_minor = 0;
        else if (strcmp(v, "1.1") == 0)
            g->lwm2m_minor = 1;
        else if (strcmp(v, "1.2") == 0)
            g->lwm2m_minor = 2;
        else
            return fail(c, "lwm2m: expected 1.0, 1.1 or 1.2");
    } else if (strcmp(k, "security") == 0) {
        if (strcmp(v, "nosec") == 0)
            g->security = FLEET_SEC_NOSEC;
        else if (strcmp(v, "psk") == 0)
            g->security = FLEET_SEC_PSK;
        else
            return fail(c, "security: expected nosec or psk");
    } else if (strcmp(k, "dtls") == 0) {
        if (strcmp(v, "1.2") == 0)
            g->dtls_version = 12;
        else if (strcmp(v, "1.3") == 0)
            g->dtls_version = 13;
        else
            return fail(c, "dtls: expected 1.2 or 1.3");
    } else if (strcmp(k, "cid") == 0) {
        bool cid;
        if (parse_bool(v, &cid))
            return fail(c, "cid: expected true or false");
        g->no_cid = !cid;
    } else if (strcmp(k, "objects") == 0) {
        if (parse_objects(v, &g->objects))
            return fail(c, "objects: expected a list of 1, 3, 4, 5, 10243 including 3");
    } else if (strcmp(k, "lifetime") == 0) {
        if (fleet_parse_duration(v, &ms) || ms < 1000 || ms > 86400000ull * 365)
            return fail(c, "lifetime: expected a duration of at least 1s");
        g->lifetime_s = (uint32_t)(ms / 1000);
    } else if (strcmp(k, "update_interval") == 0) {
        if (fleet_parse_duration(v, &ms) || ms > 86400000ull * 365)
            return fail(c, "update_interval: expected a duration (0: 90%% of the lifetime)");
        g->update_s = (uint32_t)((ms + 999) / 1000);
    } else if (strcmp(k, "send_interval") == 0) {
        if (fleet_parse_duration(v, &ms) || ms > 86400000ull * 365)
            return fail(c, "send_interval: expected a duration (0: never)");
        g->send_s = (uint32_t)((ms + 999) / 1000);
    } else if (strcmp(k, "queue_mode") == 0) {
        if (parse_bool(v, &g->queue_mode))
            return fail(c, "queue_mode: expected true or false");
    } else if (strcmp(k, "awake_time") == 0) {
        if (fleet_parse_duration(v, &ms) || ms > UINT32_MAX)
            return fail(c, "awake_time: expected a duration");
        g->awake_ms = (uint32_t)ms;
    } else if (strcmp(k, "format") == 0) {
        uint16_t cf;
        if (lw_m2m_cf_parse(v, strlen(v), &cf) ||
            (cf != LW_M2M_CF_SENML_CBOR && cf != LW_M2M_CF_SENML_JSON &&
             cf != LW_M2M_CF_LWM2M_CBOR && cf != LW_M2M_CF_TLV && cf != LW_M2M_CF_JSON))
            return fail(c, "format: expected senml-cbor, senml-json, lwm2m-cbor, tlv or json");
        g->send_format = cf;
    } else if (strcmp(k, "meter_power_kw") == 0) {
        if (parse_double(v, &d) || d < 0 || d > 1000)
            return fail(c, "meter_power_kw: expected 0..1000");
        g->meter_base_kw = d;
    } else if (strcmp(k, "fw_success_rate") == 0) {
        if (fleet_parse_fraction(v, &g->fw_success))
            return fail(c, "fw_success_rate: expected a fraction 0..1 or a percentage");
    } else if (strcmp(k, "fw_download_failure_rate") == 0) {
        if (fleet_parse_fraction(v, &g->fw_download_fail))
            return fail(c, "fw_download_failure_rate: expected a fraction or a percentage");
    } else if (strcmp(k, "fw_update_time") == 0) {
        if (fleet_parse_duration(v, &ms) || ms > 3600000)
            return fail(c, "fw_update_time: expected a duration up to 1h");
        g->fw_update_ms = (uint32_t)ms;
    } else if (strcmp(k, "fw_max_size") == 0) {
        if (parse_u32(v, 64u << 20, &g->fw_max_bytes) || g->fw_max_bytes == 0)
            return fail(c, "fw_max_size: expected 1..67108864 bytes");
    } else if (strcmp(k, "reboot_time") == 0) {
        if (fleet_parse_duration(v, &ms) || ms > 3600000)
            return fail(c, "reboot_time: expected a duration up to 1h");
        g->reboot_ms = (uint32_t)ms;
    } else {
        return fail(c, "unknown key \"%s\" in [group %s]", k, g->name);
    }
    return 1;
}

static int on_kv(void *user, const char *section, const char *name, const char *value)
{
    struct pctx *c = user;
    if (c->failed)
        return 0;
    if (!name) /* section header without keys (inih INI_CALL_HANDLER_ON_NEW_SECTION) */
        return 1;
    if (strcmp(section, "fleet") == 0)
        return fleet_key(c, name, value);
    if (strncmp(section, "group ", 6) == 0 && section[6]) {
        const char *gname = section + 6;
        if (strlen(gname) >= sizeof(c->f->groups[0].name))
            return fail(c, "group name longer than 31 bytes");
        for (const char *p = gname; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
                return fail(c, "group name: use letters, digits, '-' and '_'");
        struct fleet_group *g = NULL;
        for (uint32_t i = 0; i < c->f->ngroups; i++)
            if (strcmp(c->f->groups[i].name, gname) == 0)
                g = &c->f->groups[i];
        if (!g) {
            if (c->f->ngroups == FLEET_MAX_GROUPS)
                return fail(c, "more than %d groups", FLEET_MAX_GROUPS);
            g = &c->f->groups[c->f->ngroups++];
            fleet_group_init(g, gname);
        }
        return group_key(c, g, name, value);
    }
    return fail(c, "unknown section [%s] (expected [fleet] or [group NAME])", section);
}

int fleet_group_check(const struct fleet_group *g, char *err, size_t errcap)
{
    const char *why = NULL;
    if (g->update_s && g->update_s >= g->lifetime_s)
        why = "update_interval must be shorter than lifetime";
    else if (g->security == FLEET_SEC_PSK && !g->psk_key[0])
        why = "security psk needs psk_key";
    else if (g->send_s && g->lwm2m_minor == 0)
        why = "send_interval needs lwm2m 1.1 or later (Send does not exist in 1.0)";
    else if (g->lwm2m_minor == 0 &&
             (g->send_format == LW_M2M_CF_SENML_CBOR || g->send_format == LW_M2M_CF_SENML_JSON ||
              g->send_format == LW_M2M_CF_LWM2M_CBOR))
        why = "lwm2m 1.0 devices use format tlv or json";
    else if (g->lwm2m_minor < 2 && g->send_format == LW_M2M_CF_LWM2M_CBOR)
        why = "format lwm2m-cbor needs lwm2m 1.2";
    if (why) {
        snprintf(err, errcap, "group %s: %s", g->name, why);
        return LW_ECONFIG;
    }
    return 0;
}

int fleet_file_parse(const char *text, size_t len, struct fleet_file *f, char *err, size_t errcap)
{
    int rc = 0;
    if (errcap)
        err[0] = 0;
    if (memchr(text, 0, len)) {
        snprintf(err, errcap, "file contains a NUL byte");
        return LW_ECONFIG;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return LW_ENOMEM;
    memcpy(copy, text, len);
    copy[len] = 0;
    struct pctx c = {f, err, errcap, false};
    int line = ini_parse_string(copy, on_kv, &c);
    if (line != 0) {
        char why[200];
        snprintf(why, sizeof(why), "%s", c.failed ? err : "syntax error");
        snprintf(err, errcap, "line %d: %s", line, why);
        rc = LW_ECONFIG;
        goto out;
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < f->ngroups; i++) {
        total += f->groups[i].count;
        if (fleet_group_check(&f->groups[i], err, errcap)) {
            rc = LW_ECONFIG;
            goto out;
        }
    }
    if (total > FLEET_MAX_DEVICES) {
        snprintf(err, errcap, "more than %u devices in all groups", FLEET_MAX_DEVICES);
        rc = LW_ECONFIG;
    }
out:
    free(copy);
    return rc;
}
