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
    const int *nk;         /* NULL, or (n_seq) keys of each sequence: its
                            * first nk rows (SigLIP 2's padding mask) */
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

    /* SigLIP and SigLIP 2 (train_siglip.c); NULL for CLIP */
    struct cdx_train_siglip *sig;
    cdx_train_param *patch_b, *logit_bias;
    /* OpenCLIP's layout (train_openclip.c); NULL otherwise */
    struct cdx_train_openclip *oc;
};

/* The pieces of train.c the families share (train_siglip.c). */
struct bwd_scratch {
    float *dh, *dout, *dq, *dk, *dv; /* (R,C) */
    float *da, *dpre;                /* (R,F) */
    float *mem;
};

/* The next slot of m->params, named name with that shape, its weights
 * allocated (uninitialised) and its gradient zeroed. */
cdx_status cdx_train_param_slot(cdx_train_model *m, const char *name, int ndim, const int64_t *shape,
                                cdx_train_tower tower, int layer, cdx_train_param **out);
cdx_status cdx_train_add_param(cdx_train_model *m, const char *name, int ndim, int64_t d0,
                               int64_t d1, int64_t d2, int64_t d3, cdx_train_tower tower, int layer,
                               cdx_train_param **out);
cdx_status cdx_train_add_tower(cdx_train_model *m, const char *prefix, struct ttower *t,
                               const cdx_tower_info *ti, cdx_act act, int causal,
                               cdx_train_tower tower);
cdx_status cdx_train_tower_reserve(cdx_train_model *m, struct ttower *t, int64_t R, int n_seq);
void cdx_train_block_forward(struct ttower *t, int l);
void cdx_train_block_backward(struct ttower *t, int l, float *dx, struct bwd_scratch *s);
cdx_status cdx_train_scratch_new(const struct ttower *t, struct bwd_scratch *s);
int cdx_train_lowest_block(const struct ttower *t, int emb_trainable);

/* The rows of x (n,E) scaled to unit length, in double: X, with their
 * lengths nx (the losses' first step). */
void cdx_train_unit_rows(const float *x, int n, int E, double *X, double *nx);
/* dx from dX back through X = x / |x| (the losses' last step). */
void cdx_train_unit_rows_back(const double *X, const double *nx, const double *dX, int n, int E,
                              float *dx);

/* SigLIP (train_siglip.c): the parameters of dir's checkpoint (m->dir,
 * m->w unset), the forward and backward passes, the hooks of train.c. */
cdx_status cdx_train_siglip_open(cdx_train_model *m);
void cdx_train_siglip_free(struct cdx_train_siglip *s);
cdx_status cdx_train_siglip_forward(cdx_train_model *m, const cdx_train_batch *b, float *img,
                                    float *txt);
cdx_status cdx_train_siglip_backward(cdx_train_model *m, const float *d_img, const float *d_txt);
/* OpenCLIP (train_openclip.c): the parameters of m->dir's checkpoint in
 * CLIP's layout (fused in_proj split into NAME:q/k/v, projections
 * transposed as NAME:T); train.c's CLIP passes then run unchanged. */
cdx_status cdx_train_openclip_open(cdx_train_model *m);
void cdx_train_openclip_free(struct cdx_train_openclip *o);
/* The checkpoint tensor ti assembled from the parameters (fused or
 * transposed back), valid until cdx_train_openclip_release; NULL when ti
 * is not one of those (*st CDX_OK) or on out of memory (*st set). */
const float *cdx_train_openclip_export(cdx_train_model *m, const cdx_tensor_info *ti, cdx_status *st);
void cdx_train_openclip_release(cdx_train_model *m);

/* A tensor to write: name, shape and float32 data (borrowed). */
typedef struct cdx_train_out {
    const char *name;
    int ndim;
    const int64_t *shape;
    int64_t numel;
    const float *data;
} cdx_train_out;
/* path as torch.save writes a state dict (torchbin_write.c). */
cdx_status cdx_train_write_torchbin(const char *path, int n, const cdx_train_out *t);
/* An OpenCLIP input in open_clip_pytorch_model.bin: the output is written
 * in that format, under that name, into dir (train_save.c's temporary
 * directory). */
int cdx_train_openclip_is_bin(const cdx_train_model *m);
cdx_status cdx_train_openclip_write_bin(cdx_train_model *m, const char *dir);

/* Attention of each sequence's rows over its first nk[s] rows, as the
 * engine's CDX_ATTN_PREFIX (q scaled). */
void cdx_train_attend_prefix(float *o, const float *q, const float *k, const float *v,
                             int n_seq, const int64_t *off, const int *len, const int *nk, int H,
                             int D);

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
