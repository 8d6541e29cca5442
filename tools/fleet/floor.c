/* tools/fleet/floor.c - `lwm2m-fleet --floor-server HOST:PORT`: the benchmark floor.
 *
 * A stateless NoSec "server" that answers the registration interface as fast as one thread can
 * parse and serialize: every CON request gets a piggybacked ACK (POST /rd: 2.01 Created with
 * Location-Path rd/<n>; POST /rd/<x> (Update) and POST /dp (Send): 2.04; DELETE: 2.02; anything
 * else 4.04), NON notifications are ignored. It keeps nothing per device, so the fleet's rate
 * against it is what the simulator and the kernel's loopback allow: `make bench` prints each
 * NoSec scenario's rate against lwm2md next to its rate against this floor, as a ratio.
 * Runs until SIGINT/SIGTERM; prints the datagram counts then.
 */
#include "fleet.h"

#include "base/err.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FLOOR_BATCH 64

static volatile sig_atomic_t floor_stop;

static void floor_sig(int sig)
{
    (void)sig;
    floor_stop = 1;
}

/* Builds the answer to one datagram into out; returns its length, 0 for no answer. */
static size_t answer(const uint8_t *in, size_t len, uint8_t *out, size_t cap, uint64_t *ctr)
{
    struct lw_coap_msg m, r;
    if (lw_coap_parse(&m, in, len, NULL, NULL) != 0 || m.type != LW_COAP_CON ||
        LW_COAP_CODE_CLASS(m.code) != 0 || m.code == 0)
        return 0;
    size_t pos = 0, segs = 0;
    const struct lw_coap_opt *o, *first = NULL;
    while ((o = lw_coap_next_opt(&m, LW_COAP_OPT_URI_PATH, &pos)) != NULL) {
        if (!segs)
            first = o;
        segs++;
    }
    bool rd = first && first->len == 2 && memcmp(lw_coap_opt_data(first), "rd", 2) == 0;
    bool dp = first && first->len == 2 && memcmp(lw_coap_opt_data(first), "dp", 2) == 0;
    char loc[16];
    lw_coap_msg_init(&r, LW_COAP_ACK, LW_COAP_NOT_FOUND);
    r.mid = m.mid;
    r.tkl = m.tkl;
    memcpy(r.token, m.token, m.tkl);
    if (m.code == LW_COAP_POST && rd && segs == 1) {
        r.code = LW_COAP_CREATED;
        snprintf(loc, sizeof(loc), "%llx", (unsigned long long)++*ctr);
        lw_coap_add_str(&r, LW_COAP_OPT_LOCATION_PATH, "rd");
        lw_coap_add_str(&r, LW_COAP_OPT_LOCATION_PATH, loc);
    } else if (m.code == LW_COAP_POST && ((rd && segs == 2) || (dp && segs == 1))) {
        r.code = LW_COAP_CHANGED;
    } else if (m.code == LW_COAP_DELETE && rd && segs == 2) {
        r.code = LW_COAP_DELETED;
    }
    struct lw_buf b;
    lw_buf_init_fixed(&b, out, cap);
    if (lw_coap_serialize(&r, &b) != 0)
        return 0;
    return lw_buf_bytes(&b).len;
}

int floor_server(const char *hostport)
{
    char host[64];
    const char *colon = strrchr(hostport, ':');
    uint64_t port;
    if (!colon || (size_t)(colon - hostport) >= sizeof(host) ||
        lw_parse_u64(colon + 1, strlen(colon + 1), &port) || port == 0 || port > 65535) {
        fprintf(stderr, "lwm2m-fleet: --floor-server: expected IPv4:PORT\n");
        return 2;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1 || (ntohl(a.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "lwm2m-fleet: --floor-server: expected a loopback IPv4 address\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int big = 8 << 20;
    if (fd < 0)
        return 2;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        fprintf(stderr, "lwm2m-fleet: --floor-server: bind: %s\n", strerror(errno));
        close(fd);
        return 2;
    }
    struct sigaction sa = {.sa_handler = floor_sig};
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: recvmmsg returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    printf("floor server ready on %s\n", hostport);
    fflush(stdout);
    static uint8_t in[FLOOR_BATCH][LW_COAP_MAX_DGRAM], out[FLOOR_BATCH][256];
    struct sockaddr_in peers[FLOOR_BATCH];
    struct mmsghdr rx[FLOOR_BATCH], tx[FLOOR_BATCH];
    struct iovec riov[FLOOR_BATCH], tiov[FLOOR_BATCH];
    uint64_t ctr = 0, nrx = 0, ntx = 0;
    while (!floor_stop) {
        for (int i = 0; i < FLOOR_BATCH; i++) {
            riov[i] = (struct iovec){in[i], sizeof(in[i])};
            memset(&rx[i], 0, sizeof(rx[i]));
            rx[i].msg_hdr.msg_name = &peers[i];
            rx[i].msg_hdr.msg_namelen = sizeof(peers[i]);
            rx[i].msg_hdr.msg_iov = &riov[i];
            rx[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, rx, FLOOR_BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        int k = 0;
        for (int i = 0; i < n; i++) {
            nrx++;
            size_t len = answer(in[i], rx[i].msg_len, out[k], sizeof(out[k]), &ctr);
            if (!len)
                continue;
            tiov[k] = (struct iovec){out[k], len};
            memset(&tx[k], 0, sizeof(tx[k]));
            tx[k].msg_hdr.msg_name = &peers[i];
            tx[k].msg_hdr.msg_namelen = rx[i].msg_hdr.msg_namelen;
            tx[k].msg_hdr.msg_iov = &tiov[k];
            tx[k].msg_hdr.msg_iovlen = 1;
            k++;
        }
        for (int sent = 0; sent < k;) {
            int m = sendmmsg(fd, tx + sent, (unsigned)(k - sent), 0);
            if (m <= 0) {
                if (m < 0 && errno == EINTR && !floor_stop)
                    continue;
                break;
            }
            sent += m;
            ntx += (uint64_t)m;
        }
    }
    printf("floor server: %llu datagrams in, %llu answered\n", (unsigned long long)nrx,
           (unsigned long long)ntx);
    close(fd);
    return 0;
}
