/* server/store/migrate.c - forward-only schema migrations (see migrate.h): file discovery,
 * SHA-256 checksums (wolfCrypt), the schema_migrations table, the advisory lock, the
 * `lwm2md migrate` subcommand and the start-up check. */
#include "store/migrate.h"

#include "base/err.h"
#include "base/util.h"
#include "config.h"
#include "log.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#define HEX_LEN (2 * WC_SHA256_DIGEST_SIZE)
#define XSTR(x) #x
#define STR(x)  XSTR(x)

struct mfile {
    char name[256];
    char sum[HEX_LEN + 1];
    char *sql; /* owned */
    size_t len;
    bool recorded;
};

struct run {
    struct mfile *files; /* owned, sorted by name */
    size_t nfiles;
    PGresult *rows; /* version, checksum, applied_at of schema_migrations (NULL: no table) */
};

static void say(char *why, size_t whycap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whycap, const char *fmt, ...)
{
    if (!why || !whycap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whycap, fmt, ap);
    va_end(ap);
    /* libpq messages end with a newline: keep reasons on one line */
    for (char *p = why; *p; p++)
        if (*p == '\n')
            *p = *(p + 1) ? ' ' : '\0';
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* NNN_name.sql: digits, an underscore, a name, the .sql suffix; hidden files excluded. */
static int is_migration(const struct dirent *d)
{
    const char *s = d->d_name;
    size_t n = strlen(s), i = 0;
    while (i < n && isdigit((unsigned char)s[i]))
        i++;
    return i > 0 && i < n && s[i] == '_' && n > i + 5 && n < 256 && strcmp(s + n - 4, ".sql") == 0;
}

static int read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    FILE *m = NULL;
    char buf[8192];
    size_t got;
    int rc = LW_EIO;
    *data = NULL;
    *len = 0;
    if (!f)
        goto out;
    m = open_memstream(data, len);
    if (!m) {
        rc = LW_ENOMEM;
        goto out;
    }
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
        if (fwrite(buf, 1, got, m) != got)
            goto out;
    if (ferror(f))
        goto out;
    rc = 0;
out:
    if (m && fclose(m) != 0 && rc == 0)
        rc = LW_ENOMEM;
    if (f)
        fclose(f);
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

static void run_free(struct run *r)
{
    for (size_t i = 0; i < r->nfiles; i++)
        free(r->files[i].sql);
    free(r->files);
    PQclear(r->rows);
    memset(r, 0, sizeof(*r));
}

static int load_files(struct run *r, const char *dir, char *why, size_t whycap)
{
    struct dirent **list = NULL;
    int rc = 0;
    if (!dir || !*dir) {
        say(why, whycap, "database.schema_dir is empty");
        return LW_ENOENT;
    }
    int n = scandir(dir, &list, is_migration, alphasort);
    if (n < 0) {
        say(why, whycap, "cannot read schema directory %.300s: %s (set database.schema_dir)", dir,
            strerror(errno));
        return LW_ENOENT;
    }
    r->files = calloc(n ? (size_t)n : 1, sizeof(*r->files));
    if (!r->files) {
        rc = LW_ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        struct mfile *f = &r->files[r->nfiles++];
        char path[4400];
        uint8_t dig[WC_SHA256_DIGEST_SIZE];
        snprintf(f->name, sizeof(f->name), "%s", list[i]->d_name);
        snprintf(path, sizeof(path), "%s/%s", dir, f->name);
        rc = read_file(path, &f->sql, &f->len);
        if (rc) {
            say(why, whycap, "cannot read %.300s", path);
            goto out;
        }
        if (wc_Sha256Hash((const byte *)f->sql, (word32)f->len, dig) != 0) {
            say(why, whycap, "sha-256 of %.200s failed", f->name);
            rc = LW_EINTERNAL;
            goto out;
        }
        lw_hex_encode(f->sum, dig, sizeof(dig));
    }
out:
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return rc;
}

static bool exec_ok(PGconn *pg, const char *sql, char *why, size_t whycap)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        say(why, whycap, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(pg));
    PQclear(res);
    return ok;
}

/* Reads schema_migrations if it exists. to_jsonb(m) also reads tables created before the
 * checksum column existed (the key is then absent: NULL). */
static int load_rows(struct run *r, PGconn *pg, char *why, size_t whycap)
{
    PGresult *res = PQexec(pg, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        say(why, whycap, "%s", PQerrorMessage(pg));
        PQclear(res);
        return LW_EDB;
    }
    bool exists = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!exists)
        return 0;
    r->rows = PQexec(pg, "SELECT version, to_jsonb(m)->>'checksum', "
                         "to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                         "FROM schema_migrations m ORDER BY version");
    if (PQresultStatus(r->rows) != PGRES_TUPLES_OK) {
        say(why, whycap, "%s", PQerrorMessage(pg));
        return LW_EDB;
    }
    return 0;
}

static struct mfile *find_file(struct run *r, const char *name)
{
    for (size_t i = 0; i < r->nfiles; i++)
        if (strcmp(r->files[i].name, name) == 0)
            return &r->files[i];
    return NULL;
}

/* Matches recorded rows to files. Prints status lines to `out` when given; with `adopt`, rows
 * without a checksum take the file's (they were written by the runner that kept no checksums).
 * Returns 0 or LW_ESTALE (first problem in `why`) or LW_EDB. */
static int verify(struct run *r, PGconn *pg, FILE *out, bool adopt, char *why, size_t whycap)
{
    int rc = 0;
    int n = r->rows ? PQntuples(r->rows) : 0;
    for (int i = 0; i < n; i++) {
        const char *ver = PQgetvalue(r->rows, i, 0);
        bool nosum = PQgetisnull(r->rows, i, 1);
        const char *sum = PQgetvalue(r->rows, i, 1);
        const char *at = PQgetvalue(r->rows, i, 2);
        struct mfile *f = find_file(r, ver);
        if (!f) {
            if (out)
                fprintf(out, "MISSING  %s  %s\n", ver, at);
            if (!rc)
                say(why, whycap,
                    "migration %.200s is applied but not in the schema directory: this build is "
                    "older than the database",
                    ver);
            rc = LW_ESTALE;
            continue;
        }
        f->recorded = true;
        if (!nosum && strcmp(sum, f->sum) != 0) {
            if (out)
                fprintf(out, "EDITED   %s  %s\n", ver, at);
            if (!rc)
                say(why, whycap,
                    "migration %.200s was edited after it was applied (checksum mismatch): "
                    "restore the original file and add a new migration instead",
                    ver);
            rc = LW_ESTALE;
            continue;
        }
        if (nosum && adopt) {
            const char *params[2] = {f->sum, ver};
            PGresult *res =
                PQexecParams(pg, "UPDATE schema_migrations SET checksum = $1 WHERE version = $2", 2,
                             NULL, params, NULL, NULL, 0);
            bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
            PQclear(res);
            if (!ok) {
                say(why, whycap, "%s", PQerrorMessage(pg));
                return LW_EDB;
            }
        }
        if (out)
            fprintf(out, "applied  %s  %s\n", ver, at);
    }
    return rc;
}

static void count(struct run *r, struct lw_migrate_result *res, unsigned applied)
{
    if (!res)
        return;
    res->total = (unsigned)r->nfiles;
    res->applied = applied;
    res->pending = 0;
    for (size_t i = 0; i < r->nfiles; i++)
        res->pending += !r->files[i].recorded;
}

int lw_store_migrate_status(PGconn *pg, const char *dir, FILE *out, struct lw_migrate_result *res,
                            char *why, size_t whycap)
{
    struct run r = {0};
    int rc = load_files(&r, dir, why, whycap);
    if (!rc)
        rc = load_rows(&r, pg, why, whycap);
    if (!rc || rc == LW_ESTALE) {
        rc = verify(&r, pg, out, false, why, whycap);
        if (rc != LW_EDB)
            for (size_t i = 0; out && i < r.nfiles; i++)
                if (!r.files[i].recorded)
                    fprintf(out, "pending  %s\n", r.files[i].name);
        count(&r, res, 0);
    }
    run_free(&r);
    return rc;
}

int lw_store_migrate(PGconn *pg, const char *dir, struct lw_migrate_result *res, char *why,
                     size_t whycap)
{
    struct run r = {0};
    unsigned applied = 0;
    bool locked = false;
    char w2[256];
    int rc = load_files(&r, dir, why, whycap);
    if (rc)
        goto out;
    PQsetNoticeProcessor(pg, quiet_notice, NULL);
    rc = LW_EDB;
    /* Session lock: held across the per-file transactions, released below or when the
     * connection ends. */
    if (!exec_ok(pg, "SELECT pg_advisory_lock(" STR(LW_STORE_MIGRATE_LOCK) ")", why, whycap))
        goto out;
    locked = true;
    if (!exec_ok(pg,
                 "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                 "applied_at timestamptz NOT NULL DEFAULT now())",
                 why, whycap) ||
        !exec_ok(pg, "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text", why,
                 whycap))
        goto out;
    rc = load_rows(&r, pg, why, whycap);
    if (rc)
        goto out;
    rc = verify(&r, pg, NULL, true, why, whycap);
    if (rc)
        goto out;
    for (size_t i = 0; i < r.nfiles; i++) {
        struct mfile *f = &r.files[i];
        if (f->recorded)
            continue;
        const char *params[2] = {f->name, f->sum};
        rc = LW_EDB;
        if (!exec_ok(pg, "BEGIN", why, whycap))
            goto out;
        if (!exec_ok(pg, f->sql, w2, sizeof(w2))) {
            say(why, whycap, "%.200s: %s", f->name, w2);
            exec_ok(pg, "ROLLBACK", w2, sizeof(w2));
            goto out;
        }
        PGresult *ins =
            PQexecParams(pg, "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)", 2,
                         NULL, params, NULL, NULL, 0);
        bool ok = PQresultStatus(ins) == PGRES_COMMAND_OK;
        if (!ok)
            say(why, whycap, "%.200s: %s", f->name, PQresultErrorMessage(ins));
        PQclear(ins);
        if (!ok || !exec_ok(pg, "COMMIT", why, whycap)) {
            exec_ok(pg, "ROLLBACK", w2, sizeof(w2));
            goto out;
        }
        f->recorded = true;
        applied++;
    }
    rc = 0;
out:
    if (locked)
        exec_ok(pg, "SELECT pg_advisory_unlock(" STR(LW_STORE_MIGRATE_LOCK) ")", w2, sizeof(w2));
    count(&r, res, applied);
    run_free(&r);
    return rc;
}

int lw_store_cli_migrate(const struct lw_config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
    bool status = false;
    int ret = 1;
    char why[512] = "";
    struct lw_migrate_result res = {0};
    PGconn *pg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--status") == 0) {
            status = true;
        } else {
            fprintf(err, "lwm2md migrate: unexpected argument '%s' (usage: migrate [--status])\n",
                    argv[i]);
            return 2;
        }
    }
    if (!cfg->db_url || !*cfg->db_url) {
        fprintf(err, "lwm2md migrate: database.url is not set\n");
        return 1;
    }
    pg = PQconnectdb(cfg->db_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(err, "lwm2md migrate: cannot connect to the database: %s", PQerrorMessage(pg));
        goto out;
    }
    if (status) {
        int rc = lw_store_migrate_status(pg, cfg->db_schema_dir, out, &res, why, sizeof(why));
        if (rc) {
            fprintf(err, "lwm2md migrate: %s\n", why);
            goto out;
        }
        fprintf(out, "%u migration%s, %u pending\n", res.total, res.total == 1 ? "" : "s",
                res.pending);
        ret = res.pending ? 3 : 0;
        goto out;
    }
    if (lw_store_migrate(pg, cfg->db_schema_dir, &res, why, sizeof(why)) != 0) {
        fprintf(err, "lwm2md migrate: %s\n", why);
        goto out;
    }
    fprintf(out, "schema up to date: %u migration%s, %u applied now\n", res.total,
            res.total == 1 ? "" : "s", res.applied);
    ret = 0;
out:
    PQfinish(pg);
    return ret;
}

/* Without schema files the daemon cannot check the database, only that it has been migrated at
 * all: an empty database would make every write fail at run time, so that refuses the start. */
static int no_schema_files(PGconn *pg, const char *why)
{
    PGresult *r = PQexec(pg, "SELECT count(*) FROM schema_migrations");
    bool migrated = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                    strcmp(PQgetvalue(r, 0, 0), "0") != 0;
    PQclear(r);
    if (!migrated) {
        log_err(STORE,
                "refusing to start: the database has no lwm2md schema and %s: set "
                "database.schema_dir or run `lwm2md migrate`",
                why);
        return LW_ESTALE;
    }
    log_warn(STORE, "schema check skipped: %s", why);
    return 0;
}

int lw_store_startup_migrate(const struct lw_config *cfg)
{
    char why[512] = "";
    struct lw_migrate_result res = {0};
    int rc = 0;
    if (!cfg->db_url || !*cfg->db_url)
        return 0;
    /* Start-up, before any loop runs: blocking libpq is acceptable here. */
    PGconn *pg = PQconnectdb(cfg->db_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        /* Serving from memory through an outage includes starting during one; the store
         * checks again when it connects. */
        log_warn(STORE, "schema check skipped: database not reachable");
        goto out;
    }
    if (cfg->db_migrate == LW_MIGRATE_AUTO) {
        rc = lw_store_migrate(pg, cfg->db_schema_dir, &res, why, sizeof(why));
        if (rc == LW_ENOENT) {
            /* No schema files here (not installed, no database.schema_dir): a migrated
             * database is used as it is, as when it is unreachable. */
            rc = no_schema_files(pg, why);
        } else if (rc)
            log_err(STORE, "refusing to start: schema migration failed: %s", why);
        else if (res.applied)
            log_notice(STORE, "schema migrated: %u migration(s) applied, %u in total", res.applied,
                       res.total);
        else
            log_info(STORE, "database schema up to date: %u migration(s)", res.total);
        goto out;
    }
    rc = lw_store_migrate_status(pg, cfg->db_schema_dir, NULL, &res, why, sizeof(why));
    if (rc == LW_ENOENT) {
        rc = no_schema_files(pg, why);
    } else if (rc) {
        log_err(STORE, "refusing to start: schema check failed: %s", why);
    } else if (res.pending) {
        log_err(STORE,
                "refusing to start: %u schema migration(s) pending and database.migrate = off: "
                "run `lwm2md migrate`",
                res.pending);
        rc = LW_ESTALE;
    } else {
        log_info(STORE, "database schema up to date: %u migration(s)", res.total);
    }
out:
    PQfinish(pg);
    return rc;
}
