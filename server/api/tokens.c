/* server/api/tokens.c - API bearer tokens persisted in PostgreSQL (api_tokens), the audit log
 * (audit_log), the token routes (POST/GET /api/v1/tokens, DELETE /api/v1/tokens/{id}, admin) and
 * the `lwm2md token` CLI (which migrates the schema first, store/migrate.h).
 *
 * Token format: "lwm2md_<id>_<43 chars base64url secret>"; the table keeps a per-token random salt
 * and SHA-256(salt || token), never the token. The daemon holds the non-revoked rows in memory,
 * loaded once at start (blocking, before the loop serves any request) and re-read every
 * api.token_refresh. Those refreshes and the audit rows of other routes run in libuv's thread pool
 * (uv_queue_work), one job at a time with one connection owned by that job: the loop itself never
 * blocks on libpq. Token creation and revocation through the API are durable before they are
 * acknowledged: the row and its audit row are committed in one statement on the control loop's
 * non-blocking connection (store/credstore.h), then memory changes and the request is answered
 * (503 when the database fails). Without database.url only the bootstrap token (auth.h) is
 * accepted.
 */
#include "api.h"

#include "api_int.h"
#include "auth.h"
#include "base/b64.h"
#include "base/err.h"
#include "base/util.h"
#include "log.h"
#include "store/credstore.h"
#include "store/migrate.h"

#include <getopt.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#define SALT_LEN 16

struct tok {
    int64_t id;
    char name[64];
    enum api_role role;
    uint8_t salt[SALT_LEN];
    uint8_t sha[WC_SHA256_DIGEST_SIZE];
};

struct audit_row {
    struct lw_list link;
    char actor[64], action[64], target[160];
    int result;
};

struct job {
    uv_work_t work;
    bool refresh;
    uint64_t gen; /* tk.gen when the job started: a refresh older than an API change is dropped */
    struct lw_list audit; /* rows to insert (owned) */
    /* results */
    bool ok;
    struct tok *toks;
    size_t ntoks;
};

static struct {
    char *url;
    bool have_db;
    bool db_ok;
    struct tok *toks;
    size_t ntoks;
    uv_timer_t timer;
    bool started;
    bool busy;
    bool want_refresh;
    struct lw_list audit_pending;
    unsigned audit_pending_n;
    PGconn *pg; /* used only inside the running job (thread pool) */
    uint64_t audit_dropped;
    uint64_t gen; /* bumped by every token change made through the API */
} tk = {.audit_pending = {&tk.audit_pending, &tk.audit_pending}};

static int hash_token(const uint8_t salt[SALT_LEN], const char *tok, size_t len,
                      uint8_t out[WC_SHA256_DIGEST_SIZE])
{
    wc_Sha256 sha;
    if (wc_InitSha256(&sha) != 0)
        return LW_EINTERNAL;
    int rc = wc_Sha256Update(&sha, salt, SALT_LEN);
    if (rc == 0)
        rc = wc_Sha256Update(&sha, (const uint8_t *)tok, (word32)len);
    if (rc == 0)
        rc = wc_Sha256Final(&sha, out);
    wc_Sha256Free(&sha);
    return rc ? LW_EINTERNAL : 0;
}

enum api_role api_auth_check(const char *token, size_t len, char *actor, size_t actor_cap)
{
    if (len == 0)
        return API_ROLE_NONE;
    if (lw_auth_is_bootstrap(token, len)) {
        snprintf(actor, actor_cap, "bootstrap");
        return API_ROLE_ADMIN;
    }
    if (len < 10 || len > 128 || memcmp(token, "lwm2md_", 7) != 0)
        return API_ROLE_NONE;
    const char *idp = token + 7;
    const char *us = memchr(idp, '_', len - 7);
    uint64_t id;
    if (!us || lw_parse_u64(idp, (size_t)(us - idp), &id))
        return API_ROLE_NONE;
    for (size_t i = 0; i < tk.ntoks; i++) {
        const struct tok *t = &tk.toks[i];
        if ((uint64_t)t->id != id)
            continue;
        uint8_t h[WC_SHA256_DIGEST_SIZE];
        if (hash_token(t->salt, token, len, h) || !lw_ct_equal(h, t->sha, sizeof(h)))
            return API_ROLE_NONE;
        snprintf(actor, actor_cap, "%s", *t->name ? t->name : "token");
        return t->role;
    }
    return API_ROLE_NONE;
}

int api_tokens_add(int64_t id, const char *name, enum api_role role, const char *token)
{
    struct tok *n = realloc(tk.toks, (tk.ntoks + 1) * sizeof(*n));
    if (!n)
        return LW_ENOMEM;
    tk.toks = n;
    struct tok *t = &n[tk.ntoks];
    memset(t, 0, sizeof(*t));
    t->id = id;
    t->role = role;
    snprintf(t->name, sizeof(t->name), "%s", name);
    if (lw_random(t->salt, SALT_LEN) || hash_token(t->salt, token, strlen(token), t->sha))
        return LW_EINTERNAL;
    tk.ntoks++;
    return 0;
}

void api_tokens_metrics(struct lw_buf *out)
{
    lw_buf_printf(out,
                  "# HELP lwm2md_api_tokens Active API tokens loaded from the database.\n"
                  "# TYPE lwm2md_api_tokens gauge\nlwm2md_api_tokens %zu\n"
                  "# HELP lwm2md_audit_rows_dropped_total Audit rows not queued for the database "
                  "(backlog full).\n# TYPE lwm2md_audit_rows_dropped_total counter\n"
                  "lwm2md_audit_rows_dropped_total %llu\n",
                  tk.ntoks, (unsigned long long)tk.audit_dropped);
}

bool api_tokens_db_ok(void)
{
    return !tk.have_db || tk.db_ok;
}

/* ---- background jobs (thread pool) ---------------------------------------------------------- */

static bool job_connect(void)
{
    if (tk.pg && PQstatus(tk.pg) == CONNECTION_OK)
        return true;
    if (tk.pg)
        PQfinish(tk.pg);
    /* a short connect timeout: the first load runs before the loop does */
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {tk.url, "5", NULL};
    tk.pg = PQconnectdbParams(keys, vals, 1);
    return PQstatus(tk.pg) == CONNECTION_OK;
}

static void job_work(uv_work_t *w)
{
    struct job *j = w->data;
    j->ok = job_connect();
    if (!j->ok)
        return;
    lw_list_foreach (it, &j->audit) {
        struct audit_row *a = lw_container_of(it, struct audit_row, link);
        char result[16];
        snprintf(result, sizeof(result), "%d", a->result);
        const char *params[4] = {a->actor, a->action, a->target, result};
        PGresult *res = PQexecParams(
            tk.pg, "INSERT INTO audit_log (actor, action, target, result) VALUES ($1,$2,$3,$4)", 4,
            NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            j->ok = false;
        PQclear(res);
    }
    if (!j->refresh)
        return;
    PGresult *res = PQexecParams(tk.pg,
                                 "SELECT id, name, role, salt, sha256 FROM api_tokens WHERE "
                                 "revoked_at IS NULL ORDER BY id",
                                 0, NULL, NULL, NULL, NULL, 1 /* binary */);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        j->ok = false;
        PQclear(res);
        return;
    }
    int n = PQntuples(res);
    j->toks = calloc((size_t)n + 1, sizeof(*j->toks));
    for (int i = 0; j->toks && i < n; i++) {
        struct tok *t = &j->toks[j->ntoks];
        const uint8_t *idb = (const uint8_t *)PQgetvalue(res, i, 0);
        char role[16];
        if (PQgetlength(res, i, 0) != 8 || PQgetlength(res, i, 3) != SALT_LEN ||
            PQgetlength(res, i, 4) != WC_SHA256_DIGEST_SIZE)
            continue;
        t->id = (int64_t)lw_load_be64(idb);
        snprintf(t->name, sizeof(t->name), "%.*s", PQgetlength(res, i, 1), PQgetvalue(res, i, 1));
        snprintf(role, sizeof(role), "%.*s", PQgetlength(res, i, 2), PQgetvalue(res, i, 2));
        int r = api_role_parse(role);
        if (r < 0)
            continue;
        t->role = (enum api_role)r;
        memcpy(t->salt, PQgetvalue(res, i, 3), SALT_LEN);
        memcpy(t->sha, PQgetvalue(res, i, 4), WC_SHA256_DIGEST_SIZE);
        j->ntoks++;
    }
    PQclear(res);
}

static void job_schedule(void);

static void job_done(uv_work_t *w, int status)
{
    struct job *j = w->data;
    struct lw_list *it;
    tk.busy = false;
    if (status == 0 && j->refresh) {
        if (j->ok && j->toks && j->gen == tk.gen) {
            if (tk.toks)
                lw_secure_zero(tk.toks, tk.ntoks * sizeof(*tk.toks));
            free(tk.toks);
            tk.toks = j->toks;
            tk.ntoks = j->ntoks;
            j->toks = NULL;
        }
        if (j->ok != tk.db_ok) {
            if (j->ok)
                log_info(API, "api tokens loaded from the database: count=%zu", tk.ntoks);
            else
                log_warn(API, "cannot read api tokens from the database: keeping the last set");
        }
        tk.db_ok = j->ok;
    }
    if (!j->ok && !lw_list_empty(&j->audit))
        log_warn_rl(API, "audit log rows not written to the database: %s", "database error");
    while ((it = lw_list_pop_front(&j->audit)))
        free(lw_container_of(it, struct audit_row, link));
    free(j->toks);
    free(j);
    if (tk.started) {
        job_schedule();
    } else {
        /* stopped: this was the last job */
        if (tk.pg)
            PQfinish(tk.pg);
        tk.pg = NULL;
        free(tk.url);
        tk.url = NULL;
    }
}

static void job_schedule(void)
{
    if (tk.busy || !tk.have_db || (!tk.want_refresh && lw_list_empty(&tk.audit_pending)))
        return;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->work.data = j;
    j->refresh = tk.want_refresh;
    j->gen = tk.gen;
    tk.want_refresh = false;
    lw_list_init(&j->audit);
    lw_list_splice_back(&j->audit, &tk.audit_pending);
    tk.audit_pending_n = 0;
    if (uv_queue_work(uv_default_loop(), &j->work, job_work, job_done) != 0) {
        free(j);
        return;
    }
    tk.busy = true;
}

static void on_refresh(uv_timer_t *t)
{
    (void)t;
    tk.want_refresh = true;
    job_schedule();
}

void api_audit(const struct api_req *r, const char *action, const char *target)
{
    log_notice(API, "audit: actor=%s action=%s target=%s result=%d", r->actor, action, target,
               r->status);
    if (!tk.have_db)
        return;
    /* Committed credential and token changes wrote their audit row in the same statement. */
    if (credstore_enabled() &&
        ((strcmp(action, "credentials_put") == 0 && (r->status == 200 || r->status == 201)) ||
         (strcmp(action, "credentials_delete") == 0 && (r->status == 204 || r->status == 404)) ||
         (strcmp(action, "token_create") == 0 && r->status == 201) ||
         (strcmp(action, "token_revoke") == 0 && (r->status == 204 || r->status == 404))))
        return;
    if (tk.audit_pending_n >= 10000) {
        tk.audit_dropped++;
        return;
    }
    struct audit_row *a = calloc(1, sizeof(*a));
    if (!a)
        return;
    snprintf(a->actor, sizeof(a->actor), "%s", r->actor);
    snprintf(a->action, sizeof(a->action), "%s", action);
    snprintf(a->target, sizeof(a->target), "%s", target);
    a->result = r->status;
    lw_list_push_back(&tk.audit_pending, &a->link);
    tk.audit_pending_n++;
    job_schedule();
}

int api_tokens_start(const struct lw_config *cfg)
{
    tk.have_db = cfg->db_url && *cfg->db_url;
    tk.db_ok = false;
    tk.started = true;
    if (!tk.have_db) {
        log_notice(API, "no database.url: only the bootstrap token is accepted");
        return 0;
    }
    tk.url = strdup(cfg->db_url);
    if (!tk.url)
        return LW_ENOMEM;
    /* The schema was migrated (or checked) by lw_store_startup_migrate() before this. */
    uv_timer_init(uv_default_loop(), &tk.timer);
    unsigned every = cfg->api_token_refresh ? cfg->api_token_refresh : 30000;
    /* First load now, blocking: tokens work from the first request on (the loop runs later). */
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return LW_ENOMEM;
    j->work.data = j;
    j->refresh = true;
    j->gen = tk.gen;
    lw_list_init(&j->audit);
    tk.busy = true;
    job_work(&j->work);
    job_done(&j->work, 0);
    uv_timer_start(&tk.timer, on_refresh, every, every);
    return 0;
}

/* Runs on the loop during shutdown: pending audit rows are written by the last job. */
void api_tokens_stop(void)
{
    if (!tk.started)
        return;
    tk.started = false;
    if (tk.have_db) {
        uv_timer_stop(&tk.timer);
        uv_close((uv_handle_t *)&tk.timer, NULL);
        job_schedule(); /* flush pending audit rows; its completion does not reschedule */
    }
    if (!tk.busy) {
        if (tk.pg)
            PQfinish(tk.pg);
        tk.pg = NULL;
        free(tk.url);
        tk.url = NULL;
    }
    if (tk.toks)
        lw_secure_zero(tk.toks, tk.ntoks * sizeof(*tk.toks));
    free(tk.toks);
    tk.toks = NULL;
    tk.ntoks = 0;
}

/* ---- token routes (admin) ------------------------------------------------------------------- */

struct tokop {
    uint64_t cookie;
    int64_t id;
    enum api_role role;
    char name[64];
    char actor[64];
    char token[128];
};

static void tokop_free(struct tokop *op)
{
    lw_secure_zero(op, sizeof(*op));
    free(op);
}

static void db_failed(struct api_req *r, int rc, const char *why)
{
    api_problem(r, 503, "database-unavailable", "the change was not stored: %s",
                rc == LW_ETIMEDOUT ? "the database did not answer in time"
                : why && *why      ? why
                                   : lw_strerror(rc));
}

/* Inserts the token row and its audit row in one statement; the token itself is never sent. */
static const char create_sql[] =
    "WITH t AS (INSERT INTO api_tokens (id, name, role, salt, sha256) VALUES ($1::bigint, $2, $3, "
    "$4, $5) RETURNING id), "
    "a AS (INSERT INTO audit_log (actor, action, target, result, detail) SELECT $6, "
    "'token_create', $1, 201, jsonb_build_object('role', $3::text, 'name', $2::text) FROM t) "
    "SELECT id FROM t";

static void create_done(void *ctx, int rc, const char *val0, const char *why)
{
    struct tokop *op = ctx;
    struct api_req *r = api_req_of_cookie(op->cookie);
    (void)val0;
    if (rc == 0) {
        tk.gen++; /* a refresh that started before this commit must not drop the token */
        int arc = api_tokens_add(op->id, op->name, op->role, op->token);
        if (arc)
            log_err(API, "token %lld stored but not loaded: %s", (long long)op->id,
                    lw_strerror(arc));
        if (r)
            api_reply_json(r, 201,
                           json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)op->id, "name",
                                     op->name, "role", api_role_name(op->role), "token",
                                     op->token));
    } else if (r) {
        db_failed(r, rc, why);
    }
    tokop_free(op);
}

static void create_id_done(void *ctx, int rc, const char *val0, const char *why)
{
    struct tokop *op = ctx;
    struct api_req *r = api_req_of_cookie(op->cookie);
    uint8_t secret[32], salt[SALT_LEN], sha[WC_SHA256_DIGEST_SIZE];
    char sec64[64], idbuf[24];
    uint64_t id;
    if (rc == 0 && (!val0 || lw_parse_u64(val0, strlen(val0), &id) != 0))
        rc = LW_EDB;
    if (rc == 0 && (lw_random(secret, sizeof(secret)) || lw_random(salt, sizeof(salt))))
        rc = LW_EIO;
    if (rc) {
        if (r)
            db_failed(r, rc, why);
        tokop_free(op);
        return;
    }
    op->id = (int64_t)id;
    snprintf(idbuf, sizeof(idbuf), "%llu", (unsigned long long)id);
    lw_b64_encode_str(sec64, sizeof(sec64), secret, sizeof(secret), true);
    snprintf(op->token, sizeof(op->token), "lwm2md_%s_%s", idbuf, sec64);
    lw_secure_zero(secret, sizeof(secret));
    lw_secure_zero(sec64, sizeof(sec64));
    hash_token(salt, op->token, strlen(op->token), sha);
    struct credstore_job job = {
        .sql = create_sql,
        .nparams = 6,
        .values = {idbuf, op->name, api_role_name(op->role), (const char *)salt, (const char *)sha,
                   op->actor},
        .lengths = {0, 0, 0, SALT_LEN, WC_SHA256_DIGEST_SIZE, 0},
        .formats = {0, 0, 0, 1, 1, 0},
        .done = create_done,
        .ctx = op,
    };
    rc = credstore_submit(&job);
    if (rc) {
        if (r)
            db_failed(r, rc, NULL);
        tokop_free(op);
    }
}

void h_tokens_create(struct api_req *r, char *const *params, const char *query)
{
    (void)params;
    (void)query;
    if (!credstore_enabled()) {
        api_problem(r, 503, "no-database", "tokens are stored in PostgreSQL: set database.url");
        return;
    }
    if (!json_is_object(r->json)) {
        api_problem(r, 400, "bad-request", "expected a JSON object");
        return;
    }
    const char *role = json_string_value(json_object_get(r->json, "role"));
    json_t *name = json_object_get(r->json, "name");
    int rl = role ? api_role_parse(role) : -1;
    if (rl <= API_ROLE_NONE) {
        api_problem(r, 400, "bad-request", "role must be viewer, operator or admin");
        return;
    }
    if (name && (!json_is_string(name) || json_string_length(name) > 63 ||
                 strlen(json_string_value(name)) != json_string_length(name))) {
        api_problem(r, 400, "bad-request", "name must be a string of at most 63 bytes");
        return;
    }
    struct tokop *op = calloc(1, sizeof(*op));
    if (!op) {
        api_problem(r, 503, "internal", "out of memory");
        return;
    }
    op->cookie = api_req_cookie(r);
    op->role = (enum api_role)rl;
    snprintf(op->name, sizeof(op->name), "%s", name ? json_string_value(name) : "");
    snprintf(op->actor, sizeof(op->actor), "%s", r->actor);
    struct credstore_job job = {
        .sql = "SELECT nextval(pg_get_serial_sequence('api_tokens', 'id'))",
        .done = create_id_done,
        .ctx = op,
    };
    int rc = credstore_submit(&job);
    if (rc) {
        tokop_free(op);
        db_failed(r, rc, NULL);
    }
}

void h_tokens_list(struct api_req *r, char *const *params, const char *query)
{
    (void)params;
    (void)query;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < tk.ntoks; i++)
        json_array_append_new(arr,
                              json_pack("{s:I, s:s, s:s}", "id", (json_int_t)tk.toks[i].id, "name",
                                        tk.toks[i].name, "role", api_role_name(tk.toks[i].role)));
    api_reply_json(r, 200, json_pack("{s:o}", "tokens", arr ? arr : json_array()));
}

static const char revoke_sql[] =
    "WITH u AS (UPDATE api_tokens SET revoked_at = now() WHERE id = $1::bigint AND revoked_at IS "
    "NULL RETURNING id), "
    "a AS (INSERT INTO audit_log (actor, action, target, result) SELECT $2, 'token_revoke', $1, "
    "CASE WHEN EXISTS (SELECT 1 FROM u) THEN 204 ELSE 404 END) "
    "SELECT count(*) FROM u";

static void revoke_done(void *ctx, int rc, const char *val0, const char *why)
{
    struct tokop *op = ctx;
    struct api_req *r = api_req_of_cookie(op->cookie);
    if (rc == 0) {
        tk.gen++;
        for (size_t i = 0; i < tk.ntoks; i++) {
            if (tk.toks[i].id != op->id)
                continue;
            lw_secure_zero(&tk.toks[i], sizeof(tk.toks[i]));
            tk.toks[i] = tk.toks[tk.ntoks - 1];
            tk.ntoks--;
            break;
        }
        if (r && val0 && strcmp(val0, "0") != 0)
            api_reply(r, 204, NULL, NULL, 0);
        else if (r)
            api_problem(r, 404, "token-not-found", "no active token with this id");
    } else if (r) {
        db_failed(r, rc, why);
    }
    tokop_free(op);
}

void h_tokens_revoke(struct api_req *r, char *const *params, const char *query)
{
    uint64_t id;
    (void)query;
    if (lw_parse_u64(params[0], strlen(params[0]), &id) != 0 || id > INT64_MAX) {
        api_problem(r, 400, "invalid-parameter", "the token id must be a number");
        return;
    }
    if (!credstore_enabled()) {
        api_problem(r, 503, "no-database", "tokens are stored in PostgreSQL: set database.url");
        return;
    }
    struct tokop *op = calloc(1, sizeof(*op));
    if (!op) {
        api_problem(r, 503, "internal", "out of memory");
        return;
    }
    op->cookie = api_req_cookie(r);
    op->id = (int64_t)id;
    struct credstore_job job = {
        .sql = revoke_sql,
        .nparams = 2,
        .values = {params[0], r->actor},
        .done = revoke_done,
        .ctx = op,
    };
    int rc = credstore_submit(&job);
    if (rc) {
        tokop_free(op);
        db_failed(r, rc, NULL);
    }
}

/* ---- CLI ------------------------------------------------------------------------------------ */

static PGconn *cli_connect(const struct lw_config *cfg, FILE *err)
{
    if (!cfg->db_url || !*cfg->db_url) {
        fprintf(err, "lwm2md token: database.url is not set (tokens live in PostgreSQL)\n");
        return NULL;
    }
    PGconn *pg = PQconnectdb(cfg->db_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(err, "lwm2md token: cannot connect to the database: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    char why[512];
    int rc = cfg->db_migrate == LW_MIGRATE_AUTO
                 ? lw_store_migrate(pg, cfg->db_schema_dir, NULL, why, sizeof(why))
                 : 0;
    /* Without the schema files (no configuration given, nothing installed) the tables the
     * daemon created are used as they are. */
    if (rc == LW_ENOENT) {
        fprintf(err, "lwm2md token: schema not migrated: %s\n", why);
    } else if (rc) {
        fprintf(err, "lwm2md token: schema migration failed: %s\n", why);
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static int cli_create(PGconn *pg, const char *role, const char *name, FILE *out, FILE *err)
{
    uint8_t secret[32], salt[SALT_LEN], sha[WC_SHA256_DIGEST_SIZE];
    char sec64[64], token[128], idbuf[32];
    int status = 1;
    PGresult *res = PQexec(pg, "SELECT nextval(pg_get_serial_sequence('api_tokens', 'id'))");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(err, "lwm2md token: %s", PQerrorMessage(pg));
        goto out;
    }
    snprintf(idbuf, sizeof(idbuf), "%s", PQgetvalue(res, 0, 0));
    if (lw_random(secret, sizeof(secret)) || lw_random(salt, sizeof(salt))) {
        fprintf(err, "lwm2md token: no randomness\n");
        goto out;
    }
    lw_b64_encode_str(sec64, sizeof(sec64), secret, sizeof(secret), true);
    snprintf(token, sizeof(token), "lwm2md_%s_%s", idbuf, sec64);
    if (hash_token(salt, token, strlen(token), sha))
        goto out;
    const char *params[5] = {idbuf, name, role, (const char *)salt, (const char *)sha};
    int lens[5] = {0, 0, 0, SALT_LEN, WC_SHA256_DIGEST_SIZE};
    int fmts[5] = {0, 0, 0, 1, 1};
    PQclear(res);
    /* The token row and its audit row are one statement: both or neither. */
    res = PQexecParams(pg,
                       "WITH t AS (INSERT INTO api_tokens (id, name, role, salt, sha256) VALUES "
                       "($1::bigint, $2, $3, $4, $5) RETURNING id) "
                       "INSERT INTO audit_log (actor, action, target, result, detail) SELECT "
                       "'cli', 'token_create', $1, 201, jsonb_build_object('role', $3::text, "
                       "'name', $2::text) FROM t",
                       5, NULL, params, lens, fmts, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(err, "lwm2md token: %s", PQerrorMessage(pg));
        goto out;
    }
    fprintf(out, "%s\n", token);
    fprintf(err, "token %s created (role %s%s%s); it is shown only once\n", idbuf, role,
            *name ? ", name " : "", name);
    status = 0;
out:
    PQclear(res);
    lw_secure_zero(token, sizeof(token));
    lw_secure_zero(secret, sizeof(secret));
    return status;
}

static int cli_list(PGconn *pg, FILE *out, FILE *err)
{
    PGresult *res = PQexec(pg, "SELECT id, name, role, to_char(created_at AT TIME ZONE 'UTC', "
                               "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), coalesce(to_char(revoked_at AT "
                               "TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '-') FROM "
                               "api_tokens ORDER BY id");
    int status = 1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(err, "lwm2md token: %s", PQerrorMessage(pg));
    } else {
        fprintf(out, "%-6s %-9s %-21s %-21s %s\n", "ID", "ROLE", "CREATED", "REVOKED", "NAME");
        for (int i = 0; i < PQntuples(res); i++)
            fprintf(out, "%-6s %-9s %-21s %-21s %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 2),
                    PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), PQgetvalue(res, i, 1));
        status = 0;
    }
    PQclear(res);
    return status;
}

static int cli_revoke(PGconn *pg, const char *id, FILE *out, FILE *err)
{
    uint64_t v;
    if (lw_parse_u64(id, strlen(id), &v)) {
        fprintf(err, "lwm2md token revoke: '%s' is not a token id\n", id);
        return 2;
    }
    const char *params[1] = {id};
    /* The revocation and its audit row are one statement. */
    PGresult *res = PQexecParams(pg,
                                 "WITH u AS (UPDATE api_tokens SET revoked_at = now() WHERE id = "
                                 "$1::bigint AND revoked_at IS NULL RETURNING id) "
                                 "INSERT INTO audit_log (actor, action, target, result) SELECT "
                                 "'cli', 'token_revoke', $1, 204 FROM u",
                                 1, NULL, params, NULL, NULL, 0);
    int status = 1;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(err, "lwm2md token: %s", PQerrorMessage(pg));
    } else if (strcmp(PQcmdTuples(res), "1") != 0) {
        fprintf(err, "lwm2md token revoke: no active token %s\n", id);
    } else {
        fprintf(out, "token %s revoked\n", id);
        status = 0;
    }
    PQclear(res);
    return status;
}

int lw_api_cli_token(const struct lw_config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option opts[] = {
        {"role", required_argument, NULL, 'r'},
        {"name", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    const char *role = NULL, *name = "";
    int c, status = 2;
    PGconn *pg = NULL;
    if (argc < 2) {
        fprintf(err, "usage: lwm2md [--config FILE] token create --role viewer|operator|admin "
                     "[--name N] | token list | token revoke ID\n");
        return 2;
    }
    const char *sub = argv[1];
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "r:n:", opts, NULL)) != -1) {
        if (c == 'r')
            role = optarg;
        else if (c == 'n')
            name = optarg;
        else
            return 2;
    }
    int rest = argc - 1 - optind;
    char **restv = argv + 1 + optind;
    if (strcmp(sub, "create") == 0) {
        if (!role || api_role_parse(role) < 0 || rest) {
            fprintf(err, "lwm2md token create: --role viewer|operator|admin is required\n");
            return 2;
        }
        if (strlen(name) > 63) {
            fprintf(err, "lwm2md token create: --name is limited to 63 bytes\n");
            return 2;
        }
        if (!(pg = cli_connect(cfg, err)))
            return 1;
        status = cli_create(pg, role, name, out, err);
    } else if (strcmp(sub, "list") == 0 && rest == 0) {
        if (!(pg = cli_connect(cfg, err)))
            return 1;
        status = cli_list(pg, out, err);
    } else if (strcmp(sub, "revoke") == 0 && rest == 1) {
        if (!(pg = cli_connect(cfg, err)))
            return 1;
        status = cli_revoke(pg, restv[0], out, err);
    } else {
        fprintf(err, "lwm2md token: expected create, list or revoke ID\n");
    }
    PQfinish(pg);
    return status;
}
