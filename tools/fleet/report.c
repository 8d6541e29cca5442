/* tools/fleet/report.c - latency histograms, the live progress line, /proc sampling of the server
 * process, and the final report (human table on stdout, JSON via jansson).
 */
#include "fleet.h"

#include "base/err.h"
#include "base/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const OP_NAMES[OP__COUNT] = {
    [OP_REGISTER] = "register",
    [OP_UPDATE] = "update",
    [OP_DEREGISTER] = "deregister",
    [OP_SEND] = "send",
    [OP_NOTIFY] = "notify",
    [OP_FW_PULL] = "fw_pull",
    [OP_READ] = "read",
    [OP_DISCOVER] = "discover",
    [OP_WRITE] = "write",
    [OP_WRITE_ATTR] = "write_attributes",
    [OP_EXECUTE] = "execute",
    [OP_OBSERVE] = "observe",
    [OP_OBSERVE_CANCEL] = "observe_cancel",
    [OP_READ_COMPOSITE] = "read_composite",
    [OP_WRITE_COMPOSITE] = "write_composite",
    [OP_FW_PUSH] = "fw_push",
    [OP_CREATE_DELETE] = "create_delete",
    [OP_HANDSHAKE] = "dtls_handshake",
};

static const char *const REASONS[R__COUNT] = {
    [R_TIMEOUT] = "timeout",         [R_RESET] = "reset",
    [R_CANCELED] = "canceled",       [R_BLOCKWISE] = "blockwise",
    [R_NO_LOCATION] = "no_location", [R_SEND_ERRNO] = "send_error",
    [R_NOMEM] = "out_of_memory",     [R_DTLS] = "dtls",
};

const char *op_name(enum fleet_op op)
{
    return op < OP__COUNT ? OP_NAMES[op] : "?";
}

/* ---- histogram --------------------------------------------------------------------------- */

static unsigned bucket_of(uint64_t us)
{
    if (us < HIST_SUB)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us); /* us in [2^e, 2^(e+1)) , e >= 5 */
    unsigned sub = (unsigned)((us >> (e - 5)) & (HIST_SUB - 1));
    unsigned b = (e - 4) * HIST_SUB + sub;
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

static uint64_t bucket_upper(unsigned b)
{
    if (b < HIST_SUB)
        return b;
    unsigned e = b / HIST_SUB + 4, sub = b % HIST_SUB;
    return ((uint64_t)(HIST_SUB + sub + 1) << (e - 5)) - 1;
}

void hist_add(struct hist *h, uint64_t us)
{
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
    h->b[bucket_of(us)]++;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (!h->count)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += h->b[b];
        if (seen >= rank) /* the last bucket also holds everything beyond its range */
            return b == HIST_BUCKETS - 1 ? h->max_us : LW_MIN(bucket_upper(b), h->max_us);
    }
    return h->max_us;
}

/* ---- /proc ------------------------------------------------------------------------------- */

void proc_sample(long pid, struct proc_sample *s)
{
    memset(s, 0, sizeof(*s));
    if (pid <= 0)
        return;
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Fields after the command name, which may contain spaces: start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return;
    unsigned long long ut = 0, stt = 0;
    /* state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return;
    long hz = sysconf(_SC_CLK_TCK);
    s->cpu_s = (double)(ut + stt) / (double)(hz > 0 ? hz : 100);
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            s->rss_kb = strtoull(line + 6, NULL, 10);
    fclose(f);
    s->ok = true;
}

/* ---- progress ---------------------------------------------------------------------------- */

void report_progress(struct fleet_eng *e, bool final_line)
{
    static uint64_t last_ms, last_ok, last_tx;
    uint64_t ok = 0, err = 0;
    for (int i = 0; i < OP__COUNT; i++) {
        ok += e->st.op[i].ok;
        err += e->st.op[i].errors;
    }
    double dt = last_ms ? (double)(e->now - last_ms) / 1000.0 : 0;
    double ops = dt > 0 ? (double)(ok - last_ok) / dt : 0;
    double pps = dt > 0 ? (double)(e->st.tx_dgrams - last_tx) / dt : 0;
    last_ms = e->now;
    last_ok = ok;
    last_tx = e->st.tx_dgrams;
    bool tty = isatty(STDERR_FILENO);
    fprintf(stderr,
            "%s[%6.1fs] started %u/%u registered %u ops/s %.0f tx/s %.0f errors %llu "
            "retrans %llu obs %u%s",
            tty ? "\r" : "", (double)(e->now - e->t0) / 1000.0, e->started, e->ndev,
            e->st.registered, ops, pps, (unsigned long long)err,
            (unsigned long long)e->st.retransmissions, e->st.observations,
            tty && !final_line ? "   " : "\n");
    fflush(stderr);
}

/* ---- final report ------------------------------------------------------------------------ */

static void code_str(uint8_t c, char *out, size_t cap)
{
    snprintf(out, cap, "%u.%02u", LW_COAP_CODE_CLASS(c), LW_COAP_CODE_DETAIL(c));
}

int report_write(struct fleet_eng *e, double duration_s, const struct run_phases *ph,
                 const struct proc_sample *p0, const struct proc_sample *p1, uint64_t rss_max_kb,
                 double storm_recovery_s, FILE *human, const char *json_path)
{
    int rc = 0;
    uint32_t not_registered = e->started - LW_MIN(e->st.ever_registered, e->started);
    json_t *root = json_object();
    json_t *ops = json_object();
    json_t *fails = json_object();
    if (!root || !ops || !fails) {
        rc = LW_ENOMEM;
        goto out;
    }
    json_object_set_new(root, "devices", json_integer(e->ndev));
    json_object_set_new(root, "started", json_integer(e->started));
    json_object_set_new(root, "registered", json_integer(e->st.ever_registered));
    json_object_set_new(root, "registered_at_end", json_integer(e->st.registered_at_end));
    json_object_set_new(root, "failed", json_integer(not_registered));
    json_object_set_new(root, "duration_s", json_real(duration_s));
    json_t *phases = json_object();
    json_object_set_new(phases, "ramp_s", json_real(ph->ramp_s));
    json_object_set_new(phases, "steady_s", json_real(ph->steady_s));
    json_object_set_new(phases, "deregister_s", json_real(ph->deregister_s));
    json_object_set_new(root, "phases_s", phases);
    static const char *const sc[] = {"steady", "storm", "rebind"};
    json_object_set_new(root, "scenario", json_string(sc[e->opt.scenario]));
    json_object_set_new(root, "server", json_string(e->opt.server));
    if (storm_recovery_s >= 0)
        json_object_set_new(root, "storm_recovery_s", json_real(storm_recovery_s));

    if (human) {
        fprintf(human,
                "\nlwm2m-fleet report: %u devices, %u registered, %u never registered, "
                "%.1f s\n",
                e->ndev, e->st.ever_registered, not_registered, duration_s);
        fprintf(human, "%-17s %10s %9s %8s %9s %9s %9s %9s\n", "operation", "count", "rate/s",
                "errors", "p50 ms", "p90 ms", "p99 ms", "max ms");
    }
    for (int i = 0; i < OP__COUNT; i++) {
        const struct op_stats *s = &e->st.op[i];
        if (!s->ok && !s->errors)
            continue;
        double p50 = (double)hist_quantile(&s->lat, 0.50) / 1000.0;
        double p90 = (double)hist_quantile(&s->lat, 0.90) / 1000.0;
        double p99 = (double)hist_quantile(&s->lat, 0.99) / 1000.0;
        double mx = (double)s->lat.max_us / 1000.0;
        /* Rate over the window in which this operation ran (first start to last completion), not
         * the whole run: registrations during a 10 s ramp of a 60 s run are 5x faster than
         * count / 60. */
        double window_s = s->last_done_us > s->first_start_us
                              ? (double)(s->last_done_us - s->first_start_us) / 1e6
                              : duration_s;
        double rate = window_s > 0 ? (double)s->ok / window_s : 0;
        json_t *o = json_object();
        json_object_set_new(o, "count", json_integer((json_int_t)s->ok));
        json_object_set_new(o, "rate_per_s", json_real(rate));
        json_object_set_new(o, "p50_ms", json_real(p50));
        json_object_set_new(o, "p90_ms", json_real(p90));
        json_object_set_new(o, "p99_ms", json_real(p99));
        json_object_set_new(o, "max_ms", json_real(mx));
        json_object_set_new(o, "errors", json_integer((json_int_t)s->errors));
        json_t *why = json_object();
        for (int c = 0; c < 256; c++) {
            if (!s->by_code[c])
                continue;
            char k[16];
            code_str((uint8_t)c, k, sizeof(k));
            json_object_set_new(why, k, json_integer((json_int_t)s->by_code[c]));
        }
        for (int r = 0; r < R__COUNT; r++)
            if (s->by_reason[r])
                json_object_set_new(why, REASONS[r], json_integer((json_int_t)s->by_reason[r]));
        if (json_object_size(why)) {
            const char *k;
            json_t *v;
            json_object_foreach(why, k, v)
            {
                char key[64];
                snprintf(key, sizeof(key), "%s: %s", OP_NAMES[i], k);
                json_object_set(fails, key, v);
            }
        }
        json_object_set_new(o, "failures", why);
        json_object_set_new(ops, OP_NAMES[i], o);
        if (human)
            fprintf(human, "%-17s %10llu %9.1f %8llu %9.2f %9.2f %9.2f %9.2f\n", OP_NAMES[i],
                    (unsigned long long)s->ok, rate, (unsigned long long)s->errors, p50, p90, p99,
                    mx);
    }
    json_object_set(root, "operations", ops);
    json_object_set(root, "failures", fails);
    if (human && json_object_size(fails)) {
        fprintf(human, "failures:\n");
        const char *k;
        json_t *v;
        json_object_foreach(fails, k, v)
        {
            fprintf(human, "  %-40s %lld\n", k, (long long)json_integer_value(v));
        }
    }

    json_t *net = json_object();
    json_object_set_new(net, "tx_datagrams", json_integer((json_int_t)e->st.tx_dgrams));
    json_object_set_new(net, "rx_datagrams", json_integer((json_int_t)e->st.rx_dgrams));
    json_object_set_new(net, "tx_bytes", json_integer((json_int_t)e->st.tx_bytes));
    json_object_set_new(net, "rx_bytes", json_integer((json_int_t)e->st.rx_bytes));
    json_object_set_new(net, "retransmissions", json_integer((json_int_t)e->st.retransmissions));
    json_object_set_new(net, "dropped_by_loss", json_integer((json_int_t)e->st.dropped_loss));
    json_object_set_new(net, "duplicated", json_integer((json_int_t)e->st.duplicated));
    json_object_set_new(net, "reordered", json_integer((json_int_t)e->st.reordered));
    json_object_set_new(net, "rx_unknown", json_integer((json_int_t)e->st.rx_unknown));
    json_object_set_new(net, "rx_stale_port", json_integer((json_int_t)e->st.rx_stale));
    json_object_set_new(net, "rx_while_asleep", json_integer((json_int_t)e->st.rx_asleep));
    json_object_set_new(net, "rx_rejected", json_integer((json_int_t)e->st.rx_rejected));
    json_object_set_new(net, "tx_errors", json_integer((json_int_t)e->st.tx_errors));
    json_object_set_new(root, "network", net);
    if (human)
        fprintf(human,
                "network: tx %llu rx %llu datagrams, %llu retransmissions, %llu lost, "
                "%llu duplicated, %llu reordered, %llu rejected, %llu tx errors\n",
                (unsigned long long)e->st.tx_dgrams, (unsigned long long)e->st.rx_dgrams,
                (unsigned long long)e->st.retransmissions, (unsigned long long)e->st.dropped_loss,
                (unsigned long long)e->st.duplicated, (unsigned long long)e->st.reordered,
                (unsigned long long)e->st.rx_rejected, (unsigned long long)e->st.tx_errors);
    if (storm_recovery_s >= 0 && human)
        fprintf(human, "storm: every device registered again after %.2f s\n", storm_recovery_s);

    if (p0->ok && p1->ok) {
        json_t *srv = json_object();
        json_object_set_new(srv, "pid", json_integer(e->opt.server_pid));
        json_object_set_new(srv, "cpu_s", json_real(p1->cpu_s - p0->cpu_s));
        json_object_set_new(
            srv, "cpu_pct",
            json_real(duration_s > 0 ? 100.0 * (p1->cpu_s - p0->cpu_s) / duration_s : 0));
        json_object_set_new(srv, "rss_start_kb", json_integer((json_int_t)p0->rss_kb));
        json_object_set_new(srv, "rss_end_kb", json_integer((json_int_t)p1->rss_kb));
        json_object_set_new(srv, "rss_max_kb", json_integer((json_int_t)rss_max_kb));
        json_object_set_new(root, "server_process", srv);
        if (human)
            fprintf(human, "server pid %ld: %.2f CPU s (%.0f %%), RSS %llu -> %llu kB (max %llu)\n",
                    e->opt.server_pid, p1->cpu_s - p0->cpu_s,
                    duration_s > 0 ? 100.0 * (p1->cpu_s - p0->cpu_s) / duration_s : 0,
                    (unsigned long long)p0->rss_kb, (unsigned long long)p1->rss_kb,
                    (unsigned long long)rss_max_kb);
    }
    struct proc_sample self;
    proc_sample((long)getpid(), &self);
    if (self.ok) {
        json_t *me = json_object();
        json_object_set_new(me, "cpu_s", json_real(self.cpu_s));
        json_object_set_new(me, "rss_kb", json_integer((json_int_t)self.rss_kb));
        json_object_set_new(me, "device_struct_bytes",
                            json_integer((json_int_t)sizeof(struct fleet_dev)));
        json_object_set_new(me, "rss_base_kb", json_integer((json_int_t)e->rss_base_kb));
        json_object_set_new(me, "rss_steady_kb", json_integer((json_int_t)e->rss_steady_kb));
        /* What a device costs the simulator (device array, CoAP state, DTLS session). */
        double per_dev = e->ndev && e->rss_steady_kb > e->rss_base_kb
                             ? (double)(e->rss_steady_kb - e->rss_base_kb) * 1024.0 / e->ndev
                             : 0;
        json_object_set_new(me, "bytes_per_device", json_real(per_dev));
        json_object_set_new(root, "simulator", me);
        if (human)
            fprintf(human, "simulator: RSS %llu -> %llu kB, %.0f bytes per device\n",
                    (unsigned long long)e->rss_base_kb, (unsigned long long)e->rss_steady_kb,
                    per_dev);
    }
    if (e->opt.api) {
        json_t *pv = json_object();
        json_object_set_new(pv, "count", json_integer(e->provisioned));
        json_object_set_new(pv, "duration_s", json_real(e->provision_s));
        json_object_set_new(pv, "rate_per_s",
                            json_real(e->provision_s > 0 ? e->provisioned / e->provision_s : 0));
        json_object_set_new(root, "provisioning", pv);
    }
    if (e->st.handshakes_started || e->st.rebinds) {
        json_t *dt = json_object();
        json_object_set_new(dt, "handshakes_started",
                            json_integer((json_int_t)e->st.handshakes_started));
        json_object_set_new(dt, "handshakes", json_integer((json_int_t)e->st.op[OP_HANDSHAKE].ok));
        json_object_set_new(dt, "handshake_failures",
                            json_integer((json_int_t)e->st.op[OP_HANDSHAKE].errors));
        json_object_set_new(dt, "handshakes_abandoned",
                            json_integer((json_int_t)e->st.hs_abandoned));
        json_object_set_new(dt, "flight_retransmissions",
                            json_integer((json_int_t)e->st.hs_retransmissions));
        json_object_set_new(dt, "cid_sessions", json_integer((json_int_t)e->st.cid_sessions));
        json_object_set_new(dt, "session_failures", json_integer((json_int_t)e->st.dtls_failures));
        json_object_set_new(dt, "sessions_live", json_integer((json_int_t)e->dtls_live_at_end));
        json_object_set_new(dt, "rebinds", json_integer((json_int_t)e->st.rebinds));
        json_object_set_new(dt, "rebinds_kept_session",
                            json_integer((json_int_t)e->st.rebinds_cid));
        json_object_set_new(dt, "rebinds_new_handshake",
                            json_integer((json_int_t)e->st.rebinds_rehandshake));
        json_object_set_new(root, "dtls", dt);
        if (human)
            fprintf(human,
                    "dtls: %llu handshakes (%llu failed, %llu flight retransmissions), %llu with "
                    "CID; rebinds %llu: %llu kept their session, %llu handshook again\n",
                    (unsigned long long)e->st.op[OP_HANDSHAKE].ok,
                    (unsigned long long)e->st.op[OP_HANDSHAKE].errors,
                    (unsigned long long)e->st.hs_retransmissions,
                    (unsigned long long)e->st.cid_sessions, (unsigned long long)e->st.rebinds,
                    (unsigned long long)e->st.rebinds_cid,
                    (unsigned long long)e->st.rebinds_rehandshake);
    }
    if (json_path && json_dump_file(root, json_path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        rc = LW_EIO;
out:
    json_decref(ops);
    json_decref(fails);
    json_decref(root);
    return rc;
}
