/*
 * train_siglip.c - training SigLIP and SigLIP 2 (fixed resolution)
 * checkpoints: their parameters under the checkpoint's names, the forward
 * pass on the engine's kernels in core/engine/siglip.c's order keeping
 * the activations, its backward pass and the sigmoid loss (train.h).
 *
 * What differs from CLIP (train.c holds the shared blocks):
 *   vision  x0 = patches W^T + b + positions (no class token, no pre-LN);
 *           blocks (full attention); hp = post_layernorm(every token);
 *           the attention-pooling head: one learned probe queries hp
 *           through a multi-head attention with fused in_proj
 *           (q = probe Wq^T + bq, k = hp Wk^T + bk, v = hp Wv^T + bv),
 *           hr = o Wo^T + bo, out = hr + fc2(act(fc1(LN(hr)))).
 *           The embedding is out (no projection).
 *   text    token + position embeddings of the padded sequence (SigLIP:
 *           every position, full attention; SigLIP 2: the tokenizer's
 *           mask reaches the model, so only the real tokens are keys and
 *           only they and the last position are run, as the engine
 *           does); final_layer_norm of the LAST position; head (with
 *           bias).
 *   loss    sigmoid, with the trainable logit_scale t and logit_bias b.
 *
 * The temperature is not clamped: transformers' SiglipModel and
 * big_vision (SigLIP's own trainer) do not clamp it, and a published
 * checkpoint already sits above CLIP's bound (google/siglip-base-patch16-224:
 * t = 4.76 > ln 100), so open_clip's [0, ln 100] clamp would change a
 * pretrained model's temperature at the first step.  The bias is free too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/linear.h"
#include "engine/siglip.h"
#include "engine/transformer.h"
#include "engine/weights.h"
#include "grad_kernels.h"
#include "internal.h"
#include "train.h"
#include "train_impl.h"

struct cdx_train_siglip {
    int masks;     /* SigLIP 2: the padding mask reaches the model */
    int32_t pad;
    /* text head (E,C), (E) */
    cdx_train_param *head_w, *head_b;
    /* vision pooling head */
    cdx_train_param *probe, *in_w, *in_b, *out_w, *out_b, *ln_w, *ln_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;

    /* the last forward pass */
    int *nk, *pos;       /* text: (n) keys per caption; (R) position of each row */
    int32_t *rid;        /* (R) token id of each row */
    size_t tcap, scap;
    float *tmem;         /* pool_in, pool_ln (n,C) */
    size_t tmcap;
    float *vmem;         /* below */
    size_t vcap;
    float *col;          /* (n NP, 3PP) */
    float *hp, *hk, *hv; /* (n NP, C) post-LN, keys, values */
    float *qp;           /* (C) the probe's query, bias added, scaled */
    float *ho, *hr, *hl; /* (n,C) attention output, after out_proj, LN(hr) */
    float *hu, *ha;      /* (n,F) hl W1^T, act(hu + b1) */
    float *sc;           /* (NP) scores */
};

void cdx_train_siglip_free(struct cdx_train_siglip *s)
{
    if (!s) return;
    free(s->nk);
    free(s->pos);
    free(s->rid);
    free(s->tmem);
    free(s->vmem);
    free(s);
}

/* ---------------------------------------------------------------- open */

cdx_status cdx_train_siglip_open(cdx_train_model *m)
{
    struct cdx_train_siglip *s = calloc(1, sizeof *s);
    cdx_status st;
    if (!s) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", m->dir);
    m->sig = s;
    if ((st = cdx_siglip_train_config(m->dir, &m->cfg, &s->masks, &s->pad))) return st;
    if ((st = cdx_weights_open(m->dir, &m->w))) return st;
    const cdx_tower_info *ti = &m->cfg.text, *vi = &m->cfg.vision;
    const int E = m->cfg.projection_dim, P = vi->patch_size, side = vi->image_size / P;
    const int64_t C = vi->hidden, F = vi->intermediate;
    /* text 6 + vision 16 named tensors, 16 per block, scale and bias */
    m->params = calloc((size_t)(24 + 16 * (ti->layers + vi->layers)), sizeof *m->params);
    if (!m->params) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", m->dir);
    const cdx_train_tower TX = CDX_TRAIN_TEXT, VI = CDX_TRAIN_VISION;
    if ((st = cdx_train_add_param(m, "text_model.embeddings.token_embedding.weight", 2, ti->vocab_size,
                                  ti->hidden, 0, 0, TX, -1, &m->tok_emb)) ||
        (st = cdx_train_add_param(m, "text_model.embeddings.position_embedding.weight", 2, ti->max_positions,
                                  ti->hidden, 0, 0, TX, -1, &m->tpos)) ||
        (st = cdx_train_add_tower(m, "text_model", &m->text, ti, m->cfg.text_act, 0, TX)) ||
        (st = cdx_train_add_param(m, "text_model.final_layer_norm.weight", 1, ti->hidden, 0, 0, 0, TX, -1,
                                  &m->fln_w)) ||
        (st = cdx_train_add_param(m, "text_model.final_layer_norm.bias", 1, ti->hidden, 0, 0, 0, TX, -1,
                                  &m->fln_b)) ||
        (st = cdx_train_add_param(m, "text_model.head.weight", 2, E, ti->hidden, 0, 0, TX, -1, &s->head_w)) ||
        (st = cdx_train_add_param(m, "text_model.head.bias", 1, E, 0, 0, 0, TX, -1, &s->head_b)) ||
        (st = cdx_train_add_param(m, "vision_model.embeddings.patch_embedding.weight", 4, C, 3, P, P, VI, -1,
                                  &m->patch)) ||
        (st = cdx_train_add_param(m, "vision_model.embeddings.patch_embedding.bias", 1, C, 0, 0, 0, VI, -1,
                                  &m->patch_b)) ||
        (st = cdx_train_add_param(m, "vision_model.embeddings.position_embedding.weight", 2, side * side, C,
                                  0, 0, VI, -1, &m->vpos)) ||
        (st = cdx_train_add_tower(m, "vision_model", &m->vision, vi, m->cfg.vision_act, 0, VI)) ||
        (st = cdx_train_add_param(m, "vision_model.post_layernorm.weight", 1, C, 0, 0, 0, VI, -1,
                                  &m->post_w)) ||
        (st = cdx_train_add_param(m, "vision_model.post_layernorm.bias", 1, C, 0, 0, 0, VI, -1,
                                  &m->post_b)) ||
        (st = cdx_train_add_param(m, "vision_model.head.probe", 3, 1, 1, C, 0, VI, -1, &s->probe)) ||
        (st = cdx_train_add_param(m, "vision_model.head.attention.in_proj_weight", 2, 3 * C, C, 0, 0, VI,
                                  -1, &s->in_w)) ||
        (st = cdx_train_add_param(m, "vision_model.head.attention.in_proj_bias", 1, 3 * C, 0, 0, 0, VI, -1,
                                  &s->in_b)) ||
        (st = cdx_train_add_param(m, "vision_model.head.attention.out_proj.weight", 2, C, C, 0, 0, VI, -1,
                                  &s->out_w)) ||
        (st = cdx_train_add_param(m, "vision_model.head.attention.out_proj.bias", 1, C, 0, 0, 0, VI, -1,
                                  &s->out_b)) ||
        (st = cdx_train_add_param(m, "vision_model.head.layernorm.weight", 1, C, 0, 0, 0, VI, -1,
                                  &s->ln_w)) ||
        (st = cdx_train_add_param(m, "vision_model.head.layernorm.bias", 1, C, 0, 0, 0, VI, -1, &s->ln_b)) ||
        (st = cdx_train_add_param(m, "vision_model.head.mlp.fc1.weight", 2, F, C, 0, 0, VI, -1, &s->fc1_w)) ||
        (st = cdx_train_add_param(m, "vision_model.head.mlp.fc1.bias", 1, F, 0, 0, 0, VI, -1, &s->fc1_b)) ||
        (st = cdx_train_add_param(m, "vision_model.head.mlp.fc2.weight", 2, C, F, 0, 0, VI, -1, &s->fc2_w)) ||
        (st = cdx_train_add_param(m, "vision_model.head.mlp.fc2.bias", 1, C, 0, 0, 0, VI, -1, &s->fc2_b)))
        return st;
    {
        /* scalars, or [1] as the published checkpoints store them */
        const cdx_tensor_info *a = cdx_weights_find(m->w, "logit_scale");
        const cdx_tensor_info *b = cdx_weights_find(m->w, "logit_bias");
        if ((st = cdx_train_add_param(m, "logit_scale", a && a->ndim == 0 ? 0 : 1, 1, 0, 0, 0,
                                      CDX_TRAIN_SHARED, -1, &m->logit_scale)) ||
            (st = cdx_train_add_param(m, "logit_bias", b && b->ndim == 0 ? 0 : 1, 1, 0, 0, 0,
                                      CDX_TRAIN_SHARED, -1, &m->logit_bias)))
            return st;
        m->logit_scale->decay = m->logit_bias->decay = 0;
    }
    return CDX_OK;
}

/* ---------------------------------------------------------------- forward */

void cdx_train_attend_prefix(float *o, const float *q, const float *k, const float *v, int n_seq,
                             const int64_t *off, const int *len, const int *nk, int H, int D)
{
    /* the engine's loop (transformer.c, attend_prefix), so the same sums */
    const int C = H * D;
    int Tmax = 1;
    for (int s = 0; s < n_seq; s++) Tmax = nk[s] > Tmax ? nk[s] : Tmax;
    float *sc = malloc(sizeof(float) * (size_t)Tmax);
    if (!sc) abort(); /* a few hundred bytes: nothing to recover */
    for (int s = 0; s < n_seq; s++) {
        const int64_t base = off[s] * C;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < len[s]; i++) {
                const float *qi = q + base + (int64_t)i * C + h * D;
                float mx = -INFINITY, sum = 0.0f;
                for (int j = 0; j < nk[s]; j++) {
                    const float *kj = k + base + (int64_t)j * C + h * D;
                    float d = 0.0f;
                    for (int c = 0; c < D; c++) d += qi[c] * kj[c];
                    sc[j] = d;
                    if (d > mx) mx = d;
                }
                for (int j = 0; j < nk[s]; j++) {
                    sc[j] = expf(sc[j] - mx);
                    sum += sc[j];
                }
                float *oi = o + base + (int64_t)i * C + h * D;
                for (int c = 0; c < D; c++) oi[c] = 0.0f;
                for (int j = 0; j < nk[s]; j++) {
                    const float *vj = v + base + (int64_t)j * C + h * D;
                    const float p = sc[j] / sum;
                    for (int c = 0; c < D; c++) oi[c] += p * vj[c];
                }
            }
    }
    free(sc);
}

static cdx_status vision_forward(cdx_train_model *m, int n, const float *pixels, float *img)
{
    struct cdx_train_siglip *s = m->sig;
    struct ttower *t = &m->vision;
    const int S = m->cfg.vision.image_size, P = m->cfg.vision.patch_size, side = S / P;
    const int NP = side * side, C = t->C, F = t->F, H = t->H, D = C / H, PPP = 3 * P * P;
    const int64_t R = (int64_t)n * NP;
    cdx_status st;
    if ((st = cdx_train_tower_reserve(m, t, R, n))) return st;
    t->nk = NULL;
    for (int b = 0; b < n; b++) {
        t->off[b] = (int64_t)b * NP;
        t->len[b] = NP;
    }
    size_t need = (size_t)R * PPP + 3 * (size_t)R * C + (size_t)C + 3 * (size_t)n * C +
                  2 * (size_t)n * F + (size_t)NP;
    if (need > s->vcap) {
        free(s->vmem);
        if (!(s->vmem = malloc(need * sizeof(float)))) {
            s->vcap = 0;
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for a batch of images", m->dir);
        }
        s->vcap = need;
    }
    float *p = s->vmem;
    s->col = p, p += (size_t)R * PPP;
    s->hp = p, p += (size_t)R * C;
    s->hk = p, p += (size_t)R * C;
    s->hv = p, p += (size_t)R * C;
    s->qp = p, p += C;
    s->ho = p, p += (size_t)n * C;
    s->hr = p, p += (size_t)n * C;
    s->hl = p, p += (size_t)n * C;
    s->hu = p, p += (size_t)n * F;
    s->ha = p, p += (size_t)n * F;
    s->sc = p;

    float *x = t->acts[0].x_in;
    cdx_im2col(s->col, pixels, n, S, P);
    cdx_linear(x, s->col, m->patch->w, R, PPP, C);
    cdx_add_bias(x, m->patch_b->w, R, C);
    for (int b = 0; b < n; b++) cdx_add_bias(x + (int64_t)b * NP * C, m->vpos->w, 1, NP * C);
    for (int l = 0; l < t->L; l++) cdx_train_block_forward(t, l);
    cdx_layernorm(s->hp, t->acts[t->L - 1].x_out, m->post_w->w, m->post_b->w, R, C, t->eps);

    /* the pooling head, as siglip.c's encode_chunk */
    const float *in_w = s->in_w->w, *in_b = s->in_b->w;
    cdx_linear(s->qp, s->probe->w, in_w, 1, C, C);
    cdx_add_bias(s->qp, in_b, 1, C);
    cdx_scale(s->qp, C, 1.0f / sqrtf((float)D));
    cdx_linear(s->hk, s->hp, in_w + (int64_t)C * C, R, C, C);
    cdx_add_bias(s->hk, in_b + C, R, C);
    cdx_linear(s->hv, s->hp, in_w + (int64_t)2 * C * C, R, C, C);
    cdx_add_bias(s->hv, in_b + 2 * C, R, C);
    for (int b = 0; b < n; b++)
        for (int h = 0; h < H; h++) {
            const float *kb = s->hk + (int64_t)b * NP * C + h * D, *vb = s->hv + (int64_t)b * NP * C + h * D;
            const float *q = s->qp + h * D;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < NP; j++) {
                float d = 0.0f;
                for (int c = 0; c < D; c++) d += q[c] * kb[(int64_t)j * C + c];
                s->sc[j] = d;
                if (d > mx) mx = d;
            }
            for (int j = 0; j < NP; j++) {
                s->sc[j] = expf(s->sc[j] - mx);
                sum += s->sc[j];
            }
            float *o = s->ho + (int64_t)b * C + h * D;
            for (int c = 0; c < D; c++) o[c] = 0.0f;
            for (int j = 0; j < NP; j++) {
                const float pj = s->sc[j] / sum;
                for (int c = 0; c < D; c++) o[c] += pj * vb[(int64_t)j * C + c];
            }
        }
    cdx_linear(s->hr, s->ho, s->out_w->w, n, C, C);
    cdx_add_bias(s->hr, s->out_b->w, n, C);
    cdx_layernorm(s->hl, s->hr, s->ln_w->w, s->ln_b->w, n, C, t->eps);
    cdx_linear(s->hu, s->hl, s->fc1_w->w, n, C, F);
    memcpy(s->ha, s->hu, sizeof(float) * (size_t)n * F);
    cdx_bias_act(s->ha, s->fc1_b->w, n, F, t->act);
    float *tmp = t->scratch;
    cdx_linear(tmp, s->ha, s->fc2_w->w, n, F, C);
    memcpy(img, s->hr, sizeof(float) * (size_t)n * C);
    cdx_residual_bias(img, tmp, s->fc2_b->w, n, C);
    return CDX_OK;
}

static cdx_status text_forward(cdx_train_model *m, int n, const int32_t *ids, const int *lens,
                               float *txt)
{
    struct cdx_train_siglip *s = m->sig;
    struct ttower *t = &m->text;
    const int C = t->C, E = m->cfg.projection_dim, V = m->cfg.text.vocab_size;
    const int T = m->cfg.text.max_positions;
    cdx_status st;
    for (int i = 0; i < n; i++)
        if (lens[i] != T)
            return cdx_fail(CDX_ERR_ARG, "caption %d: %d tokens; a SigLIP text tower takes exactly %d "
                            "(the padded sequence)", i, lens[i], T);
    for (int64_t r = 0; r < (int64_t)n * T; r++)
        if (ids[r] < 0 || ids[r] >= V)
            return cdx_fail(CDX_ERR_ARG, "token id %d is outside the vocabulary (%d)", (int)ids[r], V);
    if ((size_t)n * T > s->scap || (size_t)n > s->tcap) {
        free(s->pos);
        free(s->rid);
        free(s->nk);
        s->pos = malloc(sizeof(int) * (size_t)n * T);
        s->rid = malloc(sizeof(int32_t) * (size_t)n * T);
        s->nk = malloc(sizeof(int) * (size_t)n);
        if (!s->pos || !s->rid || !s->nk) {
            s->scap = s->tcap = 0;
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for a batch of captions", m->dir);
        }
        s->scap = (size_t)n * T;
        s->tcap = (size_t)n;
    }
    /* the rows the engine runs (siglip.c, cdx_siglip_encode_tokens) */
    int64_t R = 0;
    int *rows = malloc(sizeof(int) * (size_t)n);
    if (!rows) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const int32_t *q = ids + (int64_t)i * T;
        const int64_t r0 = R;
        if (s->masks) {
            for (int p = 0; p < T; p++)
                if (q[p] != s->pad) s->pos[R++] = p;
            s->nk[i] = (int)(R - r0);
            if (s->nk[i] == 0) {
                free(rows);
                return cdx_fail(CDX_ERR_ARG, "caption %d: the token sequence is all padding", i);
            }
            if (q[T - 1] == s->pad) s->pos[R++] = T - 1;
        } else {
            for (int p = 0; p < T; p++) s->pos[R++] = p;
            s->nk[i] = T;
        }
        for (int64_t r = r0; r < R; r++) s->rid[r] = q[s->pos[r]];
        rows[i] = (int)(R - r0);
    }
    if ((st = cdx_train_tower_reserve(m, t, R, n))) {
        free(rows);
        return st;
    }
    t->nk = s->masks ? s->nk : NULL;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        t->off[i] = off;
        t->len[i] = rows[i];
        off += rows[i];
    }
    free(rows);
    if ((size_t)2 * n * C > s->tmcap) {
        free(s->tmem);
        if (!(s->tmem = malloc(sizeof(float) * 2 * (size_t)n * C))) {
            s->tmcap = 0;
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for a batch of captions", m->dir);
        }
        s->tmcap = 2 * (size_t)n * C;
    }
    m->tpool_in = s->tmem;
    m->tpool_ln = s->tmem + (size_t)n * C;
    float *x = t->acts[0].x_in;
    for (int64_t r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            x[r * C + c] = m->tok_emb->w[(int64_t)s->rid[r] * C + c] + m->tpos->w[(int64_t)s->pos[r] * C + c];
    for (int l = 0; l < t->L; l++) cdx_train_block_forward(t, l);
    const float *xo = t->acts[t->L - 1].x_out;
    for (int i = 0; i < n; i++)
        memcpy(m->tpool_in + (int64_t)i * C, xo + (t->off[i] + t->len[i] - 1) * C, sizeof(float) * (size_t)C);
    cdx_layernorm(m->tpool_ln, m->tpool_in, m->fln_w->w, m->fln_b->w, n, C, t->eps);
    cdx_linear(txt, m->tpool_ln, s->head_w->w, n, C, E);
    cdx_add_bias(txt, s->head_b->w, n, E);
    return CDX_OK;
}

cdx_status cdx_train_siglip_forward(cdx_train_model *m, const cdx_train_batch *b, float *img, float *txt)
{
    cdx_status st;
    m->n = 0;
    /* no pixels: img holds the stored image embeddings (train.c) */
    if ((b->pixels && (st = vision_forward(m, b->n, b->pixels, img))) ||
        (st = text_forward(m, b->n, b->ids, b->lens, txt)))
        return st;
    m->n = b->n;
    return CDX_OK;
}

/* ---------------------------------------------------------------- backward */

#define PG(p) ((p)->trainable ? (p)->g : NULL)
/* a part of a fused tensor's gradient (NULL stays NULL) */
#define PGO(p, o) ((p)->trainable ? (p)->g + (o) : NULL)

static int any_trainable(cdx_train_param *const *p, int n)
{
    for (int i = 0; i < n; i++)
        if (p[i]->trainable) return 1;
    return 0;
}

static cdx_status vision_backward(cdx_train_model *m, const float *d_img)
{
    struct cdx_train_siglip *s = m->sig;
    struct ttower *t = &m->vision;
    const int n = m->n, S = m->cfg.vision.image_size, P = m->cfg.vision.patch_size, side = S / P;
    const int NP = side * side, C = t->C, F = t->F, H = t->H, D = C / H, PPP = 3 * P * P;
    const int64_t R = t->R;
    cdx_train_param *const heads[] = {m->post_w, m->post_b, s->probe, s->in_w, s->in_b, s->out_w,
                                      s->out_b, s->ln_w, s->ln_b, s->fc1_w, s->fc1_b, s->fc2_w, s->fc2_b};
    const int emb = m->patch->trainable || m->patch_b->trainable || m->vpos->trainable;
    const int head = any_trainable(heads, (int)(sizeof heads / sizeof *heads));
    const int low = cdx_train_lowest_block(t, emb);
    struct bwd_scratch bs = {0};
    float *dx = NULL, *buf = NULL;
    cdx_status st = CDX_OK;
    if (!head && low == t->L) return CDX_OK; /* the tower is frozen */
    if ((st = cdx_train_scratch_new(t, &bs))) return st;
    dx = calloc((size_t)R * C, sizeof(float));
    /* dhr, dhl, dho (n,C); da, dpre (n,F); dq (C), dprobe (C), p (NP) */
    buf = malloc(sizeof(float) * (3 * (size_t)n * C + 2 * (size_t)n * F + 2 * (size_t)C + (size_t)NP));
    if (!dx || !buf) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory for the backward pass");
        goto out;
    }
    float *dhr = buf, *dhl = dhr + (size_t)n * C, *dho = dhl + (size_t)n * C;
    float *da = dho + (size_t)n * C, *dpre = da + (size_t)n * F, *dq = dpre + (size_t)n * F;
    float *dprobe = dq + C, *pr = dprobe + C;

    /* out = hr + a W2^T + b2; a = act(hu + b1); hu = hl W1^T; hl = LN(hr) */
    memcpy(dhr, d_img, sizeof(float) * (size_t)n * C);
    cdx_grad_linear(da, PG(s->fc2_w), PG(s->fc2_b), d_img, s->ha, s->fc2_w->w, n, F, C, 0);
    for (int64_t r = 0; r < n; r++)
        for (int f = 0; f < F; f++) dpre[r * F + f] = s->hu[r * F + f] + s->fc1_b->w[f];
    cdx_grad_act(dpre, da, dpre, (int64_t)n * F, t->act);
    cdx_grad_linear(dhl, PG(s->fc1_w), PG(s->fc1_b), dpre, s->hl, s->fc1_w->w, n, C, F, 0);
    cdx_grad_layernorm(dhr, PG(s->ln_w), PG(s->ln_b), dhl, s->hr, s->ln_w->w, n, C, t->eps);
    /* hr = o Wo^T + bo */
    cdx_grad_linear(dho, PG(s->out_w), PG(s->out_b), dhr, s->ho, s->out_w->w, n, C, C, 0);
    /* the probe's attention: per image and head, p = softmax(q k_j),
     * o = sum_j p_j v_j.  dv_j = p_j do; ds_j = p_j (do.v_j - sum p do.v);
     * dk_j = ds_j q; dq += sum_j ds_j k_j (q is shared by the batch) */
    float *dk = bs.dk, *dv = bs.dv;
    memset(dq, 0, sizeof(float) * (size_t)C);
    for (int b = 0; b < n; b++)
        for (int h = 0; h < H; h++) {
            const int64_t o = (int64_t)b * NP * C + h * D;
            const float *q = s->qp + h * D, *dout = dho + (int64_t)b * C + h * D;
            float mx = -INFINITY, sum = 0.0f, dot = 0.0f;
            for (int j = 0; j < NP; j++) {
                float d = 0.0f;
                for (int c = 0; c < D; c++) d += q[c] * s->hk[o + (int64_t)j * C + c];
                pr[j] = d;
                if (d > mx) mx = d;
            }
            for (int j = 0; j < NP; j++) {
                pr[j] = expf(pr[j] - mx);
                sum += pr[j];
            }
            for (int j = 0; j < NP; j++) {
                float dp = 0.0f;
                pr[j] /= sum;
                for (int c = 0; c < D; c++) {
                    dv[o + (int64_t)j * C + c] = pr[j] * dout[c];
                    dp += dout[c] * s->hv[o + (int64_t)j * C + c];
                }
                dk[o + (int64_t)j * C] = dp; /* dP, kept in dk's first column for now */
                dot += pr[j] * dp;
            }
            for (int j = 0; j < NP; j++) {
                const float ds = pr[j] * (dk[o + (int64_t)j * C] - dot);
                for (int c = 0; c < D; c++) {
                    dk[o + (int64_t)j * C + c] = ds * q[c];
                    dq[h * D + c] += ds * s->hk[o + (int64_t)j * C + c];
                }
            }
        }
    /* k = hp Wk^T + bk (the key bias: an exact zero gradient, as in the
     * blocks), v = hp Wv^T + bv, q = (probe Wq^T + bq) D^-1/2 */
    float *dhp = bs.dh;
    cdx_grad_linear(dhp, PGO(s->in_w, (int64_t)C * C), NULL, dk, s->hp, s->in_w->w + (int64_t)C * C, R,
                    C, C, 0);
    cdx_grad_linear(dhp, PGO(s->in_w, 2 * (int64_t)C * C), PGO(s->in_b, 2 * C), dv, s->hp,
                    s->in_w->w + 2 * (int64_t)C * C, R, C, C, 1);
    cdx_scale(dq, C, 1.0f / sqrtf((float)D));
    cdx_grad_linear(dprobe, PG(s->in_w), PG(s->in_b), dq, s->probe->w, s->in_w->w, 1, C, C, 0);
    if (s->probe->trainable)
        for (int c = 0; c < C; c++) s->probe->g[c] += dprobe[c];
    /* hp = post_layernorm(x_L) */
    cdx_grad_layernorm(dx, PG(m->post_w), PG(m->post_b), dhp, t->acts[t->L - 1].x_out, m->post_w->w, R, C,
                       t->eps);
    for (int l = t->L - 1; l >= low; l--) cdx_train_block_backward(t, l, dx, &bs);
    if (emb) {
        /* x0 = col W^T + b + positions */
        if (m->vpos->trainable)
            for (int b = 0; b < n; b++)
                for (int64_t i = 0; i < (int64_t)NP * C; i++) m->vpos->g[i] += dx[(int64_t)b * NP * C + i];
        if (m->patch->trainable || m->patch_b->trainable)
            cdx_grad_linear(NULL, PG(m->patch), PG(m->patch_b), dx, s->col, m->patch->w, R, PPP, C, 0);
    }
out:
    free(dx);
    free(buf);
    free(bs.mem);
    return st;
}

static cdx_status text_backward(cdx_train_model *m, const float *d_txt)
{
    struct cdx_train_siglip *s = m->sig;
    struct ttower *t = &m->text;
    const int n = m->n, C = t->C, E = m->cfg.projection_dim;
    const int emb = m->tok_emb->trainable || m->tpos->trainable;
    const int head = s->head_w->trainable || s->head_b->trainable || m->fln_w->trainable ||
                     m->fln_b->trainable;
    const int low = cdx_train_lowest_block(t, emb);
    struct bwd_scratch bs = {0};
    float *dx = NULL, *dpool = NULL;
    cdx_status st = CDX_OK;
    if (!head && low == t->L) return CDX_OK;
    if ((st = cdx_train_scratch_new(t, &bs))) return st;
    dx = calloc((size_t)t->R * C, sizeof(float));
    dpool = malloc(sizeof(float) * 2 * (size_t)n * C);
    if (!dx || !dpool) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory for the backward pass");
        goto out;
    }
    float *dln = dpool + (size_t)n * C;
    cdx_grad_linear(dln, PG(s->head_w), PG(s->head_b), d_txt, m->tpool_ln, s->head_w->w, n, C, E, 0);
    memset(dpool, 0, sizeof(float) * (size_t)n * C);
    cdx_grad_layernorm(dpool, PG(m->fln_w), PG(m->fln_b), dln, m->tpool_in, m->fln_w->w, n, C, t->eps);
    for (int i = 0; i < n; i++)
        memcpy(dx + (t->off[i] + t->len[i] - 1) * C, dpool + (int64_t)i * C, sizeof(float) * C);
    for (int l = t->L - 1; l >= low; l--) cdx_train_block_backward(t, l, dx, &bs);
    if (emb)
        for (int64_t r = 0; r < t->R; r++) {
            if (m->tok_emb->trainable) {
                float *g = m->tok_emb->g + (int64_t)s->rid[r] * C;
                for (int c = 0; c < C; c++) g[c] += dx[r * C + c];
            }
            if (m->tpos->trainable) {
                float *g = m->tpos->g + (int64_t)s->pos[r] * C;
                for (int c = 0; c < C; c++) g[c] += dx[r * C + c];
            }
        }
out:
    free(dx);
    free(dpool);
    free(bs.mem);
    return st;
}

cdx_status cdx_train_siglip_backward(cdx_train_model *m, const float *d_img, const float *d_txt)
{
    cdx_status st;
    if ((st = vision_backward(m, d_img)) || (st = text_backward(m, d_txt))) return st;
    return CDX_OK;
}

/* ---------------------------------------------------------------- loss */

double cdx_train_sigmoid_loss(const float *img, const float *txt, int n, int E, float t, float b,
                              float *d_img, float *d_txt, float *d_t, float *d_b)
{
    /* in double, as the CLIP loss (train.c) */
    double *I = malloc(sizeof(double) * (size_t)n * E * 4), *T, *dI, *dT;
    double *G = malloc(sizeof(double) * (size_t)n * n), *ni = malloc(sizeof(double) * 2 * (size_t)n), *nt;
    double loss = 0, sc = exp((double)t), dts = 0, dbs = 0;
    if (!I || !G || !ni) {
        free(I);
        free(G);
        free(ni);
        return NAN;
    }
    T = I + (size_t)n * E;
    dI = T + (size_t)n * E;
    dT = dI + (size_t)n * E;
    nt = ni + n;
    cdx_train_unit_rows(img, n, E, I, ni);
    cdx_train_unit_rows(txt, n, E, T, nt);
    /* z_ij = s T_i . I_j + b (text i, image j); y_ij = 2 [i == j] - 1;
     * -log sigmoid(y z) = log(1 + exp(-y z)); its derivative in z is
     * -y sigmoid(-y z) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double d = 0;
            for (int e = 0; e < E; e++) d += T[i * E + e] * I[j * E + e];
            const double z = sc * d + b, y = i == j ? 1.0 : -1.0, yz = y * z;
            /* log1p(exp(-yz)), stable for either sign */
            loss += (yz > 0 ? log1p(exp(-yz)) : -yz + log1p(exp(yz))) / n;
            const double g = -y / (1.0 + exp(yz)) / n;
            G[i * n + j] = g;
            dts += g * sc * d;
            dbs += g;
        }
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E; e++) {
            double a = 0, c = 0;
            for (int j = 0; j < n; j++) {
                a += G[i * n + j] * I[j * E + e]; /* d T_i */
                c += G[j * n + i] * T[j * E + e]; /* d I_i */
            }
            dT[i * E + e] = sc * a;
            dI[i * E + e] = sc * c;
        }
    cdx_train_unit_rows_back(I, ni, dI, n, E, d_img);
    cdx_train_unit_rows_back(T, nt, dT, n, E, d_txt);
    *d_t = (float)dts;
    *d_b = (float)dbs;
    free(I);
    free(G);
    free(ni);
    return loss;
}
