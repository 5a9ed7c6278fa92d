/*
 * model_config.c - read a Hugging Face CLIP config.json into cdx_clip_config.
 *
 * Every size is checked to be positive and consistent (width divisible by
 * heads, image divisible by patch) here, so the model code can trust it.
 * Sizes are also capped: a config is input from disk, and a hostile one
 * must not make us allocate terabytes before the weights are checked.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "model_config.h"
#include "internal.h"

#define CONFIG_MAX_BYTES (1u << 20)
#define DIM_MAX (1 << 16)      /* widths, heads, sizes */
#define VOCAB_MAX (1 << 22)

/* The field readers every family's config.json parser shares
 * (model_config.h). */
cdx_status cdx_config_int(const char *path, const cJSON *obj, const char *section,
                          const char *key, int def, int max, int *out)
{
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return CDX_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > max)
        return cdx_fail(CDX_ERR_MODEL, "%s: %s%s%s must be a whole number from 1 to %d", path,
                        section, *section ? "." : "", key, max);
    *out = (int)v->valuedouble;
    return CDX_OK;
}

cdx_status cdx_config_act(const char *path, const cJSON *obj, const char *section,
                          const char *def, const char **name, cdx_act *act)
{
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, "hidden_act") : NULL;
    const char *s = def;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v))
            return cdx_fail(CDX_ERR_MODEL, "%s: %s.hidden_act must be a string", path, section);
        s = v->valuestring;
    }
    if (strcmp(s, "quick_gelu") == 0) {
        *name = "quick_gelu";
        *act = CDX_ACT_QUICK_GELU;
    } else if (strcmp(s, "gelu") == 0) {
        *name = "gelu";
        *act = CDX_ACT_GELU;
    } else if (strcmp(s, "gelu_pytorch_tanh") == 0 || strcmp(s, "gelu_new") == 0) {
        /* gelu_new is the same tanh approximation under another name */
        *name = "gelu_pytorch_tanh";
        *act = CDX_ACT_GELU_TANH;
    } else {
        return cdx_fail(CDX_ERR_UNSUPPORTED,
                        "%s: %s.hidden_act \"%s\" is not supported (quick_gelu, gelu or "
                        "gelu_pytorch_tanh)", path, section, s);
    }
    return CDX_OK;
}

cdx_status cdx_config_eps(const char *path, const cJSON *obj, const char *section, double def,
                          double *out)
{
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, "layer_norm_eps") : NULL;
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return CDX_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 1)
        return cdx_fail(CDX_ERR_MODEL, "%s: %s.layer_norm_eps must be a number in (0, 1]", path,
                        section);
    *out = v->valuedouble;
    return CDX_OK;
}

static cdx_status check_heads(const char *path, const char *section, const cdx_tower_info *t)
{
    if (t->hidden % t->heads != 0)
        return cdx_fail(CDX_ERR_MODEL, "%s: %s.hidden_size %d is not divisible by num_attention_heads %d",
                        path, section, t->hidden, t->heads);
    return CDX_OK;
}

cdx_status cdx_config_load(const char *path, cdx_clip_config *out)
{
    cdx_status st;
    char *text = NULL;
    cJSON *root = NULL;
    const cJSON *tc, *vc;
    cdx_clip_config c;

    memset(&c, 0, sizeof c);
    st = cdx_read_file(path, CONFIG_MAX_BYTES, &text, NULL);
    if (st) goto cleanup;
    root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root)) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: not a JSON object", path);
        goto cleanup;
    }
    tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    if ((tc && !cJSON_IsObject(tc)) || (vc && !cJSON_IsObject(vc))) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: text_config and vision_config must be objects", path);
        goto cleanup;
    }

#define TRY(x) do { if ((st = (x)) != CDX_OK) goto cleanup; } while (0)
    TRY(cdx_config_int(path, root, "", "projection_dim", 512, DIM_MAX, &c.projection_dim));

    TRY(cdx_config_int(path, tc, "text_config", "hidden_size", 512, DIM_MAX, &c.text.hidden));
    TRY(cdx_config_int(path, tc, "text_config", "intermediate_size", 2048, DIM_MAX, &c.text.intermediate));
    TRY(cdx_config_int(path, tc, "text_config", "num_hidden_layers", 12, 1024, &c.text.layers));
    TRY(cdx_config_int(path, tc, "text_config", "num_attention_heads", 8, DIM_MAX, &c.text.heads));
    TRY(cdx_config_int(path, tc, "text_config", "max_position_embeddings", 77, DIM_MAX, &c.text.max_positions));
    TRY(cdx_config_int(path, tc, "text_config", "vocab_size", 49408, VOCAB_MAX, &c.text.vocab_size));
    TRY(cdx_config_act(path, tc, "text_config", "quick_gelu", &c.text.act, &c.text_act));
    TRY(cdx_config_eps(path, tc, "text_config", 1e-5, &c.text.ln_eps));
    TRY(check_heads(path, "text_config", &c.text));
    if (c.text.max_positions < 2) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: text_config.max_position_embeddings must be at least 2", path);
        goto cleanup;
    }

    TRY(cdx_config_int(path, vc, "vision_config", "hidden_size", 768, DIM_MAX, &c.vision.hidden));
    TRY(cdx_config_int(path, vc, "vision_config", "intermediate_size", 3072, DIM_MAX, &c.vision.intermediate));
    TRY(cdx_config_int(path, vc, "vision_config", "num_hidden_layers", 12, 1024, &c.vision.layers));
    TRY(cdx_config_int(path, vc, "vision_config", "num_attention_heads", 12, DIM_MAX, &c.vision.heads));
    TRY(cdx_config_int(path, vc, "vision_config", "image_size", 224, 4096, &c.vision.image_size));
    TRY(cdx_config_int(path, vc, "vision_config", "patch_size", 32, 4096, &c.vision.patch_size));
    TRY(cdx_config_act(path, vc, "vision_config", "quick_gelu", &c.vision.act, &c.vision_act));
    TRY(cdx_config_eps(path, vc, "vision_config", 1e-5, &c.vision.ln_eps));
    TRY(check_heads(path, "vision_config", &c.vision));
#undef TRY
    if (c.vision.image_size % c.vision.patch_size != 0) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: vision_config.image_size %d is not a multiple of patch_size %d",
                      path, c.vision.image_size, c.vision.patch_size);
        goto cleanup;
    }
    {
        const cJSON *nc = vc ? cJSON_GetObjectItemCaseSensitive(vc, "num_channels") : NULL;
        if (nc && !cJSON_IsNull(nc) && !(cJSON_IsNumber(nc) && nc->valuedouble == 3)) {
            st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: vision_config.num_channels must be 3", path);
            goto cleanup;
        }
    }
    *out = c;
cleanup:
    cJSON_Delete(root);
    free(text);
    return st;
}
