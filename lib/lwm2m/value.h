/* lib/lwm2m/value.h - the shared vocabulary of lib/lwm2m: paths, data types, typed values and
 * record lists. Every content-format codec decodes into and encodes from struct lw_m2m_record
 * arrays; the object registry answers "what type is this path" through struct lw_m2m_types.
 *
 * Memory: values of type STRING, OPAQUE and CORELNK hold views (struct lw_bytes). A decoder's
 * views point either into its input or into the arena it was given, so records live as long as
 * both. Any thread; no global state.
 */
#ifndef LW_LWM2M_VALUE_H
#define LW_LWM2M_VALUE_H

#include "base/arena.h"
#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Object/instance/resource/resource-instance ids are 0..65534; 65535 is reserved (LwM2M 1.1
 * §7.1) and used here to mean "absent". */
#define LW_M2M_ID_MAX  65534
#define LW_M2M_ID_NONE 65535

/* A path of 0..4 levels: "/" (len 0), /o, /o/i, /o/i/r, /o/i/r/ri. */
struct lw_m2m_path {
    uint16_t id[4];
    uint8_t len;
};
#define LW_M2M_PATH_ROOT          ((struct lw_m2m_path){{0, 0, 0, 0}, 0})
#define LW_M2M_PATH1(o)           ((struct lw_m2m_path){{(o), 0, 0, 0}, 1})
#define LW_M2M_PATH2(o, i)        ((struct lw_m2m_path){{(o), (i), 0, 0}, 2})
#define LW_M2M_PATH3(o, i, r)     ((struct lw_m2m_path){{(o), (i), (r), 0}, 3})
#define LW_M2M_PATH4(o, i, r, ri) ((struct lw_m2m_path){{(o), (i), (r), (ri)}, 4})

enum lw_m2m_type {
    LW_M2M_T_NONE = 0, /* unknown / not given (e.g. path-only records of Read-Composite) */
    LW_M2M_T_STRING,
    LW_M2M_T_INTEGER,
    LW_M2M_T_UNSIGNED,
    LW_M2M_T_FLOAT,
    LW_M2M_T_BOOLEAN,
    LW_M2M_T_OPAQUE,
    LW_M2M_T_TIME, /* seconds since the Unix epoch, signed */
    LW_M2M_T_OBJLNK,
    LW_M2M_T_CORELNK,
};

struct lw_m2m_objlnk {
    uint16_t obj, inst;
};

struct lw_m2m_value {
    enum lw_m2m_type type;
    union {
        int64_t i;                /* INTEGER, TIME */
        uint64_t u;               /* UNSIGNED */
        double f;                 /* FLOAT */
        bool b;                   /* BOOLEAN */
        struct lw_m2m_objlnk lnk; /* OBJLNK */
        struct lw_bytes bytes;    /* STRING (UTF-8, not NUL-terminated), OPAQUE, CORELNK */
    };
};

/* One (path, value) pair, as in a SenML record. `has_value` is false for path-only records
 * (Read-/Observe-Composite request bodies, SenML records without a value). `time` is an absolute
 * or relative SenML time in seconds after base-time resolution (has_time says whether given). */
struct lw_m2m_record {
    struct lw_m2m_path path;
    struct lw_m2m_value value;
    double time;
    bool has_value;
    bool has_time;
};

/* A growable record array allocated from an arena. */
struct lw_m2m_records {
    struct lw_m2m_record *v;
    size_t n, cap;
};

/* Appends a zeroed record (arena-allocated growth); NULL when the arena refuses. */
struct lw_m2m_record *lw_m2m_records_push(struct lw_m2m_records *r, struct lw_arena *a);

/* Type resolver: the registry (or a test) answers the data type of a resource path
 * (len 3 or 4); LW_M2M_T_NONE when unknown. Used by formats that do not carry types
 * (TLV, text, opaque, CBOR single values). */
struct lw_m2m_types {
    enum lw_m2m_type (*type_of)(void *ctx, const struct lw_m2m_path *p);
    void *ctx;
};

/* ---- paths ---- */
/* Parses "/3/0/1" style text (leading '/' required; "/" alone is the root; no trailing '/';
 * decimal ids 0..65534 without leading zeros except "0"). 0 or LW_EMALFORMED. */
int lw_m2m_path_parse(const char *s, size_t len, struct lw_m2m_path *out);
/* Writes "/o/i/r/ri" (or "/") into out; returns chars written (excluding NUL) or LW_ENOSPC.
 * out needs at most 25 bytes. */
int lw_m2m_path_format(const struct lw_m2m_path *p, char *out, size_t cap);
/* true when `prefix` equals or contains p (e.g. /3/0 contains /3/0/1). */
bool lw_m2m_path_within(const struct lw_m2m_path *p, const struct lw_m2m_path *prefix);
bool lw_m2m_path_eq(const struct lw_m2m_path *a, const struct lw_m2m_path *b);
/* Total order: by ids level by level, a shorter path before its extensions. */
int lw_m2m_path_cmp(const struct lw_m2m_path *a, const struct lw_m2m_path *b);

/* ---- types ---- */
/* "String", "Integer", ... as spelled in DDF files (and lowercase API names via the _api
 * variant: "string", "integer", "unsigned", "float", "boolean", "opaque", "time", "objlnk",
 * "corelnk"). Parsing accepts DDF spellings case-insensitively ("Unsigned Integer" too). */
const char *lw_m2m_type_name(enum lw_m2m_type t);
const char *lw_m2m_type_api_name(enum lw_m2m_type t);
enum lw_m2m_type lw_m2m_type_parse(const char *s, size_t len);

#endif
