/*
 * fuzz_exif.c - libFuzzer target for the EXIF reader (core/image/image_exif.c
 * over libexif): orientation, dates, camera strings, GPS.
 *
 * An input that is a JPEG file is searched for its first APP1 "Exif"
 * segment, which is then parsed, so whole corpus photos seed this target
 * directly; any other input is parsed as the EXIF block itself ("Exif\0\0"
 * + TIFF, or bare TIFF as WebP and HEIF store it).
 *
 * Aborts when the contract breaks: strings not NUL-terminated inside their
 * arrays, GPS outside [-90,90] x [-180,180], a tz offset without a date.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The payload of the first APP1 Exif segment of a JPEG, or NULL. */
static const uint8_t *jpeg_exif(const uint8_t *d, size_t n, size_t *len)
{
    size_t i = 2;
    if (n < 4 || d[0] != 0xff || d[1] != 0xd8) return NULL;
    while (i + 4 <= n && d[i] == 0xff) {
        unsigned m = d[i + 1];
        size_t l = (size_t)d[i + 2] << 8 | d[i + 3];
        if (m == 0xda || m == 0xd9 || l < 2) break;
        if (m == 0xe1 && i + 2 + l <= n && l >= 8 && memcmp(d + i + 4, "Exif\0\0", 6) == 0) {
            *len = l - 2;
            return d + i + 4;
        }
        i += 2 + l;
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cdx_image_meta m;
    int orientation = -1;
    size_t len = size;
    const uint8_t *p = jpeg_exif(data, size, &len);

    if (!p) {
        p = data;
        len = size;
    }
    memset(&m, 0, sizeof m);
    m.taken_at = INT64_MIN;
    cdx_exif_parse(p, len, &m, &orientation);
    if (orientation < 0 || orientation > 0xffff) abort();
    if (!memchr(m.make, 0, sizeof m.make) || !memchr(m.model, 0, sizeof m.model) ||
        !memchr(m.warning, 0, sizeof m.warning))
        abort();
    if (m.has_gps && !(m.gps_lat >= -90 && m.gps_lat <= 90 && m.gps_lon >= -180 && m.gps_lon <= 180))
        abort();
    if (m.has_tz_offset && (m.taken_at == INT64_MIN || m.tz_offset_min < -24 * 60 ||
                            m.tz_offset_min > 24 * 60))
        abort();
    return 0;
}
