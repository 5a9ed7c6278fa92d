/*
 * siglip.h - SigLIP and SigLIP 2 (fixed resolution) models (internal).
 *
 * Family detection (documented in man/clipdex.1, MODELS):
 *   config.json model_type "siglip"  -> SigLIP, or SigLIP 2 when the
 *       directory carries Gemma's tokenizer.model rather than spiece.model
 *   model_type "siglip2", or a preprocessor_config.json with
 *       max_num_patches (Siglip2ImageProcessor) -> NaFlex SigLIP 2,
 *       refused (variable resolution is not run)
 * model.c calls cdx_siglip_detect in cdx_model_open and hands the whole
 * model to siglip.c when it answers yes.
 */
#ifndef CDX_SIGLIP_H
#define CDX_SIGLIP_H

#include "clipdex.h"

typedef struct cdx_siglip cdx_siglip;

/* 1 when dir's config.json says model_type "siglip" or "siglip2" (and
 * *family is set from the tokenizer file present), 0 otherwise (no
 * config.json, unreadable, or another model type: the caller goes on as
 * CLIP and reports its own errors). */
int cdx_siglip_detect(const char *dir, cdx_family *family);

/* Open the model.  Fills *info (dir left to the caller), *pre and, with
 * the text tower, *tok (owned by the caller).  Errors name the file. */
cdx_status cdx_siglip_open(const char *dir, unsigned towers, cdx_family family,
                           cdx_siglip **out, cdx_model_info *info, cdx_preprocess_cfg *pre,
                           cdx_tokenizer **tok);
void cdx_siglip_close(cdx_siglip *s);

/* ids: the processor's input_ids, n = the context length. */
cdx_status cdx_siglip_encode_tokens(cdx_siglip *s, const int32_t *ids, int n, float *out);
cdx_status cdx_siglip_encode_images(cdx_siglip *s, const float *pixels, int batch, float *out);
cdx_status cdx_siglip_set_precision(cdx_siglip *s, cdx_precision p);

/* For training (core/train/train_siglip.c): dir's towers as the engine
 * reads them (config.json with SigLIP's defaults; cfg->projection_dim is
 * the embedding width), and from its tokenizer the padding id and whether
 * the attention mask reaches the model (SigLIP 2).  Errors name the file. */
struct cdx_clip_config;
cdx_status cdx_siglip_train_config(const char *dir, struct cdx_clip_config *cfg, int *masks,
                                   int32_t *pad);

#endif
