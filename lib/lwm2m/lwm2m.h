/* lib/lwm2m/lwm2m.h - umbrella header of the LwM2M module: the shared vocabulary (paths, types,
 * values, records), the object registry and DDF loader, CoRE link format and the content formats.
 * See each header for ownership and thread rules. */
#ifndef LW_LWM2M_LWM2M_H
#define LW_LWM2M_LWM2M_H

#include "value.h"
#include "registry.h"
#include "link.h"
#include "fmt.h"

#endif
