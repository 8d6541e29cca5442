#include "config.h"

#include "base/err.h"
#include "base/util.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <ini.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* K_UINT: unsigned; K_DURATION: unsigned ms written "250ms", "2s", "5m", "1h", "1d" (a bare number
 * is seconds); K_BOOL: true/false/yes/no/on/off/1/0; K_DOUBLE: decimal; K_SIZE: bytes, with an
 * optional k/M/G (1024-based) suffix. min/max bound the converted value (ms for durations). */
enum kind { K_UINT, K_STR, K_ENUM, K_LISTEN, K_DURATION, K_BOOL, K_DOUBLE, K_SIZE };

struct key {
    const char *section, *name;
    enum kind kind;
    size_t off;     /* offsetof in struct lw_config */
    size_t cnt_off; /* K_LISTEN: offsetof of the count */
    const char *def;
    double min, max;            /* K_UINT, K_DURATION (ms), K_DOUBLE, K_SIZE */
    const char *const *choices; /* K_ENUM, index = enum value */
    bool reloadable;
    bool secret;
    bool path; /* K_STR naming a file or directory */
};

static const char *const logfmt_names[] = {"auto", "logfmt", "json", "journal", NULL};
static const char *const migrate_names[] = {"auto", "off", NULL};
static const char *const dtlsver_names[] = {"any", "1.2", "1.3", NULL};
static const char *const steering_names[] = {"kernel", "forward", NULL};

#define OFF(f) offsetof(struct lw_config, f)
/* The documentation of every key lives in config/lwm2md.conf.example and docs/configuration.md;
 * tests/lint.sh checks that both name exactly the keys declared here. */
static const struct key keys[] = {
    {"server", "shards", K_UINT, OFF(shards), 0, "0", 0, 256, NULL, false, false, false},
    {"server", "state_dir", K_STR, OFF(state_dir), 0, "/var/lib/lwm2md", 0, 0, NULL, false, false,
     true},
    {"server", "node_id", K_UINT, OFF(node_id), 0, "0", 0, 255, NULL, false, false, false},
    {"server", "udp_buffer", K_SIZE, OFF(udp_buffer), 0, "4M", 0, 1073741824, NULL, false, false,
     false},
    {"server", "steering", K_ENUM, OFF(steering), 0, "kernel", 0, 0, steering_names, false, false,
     false},
    {"coap", "listen", K_LISTEN, OFF(coap_listen), OFF(coap_listen_n), "0.0.0.0:5683, [::]:5683", 0,
     0, NULL, false, false, false},
    {"coap", "ack_timeout", K_DURATION, OFF(coap_ack_timeout), 0, "2s", 1000, 60000, NULL, false,
     false, false},
    {"coap", "ack_random_factor", K_DOUBLE, OFF(coap_ack_random_factor), 0, "1.5", 1.0, 4.0, NULL,
     false, false, false},
    {"coap", "max_retransmit", K_UINT, OFF(coap_max_retransmit), 0, "4", 1, 10, NULL, false, false,
     false},
    {"coap", "max_peers", K_UINT, OFF(coap_max_peers), 0, "0", 0, 100000000, NULL, false, false,
     false},
    {"coaps", "listen", K_LISTEN, OFF(coaps_listen), OFF(coaps_listen_n), "0.0.0.0:5684, [::]:5684",
     0, 0, NULL, false, false, false},
    {"coaps", "cert", K_STR, OFF(coaps_cert), 0, "", 0, 0, NULL, false, false, true},
    {"coaps", "key", K_STR, OFF(coaps_key), 0, "", 0, 0, NULL, false, false, true},
    {"coaps", "ca", K_STR, OFF(coaps_ca), 0, "", 0, 0, NULL, false, false, true},
    {"coaps", "rpk", K_BOOL, OFF(coaps_rpk), 0, "false", 0, 0, NULL, false, false, false},
    {"coaps", "ciphers", K_STR, OFF(coaps_ciphers), 0, "", 0, 0, NULL, false, false, false},
    {"coaps", "versions", K_ENUM, OFF(coaps_versions), 0, "any", 0, 0, dtlsver_names, false, false,
     false},
    {"coaps", "psk_hint", K_STR, OFF(coaps_psk_hint), 0, "", 0, 0, NULL, false, false, false},
    {"coaps", "cid", K_BOOL, OFF(coaps_cid), 0, "true", 0, 0, NULL, false, false, false},
    {"coaps", "hibernate_idle", K_DURATION, OFF(coaps_hibernate_idle), 0, "60s", 0, 86400000, NULL,
     false, false, false},
    {"coaps", "handshake_timeout", K_DURATION, OFF(coaps_handshake_timeout), 0, "30s", 1000, 600000,
     NULL, false, false, false},
    {"coaps", "max_handshakes", K_UINT, OFF(coaps_max_handshakes), 0, "1024", 1, 1000000, NULL,
     false, false, false},
    {"coaps", "hello_rate", K_UINT, OFF(coaps_hello_rate), 0, "1000", 0, 10000000, NULL, false,
     false, false},
    {"coaps", "handshake_backlog", K_UINT, OFF(coaps_handshake_backlog), 0, "65536", 0, 10000000,
     NULL, false, false, false},
    {"api", "listen", K_LISTEN, OFF(api_listen), OFF(api_listen_n), "127.0.0.1:8080", 0, 0, NULL,
     false, false, false},
    {"api", "bootstrap_token_file", K_STR, OFF(api_bootstrap_token_file), 0, "", 0, 0, NULL, false,
     false, true},
    {"api", "probes_public", K_BOOL, OFF(api_probes_public), 0, "true", 0, 0, NULL, true, false,
     false},
    {"api", "max_connections", K_UINT, OFF(api_max_connections), 0, "1024", 1, 1000000, NULL, true,
     false, false},
    {"api", "max_header_size", K_SIZE, OFF(api_max_header_size), 0, "16k", 1024, 1048576, NULL,
     true, false, false},
    {"api", "max_body_size", K_SIZE, OFF(api_max_body_size), 0, "1M", 1024, 67108864, NULL, true,
     false, false},
    {"api", "max_requests", K_UINT, OFF(api_max_requests), 0, "1000", 1, 1000000, NULL, true, false,
     false},
    {"api", "header_timeout", K_DURATION, OFF(api_header_timeout), 0, "10s", 100, 3600000, NULL,
     true, false, false},
    {"api", "idle_timeout", K_DURATION, OFF(api_idle_timeout), 0, "60s", 100, 86400000, NULL, true,
     false, false},
    {"api", "sse_ring", K_UINT, OFF(api_sse_ring), 0, "10000", 16, 10000000, NULL, false, false,
     false},
    {"api", "sse_heartbeat", K_DURATION, OFF(api_sse_heartbeat), 0, "15s", 100, 3600000, NULL,
     false, false, false},
    {"api", "sse_max_backlog", K_SIZE, OFF(api_sse_max_backlog), 0, "4M", 4096, 1073741824, NULL,
     true, false, false},
    {"api", "token_refresh", K_DURATION, OFF(api_token_refresh), 0, "30s", 100, 86400000, NULL,
     false, false, false},
    {"api", "tls_cert", K_STR, OFF(api_tls_cert), 0, "", 0, 0, NULL, false, false, true},
    {"api", "tls_key", K_STR, OFF(api_tls_key), 0, "", 0, 0, NULL, false, false, true},
    {"webhooks", "urls", K_STR, OFF(webhooks_urls), 0, "", 0, 0, NULL, false, false, false},
    {"webhooks", "secret_file", K_STR, OFF(webhooks_secret_file), 0, "", 0, 0, NULL, false, false,
     true},
    {"webhooks", "types", K_STR, OFF(webhooks_types), 0, "", 0, 0, NULL, false, false, false},
    {"webhooks", "batch_max", K_UINT, OFF(webhooks_batch_max), 0, "100", 1, 10000, NULL, false,
     false, false},
    {"webhooks", "batch_delay", K_DURATION, OFF(webhooks_batch_delay), 0, "200ms", 0, 60000, NULL,
     false, false, false},
    {"webhooks", "timeout", K_DURATION, OFF(webhooks_timeout), 0, "10s", 100, 600000, NULL, false,
     false, false},
    {"webhooks", "retry_max", K_UINT, OFF(webhooks_retry_max), 0, "10", 0, 1000, NULL, false, false,
     false},
    {"webhooks", "retry_base", K_DURATION, OFF(webhooks_retry_base), 0, "1s", 10, 3600000, NULL,
     false, false, false},
    {"webhooks", "queue_max", K_UINT, OFF(webhooks_queue_max), 0, "10000", 1, 10000000, NULL, false,
     false, false},
    {"database", "url", K_STR, OFF(db_url), 0, "", 0, 0, NULL, false, true, false},
    {"database", "migrate", K_ENUM, OFF(db_migrate), 0, "auto", 0, 0, migrate_names, false, false,
     false},
    {"database", "schema_dir", K_STR, OFF(db_schema_dir), 0, "/usr/local/share/lwm2md/schema", 0, 0,
     NULL, false, false, true},
    {"database", "write_hold", K_DURATION, OFF(db_write_hold), 0, "5s", 0, 600000, NULL, false,
     false, false},
    {"security", "master_key_file", K_STR, OFF(sec_master_key_file), 0, "", 0, 0, NULL, false,
     false, true},
    {"security", "old_master_key_files", K_STR, OFF(sec_old_master_key_files), 0, "", 0, 0, NULL,
     false, false, false},
    {"log", "level", K_STR, OFF(log_level), 0, "info", 0, 0, NULL, true, false, false},
    {"log", "groups", K_STR, OFF(log_groups), 0, "", 0, 0, NULL, true, false, false},
    {"log", "format", K_ENUM, OFF(log_format), 0, "auto", 0, 0, logfmt_names, false, false, false},
    {"log", "rate_limit", K_UINT, OFF(log_rate_limit), 0, "20", 1, 100000, NULL, true, false,
     false},
    {"registration", "lifetime_default", K_UINT, OFF(reg_lifetime_default), 0, "86400", 1, 4294967,
     NULL, false, false, false},
    {"registration", "lifetime_min", K_UINT, OFF(reg_lifetime_min), 0, "1", 1, 4294967, NULL, false,
     false, false},
    {"registration", "lifetime_max", K_UINT, OFF(reg_lifetime_max), 0, "4294967", 1, 4294967, NULL,
     false, false, false},
    {"registration", "expiry_grace", K_DURATION, OFF(reg_expiry_grace), 0, "30s", 0, 86400000, NULL,
     false, false, false},
    {"registration", "max", K_UINT, OFF(reg_max), 0, "0", 0, 4000000000.0, NULL, false, false,
     false},
    {"registration", "profiles_file", K_STR, OFF(reg_profiles_file), 0, "", 0, 0, NULL, false,
     false, true},
    {"objects", "dir", K_STR, OFF(objects_dir), 0, "", 0, 0, NULL, false, false, true},
    {"operations", "timeout", K_DURATION, OFF(ops_timeout), 0, "60s", 100, 3600000, NULL, false,
     false, false},
    {"operations", "wait_default", K_DURATION, OFF(ops_wait_default), 0, "5s", 1, 300000, NULL,
     false, false, false},
    {"operations", "history", K_UINT, OFF(ops_history), 0, "10000", 1, 10000000, NULL, false, false,
     false},
    {"queue", "awake_time", K_DURATION, OFF(queue_awake_time), 0, "93s", 100, 86400000, NULL, false,
     false, false},
    {"queue", "max_held", K_UINT, OFF(queue_max_held), 0, "16", 1, 10000, NULL, false, false,
     false},
    {"telemetry", "enabled", K_BOOL, OFF(telemetry_enabled), 0, "true", 0, 0, NULL, false, false,
     false},
    {"telemetry", "retention", K_UINT, OFF(telemetry_retention), 0, "30", 0, 36500, NULL, false,
     false, false},
    {"telemetry", "memory", K_SIZE, OFF(telemetry_memory), 0, "64M", 65536, 68719476736.0, NULL,
     false, false, false},
    {"telemetry", "spill_dir", K_STR, OFF(telemetry_spill_dir), 0, "", 0, 0, NULL, false, false,
     true},
};
#define NKEYS LW_ARRAY_SIZE(keys)

struct lw_cfg_state {
    struct lw_config cfg;
    char *raw[NKEYS];
    struct lw_cfg_origin origin[NKEYS];
    int errors;
    FILE *errout;
    /* parse context */
    const char *cur_file;
    int cur_line;
};

size_t lw_cfg_key_count(void)
{
    return NKEYS;
}

const char *lw_cfg_key_name(size_t i)
{
    static _Thread_local char buf[96];
    snprintf(buf, sizeof(buf), "%s.%s", keys[i].section, keys[i].name);
    return buf;
}

bool lw_cfg_key_reloadable(size_t i)
{
    return keys[i].reloadable;
}

static void cfg_error(struct lw_cfg_state *st, const char *origin, const char *key, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));
static void cfg_error(struct lw_cfg_state *st, const char *origin, const char *key, const char *fmt,
                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (key)
        fprintf(st->errout, "%s: key '%s': ", origin, key);
    else
        fprintf(st->errout, "%s: ", origin);
    vfprintf(st->errout, fmt, ap);
    fputc('\n', st->errout);
    va_end(ap);
    st->errors++;
}

static int find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool section_known(const char *section)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, section) == 0)
            return true;
    return false;
}

static void set_raw(struct lw_cfg_state *st, const char *section, const char *name,
                    const char *value, const char *origin)
{
    int k = find_key(section, name);
    if (k < 0) {
        char full[192];
        snprintf(full, sizeof(full), "%s.%s", section, name);
        if (!section_known(section))
            cfg_error(st, origin, full, "unknown section [%s]", section);
        else
            cfg_error(st, origin, full, "unknown key");
        return;
    }
    char *v = strdup(value);
    if (!v) {
        cfg_error(st, origin, NULL, "out of memory");
        return;
    }
    free(st->raw[k]);
    st->raw[k] = v;
    snprintf(st->origin[k].where, sizeof(st->origin[k].where), "%s", origin);
}

/* ---- INI files ------------------------------------------------------------------------------ */

struct line_reader {
    FILE *f;
    struct lw_cfg_state *st;
};

/* libinih calls the reader once per line; counting here gives each handler call its line. */
static char *read_line(char *str, int num, void *stream)
{
    struct line_reader *r = stream;
    char *s = fgets(str, num, r->f);
    if (s)
        r->st->cur_line++;
    return s;
}

static int on_ini_kv(void *user, const char *section, const char *name, const char *value)
{
    struct lw_cfg_state *st = user;
    char origin[256];
    snprintf(origin, sizeof(origin), "%s:%d", st->cur_file, st->cur_line);
    if (!name) /* section start (INI_CALL_HANDLER_ON_NEW_SECTION builds) */
        return 1;
    if (!*section) {
        cfg_error(st, origin, name, "key outside of any [section]");
        return 1;
    }
    set_raw(st, section, name, value, origin);
    return 1; /* keep going: report every problem in one run */
}

static void load_file(struct lw_cfg_state *st, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cfg_error(st, path, NULL, "cannot open: %s", strerror(errno));
        return;
    }
    struct line_reader r = {f, st};
    st->cur_file = path;
    st->cur_line = 0;
    int rc = ini_parse_stream(read_line, &r, on_ini_kv, st);
    if (rc > 0) {
        char origin[300];
        snprintf(origin, sizeof(origin), "%s:%d", path, rc);
        cfg_error(st, origin, NULL, "syntax error (expected '[section]' or 'key = value')");
    } else if (rc < 0) {
        cfg_error(st, path, NULL, "read error");
    }
    fclose(f);
}

static int conf_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

static void load_conf_d(struct lw_cfg_state *st, const char *main_file)
{
    char *copy = strdup(main_file);
    if (!copy)
        return;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/conf.d", dirname(copy));
    free(copy);
    struct dirent **list;
    int n = scandir(dir, &list, conf_filter, alphasort);
    if (n < 0)
        return; /* no conf.d: fine */
    for (int i = 0; i < n; i++) {
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
        load_file(st, path);
        free(list[i]);
    }
    free(list);
}

/* ---- environment and --set ------------------------------------------------------------------ */

static void env_name(size_t k, char *out, size_t cap)
{
    int n = snprintf(out, cap, "LWM2MD_%s_%s", keys[k].section, keys[k].name);
    for (int i = 0; i < n && (size_t)i < cap; i++)
        out[i] = (char)toupper((unsigned char)out[i]);
}

static void load_env(struct lw_cfg_state *st, char *const *env)
{
    for (; env && *env; env++) {
        const char *e = *env;
        if (strncmp(e, "LWM2MD_", 7) != 0)
            continue;
        const char *eq = strchr(e, '=');
        if (!eq)
            continue;
        size_t nlen = (size_t)(eq - e);
        if (nlen == 13 && strncmp(e, "LWM2MD_CONFIG", 13) == 0)
            continue; /* the config file path, read by main */
        bool found = false;
        for (size_t k = 0; k < NKEYS; k++) {
            char name[128];
            env_name(k, name, sizeof(name));
            if (strlen(name) == nlen && strncmp(name, e, nlen) == 0) {
                char origin[160];
                snprintf(origin, sizeof(origin), "env %.*s", (int)nlen, e);
                set_raw(st, keys[k].section, keys[k].name, eq + 1, origin);
                found = true;
                break;
            }
        }
        if (!found) {
            char origin[160];
            snprintf(origin, sizeof(origin), "env %.*s", (int)LW_MIN(nlen, 100u), e);
            cfg_error(st, origin, NULL, "no such configuration key");
        }
    }
}

static void load_sets(struct lw_cfg_state *st, const struct lw_cfg_set *sets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *dot = strchr(sets[i].key, '.');
        if (!dot || dot == sets[i].key || !dot[1]) {
            cfg_error(st, "--set", sets[i].key, "expected section.key=value");
            continue;
        }
        char section[64];
        snprintf(section, sizeof(section), "%.*s", (int)(dot - sets[i].key), sets[i].key);
        set_raw(st, section, dot + 1, sets[i].value, "--set");
    }
}

/* ---- conversion ----------------------------------------------------------------------------- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int parse_listen_one(const char *item, struct lw_listen *out, const char **why)
{
    const char *host_start, *host_end, *port;
    if (item[0] == '[') {
        host_start = item + 1;
        host_end = strchr(item, ']');
        if (!host_end || host_end[1] != ':') {
            *why = "IPv6 addresses are written [addr]:port";
            return -1;
        }
        port = host_end + 2;
    } else {
        host_start = item;
        host_end = strrchr(item, ':');
        if (!host_end) {
            *why = "expected host:port";
            return -1;
        }
        port = host_end + 1;
    }
    size_t hlen = (size_t)(host_end - host_start);
    if (hlen == 0 || hlen >= sizeof(out->host)) {
        *why = "bad host";
        return -1;
    }
    memcpy(out->host, host_start, hlen);
    out->host[hlen] = '\0';
    unsigned char tmp[16];
    if (inet_pton(AF_INET, out->host, tmp) != 1 && inet_pton(AF_INET6, out->host, tmp) != 1) {
        *why = "host must be a numeric IPv4 or IPv6 address";
        return -1;
    }
    uint64_t p;
    if (lw_parse_u64(port, strlen(port), &p) || p == 0 || p > 65535) {
        *why = "port must be 1..65535";
        return -1;
    }
    out->port = (uint16_t)p;
    return 0;
}

static void convert(struct lw_cfg_state *st)
{
    for (size_t k = 0; k < NKEYS; k++) {
        const struct key *ky = &keys[k];
        char *raw = strdup(st->raw[k]);
        const char *origin = st->origin[k].where;
        char name[96];
        snprintf(name, sizeof(name), "%s.%s", ky->section, ky->name);
        if (!raw) {
            cfg_error(st, origin, name, "out of memory");
            continue;
        }
        char *v = trim(raw);
        void *field = (char *)&st->cfg + ky->off;
        switch (ky->kind) {
        case K_UINT: {
            uint64_t u;
            if (lw_parse_u64(v, strlen(v), &u) || (double)u < ky->min || (double)u > ky->max)
                cfg_error(st, origin, name, "expected an integer from %.0f to %.0f, got '%s'",
                          ky->min, ky->max, v);
            else
                *(unsigned *)field = (unsigned)u;
            break;
        }
        case K_DURATION: {
            uint64_t n = 0, mult = 1000;
            size_t len = strlen(v), d = 0;
            while (d < len && v[d] >= '0' && v[d] <= '9')
                d++;
            const char *unit = v + d;
            if (strcmp(unit, "ms") == 0)
                mult = 1;
            else if (strcmp(unit, "s") == 0 || *unit == '\0')
                mult = 1000;
            else if (strcmp(unit, "m") == 0)
                mult = 60000;
            else if (strcmp(unit, "h") == 0)
                mult = 3600000;
            else if (strcmp(unit, "d") == 0)
                mult = 86400000;
            else
                mult = 0;
            if (d == 0 || mult == 0 || lw_parse_u64(v, d, &n) || n > UINT32_MAX / mult ||
                (double)(n * mult) < ky->min || (double)(n * mult) > ky->max)
                cfg_error(
                    st, origin, name,
                    "expected a duration from %.0fms to %.0fms (e.g. 500ms, 30s, 5m, 1h, 1d), "
                    "got '%s'",
                    ky->min, ky->max, v);
            else
                *(unsigned *)field = (unsigned)(n * mult);
            break;
        }
        case K_BOOL: {
            static const char *const yes[] = {"true", "yes", "on", "1"};
            static const char *const no[] = {"false", "no", "off", "0"};
            int val = -1;
            for (size_t i = 0; i < 4; i++) {
                if (strcmp(v, yes[i]) == 0)
                    val = 1;
                if (strcmp(v, no[i]) == 0)
                    val = 0;
            }
            if (val < 0)
                cfg_error(st, origin, name, "expected true or false, got '%s'", v);
            else
                *(bool *)field = val;
            break;
        }
        case K_DOUBLE: {
            char *end;
            double dv = strtod(v, &end);
            if (!*v || *end || dv != dv || dv < ky->min || dv > ky->max)
                cfg_error(st, origin, name, "expected a number from %g to %g, got '%s'", ky->min,
                          ky->max, v);
            else
                *(double *)field = dv;
            break;
        }
        case K_SIZE: {
            size_t len = strlen(v), d = 0;
            uint64_t n = 0, mult = 1;
            while (d < len && v[d] >= '0' && v[d] <= '9')
                d++;
            const char *unit = v + d;
            if (*unit == 'k' || *unit == 'K')
                mult = 1024;
            else if (*unit == 'M')
                mult = 1024 * 1024;
            else if (*unit == 'G')
                mult = 1024ull * 1024 * 1024;
            else if (*unit)
                mult = 0;
            if (mult > 1 && unit[1])
                mult = 0;
            if (d == 0 || mult == 0 || lw_parse_u64(v, d, &n) || n > SIZE_MAX / mult ||
                (double)(n * mult) < ky->min || (double)(n * mult) > ky->max)
                cfg_error(st, origin, name,
                          "expected a size from %.0f to %.0f bytes (k/M/G suffix), got '%s'",
                          ky->min, ky->max, v);
            else
                *(size_t *)field = (size_t)(n * mult);
            break;
        }
        case K_STR: {
            char *s = strdup(v);
            if (!s) {
                cfg_error(st, origin, name, "out of memory");
                break;
            }
            *(char **)field = s;
            break;
        }
        case K_ENUM: {
            int found = -1;
            for (int c = 0; ky->choices[c]; c++)
                if (strcmp(ky->choices[c], v) == 0)
                    found = c;
            if (found < 0) {
                char list[256] = "";
                for (int c = 0; ky->choices[c]; c++)
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                             c ? ", " : "", ky->choices[c]);
                cfg_error(st, origin, name, "expected one of %s, got '%s'", list, v);
            } else {
                *(int *)field = found;
            }
            break;
        }
        case K_LISTEN: {
            struct lw_listen *arr = field;
            unsigned *cnt = (unsigned *)((char *)&st->cfg + ky->cnt_off);
            *cnt = 0;
            char *save = NULL;
            for (char *item = strtok_r(v, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                item = trim(item);
                if (!*item)
                    continue;
                const char *why = NULL;
                if (*cnt == LW_CFG_MAX_LISTEN) {
                    cfg_error(st, origin, name, "at most %d addresses", LW_CFG_MAX_LISTEN);
                    break;
                }
                if (parse_listen_one(item, &arr[*cnt], &why) != 0) {
                    cfg_error(st, origin, name, "'%s': %s", item, why);
                    break;
                }
                ++*cnt;
            }
            break;
        }
        }
        free(raw);
    }
    int levels[LW_LG__COUNT];
    if (st->cfg.log_level && st->cfg.log_groups) {
        const char *why = lw_log_parse_spec(st->cfg.log_level, st->cfg.log_groups, levels);
        if (why) {
            int k = find_key("log", strstr(why, "group") ? "groups" : "level");
            cfg_error(st, st->origin[k].where, lw_cfg_key_name((size_t)k), "%s", why);
        }
    }
}

int lw_cfg_load(const struct lw_cfg_load *req, struct lw_cfg_state **out, FILE *errout)
{
    struct lw_cfg_state *st = calloc(1, sizeof(*st));
    if (!st) {
        fprintf(errout, "out of memory\n");
        return LW_ENOMEM;
    }
    st->errout = errout;
    for (size_t k = 0; k < NKEYS; k++) {
        st->raw[k] = strdup(keys[k].def);
        snprintf(st->origin[k].where, sizeof(st->origin[k].where), "default");
    }
    if (req->main_file) {
        load_file(st, req->main_file);
        load_conf_d(st, req->main_file);
    }
    load_env(st, req->environ);
    load_sets(st, req->sets, req->nsets);
    convert(st); /* even after errors: report every problem in one run */
    if (st->errors) {
        lw_cfg_free(st);
        return LW_ECONFIG;
    }
    *out = st;
    return 0;
}

void lw_cfg_free(struct lw_cfg_state *st)
{
    if (!st)
        return;
    for (size_t k = 0; k < NKEYS; k++) {
        free(st->raw[k]);
        if (keys[k].kind == K_STR)
            free(*(char **)((char *)&st->cfg + keys[k].off));
    }
    free(st);
}

const struct lw_config *lw_cfg_get(const struct lw_cfg_state *st)
{
    return &st->cfg;
}

void lw_cfg_print(const struct lw_cfg_state *st, FILE *out)
{
    const char *section = "";
    for (size_t k = 0; k < NKEYS; k++) {
        if (strcmp(section, keys[k].section) != 0) {
            section = keys[k].section;
            fprintf(out, "%s[%s]\n", k ? "\n" : "", section);
        }
        const char *v = st->raw[k];
        if (keys[k].secret && *v)
            v = "********";
        fprintf(out, "%s = %s  # %s%s\n", keys[k].name, v, st->origin[k].where,
                keys[k].reloadable ? ", reloadable" : "");
    }
}

int lw_cfg_diff_restart(const struct lw_cfg_state *old_st, const struct lw_cfg_state *new_st,
                        FILE *out)
{
    int n = 0;
    for (size_t k = 0; k < NKEYS; k++) {
        if (keys[k].reloadable || strcmp(old_st->raw[k], new_st->raw[k]) == 0)
            continue;
        if (out)
            fprintf(out, "%s.%s", keys[k].section, keys[k].name);
        n++;
    }
    return n;
}
