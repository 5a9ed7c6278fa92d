/*
 * transformer.c - see transformer.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels.h"
#include "linear.h"
#include "pool.h"
#include "qcache.h"
#include "transformer.h"

cdx_status cdx_stack_init(cdx_stack *t, const cdx_tower_info *ti, cdx_act act)
{
    memset(t, 0, sizeof *t);
    t->C = ti->hidden;
    t->F = ti->intermediate;
    t->H = ti->heads;
    t->L = ti->layers;
    t->eps = (float)ti->ln_eps;
    t->act = act;
    if (!(t->layers = calloc((size_t)(t->L > 0 ? t->L : 1), sizeof *t->layers)))
        return cdx_fail(CDX_ERR_NOMEM, "out of memory for %d transformer blocks", t->L);
    return CDX_OK;
}

static void unprepare(cdx_stack *t)
{
    for (int i = 0; t->layers && i < t->L; i++) {
        cdx_block_w *l = &t->layers[i];
        cdx_qlinear **q[7] = {&l->q_q, &l->k_q, &l->v_q, &l->o_q, &l->fc1_q, &l->fc2_q, &l->qkv_q};
        for (int j = 0; j < 7; j++) {
            cdx_qlinear_free(*q[j]);
            *q[j] = NULL;
        }
    }
    cdx_qcache_release(t);
}

void cdx_stack_free(cdx_stack *t)
{
    if (!t) return;
    unprepare(t);
    free(t->layers);
    t->layers = NULL;
}

cdx_status cdx_stack_bind_hf(cdx_stack *t, cdx_weights *w, const char *prefix)
{
    char n[256];
    const int64_t C = t->C, F = t->F;
    for (int i = 0; i < t->L; i++) {
        cdx_block_w *l = &t->layers[i];
        struct {
            const char *suffix;
            int ndim;
            int64_t d0, d1;
            const float **dst;
        } spec[] = {
            {"layer_norm1.weight", 1, C, 0, &l->ln1_w}, {"layer_norm1.bias", 1, C, 0, &l->ln1_b},
            {"self_attn.q_proj.weight", 2, C, C, &l->q_w}, {"self_attn.q_proj.bias", 1, C, 0, &l->q_b},
            {"self_attn.k_proj.weight", 2, C, C, &l->k_w}, {"self_attn.k_proj.bias", 1, C, 0, &l->k_b},
            {"self_attn.v_proj.weight", 2, C, C, &l->v_w}, {"self_attn.v_proj.bias", 1, C, 0, &l->v_b},
            {"self_attn.out_proj.weight", 2, C, C, &l->o_w}, {"self_attn.out_proj.bias", 1, C, 0, &l->o_b},
            {"layer_norm2.weight", 1, C, 0, &l->ln2_w}, {"layer_norm2.bias", 1, C, 0, &l->ln2_b},
            {"mlp.fc1.weight", 2, F, C, &l->fc1_w}, {"mlp.fc1.bias", 1, F, 0, &l->fc1_b},
            {"mlp.fc2.weight", 2, C, F, &l->fc2_w}, {"mlp.fc2.bias", 1, C, 0, &l->fc2_b},
        };
        for (size_t s = 0; s < sizeof spec / sizeof spec[0]; s++) {
            int64_t shape[4] = {spec[s].d0, spec[s].d1, 0, 0};
            snprintf(n, sizeof n, "%s.encoder.layers.%d.%s", prefix, i, spec[s].suffix);
            cdx_status st = cdx_weights_f32(w, n, spec[s].ndim, shape, spec[s].dst);
            if (st) return st;
        }
    }
    return CDX_OK;
}

void cdx_lin(cdx_qscratch *qs, const cdx_qlinear *q, float *y, const float *x, const float *W,
             int64_t R, int K, int N)
{
    if (q && cdx_qlinear_run(q, qs, y, x, R) == CDX_OK) return;
    cdx_linear(y, x, W, R, K, N);
}

/* Attention of R query rows over the first nk rows as keys (one
 * sequence; q already scaled).  sc: nk floats of scratch. */
static void attend_prefix(float *o, const float *q, const float *k, const float *v, int R, int nk,
                          int H, int D, float *sc)
{
    const int C = H * D;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < R; i++) {
            const float *qi = q + (int64_t)i * C + h * D;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < nk; j++) {
                const float *kj = k + (int64_t)j * C + h * D;
                float d = 0.0f;
                for (int c = 0; c < D; c++) d += qi[c] * kj[c];
                sc[j] = d;
                if (d > mx) mx = d;
            }
            for (int j = 0; j < nk; j++) {
                sc[j] = expf(sc[j] - mx);
                sum += sc[j];
            }
            float *oi = o + (int64_t)i * C + h * D;
            for (int c = 0; c < D; c++) oi[c] = 0.0f;
            for (int j = 0; j < nk; j++) {
                const float *vj = v + (int64_t)j * C + h * D;
                const float p = sc[j] / sum;
                for (int c = 0; c < D; c++) oi[c] += p * vj[c];
            }
        }
}

/* The fused product's rows (R, 3C) in mlp -> q (scaled), k, v with their
 * biases. */
struct split_ctx {
    const float *qkv, *qb, *kb, *vb;
    float *q, *k, *v;
    int C;
    float scale;
};

static void split_qkv(void *vctx, int64_t r0, int64_t r1)
{
    const struct split_ctx *c = vctx;
    const int C = c->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *src = c->qkv + r * 3 * C;
        float *q = c->q + r * C, *k = c->k + r * C, *v = c->v + r * C;
        for (int j = 0; j < C; j++) {
            q[j] = (src[j] + c->qb[j]) * c->scale;
            k[j] = src[C + j] + c->kb[j];
            v[j] = src[2 * C + j] + c->vb[j];
        }
    }
}

void cdx_block_run(const cdx_stack *t, const cdx_block_w *l, cdx_block_acts *a, int B, int T,
                   cdx_attn attn, int nk, float *sc, cdx_qscratch *qs)
{
    const int64_t R = (int64_t)B * T;
    const int C = t->C, F = t->F, H = t->H, D = C / H;
    const float scale = 1.0f / sqrtf((float)D);

    cdx_layernorm(a->h, a->x, l->ln1_w, l->ln1_b, R, C, t->eps);
    /* mlp (R,F) is free until the MLP, and F >= 3C in every family
     * (cdx_stack_prepare checks) */
    if (l->qkv_q && cdx_qlinear_run(l->qkv_q, qs, a->mlp, a->h, R) == CDX_OK) {
        struct split_ctx c = {a->mlp, l->q_b, l->k_b, l->v_b, a->q, a->k, a->v, C, scale};
        cdx_parallel_for(R, 64, split_qkv, &c);
    } else {
        cdx_lin(qs, l->q_q, a->q, a->h, l->q_w, R, C, C);
        cdx_lin(qs, l->k_q, a->k, a->h, l->k_w, R, C, C);
        cdx_lin(qs, l->v_q, a->v, a->h, l->v_w, R, C, C);
        cdx_add_bias(a->q, l->q_b, R, C);
        cdx_scale(a->q, R * C, scale);
        cdx_add_bias(a->k, l->k_b, R, C);
        cdx_add_bias(a->v, l->v_b, R, C);
    }
    /* the attention output goes to h: h is dead once q, k, v exist */
    if (attn == CDX_ATTN_PREFIX)
        attend_prefix(a->h, a->q, a->k, a->v, T, nk, H, D, sc);
    else
        cdx_attention(a->h, a->q, a->k, a->v, B, T, H, D, attn == CDX_ATTN_CAUSAL);
    /* out_proj into q (free now), then x += q + bias */
    cdx_lin(qs, l->o_q, a->q, a->h, l->o_w, R, C, C);
    cdx_residual_bias(a->x, a->q, l->o_b, R, C);

    cdx_layernorm(a->h, a->x, l->ln2_w, l->ln2_b, R, C, t->eps);
    cdx_lin(qs, l->fc1_q, a->mlp, a->h, l->fc1_w, R, C, F);
    cdx_bias_act(a->mlp, l->fc1_b, R, F, t->act);
    cdx_lin(qs, l->fc2_q, a->q, a->mlp, l->fc2_w, R, F, C);
    cdx_residual_bias(a->x, a->q, l->fc2_b, R, C);
}

/* int8 smooths the products that follow a layer norm with that norm's
 * |gain| + |bias| as each input channel's typical magnitude: the
 * normalised input is O(1) per channel, so the gain and bias set the
 * channel's range, and this is where CLIP's outlier channels show. */
cdx_status cdx_stack_prepare(cdx_stack *t, cdx_weights *w, cdx_precision p)
{
    const int C = t->C, F = t->F;
    cdx_status st = CDX_OK;
    float *a1 = NULL, *a2 = NULL, *wqkv = NULL;
    unprepare(t);
    if (p == CDX_PRECISION_F32) return CDX_OK;
    /* converted by an earlier process: nothing to read of the float32
     * weights (their pages are never touched) */
    if (cdx_qcache_load(t, w, p)) return CDX_OK;
    a1 = malloc(sizeof(float) * (size_t)C);
    a2 = malloc(sizeof(float) * (size_t)C);
    /* q, k and v as one product needs 3C columns of the MLP's buffer */
    const int fuse = F >= 3 * C;
    if (fuse) wqkv = malloc(sizeof(float) * 3 * (size_t)C * (size_t)C);
    if (!a1 || !a2 || (fuse && !wqkv)) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < t->L; i++) {
        cdx_block_w *l = &t->layers[i];
        for (int c = 0; c < C; c++) {
            a1[c] = fabsf(l->ln1_w[c]) + fabsf(l->ln1_b[c]);
            a2[c] = fabsf(l->ln2_w[c]) + fabsf(l->ln2_b[c]);
        }
        if (fuse) {
            const size_t CC = (size_t)C * C;
            memcpy(wqkv, l->q_w, CC * sizeof(float));
            memcpy(wqkv + CC, l->k_w, CC * sizeof(float));
            memcpy(wqkv + 2 * CC, l->v_w, CC * sizeof(float));
            st = cdx_qlinear_new_flags(wqkv, C, 3 * C, p, a1, t->qflags, &l->qkv_q);
        } else if (!(st = cdx_qlinear_new_flags(l->q_w, C, C, p, a1, t->qflags, &l->q_q)) &&
                   !(st = cdx_qlinear_new_flags(l->k_w, C, C, p, a1, t->qflags, &l->k_q))) {
            st = cdx_qlinear_new_flags(l->v_w, C, C, p, a1, t->qflags, &l->v_q);
        }
        if (st || (st = cdx_qlinear_new_flags(l->o_w, C, C, p, NULL, t->qflags, &l->o_q)) ||
            (st = cdx_qlinear_new_flags(l->fc1_w, C, F, p, a2, t->qflags, &l->fc1_q)) ||
            (st = cdx_qlinear_new_flags(l->fc2_w, F, C, p, NULL, t->qflags, &l->fc2_q)))
            goto out;
        /* The float32 originals are only read again if the precision
         * goes back to f32: out of memory until then (a text query at
         * bf16 or int8 then fits in ~100 MB). */
        const float *f32w[6] = {l->q_w, l->k_w, l->v_w, l->o_w, l->fc1_w, l->fc2_w};
        const size_t sz[6] = {(size_t)C * C, (size_t)C * C, (size_t)C * C, (size_t)C * C,
                              (size_t)F * C, (size_t)F * C};
        for (int j = 0; j < 6; j++) cdx_weights_drop_pages(w, f32w[j], sz[j]);
    }
out:
    if (st) unprepare(t);
    else cdx_qcache_store(t, w, p);
    free(a1);
    free(a2);
    free(wqkv);
    return st;
}

void cdx_im2col(float *col, const float *pixels, int B, int S, int P)
{
    const int side = S / P, PP = P * P;
    for (int b = 0; b < B; b++)
        for (int gy = 0; gy < side; gy++)
            for (int gx = 0; gx < side; gx++) {
                float *dst = col + (((int64_t)b * side + gy) * side + gx) * 3 * PP;
                for (int c = 0; c < 3; c++)
                    for (int py = 0; py < P; py++)
                        memcpy(dst + c * PP + py * P,
                               pixels + (((int64_t)b * 3 + c) * S + gy * P + py) * S + gx * P,
                               sizeof(float) * (size_t)P);
            }
}

void cdx_normalize(float *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)v[i] * v[i];
    if (s > 0) {
        float inv = (float)(1.0 / sqrt(s));
        for (int i = 0; i < n; i++) v[i] *= inv;
    }
}
