-- schema/001_init.sql - API tokens and the audit log (W1.5). Applied once by the daemon's
-- migration runner (database.migrate = auto) or by `lwm2md token ...`; recorded in
-- schema_migrations.
CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL DEFAULT '',
    role        text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    salt        bytea       NOT NULL,
    sha256      bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE audit_log (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    target  text        NOT NULL DEFAULT '',
    result  integer     NOT NULL,
    detail  jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
