/*
 * model.c - the CLIP model: open a Hugging Face model directory, bind the
 * checkpoint's tensors to the two towers, and run them.
 *
 * Both towers are pre-LayerNorm transformers whose blocks run through
 * transformer.h (shared with every family), act quick_gelu or gelu.
 *
 * Vision: patches (a stride-P convolution without bias, done as im2col +
 * one GEMM), class token prepended, position embeddings, pre_layrnorm,
 * blocks, post_layernorm of the class token, visual_projection.
 * Text: token + position embeddings, causal blocks, final_layer_norm,
 * the row of the first end-of-text token, text_projection.  Because
 * attention is causal, only the real tokens are run (no padding to 77):
 * rows after the end token cannot influence it.
 *
 * Weights stay where cdx_weights put them (mmap'd F32, or converted
 * copies); activations for the largest batch are allocated in one block at
 * open, so inference does not allocate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_config.h"
#include "internal.h"
#include "openclip.h"
#include "kernels.h"
#include "linear.h"
#include "qlinear.h"
#include "siglip.h"
#include "pool.h"
#include "transformer.h"
#include "weights.h"

/* Images per vision pass: enough rows (16 x 50) for sgemm to run at full
 * speed, small enough that activations stay ~35 MB for ViT-B/32. */
#define VISION_CHUNK 16

/* Activation buffers, all (rows, width) row-major; rows = B*N or T. */
struct acts {
    cdx_block_acts b; /* the blocks' residual stream and scratch */
    float *col;       /* vision: (B*(N-1), 3*P*P) im2col patches */
    int64_t rows;
};

struct cdx_model {
    char *dir;
    unsigned towers;
    cdx_clip_config cfg;
    cdx_model_info info;
    cdx_preprocess_cfg pre;
    cdx_tokenizer *tok;
    cdx_weights *w;
    char *weights_path;

    /* text: token_emb (V,Ct), pos_emb (T,Ct), final LN (Ct), proj (E,Ct) */
    const float *tok_emb, *tpos_emb, *final_ln_w, *final_ln_b, *text_proj;
    cdx_stack text;
    /* vision: cls (Cv), patch (Cv,3,P,P), pos (N,Cv), pre/post LN (Cv), proj (E,Cv) */
    const float *cls, *patch_w, *vpos_emb, *pre_ln_w, *pre_ln_b, *post_ln_w, *post_ln_b, *vis_proj;
    cdx_stack vision;

    float *act_block; /* one allocation behind tacts and vacts */
    struct acts tacts, vacts;

    cdx_precision prec; /* what the blocks' products run at (never AUTO) */
    const char *prec_why;
    cdx_qscratch qs;    /* reduced precision: converted inputs */
    cdx_qlinear *patch_q; /* the patch embedding at reduced precision */

    /* SigLIP / SigLIP 2 (siglip.c): when set, siglip.c runs the model and
     * of the fields above only dir, towers, info, pre, tok, prec and
     * prec_why are used. */
    cdx_siglip *sig;
    /* OpenCLIP (openclip.c): what its binding owns (the transposed
     * projections); NULL for other families */
    cdx_openclip *oc;
    char *config_file; /* info.config_file (every family) */
};

/* ---------------------------------------------------------------- binding */

static cdx_status bind(cdx_model *m, const char *name, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int64_t d3, const float **out)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    return cdx_weights_f32(m->w, name, ndim, shape, out);
}

static cdx_status bind_text(cdx_model *m)
{
    const cdx_tower_info *ti = &m->cfg.text;
    cdx_status st;
    if ((st = cdx_stack_init(&m->text, ti, m->cfg.text_act)) ||
        (st = bind(m, "text_model.embeddings.token_embedding.weight", 2, ti->vocab_size, ti->hidden,
                   0, 0, &m->tok_emb)) ||
        (st = bind(m, "text_model.embeddings.position_embedding.weight", 2, ti->max_positions,
                   ti->hidden, 0, 0, &m->tpos_emb)) ||
        (st = bind(m, "text_model.final_layer_norm.weight", 1, ti->hidden, 0, 0, 0, &m->final_ln_w)) ||
        (st = bind(m, "text_model.final_layer_norm.bias", 1, ti->hidden, 0, 0, 0, &m->final_ln_b)) ||
        (st = bind(m, "text_projection.weight", 2, m->cfg.projection_dim, ti->hidden, 0, 0,
                   &m->text_proj)))
        return st;
    return cdx_stack_bind_hf(&m->text, m->w, "text_model");
}

static cdx_status bind_vision(cdx_model *m)
{
    const cdx_tower_info *vi = &m->cfg.vision;
    const int64_t side = vi->image_size / vi->patch_size, N = side * side + 1;
    cdx_status st;
    if ((st = cdx_stack_init(&m->vision, vi, m->cfg.vision_act)) ||
        (st = bind(m, "vision_model.embeddings.class_embedding", 1, vi->hidden, 0, 0, 0, &m->cls)) ||
        (st = bind(m, "vision_model.embeddings.patch_embedding.weight", 4, vi->hidden, 3,
                   vi->patch_size, vi->patch_size, &m->patch_w)) ||
        (st = bind(m, "vision_model.embeddings.position_embedding.weight", 2, N, vi->hidden, 0, 0,
                   &m->vpos_emb)) ||
        (st = bind(m, "vision_model.pre_layrnorm.weight", 1, vi->hidden, 0, 0, 0, &m->pre_ln_w)) ||
        (st = bind(m, "vision_model.pre_layrnorm.bias", 1, vi->hidden, 0, 0, 0, &m->pre_ln_b)) ||
        (st = bind(m, "vision_model.post_layernorm.weight", 1, vi->hidden, 0, 0, 0, &m->post_ln_w)) ||
        (st = bind(m, "vision_model.post_layernorm.bias", 1, vi->hidden, 0, 0, 0, &m->post_ln_b)) ||
        (st = bind(m, "visual_projection.weight", 2, m->cfg.projection_dim, vi->hidden, 0, 0,
                   &m->vis_proj)))
        return st;
    return cdx_stack_bind_hf(&m->vision, m->w, "vision_model");
}

/* Carve the activation buffers of both towers out of one allocation. */
static cdx_status alloc_acts(cdx_model *m)
{
    size_t total = 0, tsz[7] = {0}, vsz[7] = {0};
    if (m->towers & CDX_TOWER_TEXT) {
        size_t T = (size_t)m->cfg.text.max_positions, C = (size_t)m->text.C, F = (size_t)m->text.F;
        for (int i = 0; i < 6; i++) tsz[i] = T * C;
        tsz[5] = T * F;
        m->tacts.rows = (int64_t)T;
    }
    if (m->towers & CDX_TOWER_VISION) {
        const cdx_tower_info *vi = &m->cfg.vision;
        size_t side = (size_t)(vi->image_size / vi->patch_size), N = side * side + 1;
        size_t R = VISION_CHUNK * N, C = (size_t)m->vision.C, F = (size_t)m->vision.F;
        size_t PP = 3 * (size_t)vi->patch_size * (size_t)vi->patch_size;
        for (int i = 0; i < 6; i++) vsz[i] = R * C;
        vsz[5] = R * F;
        vsz[6] = VISION_CHUNK * (N - 1) * PP;
        m->vacts.rows = (int64_t)R;
    }
    for (int i = 0; i < 7; i++) total += tsz[i] + vsz[i];
    /* Sizes come from a validated config (dims <= 65536), so no overflow. */
    m->act_block = malloc(total * sizeof(float) + 64);
    if (!m->act_block) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for activations", m->dir);
    float *p = m->act_block;
    cdx_block_acts *ta = &m->tacts.b, *va = &m->vacts.b;
    float **tdst[7] = {&ta->x, &ta->h, &ta->q, &ta->k, &ta->v, &ta->mlp, &m->tacts.col};
    float **vdst[7] = {&va->x, &va->h, &va->q, &va->k, &va->v, &va->mlp, &m->vacts.col};
    for (int i = 0; i < 7; i++) {
        *tdst[i] = p;
        p += tsz[i];
        *vdst[i] = p;
        p += vsz[i];
    }
    return CDX_OK;
}

static void count_params(cdx_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < cdx_weights_count(m->w); i++) {
        const cdx_tensor_info *t = cdx_weights_at(m->w, i);
        /* position_ids are buffers, not parameters */
        if (!strstr(t->name, "position_ids")) n += t->numel;
    }
    m->info.n_params = n;
}

/* ---- OpenCLIP: open_clip_config.json + open_clip weights (openclip.c
 * reads and binds; the towers run through the same blocks as CLIP). */
static cdx_status openclip_open(cdx_model *m)
{
    cdx_status st;
    cdx_openclip *oc = calloc(1, sizeof *oc);
    if (!(m->oc = oc)) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", m->dir);
    if ((st = cdx_openclip_config_load(m->dir, &m->cfg, &m->pre, oc))) return st;
    if (m->towers & CDX_TOWER_TEXT) {
        /* open_clip's bundled CLIP BPE, whatever files the repository has */
        char *vocab = NULL, *merges = NULL;
        if ((st = cdx_openclip_vocab_paths(&vocab, &merges))) return st;
        st = cdx_tokenizer_open_openclip(vocab, merges, &m->tok);
        free(vocab);
        free(merges);
        if (st) return st;
    }
    if ((st = cdx_openclip_weights_open(m->dir, oc, &m->w)) ||
        (st = cdx_openclip_bind(oc, m->w, &m->cfg, m->towers, &m->text, &m->vision)))
        return st;
    if (m->towers & CDX_TOWER_TEXT) {
        m->tok_emb = oc->tok_emb, m->tpos_emb = oc->tpos_emb, m->text_proj = oc->text_proj;
        m->final_ln_w = oc->final_ln_w, m->final_ln_b = oc->final_ln_b;
    }
    if (m->towers & CDX_TOWER_VISION) {
        m->cls = oc->cls, m->patch_w = oc->patch_w, m->vpos_emb = oc->vpos_emb;
        m->pre_ln_w = oc->pre_ln_w, m->pre_ln_b = oc->pre_ln_b;
        m->post_ln_w = oc->post_ln_w, m->post_ln_b = oc->post_ln_b, m->vis_proj = oc->vis_proj;
    }
    if ((st = alloc_acts(m))) return st;
    if (!(m->config_file = cdx_path_join(m->dir, "open_clip_config.json")))
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", m->dir);
    m->info.config_file = m->config_file;
    m->info.dir = m->dir;
    m->info.family = CDX_FAMILY_OPENCLIP;
    m->info.scoring = CDX_SCORING_SOFTMAX;
    m->info.logit_scale = oc->logit_scale;
    m->info.projection_dim = m->cfg.projection_dim;
    m->info.text = m->cfg.text;
    m->info.vision = m->cfg.vision;
    m->info.weights_file = cdx_weights_path(m->w);
    m->info.dtype = cdx_weights_dtype_name(m->w);
    count_params(m);
    return CDX_OK;
}

cdx_status cdx_model_open(const char *dir, unsigned towers, cdx_model **out)
{
    cdx_status st = CDX_OK;
    cdx_model *m = NULL;
    char *path = NULL;

    if (!dir || !out || !(towers & (CDX_TOWER_TEXT | CDX_TOWER_VISION)) ||
        (towers & ~(CDX_TOWER_TEXT | CDX_TOWER_VISION)))
        return cdx_fail(CDX_ERR_ARG, "cdx_model_open: invalid arguments");
    {
        /* the format: a directory's files decide, or the config file
         * given names it (openclip.h, cdx_model_locate) */
        char *real = NULL;
        cdx_format fmt;
        if ((st = cdx_model_locate(dir, &real, &fmt))) return st;
        if (!(m = calloc(1, sizeof *m))) {
            free(real);
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
        }
        m->dir = real;
        dir = m->dir;
        m->towers = towers;
        m->prec = CDX_PRECISION_F32;
        m->prec_why = "float32 unless asked otherwise";
        if (fmt == CDX_FORMAT_OPENCLIP) {
            if ((st = openclip_open(m))) goto fail;
            *out = m;
            return CDX_OK;
        }
    }

    {
        /* SigLIP / SigLIP 2: config.json model_type "siglip" (siglip.h). */
        cdx_family fam;
        if (cdx_siglip_detect(dir, &fam)) {
            if ((st = cdx_siglip_open(dir, towers, fam, &m->sig, &m->info, &m->pre, &m->tok)))
                goto fail;
            if (!(m->config_file = cdx_path_join(dir, "config.json"))) goto nomem;
            m->info.config_file = m->config_file;
            m->info.dir = m->dir;
            *out = m;
            return CDX_OK;
        }
    }

    if (!(path = cdx_path_join(dir, "config.json"))) goto nomem;
    if ((st = cdx_config_load(path, &m->cfg))) goto fail;
    m->config_file = path;
    m->info.config_file = path;

    if (!(path = cdx_path_join(dir, "preprocessor_config.json"))) goto nomem;
    if (access(path, F_OK) == 0) {
        if ((st = cdx_preprocess_cfg_load(path, &m->pre))) goto fail;
    } else {
        CDX_WARN("%s: missing, using CLIPImageProcessor defaults", path);
        cdx_preprocess_cfg_default(&m->pre);
    }
    free(path);
    path = NULL;
    if ((towers & CDX_TOWER_VISION) &&
        (m->pre.crop_width != m->cfg.vision.image_size || m->pre.crop_height != m->cfg.vision.image_size)) {
        st = cdx_fail(CDX_ERR_MODEL, "%s/preprocessor_config.json: crop size %dx%d does not match "
                      "vision_config.image_size %d", dir, m->pre.crop_width, m->pre.crop_height,
                      m->cfg.vision.image_size);
        goto fail;
    }

    if (towers & CDX_TOWER_TEXT) {
        char *merges = cdx_path_join(dir, "merges.txt");
        if (!(path = cdx_path_join(dir, "vocab.json")) || !merges) {
            free(merges);
            goto nomem;
        }
        st = cdx_tokenizer_open(path, merges, &m->tok);
        free(merges);
        if (st) goto fail;
        free(path);
        path = NULL;
    }

    if ((st = cdx_weights_open(dir, &m->w))) goto fail;
    if ((towers & CDX_TOWER_TEXT) && (st = bind_text(m))) goto fail;
    if ((towers & CDX_TOWER_VISION) && (st = bind_vision(m))) goto fail;
    {
        /* A scalar as transformers saves it; some exports store it as [1]. */
        const float *ls;
        const cdx_tensor_info *ti = cdx_weights_find(m->w, "logit_scale");
        int one_d = ti && ti->ndim == 1;
        if ((st = bind(m, "logit_scale", one_d, 1, 0, 0, 0, &ls))) goto fail;
        m->info.logit_scale = expf(ls[0]);
    }
    if ((st = alloc_acts(m))) goto fail;

    m->info.dir = m->dir;
    m->info.family = CDX_FAMILY_CLIP;
    m->info.scoring = CDX_SCORING_SOFTMAX;
    m->info.projection_dim = m->cfg.projection_dim;
    m->info.text = m->cfg.text;
    m->info.vision = m->cfg.vision;
    m->info.weights_file = cdx_weights_path(m->w);
    m->info.dtype = cdx_weights_dtype_name(m->w);
    count_params(m);
    *out = m;
    return CDX_OK;

nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
fail:
    free(path);
    cdx_model_close(m);
    return st;
}

void cdx_model_close(cdx_model *m)
{
    if (!m) return;
    cdx_siglip_close(m->sig);
    cdx_stack_free(&m->text);
    cdx_stack_free(&m->vision);
    cdx_qlinear_free(m->patch_q);
    cdx_qscratch_release(&m->qs);
    free(m->act_block);
    cdx_weights_close(m->w);
    cdx_tokenizer_free(m->tok);
    cdx_openclip_free(m->oc);
    free(m->config_file);
    free(m->dir);
    free(m);
}

const char *cdx_family_name(cdx_family f)
{
    switch (f) {
    case CDX_FAMILY_CLIP: return "clip";
    case CDX_FAMILY_SIGLIP: return "siglip";
    case CDX_FAMILY_SIGLIP2: return "siglip2";
    case CDX_FAMILY_OPENCLIP: return "openclip";
    }
    return "unknown";
}

const cdx_model_info *cdx_model_get_info(const cdx_model *m) { return &m->info; }
const cdx_preprocess_cfg *cdx_model_preprocess(const cdx_model *m) { return &m->pre; }
cdx_tokenizer *cdx_model_tokenizer(cdx_model *m) { return m->tok; }

/* ---------------------------------------------------------------- forward */

cdx_status cdx_model_encode_tokens(cdx_model *m, const int32_t *ids, int n, float *out,
                                   int normalize_out)
{
    if (!m || !ids || !out) return cdx_fail(CDX_ERR_ARG, "cdx_model_encode_tokens: NULL argument");
    if (!(m->towers & CDX_TOWER_TEXT))
        return cdx_fail(CDX_ERR_ARG, "%s: the text tower was not loaded", m->dir);
    if (m->sig) {
        cdx_status st = cdx_siglip_encode_tokens(m->sig, ids, n, out);
        if (!st && normalize_out) cdx_normalize(out, m->info.projection_dim);
        return st;
    }
    if (n < 1 || n > m->cfg.text.max_positions)
        return cdx_fail(CDX_ERR_ARG, "%s: %d tokens, the model takes 1 to %d", m->dir, n,
                        m->cfg.text.max_positions);
    const int C = m->text.C, V = m->cfg.text.vocab_size;
    const int32_t eot = cdx_tokenizer_eot(m->tok);
    int pool = -1;
    for (int t = 0; t < n; t++) {
        if (ids[t] < 0 || ids[t] >= V)
            return cdx_fail(CDX_ERR_ARG, "%s: token id %d is outside the vocabulary (%d)", m->dir,
                            (int)ids[t], V);
        if (pool < 0 && ids[t] == eot) pool = t;
    }
    if (m->info.family == CDX_FAMILY_OPENCLIP) {
        /* open_clip's text_global_pool "argmax": the first largest id */
        pool = 0;
        for (int t = 1; t < n; t++)
            if (ids[t] > ids[pool]) pool = t;
    }
    if (pool < 0)
        return cdx_fail(CDX_ERR_ARG, "%s: the token sequence has no end-of-text token", m->dir);
    /* Causal attention: tokens after the pooled one cannot change it. */
    const int T = pool + 1;
    cdx_block_acts *a = &m->tacts.b;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++)
            a->x[(int64_t)t * C + c] =
                m->tok_emb[(int64_t)ids[t] * C + c] + m->tpos_emb[(int64_t)t * C + c];
    /* A short query at bf16/int8 runs on this thread alone: its products
     * stream the weights once (qsmall.c) and every other step is a few
     * microseconds, so waking the pool 100 times costs more than it
     * saves (measured 2.5 against 11.6 ms for 10 int8 tokens on two
     * loaded cores, bench/run-textq.sh).  Float32 keeps the pool. */
    static int serial_ok = -1; /* CLIPDEX_TEXT_SERIAL=off: the pool (to measure) */
    if (serial_ok < 0)
        serial_ok = !(getenv("CLIPDEX_TEXT_SERIAL") && strcmp(getenv("CLIPDEX_TEXT_SERIAL"), "off") == 0);
    const int serial = serial_ok && T <= 16 && m->prec != CDX_PRECISION_F32;
    const int was_serial = serial ? cdx_pool_serial(1) : 0;
    for (int i = 0; i < m->text.L; i++)
        cdx_block_run(&m->text, &m->text.layers[i], a, 1, T, CDX_ATTN_CAUSAL, 0, NULL, &m->qs);
    if (serial) cdx_pool_serial(was_serial);
    /* Only the pooled row is needed from here on. */
    float *row = a->h;
    cdx_layernorm(row, a->x + (int64_t)pool * C, m->final_ln_w, m->final_ln_b, 1, C, m->text.eps);
    cdx_linear(out, row, m->text_proj, 1, C, m->cfg.projection_dim);
    if (normalize_out) cdx_normalize(out, m->cfg.projection_dim);
    return CDX_OK;
}

cdx_status cdx_model_encode_text(cdx_model *m, const char *text, float *out, int normalize_out)
{
    int32_t ids[4096];
    int n = 0;
    cdx_status st;
    if (!m || !text || !out) return cdx_fail(CDX_ERR_ARG, "cdx_model_encode_text: NULL argument");
    if (!(m->towers & CDX_TOWER_TEXT))
        return cdx_fail(CDX_ERR_ARG, "%s: the text tower was not loaded", m->dir);
    int max_len = m->info.text.max_positions < 4096 ? m->info.text.max_positions : 4096;
    if ((st = cdx_tokenizer_encode(m->tok, text, max_len, ids, &n))) return st;
    return cdx_model_encode_tokens(m, ids, n, out, normalize_out);
}

static void encode_image_chunk(cdx_model *m, const float *pixels, int B, float *out)
{
    const cdx_tower_info *vi = &m->cfg.vision;
    const int S = vi->image_size, P = vi->patch_size, side = S / P, NP = side * side, N = NP + 1;
    const int C = m->vision.C, E = m->cfg.projection_dim;
    cdx_block_acts *a = &m->vacts.b;

    cdx_im2col(m->vacts.col, pixels, B, S, P);
    /* patch embeddings into h: (B*NP, C) */
    cdx_lin(&m->qs, m->patch_q, a->h, m->vacts.col, m->patch_w, (int64_t)B * NP, 3 * P * P, C);
    for (int b = 0; b < B; b++) {
        float *xb = a->x + (int64_t)b * N * C;
        for (int c = 0; c < C; c++) xb[c] = m->cls[c] + m->vpos_emb[c];
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < C; c++)
                xb[(int64_t)(p + 1) * C + c] =
                    a->h[((int64_t)b * NP + p) * C + c] + m->vpos_emb[(int64_t)(p + 1) * C + c];
    }
    cdx_layernorm(a->x, a->x, m->pre_ln_w, m->pre_ln_b, (int64_t)B * N, C, m->vision.eps);
    for (int i = 0; i < m->vision.L; i++)
        cdx_block_run(&m->vision, &m->vision.layers[i], a, B, N, CDX_ATTN_FULL, 0, NULL, &m->qs);
    /* class tokens -> post LN -> projection */
    for (int b = 0; b < B; b++)
        memcpy(a->h + (int64_t)b * C, a->x + (int64_t)b * N * C, sizeof(float) * (size_t)C);
    cdx_layernorm(a->h, a->h, m->post_ln_w, m->post_ln_b, B, C, m->vision.eps);
    cdx_linear(out, a->h, m->vis_proj, B, C, E);
}

cdx_status cdx_model_encode_images(cdx_model *m, const float *pixels, int batch, float *out,
                                   int normalize_out)
{
    if (!m || !pixels || !out || batch < 0)
        return cdx_fail(CDX_ERR_ARG, "cdx_model_encode_images: invalid argument");
    if (!(m->towers & CDX_TOWER_VISION))
        return cdx_fail(CDX_ERR_ARG, "%s: the vision tower was not loaded", m->dir);
    const int S = m->info.vision.image_size, E = m->info.projection_dim;
    const int64_t per = 3 * (int64_t)S * S;
    if (m->sig) cdx_siglip_encode_images(m->sig, pixels, batch, out);
    for (int b0 = 0; !m->sig && b0 < batch; b0 += VISION_CHUNK) {
        int nb = batch - b0 < VISION_CHUNK ? batch - b0 : VISION_CHUNK;
        encode_image_chunk(m, pixels + b0 * per, nb, out + (int64_t)b0 * E);
    }
    if (normalize_out)
        for (int b = 0; b < batch; b++) cdx_normalize(out + (int64_t)b * E, E);
    return CDX_OK;
}

/* ---------------------------------------------------------------- precision */

cdx_status cdx_model_set_precision(cdx_model *m, cdx_precision p)
{
    const char *why = "asked for";
    cdx_status st;
    if (!m || (unsigned)p > CDX_PRECISION_INT8)
        return cdx_fail(CDX_ERR_ARG, "cdx_model_set_precision: invalid argument");
    if (p == CDX_PRECISION_AUTO) p = cdx_precision_auto(&why);
    if (p == m->prec) {
        m->prec_why = why;
        return CDX_OK;
    }
    if (m->sig) {
        m->prec = CDX_PRECISION_F32;
        m->prec_why = "float32 (a reduced precision could not be prepared)";
        if ((st = cdx_siglip_set_precision(m->sig, p))) return st;
        m->prec = p;
        m->prec_why = why;
        return CDX_OK;
    }
    cdx_stack_prepare(&m->text, m->w, CDX_PRECISION_F32);
    cdx_stack_prepare(&m->vision, m->w, CDX_PRECISION_F32);
    cdx_qlinear_free(m->patch_q);
    m->patch_q = NULL;
    m->prec = CDX_PRECISION_F32;
    m->prec_why = "float32 (a reduced precision could not be prepared)";
    /* a text tower mostly runs one query of a few tokens */
    m->text.qflags = CDX_QL_FEW_ROWS;
    m->text.cache_tower = "text";
    m->vision.cache_tower = "vision";
    if (p != CDX_PRECISION_F32) {
        if (((m->towers & CDX_TOWER_TEXT) && (st = cdx_stack_prepare(&m->text, m->w, p))) ||
            ((m->towers & CDX_TOWER_VISION) && (st = cdx_stack_prepare(&m->vision, m->w, p))) ||
            /* the patch embedding too: 7% of a ViT-B/32 pass at float32,
             * a quarter of it once the blocks run int8 */
            ((m->towers & CDX_TOWER_VISION) &&
             (st = cdx_qlinear_new(m->patch_w, 3 * m->cfg.vision.patch_size * m->cfg.vision.patch_size,
                                   m->vision.C, p, NULL, &m->patch_q)))) {
            cdx_stack_prepare(&m->text, m->w, CDX_PRECISION_F32);
            cdx_stack_prepare(&m->vision, m->w, CDX_PRECISION_F32);
            return cdx_fail_prefix(st, m->dir);
        }
    }
    m->prec = p;
    m->prec_why = why;
    return CDX_OK;
}

cdx_precision cdx_model_get_precision(const cdx_model *m, const char **why)
{
    if (why) *why = m->prec_why;
    return m->prec;
}
