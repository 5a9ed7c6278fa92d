/*
 * transformer.h - the pre-LayerNorm transformer block every family runs
 * (internal): CLIP's and OpenCLIP's towers, SigLIP's, and the training
 * code's forward pass.
 *
 *   x = x + out_proj(attn(LN1(x)))        attn: q scaled by D^-1/2
 *   x = x + fc2(act(fc1(LN2(x))))
 *
 * A family binds each block's tensors (by its own names; a fused qkv is
 * three row blocks of one tensor) into a cdx_stack and calls
 * cdx_block_run per block.  The six products of a block run at the
 * stack's precision (cdx_stack_prepare); everything else is float32.
 */
#ifndef CDX_TRANSFORMER_H
#define CDX_TRANSFORMER_H

#include <stdint.h>

#include "clipdex.h"
#include "model_config.h"
#include "qlinear.h"
#include "weights.h"

/* One block's tensors (borrowed from the weights) and, at reduced
 * precision, its prepared products (owned; NULL at float32). */
typedef struct cdx_block_w {
    const float *ln1_w, *ln1_b;           /* (C) */
    const float *q_w, *k_w, *v_w, *o_w;   /* (C,C) */
    const float *q_b, *k_b, *v_b, *o_b;   /* (C) */
    const float *ln2_w, *ln2_b;           /* (C) */
    const float *fc1_w, *fc1_b;           /* (F,C), (F) */
    const float *fc2_w, *fc2_b;           /* (C,F), (C) */
    cdx_qlinear *q_q, *k_q, *v_q, *o_q, *fc1_q, *fc2_q;
    /* At reduced precision q, k and v are one (3C,C) product: a third of
     * the calls (their fixed cost is most of a short text query's). */
    cdx_qlinear *qkv_q;
} cdx_block_w;

/* A tower's blocks. */
typedef struct cdx_stack {
    int C, F, H, L;
    float eps;
    cdx_act act;
    cdx_block_w *layers; /* L entries, owned */
    unsigned qflags;     /* cdx_qlinear_new_flags hints (CDX_QL_FEW_ROWS for text) */
    /* The converted-weights cache (qcache.h): the tower's name in the
     * key ("text", "vision"; NULL: not cached) and, when the products
     * came from a cache file, its mapping. */
    const char *cache_tower;
    void *cache_map;
    size_t cache_len;
} cdx_stack;

/* Activation buffers, (rows, width) row-major, rows >= B*T of a call:
 * x the residual stream; h, q, k, v (rows, C) and mlp (rows, F) scratch. */
typedef struct cdx_block_acts {
    float *x, *h, *q, *k, *v, *mlp;
} cdx_block_acts;

/* Which keys a query row attends to. */
typedef enum cdx_attn {
    CDX_ATTN_FULL,   /* every row of its sequence */
    CDX_ATTN_CAUSAL, /* itself and the rows before it */
    CDX_ATTN_PREFIX, /* the first nk rows (B must be 1): a padding mask
                        whose kept tokens were moved to the front */
} cdx_attn;

/* Sizes from a tower's config, and L zeroed blocks.  CDX_ERR_NOMEM. */
cdx_status cdx_stack_init(cdx_stack *t, const cdx_tower_info *ti, cdx_act act);
/* Frees the prepared products and the blocks array (not the weights). */
void cdx_stack_free(cdx_stack *t);

/* Bind the blocks from transformers' names, PREFIX.encoder.layers.N.
 * {layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}
 * (CLIP and SigLIP).  Errors name the tensor. */
cdx_status cdx_stack_bind_hf(cdx_stack *t, cdx_weights *w, const char *prefix);

/* One block on B sequences of T rows in a->x, in place.  nk is used with
 * CDX_ATTN_PREFIX only; sc then needs nk floats of scratch. */
void cdx_block_run(const cdx_stack *t, const cdx_block_w *l, cdx_block_acts *a, int B, int T,
                   cdx_attn attn, int nk, float *sc, cdx_qscratch *qs);

/* Prepare every block's six products at precision p (BF16 or INT8; the
 * float32 pages of the weights go back to the file mapping), or free them
 * (F32).  int8 smooths the products that follow a layer norm by that
 * norm's |gain| + |bias|.  On failure the stack is left at float32. */
cdx_status cdx_stack_prepare(cdx_stack *t, cdx_weights *w, cdx_precision p);

/* y (R,N) = x (R,K) W^T, through q when prepared (float32 if q is NULL or
 * its scratch cannot be had). */
void cdx_lin(cdx_qscratch *qs, const cdx_qlinear *q, float *y, const float *x, const float *W,
             int64_t R, int K, int N);

/* im2col for a stride-P patch convolution: col (B*(S/P)^2, 3*P*P), each
 * row one patch in the weight's (c, py, px) order, from pixels (B,3,S,S),
 * so the patch embedding is one product col x patch_w^T. */
void cdx_im2col(float *col, const float *pixels, int B, int S, int P);

/* L2-normalise v (n floats) in place; a zero vector stays zero. */
void cdx_normalize(float *v, int n);

#endif
