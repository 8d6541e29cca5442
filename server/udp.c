#include "udp.h"

#include "base/err.h"
#include "base/util.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

unsigned udp_steer(const struct sockaddr *sa, unsigned n)
{
    unsigned port, low;
    if (n <= 1)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        const uint8_t *a = (const uint8_t *)&in->sin_addr;
        port = ntohs(in->sin_port);
        low = (unsigned)a[2] << 8 | a[3];
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *a = in6->sin6_addr.s6_addr;
        port = ntohs(in6->sin6_port);
        low = (unsigned)a[14] << 8 | a[15];
    }
    return (port ^ low) % n;
}

/* A = ld16 [net + addr_low]; X = A; A = ld16 [net + port]; A ^= X; A %= n; return A.
 * Offsets: IPv4 source address bytes 14..15 of the header, UDP source port right after a
 * 20-byte header; IPv6 source address bytes 22..23, port after the 40-byte header. */
static int attach_cbpf(int fd, int family, unsigned n)
{
    int addr_low = family == AF_INET ? 14 : 22;
    int port = family == AF_INET ? 20 : 40;
    struct sock_filter code[] = {
        {BPF_LD | BPF_H | BPF_ABS, 0, 0, (uint32_t)(SKF_NET_OFF + addr_low)},
        {BPF_MISC | BPF_TAX, 0, 0, 0},
        {BPF_LD | BPF_H | BPF_ABS, 0, 0, (uint32_t)(SKF_NET_OFF + port)},
        {BPF_ALU | BPF_XOR | BPF_X, 0, 0, 0},
        {BPF_ALU | BPF_MOD | BPF_K, 0, 0, n},
        {BPF_RET | BPF_A, 0, 0, 0},
    };
    struct sock_fprog prog;
    memset(&prog, 0, sizeof(prog)); /* no uninitialised padding reaches the kernel */
    prog.len = (unsigned short)(sizeof(code) / sizeof(code[0]));
    prog.filter = code;
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog));
}

unsigned udp_steer_dtls(const uint8_t *data, size_t len, const struct sockaddr *sa, unsigned n)
{
    unsigned sh = UINT32_MAX;
    if (n <= 1)
        return 0;
    if (len >= 13 && data[0] == 25)
        sh = data[11]; /* DTLS 1.2 tls12_cid record: CID after type, version, epoch, seq */
    else if (len >= 3 && data[0] != 25 && (data[0] & 0xf0) == 0x30)
        sh = data[1]; /* DTLS 1.3 unified header with the C bit: CID right after it */
    return sh < n ? sh : udp_steer(sa, n);
}

/* The CoAPS program: a record carrying one of our CIDs goes to the shard named by the CID's
 * first byte (DTLS 1.2 content type 25: payload byte 11; DTLS 1.3 unified header 001C.... with C
 * set: byte 1); anything else, or a shard byte out of range, falls through to the address hash
 * of attach_cbpf. Reuseport programs see the UDP payload at offset 0. Mirrors udp_steer_dtls. */
static int attach_cbpf_dtls(int fd, int family, unsigned n)
{
    uint32_t addr_low = (uint32_t)(family == AF_INET ? 14 : 22);
    uint32_t port = (uint32_t)(family == AF_INET ? 20 : 40);
    struct sock_filter code[] = {
        /* 0 */ {BPF_LD | BPF_W | BPF_LEN, 0, 0, 0},
        /* 1 */ {BPF_JMP | BPF_JGE | BPF_K, 0, 11, 3},
        /* 2 */ {BPF_LD | BPF_B | BPF_ABS, 0, 0, 0},
        /* 3 */ {BPF_JMP | BPF_JEQ | BPF_K, 0, 4, 25},
        /* 4 */ {BPF_LD | BPF_W | BPF_LEN, 0, 0, 0},
        /* 5 */ {BPF_JMP | BPF_JGE | BPF_K, 0, 7, 13},
        /* 6 */ {BPF_LD | BPF_B | BPF_ABS, 0, 0, 11},
        /* 7 */ {BPF_JMP | BPF_JA, 0, 0, 3},
        /* 8 */ {BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xf0},
        /* 9 */ {BPF_JMP | BPF_JEQ | BPF_K, 0, 3, 0x30},
        /* 10 */ {BPF_LD | BPF_B | BPF_ABS, 0, 0, 1},
        /* 11 */ {BPF_JMP | BPF_JGE | BPF_K, 1, 0, n},
        /* 12 */ {BPF_RET | BPF_A, 0, 0, 0},
        /* 13: address hash */
        {BPF_LD | BPF_H | BPF_ABS, 0, 0, (uint32_t)SKF_NET_OFF + addr_low},
        {BPF_MISC | BPF_TAX, 0, 0, 0},
        {BPF_LD | BPF_H | BPF_ABS, 0, 0, (uint32_t)SKF_NET_OFF + port},
        {BPF_ALU | BPF_XOR | BPF_X, 0, 0, 0},
        {BPF_ALU | BPF_MOD | BPF_K, 0, 0, n},
        {BPF_RET | BPF_A, 0, 0, 0},
    };
    struct sock_fprog prog;
    memset(&prog, 0, sizeof(prog));
    prog.len = (unsigned short)(sizeof(code) / sizeof(code[0]));
    prog.filter = code;
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog));
}

unsigned udp_bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static atomic_bool steer_kernel = true;

void udp_set_kernel_steering(bool on)
{
    atomic_store(&steer_kernel, on);
}

static _Atomic size_t rcvbuf_want = 4u << 20;
static atomic_bool rcvbuf_warned;

void udp_set_buffer_size(size_t bytes)
{
    atomic_store(&rcvbuf_want, bytes);
}

/* Bigger kernel receive buffers absorb bursts (a registration storm after a power cut): what does
 * not fit is dropped by the kernel and costs the device a retransmission seconds later. SO_RCVBUF
 * is capped by net.core.rmem_max; SO_RCVBUFFORCE (root or CAP_NET_ADMIN) is not. When the kernel
 * gives less than asked (it reports twice the usable size), say so once, with the fix. */
static void set_rcvbuf(int fd)
{
    size_t want = atomic_load(&rcvbuf_want);
    if (want == 0)
        return; /* the kernel's default */
    int v = (int)LW_MIN(want, (size_t)INT_MAX / 2), got = 0;
    socklen_t gl = sizeof(got);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &gl) == 0 && got / 2 < v &&
        !atomic_exchange(&rcvbuf_warned, true))
        log_warn(NET,
                 "udp receive buffer is %d bytes, server.udp_buffer asks for %d: raise "
                 "net.core.rmem_max (sysctl) or grant CAP_NET_ADMIN, or registration storms "
                 "lose datagrams",
                 got / 2, v);
}

static int group_open(const struct lw_listen *l, unsigned n, int *fds, char *err, size_t errlen,
                      bool dtls)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    int family, rc = 0;
    unsigned i, port = l->port;
    memset(&ss, 0, sizeof(ss));
    for (i = 0; i < n; i++)
        fds[i] = -1;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, l->host, &in->sin_addr) == 1) {
        family = AF_INET;
        in->sin_family = AF_INET;
        slen = sizeof(*in);
    } else if (inet_pton(AF_INET6, l->host, &in6->sin6_addr) == 1) {
        family = AF_INET6;
        in6->sin6_family = AF_INET6;
        slen = sizeof(*in6);
    } else {
        snprintf(err, errlen, "%s: not a numeric address", l->host);
        return LW_EINVAL;
    }
    for (i = 0; i < n; i++) {
        int one = 1, fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            snprintf(err, errlen, "socket: %s", strerror(errno));
            goto out;
        }
        fds[i] = fd;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
            (family == AF_INET6 &&
             setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)) {
            rc = -errno;
            snprintf(err, errlen, "setsockopt: %s", strerror(errno));
            goto out;
        }
        set_rcvbuf(fd);
        if (family == AF_INET)
            in->sin_port = htons((uint16_t)port);
        else
            in6->sin6_port = htons((uint16_t)port);
        if (bind(fd, (struct sockaddr *)&ss, slen) != 0) {
            rc = -errno;
            snprintf(err, errlen, "bind %s%s%s:%u: %s", family == AF_INET6 ? "[" : "", l->host,
                     family == AF_INET6 ? "]" : "", port, strerror(errno));
            goto out;
        }
        if (port == 0)
            port = udp_bound_port(fd);
    }
    if (n > 1 && atomic_load(&steer_kernel) &&
        (dtls ? attach_cbpf_dtls(fds[0], family, n) : attach_cbpf(fds[0], family, n)) != 0) {
        rc = -errno;
        snprintf(err, errlen,
                 "SO_ATTACH_REUSEPORT_CBPF: %s (without it, set server.steering = forward)",
                 strerror(errno));
        goto out;
    }
out:
    if (rc) {
        for (i = 0; i < n; i++)
            if (fds[i] >= 0) {
                close(fds[i]);
                fds[i] = -1;
            }
    }
    return rc;
}

int udp_group_open(const struct lw_listen *l, unsigned n, int *fds, char *err, size_t errlen)
{
    return group_open(l, n, fds, err, errlen, false);
}

int udp_group_open_dtls(const struct lw_listen *l, unsigned n, int *fds, char *err, size_t errlen)
{
    return group_open(l, n, fds, err, errlen, true);
}
