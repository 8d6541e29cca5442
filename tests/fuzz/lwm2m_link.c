/* Fuzz target: CoRE link format (lib/lwm2m/link.c). Generic parse -> write -> re-parse must give
 * identical links and bytes; registration parse -> canonical write -> re-parse must give an equal
 * registration with identical canonical bytes and hash. Any failure aborts. */
#include "lwm2m/link.h"

#include "base/arena.h"
#include "base/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_links_eq(const struct lw_m2m_links *a, const struct lw_m2m_links *b)
{
    if (a->n != b->n)
        abort();
    for (size_t i = 0; i < a->n; i++) {
        const struct lw_m2m_link *x = &a->v[i], *y = &b->v[i];
        if (!lw_bytes_eq(x->uri, y->uri) || x->nattrs != y->nattrs || x->is_path != y->is_path)
            abort();
        if (x->is_path && !lw_m2m_path_eq(&x->path, &y->path))
            abort();
        for (size_t k = 0; k < x->nattrs; k++) {
            const struct lw_m2m_link_attr *p = &x->attrs[k], *q = &y->attrs[k];
            if (!lw_bytes_eq(p->name, q->name) || !lw_bytes_eq(p->value, q->value) ||
                p->has_value != q->has_value || p->quoted != q->quoted)
                abort();
        }
    }
}

static void generic(const uint8_t *data, size_t size, struct lw_arena *a)
{
    struct lw_m2m_links l, l2;
    struct lw_buf b;
    size_t off;
    int rc = lw_m2m_link_parse(data, size, a, NULL, &l, &off);
    if (rc) {
        if (off > size)
            abort();
        return;
    }
    lw_buf_init(&b, 0);
    lw_m2m_link_write(&l, &b);
    if (lw_buf_status(&b))
        abort();
    /* a valid input is reproduced byte for byte */
    if (b.len != size || (size && memcmp(b.data, data, size)))
        abort();
    if (lw_m2m_link_parse(b.data, b.len, a, NULL, &l2, &off))
        abort();
    check_links_eq(&l, &l2);
    lw_buf_deinit(&b);
}

static void registration(const uint8_t *data, size_t size, struct lw_arena *a)
{
    static const uint8_t key[16] = {0x6c, 0x77};
    struct lw_m2m_reg_links r, r2;
    struct lw_buf b, b2;
    size_t off;
    int rc = lw_m2m_link_parse_reg(data, size, a, NULL, &r, &off);
    if (rc) {
        if (off > size)
            abort();
        return;
    }
    lw_buf_init(&b, 0);
    lw_buf_init(&b2, 0);
    lw_m2m_link_reg_write(&r, &b);
    if (lw_buf_status(&b))
        abort();
    if (lw_m2m_link_parse_reg(b.data, b.len, a, NULL, &r2, &off))
        abort();
    if (!lw_m2m_link_reg_eq(&r, &r2) || !lw_m2m_link_reg_eq(&r2, &r))
        abort();
    if (lw_m2m_link_reg_hash(&r, key) != lw_m2m_link_reg_hash(&r2, key))
        abort();
    lw_m2m_link_reg_write(&r2, &b2);
    if (b.len != b2.len || (b.len && memcmp(b.data, b2.data, b.len)))
        abort();
    struct lw_m2m_reg_links *copy = lw_m2m_link_reg_dup(&r, NULL);
    if (!copy || !lw_m2m_link_reg_eq(copy, &r) ||
        lw_m2m_link_reg_hash(copy, key) != lw_m2m_link_reg_hash(&r, key))
        abort();
    lw_m2m_link_reg_free(copy);
    for (size_t i = 0; i < r.nobjs; i++)
        if (lw_m2m_link_reg_find(&r, r.objs[i].id) != &r.objs[i])
            abort();
    lw_buf_deinit(&b);
    lw_buf_deinit(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lw_arena a;
    lw_arena_init(&a, 0, 8u << 20);
    generic(data, size, &a);
    lw_arena_reset(&a);
    registration(data, size, &a);
    lw_arena_deinit(&a);
    return 0;
}
