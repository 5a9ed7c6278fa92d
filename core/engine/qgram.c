/*
 * qgram.c - see qgram.h.
 *
 * The bounds.  Let x, y be two rows, d their length, u = 2^-24 float32's
 * unit roundoff, and exact = x . y.
 *
 * bf16: x~ = bf16(x) with |x~_k - x_k| <= 2^-9 |x_k| (round to nearest),
 *   so |x~.y~ - x.y| <= (2 * 2^-9 + 2^-18) sum |x_k y_k|
 *                    <= (2^-8 + 2^-18) |x| |y|           (Cauchy-Schwarz),
 *   and the float32 sum of the (exact) bf16 products, in any order, adds
 *   at most d u / (1 - d u) * (1 + 2^-8) |x| |y|.  B = c |x| |y| with c
 *   the sum of both, rounded up.
 *
 * int8: x = s_x q_x + e_x with s_x = max|x| / 127 and |e_x,k| <= s_x / 2
 *   (round to nearest; the float32 x / s_x adds a few ulps of 127, covered
 *   by the 0.5001 below).  Then
 *     x.y - s_x s_y q_x.q_y = s_x q_x.e_y + e_x.s_y q_y + e_x.e_y,
 *   and with |s_x q_x|_1 <= |x|_1 + d s_x / 2:
 *     B = (s_y |x|_1 + s_x |y|_1) / 2 + 3 d s_x s_y / 4.
 *   q_x.q_y is exact in int32 (|sum| <= d 127^2 < 2^31 for d < 133000)
 *   and below 2^24 for d <= 1040, so its float conversion is exact too;
 *   the two float products add 2 ulps, inside the constant slack.
 *
 * Per tile the bound is taken over its columns: the row's own s, |.|_1 or
 * |.| with the tile's largest column values, which only widens it.
 */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>

#include "internal.h"
#include "cpu.h"
#include "qgram.h"
#include "qlinear.h"

#define SLACK 1e-6f

struct gprim {
    pthread_mutex_t use;
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst;
    dnnl_stream_t stream;
};

struct cdx_qgram {
    cdx_precision p;
    int64_t n, npad, ntiles;
    int dim, tile;
    void *a;              /* (npad, dim) rows as bf16 or int8 */
    dnnl_memory_t *w;     /* per tile: its rows as oneDNN's weights */
    dnnl_memory_desc_t wmd;
    struct gprim *prims;  /* one per compute thread, taken with trylock */
    int nprims;
    float *scale;         /* int8: s per row (1 for bf16) */
    float *mag;           /* int8: |row|_1; bf16: |row| */
    float *tile_scale;    /* per tile: max s */
    float *tile_mag;      /* per tile: max mag */
};

cdx_precision cdx_qgram_auto(void)
{
    cdx_isa isa = cdx_cpu_isa();
    if (isa == CDX_ISA_AVX2_VNNI || isa >= CDX_ISA_AVX512_VNNI) return CDX_PRECISION_INT8;
    if (isa >= CDX_ISA_AVX512_BF16) return CDX_PRECISION_BF16;
    return CDX_PRECISION_F32;
}

float cdx_f32_dot_bound(int dim, float ni, float nj)
{
    double du = (double)dim * 0x1p-24;
    return (float)(du / (1.0 - du) * 1.01 * ni * nj) + SLACK;
}

static dnnl_data_type_t in_dt(cdx_precision p) { return p == CDX_PRECISION_BF16 ? dnnl_bf16 : dnnl_s8; }
static dnnl_data_type_t out_dt(cdx_precision p) { return p == CDX_PRECISION_BF16 ? dnnl_f32 : dnnl_s32; }

static dnnl_primitive_desc_t make_pd(dnnl_engine_t eng, cdx_precision p, int tile, int dim,
                                     const dnnl_memory_desc_t *wmd)
{
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {tile, dim}, db = {dim, tile}, dc = {tile, tile};
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_memory_desc_init_by_tag(&a, 2, da, in_dt(p), dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&c, 2, dc, out_dt(p), dnnl_ab))
        return NULL;
    if (wmd) b = *wmd;
    else if (dnnl_memory_desc_init_by_tag(&b, 2, db, in_dt(p), dnnl_format_tag_any))
        return NULL;
    if (dnnl_matmul_desc_init(&md, &a, &b, NULL, &c)) return NULL;
    if (dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL)) return NULL;
    return pd;
}

static uint16_t bf16_bits(float f)
{
    uint32_t u;
    f = cdx_bf16_round(f);
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

/* Rows to bf16 / int8, with each row's scale and magnitude. */
static void convert_rows(cdx_qgram *g, const float *x)
{
    const int d = g->dim;
    for (int64_t i = 0; i < g->n; i++) {
        const float *r = x + i * d;
        double l1 = 0, l2 = 0;
        float amax = 0;
        for (int k = 0; k < d; k++) {
            float v = fabsf(r[k]);
            amax = v > amax ? v : amax;
            l1 += v;
            l2 += (double)v * v;
        }
        if (g->p == CDX_PRECISION_BF16) {
            uint16_t *o = (uint16_t *)g->a + i * d;
            for (int k = 0; k < d; k++) o[k] = bf16_bits(r[k]);
            g->scale[i] = 1.0f;
            g->mag[i] = (float)(sqrt(l2) * (1 + 1e-6));
        } else {
            int8_t *o = (int8_t *)g->a + i * d;
            float s = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / s;
            for (int k = 0; k < d; k++) {
                float v = nearbyintf(r[k] * inv);
                o[k] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
            g->scale[i] = s;
            g->mag[i] = (float)(l1 * (1 + 1e-6));
        }
    }
    for (int64_t t = 0; t < g->ntiles; t++) {
        float ms = 0, mm = 0;
        for (int64_t i = t * g->tile; i < (t + 1) * g->tile && i < g->n; i++) {
            ms = g->scale[i] > ms ? g->scale[i] : ms;
            mm = g->mag[i] > mm ? g->mag[i] : mm;
        }
        g->tile_scale[t] = ms;
        g->tile_mag[t] = mm;
    }
}

/* Each tile's rows into oneDNN's weights layout (a copy). */
static int reorder_tiles(cdx_qgram *g, dnnl_engine_t eng)
{
    const size_t esz = g->p == CDX_PRECISION_BF16 ? 2 : 1;
    dnnl_stream_t stream = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_desc_t pmd;
    dnnl_dims_t dd = {g->dim, g->tile};
    int ok = 0, saved = omp_get_max_threads();
    omp_set_num_threads(1);
    if (dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) ||
        dnnl_memory_desc_init_by_tag(&pmd, 2, dd, in_dt(g->p), dnnl_ba) ||
        dnnl_reorder_primitive_desc_create(&rpd, &pmd, eng, &g->wmd, eng, NULL) ||
        dnnl_primitive_create(&r, rpd))
        goto out;
    for (int64_t t = 0; t < g->ntiles; t++) {
        dnnl_memory_t pm = NULL;
        int bad = dnnl_memory_create(&pm, &pmd, eng, (char *)g->a + (size_t)(t * g->tile) * g->dim * esz) ||
                  dnnl_memory_create(&g->w[t], &g->wmd, eng, DNNL_MEMORY_ALLOCATE);
        if (!bad) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, pm}, {DNNL_ARG_TO, g->w[t]}};
            bad = dnnl_primitive_execute(r, stream, 2, args) || dnnl_stream_wait(stream);
        }
        dnnl_memory_destroy(pm);
        if (bad) goto out;
    }
    ok = 1;
out:
    omp_set_num_threads(saved);
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_stream_destroy(stream);
    return ok;
}

cdx_status cdx_qgram_new(const float *x, int64_t n, int dim, int tile, cdx_precision p,
                         cdx_qgram **out)
{
    cdx_qgram *g = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_engine_t eng;
    *out = NULL;
    if ((p != CDX_PRECISION_BF16 && p != CDX_PRECISION_INT8) || n < 1 || dim < 1 || tile < 16)
        return cdx_fail(CDX_ERR_ARG, "cdx_qgram_new: bad argument");
    cdx_isa isa = cdx_cpu_isa();
    int native = p == CDX_PRECISION_BF16 ? isa >= CDX_ISA_AVX512_BF16
                                         : isa == CDX_ISA_AVX2_VNNI || isa >= CDX_ISA_AVX512_VNNI;
    if (p == CDX_PRECISION_INT8 && dim > 1040)
        native = 0; /* the exact-float argument of the bound needs sums below 2^24 */
    if (!native || !(eng = cdx_onednn_engine()))
        return cdx_fail(CDX_ERR_UNSUPPORTED, "no native %s products on this CPU (%s)",
                        cdx_precision_name(p), cdx_isa_name(isa));
    if (!(g = calloc(1, sizeof *g))) goto nomem;
    g->p = p;
    g->n = n;
    g->dim = dim;
    g->tile = tile;
    g->ntiles = (n + tile - 1) / tile;
    g->npad = g->ntiles * tile;
    const size_t esz = p == CDX_PRECISION_BF16 ? 2 : 1;
    if (!(g->a = calloc((size_t)g->npad * dim, esz)) || !(g->scale = calloc((size_t)g->npad, sizeof(float))) ||
        !(g->mag = calloc((size_t)g->npad, sizeof(float))) ||
        !(g->tile_scale = calloc((size_t)g->ntiles, sizeof(float))) ||
        !(g->tile_mag = calloc((size_t)g->ntiles, sizeof(float))) ||
        !(g->w = calloc((size_t)g->ntiles, sizeof *g->w)))
        goto nomem;
    convert_rows(g, x);

    if (!(pd = make_pd(eng, p, tile, dim, NULL))) goto nodnnl;
    g->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    pd = NULL;
    if (!reorder_tiles(g, eng)) goto nodnnl;

    g->nprims = cdx_threads_get() < 1 ? 1 : cdx_threads_get();
    if (!(g->prims = calloc((size_t)g->nprims, sizeof *g->prims))) goto nomem;
    if (!(pd = make_pd(eng, p, tile, dim, &g->wmd))) goto nodnnl;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    for (int i = 0; i < g->nprims; i++) {
        struct gprim *e = &g->prims[i];
        pthread_mutex_init(&e->use, NULL);
        if (dnnl_primitive_create(&e->prim, pd) ||
            dnnl_memory_create(&e->src, smd, eng, DNNL_MEMORY_NONE) ||
            dnnl_memory_create(&e->dst, dmd, eng, DNNL_MEMORY_NONE) ||
            dnnl_stream_create(&e->stream, eng, dnnl_stream_default_flags))
            goto nodnnl;
    }
    dnnl_primitive_desc_destroy(pd);
    *out = g;
    return CDX_OK;
nodnnl:
    dnnl_primitive_desc_destroy(pd);
    cdx_qgram_free(g);
    return cdx_fail(CDX_ERR_UNSUPPORTED, "oneDNN has no %dx%dx%d %s product here", tile, dim,
                    tile, cdx_precision_name(p));
nomem:
    cdx_qgram_free(g);
    return cdx_fail(CDX_ERR_NOMEM, "out of memory preparing %lld vectors at %s", (long long)n,
                    cdx_precision_name(p));
}

void cdx_qgram_free(cdx_qgram *g)
{
    if (!g) return;
    for (int i = 0; g->prims && i < g->nprims; i++) {
        dnnl_primitive_destroy(g->prims[i].prim);
        dnnl_memory_destroy(g->prims[i].src);
        dnnl_memory_destroy(g->prims[i].dst);
        dnnl_stream_destroy(g->prims[i].stream);
        pthread_mutex_destroy(&g->prims[i].use);
    }
    for (int64_t t = 0; g->w && t < g->ntiles; t++) dnnl_memory_destroy(g->w[t]);
    free(g->prims);
    free(g->w);
    free(g->a);
    free(g->scale);
    free(g->mag);
    free(g->tile_scale);
    free(g->tile_mag);
    free(g);
}

size_t cdx_qgram_scratch_bytes(const cdx_qgram *g)
{
    return g->p == CDX_PRECISION_INT8 ? (size_t)g->tile * g->tile * sizeof(int32_t) : 0;
}

/* out = acc * si[r] * sj[c]: cloned per instruction set (the library is
 * built for baseline x86-64, and this pass touches every product). */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) /* TSan: see kernels.c */
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void dequant(float *out, const int32_t *acc, const float *si, const float *sj, int T)
{
    for (int r = 0; r < T; r++) {
        const int32_t *a = acc + (size_t)r * T;
        float *o = out + (size_t)r * T;
        for (int c = 0; c < T; c++) o[c] = (float)a[c] * (si[r] * sj[c]);
    }
}

static cdx_status run_tile(const cdx_qgram *g, int64_t ti, int64_t tj, void *dst);

cdx_status cdx_qgram_tile_raw(const cdx_qgram *g, int64_t ti, int64_t tj, int32_t *acc)
{
    if (g->p != CDX_PRECISION_INT8) return CDX_BUG("cdx_qgram_tile_raw: int8 only");
    return run_tile(g, ti, tj, acc);
}

const float *cdx_qgram_scales(const cdx_qgram *g) { return g->scale; }

cdx_status cdx_qgram_tile(const cdx_qgram *g, int64_t ti, int64_t tj, float *out, void *scratch)
{
    const int T = g->tile;
    cdx_status st = run_tile(g, ti, tj, g->p == CDX_PRECISION_BF16 ? (void *)out : scratch);
    if (st == CDX_OK && g->p == CDX_PRECISION_INT8)
        dequant(out, scratch, g->scale + ti * T, g->scale + tj * T, T);
    return st;
}

/* One tile product into dst (float32 for bf16, int32 for int8). */
static cdx_status run_tile(const cdx_qgram *g, int64_t ti, int64_t tj, void *dst)
{
    const size_t esz = g->p == CDX_PRECISION_BF16 ? 2 : 1;
    const int T = g->tile;
    struct gprim *e = NULL;
    /* A free primitive: there is one per compute thread, so this finds
     * one at once unless a caller runs more threads than that. */
    while (!e)
        for (int i = 0; i < g->nprims && !e; i++)
            if (pthread_mutex_trylock(&g->prims[i].use) == 0) e = &g->prims[i];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    dnnl_memory_set_data_handle(e->src, (char *)g->a + (size_t)(ti * T) * g->dim * esz);
    dnnl_memory_set_data_handle(e->dst, dst);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, g->w[tj]}, {DNNL_ARG_DST, e->dst}};
    int bad = dnnl_primitive_execute(e->prim, e->stream, 3, args) || dnnl_stream_wait(e->stream);
    pthread_mutex_unlock(&e->use);
    omp_set_num_threads(saved);
    if (bad) return cdx_fail(CDX_ERR_INTERNAL, "oneDNN: a %s tile product failed", cdx_precision_name(g->p));
    return CDX_OK;
}

float cdx_qgram_row_bound(const cdx_qgram *g, int64_t i, int64_t tj)
{
    if (g->p == CDX_PRECISION_BF16) {
        double du = (double)g->dim * 0x1p-24;
        double c = 0x1p-8 + 0x1p-18 + du / (1.0 - du) * (1.0 + 0x1p-8);
        return (float)(c * g->mag[i] * g->tile_mag[tj] * (1 + 1e-6)) + SLACK;
    }
    const double si = g->scale[i], sj = g->tile_scale[tj];
    double b = 0.5001 * (sj * g->mag[i] + si * g->tile_mag[tj]) + 0.76 * g->dim * si * sj;
    return (float)(b * (1 + 1e-6)) + SLACK;
}
