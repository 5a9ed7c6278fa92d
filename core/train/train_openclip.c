/*
 * train_openclip.c - training OpenCLIP checkpoints (open_clip_config.json
 * + open_clip_model.safetensors or open_clip_pytorch_model.bin).
 *
 * The configurations core/engine/openclip.c accepts compute exactly
 * transformers' CLIP (that file lists the correspondence), so training
 * runs train.c's CLIP forward, backward, loss and AdamW unchanged; what
 * differs is only the layout of the tensors, translated here both ways:
 *
 *   at open   attn.in_proj_weight (3C,C) / in_proj_bias (3C), nn.MultiheadAttention's
 *             fused [q; k; v], becomes three parameters NAME:q, NAME:k,
 *             NAME:v (rows C each); visual.proj and text_projection,
 *             stored (C,E) and multiplied as x @ proj, become their
 *             transposes NAME:T (E,C), the layout cdx_linear takes;
 *             every other tensor keeps its name and shape
 *   at save   cdx_train_openclip_export puts them back: the output is
 *             open_clip_model.safetensors with every tensor of the input
 *             under its name and shape (train_save.c)
 *
 * AdamW is elementwise, so the moments of the split tensors are those of
 * the fused ones.  The decay rule (ndim >= 2) gives the same sets: the
 * in_proj and projection weights decay, their biases do not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/openclip.h"
#include "engine/weights.h"
#include "internal.h"
#include "train.h"
#include "train_impl.h"

struct cdx_train_openclip {
    cdx_openclip oc;   /* weights_path and text_prefix are used */
    float **outs;      /* the tensors exported for the save being written */
    int n_outs;
};

void cdx_train_openclip_free(struct cdx_train_openclip *o)
{
    if (!o) return;
    free(o->oc.weights_path);
    for (int i = 0; i < o->n_outs; i++) free(o->outs[i]);
    free(o->outs);
    free(o);
}

/* A parameter named name with shape (d0,d1) from src, laid out as it is
 * to be used (a slice or a transposed copy of a checkpoint tensor). */
static cdx_status add_from(cdx_train_model *m, const char *name, int ndim, int64_t d0, int64_t d1,
                           const float *src, int transpose, cdx_train_tower tower, int layer,
                           cdx_train_param **out)
{
    cdx_train_param *p;
    const int64_t shape[2] = {d0, d1};
    cdx_status st = cdx_train_param_slot(m, name, ndim, shape, tower, layer, &p);
    if (st) return st;
    if (transpose) /* src (d1,d0) -> (d0,d1) */
        for (int64_t i = 0; i < d0; i++)
            for (int64_t j = 0; j < d1; j++) p->w[i * d1 + j] = src[j * d0 + i];
    else
        memcpy(p->w, src, sizeof(float) * (size_t)p->numel);
    if (out) *out = p;
    return CDX_OK;
}

/* A checkpoint tensor as one parameter of the same name and shape. */
static cdx_status add_same(cdx_train_model *m, const char *prefix, const char *name, int ndim,
                           int64_t d0, int64_t d1, int64_t d2, int64_t d3, cdx_train_tower tower,
                           int layer, cdx_train_param **out)
{
    char full[128];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return cdx_train_add_param(m, full, ndim, d0, d1, d2, d3, tower, layer, out);
}

/* A tower's blocks: open_clip's names, q/k/v split out of in_proj. */
static cdx_status add_blocks(cdx_train_model *m, const char *prefix, struct ttower *t,
                             const cdx_tower_info *ti, cdx_act act, int causal, cdx_train_tower tower)
{
    const int64_t C = ti->hidden, F = ti->intermediate;
    char name[128], part[160];
    static const char qkv[3] = {'q', 'k', 'v'};
    t->C = ti->hidden;
    t->F = ti->intermediate;
    t->H = ti->heads;
    t->L = ti->layers;
    t->eps = (float)ti->ln_eps;
    t->act = act;
    t->causal = causal;
    t->bp = calloc((size_t)t->L * B_N, sizeof *t->bp);
    if (!t->bp) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", m->dir);
    for (int l = 0; l < t->L; l++) {
        cdx_train_param **bp = t->bp + (size_t)l * B_N;
        const float *in_w, *in_b;
        cdx_status st;
#define SAME(suffix, nd, a, b, k) \
    (snprintf(name, sizeof name, "%stransformer.resblocks.%d.", prefix, l), \
     add_same(m, name, suffix, nd, a, b, 0, 0, tower, l, &bp[k]))
        if ((st = SAME("ln_1.weight", 1, C, 0, B_LN1_W)) || (st = SAME("ln_1.bias", 1, C, 0, B_LN1_B)))
            return st;
        snprintf(name, sizeof name, "%stransformer.resblocks.%d.attn.in_proj_weight", prefix, l);
        if ((st = cdx_weights_f32(m->w, name, 2, (int64_t[4]){3 * C, C, 0, 0}, &in_w))) return st;
        for (int i = 0; i < 3; i++) {
            snprintf(part, sizeof part, "%s:%c", name, qkv[i]);
            if ((st = add_from(m, part, 2, C, C, in_w + i * C * C, 0, tower, l, &bp[B_Q_W + 2 * i])))
                return st;
        }
        snprintf(name, sizeof name, "%stransformer.resblocks.%d.attn.in_proj_bias", prefix, l);
        if ((st = cdx_weights_f32(m->w, name, 1, (int64_t[4]){3 * C, 0, 0, 0}, &in_b))) return st;
        for (int i = 0; i < 3; i++) {
            snprintf(part, sizeof part, "%s:%c", name, qkv[i]);
            if ((st = add_from(m, part, 1, C, 0, in_b + i * C, 0, tower, l, &bp[B_Q_B + 2 * i])))
                return st;
        }
        if ((st = SAME("attn.out_proj.weight", 2, C, C, B_O_W)) ||
            (st = SAME("attn.out_proj.bias", 1, C, 0, B_O_B)) ||
            (st = SAME("ln_2.weight", 1, C, 0, B_LN2_W)) || (st = SAME("ln_2.bias", 1, C, 0, B_LN2_B)) ||
            (st = SAME("mlp.c_fc.weight", 2, F, C, B_FC1_W)) || (st = SAME("mlp.c_fc.bias", 1, F, 0, B_FC1_B)) ||
            (st = SAME("mlp.c_proj.weight", 2, C, F, B_FC2_W)) ||
            (st = SAME("mlp.c_proj.bias", 1, C, 0, B_FC2_B)))
            return st;
#undef SAME
    }
    return CDX_OK;
}

cdx_status cdx_train_openclip_open(cdx_train_model *m)
{
    struct cdx_train_openclip *o = calloc(1, sizeof *o);
    cdx_preprocess_cfg pre;
    cdx_status st;
    const float *src;
    char name[128];
    if (!o) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", m->dir);
    m->oc = o;
    if ((st = cdx_openclip_config_load(m->dir, &m->cfg, &pre, &o->oc)) ||
        (st = cdx_openclip_weights_open(m->dir, &o->oc, &m->w)))
        return st;
    const cdx_tower_info *ti = &m->cfg.text, *vi = &m->cfg.vision;
    const int E = m->cfg.projection_dim, P = vi->patch_size, side = vi->image_size / P;
    const int Nv = side * side + 1, Ct = ti->hidden, Cv = vi->hidden;
    const char *x = o->oc.text_prefix;
    m->params = calloc((size_t)(17 + 16 * (ti->layers + vi->layers)), sizeof *m->params);
    if (!m->params) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", m->dir);
    const cdx_train_tower TX = CDX_TRAIN_TEXT, VI = CDX_TRAIN_VISION;
    if ((st = add_same(m, x, "token_embedding.weight", 2, ti->vocab_size, Ct, 0, 0, TX, -1, &m->tok_emb)) ||
        (st = add_same(m, x, "positional_embedding", 2, ti->max_positions, Ct, 0, 0, TX, -1, &m->tpos)) ||
        (st = add_blocks(m, x, &m->text, ti, m->cfg.text_act, 1, TX)) ||
        (st = add_same(m, x, "ln_final.weight", 1, Ct, 0, 0, 0, TX, -1, &m->fln_w)) ||
        (st = add_same(m, x, "ln_final.bias", 1, Ct, 0, 0, 0, TX, -1, &m->fln_b)))
        return st;
    snprintf(name, sizeof name, "%stext_projection", x);
    if ((st = cdx_weights_f32(m->w, name, 2, (int64_t[4]){Ct, E, 0, 0}, &src))) return st;
    strncat(name, ":T", sizeof name - strlen(name) - 1);
    if ((st = add_from(m, name, 2, E, Ct, src, 1, TX, -1, &m->tproj)) ||
        (st = add_same(m, "", "visual.class_embedding", 1, Cv, 0, 0, 0, VI, -1, &m->cls)) ||
        (st = add_same(m, "", "visual.conv1.weight", 4, Cv, 3, P, P, VI, -1, &m->patch)) ||
        (st = add_same(m, "", "visual.positional_embedding", 2, Nv, Cv, 0, 0, VI, -1, &m->vpos)) ||
        (st = add_same(m, "", "visual.ln_pre.weight", 1, Cv, 0, 0, 0, VI, -1, &m->pre_w)) ||
        (st = add_same(m, "", "visual.ln_pre.bias", 1, Cv, 0, 0, 0, VI, -1, &m->pre_b)) ||
        (st = add_blocks(m, "visual.", &m->vision, vi, m->cfg.vision_act, 0, VI)) ||
        (st = add_same(m, "", "visual.ln_post.weight", 1, Cv, 0, 0, 0, VI, -1, &m->post_w)) ||
        (st = add_same(m, "", "visual.ln_post.bias", 1, Cv, 0, 0, 0, VI, -1, &m->post_b)) ||
        (st = cdx_weights_f32(m->w, "visual.proj", 2, (int64_t[4]){Cv, E, 0, 0}, &src)) ||
        (st = add_from(m, "visual.proj:T", 2, E, Cv, src, 1, VI, -1, &m->vproj)))
        return st;
    const cdx_tensor_info *ls = cdx_weights_find(m->w, "logit_scale");
    if ((st = cdx_train_add_param(m, "logit_scale", ls && ls->ndim == 1, 1, 0, 0, 0, CDX_TRAIN_SHARED, -1,
                                  &m->logit_scale)))
        return st;
    m->logit_scale->decay = 0;
    return CDX_OK;
}

/* Keep buf until the save is written (cdx_train_openclip_release). */
static const float *keep(struct cdx_train_openclip *o, float *buf)
{
    float **n = buf ? realloc(o->outs, sizeof *n * (size_t)(o->n_outs + 1)) : NULL;
    if (!n) {
        free(buf);
        return NULL;
    }
    o->outs = n;
    o->outs[o->n_outs++] = buf;
    return buf;
}

void cdx_train_openclip_release(cdx_train_model *m)
{
    struct cdx_train_openclip *o = m->oc;
    if (!o) return;
    for (int i = 0; i < o->n_outs; i++) free(o->outs[i]);
    free(o->outs);
    o->outs = NULL;
    o->n_outs = 0;
}

const float *cdx_train_openclip_export(cdx_train_model *m, const cdx_tensor_info *ti, cdx_status *st)
{
    struct cdx_train_openclip *o = m->oc;
    char name[160];
    const size_t len = strlen(ti->name);
    const int is_w = len >= 14 && strcmp(ti->name + len - 14, "in_proj_weight") == 0;
    const int is_b = len >= 12 && strcmp(ti->name + len - 12, "in_proj_bias") == 0;
    const float *r = NULL;
    *st = CDX_OK;
    if (is_w || is_b) {
        /* [q; k; v] row blocks */
        cdx_train_param *part[3];
        float *buf;
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "%s:%c", ti->name, "qkv"[i]);
            if (!(part[i] = cdx_train_param_find(m, name)) || part[i]->numel * 3 != ti->numel) return NULL;
        }
        if ((buf = malloc(sizeof(float) * (size_t)ti->numel)))
            for (int i = 0; i < 3; i++)
                memcpy(buf + i * part[0]->numel, part[i]->w, sizeof(float) * (size_t)part[i]->numel);
        if (!(r = keep(o, buf))) *st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        return r;
    }
    snprintf(name, sizeof name, "%s:T", ti->name);
    cdx_train_param *p = cdx_train_param_find(m, name);
    if (p && ti->ndim == 2 && p->numel == ti->numel) {
        /* (E,C) back to (C,E) */
        const int64_t E = p->shape[0], C = p->shape[1];
        float *buf = malloc(sizeof(float) * (size_t)p->numel);
        if (buf)
            for (int64_t c = 0; c < C; c++)
                for (int64_t e = 0; e < E; e++) buf[c * E + e] = p->w[e * C + c];
        if (!(r = keep(o, buf))) *st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        return r;
    }
    return NULL;
}

int cdx_train_openclip_is_bin(const cdx_train_model *m)
{
    const char *w = m->oc ? m->oc->oc.weights_path : NULL;
    const size_t n = w ? strlen(w) : 0;
    return n >= 4 && strcmp(w + n - 4, ".bin") == 0;
}

cdx_status cdx_train_openclip_write_bin(cdx_train_model *m, const char *dir)
{
    const int nt = cdx_weights_count(m->w);
    cdx_train_out *t = calloc((size_t)(nt ? nt : 1), sizeof *t);
    char *path = cdx_path_join(dir, "open_clip_pytorch_model.bin");
    cdx_status st = CDX_OK;
    if (!t || !path) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* every tensor of the input, in its order, as train_save.c does */
    for (int i = 0; i < nt; i++) {
        const cdx_tensor_info *ti = cdx_weights_at(m->w, i);
        const cdx_train_param *p = cdx_train_param_find(m, ti->name);
        t[i].name = ti->name;
        t[i].ndim = ti->ndim;
        t[i].shape = ti->shape;
        t[i].numel = ti->numel;
        if (p)
            t[i].data = p->w;
        else if (!(t[i].data = cdx_train_openclip_export(m, ti, &st)) &&
                 (st || (st = cdx_weights_f32(m->w, ti->name, ti->ndim, ti->shape, &t[i].data))))
            goto out;
    }
    st = cdx_train_write_torchbin(path, nt, t);
out:
    free(t);
    free(path);
    return st;
}
