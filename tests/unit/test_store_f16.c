/*
 * test_store_f16.c - the store's float16 conversion and vector encoding,
 * against GCC's own _Float16 conversions (an independent implementation
 * of the same IEEE rounding) and exhaustively over all 65536 halves.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"
#include "tap.h"

static uint16_t ref_f16(float f)
{
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

static float ref_f32(uint16_t u)
{
    _Float16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

int main(void)
{
    int bad = 0;

    /* Every half: decode like the reference, and encode back unchanged. */
    for (uint32_t u = 0; u < 65536; u++) {
        float a = cdx_store_f16_to_f32((uint16_t)u), b = ref_f32((uint16_t)u);
        if (isnan(b)) {
            if (!isnan(a) || !isnan(cdx_store_f16_to_f32(cdx_store_f32_to_f16(a)))) bad++;
            continue;
        }
        if (memcmp(&a, &b, 4) != 0 || cdx_store_f32_to_f16(a) != u) {
            if (bad++ < 5) diag("half 0x%04x: got %g, want %g", u, (double)a, (double)b);
        }
    }
    ok(bad == 0, "all 65536 halves decode exactly and round-trip (%d bad)", bad);

    /* Random float bit patterns, including subnormal/overflow ranges. */
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t x = next();
        float f;
        memcpy(&f, &x, 4);
        if (isnan(f)) continue;
        uint16_t got = cdx_store_f32_to_f16(f), want = ref_f16(f);
        if (got != want && bad++ < 5)
            diag("%a: got 0x%04x, want 0x%04x", (double)f, got, want);
    }
    ok(bad == 0, "2M random floats round to nearest-even like _Float16 (%d bad)", bad);

    /* Ties: halfway between two halves rounds to the even one. */
    ok(cdx_store_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "1 + 2^-11 ties to even (down)");
    ok(cdx_store_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, "1 + 3*2^-11 ties to even (up)");
    ok(cdx_store_f32_to_f16(65520.0f) == 0x7c00, "65520 overflows to inf");
    ok(cdx_store_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds to the largest half");

    /* Vector encoding normalises and rejects junk. */
    float v[8] = {3, 4, 0, 0, 0, 0, 0, 0}, back[8];
    uint8_t blob[16];
    ok(cdx_vec_encode(v, 8, blob) == CDX_OK, "encode a vector");
    ok(cdx_vec_decode(blob, 16, 8, back) == CDX_OK && back[0] == cdx_store_f16_to_f32(cdx_store_f32_to_f16(0.6f)) &&
           back[1] == cdx_store_f16_to_f32(cdx_store_f32_to_f16(0.8f)),
       "encoded vector is normalised (0.6, 0.8)");
    ok(blob[0] == (cdx_store_f32_to_f16(0.6f) & 0xff) && blob[1] == (cdx_store_f32_to_f16(0.6f) >> 8),
       "blob is little-endian");
    memset(v, 0, sizeof v);
    ok(cdx_vec_encode(v, 8, blob) == CDX_ERR_ARG, "zero vector refused: %s", cdx_last_error());
    v[3] = NAN;
    ok(cdx_vec_encode(v, 8, blob) == CDX_ERR_ARG, "NaN refused: %s", cdx_last_error());
    ok(cdx_vec_decode(blob, 15, 8, back) == CDX_ERR_FORMAT, "short blob refused");

    /* The worst cosine error float16 storage causes on random unit
     * vectors of dimension 512 (the number the design relies on). */
    double worst = 0;
    for (int t = 0; t < 200; t++) {
        float a[512], b[512], qa[512], qb[512];
        uint8_t ba[1024], bb[1024];
        double ss = 0, sb = 0, exact = 0, approx = 0;
        for (int i = 0; i < 512; i++) {
            a[i] = (float)next() / 4294967296.0f * 2 - 1;
            b[i] = a[i] + ((float)next() / 4294967296.0f * 2 - 1) * 0.3f;
            ss += (double)a[i] * a[i];
            sb += (double)b[i] * b[i];
        }
        for (int i = 0; i < 512; i++) exact += a[i] / sqrt(ss) * (b[i] / sqrt(sb));
        cdx_vec_encode(a, 512, ba);
        cdx_vec_encode(b, 512, bb);
        cdx_vec_decode(ba, 1024, 512, qa);
        cdx_vec_decode(bb, 1024, 512, qb);
        for (int i = 0; i < 512; i++) approx += (double)qa[i] * qb[i];
        if (fabs(exact - approx) > worst) worst = fabs(exact - approx);
    }
    ok(worst < 5e-4, "float16 storage moves cosines by at most %.2e (< 5e-4)", worst);
    return done_testing();
}
