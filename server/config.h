/* server/config.h - layered configuration.
 *
 * Layers, lowest first: built-in defaults < main file (INI, via libinih) < <dir of main
 * file>/conf.d/
 * *.conf in name order < environment LWM2MD_<SECTION>_<KEY> < --set section.key=value. Every key is
 * declared once in the table in config.c (type, default, limits, reloadability, secret flag, doc);
 * unknown sections or keys are errors. Errors name the origin ("FILE:LINE", "env LWM2MD_X_Y",
 * "--set") and the key. Values are validated and converted into struct lw_config.
 *
 * Threads: the control thread loads and reloads; shards receive immutable snapshots by message.
 */
#ifndef LW_SERVER_CONFIG_H
#define LW_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LW_CFG_MAX_LISTEN 8

enum lw_log_format { LW_LOGFMT_AUTO, LW_LOGFMT_LOGFMT, LW_LOGFMT_JSON, LW_LOGFMT_JOURNAL };
enum lw_db_migrate { LW_MIGRATE_AUTO, LW_MIGRATE_OFF };
enum lw_coaps_versions { LW_COAPS_VANY, LW_COAPS_V12, LW_COAPS_V13 };

/* server.steering: the kernel's CBPF program picks each datagram's shard, or the kernel spreads
 * them by its own hash and the shards forward what belongs to another (udp.h). */
enum lw_steering { LW_STEER_KERNEL, LW_STEER_FORWARD };

struct lw_listen {
    char host[64]; /* numeric IPv4/IPv6 address, brackets removed */
    uint16_t port;
};

struct lw_config {
    /* [server] */
    unsigned shards; /* 0 = one per CPU */
    char *state_dir;
    unsigned node_id;
    size_t udp_buffer;         /* kernel receive buffer per UDP socket, bytes; 0 = default */
    enum lw_steering steering; /* who picks each datagram's shard (udp.h) */
    /* [coap] */
    struct lw_listen coap_listen[LW_CFG_MAX_LISTEN];
    unsigned coap_listen_n;
    unsigned coap_ack_timeout;     /* ms (RFC 7252 ACK_TIMEOUT) */
    double coap_ack_random_factor; /* RFC 7252 ACK_RANDOM_FACTOR */
    unsigned coap_max_retransmit;  /* RFC 7252 MAX_RETRANSMIT */
    unsigned coap_max_peers;       /* per shard; 0 = unlimited */
    struct lw_listen coaps_listen[LW_CFG_MAX_LISTEN];
    unsigned coaps_listen_n;
    char *coaps_cert;    /* server certificate chain (PEM/DER), "" = PSK only */
    char *coaps_key;     /* its private key (ECDSA P-256) */
    char *coaps_ca;      /* trust store for client certificates, "" = none */
    bool coaps_rpk;      /* RFC 7250 raw public keys: present coaps_key's public key, no cert */
    char *coaps_ciphers; /* wolfSSL suite list, "" = built-in default */
    enum lw_coaps_versions coaps_versions;
    char *coaps_psk_hint;             /* PSK identity hint (DTLS 1.2), "" = none */
    bool coaps_cid;                   /* negotiate RFC 9146 connection ids */
    unsigned coaps_hibernate_idle;    /* ms idle before a session is exported; 0 = never */
    unsigned coaps_handshake_timeout; /* ms */
    unsigned coaps_max_handshakes;    /* per shard in flight */
    unsigned coaps_hello_rate;        /* hellos/s per source prefix and shard; 0 = no limit */
    unsigned coaps_handshake_backlog; /* hellos waiting for a handshake slot per shard; 0 = none */
    /* [api] */
    struct lw_listen api_listen[LW_CFG_MAX_LISTEN];
    unsigned api_listen_n;
    char *api_bootstrap_token_file;
    bool api_probes_public;       /* /healthz /readyz /metrics without a token */
    unsigned api_max_connections; /* open connections; more are refused */
    size_t api_max_header_size;   /* request line + headers, bytes */
    size_t api_max_body_size;     /* request body, bytes */
    unsigned api_max_requests;    /* requests per connection before Connection: close */
    unsigned api_header_timeout;  /* ms to receive a request's headers */
    unsigned api_idle_timeout;    /* ms an idle keep-alive connection stays open */
    unsigned api_sse_ring;        /* events kept for Last-Event-ID resumption */
    unsigned api_sse_heartbeat;   /* ms between SSE heartbeat comments */
    size_t api_sse_max_backlog;   /* bytes queued to a slow SSE client before it is dropped */
    unsigned api_token_refresh;   /* ms between reloads of the token table from the database */
    char *api_tls_cert;           /* PEM certificate chain: TLS on every api.listen when set */
    char *api_tls_key;            /* PEM private key */
    /* [webhooks] */
    char *webhooks_urls;           /* comma-separated subscriber URLs ("" = off) */
    char *webhooks_secret_file;    /* HMAC key file */
    char *webhooks_types;          /* comma-separated event types ("" = all) */
    unsigned webhooks_batch_max;   /* events per delivery */
    unsigned webhooks_batch_delay; /* ms to wait for more events before posting */
    unsigned webhooks_timeout;     /* ms per HTTP attempt */
    unsigned webhooks_retry_max;   /* attempts after the first before a batch is dropped */
    unsigned webhooks_retry_base;  /* ms; doubles per attempt, capped at 5 minutes */
    unsigned webhooks_queue_max;   /* events queued per subscriber before the oldest are dropped */
    /* [telemetry] */
    bool telemetry_enabled;       /* values of reads, notifications and Send into `telemetry` */
    unsigned telemetry_retention; /* days of telemetry kept (whole daily partitions); 0 = all */
    size_t telemetry_memory;      /* bytes queued in memory before records spill to files */
    char *telemetry_spill_dir;    /* "" = <state_dir>/telemetry-spill */
    /* [database] */
    char *db_url; /* secret: may carry a password */
    enum lw_db_migrate db_migrate;
    char *db_schema_dir;    /* directory of the NNN_name.sql migrations */
    unsigned db_write_hold; /* ms: longest storm hold of the registration write-behind; 0 = none */
    /* [security] */
    char *sec_master_key_file;      /* current master key (secrets.h), "" = systemd credential */
    char *sec_old_master_key_files; /* comma-separated older keys, read only */
    /* [log] */
    char *log_level;  /* default level: err warning notice info debug */
    char *log_groups; /* per-group overrides: "net=debug,coap=warning" */
    enum lw_log_format log_format;
    unsigned log_rate_limit; /* messages per second per call site on hot paths */
    /* [registration] */
    unsigned reg_lifetime_default; /* s, when Register has no lt */
    unsigned reg_lifetime_min;     /* s */
    unsigned reg_lifetime_max;     /* s */
    unsigned reg_expiry_grace;     /* ms added to the lifetime before expiry */
    unsigned reg_max;              /* registrations in the whole server; 0 = unlimited */
    char *reg_profiles_file;       /* JSON {"pid": "</1/0>,</3/0>"}; "" = none */
    /* [objects] */
    char *objects_dir; /* DDF XML files loaded at start, "" = built-in core objects only */
    /* [operations] */
    unsigned ops_timeout;      /* ms before a sent operation counts as timed out */
    unsigned ops_wait_default; /* ms an API call waits for its operation without ?wait */
    unsigned ops_history;      /* finished operations kept for GET /api/v1/operations/{id} */
    /* [queue] */
    unsigned queue_awake_time; /* ms a queue-mode device is reachable after each uplink */
    unsigned queue_max_held;   /* requests held per sleeping device */
};

/* Origin of a value, for --print-config and error messages. */
struct lw_cfg_origin {
    char where[256]; /* "default", "FILE:LINE", "env LWM2MD_X_Y", "--set" */
};

struct lw_cfg_set {
    const char *key; /* "section.key" */
    const char *value;
};

struct lw_cfg_load {
    const char *main_file;         /* NULL: defaults + env + --set only */
    const struct lw_cfg_set *sets; /* --set values, in order */
    size_t nsets;
    char *const *environ; /* environment to read (NULL: none) */
};

struct lw_cfg_state; /* loaded config + origins; opaque */

/* Loads every layer. On success returns 0 and *out (owned; free with lw_cfg_free). On failure
 * returns LW_ECONFIG and writes one line per problem to errout, each "ORIGIN: key 'k': reason"
 * (the caller exits with status 2). */
int lw_cfg_load(const struct lw_cfg_load *req, struct lw_cfg_state **out, FILE *errout);
void lw_cfg_free(struct lw_cfg_state *st);
/* The typed values (borrowed; valid while st is). */
const struct lw_config *lw_cfg_get(const struct lw_cfg_state *st);
/* Writes every key with its effective value and origin, secrets masked. */
void lw_cfg_print(const struct lw_cfg_state *st, FILE *out);
/* Compares two loads; writes the names of changed keys that need a restart into errout-style
 * lines on `out` and returns their count (0: the new config can be applied live). */
int lw_cfg_diff_restart(const struct lw_cfg_state *old_st, const struct lw_cfg_state *new_st,
                        FILE *out);
/* Number of declared keys, and the name of key i ("section.key"), for docs consistency tests. */
size_t lw_cfg_key_count(void);
const char *lw_cfg_key_name(size_t i);
bool lw_cfg_key_reloadable(size_t i);

#endif
