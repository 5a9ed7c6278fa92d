/*
 * qlinear.c - see qlinear.h.
 *
 * Layout of the work per call:
 *   1. x -> bf16 or int8 (+ per-row scale) into the scratch, rows split
 *      across the pool;
 *   2. one job over the column slices: each runs its oneDNN matmul
 *      (single-threaded; weights already in oneDNN's blocked layout) and,
 *      for int8, dequantises its int32 block into y.
 * oneDNN primitives depend only on shapes, not on weight values, so they
 * are cached process-wide by (precision, rows, K, slice width, row
 * stride, slice index) and shared by every layer of that shape.
 */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>
#include <immintrin.h>

#include "internal.h"
#include "cpu.h"
#include "linear.h"
#include "pool.h"
#include "qlinear.h"
#include "qsmall.h"

#define MAX_SLICES 64

struct slice {
    int n0, n;               /* output columns [n0, n0+n) */
    dnnl_memory_desc_t wmd;  /* oneDNN's layout for this slice's weights */
    dnnl_memory_t wmem;      /* owns the blocked weights */
};

struct cdx_qlinear {
    cdx_precision p;
    int K, N;
    int nslices;
    struct slice sl[MAX_SLICES];
    int onednn;              /* else emulated */
    const char *impl;        /* oneDNN's implementation name (static) */
    float *wf;               /* emulated: the rounded/quantised W as floats (N,K) */
    float *wscale;           /* int8: (N) per-output-channel scales */
    float *inv_smooth;       /* int8: (K) 1/s, or NULL */
    size_t bytes;
    /* int8 with AVX-512 VNNI for few rows (CDX_QL_FEW_ROWS): the weights
     * packed for qsmall.c, and oneDNN's layout made from them only when
     * a call has more than CDX_QSMALL_MAX_ROWS rows (a text query never
     * does), so a query process holds one copy of the weights. */
    cdx_qsmall small;
    void *small_mem;         /* owns small.w and small.comp */
    int pending;             /* oneDNN slices not made yet */
    int borrowed;            /* wscale, inv_smooth, small point into a cache file */
};

/* ------------------------------------------------------------ oneDNN */

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void engine_init(void)
{
    cdx_cpu_isa(); /* applies the CLIPDEX_ISA cap before oneDNN dispatches */
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

void *cdx_onednn_engine(void)
{
    pthread_once(&engine_once, engine_init);
    return engine;
}

struct prim {
    struct prim *next;
    cdx_precision p;
    int64_t M;
    int K, n, ldy, slice;
    dnnl_memory_desc_t wmd;
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst;
    dnnl_stream_t stream;
    /* src/dst handles are set per call: two models running the same
     * shape on two threads (a pool of one thread runs jobs inline,
     * unserialised) must not interleave.  Uncontended in practice. */
    pthread_mutex_t use;
};
static struct prim *cache;

static dnnl_data_type_t src_dt(cdx_precision p) { return p == CDX_PRECISION_BF16 ? dnnl_bf16 : dnnl_s8; }
static dnnl_data_type_t dst_dt(cdx_precision p) { return p == CDX_PRECISION_BF16 ? dnnl_f32 : dnnl_s32; }

/* A matmul primitive descriptor for (M,K) x (K,n) -> rows of stride ldy;
 * wmd NULL lets oneDNN choose the weights layout. */
static dnnl_primitive_desc_t make_pd(cdx_precision p, int64_t M, int K, int n, int ldy,
                                     const dnnl_memory_desc_t *wmd)
{
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {M, K}, db = {K, n}, dc = {M, n}, sc = {ldy, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_memory_desc_init_by_tag(&a, 2, da, src_dt(p), dnnl_ab) ||
        dnnl_memory_desc_init_by_strides(&c, 2, dc, dst_dt(p), sc))
        return NULL;
    if (wmd) b = *wmd;
    else if (dnnl_memory_desc_init_by_tag(&b, 2, db, src_dt(p), dnnl_format_tag_any))
        return NULL;
    if (dnnl_matmul_desc_init(&md, &a, &b, NULL, &c)) return NULL;
    if (dnnl_primitive_desc_create(&pd, &md, NULL, engine, NULL)) return NULL;
    return pd;
}

/* The cached primitive for one slice at M rows, created on first use.
 * Called from the calling thread, never inside a pool job. */
static struct prim *get_prim(const cdx_qlinear *q, int s, int64_t M)
{
    const struct slice *sl = &q->sl[s];
    struct prim *e;
    pthread_mutex_lock(&cache_lock);
    for (e = cache; e; e = e->next)
        if (e->p == q->p && e->M == M && e->K == q->K && e->n == sl->n && e->ldy == q->N &&
            e->slice == s && dnnl_memory_desc_equal(&e->wmd, &sl->wmd))
            goto out;
    dnnl_primitive_desc_t pd = make_pd(q->p, M, q->K, sl->n, q->N, &sl->wmd);
    if (!pd) goto out;
    e = calloc(1, sizeof *e);
    if (!e) goto fail;
    *e = (struct prim){.p = q->p, .M = M, .K = q->K, .n = sl->n, .ldy = q->N, .slice = s,
                       .wmd = sl->wmd};
    pthread_mutex_init(&e->use, NULL);
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if (dnnl_primitive_create(&e->prim, pd) ||
        dnnl_memory_create(&e->src, smd, engine, DNNL_MEMORY_NONE) ||
        dnnl_memory_create(&e->dst, dmd, engine, DNNL_MEMORY_NONE) ||
        dnnl_stream_create(&e->stream, engine, dnnl_stream_default_flags)) {
        /* (cached objects live for the process; a half-made entry is dropped) */
        free(e);
        e = NULL;
        goto fail;
    }
    e->next = cache;
    cache = e;
fail:
    dnnl_primitive_desc_destroy(pd);
out:
    pthread_mutex_unlock(&cache_lock);
    return e;
}

int cdx_qlinear_primitives(void)
{
    int n = 0;
    pthread_mutex_lock(&cache_lock);
    for (const struct prim *e = cache; e; e = e->next) n++;
    pthread_mutex_unlock(&cache_lock);
    return n;
}

/* ------------------------------------------------------------ rounding */

float cdx_bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t bf16_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* x (R,K) -> bf16.  The AVX512_BF16 instruction rounds to nearest even
 * like bf16_bits (finite inputs). */
struct cvt_ctx {
    const float *x;
    void *dst;
    int K;
    const float *inv_smooth;
    float *rowscale;
    int emulate; /* write floats instead of bf16/int8 */
};

__attribute__((target("avx512f,avx512bf16,avx512vl"))) static void bf16_row_avx512(uint16_t *d,
                                                                                 const float *x, int K)
{
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k));
        _mm512_storeu_si512((void *)(d + k), (__m512i)v);
    }
    for (; k < K; k++) d[k] = bf16_bits(x[k]);
}

static void cvt_bf16(void *vctx, int64_t r0, int64_t r1)
{
    const struct cvt_ctx *c = vctx;
    const int K = c->K;
    const int simd = cdx_cpu_isa() >= CDX_ISA_AVX512_BF16;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * K;
        if (c->emulate) {
            float *d = (float *)c->dst + r * K;
            for (int k = 0; k < K; k++) d[k] = cdx_bf16_round(x[k]);
        } else if (simd) {
            bf16_row_avx512((uint16_t *)c->dst + r * K, x, K);
        } else {
            uint16_t *d = (uint16_t *)c->dst + r * K;
            for (int k = 0; k < K; k++) d[k] = bf16_bits(x[k]);
        }
    }
}

/* One row to int8: smoothed, symmetric, scale max|x| / 127.  Returns the
 * scale.  nearbyintf rounds to nearest even, as vcvtps2dq does. */
static float quant_row_scalar(int8_t *q, float *qf, const float *x, const float *inv_s, int K)
{
    float amax = 0.0f;
    for (int k = 0; k < K; k++) {
        float v = fabsf(inv_s ? x[k] * inv_s[k] : x[k]);
        amax = v > amax ? v : amax;
    }
    float sc = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / sc;
    for (int k = 0; k < K; k++) {
        float v = nearbyintf((inv_s ? x[k] * inv_s[k] : x[k]) * inv);
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        if (q) q[k] = (int8_t)v;
        else qf[k] = v;
    }
    return sc;
}

__attribute__((target("avx512f,avx512bw"))) static float quant_row_avx512(int8_t *q, const float *x,
                                                                          const float *inv_s, int K)
{
    const int K16 = K & ~15;
    __m512 am = _mm512_setzero_ps();
    for (int k = 0; k < K16; k += 16) {
        __m512 v = _mm512_loadu_ps(x + k);
        if (inv_s) v = _mm512_mul_ps(v, _mm512_loadu_ps(inv_s + k));
        am = _mm512_max_ps(am, _mm512_abs_ps(v));
    }
    float amax = _mm512_reduce_max_ps(am);
    for (int k = K16; k < K; k++) {
        float v = fabsf(inv_s ? x[k] * inv_s[k] : x[k]);
        amax = v > amax ? v : amax;
    }
    float sc = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / sc;
    const __m512 vi = _mm512_set1_ps(inv);
    for (int k = 0; k < K16; k += 16) {
        __m512 v = _mm512_loadu_ps(x + k);
        if (inv_s) v = _mm512_mul_ps(v, _mm512_loadu_ps(inv_s + k));
        /* |v * inv| <= 127 up to rounding; the saturating narrow clamps. */
        __m512i i = _mm512_cvtps_epi32(_mm512_mul_ps(v, vi));
        i = _mm512_max_epi32(_mm512_min_epi32(i, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
        _mm_storeu_si128((__m128i *)(q + k), _mm512_cvtsepi32_epi8(i));
    }
    for (int k = K16; k < K; k++) {
        float v = nearbyintf((inv_s ? x[k] * inv_s[k] : x[k]) * inv);
        q[k] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    return sc;
}

static void cvt_int8(void *vctx, int64_t r0, int64_t r1)
{
    const struct cvt_ctx *c = vctx;
    const int K = c->K;
    const int simd = cdx_cpu_isa() >= CDX_ISA_AVX512;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * K;
        if (c->emulate)
            c->rowscale[r] = quant_row_scalar(NULL, (float *)c->dst + r * K, x, c->inv_smooth, K);
        else if (simd)
            c->rowscale[r] = quant_row_avx512((int8_t *)c->dst + r * K, x, c->inv_smooth, K);
        else
            c->rowscale[r] = quant_row_scalar((int8_t *)c->dst + r * K, NULL, x, c->inv_smooth, K);
    }
}

/* ------------------------------------------------------------ prepare */

static void *xmalloc(size_t n) { return n ? malloc(n) : NULL; }

/* Reorder plain (N,K) data of one slice into oneDNN's layout. */
static int to_onednn(cdx_qlinear *q, const void *plain, size_t esz)
{
    dnnl_stream_t stream = NULL;
    int ok = 0;
    /* A reorder is a copy: not worth waking OpenMP threads for. */
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags)) return 0;
    for (int s = 0; s < q->nslices; s++) {
        struct slice *sl = &q->sl[s];
        /* the layout oneDNN picks for a mid-sized M; the tests and
         * get_prim check that other M accept it */
        dnnl_primitive_desc_t pd = make_pd(q->p, 256, q->K, sl->n, q->N, NULL);
        if (!pd) goto out;
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        q->impl = impl && strncmp(impl, "brg", 3) == 0 ? "oneDNN brgemm" : "oneDNN";
        sl->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        dnnl_primitive_desc_destroy(pd);
        dnnl_memory_desc_t pmd;
        dnnl_dims_t d = {q->K, sl->n};
        dnnl_memory_t pm = NULL;
        dnnl_primitive_desc_t rpd = NULL;
        dnnl_primitive_t r = NULL;
        int bad = dnnl_memory_desc_init_by_tag(&pmd, 2, d, src_dt(q->p), dnnl_ba) ||
                  dnnl_memory_create(&pm, &pmd, engine, (char *)plain + (size_t)sl->n0 * q->K * esz) ||
                  dnnl_memory_create(&sl->wmem, &sl->wmd, engine, DNNL_MEMORY_ALLOCATE) ||
                  dnnl_reorder_primitive_desc_create(&rpd, &pmd, engine, &sl->wmd, engine, NULL) ||
                  dnnl_primitive_create(&r, rpd);
        if (!bad) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, pm}, {DNNL_ARG_TO, sl->wmem}};
            bad = dnnl_primitive_execute(r, stream, 2, args) || dnnl_stream_wait(stream);
        }
        dnnl_primitive_destroy(r);
        dnnl_primitive_desc_destroy(rpd);
        dnnl_memory_destroy(pm);
        if (bad) goto out;
        q->bytes += dnnl_memory_desc_get_size(&sl->wmd);
    }
    ok = 1;
out:
    omp_set_num_threads(saved);
    dnnl_stream_destroy(stream);
    return ok;
}

static const char *small_impl(const cdx_qlinear *q)
{
    return q->p == CDX_PRECISION_INT8 ? "qsmall avx512_vnni (oneDNN above 32 rows)"
                                      : "qsmall avx512_bf16 (oneDNN above 32 rows)";
}

cdx_status cdx_qlinear_new(const float *W, int K, int N, cdx_precision p, const float *act,
                           cdx_qlinear **out)
{
    return cdx_qlinear_new_flags(W, K, N, p, act, 0, out);
}

/* The small-row layout from plain (N,K) int8 or bf16 weights. */
static int make_small(cdx_qlinear *q, const void *plain)
{
    if (q->p == CDX_PRECISION_BF16) {
        const size_t wb = cdx_qsmall_wbytes_bf16(q->K, q->N);
        if (!(q->small_mem = aligned_alloc(64, (wb + 63) & ~(size_t)63))) return 0;
        cdx_qsmall_pack_bf16(&q->small, q->small_mem, plain, q->K, q->N);
        return 1;
    }
    const size_t wb = cdx_qsmall_wbytes(q->K, q->N), cb = cdx_qsmall_cbytes(q->K, q->N);
    if (!(q->small_mem = aligned_alloc(64, (wb + cb + 63) & ~(size_t)63))) return 0;
    cdx_qsmall_pack(&q->small, q->small_mem, (int32_t *)((char *)q->small_mem + wb), plain, q->K, q->N);
    return 1;
}

cdx_status cdx_qlinear_new_flags(const float *W, int K, int N, cdx_precision p, const float *act,
                                 unsigned flags, cdx_qlinear **out)
{
    cdx_status st = CDX_OK;
    cdx_qlinear *q = NULL;
    void *plain = NULL;
    float *Ws = NULL;
    *out = NULL;
    if (p != CDX_PRECISION_BF16 && p != CDX_PRECISION_INT8)
        return CDX_BUG("cdx_qlinear_new: precision must be bf16 or int8");
    pthread_once(&engine_once, engine_init);
    if (!(q = calloc(1, sizeof *q))) goto nomem;
    q->p = p;
    q->K = K;
    q->N = N;
    /* One slice per compute thread, 16-column aligned. */
    int nt = cdx_threads_get();
    nt = nt < 1 ? 1 : nt > MAX_SLICES ? MAX_SLICES : nt;
    int per = ((N + nt - 1) / nt + 15) & ~15;
    for (int n0 = 0; n0 < N; n0 += per) {
        q->sl[q->nslices].n0 = n0;
        q->sl[q->nslices].n = N - n0 < per ? N - n0 : per;
        q->nslices++;
    }

    const size_t NK = (size_t)N * (size_t)K;
    if (p == CDX_PRECISION_BF16) {
        uint16_t *b = xmalloc(NK * 2);
        if (!(plain = b)) goto nomem;
        for (size_t i = 0; i < NK; i++) b[i] = bf16_bits(W[i]);
    } else {
        int8_t *b = xmalloc(NK);
        q->wscale = xmalloc((size_t)N * sizeof(float));
        if (!(plain = b) || !q->wscale) goto nomem;
        if (act) {
            /* SmoothQuant with alpha 1/2: s[k] = sqrt(a[k] / max_n |W[n,k]|). */
            if (!(q->inv_smooth = xmalloc((size_t)K * sizeof(float))) ||
                !(Ws = xmalloc(NK * sizeof(float))))
                goto nomem;
            for (int k = 0; k < K; k++) q->inv_smooth[k] = 0.0f; /* max |W| first */
            for (int n = 0; n < N; n++)
                for (int k = 0; k < K; k++) {
                    float v = fabsf(W[(size_t)n * K + k]);
                    if (v > q->inv_smooth[k]) q->inv_smooth[k] = v;
                }
            for (int k = 0; k < K; k++) {
                float a = fabsf(act[k]), wm = q->inv_smooth[k];
                float s = a > 0 && wm > 0 ? sqrtf(a / wm) : 1.0f;
                s = s < 1e-3f ? 1e-3f : s > 1e3f ? 1e3f : s;
                q->inv_smooth[k] = 1.0f / s;
            }
            for (size_t i = 0; i < NK; i++) Ws[i] = W[i] / q->inv_smooth[i % (size_t)K];
            W = Ws;
        }
        for (int n = 0; n < N; n++) {
            const float *w = W + (size_t)n * K;
            float amax = 0;
            for (int k = 0; k < K; k++) amax = fabsf(w[k]) > amax ? fabsf(w[k]) : amax;
            float sc = amax > 0 ? amax / 127.0f : 1.0f;
            q->wscale[n] = sc;
            for (int k = 0; k < K; k++) {
                float v = nearbyintf(w[k] / sc);
                b[(size_t)n * K + k] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
        }
        q->bytes = (size_t)N * sizeof(float) + (q->inv_smooth ? (size_t)K * sizeof(float) : 0);
    }
    const size_t esz = p == CDX_PRECISION_BF16 ? 2 : 1;
    /* oneDNN's int8 kernels without VNNI multiply with vpmaddubsw, whose
     * int16 pair sums saturate for full-range int8 (measured: 18% error
     * in test_qlinear at CLIPDEX_ISA=avx2), so int8 runs there only with
     * VNNI; bf16 runs on any AVX-512 (oneDNN emulates vdpbf16ps). */
    const cdx_isa isa = cdx_cpu_isa();
    const int native = p == CDX_PRECISION_BF16
                           ? isa >= CDX_ISA_AVX512
                           : isa == CDX_ISA_AVX2_VNNI || isa >= CDX_ISA_AVX512_VNNI;
    /* CLIPDEX_QSMALL=off: the oneDNN path for every row count (to measure
     * one against the other in one run) */
    const char *qs_env = getenv("CLIPDEX_QSMALL");
    if (qs_env && strcmp(qs_env, "off") == 0) flags &= ~CDX_QL_FEW_ROWS;
    if (engine && (flags & CDX_QL_FEW_ROWS) &&
        (p == CDX_PRECISION_INT8 ? cdx_qsmall_native() : cdx_qsmall_native_bf16())) {
        if (!make_small(q, plain)) goto nomem;
        q->onednn = 1;
        q->pending = 1;
        q->impl = small_impl(q);
        q->bytes += p == CDX_PRECISION_INT8 ? cdx_qsmall_wbytes(K, N) + cdx_qsmall_cbytes(K, N)
                                            : cdx_qsmall_wbytes_bf16(K, N);
    } else if (engine && native && to_onednn(q, plain, esz)) {
        q->onednn = 1;
    } else {
        /* Emulated: the same values as floats, through the float32 path. */
        for (int s = 0; s < q->nslices; s++) dnnl_memory_destroy(q->sl[s].wmem), q->sl[s].wmem = NULL;
        q->bytes = 0;
        q->impl = "float32 emulation";
        if (!(q->wf = xmalloc(NK * sizeof(float)))) goto nomem;
        for (size_t i = 0; i < NK; i++)
            q->wf[i] = p == CDX_PRECISION_BF16 ? cdx_bf16_round(W[i]) : (float)((int8_t *)plain)[i];
        q->bytes = NK * sizeof(float);
    }
    free(plain);
    free(Ws);
    *out = q;
    return CDX_OK;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "out of memory preparing a %dx%d %s layer", N, K,
                  cdx_precision_name(p));
    free(plain);
    free(Ws);
    cdx_qlinear_free(q);
    return st;
}

void cdx_qlinear_free(cdx_qlinear *q)
{
    if (!q) return;
    for (int s = 0; s < q->nslices; s++) dnnl_memory_destroy(q->sl[s].wmem);
    free(q->wf);
    if (!q->borrowed) {
        free(q->wscale);
        free(q->inv_smooth);
    }
    free(q->small_mem);
    free(q);
}

int cdx_qlinear_export(const cdx_qlinear *q, cdx_qlinear_desc *d, const void *blob[CDX_QL_MAX_BLOBS])
{
    memset(d, 0, sizeof *d);
    if (!q->onednn || (q->pending && !q->small.w)) return 0;
    d->K = (uint32_t)q->K;
    d->N = (uint32_t)q->N;
    d->p = (uint32_t)q->p;
    d->has_smooth = q->inv_smooth != NULL;
    int nb = 0;
    if (q->p == CDX_PRECISION_INT8) {
        blob[nb] = q->wscale;
        d->blob_bytes[nb++] = (uint64_t)q->N * sizeof(float);
        if (q->inv_smooth) {
            blob[nb] = q->inv_smooth;
            d->blob_bytes[nb++] = (uint64_t)q->K * sizeof(float);
        }
    }
    if (q->small.w) {
        d->kind = 0;
        blob[nb] = q->small.w; /* int8: comp follows it in small_mem */
        d->blob_bytes[nb++] = q->small.bf16 ? cdx_qsmall_wbytes_bf16(q->K, q->N)
                                            : cdx_qsmall_wbytes(q->K, q->N) + cdx_qsmall_cbytes(q->K, q->N);
    } else {
        d->kind = 1;
        d->nslices = (uint32_t)q->nslices;
        for (int s = 0; s < q->nslices; s++) {
            void *h = NULL;
            if (dnnl_memory_get_data_handle(q->sl[s].wmem, &h) || !h) return 0;
            d->slice_n0[s] = (uint32_t)q->sl[s].n0;
            d->slice_n[s] = (uint32_t)q->sl[s].n;
            blob[nb] = h;
            d->blob_bytes[nb++] = dnnl_memory_desc_get_size(&q->sl[s].wmd);
        }
    }
    d->nblobs = (uint32_t)nb;
    return 1;
}

cdx_status cdx_qlinear_import(const cdx_qlinear_desc *d, const void *const blob[CDX_QL_MAX_BLOBS],
                              cdx_qlinear **out)
{
    cdx_qlinear *q = NULL;
    *out = NULL;
    pthread_once(&engine_once, engine_init);
    const int int8 = d->p == CDX_PRECISION_INT8;
    uint32_t nb = 0;
    if ((d->p != CDX_PRECISION_BF16 && !int8) || !engine || d->K == 0 || d->N == 0 ||
        d->K > (1u << 20) || d->N > (1u << 20) || d->nslices > MAX_SLICES || d->nblobs > CDX_QL_MAX_BLOBS ||
        (d->kind == 0 && !(int8 ? cdx_qsmall_native() : cdx_qsmall_native_bf16())) || d->kind > 1 ||
        (d->has_smooth && !int8))
        goto bad;
    if (!(q = calloc(1, sizeof *q))) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    q->p = (cdx_precision)d->p;
    q->K = (int)d->K;
    q->N = (int)d->N;
    q->onednn = 1;
    q->borrowed = 1;
    if (int8) {
        if (d->blob_bytes[nb] != (uint64_t)q->N * sizeof(float)) goto bad;
        q->wscale = (float *)blob[nb++];
        if (d->has_smooth) {
            if (d->blob_bytes[nb] != (uint64_t)q->K * sizeof(float)) goto bad;
            q->inv_smooth = (float *)blob[nb++];
        }
    }
    if (d->kind == 0 && !int8) {
        const size_t wb = cdx_qsmall_wbytes_bf16(q->K, q->N);
        if (d->blob_bytes[nb] != wb) goto bad;
        q->small = (cdx_qsmall){q->K, q->N, (q->K + 1) / 2, (q->N + 31) / 32, (const int8_t *)blob[nb], NULL, 1};
        nb++;
        q->pending = 1;
        q->impl = small_impl(q);
        q->bytes = wb;
    } else if (d->kind == 0) {
        const size_t wb = cdx_qsmall_wbytes(q->K, q->N), cb = cdx_qsmall_cbytes(q->K, q->N);
        if (d->blob_bytes[nb] != wb + cb) goto bad;
        q->small = (cdx_qsmall){q->K, q->N, (q->K + 3) / 4, (q->N + 31) / 32, (const int8_t *)blob[nb],
                                (const int32_t *)((const char *)blob[nb] + wb), 0};
        nb++;
        q->pending = 1;
        q->impl = small_impl(q);
        q->bytes = wb + cb;
    } else {
        if (d->nslices == 0) goto bad;
        for (uint32_t s = 0, n0 = 0; s < d->nslices; s++) {
            struct slice *sl = &q->sl[s];
            if (d->slice_n0[s] != n0 || d->slice_n[s] == 0 || d->slice_n[s] > d->N - n0) goto bad;
            sl->n0 = (int)n0;
            sl->n = (int)d->slice_n[s];
            n0 += d->slice_n[s];
            if (s + 1 == d->nslices && n0 != d->N) goto bad;
            dnnl_primitive_desc_t pd = make_pd(q->p, 256, q->K, sl->n, q->N, NULL);
            if (!pd) goto bad;
            const char *impl = NULL;
            dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
            q->impl = impl && strncmp(impl, "brg", 3) == 0 ? "oneDNN brgemm" : "oneDNN";
            sl->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            dnnl_primitive_desc_destroy(pd);
            if (dnnl_memory_desc_get_size(&sl->wmd) != d->blob_bytes[nb] ||
                dnnl_memory_create(&sl->wmem, &sl->wmd, engine, (void *)blob[nb]))
                goto bad;
            q->nslices++;
            q->bytes += d->blob_bytes[nb++];
        }
    }
    if (nb != d->nblobs) goto bad;
    *out = q;
    return CDX_OK;
bad:
    cdx_qlinear_free(q);
    return cdx_fail(CDX_ERR_FORMAT, "a cached layer does not match this process's layout");
}

size_t cdx_qlinear_bytes(const cdx_qlinear *q) { return q->bytes; }
const char *cdx_qlinear_backend(const cdx_qlinear *q) { return q->impl; }

/* ------------------------------------------------------------ run */

static int grow(cdx_qscratch *s, size_t bytes, int64_t rows)
{
    if (bytes > s->cap) {
        void *p = realloc(s->buf, bytes);
        if (!p) return 0;
        s->buf = p;
        s->cap = bytes;
    }
    if (rows > s->rows_cap) {
        float *p = realloc(s->rowscale, (size_t)rows * sizeof(float));
        if (!p) return 0;
        s->rowscale = p;
        s->rows_cap = rows;
    }
    return 1;
}

void cdx_qscratch_release(cdx_qscratch *s)
{
    free(s->buf);
    free(s->rowscale);
    memset(s, 0, sizeof *s);
}

struct run_ctx {
    const cdx_qlinear *q;
    struct prim **prims;
    void *src;
    int32_t *acc;
    const float *rowscale;
    float *y;
    float *ydst; /* bf16: where oneDNN writes (y, or Mp padded rows) */
    int64_t R;
};

static void run_slices(void *vctx, int64_t s0, int64_t s1)
{
    const struct run_ctx *c = vctx;
    const cdx_qlinear *q = c->q;
    /* oneDNN's parallel sections run on this thread alone: the slices
     * are the parallelism.  Restored so OpenMP users on this thread
     * (FAISS) keep their setting. */
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int64_t s = s0; s < s1; s++) {
        const struct slice *sl = &q->sl[s];
        struct prim *e = c->prims[s];
        void *dst = q->p == CDX_PRECISION_BF16 ? (void *)(c->ydst + sl->n0) : (void *)(c->acc + sl->n0);
        pthread_mutex_lock(&e->use);
        dnnl_memory_set_data_handle(e->src, c->src);
        dnnl_memory_set_data_handle(e->dst, dst);
        dnnl_exec_arg_t args[3] = {
            {DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, sl->wmem}, {DNNL_ARG_DST, e->dst}};
        dnnl_primitive_execute(e->prim, e->stream, 3, args);
        dnnl_stream_wait(e->stream);
        pthread_mutex_unlock(&e->use);
        if (q->p == CDX_PRECISION_INT8)
            for (int64_t r = 0; r < c->R; r++) {
                const int32_t *a = c->acc + r * q->N + sl->n0;
                float *y = c->y + r * q->N + sl->n0;
                const float *ws = q->wscale + sl->n0, rs = c->rowscale[r];
                for (int j = 0; j < sl->n; j++) y[j] = (float)a[j] * rs * ws[j];
            }
    }
    omp_set_num_threads(saved);
}

/* Few rows through qsmall.c: quantise each row to int8 (the same values
 * as the oneDNN path), shift to u8 for vpdpbusd, then one pass over the
 * packed weights with the dequantisation in the kernel's epilogue. */
static cdx_status run_small(const cdx_qlinear *q, cdx_qscratch *s, float *y, const float *x,
                            int64_t R)
{
    const int K = q->K, KP = 4 * q->small.KG;
    if (!grow(s, (size_t)R * KP, R))
        return cdx_fail(CDX_ERR_NOMEM, "out of memory for a %lld-row product", (long long)R);
    if (q->small.bf16) {
        for (int64_t r = 0; r < R; r++) {
            uint16_t *d = (uint16_t *)((char *)s->buf + r * KP);
            bf16_row_avx512(d, x + r * K, K);
            memset(d + K, 0, (size_t)KP - 2 * (size_t)K);
        }
        cdx_qsmall_run(&q->small, y, s->buf, NULL, NULL, R);
        return CDX_OK;
    }
    for (int64_t r = 0; r < R; r++) {
        int8_t *d = (int8_t *)s->buf + r * KP;
        s->rowscale[r] = quant_row_avx512(d, x + r * K, q->inv_smooth, K);
        memset(d + K, 0, (size_t)(KP - K));
        uint8_t *u = (uint8_t *)d;
        for (int k = 0; k < KP; k++) u[k] ^= 0x80; /* q + 128 */
    }
    cdx_qsmall_run(&q->small, y, s->buf, s->rowscale, q->wscale, R);
    return CDX_OK;
}

/* oneDNN's layout for a small-row layer, made on its first call with
 * more rows.  Layers are shared read-only by callers, hence the lock. */
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;

static int ensure_onednn(const cdx_qlinear *cq)
{
    cdx_qlinear *q = (cdx_qlinear *)cq;
    int ok = 1;
    pthread_mutex_lock(&pending_lock);
    if (q->pending) {
        const size_t esz = q->small.bf16 ? 2 : 1;
        void *plain = malloc((size_t)q->N * q->K * esz);
        ok = plain != NULL;
        if (ok && q->small.bf16) cdx_qsmall_unpack_bf16(&q->small, plain);
        else if (ok) cdx_qsmall_unpack(&q->small, plain);
        ok = ok && to_onednn(q, plain, esz);
        q->impl = small_impl(q); /* to_onednn named its own */
        free(plain);
        if (ok) __atomic_store_n(&q->pending, 0, __ATOMIC_RELEASE); /* read unlocked in run */
    }
    pthread_mutex_unlock(&pending_lock);
    return ok;
}

cdx_status cdx_qlinear_run(const cdx_qlinear *q, cdx_qscratch *s, float *y, const float *x,
                           int64_t R)
{
    const int K = q->K, N = q->N;
    const int bf = q->p == CDX_PRECISION_BF16;
    if (q->small.w && R <= CDX_QSMALL_MAX_ROWS) return run_small(q, s, y, x, R);
    /* oneDNN runs Mp rows: above 16, R rounded up to a multiple of 8
     * (zero rows below), so its cached primitives are one per row count
     * up to 16 and one per 8 above, not one per text length (at most 24
     * for one text of up to 77 tokens).  Up to 16 rows exactly: padding
     * 10 bf16 rows to 16 measured 10-20% slower (bench/run-textq.sh). */
    static int pad = -1; /* CLIPDEX_ONEDNN_PAD=off: exact rows (to measure the padding) */
    if (pad < 0) pad = !(getenv("CLIPDEX_ONEDNN_PAD") && strcmp(getenv("CLIPDEX_ONEDNN_PAD"), "off") == 0);
    const int64_t Mp = q->onednn && pad && R > 16 ? (R + 7) & ~(int64_t)7 : R;
    const size_t esz = q->onednn ? (bf ? 2 : 1) : sizeof(float);
    size_t xbytes = (size_t)Mp * K * esz;
    size_t abytes = !bf && q->onednn ? (size_t)Mp * N * sizeof(int32_t) : 0;
    size_t ybytes = bf && Mp > R ? (size_t)Mp * N * sizeof(float) : 0;
    xbytes = (xbytes + 63) & ~(size_t)63;
    if (!grow(s, xbytes + abytes + ybytes, R))
        return cdx_fail(CDX_ERR_NOMEM, "out of memory for a %lld-row product", (long long)R);
    struct cvt_ctx cc = {x, s->buf, K, q->inv_smooth, s->rowscale, !q->onednn};
    cdx_parallel_for(R, 8, bf ? cvt_bf16 : cvt_int8, &cc);
    if (Mp > R) memset((char *)s->buf + (size_t)R * K * esz, 0, (size_t)(Mp - R) * K * esz);
    if (!q->onednn) {
        cdx_linear(y, s->buf, q->wf, R, K, N);
        if (!bf)
            for (int64_t r = 0; r < R; r++)
                for (int n = 0; n < N; n++) y[r * N + n] *= s->rowscale[r] * q->wscale[n];
        return CDX_OK;
    }
    struct prim *prims[MAX_SLICES];
    if (__atomic_load_n(&q->pending, __ATOMIC_ACQUIRE) && !ensure_onednn(q))
        return cdx_fail(CDX_ERR_NOMEM, "out of memory for oneDNN's copy of a %dx%d int8 layer", N, K);
    for (int i = 0; i < q->nslices; i++)
        if (!(prims[i] = get_prim(q, i, Mp)))
            return cdx_fail(CDX_ERR_INTERNAL, "oneDNN could not build a %lldx%dx%d %s product",
                            (long long)Mp, K, q->sl[i].n, cdx_precision_name(q->p));
    float *ydst = ybytes ? (float *)((char *)s->buf + xbytes + abytes) : y;
    struct run_ctx rc = {q, prims, s->buf, (int32_t *)((char *)s->buf + xbytes), s->rowscale, y, ydst, R};
    cdx_parallel_for(q->nslices, 1, run_slices, &rc);
    if (ydst != y) memcpy(y, ydst, (size_t)R * N * sizeof(float));
    return CDX_OK;
}

/* ------------------------------------------------------------ reference */

/* The layer's weights back in plain (N,K) float form. */
static float *plain_weights(const cdx_qlinear *q)
{
    const size_t NK = (size_t)q->N * q->K;
    float *w = malloc(NK * sizeof(float));
    if (!w) return NULL;
    if (!q->onednn) {
        memcpy(w, q->wf, NK * sizeof(float));
        return w;
    }
    if (q->small.w) {
        void *b = malloc(NK * (q->small.bf16 ? 2 : 1));
        if (!b) {
            free(w);
            return NULL;
        }
        if (q->small.bf16) {
            cdx_qsmall_unpack_bf16(&q->small, b);
            for (size_t i = 0; i < NK; i++) {
                uint32_t u = (uint32_t)((uint16_t *)b)[i] << 16;
                memcpy(&w[i], &u, 4);
            }
        } else {
            cdx_qsmall_unpack(&q->small, b);
            for (size_t i = 0; i < NK; i++) w[i] = ((int8_t *)b)[i];
        }
        free(b);
        return w;
    }
    const size_t esz = q->p == CDX_PRECISION_BF16 ? 2 : 1;
    void *plain = malloc(NK * esz);
    dnnl_stream_t stream = NULL;
    if (!plain || dnnl_stream_create(&stream, engine, dnnl_stream_default_flags)) goto fail;
    for (int s = 0; s < q->nslices; s++) {
        const struct slice *sl = &q->sl[s];
        dnnl_memory_desc_t pmd;
        dnnl_dims_t d = {q->K, sl->n};
        dnnl_memory_t pm = NULL;
        dnnl_primitive_desc_t rpd = NULL;
        dnnl_primitive_t r = NULL;
        int bad = dnnl_memory_desc_init_by_tag(&pmd, 2, d, src_dt(q->p), dnnl_ba) ||
                  dnnl_memory_create(&pm, &pmd, engine, (char *)plain + (size_t)sl->n0 * q->K * esz) ||
                  dnnl_reorder_primitive_desc_create(&rpd, &sl->wmd, engine, &pmd, engine, NULL) ||
                  dnnl_primitive_create(&r, rpd);
        if (!bad) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, sl->wmem}, {DNNL_ARG_TO, pm}};
            bad = dnnl_primitive_execute(r, stream, 2, args) || dnnl_stream_wait(stream);
        }
        dnnl_primitive_destroy(r);
        dnnl_primitive_desc_destroy(rpd);
        dnnl_memory_destroy(pm);
        if (bad) goto fail;
    }
    for (size_t i = 0; i < NK; i++) {
        if (esz == 2) {
            uint32_t u = (uint32_t)((uint16_t *)plain)[i] << 16;
            memcpy(&w[i], &u, 4);
        } else {
            w[i] = ((int8_t *)plain)[i];
        }
    }
    dnnl_stream_destroy(stream);
    free(plain);
    return w;
fail:
    dnnl_stream_destroy(stream);
    free(plain);
    free(w);
    return NULL;
}

void cdx_qlinear_ref(const cdx_qlinear *q, float *y, const float *x, int64_t R)
{
    const int K = q->K, N = q->N;
    float *w = plain_weights(q), *xr = malloc((size_t)K * sizeof(float));
    if (!w || !xr) {
        free(w);
        free(xr);
        for (int64_t i = 0; i < R * N; i++) y[i] = NAN;
        return;
    }
    for (int64_t r = 0; r < R; r++) {
        float rs = 1.0f;
        if (q->p == CDX_PRECISION_BF16)
            for (int k = 0; k < K; k++) xr[k] = cdx_bf16_round(x[r * K + k]);
        else
            rs = quant_row_scalar(NULL, xr, x + r * K, q->inv_smooth, K);
        for (int n = 0; n < N; n++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += (double)xr[k] * w[(size_t)n * K + k];
            y[r * N + n] = q->p == CDX_PRECISION_BF16 ? (float)acc : (float)acc * rs * q->wscale[n];
        }
    }
    free(w);
    free(xr);
}
