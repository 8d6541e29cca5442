/* tests/unit/dtls/harness.h - in-memory DTLS world for the lib/dtls tests and benchmark: wolfSSL
 * clients (same library) talk to one lw_dtls shard through datagram queues, on a fake clock. */
#ifndef LW_TEST_DTLS_HARNESS_H
#define LW_TEST_DTLS_HARNESS_H

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtls/dtls.h"

#define H_QLEN  32
#define H_DGRAM 2048

struct h_dgram {
    struct sockaddr_in addr; /* sender (to server) */
    size_t len;
    uint8_t d[H_DGRAM];
};

struct h_queue {
    struct h_dgram q[H_QLEN];
    size_t head, n;
};

struct h_client {
    WOLFSSL *ssl;
    struct sockaddr_in addr;
    struct h_queue in; /* server -> client */
    struct lw_dtls_sess *sess;
    bool hs_done, closed;
    int failed; /* wolfSSL error, 0 while fine */
    uint8_t rx[2048];
    size_t rx_len;
    unsigned rx_count;
    const char *identity;
    const char *key;
    const char *suite13; /* TLS 1.3 PSK suite name */
};

struct h_world {
    struct lw_dtls_ctx *ctx;
    struct lw_dtls_shard *sh;
    struct h_queue to_server;
    struct h_client **clients;
    size_t n_clients;
    uint64_t now;
    unsigned sends;     /* datagrams sent by the server */
    unsigned stateless; /* of which without a session */
    unsigned ev[8];     /* per lw_dtls_event */
    struct lw_dtls_sess *last_ev_sess;
    uint8_t last_pt[2048];
    size_t last_pt_len;
    unsigned pt_count;
    bool echo; /* server echoes every delivered record */
    bool drop_to_clients;
    uint8_t last_type_to_server; /* first byte of the last client datagram */
    unsigned refuse_cids;        /* cid_in_use answers true this many more times */
    unsigned cid_asks;           /* cid_in_use calls */
    uint8_t refused[8][8];       /* the first CIDs it refused */
};

/* Shard callbacks routing to the world's clients. */
extern const struct lw_dtls_shard_ops h_ops;

void h_world_init(struct h_world *w, struct lw_dtls_ctx *ctx, uint8_t shard_id, size_t max_clients);
void h_world_deinit(struct h_world *w);
/* Client with its own WOLFSSL_CTX-owned object on 127.0.0.x:port; method selects 1.2/1.3. */
struct h_client *h_client_new(struct h_world *w, WOLFSSL_CTX *cctx, uint16_t port);
void h_client_free(struct h_client *c);
/* Client context helpers. */
WOLFSSL_CTX *h_cctx_psk(bool v13, const char *ciphers, bool cid);
/* Moves datagrams until nothing moves (bounded). Returns the number of datagrams moved. */
unsigned h_pump(struct h_world *w);
/* Steps one client (connect or read). */
void h_client_step(struct h_client *c);
/* Session for a datagram: by CID, then by address. */
struct lw_dtls_sess *h_lookup(struct h_world *w, const struct h_dgram *d);
int h_client_write(struct h_client *c, const char *s);

/* Test PKI generated at run time with wolfCrypt (ECDSA P-256, SHA-256): a CA and leaves. */
struct h_der {
    uint8_t d[1024];
    size_t len;
};
struct h_pki {
    struct h_der ca_cert;
    struct h_der ca_key;
};
/* Makes a self-signed CA named cn. */
void h_pki_ca(struct h_pki *p, const char *cn);
/* Makes a leaf certificate with subject CN cn signed by the CA, and its private key. */
void h_pki_leaf(const struct h_pki *p, const char *cn, struct h_der *cert, struct h_der *key);
/* Client context for ECDHE-ECDSA: trusts ca, presents cert/key when given (len > 0). */
WOLFSSL_CTX *h_cctx_cert(bool v13, const char *ciphers, const struct h_der *ca,
                         const struct h_der *cert, const struct h_der *key);

#endif
