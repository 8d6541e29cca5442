/* lib/lwm2m/fmt_lwm2m_cbor.c - LwM2M CBOR (11544, LwM2M 1.2): a CBOR map whose keys are an id
 * or an array of ids (a path prefix, relative to the enclosing map) and whose values are either
 * a nested map (the next levels) or a leaf value; paths are absolute from the object id and at
 * most 4 ids long. Definite and indefinite lengths are both accepted (protocol.md §5.6).
 *
 * Leaves: integers, floats (half/single/double), booleans, text (objlnk "o:i" when the model
 * says Objlnk), byte strings, null (a record without value); tags are skipped, except tag 4
 * (decimal fraction). The model type picks Integer/Unsigned/Float/Time for numbers.
 *
 * The encoder writes definite-length maps. For each run of records sharing the next id, the
 * key is the longest prefix the run shares (a plain id when it is one level, else an array),
 * e.g. {[13,26]: {1: 42, 3: {21: 69.68, 37: false}}}; a single record gets its whole remaining
 * path as key ({[13,26,1]: 42}). Give records in path order: runs are formed from consecutive
 * records only. Duplicate paths (and a record that prefixes another) are written as repeated
 * keys, so whatever the decoder accepted re-encodes.
 */
#include "fmt_int.h"

#include "base/err.h"
#include "base/util.h"

#include <string.h>

static int lc_map(struct lw__m2m_cbor_rd *r, const struct lw__m2m_cbor_tok *m,
                  const struct lw_m2m_path *base, size_t depth)
{
    struct lw__m2m_dec *d = r->d;
    struct lw__m2m_cbor_tok k, e, v;
    int rc;
    if (depth > d->cfg.max_depth)
        return lw__m2m_fail(d, LW_ELIMIT, m->off);
    for (uint64_t i = 0; m->indef || i < m->u; i++) {
        if ((rc = lw__m2m_cbor_next(r, &k)))
            return rc;
        if (k.kind == LW__CB_BREAK && m->indef)
            break;
        struct lw_m2m_path p = *base;
        if (k.kind == LW__CB_UINT) {
            if (k.u > LW_M2M_ID_MAX || p.len == 4)
                return lw__m2m_fail(d, LW_EMALFORMED, k.off);
            p.id[p.len++] = (uint16_t)k.u;
        } else if (k.kind == LW__CB_ARRAY) {
            uint64_t j = 0;
            for (;; j++) {
                if (!k.indef && j == k.u)
                    break;
                if ((rc = lw__m2m_cbor_next(r, &e)))
                    return rc;
                if (e.kind == LW__CB_BREAK && k.indef)
                    break;
                if (e.kind != LW__CB_UINT || e.u > LW_M2M_ID_MAX || p.len == 4)
                    return lw__m2m_fail(d, LW_EMALFORMED, e.off);
                p.id[p.len++] = (uint16_t)e.u;
            }
            if (j == 0)
                return lw__m2m_fail(d, LW_EMALFORMED, k.off);
        } else {
            return lw__m2m_fail(d, LW_EMALFORMED, k.off);
        }
        bool tag1;
        if ((rc = lw__m2m_cbor_leaf(r, &v, &tag1)))
            return rc;
        if (v.kind == LW__CB_MAP) {
            if (p.len == 4)
                return lw__m2m_fail(d, LW_EMALFORMED, v.off);
            if ((rc = lc_map(r, &v, &p, depth + 1)))
                return rc;
            continue;
        }
        struct lw_m2m_record rec;
        memset(&rec, 0, sizeof(rec));
        rec.path = p;
        if (p.len < 3)
            return lw__m2m_fail(d, LW_EMALFORMED, v.off);
        /* tags other than 4 are ignored here (as Anjay does): tag 1 does not make a Time */
        if ((rc = lw__m2m_cbor_tok_value(d, &v, false, lw__m2m_type_of(d, &p), &rec.value,
                                         &rec.has_value)))
            return rc;
        if ((rc = lw__m2m_add(d, &rec, k.off)))
            return rc;
    }
    return 0;
}

int lw__m2m_lcbor_decode(struct lw__m2m_dec *d, struct lw_bytes in)
{
    struct lw__m2m_cbor_rd r = {in.ptr, in.len, 0, d};
    struct lw__m2m_cbor_tok m;
    static const struct lw_m2m_path root = {{0, 0, 0, 0}, 0};
    int rc;
    if ((rc = lw__m2m_cbor_next(&r, &m)))
        return rc;
    if (m.kind != LW__CB_MAP)
        return lw__m2m_fail(d, LW_EMALFORMED, m.off);
    if ((rc = lc_map(&r, &m, &root, 1)))
        return rc;
    if (r.off != r.len)
        return lw__m2m_fail(d, LW_EMALFORMED, r.off);
    return 0;
}

/* Records of r[0..n) sharing id[lvl] with r[0]. */
static size_t run_len(const struct lw_m2m_record *r, size_t n, unsigned lvl)
{
    size_t k = 1;
    while (k < n && r[k].path.len > lvl && r[k].path.id[lvl] == r[0].path.id[lvl])
        k++;
    return k;
}

/* Key length for a run g[0..m) at level lvl: the longest prefix the run shares that leaves each
 * record at least one more id; 0 when there is none (duplicate paths, or a record that prefixes
 * another): such a run is written flat, one entry per record keyed by its whole remaining path
 * (duplicate keys, which the decoder reads back in order). */
static unsigned run_prefix(const struct lw_m2m_record *g, size_t m, unsigned lvl)
{
    unsigned p = g->path.len;
    for (size_t j = 1; j < m; j++) {
        unsigned c = lvl;
        while (c < p && c < g[j].path.len && g[j].path.id[c] == g->path.id[c])
            c++;
        p = LW_MIN(c, g[j].path.len - 1u);
        p = LW_MIN(p, g->path.len - 1u);
    }
    return p > lvl ? p : 0;
}

static void put_key(struct lw_buf *b, const struct lw_m2m_path *path, unsigned from, unsigned to)
{
    if (to - from == 1) {
        lw__m2m_cbor_put_uint(b, path->id[from]);
        return;
    }
    lw__m2m_cbor_put_array(b, to - from);
    for (unsigned j = from; j < to; j++)
        lw__m2m_cbor_put_uint(b, path->id[j]);
}

static int put_leaf(struct lw_buf *b, const struct lw_m2m_record *g)
{
    if (!g->has_value) {
        lw__m2m_cbor_put_null(b);
        return 0;
    }
    return lw__m2m_cbor_put_value(b, &g->value, false);
}

/* Map holding r[0..n), whose paths all extend the first lvl ids (depth <= 4 by path length). */
static int lc_group(struct lw_buf *b, const struct lw_m2m_record *r, size_t n, unsigned lvl)
{
    size_t entries = 0;
    for (size_t k = 0; k < n;) {
        size_t m = run_len(r + k, n - k, lvl);
        for (size_t j = 0; j < m; j++)
            if (r[k + j].path.len <= lvl)
                return LW_EINVAL;
        entries += (m > 1 && !run_prefix(r + k, m, lvl)) ? m : 1;
        k += m;
    }
    lw__m2m_cbor_put_map(b, entries);
    for (size_t k = 0; k < n;) {
        size_t m = run_len(r + k, n - k, lvl);
        const struct lw_m2m_record *g = r + k;
        unsigned p = m > 1 ? run_prefix(g, m, lvl) : g->path.len;
        int rc = 0;
        if (p == 0) {
            for (size_t j = 0; j < m && rc == 0; j++) {
                put_key(b, &g[j].path, lvl, g[j].path.len);
                rc = put_leaf(b, &g[j]);
            }
        } else {
            put_key(b, &g->path, lvl, p);
            rc = m > 1 ? lc_group(b, g, m, p) : put_leaf(b, g);
        }
        if (rc)
            return rc;
        k += m;
    }
    return 0;
}

int lw__m2m_lcbor_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                         struct lw_buf *out)
{
    (void)req; /* paths are absolute; lw_m2m_encode checked they lie within req */
    int rc = lc_group(out, r, n, 0);
    return rc ? rc : lw_buf_status(out);
}
