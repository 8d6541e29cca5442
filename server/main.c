/* server/main.c - lwm2md entry point: command line, configuration, start-up and shutdown of the
 * control loop and the shards, signals (SIGTERM/SIGINT stop, SIGHUP reload) and systemd
 * notifications. */
#include "api/api.h"
#include "auth.h"
#include "base/err.h"
#include "base/util.h"
#include "config.h"
#include "control.h"
#include "events.h"
#include "log.h"
#include "ops.h"
#include "sdnotify.h"
#include "secrets.h"
#include "shard.h"
#include "store/credstore.h"
#include "store/migrate.h"
#include "store/sessions.h"
#include "store/telemetry.h"
#include "store/store.h"
#include "wolfmem.h"

#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define EXIT_CONFIG 2

struct daemon {
    uv_loop_t *loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t watchdog;
    struct lw_cfg_load req;
    struct lw_cfg_state *cfg_state;
    bool stopping;
    bool failed;
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: lwm2md [--config FILE] [--set section.key=value]... [options]\n"
        "\n"
        "OMA LwM2M server daemon.\n"
        "\n"
        "options:\n"
        "  -c, --config FILE      main configuration file (default: $LWM2MD_CONFIG, else none:\n"
        "                         built-in defaults); FILE's conf.d/*.conf are read after it\n"
        "  -s, --set KEY=VALUE    override one key (repeatable; highest precedence)\n"
        "      --check-config     validate the configuration and exit (status 2 on error)\n"
        "      --print-config     print the effective configuration with origins and exit\n"
        "  -V, --version          print the version and exit\n"
        "  -h, --help             this text\n"
        "\n"
        "subcommands (after the options):\n"
        "  token create --role viewer|operator|admin [--name N]   new API token, printed once\n"
        "  token list | token revoke ID                           API tokens in database.url\n"
        "  migrate [--status]     apply pending schema migrations (--status: list them; exit\n"
        "                         status 3 when some are pending)\n"
        "  rekey [--dry-run]      re-seal stored secrets under security.master_key_file\n"
        "  healthcheck            GET /healthz on the first api.listen address (exit 0 on 200)\n"
        "\n"
        "Configuration precedence: defaults < FILE < conf.d/*.conf < LWM2MD_SECTION_KEY < --set.\n"
        "See docs/configuration.md.\n");
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (d->stopping)
        return;
    d->stopping = true;
    log_notice(SYS, "received %s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    lw_sd_notify("STOPPING=1");
    uv_signal_stop(&d->sig_term);
    uv_signal_stop(&d->sig_int);
    uv_signal_stop(&d->sig_hup);
    uv_timer_stop(&d->watchdog);
    uv_stop(d->loop);
}

static void on_reload(uv_signal_t *h, int signum)
{
    (void)signum;
    struct daemon *d = h->data;
    lw_sd_notify("RELOADING=1");
    char *errs = NULL;
    size_t errlen = 0;
    FILE *ef = open_memstream(&errs, &errlen);
    struct lw_cfg_state *next = NULL;
    int rc = ef ? lw_cfg_load(&d->req, &next, ef) : LW_ENOMEM;
    if (ef)
        fclose(ef);
    if (rc) {
        log_err(SYS, "reload refused, keeping the running configuration: %s",
                errs && *errs ? errs : lw_strerror(rc));
    } else {
        char *names = NULL;
        size_t nlen = 0;
        FILE *nf = open_memstream(&names, &nlen);
        int restart = nf ? lw_cfg_diff_restart(d->cfg_state, next, nf) : 0;
        if (nf)
            fclose(nf);
        if (restart)
            log_warn(SYS, "reload: %d changed key(s) take effect only after a restart: %s", restart,
                     names ? names : "");
        free(names);
        lw_log_configure(lw_cfg_get(next));
        lw_api_reload(lw_cfg_get(next));
        lw_cfg_free(d->cfg_state);
        d->cfg_state = next;
        log_notice(SYS, "configuration reloaded");
    }
    free(errs);
    lw_sd_notify("READY=1");
}

/* Pings systemd's watchdog only while every shard loop answers its mailbox. */
static void on_watchdog(uv_timer_t *t)
{
    if (shards_all_answered())
        lw_sd_notify("WATCHDOG=1");
    else
        log_warn_rl(SYS, "watchdog: a shard did not answer within %llu ms; not pinging systemd",
                    (unsigned long long)uv_timer_get_repeat(t));
    shards_ping();
}

static void check_database(const struct lw_config *cfg)
{
    if (!*cfg->db_url) {
        log_notice(STORE, "no database.url configured: running without persistence");
        return;
    }
    /* Start-up only, before any loop runs: a blocking ping is acceptable here. */
    switch (PQping(cfg->db_url)) {
    case PQPING_OK: log_info(STORE, "database reachable"); break;
    case PQPING_REJECT: log_warn(STORE, "database is up but refuses connections"); break;
    case PQPING_NO_RESPONSE: log_warn(STORE, "database did not answer"); break;
    default: log_err(STORE, "database.url is not a valid connection string"); break;
    }
}

/* Start-up timing: one info line per step (docs/operations.md, "Start-up"), so a slow start can be
 * told apart step by step; *t is the end of the previous step and becomes the end of this one. */
static void step_done(const char *step, uint64_t *t)
{
    uint64_t now = uv_hrtime();
    log_info(SYS, "start-up step done: step=%s duration_ms=%llu", step,
             (unsigned long long)((now - *t) / 1000000));
    *t = now;
}

static void log_open_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    log_warn(SYS, "open handle at exit: %s%s", uv_handle_type_name(uv_handle_get_type(h)),
             uv_is_closing(h) ? " (closing)" : "");
}

static int run_daemon(struct daemon *d)
{
    /* Before anything else: a SIGHUP that arrives while starting must not kill us (the reload
     * handler is installed later), and a peer closing a TCP connection must not raise SIGPIPE
     * (writes report EPIPE instead). */
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    const struct lw_config *cfg = lw_cfg_get(d->cfg_state);
    lw_log_configure(cfg);
    log_notice(SYS, "lwm2md %s (%s) starting: pid=%d", LW_VERSION, LW_GIT_REV, (int)getpid());
    uint64_t t_start = uv_hrtime(), t_step = t_start;

    if (*cfg->api_bootstrap_token_file) {
        char why[256];
        if (lw_auth_load_bootstrap(cfg->api_bootstrap_token_file, why, sizeof(why)) == 0)
            log_info(API, "bootstrap admin token loaded from %s", cfg->api_bootstrap_token_file);
        else
            log_err(API, "bootstrap admin token not loaded: %s", why);
    }
    check_database(cfg);
    if (lw_store_startup_migrate(cfg) != 0)
        return EXIT_FAILURE;
    step_done("migrations", &t_step);
    /* Master keys, then the credentials they open: before any socket opens. */
    if (secrets_start(cfg) != 0 || credstore_restore(cfg) != 0)
        return EXIT_FAILURE;
    step_done("credentials", &t_step);
    if (lw_sessions_start(cfg) != 0) /* saved DTLS sessions (sealed with the master key) */
        return EXIT_FAILURE;
    step_done("sessions", &t_step);

    unsigned n = cfg->shards;
    if (n == 0) {
        uv_cpu_info_t *cpus;
        int count;
        n = uv_cpu_info(&cpus, &count) == 0 ? (unsigned)count : 1;
        if (n >= 1)
            uv_free_cpu_info(cpus, count);
        if (n == 0)
            n = 1;
    }
    d->loop = uv_default_loop();
    /* The signal and watchdog handles exist from here on, so every failure below takes the one
     * stop path: it stops whatever did start (each stop function ignores what did not) and runs
     * the loop until their handles have closed, then the process exits non-zero. */
    uv_signal_init(d->loop, &d->sig_term);
    uv_signal_init(d->loop, &d->sig_int);
    uv_signal_init(d->loop, &d->sig_hup);
    uv_timer_init(d->loop, &d->watchdog);
    d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    if (lw_control_start(d->loop) != 0) {
        log_err(SYS, "cannot start the control loop");
        goto failed;
    }
    lw_events_init(1);
    if (lw_telemetry_start(d->loop, cfg) != 0) {
        log_err(STORE, "cannot start the telemetry write-behind");
        goto failed;
    }
    step_done("telemetry", &t_step);
    if (lw_store_start(d->loop, cfg) != 0) {
        log_err(STORE, "cannot start the store: out of memory");
        goto failed;
    }
    struct ops_cfg ocfg = {.timeout_ms = cfg->ops_timeout,
                           .wait_default_ms = cfg->ops_wait_default,
                           .history = cfg->ops_history,
                           .awake_ms = cfg->queue_awake_time,
                           .max_held = cfg->queue_max_held,
                           .db_url = cfg->db_url};
    if (credstore_start(d->loop, cfg) != 0) {
        log_err(STORE, "cannot start the credential store: out of memory");
        goto failed;
    }
    if (ops_start(d->loop, &ocfg) != 0) {
        log_err(SYS, "cannot start the operations engine");
        goto failed;
    }
    step_done("operations", &t_step);
    /* registrations restored, then DTLS sessions, then the sockets open */
    if (shards_start(n, cfg) != 0) /* logs why */
        goto failed;
    step_done("shards", &t_step);

    uv_signal_start(&d->sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&d->sig_hup, on_reload, SIGHUP);
    uint64_t wd = lw_sd_watchdog_usec();
    if (wd) {
        uint64_t every = LW_MAX(wd / 2000, 100); /* ms, half the interval */
        shards_ping();
        uv_timer_start(&d->watchdog, on_watchdog, every, every);
        log_info(SYS, "systemd watchdog every %llu ms", (unsigned long long)every);
    }

    if (lw_api_start(d->loop, cfg) != 0) {
        /* No uv_stop here: the loop has not run, and a pending stop flag would make the
         * clean-up uv_run below return before it runs the close callbacks. */
        goto failed;
    }
    step_done("api", &t_step);
    step_done("all", &t_start);
    log_notice(SYS, "ready: %u shard%s", n, n == 1 ? "" : "s");
    lw_sd_notify("READY=1\nSTATUS=serving");
    uv_run(d->loop, UV_RUN_DEFAULT);
    goto stop;
failed:
    d->stopping = true;
    d->failed = true;
stop:

    /* API first: stop accepting; in-flight requests are answered while the rest stops. */
    lw_api_stop();
    credstore_stop(); /* changes still waiting for the database answer 503 */

    /* Graceful stop: shards first (they flush and close), then the control loop's handles. */
    shards_stop();
    lw_sessions_stop();  /* writes the sessions the shards exported while stopping */
    lw_control_stop();   /* runs replies and events the shards posted while stopping */
    lw_store_stop();     /* writes the registration changes still queued */
    lw_telemetry_stop(); /* writes queued telemetry and events, spills the rest */
    ops_stop();
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    uv_close((uv_handle_t *)&d->watchdog, NULL);
    uv_run(d->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(d->loop);
    if (rc) {
        log_warn(SYS, "control loop closed with handles still open: %s", uv_strerror(rc));
        uv_walk(d->loop, log_open_handle, NULL);
    }
    lw_auth_clear();
    secrets_stop();
    log_notice(SYS, "stopped");
    return d->failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"check-config", no_argument, NULL, 1},
        {"print-config", no_argument, NULL, 2},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct daemon d = {0};
    struct lw_cfg_set *sets = calloc((size_t)argc, sizeof(*sets));
    size_t nsets = 0;
    bool check = false, print = false;
    const char *config = getenv("LWM2MD_CONFIG");
    int c, status = EXIT_FAILURE;
    wolfmem_install(); /* before wolfSSL allocates anything (see wolfmem.h) */
    /* glibc grows a thread's arena (every shard has one) one page per mprotect call: during a
     * registration storm that was one system call per ~12 Registers, each taking the process's
     * memory-map lock. A top pad of 64 MiB (glibc's largest thread heap) makes every new heap
     * usable at once; the pages still become resident only when touched. The cost: up to 64 MiB
     * of freed memory at the top of an arena is kept for reuse rather than handed back to the
     * kernel (docs/operations.md, "Memory"). */
    mallopt(M_TOP_PAD, 64 << 20);
    if (!sets)
        return EXIT_FAILURE;
    while ((c = getopt_long(argc, argv, "+c:s:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 's': {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                fprintf(stderr, "lwm2md: --set %s: expected section.key=value\n", optarg);
                status = EXIT_CONFIG;
                goto out;
            }
            /* Copy the key: argv stays intact, so ps and pgrep show the command as given. */
            char *key = strndup(optarg, (size_t)(eq - optarg));
            if (!key) {
                status = EXIT_FAILURE;
                goto out;
            }
            sets[nsets++] = (struct lw_cfg_set){key, eq + 1};
            break;
        }
        case 1: check = true; break;
        case 2: print = true; break;
        case 'V':
            printf("lwm2md %s (%s)\n", LW_VERSION, LW_GIT_REV);
            status = EXIT_SUCCESS;
            goto out;
        case 'h':
            usage(stdout);
            status = EXIT_SUCCESS;
            goto out;
        default:
            usage(stderr);
            status = EXIT_CONFIG;
            goto out;
        }
    }
    const char *sub = optind < argc ? argv[optind] : NULL;
    bool known_sub = sub && (strcmp(sub, "token") == 0 || strcmp(sub, "healthcheck") == 0 ||
                             strcmp(sub, "routes") == 0 || strcmp(sub, "migrate") == 0 ||
                             strcmp(sub, "rekey") == 0);
    if (sub && !known_sub) {
        fprintf(stderr, "lwm2md: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        status = EXIT_CONFIG;
        goto out;
    }
    d.req = (struct lw_cfg_load){config && *config ? config : NULL, sets, nsets, environ};
    if (lw_cfg_load(&d.req, &d.cfg_state, stderr) != 0) {
        status = EXIT_CONFIG;
        goto out;
    }
    if (known_sub) {
        const struct lw_config *cfg = lw_cfg_get(d.cfg_state);
        if (strcmp(sub, "token") == 0)
            status = lw_api_cli_token(cfg, argc - optind, argv + optind, stdout, stderr);
        else if (strcmp(sub, "rekey") == 0)
            status = credstore_cli_rekey(cfg, argc - optind, argv + optind, stdout, stderr);
        else if (strcmp(sub, "migrate") == 0)
            status = lw_store_cli_migrate(cfg, argc - optind, argv + optind, stdout, stderr);
        else if (strcmp(sub, "healthcheck") == 0)
            status = lw_api_cli_healthcheck(cfg, stderr);
        else
            status = lw_api_cli_routes(stdout);
    } else if (print) {
        lw_cfg_print(d.cfg_state, stdout);
        status = EXIT_SUCCESS;
    } else if (check) {
        printf("configuration ok%s%s\n", d.req.main_file ? ": " : "",
               d.req.main_file ? d.req.main_file : "");
        status = EXIT_SUCCESS;
    } else {
        status = run_daemon(&d);
    }
out:
    lw_cfg_free(d.cfg_state);
    for (size_t i = 0; i < nsets; i++)
        free((char *)sets[i].key);
    free(sets);
    return status;
}
