/*
 * linear.h - y = x W^T, the linear layers of both towers (internal).
 *
 * x is (R,K) row-major, W is (N,K) row-major as PyTorch stores nn.Linear
 * weights, y is (R,N).  Many rows go to OpenBLAS's sgemm.  Few rows (a
 * text query is ~10 tokens) are memory-bound: sgemm reaches only ~45
 * GFLOP/s there, so a kernel that streams each weight row once and
 * multiplies it with all R rows of x while it is in L1 does better.
 */
#ifndef CDX_LINEAR_H
#define CDX_LINEAR_H

#include <stdint.h>

void cdx_linear(float *y, const float *x, const float *W, int64_t R, int K, int N);

/* The two paths, exposed for tests and benchmarks. */
void cdx_linear_sgemm(float *y, const float *x, const float *W, int64_t R, int K, int N);
void cdx_linear_stream(float *y, const float *x, const float *W, int64_t R, int K, int N);
/* Plain loops in double: the reference twin. */
void cdx_ref_linear(float *y, const float *x, const float *W, int64_t R, int K, int N);

/* Splits n into equal blocks, a multiple of unit wide, whose width
 * depends on n alone (never on the thread count), so that a split product
 * sums in the same order on any number of threads.  Returns the number of
 * blocks and sets *width. */
int cdx_fixed_blocks(int n, int unit, int *width);

/* Rows at or below which cdx_linear streams (measured; see bench/). */
#define CDX_STREAM_MAX_ROWS 64

#endif
