/* server/api/cli.c - `lwm2md healthcheck` (GET /healthz on the first api.listen address, for the
 * container HEALTHCHECK) and the hidden `lwm2md routes` (the route table, one "METHOD path" per
 * line, compared with docs/openapi.yaml by the tests). Blocking; no loop runs. */
#include "api.h"

#include "api_int.h"

#include <curl/curl.h>
#include <string.h>

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

int lw_api_cli_healthcheck(const struct lw_config *cfg, FILE *err)
{
    char url[160];
    long code = 0;
    if (cfg->api_listen_n == 0) {
        fprintf(err, "lwm2md healthcheck: api.listen is empty\n");
        return 1;
    }
    const struct lw_listen *l = &cfg->api_listen[0];
    const char *host = l->host;
    bool v6 = strchr(host, ':') != NULL;
    if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    bool tls = cfg->api_tls_cert && *cfg->api_tls_cert;
    snprintf(url, sizeof(url), "%s://%s%s%s:%u/healthz", tls ? "https" : "http", v6 ? "[" : "",
             host, v6 ? "]" : "", l->port);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *e = curl_easy_init();
    CURLcode cc = CURLE_FAILED_INIT;
    if (e) {
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 3000L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        /* our own listener on loopback: liveness, not identity (the certificate may name a
         * public host) */
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        cc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(e);
    }
    curl_global_cleanup();
    if (cc != CURLE_OK) {
        fprintf(err, "lwm2md healthcheck: %s: %s\n", url, curl_easy_strerror(cc));
        return 1;
    }
    if (code != 200) {
        fprintf(err, "lwm2md healthcheck: %s answered %ld\n", url, code);
        return 1;
    }
    return 0;
}

int lw_api_cli_routes(FILE *out)
{
    for (size_t i = 0; i < api_routes_n; i++)
        fprintf(out, "%s %s\n", llhttp_method_name((llhttp_method_t)api_routes[i].method),
                api_routes[i].pattern);
    return 0;
}
