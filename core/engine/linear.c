/*
 * linear.c - see linear.h.
 *
 * The streaming kernel: the output columns are split across the compute
 * pool in blocks of 4; for each block, 4 weight rows are multiplied with up
 * to 4 rows of x at a time, keeping 16 vector accumulators in registers.
 * Each weight row is read from memory once per 4 rows of x (x itself stays
 * in L1/L2), so for R <= 4 the whole product costs one pass over W.
 * AVX-512 and AVX2 versions are chosen at run time; the scalar loop is the
 * fallback for older CPUs and for the K % 16 tail.
 */
#include <string.h>

#include <cblas.h>
#include <immintrin.h>

#include "internal.h"
#include "kernels.h"
#include "linear.h"
#include "pool.h"

/* OpenBLAS runs single-threaded (cdx_threads_set); the product is split
 * by output columns across the compute pool instead.  Each slice is a
 * contiguous block of W's rows and a column band of y (ldc = N).  One set
 * of threads for everything means no OpenBLAS worker spins (sched_yield)
 * while our own kernels run.
 *
 * The bands have a fixed width that depends on N only, and each band is
 * its own sgemm call: OpenBLAS's summation order for a column depends on
 * the width of the call (its small-matrix and tail kernels), so bands
 * sized by the thread split made 1 and 2 threads differ in the last bit.
 * cdx_fixed_blocks picks the width. */
struct sgemm_ctx {
    float *y;
    const float *x, *W;
    int64_t R;
    int K, N, bw;
};

int cdx_fixed_blocks(int n, int unit, int *width)
{
    /* At most 8 bands (an even split for 1, 2, 4 or 8 threads),
     * each a multiple of unit and as wide as that allows: every band
     * repacks the other operand, so narrower costs time. */
    int units = (n + unit - 1) / unit, per = (units + 7) / 8;
    *width = per * unit;
    return (n + *width - 1) / *width;
}

static void sgemm_cols(void *vctx, int64_t b, int64_t e)
{
    const struct sgemm_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        int n0 = (int)i * c->bw, n1 = n0 + c->bw < c->N ? n0 + c->bw : c->N;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->R, n1 - n0, c->K, 1.0f, c->x,
                    c->K, c->W + (int64_t)n0 * c->K, c->K, 0.0f, c->y + n0, c->N);
    }
}

void cdx_linear_sgemm(float *y, const float *x, const float *W, int64_t R, int K, int N)
{
    struct sgemm_ctx c = {y, x, W, R, K, N, 0};
    int nb = cdx_fixed_blocks(N, 64, &c.bw);
    cdx_parallel_for(nb, 1, sgemm_cols, &c);
}

void cdx_ref_linear(float *y, const float *x, const float *W, int64_t R, int K, int N)
{
    for (int64_t r = 0; r < R; r++)
        for (int n = 0; n < N; n++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += (double)x[r * K + k] * W[(int64_t)n * K + k];
            y[r * N + n] = (float)acc;
        }
}

struct stream_ctx {
    float *y;
    const float *x, *W;
    int64_t R;
    int K, N;
};

/* Scalar: one output element, for tails and old CPUs. */
static float dot_scalar(const float *a, const float *b, int k0, int K)
{
    float s = 0.0f;
    for (int k = k0; k < K; k++) s += a[k] * b[k];
    return s;
}

/* Sums of four vectors at once: lane j of the result is the sum of the
 * j-th argument's 16 lanes.  One shuffle tree instead of four. */
__attribute__((target("avx512f"))) static inline __m128 reduce4_512(__m512 a, __m512 b, __m512 c,
                                                                      __m512 d)
{
#define HALF(v) _mm256_add_ps(_mm512_castps512_ps256(v), \
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
    __m256 ab = _mm256_hadd_ps(HALF(a), HALF(b)), cd = _mm256_hadd_ps(HALF(c), HALF(d));
#undef HALF
    __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/* 4 weight rows x 5 rows of x: 20 accumulators, 9 loads per 20 FMAs.
 * Five rows make the common 10-token query two exact passes. */
#define XR 5
__attribute__((target("avx512f"))) static void stream_avx512(void *vctx, int64_t b0, int64_t b1)
{
    const struct stream_ctx *c = vctx;
    const int K = c->K, N = c->N, K16 = K & ~15;
    for (int64_t nb = b0; nb < b1; nb++) {
        int n0 = (int)nb * 4, nn = N - n0 < 4 ? N - n0 : 4;
        const float *w[4];
        for (int j = 0; j < 4; j++) w[j] = c->W + (int64_t)(n0 + (j < nn ? j : 0)) * K;
        for (int64_t r0 = 0; r0 < c->R; r0 += XR) {
            int rr = c->R - r0 < XR ? (int)(c->R - r0) : XR;
            const float *xr[XR];
            for (int i = 0; i < XR; i++) xr[i] = c->x + (r0 + (i < rr ? i : rr - 1)) * K;
            __m512 acc[XR][4];
            for (int i = 0; i < XR; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
            /* The hardware prefetcher ramps up per row and each row is
             * short (2-8 KB), so fetch the next block's rows into L2
             * ourselves while this block computes. */
            const float *next = c->W + (int64_t)(n0 + 4) * K;
            const int pf = r0 == 0 && n0 + 8 <= N;
            for (int k = 0; k < K16; k += 16) {
                if (pf)
                    for (int j = 0; j < 4; j++)
                        _mm_prefetch((const char *)(next + j * K + k), _MM_HINT_T1);
                __m512 w0 = _mm512_loadu_ps(w[0] + k), w1 = _mm512_loadu_ps(w[1] + k);
                __m512 w2 = _mm512_loadu_ps(w[2] + k), w3 = _mm512_loadu_ps(w[3] + k);
                for (int i = 0; i < XR; i++) {
                    __m512 xv = _mm512_loadu_ps(xr[i] + k);
                    acc[i][0] = _mm512_fmadd_ps(w0, xv, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(w1, xv, acc[i][1]);
                    acc[i][2] = _mm512_fmadd_ps(w2, xv, acc[i][2]);
                    acc[i][3] = _mm512_fmadd_ps(w3, xv, acc[i][3]);
                }
            }
            for (int i = 0; i < rr; i++) {
                float out[4];
                _mm_storeu_ps(out, reduce4_512(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
                for (int j = 0; j < nn; j++)
                    c->y[(r0 + i) * N + n0 + j] = out[j] + dot_scalar(xr[i], w[j], K16, K);
            }
        }
    }
}
#undef XR

__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static void stream_avx2(void *vctx, int64_t b0, int64_t b1)
{
    const struct stream_ctx *c = vctx;
    const int K = c->K, N = c->N, K8 = K & ~7;
    /* 4 weight rows x 3 x rows = 12 accumulators of the 16 ymm registers. */
    for (int64_t nb = b0; nb < b1; nb++) {
        int n0 = (int)nb * 4, nn = N - n0 < 4 ? N - n0 : 4;
        const float *w[4];
        for (int j = 0; j < 4; j++) w[j] = c->W + (int64_t)(n0 + (j < nn ? j : 0)) * K;
        for (int64_t r0 = 0; r0 < c->R; r0 += 3) {
            int rr = c->R - r0 < 3 ? (int)(c->R - r0) : 3;
            const float *xr[3];
            for (int i = 0; i < 3; i++) xr[i] = c->x + (r0 + (i < rr ? i : 0)) * K;
            __m256 acc[4][3];
            for (int j = 0; j < 4; j++)
                for (int i = 0; i < 3; i++) acc[j][i] = _mm256_setzero_ps();
            const float *next = c->W + (int64_t)(n0 + 4) * K;
            const int pf = r0 == 0 && n0 + 8 <= N;
            for (int k = 0; k < K8; k += 8) {
                if (pf && (k & 15) == 0)
                    for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(next + j * K + k), _MM_HINT_T1);
                __m256 xv0 = _mm256_loadu_ps(xr[0] + k), xv1 = _mm256_loadu_ps(xr[1] + k);
                __m256 xv2 = _mm256_loadu_ps(xr[2] + k);
                for (int j = 0; j < 4; j++) {
                    __m256 wv = _mm256_loadu_ps(w[j] + k);
                    acc[j][0] = _mm256_fmadd_ps(wv, xv0, acc[j][0]);
                    acc[j][1] = _mm256_fmadd_ps(wv, xv1, acc[j][1]);
                    acc[j][2] = _mm256_fmadd_ps(wv, xv2, acc[j][2]);
                }
            }
            for (int j = 0; j < nn; j++)
                for (int i = 0; i < rr; i++)
                    c->y[(r0 + i) * N + n0 + j] = hsum256(acc[j][i]) + dot_scalar(xr[i], w[j], K8, K);
        }
    }
}

static void stream_scalar(void *vctx, int64_t b0, int64_t b1)
{
    const struct stream_ctx *c = vctx;
    for (int64_t nb = b0; nb < b1; nb++)
        for (int n = (int)nb * 4; n < c->N && n < (int)nb * 4 + 4; n++)
            for (int64_t r = 0; r < c->R; r++)
                c->y[r * c->N + n] = dot_scalar(c->x + r * c->K, c->W + (int64_t)n * c->K, 0, c->K);
}

void cdx_linear_stream(float *y, const float *x, const float *W, int64_t R, int K, int N)
{
    static cdx_range_fn fn;
    struct stream_ctx c = {y, x, W, R, K, N};
    if (!fn) {
        __builtin_cpu_init();
        fn = __builtin_cpu_supports("avx512f") ? stream_avx512
             : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? stream_avx2
                                                                                 : stream_scalar;
    }
    /* Blocks of 4 output columns; 16 blocks (64 columns) per slice at least. */
    cdx_parallel_for((N + 3) / 4, 16, fn, &c);
}

void cdx_linear(float *y, const float *x, const float *W, int64_t R, int K, int N)
{
    if (cdx_kernels_reference())
        cdx_ref_linear(y, x, W, R, K, N);
    else if (R <= CDX_STREAM_MAX_ROWS)
        cdx_linear_stream(y, x, W, R, K, N);
    else
        cdx_linear_sgemm(y, x, W, R, K, N);
}
