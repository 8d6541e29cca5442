/* server/store/restore.c - restore of live registrations at start (see store.h). */
#include "base/buf.h"
#include "base/err.h"
#include "log.h"
#include "registry.h"
#include "shard.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

static const char restore_sql[] =
    "SELECT endpoint, reg_id, host(address), port, lwm2m_version, binding, queue_mode, lifetime, "
    "sms_number, extract(epoch FROM registered_at)::bigint, "
    "extract(epoch FROM updated_at)::bigint, (extract(epoch FROM expires_at) * 1000)::bigint, "
    "objects::text, profile_id, security_mode "
    "FROM registrations WHERE expires_at > now()";

enum {
    C_EP,
    C_ID,
    C_ADDR,
    C_PORT,
    C_VER,
    C_B,
    C_Q,
    C_LT,
    C_SMS,
    C_REG,
    C_UPD,
    C_EXP,
    C_OBJS,
    C_PID,
    C_SEC
};

/* The "objects" JSON array back to a CoRE link format list: "</id>;ver=M.m" for each object,
 * then "</id/inst>" for each instance. */
static int links_of(const char *objs_json, struct lw_buf *b)
{
    json_error_t e;
    json_t *arr = json_loads(objs_json, 0, &e);
    size_t i;
    json_t *o;
    if (!json_is_array(arr)) {
        json_decref(arr);
        return LW_EMALFORMED;
    }
    json_array_foreach(arr, i, o)
    {
        char tmp[64];
        json_int_t id = json_integer_value(json_object_get(o, "id"));
        const char *ver = json_string_value(json_object_get(o, "version"));
        json_t *insts = json_object_get(o, "instances");
        int n = snprintf(tmp, sizeof(tmp), "%s</%lld>", b->len ? "," : "", (long long)id);
        lw_buf_put(b, tmp, (size_t)n);
        if (ver && strlen(ver) < 16) {
            n = snprintf(tmp, sizeof(tmp), ";ver=%s", ver);
            lw_buf_put(b, tmp, (size_t)n);
        }
        size_t k;
        json_t *inst;
        json_array_foreach(insts, k, inst)
        {
            n = snprintf(tmp, sizeof(tmp), ",</%lld/%lld>", (long long)id,
                         (long long)json_integer_value(inst));
            lw_buf_put(b, tmp, (size_t)n);
        }
    }
    json_decref(arr);
    return lw_buf_status(b);
}

static uint8_t sec_of(const char *s)
{
    if (strcmp(s, "psk") == 0)
        return RS_SEC_PSK;
    if (strcmp(s, "rpk") == 0)
        return RS_SEC_RPK;
    if (strcmp(s, "x509") == 0)
        return RS_SEC_X509;
    return RS_SEC_NOSEC;
}

/* One row into its shard: 0, or the LW_E* reason it was skipped. */
static int restore_row(PGresult *res, unsigned nshards)
{
    struct regsrv_saved sv;
    struct lw_buf links;
    unsigned maj = 1, min = 0;
    int rc;
    memset(&sv, 0, sizeof(sv));
    lw_buf_init(&links, 256);
    const char *ids = PQgetvalue(res, 0, C_ID);
    if (regsrv_id_parse(ids, strlen(ids), &sv.id) != 0) {
        rc = LW_EMALFORMED;
        goto out;
    }
    unsigned shard = dir_id_shard(sv.id);
    if (shard >= nshards) {
        rc = LW_ERANGE;
        goto out;
    }
    const char *addr = PQgetvalue(res, 0, C_ADDR);
    if (inet_pton(AF_INET, addr, sv.addr.ip) == 1) {
        sv.addr.family = 4;
    } else if (inet_pton(AF_INET6, addr, sv.addr.ip) == 1) {
        sv.addr.family = 6;
    } else {
        rc = LW_EMALFORMED;
        goto out;
    }
    sv.addr.port = (uint16_t)atoi(PQgetvalue(res, 0, C_PORT));
    sv.ep = PQgetvalue(res, 0, C_EP);
    if (sscanf(PQgetvalue(res, 0, C_VER), "%u.%u", &maj, &min) != 2 || maj > 15 || min > 15) {
        rc = LW_EMALFORMED;
        goto out;
    }
    sv.ver = (uint8_t)(maj << 4 | min);
    snprintf(sv.binding, sizeof(sv.binding), "%s", PQgetvalue(res, 0, C_B));
    sv.queue = PQgetvalue(res, 0, C_Q)[0] == 't';
    sv.lifetime_s = (uint32_t)strtoul(PQgetvalue(res, 0, C_LT), NULL, 10);
    sv.sms = PQgetisnull(res, 0, C_SMS) ? NULL : PQgetvalue(res, 0, C_SMS);
    sv.registered_s = (uint32_t)strtoul(PQgetvalue(res, 0, C_REG), NULL, 10);
    sv.updated_s = (uint32_t)strtoul(PQgetvalue(res, 0, C_UPD), NULL, 10);
    sv.expires_ms = strtoll(PQgetvalue(res, 0, C_EXP), NULL, 10);
    sv.pid = PQgetisnull(res, 0, C_PID) ? NULL : PQgetvalue(res, 0, C_PID);
    sv.sec = sec_of(PQgetvalue(res, 0, C_SEC));
    if ((rc = links_of(PQgetvalue(res, 0, C_OBJS), &links)) != 0)
        goto out;
    sv.links = links.data;
    sv.links_len = links.len;
    struct regsrv *r = shard_regsrv(shard_get(shard));
    rc = regsrv_restore(r, &sv, r->now);
out:
    lw_buf_deinit(&links);
    return rc;
}

int lw_store_restore(const struct lw_config *cfg, unsigned nshards)
{
    uint64_t t0 = uv_hrtime();
    unsigned long restored = 0, expired = 0, skipped = 0;
    int rc = 0;
    PGresult *res = NULL;
    if (!cfg->db_url || !*cfg->db_url)
        return 0;
    PGconn *pg = PQconnectdb(cfg->db_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        log_warn(STORE, "registrations not restored: database not reachable");
        goto out;
    }
    /* Row by row: a million registrations need not sit in one result. */
    if (!PQsendQuery(pg, restore_sql) || !PQsetSingleRowMode(pg)) {
        log_err(STORE, "registrations not restored: %s", PQerrorMessage(pg));
        goto out;
    }
    while ((res = PQgetResult(pg)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE) {
            int r = restore_row(res, nshards);
            if (r == 0)
                restored++;
            else if (r == LW_ETIMEDOUT)
                expired++;
            else if (r == LW_ENOMEM)
                rc = LW_ENOMEM;
            else
                skipped++;
        } else if (st != PGRES_TUPLES_OK) {
            char why[300];
            snprintf(why, sizeof(why), "%s", PQresultErrorMessage(res));
            why[strcspn(why, "\n")] = '\0';
            log_err(STORE, "restore of registrations stopped: %s", why);
        }
        PQclear(res);
    }
    res = NULL;
    log_notice(STORE,
               "registrations restored: restored=%lu expired=%lu skipped=%lu duration_ms=%llu",
               restored, expired, skipped, (unsigned long long)((uv_hrtime() - t0) / 1000000));
out:
    for (unsigned i = 0; i < nshards; i++)
        regsrv_restore_done(shard_regsrv(shard_get(i)));
    PQclear(res);
    PQfinish(pg);
    return rc;
}
