/*
 * qsmall.h - int8 products for a few rows (internal): a text query's 10
 * tokens, where oneDNN's per-call cost and its blocked layout for large
 * M are most of the time.
 *
 * The weights are packed once for vpdpbusd (u8 x s8 -> int32, four
 * products per lane): 32 output columns at a time, and within them K in
 * groups of four, so one k-group of a 32-column block is two 64-byte
 * vectors.  Each weight vector is loaded once per call and used by every
 * row (up to 12 rows at a time: 24 accumulators), so for R <= 12 the
 * weights stream through once, which is what bounds a short query.
 *
 * vpdpbusd wants unsigned activations: the int8 row q is stored as
 * u = q + 128 and the extra 128 * sum_k w[n,k] is taken off per column
 * (comp[n]).  The epilogue dequantises in registers:
 *   y[r,n] = (float)(acc - comp[n]) * rs[r] * ws[n]
 * in that order, in both the AVX-512 kernel and its scalar twin, so the
 * two agree to the bit (the int32 sums are exact).
 */
#ifndef CDX_QSMALL_H
#define CDX_QSMALL_H

#include <stddef.h>
#include <stdint.h>

/* Rows at or below which the int8 layer runs here rather than through
 * oneDNN (measured, bench/engine_bench and the note of issue 12). */
#define CDX_QSMALL_MAX_ROWS 32

typedef struct cdx_qsmall {
    int K, N;
    int KG;              /* k-groups of 4 bytes: ceil(K/4) int8 or ceil(K/2)
                            bf16; a row of u has 4*KG bytes */
    int NB;              /* 32-column blocks: ceil(N/32) */
    const int8_t *w;     /* NB * KG * 128 bytes, 64-byte aligned */
    const int32_t *comp; /* int8: NB*32: 128 * sum_k w[n,k] (0 past N) */
    int bf16;            /* the bf16 variant (below) */
} cdx_qsmall;

/* Bytes of the packed weights and of comp for (N,K). */
size_t cdx_qsmall_wbytes(int K, int N);
size_t cdx_qsmall_cbytes(int K, int N);

/* Pack w (N,K) int8 row-major into wdst / comp (sizes above; wdst
 * 64-byte aligned) and fill s to describe them. */
void cdx_qsmall_pack(cdx_qsmall *s, int8_t *wdst, int32_t *comp, const int8_t *w, int K, int N);
/* Back to (N,K) row-major. */
void cdx_qsmall_unpack(const cdx_qsmall *s, int8_t *w);

/* y (R,N) row-major from u (R, 4*KG) u8 rows (q + 128, padding bytes
 * any value), the row scales rs (R) and the column scales ws (N).
 * cdx_qsmall_run splits the column blocks over the pool and uses the
 * AVX-512 VNNI kernel when cdx_cpu_isa() has it, else the scalar twin. */
void cdx_qsmall_run(const cdx_qsmall *s, float *y, const uint8_t *u, const float *rs,
                    const float *ws, int64_t R);
/* The scalar twin, single-threaded (tests compare the two). */
void cdx_qsmall_run_scalar(const cdx_qsmall *s, float *y, const uint8_t *u, const float *rs,
                           const float *ws, int64_t R);
/* Whether cdx_qsmall_run uses the vector kernel at this CPU level. */
int cdx_qsmall_native(void);

/* The bf16 variant: W (N,K) as bfloat16 bits, pairs of k per 4-byte
 * group (vdpbf16ps: two bf16 products per float32 lane), no scales:
 *   y[r,n] = sum over k-pairs, in k order, of acc += x1*w1, acc += x0*w0
 * (the instruction's order; each bf16 x bf16 product is exact in
 * float32, so the twin rounds where the instruction does).  x rows are
 * bf16 bits with a stride of 2*KG (zero-padded).  cdx_qsmall_run runs
 * either variant. */
size_t cdx_qsmall_wbytes_bf16(int K, int N);
void cdx_qsmall_pack_bf16(cdx_qsmall *s, int8_t *wdst, const uint16_t *w, int K, int N);
void cdx_qsmall_unpack_bf16(const cdx_qsmall *s, uint16_t *w);
int cdx_qsmall_native_bf16(void);

#endif
