/*
 * phash.c - the 64-bit DCT perceptual hash used to find visual duplicates.
 *
 * The picture is reduced to 32x32 grey levels by area averaging (every
 * source pixel counts, so the hash does not depend on how a copy was
 * resized), transformed with a 2-D DCT-II, and the 8x8 lowest frequencies
 * after the DC row and column (u, v in 1..8) are compared with their
 * median: one bit each.  Recompression, resizing and mild edits move few
 * coefficients across the median; a different picture flips about half.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PH_N 32

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

cdx_status cdx_phash(const cdx_image *img, uint64_t *out)
{
    double grey[PH_N][PH_N];
    double sums[PH_N][PH_N] = {{0}}, weights[PH_N][PH_N] = {{0}};
    double dct[PH_N][PH_N];
    static double basis[PH_N][PH_N]; /* basis[u][x] = cos((2x+1)u pi / 2N) */
    static int basis_ready;

    if (!img || !img->rgb || !img->width || !img->height || !out)
        return cdx_fail(CDX_ERR_ARG, "cdx_phash: empty image");
    if (!basis_ready) { /* idempotent: racing threads write the same values */
        for (int u = 0; u < PH_N; u++)
            for (int x = 0; x < PH_N; x++) basis[u][x] = cos((2 * x + 1) * u * M_PI / (2.0 * PH_N));
        basis_ready = 1;
    }

    /* Area average into 32x32: each source pixel adds to the cells its
     * footprint overlaps, weighted by the overlap (exact for any size,
     * including images smaller than 32 pixels). */
    const double sx = (double)PH_N / img->width, sy = (double)PH_N / img->height;
    for (uint32_t y = 0; y < img->height; y++) {
        double y0 = y * sy, y1 = (y + 1) * sy;
        const uint8_t *row = img->rgb + (size_t)y * img->width * 3;
        for (uint32_t x = 0; x < img->width; x++) {
            const uint8_t *p = row + (size_t)x * 3;
            double lum = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            double x0 = x * sx, x1 = (x + 1) * sx;
            for (int cy = (int)y0; cy < PH_N && cy < y1; cy++) {
                double oy = fmin(y1, cy + 1) - fmax(y0, cy);
                if (oy <= 0) continue;
                for (int cx = (int)x0; cx < PH_N && cx < x1; cx++) {
                    double ox = fmin(x1, cx + 1) - fmax(x0, cx);
                    if (ox <= 0) continue;
                    sums[cy][cx] += lum * ox * oy;
                    weights[cy][cx] += ox * oy;
                }
            }
        }
    }
    for (int y = 0; y < PH_N; y++)
        for (int x = 0; x < PH_N; x++) grey[y][x] = weights[y][x] > 0 ? sums[y][x] / weights[y][x] : 0;

    /* Separable DCT: rows, then columns (only u, v < 9 are needed). */
    double tmp[PH_N][9];
    for (int y = 0; y < PH_N; y++)
        for (int u = 0; u < 9; u++) {
            double acc = 0;
            for (int x = 0; x < PH_N; x++) acc += grey[y][x] * basis[u][x];
            tmp[y][u] = acc;
        }
    for (int v = 0; v < 9; v++)
        for (int u = 0; u < 9; u++) {
            double acc = 0;
            for (int y = 0; y < PH_N; y++) acc += tmp[y][u] * basis[v][y];
            dct[v][u] = acc;
        }

    float coef[64], sorted[64];
    for (int v = 1; v <= 8; v++)
        for (int u = 1; u <= 8; u++) coef[(v - 1) * 8 + (u - 1)] = (float)dct[v][u];
    memcpy(sorted, coef, sizeof coef);
    qsort(sorted, 64, sizeof(float), cmp_float);
    float median = 0.5f * (sorted[31] + sorted[32]);
    uint64_t h = 0;
    for (int i = 0; i < 64; i++)
        if (coef[i] > median) h |= 1ull << i;
    *out = h;
    return CDX_OK;
}
