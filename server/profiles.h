/* server/profiles.h - the registration.profiles_file format (LwM2M 1.2 profile ids configured
 * ahead of time): a JSON object mapping each profile id to the link-format object list a Register
 * with that `pid` stands for, e.g.
 *     { "meter-a": "</1/0>,</3/0>,</10243/0>", "meter-b": "</1/0>,</3/0>" }
 * The parser takes the file's bytes and returns every profile with its object list in canonical
 * form (lw_m2m_link_reg_write), or an error naming the line: "name:line: reason". It reads no
 * file, takes no lock and keeps no state: registry.c loads the file once (reg_global_init) and
 * interns the lists; the server_profiles fuzz target drives the parser directly.
 *
 * Threads: any; no shared state.
 */
#ifndef LW_SERVER_PROFILES_H
#define LW_SERVER_PROFILES_H

#include <stddef.h>
#include <stdint.h>

#define REG_PROFILE_MAX_PID   64        /* bytes in a profile id */
#define REG_PROFILES_MAX      4096      /* profiles in one file */
#define REG_PROFILES_MAX_FILE (1 << 20) /* bytes in a profiles file */

struct reg_profile_def {
    char pid[REG_PROFILE_MAX_PID + 1]; /* NUL-terminated */
    uint8_t *links; /* canonical object list (owned by the set), links_len bytes */
    size_t links_len;
    unsigned line; /* 1-based line of the profile id in the file */
};

struct reg_profiles {
    struct reg_profile_def *v; /* in file order */
    size_t n;
};

/* Parses a profiles file (data borrowed, len bytes; need not be NUL-terminated). name is used in
 * messages only. Returns 0 with *out filled (owned: free with reg_profiles_free), or
 * LW_ECONFIG with err = "name:line: reason" (syntax error, not an object, duplicate id, id empty
 * or longer than REG_PROFILE_MAX_PID bytes or not printable ASCII, value not a string, invalid link
 * format with its byte offset, too many profiles, file too large), or LW_ENOMEM. *out is empty
 * on failure. */
int reg_profiles_parse(const uint8_t *data, size_t len, const char *name, struct reg_profiles *out,
                       char *err, size_t errlen);

/* Frees what reg_profiles_parse returned (p itself is the caller's); p may be empty. */
void reg_profiles_free(struct reg_profiles *p);

#endif
