/* test_phash.c - the perceptual hash: identical pictures hash equal, a
 * resized or slightly brightened copy stays within a few bits, different
 * pictures are far apart, and bad input is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tap.h"

/* A smooth synthetic scene, parametrised so different seeds differ. */
static cdx_image scene(uint32_t w, uint32_t h, int seed, int brighten)
{
    cdx_image im = {.width = w, .height = h, .rgb = malloc((size_t)w * h * 3)};
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double u = (double)x / w, v = (double)y / h;
                double val = seed >= 100 /* another kind of picture: a disc on stripes */
                                 ? ((u - 0.6) * (u - 0.6) + (v - 0.4) * (v - 0.4) < 0.05 ? 230 : 60) +
                                       40 * sin(40 * v + c)
                                 : 128 + 80 * sin(6.28 * (u * (1 + seed % 5) + c * 0.3 + seed)) *
                                       cos(6.28 * v * (1 + seed % 3) + seed * 0.7) +
                             (u > 0.3 && u < 0.6 && v > 0.2 && v < 0.5 ? 40 : 0) + brighten;
                im.rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(val < 0 ? 0 : val > 255 ? 255 : val);
            }
    return im;
}

static int dist(uint64_t a, uint64_t b) { return __builtin_popcountll(a ^ b); }

int main(void)
{
    uint64_t h1, h2, h3, h4, h5;
    cdx_image a = scene(640, 480, 1, 0), b = scene(640, 480, 1, 0), c = scene(200, 150, 1, 0);
    cdx_image d = scene(640, 480, 1, 12), e = scene(640, 480, 100, 0);
    ok(cdx_phash(&a, &h1) == CDX_OK, "hash computes");
    cdx_phash(&b, &h2);
    cdx_phash(&c, &h3);
    cdx_phash(&d, &h4);
    cdx_phash(&e, &h5);
    ok(h1 == h2, "identical pixels, identical hash");
    ok(dist(h1, h3) <= 4, "a downscaled copy is within 4 bits (%d)", dist(h1, h3));
    ok(dist(h1, h4) <= 4, "a brightened copy is within 4 bits (%d)", dist(h1, h4));
    ok(dist(h1, h5) >= 16, "a different scene is far (%d bits)", dist(h1, h5));
    ok(__builtin_popcountll(h1) > 16 && __builtin_popcountll(h1) < 48, "bits are balanced (%d set)",
       __builtin_popcountll(h1));
    cdx_image tiny = scene(3, 2, 2, 0);
    ok(cdx_phash(&tiny, &h1) == CDX_OK, "images smaller than 32x32 hash too");
    cdx_image empty = {0};
    ok(cdx_phash(&empty, &h1) == CDX_ERR_ARG, "an empty image is refused");
    free(a.rgb), free(b.rgb), free(c.rgb), free(d.rgb), free(e.rgb), free(tiny.rgb);
    return done_testing();
}
