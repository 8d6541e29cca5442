/* Fuzz target: the master key file parser (user input, secrets_parse_key) and the opening of sealed
 * blobs read back from the database (secrets_open, which must refuse anything it did not seal).
 * The first input byte selects the mode: even = key file content, odd = a sealed blob whose
 * associated data is the rest of a fixed row key. A key that parses is used to seal and open a
 * probe, which must round-trip. */
#include "base/err.h"
#include "secrets.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct secrets_ring *ring;
    static const uint8_t ad[] = "lwm2md:credentials\0ep\0psk\0id";
    uint8_t key[SECRETS_KEY_LEN], out[4096], probe[64];
    size_t n;
    if (!ring) {
        memset(key, 0x42, sizeof(key));
        ring = secrets_ring_new();
        if (!ring || secrets_ring_add(ring, key, true) != 0)
            abort();
    }
    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        if (secrets_parse_key(data + 1, size - 1, key) == 0) {
            struct secrets_ring *r = secrets_ring_new();
            uint8_t back[16];
            if (!r || secrets_ring_add(r, key, true) != 0 ||
                secrets_seal(r, ad, sizeof(ad), (const uint8_t *)"0123456789abcdef", 16, probe,
                             sizeof(probe), &n) != 0 ||
                secrets_open(r, ad, sizeof(ad), probe, n, back, sizeof(back), &n, NULL) != 0 ||
                n != 16 || memcmp(back, "0123456789abcdef", 16) != 0)
                abort();
            secrets_ring_free(r);
        }
        return 0;
    }
    int rc = secrets_open(ring, ad, sizeof(ad), data + 1, size - 1, out, sizeof(out), &n, NULL);
    /* Without the key nobody can forge a blob that opens. */
    if (rc == 0)
        abort();
    if (rc != LW_EMALFORMED && rc != LW_ENOENT && rc != LW_EPERM && rc != LW_ENOSPC)
        abort();
    return 0;
}
