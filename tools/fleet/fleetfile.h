/* tools/fleet/fleetfile.h - the fleet file of lwm2m-fleet (INI, see config/fleet.example.ini and
 * docs/benchmarks.md): run settings in [fleet] and device groups in [group NAME] sections.
 *
 * The parser is pure (no I/O, no globals): it takes the file text and fills a caller-owned
 * struct fleet_file. tests/fuzz/fleet_ini.c #includes fleetfile.c directly because fuzz targets
 * link the lib archives and server objects but not tools/.
 *
 * Threads: any thread; one struct per thread at a time.
 */
#ifndef LW_FLEET_FLEETFILE_H
#define LW_FLEET_FLEETFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLEET_MAX_GROUPS  32
#define FLEET_MAX_DEVICES 16000000u /* 127.0.0.0/8 has room for this many (address, port) pairs */
#define FLEET_PATTERN_MAX 128

enum fleet_security { FLEET_SEC_NOSEC = 0, FLEET_SEC_PSK };
enum fleet_scenario { FLEET_SC_STEADY = 0, FLEET_SC_STORM, FLEET_SC_REBIND };

/* Objects a group's devices expose (bit set). Object 1 (Server) is always present. */
#define FLEET_OBJ_DEVICE   0x1u  /* 3 */
#define FLEET_OBJ_CONN     0x2u  /* 4 */
#define FLEET_OBJ_FIRMWARE 0x4u  /* 5 */
#define FLEET_OBJ_METER    0x8u  /* 10243 Single-Phase Power Meter */
#define FLEET_OBJ_APPDATA  0x10u /* 19 BinaryAppDataContainer (Create/Delete, a 4 KiB value) */

struct fleet_group {
    char name[32];
    uint32_t count;
    char endpoint[FLEET_PATTERN_MAX];     /* pattern: {n} {n:W} {g} (see fleet_pattern_expand) */
    char psk_identity[FLEET_PATTERN_MAX]; /* pattern; {ep} is the endpoint name */
    char psk_key[FLEET_PATTERN_MAX];      /* hex, or a pattern expanding to hex */
    uint8_t lwm2m_minor;                  /* LwM2M 1.<minor>: 0, 1 or 2 */
    uint8_t security;                     /* enum fleet_security */
    uint8_t dtls_version;                 /* psk: 12 (DTLS 1.2) or 13 (DTLS 1.3) */
    bool no_cid;                          /* psk: do not offer Connection IDs (RFC 9146) */
    uint32_t objects;                     /* FLEET_OBJ_* */
    uint32_t lifetime_s;                  /* registration lifetime (lt) */
    uint32_t update_s;                    /* Update interval; 0: 90 % of the lifetime */
    uint32_t send_s;                      /* Send (POST /dp) interval; 0: never */
    uint32_t awake_ms;                    /* queue mode: awake window after an uplink */
    bool queue_mode;
    uint16_t send_format;    /* content format of Send and default notifications */
    double meter_base_kw;    /* mean active power of a meter */
    double fw_success;       /* probability an Update execution succeeds (0..1) */
    double fw_download_fail; /* probability a download fails (integrity check) (0..1) */
    uint32_t fw_update_ms;   /* time spent in state Updating */
    uint32_t fw_max_bytes;   /* largest accepted firmware package */
    uint32_t reboot_ms;      /* time a device needs to come back after a reboot */
};

struct fleet_file {
    char server[160];     /* coap://host:port (empty: not set) */
    double rate;          /* registrations per second during ramp-up (0: not set) */
    uint32_t duration_ms; /* steady phase after ramp-up (when has_duration) */
    bool has_duration;
    uint32_t sockets;          /* UDP sockets per address epoch (0: default) */
    int scenario;              /* enum fleet_scenario, -1: not set */
    double loss, dup, reorder; /* impairment probabilities 0..1 (both directions) */
    bool deregister;           /* de-register every device at the end (default true) */
    uint32_t ngroups;
    struct fleet_group groups[FLEET_MAX_GROUPS];
};

/* Fills f with defaults (no groups, scenario unset, deregister true). */
void fleet_file_init(struct fleet_file *f);
/* Defaults of a new group named `name` (truncated to 31 bytes). */
void fleet_group_init(struct fleet_group *g, const char *name);

/* Parses a fleet file (text borrowed, len bytes, need not be NUL-terminated; NULs inside are
 * refused) into f, which must have been fleet_file_init'ed. Unknown sections/keys, bad values,
 * more than FLEET_MAX_GROUPS groups and a total above FLEET_MAX_DEVICES are errors. Returns 0, or
 * LW_ECONFIG with a "line N: reason" message in err (NUL-terminated, truncated to errcap), or
 * LW_ENOMEM. */
int fleet_file_parse(const char *text, size_t len, struct fleet_file *f, char *err, size_t errcap);

/* Checks a group's settings for consistency (update interval below the lifetime, PSK settings
 * present for security psk, version-dependent features): 0 or LW_ECONFIG with err set. */
int fleet_group_check(const struct fleet_group *g, char *err, size_t errcap);

/* Expands a pattern: {n} is n in decimal, {n:W} zero-padded to width W (1..20), {g} the group
 * name, {ep} `ep` (may be NULL: then {ep} is an error), {{ and }} literal braces. Writes a
 * NUL-terminated string into out. Returns its length, or LW_EINVAL (bad placeholder) /
 * LW_ENOSPC (does not fit). */
int fleet_pattern_expand(const char *pat, uint64_t n, const char *group, const char *ep, char *out,
                         size_t cap);

/* Parses durations "250ms", "30s", "5m", "2h" or a bare number of seconds (fractions allowed):
 * milliseconds in *ms. 0 or LW_EINVAL. */
int fleet_parse_duration(const char *s, uint64_t *ms);
/* Parses a rate "R", "R/s" or "R/m" into events per second. 0 or LW_EINVAL. */
int fleet_parse_rate(const char *s, double *per_s);
/* Parses a probability "0.05" or "5%" into 0..1. 0 or LW_EINVAL. */
int fleet_parse_fraction(const char *s, double *out);

#endif
