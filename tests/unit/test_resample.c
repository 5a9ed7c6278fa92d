/*
 * test_resample.c - the Pillow-exact BICUBIC resize (core/image/resample.c).
 *
 * Two kinds of checks:
 *   - against Pillow itself: tests/tools/ref_preprocess.py writes inputs
 *     and PIL.Image.resize(BICUBIC) outputs (upscales, downscales, 1-pixel
 *     sides, one side unchanged, identity, hard edges that clip, an extreme
 *     strip).  The fixtures are made at test time with $PYTHON (default
 *     /usr/bin/python3) into a temporary directory, or read from
 *     $CDX_RESAMPLE_FIXTURES if set.  Skipped when neither works.
 *   - self-contained properties: the windowed fast path equals the plain
 *     reference twin on random sizes and windows, constant images stay
 *     constant, bad arguments are refused.
 * Run from the repository root (as `make check` does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "image/image_impl.h"
#include "tap.h"

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    /* xorshift32: deterministic, good enough for test sizes and pixels */
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static uint8_t *random_image(uint32_t w, uint32_t h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (size_t i = 0; p && i < (size_t)w * h * 3; i++) p[i] = (uint8_t)rnd();
    return p;
}

/* Index of the first differing byte, or -1. */
static long first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return (long)i;
    return -1;
}

/* Output window (x0,y0,ow,oh) of a full (dw x dh) image. */
static void crop(const uint8_t *full, uint32_t dw, uint32_t x0, uint32_t y0, uint32_t ow,
                 uint32_t oh, uint8_t *out)
{
    for (uint32_t y = 0; y < oh; y++)
        memcpy(out + (size_t)y * ow * 3, full + ((size_t)(y0 + y) * dw + x0) * 3, (size_t)ow * 3);
}

/* ---- against Pillow ---- */

static int run_fixture(const char *dir, const char *name, uint32_t sw, uint32_t sh,
                       uint32_t dw, uint32_t dh)
{
    char path[4096];
    char *in = NULL, *want = NULL;
    size_t in_len = 0, want_len = 0, n = (size_t)dw * dh * 3;
    uint8_t *got = NULL, *ref = NULL, *win = NULL;
    int good = 0;

    snprintf(path, sizeof path, "%s/%s.in", dir, name);
    if (cdx_read_file(path, (size_t)1 << 30, &in, &in_len) != CDX_OK ||
        in_len != (size_t)sw * sh * 3) {
        ok(0, "%s: read input: %s", name, cdx_last_error());
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s.out", dir, name);
    if (cdx_read_file(path, (size_t)1 << 30, &want, &want_len) != CDX_OK || want_len != n) {
        ok(0, "%s: read Pillow output: %s", name, cdx_last_error());
        goto out;
    }
    got = malloc(n);
    ref = malloc(n);
    if (!got || !ref) {
        ok(0, "%s: out of memory", name);
        goto out;
    }
    cdx_status st = cdx_resample_bicubic((const uint8_t *)in, sw, sh, dw, dh, 0, 0, dw, dh, got);
    long d = st == CDX_OK ? first_diff(got, (const uint8_t *)want, n) : -2;
    if (!ok(d == -1, "%s: %ux%u -> %ux%u identical to Pillow", name, sw, sh, dw, dh) && d >= 0)
        diag("first difference at byte %ld: %u vs Pillow %u", d, got[d], (uint8_t)want[d]);

    st = cdx_resample_bicubic_ref((const uint8_t *)in, sw, sh, dw, dh, ref);
    ok(st == CDX_OK && first_diff(ref, (const uint8_t *)want, n) == -1,
       "%s: reference twin identical to Pillow", name);

    /* A centred 224-ish window, as preprocessing asks for. */
    uint32_t ow = dw < 224 ? dw : 224, oh = dh < 224 ? dh : 224;
    uint32_t x0 = (dw - ow) / 2, y0 = (dh - oh) / 2;
    win = malloc((size_t)ow * oh * 3);
    uint8_t *exp_win = malloc((size_t)ow * oh * 3);
    if (win && exp_win) {
        crop((const uint8_t *)want, dw, x0, y0, ow, oh, exp_win);
        st = cdx_resample_bicubic((const uint8_t *)in, sw, sh, dw, dh, x0, y0, ow, oh, win);
        ok(st == CDX_OK && first_diff(win, exp_win, (size_t)ow * oh * 3) == -1,
           "%s: window %ux%u+%u+%u identical to Pillow's crop", name, ow, oh, x0, y0);
    }
    free(exp_win);
    good = 1;
out:
    free(in);
    free(want);
    free(got);
    free(ref);
    free(win);
    return good;
}

/* Make the fixtures in a fresh temporary directory; returns its path
 * (static buffer) or NULL. */
static const char *make_fixtures(void)
{
    static char dir[] = "/tmp/cdx-resample.XXXXXX";
    const char *py = getenv("PYTHON");
    char cmd[8192];

    if (!py || !*py) py = "/usr/bin/python3";
    if (access("tests/tools/ref_preprocess.py", R_OK) != 0) return NULL;
    if (!mkdtemp(dir)) return NULL;
    snprintf(cmd, sizeof cmd, "'%s' tests/tools/ref_preprocess.py resample-fixtures '%s' >&2",
             py, dir);
    if (system(cmd) != 0) {
        rmdir(dir);
        return NULL;
    }
    return dir;
}

static void remove_fixtures(const char *dir, char names[][64], int n)
{
    char path[4096];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s.in", dir, names[i]);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s.out", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    unlink(path);
    rmdir(dir);
}

static void pillow_tests(void)
{
    const char *dir = getenv("CDX_RESAMPLE_FIXTURES");
    int generated = 0, n = 0;
    char names[64][64];
    char path[4096];
    FILE *f;

    if (!dir || !*dir) {
        dir = make_fixtures();
        generated = dir != NULL;
    }
    snprintf(path, sizeof path, "%s/cases.txt", dir ? dir : ".");
    if (!dir || !(f = fopen(path, "r"))) {
        printf("ok %d # skip no Pillow fixtures (python with PIL unavailable)\n", ++tap_n);
        return;
    }
    unsigned sw, sh, dw, dh;
    while (n < 64 && fscanf(f, "%63s %u %u %u %u", names[n], &sw, &sh, &dw, &dh) == 5) {
        run_fixture(dir, names[n], sw, sh, dw, dh);
        n++;
    }
    fclose(f);
    ok(n >= 10, "ran %d Pillow fixture cases", n);
    if (generated) remove_fixtures(dir, names, n);
}

/* ---- self-contained properties ---- */

static void window_vs_reference(void)
{
    int bad = 0, cases = 0;
    for (int i = 0; i < 300 && bad < 3; i++) {
        /* Mostly small, some 1-pixel sides, some strong scale factors. */
        uint32_t sw = 1 + rnd() % (i % 7 == 0 ? 3 : 80);
        uint32_t sh = 1 + rnd() % (i % 5 == 0 ? 2 : 80);
        uint32_t dw = 1 + rnd() % (i % 3 == 0 ? 300 : 90);
        uint32_t dh = 1 + rnd() % (i % 4 == 0 ? 300 : 90);
        if (i % 11 == 0) dw = sw; /* only the vertical pass */
        if (i % 13 == 0) dh = sh; /* only the horizontal pass */
        uint32_t ow = 1 + rnd() % dw, oh = 1 + rnd() % dh;
        uint32_t x0 = rnd() % (dw - ow + 1), y0 = rnd() % (dh - oh + 1);
        uint8_t *src = random_image(sw, sh);
        uint8_t *full = malloc((size_t)dw * dh * 3);
        uint8_t *exp = malloc((size_t)ow * oh * 3);
        uint8_t *win = malloc((size_t)ow * oh * 3);
        if (!src || !full || !exp || !win) {
            bad++;
        } else if (cdx_resample_bicubic_ref(src, sw, sh, dw, dh, full) != CDX_OK ||
                   cdx_resample_bicubic(src, sw, sh, dw, dh, x0, y0, ow, oh, win) != CDX_OK) {
            bad++;
            diag("failed: %s", cdx_last_error());
        } else {
            crop(full, dw, x0, y0, ow, oh, exp);
            if (first_diff(win, exp, (size_t)ow * oh * 3) != -1) {
                bad++;
                diag("%ux%u -> %ux%u window %ux%u+%u+%u differs from the reference", sw, sh,
                     dw, dh, ow, oh, x0, y0);
            }
        }
        cases++;
        free(src);
        free(full);
        free(exp);
        free(win);
    }
    ok(bad == 0, "windowed fast path == full reference twin (%d random cases)", cases);
}

static void constant_images(void)
{
    static const uint32_t sizes[][4] = {
        {1, 1, 224, 224}, {3, 3, 2, 2}, {301, 201, 336, 224}, {7, 1000, 5, 17}, {50, 50, 50, 7},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const uint32_t *s = sizes[i];
        for (int v = 0; v < 256; v += 51) {
            size_t nin = (size_t)s[0] * s[1] * 3, nout = (size_t)s[2] * s[3] * 3;
            uint8_t *src = malloc(nin), *dst = malloc(nout);
            if (!src || !dst) {
                bad++;
            } else {
                memset(src, v, nin);
                if (cdx_resample_bicubic(src, s[0], s[1], s[2], s[3], 0, 0, s[2], s[3], dst))
                    bad++;
                for (size_t k = 0; k < nout; k++) bad += dst[k] != v;
            }
            free(src);
            free(dst);
        }
    }
    ok(bad == 0, "constant images stay constant (weights sum to one after rounding)");
}

static void identity_and_errors(void)
{
    uint8_t *src = random_image(31, 17), dst[31 * 17 * 3], tiny[3];
    ok(cdx_resample_bicubic(src, 31, 17, 31, 17, 0, 0, 31, 17, dst) == CDX_OK &&
           memcmp(src, dst, sizeof dst) == 0,
       "same size is an exact copy (both passes skipped, as Pillow does)");
    ok(cdx_resample_bicubic(src, 31, 17, 31, 17, 5, 3, 1, 1, tiny) == CDX_OK &&
           memcmp(tiny, src + (3 * 31 + 5) * 3, 3) == 0,
       "same size, 1x1 window picks the pixel");
    ok(cdx_resample_bicubic(src, 0, 17, 10, 10, 0, 0, 10, 10, dst) == CDX_ERR_ARG,
       "empty source refused: %s", cdx_last_error());
    ok(cdx_resample_bicubic(src, 31, 17, 10, 10, 5, 0, 6, 10, dst) == CDX_ERR_ARG,
       "window past the right edge refused: %s", cdx_last_error());
    ok(cdx_resample_bicubic(src, 31, 17, 10, 10, 0, 0, 0, 10, dst) == CDX_ERR_ARG,
       "empty window refused");
    free(src);
}

/* Not pass/fail: how long the preprocessing-sized resize of a 12 MP photo
 * takes (the indexer's hot path). */
static void timing(void)
{
    const uint32_t sw = 4000, sh = 3000, dw = 298, dh = 224;
    uint8_t *src = random_image(sw, sh), *dst = malloc(224 * 224 * 3);
    struct timespec a, b;
    if (!src || !dst) goto out;
    clock_gettime(CLOCK_MONOTONIC, &a);
    cdx_status st = cdx_resample_bicubic(src, sw, sh, dw, dh, (dw - 224) / 2, 0, 224, 224, dst);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ok(st == CDX_OK, "12 MP -> 224x224 center window");
    diag("4000x3000 -> 298x224, 224x224 window: %.1f ms",
         (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
out:
    free(src);
    free(dst);
}

int main(void)
{
    pillow_tests();
    window_vs_reference();
    constant_images();
    identity_and_errors();
    timing();
    return done_testing();
}
