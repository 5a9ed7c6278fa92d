/*
 * train.h - contrastive training of a CLIP model in float32 (internal to
 * the library and its programs: clipdex train, tests/tools/grad_dump).
 *
 * What it holds: every trainable tensor of a transformers CLIPModel
 * checkpoint as an owned float32 copy (cdx_train_param, found by its
 * state_dict name), a forward pass of both towers that keeps what the
 * backward pass needs, the backward pass, CLIP's symmetric cross-entropy,
 * torch.optim.AdamW and the open_clip learning-rate schedule, and the
 * writer of the trained model directory.
 *
 * Shapes (the legend of clipdex.h): n pairs in a batch; E projection
 * width; per tower C width, F MLP width, H heads, D = C/H, L blocks;
 * vision S image side, P patch side, NP = (S/P)^2 patches, N = NP + 1
 * tokens; text T_i tokens of caption i up to and including its pooled
 * (first end-of-text) token.
 *
 * Design for the families that come next: the transformer block (pre-LN,
 * attention + MLP) and its backward are generic over a tower
 * (struct ttower in train.c); a family differs in its embeddings, its
 * pooling and its loss.  The parameter table is a flat list of named
 * tensors, so writing the checkpoint, AdamW and the optimiser state need
 * nothing per family.
 *
 * Not thread-safe: one training run owns its cdx_train_model.  The
 * kernels split their work over the compute pool (cdx_threads_set).
 */
#ifndef CDX_TRAIN_H
#define CDX_TRAIN_H

#include <stdint.h>

#include "clipdex.h"

/* Which tower a parameter belongs to. */
typedef enum cdx_train_tower {
    CDX_TRAIN_TEXT = 1,   /* text tower and text_projection */
    CDX_TRAIN_VISION = 2, /* vision tower and visual_projection */
    CDX_TRAIN_SHARED = 4  /* logit_scale */
} cdx_train_tower;

typedef struct cdx_train_param {
    char name[128];    /* the state_dict name it is read and written under */
    int ndim;          /* as the checkpoint stores it (logit_scale: 0 or 1) */
    int64_t shape[4];
    int64_t numel;
    float *w;          /* (numel) the values, owned */
    float *g;          /* (numel) the gradient of the last cdx_train_step */
    float *m, *v;      /* AdamW moments (NULL until the first step) */
    int decay;         /* weight decay applies (ndim >= 2) */
    int trainable;     /* 0: frozen, never changed, no gradient computed */
    cdx_train_tower tower;
    int layer;         /* block index, -1 outside the blocks */
} cdx_train_param;

typedef struct cdx_train_model cdx_train_model;

/* Read model directory dir (config.json and its weights) into trainable
 * float32 copies; every parameter starts trainable.  *out is freed with
 * cdx_train_close.  Errors name the file and tensor. */
cdx_status cdx_train_open(const char *dir, cdx_train_model **out);
void cdx_train_close(cdx_train_model *m);

/* The parameter table, in checkpoint order of the towers (borrowed). */
int cdx_train_n_params(const cdx_train_model *m);
cdx_train_param *cdx_train_param_at(cdx_train_model *m, int i);
cdx_train_param *cdx_train_param_find(cdx_train_model *m, const char *name);
int cdx_train_embed_dim(const cdx_train_model *m);
int cdx_train_image_size(const cdx_train_model *m);

/* Freeze: locked is a mask of CDX_TRAIN_TEXT / CDX_TRAIN_VISION (LiT's
 * --lock image is CDX_TRAIN_VISION: the tower and its projection).  With
 * unlock_last > 0, in each unlocked tower only the last unlock_last blocks
 * and what follows them (final layer norm, projection) learn; the
 * embeddings and earlier blocks are frozen.  logit_scale always learns.
 * CDX_ERR_ARG if both towers are locked or unlock_last exceeds a tower. */
cdx_status cdx_train_set_trainable(cdx_train_model *m, unsigned locked, int unlock_last);

/* A batch of n pairs.  pixels (n,3,S,S) as cdx_model_image_input makes
 * them; ids the n token sequences one after another, sequence i of lens[i]
 * ids whose last one is the pooled token (the caller cuts each caption
 * after its first end-of-text token: attention is causal, so what follows
 * cannot change the embedding, nor receive a gradient). */
typedef struct cdx_train_batch {
    int n;
    const float *pixels;
    const int32_t *ids;
    const int *lens;
    /* LiT from the store (clipdex train --from-store): pixels NULL and
     * img_emb (n,E) the image embeddings themselves, which the image
     * tower would have computed; only with the image tower locked */
    const float *img_emb;
    /* Or pixels NULL and fill: the pixels of pairs first .. first+count-1
     * into out ((count,3,S,S)), asked for one sub-batch at a time by
     * cdx_train_grad_cached, so no buffer holds the whole batch's images
     * (616 MB at batch 1024 and 224 px).  Returns non-zero after setting
     * the error (cdx_fail). */
    int (*fill)(void *user, int first, int count, float *out);
    void *fill_user;
} cdx_train_batch;

/* Forward of both towers, keeping the activations the backward pass
 * needs.  img, txt (n,E): the unnormalised projections (what
 * cdx_model_encode_* computes with normalize_out = 0). */
cdx_status cdx_train_forward(cdx_train_model *m, const cdx_train_batch *b, float *img, float *txt);

/* The gradient of a loss given its gradient with respect to the last
 * forward's projections, d_img and d_txt (n,E), ADDED to the trainable
 * parameters' g (frozen towers are skipped).  Needs the activations of
 * the last cdx_train_forward. */
cdx_status cdx_train_backward(cdx_train_model *m, const float *d_img, const float *d_txt);

/* Zero every g. */
void cdx_train_zero_grad(cdx_train_model *m);

/* CLIP's symmetric cross-entropy on a batch: I, T the L2-normalised rows
 * of img and txt (n,E), logits = exp(t) I T^T, loss = (CE(logits, diag) +
 * CE(logits^T, diag)) / 2 with each CE the mean over the batch.  Returns
 * the loss; d_img, d_txt (n,E) and *d_t receive its gradient with respect
 * to img, txt (through the normalisation) and t. */
double cdx_train_clip_loss(const float *img, const float *txt, int n, int E, float t,
                           float *d_img, float *d_txt, float *d_t);

/* SigLIP's sigmoid loss (transformers' SiglipModel with return_loss, as
 * big_vision trains it): I, T the L2-normalised rows of img and txt,
 * logits z_ij = exp(t) T_i . I_j + b, labels y_ij = 1 on the diagonal and
 * -1 elsewhere, loss = -(1/n) sum_ij log sigmoid(y_ij z_ij).  Returns the
 * loss; d_img, d_txt (n,E), *d_t and *d_b its gradient with respect to
 * img, txt, t and the bias b. */
double cdx_train_sigmoid_loss(const float *img, const float *txt, int n, int E, float t, float b,
                              float *d_img, float *d_txt, float *d_t, float *d_b);

/* One gradient computation: zero_grad, forward, loss, backward (and the
 * gradient of logit_scale).  *loss receives the loss. */
cdx_status cdx_train_grad(cdx_train_model *m, const cdx_train_batch *b, double *loss);

/* The same gradient with a contrastive batch not bounded by memory
 * (gradient caching): the batch's embeddings are computed sub_batch pairs
 * at a time (activations of one sub-batch alive at once), the loss and
 * its gradient with respect to the embeddings taken over the whole
 * batch, then each sub-batch's forward is run again and backpropagated
 * with its rows of that gradient, the parameter gradients accumulating.
 * Costs one extra forward pass; sub_batch >= n is cdx_train_grad. */
cdx_status cdx_train_grad_cached(cdx_train_model *m, const cdx_train_batch *b, int sub_batch,
                                 double *loss);

/* AdamW, as torch.optim.AdamW (decoupled weight decay on the parameters
 * with decay set) over the trainable parameters, then logit_scale clamped
 * to [0, ln 100].  lr is this step's rate (cdx_train_lr). */
typedef struct cdx_train_adamw {
    double beta1, beta2, eps, weight_decay;
} cdx_train_adamw;
#define CDX_TRAIN_ADAMW_DEFAULTS {0.9, 0.98, 1e-6, 0.2}
cdx_status cdx_train_adamw_step(cdx_train_model *m, const cdx_train_adamw *opt, double lr);
/* Optimiser steps taken so far. */
int64_t cdx_train_steps_done(const cdx_train_model *m);

/* The learning rate of step (0-based) of total: linear warm-up
 * (step+1)/warmup x lr for step < warmup, then cosine as open_clip
 * (0.5 (1 + cos(pi (step - warmup) / (total - warmup))) x lr) or
 * constant. */
typedef enum { CDX_TRAIN_COSINE, CDX_TRAIN_CONSTANT } cdx_train_schedule;
double cdx_train_lr(cdx_train_schedule s, double lr, int64_t warmup, int64_t total, int64_t step);

/* Write the model directory out_dir: every file of src_dir except its
 * weights copied (config, tokenizer, processor), and model.safetensors
 * with every float tensor of the source checkpoint under its name, in
 * float32, trained ones with their current values.  Atomic: written to a
 * temporary directory beside out_dir, fsynced, then renamed (swapped
 * with an existing out_dir, which is then removed).  An existing out_dir
 * that is neither empty nor a model directory is refused.
 * With settings non-NULL (a JSON text: the caller's run settings) the
 * training state goes into the same directory, in the same rename:
 * AdamW's moments (train_state.safetensors) and the step count with the
 * settings (train_state.json), for cdx_train_load_state. */
cdx_status cdx_train_save(cdx_train_model *m, const char *out_dir, const char *settings);

/* Remove the OUT.tmp-PID directories that interrupted saves to out_dir
 * left behind, only those whose process is gone (train_stale.c says how
 * that is decided); *removed is how many.  Errors: out of memory only. */
cdx_status cdx_train_remove_stale(const char *out_dir, int *removed);

/* Continue a run: read the moments and step count that cdx_train_save
 * wrote into dir (m opened from dir, with the same trainable set).
 * *settings receives the saved settings (heap string, caller frees; NULL
 * if none).  Resuming then gives bit-identical results to a run that was
 * never interrupted. */
cdx_status cdx_train_load_state(cdx_train_model *m, const char *dir, char **settings);

/* Write the gradients of the trainable parameters (g, under the
 * parameters' names and shapes) as one float32 safetensors file: what the
 * tests compare with PyTorch autograd. */
cdx_status cdx_train_save_grads(cdx_train_model *m, const char *path);

/* A new model directory out_dir with random first weights (train_init.c):
 * cfg_dir's config.json and its tokenizer and processor files, and
 * model.safetensors drawn as transformers' CLIPPreTrainedModel initialises
 * a CLIPModel, from seed (the same seed, the same bytes).  out_dir must
 * not exist or be empty.  Errors name the file. */
cdx_status cdx_train_init_random(const char *cfg_dir, uint64_t seed, const char *out_dir);
/* --augment crop (augment.c): open_clip's training transform,
 * RandomResizedCrop(S, scale=(0.9, 1.0), ratio=(3/4, 4/3), bicubic).
 * cdx_train_crop_box draws the box of pair `pair` in epoch `epoch` of a
 * W x H image as torchvision's get_params does, from a stream seeded by
 * (seed, epoch, pair) only; cdx_train_crop_input resizes that box of img
 * to S x S with cfg's bicubic, rescale and normalisation (out: 3*S*S
 * floats, CHW). */
#define CDX_TRAIN_CROP_SCALE_MIN 0.9
typedef struct cdx_train_box {
    int x, y, w, h;
} cdx_train_box;
void cdx_train_crop_box(uint64_t seed, int64_t epoch, int64_t pair, int W, int H, cdx_train_box *box);
cdx_status cdx_train_crop_input(const cdx_preprocess_cfg *cfg, const cdx_image *img,
                                const cdx_train_box *box, int S, float *out);

/* Remove a directory of regular files (such as that model). */
void cdx_train_remove_dir(const char *dir);

#endif
