/*
 * kernels.h - the non-GEMM compute of the transformers (internal).
 *
 * Shapes use the legend in clipdex.h.  All tensors are row-major and
 * contiguous unless a stride is named.  Every kernel has a plain scalar
 * twin (cdx_ref_*) kept next to it; tests/unit/test_kernels.c checks them
 * against each other, and CLIPDEX_REFERENCE=1 makes the model use the
 * twins (cdx_kernels_reference()).
 */
#ifndef CDX_KERNELS_H
#define CDX_KERNELS_H

#include <stdint.h>

#include "model_config.h"

/* out (R,C) = LayerNorm(x (R,C)) * w + b.  out may alias x. */
void cdx_layernorm(float *out, const float *x, const float *w, const float *b, int64_t R, int C,
                   float eps);
void cdx_ref_layernorm(float *out, const float *x, const float *w, const float *b, int64_t R,
                       int C, float eps);

/* y (R,N): y = act(y + b) (b may be NULL). */
void cdx_bias_act(float *y, const float *b, int64_t R, int N, cdx_act act);
void cdx_ref_bias_act(float *y, const float *b, int64_t R, int N, cdx_act act);

/* x (R,C) += y (R,C) + b (C): the residual add of a linear layer's output. */
void cdx_residual_bias(float *x, const float *y, const float *b, int64_t R, int C);

/* y (R,N) += b (N). */
void cdx_add_bias(float *y, const float *b, int64_t R, int N);

/* Multi-head attention.  q, k, v, out are (B,T,C) with C = H*D and head h
 * in columns [h*D, (h+1)*D).  q is already scaled by D^-1/2.  causal masks
 * j > i.  No scratch needed from the caller. */
void cdx_attention(float *out, const float *q, const float *k, const float *v, int B, int T,
                   int H, int D, int causal);
void cdx_ref_attention(float *out, const float *q, const float *k, const float *v, int B, int T,
                       int H, int D, int causal);

/* x (R,C) *= s. */
void cdx_scale(float *x, int64_t n, float s);

/* True when CLIPDEX_REFERENCE=1: the model then uses the scalar twins. */
int cdx_kernels_reference(void);

/* The vectorisable exp used by the activations (relative error < 2e-7);
 * exposed for the tests. */
float cdx_expf(float x);

#endif
