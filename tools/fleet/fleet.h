/* tools/fleet/fleet.h - internals shared by the lwm2m-fleet sources.
 *
 * One thread runs everything: an epoll loop over 2*K UDP sockets (two "port epochs" for the NAT
 * rebinding scenario), a timer wheel with one timer per device, and the scenario driver. Devices
 * live in one array; a device's address is derived from its index (127.1.0.0 + idx / K, socket
 * idx % K), so the receive path finds the device from the datagram's destination address
 * (IP_PKTINFO) without a table. Per-device state is compact; everything rarely used (observations,
 * attributes, firmware transfers) sits in a lazily allocated struct dev_extra.
 *
 * Threads: everything here belongs to the main thread.
 */
#ifndef LW_FLEET_FLEET_H
#define LW_FLEET_FLEET_H

#include "fleetfile.h"

#include "base/timer.h"
#include "coap/coap.h"
#include "lwm2m/value.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* ---- operations and statistics ---- */
enum fleet_op {
    OP_REGISTER = 0,
    OP_UPDATE,
    OP_DEREGISTER,
    OP_SEND,
    OP_NOTIFY,
    OP_FW_PULL,
    /* server-initiated (device-side processing time) */
    OP_READ,
    OP_DISCOVER,
    OP_WRITE,
    OP_WRITE_ATTR,
    OP_EXECUTE,
    OP_OBSERVE,
    OP_OBSERVE_CANCEL,
    OP_READ_COMPOSITE,
    OP_WRITE_COMPOSITE,
    OP_FW_PUSH,
    OP_CREATE_DELETE,
    OP_HANDSHAKE, /* DTLS handshake (psk groups): first ClientHello to Finished */
    OP__COUNT
};

/* Log-linear latency histogram in microseconds: 32 sub-buckets per power of two (about 3 %
 * relative error), up to 2^40 us. */
#define HIST_SUB     32
#define HIST_BUCKETS (41 * HIST_SUB)
struct hist {
    uint64_t count;
    uint64_t max_us;
    uint64_t sum_us;
    uint32_t b[HIST_BUCKETS];
};
void hist_add(struct hist *h, uint64_t us);
/* Value at quantile q (0..1) in microseconds (upper edge of the bucket, capped at max). */
uint64_t hist_quantile(const struct hist *h, double q);

/* Failure reasons other than CoAP response codes. */
enum fleet_reason {
    R_TIMEOUT = 0,
    R_RESET,
    R_CANCELED,
    R_BLOCKWISE,
    R_NO_LOCATION,
    R_SEND_ERRNO,
    R_NOMEM,
    R_DTLS, /* DTLS handshake failed (alert, bad key) */
    R__COUNT
};

struct op_stats {
    uint64_t ok;
    uint64_t errors;
    uint64_t by_code[256]; /* error responses by CoAP code */
    uint64_t by_reason[R__COUNT];
    struct hist lat;
    uint64_t first_start_us, last_done_us; /* window of this operation: its rate is ok / window */
};

struct fleet_stats {
    struct op_stats op[OP__COUNT];
    uint64_t tx_dgrams, rx_dgrams, tx_bytes, rx_bytes;
    uint64_t retransmissions;
    uint64_t dropped_loss, duplicated, reordered;
    uint64_t rx_unknown;  /* datagrams for no device / from an unknown source */
    uint64_t rx_stale;    /* to a device's previous port (after a rebind) */
    uint64_t rx_asleep;   /* dropped while the device slept (queue mode) */
    uint64_t rx_rejected; /* the CoAP layer refused (malformed, duplicate, unmatched) */
    uint64_t tx_errors;
    uint32_t registered; /* currently registered devices */
    uint32_t ever_registered;
    uint32_t registered_at_end; /* registered when the steady phase ended */
    uint32_t observations;
    /* DTLS (psk groups) and rebinding */
    uint64_t handshakes_started;
    uint64_t hs_retransmissions;  /* handshake flights sent again on the timer */
    uint64_t hs_abandoned;        /* handshakes dropped unfinished (power loss, rebind, end) */
    uint64_t cid_sessions;        /* established sessions where the server issued a CID */
    uint64_t dtls_failures;       /* established sessions that failed or were closed */
    uint64_t rebinds;             /* source port changes */
    uint64_t rebinds_cid;         /* ... that kept their DTLS session (CID) */
    uint64_t rebinds_rehandshake; /* ... that needed a new handshake (no CID) */
};

/* ---- devices ---- */
enum dev_state {
    DS_OFF = 0,     /* not started yet, or stopped */
    DS_REGISTERING, /* Register in flight */
    DS_REGISTERED,  /* registered; Updates run */
    DS_RETRY,       /* registration failed; retry at next_update */
    DS_DEREGISTERING,
    DS_REBOOTING, /* down until next_update, then registers again */
};

enum fw_state { FW_IDLE = 0, FW_DOWNLOADING = 1, FW_DOWNLOADED = 2, FW_UPDATING = 3 };

#define DEV_MAX_OBS   4
#define DEV_MAX_ATTRS 8
#define OBS_MAX_PATHS 4

struct dev_attr {
    struct lw_m2m_path path;
    uint8_t has; /* ATTR_* bits */
    uint32_t pmin, pmax;
    double gt, lt, st;
};
#define ATTR_PMIN 1
#define ATTR_PMAX 2
#define ATTR_GT   4
#define ATTR_LT   8
#define ATTR_ST   16

struct dev_obs {
    struct lw_coap_req_ref ref; /* the observe request (token; type NON used for notifies) */
    struct lw_m2m_path paths[OBS_MAX_PATHS];
    uint8_t npaths;
    bool composite;
    bool active;
    uint16_t cf;
    uint32_t seq;
    uint16_t last_mid; /* MID of the latest notification (an RST to it cancels, RFC 7641 §3.6) */
    uint64_t last_ms;
    uint64_t last_hash;
    double last_num;
    bool has_num;
};

struct fw_peer {
    struct lw_coap_ep ep;
    struct sockaddr_in addr;
    struct fleet_dev *dev;
    bool active;
};

struct app_inst; /* model.c */
struct dev_sec;  /* sec.c */

struct dev_extra {
    struct dev_obs obs[DEV_MAX_OBS];
    struct dev_attr attrs[DEV_MAX_ATTRS];
    uint8_t nattrs;
    struct lw_coap_b1rx b1; /* firmware push (Block1 to /5/0/0) */
    bool b1_init;
    struct fw_peer fw; /* firmware pull (GET Package URI with Block2) */
    char fw_uri[256];
    uint64_t fw_due;       /* next firmware state machine step (0: none) */
    uint64_t fw_start;     /* download start (latency of OP_FW_PULL) */
    uint64_t next_obs;     /* next observation evaluation (0: none) */
    uint64_t reboot_at;    /* Reboot executed: go down at this time (0: none) */
    struct app_inst *apps; /* object 19 instances created by the server, by instance id */
};

struct fleet_dev {
    struct lw_coap_ep ep;  /* exchange with the LwM2M server */
    struct lw_timer timer; /* one per device: earliest of everything below */
    char *loc;             /* registration location ("rd/abc"), heap, NULL when unregistered */
    struct dev_extra *x;   /* lazily allocated */
    struct dev_sec *sec;   /* DTLS session of a psk device, allocated on first send */
    uint64_t next_update;  /* next Update (registered) / retry or reboot end (other states) */
    uint64_t next_send;    /* next Send (0: none) */
    uint64_t last_uplink;  /* queue mode: awake until last_uplink + awake_ms */
    uint32_t idx;
    uint32_t lifetime_s;   /* /1/0/1 (writable) */
    uint16_t last_con_mid; /* retransmission detection */
    uint8_t state;         /* enum dev_state */
    uint8_t group;
    uint8_t epoch;     /* port set in use (flips on rebind) */
    uint8_t fw_state;  /* enum fw_state */
    uint8_t fw_result; /* /5/0/5 */
    uint8_t fw_gen;    /* installed firmware generation (/3/0/3 "1.0.<gen>") */
    bool has_sent_con;
    bool ever_registered;
    bool want_update; /* an Update is due as soon as possible (trigger, rebind) */
};

struct group_rt {
    struct fleet_group cfg;
    uint32_t first, count; /* device index range */
};

struct fleet_opts {
    const char *server;
    uint64_t devices; /* 0: from the fleet file */
    double rate;
    uint64_t duration_ms;
    bool has_duration;
    uint64_t event_at_ms; /* storm/rebind this long after the ramp-up (0: half the duration) */
    const char *fleet_file;
    int security;
    const char *psk_identity, *psk_key;
    int scenario;
    long server_pid;
    const char *report_json;
    const char *allow_target; /* CIDR */
    uint32_t sockets;
    double loss, dup, reorder;
    bool quiet;
    bool no_deregister;
    const char *api, *api_token; /* PSK provisioning */
    double provision_rate;       /* PUTs per second (0: 500) */
    uint32_t provision_conc;     /* PUTs in flight (0: 16) */
    int dtls_version;            /* --dtls: 12 or 13 (0: the group's) */
    bool no_cid;                 /* --no-cid */
    const char *floor;           /* --floor-server HOST:PORT: run the benchmark floor instead */
};

#define TXQ_LEN 32
struct txq_ent {
    uint32_t src; /* network order */
    uint16_t len;
    struct sockaddr_in dst;
    uint8_t data[LW_COAP_MAX_DGRAM];
};
struct fleet_sock {
    int fd;
    uint16_t port; /* host order */
    uint8_t epoch;
    uint32_t slot;
    unsigned nq;
    struct txq_ent *q; /* TXQ_LEN entries */
};

struct fleet_eng {
    struct fleet_opts opt;
    struct fleet_file file;
    struct group_rt groups[FLEET_MAX_GROUPS];
    uint32_t ngroups;
    struct fleet_dev *devs;
    uint32_t ndev;
    uint32_t k;               /* sockets per epoch */
    struct fleet_sock *socks; /* 2*k: epoch e slot s at [e*k + s] */
    int epfd;
    struct sockaddr_in server;
    struct lw_wheel wheel;
    struct lw_coap_env env, fw_env;
    uint64_t now; /* ms, monotonic, cached per loop iteration */
    uint64_t t0;  /* start */
    double wall0; /* wall-clock seconds at t0 (for Current Time, SenML t) */
    uint64_t rng[2];
    struct fleet_stats st;
    bool stopping; /* final phase: no more Updates/Sends */
    bool closing;  /* tearing down: held-back datagrams are discarded */
    uint32_t started;
    uint64_t delayed;          /* packets in the reorder queue */
    uint64_t rss_base_kb;      /* simulator RSS before any device started */
    uint64_t rss_steady_kb;    /* ... when the steady phase ended */
    uint64_t dtls_live_at_end; /* DTLS sessions allocated then */
    uint32_t provisioned;      /* --provision: credentials PUT successfully */
    double provision_s;        /* ... in this many seconds */
};

extern struct fleet_eng *E;

/* util */
uint64_t fleet_now_ms(void);
uint64_t fleet_rand(void);
double fleet_rand01(void);
uint64_t fleet_hash(uint64_t a, uint64_t b);

/* net.c */
int net_open(struct fleet_eng *e, char *err, size_t errcap);
void net_close(struct fleet_eng *e);
uint32_t net_dev_addr(const struct fleet_eng *e, uint32_t idx); /* network order */
/* Queues a datagram from device idx (its current epoch) to dst. */
void net_send(struct fleet_eng *e, const struct fleet_dev *d, const struct sockaddr_in *dst,
              const uint8_t *data, size_t len);
void net_flush(struct fleet_eng *e);
/* Waits at most timeout_ms for datagrams and dispatches them. */
void net_poll(struct fleet_eng *e, int timeout_ms);

/* device.c */
int dev_env_init(struct fleet_eng *e);
void dev_start(struct fleet_dev *d);                    /* begins registering */
void dev_deregister(struct fleet_dev *d);               /* sends De-register (when registered) */
void dev_power_cycle(struct fleet_dev *d, uint64_t at); /* storm: forget state, register at `at` */
void dev_rebind(struct fleet_dev *d);                   /* new source port, Update at once */
void dev_input(struct fleet_dev *d, const struct sockaddr_in *src, const uint8_t *data, size_t len);
void dev_schedule(struct fleet_dev *d);
void dev_free(struct fleet_dev *d);
const struct fleet_group *dev_group(const struct fleet_dev *d);
int dev_endpoint(const struct fleet_dev *d, char *out, size_t cap);
void stats_op(enum fleet_op op, uint64_t start_ms_us, bool ok, int code, int reason);
uint64_t fleet_now_us(void);

/* Feeds one plaintext CoAP datagram from the server to d (after DTLS, if any). */
void dev_coap_input(struct fleet_dev *d, const uint8_t *data, size_t len);
/* sec.c -> device.c: the handshake a Register waited for (sec_connect) ended. */
void dev_secure_up(struct fleet_dev *d);
void dev_secure_failed(struct fleet_dev *d, enum fleet_reason why);

/* sec.c: DTLS PSK sessions of psk devices */
int sec_init(struct fleet_eng *e, char *err, size_t cap);
void sec_deinit(void);
bool dev_secure(const struct fleet_dev *d);
void sec_send(struct fleet_dev *d, const uint8_t *data, size_t len);  /* CoAP datagram out */
void sec_input(struct fleet_dev *d, const uint8_t *data, size_t len); /* record(s) in */
uint64_t sec_deadline(const struct fleet_dev *d);
void sec_timeout(struct fleet_dev *d);
void sec_rebind(struct fleet_dev *d);
void sec_drop(struct fleet_dev *d); /* power loss / teardown */
/* Register over DTLS: true when the session is up (send now); else starts the handshake if none
 * runs and returns false: dev_secure_up / dev_secure_failed follow. sec_reg_start_us: when
 * the Register began (the handshake's start when it waited for one, else now). */
bool sec_connect(struct fleet_dev *d);
uint64_t sec_reg_start_us(struct fleet_dev *d);
size_t sec_live(void);

/* floor.c: the stateless benchmark floor server; runs until SIGINT/SIGTERM. Exit status. */
int floor_server(const char *hostport);

/* provision.c: PUT each psk device's credentials to the lwm2md API. 0 when all succeeded. */
int provision_run(struct fleet_eng *e, FILE *log);

/* model.c: the object model. Server request handling for the device. */
void model_on_request(struct fleet_dev *d, const struct lw_coap_msg *msg, uint64_t now);
/* Evaluates d's observations; sends due notifications. */
void model_eval_obs(struct fleet_dev *d, uint64_t now);
/* Register payload (link format) into b. */
void model_reg_links(const struct fleet_dev *d, struct lw_buf *b);
/* Send (POST /dp) payload of current meter readings into b; 0 or an LW_E* code. */
int model_send_payload(struct fleet_dev *d, uint64_t now, struct lw_buf *b);
/* Firmware state machine step due at x->fw_due. */
void model_fw_step(struct fleet_dev *d, uint64_t now);
void model_fw_pull_done(struct fleet_dev *d, int result, const struct lw_coap_msg *msg,
                        uint64_t now);
struct dev_extra *dev_extra(struct fleet_dev *d);
/* Frees what the model keeps in x (created object instances); x itself stays. */
void model_free_extra(struct dev_extra *x);

/* report.c */
struct proc_sample {
    bool ok;
    double cpu_s;
    uint64_t rss_kb;
};
void proc_sample(long pid, struct proc_sample *s);
void report_progress(struct fleet_eng *e, bool final_line);
struct run_phases {
    double ramp_s, steady_s, deregister_s;
};
int report_write(struct fleet_eng *e, double duration_s, const struct run_phases *ph,
                 const struct proc_sample *p0, const struct proc_sample *p1, uint64_t rss_max_kb,
                 double storm_recovery_s, FILE *human, const char *json_path);
const char *op_name(enum fleet_op op);

#endif
