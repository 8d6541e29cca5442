/* lib/base/base.h - umbrella header for lib/base. */
#ifndef LW_BASE_H
#define LW_BASE_H
#include "arena.h"
#include "b64.h"
#include "buf.h"
#include "clock.h"
#include "err.h"
#include "hash.h"
#include "list.h"
#include "timer.h"
#include "util.h"
#endif
