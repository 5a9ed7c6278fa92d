/*
 * image_bench.c - time decode + CLIP preprocessing per image, for the
 * fast path (cdx_image_decode upright with min_side = shortest_edge, then
 * cdx_preprocess_exact: what the daemon indexes with) and the exact path
 * (cdx_image_load at full size, then cdx_preprocess_exact: the
 * Pillow-compatible reference path), and the PSNR between their tensors.
 * Used by bench/run-image.sh, which times Pillow on the same files.
 *
 *   image_bench [-r REPS] [-m MINSIDE] FILE...
 *
 * -m skips (silently) files that do not decode or whose shorter side is
 * below MINSIDE: with the whole corpus as FILEs, that selects its photos.
 * Prints one TSV line per file:
 *   path  megapixels  fast_ms  exact_ms  psnr_db  decoded_w  decoded_h  format
 * (times are medians of REPS runs, default 5, single-threaded; files that
 * do not decode print "-" times).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipdex.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int reps = 5, i = 1;
    uint32_t min_side = 0;
    cdx_preprocess_cfg cfg;
    float *tf, *te;
    const size_t per = 3 * 224 * 224;

    for (; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-r")) reps = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "-m")) min_side = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else break;
    }
    if (reps < 1 || reps > 100) reps = 5;
    cdx_preprocess_cfg_default(&cfg);
    tf = malloc(per * sizeof *tf);
    te = malloc(per * sizeof *te);
    if (!tf || !te) return 1;
    for (; i < argc; i++) {
        const char *p = argv[i];
        double f[100], e[100];
        cdx_image_meta meta;
        uint32_t dw = 0, dh = 0;
        int bad = 0;
        if (cdx_image_decode(p, NULL, NULL, &meta) != CDX_OK) {
            if (!min_side) printf("%s\t-\t-\t-\t-\t-\t-\t-\n", p);
            continue;
        }
        if ((meta.width < meta.height ? meta.width : meta.height) < min_side) continue;
        for (int r = 0; r < reps && !bad; r++) {
            cdx_decode_opts o = {.apply_orientation = 1, .min_side = (uint32_t)cfg.shortest_edge};
            cdx_image img = {0};
            double t0 = now_ms();
            if (cdx_image_decode(p, &o, &img, NULL) != CDX_OK ||
                cdx_preprocess_exact(&cfg, &img, tf) != CDX_OK)
                bad = 1;
            f[r] = now_ms() - t0;
            dw = img.width;
            dh = img.height;
            cdx_image_release(&img);

            t0 = now_ms();
            if (cdx_image_load(p, &img) != CDX_OK || cdx_preprocess_exact(&cfg, &img, te) != CDX_OK)
                bad = 1;
            e[r] = now_ms() - t0;
            cdx_image_release(&img);
        }
        if (bad) {
            if (!min_side) printf("%s\t-\t-\t-\t-\t-\t-\t-\n", p);
            continue;
        }
        /* PSNR against the exact path decoded upright the same way */
        double ps = NAN;
        {
            cdx_decode_opts o = {.apply_orientation = 1};
            cdx_image img = {0};
            if (cdx_image_decode(p, &o, &img, NULL) == CDX_OK &&
                cdx_preprocess_exact(&cfg, &img, te) == CDX_OK) {
                double se = 0;
                for (size_t k = 0; k < per; k++) {
                    double d = (tf[k] - te[k]) * cfg.image_std[k / (per / 3)] * 255.0;
                    se += d * d;
                }
                ps = se == 0 ? 99.0 : 10 * log10(255.0 * 255.0 / (se / per));
            }
            cdx_image_release(&img);
        }
        printf("%s\t%.2f\t%.2f\t%.2f\t%.2f\t%u\t%u\t%s\n", p,
               (double)meta.width * meta.height / 1e6, median(f, reps), median(e, reps), ps, dw, dh,
               meta.format);
        fflush(stdout);
    }
    free(tf);
    free(te);
    return 0;
}
