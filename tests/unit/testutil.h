/* tests/unit/testutil.h - helpers shared by the Check suites. */
#ifndef LW_TESTUTIL_H
#define LW_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* The repository's top directory (LW_TOP from the Makefile, else "."). */
const char *lw_test_top(void);
/* Path of ../shared/<rel> next to the repository, or NULL after printing a visible
 * "SKIP: ..." message when that folder is absent (a user's clone has no ../shared). */
const char *lw_test_shared(const char *rel);
/* Decodes a hex string with optional spaces into a static-per-call heap buffer; *len gets the
 * length. Aborts the test on bad hex. Returned memory is freed by the OS at exit (tests only). */
uint8_t *lw_test_hex(const char *hex, size_t *len);
/* Reads a whole file; NULL when missing. Caller frees. */
uint8_t *lw_test_read_file(const char *path, size_t *len);

#endif
