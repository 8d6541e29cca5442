/* The shards' UDP transport (server/udp.c): a reuseport group steers every datagram to the
 * socket udp_steer() names (the kernel's CBPF program and userspace agree), for IPv4 and IPv6
 * (when the host has ::1), and the peer address helpers round-trip. */
#include "base/err.h"
#include "peer.h"
#include "udp.h"

#include <arpa/inet.h>
#include <check.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

static void steering_matches(const char *host, int family, unsigned n)
{
    struct lw_listen l = {{0}, 0};
    int fds[8];
    char err[256];
    snprintf(l.host, sizeof(l.host), "%s", host);
    int rc = udp_group_open(&l, n, fds, err, sizeof(err));
    if (rc != 0 && family == AF_INET6) {
        printf("SKIP: no IPv6 loopback: %s\n", err);
        return;
    }
    ck_assert_msg(rc == 0, "%s", err);
    unsigned port = udp_bound_port(fds[0]);
    ck_assert_uint_ne(port, 0);
    for (unsigned i = 1; i < n; i++)
        ck_assert_uint_eq(udp_bound_port(fds[i]), port);
    unsigned hits[8] = {0};
    for (int k = 0; k < 48; k++) {
        int c = socket(family, SOCK_DGRAM, 0);
        struct sockaddr_storage to, from;
        socklen_t tl, fl = sizeof(from);
        memset(&to, 0, sizeof(to));
        if (family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&to;
            a->sin_family = AF_INET;
            a->sin_port = htons((uint16_t)port);
            inet_pton(AF_INET, host, &a->sin_addr);
            tl = sizeof(*a);
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&to;
            a->sin6_family = AF_INET6;
            a->sin6_port = htons((uint16_t)port);
            inet_pton(AF_INET6, host, &a->sin6_addr);
            tl = sizeof(*a);
        }
        ck_assert_int_eq(sendto(c, "x", 1, 0, (struct sockaddr *)&to, tl), 1);
        ck_assert_int_eq(getsockname(c, (struct sockaddr *)&from, &fl), 0);
        /* The client's source address as the server sees it: the loopback address itself. */
        if (family == AF_INET)
            inet_pton(AF_INET, host, &((struct sockaddr_in *)&from)->sin_addr);
        else
            inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&from)->sin6_addr);
        unsigned want = udp_steer((struct sockaddr *)&from, n);
        struct pollfd pfd[8];
        for (unsigned i = 0; i < n; i++)
            pfd[i] = (struct pollfd){fds[i], POLLIN, 0};
        ck_assert_int_eq(poll(pfd, n, 2000), 1);
        unsigned got = n;
        for (unsigned i = 0; i < n; i++)
            if (pfd[i].revents & POLLIN) {
                char b[4];
                ck_assert_int_eq(recv(fds[i], b, sizeof(b), 0), 1);
                got = i;
            }
        ck_assert_uint_eq(got, want);
        hits[got]++;
        close(c);
    }
    for (unsigned i = 0; i < n; i++) {
        ck_assert_uint_gt(hits[i], 0); /* 48 random ports reach every socket */
        close(fds[i]);
    }
}

START_TEST(steer_ipv4)
{
    steering_matches("127.0.0.1", AF_INET, 2);
    steering_matches("127.0.0.1", AF_INET, 3);
}
END_TEST

START_TEST(steer_ipv6)
{
    steering_matches("::1", AF_INET6, 2);
}
END_TEST

START_TEST(addr_round_trip)
{
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(5683)};
    inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
    struct peer_addr a;
    ck_assert_int_eq(peer_addr_from_sa(&a, (struct sockaddr *)&in6, 1), 0);
    char s[64];
    peer_addr_format(&a, s, sizeof(s));
    ck_assert_str_eq(s, "[2001:db8::1]:5683");
    struct sockaddr_storage ss;
    ck_assert_uint_eq(peer_addr_to_sa(&a, &ss), sizeof(in6));
    ck_assert_int_eq(memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr, &in6.sin6_addr, 16), 0);
    struct sockaddr un = {.sa_family = AF_UNIX};
    ck_assert_int_eq(peer_addr_from_sa(&a, &un, 0), LW_EINVAL);
    struct lw_listen bad = {"not-an-address", 1};
    int fds[1];
    char err[128];
    ck_assert_int_eq(udp_group_open(&bad, 1, fds, err, sizeof(err)), LW_EINVAL);
}
END_TEST

Suite *suite_registry_udp(void);
Suite *suite_registry_udp(void)
{
    Suite *s = suite_create("registry_udp");
    TCase *tc = tcase_create("udp");
    tcase_add_test(tc, steer_ipv4);
    tcase_add_test(tc, steer_ipv6);
    tcase_add_test(tc, addr_round_trip);
    suite_add_tcase(s, tc);
    return s;
}
