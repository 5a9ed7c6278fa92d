/*
 * qgram.h - tiles of a Gram matrix X X^T at reduced precision, with a
 * proven bound on their error (internal).
 *
 * The similarity self-join (core/store/store_join.c) multiplies every
 * stored vector with every other one: n^2/2 dot products, which at 100k
 * vectors is a compute job, not a memory one.  bf16 halves its cost and
 * int8 quarters it on CPUs that have the instructions (AVX512_BF16,
 * VNNI).  The answer must still be exact, so each approximate product
 * comes with a bound B(i,j) >= |approx(i,j) - x_i . x_j| that follows
 * from how the inputs were rounded (derivations in qgram.c): a pair can
 * only reach a threshold t if approx >= t - B, and the few pairs that do
 * are re-checked exactly by the caller.
 *
 * Rows are padded with zero vectors to a multiple of the tile size, so
 * every tile is the same shape (one oneDNN primitive).
 */
#ifndef CDX_QGRAM_H
#define CDX_QGRAM_H

#include <stdint.h>

#include "clipdex.h"

typedef struct cdx_qgram cdx_qgram;

/* The precision a self-join should use on this CPU (CLIPDEX_ISA caps
 * it): INT8 with VNNI, else BF16 with AVX512_BF16, else F32.  The result
 * of the join does not depend on it, only its speed. */
cdx_precision cdx_qgram_auto(void);

/* Prepare the n vectors x (n, dim) for tiles of tile x tile products at
 * precision p (BF16 or INT8).  x is only read here.  CDX_ERR_UNSUPPORTED
 * when this CPU has no native kernel for p (the caller then uses float32).
 * *out freed with cdx_qgram_free. */
cdx_status cdx_qgram_new(const float *x, int64_t n, int dim, int tile, cdx_precision p,
                         cdx_qgram **out);
void cdx_qgram_free(cdx_qgram *g);

/* Bytes of scratch one cdx_qgram_tile call needs. */
size_t cdx_qgram_scratch_bytes(const cdx_qgram *g);

/* out (tile, tile) row-major receives the approximate products of rows
 * ti*tile .. and tj*tile ..; rows past n read as zero.  Single-threaded;
 * several threads may call it at once with their own out and scratch. */
cdx_status cdx_qgram_tile(const cdx_qgram *g, int64_t ti, int64_t tj, float *out, void *scratch);

/* int8 only: the raw products, acc (tile, tile) int32, so a caller can
 * test acc[r][c] * scale[j0+c] >= t / scale[i0+r] without writing the
 * dequantised tile (cdx_qgram_scales: one scale per row, > 0). */
cdx_status cdx_qgram_tile_raw(const cdx_qgram *g, int64_t ti, int64_t tj, int32_t *acc);
const float *cdx_qgram_scales(const cdx_qgram *g);

/* A bound on |out - exact| over every column of tile tj for row i:
 * max_j B(i, j) for j in tile tj. */
float cdx_qgram_row_bound(const cdx_qgram *g, int64_t i, int64_t tj);

/* The same bound for float32 products of n-term dot products (sgemm in
 * any summation order) of vectors with norms ni, nj. */
float cdx_f32_dot_bound(int dim, float ni, float nj);

#endif
