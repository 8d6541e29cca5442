/* tools/fleet/net.c - many devices, few sockets.
 *
 * 2*K UDP sockets are bound to the wildcard address on kernel-chosen ports (K per "port epoch";
 * the rebind scenario moves a device to the other epoch, i.e. to a new source port). Each device
 * has its own loopback address 127.1.0.0 + idx / K and uses socket idx % K of its epoch: we send
 * with IP_PKTINFO naming the source address and read IP_PKTINFO on receive to learn which address
 * the datagram was for, so 1 M devices need 2*K file descriptors, not 1 M. Datagrams are batched
 * with sendmmsg/recvmmsg. Packet impairments (loss, duplication, reordering) are applied here in
 * both directions.
 */
#include "fleet.h"

#include "base/err.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADDR_BASE 0x7f010000u /* 127.1.0.0 */
#define RX_BATCH  64

uint32_t net_dev_addr(const struct fleet_eng *e, uint32_t idx)
{
    return htonl(ADDR_BASE + idx / e->k);
}

int net_open(struct fleet_eng *e, char *err, size_t errcap)
{
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0) {
        snprintf(err, errcap, "epoll_create1: %s", strerror(errno));
        return LW_EIO;
    }
    e->socks = calloc(2 * (size_t)e->k, sizeof(*e->socks));
    if (!e->socks)
        return LW_ENOMEM;
    for (uint32_t i = 0; i < 2 * e->k; i++)
        e->socks[i].fd = -1;
    for (uint32_t i = 0; i < 2 * e->k; i++) {
        struct fleet_sock *s = &e->socks[i];
        s->epoch = (uint8_t)(i / e->k);
        s->slot = i % e->k;
        s->q = malloc(TXQ_LEN * sizeof(*s->q));
        s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (!s->q || s->fd < 0) {
            snprintf(err, errcap, "socket: %s", s->q ? strerror(errno) : "out of memory");
            return LW_EIO;
        }
        int one = 1, big = 8 << 20;
        setsockopt(s->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
        /* Large buffers absorb storms; FORCE works as root, the plain one up to rmem_max. */
        if (setsockopt(s->fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) != 0)
            setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
        if (setsockopt(s->fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) != 0)
            setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
        socklen_t alen = sizeof(a);
        if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
            getsockname(s->fd, (struct sockaddr *)&a, &alen) != 0) {
            snprintf(err, errcap, "bind: %s", strerror(errno));
            return LW_EIO;
        }
        s->port = ntohs(a.sin_port);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
            snprintf(err, errcap, "epoll_ctl: %s", strerror(errno));
            return LW_EIO;
        }
    }
    return 0;
}

void net_close(struct fleet_eng *e)
{
    if (e->socks) {
        for (uint32_t i = 0; i < 2 * e->k; i++) {
            if (e->socks[i].fd >= 0)
                close(e->socks[i].fd);
            free(e->socks[i].q);
        }
        free(e->socks);
        e->socks = NULL;
    }
    if (e->epfd >= 0)
        close(e->epfd);
    e->epfd = -1;
}

static void flush_sock(struct fleet_eng *e, struct fleet_sock *s)
{
    struct mmsghdr mm[TXQ_LEN];
    struct iovec iov[TXQ_LEN];
    union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } cm[TXQ_LEN];
    unsigned sent = 0;
    for (unsigned i = 0; i < s->nq; i++) {
        struct txq_ent *t = &s->q[i];
        iov[i] = (struct iovec){t->data, t->len};
        memset(&mm[i], 0, sizeof(mm[i]));
        memset(&cm[i], 0, sizeof(cm[i]));
        mm[i].msg_hdr.msg_name = &t->dst;
        mm[i].msg_hdr.msg_namelen = sizeof(t->dst);
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_control = cm[i].buf;
        mm[i].msg_hdr.msg_controllen = sizeof(cm[i].buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mm[i].msg_hdr);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        struct in_pktinfo pi = {0};
        pi.ipi_spec_dst.s_addr = t->src;
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    }
    while (sent < s->nq) {
        int n = sendmmsg(s->fd, mm + sent, s->nq - sent, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* EAGAIN (socket buffer full) or a routing error: the datagram is lost, which CoAP
             * retransmission covers; count it. */
            e->st.tx_errors++;
            sent++;
            continue;
        }
        for (int i = 0; i < n; i++) {
            e->st.tx_dgrams++;
            e->st.tx_bytes += s->q[sent + (unsigned)i].len;
        }
        sent += (unsigned)n;
    }
    s->nq = 0;
}

void net_flush(struct fleet_eng *e)
{
    for (uint32_t i = 0; i < 2 * e->k; i++)
        if (e->socks[i].nq)
            flush_sock(e, &e->socks[i]);
}

static void enqueue(struct fleet_eng *e, uint32_t sock, uint32_t src, const struct sockaddr_in *dst,
                    const uint8_t *data, size_t len)
{
    struct fleet_sock *s = &e->socks[sock];
    if (s->nq == TXQ_LEN)
        flush_sock(e, s);
    struct txq_ent *t = &s->q[s->nq++];
    t->src = src;
    t->dst = *dst;
    t->len = (uint16_t)len;
    memcpy(t->data, data, len);
}

/* A datagram held back for reordering. */
struct delayed {
    struct lw_timer timer;
    bool rx;
    uint32_t sock, src, dev;
    struct sockaddr_in peer;
    uint16_t len;
    uint8_t data[];
};

static void deliver(struct fleet_eng *e, uint32_t devidx, const struct sockaddr_in *src,
                    const uint8_t *data, size_t len);

static void delayed_fire(struct lw_timer *t)
{
    struct delayed *p = lw_container_of(t, struct delayed, timer);
    E->delayed--;
    if (E->closing)
        ;
    else if (p->rx)
        deliver(E, p->dev, &p->peer, p->data, p->len);
    else
        enqueue(E, p->sock, p->src, &p->peer, p->data, p->len);
    free(p);
}

static bool hold_back(struct fleet_eng *e, bool rx, uint32_t sock, uint32_t src, uint32_t dev,
                      const struct sockaddr_in *peer, const uint8_t *data, size_t len)
{
    struct delayed *p = malloc(sizeof(*p) + len);
    if (!p)
        return false;
    p->rx = rx;
    p->sock = sock;
    p->src = src;
    p->dev = dev;
    p->peer = *peer;
    p->len = (uint16_t)len;
    memcpy(p->data, data, len);
    lw_timer_init(&p->timer, delayed_fire);
    /* 5..50 ms: enough for the next datagrams of the flow to overtake this one. */
    lw_wheel_arm(&e->wheel, &p->timer, e->now + 5 + fleet_rand() % 46);
    e->delayed++;
    e->st.reordered++;
    return true;
}

void net_send(struct fleet_eng *e, const struct fleet_dev *d, const struct sockaddr_in *dst,
              const uint8_t *data, size_t len)
{
    if (len > LW_COAP_MAX_DGRAM)
        return;
    uint32_t sock = d->epoch * e->k + d->idx % e->k;
    uint32_t src = net_dev_addr(e, d->idx);
    if (e->opt.loss > 0 && fleet_rand01() < e->opt.loss) {
        e->st.dropped_loss++;
        return;
    }
    if (e->opt.reorder > 0 && fleet_rand01() < e->opt.reorder &&
        hold_back(e, false, sock, src, 0, dst, data, len))
        return;
    enqueue(e, sock, src, dst, data, len);
    if (e->opt.dup > 0 && fleet_rand01() < e->opt.dup) {
        e->st.duplicated++;
        enqueue(e, sock, src, dst, data, len);
    }
}

static void deliver(struct fleet_eng *e, uint32_t devidx, const struct sockaddr_in *src,
                    const uint8_t *data, size_t len)
{
    if (devidx >= e->ndev) {
        e->st.rx_unknown++;
        return;
    }
    dev_input(&e->devs[devidx], src, data, len);
}

static void rx_one(struct fleet_eng *e, struct fleet_sock *s, struct msghdr *h, size_t len)
{
    struct sockaddr_in *src = h->msg_name;
    uint32_t dst = 0;
    bool have = false;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            dst = ntohl(pi.ipi_addr.s_addr);
            have = true;
        }
    }
    e->st.rx_dgrams++;
    e->st.rx_bytes += len;
    if (!have || dst < ADDR_BASE || h->msg_namelen != sizeof(*src)) {
        e->st.rx_unknown++;
        return;
    }
    uint64_t idx = (uint64_t)(dst - ADDR_BASE) * e->k + s->slot;
    if (idx >= e->ndev) {
        e->st.rx_unknown++;
        return;
    }
    if (e->devs[idx].epoch != s->epoch) {
        e->st.rx_stale++; /* sent to the device's old port: a NAT would drop it too */
        return;
    }
    if (e->opt.loss > 0 && fleet_rand01() < e->opt.loss) {
        e->st.dropped_loss++;
        return;
    }
    const uint8_t *data = ((struct iovec *)h->msg_iov)->iov_base;
    if (e->opt.reorder > 0 && fleet_rand01() < e->opt.reorder &&
        hold_back(e, true, 0, 0, (uint32_t)idx, src, data, len))
        return;
    deliver(e, (uint32_t)idx, src, data, len);
    if (e->opt.dup > 0 && fleet_rand01() < e->opt.dup) {
        e->st.duplicated++;
        deliver(e, (uint32_t)idx, src, data, len);
    }
}

static void rx_sock(struct fleet_eng *e, struct fleet_sock *s)
{
    static uint8_t bufs[RX_BATCH][LW_COAP_MAX_DGRAM + 1];
    static union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo)) + 64];
        struct cmsghdr align;
    } cm[RX_BATCH];
    struct mmsghdr mm[RX_BATCH];
    struct iovec iov[RX_BATCH];
    struct sockaddr_in addrs[RX_BATCH];
    /* Bounded work per wakeup (several rounds at most) keeps timers responsive in a storm. */
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < RX_BATCH; i++) {
            iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
            memset(&mm[i], 0, sizeof(mm[i]));
            mm[i].msg_hdr.msg_name = &addrs[i];
            mm[i].msg_hdr.msg_namelen = sizeof(addrs[i]);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
            mm[i].msg_hdr.msg_control = cm[i].buf;
            mm[i].msg_hdr.msg_controllen = sizeof(cm[i].buf);
        }
        int n = recvmmsg(s->fd, mm, RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            if (mm[i].msg_len > LW_COAP_MAX_DGRAM || (mm[i].msg_hdr.msg_flags & MSG_TRUNC)) {
                e->st.rx_rejected++;
                continue;
            }
            rx_one(e, s, &mm[i].msg_hdr, mm[i].msg_len);
        }
        if (n < RX_BATCH)
            return;
    }
}

void net_poll(struct fleet_eng *e, int timeout_ms)
{
    struct epoll_event evs[64];
    int n = epoll_wait(e->epfd, evs, 64, timeout_ms);
    e->now = fleet_now_ms();
    for (int i = 0; i < n; i++)
        rx_sock(e, &e->socks[evs[i].data.u32]);
}
