/* The registration interface of a shard (protocol.md §4.2). See registry.h. */
#include "registry.h"

#include "base/err.h"
#include "base/util.h"
#include "lwm2m/link.h"
#include "control.h"
#include "log.h"
#include "lwm2m/registry.h"
#include "ops.h"
#include "profiles.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------------
 * Interned object lists: the canonical link format (lw_m2m_link_reg_write) of a registration's
 * object list, shared by every registration announcing the same list, immutable, refcounted.
 * The table and the refcounts are guarded by one mutex, taken only when a Register or an Update
 * with a payload interns a list and when a registration holding one goes away.
 */
struct objlist {
    uint64_t hash;
    json_t *json;  /* the "objects" array, built once, immutable, shared by every event and
                      answer that shows this list (jansson's refcounts are atomic) */
    json_t *text;  /* its compact JSON text (json_dumps), written into every registration event
                      (an event snapshot copies it: snap_clone) */
    uint32_t refs; /* guarded by g.lock */
    uint32_t len;
    uint8_t bytes[];
};

static json_t *objects_json_of(const uint8_t *bytes, size_t len);

/* The compact JSON text of an "objects" array, as a string value; NULL on OOM. */
static json_t *objects_text_of(const json_t *arr)
{
    char *t = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_t *s = t ? json_string_nocheck(t) : NULL; /* ASCII: numbers, ids, versions */
    free(t);
    return s;
}

struct profile {
    struct objlist *objs; /* one reference */
    bool configured;      /* from registration.profiles_file: never replaced */
    uint8_t len;
    char pid[];
};

static struct {
    pthread_mutex_t lock;
    struct lw_hmap lists;    /* struct objlist, by hash of bytes */
    struct lw_hmap profiles; /* struct profile, by hash of pid */
    uint8_t key[16];
    struct lw_m2m_registry *objreg;
    bool inited;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct bkey {
    const void *p;
    size_t len;
};

static bool objlist_eq(const void *item, const void *k)
{
    const struct objlist *o = item;
    const struct bkey *b = k;
    return o->len == b->len && memcmp(o->bytes, b->p, b->len) == 0;
}

static bool profile_eq(const void *item, const void *k)
{
    const struct profile *p = item;
    const struct bkey *b = k;
    return p->len == b->len && memcmp(p->pid, b->p, b->len) == 0;
}

/* Caller holds g.lock. h is lw_siphash(g.key, bytes, len). Returns a new reference or NULL on
 * OOM. */
static struct objlist *intern_locked_h(const uint8_t *bytes, size_t len, uint64_t h)
{
    struct bkey k = {bytes, len};
    struct objlist *o = lw_hmap_get(&g.lists, h, &k, objlist_eq);
    if (o) {
        o->refs++;
        return o;
    }
    o = malloc(sizeof(*o) + len);
    if (!o)
        return NULL;
    o->hash = h;
    o->refs = 1;
    o->len = (uint32_t)len;
    memcpy(o->bytes, bytes, len);
    o->json = objects_json_of(bytes, len);
    o->text = objects_text_of(o->json);
    if (!o->json || !o->text || lw_hmap_put(&g.lists, h, o) != 0) {
        json_decref(o->json);
        json_decref(o->text);
        free(o);
        return NULL;
    }
    return o;
}

static struct objlist *intern_locked(const uint8_t *bytes, size_t len)
{
    return intern_locked_h(bytes, len, lw_siphash(g.key, bytes, len));
}

static void release_locked(struct objlist *o)
{
    if (o && --o->refs == 0) {
        lw_hmap_del_item(&g.lists, o->hash, o);
        json_decref(o->json);
        json_decref(o->text);
        free(o);
    }
}

static void objlist_release(struct objlist *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&g.lock);
    release_locked(o);
    pthread_mutex_unlock(&g.lock);
}

/* Caller holds g.lock. */
static struct profile *profile_find_locked(const char *pid, size_t len)
{
    struct bkey k = {pid, len};
    return lw_hmap_get(&g.profiles, lw_siphash(g.key, pid, len), &k, profile_eq);
}

/* Caller holds g.lock. Adds (or, unless the existing one is configured, replaces) a profile;
 * takes a new reference on o. 0 or LW_ENOMEM. */
static int profile_set_locked(const char *pid, size_t len, struct objlist *o, bool configured)
{
    struct profile *p = profile_find_locked(pid, len);
    if (p) {
        if (p->configured && !configured)
            return 0;
        o->refs++;
        release_locked(p->objs);
        p->objs = o;
        p->configured = configured;
        return 0;
    }
    p = malloc(sizeof(*p) + len + 1);
    if (!p)
        return LW_ENOMEM;
    p->len = (uint8_t)len;
    memcpy(p->pid, pid, len);
    p->pid[len] = '\0';
    p->configured = configured;
    p->objs = o;
    if (lw_hmap_put(&g.profiles, lw_siphash(g.key, pid, len), p) != 0) {
        free(p);
        return LW_ENOMEM;
    }
    o->refs++;
    return 0;
}

size_t reg_interned_count(void)
{
    pthread_mutex_lock(&g.lock);
    size_t n = lw_hmap_count(&g.lists);
    pthread_mutex_unlock(&g.lock);
    return n;
}

size_t reg_profile_count(void)
{
    pthread_mutex_lock(&g.lock);
    size_t n = lw_hmap_count(&g.profiles);
    pthread_mutex_unlock(&g.lock);
    return n;
}

/* Canonical bytes of a parsed object list into b: fixed over mem (cap bytes) when they fit, else
 * growable (no allocation for the usual short lists). The caller deinits b either way. */
static int canonical(const struct lw_m2m_reg_links *l, struct lw_buf *b, uint8_t *mem, size_t cap)
{
    lw_buf_init_fixed(b, mem, cap);
    lw_m2m_link_reg_write(l, b);
    if (!b->overflow)
        return 0;
    lw_buf_init(b, 2 * cap);
    lw_m2m_link_reg_write(l, b);
    return lw_buf_status(b);
}

#define CANON_STACK 512 /* stack buffer for canonical lists; longer ones go to the heap */

#define PROFILE_MAX_PID REG_PROFILE_MAX_PID

/* Loads registration.profiles_file (profiles.h has the format). 0, or LW_ECONFIG / LW_ENOMEM with
 * err = "path:line: reason". */
static int load_profiles(const char *path, char *err, size_t errlen)
{
    struct reg_profiles set = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        rc = LW_ECONFIG;
        goto out;
    }
    if (!(data = malloc(REG_PROFILES_MAX_FILE + 1))) {
        snprintf(err, errlen, "%s: out of memory", path);
        rc = LW_ENOMEM;
        goto out;
    }
    len = fread(data, 1, REG_PROFILES_MAX_FILE + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read", path);
        rc = LW_ECONFIG;
        goto out;
    }
    if ((rc = reg_profiles_parse(data, len, path, &set, err, errlen)) != 0)
        goto out;
    pthread_mutex_lock(&g.lock);
    for (size_t i = 0; i < set.n && rc == 0; i++) {
        const struct reg_profile_def *d = &set.v[i];
        struct objlist *o = intern_locked(d->links, d->links_len);
        rc = o ? profile_set_locked(d->pid, strlen(d->pid), o, true) : LW_ENOMEM;
        release_locked(o);
    }
    pthread_mutex_unlock(&g.lock);
    if (rc)
        snprintf(err, errlen, "%s: out of memory", path);
out:
    if (f)
        fclose(f);
    free(data);
    reg_profiles_free(&set);
    return rc;
}

/* lw_m2m_registry_load_dir's report: msg is "path:line: reason" (or "path: reason"). */
static void ddf_report(void *ctx, const char *path, int rc, const char *msg)
{
    (void)ctx;
    if (rc == 0)
        return;
    if (rc == LW_EEXIST) /* a second definition of an object version already known */
        log_notice(M2M, "object definition file refused: %s", *msg ? msg : path);
    else
        log_warn(M2M, "object definition file refused: %s", *msg ? msg : path);
}

int reg_global_init(const struct lw_config *cfg, char *err, size_t errlen)
{
    int rc = 0;
    if (errlen)
        err[0] = '\0';
    if (g.inited)
        return 0;
    if (lw_random(g.key, sizeof(g.key)) != 0)
        memset(g.key, 0x3c, sizeof(g.key));
    if (lw_hmap_init(&g.lists, 0) || lw_hmap_init(&g.profiles, 0) || dir_init()) {
        rc = LW_ENOMEM;
        goto out;
    }
    g.objreg = lw_m2m_registry_new(NULL);
    if (!g.objreg) {
        rc = LW_ENOMEM;
        goto out;
    }
    g.inited = true;
    if (cfg && cfg->objects_dir && *cfg->objects_dir) {
        struct lw_m2m_load_stats st = {0};
        /* A refused file is logged with its reason and the others are kept (the loader is
         * all-or-nothing per file); only an unreadable directory stops the start. */
        int lr = lw_m2m_registry_load_dir(g.objreg, cfg->objects_dir, ddf_report, NULL, &st, err,
                                          errlen);
        if (lr == LW_ENOENT || lr == LW_EIO) {
            rc = LW_ECONFIG;
            goto out;
        }
        if (errlen)
            err[0] = '\0';
        log_info(M2M, "object definitions loaded: dir=%s files=%zu refused=%zu", cfg->objects_dir,
                 st.loaded, st.refused);
    }
    if (cfg && cfg->reg_profiles_file && *cfg->reg_profiles_file)
        rc = load_profiles(cfg->reg_profiles_file, err, errlen);
out:
    if (rc)
        reg_global_deinit();
    return rc;
}

void reg_global_deinit(void)
{
    size_t pos = 0;
    struct profile *p;
    pthread_mutex_lock(&g.lock);
    while ((p = lw_hmap_next(&g.profiles, &pos))) {
        release_locked(p->objs);
        free(p);
    }
    lw_hmap_deinit(&g.profiles);
    /* Lists still referenced here belong to registrations nobody freed (a bug elsewhere). */
    pos = 0;
    struct objlist *o;
    while ((o = lw_hmap_next(&g.lists, &pos))) {
        json_decref(o->json);
        json_decref(o->text);
        free(o);
    }
    lw_hmap_deinit(&g.lists);
    pthread_mutex_unlock(&g.lock);
    lw_m2m_registry_free(g.objreg);
    g.objreg = NULL;
    dir_deinit();
    g.inited = false;
}

/* ------------------------------------------------------------------------------------------------
 * Registration records. The directory node (id, generation, inline endpoint name) is last.
 */
struct reg_extra {
    char *sms; /* owned, or NULL */
    char *pid; /* owned, or NULL */
};

struct reg {
    struct peer *peer;
    struct objlist *objs;
    struct reg_extra *extra; /* NULL unless sms or pid were given (rare) */
    uint64_t expires;        /* monotonic ms, lifetime + grace after the last Register/Update */
    uint32_t registered_s;   /* wall clock, Unix seconds */
    uint32_t updated_s;
    uint32_t lifetime_s;
    uint8_t ver; /* LwM2M enabler version major << 4 | minor */
    bool queue;
    uint8_t sec; /* enum regsrv_secmode of the Register */
    char binding[7];
    struct dir_node node; /* must stay last: the name follows it */
};

#define SLOT_FREE_TAG 1u
#define SLOT_NONE     UINT32_MAX
#define MAX_SLOTS     (1u << 24)

size_t regsrv_sizeof_record(void)
{
    return sizeof(struct reg) + sizeof(struct peer) + sizeof(struct reg *);
}

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

void regsrv_id_format(uint64_t id, char out[12])
{
    for (int i = 10; i >= 0; i--) {
        out[i] = b62[id % 62];
        id /= 62;
    }
    out[11] = '\0';
}

int regsrv_id_parse(const char *s, size_t len, uint64_t *id)
{
    uint64_t v = 0;
    if (len != 11)
        return LW_EMALFORMED;
    for (size_t i = 0; i < len; i++) {
        const char *p = memchr(b62, s[i], 62);
        if (!p || s[i] == '\0')
            return LW_EMALFORMED;
        uint64_t d = (uint64_t)(p - b62);
        if (v > (UINT64_MAX - d) / 62)
            return LW_EMALFORMED;
        v = v * 62 + d;
    }
    *id = v;
    return 0;
}

static uint32_t slot_of(uint64_t id)
{
    return (uint32_t)(id >> 32) & (MAX_SLOTS - 1);
}

/* Slot values: a registration pointer, a free-list link (tag 1) or "moved to shard X" (tag 2). */
#define SLOT_MOVED_TAG 2u
static bool slot_is_free(const struct reg *p)
{
    return ((uintptr_t)p & 3u) != 0;
}
static bool slot_is_moved(const struct reg *p)
{
    return ((uintptr_t)p & 3u) == SLOT_MOVED_TAG;
}
static struct reg *slot_moved(unsigned shard)
{
    return (struct reg *)(((uintptr_t)shard << 2) | SLOT_MOVED_TAG);
}

/* Reserves a slot: its index, or SLOT_NONE when the table cannot grow. */
static uint32_t slot_alloc(struct regsrv *r)
{
    if (r->free_head == SLOT_NONE) {
        if (r->nslots >= MAX_SLOTS)
            return SLOT_NONE;
        uint32_t ncap = r->nslots ? r->nslots * 2 : 1024;
        if (ncap > MAX_SLOTS)
            ncap = MAX_SLOTS;
        struct reg **ns = realloc(r->slots, ncap * sizeof(*ns));
        if (!ns)
            return SLOT_NONE;
        r->slots = ns;
        /* New slots form the free list in ascending order. */
        for (uint32_t i = ncap; i-- > r->nslots;) {
            ns[i] = (struct reg *)(((uintptr_t)r->free_head << 1) | SLOT_FREE_TAG);
            r->free_head = i;
        }
        r->nslots = ncap;
    }
    uint32_t i = r->free_head;
    uintptr_t v = (uintptr_t)r->slots[i];
    r->free_head = (uint32_t)(v >> 1);
    r->slots[i] = NULL;
    return i;
}

static void slot_free(struct regsrv *r, uint32_t i)
{
    r->slots[i] = (struct reg *)(((uintptr_t)r->free_head << 1) | SLOT_FREE_TAG);
    r->free_head = i;
}

static bool id_eq(const void *item, const void *key)
{
    return ((const struct reg *)item)->node.id == *(const uint64_t *)key;
}

static uint64_t id_hash(const struct regsrv *r, uint64_t id)
{
    return lw_siphash(r->peers.key, &id, sizeof(id));
}

static struct reg *reg_find(const struct regsrv *r, uint64_t id)
{
    if (dir_id_shard(id) != r->shard)
        return lw_hmap_get(&r->moved, id_hash(r, id), &id, id_eq);
    uint32_t i = slot_of(id);
    if (i >= r->nslots)
        return NULL;
    struct reg *gr = r->slots[i];
    if (!gr || slot_is_free(gr) || gr->node.id != id)
        return NULL;
    return gr;
}

static void stat_inc(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}
static void stat_add(_Atomic uint64_t *c, int64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

static struct regsrv *regsrv_of(const struct peer *p)
{
    return lw_container_of(p->ep.env, struct regsrv, env);
}

/* A block-wise body being received from a peer (RFC 7959 §2.5), in r->b1s. */
struct b1_ent {
    const struct peer *p;
    struct lw_coap_b1rx rx;
};

static uint64_t b1_hash(const struct peer *p)
{
    return (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull; /* our own pointers: no attacker */
}

static bool b1_eq(const void *item, const void *key)
{
    return ((const struct b1_ent *)item)->p == key;
}

static struct lw_coap_b1rx *b1_of(const struct peer *p)
{
    if (!p->has_b1)
        return NULL;
    struct b1_ent *e = lw_hmap_get(&regsrv_of(p)->b1s, b1_hash(p), p, b1_eq);
    return e ? &e->rx : NULL;
}

static void b1_free(struct peer *p);

static void peer_free(struct regsrv *r, struct peer *p)
{
    b1_free(p);
    lw_wheel_cancel(&r->wheel, &p->timer);
    lw_coap_ep_deinit(&p->ep);
    peer_del(&r->peers, p);
    stat_add(&r->stats.peers, -1);
}

/* Re-arms p's timer for its next deadline, or frees p when it holds nothing (no registration, no
 * CoAP state). A peer whose callback is running is only re-armed; its caller settles it. */
static void settle(struct regsrv *r, struct peer *p)
{
    const struct lw_coap_b1rx *b1 = b1_of(p);
    if (b1 && (!b1->active || b1->expires <= r->now) && p != r->busy)
        b1_free(p); /* an abandoned block-wise transfer */
    uint64_t d = lw_coap_ep_next_deadline(&p->ep);
    if (p->reg && p->reg->expires < d)
        d = p->reg->expires;
    if (d == UINT64_MAX) {
        lw_wheel_cancel(&r->wheel, &p->timer);
        if (!p->reg && p != r->busy)
            peer_free(r, p);
        return;
    }
    lw_wheel_arm(&r->wheel, &p->timer, d);
}

static void reg_detach(struct reg *gr)
{
    if (gr->peer) {
        gr->peer->reg = NULL;
        gr->peer = NULL;
    }
}

/* Frees a registration that no shard table holds any more. */
static void reg_free_detached(struct reg *gr)
{
    dir_remove(&gr->node);
    objlist_release(gr->objs);
    if (gr->extra) {
        free(gr->extra->sms);
        free(gr->extra->pid);
        free(gr->extra);
    }
    free(gr);
}

static void note_issuer(struct regsrv *r, uint64_t id, uint8_t kind, unsigned where)
{
    struct regsrv_fwd *f;
    if (dir_id_shard(id) >= r->cfg.nshards)
        return; /* issued by a shard this run does not have (restored with fewer shards) */
    if (r->closing || !r->ops->post_fwd || !(f = calloc(1, sizeof(*f))))
        return; /* the issuer's slot stays marked: a bounded leak of 8 bytes */
    f->kind = kind;
    f->from = r->shard;
    f->id = id;
    f->where = (uint8_t)where;
    r->ops->post_fwd(r->ctx, dir_id_shard(id), f);
}

/* Removes gr from this shard's tables and its peer (settled); gr stays in the directory. When
 * it migrates (to >= 0) the issuing shard's slot is marked or told where it went; when it goes
 * away (to < 0) the issuer's slot is freed (by message when that is another shard). */
static void reg_unlink(struct regsrv *r, struct reg *gr, int to)
{
    struct peer *p = gr->peer;
    uint64_t id = gr->node.id;
    unsigned issuer = dir_id_shard(id);
    reg_detach(gr);
    if (issuer == r->shard) {
        if (to >= 0)
            r->slots[slot_of(id)] = slot_moved((unsigned)to);
        else
            slot_free(r, slot_of(id));
    } else {
        lw_hmap_del_item(&r->moved, id_hash(r, id), gr);
        if (to < 0)
            note_issuer(r, id, RS_FWD_GONE, 0);
        else if ((unsigned)to != issuer)
            note_issuer(r, id, RS_FWD_MOVED, (unsigned)to);
    }
    stat_add(&r->stats.regs, -1);
    if (p)
        settle(r, p);
}

/* Unlinks and frees a registration; settles its peer. */
static void reg_destroy(struct regsrv *r, struct reg *gr)
{
    reg_unlink(r, gr, -1);
    reg_free_detached(gr);
}

/* Where to forward a request for an id this shard does not hold: its issuer, or for an id it
 * issued, the shard its slot says the registration moved to; -1 when nobody. */
static int fwd_target(const struct regsrv *r, uint64_t id)
{
    unsigned issuer = dir_id_shard(id);
    if (issuer != r->shard)
        return issuer < r->cfg.nshards ? (int)issuer : -1;
    uint32_t i = slot_of(id);
    if (i < r->nslots && slot_is_moved(r->slots[i]))
        return (int)((uintptr_t)r->slots[i] >> 2);
    return -1;
}

/* ------------------------------------------------------------------------------------------------
 * JSON (devices.h schema)
 */
/* RFC 3339 UTC ("2026-11-22T10:00:00Z"), formatted by hand: strftime was a visible share of the
 * control thread's time at tens of thousands of events per second. */
static bool time_text(int64_t unix_s, char b[20])
{
    struct tm tm;
    time_t t = (time_t)unix_s;
    unsigned v[6];
    if (!lw_utc_fields(unix_s, v)) { /* before 1970 or after 9999: the C library */
        if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
            return false;
        v[0] = (unsigned)tm.tm_year + 1900;
        v[1] = (unsigned)tm.tm_mon + 1;
        v[2] = (unsigned)tm.tm_mday;
        v[3] = (unsigned)tm.tm_hour;
        v[4] = (unsigned)tm.tm_min;
        v[5] = (unsigned)tm.tm_sec;
    }
    b[0] = (char)('0' + v[0] / 1000);
    b[1] = (char)('0' + v[0] / 100 % 10);
    b[2] = (char)('0' + v[0] / 10 % 10);
    b[3] = (char)('0' + v[0] % 10);
    static const char sep[5] = {'-', '-', 'T', ':', ':'};
    for (int i = 1; i < 6; i++) {
        b[3 * i + 1] = sep[i - 1];
        b[3 * i + 2] = (char)('0' + v[i] / 10);
        b[3 * i + 3] = (char)('0' + v[i] % 10);
    }
    b[19] = 'Z';
    return true;
}

static json_t *time_json(int64_t unix_s)
{
    char b[20];
    return time_text(unix_s, b) ? json_stringn(b, 20) : json_null();
}

/* The "objects" array of a canonical object list (built once per interned list). */
static json_t *objects_json_of(const uint8_t *bytes, size_t len)
{
    json_t *arr = json_array();
    struct lw_m2m_reg_links l;
    struct lw_arena a;
    size_t off;
    lw_arena_init(&a, 4096, 0);
    if (arr && lw_m2m_link_parse_reg(bytes, len, &a, NULL, &l, &off) == 0) {
        for (size_t i = 0; i < l.nobjs; i++) {
            const struct lw_m2m_reg_obj *ob = &l.objs[i];
            char ver[8];
            snprintf(ver, sizeof(ver), "%u.%u", ob->ver.major, ob->ver.minor);
            json_t *inst = json_array();
            for (size_t k = 0; k < ob->ninst; k++)
                json_array_append_new(inst, json_integer(ob->inst[k]));
            json_array_append_new(arr, json_pack("{s:i,s:s,s:o}", "id", (int)ob->id, "version", ver,
                                                 "instances", inst));
        }
    }
    lw_arena_deinit(&a);
    return arr;
}

/* A copy of what the registration JSON shows, taken on the shard thread; the JSON itself can
 * then be built on any thread (events build it on the control thread, off the datagram path). */
struct reg_snap {
    struct xmsg m;         /* events: transport to the control thread */
    struct reg_snap *next; /* the rest of a batch posted as one message (regsrv_events_flush) */
    enum lw_event_type type;
    const char *reason; /* static string or NULL */
    uint64_t id;
    json_t *objs; /* snap_take: one reference to the interned list's shared array; NULL in a
                     heap snapshot (snap_clone) */
    const char *objs_text; /* its JSON text (struct objlist): borrowed in snap_fill, a copy in
                              the block of a heap snapshot (not a reference: the control thread
                              would bounce the shared count's cache line with every event) */
    size_t objs_len;
    int64_t registered_s, updated_s, expires_s;
    uint32_t lifetime_s;
    struct peer_addr addr;
    bool has_addr, queue;
    uint8_t ver;
    uint8_t sec;
    char binding[7];
    /* Borrowed from the registration while on the shard thread; copies after the struct in a
     * heap snapshot (snap_clone). */
    const char *ep, *sms, *pid; /* sms and pid may be NULL */
    /* Heap snapshots of one chain share blocks (one malloc for several events of a receive
     * batch): the chain's head owns the first block; `own` marks a snapshot at the start of a
     * block, own_next links a chain's owners after the head (freed when the chain is done). */
    bool own;
    struct reg_snap *own_next;
    struct reg_snap *blk;            /* head: the owner whose block has room */
    size_t blk_used, blk_cap, blk_n; /* owners: bytes in use, block size, snapshots in it */
};

/* The wall clock for r->now: read once per monotonic millisecond (a receive batch shares one
 * loop time), not once per use. */
static int64_t regsrv_wall_ms(struct regsrv *r)
{
    if (r->wall_at != r->now || r->wall_ms == 0) {
        r->wall_ms = lw_clock_wall(r->cfg.clock);
        r->wall_at = r->now;
    }
    return r->wall_ms;
}

/* Fills sn from gr without taking references: objs and objs_text are borrowed like the
 * strings (valid while gr is, on this thread). */
static void snap_fill(struct regsrv *r, const struct reg *gr, struct reg_snap *sn)
{
    int64_t wall_now = regsrv_wall_ms(r) / 1000;
    int64_t left_ms = gr->expires > r->now ? (int64_t)(gr->expires - r->now) : 0;
    left_ms -= r->cfg.expiry_grace_ms;
    sn->id = gr->node.id;
    sn->objs = gr->objs ? gr->objs->json : NULL;
    sn->objs_text = gr->objs ? json_string_value(gr->objs->text) : NULL;
    sn->objs_len = gr->objs ? json_string_length(gr->objs->text) : 0;
    sn->registered_s = gr->registered_s;
    sn->updated_s = gr->updated_s;
    sn->expires_s = wall_now + left_ms / 1000;
    sn->lifetime_s = gr->lifetime_s;
    sn->has_addr = gr->peer != NULL;
    if (gr->peer)
        sn->addr = gr->peer->addr;
    sn->queue = gr->queue;
    sn->ver = gr->ver;
    sn->sec = gr->sec;
    memcpy(sn->binding, gr->binding, sizeof(sn->binding));
    sn->ep = gr->node.name;
    sn->sms = gr->extra ? gr->extra->sms : NULL;
    sn->pid = gr->extra ? gr->extra->pid : NULL;
}

/* snap_fill, holding one reference to the objects array (json_decref(sn->objs) when done). */
static void snap_take(struct regsrv *r, const struct reg *gr, struct reg_snap *sn)
{
    snap_fill(r, gr, sn);
    json_incref(sn->objs);
}

/* A heap copy of sn (from snap_fill) with its own copy of the objects text and no array (nothing
 * to release but the block). In a batch (events held for one message) with head (the chain
 * so far), it goes into the head's current block when it fits, else into a new block twice the size
 * of the last (at most SNAP_BLOCK_MAX snapshots' worth), so that a receive batch of n events costs
 * about log2(n) allocations (and the control thread as many frees) and a lone event no more
 * than before. NULL on OOM. */
#define SNAP_BLOCK_MAX 16
static struct reg_snap *snap_clone(const struct reg_snap *sn, bool batch, struct reg_snap *head)
{
    size_t le = strlen(sn->ep) + 1, ls = sn->sms ? strlen(sn->sms) + 1 : 0,
           lp = sn->pid ? strlen(sn->pid) + 1 : 0, lo = sn->objs_text ? sn->objs_len : 0;
    const size_t al = _Alignof(max_align_t);
    size_t need = (sizeof(struct reg_snap) + le + ls + lp + lo + al - 1) / al * al;
    struct reg_snap *o = head ? head->blk : NULL, *c;
    bool own = !o || o->blk_cap - o->blk_used < need;
    size_t cap = need;
    if (own) {
        if (o) /* room for twice the snapshots of the last block, of about this size */
            cap = need * LW_MIN(2 * o->blk_n, (size_t)SNAP_BLOCK_MAX);
        else if (batch)
            cap = 2 * need; /* starts a batch's chain: room for one more */
        c = malloc(cap);
        if (!c)
            return NULL;
    } else {
        c = (struct reg_snap *)(void *)((char *)o + o->blk_used);
        o->blk_used += need;
        o->blk_n++;
    }
    *c = *sn;
    c->objs = NULL;
    c->own = own;
    c->own_next = NULL;
    c->blk = NULL;
    if (own) {
        c->blk_used = need;
        c->blk_cap = cap;
        c->blk_n = 1;
        if (head && head != c) {
            c->own_next = head->own_next;
            head->own_next = c;
            head->blk = c;
        } else {
            c->blk = c; /* a chain's head: its own block first */
        }
    }
    char *t = (char *)(c + 1);
    c->ep = memcpy(t, sn->ep, le);
    c->sms = sn->sms ? memcpy(t + le, sn->sms, ls) : NULL;
    c->pid = sn->pid ? memcpy(t + le + ls, sn->pid, lp) : NULL;
    c->objs_text = sn->objs_text ? memcpy(t + le + ls + lp, sn->objs_text, lo) : NULL;
    return c;
}

static const char *sec_name(uint8_t m)
{
    switch (m) {
    case RS_SEC_PSK: return "psk";
    case RS_SEC_RPK: return "rpk";
    case RS_SEC_X509: return "x509";
    default: return "nosec";
    }
}

/* ETS int-401: a request may touch a registration only with the security it was made with:
 * NoSec for a NoSec registration, a DTLS identity bound to its endpoint for a DTLS one. */
static bool sec_allows(const struct reg *gr, uint8_t mode, const char *ep, size_t ep_len)
{
    if ((gr->sec == RS_SEC_NOSEC) != (mode == RS_SEC_NOSEC))
        return false;
    return mode == RS_SEC_NOSEC ||
           (ep_len == gr->node.len && memcmp(ep, gr->node.name, ep_len) == 0);
}

/* Fills obj with the registration JSON (devices.h schema). */
static void snap_json(const struct reg_snap *sn, json_t *j)
{
    char id[12], ver[8], addr[64];
    regsrv_id_format(sn->id, id);
    snprintf(ver, sizeof(ver), "%u.%u", sn->ver >> 4, sn->ver & 15);
    if (sn->has_addr)
        peer_addr_format(&sn->addr, addr, sizeof(addr));
    json_object_set_new(j, "endpoint", json_string(sn->ep));
    json_object_set_new(j, "registration_id", json_string(id));
    json_object_set_new(j, "address", sn->has_addr ? json_string(addr) : json_null());
    json_object_set_new(j, "lwm2m_version", json_string(ver));
    json_object_set_new(j, "binding", json_string(sn->binding));
    json_object_set_new(j, "queue_mode", json_boolean(sn->queue));
    json_object_set_new(j, "lifetime_s", json_integer(sn->lifetime_s));
    json_object_set_new(j, "registered_at", time_json(sn->registered_s));
    json_object_set_new(j, "last_update", time_json(sn->updated_s));
    json_object_set_new(j, "expires_at", time_json(sn->expires_s));
    json_object_set_new(j, "sms", sn->sms ? json_string(sn->sms) : json_null());
    json_object_set_new(j, "profile_id", sn->pid ? json_string(sn->pid) : json_null());
    json_object_set_new(j, "security_mode", json_string(sec_name(sn->sec)));
    json_object_set_new(j, "objects", sn->objs ? json_incref(sn->objs) : json_array());
}

static json_t *reg_json(struct regsrv *r, const struct reg *gr)
{
    struct reg_snap sn;
    json_t *j = json_object();
    snap_take(r, gr, &sn);
    if (j)
        snap_json(&sn, j);
    json_decref(sn.objs);
    return j;
}

/* The "registered_at"-style times of snap_json, written directly: "YYYY-MM-DDTHH:MM:SSZ" with
 * its quotes, or null, what json_dumps writes for time_json(unix_s). The events of a burst
 * carry the same few seconds, so the last texts are kept (per thread). Returns the end. */
static char *put_time_s(char *p, int64_t unix_s)
{
    static _Thread_local struct {
        int64_t s;
        bool ok;
        char t[20];
    } memo[2] = {{INT64_MIN, false, {0}}, {INT64_MIN, false, {0}}};
    static _Thread_local unsigned next;
    unsigned i = memo[0].s == unix_s ? 0 : memo[1].s == unix_s ? 1 : 2;
    if (i == 2) {
        i = next;
        next ^= 1;
        memo[i].s = unix_s;
        memo[i].ok = time_text(unix_s, memo[i].t);
    }
    if (!memo[i].ok) {
        memcpy(p, "null", 4);
        return p + 4;
    }
    p[0] = '"';
    memcpy(p + 1, memo[i].t, 20);
    p[21] = '"';
    return p + 22;
}

/* Member writers over a reserved region: each returns the new end. A string jansson would
 * refuse leaves its member out (json_object_set_new of NULL sets nothing), which is why the
 * separator is written with the member (first: no comma yet). */
#define KEY(name) "\"" name "\":"
static char *put_lit(char *p, const char *lit, size_t n)
{
    memcpy(p, lit, n);
    return p + n;
}
#define LIT(p, s) put_lit(p, s, sizeof(s) - 1)

static char *put_member_str(char *p, bool *first, const char *key, size_t klen, const char *v,
                            size_t len)
{
    char *start = p;
    if (!*first)
        *p++ = ',';
    p = put_lit(p, key, klen);
    size_t n = lw_json_str_to((uint8_t *)p, v, len);
    if (!n)
        return start;
    *first = false;
    return p + n;
}
#define MEMBER_STR(p, first, name, v, len) \
    put_member_str(p, first, KEY(name), sizeof(KEY(name)) - 1, v, len)

/* A string member whose text needs no escape (letters, digits, '.', ':', '[', ']'). */
static char *put_member_plain(char *p, bool *first, const char *key, size_t klen, const char *v,
                              size_t len)
{
    if (!*first)
        *p++ = ',';
    *first = false;
    p = put_lit(p, key, klen);
    *p++ = '"';
    memcpy(p, v, len);
    p[len] = '"';
    return p + len + 1;
}
#define MEMBER_PLAIN(p, first, name, v, len) \
    put_member_plain(p, first, KEY(name), sizeof(KEY(name)) - 1, v, len)

/* A member whose value cannot fail (written as is). */
static char *put_member(char *p, bool *first, const char *key, size_t klen)
{
    if (!*first)
        *p++ = ',';
    *first = false;
    return put_lit(p, key, klen);
}
#define MEMBER(p, first, name) put_member(p, first, KEY(name), sizeof(KEY(name)) - 1)

static char *put_member_str_or_null(char *p, bool *first, const char *key, size_t klen,
                                    const char *v)
{
    if (v)
        return put_member_str(p, first, key, klen, v, strlen(v));
    p = put_member(p, first, key, klen);
    return LIT(p, "null");
}
#define MEMBER_STR_OR_NULL(p, first, name, v) \
    put_member_str_or_null(p, first, KEY(name), sizeof(KEY(name)) - 1, v)

/* peer_addr_format, by hand for IPv4 (inet_ntop and snprintf were a fifth of an event). */
static size_t addr_text(const struct peer_addr *a, char *out, size_t cap)
{
    if (a->family != 4) {
        peer_addr_format(a, out, cap);
        return strlen(out);
    }
    size_t n = 0; /* at most "255.255.255.255:65535" */
    for (int i = 0; i < 5; i++) {
        unsigned v = i < 4 ? a->ip[i] : a->port;
        char t[5];
        size_t k = 0;
        do {
            t[k++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        if (i)
            out[n++] = i < 4 ? '.' : ':';
        while (k)
            out[n++] = t[--k];
    }
    out[n] = 0;
    return n;
}

/* The event data of a snapshot as text: byte for byte json_dumps(JSON_COMPACT) of the object
 * snap_event builds (snap_json + "reason"), without the tree: this runs on the control thread
 * for every registration event (lw_event_data_writer). One reservation of the worst case, then
 * plain stores. Always 0 (an allocation failure is latched in b). */
static int snap_write(const void *ctx, struct lw_buf *b)
{
    const struct reg_snap *sn = ctx;
    char id[12], addr[64];
    size_t le = strlen(sn->ep), ls = sn->sms ? strlen(sn->sms) : 0,
           lp = sn->pid ? strlen(sn->pid) : 0, lr = sn->reason ? strlen(sn->reason) : 0,
           lo = sn->objs_text ? sn->objs_len : 2;
    size_t la = sn->has_addr ? addr_text(&sn->addr, addr, sizeof(addr)) : 0;
    /* member names and fixed values < 400 bytes; every string at most 6 bytes a byte + 2 */
    size_t need = 400 + 6 * (le + ls + lp + lr + la + sizeof(id) + sizeof(sn->binding)) + lo;
    char *d = (char *)lw_buf_reserve(b, need), *p = d;
    bool first = true;
    if (!d)
        return 0;
    regsrv_id_format(sn->id, id);
    *p++ = '{';
    p = MEMBER_STR(p, &first, "endpoint", sn->ep, le);
    p = MEMBER_PLAIN(p, &first, "registration_id", id, 11); /* base62 */
    if (sn->has_addr)
        p = MEMBER_PLAIN(p, &first, "address", addr, la); /* digits, hex, '.', ':', '[]' */
    else
        p = MEMBER_STR_OR_NULL(p, &first, "address", NULL);
    char ver[8]; /* "%u.%u" of two nibbles */
    size_t n = 0;
    unsigned maj = sn->ver >> 4, min = sn->ver & 15;
    if (maj >= 10)
        ver[n++] = '1';
    ver[n++] = (char)('0' + maj % 10);
    ver[n++] = '.';
    if (min >= 10)
        ver[n++] = '1';
    ver[n++] = (char)('0' + min % 10);
    p = MEMBER_PLAIN(p, &first, "lwm2m_version", ver, n);
    p = MEMBER_STR(p, &first, "binding", sn->binding, strnlen(sn->binding, sizeof(sn->binding)));
    p = MEMBER(p, &first, "queue_mode");
    p = sn->queue ? LIT(p, "true") : LIT(p, "false");
    p = MEMBER(p, &first, "lifetime_s");
    char num[12];
    size_t k = sizeof(num);
    uint32_t v = sn->lifetime_s;
    do {
        num[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    p = put_lit(p, num + k, sizeof(num) - k);
    p = MEMBER(p, &first, "registered_at");
    p = put_time_s(p, sn->registered_s);
    p = MEMBER(p, &first, "last_update");
    p = put_time_s(p, sn->updated_s);
    p = MEMBER(p, &first, "expires_at");
    p = put_time_s(p, sn->expires_s);
    p = MEMBER_STR_OR_NULL(p, &first, "sms", sn->sms);
    p = MEMBER_STR_OR_NULL(p, &first, "profile_id", sn->pid);
    const char *sec = sec_name(sn->sec);
    p = MEMBER_PLAIN(p, &first, "security_mode", sec, strlen(sec));
    p = MEMBER(p, &first, "objects");
    if (sn->objs_text)
        p = put_lit(p, sn->objs_text, lo);
    else
        p = LIT(p, "[]");
    if (sn->reason)
        p = MEMBER_STR(p, &first, "reason", sn->reason, lr);
    *p++ = '}';
    lw_buf_commit(b, (size_t)(p - d));
    return 0;
}

static void snap_ctx_free(void *ctx)
{
    free(ctx);
}

/* A heap event about a snapshot from snap_take (regsrv_ops.event: tests and tools that
 * take events one by one). It carries both forms: `data` as jansson (what those callers
 * inspect) and the direct writer over a heap copy of the snapshot (what lw_event_json uses,
 * as on the control thread), so the tests exercise the path the daemon runs. */
static struct lw_event *snap_event(const struct reg_snap *sn)
{
    struct lw_event *ev = lw_event_new(sn->type, sn->ep);
    if (!ev)
        return NULL;
    snap_json(sn, ev->data);
    if (sn->reason)
        json_object_set_new(ev->data, "reason", json_string(sn->reason));
    struct reg_snap *c = snap_clone(sn, false, NULL);
    if (c) {
        ev->write_data = snap_write;
        ev->write_ctx = c;
        ev->free_ctx = snap_ctx_free;
    }
    return ev;
}

/* Events in flight to the control thread (posted, not yet turned into lw_events). */
static _Atomic uint64_t snaps_inflight;
static _Atomic uint64_t heartbeats_coalesced;
#define SNAPS_HIGH_WATER 65536

/* Frees the blocks of a chain (head: the chain's first snapshot, which owns the first). */
static void snaps_free(struct reg_snap *head)
{
    if (!head)
        return;
    for (struct reg_snap *o = head->own_next, *n; o; o = n) {
        n = o->own_next;
        free(o);
    }
    free(head);
}

static void run_snap(struct shard *s, struct xmsg *m)
{
    struct reg_snap *sn = lw_container_of(m, struct reg_snap, m), *next, *head = sn;
    uint64_t n = 0;
    (void)s;
    for (; sn; sn = next) {
        next = sn->next;
        /* Already on the control thread: deliver now (what the mailbox would run later), so a
         * backlog holds compact snapshots rather than built events; the event borrows the
         * snapshot, and its JSON is written from it directly (snap_write). */
        struct lw_event ev;
        lw_event_init_written(&ev, sn->type, sn->ep, strlen(sn->ep), snap_write, sn);
        lw_events_deliver(&ev);
        n++;
    }
    atomic_fetch_sub_explicit(&snaps_inflight, n, memory_order_relaxed);
    snaps_free(head);
}

/* Posts a chain of snapshots (takes ownership) as one control-thread message. */
static void post_chain(struct reg_snap *head)
{
    if (!head || lw_control_post(&head->m))
        return;
    for (struct reg_snap *sn = head; sn; sn = sn->next) {
        atomic_fetch_sub_explicit(&snaps_inflight, 1, memory_order_relaxed);
    }
    snaps_free(head);
}

void regsrv_events_flush(struct regsrv *r)
{
    struct reg_snap *head = r->held;
    r->held = NULL;
    r->held_tail = &r->held;
    post_chain(head);
}

uint64_t regsrv_events_coalesced(void)
{
    return atomic_load_explicit(&heartbeats_coalesced, memory_order_relaxed);
}

/* Hands a change to the write-behind store (ops->persist) on this thread. Heartbeats too: the
 * store must keep the newest expiry even while events are being coalesced. */
static void persist_change(struct regsrv *r, enum lw_event_type type, const struct reg *gr)
{
    struct reg_snap sn;
    snap_take(r, gr, &sn);
    struct regsrv_change c = {.type = type,
                              .id = sn.id,
                              .ep = sn.ep,
                              .addr = sn.has_addr ? &sn.addr : NULL,
                              .ver = sn.ver,
                              .sec = sn.sec,
                              .queue = sn.queue,
                              .binding = sn.binding,
                              .lifetime_s = sn.lifetime_s,
                              .registered_s = sn.registered_s,
                              .updated_s = sn.updated_s,
                              .expires_s = sn.expires_s,
                              .sms = sn.sms,
                              .pid = sn.pid,
                              .objs = sn.objs};
    r->ops->persist(r->ctx, &c);
    json_decref(sn.objs);
}

/* Posts an event about gr. The shard thread only copies a snapshot; the control thread builds
 * the JSON. A heartbeat Update (nothing but the timestamps changed) is not announced while the
 * control thread is more than SNAPS_HIGH_WATER events behind: its event would only repeat the
 * previous one with later times, and an unbounded backlog would eat the memory the
 * registrations need. Those are counted (lwm2md_events_coalesced_total). */
static void post_event(struct regsrv *r, enum lw_event_type type, const struct reg *gr,
                       const char *reason, bool heartbeat)
{
    if (r->ops->persist)
        persist_change(r, type, gr);
    if (r->ops->event) {
        struct reg_snap sn;
        snap_take(r, gr, &sn);
        sn.type = type;
        sn.reason = reason;
        struct lw_event *ev = snap_event(&sn);
        json_decref(sn.objs);
        if (ev)
            r->ops->event(r->ctx, ev);
        return;
    }
    if (heartbeat &&
        atomic_load_explicit(&snaps_inflight, memory_order_relaxed) > SNAPS_HIGH_WATER) {
        atomic_fetch_add_explicit(&heartbeats_coalesced, 1, memory_order_relaxed);
        return;
    }
    struct reg_snap tmp;
    snap_fill(r, gr, &tmp);
    tmp.type = type;
    tmp.reason = reason;
    struct reg_snap *sn = snap_clone(&tmp, r->hold_events, r->hold_events ? r->held : NULL);
    if (!sn)
        return;
    sn->m.run = run_snap;
    sn->next = NULL;
    atomic_fetch_add_explicit(&snaps_inflight, 1, memory_order_relaxed);
    if (r->hold_events) { /* one message (one lock, one wake-up) per receive batch */
        if (!r->held)
            r->held_tail = &r->held;
        *r->held_tail = sn;
        r->held_tail = &sn->next;
        return;
    }
    post_chain(sn);
}

/* ------------------------------------------------------------------------------------------------
 * Request parsing
 */
struct params {
    struct lw_bytes ep, lt, lwm2m, b, sms, pid;
    bool has_ep, has_lt, has_lwm2m, has_b, has_sms, has_pid, q;
    const char *bad; /* first problem found, or NULL */
};

static void param_set(struct params *pr, struct lw_bytes *slot, bool *has, struct lw_bytes v,
                      bool has_value, const char *name)
{
    (void)name;
    if (*has)
        pr->bad = pr->bad ? pr->bad : "duplicate query parameter";
    else if (!has_value)
        pr->bad = pr->bad ? pr->bad : "query parameter without a value";
    *has = true;
    *slot = v;
}

static void parse_params(const struct lw_coap_msg *m, struct params *pr)
{
    size_t pos = 0;
    const struct lw_coap_opt *o;
    memset(pr, 0, sizeof(*pr));
    while ((o = lw_coap_next_opt(m, LW_COAP_OPT_URI_QUERY, &pos))) {
        const uint8_t *v = lw_coap_opt_data(o);
        const uint8_t *eq = memchr(v, '=', o->len);
        struct lw_bytes name = {v, eq ? (size_t)(eq - v) : o->len};
        struct lw_bytes val = eq ? LW_BYTES(eq + 1, o->len - name.len - 1) : LW_BYTES(v, 0);
        if (lw_bytes_eq_str(name, "ep"))
            param_set(pr, &pr->ep, &pr->has_ep, val, eq, "ep");
        else if (lw_bytes_eq_str(name, "lt"))
            param_set(pr, &pr->lt, &pr->has_lt, val, eq, "lt");
        else if (lw_bytes_eq_str(name, "lwm2m"))
            param_set(pr, &pr->lwm2m, &pr->has_lwm2m, val, eq, "lwm2m");
        else if (lw_bytes_eq_str(name, "b"))
            param_set(pr, &pr->b, &pr->has_b, val, eq, "b");
        else if (lw_bytes_eq_str(name, "sms"))
            param_set(pr, &pr->sms, &pr->has_sms, val, eq, "sms");
        else if (lw_bytes_eq_str(name, "pid"))
            param_set(pr, &pr->pid, &pr->has_pid, val, eq, "pid");
        else if (lw_bytes_eq_str(name, "Q")) {
            if (eq)
                pr->bad = pr->bad ? pr->bad : "Q takes no value";
            pr->q = true;
        }
        /* Other parameters are ignored (Leshan keeps them as attributes; Wakaama drops them). */
    }
}

/* Printable ASCII without space, quote or backslash: safe in JSON, logs and URLs. */
static bool name_ok(struct lw_bytes s, size_t max)
{
    if (s.len == 0 || s.len > max)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] <= 0x20 || s.ptr[i] >= 0x7f || s.ptr[i] == '"' || s.ptr[i] == '\\')
            return false;
    return true;
}

static int parse_version(struct lw_bytes v, uint8_t *out)
{
    if (lw_bytes_eq_str(v, "1.0"))
        *out = 0x10;
    else if (lw_bytes_eq_str(v, "1.1"))
        *out = 0x11;
    else if (lw_bytes_eq_str(v, "1.2"))
        *out = 0x12;
    else
        return LW_ENOTSUP;
    return 0;
}

/* Binding (protocol.md §4.2): LwM2M 1.0 allows U, UQ, S, SQ, US, UQS; 1.1+ any non-repeating
 * combination of U T S N (1.2 also M, H), queue mode being the separate Q parameter. */
static bool binding_ok(struct lw_bytes b, uint8_t ver, bool *queue)
{
    static const char *const v10[] = {"U", "UQ", "S", "SQ", "US", "UQS"};
    *queue = false;
    if (ver == 0x10) {
        for (size_t i = 0; i < LW_ARRAY_SIZE(v10); i++)
            if (lw_bytes_eq_str(b, v10[i])) {
                *queue = memchr(b.ptr, 'Q', b.len) != NULL;
                return true;
            }
        return false;
    }
    const char *allowed = ver >= 0x12 ? "UTSNMH" : "UTSN";
    unsigned seen = 0;
    if (b.len == 0 || b.len > 6)
        return false;
    for (size_t i = 0; i < b.len; i++) {
        const char *c = memchr(allowed, b.ptr[i], strlen(allowed));
        if (!c || b.ptr[i] == '\0')
            return false;
        unsigned bit = 1u << (c - allowed);
        if (seen & bit)
            return false;
        seen |= bit;
    }
    return true;
}

static int parse_lifetime(const struct regsrv *r, struct lw_bytes v, uint32_t *out)
{
    uint64_t lt;
    if (lw_parse_u64((const char *)v.ptr, v.len, &lt) != 0)
        return LW_EMALFORMED;
    if (lt < r->cfg.lifetime_min_s || lt > r->cfg.lifetime_max_s)
        return LW_ERANGE;
    *out = (uint32_t)lt;
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Responses
 */
static void respond(struct regsrv *r, struct peer *p, const struct lw_coap_msg *req, uint8_t code,
                    const char *diag, const char *loc_id)
{
    struct lw_coap_msg resp;
    struct lw_coap_req_ref ref = lw_coap_req_ref_of(req);
    lw_coap_msg_init(&resp, 0, code);
    if (loc_id) {
        lw_coap_add_str(&resp, LW_COAP_OPT_LOCATION_PATH, "rd");
        lw_coap_add_str(&resp, LW_COAP_OPT_LOCATION_PATH, loc_id);
    }
    if (diag) {
        lw_coap_add_uint(&resp, LW_COAP_OPT_CONTENT_FORMAT, 0);
        resp.payload = LW_BYTES_STR(diag);
    }
    if (r->block1_req)
        lw_coap_b1rx_final_opt(r->block1_req, &resp);
    lw_coap_ep_respond(&p->ep, &ref, &resp, r->now);
}

/* Content-Format of a Register/Update payload: absent, 40 (link-format) or 0 (Wakaama). */
static bool payload_format_ok(const struct lw_coap_msg *m)
{
    uint32_t cf;
    int rc = lw_coap_get_uint(m, LW_COAP_OPT_CONTENT_FORMAT, &cf);
    return rc == LW_ENOENT || (rc == 0 && (cf == 40 || cf == 0));
}

/* Parses and checks an object list payload. 0, or LW_EMALFORMED with *diag set. */
static int parse_objects(struct regsrv *r, struct lw_bytes payload, struct lw_m2m_reg_links *l,
                         char *diag, size_t dcap)
{
    size_t off = 0;
    int rc = lw_m2m_link_parse_reg(payload.ptr, payload.len, &r->arena, NULL, l, &off);
    if (rc == LW_ENOMEM)
        return rc;
    if (rc) {
        snprintf(diag, dcap, "invalid object list: %s at byte %zu", lw_strerror(rc), off);
        return LW_EMALFORMED;
    }
    if (lw_m2m_link_reg_check(l, g.objreg, NULL) != 0) {
        for (size_t i = 0; i < l->nobjs; i++)
            if (l->objs[i].flags & LW_M2M_REGOBJ_BAD_INST) {
                snprintf(diag, dcap,
                         "invalid object list: single-instance object %u lists "
                         "instances other than 0",
                         l->objs[i].id);
                break;
            }
        return LW_EMALFORMED;
    }
    return 0;
}

/* The shard's memo of object-list payloads that passed parse_objects: payload bytes -> canonical
 * bytes and their intern hash. The check is a pure function of the payload (the object registry
 * is read-only once loaded), and a fleet announces few distinct lists, so a repeated payload skips
 * the parse, the check and the writer (about 3 k of the 8 k instructions a Register took). A
 * direct-mapped table of MEMO_SLOTS entries: a collision only evicts, the bytes are compared in
 * full, so nothing is trusted that was not validated byte for byte. */
struct reg_memo_ent {
    uint64_t key;   /* lw_siphash(r->peers.key, payload) */
    uint64_t chash; /* lw_siphash(g.key, canonical) */
    uint32_t rlen, clen;
    uint8_t b[]; /* payload, then canonical bytes */
};

static void memo_clear(struct regsrv *r)
{
    for (size_t i = 0; i < LW_ARRAY_SIZE(r->memo); i++) {
        free(r->memo[i]);
        r->memo[i] = NULL;
    }
}

/* The canonical bytes of a valid object-list payload into b (fixed over mem, cap bytes, when they
 * fit; the caller deinits b) and their intern hash into *chash. 0, LW_EMALFORMED with *diag set,
 * or LW_ENOMEM. */
static int objects_canonical(struct regsrv *r, struct lw_bytes payload, struct lw_buf *b,
                             uint8_t *mem, size_t cap, uint64_t *chash, char *diag, size_t dcap)
{
    struct lw_m2m_reg_links l;
    struct reg_memo_ent *e = NULL, **slot = NULL;
    uint64_t key = 0;
    int rc;
    lw_buf_init_fixed(b, mem, cap);
    if (payload.len <= REGSRV_MEMO_MAX) {
        key = lw_siphash(r->peers.key, payload.ptr, payload.len);
        slot = &r->memo[key % REGSRV_MEMO_SLOTS];
        e = *slot;
        if (e && e->key == key && e->rlen == payload.len &&
            memcmp(e->b, payload.ptr, payload.len) == 0) {
            if (e->clen > cap)
                lw_buf_init(b, e->clen);
            lw_buf_put(b, e->b + e->rlen, e->clen);
            *chash = e->chash;
            rc = lw_buf_status(b);
            goto out;
        }
    }
    if ((rc = parse_objects(r, payload, &l, diag, dcap)) != 0 ||
        (rc = canonical(&l, b, mem, cap)) != 0)
        goto out;
    *chash = lw_siphash(g.key, b->data, b->len);
    if (slot && (e = malloc(sizeof(*e) + payload.len + b->len))) {
        e->key = key;
        e->chash = *chash;
        e->rlen = (uint32_t)payload.len;
        e->clen = (uint32_t)b->len;
        memcpy(e->b, payload.ptr, payload.len);
        memcpy(e->b + payload.len, b->data, b->len);
        free(*slot);
        *slot = e;
    }
out:
    return rc;
}

/* Profile merge: the profile's objects, overridden object by object by the payload's. */
static int merge_objects(struct regsrv *r, const struct objlist *prof,
                         const struct lw_m2m_reg_links *part, struct lw_m2m_reg_links *out)
{
    struct lw_m2m_reg_links base;
    size_t off;
    if (lw_m2m_link_parse_reg(prof->bytes, prof->len, &r->arena, NULL, &base, &off) != 0)
        return LW_EINTERNAL;
    *out = part->has_root_link ? *part : base;
    out->objs = lw_arena_alloc(&r->arena, (base.nobjs + part->nobjs + 1) * sizeof(*out->objs));
    if (!out->objs)
        return LW_ENOMEM;
    size_t i = 0, j = 0, n = 0;
    while (i < base.nobjs || j < part->nobjs) {
        if (j >= part->nobjs || (i < base.nobjs && base.objs[i].id < part->objs[j].id))
            out->objs[n++] = base.objs[i++];
        else {
            if (i < base.nobjs && base.objs[i].id == part->objs[j].id)
                i++;
            out->objs[n++] = part->objs[j++];
        }
    }
    out->nobjs = n;
    return 0;
}

/* Builds the interned object list of a Register. Returns 0 with *out (a reference), or
 * LW_EMALFORMED with diag, or LW_ENOMEM. */
static int register_objects(struct regsrv *r, const struct lw_coap_msg *m, const struct params *pr,
                            struct objlist **out, char *diag, size_t dcap)
{
    struct lw_m2m_reg_links l, merged;
    struct lw_buf b = {0};
    uint8_t mem[CANON_STACK];
    struct objlist *prof = NULL;
    uint64_t h;
    int rc;
    *out = NULL;
    if (m->payload.len == 0 && !pr->has_pid) {
        snprintf(diag, dcap, "missing object list");
        return LW_EMALFORMED;
    }
    if (!pr->has_pid) {
        if ((rc = objects_canonical(r, m->payload, &b, mem, sizeof(mem), &h, diag, dcap)) != 0)
            goto out;
        pthread_mutex_lock(&g.lock);
        *out = intern_locked_h(b.data, b.len, h);
        pthread_mutex_unlock(&g.lock);
        rc = *out ? 0 : LW_ENOMEM;
        goto out;
    }
    memset(&l, 0, sizeof(l));
    if (m->payload.len > 0 && (rc = parse_objects(r, m->payload, &l, diag, dcap)) != 0)
        return rc;
    /* LwM2M 1.2 profile ids. The TS text defining the exact on-the-wire rules was not available
     * (protocol.md §9 marks it unverified): a known profile resolves an empty or partial list;
     * an unknown one is learned from a full list, and without a list is refused with 4.00 so the
     * client registers again with its full object list. */
    pthread_mutex_lock(&g.lock);
    struct profile *pf = profile_find_locked((const char *)pr->pid.ptr, pr->pid.len);
    prof = pf ? pf->objs : NULL;
    if (prof)
        prof->refs++;
    pthread_mutex_unlock(&g.lock);
    if (!prof && m->payload.len == 0) {
        snprintf(diag, dcap, "unknown profile id: register with the full object list");
        rc = LW_EMALFORMED;
        goto out;
    }
    if (prof && m->payload.len == 0) {
        *out = prof;
        prof = NULL;
        rc = 0;
        goto out;
    }
    if (prof) {
        if ((rc = merge_objects(r, prof, &l, &merged)) != 0)
            goto out;
    } else {
        merged = l;
    }
    if ((rc = canonical(&merged, &b, mem, sizeof(mem))) != 0)
        goto out;
    pthread_mutex_lock(&g.lock);
    *out = intern_locked(b.data, b.len);
    if (*out && !prof)
        rc = profile_set_locked((const char *)pr->pid.ptr, pr->pid.len, *out, false);
    else
        rc = *out ? 0 : LW_ENOMEM;
    pthread_mutex_unlock(&g.lock);
out:
    objlist_release(prof);
    lw_buf_deinit(&b);
    return rc;
}

static int set_extra(struct reg *gr, const struct params *pr)
{
    if (!pr->has_sms && !pr->has_pid)
        return 0;
    if (!gr->extra && !(gr->extra = calloc(1, sizeof(*gr->extra))))
        return LW_ENOMEM;
    if (pr->has_sms) {
        char *s = strndup((const char *)pr->sms.ptr, pr->sms.len);
        if (!s)
            return LW_ENOMEM;
        free(gr->extra->sms);
        gr->extra->sms = s;
    }
    if (pr->has_pid) {
        char *s = strndup((const char *)pr->pid.ptr, pr->pid.len);
        if (!s)
            return LW_ENOMEM;
        free(gr->extra->pid);
        gr->extra->pid = s;
    }
    return 0;
}

/* Binds gr to peer p; a different registration bound to p is dropped ("replaced": one UDP address
 * is one device at a time). */
static void bind_peer(struct regsrv *r, struct reg *gr, struct peer *p)
{
    if (gr->peer == p)
        return;
    if (p->reg && p->reg != gr) {
        struct reg *other = p->reg;
        post_event(r, LW_EV_DEREGISTERED, other, "replaced", false);
        reg_destroy(r, other);
    }
    struct peer *old = gr->peer;
    if (old)
        ops_peer_moved(r, gr->node.name, old, p); /* observations follow the address */
    reg_detach(gr);
    gr->peer = p;
    p->reg = gr;
    if (old)
        settle(r, old);
}

static void rearm(struct regsrv *r, struct reg *gr)
{
    gr->expires = r->now + (uint64_t)gr->lifetime_s * 1000 + r->cfg.expiry_grace_ms;
    gr->updated_s = (uint32_t)(regsrv_wall_ms(r) / 1000);
}

static void do_register(struct regsrv *r, struct peer *p, const struct lw_coap_msg *m)
{
    struct params pr;
    char diag[160];
    uint8_t ver = 0x10;
    uint32_t lt = r->cfg.lifetime_default_s;
    bool queue = false;
    struct objlist *objs = NULL;
    struct reg *gr = NULL;
    int rc = 0;
    parse_params(m, &pr);
    if (pr.has_lwm2m && parse_version(pr.lwm2m, &ver) != 0) {
        stat_inc(&r->stats.results[RS_REG_VERSION]);
        respond(r, p, m, LW_COAP_PRECONDITION_FAILED, "unsupported lwm2m version", NULL);
        return;
    }
    const char *bad = pr.bad;
    if (!bad && (!pr.has_ep || !name_ok(pr.ep, DIR_MAX_NAME)))
        bad = "missing or invalid ep";
    if (!bad && pr.has_lt && (rc = parse_lifetime(r, pr.lt, &lt)) != 0)
        bad = rc == LW_ERANGE ? "lt out of the accepted range" : "invalid lt";
    if (!bad && pr.has_b && !binding_ok(pr.b, ver, &queue))
        bad = "invalid binding";
    if (!bad && pr.has_sms && !name_ok(pr.sms, 32))
        bad = "invalid sms";
    if (!bad && pr.has_pid && !name_ok(pr.pid, PROFILE_MAX_PID))
        bad = "invalid pid";
    if (!bad && !payload_format_ok(m))
        bad = "content-format must be 40 (application/link-format)";
    if (!bad && (rc = register_objects(r, m, &pr, &objs, diag, sizeof(diag))) != 0)
        bad = rc == LW_EMALFORMED ? diag : "out of memory";
    if (bad) {
        stat_inc(&r->stats.results[RS_REG_BAD]);
        respond(r, p, m, rc == LW_ENOMEM ? LW_COAP_INTERNAL_ERROR : LW_COAP_BAD_REQUEST, bad, NULL);
        goto out;
    }
    const struct regsrv_sec *sec = r->sec;
    if (sec && sec->mode != RS_SEC_NOSEC
            ? !(sec->ep_len == pr.ep.len && memcmp(sec->ep, pr.ep.ptr, pr.ep.len) == 0)
            : r->ops->ep_secured &&
                  r->ops->ep_secured(r->ctx, (const char *)pr.ep.ptr, pr.ep.len)) {
        stat_inc(&r->stats.results[RS_FORBIDDEN]);
        respond(r, p, m, LW_COAP_FORBIDDEN,
                sec && sec->mode != RS_SEC_NOSEC ? "endpoint not bound to this identity"
                                                 : "endpoint requires a secure connection",
                NULL);
        goto out;
    }
    struct dir_ref old;
    if (r->cfg.max_regs && dir_count() >= r->cfg.max_regs &&
        dir_lookup((const char *)pr.ep.ptr, pr.ep.len, &old) != 0) {
        stat_inc(&r->stats.results[RS_REG_FULL]);
        respond(r, p, m, LW_COAP_SERVICE_UNAVAILABLE, "registration limit reached", NULL);
        goto out;
    }
    uint32_t slot = slot_alloc(r);
    if (slot == SLOT_NONE || !(gr = calloc(1, sizeof(*gr) + pr.ep.len + 1))) {
        if (slot != SLOT_NONE)
            slot_free(r, slot);
        stat_inc(&r->stats.drops[RS_DROP_NOMEM]);
        respond(r, p, m, LW_COAP_INTERNAL_ERROR, "out of memory", NULL);
        goto out;
    }
    uint32_t rnd = 0;
    r->env.cfg.random(r->env.cfg.rctx, &rnd, sizeof(rnd));
    gr->node.id = (uint64_t)r->shard << 56 | (uint64_t)slot << 32 | rnd;
    gr->node.gen = ++r->next_gen;
    gr->node.shard = (uint8_t)r->shard;
    gr->node.len = (uint8_t)pr.ep.len;
    memcpy(gr->node.name, pr.ep.ptr, pr.ep.len);
    r->slots[slot] = gr;
    stat_add(&r->stats.regs, 1);
    gr->objs = objs;
    objs = NULL;
    gr->ver = ver;
    gr->sec = sec ? sec->mode : RS_SEC_NOSEC;
    gr->lifetime_s = lt;
    gr->queue = queue || pr.q;
    if (pr.has_b)
        memcpy(gr->binding, pr.b.ptr, pr.b.len);
    else
        strcpy(gr->binding, "U");
    uint64_t dh = r->ep_hint.ep && r->ep_hint.ep == pr.ep.ptr && r->ep_hint.len == pr.ep.len
                      ? r->ep_hint.hash
                      : dir_hash((const char *)pr.ep.ptr, pr.ep.len);
    if (set_extra(gr, &pr) != 0 || (rc = dir_put_h(&gr->node, dh, &old)) < 0) {
        stat_inc(&r->stats.drops[RS_DROP_NOMEM]);
        respond(r, p, m, LW_COAP_INTERNAL_ERROR, "out of memory", NULL);
        reg_destroy(r, gr);
        goto out;
    }
    if (rc == 1) {
        /* A new Register of a registered endpoint replaces the old registration and its
         * observations (protocol.md §4.2): here, or by message on the shard that holds it. */
        if (old.shard == r->shard)
            regsrv_drop(r, old.id, old.gen, "replaced", NULL);
        else if (r->ops->drop_remote)
            r->ops->drop_remote(r->ctx, old.shard, old.id, old.gen);
    }
    stat_inc(&r->stats.results[rc == 1 ? RS_REG_REPLACED : RS_REG_CREATED]);
    gr->registered_s = (uint32_t)(regsrv_wall_ms(r) / 1000);
    rearm(r, gr);
    bind_peer(r, gr, p);
    char id[12];
    regsrv_id_format(gr->node.id, id);
    respond(r, p, m, LW_COAP_CREATED, NULL, id);
    post_event(r, LW_EV_REGISTERED, gr, NULL, false);
    if (gr->queue) /* held requests go out now: their events follow this one */
        regsrv_events_flush(r);
    ops_uplink(r, gr->node.id, gr->node.gen, true);
out:
    objlist_release(objs);
}

static void do_update(struct regsrv *r, struct peer *p, const struct lw_coap_msg *m, struct reg *gr)
{
    struct params pr;
    char diag[160];
    uint32_t lt = gr->lifetime_s;
    bool queue = gr->queue;
    struct objlist *objs = NULL;
    struct lw_buf b = {0};
    uint8_t mem[CANON_STACK];
    uint64_t h;
    int rc = 0;
    parse_params(m, &pr);
    const char *bad = pr.bad;
    if (!bad && (pr.has_ep || pr.has_lwm2m))
        bad = "ep and lwm2m are not Update parameters";
    if (!bad && pr.has_lt && (rc = parse_lifetime(r, pr.lt, &lt)) != 0)
        bad = rc == LW_ERANGE ? "lt out of the accepted range" : "invalid lt";
    if (!bad && pr.has_b && !binding_ok(pr.b, gr->ver, &queue))
        bad = "invalid binding";
    if (!bad && pr.has_sms && !name_ok(pr.sms, 32))
        bad = "invalid sms";
    if (!bad && pr.has_pid && !name_ok(pr.pid, PROFILE_MAX_PID))
        bad = "invalid pid";
    if (!bad && m->payload.len > 0) {
        if (!payload_format_ok(m))
            bad = "content-format must be 40 (application/link-format)";
        else if ((rc = objects_canonical(r, m->payload, &b, mem, sizeof(mem), &h, diag,
                                         sizeof(diag))) != 0)
            bad = rc == LW_EMALFORMED ? diag : "out of memory";
        else if (!gr->objs || gr->objs->len != b.len || memcmp(gr->objs->bytes, b.data, b.len)) {
            pthread_mutex_lock(&g.lock);
            objs = intern_locked_h(b.data, b.len, h);
            pthread_mutex_unlock(&g.lock);
            if (!objs)
                bad = "out of memory";
        }
    }
    if (!bad && set_extra(gr, &pr) != 0)
        bad = "out of memory";
    if (bad) {
        stat_inc(&r->stats.results[RS_UPD_BAD]);
        respond(r, p, m, LW_COAP_BAD_REQUEST, bad, NULL);
        goto out;
    }
    gr->lifetime_s = lt;
    if (pr.has_b) {
        memset(gr->binding, 0, sizeof(gr->binding));
        memcpy(gr->binding, pr.b.ptr, pr.b.len);
    }
    gr->queue = queue || pr.q;
    if (objs) {
        struct objlist *t = gr->objs;
        gr->objs = objs;
        objs = t;
    }
    bool heartbeat =
        !pr.has_lt && !pr.has_b && !pr.q && !pr.has_sms && !pr.has_pid && !objs && gr->peer == p;
    rearm(r, gr);
    /* The address may have changed (NAT rebinding): the registration follows the Update. */
    bind_peer(r, gr, p);
    stat_inc(&r->stats.results[RS_UPD_OK]);
    respond(r, p, m, LW_COAP_CHANGED, NULL, NULL);
    post_event(r, LW_EV_UPDATED, gr, NULL, heartbeat);
    if (gr->queue) /* held requests go out now: their events follow this one */
        regsrv_events_flush(r);
    ops_uplink(r, gr->node.id, gr->node.gen, false);
out:
    lw_buf_deinit(&b);
    objlist_release(objs);
}

static void handle(struct regsrv *r, struct peer *p, const struct lw_coap_msg *m)
{
    struct lw_bytes seg[3];
    size_t nseg = 0, pos = 0;
    const struct lw_coap_opt *o;
    while ((o = lw_coap_next_opt(m, LW_COAP_OPT_URI_PATH, &pos))) {
        if (nseg == LW_ARRAY_SIZE(seg)) {
            nseg++;
            break;
        }
        seg[nseg++] = LW_BYTES(lw_coap_opt_data(o), o->len);
    }
    if (nseg == 1 && lw_bytes_eq_str(seg[0], "dp")) {
        regsrv_events_flush(r); /* a Send's event follows the registration events before it */
        if (ops_dev_request(r, p, m))
            return; /* Send (ops.c) */
    }
    if (nseg < 1 || nseg > 2 || !lw_bytes_eq_str(seg[0], "rd")) {
        stat_inc(&r->stats.results[RS_OTHER_REQUEST]);
        respond(r, p, m, LW_COAP_NOT_FOUND, NULL, NULL);
        return;
    }
    if (nseg == 1) {
        if (m->code != LW_COAP_POST) {
            stat_inc(&r->stats.results[RS_OTHER_REQUEST]);
            respond(r, p, m, LW_COAP_METHOD_NOT_ALLOWED, NULL, NULL);
            return;
        }
        do_register(r, p, m);
        return;
    }
    uint64_t id = 0;
    struct reg *gr = NULL;
    bool id_ok = regsrv_id_parse((const char *)seg[1].ptr, seg[1].len, &id) == 0;
    if (id_ok)
        gr = reg_find(r, id);
    if (!gr && id_ok && fwd_target(r, id) >= 0 && r->ops->post_fwd &&
        (m->code == LW_COAP_POST || m->code == LW_COAP_DELETE) && r->cur_dgram.len > 0) {
        /* Issued by another shard: ask it (the response waits for its answer; the CoAP layer
         * acknowledges retransmissions in the meantime). */
        struct regsrv_fwd *f = malloc(sizeof(*f) + r->cur_dgram.len);
        if (f) {
            memset(f, 0, sizeof(*f));
            f->from = r->shard;
            f->id = id;
            f->addr = p->addr;
            if (r->sec && r->sec->mode != RS_SEC_NOSEC) {
                f->sec_mode = r->sec->mode;
                f->sec_len = r->sec->ep_len;
                memcpy(f->sec_ep, r->sec->ep, r->sec->ep_len);
            }
            f->len = r->cur_dgram.len;
            memcpy(f->data, r->cur_dgram.ptr, f->len);
            r->ops->post_fwd(r->ctx, (unsigned)fwd_target(r, id), f);
            return;
        }
    }
    if (gr && (m->code == LW_COAP_POST || m->code == LW_COAP_DELETE) &&
        !sec_allows(gr, r->sec ? r->sec->mode : RS_SEC_NOSEC, r->sec ? r->sec->ep : NULL,
                    r->sec ? r->sec->ep_len : 0)) {
        stat_inc(&r->stats.results[RS_FORBIDDEN]);
        respond(r, p, m, LW_COAP_FORBIDDEN, NULL, NULL);
        return;
    }
    if (m->code == LW_COAP_POST) {
        if (!gr) {
            /* Unknown here, including an id another shard issued to a device whose address
             * moved to this shard: 4.04 makes it register again (ETS int-105). */
            stat_inc(&r->stats.results[RS_UPD_NOT_FOUND]);
            respond(r, p, m, LW_COAP_NOT_FOUND, NULL, NULL);
            return;
        }
        do_update(r, p, m, gr);
    } else if (m->code == LW_COAP_DELETE) {
        if (!gr) {
            stat_inc(&r->stats.results[RS_DEREG_NOT_FOUND]);
            respond(r, p, m, LW_COAP_NOT_FOUND, NULL, NULL);
            return;
        }
        stat_inc(&r->stats.results[RS_DEREG_OK]);
        respond(r, p, m, LW_COAP_DELETED, NULL, NULL);
        post_event(r, LW_EV_DEREGISTERED, gr, "client", false);
        reg_destroy(r, gr);
    } else {
        stat_inc(&r->stats.results[RS_OTHER_REQUEST]);
        respond(r, p, m, LW_COAP_METHOD_NOT_ALLOWED, NULL, NULL);
    }
}

static void b1_free(struct peer *p)
{
    if (!p->has_b1)
        return;
    struct b1_ent *e = lw_hmap_del(&regsrv_of(p)->b1s, b1_hash(p), p, b1_eq);
    if (e) {
        lw_coap_b1rx_deinit(&e->rx);
        free(e);
    }
    p->has_b1 = false;
}

/* Block-wise Registers and Updates (RFC 7959 §2.5, atomic Block1): a device whose object list
 * exceeds its block size sends the payload in blocks; the body is reassembled per peer (bounded
 * by REG_MAX_BODY) and the request handled once complete, its response carrying Block1. */
#define REG_MAX_BODY 16384

static void on_request(void *ctx, struct lw_coap_ep *ep, const struct lw_coap_msg *m, uint64_t now)
{
    struct peer *p = ctx;
    struct regsrv *r = regsrv_of(p);
    (void)ep;
    r->now = now;
    if (!lw_coap_find_opt(m, LW_COAP_OPT_BLOCK1)) {
        handle(r, p, m);
        return;
    }
    struct lw_coap_msg resp, whole;
    struct lw_bytes body;
    struct lw_coap_req_ref ref = lw_coap_req_ref_of(m);
    struct lw_coap_b1rx *b1 = b1_of(p);
    if (!b1) {
        struct b1_ent *e = malloc(sizeof(*e));
        if (!e || lw_hmap_put(&r->b1s, b1_hash(p), e) != 0) {
            free(e);
            stat_inc(&r->stats.drops[RS_DROP_NOMEM]);
            respond(r, p, m, LW_COAP_INTERNAL_ERROR, NULL, NULL);
            return;
        }
        e->p = p;
        lw_coap_b1rx_init(&e->rx, REG_MAX_BODY, 6, 0);
        p->has_b1 = true;
        b1 = &e->rx;
    }
    lw_coap_msg_init(&resp, 0, 0);
    int rc = lw_coap_b1rx_feed(b1, m, now, &resp, &body);
    if (rc != 0) {
        lw_coap_ep_respond(&p->ep, &ref, &resp, now);
        if (rc != LW_EAGAIN)
            b1_free(p);
        return;
    }
    whole = *m;
    whole.payload = body;
    r->block1_req = m;
    handle(r, p, &whole);
    r->block1_req = NULL;
    b1_free(p);
}

static void on_send(void *ctx, const uint8_t *data, size_t len)
{
    struct peer *p = ctx;
    struct regsrv *r = regsrv_of(p);
    stat_inc(&r->stats.tx);
    r->ops->send(r->ctx, &p->addr, data, len);
}

static void on_peer_timer(struct lw_timer *t)
{
    struct peer *p = lw_container_of(t, struct peer, timer);
    struct regsrv *r = regsrv_of(p);
    struct peer *prev = r->busy;
    r->now = r->wheel.now;
    r->busy = p;
    lw_coap_ep_timeout(&p->ep, r->now);
    if (p->reg && p->reg->expires <= r->now) {
        stat_inc(&r->stats.results[RS_EXPIRED]);
        post_event(r, LW_EV_EXPIRED, p->reg, "expired", false);
        reg_destroy(r, p->reg);
    }
    r->busy = prev;
    settle(r, p);
}

/* Per-shard random stream for MIDs, tokens and id bits: SipHash-2-4 (a PRF) of a counter under a
 * key from getrandom, so the datagram path makes no system call per new peer. */
static int shard_random(void *ctx, void *out, size_t len)
{
    struct regsrv *r = ctx;
    uint8_t *p = out;
    while (len > 0) {
        uint64_t v = lw_siphash(r->rkey, &r->rctr, sizeof(r->rctr));
        size_t n = LW_MIN(len, sizeof(v));
        r->rctr++;
        memcpy(p, &v, n);
        p += n;
        len -= n;
    }
    return 0;
}

void regsrv_cfg_from(struct regsrv_cfg *rc, const struct lw_config *cfg)
{
    memset(rc, 0, sizeof(*rc));
    rc->lifetime_default_s = cfg->reg_lifetime_default;
    rc->lifetime_min_s = cfg->reg_lifetime_min;
    rc->lifetime_max_s = cfg->reg_lifetime_max;
    rc->expiry_grace_ms = cfg->reg_expiry_grace;
    rc->max_regs = cfg->reg_max;
    rc->max_peers = cfg->coap_max_peers;
    rc->coap.ack_timeout_ms = cfg->coap_ack_timeout;
    rc->coap.ack_random_factor_pct = (uint32_t)(cfg->coap_ack_random_factor * 100 + 0.5);
    rc->coap.max_retransmit = (uint8_t)cfg->coap_max_retransmit;
}

int regsrv_init(struct regsrv *r, unsigned shard, const struct regsrv_cfg *cfg,
                const struct regsrv_ops *ops, void *ctx, uint64_t now)
{
    memset(r, 0, sizeof(*r));
    if (shard > 255 || !ops || !ops->send || !g.inited)
        return LW_EINVAL;
    r->shard = shard;
    if (cfg)
        r->cfg = *cfg;
    if (!r->cfg.lifetime_default_s)
        r->cfg.lifetime_default_s = 86400;
    if (!r->cfg.lifetime_min_s)
        r->cfg.lifetime_min_s = 1;
    if (!r->cfg.lifetime_max_s)
        r->cfg.lifetime_max_s = 4294967;
    if (!r->cfg.clock)
        r->cfg.clock = lw_clock_system();
    if (!r->cfg.coap.random) {
        if (lw_random(r->rkey, sizeof(r->rkey)) != 0)
            return LW_EIO;
        r->cfg.coap.random = shard_random;
        r->cfg.coap.rctx = r;
    }
    r->ops = ops;
    r->ctx = ctx;
    r->coap_ops = (struct lw_coap_ops){.send = on_send,
                                       .on_request = on_request,
                                       .on_response = ops_coap_response,
                                       .on_notify = ops_coap_notify};
    int rc = lw_coap_env_init(&r->env, &r->cfg.coap, &r->coap_ops);
    if (rc)
        return rc;
    lw_wheel_init(&r->wheel, now);
    r->now = now;
    r->free_head = SLOT_NONE;
    r->held_tail = &r->held;
    lw_arena_init(&r->arena, 8192, 1u << 20);
    lw_arena_init(&r->jarena, 4096, 1u << 20);
    if ((rc = lw_hmap_init(&r->moved, 0)) != 0 || (rc = lw_hmap_init(&r->b1s, 0)) != 0)
        return rc;
    return peer_table_init(&r->peers);
}

void regsrv_deinit(struct regsrv *r)
{
    r->hold_events = false;
    regsrv_events_flush(r);
    r->closing = true;
    for (uint32_t i = 0; i < r->nslots; i++) {
        struct reg *gr = r->slots[i];
        if (gr && !slot_is_free(gr)) {
            reg_detach(gr);
            reg_destroy(r, gr);
        }
    }
    size_t pos = 0;
    struct reg *mg;
    while ((mg = lw_hmap_next(&r->moved, &pos))) {
        reg_detach(mg);
        reg_free_detached(mg);
    }
    lw_hmap_deinit(&r->moved);
    pos = 0;
    struct peer *p;
    while ((p = lw_cmap_next(&r->peers.map, &pos))) {
        b1_free(p);
        lw_wheel_cancel(&r->wheel, &p->timer);
        lw_coap_ep_deinit(&p->ep);
    }
    lw_hmap_deinit(&r->b1s);
    peer_table_deinit(&r->peers);
    free(r->slots);
    r->slots = NULL;
    r->nslots = 0;
    lw_arena_deinit(&r->arena);
    lw_arena_deinit(&r->jarena);
    memo_clear(r);
}

void regsrv_input(struct regsrv *r, const struct peer_addr *from, const uint8_t *data, size_t len,
                  uint64_t now)
{
    regsrv_input_sec(r, from, NULL, data, len, now);
}

static void input(struct regsrv *r, const struct peer_addr *from, uint64_t from_hash,
                  const struct regsrv_sec *sec, const uint8_t *data, size_t len, uint64_t now);

void regsrv_input_sec(struct regsrv *r, const struct peer_addr *from, const struct regsrv_sec *sec,
                      const uint8_t *data, size_t len, uint64_t now)
{
    input(r, from, peer_hash(&r->peers, from), sec, data, len, now);
}

void regsrv_ep_hint(const uint8_t *data, size_t len, struct regsrv_ep_hint *out)
{
    *out = (struct regsrv_ep_hint){0};
    if (len < 8 || data[1] != LW_COAP_POST)
        return;
    const uint8_t *q = memmem(data + 4, len - 4, "ep=", 3);
    if (!q || q - data < 6)
        return;
    /* The Uri-Query option's length: in its header's low nibble, or in the byte after a header
     * whose nibble is 13 (RFC 7252 §3.1; an "ep=" value is short). */
    size_t olen;
    if ((q[-2] & 0x0F) == 13)
        olen = (size_t)q[-1] + 13;
    else if ((q[-1] & 0x0F) < 13)
        olen = q[-1] & 0x0F;
    else
        return;
    if (olen <= 3 || olen > (size_t)(data + len - q))
        return;
    out->ep = q + 3;
    out->len = olen - 3;
    out->hash = dir_hash((const char *)out->ep, out->len);
    dir_prefetch(out->hash);
}

void regsrv_input_hashed(struct regsrv *r, const struct peer_addr *from, uint64_t from_hash,
                         const uint8_t *data, size_t len, uint64_t now)
{
    input(r, from, from_hash, NULL, data, len, now);
}

static void input(struct regsrv *r, const struct peer_addr *from, uint64_t from_hash,
                  const struct regsrv_sec *sec, const uint8_t *data, size_t len, uint64_t now)
{
    stat_inc(&r->stats.rx);
    r->now = now;
    /* Held registration events go first when this datagram may make ops.c post events of its
     * own (a response, an ACK/RST, a notification), so the control thread sees them in order. */
    if (r->held && (len < 2 || data[1] == 0 || data[1] >= 0x40))
        regsrv_events_flush(r);
    struct peer *p = peer_find_hashed(&r->peers, from, from_hash);
    if (!p) {
        /* No state for a stranger unless it sends a request (CON or NON with a request code):
         * stray ACKs, RSTs and garbage cost nothing. */
        if (len < 4 || (data[0] >> 6) != 1 || ((data[0] >> 4) & 3) > 1 ||
            !lw_coap_is_request(data[1])) {
            if (len >= 4 && (data[0] >> 6) == 1 && ((data[0] >> 4) & 3) == 0) {
                /* An unknown CON that is not a request (ping, response): RST (RFC 7252 §4.2). */
                uint8_t rst[4];
                lw_coap_encode_empty(rst, LW_COAP_RST, lw_load_be16(data + 2));
                stat_inc(&r->stats.tx);
                r->ops->send(r->ctx, from, rst, sizeof(rst));
                return;
            }
            stat_inc(&r->stats.drops[RS_DROP_MALFORMED]);
            return;
        }
        if (r->cfg.max_peers && peer_count(&r->peers) >= r->cfg.max_peers) {
            stat_inc(&r->stats.drops[RS_DROP_PEERS_FULL]);
            return;
        }
        p = peer_add_h(&r->peers, from, from_hash);
        if (!p) {
            stat_inc(&r->stats.drops[RS_DROP_NOMEM]);
            return;
        }
        stat_add(&r->stats.peers, 1);
        lw_coap_ep_init(&p->ep, &r->env, p);
        lw_timer_init(&p->timer, on_peer_timer);
    }
    r->busy = p;
    r->cur_dgram = LW_BYTES(data, len);
    r->sec = sec;
    int rc = lw_coap_ep_input(&p->ep, data, len, now);
    r->sec = NULL;
    r->cur_dgram = LW_BYTES(NULL, 0);
    r->busy = NULL;
    if (rc == LW_EMALFORMED || rc == LW_EBADOPT || rc == LW_EPROTO)
        stat_inc(&r->stats.drops[RS_DROP_MALFORMED]);
    settle(r, p);
    lw_arena_reset(&r->arena);
}

void regsrv_advance(struct regsrv *r, uint64_t now)
{
    r->now = now;
    lw_wheel_advance(&r->wheel, now);
    r->now = now;
}

uint64_t regsrv_next_deadline(const struct regsrv *r)
{
    uint64_t d = lw_wheel_next_deadline(&r->wheel);
    return d == LW_WHEEL_NEVER ? UINT64_MAX : d;
}

int regsrv_peer_moved(struct regsrv *r, const struct peer_addr *from, const struct peer_addr *to,
                      uint64_t now)
{
    struct peer *p = peer_find(&r->peers, from);
    if (!p || r->busy)
        return LW_ENOENT;
    if (memcmp(from, to, sizeof(*to)) == 0)
        return 0;
    r->now = now;
    struct peer *q = peer_find(&r->peers, to);
    if (q) {
        if (q->reg) {
            struct reg *other = q->reg;
            post_event(r, LW_EV_DEREGISTERED, other, "replaced", false);
            reg_destroy(r, other); /* settles q: may free it */
        }
        if ((q = peer_find(&r->peers, to)) != NULL)
            peer_free(r, q);
    }
    peer_rekey(&r->peers, p, to);
    /* only the listener socket changed (restore of a DTLS session): nothing anyone sees */
    bool seen = from->family != to->family || from->port != to->port ||
                memcmp(from->ip, to->ip, sizeof(to->ip)) != 0;
    if (p->reg && seen)
        post_event(r, LW_EV_UPDATED, p->reg, NULL, true);
    return 0;
}

int regsrv_drop(struct regsrv *r, uint64_t id, uint32_t gen, const char *reason, json_t **json)
{
    struct reg *gr = reg_find(r, id);
    if (!gr || gr->node.gen != gen)
        return LW_ENOENT;
    if (json)
        *json = reg_json(r, gr);
    if (reason && strcmp(reason, "replaced") == 0)
        ops_handover(r, gr->node.name, gr->peer, -1, false); /* to the new registration's shard */
    post_event(r, LW_EV_DEREGISTERED, gr, reason, false);
    reg_destroy(r, gr);
    return 0;
}

int regsrv_dev_find(struct regsrv *r, uint64_t id, uint32_t gen, struct regsrv_dev *out)
{
    struct reg *gr = reg_find(r, id);
    if (!gr || gr->node.gen != gen || !gr->peer)
        return LW_ENOENT;
    out->peer = gr->peer;
    out->ver = gr->ver;
    out->queue = gr->queue;
    out->ep = gr->node.name;
    out->id = gr->node.id;
    out->gen = gr->node.gen;
    return 0;
}

int regsrv_peer_dev(struct regsrv *r, struct peer *p, struct regsrv_dev *out)
{
    if (!p->reg)
        return LW_ENOENT;
    return regsrv_dev_find(r, p->reg->node.id, p->reg->node.gen, out);
}

int regsrv_dev_types(struct regsrv *r, const struct peer *p, struct lw_arena *a,
                     struct lw_m2m_reg_links *links, struct lw_m2m_reg_types_ctx *ctx)
{
    ctx->reg_links = NULL;
    ctx->registry = g.objreg;
    if (!p->reg || !p->reg->objs)
        return LW_ENOENT;
    size_t off = 0;
    (void)r;
    if (lw_m2m_link_parse_reg(p->reg->objs->bytes, p->reg->objs->len, a, NULL, links, &off) != 0)
        return LW_ENOMEM;
    ctx->reg_links = links;
    return 0;
}

const struct lw_m2m_registry *regsrv_objreg(void)
{
    return g.objreg;
}

void regsrv_peer_settle(struct regsrv *r, struct peer *p, uint64_t now)
{
    if (now > r->now)
        r->now = now;
    settle(r, p);
}

int regsrv_get_json(struct regsrv *r, uint64_t id, uint32_t gen, json_t **json)
{
    struct reg *gr = reg_find(r, id);
    if (!gr || gr->node.gen != gen)
        return LW_ENOENT;
    *json = reg_json(r, gr);
    return *json ? 0 : LW_ENOMEM;
}

static bool filter_ok(const struct reg *gr, const struct lw_dev_filter *f, const char *cursor)
{
    if (cursor && strcmp(gr->node.name, cursor) <= 0)
        return false;
    if (!f)
        return true;
    if (f->endpoint_prefix &&
        strncmp(gr->node.name, f->endpoint_prefix, strlen(f->endpoint_prefix)) != 0)
        return false;
    if (f->lwm2m_version) {
        char ver[8];
        snprintf(ver, sizeof(ver), "%u.%u", gr->ver >> 4, gr->ver & 15);
        if (strcmp(ver, f->lwm2m_version) != 0)
            return false;
    }
    if (f->binding && strcmp(gr->binding, f->binding) != 0)
        return false;
    if (f->queue_mode >= 0 && (int)gr->queue != f->queue_mode)
        return false;
    return true;
}

static int cmp_reg(const void *a, const void *b)
{
    const struct reg *x = *(const struct reg *const *)a, *y = *(const struct reg *const *)b;
    return strcmp(x->node.name, y->node.name);
}

/* Top-k selection for listing: a max-heap (by endpoint) of the k smallest matches seen. */
struct topk {
    struct reg **v;
    size_t n, k;
    bool more;
};

static void topk_sift_down(struct topk *t, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < t->n && strcmp(t->v[l]->node.name, t->v[m]->node.name) > 0)
            m = l;
        if (l + 1 < t->n && strcmp(t->v[l + 1]->node.name, t->v[m]->node.name) > 0)
            m = l + 1;
        if (m == i)
            return;
        struct reg *x = t->v[i];
        t->v[i] = t->v[m];
        t->v[m] = x;
        i = m;
    }
}

static void topk_add(struct topk *t, struct reg *gr)
{
    if (t->n < t->k) {
        size_t i = t->n++;
        t->v[i] = gr;
        while (i > 0 && strcmp(t->v[(i - 1) / 2]->node.name, t->v[i]->node.name) < 0) {
            struct reg *x = t->v[i];
            t->v[i] = t->v[(i - 1) / 2];
            t->v[(i - 1) / 2] = x;
            i = (i - 1) / 2;
        }
        return;
    }
    t->more = true;
    if (strcmp(gr->node.name, t->v[0]->node.name) < 0) {
        t->v[0] = gr;
        topk_sift_down(t, 0);
    }
}

json_t *regsrv_list(struct regsrv *r, const struct lw_dev_filter *f, const char *cursor,
                    size_t limit, bool *more)
{
    /* One O(n log limit) pass (a bounded heap of the `limit` smallest endpoints after the
     * cursor), then a sort of that page: no per-registration index, and no sort of the whole
     * table on the shard thread. */
    struct topk t = {calloc(limit ? limit : 1, sizeof(struct reg *)), 0, limit, false};
    json_t *arr = json_array();
    *more = false;
    if (!t.v || !arr || limit == 0)
        goto out;
    for (uint32_t i = 0; i < r->nslots; i++) {
        struct reg *gr = r->slots[i];
        if (gr && !slot_is_free(gr) && filter_ok(gr, f, cursor))
            topk_add(&t, gr);
    }
    size_t pos = 0;
    struct reg *mg;
    while ((mg = lw_hmap_next(&r->moved, &pos)))
        if (filter_ok(mg, f, cursor))
            topk_add(&t, mg);
    qsort(t.v, t.n, sizeof(*t.v), cmp_reg);
    *more = t.more;
    for (size_t i = 0; i < t.n; i++)
        json_array_append_new(arr, reg_json(r, t.v[i]));
out:
    free(t.v);
    return arr;
}

void regsrv_fwd_free(struct regsrv_fwd *f)
{
    if (f && f->moved)
        reg_free_detached(f->moved);
    free(f);
}

/* On the holder: answer a De-register, or hand the registration over for an Update. */
static void fwd_at_holder(struct regsrv *r, struct regsrv_fwd *f)
{
    struct reg *gr = reg_find(r, f->id);
    struct lw_coap_msg m;
    int next = gr ? -1 : fwd_target(r, f->id);
    if (next >= 0 && (unsigned)next != r->shard && (unsigned)next != f->from && f->hops < 4) {
        f->hops++; /* it moved on from here: follow it */
        r->ops->post_fwd(r->ctx, (unsigned)next, f);
        return;
    }
    f->kind = RS_FWD_REPLY;
    f->code = LW_COAP_NOT_FOUND;
    if (gr && !sec_allows(gr, f->sec_mode, f->sec_ep, f->sec_len)) {
        stat_inc(&r->stats.results[RS_FORBIDDEN]);
        f->code = LW_COAP_FORBIDDEN;
    } else if (gr && lw_coap_parse(&m, f->data, f->len, NULL, NULL) == 0) {
        if (m.code == LW_COAP_DELETE) {
            stat_inc(&r->stats.results[RS_DEREG_OK]);
            post_event(r, LW_EV_DEREGISTERED, gr, "client", false);
            reg_destroy(r, gr);
            f->code = LW_COAP_DELETED;
        } else {
            /* Held requests and observations go first, so they are there for the Update. */
            ops_handover(r, gr->node.name, gr->peer, (int)f->from, true);
            reg_unlink(r, gr, (int)f->from);
            dir_set_shard(&gr->node, f->from);
            f->moved = gr;
            f->code = LW_COAP_CHANGED;
        }
    }
    r->ops->post_fwd(r->ctx, f->from, f);
}

/* Back on the receiving shard: adopt a migrated registration and answer the request. */
static void fwd_back(struct regsrv *r, struct regsrv_fwd *f)
{
    struct lw_coap_msg m;
    struct peer *p = peer_find(&r->peers, &f->addr);
    if (f->moved) {
        int rc = 0;
        if (dir_id_shard(f->id) != r->shard)
            rc = lw_hmap_put(&r->moved, id_hash(r, f->id), f->moved);
        else if (slot_of(f->id) < r->nslots && slot_is_moved(r->slots[slot_of(f->id)]))
            r->slots[slot_of(f->id)] = f->moved; /* back home */
        else
            rc = LW_EINTERNAL;
        if (rc != 0) {
            regsrv_fwd_free(f);
            return;
        }
        stat_add(&r->stats.regs, 1);
    }
    if (!p || lw_coap_parse(&m, f->data, f->len, NULL, NULL) != 0) {
        /* The peer went away meanwhile: keep the registration only if it can expire here. */
        if (f->moved) {
            struct reg *gr = f->moved;
            f->moved = NULL;
            if (p) {
                bind_peer(r, gr, p);
                rearm(r, gr);
                settle(r, p);
            } else {
                post_event(r, LW_EV_DEREGISTERED, gr, "replaced", false);
                reg_destroy(r, gr);
            }
        }
        free(f);
        return;
    }
    struct reg *gr = f->moved;
    f->moved = NULL;
    r->busy = p;
    if (gr) {
        do_update(r, p, &m, gr);
    } else {
        /* A De-register the holder answered (and counted), or an id nobody holds. */
        if (f->code != LW_COAP_DELETED && f->code != LW_COAP_FORBIDDEN)
            stat_inc(&r->stats.results[m.code == LW_COAP_DELETE ? RS_DEREG_NOT_FOUND
                                                                : RS_UPD_NOT_FOUND]);
        respond(r, p, &m, f->code, NULL, NULL);
    }
    r->busy = NULL;
    settle(r, p);
    lw_arena_reset(&r->arena);
    free(f);
}

/* On the issuing shard: a registration it issued moved on, or is gone. */
static void fwd_note(struct regsrv *r, struct regsrv_fwd *f)
{
    uint32_t i = slot_of(f->id);
    if (dir_id_shard(f->id) == r->shard && i < r->nslots && slot_is_moved(r->slots[i])) {
        if (f->kind == RS_FWD_GONE)
            slot_free(r, i);
        else
            r->slots[i] = slot_moved(f->where);
    }
    free(f);
}

void regsrv_fwd_run(struct regsrv *r, struct regsrv_fwd *f, uint64_t now)
{
    r->now = now;
    switch (f->kind) {
    case RS_FWD_REQ: fwd_at_holder(r, f); break;
    case RS_FWD_REPLY: fwd_back(r, f); break;
    default: fwd_note(r, f); break;
    }
}

/* ------------------------------------------------------------------------------------------------
 * Restore at start
 */

/* Grows the slot table to hold index i; new slots are left free-tagged (the free list is rebuilt
 * by regsrv_restore_done). */
static int slots_cover(struct regsrv *r, uint32_t i)
{
    if (i < r->nslots)
        return 0;
    if (i >= MAX_SLOTS)
        return LW_EINVAL;
    uint32_t ncap = r->nslots ? r->nslots : 1024;
    while (ncap <= i)
        ncap *= 2;
    if (ncap > MAX_SLOTS)
        ncap = MAX_SLOTS;
    struct reg **ns = realloc(r->slots, ncap * sizeof(*ns));
    if (!ns)
        return LW_ENOMEM;
    for (uint32_t k = r->nslots; k < ncap; k++)
        ns[k] = (struct reg *)(((uintptr_t)SLOT_NONE << 1) | SLOT_FREE_TAG);
    r->slots = ns;
    r->nslots = ncap;
    return 0;
}

/* Per shard, the object lists of the rows restored so far by their saved link text (a fleet
 * shares few lists): a hit skips parsing, the canonical form and the interning lookup. Each entry
 * takes a block of references under g.lock at once and hands them out without the lock;
 * regsrv_restore_done gives back the unused ones and frees the cache. Only the shard's restore
 * thread uses its cache (regsrv_restore runs for one shard on one thread). */
#define RESTORE_CACHE_MAX 1024u
#define RESTORE_REFS      1024u

struct rcache_ent {
    uint64_t hash;
    struct objlist *objs; /* `credits` references */
    uint32_t credits;
    uint32_t len;
    uint8_t links[]; /* the saved link text */
};

static struct lw_hmap restore_cache[256]; /* by shard */

static bool rcache_eq(const void *item, const void *k)
{
    const struct rcache_ent *e = item;
    const struct bkey *b = k;
    return e->len == b->len && memcmp(e->links, b->p, b->len) == 0;
}

/* A new reference to the interned list of a saved link text: 0, LW_EINVAL (not a valid object
 * list) or LW_ENOMEM. */
static int restore_objs(struct regsrv *r, const uint8_t *links, size_t len, struct objlist **out)
{
    struct lw_hmap *c = &restore_cache[r->shard];
    struct bkey k = {links, len};
    uint64_t h = lw_siphash(g.key, links, len);
    struct rcache_ent *e = lw_hmap_get(c, h, &k, rcache_eq);
    struct lw_m2m_reg_links l;
    struct lw_buf b = {0}; /* canonical() initialises it */
    uint8_t cmem[CANON_STACK];
    size_t off;
    int rc = 0;
    *out = NULL;
    if (e) {
        if (e->credits == 0) {
            pthread_mutex_lock(&g.lock);
            e->objs->refs += RESTORE_REFS;
            pthread_mutex_unlock(&g.lock);
            e->credits = RESTORE_REFS;
        }
        e->credits--;
        *out = e->objs;
        goto out;
    }
    if (lw_m2m_link_parse_reg(links, len, &r->arena, NULL, &l, &off) != 0 ||
        canonical(&l, &b, cmem, sizeof(cmem)) != 0) {
        rc = LW_EINVAL;
        goto out;
    }
    pthread_mutex_lock(&g.lock);
    *out = intern_locked(b.data, b.len);
    if (*out && lw_hmap_count(c) < RESTORE_CACHE_MAX && len <= UINT32_MAX &&
        (e = malloc(sizeof(*e) + len)) != NULL) {
        e->hash = h;
        e->objs = *out;
        e->credits = RESTORE_REFS;
        e->len = (uint32_t)len;
        memcpy(e->links, links, len);
        if (lw_hmap_put(c, h, e) == 0)
            (*out)->refs += RESTORE_REFS;
        else
            free(e);
    }
    pthread_mutex_unlock(&g.lock);
    if (!*out)
        rc = LW_ENOMEM;
out:
    lw_buf_deinit(&b);
    return rc;
}

static void restore_cache_free(struct regsrv *r)
{
    struct lw_hmap *c = &restore_cache[r->shard];
    struct rcache_ent *e;
    size_t pos = 0;
    pthread_mutex_lock(&g.lock);
    while ((e = lw_hmap_next(c, &pos))) {
        if (e->credits) {
            e->objs->refs -= e->credits - 1;
            release_locked(e->objs);
        }
        free(e);
    }
    pthread_mutex_unlock(&g.lock);
    lw_hmap_deinit(c);
}

int regsrv_restore(struct regsrv *r, const struct regsrv_saved *sv, uint64_t now)
{
    size_t eplen = strlen(sv->ep);
    uint32_t slot = slot_of(sv->id);
    struct objlist *objs = NULL;
    struct reg *gr = NULL;
    struct peer *p = NULL;
    int rc;
    r->now = now;
    int64_t left_ms = sv->expires_ms - lw_clock_wall(r->cfg.clock);
    bool foreign = dir_id_shard(sv->id) != r->shard; /* held like a migrated registration */
    if (eplen == 0 || eplen > DIR_MAX_NAME) {
        rc = LW_EINVAL;
        goto out;
    }
    if (left_ms <= 0) {
        rc = LW_ETIMEDOUT;
        goto out;
    }
    if (foreign) {
        if (reg_find(r, sv->id)) {
            rc = LW_EEXIST;
            goto out;
        }
    } else {
        if ((rc = slots_cover(r, slot)) != 0)
            goto out;
        if (!slot_is_free(r->slots[slot]) || slot_is_moved(r->slots[slot])) {
            rc = LW_EEXIST;
            goto out;
        }
    }
    if (sv->links_len && (rc = restore_objs(r, sv->links, sv->links_len, &objs)) != 0)
        goto out;
    p = peer_find(&r->peers, &sv->addr);
    if (p && p->reg && p->reg->updated_s > sv->updated_s) {
        /* One address is one device at a time: the newer of two saved registrations with the
         * same address wins (the table does not keep which listener socket each came from). */
        p = NULL;
        rc = LW_EEXIST;
        goto out;
    }
    if (!p) {
        p = peer_add(&r->peers, &sv->addr);
        if (!p) {
            rc = LW_ENOMEM;
            goto out;
        }
        stat_add(&r->stats.peers, 1);
        lw_coap_ep_init(&p->ep, &r->env, p);
        lw_timer_init(&p->timer, on_peer_timer);
    }
    gr = calloc(1, sizeof(*gr) + eplen + 1);
    if (!gr) {
        rc = LW_ENOMEM;
        goto out;
    }
    gr->node.id = sv->id;
    gr->node.gen = ++r->next_gen;
    gr->node.shard = (uint8_t)r->shard;
    gr->node.len = (uint8_t)eplen;
    memcpy(gr->node.name, sv->ep, eplen);
    gr->objs = objs;
    objs = NULL;
    gr->ver = sv->ver;
    gr->sec = sv->sec;
    gr->queue = sv->queue;
    gr->lifetime_s = sv->lifetime_s;
    gr->registered_s = sv->registered_s;
    gr->updated_s = sv->updated_s;
    memcpy(gr->binding, sv->binding, sizeof(gr->binding));
    gr->binding[sizeof(gr->binding) - 1] = '\0';
    if (sv->sms || sv->pid) {
        gr->extra = calloc(1, sizeof(*gr->extra));
        if (!gr->extra || (sv->sms && !(gr->extra->sms = strdup(sv->sms))) ||
            (sv->pid && !(gr->extra->pid = strdup(sv->pid)))) {
            reg_free_detached(gr);
            gr = NULL;
            rc = LW_ENOMEM;
            goto out;
        }
    }
    /* the endpoint must not be taken (a row restored twice): LW_EEXIST, nothing changed */
    if ((rc = dir_put_new(&gr->node)) < 0) {
        reg_free_detached(gr);
        gr = NULL;
        goto out;
    }
    if (!foreign) {
        r->slots[slot] = gr;
    } else if (lw_hmap_put(&r->moved, id_hash(r, sv->id), gr) != 0) {
        reg_free_detached(gr); /* leaves the directory too */
        gr = NULL;
        rc = LW_ENOMEM;
        goto out;
    }
    stat_add(&r->stats.regs, 1);
    gr->expires = now + (uint64_t)left_ms + r->cfg.expiry_grace_ms;
    /* busy: bind_peer may drop an older registration of this address, which must not free p */
    r->busy = p;
    bind_peer(r, gr, p);
    r->busy = NULL;
    settle(r, p);
    p = NULL;
    rc = 0;
out:
    if (p && !p->reg)
        settle(r, p);
    objlist_release(objs);
    lw_arena_reset(&r->arena);
    return rc;
}

int regsrv_restore_moved(struct regsrv *r, uint64_t id, unsigned to)
{
    uint32_t slot = slot_of(id);
    int rc;
    if (dir_id_shard(id) != r->shard || to == r->shard)
        return LW_EINVAL;
    if ((rc = slots_cover(r, slot)) != 0)
        return rc;
    if (!slot_is_free(r->slots[slot]) || slot_is_moved(r->slots[slot]))
        return LW_EEXIST;
    r->slots[slot] = slot_moved(to);
    return 0;
}

void regsrv_restore_done(struct regsrv *r)
{
    restore_cache_free(r);
    r->free_head = SLOT_NONE;
    for (uint32_t i = r->nslots; i-- > 0;) {
        if (slot_is_free(r->slots[i]) && !slot_is_moved(r->slots[i])) {
            r->slots[i] = (struct reg *)(((uintptr_t)r->free_head << 1) | SLOT_FREE_TAG);
            r->free_head = i;
        }
    }
}
