/* server/auth.h - API bearer tokens. Tokens are never stored or logged in clear: only a salted
 * SHA-256 is kept. The bootstrap admin token (api.bootstrap_token_file, written by `make run` as
 * var/dev-token) is loaded at start. Control thread only. */
#ifndef LW_SERVER_AUTH_H
#define LW_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* Reads a token file (one line, 32..256 chars of [A-Za-z0-9_-]); keeps its salted hash as an
 * admin token. 0, or a negative LW_E* code with a reason in why[]. */
int lw_auth_load_bootstrap(const char *path, char *why, size_t whylen);
/* true when `token` (len bytes) is the bootstrap admin token; constant time. */
bool lw_auth_is_bootstrap(const char *token, size_t len);
void lw_auth_clear(void);

#endif
