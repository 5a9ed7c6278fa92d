/*
 * train_impl.h - the structs behind cdx_train_model, shared by train.c and
 * train_save.c (internal to core/train/).
 */
#ifndef CDX_TRAIN_IMPL_H
#define CDX_TRAIN_IMPL_H

#include <stddef.h>

#include "engine/model_config.h"
#include "engine/weights.h"
#include "train.h"

/* A block's sixteen tensors, in this order in struct ttower's bp[]. */
enum {
    B_LN1_W, B_LN1_B, B_Q_W, B_Q_B, B_K_W, B_K_B, B_V_W, B_V_B,
    B_O_W, B_O_B, B_LN2_W, B_LN2_B, B_FC1_W, B_FC1_B, B_FC2_W, B_FC2_B, B_N
};

/* What block l keeps for its backward pass, each (R,C) or (R,F). */
struct blk_act {
    float *x_in;  /* block input (the previous block's x_out) */
    float *h1;    /* LN1(x_in) */
    float *q, *k, *v; /* q scaled by D^-1/2, biases added */
    float *o;     /* attention output */
    float *x_mid; /* after the attention residual */
    float *h2;    /* LN2(x_mid) */
    float *x_out;
    float *u;     /* (R,F) h2 W1^T, before bias and activation */
    float *a;     /* (R,F) act(u + b1) */
};

/* A pre-LN transformer tower: what is shared by every family's towers. */
struct ttower {
    int C, F, H, L, causal;
    float eps;
    cdx_act act;
    cdx_train_param **bp;  /* (L, B_N) the blocks' parameters */
    /* the last forward pass */
    struct blk_act *acts;  /* L (+1 spare) */
    float *scratch;        /* (R, max(C,F)) */
    float *mem;            /* behind acts and scratch */
    size_t cap;            /* floats in mem */
    int64_t R;             /* rows */
    int n_seq, seq_cap;
    int64_t *off;          /* (n_seq) first row of each sequence */
    int *len;              /* (n_seq) its rows */
};

struct cdx_train_model {
    char *dir;
    cdx_clip_config cfg;
    cdx_weights *w;        /* the source checkpoint (for saving) */
    cdx_train_param *params;
    int n_params;
    struct ttower text, vision;

    /* text: token (V,C), positions (77,C), final LN (C), projection (E,C) */
    cdx_train_param *tok_emb, *tpos, *fln_w, *fln_b, *tproj;
    /* vision: class (C), patches (C,3,P,P), positions (N,C), pre and post
     * LN (C), projection (E,C) */
    cdx_train_param *cls, *patch, *vpos, *pre_w, *pre_b, *post_w, *post_b, *vproj;
    cdx_train_param *logit_scale;

    /* the last forward pass, besides the towers' blocks */
    int n;                 /* pairs (0: none) */
    float *vmem, *col, *x0, *vpool_in, *vpool_ln; /* col (n NP, 3PP), x0 (n N, C) */
    size_t vcap;
    float *tmem, *tpool_in, *tpool_ln;             /* (n,C) */
    size_t tcap;
    int32_t *ids;          /* the packed token ids */
    size_t ids_cap;

    int64_t steps;         /* optimiser steps done */
};

/* A float32 tensor to write (train_save.c). */
struct st_entry {
    const char *name;
    int ndim;
    int64_t shape[CDX_MAX_DIMS];
    int64_t numel;
    const float *data;
};

/* Write tensors e[0..n) as one float32 safetensors file at path, fsynced. */
cdx_status cdx_train_write_tensors(const char *path, const struct st_entry *e, int n);
/* Copy a regular file, fsynced. */
cdx_status cdx_train_copy_file(const char *src, const char *dst);
/* 1 if a file of that name holds weights (not copied into an output). */
int cdx_train_is_weights_file(const char *name);

/* train_stale.c: a test hook at the points of a save ("start", "before",
 * "swapped"); does nothing unless CLIPDEX_TEST_SAVE_STOP is set. */
void cdx_train_test_stop(const char *where);

#endif
