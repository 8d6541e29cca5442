/* tools/fleet/main.c - lwm2m-fleet: simulated LwM2M device fleets for load tests.
 *
 * Command line (stable; documented in docs/benchmarks.md):
 *   lwm2m-fleet --server coap://127.0.0.1:5683 --devices N [--rate R/s] [--duration S]
 *               [--fleet FILE] [--security nosec|psk] [--psk-identity PATTERN --psk-key HEX]
 *               [--scenario steady|storm|rebind] [--server-pid PID] [--report-json FILE]
 * plus --sockets K, --loss/--duplicate/--reorder P, --allow-target CIDR, --no-deregister,
 * --quiet, --dtls 1.2|1.3, --no-cid, --provision URL --token T [--provision-rate R]
 * [--provision-concurrency N]. Exit status: 0 when every device registered, 1 when some did not, 2
 * on usage or setup errors.
 */
#include "fleet.h"

#include "base/err.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted++;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: lwm2m-fleet --server coap://127.0.0.1:5683 --devices N [options]\n"
        "  --server URI          LwM2M server (coap://IPv4:port; loopback unless --allow-target)\n"
        "  --devices N           number of simulated devices (with --fleet: scales the groups)\n"
        "  --rate R[/s]          registrations per second during ramp-up (default 100)\n"
        "  --duration S          steady phase after ramp-up: 30s, 5m, ... (default 30s)\n"
        "  --fleet FILE          fleet file (INI; see config/fleet.example.ini)\n"
        "  --security nosec|psk  security mode of the default group (coaps:// implies psk)\n"
        "  --psk-identity PAT    PSK identity pattern ({ep}, {n}, {n:W}, {g}; default {ep})\n"
        "  --psk-key HEX|PAT     PSK key, hex or a pattern expanding to hex\n"
        "  --dtls 1.2|1.3        DTLS version of psk devices (default: the group's, 1.2)\n"
        "  --no-cid              psk devices do not offer Connection IDs (RFC 9146)\n"
        "  --provision URL       PUT each psk device's PSK to URL/api/v1/devices/{ep}/credentials\n"
        "                        before the run (lwm2md admin API, e.g. http://127.0.0.1:8080)\n"
        "  --token T             bearer token for --provision (default: $LWM2MD_TOKEN)\n"
        "  --provision-rate R    provisioning requests per second (default 500)\n"
        "  --provision-concurrency N  requests in flight (default 16)\n"
        "  --floor-server IP:PORT  run the stateless benchmark floor server instead (loopback)\n"
        "  --scenario S          steady | storm | rebind (default steady)\n"
        "  --event-at T          the storm/rebind T after the ramp-up (default: half the "
        "duration)\n"
        "  --server-pid PID      sample the server's CPU time and RSS from /proc\n"
        "  --report-json FILE    write the final report as JSON\n"
        "  --sockets K           UDP sockets per port set (default min(16, N))\n"
        "  --loss P --duplicate P --reorder P   packet impairments (0..1 or N%%)\n"
        "  --allow-target CIDR   allow a non-loopback IPv4 target inside CIDR (test netns)\n"
        "  --no-deregister       leave devices registered at the end\n"
        "  --quiet               no progress line\n");
}

static int parse_cidr(const char *s, uint32_t *net, uint32_t *mask)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    if (!slash || (size_t)(slash - s) >= sizeof(buf))
        return LW_EINVAL;
    memcpy(buf, s, (size_t)(slash - s));
    buf[slash - s] = 0;
    uint64_t bits;
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1 || lw_parse_u64(slash + 1, strlen(slash + 1), &bits) ||
        bits > 32)
        return LW_EINVAL;
    *mask = bits ? htonl(~0u << (32 - bits)) : 0;
    *net = a.s_addr & *mask;
    return 0;
}

static int parse_server(struct fleet_eng *e, char *err, size_t cap)
{
    const char *u = e->opt.server;
    bool secure = strncmp(u, "coaps://", 8) == 0;
    if (!secure && strncmp(u, "coap://", 7) != 0) {
        snprintf(err, cap, "--server: expected coap://HOST:PORT or coaps://HOST:PORT");
        return LW_EINVAL;
    }
    char host[64];
    const char *h = u + (secure ? 8 : 7);
    size_t hl = strcspn(h, "/");
    if (hl == 0 || hl >= sizeof(host)) {
        snprintf(err, cap, "--server: bad host");
        return LW_EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    uint16_t port = secure ? 5684 : 5683;
    char *colon = strrchr(host, ':');
    if (host[0] == '[') {
        snprintf(err, cap,
                 "--server: IPv6 targets are not supported (one ::1 address cannot "
                 "give every device its own source address)");
        return LW_ENOTSUP;
    }
    if (colon) {
        uint64_t p;
        *colon = 0;
        if (lw_parse_u64(colon + 1, strlen(colon + 1), &p) || p == 0 || p > 65535) {
            snprintf(err, cap, "--server: bad port");
            return LW_EINVAL;
        }
        port = (uint16_t)p;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    e->server.sin_family = AF_INET;
    e->server.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &e->server.sin_addr) != 1) {
        snprintf(err, cap, "--server: expected an IPv4 address literal");
        return LW_EINVAL;
    }
    uint32_t a = e->server.sin_addr.s_addr;
    if ((ntohl(a) >> 24) == 127)
        return 0;
    uint32_t net, mask;
    if (e->opt.allow_target && parse_cidr(e->opt.allow_target, &net, &mask) == 0 &&
        (a & mask) == net && mask != 0)
        return 0;
    snprintf(err, cap,
             "--server: refusing target %s outside 127.0.0.0/8 (load tests target loopback or a "
             "test namespace named with --allow-target CIDR)",
             host);
    return LW_EPERM;
}

enum {
    O_SOCKETS = 256,
    O_LOSS,
    O_DUP,
    O_REORDER,
    O_ALLOW,
    O_NODEREG,
    O_QUIET,
    O_PSKID,
    O_PSKKEY,
    O_PID,
    O_JSON,
    O_DTLS,
    O_NOCID,
    O_PROV,
    O_TOKEN,
    O_PROVRATE,
    O_PROVCONC,
    O_FLOOR,
    O_EVENTAT
};

static int parse_args(int argc, char **argv, struct fleet_opts *o)
{
    static const struct option lo[] = {
        {"server", required_argument, NULL, 's'},
        {"devices", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'},
        {"fleet", required_argument, NULL, 'f'},
        {"security", required_argument, NULL, 'S'},
        {"psk-identity", required_argument, NULL, O_PSKID},
        {"psk-key", required_argument, NULL, O_PSKKEY},
        {"scenario", required_argument, NULL, 'c'},
        {"server-pid", required_argument, NULL, O_PID},
        {"report-json", required_argument, NULL, O_JSON},
        {"sockets", required_argument, NULL, O_SOCKETS},
        {"loss", required_argument, NULL, O_LOSS},
        {"duplicate", required_argument, NULL, O_DUP},
        {"reorder", required_argument, NULL, O_REORDER},
        {"allow-target", required_argument, NULL, O_ALLOW},
        {"no-deregister", no_argument, NULL, O_NODEREG},
        {"quiet", no_argument, NULL, O_QUIET},
        {"dtls", required_argument, NULL, O_DTLS},
        {"no-cid", no_argument, NULL, O_NOCID},
        {"provision", required_argument, NULL, O_PROV},
        {"token", required_argument, NULL, O_TOKEN},
        {"provision-rate", required_argument, NULL, O_PROVRATE},
        {"provision-concurrency", required_argument, NULL, O_PROVCONC},
        {"floor-server", required_argument, NULL, O_FLOOR},
        {"event-at", required_argument, NULL, O_EVENTAT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    o->scenario = -1;
    o->security = -1;
    o->loss = o->dup = o->reorder = -1;
    while ((c = getopt_long(argc, argv, "s:n:r:d:f:S:c:h", lo, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case 's': o->server = optarg; break;
        case 'n':
            if (lw_parse_u64(optarg, strlen(optarg), &v) || v == 0 || v > FLEET_MAX_DEVICES) {
                fprintf(stderr, "lwm2m-fleet: --devices: expected 1..%u\n", FLEET_MAX_DEVICES);
                return 2;
            }
            o->devices = v;
            break;
        case 'r':
            if (fleet_parse_rate(optarg, &o->rate)) {
                fprintf(stderr, "lwm2m-fleet: --rate: expected R or R/s\n");
                return 2;
            }
            break;
        case 'd':
            o->has_duration = true;
            if (fleet_parse_duration(optarg, &o->duration_ms)) {
                fprintf(stderr, "lwm2m-fleet: --duration: expected seconds or 30s, 5m, 1h\n");
                return 2;
            }
            break;
        case 'f': o->fleet_file = optarg; break;
        case O_EVENTAT:
            if (fleet_parse_duration(optarg, &o->event_at_ms) || o->event_at_ms == 0) {
                fprintf(stderr, "lwm2m-fleet: --event-at: expected seconds or 30s, 5m\n");
                return 2;
            }
            break;
        case 'S':
            if (strcmp(optarg, "nosec") == 0) {
                o->security = FLEET_SEC_NOSEC;
            } else if (strcmp(optarg, "psk") == 0) {
                o->security = FLEET_SEC_PSK;
            } else {
                fprintf(stderr, "lwm2m-fleet: --security: expected nosec or psk\n");
                return 2;
            }
            break;
        case O_PSKID: o->psk_identity = optarg; break;
        case O_PSKKEY: o->psk_key = optarg; break;
        case 'c':
            if (strcmp(optarg, "steady") == 0)
                o->scenario = FLEET_SC_STEADY;
            else if (strcmp(optarg, "storm") == 0)
                o->scenario = FLEET_SC_STORM;
            else if (strcmp(optarg, "rebind") == 0)
                o->scenario = FLEET_SC_REBIND;
            else {
                fprintf(stderr, "lwm2m-fleet: --scenario: expected steady, storm or rebind\n");
                return 2;
            }
            break;
        case O_PID:
            if (lw_parse_u64(optarg, strlen(optarg), &v) || v == 0 || v > 0x7fffffff) {
                fprintf(stderr, "lwm2m-fleet: --server-pid: expected a process id\n");
                return 2;
            }
            o->server_pid = (long)v;
            break;
        case O_JSON: o->report_json = optarg; break;
        case O_SOCKETS:
            if (lw_parse_u64(optarg, strlen(optarg), &v) || v == 0 || v > 1024) {
                fprintf(stderr, "lwm2m-fleet: --sockets: expected 1..1024\n");
                return 2;
            }
            o->sockets = (uint32_t)v;
            break;
        case O_LOSS:
        case O_DUP:
        case O_REORDER: {
            double *dst = c == O_LOSS ? &o->loss : c == O_DUP ? &o->dup : &o->reorder;
            if (fleet_parse_fraction(optarg, dst)) {
                fprintf(stderr, "lwm2m-fleet: %s: expected 0..1 or N%%\n", argv[optind - 1]);
                return 2;
            }
            break;
        }
        case O_ALLOW: o->allow_target = optarg; break;
        case O_NODEREG: o->no_deregister = true; break;
        case O_QUIET: o->quiet = true; break;
        case O_DTLS:
            if (strcmp(optarg, "1.2") == 0) {
                o->dtls_version = 12;
            } else if (strcmp(optarg, "1.3") == 0) {
                o->dtls_version = 13;
            } else {
                fprintf(stderr, "lwm2m-fleet: --dtls: expected 1.2 or 1.3\n");
                return 2;
            }
            break;
        case O_NOCID: o->no_cid = true; break;
        case O_FLOOR: o->floor = optarg; break;
        case O_PROV: o->api = optarg; break;
        case O_TOKEN: o->api_token = optarg; break;
        case O_PROVRATE:
            if (fleet_parse_rate(optarg, &o->provision_rate) || o->provision_rate <= 0) {
                fprintf(stderr, "lwm2m-fleet: --provision-rate: expected R or R/s\n");
                return 2;
            }
            break;
        case O_PROVCONC:
            if (lw_parse_u64(optarg, strlen(optarg), &v) || v == 0 || v > 256) {
                fprintf(stderr, "lwm2m-fleet: --provision-concurrency: expected 1..256\n");
                return 2;
            }
            o->provision_conc = (uint32_t)v;
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lwm2m-fleet: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    return 0;
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return LW_EIO;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        if (cap >= (16u << 20)) {
            free(buf);
            buf = NULL;
            break;
        }
        char *nb = realloc(buf, cap *= 2);
        if (!nb)
            free(buf);
        buf = nb;
    }
    fclose(f);
    if (!buf)
        return LW_ENOMEM;
    *out = buf;
    *len = n;
    return 0;
}

/* Builds the groups from the fleet file and the command line. */
static int setup_groups(struct fleet_eng *e, char *err, size_t cap)
{
    struct fleet_file *f = &e->file;
    struct fleet_opts *o = &e->opt;
    if (f->ngroups == 0) {
        if (!o->devices) {
            snprintf(err, cap, "--devices is required (or a fleet file with groups)");
            return LW_EINVAL;
        }
        f->ngroups = 1;
        fleet_group_init(&f->groups[0], "default");
        f->groups[0].count = (uint32_t)o->devices;
        f->groups[0].security = (uint8_t)(o->security < 0 ? FLEET_SEC_NOSEC : o->security);
        if (o->psk_identity)
            snprintf(f->groups[0].psk_identity, FLEET_PATTERN_MAX, "%s", o->psk_identity);
        if (o->psk_key)
            snprintf(f->groups[0].psk_key, FLEET_PATTERN_MAX, "%s", o->psk_key);
        if (fleet_group_check(&f->groups[0], err, cap))
            return LW_EINVAL;
    } else if (o->devices) {
        /* --devices scales the file's group counts proportionally. */
        uint64_t total = 0, given = 0;
        for (uint32_t i = 0; i < f->ngroups; i++)
            total += f->groups[i].count;
        if (!total) {
            snprintf(err, cap, "fleet file groups have no devices to scale");
            return LW_EINVAL;
        }
        for (uint32_t i = 0; i < f->ngroups; i++) {
            uint64_t n =
                i + 1 == f->ngroups ? o->devices - given : o->devices * f->groups[i].count / total;
            f->groups[i].count = (uint32_t)n;
            given += n;
        }
    }
    uint32_t first = 0;
    for (uint32_t i = 0; i < f->ngroups; i++) {
        struct fleet_group *g = &f->groups[i];
        if (g->security == FLEET_SEC_PSK) {
            if (o->dtls_version)
                g->dtls_version = (uint8_t)o->dtls_version;
            if (o->no_cid)
                g->no_cid = true;
        }
        /* One server address: DTLS groups need coaps://, NoSec groups coap://. */
        bool coaps = strncmp(o->server, "coaps://", 8) == 0;
        if ((g->security == FLEET_SEC_PSK) != coaps) {
            snprintf(err, cap, "group %s: security %s needs a %s server URI", g->name,
                     g->security == FLEET_SEC_PSK ? "psk" : "nosec",
                     g->security == FLEET_SEC_PSK ? "coaps://" : "coap://");
            return LW_EINVAL;
        }
        e->groups[i].cfg = f->groups[i];
        e->groups[i].first = first;
        e->groups[i].count = f->groups[i].count;
        first += f->groups[i].count;
    }
    e->ngroups = f->ngroups;
    e->ndev = first;
    if (!e->ndev) {
        snprintf(err, cap, "no devices");
        return LW_EINVAL;
    }
    return 0;
}

static void devices_init(struct fleet_eng *e)
{
    uint32_t g = 0;
    for (uint32_t i = 0; i < e->ndev; i++) {
        while (i >= e->groups[g].first + e->groups[g].count)
            g++;
        struct fleet_dev *d = &e->devs[i];
        d->idx = i;
        d->group = (uint8_t)g;
        lw_coap_ep_init(&d->ep, &e->env, d);
        lw_timer_init(&d->timer, NULL);
        d->timer.cb = NULL;
    }
}

static void run_timers(struct fleet_eng *e)
{
    lw_wheel_advance(&e->wheel, e->now);
    net_flush(e);
}

static int loop_wait(struct fleet_eng *e)
{
    uint64_t dl = lw_wheel_next_deadline(&e->wheel);
    uint64_t now = fleet_now_ms();
    int t = 10;
    if (dl != LW_WHEEL_NEVER && dl > now && dl - now < 10)
        t = (int)(dl - now);
    else if (dl != LW_WHEEL_NEVER && dl <= now)
        t = 0;
    return t;
}

int main(int argc, char **argv)
{
    static struct fleet_eng eng;
    E = &eng;
    struct fleet_eng *e = &eng;
    char err[512] = "";
    int rc = parse_args(argc, argv, &e->opt);
    if (rc)
        return rc;
    if (e->opt.floor)
        return floor_server(e->opt.floor);
    fleet_file_init(&e->file);
    if (e->opt.fleet_file) {
        char *text;
        size_t len;
        if (read_file(e->opt.fleet_file, &text, &len)) {
            fprintf(stderr, "lwm2m-fleet: cannot read fleet file \"%s\"\n", e->opt.fleet_file);
            return 2;
        }
        rc = fleet_file_parse(text, len, &e->file, err, sizeof(err));
        free(text);
        if (rc) {
            fprintf(stderr, "lwm2m-fleet: %s: %s\n", e->opt.fleet_file, err);
            return 2;
        }
    }
    /* Command line over fleet file over defaults. */
    struct fleet_opts *o = &e->opt;
    if (!o->server)
        o->server = e->file.server[0] ? e->file.server : "coap://127.0.0.1:5683";
    if (o->rate <= 0)
        o->rate = e->file.rate > 0 ? e->file.rate : 100;
    if (!o->has_duration)
        o->duration_ms = e->file.has_duration ? e->file.duration_ms : 30000;
    if (o->scenario < 0)
        o->scenario = e->file.scenario >= 0 ? e->file.scenario : FLEET_SC_STEADY;
    if (o->loss < 0)
        o->loss = e->file.loss;
    if (o->dup < 0)
        o->dup = e->file.dup;
    if (o->reorder < 0)
        o->reorder = e->file.reorder;
    if (!e->file.deregister)
        o->no_deregister = true;
    if (o->security < 0 && strncmp(o->server, "coaps://", 8) == 0)
        o->security = FLEET_SEC_PSK;
    if (o->security == FLEET_SEC_PSK && !o->psk_key && !e->opt.fleet_file) {
        fprintf(stderr, "lwm2m-fleet: --security psk needs --psk-key\n");
        return 2;
    }
    if (!o->api_token)
        o->api_token = getenv("LWM2MD_TOKEN");
    if (parse_server(e, err, sizeof(err)) || setup_groups(e, err, sizeof(err))) {
        fprintf(stderr, "lwm2m-fleet: %s\n", err);
        return 2;
    }
    e->k = o->sockets ? o->sockets : e->file.sockets ? e->file.sockets : 16;
    if (e->k > e->ndev)
        e->k = e->ndev;
    if ((uint64_t)e->ndev / e->k + 1 > (0x7fffffffu - 0x7f010000u)) {
        fprintf(stderr, "lwm2m-fleet: too many devices for %u sockets: use more --sockets\n", e->k);
        return 2;
    }
    if (getrandom(e->rng, sizeof(e->rng), 0) != sizeof(e->rng) || (!e->rng[0] && !e->rng[1]))
        e->rng[0] = 0x9e3779b97f4a7c15ull, e->rng[1] = (uint64_t)fleet_now_us();
    e->epfd = -1;
    e->now = e->t0 = fleet_now_ms();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    e->wall0 = (double)wall.tv_sec + (double)wall.tv_nsec / 1e9;
    lw_wheel_init(&e->wheel, e->now);
    if (sec_init(e, err, sizeof(err))) {
        fprintf(stderr, "lwm2m-fleet: %s\n", err);
        return 2;
    }
    if (dev_env_init(e)) {
        fprintf(stderr, "lwm2m-fleet: cannot set up the CoAP layer\n");
        return 2;
    }
    e->devs = calloc(e->ndev, sizeof(*e->devs));
    if (!e->devs) {
        fprintf(stderr, "lwm2m-fleet: out of memory for %u devices\n", e->ndev);
        return 2;
    }
    if (net_open(e, err, sizeof(err))) {
        fprintf(stderr, "lwm2m-fleet: %s\n", err);
        net_close(e);
        return 2;
    }
    devices_init(e);
    if (o->api && provision_run(e, o->quiet ? NULL : stderr) != 0) {
        fprintf(stderr, "lwm2m-fleet: provisioning failed; not starting the devices\n");
        free(e->devs);
        net_close(e);
        sec_deinit();
        return 2;
    }
    e->now = e->t0 = fleet_now_ms(); /* the run starts after provisioning */
    {
        struct proc_sample me;
        proc_sample((long)getpid(), &me);
        e->rss_base_kb = me.rss_kb;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    static const char *const scn[] = {"steady", "storm", "rebind"};
    if (!o->quiet)
        fprintf(stderr,
                "lwm2m-fleet: %u devices in %u group%s -> %s, %.0f reg/s, %.1f s steady, "
                "scenario %s, %u+%u sockets\n",
                e->ndev, e->ngroups, e->ngroups == 1 ? "" : "s", o->server, o->rate,
                (double)o->duration_ms / 1000.0, scn[o->scenario], e->k, e->k);
    struct proc_sample p0, p1, ps;
    proc_sample(o->server_pid, &p0);
    if (o->server_pid && !p0.ok)
        fprintf(stderr, "lwm2m-fleet: cannot read /proc/%ld: not sampling the server\n",
                o->server_pid);
    uint64_t rss_max = p0.rss_kb;
    uint64_t ramp_end = 0, steady_end = 0, event_at = 0, storm_t = 0, next_progress = 0;
    uint64_t next_sample = e->now + 1000;
    uint32_t storm_target = 0;
    double storm_recovery = -1;
    bool event_done = false;
    uint64_t progress_every = isatty(STDERR_FILENO) ? 1000 : 5000;

    /* Ramp-up and steady phase. */
    while (!interrupted) {
        net_poll(e, loop_wait(e));
        run_timers(e);
        if (e->started < e->ndev) {
            double el = (double)(e->now - e->t0) / 1000.0;
            uint64_t target = (uint64_t)(el * o->rate) + 1;
            while (e->started < e->ndev && e->started < target)
                dev_start(&e->devs[e->started++]);
            net_flush(e);
            if (e->started == e->ndev) {
                ramp_end = e->now;
                steady_end = ramp_end + o->duration_ms;
                event_at = ramp_end + (o->event_at_ms ? o->event_at_ms : o->duration_ms / 2);
            }
        } else {
            if (!event_done && e->now >= event_at) {
                event_done = true;
                if (o->scenario == FLEET_SC_STORM) {
                    /* Power restoration: everyone lost power and comes back at once. */
                    storm_target = e->st.registered;
                    storm_t = e->now;
                    if (!o->quiet)
                        fprintf(stderr, "\nlwm2m-fleet: storm: %u devices re-register at once\n",
                                storm_target);
                    for (uint32_t i = 0; i < e->ndev; i++)
                        dev_power_cycle(&e->devs[i], e->now);
                } else if (o->scenario == FLEET_SC_REBIND) {
                    if (!o->quiet)
                        fprintf(stderr, "\nlwm2m-fleet: rebind: every device moves to a new "
                                        "source port and sends an Update\n");
                    for (uint32_t i = 0; i < e->ndev; i++)
                        dev_rebind(&e->devs[i]);
                }
            }
            if (storm_t && storm_recovery < 0 && e->st.registered >= storm_target)
                storm_recovery = (double)(e->now - storm_t) / 1000.0;
            if (e->now >= steady_end)
                break;
        }
        if (e->now >= next_sample) {
            proc_sample(o->server_pid, &ps);
            if (ps.rss_kb > rss_max)
                rss_max = ps.rss_kb;
            next_sample = e->now + 1000;
        }
        if (!o->quiet && e->now >= next_progress) {
            report_progress(e, false);
            next_progress = e->now + progress_every;
        }
    }
    if (storm_t && storm_recovery < 0 && !o->quiet)
        fprintf(stderr, "\nlwm2m-fleet: storm: only %u of %u devices registered again\n",
                e->st.registered, storm_target);
    e->st.registered_at_end = e->st.registered;
    {
        struct proc_sample me;
        proc_sample((long)getpid(), &me);
        e->rss_steady_kb = me.rss_kb;
        e->dtls_live_at_end = sec_live();
    }
    uint64_t t_steady_end = e->now;
    proc_sample(o->server_pid, &p1);
    if (p1.rss_kb > rss_max)
        rss_max = p1.rss_kb;

    /* De-registration phase (at the ramp-up rate), then drain outstanding exchanges. */
    e->stopping = true;
    if (!o->no_deregister) {
        uint64_t t_start = e->now;
        uint32_t next = 0;
        uint64_t deadline = 0, next_sweep = 0;
        while (interrupted < 2) {
            double el = (double)(e->now - t_start) / 1000.0;
            uint64_t target = (uint64_t)(el * o->rate * (interrupted ? 100 : 1)) + 1;
            while (next < e->ndev && next < target)
                dev_deregister(&e->devs[next++]);
            net_flush(e);
            if (next == e->ndev && !deadline)
                deadline = e->now + 100000; /* beyond MAX_TRANSMIT_WAIT (93 s) */
            if (next == e->ndev && e->now >= next_sweep) {
                /* Registrations still retransmitting finish now; de-register those too. */
                uint32_t pending = 0;
                for (uint32_t i = 0; i < e->ndev; i++) {
                    struct fleet_dev *d = &e->devs[i];
                    if (d->state == DS_REGISTERED)
                        dev_deregister(d);
                    pending += d->state == DS_DEREGISTERING || d->state == DS_REGISTERING;
                }
                net_flush(e);
                if (pending == 0 || e->now >= deadline)
                    break;
                next_sweep = e->now + 200;
            }
            net_poll(e, loop_wait(e));
            run_timers(e);
            if (!o->quiet && e->now >= next_progress) {
                report_progress(e, false);
                next_progress = e->now + progress_every;
            }
        }
    }
    /* A short drain so final ACKs and responses leave. */
    uint64_t drain_end = fleet_now_ms() + 200;
    while (fleet_now_ms() < drain_end) {
        net_poll(e, 10);
        run_timers(e);
    }
    if (!o->quiet)
        report_progress(e, true);
    double duration_s = (double)(e->now - e->t0) / 1000.0;
    struct run_phases ph = {0};
    ph.ramp_s = (double)((ramp_end ? ramp_end : t_steady_end) - e->t0) / 1000.0;
    ph.steady_s = ramp_end ? (double)(t_steady_end - ramp_end) / 1000.0 : 0;
    ph.deregister_s = (double)(e->now - t_steady_end) / 1000.0;
    rc =
        report_write(e, duration_s, &ph, &p0, &p1, rss_max, storm_recovery, stdout, o->report_json);
    if (rc)
        fprintf(stderr, "lwm2m-fleet: cannot write the JSON report to \"%s\"\n", o->report_json);
    bool all = e->st.ever_registered == e->ndev;
    e->closing = true;
    for (uint32_t i = 0; i < e->ndev; i++)
        dev_free(&e->devs[i]);
    while (lw_wheel_count(&e->wheel))
        lw_wheel_advance(&e->wheel, UINT64_MAX - 1); /* frees held-back (reordered) datagrams */
    free(e->devs);
    net_close(e);
    sec_deinit();
    return rc ? 2 : all ? 0 : 1;
}
