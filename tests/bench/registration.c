/* Registration throughput benchmark (make bench): a NoSec CoAP load driver over loopback that
 * simulates many devices from one UDP socket by choosing each datagram's source address in
 * 127.0.0.0/8 with IP_PKTINFO (deps.md), against
 *   1. a trivial UDP echo server (recvmmsg/sendmmsg, one process, one core): the floor, measured
 *      in slices interleaved with the daemon's (each daemon slice right after an echo slice, the
 *      daemon idle) and each phase's ratio the median of its slices' ratios;
 *   2. the real daemon with one shard (shards = 1): Registers/s and Updates/s with 0, 100 k and
 *      1 M endpoints already registered, RSS bytes per registration (/proc/PID/status) and server
 *      CPU µs per request (schedstat of all threads: shard + control/event fan-out).
 * Each measured phase is bounded in operations and time. Prints `bench registration: ...` lines
 * and appends one JSON line to bench/results/registration.json.
 * Environment: LW_BENCH_MAX (largest population, default 1000000), LW_BENCH_OPS (operations per
 * measured phase, default 100000), LW_BENCH_BIN (daemon path; default ../bin/lwm2md next to this
 * program's directory).
 * Profiling mode: LW_BENCH_TARGET=PORT sends LW_BENCH_OPS Registers (devices LW_BENCH_FIRST..,
 * default 0, at most LW_BENCH_WINDOW outstanding, default 256) to a daemon already listening on
 * 127.0.0.1:PORT, e.g. one under `valgrind --tool=callgrind` (docs/benchmarks.md), prints the
 * outcome and exits: no echo floor, no daemon of its own, nothing appended to the results. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 256

static unsigned window = WINDOW; /* outstanding requests, <= WINDOW */
#define BATCH 64

static int sock = -1;
static uint16_t target_port;
static char (*ids)[12]; /* registration id per device */
static uint16_t next_mid = 1;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t dev_addr(uint32_t i)
{
    /* 127.1.0.0 and up: 16 M distinct sources, none of them 127.0.0.1 (the servers' address). */
    return htonl(0x7f010000u + i);
}

/* ---- CoAP encoding (just what the driver needs) ---- */
static size_t put_opt(uint8_t *p, unsigned *prev, unsigned num, const void *v, size_t len)
{
    size_t n = 0;
    unsigned d = num - *prev;
    *prev = num;
    uint8_t dn = d < 13 ? (uint8_t)d : 13, ln = len < 13 ? (uint8_t)len : 13;
    p[n++] = (uint8_t)(dn << 4 | ln);
    if (dn == 13)
        p[n++] = (uint8_t)(d - 13);
    if (ln == 13)
        p[n++] = (uint8_t)(len - 13);
    memcpy(p + n, v, len);
    return n + len;
}

static const char objs[] = "</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</3/0>,</4/0>,</5/0>";

/* Register (update == false) or Update of device i into buf; returns the length. */
static size_t build(uint8_t *buf, uint32_t i, bool update)
{
    size_t n = 0;
    unsigned prev = 0;
    uint16_t mid = next_mid++;
    buf[n++] = 0x44; /* CON, TKL 4 */
    buf[n++] = 0x02; /* POST */
    buf[n++] = (uint8_t)(mid >> 8);
    buf[n++] = (uint8_t)mid;
    memcpy(buf + n, &i, 4);
    n += 4;
    n += put_opt(buf + n, &prev, 11, "rd", 2);
    if (update) {
        n += put_opt(buf + n, &prev, 11, ids[i], 11);
        return n;
    }
    uint8_t cf = 40;
    n += put_opt(buf + n, &prev, 12, &cf, 1);
    char ep[32];
    int el = snprintf(ep, sizeof(ep), "ep=bench-%08u", i);
    n += put_opt(buf + n, &prev, 15, ep, (size_t)el);
    n += put_opt(buf + n, &prev, 15, "lt=86400", 8);
    n += put_opt(buf + n, &prev, 15, "lwm2m=1.1", 9);
    buf[n++] = 0xff;
    memcpy(buf + n, objs, sizeof(objs) - 1);
    return n + sizeof(objs) - 1;
}

/* Reads the 2.01's second Location-Path into ids[i]. */
static void take_location(const uint8_t *p, size_t len, uint32_t i)
{
    size_t off = 4 + (p[0] & 15);
    unsigned num = 0, seen = 0;
    while (off < len && p[off] != 0xff) {
        unsigned d = p[off] >> 4, l = p[off] & 15;
        off++;
        if (d == 13)
            d = 13u + p[off++];
        if (l == 13)
            l = 13u + p[off++];
        num += d;
        if (num == 8 && seen++ == 1 && l == 11 && off + l <= len)
            memcpy(ids[i], p + off, 11);
        off += l;
    }
}

/* ---- the load loop ---- */
struct stats {
    uint64_t ok, bad, lost;
    double secs;
};

/* Sends ops requests for devices first..first+count-1 (op k goes to device first + k % count),
 * keeping WINDOW outstanding; stops after max_secs. */
static struct stats run(uint32_t first, uint32_t count, uint64_t ops, bool update, double max_secs)
{
    static uint8_t out[BATCH][1024], in[BATCH][1024];
    static double sent_at[WINDOW];
    static uint32_t slot_dev[WINDOW];
    static bool busy[WINDOW];
    struct stats st = {0};
    uint64_t issued = 0, outstanding = 0;
    double t0 = now_s(), last_progress = t0;
    memset(busy, 0, sizeof(busy));
    while ((issued < ops || outstanding > 0) && now_s() - t0 < max_secs) {
        /* send */
        struct mmsghdr mh[BATCH];
        struct iovec iov[BATCH];
        struct sockaddr_in to[BATCH];
        char cbuf[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
        unsigned nb = 0;
        for (unsigned s = 0; s < window && issued < ops && nb < BATCH; s++) {
            if (busy[s])
                continue;
            uint32_t dev = first + (uint32_t)(issued % count);
            size_t len = build(out[nb], dev, update);
            /* token: device index; the slot rides in the MID's low byte is not needed: look
             * the slot up by device on receive */
            busy[s] = true;
            slot_dev[s] = dev;
            sent_at[s] = now_s();
            memset(&to[nb], 0, sizeof(to[nb]));
            to[nb].sin_family = AF_INET;
            to[nb].sin_port = htons(target_port);
            to[nb].sin_addr.s_addr = htonl(0x7f000001);
            iov[nb] = (struct iovec){out[nb], len};
            memset(&mh[nb], 0, sizeof(mh[nb]));
            mh[nb].msg_hdr.msg_name = &to[nb];
            mh[nb].msg_hdr.msg_namelen = sizeof(to[nb]);
            mh[nb].msg_hdr.msg_iov = &iov[nb];
            mh[nb].msg_hdr.msg_iovlen = 1;
            mh[nb].msg_hdr.msg_control = cbuf[nb];
            mh[nb].msg_hdr.msg_controllen = sizeof(cbuf[nb]);
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh[nb].msg_hdr);
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
            struct in_pktinfo pi = {0};
            pi.ipi_spec_dst.s_addr = dev_addr(dev);
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
            nb++;
            issued++;
            outstanding++;
        }
        if (nb > 0) {
            int sent = sendmmsg(sock, mh, nb, 0);
            if (sent < 0)
                sent = 0;
            /* Unsent ones are left busy and time out as lost. */
        }
        /* receive */
        struct pollfd pfd = {sock, POLLIN, 0};
        if (poll(&pfd, 1, outstanding >= window || issued >= ops ? 50 : 0) > 0) {
            struct mmsghdr rh[BATCH];
            struct iovec riov[BATCH];
            memset(rh, 0, sizeof(rh));
            for (unsigned k = 0; k < BATCH; k++) {
                riov[k] = (struct iovec){in[k], sizeof(in[k])};
                rh[k].msg_hdr.msg_iov = &riov[k];
                rh[k].msg_hdr.msg_iovlen = 1;
            }
            int got = recvmmsg(sock, rh, BATCH, MSG_DONTWAIT, NULL);
            for (int k = 0; k < got; k++) {
                const uint8_t *p = in[k];
                size_t len = rh[k].msg_len;
                if (len < 8 || (p[0] & 15) != 4)
                    continue;
                uint32_t dev;
                memcpy(&dev, p + 4, 4);
                for (unsigned s = 0; s < WINDOW; s++) {
                    if (busy[s] && slot_dev[s] == dev) {
                        busy[s] = false;
                        outstanding--;
                        if (p[1] == 0x41 && !update)
                            take_location(p, len, dev);
                        if (p[1] == 0x41 || p[1] == 0x44 || p[1] == 0x02)
                            st.ok++;
                        else
                            st.bad++;
                        last_progress = now_s();
                        break;
                    }
                }
            }
        }
        /* time out lost requests after 1 s */
        double t = now_s();
        if (t - last_progress > 0.2) {
            for (unsigned s = 0; s < WINDOW; s++)
                if (busy[s] && t - sent_at[s] > 1.0) {
                    busy[s] = false;
                    outstanding--;
                    st.lost++;
                }
        }
    }
    st.secs = now_s() - t0;
    return st;
}

/* ---- process accounting ----
 * CPU time from /proc/PID/task/TID/schedstat (first field: nanoseconds on a CPU), summed over the
 * threads that match: nanosecond resolution where /proc/PID/stat counts 10 ms ticks (a 0.3 s phase
 * would be +-3 % from rounding alone). */
static double task_cpu_secs(pid_t pid, const char *prefix)
{
    char path[128], comm[64];
    double total = 0;
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        int tid = atoi(de->d_name);
        if (tid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid, tid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        bool match = fgets(comm, sizeof(comm), f) && strncmp(comm, prefix, strlen(prefix)) == 0;
        fclose(f);
        if (!match)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, tid);
        unsigned long long ns = 0;
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%llu", &ns) != 1)
                ns = 0;
            fclose(f);
        }
        total += (double)ns / 1e9;
    }
    closedir(dir);
    return total;
}

/* CPU seconds of every thread of pid. */
static double cpu_secs(pid_t pid)
{
    return task_cpu_secs(pid, "");
}

/* CPU seconds of the daemon's shard threads (named lw-shard*). */
static double shard_cpu_secs(pid_t pid)
{
    return task_cpu_secs(pid, "lw-shard");
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = 0;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static uint16_t free_port(int type)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t l = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        perror("free_port");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void echo_server(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        _exit(1);
    static uint8_t bufs[BATCH][2048];
    struct mmsghdr h[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in from[BATCH];
    for (;;) {
        memset(h, 0, sizeof(h));
        for (unsigned k = 0; k < BATCH; k++) {
            iov[k] = (struct iovec){bufs[k], sizeof(bufs[k])};
            h[k].msg_hdr.msg_iov = &iov[k];
            h[k].msg_hdr.msg_iovlen = 1;
            h[k].msg_hdr.msg_name = &from[k];
            h[k].msg_hdr.msg_namelen = sizeof(from[k]);
        }
        int n = recvmmsg(fd, h, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        for (int k = 0; k < n; k++)
            iov[k].iov_len = h[k].msg_len;
        sendmmsg(fd, h, (unsigned)n, 0);
    }
}

static bool wait_ping(uint16_t port)
{
    uint8_t ping[4] = {0x40, 0, 0x12, 0x34}, r[16];
    struct sockaddr_in to = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    for (int i = 0; i < 100; i++) {
        sendto(sock, ping, 4, 0, (struct sockaddr *)&to, sizeof(to));
        struct pollfd pfd = {sock, POLLIN, 0};
        if (poll(&pfd, 1, 100) > 0 && recv(sock, r, sizeof(r), 0) >= 4 && r[2] == 0x12)
            return true;
    }
    return false;
}

struct phase {
    double rps, cpu_us, shard_us;
    uint64_t ok, bad, lost;
};

static struct phase measure(pid_t pid, uint32_t first, uint32_t count, uint64_t ops, bool update)
{
    double c0 = cpu_secs(pid), s0 = shard_cpu_secs(pid);
    struct stats st = run(first, count, ops, update, 60);
    double c1 = cpu_secs(pid), s1 = shard_cpu_secs(pid);
    struct phase ph = {(double)st.ok / st.secs, 0, 0, st.ok, st.bad, st.lost};
    ph.cpu_us = st.ok ? (c1 - c0) * 1e6 / (double)st.ok : 0;
    ph.shard_us = st.ok ? (s1 - s0) * 1e6 / (double)st.ok : 0;
    return ph;
}

static uint16_t echo_port;
static pid_t echo_pid;
#define MAX_FLOORS 64
static struct phase floors[MAX_FLOORS];
static int nfloors;

/* One run against the echo server (200 % of a phase's operations); returns it. */
static struct phase measure_floor(uint64_t ops)
{
    uint16_t keep = target_port;
    target_port = echo_port;
    struct phase ph = measure(echo_pid, 0, 50000, ops * 2, false);
    if (nfloors < MAX_FLOORS)
        floors[nfloors++] = ph;
    target_port = keep;
    return ph;
}

static int cmp_cpu(const void *a, const void *b)
{
    double x = ((const struct phase *)a)->cpu_us, y = ((const struct phase *)b)->cpu_us;
    return x < y ? -1 : x > y;
}

/* Waits (at most max_s) until the daemon's CPU use falls below 2 % (its event backlog drained);
 * returns the seconds waited. */
static double wait_idle(pid_t pid, double max_s)
{
    double t0 = now_s(), c_prev = cpu_secs(pid);
    while (now_s() - t0 < max_s) {
        usleep(100000);
        double c = cpu_secs(pid);
        if (c - c_prev < 0.002)
            break;
        c_prev = c;
    }
    return now_s() - t0;
}

#define SLICES 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One measured phase of `ops` requests (devices first.., Registers or Updates) as SLICES slices,
 * each right after a slice against the echo server (twice its requests, the daemon idle): load
 * changes on a shared machine last seconds, so slices a second apart see the same machine. *dm and
 * *fl sum the slices; the result is the median of the slices' ratios (echo CPU per request /
 * shard thread CPU per request, in %). */
static double measure_pair(pid_t d, uint32_t first, uint64_t ops, bool update, struct phase *dm,
                           struct phase *fl)
{
    double ratio[SLICES], dm_cpu = 0, dm_shard = 0, dm_secs = 0, fl_cpu = 0, fl_secs = 0;
    uint64_t slice = ops / SLICES;
    *dm = (struct phase){0};
    *fl = (struct phase){0};
    for (int k = 0; k < SLICES; k++) {
        wait_idle(d, 60);
        struct phase f = measure_floor(slice);
        struct phase p = measure(d, first + (uint32_t)(k * slice), (uint32_t)slice, slice, update);
        ratio[k] = p.shard_us > 0 ? 100.0 * f.cpu_us / p.shard_us : 0;
        fl_cpu += f.cpu_us * (double)f.ok;
        fl_secs += f.ok / (f.rps > 0 ? f.rps : 1);
        fl->ok += f.ok;
        fl->lost += f.lost;
        dm_cpu += p.cpu_us * (double)p.ok;
        dm_shard += p.shard_us * (double)p.ok;
        dm_secs += p.ok / (p.rps > 0 ? p.rps : 1);
        dm->ok += p.ok;
        dm->bad += p.bad;
        dm->lost += p.lost;
    }
    if (fl->ok) {
        fl->cpu_us = fl_cpu / (double)fl->ok;
        fl->rps = (double)fl->ok / fl_secs;
    }
    if (dm->ok) {
        dm->cpu_us = dm_cpu / (double)dm->ok;
        dm->shard_us = dm_shard / (double)dm->ok;
        dm->rps = (double)dm->ok / dm_secs;
    }
    qsort(ratio, SLICES, sizeof(ratio[0]), cmp_double);
    return ratio[SLICES / 2];
}

int main(int argc, char **argv)
{
    (void)argc;
    uint32_t max = getenv("LW_BENCH_MAX") ? (uint32_t)atol(getenv("LW_BENCH_MAX")) : 1000000;
    uint64_t ops = getenv("LW_BENCH_OPS") ? (uint64_t)atol(getenv("LW_BENCH_OPS")) : 100000;
    char bin[4096];
    if (getenv("LW_BENCH_BIN")) {
        snprintf(bin, sizeof(bin), "%s", getenv("LW_BENCH_BIN"));
    } else {
        char self[4000];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        self[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        snprintf(bin, sizeof(bin), "%s/../bin/lwm2md", self);
    }
    (void)argv;
    ids = calloc((size_t)max + 2 * ops + 1, sizeof(*ids));
    sock = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1, big = 16 << 20;
    setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(sock, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    struct sockaddr_in any = {.sin_family = AF_INET};
    if (!ids || sock < 0 || bind(sock, (struct sockaddr *)&any, sizeof(any)) != 0) {
        perror("bench setup");
        return 1;
    }

    if (getenv("LW_BENCH_TARGET")) { /* profiling mode */
        uint32_t first = getenv("LW_BENCH_FIRST") ? (uint32_t)atol(getenv("LW_BENCH_FIRST")) : 0;
        if (getenv("LW_BENCH_WINDOW"))
            window = (unsigned)atoi(getenv("LW_BENCH_WINDOW"));
        if (window < 1 || window > WINDOW)
            window = WINDOW;
        free(ids);
        if (!(ids = calloc((size_t)first + ops + 1, sizeof(*ids))))
            return 1;
        target_port = (uint16_t)atoi(getenv("LW_BENCH_TARGET"));
        struct stats st = run(first, (uint32_t)ops, ops, false, 600);
        printf("bench registration: %llu registers to port %u: %llu ok, %llu bad, %llu lost in "
               "%.1f s\n",
               (unsigned long long)ops, target_port, (unsigned long long)st.ok,
               (unsigned long long)st.bad, (unsigned long long)st.lost, st.secs);
        free(ids);
        return st.ok == ops ? 0 : 1;
    }

    /* 1. the echo floor: measured in slices interleaved with each daemon phase's (measure_pair),
     * so a change in the machine's load during the run (these machines are shared) tilts neither
     * side. */
    echo_port = free_port(SOCK_DGRAM);
    echo_pid = fork();
    if (echo_pid == 0) {
        echo_server(echo_port);
        _exit(0);
    }
    usleep(100000);
    measure_floor(ops); /* warm-up, also counted in the median */

    /* 2. the daemon, one shard */
    target_port = free_port(SOCK_DGRAM);
    char coap[64], api[64];
    snprintf(coap, sizeof(coap), "coap.listen=127.0.0.1:%u", target_port);
    snprintf(api, sizeof(api), "api.listen=127.0.0.1:%u", free_port(SOCK_STREAM));
    pid_t d = fork();
    if (d == 0) {
        execl(bin, bin, "--set", "server.shards=1", "--set", coap, "--set",
              "coaps.listen=", "--set", api, "--set", "log.level=warning", "--set",
              "server.state_dir=/tmp", (char *)NULL);
        perror(bin);
        _exit(127);
    }
    if (!wait_ping(target_port)) {
        fprintf(stderr, "bench registration: daemon %s did not answer\n", bin);
        kill(d, SIGKILL);
        waitpid(d, NULL, 0);
        return 1;
    }
    long rss0 = rss_kb(d);
    uint32_t pops[3] = {0, 100000, max};
    struct phase reg[3], upd[3], reg_floor[3], upd_floor[3];
    double reg_pct[3], upd_pct[3];
    long rss_at[3];
    uint32_t pop = 0;
    int levels = 0;
    for (int lv = 0; lv < 3; lv++) {
        if (pops[lv] < pop || (lv > 0 && pops[lv] <= pops[lv - 1]))
            break;
        if (pops[lv] > pop) { /* fill (not measured) */
            struct stats st = run(pop, pops[lv] - pop, pops[lv] - pop, false, 600);
            if (st.ok + st.bad < (uint64_t)(pops[lv] - pop) * 99 / 100)
                fprintf(stderr, "bench registration: fill to %u lost %llu\n", pops[lv],
                        (unsigned long long)st.lost);
            pop = pops[lv];
        }
        rss_at[lv] = rss_kb(d);
        reg_pct[lv] = measure_pair(d, pop, ops, false, &reg[lv], &reg_floor[lv]);
        pop += (uint32_t)ops;
        upd_pct[lv] = measure_pair(d, pop - (uint32_t)ops, ops, true, &upd[lv], &upd_floor[lv]);
        levels++;
    }
    /* Let the control thread drain its event backlog (the daemon goes idle), at most 60 s. */
    double drain_s = wait_idle(d, 60);
    long rss_end = rss_kb(d);
    kill(d, SIGTERM);
    waitpid(d, NULL, 0);
    kill(echo_pid, SIGKILL);
    waitpid(echo_pid, NULL, 0);
    const char *lvname[3] = {"0", "100k", "max"};
    qsort(floors, (size_t)nfloors, sizeof(floors[0]), cmp_cpu);
    struct phase floor_ph = floors[nfloors / 2];

    printf("bench registration: echo floor %.0f req/s, %.2f us cpu/req (median of %d runs:",
           floor_ph.rps, floor_ph.cpu_us, nfloors);
    for (int i = 0; i < nfloors; i++)
        printf(" %.2f", floors[i].cpu_us);
    printf(")\n");
    printf("bench registration_floor: %.0f requests per cpu-second (echo server, median of %d "
           "runs)\n",
           floor_ph.cpu_us > 0 ? 1e6 / floor_ph.cpu_us : 0, nfloors);
    for (int lv = 0; lv < levels; lv++) {
        const struct phase *ph[2] = {&reg[lv], &upd[lv]}, *fl[2] = {&reg_floor[lv], &upd_floor[lv]};
        for (int k = 0; k < 2; k++) {
            double pct = k ? upd_pct[lv] : reg_pct[lv];
            printf("bench registration: %s/s with %u registered: %.0f req/s; server cpu %.2f "
                   "us/req (shard thread %.2f us/req) = %.0f%% of the echo floor per core "
                   "(median of %d slices, each after an echo slice; echo %.2f us/req; bad %llu "
                   "lost %llu)\n",
                   k ? "updates" : "registers", k ? pops[lv] + (uint32_t)ops : pops[lv], ph[k]->rps,
                   ph[k]->cpu_us, ph[k]->shard_us, pct, SLICES, fl[k]->cpu_us,
                   (unsigned long long)ph[k]->bad, (unsigned long long)ph[k]->lost);
            /* for the summary table (tests/bench/summary.py, which takes the ratio from the
             * parenthesis): per shard-core second, and the floor of the same slices */
            printf("bench registration_%s_%s: %.0f requests per shard cpu-second (%.0f%% of the "
                   "echo floor: median of the interleaved slices; echo %.0f)\n",
                   k ? "update" : "register", lvname[lv],
                   ph[k]->shard_us > 0 ? 1e6 / ph[k]->shard_us : 0, pct,
                   fl[k]->cpu_us > 0 ? 1e6 / fl[k]->cpu_us : 0);
            printf("bench registration_%s_%s_floor: %.0f requests per cpu-second (echo server)\n",
                   k ? "update" : "register", lvname[lv],
                   fl[k]->cpu_us > 0 ? 1e6 / fl[k]->cpu_us : 0);
        }
    }
    double per_reg = pop > 0 ? (double)(rss_end - rss0) * 1024.0 / pop : 0;
    printf("bench registration: rss %.0f bytes per registration (%u registrations, %ld kB -> %ld "
           "kB after %.1f s of event drain; includes the CoAP dedup state of the last 247 s and "
           "the allocator's high-water mark; registration_mem has the steady state)\n",
           per_reg, pop, rss0, rss_end, drain_s);

    mkdir("bench", 0755);
    mkdir("bench/results", 0755);
    FILE *j = fopen("bench/results/registration.json", "a");
    if (j) {
        fprintf(j,
                "{\"bench\":\"registration\",\"time\":%ld,\"echo_rps\":%.0f,\"echo_cpu_us\":%.3f",
                (long)time(NULL), floor_ph.rps, floor_ph.cpu_us);
        for (int lv = 0; lv < levels; lv++)
            fprintf(j,
                    ",\"reg_rps_%s\":%.0f,\"reg_cpu_us_%s\":%.3f,\"reg_shard_us_%s\":%.3f,"
                    "\"upd_rps_%s\":%.0f,\"upd_cpu_us_%s\":%.3f,\"upd_shard_us_%s\":%.3f,"
                    "\"reg_floor_us_%s\":%.3f,\"upd_floor_us_%s\":%.3f,"
                    "\"pop_%s\":%u,\"rss_kb_%s\":%ld",
                    lvname[lv], reg[lv].rps, lvname[lv], reg[lv].cpu_us, lvname[lv],
                    reg[lv].shard_us, lvname[lv], upd[lv].rps, lvname[lv], upd[lv].cpu_us,
                    lvname[lv], upd[lv].shard_us, lvname[lv], reg_floor[lv].cpu_us, lvname[lv],
                    upd_floor[lv].cpu_us, lvname[lv], pops[lv], lvname[lv], rss_at[lv]);
        fprintf(j, ",\"registrations\":%u,\"rss_bytes_per_registration\":%.0f}\n", pop, per_reg);
        fclose(j);
    }
    free(ids);
    return 0;
}
