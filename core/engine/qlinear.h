/*
 * qlinear.h - linear layers at reduced precision (internal): y = x W^T
 * with W prepared once at load as bfloat16 or int8.
 *
 * bf16: W rounded to bfloat16 (round to nearest even), x rounded to
 * bfloat16 per call, products accumulated in float32 (vdpbf16ps through
 * oneDNN's matmul).
 *
 * int8: W per-output-channel symmetric int8 (scale max|W[n,:]| / 127),
 * x quantised per row (token) symmetric int8, int32 accumulation (VNNI
 * vpdpbusd through oneDNN), and the dequantisation y = acc * sx[r] * sw[n]
 * done right after each column slice while it is in cache.  Outlier
 * channels: when the caller knows each input channel's typical magnitude
 * (a layer norm's |gain| + |bias| for the products that follow a layer
 * norm), the input is smoothed first (SmoothQuant): channel k of x is
 * divided by s[k] = sqrt(a[k] / max_n |W[n,k]|) and column k of W is
 * multiplied by it, which leaves x W^T unchanged but moves the outlier
 * channels' range into the weights, whose per-channel scales absorb it.
 * The division is folded into the quantisation pass.
 *
 * Threads: the columns are split into one slice per compute thread; each
 * slice is a single-threaded oneDNN matmul run on our own pool (measured
 * faster than oneDNN's two OpenMP threads on these 2 cores, see
 * bench/README-precision.md), so there is still one set of compute
 * threads.
 *
 * Fallback: where oneDNN has no kernel for the CPU level (bf16 below
 * AVX-512, or CLIPDEX_ISA=scalar), the same arithmetic runs as float32
 * products of the rounded values (exact for bf16 inputs with float32
 * accumulation), so every level gives the same answers up to summation
 * order.  cdx_qlinear_ref is the scalar twin in double.
 */
#ifndef CDX_QLINEAR_H
#define CDX_QLINEAR_H

#include <stdint.h>

#include "clipdex.h"

typedef struct cdx_qlinear cdx_qlinear;

/* Scratch shared by every layer of one model (one thread at a time). */
typedef struct cdx_qscratch {
    void *buf;     /* converted/quantised x, then int32 accumulators */
    size_t cap;
    float *rowscale; /* int8: per-row scales */
    int64_t rows_cap;
} cdx_qscratch;

/* Prepare W (N,K) row-major for precision p (CDX_PRECISION_BF16 or
 * CDX_PRECISION_INT8).  act (K floats, or NULL) is the typical magnitude
 * of each input channel, used by int8 for smoothing.  W is only read
 * here; the layer keeps its own copy.  *out freed with cdx_qlinear_free. */
cdx_status cdx_qlinear_new(const float *W, int K, int N, cdx_precision p, const float *act,
                           cdx_qlinear **out);
void cdx_qlinear_free(cdx_qlinear *q);
/* As cdx_qlinear_new, with hints: CDX_QL_FEW_ROWS says most calls have
 * few rows (a text tower): int8 with AVX-512 VNNI then runs up to
 * CDX_QSMALL_MAX_ROWS rows in qsmall.c and makes oneDNN's copy of the
 * weights only when a call has more. */
#define CDX_QL_FEW_ROWS 1u
cdx_status cdx_qlinear_new_flags(const float *W, int K, int N, cdx_precision p, const float *act,
                                 unsigned flags, cdx_qlinear **out);

/* y (R,N) = x (R,K) W^T.  Not thread-safe per scratch. */
cdx_status cdx_qlinear_run(const cdx_qlinear *q, cdx_qscratch *s, float *y, const float *x,
                           int64_t R);
void cdx_qscratch_release(cdx_qscratch *s);

/* The converted-weights cache (qcache.c) saves a prepared layer as this
 * description and its blobs, and makes a layer back from them with the
 * blobs borrowed (a read-only file mapping that must outlive the layer).
 *   kind 0: int8 few-rows: wscale, [inv_smooth], qsmall's packed weights
 *   kind 1: oneDNN:  [wscale, inv_smooth (int8)], one blocked slice each
 * The layout of a kind 1 slice is oneDNN's choice for this CPU and
 * version (both are in the cache key); import checks its size again. */
#define CDX_QL_MAX_BLOBS 72
typedef struct cdx_qlinear_desc {
    uint32_t K, N, p, kind, nslices, has_smooth, nblobs, reserved;
    uint32_t slice_n0[64], slice_n[64];
    uint64_t blob_bytes[CDX_QL_MAX_BLOBS];
} cdx_qlinear_desc;
/* 1 and fills d and blob[] (pointers into q), or 0 when q cannot be
 * saved (the float32 emulation, or oneDNN's copy not made). */
int cdx_qlinear_export(const cdx_qlinear *q, cdx_qlinear_desc *d, const void *blob[CDX_QL_MAX_BLOBS]);
/* A layer from d and its blobs (each 64-byte aligned, borrowed).
 * CDX_ERR_FORMAT when d does not describe a layer this process would
 * make (then nothing is kept). */
cdx_status cdx_qlinear_import(const cdx_qlinear_desc *d, const void *const blob[CDX_QL_MAX_BLOBS],
                              cdx_qlinear **out);

/* oneDNN primitives made so far in this process (for the test that the
 * row padding bounds them). */
int cdx_qlinear_primitives(void);

/* Bytes of weight data the layer holds. */
size_t cdx_qlinear_bytes(const cdx_qlinear *q);
/* "onednn" when oneDNN runs it, "emulated" for the float32 fallback. */
const char *cdx_qlinear_backend(const cdx_qlinear *q);

/* The scalar twin: the same rounding/quantisation, products in double. */
void cdx_qlinear_ref(const cdx_qlinear *q, float *y, const float *x, int64_t R);

/* The process's oneDNN CPU engine (a dnnl_engine_t; NULL if oneDNN
 * could not make one), shared with qgram.c. */
void *cdx_onednn_engine(void);

/* Exposed for tests: round to bfloat16 (nearest even) and back. */
float cdx_bf16_round(float f);

#endif
