/* server/store/migrate.h - forward-only schema migrations for PostgreSQL.
 *
 * Migrations are the files NNN_name.sql (NNN: one or more digits, then '_') of a schema directory,
 * applied in name order, each inside its own transaction together with its row in
 * schema_migrations (version = file name, checksum = SHA-256 of the file bytes). A file whose
 * checksum differs from the recorded one (an applied migration was edited) and a recorded version
 * with no file (the database is newer than this build) are errors: nothing is applied then.
 * Concurrent runners (two daemons starting, a CLI next to a daemon) are serialised by a session
 * advisory lock held for the whole run.
 *
 * Blocking libpq calls: use only from CLI code or at start-up before any loop runs. Not
 * thread-safe on one connection; different connections may be used from different threads.
 */
#ifndef LWM2MD_STORE_MIGRATE_H
#define LWM2MD_STORE_MIGRATE_H

#include <libpq-fe.h>
#include <stdio.h>

/* Advisory lock key shared by every runner ("lwm2mmig" as ASCII, in decimal for SQL). */
#define LW_STORE_MIGRATE_LOCK 7815835741676464487

struct lw_migrate_result {
    unsigned applied; /* migrations applied by this call */
    unsigned pending; /* migrations still pending (status: all unapplied; apply: 0 on success) */
    unsigned total;   /* migration files found */
};

/* Applies the pending migrations of `dir` on `pg` (borrowed, connected). Rows written before this
 * runner recorded checksums (checksum NULL) adopt the current file's checksum.
 * Returns 0; LW_ENOENT (no such directory), LW_EIO (unreadable file), LW_ESTALE (an applied
 * migration was edited or is missing from `dir`), LW_EDB (a statement failed; that migration is
 * rolled back, earlier ones stay). `why` (may be NULL) receives a one-line reason on failure;
 * `res` (may be NULL) the counts. */
int lw_store_migrate(PGconn *pg, const char *dir, struct lw_migrate_result *res, char *why,
                     size_t whycap);

/* Reports without changing anything: one line per migration to `out` (may be NULL):
 * "applied  <version>  <applied_at>", "pending  <version>", "EDITED   <version>" (checksum
 * mismatch), "MISSING  <version>" (recorded, no file). Same return codes as lw_store_migrate
 * (LW_ESTALE when any line is EDITED or MISSING). */
int lw_store_migrate_status(PGconn *pg, const char *dir, FILE *out, struct lw_migrate_result *res,
                            char *why, size_t whycap);

/* `lwm2md migrate [--status]`: argv[0] is "migrate". Uses cfg->db_url and cfg->db_schema_dir.
 * Returns the process exit status (0 ok, 1 failure or, with --status, pending migrations). */
struct lw_config;
int lw_store_cli_migrate(const struct lw_config *cfg, int argc, char **argv, FILE *out, FILE *err);

/* Daemon start-up (before loops and sockets): with database.migrate = auto applies pending
 * migrations; with off checks that none is pending. Logs the outcome. Returns 0 to go on (also
 * when there is no database.url, it is unreachable, or the schema directory does not exist:
 * warned), or a negative LW_E* code: refuse to start
 * (a migration failed, one is pending with migrate = off, or an applied one was edited). */
int lw_store_startup_migrate(const struct lw_config *cfg);

#endif
