/* server/store/spill.h - the record format of the telemetry write-behind queue and its spill
 * files (store/telemetry.c). The same framed records sit in memory and, when memory is full or the
 * database is away, in append-only files under telemetry.spill_dir:
 *
 *   file   = magic "LWSPILL1" record*
 *   record = len:u32le crc:u32le payload[len]       crc = CRC-32C (Castagnoli) of payload
 *   payload (telemetry value) = 1:u8 source:u8 type:u8 at_us:i64le eplen:u16le ep pathlen:u16le
 *                               path value      value by type: integer/time i64le, unsigned u64le,
 *                               float IEEE-754 binary64 le, boolean u8 (0/1), string/opaque/objlnk/
 *                               corelnk len:u32le bytes
 *   payload (event)           = 2:u8 id:u64le time_ms:i64le typelen:u8 type eplen:u16le ep
 *                               datalen:u32le data (JSON object text)
 *
 * A file written up to a crash may end in a torn record (short, or its CRC does not match): the
 * reader stops there and reports where the valid part ends. Every length is checked against the
 * remaining bytes; nothing here allocates. Written here because no installed library has a
 * framed, checksummed append-only record format (CRC-32C too: zlib's crc32 is another polynomial
 * and not linked into the server).
 *
 * Threads: any; no global state besides a const table.
 */
#ifndef LWM2MD_STORE_SPILL_H
#define LWM2MD_STORE_SPILL_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LW_SPILL_MAGIC     "LWSPILL1"
#define LW_SPILL_MAGIC_LEN 8u
#define LW_SPILL_HDR       8u                 /* len + crc */
#define LW_SPILL_REC_MAX   (4u * 1024 * 1024) /* largest payload accepted */

enum lw_spill_kind { LW_SPILL_VALUE = 1, LW_SPILL_EVENT = 2 };
enum lw_spill_source { LW_SPILL_READ = 0, LW_SPILL_NOTIFY = 1, LW_SPILL_SEND = 2 };

/* A decoded record; byte views borrow the payload. `type` is an enum lw_m2m_type value
 * (STRING .. CORELNK). */
struct lw_spill_rec {
    enum lw_spill_kind kind;
    /* LW_SPILL_VALUE */
    uint8_t source, type;
    int64_t at_us;
    struct lw_bytes path;
    int64_t i;             /* integer, time */
    uint64_t u;            /* unsigned */
    double f;              /* float */
    bool b;                /* boolean */
    struct lw_bytes bytes; /* string, opaque, objlnk, corelnk */
    /* LW_SPILL_EVENT */
    uint64_t id;
    int64_t time_ms;
    struct lw_bytes evtype, data;
    /* both */
    struct lw_bytes ep;
};

uint32_t lw_spill_crc32c(const void *p, size_t n);
/* The table-driven version lw_spill_crc32c falls back to without SSE 4.2 (for tests). */
uint32_t lw__spill_crc32c_sw(const void *p, size_t n);

/* Appends one framed record holding r (kind VALUE or EVENT) to out; check lw_buf_status(out).
 * LW_EINVAL when a field is too long for the format or the type is unknown. */
int lw_spill_encode(struct lw_buf *out, const struct lw_spill_rec *r);

/* Next framed record at *off in p[0..n): 1 and the payload view, *off advanced past it;
 * 0 at the clean end (*off == n); LW_EMALFORMED when the rest is a torn or corrupt record
 * (*off stays at its start: the valid part ends there). */
int lw_spill_next(const uint8_t *p, size_t n, size_t *off, struct lw_bytes *payload);

/* Decodes one payload. 0 or LW_EMALFORMED. */
int lw_spill_decode(struct lw_bytes payload, struct lw_spill_rec *r);

/* Checks a whole file image: the magic, then every record decodes. Returns the number of
 * records (>= 0) and sets *valid_end to where the valid part ends (== n when nothing is torn);
 * LW_EMALFORMED when the magic is wrong. */
long lw_spill_scan(const uint8_t *p, size_t n, size_t *valid_end);

#endif
