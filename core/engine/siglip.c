/*
 * siglip.c - SigLIP and SigLIP 2 (fixed resolution), as transformers'
 * SiglipModel runs them (modeling_siglip.py).
 *
 * Both towers are pre-LayerNorm transformers with CLIP's block and CLIP's
 * tensor names (layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2,
 * mlp.fc1/fc2), gelu_pytorch_tanh and eps 1e-6 unless config.json says
 * otherwise:
 *
 * Vision: patches by a stride-P convolution WITH bias (im2col + GEMM),
 *   position embeddings, no class token, no pre-LN; blocks; post_layernorm
 *   of every token; then the multi-head attention pooling head: a learned
 *   probe queries the tokens through nn.MultiheadAttention (fused
 *   in_proj, out_proj), h = that + MLP(LayerNorm(that)).  The pooled
 *   vector is the embedding (no projection).
 * Text: token + position embeddings over the fixed 64-long padded
 *   sequence, full (non-causal) attention, final_layer_norm, the LAST
 *   position through `head` (a linear with bias).  SigLIP's processor
 *   passes no attention mask, so the padding takes part; SigLIP 2's
 *   tokenizer returns one, and transformers then keeps padded keys out of
 *   every softmax.  With a mask only the real tokens and the last
 *   position are run: the other padded rows are never looked at.
 * Scoring: sigmoid(exp(logit_scale) * cos + logit_bias), per label.
 *
 * The six products of every block run at f32, bf16 or int8 as CLIP's do
 * (qlinear.h); the pooling head stays float32 (one query per image: ~1%
 * of a pass).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "internal.h"
#include "kernels.h"
#include "linear.h"
#include "model_config.h"
#include "openclip.h"
#include "qlinear.h"
#include "siglip.h"
#include "sptok.h"
#include "transformer.h"
#include "weights.h"

#define CONFIG_MAX_BYTES (1u << 20)
#define DIM_MAX (1 << 16)
#define VOCAB_MAX (1 << 22)
/* Rows (images x tokens) per vision pass: 16 images of ViT-B/16-224, 5 of
 * SO400M/14-384, so the activations stay near 100 MB. */
#define VISION_ROWS 4096
#define VISION_CHUNK_MAX 16

struct cdx_siglip {
    char *dir;
    unsigned towers;
    cdx_tower_info ti, vi;
    cdx_act tact, vact;
    int E;
    cdx_weights *w;
    int32_t pad;  /* padding id */
    int masks;    /* the tokenizer's attention mask reaches the model */

    /* text */
    const float *tok_emb, *tpos, *fln_w, *fln_b, *head_w, *head_b;
    cdx_stack text;
    cdx_block_acts ta;
    float *scores; /* (T) attention scratch */
    int *rowpos;   /* (T) position of each row run */

    /* vision */
    const float *patch_w, *patch_b, *vpos, *pln_w, *pln_b;
    const float *probe, *in_w, *in_b, *hout_w, *hout_b, *hln_w, *hln_b;
    const float *hfc1_w, *hfc1_b, *hfc2_w, *hfc2_b;
    float *qprobe; /* (C) the probe's query, bias added, scaled by D^-1/2 */
    cdx_stack vision;
    cdx_block_acts va;
    float *col;               /* im2col patches */
    float *ho, *hr, *hm, *hs; /* head: (chunk,C) x2, (chunk,F), (N) scores */
    int chunk;

    cdx_qscratch qs;
    cdx_qlinear *patch_q;
    float *block; /* one allocation behind every buffer above */
};

/* ---------------------------------------------------------------- detection */

static cJSON *read_json(const char *path, cdx_status *st)
{
    char *text = NULL;
    cJSON *root = NULL;
    *st = cdx_read_file(path, CONFIG_MAX_BYTES, &text, NULL);
    if (*st) return NULL;
    root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        *st = cdx_fail(CDX_ERR_MODEL, "%s: not a JSON object", path);
        return NULL;
    }
    return root;
}

static int file_exists(const char *dir, const char *name)
{
    char *p = cdx_path_join(dir, name);
    int r = p && access(p, F_OK) == 0;
    free(p);
    return r;
}

int cdx_siglip_detect(const char *dir, cdx_family *family)
{
    char *path = cdx_path_join(dir, "config.json");
    cdx_status st;
    int yes = 0;
    if (!path) return 0;
    if (access(path, F_OK) == 0) {
        cJSON *root = read_json(path, &st);
        const cJSON *mt = root ? cJSON_GetObjectItemCaseSensitive(root, "model_type") : NULL;
        if (cJSON_IsString(mt) &&
            (strcmp(mt->valuestring, "siglip") == 0 || strcmp(mt->valuestring, "siglip2") == 0)) {
            yes = 1;
            /* SigLIP 2 is told apart by its Gemma tokenizer. */
            *family = file_exists(dir, "tokenizer.model") && !file_exists(dir, "spiece.model")
                          ? CDX_FAMILY_SIGLIP2
                          : CDX_FAMILY_SIGLIP;
        }
        cJSON_Delete(root);
    }
    free(path);
    return yes;
}

/* ---------------------------------------------------------------- config */

/* config.json with SiglipTextConfig / SiglipVisionConfig defaults. */
static cdx_status load_config(cdx_siglip *s, const char *path)
{
    cdx_status st;
    cJSON *root = read_json(path, &st);
    const cJSON *tc, *vc, *mt, *uh;
    cdx_tower_info *t = &s->ti, *v = &s->vi;
    if (!root) return st;
    mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "siglip2") == 0) {
        st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: a NaFlex (variable resolution) SigLIP 2 model "
                      "(model_type \"siglip2\") is not supported; use a fixed-resolution "
                      "checkpoint (model_type \"siglip\", e.g. google/siglip2-base-patch16-224)",
                      path);
        goto out;
    }
    tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    if ((tc && !cJSON_IsObject(tc)) || (vc && !cJSON_IsObject(vc))) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: text_config and vision_config must be objects", path);
        goto out;
    }
#define TRY(x) do { if ((st = (x)) != CDX_OK) goto out; } while (0)
    TRY(cdx_config_int(path, tc, "text_config", "hidden_size", 768, DIM_MAX, &t->hidden));
    TRY(cdx_config_int(path, tc, "text_config", "intermediate_size", 3072, DIM_MAX, &t->intermediate));
    TRY(cdx_config_int(path, tc, "text_config", "num_hidden_layers", 12, 1024, &t->layers));
    TRY(cdx_config_int(path, tc, "text_config", "num_attention_heads", 12, DIM_MAX, &t->heads));
    TRY(cdx_config_int(path, tc, "text_config", "max_position_embeddings", 64, 4096, &t->max_positions));
    TRY(cdx_config_int(path, tc, "text_config", "vocab_size", 32000, VOCAB_MAX, &t->vocab_size));
    TRY(cdx_config_int(path, tc, "text_config", "projection_size", t->hidden, DIM_MAX, &s->E));
    TRY(cdx_config_act(path, tc, "text_config", "gelu_pytorch_tanh", &t->act, &s->tact));
    TRY(cdx_config_eps(path, tc, "text_config", 1e-6, &t->ln_eps));
    TRY(cdx_config_int(path, vc, "vision_config", "hidden_size", 768, DIM_MAX, &v->hidden));
    TRY(cdx_config_int(path, vc, "vision_config", "intermediate_size", 3072, DIM_MAX, &v->intermediate));
    TRY(cdx_config_int(path, vc, "vision_config", "num_hidden_layers", 12, 1024, &v->layers));
    TRY(cdx_config_int(path, vc, "vision_config", "num_attention_heads", 12, DIM_MAX, &v->heads));
    TRY(cdx_config_int(path, vc, "vision_config", "image_size", 224, 4096, &v->image_size));
    TRY(cdx_config_int(path, vc, "vision_config", "patch_size", 16, 4096, &v->patch_size));
    TRY(cdx_config_act(path, vc, "vision_config", "gelu_pytorch_tanh", &v->act, &s->vact));
    TRY(cdx_config_eps(path, vc, "vision_config", 1e-6, &v->ln_eps));
#undef TRY
    if (t->hidden % t->heads || v->hidden % v->heads) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: hidden_size is not divisible by num_attention_heads", path);
        goto out;
    }
    if (t->max_positions < 2) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: text_config.max_position_embeddings must be at least 2", path);
        goto out;
    }
    /* image_size need not be a multiple of patch_size: the stride-P
     * convolution sees floor(S/P) patches a side and the last S mod P
     * rows and columns not at all (google/siglip2-so400m-patch14-384:
     * 27 x 27 patches of 384 pixels). */
    if (v->patch_size > v->image_size) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: vision_config.patch_size %d is larger than image_size %d",
                      path, v->patch_size, v->image_size);
        goto out;
    }
    {
        const cJSON *nc = vc ? cJSON_GetObjectItemCaseSensitive(vc, "num_channels") : NULL;
        if (nc && !cJSON_IsNull(nc) && !(cJSON_IsNumber(nc) && nc->valuedouble == 3)) {
            st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: vision_config.num_channels must be 3", path);
            goto out;
        }
    }
    uh = vc ? cJSON_GetObjectItemCaseSensitive(vc, "vision_use_head") : NULL;
    if (cJSON_IsFalse(uh)) {
        st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: vision_config.vision_use_head false (no pooling "
                      "head) is not supported", path);
        goto out;
    }
    /* Image and text embeddings share one space: the vision pooler's
     * width must be the text head's. */
    if ((s->towers & CDX_TOWER_VISION) && (s->towers & CDX_TOWER_TEXT) && s->E != v->hidden) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: text_config.projection_size %d differs from "
                      "vision_config.hidden_size %d", path, s->E, v->hidden);
        goto out;
    }
    if (!(s->towers & CDX_TOWER_TEXT)) s->E = v->hidden;
out:
    cJSON_Delete(root);
    return st;
}

/* preprocessor_config.json as SiglipImageProcessor reads it: resize to
 * size {"height","width"} (no crop), rescale, normalise; its defaults
 * (224x224, BICUBIC, mean/std 0.5) where a key is missing. */
static cdx_status load_preprocess(cdx_siglip *s, cdx_preprocess_cfg *pre)
{
    cdx_status st = CDX_OK;
    char *path = cdx_path_join(s->dir, "preprocessor_config.json");
    cJSON *root = NULL;
    if (!path) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    cdx_preprocess_cfg_default(pre);
    if (access(path, F_OK) == 0) {
        if (!(root = read_json(path, &st))) goto out;
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "image_processor_type");
        if (cJSON_GetObjectItemCaseSensitive(root, "max_num_patches") ||
            (cJSON_IsString(it) && strncmp(it->valuestring, "Siglip2ImageProcessor", 21) == 0)) {
            st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: a NaFlex (variable resolution) SigLIP 2 "
                          "processor (max_num_patches) is not supported; use a fixed-resolution "
                          "checkpoint", path);
            goto out;
        }
        if ((st = cdx_preprocess_cfg_load(path, pre))) goto out;
    } else {
        CDX_WARN("%s: missing, using SiglipImageProcessor defaults", path);
    }
    /* SiglipImageProcessor's defaults differ from CLIP's. */
    static const char *const keys[] = {"image_mean", "image_std", "resample", "size"};
    for (int i = 0; i < 4; i++)
        if (!root || !cJSON_GetObjectItemCaseSensitive(root, keys[i])) switch (i) {
            case 0: pre->image_mean[0] = pre->image_mean[1] = pre->image_mean[2] = 0.5f; break;
            case 1: pre->image_std[0] = pre->image_std[1] = pre->image_std[2] = 0.5f; break;
            case 2: pre->resample = 3; break;
            case 3: pre->resize_width = pre->resize_height = 224; break;
            }
    /* Resize to the fixed size, never crop (the processor has no crop). */
    if (pre->resize_width == 0) pre->resize_width = pre->resize_height = pre->shortest_edge;
    pre->do_center_crop = 0;
    pre->crop_width = pre->resize_width;
    pre->crop_height = pre->resize_height;
    pre->shortest_edge = pre->resize_width < pre->resize_height ? pre->resize_width
                                                                : pre->resize_height;
    if ((s->towers & CDX_TOWER_VISION) &&
        (pre->resize_width != s->vi.image_size || pre->resize_height != s->vi.image_size || !pre->do_resize)) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: resize to %dx%d does not match vision_config.image_size %d",
                      path, pre->resize_width, pre->resize_height, s->vi.image_size);
        goto out;
    }
    if (pre->resample != 2 && pre->resample != 3) {
        st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: resample %d is not supported (2 BILINEAR or 3 BICUBIC)",
                      path, pre->resample);
        goto out;
    }
out:
    cJSON_Delete(root);
    free(path);
    return st;
}

/* ---------------------------------------------------------------- binding */

static cdx_status bind(cdx_siglip *s, const char *name, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int64_t d3, const float **out)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    return cdx_weights_f32(s->w, name, ndim, shape, out);
}

static cdx_status bind_text(cdx_siglip *s)
{
    const cdx_tower_info *t = &s->ti;
    cdx_status st;
    if ((st = bind(s, "text_model.embeddings.token_embedding.weight", 2, t->vocab_size, t->hidden,
                   0, 0, &s->tok_emb)) ||
        (st = bind(s, "text_model.embeddings.position_embedding.weight", 2, t->max_positions,
                   t->hidden, 0, 0, &s->tpos)) ||
        (st = bind(s, "text_model.final_layer_norm.weight", 1, t->hidden, 0, 0, 0, &s->fln_w)) ||
        (st = bind(s, "text_model.final_layer_norm.bias", 1, t->hidden, 0, 0, 0, &s->fln_b)) ||
        (st = bind(s, "text_model.head.weight", 2, s->E, t->hidden, 0, 0, &s->head_w)) ||
        (st = bind(s, "text_model.head.bias", 1, s->E, 0, 0, 0, &s->head_b)))
        return st;
    if ((st = cdx_stack_init(&s->text, t, s->tact))) return st;
    return cdx_stack_bind_hf(&s->text, s->w, "text_model");
}

static cdx_status bind_vision(cdx_siglip *s)
{
    const cdx_tower_info *v = &s->vi;
    const int64_t side = v->image_size / v->patch_size, N = side * side, C = v->hidden;
    const int64_t F = v->intermediate, P = v->patch_size;
    cdx_status st;
    if ((st = bind(s, "vision_model.embeddings.patch_embedding.weight", 4, C, 3, P, P, &s->patch_w)) ||
        (st = bind(s, "vision_model.embeddings.patch_embedding.bias", 1, C, 0, 0, 0, &s->patch_b)) ||
        (st = bind(s, "vision_model.embeddings.position_embedding.weight", 2, N, C, 0, 0, &s->vpos)) ||
        (st = bind(s, "vision_model.post_layernorm.weight", 1, C, 0, 0, 0, &s->pln_w)) ||
        (st = bind(s, "vision_model.post_layernorm.bias", 1, C, 0, 0, 0, &s->pln_b)) ||
        (st = bind(s, "vision_model.head.probe", 3, 1, 1, C, 0, &s->probe)) ||
        (st = bind(s, "vision_model.head.attention.in_proj_weight", 2, 3 * C, C, 0, 0, &s->in_w)) ||
        (st = bind(s, "vision_model.head.attention.in_proj_bias", 1, 3 * C, 0, 0, 0, &s->in_b)) ||
        (st = bind(s, "vision_model.head.attention.out_proj.weight", 2, C, C, 0, 0, &s->hout_w)) ||
        (st = bind(s, "vision_model.head.attention.out_proj.bias", 1, C, 0, 0, 0, &s->hout_b)) ||
        (st = bind(s, "vision_model.head.layernorm.weight", 1, C, 0, 0, 0, &s->hln_w)) ||
        (st = bind(s, "vision_model.head.layernorm.bias", 1, C, 0, 0, 0, &s->hln_b)) ||
        (st = bind(s, "vision_model.head.mlp.fc1.weight", 2, F, C, 0, 0, &s->hfc1_w)) ||
        (st = bind(s, "vision_model.head.mlp.fc1.bias", 1, F, 0, 0, 0, &s->hfc1_b)) ||
        (st = bind(s, "vision_model.head.mlp.fc2.weight", 2, C, F, 0, 0, &s->hfc2_w)) ||
        (st = bind(s, "vision_model.head.mlp.fc2.bias", 1, C, 0, 0, 0, &s->hfc2_b)))
        return st;
    if ((st = cdx_stack_init(&s->vision, v, s->vact))) return st;
    return cdx_stack_bind_hf(&s->vision, s->w, "vision_model");
}

/* Every buffer in one allocation. */
static cdx_status alloc_buffers(cdx_siglip *s)
{
    size_t total = 0, off = 0;
    size_t T = 0, Ct = 0, Ft = 0, R = 0, Cv = 0, Fv = 0, NP = 0, PP = 0, B = 0;
    if (s->towers & CDX_TOWER_TEXT) {
        T = (size_t)s->ti.max_positions;
        Ct = (size_t)s->ti.hidden;
        Ft = (size_t)s->ti.intermediate;
        total += 5 * T * Ct + T * Ft + T;
    }
    if (s->towers & CDX_TOWER_VISION) {
        size_t side = (size_t)(s->vi.image_size / s->vi.patch_size);
        NP = side * side;
        B = VISION_ROWS / NP;
        B = B < 1 ? 1 : B > VISION_CHUNK_MAX ? VISION_CHUNK_MAX : B;
        s->chunk = (int)B;
        R = B * NP;
        Cv = (size_t)s->vi.hidden;
        Fv = (size_t)s->vi.intermediate;
        PP = 3 * (size_t)s->vi.patch_size * (size_t)s->vi.patch_size;
        total += 5 * R * Cv + R * Fv + R * PP + 2 * B * Cv + B * Fv + NP + Cv;
    }
    /* Sizes come from a validated config (dims <= 65536). */
    if (!(s->block = malloc(total * sizeof(float) + 64)) ||
        !(s->rowpos = malloc((T ? T : 1) * sizeof *s->rowpos)))
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for activations", s->dir);
#define CARVE(dst, n) do { (dst) = s->block + off; off += (n); } while (0)
    if (T) {
        CARVE(s->ta.x, T * Ct); CARVE(s->ta.h, T * Ct); CARVE(s->ta.q, T * Ct);
        CARVE(s->ta.k, T * Ct); CARVE(s->ta.v, T * Ct); CARVE(s->ta.mlp, T * Ft);
        CARVE(s->scores, T);
    }
    if (R) {
        CARVE(s->va.x, R * Cv); CARVE(s->va.h, R * Cv); CARVE(s->va.q, R * Cv);
        CARVE(s->va.k, R * Cv); CARVE(s->va.v, R * Cv); CARVE(s->va.mlp, R * Fv);
        CARVE(s->col, R * PP); CARVE(s->ho, B * Cv); CARVE(s->hr, B * Cv);
        CARVE(s->hm, B * Fv); CARVE(s->hs, NP); CARVE(s->qprobe, Cv);
    }
#undef CARVE
    return CDX_OK;
}

/* The probe's query never changes: compute it once. */
static void prepare_probe(cdx_siglip *s)
{
    const int C = s->vi.hidden, D = C / s->vi.heads;
    cdx_linear(s->qprobe, s->probe, s->in_w, 1, C, C);
    cdx_add_bias(s->qprobe, s->in_b, 1, C);
    cdx_scale(s->qprobe, C, 1.0f / sqrtf((float)D));
}

cdx_status cdx_siglip_open(const char *dir, unsigned towers, cdx_family family,
                           cdx_siglip **out, cdx_model_info *info, cdx_preprocess_cfg *pre,
                           cdx_tokenizer **tok)
{
    cdx_status st;
    char *path = NULL, *cfg = NULL;
    cdx_sptok *sp = NULL;
    cdx_siglip *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
    }
    s->towers = towers;
    if (!(path = cdx_path_join(dir, "config.json"))) goto nomem;
    if ((st = load_config(s, path))) goto fail;
    free(path);
    path = NULL;
    if ((st = load_preprocess(s, pre))) goto fail;

    if (towers & CDX_TOWER_TEXT) {
        const char *name = family == CDX_FAMILY_SIGLIP2 ? "tokenizer.model" : "spiece.model";
        if (!(path = cdx_path_join(dir, name)) ||
            !(cfg = cdx_path_join(dir, "tokenizer_config.json")))
            goto nomem;
        if (access(path, F_OK) != 0) {
            st = cdx_fail(CDX_ERR_MODEL, "%s: missing: a SigLIP model needs its SentencePiece "
                          "tokenizer (spiece.model, or tokenizer.model for SigLIP 2)", path);
            goto fail;
        }
        if ((st = cdx_sptok_open(path, cfg, family == CDX_FAMILY_SIGLIP2 ? CDX_SPTOK_GEMMA
                                                                          : CDX_SPTOK_SIGLIP,
                                 s->ti.max_positions, &sp)))
            goto fail;
        if (cdx_sptok_vocab(sp) > s->ti.vocab_size) {
            st = cdx_fail(CDX_ERR_MODEL, "%s: %d pieces, more than text_config.vocab_size %d",
                          path, cdx_sptok_vocab(sp), s->ti.vocab_size);
            goto fail;
        }
        free(path);
        path = NULL;
        s->pad = cdx_sptok_pad(sp);
        s->masks = cdx_sptok_masks(sp);
        if (!(*tok = cdx_tokenizer_wrap_sp(sp))) goto nomem;
        sp = NULL;
    }
    if ((st = cdx_weights_open(dir, &s->w))) goto fail;
    if ((towers & CDX_TOWER_TEXT) && (st = bind_text(s))) goto fail;
    if ((towers & CDX_TOWER_VISION) && (st = bind_vision(s))) goto fail;
    {
        const float *ls, *lb;
        const cdx_tensor_info *a = cdx_weights_find(s->w, "logit_scale");
        const cdx_tensor_info *b = cdx_weights_find(s->w, "logit_bias");
        if ((st = bind(s, "logit_scale", a && a->ndim == 0 ? 0 : 1, 1, 0, 0, 0, &ls)) ||
            (st = bind(s, "logit_bias", b && b->ndim == 0 ? 0 : 1, 1, 0, 0, 0, &lb)))
            goto fail;
        info->logit_scale = expf(ls[0]);
        info->logit_bias = lb[0];
    }
    if ((st = alloc_buffers(s))) goto fail;
    if (towers & CDX_TOWER_VISION) prepare_probe(s);

    info->family = family;
    info->scoring = CDX_SCORING_SIGMOID;
    info->projection_dim = s->E;
    info->text = s->ti;
    info->vision = s->vi;
    info->weights_file = cdx_weights_path(s->w);
    info->dtype = cdx_weights_dtype_name(s->w);
    info->n_params = 0;
    for (int i = 0; i < cdx_weights_count(s->w); i++) {
        const cdx_tensor_info *t = cdx_weights_at(s->w, i);
        if (!strstr(t->name, "position_ids")) info->n_params += t->numel;
    }
    free(path);
    free(cfg);
    *out = s;
    return CDX_OK;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
fail:
    free(path);
    free(cfg);
    cdx_sptok_free(sp);
    if (tok && *tok) {
        cdx_tokenizer_free(*tok);
        *tok = NULL;
    }
    cdx_siglip_close(s);
    return st;
}

void cdx_siglip_close(cdx_siglip *s)
{
    if (!s) return;
    cdx_stack_free(&s->text);
    cdx_stack_free(&s->vision);
    cdx_qlinear_free(s->patch_q);
    cdx_qscratch_release(&s->qs);
    free(s->text.layers);
    free(s->vision.layers);
    free(s->block);
    free(s->rowpos);
    cdx_weights_close(s->w);
    free(s->dir);
    free(s);
}

/* ---------------------------------------------------------------- forward */

cdx_status cdx_siglip_encode_tokens(cdx_siglip *s, const int32_t *ids, int n, float *out)
{
    const int T = s->ti.max_positions, C = s->ti.hidden, V = s->ti.vocab_size;
    cdx_block_acts *a = &s->ta;
    int R = 0, nk;
    if (n != T)
        return cdx_fail(CDX_ERR_ARG, "%s: %d tokens; a SigLIP text tower takes exactly %d "
                        "(the padded sequence)", s->dir, n, T);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return cdx_fail(CDX_ERR_ARG, "%s: token id %d is outside the vocabulary (%d)", s->dir,
                            (int)ids[t], V);
    if (s->masks) {
        /* The mask keeps the real tokens; the last position is pooled
         * whatever it is, so it is run too (after them, as a query only). */
        for (int t = 0; t < T; t++)
            if (ids[t] != s->pad) s->rowpos[R++] = t;
        nk = R;
        if (nk == 0)
            return cdx_fail(CDX_ERR_ARG, "%s: the token sequence is all padding", s->dir);
        if (ids[T - 1] == s->pad) s->rowpos[R++] = T - 1;
    } else {
        for (int t = 0; t < T; t++) s->rowpos[R++] = t;
        nk = T;
    }
    for (int r = 0; r < R; r++) {
        const int t = s->rowpos[r];
        for (int c = 0; c < C; c++)
            a->x[(int64_t)r * C + c] = s->tok_emb[(int64_t)ids[t] * C + c] + s->tpos[(int64_t)t * C + c];
    }
    for (int i = 0; i < s->text.L; i++)
        cdx_block_run(&s->text, &s->text.layers[i], a, 1, R, s->masks ? CDX_ATTN_PREFIX : CDX_ATTN_FULL,
                      nk, s->scores, &s->qs);
    /* the last position: final LN, head */
    cdx_layernorm(a->h, a->x + (int64_t)(R - 1) * C, s->fln_w, s->fln_b, 1, C, s->text.eps);
    cdx_linear(out, a->h, s->head_w, 1, C, s->E);
    cdx_add_bias(out, s->head_b, 1, s->E);
    return CDX_OK;
}

static void encode_chunk(cdx_siglip *s, const float *pixels, int B, float *out)
{
    const int S = s->vi.image_size, P = s->vi.patch_size, side = S / P, N = side * side;
    const int C = s->vi.hidden, F = s->vi.intermediate, H = s->vi.heads, D = C / H;
    const int64_t R = (int64_t)B * N;
    cdx_block_acts *a = &s->va;

    cdx_im2col(s->col, pixels, B, S, P);
    cdx_lin(&s->qs, s->patch_q, a->x, s->col, s->patch_w, R, 3 * P * P, C);
    cdx_add_bias(a->x, s->patch_b, R, C);
    for (int b = 0; b < B; b++) cdx_add_bias(a->x + (int64_t)b * N * C, s->vpos, 1, N * C);
    for (int i = 0; i < s->vision.L; i++)
        cdx_block_run(&s->vision, &s->vision.layers[i], a, B, N, CDX_ATTN_FULL, 0, NULL, &s->qs);
    cdx_layernorm(a->h, a->x, s->pln_w, s->pln_b, R, C, s->vision.eps);

    /* Pooling head: the probe's query over every token's key and value. */
    cdx_linear(a->k, a->h, s->in_w + (int64_t)C * C, R, C, C);
    cdx_add_bias(a->k, s->in_b + C, R, C);
    cdx_linear(a->v, a->h, s->in_w + (int64_t)2 * C * C, R, C, C);
    cdx_add_bias(a->v, s->in_b + 2 * C, R, C);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *kb = a->k + (int64_t)b * N * C + h * D, *vb = a->v + (int64_t)b * N * C + h * D;
            const float *q = s->qprobe + h * D;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < N; j++) {
                float d = 0.0f;
                for (int c = 0; c < D; c++) d += q[c] * kb[(int64_t)j * C + c];
                s->hs[j] = d;
                if (d > mx) mx = d;
            }
            for (int j = 0; j < N; j++) {
                s->hs[j] = expf(s->hs[j] - mx);
                sum += s->hs[j];
            }
            float *o = s->ho + (int64_t)b * C + h * D;
            for (int c = 0; c < D; c++) o[c] = 0.0f;
            for (int j = 0; j < N; j++) {
                const float p = s->hs[j] / sum;
                for (int c = 0; c < D; c++) o[c] += p * vb[(int64_t)j * C + c];
            }
        }
    /* hr = out_proj(o); pooled = hr + fc2(act(fc1(LN(hr)))) */
    cdx_linear(s->hr, s->ho, s->hout_w, B, C, C);
    cdx_add_bias(s->hr, s->hout_b, B, C);
    cdx_layernorm(s->ho, s->hr, s->hln_w, s->hln_b, B, C, s->vision.eps);
    cdx_linear(s->hm, s->ho, s->hfc1_w, B, C, F);
    cdx_bias_act(s->hm, s->hfc1_b, B, F, s->vision.act);
    cdx_linear(s->ho, s->hm, s->hfc2_w, B, F, C);
    cdx_residual_bias(s->hr, s->ho, s->hfc2_b, B, C);
    memcpy(out, s->hr, sizeof(float) * (size_t)B * (size_t)C);
}

cdx_status cdx_siglip_encode_images(cdx_siglip *s, const float *pixels, int batch, float *out)
{
    const int S = s->vi.image_size, E = s->vi.hidden;
    const int64_t per = 3 * (int64_t)S * S;
    for (int b0 = 0; b0 < batch; b0 += s->chunk) {
        int nb = batch - b0 < s->chunk ? batch - b0 : s->chunk;
        encode_chunk(s, pixels + b0 * per, nb, out + (int64_t)b0 * E);
    }
    return CDX_OK;
}

/* ---------------------------------------------------------------- precision */

cdx_status cdx_siglip_set_precision(cdx_siglip *s, cdx_precision p)
{
    cdx_status st;
    cdx_stack_prepare(&s->text, s->w, CDX_PRECISION_F32);
    cdx_stack_prepare(&s->vision, s->w, CDX_PRECISION_F32);
    cdx_qlinear_free(s->patch_q);
    s->patch_q = NULL;
    if (p == CDX_PRECISION_F32) return CDX_OK;
    s->text.qflags = CDX_QL_FEW_ROWS; /* mostly one query of a few tokens */
    s->text.cache_tower = "text";
    s->vision.cache_tower = "vision";
    if (((s->towers & CDX_TOWER_TEXT) && (st = cdx_stack_prepare(&s->text, s->w, p))) ||
        ((s->towers & CDX_TOWER_VISION) && (st = cdx_stack_prepare(&s->vision, s->w, p))) ||
        ((s->towers & CDX_TOWER_VISION) &&
         (st = cdx_qlinear_new(s->patch_w, 3 * s->vi.patch_size * s->vi.patch_size, s->vi.hidden,
                               p, NULL, &s->patch_q)))) {
        cdx_stack_prepare(&s->text, s->w, CDX_PRECISION_F32);
        cdx_stack_prepare(&s->vision, s->w, CDX_PRECISION_F32);
        return cdx_fail_prefix(st, s->dir);
    }
    return CDX_OK;
}

/* ---------------------------------------------------------------- tokenizer */

cdx_status cdx_tokenizer_open_dir(const char *dir, cdx_tokenizer **out)
{
    cdx_family fam;
    cdx_status st;
    if (!dir || !out) return cdx_fail(CDX_ERR_ARG, "cdx_tokenizer_open_dir: NULL argument");
    {
        /* OpenCLIP: open_clip's tokenizer on the vocabulary clipdex
         * carries, whatever files the directory has (openclip.h) */
        char *real = NULL, *vocab = NULL, *merges = NULL;
        cdx_format fmt;
        if ((st = cdx_model_locate(dir, &real, &fmt))) return st;
        free(real);
        if (fmt == CDX_FORMAT_OPENCLIP) {
            if (!(st = cdx_openclip_vocab_paths(&vocab, &merges)))
                st = cdx_tokenizer_open_openclip(vocab, merges, out);
            free(vocab);
            free(merges);
            return st;
        }
    }
    if (cdx_siglip_detect(dir, &fam)) {
        /* The context length: config.json's, as the model pads to it. */
        cdx_siglip s;
        char *path = cdx_path_join(dir, "config.json");
        char *model = cdx_path_join(dir, fam == CDX_FAMILY_SIGLIP2 ? "tokenizer.model" : "spiece.model");
        char *cfg = cdx_path_join(dir, "tokenizer_config.json");
        cdx_sptok *sp = NULL;
        memset(&s, 0, sizeof s);
        s.towers = CDX_TOWER_TEXT;
        if (!path || !model || !cfg) st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        else if (!(st = load_config(&s, path))) {
            if (access(model, F_OK) != 0)
                st = cdx_fail(CDX_ERR_MODEL, "%s: missing: a SigLIP model needs its SentencePiece "
                              "tokenizer (spiece.model, or tokenizer.model for SigLIP 2)", model);
            else if (!(st = cdx_sptok_open(model, cfg, fam == CDX_FAMILY_SIGLIP2 ? CDX_SPTOK_GEMMA
                                                                              : CDX_SPTOK_SIGLIP,
                                           s.ti.max_positions, &sp)) &&
                     !(*out = cdx_tokenizer_wrap_sp(sp))) {
                cdx_sptok_free(sp);
                st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            }
        }
        free(path);
        free(model);
        free(cfg);
        return st;
    }
    char *vocab = cdx_path_join(dir, "vocab.json"), *merges = cdx_path_join(dir, "merges.txt");
    if (!vocab || !merges) st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
    else st = cdx_tokenizer_open(vocab, merges, out);
    free(vocab);
    free(merges);
    return st;
}

/* ---------------------------------------------------------------- training */

cdx_status cdx_siglip_train_config(const char *dir, cdx_clip_config *cfg, int *masks, int32_t *pad)
{
    cdx_siglip s;
    cdx_family fam = CDX_FAMILY_SIGLIP;
    cdx_sptok *sp = NULL;
    cdx_status st;
    char *path = cdx_path_join(dir, "config.json"), *model = NULL, *tcfg = NULL;
    memset(&s, 0, sizeof s);
    s.towers = CDX_TOWER_TEXT | CDX_TOWER_VISION;
    cdx_siglip_detect(dir, &fam);
    if (!path || !(model = cdx_path_join(dir, fam == CDX_FAMILY_SIGLIP2 ? "tokenizer.model" : "spiece.model")) ||
        !(tcfg = cdx_path_join(dir, "tokenizer_config.json"))) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = load_config(&s, path))) goto out;
    if (access(model, F_OK) != 0) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: missing: a SigLIP model needs its SentencePiece "
                      "tokenizer (spiece.model, or tokenizer.model for SigLIP 2)", model);
        goto out;
    }
    if ((st = cdx_sptok_open(model, tcfg, fam == CDX_FAMILY_SIGLIP2 ? CDX_SPTOK_GEMMA : CDX_SPTOK_SIGLIP,
                             s.ti.max_positions, &sp)))
        goto out;
    cfg->projection_dim = s.E;
    cfg->text = s.ti;
    cfg->vision = s.vi;
    cfg->text_act = s.tact;
    cfg->vision_act = s.vact;
    *masks = cdx_sptok_masks(sp);
    *pad = cdx_sptok_pad(sp);
out:
    cdx_sptok_free(sp);
    free(path);
    free(model);
    free(tcfg);
    return st;
}
