/* lib/lwm2m/registry_int.h - cross-file internals of the object registry (registry.c, ddf.c,
 * core_objects.c). Not part of the public API. Same thread rules as registry.h. */
#ifndef LW_LWM2M_REGISTRY_INT_H
#define LW_LWM2M_REGISTRY_INT_H

#include "registry.h"

/* The configuration with zero fields replaced by their defaults. */
const struct lw_m2m_registry_cfg *lw__m2m_registry_cfg(const struct lw_m2m_registry *reg);

/* Adds n definitions (each deep-copied; borrows defs) as one unit: every definition is validated
 * and checked for (id, version) conflicts, with the registry and within the batch, before any
 * is added. On a conflict *bad gets the index of the offending definition. Return codes as
 * lw_m2m_registry_add. Only LW_ENOMEM can leave part of the batch added. */
int lw__m2m_registry_add_many(struct lw_m2m_registry *reg, const struct lw_m2m_obj_def *const *defs,
                              size_t n, size_t *bad);

#endif
