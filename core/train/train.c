/*
 * train.c - the trainable CLIP model: parameters, the forward pass that
 * keeps its activations, the backward pass, the loss and AdamW (train.h).
 *
 * The forward calls the inference engine's kernels in the order
 * core/engine/model.c calls them, so its embeddings are the engine's
 * (tests/tools/grad_dump.c checks that); only the activations are kept
 * instead of overwritten.  Per block, with x_in its input (R,C):
 *
 *   h1 = LN1(x_in); q = (h1 Wq^T + bq) D^-1/2; k, v likewise unscaled
 *   o = attention(q, k, v)                  (causal for text)
 *   x_mid = x_in + o Wo^T + bo
 *   h2 = LN2(x_mid); u = h2 W1^T; a = act(u + b1)
 *   x_out = x_mid + a W2^T + b2
 *
 * kept: x_in, h1, q, k, v, o, x_mid, h2, u, a (x_out is the next block's
 * x_in).  The attention probabilities are recomputed in the backward pass
 * (cheap next to the products, and they are the largest tensor).
 *
 * Text runs without padding: the captions' rows are packed one after
 * another (R = sum of T_i), the linear layers see all rows at once and
 * attention runs per caption.  Vision runs the whole batch (R = n N).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/linear.h"
#include "engine/model_config.h"
#include "engine/openclip.h"
#include "engine/siglip.h"
#include "engine/transformer.h"
#include "engine/weights.h"
#include "grad_kernels.h"
#include "internal.h"
#include "train.h"
#include "train_impl.h"

/* ---------------------------------------------------------------- open */

cdx_status cdx_train_param_slot(cdx_train_model *m, const char *name, int ndim, const int64_t *shape,
                                cdx_train_tower tower, int layer, cdx_train_param **out)
{
    cdx_train_param *p = &m->params[m->n_params];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    p->w = malloc(sizeof(float) * (size_t)p->numel);
    p->g = calloc((size_t)p->numel, sizeof(float));
    if (!p->w || !p->g) {
        free(p->w);
        free(p->g);
        p->w = p->g = NULL;
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for %s", m->dir, name);
    }
    p->decay = ndim >= 2;
    p->trainable = 1;
    p->tower = tower;
    p->layer = layer;
    m->n_params++;
    *out = p;
    return CDX_OK;
}

cdx_status cdx_train_add_param(cdx_train_model *m, const char *name, int ndim, int64_t d0,
                               int64_t d1, int64_t d2, int64_t d3, cdx_train_tower tower, int layer,
                               cdx_train_param **out)
{
    cdx_train_param *p;
    const float *src;
    int64_t shape[4] = {d0, d1, d2, d3};
    cdx_status st = cdx_weights_f32(m->w, name, ndim, shape, &src);
    if (st || (st = cdx_train_param_slot(m, name, ndim, shape, tower, layer, &p))) return st;
    memcpy(p->w, src, sizeof(float) * (size_t)p->numel);
    /* the copy is what trains: the checkpoint's pages can leave memory */
    cdx_weights_drop_pages(m->w, src, (size_t)p->numel);
    if (out) *out = p;
    return CDX_OK;
}

static const char *const block_names[B_N] = {
    "layer_norm1.weight", "layer_norm1.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
    "self_attn.v_proj.bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
    "layer_norm2.weight", "layer_norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
    "mlp.fc2.bias",
};

cdx_status cdx_train_add_tower(cdx_train_model *m, const char *prefix, struct ttower *t,
                               const cdx_tower_info *ti, cdx_act act, int causal,
                               cdx_train_tower tower)
{
    const int C = ti->hidden, F = ti->intermediate;
    char name[128];
    t->C = C;
    t->F = F;
    t->H = ti->heads;
    t->L = ti->layers;
    t->eps = (float)ti->ln_eps;
    t->act = act;
    t->causal = causal;
    t->bp = calloc((size_t)t->L * B_N, sizeof *t->bp);
    if (!t->bp) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", m->dir);
    for (int l = 0; l < t->L; l++)
        for (int k = 0; k < B_N; k++) {
            /* weights (out, in); biases and norms (out) */
            int64_t d0 = (k == B_FC1_W || k == B_FC1_B) ? F : C;
            int64_t d1 = k == B_FC2_W ? F : C;
            int is_w = k == B_Q_W || k == B_K_W || k == B_V_W || k == B_O_W || k == B_FC1_W ||
                       k == B_FC2_W;
            snprintf(name, sizeof name, "%s.encoder.layers.%d.%s", prefix, l, block_names[k]);
            cdx_status st = cdx_train_add_param(m, name, is_w ? 2 : 1, d0, is_w ? d1 : 0, 0, 0, tower, l,
                                                &t->bp[l * B_N + k]);
            if (st) return st;
        }
    return CDX_OK;
}

cdx_status cdx_train_open(const char *dir, cdx_train_model **out)
{
    cdx_train_model *m = NULL;
    char *path = NULL;
    cdx_status st;
    if (!dir || !out) return cdx_fail(CDX_ERR_ARG, "cdx_train_open: NULL argument");
    if (!(m = calloc(1, sizeof *m)) || !(m->dir = strdup(dir)) ||
        !(path = cdx_path_join(dir, "config.json"))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    {
        /* OpenCLIP: CLIP's computation in its own layout */
        char *real = NULL;
        cdx_format fmt = CDX_FORMAT_HF;
        if (cdx_model_locate(dir, &real, &fmt) == CDX_OK && fmt == CDX_FORMAT_OPENCLIP) {
            free(real);
            if ((st = cdx_train_openclip_open(m))) goto fail;
            free(path);
            *out = m;
            return CDX_OK;
        }
        free(real);
    }
    {
        /* SigLIP and SigLIP 2: their own parameters and pooling */
        cdx_family fam;
        if (cdx_siglip_detect(dir, &fam)) {
            if ((st = cdx_train_siglip_open(m))) goto fail;
            free(path);
            *out = m;
            return CDX_OK;
        }
    }
    if ((st = cdx_config_load(path, &m->cfg))) goto fail;
    if ((st = cdx_weights_open(dir, &m->w))) goto fail;

    const cdx_tower_info *ti = &m->cfg.text, *vi = &m->cfg.vision;
    const int E = m->cfg.projection_dim, P = vi->patch_size, side = vi->image_size / P;
    const int Nv = side * side + 1;
    /* 8 + 8 named tensors, 16 per block, logit_scale */
    m->params = calloc((size_t)(17 + 16 * (ti->layers + vi->layers)), sizeof *m->params);
    if (!m->params) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    const cdx_train_tower TX = CDX_TRAIN_TEXT, VI = CDX_TRAIN_VISION;
    if ((st = cdx_train_add_param(m, "text_model.embeddings.token_embedding.weight", 2, ti->vocab_size,
                                  ti->hidden, 0, 0, TX, -1, &m->tok_emb)) ||
        (st = cdx_train_add_param(m, "text_model.embeddings.position_embedding.weight", 2, ti->max_positions,
                                  ti->hidden, 0, 0, TX, -1, &m->tpos)) ||
        (st = cdx_train_add_tower(m, "text_model", &m->text, ti, m->cfg.text_act, 1, TX)) ||
        (st = cdx_train_add_param(m, "text_model.final_layer_norm.weight", 1, ti->hidden, 0, 0, 0, TX, -1,
                                  &m->fln_w)) ||
        (st = cdx_train_add_param(m, "text_model.final_layer_norm.bias", 1, ti->hidden, 0, 0, 0, TX, -1,
                                  &m->fln_b)) ||
        (st = cdx_train_add_param(m, "text_projection.weight", 2, E, ti->hidden, 0, 0, TX, -1, &m->tproj)) ||
        (st = cdx_train_add_param(m, "vision_model.embeddings.class_embedding", 1, vi->hidden, 0, 0, 0, VI,
                                  -1, &m->cls)) ||
        (st = cdx_train_add_param(m, "vision_model.embeddings.patch_embedding.weight", 4, vi->hidden, 3, P, P,
                                  VI, -1, &m->patch)) ||
        (st = cdx_train_add_param(m, "vision_model.embeddings.position_embedding.weight", 2, Nv, vi->hidden,
                                  0, 0, VI, -1, &m->vpos)) ||
        (st = cdx_train_add_param(m, "vision_model.pre_layrnorm.weight", 1, vi->hidden, 0, 0, 0, VI, -1,
                                  &m->pre_w)) ||
        (st = cdx_train_add_param(m, "vision_model.pre_layrnorm.bias", 1, vi->hidden, 0, 0, 0, VI, -1,
                                  &m->pre_b)) ||
        (st = cdx_train_add_tower(m, "vision_model", &m->vision, vi, m->cfg.vision_act, 0, VI)) ||
        (st = cdx_train_add_param(m, "vision_model.post_layernorm.weight", 1, vi->hidden, 0, 0, 0, VI, -1,
                                  &m->post_w)) ||
        (st = cdx_train_add_param(m, "vision_model.post_layernorm.bias", 1, vi->hidden, 0, 0, 0, VI, -1,
                                  &m->post_b)) ||
        (st = cdx_train_add_param(m, "visual_projection.weight", 2, E, vi->hidden, 0, 0, VI, -1, &m->vproj)))
        goto fail;
    {
        /* a scalar as transformers saves it; some exports store it as [1] */
        const cdx_tensor_info *ls = cdx_weights_find(m->w, "logit_scale");
        int one_d = ls && ls->ndim == 1;
        if ((st = cdx_train_add_param(m, "logit_scale", one_d, 1, 0, 0, 0, CDX_TRAIN_SHARED, -1,
                                      &m->logit_scale)))
            goto fail;
        m->logit_scale->decay = 0;
    }
    free(path);
    *out = m;
    return CDX_OK;
fail:
    free(path);
    cdx_train_close(m);
    return st;
}

static void free_acts(struct ttower *t)
{
    free(t->mem);
    free(t->acts);
    free(t->off);
    free(t->len);
    t->mem = NULL;
    t->acts = NULL;
    t->off = NULL;
    t->len = NULL;
    t->cap = 0;
}

void cdx_train_close(cdx_train_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) {
        free(m->params[i].w);
        free(m->params[i].g);
        free(m->params[i].m);
        free(m->params[i].v);
    }
    free(m->params);
    free_acts(&m->text);
    free_acts(&m->vision);
    free(m->text.bp);
    free(m->vision.bp);
    cdx_train_siglip_free(m->sig);
    cdx_train_openclip_free(m->oc);
    free(m->vmem);
    free(m->tmem);
    free(m->ids);
    cdx_weights_close(m->w);
    free(m->dir);
    free(m);
}

int cdx_train_n_params(const cdx_train_model *m) { return m->n_params; }
cdx_train_param *cdx_train_param_at(cdx_train_model *m, int i)
{
    return i >= 0 && i < m->n_params ? &m->params[i] : NULL;
}
cdx_train_param *cdx_train_param_find(cdx_train_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}
int cdx_train_embed_dim(const cdx_train_model *m) { return m->cfg.projection_dim; }
int cdx_train_image_size(const cdx_train_model *m) { return m->cfg.vision.image_size; }
int64_t cdx_train_steps_done(const cdx_train_model *m) { return m->steps; }

cdx_status cdx_train_set_trainable(cdx_train_model *m, unsigned locked, int unlock_last)
{
    if ((locked & CDX_TRAIN_TEXT) && (locked & CDX_TRAIN_VISION))
        return cdx_fail(CDX_ERR_ARG, "both towers locked: nothing but the temperature would learn");
    if (unlock_last < 0 || (unlock_last > 0 && (((~locked & CDX_TRAIN_TEXT) && unlock_last > m->text.L) ||
                                               ((~locked & CDX_TRAIN_VISION) && unlock_last > m->vision.L))))
        return cdx_fail(CDX_ERR_ARG, "--unlock-last %d: the towers have %d (text) and %d (vision) blocks",
                        unlock_last, m->text.L, m->vision.L);
    for (int i = 0; i < m->n_params; i++) {
        cdx_train_param *p = &m->params[i];
        int on = 1;
        if (p->tower & locked) on = 0;
        if (on && unlock_last > 0 && p->tower != CDX_TRAIN_SHARED) {
            const struct ttower *t = p->tower == CDX_TRAIN_TEXT ? &m->text : &m->vision;
            if (p->layer >= 0)
                on = p->layer >= t->L - unlock_last;
            else /* embeddings frozen, final norm and projection learn */
                on = !(p == m->tok_emb || p == m->tpos || p == m->cls || p == m->patch ||
                       p == m->vpos || p == m->pre_w || p == m->pre_b || p == m->patch_b);
        }
        p->trainable = on;
    }
    return CDX_OK;
}

void cdx_train_zero_grad(cdx_train_model *m)
{
    for (int i = 0; i < m->n_params; i++)
        memset(m->params[i].g, 0, sizeof(float) * (size_t)m->params[i].numel);
}

/* ---------------------------------------------------------------- forward */

/* Room for the activations of R rows in n_seq sequences. */
cdx_status cdx_train_tower_reserve(cdx_train_model *m, struct ttower *t, int64_t R, int n_seq)
{
    const size_t C = (size_t)t->C, F = (size_t)t->F, L = (size_t)t->L;
    /* per block 8 (R,C) and 2 (R,F); x_out of the last; scratch (R,max(C,F)) */
    size_t per_row = L * (8 * C + 2 * F) + C + (F > C ? F : C), need;
    if (!cdx_mul_ok((size_t)R, per_row, &need))
        return cdx_fail(CDX_ERR_NOMEM, "%s: batch too large", m->dir);
    if (need > t->cap || n_seq > t->seq_cap) {
        free_acts(t);
        t->mem = malloc(need * sizeof(float));
        t->acts = calloc(L + 1, sizeof *t->acts);
        t->off = malloc(sizeof(int64_t) * (size_t)(n_seq + 1));
        t->len = malloc(sizeof(int) * (size_t)(n_seq + 1));
        if (!t->mem || !t->acts || !t->off || !t->len) {
            free_acts(t);
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for a batch of activations", m->dir);
        }
        t->cap = need;
        t->seq_cap = n_seq;
    }
    float *p = t->mem;
    const size_t RC = (size_t)R * C, RF = (size_t)R * F;
    for (size_t l = 0; l < L; l++) {
        struct blk_act *a = &t->acts[l];
        a->x_in = l == 0 ? p : t->acts[l - 1].x_out;
        if (l == 0) p += RC;
        a->h1 = p, p += RC;
        a->q = p, p += RC;
        a->k = p, p += RC;
        a->v = p, p += RC;
        a->o = p, p += RC;
        a->x_mid = p, p += RC;
        a->h2 = p, p += RC;
        a->x_out = p, p += RC;
        a->u = p, p += RF;
        a->a = p, p += RF;
    }
    t->scratch = p;
    t->R = R;
    t->n_seq = n_seq;
    return CDX_OK;
}

#define W(t, l, k) ((t)->bp[(l) * B_N + (k)]->w)

/* One block, forward: acts[l].x_in -> acts[l].x_out. */
void cdx_train_block_forward(struct ttower *t, int l)
{
    struct blk_act *a = &t->acts[l];
    const int64_t R = t->R;
    const int C = t->C, F = t->F, H = t->H, D = C / H;
    float *tmp = t->scratch;

    cdx_layernorm(a->h1, a->x_in, W(t, l, B_LN1_W), W(t, l, B_LN1_B), R, C, t->eps);
    cdx_linear(a->q, a->h1, W(t, l, B_Q_W), R, C, C);
    cdx_linear(a->k, a->h1, W(t, l, B_K_W), R, C, C);
    cdx_linear(a->v, a->h1, W(t, l, B_V_W), R, C, C);
    cdx_add_bias(a->q, W(t, l, B_Q_B), R, C);
    cdx_scale(a->q, R * C, 1.0f / sqrtf((float)D));
    cdx_add_bias(a->k, W(t, l, B_K_B), R, C);
    cdx_add_bias(a->v, W(t, l, B_V_B), R, C);
    if (t->nk) {
        cdx_train_attend_prefix(a->o, a->q, a->k, a->v, t->n_seq, t->off, t->len, t->nk, H, D);
    } else if (!t->causal) {
        /* equal lengths: one call, as the engine makes it */
        cdx_attention(a->o, a->q, a->k, a->v, t->n_seq, t->len[0], H, D, 0);
    } else {
        for (int s = 0; s < t->n_seq; s++) {
            const int64_t o = t->off[s] * C;
            cdx_attention(a->o + o, a->q + o, a->k + o, a->v + o, 1, t->len[s], H, D, 1);
        }
    }
    cdx_linear(tmp, a->o, W(t, l, B_O_W), R, C, C);
    memcpy(a->x_mid, a->x_in, sizeof(float) * (size_t)(R * C));
    cdx_residual_bias(a->x_mid, tmp, W(t, l, B_O_B), R, C);

    cdx_layernorm(a->h2, a->x_mid, W(t, l, B_LN2_W), W(t, l, B_LN2_B), R, C, t->eps);
    cdx_linear(a->u, a->h2, W(t, l, B_FC1_W), R, C, F);
    memcpy(a->a, a->u, sizeof(float) * (size_t)(R * F));
    cdx_bias_act(a->a, W(t, l, B_FC1_B), R, F, t->act);
    cdx_linear(tmp, a->a, W(t, l, B_FC2_W), R, F, C);
    memcpy(a->x_out, a->x_mid, sizeof(float) * (size_t)(R * C));
    cdx_residual_bias(a->x_out, tmp, W(t, l, B_FC2_B), R, C);
}

static cdx_status vision_forward(cdx_train_model *m, int n, const float *pixels, float *img)
{
    struct ttower *t = &m->vision;
    const int S = m->cfg.vision.image_size, P = m->cfg.vision.patch_size, side = S / P;
    const int NP = side * side, N = NP + 1, C = t->C, E = m->cfg.projection_dim, PPP = 3 * P * P;
    cdx_status st;
    if ((st = cdx_train_tower_reserve(m, t, (int64_t)n * N, n))) return st;
    for (int s = 0; s < n; s++) {
        t->off[s] = (int64_t)s * N;
        t->len[s] = N;
    }
    /* col (n*NP, 3PP), x0 (n*N, C), pool_in and pool_ln (n, C) */
    size_t need = (size_t)n * NP * PPP + (size_t)n * N * C + 2 * (size_t)n * C;
    if (need > m->vcap) {
        free(m->vmem);
        if (!(m->vmem = malloc(need * sizeof(float)))) {
            m->vcap = 0;
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for a batch of images", m->dir);
        }
        m->vcap = need;
    }
    m->col = m->vmem;
    m->x0 = m->col + (size_t)n * NP * PPP;
    m->vpool_in = m->x0 + (size_t)n * N * C;
    m->vpool_ln = m->vpool_in + (size_t)n * C;

    float *pe = t->acts[0].h1; /* scratch until the first block */
    cdx_im2col(m->col, pixels, n, S, P); /* the engine's (transformer.h) */
    cdx_linear(pe, m->col, m->patch->w, (int64_t)n * NP, PPP, C);
    for (int b = 0; b < n; b++) {
        float *xb = m->x0 + (int64_t)b * N * C;
        for (int c = 0; c < C; c++) xb[c] = m->cls->w[c] + m->vpos->w[c];
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < C; c++)
                xb[(int64_t)(p + 1) * C + c] =
                    pe[((int64_t)b * NP + p) * C + c] + m->vpos->w[(int64_t)(p + 1) * C + c];
    }
    cdx_layernorm(t->acts[0].x_in, m->x0, m->pre_w->w, m->pre_b->w, (int64_t)n * N, C, t->eps);
    for (int l = 0; l < t->L; l++) cdx_train_block_forward(t, l);
    const float *xo = t->acts[t->L - 1].x_out;
    for (int b = 0; b < n; b++)
        memcpy(m->vpool_in + (int64_t)b * C, xo + (int64_t)b * N * C, sizeof(float) * (size_t)C);
    cdx_layernorm(m->vpool_ln, m->vpool_in, m->post_w->w, m->post_b->w, n, C, t->eps);
    cdx_linear(img, m->vpool_ln, m->vproj->w, n, C, E);
    return CDX_OK;
}

static cdx_status text_forward(cdx_train_model *m, int n, const int32_t *ids, const int *lens,
                               float *txt)
{
    struct ttower *t = &m->text;
    const int C = t->C, E = m->cfg.projection_dim, V = m->cfg.text.vocab_size;
    int64_t R = 0;
    cdx_status st;
    for (int s = 0; s < n; s++) {
        if (lens[s] < 1 || lens[s] > m->cfg.text.max_positions)
            return cdx_fail(CDX_ERR_ARG, "caption %d: %d tokens, the model takes 1 to %d", s,
                            lens[s], m->cfg.text.max_positions);
        R += lens[s];
    }
    for (int64_t r = 0; r < R; r++)
        if (ids[r] < 0 || ids[r] >= V)
            return cdx_fail(CDX_ERR_ARG, "token id %d is outside the vocabulary (%d)", (int)ids[r], V);
    if ((st = cdx_train_tower_reserve(m, t, R, n))) return st;
    size_t need = 2 * (size_t)n * C;
    if (need > m->tcap || (size_t)R > m->ids_cap) {
        free(m->tmem);
        free(m->ids);
        m->tmem = malloc(need * sizeof(float));
        m->ids = malloc(sizeof(int32_t) * (size_t)R);
        if (!m->tmem || !m->ids) {
            m->tcap = m->ids_cap = 0;
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for a batch of captions", m->dir);
        }
        m->tcap = need;
        m->ids_cap = (size_t)R;
    }
    m->tpool_in = m->tmem;
    m->tpool_ln = m->tmem + (size_t)n * C;
    memcpy(m->ids, ids, sizeof(int32_t) * (size_t)R);
    int64_t off = 0;
    float *x = t->acts[0].x_in;
    for (int s = 0; s < n; s++) {
        t->off[s] = off;
        t->len[s] = lens[s];
        for (int i = 0; i < lens[s]; i++)
            for (int c = 0; c < C; c++)
                x[(off + i) * C + c] = m->tok_emb->w[(int64_t)ids[off + i] * C + c] +
                                       m->tpos->w[(int64_t)i * C + c];
        off += lens[s];
    }
    for (int l = 0; l < t->L; l++) cdx_train_block_forward(t, l);
    const float *xo = t->acts[t->L - 1].x_out;
    for (int s = 0; s < n; s++)
        memcpy(m->tpool_in + (int64_t)s * C, xo + (t->off[s] + t->len[s] - 1) * C,
               sizeof(float) * (size_t)C);
    cdx_layernorm(m->tpool_ln, m->tpool_in, m->fln_w->w, m->fln_b->w, n, C, t->eps);
    cdx_linear(txt, m->tpool_ln, m->tproj->w, n, C, E);
    return CDX_OK;
}

/* No parameter of the image tower learns (--lock image). */
static int vision_frozen(const cdx_train_model *m)
{
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].tower == CDX_TRAIN_VISION && m->params[i].trainable) return 0;
    return 1;
}

cdx_status cdx_train_forward(cdx_train_model *m, const cdx_train_batch *b, float *img, float *txt)
{
    cdx_status st;
    if (!m || !b || b->n < 1 || (!b->pixels && !b->img_emb) || !b->ids || !b->lens || !img || !txt)
        return cdx_fail(CDX_ERR_ARG, "cdx_train_forward: invalid argument");
    if (!b->pixels && !vision_frozen(m))
        return cdx_fail(CDX_ERR_ARG, "cdx_train_forward: image embeddings without pixels need the image "
                        "tower locked");
    m->n = 0;
    if (!b->pixels) memcpy(img, b->img_emb, sizeof(float) * (size_t)b->n * (size_t)m->cfg.projection_dim);
    if (m->sig) return cdx_train_siglip_forward(m, b, img, txt);
    if ((b->pixels && (st = vision_forward(m, b->n, b->pixels, img))) ||
        (st = text_forward(m, b->n, b->ids, b->lens, txt)))
        return st;
    m->n = b->n;
    return CDX_OK;
}

/* ---------------------------------------------------------------- backward */

#define G(t, l, k) ((t)->bp[(l) * B_N + (k)]->trainable ? (t)->bp[(l) * B_N + (k)]->g : NULL)
#define PG(p) ((p)->trainable ? (p)->g : NULL)

cdx_status cdx_train_scratch_new(const struct ttower *t, struct bwd_scratch *s)
{
    const size_t RC = (size_t)t->R * t->C, RF = (size_t)t->R * t->F;
    s->mem = malloc(sizeof(float) * (5 * RC + 2 * RF));
    if (!s->mem) return cdx_fail(CDX_ERR_NOMEM, "out of memory for the backward pass");
    s->dh = s->mem;
    s->dout = s->dh + RC;
    s->dq = s->dout + RC;
    s->dk = s->dq + RC;
    s->dv = s->dk + RC;
    s->da = s->dv + RC;
    s->dpre = s->da + RF;
    return CDX_OK;
}

/* One block, backward: dx (R,C) holds d x_out on entry, d x_in on return;
 * the block's trainable parameters' g accumulate. */
void cdx_train_block_backward(struct ttower *t, int l, float *dx, struct bwd_scratch *s)
{
    const struct blk_act *a = &t->acts[l];
    const int64_t R = t->R;
    const int C = t->C, F = t->F, H = t->H, D = C / H;
    const float *b1 = W(t, l, B_FC1_B);

    /* x_out = x_mid + a W2^T + b2: d x_mid = dx (kept in dx) */
    cdx_grad_linear(s->da, G(t, l, B_FC2_W), G(t, l, B_FC2_B), dx, a->a, W(t, l, B_FC2_W), R, F, C, 0);
    /* a = act(u + b1) */
    for (int64_t r = 0; r < R; r++)
        for (int f = 0; f < F; f++) s->dpre[r * F + f] = a->u[r * F + f] + b1[f];
    cdx_grad_act(s->dpre, s->da, s->dpre, R * F, t->act);
    /* u = h2 W1^T */
    cdx_grad_linear(s->dh, G(t, l, B_FC1_W), G(t, l, B_FC1_B), s->dpre, a->h2, W(t, l, B_FC1_W), R, C,
                    F, 0);
    cdx_grad_layernorm(dx, G(t, l, B_LN2_W), G(t, l, B_LN2_B), s->dh, a->x_mid, W(t, l, B_LN2_W), R, C,
                       t->eps);
    /* x_mid = x_in + o Wo^T + bo: d x_in gets dx through the residual */
    cdx_grad_linear(s->dout, G(t, l, B_O_W), G(t, l, B_O_B), dx, a->o, W(t, l, B_O_W), R, C, C, 0);
    if (t->nk)
        cdx_grad_attention_prefix(s->dq, s->dk, s->dv, s->dout, a->q, a->k, a->v, t->n_seq, t->off,
                                  t->len, t->nk, H, D);
    else
        cdx_grad_attention(s->dq, s->dk, s->dv, s->dout, a->q, a->k, a->v, t->n_seq, t->off, t->len,
                           H, D, t->causal);
    cdx_scale(s->dq, R * C, 1.0f / sqrtf((float)D));
    cdx_grad_linear(s->dh, G(t, l, B_Q_W), G(t, l, B_Q_B), s->dq, a->h1, W(t, l, B_Q_W), R, C, C, 0);
    /* No gradient for the key bias: it adds q . bk to a whole row of
     * scores, which the softmax cancels, so its exact gradient is zero;
     * summing dk would give rounding noise that AdamW, dividing by its
     * own running size, would turn into real updates. */
    cdx_grad_linear(s->dh, G(t, l, B_K_W), NULL, s->dk, a->h1, W(t, l, B_K_W), R, C, C, 1);
    cdx_grad_linear(s->dh, G(t, l, B_V_W), G(t, l, B_V_B), s->dv, a->h1, W(t, l, B_V_W), R, C, C, 1);
    cdx_grad_layernorm(dx, G(t, l, B_LN1_W), G(t, l, B_LN1_B), s->dh, a->x_in, W(t, l, B_LN1_W), R, C,
                       t->eps);
}

static int block_trainable(const struct ttower *t, int l)
{
    for (int k = 0; k < B_N; k++)
        if (t->bp[l * B_N + k]->trainable) return 1;
    return 0;
}

/* The lowest block the backward pass must reach: 0 when the embeddings
 * learn, else the first block with a trainable parameter (t->L: none). */
int cdx_train_lowest_block(const struct ttower *t, int emb_trainable)
{
    if (emb_trainable) return 0;
    for (int l = 0; l < t->L; l++)
        if (block_trainable(t, l)) return l;
    return t->L;
}

/* The top of a tower: projection and final norm of the pooled rows.
 * pool_in, pool_ln (n,C), proj (E,C), demb (n,E).  dpool (n,C) receives
 * the gradient of pool_in. */
static void head_backward(const cdx_train_param *proj, const cdx_train_param *ln_w,
                          const cdx_train_param *ln_b, const float *pool_in, const float *pool_ln,
                          const float *demb, float *dpool, float *dtmp, int n, int C, int E, float eps)
{
    cdx_grad_linear(dtmp, PG(proj), NULL, demb, pool_ln, proj->w, n, C, E, 0);
    memset(dpool, 0, sizeof(float) * (size_t)n * C);
    cdx_grad_layernorm(dpool, PG(ln_w), PG(ln_b), dtmp, pool_in, ln_w->w, n, C, eps);
}

static cdx_status vision_backward(cdx_train_model *m, const float *d_img)
{
    struct ttower *t = &m->vision;
    const int n = m->n, S = m->cfg.vision.image_size, P = m->cfg.vision.patch_size, side = S / P;
    const int NP = side * side, N = NP + 1, C = t->C, E = m->cfg.projection_dim, PPP = 3 * P * P;
    const int emb = m->cls->trainable || m->patch->trainable || m->vpos->trainable ||
                    m->pre_w->trainable || m->pre_b->trainable;
    const int head = m->vproj->trainable || m->post_w->trainable || m->post_b->trainable;
    const int low = cdx_train_lowest_block(t, emb);
    struct bwd_scratch s = {0};
    float *dx = NULL, *dpool = NULL;
    cdx_status st = CDX_OK;
    if (!head && low == t->L) return CDX_OK; /* the tower is frozen */
    if ((st = cdx_train_scratch_new(t, &s))) return st;
    dx = calloc((size_t)t->R * C, sizeof(float));
    dpool = malloc(sizeof(float) * 2 * (size_t)n * C);
    if (!dx || !dpool) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory for the backward pass");
        goto out;
    }
    head_backward(m->vproj, m->post_w, m->post_b, m->vpool_in, m->vpool_ln, d_img, dpool,
                  dpool + (size_t)n * C, n, C, E, t->eps);
    for (int b = 0; b < n; b++) memcpy(dx + (int64_t)b * N * C, dpool + (int64_t)b * C, sizeof(float) * C);
    for (int l = t->L - 1; l >= low; l--) cdx_train_block_backward(t, l, dx, &s);
    if (emb) {
        /* x = preLN(x0): dx0 into dh (free now) */
        float *dx0 = s.dh;
        memset(dx0, 0, sizeof(float) * (size_t)t->R * C);
        cdx_grad_layernorm(dx0, PG(m->pre_w), PG(m->pre_b), dx, m->x0, m->pre_w->w, t->R, C, t->eps);
        for (int b = 0; b < n; b++) {
            const float *d = dx0 + (int64_t)b * N * C;
            if (m->cls->trainable)
                for (int c = 0; c < C; c++) m->cls->g[c] += d[c];
            if (m->vpos->trainable)
                for (int64_t i = 0; i < (int64_t)N * C; i++) m->vpos->g[i] += d[i];
            /* the patch rows, packed (n*NP, C) into dq for the weight gradient */
            memcpy(s.dq + (int64_t)b * NP * C, d + C, sizeof(float) * (size_t)NP * C);
        }
        if (m->patch->trainable)
            cdx_grad_linear(NULL, m->patch->g, NULL, s.dq, m->col, m->patch->w, (int64_t)n * NP, PPP, C, 0);
    }
out:
    free(dx);
    free(dpool);
    free(s.mem);
    return st;
}

static cdx_status text_backward(cdx_train_model *m, const float *d_txt)
{
    struct ttower *t = &m->text;
    const int n = m->n, C = t->C, E = m->cfg.projection_dim;
    const int emb = m->tok_emb->trainable || m->tpos->trainable;
    const int head = m->tproj->trainable || m->fln_w->trainable || m->fln_b->trainable;
    const int low = cdx_train_lowest_block(t, emb);
    struct bwd_scratch s = {0};
    float *dx = NULL, *dpool = NULL;
    cdx_status st = CDX_OK;
    if (!head && low == t->L) return CDX_OK;
    if ((st = cdx_train_scratch_new(t, &s))) return st;
    dx = calloc((size_t)t->R * C, sizeof(float));
    dpool = malloc(sizeof(float) * 2 * (size_t)n * C);
    if (!dx || !dpool) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory for the backward pass");
        goto out;
    }
    head_backward(m->tproj, m->fln_w, m->fln_b, m->tpool_in, m->tpool_ln, d_txt, dpool,
                  dpool + (size_t)n * C, n, C, E, t->eps);
    for (int i = 0; i < n; i++)
        memcpy(dx + (t->off[i] + t->len[i] - 1) * C, dpool + (int64_t)i * C, sizeof(float) * C);
    for (int l = t->L - 1; l >= low; l--) cdx_train_block_backward(t, l, dx, &s);
    if (emb)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < t->len[i]; j++) {
                const int64_t r = t->off[i] + j;
                if (m->tok_emb->trainable) {
                    float *g = m->tok_emb->g + (int64_t)m->ids[r] * C;
                    for (int c = 0; c < C; c++) g[c] += dx[r * C + c];
                }
                if (m->tpos->trainable)
                    for (int c = 0; c < C; c++) m->tpos->g[(int64_t)j * C + c] += dx[r * C + c];
            }
out:
    free(dx);
    free(dpool);
    free(s.mem);
    return st;
}

cdx_status cdx_train_backward(cdx_train_model *m, const float *d_img, const float *d_txt)
{
    cdx_status st;
    if (!m || !d_img || !d_txt) return cdx_fail(CDX_ERR_ARG, "cdx_train_backward: NULL argument");
    if (m->n < 1) return cdx_fail(CDX_ERR_ARG, "cdx_train_backward: no forward pass to go back through");
    if (m->sig) return cdx_train_siglip_backward(m, d_img, d_txt);
    if ((st = vision_backward(m, d_img)) || (st = text_backward(m, d_txt))) return st;
    return CDX_OK;
}

/* ---------------------------------------------------------------- loss */

void cdx_train_unit_rows(const float *x, int n, int E, double *X, double *nx)
{
    for (int i = 0; i < n; i++) {
        double a = 0;
        for (int e = 0; e < E; e++) a += (double)x[i * E + e] * x[i * E + e];
        nx[i] = sqrt(a);
        for (int e = 0; e < E; e++) X[i * E + e] = x[i * E + e] / nx[i];
    }
}

void cdx_train_unit_rows_back(const double *X, const double *nx, const double *dX, int n, int E,
                              float *dx)
{
    /* through X = x / |x|: dx = (dX - X (X . dX)) / |x| */
    for (int i = 0; i < n; i++) {
        double p = 0;
        for (int e = 0; e < E; e++) p += X[i * E + e] * dX[i * E + e];
        for (int e = 0; e < E; e++) dx[i * E + e] = (float)((dX[i * E + e] - X[i * E + e] * p) / nx[i]);
    }
}

double cdx_train_clip_loss(const float *img, const float *txt, int n, int E, float t,
                           float *d_img, float *d_txt, float *d_t)
{
    /* in double: the batch is small next to the towers, and a loss that
     * does not round is one less thing to compare */
    double *I = malloc(sizeof(double) * (size_t)n * E * 4), *T, *dI, *dT;
    double *L = malloc(sizeof(double) * (size_t)n * n * 3), *Pr, *Pc;
    double *ni = malloc(sizeof(double) * 2 * (size_t)n), *nt;
    double loss = 0, s = exp((double)t), dts = 0;
    if (!I || !L || !ni) {
        free(I);
        free(L);
        free(ni);
        return NAN;
    }
    T = I + (size_t)n * E;
    dI = T + (size_t)n * E;
    dT = dI + (size_t)n * E;
    Pr = L + (size_t)n * n;
    Pc = Pr + (size_t)n * n;
    nt = ni + n;
    cdx_train_unit_rows(img, n, E, I, ni);
    cdx_train_unit_rows(txt, n, E, T, nt);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double d = 0;
            for (int e = 0; e < E; e++) d += I[i * E + e] * T[j * E + e];
            L[i * n + j] = s * d;
        }
    /* softmax of the rows (image -> captions) and of the columns */
    for (int i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < n; j++) mx = fmax(mx, L[i * n + j]);
        for (int j = 0; j < n; j++) sum += exp(L[i * n + j] - mx);
        loss += (mx + log(sum) - L[i * n + i]) / (2.0 * n);
        for (int j = 0; j < n; j++) Pr[i * n + j] = exp(L[i * n + j] - mx) / sum;
    }
    for (int j = 0; j < n; j++) {
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < n; i++) mx = fmax(mx, L[i * n + j]);
        for (int i = 0; i < n; i++) sum += exp(L[i * n + j] - mx);
        loss += (mx + log(sum) - L[j * n + j]) / (2.0 * n);
        for (int i = 0; i < n; i++) Pc[i * n + j] = exp(L[i * n + j] - mx) / sum;
    }
    /* G = d loss / d logits, into Pr */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double g = (Pr[i * n + j] + Pc[i * n + j] - 2.0 * (i == j)) / (2.0 * n);
            Pr[i * n + j] = g;
            dts += g * L[i * n + j];
        }
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E; e++) {
            double a = 0, b = 0;
            for (int j = 0; j < n; j++) {
                a += Pr[i * n + j] * T[j * E + e];
                b += Pr[j * n + i] * I[j * E + e];
            }
            dI[i * E + e] = s * a;
            dT[i * E + e] = s * b;
        }
    cdx_train_unit_rows_back(I, ni, dI, n, E, d_img);
    cdx_train_unit_rows_back(T, nt, dT, n, E, d_txt);
    *d_t = (float)dts;
    free(I);
    free(L);
    free(ni);
    return loss;
}

/* The family's loss of a batch's projections; the gradient of its
 * parameters other than logit_scale (SigLIP's bias) is added here. */
static double family_loss(cdx_train_model *m, const float *img, const float *txt, int n, float *di,
                          float *dt, float *d_t)
{
    const int E = m->cfg.projection_dim;
    if (m->sig) {
        float d_b = 0;
        double l = cdx_train_sigmoid_loss(img, txt, n, E, m->logit_scale->w[0], m->logit_bias->w[0],
                                          di, dt, d_t, &d_b);
        if (m->logit_bias->trainable) m->logit_bias->g[0] += d_b;
        return l;
    }
    return cdx_train_clip_loss(img, txt, n, E, m->logit_scale->w[0], di, dt, d_t);
}

cdx_status cdx_train_grad(cdx_train_model *m, const cdx_train_batch *b, double *loss)
{
    const int E = m->cfg.projection_dim;
    float *buf = malloc(sizeof(float) * 4 * (size_t)b->n * E), d_t = 0;
    cdx_status st = CDX_OK;
    if (!buf) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    float *img = buf, *txt = img + (size_t)b->n * E, *di = txt + (size_t)b->n * E,
          *dt = di + (size_t)b->n * E;
    cdx_train_zero_grad(m);
    if ((st = cdx_train_forward(m, b, img, txt))) goto out;
    double l = family_loss(m, img, txt, b->n, di, dt, &d_t);
    if (isnan(l)) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory for the loss");
        goto out;
    }
    if ((st = cdx_train_backward(m, di, dt))) goto out;
    if (m->logit_scale->trainable) m->logit_scale->g[0] += d_t;
    *loss = l;
out:
    free(buf);
    return st;
}

/* The k-th sub-batch of b: pairs k*sb .. and their token ids. */
static cdx_train_batch sub_of(const cdx_train_batch *b, int first, int count, size_t per, int E)
{
    int64_t ids_off = 0;
    for (int i = 0; i < first; i++) ids_off += b->lens[i];
    cdx_train_batch s = {count, b->pixels ? b->pixels + per * (size_t)first : NULL, b->ids + ids_off,
                         b->lens + first, NULL, NULL, NULL};
    if (b->img_emb) s.img_emb = b->img_emb + (size_t)first * (size_t)E;
    return s;
}

cdx_status cdx_train_grad_cached(cdx_train_model *m, const cdx_train_batch *b, int sub_batch,
                                 double *loss)
{
    if (!m || !b || b->n < 1 || sub_batch < 1)
        return cdx_fail(CDX_ERR_ARG, "cdx_train_grad_cached: invalid argument");
    if (sub_batch >= b->n) return cdx_train_grad(m, b, loss);
    const int E = m->cfg.projection_dim, n = b->n, S = m->cfg.vision.image_size;
    const size_t per = 3 * (size_t)S * S;
    float *buf = malloc(sizeof(float) * 4 * (size_t)n * E), d_t = 0, *spix = NULL;
    cdx_status st = CDX_OK;
    if (!buf) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    float *img = buf, *txt = img + (size_t)n * E, *di = txt + (size_t)n * E, *dt = di + (size_t)n * E;
    if (!b->pixels && !b->img_emb && b->fill && !(spix = malloc(sizeof(float) * per * (size_t)sub_batch))) {
        free(buf);
        return cdx_fail(CDX_ERR_NOMEM, "out of memory for a sub-batch of images");
    }
    cdx_train_zero_grad(m);
    /* 1: the embeddings, one sub-batch's activations at a time */
    for (int i = 0; i < n; i += sub_batch) {
        int c = n - i < sub_batch ? n - i : sub_batch;
        cdx_train_batch s = sub_of(b, i, c, per, E);
        if (spix && b->fill(b->fill_user, i, c, spix)) {
            st = CDX_ERR_IO;
            goto out;
        }
        if (spix) s.pixels = spix;
        if ((st = cdx_train_forward(m, &s, img + (size_t)i * E, txt + (size_t)i * E))) goto out;
    }
    /* 2: the loss over the whole batch, its gradient w.r.t. the embeddings */
    double l = family_loss(m, img, txt, n, di, dt, &d_t);
    if (isnan(l)) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory for the loss");
        goto out;
    }
    /* 3: each sub-batch again, backpropagated with its rows */
    for (int i = 0; i < n; i += sub_batch) {
        int c = n - i < sub_batch ? n - i : sub_batch;
        cdx_train_batch s = sub_of(b, i, c, per, E);
        if (spix && b->fill(b->fill_user, i, c, spix)) {
            st = CDX_ERR_IO;
            goto out;
        }
        if (spix) s.pixels = spix;
        /* the embeddings land in img/txt again: the same numbers */
        if ((st = cdx_train_forward(m, &s, img + (size_t)i * E, txt + (size_t)i * E)) ||
            (st = cdx_train_backward(m, di + (size_t)i * E, dt + (size_t)i * E)))
            goto out;
    }
    if (m->logit_scale->trainable) m->logit_scale->g[0] += d_t;
    *loss = l;
out:
    free(buf);
    free(spix);
    return st;
}

/* ---------------------------------------------------------------- AdamW */

/* torch.optim.AdamW's single-tensor step, operation for operation:
 *   p *= 1 - lr wd;  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * (the bias corrections in double, as Python computes them). */
cdx_status cdx_train_adamw_step(cdx_train_model *m, const cdx_train_adamw *o, double lr)
{
    const int64_t step = m->steps + 1;
    const double bc1 = 1.0 - pow(o->beta1, (double)step), bc2 = 1.0 - pow(o->beta2, (double)step);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float decay = (float)(1.0 - lr * o->weight_decay), b1c = (float)(1.0 - o->beta1);
    const float b2 = (float)o->beta2, b2c = (float)(1.0 - o->beta2), eps = (float)o->eps;
    for (int i = 0; i < m->n_params; i++) {
        cdx_train_param *p = &m->params[i];
        if (!p->trainable) continue;
        if (!p->m) {
            p->m = calloc((size_t)p->numel, sizeof(float));
            p->v = calloc((size_t)p->numel, sizeof(float));
            if (!p->m || !p->v) return cdx_fail(CDX_ERR_NOMEM, "out of memory for AdamW's moments");
        }
        float *w = p->w, *mm = p->m, *vv = p->v;
        const float *g = p->g;
        const int dec = p->decay && o->weight_decay != 0;
        for (int64_t j = 0; j < p->numel; j++) {
            if (dec) w[j] *= decay;
            mm[j] += b1c * (g[j] - mm[j]);
            vv[j] = vv[j] * b2 + b2c * g[j] * g[j];
            float denom = sqrtf(vv[j]) / bc2_sqrt + eps;
            w[j] += -step_size * (mm[j] / denom);
        }
    }
    /* CLIP: the temperature stays within [0, ln 100].  SigLIP: no clamp
     * (train_siglip.c says why) */
    float *t = m->logit_scale->w;
    const float hi = (float)log(100.0);
    if (!m->sig) t[0] = t[0] < 0.0f ? 0.0f : t[0] > hi ? hi : t[0];
    m->steps = step;
    return CDX_OK;
}

double cdx_train_lr(cdx_train_schedule s, double lr, int64_t warmup, int64_t total, int64_t step)
{
    if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
    if (s == CDX_TRAIN_CONSTANT || total <= warmup) return lr;
    double e = (double)(step - warmup), es = (double)(total - warmup);
    return 0.5 * (1.0 + cos(M_PI * e / es)) * lr;
}
