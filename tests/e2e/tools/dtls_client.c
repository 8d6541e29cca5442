/* tests/e2e/tools/dtls_client.c - a small DTLS 1.2 PSK LwM2M client on the project's wolfSSL,
 * for what Debian's coap-client cannot do: change its source port in the middle of a session
 * (with and without an RFC 9146 connection id), and hold many sessions at once (hibernation
 * under load). Compiled by tests/e2e/test_dtls.sh with cc + pkg-config; test code only.
 *
 *   dtls_client PORT IDENTITY KEY EP rebind-cid    Register, move to a new source port, Update
 *   dtls_client PORT IDENTITY KEY EP rebind-nocid  the same without a CID: the Update is lost,
 *                                                  a new handshake from the new port succeeds
 *   dtls_client PORT IDENTITY KEY EP rebind-read [SECS]
 *                                                  Register, move to a new source port, send a
 *                                                  CoAP ping (answered with RST), then answer the
 *                                                  server's requests from the new port for SECS
 *                                                  (default 10): GET -> 2.05 text "moved:<path>"
 *   dtls_client PORT IDENTITY KEY EP hold          Register, then one command per stdin line on
 *                                                  the same session and source port: "update"
 *                                                  (prints "update CODE"), "quit"; for sessions
 *                                                  that outlive a server restart
 *   dtls_client PORT IDPREFIX KEY EPPREFIX load N WAIT_MS [HOLD_MS]
 *                N sessions (identity IDPREFIX<i>, endpoint EPPREFIX<i>) register, idle WAIT_MS,
 *                then each sends an Update on its session; prints the counts. With HOLD_MS the
 *                sessions are then held that long and abandoned without close_notify.
 * DTLS_CLIENT_V13=1 in the environment makes it a DTLS 1.3 client (TLS_AES_128_CCM_8_SHA256).
 * Output: "key value" lines. Exit 0 when every step got the expected answer.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct cli {
    WOLFSSL *ssl;
    int fd;
    char ident[128];
    char ep[128];
    char regid[32];
    unsigned short mid;
};

static const char *g_key;
static struct cli *g_cur;
static struct sockaddr_in g_srv;

static unsigned int psk_cb(WOLFSSL *ssl, const char *hint, char *identity, unsigned int id_max,
                           unsigned char *key, unsigned int key_max)
{
    struct cli *c = g_cur; /* the client handshaking now (one at a time) */
    (void)ssl;
    (void)hint;
    snprintf(identity, id_max, "%s", c->ident);
    size_t n = strlen(g_key);
    if (n > key_max)
        return 0;
    memcpy(key, g_key, n);
    return (unsigned int)n;
}

static unsigned int psk13_cb(WOLFSSL *ssl, const char *hint, char *identity, unsigned int id_max,
                             unsigned char *key, unsigned int key_max, const char **suite)
{
    *suite = "TLS13-AES128-CCM-8-SHA256";
    return psk_cb(ssl, hint, identity, id_max, key, key_max);
}

/* Source address of new sockets. The load mode uses 127.0.2.1: its ephemeral ports must not
 * meet the address of a session the daemon restored from an earlier client on 127.0.0.1 (a
 * datagram from there takes that session over, and the test counts sessions). */
static uint32_t g_src = INADDR_LOOPBACK;

static int new_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(g_src);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    return fd;
}

static WOLFSSL_CTX *g_ctx;

static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) > 0;
}

static int cli_connect(struct cli *c, int use_cid)
{
    c->ssl = wolfSSL_new(g_ctx);
    if (!c->ssl)
        return -1;
    g_cur = c;
    c->fd = new_socket();
    wolfSSL_set_fd(c->ssl, c->fd);
    wolfSSL_dtls_set_peer(c->ssl, &g_srv, sizeof(g_srv));
    if (use_cid && wolfSSL_dtls_cid_use(c->ssl) != WOLFSSL_SUCCESS)
        return -1;
    wolfSSL_dtls_set_using_nonblock(c->ssl, 1);
    for (int i = 0; i < 40; i++) {
        int r = wolfSSL_connect(c->ssl);
        if (r == WOLFSSL_SUCCESS)
            return 0;
        int e = wolfSSL_get_error(c->ssl, r);
        if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) {
            fprintf(stderr, "dtls_client: handshake error %d\n", e);
            return -1;
        }
        if (!readable(c->fd, 500))
            wolfSSL_dtls_got_timeout(c->ssl);
    }
    return -1;
}

static void cli_close(struct cli *c)
{
    if (c->ssl) {
        wolfSSL_shutdown(c->ssl);
        wolfSSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

static size_t opt(unsigned char *p, unsigned *last, unsigned num, const void *v, size_t len)
{
    unsigned d = num - *last;
    size_t n = 0;
    *last = num;
    p[n++] = (unsigned char)((d < 13 ? d : 13) << 4 | (len < 13 ? len : 13));
    if (d >= 13)
        p[n++] = (unsigned char)(d - 13);
    if (len >= 13)
        p[n++] = (unsigned char)(len - 13);
    memcpy(p + n, v, len);
    return n + len;
}

/* Sends a CON request and returns the response code (class*100+detail), 0 without an answer.
 * A 2.01 stores the registration id. */
static int request(struct cli *c, int reg)
{
    unsigned char m[512], r[512];
    size_t n = 0;
    unsigned last = 0;
    char q[160];
    c->mid++;
    m[n++] = 0x40;
    m[n++] = 0x02; /* POST */
    m[n++] = (unsigned char)(c->mid >> 8);
    m[n++] = (unsigned char)c->mid;
    n += opt(m + n, &last, 11, "rd", 2);
    if (!reg) {
        n += opt(m + n, &last, 11, c->regid, strlen(c->regid));
    } else {
        unsigned char cf = 40;
        n += opt(m + n, &last, 12, &cf, 1);
        snprintf(q, sizeof(q), "ep=%s", c->ep);
        n += opt(m + n, &last, 15, q, strlen(q));
        n += opt(m + n, &last, 15, "lt=600", 6);
        m[n++] = 0xff;
        memcpy(m + n, "</1/0>,</3/0>", 13);
        n += 13;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (wolfSSL_write(c->ssl, m, (int)n) != (int)n)
            return 0;
        for (int w = 0; w < 4; w++) {
            if (!readable(c->fd, 400))
                break;
            int k = wolfSSL_read(c->ssl, r, sizeof(r));
            if (k < 4)
                continue;
            if ((r[2] << 8 | r[3]) != c->mid || (r[0] >> 4 & 3) != 2)
                continue;
            int code = (r[1] >> 5) * 100 + (r[1] & 31);
            if (code == 201) { /* the second Location-Path is the id */
                size_t p = 4 + (r[0] & 15);
                unsigned num = 0, seen = 0;
                while (p < (size_t)k && r[p] != 0xff) {
                    unsigned d = r[p] >> 4, l = r[p] & 15;
                    p++;
                    if (d == 13)
                        d = 13 + r[p++];
                    if (l == 13)
                        l = 13 + r[p++];
                    num += d;
                    if (num == 8 && ++seen == 2 && l < sizeof(c->regid)) {
                        memcpy(c->regid, r + p, l);
                        c->regid[l] = 0;
                    }
                    p += l;
                }
            }
            return code;
        }
    }
    return 0;
}

/* Sends a CoAP ping (empty CON) and returns 1 when the RST came back. */
static int ping(struct cli *c)
{
    unsigned char m[4], r[512];
    c->mid++;
    m[0] = 0x40;
    m[1] = 0;
    m[2] = (unsigned char)(c->mid >> 8);
    m[3] = (unsigned char)c->mid;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (wolfSSL_write(c->ssl, m, 4) != 4)
            return 0;
        for (int w = 0; w < 4 && readable(c->fd, 400); w++) {
            int k = wolfSSL_read(c->ssl, r, sizeof(r));
            if (k >= 4 && (r[0] >> 4 & 3) == 3 && (r[2] << 8 | r[3]) == c->mid)
                return 1;
        }
    }
    return 0;
}

/* Answers the server's requests for `secs` seconds: a GET gets 2.05 (piggybacked) with the text
 * "moved:<path>". Returns how many requests were answered; prints one line each. */
static int serve(struct cli *c, int secs)
{
    unsigned char r[1024], a[600];
    int served = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= secs)
            break;
        if (!readable(c->fd, 200))
            continue;
        int k = wolfSSL_read(c->ssl, r, sizeof(r));
        if (k < 4 || (r[0] >> 6) != 1 || (r[0] >> 4 & 3) != 0 || r[1] == 0 || r[1] >= 32)
            continue; /* only CON requests */
        size_t tkl = r[0] & 15, p = 4 + tkl, n = 0;
        char path[128] = "";
        size_t pl = 0;
        unsigned num = 0;
        if (tkl > 8 || p > (size_t)k)
            continue;
        while (p < (size_t)k && r[p] != 0xff) {
            unsigned d = r[p] >> 4, l = r[p] & 15;
            p++;
            if (d == 13)
                d = 13 + r[p++];
            if (l == 13)
                l = 13 + r[p++];
            num += d;
            if (p + l > (size_t)k)
                break;
            if (num == 11 && pl + l + 2 < sizeof(path)) {
                path[pl++] = '/';
                memcpy(path + pl, r + p, l);
                pl += l;
                path[pl] = 0;
            }
            p += l;
        }
        a[n++] = (unsigned char)(0x60 | tkl); /* ACK */
        a[n++] = r[1] == 1 ? 0x45 : 0x85;     /* 2.05 for GET, else 4.05 */
        a[n++] = r[2];
        a[n++] = r[3];
        memcpy(a + n, r + 4, tkl);
        n += tkl;
        if (r[1] == 1) {
            unsigned last = 0;
            n += opt(a + n, &last, 12, "", 0); /* Content-Format 0 (text/plain): empty uint */
            a[n++] = 0xff;
            n += (size_t)snprintf((char *)a + n, sizeof(a) - n, "moved:%s", path);
        }
        if (wolfSSL_write(c->ssl, a, (int)n) == (int)n) {
            served++;
            printf("served %s %s\n", r[1] == 1 ? "GET" : "other", path);
            fflush(stdout);
        }
    }
    return served;
}

static int rebind(struct cli *c)
{
    int fd = new_socket();
    wolfSSL_set_fd(c->ssl, fd);
    wolfSSL_dtls_set_peer(c->ssl, &g_srv, sizeof(g_srv));
    close(c->fd);
    c->fd = fd;
    return 0;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: see the header of dtls_client.c\n");
        return 2;
    }
    g_key = argv[3];
    g_srv.sin_family = AF_INET;
    g_srv.sin_port = htons((unsigned short)atoi(argv[1]));
    g_srv.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    wolfSSL_Init();
    int v13 = getenv("DTLS_CLIENT_V13") != NULL; /* DTLS 1.3 (unified header CID records) */
    g_ctx = wolfSSL_CTX_new(v13 ? wolfDTLSv1_3_client_method() : wolfDTLSv1_2_client_method());
    wolfSSL_CTX_set_psk_client_callback(g_ctx, psk_cb);
    wolfSSL_CTX_set_psk_client_tls13_callback(g_ctx, psk13_cb);
    wolfSSL_CTX_set_cipher_list(g_ctx, v13 ? "TLS13-AES128-CCM-8-SHA256" : "PSK-AES128-CCM-8");
    wolfSSL_CTX_set_verify(g_ctx, WOLFSSL_VERIFY_NONE, NULL);
    const char *mode = argv[5];
    int ok = 1;
    if (strcmp(mode, "hold") == 0) {
        struct cli c = {.fd = -1};
        char line[64];
        snprintf(c.ident, sizeof(c.ident), "%s", argv[2]);
        snprintf(c.ep, sizeof(c.ep), "%s", argv[4]);
        c.mid = (unsigned short)getpid();
        if (cli_connect(&c, 1) != 0) {
            printf("handshake failed\n");
            return 1;
        }
        int code = request(&c, 1);
        printf("register %d\n", code);
        fflush(stdout);
        ok = code == 201;
        while (fgets(line, sizeof(line), stdin)) {
            if (strncmp(line, "update", 6) == 0) {
                code = request(&c, 0);
                printf("update %d\n", code);
                fflush(stdout);
            } else if (strncmp(line, "quit", 4) == 0) {
                break;
            }
        }
        cli_close(&c);
    } else if (strcmp(mode, "rebind-read") == 0) {
        struct cli c = {.fd = -1};
        snprintf(c.ident, sizeof(c.ident), "%s", argv[2]);
        snprintf(c.ep, sizeof(c.ep), "%s", argv[4]);
        c.mid = (unsigned short)getpid();
        if (cli_connect(&c, 1) != 0) {
            printf("handshake failed\n");
            return 1;
        }
        int code = request(&c, 1);
        printf("register %d\n", code);
        rebind(&c);
        struct sockaddr_in me;
        socklen_t ml = sizeof(me);
        if (getsockname(c.fd, (struct sockaddr *)&me, &ml) == 0)
            printf("new-port %u\n", (unsigned)ntohs(me.sin_port));
        int pong = ping(&c);
        printf("ping-after-rebind %s\n", pong ? "rst" : "none");
        fflush(stdout);
        int served = serve(&c, argc >= 7 ? atoi(argv[6]) : 10);
        printf("served-total %d\n", served);
        ok = code == 201 && pong && served > 0;
        cli_close(&c);
    } else if (strncmp(mode, "rebind-", 7) == 0) {
        int cid = strcmp(mode, "rebind-cid") == 0;
        struct cli c = {.fd = -1};
        snprintf(c.ident, sizeof(c.ident), "%s", argv[2]);
        snprintf(c.ep, sizeof(c.ep), "%s", argv[4]);
        c.mid = (unsigned short)getpid();
        if (cli_connect(&c, cid) != 0) {
            printf("handshake failed\n");
            return 1;
        }
        int code = request(&c, 1);
        printf("register %d\n", code);
        ok &= code == 201;
        code = request(&c, 0);
        printf("update %d\n", code);
        ok &= code == 204;
        rebind(&c);
        code = request(&c, 0);
        printf("update-after-rebind %d\n", code);
        ok &= cid ? code == 204 : code == 0;
        if (!cid) { /* a new address needs a new handshake; the registration is still there */
            char regid[32];
            memcpy(regid, c.regid, sizeof(regid));
            wolfSSL_free(c.ssl);
            close(c.fd);
            c.ssl = NULL;
            if (cli_connect(&c, 0) != 0) {
                printf("handshake-again failed\n");
                return 1;
            }
            memcpy(c.regid, regid, sizeof(regid));
            code = request(&c, 0);
            printf("update-new-handshake %d\n", code);
            ok &= code == 204;
        }
        cli_close(&c);
    } else if (strcmp(mode, "load") == 0 && argc >= 8) {
        int n = atoi(argv[6]), wait_ms = atoi(argv[7]), hs = 0, reg = 0, upd = 0;
        g_src = 0x7f000201; /* 127.0.2.1 */
        struct cli *cs = calloc((size_t)n, sizeof(*cs));
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < n; i++) {
            cs[i].fd = -1;
            cs[i].mid = (unsigned short)(i * 7);
            snprintf(cs[i].ident, sizeof(cs[i].ident), "%s%d", argv[2], i);
            snprintf(cs[i].ep, sizeof(cs[i].ep), "%s%d", argv[4], i);
            if (cli_connect(&cs[i], 1) != 0)
                continue;
            hs++;
            reg += request(&cs[i], 1) == 201;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("handshakes %d\nregistered %d\nhandshake_register_per_s %.0f\n", hs, reg,
               secs > 0 ? hs / secs : 0.0);
        fflush(stdout);
        struct timespec ts = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < n; i++)
            if (cs[i].ssl && cs[i].regid[0])
                upd += request(&cs[i], 0) == 204;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("wake_update_per_s %.0f\n", secs > 0 ? upd / secs : 0.0);
        printf("updated %d\nclient_rss_kb %ld\n", upd, rss_kb());
        fflush(stdout);
        ok = hs == n && reg == n && upd == n;
        if (argc >= 9) { /* hold the sessions (the server hibernates them again), then vanish
                          * without close_notify, like devices going to sleep */
            int hold = atoi(argv[8]);
            struct timespec th = {hold / 1000, (long)(hold % 1000) * 1000000L};
            nanosleep(&th, NULL);
            return ok ? 0 : 1;
        }
        for (int i = 0; i < n; i++)
            cli_close(&cs[i]);
        free(cs);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    wolfSSL_CTX_free(g_ctx);
    wolfSSL_Cleanup();
    return ok ? 0 : 1;
}
