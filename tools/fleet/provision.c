/* tools/fleet/provision.c - PSK provisioning through the lwm2md admin API.
 *
 * Before the devices start, every device of a psk group gets its credentials with
 *   PUT {base}/api/v1/devices/{endpoint}/credentials  {"mode":"psk","identity":..,"key":"<hex>"}
 * (Authorization: Bearer <token>). Requests run concurrently on one libcurl multi handle with
 * at most opt.provision_conc in flight and at most opt.provision_rate started per second (the
 * API is shared with operators; a load test should not starve it). 429 and 503 answers are
 * retried after a pause, up to 5 times; any other non-2xx answer fails the run.
 */
#include "fleet.h"

#include "base/err.h"
#include "base/util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRIES 5

struct preq {
    char resp[160]; /* start of the answer, for the error message */
    size_t resp_len;
    CURL *h;
    struct curl_slist *hdr;
    char *body;
    uint32_t dev;
    unsigned tries;
};

static size_t keep_start(char *p, size_t sz, size_t n, void *arg)
{
    struct preq *r = arg;
    size_t len = sz * n, room = sizeof(r->resp) - 1 - r->resp_len;
    size_t take = LW_MIN(len, room);
    memcpy(r->resp + r->resp_len, p, take);
    r->resp_len += take;
    r->resp[r->resp_len] = 0;
    return len;
}

/* Builds the URL and JSON body for device d into r. 0 or LW_E*. */
static int build(struct fleet_eng *e, struct fleet_dev *d, struct preq *r, const char *auth)
{
    char ep[256], id[FLEET_PATTERN_MAX + 256], key[FLEET_PATTERN_MAX + 256], url[1024];
    const struct group_rt *g = &e->groups[d->group];
    uint64_t n = d->idx - g->first;
    uint8_t raw[128];
    if (dev_endpoint(d, ep, sizeof(ep)) < 0 ||
        fleet_pattern_expand(g->cfg.psk_identity, n, g->cfg.name, ep, id, sizeof(id)) <= 0)
        return LW_EINVAL;
    int kl = fleet_pattern_expand(g->cfg.psk_key, n, g->cfg.name, ep, key, sizeof(key));
    if (kl <= 0)
        return LW_EINVAL;
    /* Same decoding as the handshake uses (sec.c), re-encoded canonically. */
    int rl = lw_hex_decode(raw, sizeof(raw), key, (size_t)kl);
    if (rl <= 0)
        return LW_EINVAL;
    char hex[2 * sizeof(raw) + 1];
    lw_hex_encode(hex, raw, (size_t)rl);
    char *esc = curl_easy_escape(NULL, ep, 0);
    if (!esc)
        return LW_ENOMEM;
    const char *base = e->opt.api;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof(url), "%.*s/api/v1/devices/%s/credentials", (int)bl, base, esc);
    curl_free(esc);
    json_t *o = json_pack("{s:s, s:s, s:s}", "mode", "psk", "identity", id, "key", hex);
    r->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    lw_secure_zero(raw, sizeof(raw));
    if (!r->body)
        return LW_ENOMEM;
    r->h = curl_easy_init();
    if (!r->h)
        return LW_ENOMEM;
    r->hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (auth)
        r->hdr = curl_slist_append(r->hdr, auth);
    curl_easy_setopt(r->h, CURLOPT_URL, url);
    curl_easy_setopt(r->h, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(r->h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, r->hdr);
    curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, keep_start);
    curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(r->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->h, CURLOPT_PRIVATE, r);
    return 0;
}

static void preq_free(struct preq *r)
{
    if (r->h)
        curl_easy_cleanup(r->h);
    curl_slist_free_all(r->hdr);
    if (r->body) {
        lw_secure_zero(r->body, strlen(r->body));
        free(r->body);
    }
    free(r);
}

/* Replaces `from` by `to` in the in-flight table (NULL from: a free slot). */
static void track(struct preq **live, uint32_t n, struct preq *from, struct preq *to)
{
    for (uint32_t i = 0; i < n; i++) {
        if (live[i] == from) {
            live[i] = to;
            return;
        }
    }
}

int provision_run(struct fleet_eng *e, FILE *log)
{
    int rc = 0;
    double rate = e->opt.provision_rate > 0 ? e->opt.provision_rate : 500;
    uint32_t conc = e->opt.provision_conc ? e->opt.provision_conc : 16;
    char auth[512];
    const char *authp = NULL;
    uint32_t next = 0, started = 0, done = 0, failed = 0, inflight = 0, total = 0;
    uint64_t t0 = fleet_now_ms(), pause_until = 0;

    for (uint32_t i = 0; i < e->ndev; i++)
        total += dev_secure(&e->devs[i]);
    if (!total) {
        if (log)
            fprintf(log, "lwm2m-fleet: --provision: no psk devices to provision\n");
        return 0;
    }
    if (e->opt.api_token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", e->opt.api_token);
        authp = auth;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return LW_EIO;
    CURLM *m = curl_multi_init();
    struct preq **live = calloc(conc, sizeof(*live)); /* requests in flight, for cleanup */
    if (!m || !live) {
        rc = LW_ENOMEM;
        goto out;
    }
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    while (done + failed < total && rc == 0) {
        uint64_t now = fleet_now_ms();
        uint64_t allowed = (uint64_t)((double)(now - t0) / 1000.0 * rate) + 1;
        while (next < e->ndev && inflight < conc && started < allowed && now >= pause_until) {
            struct fleet_dev *d = &e->devs[next++];
            if (!dev_secure(d))
                continue;
            struct preq *r = calloc(1, sizeof(*r));
            if (!r) {
                rc = LW_ENOMEM;
                break;
            }
            r->dev = d->idx;
            int b = build(e, d, r, authp);
            if (b) {
                char ep[256];
                dev_endpoint(d, ep, sizeof(ep));
                fprintf(stderr, "lwm2m-fleet: provisioning %s: bad PSK identity or key pattern\n",
                        ep);
                preq_free(r);
                rc = b;
                break;
            }
            curl_multi_add_handle(m, r->h);
            track(live, conc, NULL, r);
            inflight++;
            started++;
        }
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct preq *r;
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            CURLcode res = msg->data.result;
            curl_multi_remove_handle(m, r->h);
            track(live, conc, r, NULL);
            inflight--;
            if (res == CURLE_OK && code >= 200 && code < 300) {
                done++;
                preq_free(r);
                continue;
            }
            char ep[256];
            dev_endpoint(&e->devs[r->dev], ep, sizeof(ep));
            /* 503 "no-master-key" is a configuration problem, not load: no retry. */
            bool permanent = code == 503 && strstr(r->resp, "no-master-key") != NULL;
            bool again = res == CURLE_OK ? (code == 429 || code == 503) && !permanent
                                         : res == CURLE_COULDNT_CONNECT;
            if (again && ++r->tries < MAX_TRIES) {
                /* The API pushes back (or is not listening yet): pause new requests and retry
                 * this one. */
                pause_until = fleet_now_ms() + 200u * r->tries;
                r->resp_len = 0;
                curl_multi_add_handle(m, r->h);
                track(live, conc, NULL, r);
                inflight++;
                continue;
            }
            if (res != CURLE_OK)
                fprintf(stderr, "lwm2m-fleet: provisioning %s: %s\n", ep, curl_easy_strerror(res));
            else
                fprintf(stderr, "lwm2m-fleet: provisioning %s: HTTP %ld %s\n", ep, code, r->resp);
            failed++;
            preq_free(r);
            if (code == 401 || code == 403 || permanent || res == CURLE_COULDNT_CONNECT) {
                rc = LW_EPERM; /* no point in trying the others */
                if (res == CURLE_COULDNT_CONNECT)
                    rc = LW_EIO;
            }
        }
        if (done + failed < total && rc == 0)
            curl_multi_poll(m, NULL, 0, 5, NULL);
    }
    e->provisioned = done;
    e->provision_s = (double)(fleet_now_ms() - t0) / 1000.0;
    if (log && rc == 0)
        fprintf(log, "lwm2m-fleet: provisioned %u PSKs in %.2f s (%u failed)\n", done,
                (double)(fleet_now_ms() - t0) / 1000.0, failed);
    if (rc == 0 && failed)
        rc = LW_EIO;
out:
    for (uint32_t i = 0; live && i < conc; i++) {
        if (live[i]) { /* still in flight after an early stop */
            curl_multi_remove_handle(m, live[i]->h);
            preq_free(live[i]);
        }
    }
    free(live);
    if (m)
        curl_multi_cleanup(m);
    curl_global_cleanup();
    return rc;
}
