/*
 * grad_kernels.h - the backward passes of the engine's kernels (internal).
 *
 * Each is the derivative of its forward twin in core/engine/kernels.h or
 * linear.h, with the same layouts: row-major, (R,C) activations, nn.Linear
 * weights (N,K).  "d" names a gradient; parameter gradients are ADDED to
 * (accumulated over the rows and over calls), input gradients are written
 * (or added where the name says so).  Products go to cblas_sgemm, split
 * across the compute pool by output columns; the element-wise work is
 * plain loops split by rows.
 */
#ifndef CDX_GRAD_KERNELS_H
#define CDX_GRAD_KERNELS_H

#include <stdint.h>

#include "engine/model_config.h"

/* y (R,N) = x (R,K) W^T (N,K) + b:
 *   dW (N,K) += dy^T x, db (N) += column sums of dy (db may be NULL),
 *   dx (R,K) = dy W, or += when accumulate (dx may be NULL: not needed). */
void cdx_grad_linear(float *dx, float *dW, float *db, const float *dy, const float *x,
                     const float *W, int64_t R, int K, int N, int accumulate);

/* y = LayerNorm(x) * w + b over rows of x (R,C), eps as the forward:
 *   dx (R,C) += the input gradient (dx may be NULL), dw, db (C) += (may be
 *   NULL for a frozen norm).  The mean and 1/std are recomputed from x. */
void cdx_grad_layernorm(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int64_t R, int C, float eps);

/* a = act(u) elementwise: du (n) = da * act'(u). */
void cdx_grad_act(float *du, const float *da, const float *u, int64_t n, cdx_act act);

/* Attention as cdx_attention, over n_seq sequences: sequence s is rows
 * off[s] .. off[s]+len[s]-1 of q, k, v (R,C), C = H*D, q already scaled.
 * Given dout (R,C), writes dq (with respect to the scaled q), dk, dv
 * (R,C) on those rows.  The probabilities are recomputed from q and k. */
void cdx_grad_attention(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, int n_seq, const int64_t *off,
                        const int *len, int H, int D, int causal);

/* The same where sequence s's rows attend to its first nk[s] rows only
 * (SigLIP 2's padding mask; the rows past nk[s] are queries only and get
 * no dk, dv). */
void cdx_grad_attention_prefix(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, int n_seq, const int64_t *off,
                               const int *len, const int *nk, int H, int D);

/* Plain double-precision twins for the tests (tests/unit/test_grad.c). */
void cdx_ref_grad_layernorm(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int64_t R, int C, float eps);
void cdx_ref_grad_act(float *du, const float *da, const float *u, int64_t n, cdx_act act);

#endif
