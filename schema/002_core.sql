-- schema/002_core.sql - persistent state of the LwM2M server (W1.8): devices and their credentials,
-- registrations, profiles, observations, queued operations and their history, telemetry
-- (partitioned by time), events, hibernated DTLS sessions and webhook subscriptions.
-- Forward-only: never edit this file once released; add NNN_name.sql files instead.
--
-- Conventions: an endpoint client name ("endpoint", text) identifies a device everywhere; times are
-- timestamptz (UTC); LwM2M paths are text in canonical form ("/3/0/1"); rows the daemon writes
-- behind carry updated_at so a restore can tell the newest state.

CREATE TABLE devices (
    endpoint    text        PRIMARY KEY CHECK (length(endpoint) BETWEEN 1 AND 255),
    profile_id  text,
    labels      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Security material. Secret keys (PSK, RPK/X.509 private parts the server keeps) are encrypted at
-- rest with AES-256-GCM under a master key identified by key_id; endpoint || kind is the
-- additional authenticated data, so a ciphertext moved to another row does not decrypt. Rotation:
-- load the new master key next to the old one, re-encrypt rows WHERE key_id = old, retire the old key.
CREATE TABLE credentials (
    endpoint    text        NOT NULL REFERENCES devices (endpoint) ON DELETE CASCADE,
    kind        text        NOT NULL CHECK (kind IN ('psk', 'rpk', 'x509', 'oscore')),
    identity    bytea       NOT NULL DEFAULT ''::bytea,   -- PSK identity, RPK/cert public part
    key_id      integer     NOT NULL,                     -- master key that encrypted secret
    nonce       bytea       NOT NULL CHECK (length(nonce) = 12),
    secret      bytea       NOT NULL,                     -- AES-GCM ciphertext || 16-byte tag
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint, kind)
);
CREATE INDEX credentials_key_id ON credentials (key_id);
-- A PSK identity names one device (the DTLS handshake looks devices up by it).
CREATE UNIQUE INDEX credentials_psk_identity ON credentials (identity) WHERE kind = 'psk';

-- Live registrations, one per endpoint (RFC-less: OMA LwM2M 1.2 Core 6.2). Written behind,
-- coalesced per endpoint; a deregistration or expiry deletes the row.
CREATE TABLE registrations (
    endpoint      text        PRIMARY KEY,
    reg_id        text        NOT NULL UNIQUE,      -- Location path segment (/rd/<reg_id>)
    shard         integer     NOT NULL DEFAULT 0,
    address       inet        NOT NULL,
    port          integer     NOT NULL CHECK (port BETWEEN 0 AND 65535),
    secure        boolean     NOT NULL DEFAULT false,  -- arrived over CoAPS
    lwm2m_version text        NOT NULL DEFAULT '1.0',
    binding       text        NOT NULL DEFAULT 'U',
    queue_mode    boolean     NOT NULL DEFAULT false,
    lifetime      integer     NOT NULL CHECK (lifetime > 0),
    sms_number    text,
    object_links  text        NOT NULL DEFAULT '',  -- canonical CoRE link format
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX registrations_expires_at ON registrations (expires_at);

-- Profiles: a profile id (pid) names an expected object set; devices.profile_id points here.
CREATE TABLE profiles (
    pid          text        PRIMARY KEY,
    object_links text        NOT NULL,             -- canonical CoRE link format
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Observations: "desired" ones are what operators asked for and are re-established after a new
-- Register; "active" ones carry the CoAP token of a running observation (kept across restarts,
-- so notifications keep matching without a new Observe).
CREATE TABLE observations (
    endpoint    text        NOT NULL REFERENCES devices (endpoint) ON DELETE CASCADE,
    path        text        NOT NULL,
    attributes  text        NOT NULL DEFAULT '',   -- pmin/pmax/gt/lt/st query string
    state       text        NOT NULL CHECK (state IN ('desired', 'active')),
    token       bytea       CHECK (token IS NULL OR length(token) <= 8),
    format      integer,                           -- CoAP Content-Format of notifications
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint, path)
);

-- Operations accepted by the API and not yet done (durable before the API answers 202).
CREATE TABLE operations (
    id          bigserial   PRIMARY KEY,
    endpoint    text        NOT NULL REFERENCES devices (endpoint) ON DELETE CASCADE,
    kind        text        NOT NULL CHECK (kind IN ('read', 'write', 'execute', 'create',
                                                      'delete', 'discover', 'write-attributes',
                                                      'observe', 'cancel-observe')),
    path        text        NOT NULL,
    format      integer,
    payload     bytea,
    state       text        NOT NULL DEFAULT 'queued'
                            CHECK (state IN ('queued', 'sent')),
    attempts    integer     NOT NULL DEFAULT 0,
    created_by  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    deadline    timestamptz
);
CREATE INDEX operations_endpoint ON operations (endpoint, id);

-- Finished operations (moved here from operations with their outcome).
CREATE TABLE operations_history (
    id          bigint      PRIMARY KEY,
    endpoint    text        NOT NULL,
    kind        text        NOT NULL,
    path        text        NOT NULL,
    result      text        NOT NULL,   -- CoAP response code ("2.05") or "timeout", "canceled"
    response    bytea,
    format      integer,
    created_by  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operations_history_endpoint ON operations_history (endpoint, finished_at);

-- Telemetry: one row per resource value from a Read, a Notify or a Send. Range-partitioned by
-- time; the daemon creates partitions ahead and drops those past the retention. The default
-- partition catches rows outside the created ranges so an insert never fails on a missing one.
CREATE TABLE telemetry (
    endpoint    text        NOT NULL,
    path        text        NOT NULL,
    at          timestamptz NOT NULL,
    source      text        NOT NULL CHECK (source IN ('read', 'notify', 'send')),
    v_num       double precision,
    v_int       bigint,
    v_bool      boolean,
    v_text      text,
    v_bytes     bytea
) PARTITION BY RANGE (at);
CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;
CREATE INDEX telemetry_endpoint_path_at ON telemetry (endpoint, path, at);

-- Device and server events (the SSE stream's history: resume by id beyond the in-memory ring).
CREATE TABLE events (
    id          bigint      PRIMARY KEY,    -- the SSE event id
    at          timestamptz NOT NULL DEFAULT now(),
    type        text        NOT NULL,
    endpoint    text,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_endpoint ON events (endpoint, id) WHERE endpoint IS NOT NULL;

-- Hibernated DTLS sessions (serialized session state, encrypted like credentials.secret), so a
-- device resumes after a restart without a new handshake.
CREATE TABLE dtls_sessions (
    endpoint    text        PRIMARY KEY,
    cid         bytea,                      -- connection id (RFC 9146) when negotiated
    address     inet        NOT NULL,
    port        integer     NOT NULL CHECK (port BETWEEN 0 AND 65535),
    key_id      integer     NOT NULL,
    nonce       bytea       NOT NULL CHECK (length(nonce) = 12),
    state       bytea       NOT NULL,
    saved_at    timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX dtls_sessions_cid ON dtls_sessions (cid) WHERE cid IS NOT NULL;

-- Webhook subscriptions made through the API (the configured webhooks.urls are not stored).
CREATE TABLE webhook_subscriptions (
    id          bigserial   PRIMARY KEY,
    url         text        NOT NULL,
    types       text[]      NOT NULL DEFAULT '{}',   -- empty: every event type
    key_id      integer     NOT NULL,                -- HMAC secret, encrypted like credentials
    nonce       bytea       NOT NULL CHECK (length(nonce) = 12),
    secret      bytea       NOT NULL,
    created_by  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);
