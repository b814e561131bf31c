/* image_guard — see image_guard.h.
 *
 * The JPEG walk visits every place stb_image could read a marker from: between segments it
 * skips stray bytes and fill bytes (0xFF) as stb does, and inside entropy-coded data it skips
 * stuffed 0xFF00 and restart markers, so any DHT segment stb would parse is checked here
 * first. It may look at more than stb would (after an error stb stops), never at less.
 */
#include "image_guard.h"

/* One DHT segment's payload [p, end): tables of 1 class/id byte, 16 counts, the symbols. */
static int check_dht(const uint8_t *b, size_t p, size_t end, size_t n, const char *name,
                     Err *err) {
    while (p < end && p < n) {
        unsigned total = 0;
        for (size_t k = 1; k <= 16; k++)
            total += p + k < n ? b[p + k] : 0;
        if (total > 256)
            return err_set(err, ERR_FORMAT, "%s: corrupt JPEG: a Huffman table (DHT at byte "
                           "%zu) declares %u codes, at most 256 exist", name, p, total);
        p += 17 + total;
    }
    return 0;
}

/* B starts with SOI (fill bytes allowed before it, as stb allows them). */
static int check_jpeg(const uint8_t *b, size_t n, const char *name, Err *err) {
    size_t i = 0;
    while (i < n && b[i] == 0xff)
        i++;
    if (i == 0 || i >= n || b[i] != 0xd8)
        return 0; /* not a JPEG */
    i++;
    while (i < n) {
        if (b[i] != 0xff) {
            i++;
            continue;
        }
        while (i < n && b[i] == 0xff)
            i++;
        if (i >= n)
            break;
        uint8_t m = b[i++];
        if (m == 0x00 || m == 0x01 || m == 0xd8 || (m >= 0xd0 && m <= 0xd7))
            continue; /* stuffing, TEM, SOI, restart markers: no length */
        if (m == 0xd9 || i + 2 > n)
            break; /* EOI */
        size_t len = (size_t)b[i] << 8 | b[i + 1];
        if (len < 2)
            break; /* stb refuses it */
        if (m == 0xc4) {
            int rc = check_dht(b, i + 2, i + len, n, name, err);
            if (rc)
                return rc;
        }
        i += len; /* after SOS's header, the scan's data is walked by the loop */
    }
    return 0;
}

int image_guard_check(const uint8_t *b, size_t n, const char *name, Err *err) {
    return check_jpeg(b, n, name, err);
}
