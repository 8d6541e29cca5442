/* lib/lwm2m/registry.h - the LwM2M object model registry: object and resource definitions keyed
 * by (object id, object version), the built-in core objects (0, 1, 2, 3, 4, 5, 9, 21) and a DDF
 * XML loader for the OMA registry format (expat).
 *
 * Several versions of one object may coexist (e.g. Device 3 v1.0 and v1.2); lookups name a version
 * or take the newest. Resource definitions are sorted by id, so a resource lookup is a binary
 * search; an object lookup is one hash probe.
 *
 * Threads: a registry is built once at start-up (lw_m2m_registry_new, _add, _load_file, _load_dir)
 * by one thread, and is read-only afterwards. The read-only functions (_find, _resolve, _res,
 * _type_of, _foreach) do not modify it and may then be called concurrently from every shard
 * thread without locks. Never load into a registry that other threads are reading.
 *
 * Memory: the registry owns copies of everything added or loaded (one arena, freed by
 * lw_m2m_registry_free); built-in definitions are const tables. Pointers returned by lookups are
 * borrowed and stay valid until lw_m2m_registry_free.
 */
#ifndef LW_LWM2M_REGISTRY_H
#define LW_LWM2M_REGISTRY_H

#include "value.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Resource operations (DDF <Operations>: "", R, W, RW, E). An empty set means the resource is
 * not reachable by a Device Management server (bootstrap only, e.g. objects 0 and 21). */
enum {
    LW_M2M_OP_NONE = 0,
    LW_M2M_OP_R = 1,
    LW_M2M_OP_W = 2,
    LW_M2M_OP_RW = 3,
    LW_M2M_OP_E = 4,
};

/* An object version "major.minor" (DDF <ObjectVersion>, link attribute ver=). An absent version
 * means 1.0. */
struct lw_m2m_ver {
    uint8_t major, minor;
};
#define LW_M2M_VER(a, b) ((struct lw_m2m_ver){(a), (b)})

/* -1, 0 or 1. */
int lw_m2m_ver_cmp(struct lw_m2m_ver a, struct lw_m2m_ver b);
/* Parses "1.2" strictly (decimal major and minor 0..255, no leading zeros except "0", no sign or
 * spaces). 0 or LW_EMALFORMED. */
int lw_m2m_ver_parse(const char *s, size_t len, struct lw_m2m_ver *out);

struct lw_m2m_res_def {
    uint16_t id;
    uint8_t ops;           /* LW_M2M_OP_* bitmask */
    bool multiple;         /* multiple-instance resource */
    bool mandatory;        /* mandatory resource */
    enum lw_m2m_type type; /* LW_M2M_T_NONE for executable resources */
    const char *name;
    const char *range; /* RangeEnumeration, or NULL when not given */
    const char *units; /* Units, or NULL when not given */
};

struct lw_m2m_obj_def {
    uint16_t id;
    struct lw_m2m_ver ver;   /* object version */
    struct lw_m2m_ver lwm2m; /* minimum enabler version (DDF <LWM2MVersion>) */
    bool multiple;           /* multiple-instance object */
    bool mandatory;          /* mandatory object */
    bool builtin;            /* compiled-in core definition */
    const char *name;
    const char *urn;                  /* e.g. "urn:oma:lwm2m:oma:3:1.2", or NULL */
    const struct lw_m2m_res_def *res; /* sorted by id, ids unique */
    size_t nres;
};

struct lw_m2m_registry_cfg {
    size_t max_file_size;    /* DDF file bytes; 0 means 1 MiB */
    size_t max_objects;      /* objects in the registry; 0 means 65535 */
    size_t max_file_objects; /* <Object> elements per DDF file; 0 means 64 */
    size_t max_resources;    /* resources per object; 0 means 4096 */
    size_t max_string;       /* Name, URN, RangeEnumeration, Units, version texts; 0 means 512 */
    size_t max_depth;        /* XML element nesting; 0 means 16 */
    bool no_builtin;         /* start empty instead of with the built-in core objects */
    bool allow_override;     /* a definition of an existing (id, version) replaces it; by default
                                the existing one (built-in or loaded first) is kept and the new one
                                refused with LW_EEXIST */
};

struct lw_m2m_registry;

/* Creates a registry holding the built-in core objects (unless cfg->no_builtin). cfg may be NULL
 * (all defaults); it is copied. Returns owned; free with lw_m2m_registry_free. NULL on OOM. */
struct lw_m2m_registry *lw_m2m_registry_new(const struct lw_m2m_registry_cfg *cfg);
/* Frees the registry and every definition it owns; NULL is a no-op. */
void lw_m2m_registry_free(struct lw_m2m_registry *reg);

/* Adds a custom object definition (deep-copied: borrows def). Resources need not be sorted but
 * ids must be unique and <= LW_M2M_ID_MAX; executable resources must have type NONE, others a
 * type. 0, LW_EINVAL (bad definition), LW_EEXIST (same id and version present and no
 * allow_override), LW_ELIMIT (max_objects / max_resources), LW_ENOMEM. */
int lw_m2m_registry_add(struct lw_m2m_registry *reg, const struct lw_m2m_obj_def *def);

/* The built-in core object tables (const, for tests and tools): *n gets the count. */
const struct lw_m2m_obj_def *const *lw_m2m_core_objects(size_t *n);

/* ---- lookups (read-only; any thread once loading is over) ---- */

/* Exact (id, version) match, or the newest version of id when ver is NULL. NULL when absent. */
const struct lw_m2m_obj_def *lw_m2m_registry_find(const struct lw_m2m_registry *reg, uint16_t id,
                                                  const struct lw_m2m_ver *ver);
/* Best definition for a device announcing (id, ver): the exact version, else the newest with the
 * same major version (minor versions only add resources), else the newest. ver NULL: newest. */
const struct lw_m2m_obj_def *lw_m2m_registry_resolve(const struct lw_m2m_registry *reg, uint16_t id,
                                                     const struct lw_m2m_ver *ver);
/* Number of (id, version) definitions held. */
size_t lw_m2m_registry_count(const struct lw_m2m_registry *reg);
/* Calls fn for every definition, ordered by id then version (ascending). Stops early and returns
 * fn's value when it is non-zero; else 0, or LW_ENOMEM before any call when the sort buffer
 * cannot be allocated. */
int lw_m2m_registry_foreach(const struct lw_m2m_registry *reg,
                            int (*fn)(void *ctx, const struct lw_m2m_obj_def *def), void *ctx);

/* Resource definition by id within an object (binary search), or NULL. */
const struct lw_m2m_res_def *lw_m2m_obj_res(const struct lw_m2m_obj_def *obj, uint16_t res_id);
/* Resource definition for a path of length >= 3 (newest object version), or NULL. */
const struct lw_m2m_res_def *lw_m2m_registry_res(const struct lw_m2m_registry *reg,
                                                 const struct lw_m2m_path *p);
/* struct lw_m2m_types callback: ctx is a const struct lw_m2m_registry *. Answers the type of a
 * resource path (len 3 or 4; len 4 only for multiple-instance resources) using the newest object
 * version; LW_M2M_T_NONE when unknown. */
enum lw_m2m_type lw_m2m_registry_type_of(void *ctx, const struct lw_m2m_path *p);
/* A resolver bound to reg (borrowed: reg must outlive it). */
struct lw_m2m_types lw_m2m_registry_types(const struct lw_m2m_registry *reg);

/* ---- DDF XML loader (start-up only; reads files) ----
 * A DDF file holds an <LWM2M> root with one or more <Object> elements (the OMA registry format).
 * A file is all-or-nothing: either every object in it is added or none is. On failure `err` (if
 * errlen > 0) receives "name:line: reason" (name is the path given, line the 1-based line of the
 * offending element; "name: reason" when no line applies: unreadable file, size limit); on
 * success err is set to "". Return codes: 0, LW_EMALFORMED (not a valid
 * DDF: XML error, wrong root, missing/invalid field), LW_ELIMIT (a cfg limit), LW_EEXIST (an
 * object of the same id and version exists and allow_override is off; nothing is added),
 * LW_EIO / LW_ENOENT (cannot read), LW_ENOMEM. */
int lw_m2m_registry_load_file(struct lw_m2m_registry *reg, const char *path, char *err,
                              size_t errlen);
/* Same, from memory (borrows data); `name` is used in messages. */
int lw_m2m_registry_load_mem(struct lw_m2m_registry *reg, const char *name, const void *data,
                             size_t len, char *err, size_t errlen);

/* Per-file outcome of lw_m2m_registry_load_dir: rc is the load_file result, msg its message
 * ("" on success). Borrowed strings, valid during the call. */
typedef void (*lw_m2m_ddf_report_fn)(void *ctx, const char *path, int rc, const char *msg);

struct lw_m2m_load_stats {
    size_t loaded;  /* files whose objects were added */
    size_t refused; /* files refused (rc != 0, including LW_EEXIST) */
};

/* Loads every regular file whose name ends in ".xml" in dir (not recursive), in name order,
 * continuing after refused files. report (may be NULL) is called once per file; stats (may be
 * NULL) gets the counts. Returns 0 when every file loaded, the first failure's code otherwise,
 * or LW_ENOENT / LW_EIO when dir cannot be read (then err names it). */
int lw_m2m_registry_load_dir(struct lw_m2m_registry *reg, const char *dir,
                             lw_m2m_ddf_report_fn report, void *ctx,
                             struct lw_m2m_load_stats *stats, char *err, size_t errlen);

#endif
