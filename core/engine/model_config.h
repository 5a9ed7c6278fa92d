/*
 * model_config.h - config.json (CLIPConfig) parsing (internal).
 *
 * Missing keys take transformers' CLIPTextConfig / CLIPVisionConfig
 * defaults, as transformers does: older Hub configs list only the values
 * that differ from the defaults.
 */
#ifndef CDX_MODEL_CONFIG_H
#define CDX_MODEL_CONFIG_H

#include <cJSON.h>

#include "clipdex.h"

/* CDX_ACT_GELU_TANH: gelu_pytorch_tanh, the tanh approximation (SigLIP). */
typedef enum cdx_act { CDX_ACT_QUICK_GELU, CDX_ACT_GELU, CDX_ACT_GELU_TANH } cdx_act;

typedef struct cdx_clip_config {
    int projection_dim;
    cdx_tower_info text, vision; /* act strings are static */
    cdx_act text_act, vision_act;
} cdx_clip_config;

/* The field readers every family's config parser uses; errors name the
 * file and SECTION.KEY.  An integer in [1, max], def when absent or null. */
cdx_status cdx_config_int(const char *path, const cJSON *obj, const char *section,
                          const char *key, int def, int max, int *out);
/* hidden_act: quick_gelu, gelu or gelu_pytorch_tanh (gelu_new); def when
 * absent; *name a static string. */
cdx_status cdx_config_act(const char *path, const cJSON *obj, const char *section,
                          const char *def, const char **name, cdx_act *act);
/* layer_norm_eps in (0, 1]; def when absent. */
cdx_status cdx_config_eps(const char *path, const cJSON *obj, const char *section, double def,
                          double *out);

/* Parse path (a config.json).  Errors name the file and the key. */
cdx_status cdx_config_load(const char *path, cdx_clip_config *out);

#endif
