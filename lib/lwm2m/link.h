/* lib/lwm2m/link.h - CoRE Link Format (RFC 6690) as used by LwM2M: the object list of Register /
 * Update payloads, Discover and Bootstrap-Discover responses.
 *
 * Two layers:
 *  - lw_m2m_link_parse: generic, strict RFC 6690 §2 parser into links with their URI and raw
 *    parameters (name, optional ptoken or quoted-string value). Views point into the input.
 *  - lw_m2m_link_parse_reg: a Register/Update payload into a compact registration object list:
 *    root path (`</>` or an alternate path such as `</lwm2m>;rt="oma.lwm2m"`), the content formats
 *    advertised by `ct` on the root link, and the objects with their version and instance ids.
 * Writers emit link format for Discover-style output (generic links) and the canonical form of a
 * registration object list, which the server uses to intern identical lists across devices
 * (lw_m2m_link_reg_hash / _eq).
 *
 * Memory: parsers allocate from the caller's arena (sizes bounded by the input length and the
 * cfg limits) and return views into the input; results live as long as both. Any thread; no
 * global state. Malformed input returns LW_EMALFORMED with *err_off set to the byte offset of the
 * first offending byte (input length when the input ended early); a limit hit returns LW_ELIMIT
 * with the offset; LW_ENOMEM when the arena refuses.
 */
#ifndef LW_LWM2M_LINK_H
#define LW_LWM2M_LINK_H

#include "registry.h"
#include "value.h"

#include "base/arena.h"
#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lw_m2m_link_cfg {
    size_t max_len;   /* input bytes; 0 means 65536 */
    size_t max_links; /* links per payload; 0 means 4096 */
    size_t max_attrs; /* parameters per link; 0 means 32 */
    size_t max_cts;   /* content formats in a root link's ct; 0 means 16 */
};

/* One link parameter: `name`, `name=ptoken` or `name="quoted"`. For a quoted value, `value` is
 * the raw text between the quotes (quoted-pairs such as \" are kept escaped). */
struct lw_m2m_link_attr {
    struct lw_bytes name;
    struct lw_bytes value;
    bool has_value;
    bool quoted;
};

struct lw_m2m_link {
    struct lw_bytes uri; /* between < and > */
    struct lw_m2m_link_attr *attrs;
    size_t nattrs;
    struct lw_m2m_path path; /* uri as an LwM2M path, when is_path */
    bool is_path;
};

struct lw_m2m_links {
    struct lw_m2m_link *v;
    size_t n;
};

/* Parses a link-value-list (possibly empty). Grammar (RFC 6690 §2 with RFC 5988 parmname):
 * link-value = "<" URI-Reference ">" *( ";" parmname [ "=" ( ptoken / quoted-string ) ] ),
 * separated by ","; no whitespace anywhere outside quoted strings. cfg may be NULL. Borrows in.
 * 0, LW_EMALFORMED / LW_ELIMIT (+ *err_off), LW_ENOMEM. */
int lw_m2m_link_parse(const uint8_t *in, size_t len, struct lw_arena *a,
                      const struct lw_m2m_link_cfg *cfg, struct lw_m2m_links *out, size_t *err_off);

/* First parameter named `name` (case-sensitive, as RFC 6690 parameter names are compared by the
 * LwM2M implementations), or NULL. */
const struct lw_m2m_link_attr *lw_m2m_link_attr_find(const struct lw_m2m_link *l, const char *name);
/* Parameter value as an unsigned decimal integer; 0, LW_ENOENT (absent or valueless),
 * LW_EMALFORMED, LW_ERANGE. */
int lw_m2m_link_attr_u64(const struct lw_m2m_link *l, const char *name, uint64_t *out);

/* Parameter value as a decimal number (integer or fraction, optional '-', optional exponent, as
 * used by gt / lt / st); 0, LW_ENOENT (absent or valueless), LW_EMALFORMED. */
int lw_m2m_link_attr_f64(const struct lw_m2m_link *l, const char *name, double *out);
/* The link's URI as an LwM2M path under an alternate root (e.g. root "/lwm2m" and URI
 * "/lwm2m/3/0/7" give /3/0/7; an empty root means "/"). 0 or LW_EMALFORMED. */
int lw_m2m_link_path_under(const struct lw_m2m_link *l, struct lw_bytes root,
                           struct lw_m2m_path *out);

/* Writes the links back as link format (uri and raw parameters as parsed). Errors are latched in
 * the buffer (lw_buf_status). */
void lw_m2m_link_write(const struct lw_m2m_links *links, struct lw_buf *b);
/* Appends one Discover-style link `<prefix/o/i/r>` with parameters given as preformatted
 * "name=value" or "name" strings (may be NULL / 0); a "," is written first when b is non-empty.
 * prefix is an alternate root path like "/lwm2m" or NULL. */
void lw_m2m_link_write_path(struct lw_buf *b, const char *prefix, const struct lw_m2m_path *p,
                            const char *const *params, size_t nparams);

/* ---- registration object lists ---- */

struct lw_m2m_reg_obj {
    uint16_t id;
    struct lw_m2m_ver ver; /* 1.0 when not announced */
    bool has_ver;          /* ver= was given (informational; not part of equality) */
    uint8_t flags;         /* LW_M2M_REGOBJ_* set by lw_m2m_link_reg_check */
    uint16_t *inst;        /* instance ids, ascending, unique */
    size_t ninst;
};

enum {
    LW_M2M_REGOBJ_UNKNOWN = 1,    /* no definition of this object in the registry */
    LW_M2M_REGOBJ_OTHER_VER = 2,  /* known object, but not in the announced version */
    LW_M2M_REGOBJ_BAD_INST = 4,   /* single-instance object listing an instance other than 0 or
                                     more than one instance */
    LW_M2M_REGOBJ_NOT_LISTED = 8, /* an object that must not be announced (0 Security, 21 OSCORE) */
};

struct lw_m2m_reg_links {
    struct lw_bytes root; /* alternate root path without the trailing '/', e.g. "/lwm2m"; empty
                             for the default root "/" */
    bool has_root_link;   /* a root link (rt="oma.lwm2m" or `</>`) was present */
    uint16_t *cts;        /* content formats from the root link's ct, in the given order */
    size_t ncts;
    struct lw_m2m_reg_obj *objs; /* ascending by id, unique */
    size_t nobjs;
};

/* Parses a Register / Update payload, e.g.
 * `</>;rt="oma.lwm2m";ct=11543,</1/0>,</3>;ver=1.1,</3/0>,</5/0>,</10243/0>`.
 * The root link is the one carrying rt="oma.lwm2m" (or the plain `</>`); with an alternate root
 * every other link must lie under it. Other links must be object `</o>` or instance `</o/i>`
 * paths; `ver` is read from object links (and accepted on instance links when it agrees); other
 * parameters are ignored. Duplicate instance links are merged. 0, LW_EMALFORMED / LW_ELIMIT
 * (+ *err_off), LW_ENOMEM; after a failure *out holds nothing usable. */
int lw_m2m_link_parse_reg(const uint8_t *in, size_t len, struct lw_arena *a,
                          const struct lw_m2m_link_cfg *cfg, struct lw_m2m_reg_links *out,
                          size_t *err_off);

/* Canonical link format of a parsed registration: the root link (when present) as
 * `<root>;rt="oma.lwm2m"[;ct=N | ;ct="N M ..."]`, then per object in id order `</o>` (with
 * `;ver=X.Y` unless 1.0) when it has no instances or a version other than 1.0, followed by its
 * `</o/i>` links in instance order. Equal registrations give identical bytes, and parsing the
 * output gives an equal registration. Errors are latched in b. */
void lw_m2m_link_reg_write(const struct lw_m2m_reg_links *r, struct lw_buf *b);
/* true when both have the same root, content formats (same order) and objects (ids, versions,
 * instances). */
bool lw_m2m_link_reg_eq(const struct lw_m2m_reg_links *a, const struct lw_m2m_reg_links *b);
/* Keyed hash consistent with lw_m2m_link_reg_eq (equal registrations hash equal), for interning
 * object lists that devices supply: SipHash-2-4 under `key`, chained over fixed-size blocks of a
 * binary encoding of the fields, so it needs no allocation. O(size of the list). */
uint64_t lw_m2m_link_reg_hash(const struct lw_m2m_reg_links *r, const uint8_t key[16]);

/* A self-contained copy of a parsed registration (root bytes, content formats, objects and
 * instances) in one heap block, independent of the input and the arena: for keeping an interned
 * object list beyond the datagram. Returns owned; free with lw_m2m_link_reg_free. NULL on OOM.
 * *bytes (may be NULL) gets the block size, for memory accounting. */
struct lw_m2m_reg_links *lw_m2m_link_reg_dup(const struct lw_m2m_reg_links *r, size_t *bytes);
/* Frees a copy made by lw_m2m_link_reg_dup; NULL is a no-op. */
void lw_m2m_link_reg_free(struct lw_m2m_reg_links *r);

/* The announced object with this id, or NULL (binary search). */
const struct lw_m2m_reg_obj *lw_m2m_link_reg_find(const struct lw_m2m_reg_links *r, uint16_t id);

/* Checks a parsed registration against the registry (borrows both): sets each object's
 * LW_M2M_REGOBJ_* flags. Unknown objects and versions, and listed objects 0 / 21, are allowed
 * (flagged only); returns LW_EMALFORMED when an object is flagged BAD_INST, else 0. *nunknown
 * (may be NULL) gets the number of objects flagged UNKNOWN. */
int lw_m2m_link_reg_check(struct lw_m2m_reg_links *r, const struct lw_m2m_registry *reg,
                          size_t *nunknown);

/* A type resolver for this device: resource types come from the object version the device
 * announced (lw_m2m_registry_resolve). Borrows r and reg; fill `ctx` and pass
 * lw_m2m_link_reg_types(&ctx). */
struct lw_m2m_reg_types_ctx {
    const struct lw_m2m_reg_links *reg_links;
    const struct lw_m2m_registry *registry;
};
struct lw_m2m_types lw_m2m_link_reg_types(const struct lw_m2m_reg_types_ctx *ctx);

#endif
