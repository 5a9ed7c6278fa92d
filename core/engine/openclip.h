/*
 * openclip.h - OpenCLIP checkpoints (open_clip_config.json +
 * open_clip_model.safetensors / open_clip_pytorch_model.bin), internal.
 *
 * model.c runs them with its CLIP blocks: this file reads the config into
 * the same cdx_clip_config, binds open_clip's tensor names to the same
 * per-block pointers (q, k and v are row blocks of the fused
 * in_proj_weight: no copy), and gives the two projections in the (E, C)
 * layout of transformers (open_clip stores (C, E) and computes x @ proj).
 */
#ifndef CDX_OPENCLIP_H
#define CDX_OPENCLIP_H

#include "clipdex.h"
#include "model_config.h"
#include "transformer.h"
#include "weights.h"

/* Which reader a model path asks for (cdx_model_locate). */
typedef enum cdx_format { CDX_FORMAT_HF = 0, CDX_FORMAT_OPENCLIP } cdx_format;

/* Resolve what cdx_model_open was given.  A directory: OpenCLIP when it
 * holds open_clip_config.json and an open_clip weights file (LAION
 * repositories carry both layouts: open_clip's is what the checkpoint was
 * trained and evaluated with), else the transformers layout.  A file
 * names the format itself: DIR/open_clip_config.json or DIR/config.json
 * (how a user picks the other layout of a repository carrying both).
 * *dir receives the directory (heap). */
cdx_status cdx_model_locate(const char *arg, char **dir, cdx_format *fmt);

/* One block's tensors, the fields of model.c's layer_w. */
/* Everything an OpenCLIP model binds; owned arrays freed by
 * cdx_openclip_free. */
typedef struct cdx_openclip {
    char *weights_path;
    const char *text_prefix;    /* "" or "text." (custom_text) */
    const float *tok_emb, *tpos_emb, *final_ln_w, *final_ln_b;
    const float *cls, *patch_w, *vpos_emb, *pre_ln_w, *pre_ln_b, *post_ln_w, *post_ln_b;
    float *text_proj, *vis_proj; /* (E, C): transposed copies */
    float logit_scale;           /* exp() of the tensor */
} cdx_openclip;

/* Read DIR/open_clip_config.json: model_cfg into *cfg, preprocess_cfg
 * into *pre (openclip set).  Anything the config can say that changes
 * the computation and is not implemented is CDX_ERR_UNSUPPORTED naming
 * the file and the key. */
cdx_status cdx_openclip_config_load(const char *dir, cdx_clip_config *cfg, cdx_preprocess_cfg *pre,
                                    cdx_openclip *oc);

/* Open the weights file of DIR (open_clip_model.safetensors, else
 * open_clip_pytorch_model.bin). */
cdx_status cdx_openclip_weights_open(const char *dir, cdx_openclip *oc, cdx_weights **w);

/* Bind the towers in the mask: embeddings and projections into *oc, the
 * blocks into text / vision (initialised here; freed with
 * cdx_stack_free).  The fused in_proj is bound in place: q, k and v are
 * its row blocks. */
cdx_status cdx_openclip_bind(cdx_openclip *oc, cdx_weights *w, const cdx_clip_config *cfg,
                             unsigned towers, cdx_stack *text, cdx_stack *vision);

/* The CLIP BPE files clipdex carries (data/clip): $CLIPDEX_CLIP_VOCAB if
 * set, the installed copy, else the source tree's.  Heap strings. */
cdx_status cdx_openclip_vocab_paths(char **vocab_json, char **merges_txt);

void cdx_openclip_free(cdx_openclip *oc);

#endif
