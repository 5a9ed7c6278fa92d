/*
 * openclip.c - OpenCLIP checkpoints as LAION, DataComp and DFN publish
 * them: open_clip_config.json + open_clip_model.safetensors (or
 * open_clip_pytorch_model.bin, read by the restricted unpickler).
 *
 * What open_clip (src/open_clip/model.py CLIP, transformer.py
 * VisionTransformer / TextTransformer / ResidualAttentionBlock) computes
 * for the configs accepted here is the transformers CLIP computation with
 * other names, so model.c runs it with its own blocks:
 *
 *   visual.conv1.weight (C,3,P,P), no bias      patch embedding
 *   visual.class_embedding (C), visual.positional_embedding (N+1, C)
 *   visual.ln_pre, visual.transformer.resblocks.I.*, visual.ln_post
 *   visual.proj (C, E)                          pooled @ proj
 *   token_embedding.weight (V, C), positional_embedding (T, C)
 *   transformer.resblocks.I.*, ln_final, text_projection (C, E)
 *   logit_scale ([] or [1])
 * and per block: ln_1, attn.in_proj_weight (3C, C) = [q; k; v] row blocks,
 * attn.in_proj_bias (3C), attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj.
 * Layer norms are torch's (eps 1e-5); activation nn.GELU (erf) unless
 * model_cfg.quick_gelu; vision pools the class token (pool_type "tok"),
 * text the row of the largest token id (text_global_pool "argmax": the
 * end-of-text id, the vocabulary's largest); attention scales q by
 * head_dim^-1/2 as nn.MultiheadAttention does.  custom_text models
 * (CustomTextCLIP) keep the same text tower under "text.".
 *
 * Defaults are open_clip's CLIPVisionCfg / CLIPTextCfg dataclass defaults
 * (the Hub configs list only what differs).  Every other key that changes
 * the computation must hold its default; else the model is refused with
 * "FILE: KEY ...: unsupported", never run approximately.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "internal.h"
#include "openclip.h"

#define OC_CONFIG "open_clip_config.json"
#define OC_SAFETENSORS "open_clip_model.safetensors"
#define OC_BIN "open_clip_pytorch_model.bin"
#define CONFIG_MAX_BYTES (1u << 20)
#define DIM_MAX (1 << 16)
#define VOCAB_MAX (1 << 22)

/* ------------------------------------------------------------ detection */

static int is_file(const char *dir, const char *name)
{
    struct stat sb;
    char *p = cdx_path_join(dir, name);
    int ok = p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
    free(p);
    return ok;
}

cdx_status cdx_model_locate(const char *arg, char **dir, cdx_format *fmt)
{
    struct stat sb;
    if (stat(arg, &sb) != 0) return cdx_fail(CDX_ERR_IO, "%s: not a model directory", arg);
    if (S_ISDIR(sb.st_mode)) {
        *fmt = is_file(arg, OC_CONFIG) && (is_file(arg, OC_SAFETENSORS) || is_file(arg, OC_BIN))
                   ? CDX_FORMAT_OPENCLIP
                   : (!is_file(arg, "config.json") && is_file(arg, OC_CONFIG) ? CDX_FORMAT_OPENCLIP
                                                                                 : CDX_FORMAT_HF);
        *dir = strdup(arg);
    } else {
        const char *slash = strrchr(arg, '/');
        const char *base = slash ? slash + 1 : arg;
        if (strcmp(base, OC_CONFIG) == 0)
            *fmt = CDX_FORMAT_OPENCLIP;
        else if (strcmp(base, "config.json") == 0)
            *fmt = CDX_FORMAT_HF;
        else
            return cdx_fail(CDX_ERR_IO, "%s: not a model directory (nor its config.json or "
                            OC_CONFIG ")", arg);
        *dir = slash ? strndup(arg, slash == arg ? 1 : (size_t)(slash - arg)) : strdup(".");
    }
    if (!*dir) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", arg);
    return CDX_OK;
}

/* ------------------------------------------------------------ config */

/* How a config key is treated. */
enum key_kind {
    K_USED,    /* read by the parser */
    K_IGNORED, /* no effect on inference (dropout, init, timm options of an unused timm tower) */
    K_DEFAULT, /* must be absent or its default (JSON text in def) */
};

struct key_rule {
    const char *key;
    enum key_kind kind;
    const char *def; /* K_DEFAULT: the default as JSON ("null": also {} for *_kwargs) */
};

static const struct key_rule MODEL_KEYS[] = {
    {"embed_dim", K_USED, NULL}, {"quick_gelu", K_USED, NULL}, {"vision_cfg", K_USED, NULL},
    {"text_cfg", K_USED, NULL}, {"custom_text", K_USED, NULL},
    {"cast_dtype", K_IGNORED, NULL}, {"init_logit_scale", K_IGNORED, NULL},
    {"nonscalar_logit_scale", K_IGNORED, NULL}, {"output_dict", K_IGNORED, NULL},
    {"init_logit_bias", K_DEFAULT, "null"},
};

static const struct key_rule VISION_KEYS[] = {
    {"layers", K_USED, NULL}, {"width", K_USED, NULL}, {"head_width", K_USED, NULL},
    {"mlp_ratio", K_USED, NULL}, {"patch_size", K_USED, NULL}, {"image_size", K_USED, NULL},
    {"timm_model_name", K_USED, NULL},
    {"patch_dropout", K_IGNORED, NULL}, {"image_seq_len", K_IGNORED, NULL},
    {"attn_pooler_queries", K_IGNORED, NULL}, {"attn_pooler_heads", K_IGNORED, NULL},
    /* pooling the class token commutes with the per-token ln_post */
    {"final_ln_after_pool", K_IGNORED, NULL},
    {"timm_model_pretrained", K_IGNORED, NULL}, {"timm_pool", K_IGNORED, NULL},
    {"timm_proj", K_IGNORED, NULL}, {"timm_proj_bias", K_IGNORED, NULL},
    {"timm_drop", K_IGNORED, NULL}, {"timm_drop_path", K_IGNORED, NULL},
    {"timm_model_kwargs", K_IGNORED, NULL},
    {"ls_init_value", K_DEFAULT, "null"}, {"attentional_pool", K_DEFAULT, "false"},
    {"no_ln_pre", K_DEFAULT, "false"}, {"pos_embed_type", K_DEFAULT, "\"learnable\""},
    {"pool_type", K_DEFAULT, "\"tok\""}, {"output_tokens", K_DEFAULT, "false"},
    {"act_kwargs", K_DEFAULT, "null"}, {"norm_kwargs", K_DEFAULT, "null"},
    {"block_type", K_DEFAULT, "null"}, {"qk_norm", K_DEFAULT, "false"},
    {"scaled_cosine_attn", K_DEFAULT, "false"}, {"scale_heads", K_DEFAULT, "false"},
    {"scale_attn_inner", K_DEFAULT, "false"}, {"scale_attn", K_DEFAULT, "false"},
    {"scale_fc", K_DEFAULT, "false"},
};

static const struct key_rule TEXT_KEYS[] = {
    {"context_length", K_USED, NULL}, {"vocab_size", K_USED, NULL}, {"width", K_USED, NULL},
    {"heads", K_USED, NULL}, {"layers", K_USED, NULL}, {"mlp_ratio", K_USED, NULL},
    {"hf_model_name", K_USED, NULL}, {"hf_tokenizer_name", K_USED, NULL},
    /* padding and the eos id do not matter to a causal tower pooled at argmax */
    {"pad_id", K_IGNORED, NULL}, {"bos_id", K_IGNORED, NULL}, {"eos_id", K_IGNORED, NULL},
    {"tiktoken_name", K_IGNORED, NULL},
    /* CLIP._encode_text applies ln_final before pooling whatever this says
     * (and a per-token norm commutes with picking a row) */
    {"final_ln_after_pool", K_IGNORED, NULL},
    {"hf_model_pretrained", K_IGNORED, NULL}, {"hf_proj_type", K_IGNORED, NULL},
    {"hf_pooler_type", K_IGNORED, NULL}, {"hf_model_config", K_IGNORED, NULL},
    {"text_arch", K_DEFAULT, "\"clip\""}, {"variable_text", K_DEFAULT, "false"},
    {"tokenizer_mode", K_DEFAULT, "null"}, {"tokenizer_kwargs", K_DEFAULT, "null"},
    {"tokenizer_type", K_DEFAULT, "\"\""},
    {"ls_init_value", K_DEFAULT, "null"}, {"embed_cls", K_DEFAULT, "false"},
    {"no_causal_mask", K_DEFAULT, "false"}, {"pool_type", K_DEFAULT, "\"argmax\""},
    {"proj_bias", K_DEFAULT, "false"}, {"proj_type", K_DEFAULT, "\"linear\""},
    {"output_tokens", K_DEFAULT, "false"}, {"act_kwargs", K_DEFAULT, "null"},
    {"norm_kwargs", K_DEFAULT, "null"}, {"block_type", K_DEFAULT, "null"},
    {"qk_norm", K_DEFAULT, "false"}, {"scaled_cosine_attn", K_DEFAULT, "false"},
    {"scale_heads", K_DEFAULT, "false"}, {"scale_attn_inner", K_DEFAULT, "false"},
    {"scale_attn", K_DEFAULT, "false"}, {"scale_fc", K_DEFAULT, "false"},
    /* the "modern" text tower's settings, unused by the "clip" one */
    {"attention_mode", K_IGNORED, NULL}, {"pos_embed", K_IGNORED, NULL},
    {"rope_temperature", K_IGNORED, NULL}, {"mlp_type", K_IGNORED, NULL},
    {"norm_type", K_DEFAULT, "null"}, {"norm_eps", K_IGNORED, NULL},
    {"attn_gated", K_IGNORED, NULL}, {"pre_norm", K_IGNORED, NULL},
    {"norm_placement", K_IGNORED, NULL}, {"zero_init_residual", K_IGNORED, NULL},
    {"reg_tokens", K_IGNORED, NULL}, {"value_residual", K_IGNORED, NULL},
    {"attention_bias", K_IGNORED, NULL}, {"mlp_bias", K_IGNORED, NULL},
    {"gate_bias", K_IGNORED, NULL},
};

/* Every key of obj must be in rules; K_DEFAULT keys must hold their
 * default. */
static cdx_status check_keys(const char *path, const char *section, const cJSON *obj,
                             const struct key_rule *rules, size_t n)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        const struct key_rule *r = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(rules[i].key, it->string) == 0) r = &rules[i];
        if (!r)
            return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: %s.%s: unsupported (clipdex runs plain ViT "
                            "OpenCLIP models; this key is not known to it)", path, section,
                            it->string);
        if (r->kind != K_DEFAULT || cJSON_IsNull(it)) continue;
        if (strcmp(r->def, "null") == 0 && cJSON_IsObject(it) && !it->child) continue; /* {} */
        cJSON *d = cJSON_Parse(r->def);
        int same = d && cJSON_Compare(d, it, 1);
        cJSON_Delete(d);
        if (!same) {
            char *v = cJSON_PrintUnformatted(it);
            cdx_status st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: %s.%s = %.60s: unsupported "
                                     "(clipdex implements only %s)", path, section, it->string,
                                     v ? v : "?", r->def);
            free(v);
            return st;
        }
    }
    return CDX_OK;
}

/* A whole number in [1, max], or the default when absent. */
static cdx_status oc_int(const char *path, const char *section, const cJSON *obj, const char *key,
                         int def, int max, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0)
            return cdx_fail(CDX_ERR_MODEL, "%s: %s.%s is missing", path, section, key);
        *out = def;
        return CDX_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > max)
        return cdx_fail(CDX_ERR_MODEL, "%s: %s.%s must be a whole number from 1 to %d", path,
                        section, key, max);
    *out = (int)v->valuedouble;
    return CDX_OK;
}

/* image_size / patch_size: N or [N, N] (to_2tuple); non-square sizes are
 * not supported. */
static cdx_status oc_side(const char *path, const char *section, const cJSON *obj, const char *key,
                          int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v && cJSON_IsArray(v)) {
        const cJSON *a = cJSON_GetArrayItem(v, 0), *b = cJSON_GetArrayItem(v, 1);
        if (cJSON_GetArraySize(v) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b))
            return cdx_fail(CDX_ERR_MODEL, "%s: %s.%s must be a number or [height, width]", path,
                            section, key);
        if (a->valuedouble != b->valuedouble)
            return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: %s.%s [%g, %g]: unsupported (only square "
                            "sizes)", path, section, key, a->valuedouble, b->valuedouble);
        cJSON *tmp = cJSON_CreateObject();
        if (!tmp || !cJSON_AddNumberToObject(tmp, key, a->valuedouble)) {
            cJSON_Delete(tmp);
            return cdx_fail(CDX_ERR_NOMEM, "out of memory");
        }
        cdx_status st = oc_int(path, section, tmp, key, def, 4096, out);
        cJSON_Delete(tmp);
        return st;
    }
    return oc_int(path, section, obj, key, def, 4096, out);
}

static cdx_status oc_ratio(const char *path, const char *section, const cJSON *obj, int width,
                           int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "mlp_ratio");
    double r = 4.0;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 64)
            return cdx_fail(CDX_ERR_MODEL, "%s: %s.mlp_ratio must be a number in (0, 64]", path,
                            section);
        r = v->valuedouble;
    }
    /* int(width * mlp_ratio), as ResidualAttentionBlock */
    double f = (double)width * r;
    if (f < 1 || f > DIM_MAX)
        return cdx_fail(CDX_ERR_MODEL, "%s: %s: width * mlp_ratio is out of range", path, section);
    *out = (int)f;
    return CDX_OK;
}

static const cJSON *section_obj(const char *path, const cJSON *parent, const char *key,
                                cdx_status *st)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, key);
    *st = CDX_OK;
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsObject(v)) *st = cdx_fail(CDX_ERR_MODEL, "%s: %s must be an object", path, key);
    return v;
}

static int oc_bool(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && cJSON_IsTrue(v);
}

static cdx_status parse_preprocess(const char *path, const cJSON *pp, cdx_preprocess_cfg *pre)
{
    static const char *const mean_std[2] = {"mean", "std"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(pp, mean_std[k]);
        float *dst = k ? pre->image_std : pre->image_mean;
        if (!v || cJSON_IsNull(v)) continue;
        if (cJSON_IsNumber(v)) {
            dst[0] = dst[1] = dst[2] = (float)v->valuedouble;
        } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 3) {
            for (int c = 0; c < 3; c++) {
                const cJSON *e = cJSON_GetArrayItem(v, c);
                if (!cJSON_IsNumber(e)) goto bad;
                dst[c] = (float)e->valuedouble;
            }
        } else {
        bad:
            return cdx_fail(CDX_ERR_MODEL, "%s: preprocess_cfg.%s must be 3 numbers", path,
                            mean_std[k]);
        }
        for (int c = 0; k && c < 3; c++)
            if (!(dst[c] != 0) || !isfinite(dst[c]))
                return cdx_fail(CDX_ERR_MODEL, "%s: preprocess_cfg.std must not be 0", path);
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(pp, "interpolation");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || strcmp(v->valuestring, "bicubic") != 0)
            return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: preprocess_cfg.interpolation %s: unsupported "
                            "(only \"bicubic\")", path,
                            cJSON_IsString(v) ? v->valuestring : "(not a string)");
    }
    v = cJSON_GetObjectItemCaseSensitive(pp, "resize_mode");
    if (v && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v) && strcmp(v->valuestring, "shortest") == 0)
            pre->oc_resize_mode = CDX_OC_RESIZE_SHORTEST;
        else if (cJSON_IsString(v) && strcmp(v->valuestring, "longest") == 0)
            pre->oc_resize_mode = CDX_OC_RESIZE_LONGEST;
        else if (cJSON_IsString(v) && strcmp(v->valuestring, "squash") == 0)
            pre->oc_resize_mode = CDX_OC_RESIZE_SQUASH;
        else
            return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: preprocess_cfg.resize_mode: unsupported "
                            "(shortest, longest or squash)", path);
    }
    v = cJSON_GetObjectItemCaseSensitive(pp, "mode");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && strcmp(v->valuestring, "RGB") == 0))
        return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: preprocess_cfg.mode: unsupported (only \"RGB\")",
                        path);
    v = cJSON_GetObjectItemCaseSensitive(pp, "fill_color");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > 255)
            return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: preprocess_cfg.fill_color: unsupported "
                            "(a whole number 0 to 255)", path);
        pre->oc_fill = (int)v->valuedouble;
    }
    return CDX_OK;
}

cdx_status cdx_openclip_config_load(const char *dir, cdx_clip_config *cfg, cdx_preprocess_cfg *pre,
                                    cdx_openclip *oc)
{
    cdx_status st;
    char *text = NULL, *path = cdx_path_join(dir, OC_CONFIG);
    cJSON *root = NULL;
    const cJSON *mc, *vc, *tc, *pp;
    cdx_clip_config c;
    int head_width;

    memset(&c, 0, sizeof c);
    if (!path) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
    if ((st = cdx_read_file(path, CONFIG_MAX_BYTES, &text, NULL))) goto cleanup;
    root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root)) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: not a JSON object", path);
        goto cleanup;
    }
#define TRY(x) do { if ((st = (x)) != CDX_OK) goto cleanup; } while (0)
    mc = section_obj(path, root, "model_cfg", &st);
    if (st) goto cleanup;
    if (!mc) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: model_cfg is missing", path);
        goto cleanup;
    }
    TRY(check_keys(path, "model_cfg", mc, MODEL_KEYS, sizeof MODEL_KEYS / sizeof MODEL_KEYS[0]));
    vc = section_obj(path, mc, "vision_cfg", &st);
    if (st) goto cleanup;
    tc = section_obj(path, mc, "text_cfg", &st);
    if (st) goto cleanup;
    if (vc) TRY(check_keys(path, "model_cfg.vision_cfg", vc, VISION_KEYS,
                           sizeof VISION_KEYS / sizeof VISION_KEYS[0]));
    if (tc) TRY(check_keys(path, "model_cfg.text_cfg", tc, TEXT_KEYS,
                           sizeof TEXT_KEYS / sizeof TEXT_KEYS[0]));
    {
        const cJSON *t = vc ? cJSON_GetObjectItemCaseSensitive(vc, "timm_model_name") : NULL;
        if (t && !cJSON_IsNull(t)) {
            st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: model_cfg.vision_cfg.timm_model_name %.60s: "
                          "unsupported tower (clipdex runs open_clip's own VisionTransformer; "
                          "ConvNeXt, MobileCLIP and other timm towers are not supported)", path,
                          cJSON_IsString(t) ? t->valuestring : "?");
            goto cleanup;
        }
        const cJSON *l = vc ? cJSON_GetObjectItemCaseSensitive(vc, "layers") : NULL;
        if (l && cJSON_IsArray(l)) {
            st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: model_cfg.vision_cfg.layers is a list: "
                          "unsupported tower (ModifiedResNet)", path);
            goto cleanup;
        }
        const char *hf[2] = {"hf_model_name", "hf_tokenizer_name"};
        for (int i = 0; i < 2; i++) {
            t = tc ? cJSON_GetObjectItemCaseSensitive(tc, hf[i]) : NULL;
            if (t && !cJSON_IsNull(t)) {
                st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: model_cfg.text_cfg.%s: unsupported (a "
                              "Hugging Face text tower or tokenizer; clipdex runs open_clip's "
                              "own text transformer with its CLIP tokenizer)", path, hf[i]);
                goto cleanup;
            }
        }
    }
    TRY(oc_int(path, "model_cfg", mc, "embed_dim", -1, DIM_MAX, &c.projection_dim));
    c.vision_act = c.text_act = oc_bool(mc, "quick_gelu") ? CDX_ACT_QUICK_GELU : CDX_ACT_GELU;
    c.vision.act = c.text.act = c.vision_act == CDX_ACT_QUICK_GELU ? "quick_gelu" : "gelu";
    c.vision.ln_eps = c.text.ln_eps = 1e-5; /* torch.nn.LayerNorm's default */
    oc->text_prefix = oc_bool(mc, "custom_text") ? "text." : "";

    /* CLIPVisionCfg defaults */
    TRY(oc_int(path, "model_cfg.vision_cfg", vc, "layers", 12, 1024, &c.vision.layers));
    TRY(oc_int(path, "model_cfg.vision_cfg", vc, "width", 768, DIM_MAX, &c.vision.hidden));
    TRY(oc_int(path, "model_cfg.vision_cfg", vc, "head_width", 64, DIM_MAX, &head_width));
    TRY(oc_side(path, "model_cfg.vision_cfg", vc, "patch_size", 16, &c.vision.patch_size));
    TRY(oc_side(path, "model_cfg.vision_cfg", vc, "image_size", 224, &c.vision.image_size));
    TRY(oc_ratio(path, "model_cfg.vision_cfg", vc, c.vision.hidden, &c.vision.intermediate));
    c.vision.heads = c.vision.hidden / head_width; /* width // head_width */
    if (c.vision.heads < 1 || c.vision.hidden % c.vision.heads != 0) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: model_cfg.vision_cfg: width %d does not split into "
                      "heads of head_width %d", path, c.vision.hidden, head_width);
        goto cleanup;
    }
    if (c.vision.image_size % c.vision.patch_size != 0) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: model_cfg.vision_cfg.image_size %d is not a multiple of "
                      "patch_size %d", path, c.vision.image_size, c.vision.patch_size);
        goto cleanup;
    }
    /* CLIPTextCfg defaults */
    TRY(oc_int(path, "model_cfg.text_cfg", tc, "context_length", 77, DIM_MAX, &c.text.max_positions));
    TRY(oc_int(path, "model_cfg.text_cfg", tc, "vocab_size", 49408, VOCAB_MAX, &c.text.vocab_size));
    TRY(oc_int(path, "model_cfg.text_cfg", tc, "width", 512, DIM_MAX, &c.text.hidden));
    TRY(oc_int(path, "model_cfg.text_cfg", tc, "heads", 8, DIM_MAX, &c.text.heads));
    TRY(oc_int(path, "model_cfg.text_cfg", tc, "layers", 12, 1024, &c.text.layers));
    TRY(oc_ratio(path, "model_cfg.text_cfg", tc, c.text.hidden, &c.text.intermediate));
    if (c.text.hidden % c.text.heads != 0) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: model_cfg.text_cfg.width %d is not divisible by heads %d",
                      path, c.text.hidden, c.text.heads);
        goto cleanup;
    }
    if (c.text.max_positions < 2) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: model_cfg.text_cfg.context_length must be at least 2",
                      path);
        goto cleanup;
    }
    if (c.text.vocab_size < 49408) {
        /* the bundled tokenizer yields ids up to 49407 */
        st = cdx_fail(CDX_ERR_MODEL, "%s: model_cfg.text_cfg.vocab_size %d is smaller than the "
                      "CLIP tokenizer's 49408", path, c.text.vocab_size);
        goto cleanup;
    }

    /* PreprocessCfg defaults; size is the vision tower's image_size
     * (open_clip's factory sets it from the model). */
    cdx_preprocess_cfg_default(pre);
    pre->shortest_edge = pre->crop_width = pre->crop_height = c.vision.image_size;
    pre->openclip = 1;
    pre->oc_resize_mode = CDX_OC_RESIZE_SHORTEST;
    pre->oc_fill = 0;
    pp = section_obj(path, root, "preprocess_cfg", &st);
    if (st) goto cleanup;
    if (pp) TRY(parse_preprocess(path, pp, pre));
#undef TRY
    *cfg = c;
cleanup:
    cJSON_Delete(root);
    free(text);
    free(path);
    return st;
}

/* ------------------------------------------------------------ weights */

cdx_status cdx_openclip_weights_open(const char *dir, cdx_openclip *oc, cdx_weights **w)
{
    const char *name = is_file(dir, OC_SAFETENSORS) ? OC_SAFETENSORS
                       : is_file(dir, OC_BIN)        ? OC_BIN
                                                     : NULL;
    if (!name)
        return cdx_fail(CDX_ERR_MODEL, "%s: no " OC_SAFETENSORS " or " OC_BIN, dir);
    if (!(oc->weights_path = cdx_path_join(dir, name)))
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
    return cdx_weights_open_file(oc->weights_path, w);
}

static cdx_status bindf(cdx_weights *w, const char *name, int ndim, int64_t d0, int64_t d1,
                        int64_t d2, int64_t d3, const float **out)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    return cdx_weights_f32(w, name, ndim, shape, out);
}

/* The blocks under open_clip's names into t (cdx_stack_init'ed). */
static cdx_status bind_blocks(cdx_weights *w, const char *prefix, cdx_stack *t)
{
    char n[256];
    const int64_t C = t->C, F = t->F;
    for (int i = 0; i < t->L; i++) {
        cdx_block_w *l = &t->layers[i];
        const float *in_w, *in_b;
        struct {
            const char *suffix;
            int ndim;
            int64_t d0, d1;
            const float **dst;
        } spec[] = {
            {"ln_1.weight", 1, C, 0, &l->ln1_w}, {"ln_1.bias", 1, C, 0, &l->ln1_b},
            {"attn.in_proj_weight", 2, 3 * C, C, &in_w}, {"attn.in_proj_bias", 1, 3 * C, 0, &in_b},
            {"attn.out_proj.weight", 2, C, C, &l->o_w}, {"attn.out_proj.bias", 1, C, 0, &l->o_b},
            {"ln_2.weight", 1, C, 0, &l->ln2_w}, {"ln_2.bias", 1, C, 0, &l->ln2_b},
            {"mlp.c_fc.weight", 2, F, C, &l->fc1_w}, {"mlp.c_fc.bias", 1, F, 0, &l->fc1_b},
            {"mlp.c_proj.weight", 2, C, F, &l->fc2_w}, {"mlp.c_proj.bias", 1, C, 0, &l->fc2_b},
        };
        for (size_t s = 0; s < sizeof spec / sizeof spec[0]; s++) {
            snprintf(n, sizeof n, "%stransformer.resblocks.%d.%s", prefix, i, spec[s].suffix);
            cdx_status st = bindf(w, n, spec[s].ndim, spec[s].d0, spec[s].d1, 0, 0, spec[s].dst);
            if (st) return st;
        }
        /* nn.MultiheadAttention's in_proj: rows [0,C) q, [C,2C) k, [2C,3C) v */
        l->q_w = in_w;
        l->k_w = in_w + C * C;
        l->v_w = in_w + 2 * C * C;
        l->q_b = in_b;
        l->k_b = in_b + C;
        l->v_b = in_b + 2 * C;
    }
    return CDX_OK;
}

/* (C, E) -> (E, C), the layout cdx_linear multiplies by. */
static cdx_status transposed(const float *src, int C, int E, float **out)
{
    float *d = malloc(sizeof(float) * (size_t)C * (size_t)E);
    if (!d) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    for (int c = 0; c < C; c++)
        for (int e = 0; e < E; e++) d[(size_t)e * C + c] = src[(size_t)c * E + e];
    *out = d;
    return CDX_OK;
}

cdx_status cdx_openclip_bind(cdx_openclip *oc, cdx_weights *w, const cdx_clip_config *cfg,
                             unsigned towers, cdx_stack *text, cdx_stack *vision)
{
    cdx_status st;
    char n[256];
    const float *p;
    const int E = cfg->projection_dim;
    if (towers & CDX_TOWER_TEXT) {
        const cdx_tower_info *t = &cfg->text;
        const char *x = oc->text_prefix;
#define TN(s) (snprintf(n, sizeof n, "%s%s", x, s), n)
        if ((st = bindf(w, TN("token_embedding.weight"), 2, t->vocab_size, t->hidden, 0, 0,
                        &oc->tok_emb)) ||
            (st = bindf(w, TN("positional_embedding"), 2, t->max_positions, t->hidden, 0, 0,
                        &oc->tpos_emb)) ||
            (st = bindf(w, TN("ln_final.weight"), 1, t->hidden, 0, 0, 0, &oc->final_ln_w)) ||
            (st = bindf(w, TN("ln_final.bias"), 1, t->hidden, 0, 0, 0, &oc->final_ln_b)) ||
            (st = bindf(w, TN("text_projection"), 2, t->hidden, E, 0, 0, &p)) ||
            (st = transposed(p, t->hidden, E, &oc->text_proj)) ||
            (st = cdx_stack_init(text, t, cfg->text_act)) || (st = bind_blocks(w, x, text)))
            return st;
#undef TN
    }
    if (towers & CDX_TOWER_VISION) {
        const cdx_tower_info *v = &cfg->vision;
        const int64_t side = v->image_size / v->patch_size, N = side * side + 1, C = v->hidden;
        if ((st = bindf(w, "visual.conv1.weight", 4, C, 3, v->patch_size, v->patch_size,
                        &oc->patch_w)) ||
            (st = bindf(w, "visual.class_embedding", 1, C, 0, 0, 0, &oc->cls)) ||
            (st = bindf(w, "visual.positional_embedding", 2, N, C, 0, 0, &oc->vpos_emb)) ||
            (st = bindf(w, "visual.ln_pre.weight", 1, C, 0, 0, 0, &oc->pre_ln_w)) ||
            (st = bindf(w, "visual.ln_pre.bias", 1, C, 0, 0, 0, &oc->pre_ln_b)) ||
            (st = bindf(w, "visual.ln_post.weight", 1, C, 0, 0, 0, &oc->post_ln_w)) ||
            (st = bindf(w, "visual.ln_post.bias", 1, C, 0, 0, 0, &oc->post_ln_b)) ||
            (st = bindf(w, "visual.proj", 2, C, E, 0, 0, &p)) ||
            (st = transposed(p, (int)C, E, &oc->vis_proj)) ||
            (st = cdx_stack_init(vision, v, cfg->vision_act)) ||
            (st = bind_blocks(w, "visual.", vision)))
            return st;
    }
    {
        const cdx_tensor_info *ti = cdx_weights_find(w, "logit_scale");
        if ((st = bindf(w, "logit_scale", ti && ti->ndim == 1, 1, 0, 0, 0, &p))) return st;
        oc->logit_scale = expf(p[0]);
    }
    return CDX_OK;
}

void cdx_openclip_free(cdx_openclip *oc)
{
    if (!oc) return;
    free(oc->weights_path);
    free(oc->text_proj);
    free(oc->vis_proj);
    free(oc);
}

/* ------------------------------------------------------------ vocabulary */

#ifndef CDX_DATADIR
#define CDX_DATADIR "/usr/local/share/clipdex"
#endif

cdx_status cdx_openclip_vocab_paths(char **vocab_json, char **merges_txt)
{
    /* CLIPDEX_CLIP_VOCAB (the directory itself), then the installed copy,
     * then the source tree the build came from (running from build/
     * without installing). */
    const char *env = getenv("CLIPDEX_CLIP_VOCAB");
    const char *cands[3] = {NULL, CDX_DATADIR,
#ifdef CDX_SRC_DATADIR
                            CDX_SRC_DATADIR
#else
                            NULL
#endif
    };
    for (int i = 0; i < 3; i++) {
        /* a directory given by the user is the only one looked at */
        if (env && *env ? i > 0 : !cands[i]) continue;
        char *d = i == 0 ? strdup(env) : cdx_path_join(cands[i], "clip");
        if (!d) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
        if (is_file(d, "vocab.json") && is_file(d, "merges.txt")) {
            *vocab_json = cdx_path_join(d, "vocab.json");
            *merges_txt = cdx_path_join(d, "merges.txt");
            free(d);
            if (!*vocab_json || !*merges_txt) {
                free(*vocab_json);
                free(*merges_txt);
                return cdx_fail(CDX_ERR_NOMEM, "out of memory");
            }
            return CDX_OK;
        }
        free(d);
    }
    if (env && *env)
        return cdx_fail(CDX_ERR_IO, "%s (CLIPDEX_CLIP_VOCAB): no vocab.json and merges.txt there",
                        env);
    return cdx_fail(CDX_ERR_IO, "the CLIP vocabulary clipdex carries for OpenCLIP models "
                    "(vocab.json, merges.txt) is not in " CDX_DATADIR "/clip"
                    " (set CLIPDEX_CLIP_VOCAB to a directory holding them)");
}
