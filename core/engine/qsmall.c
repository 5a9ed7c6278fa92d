/*
 * qsmall.c - see qsmall.h.
 *
 * Packed layout: block b (columns 32b .. 32b+31), k-group g, is 128
 * bytes at w + (b*KG + g)*128; byte j*4 + t holds w[32b + j, 4g + t]
 * (zero past N or K).  Bytes 0-63 are columns 0-15 of the block, bytes
 * 64-127 columns 16-31: the two vpdpbusd operands.
 */
#include <string.h>

#include <immintrin.h>

#include "cpu.h"
#include "pool.h"
#include "qsmall.h"

#define ROWS_PER_PASS 12

size_t cdx_qsmall_wbytes(int K, int N) { return (size_t)((N + 31) / 32) * (size_t)((K + 3) / 4) * 128; }
size_t cdx_qsmall_cbytes(int K, int N)
{
    (void)K;
    return (size_t)((N + 31) / 32) * 32 * sizeof(int32_t);
}

void cdx_qsmall_pack(cdx_qsmall *s, int8_t *wdst, int32_t *comp, const int8_t *w, int K, int N)
{
    s->K = K;
    s->N = N;
    s->KG = (K + 3) / 4;
    s->NB = (N + 31) / 32;
    s->w = wdst;
    s->comp = comp;
    s->bf16 = 0;
    memset(wdst, 0, cdx_qsmall_wbytes(K, N));
    for (int n = 0; n < s->NB * 32; n++) {
        int32_t sum = 0;
        if (n < N)
            for (int k = 0; k < K; k++) {
                const int8_t v = w[(size_t)n * K + k];
                wdst[((size_t)(n / 32) * s->KG + k / 4) * 128 + (n % 32) * 4 + k % 4] = v;
                sum += v;
            }
        comp[n] = 128 * sum;
    }
}

void cdx_qsmall_unpack(const cdx_qsmall *s, int8_t *w)
{
    for (int n = 0; n < s->N; n++)
        for (int k = 0; k < s->K; k++)
            w[(size_t)n * s->K + k] = s->w[((size_t)(n / 32) * s->KG + k / 4) * 128 + (n % 32) * 4 + k % 4];
}

int cdx_qsmall_native(void) { return cdx_cpu_isa() >= CDX_ISA_AVX512_VNNI; }
int cdx_qsmall_native_bf16(void) { return cdx_cpu_isa() >= CDX_ISA_AVX512_BF16; }

size_t cdx_qsmall_wbytes_bf16(int K, int N) { return (size_t)((N + 31) / 32) * (size_t)((K + 1) / 2) * 128; }

void cdx_qsmall_pack_bf16(cdx_qsmall *s, int8_t *wdst, const uint16_t *w, int K, int N)
{
    *s = (cdx_qsmall){K, N, (K + 1) / 2, (N + 31) / 32, wdst, NULL, 1};
    memset(wdst, 0, cdx_qsmall_wbytes_bf16(K, N));
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            memcpy(wdst + ((size_t)(n / 32) * s->KG + k / 2) * 128 + (n % 32) * 4 + (k % 2) * 2,
                   w + (size_t)n * K + k, 2);
}

void cdx_qsmall_unpack_bf16(const cdx_qsmall *s, uint16_t *w)
{
    for (int n = 0; n < s->N; n++)
        for (int k = 0; k < s->K; k++)
            memcpy(w + (size_t)n * s->K + k,
                   s->w + ((size_t)(n / 32) * s->KG + k / 2) * 128 + (n % 32) * 4 + (k % 2) * 2, 2);
}

/* bf16 bits at p as a float.  Byte loads: with a 2-byte memcpy here,
 * gcc 12's -O3 loop vectoriser produced wrong sums in the twin below
 * (right at -O2 and with -fno-tree-loop-vectorize). */
static float bf(const void *p)
{
    const unsigned char *c = p;
    uint32_t u = ((uint32_t)c[0] << 16) | ((uint32_t)c[1] << 24);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void blocks_scalar_bf16(const cdx_qsmall *s, float *y, const uint8_t *u, int64_t R, int b0, int b1)
{
    const size_t ldu = 4 * (size_t)s->KG;
    for (int b = b0; b < b1; b++)
        for (int64_t r = 0; r < R; r++)
            for (int j = 0; j < 32; j++) {
                const int n = b * 32 + j;
                if (n >= s->N) break;
                float acc = 0.0f;
                for (int g = 0; g < s->KG; g++) {
                    const int8_t *wg = s->w + ((size_t)b * s->KG + g) * 128 + j * 4;
                    const uint8_t *ug = u + r * ldu + 4 * g;
                    acc += bf(ug + 2) * bf(wg + 2); /* exact products: one rounding each */
                    acc += bf(ug) * bf(wg);
                }
                y[r * s->N + n] = acc;
            }
}

/* ------------------------------------------------------------ scalar */

static void blocks_scalar(const cdx_qsmall *s, float *y, const uint8_t *u, const float *rs,
                          const float *ws, int64_t R, int b0, int b1)
{
    const size_t ldu = 4 * (size_t)s->KG;
    for (int b = b0; b < b1; b++)
        for (int64_t r = 0; r < R; r++)
            for (int j = 0; j < 32; j++) {
                const int n = b * 32 + j;
                if (n >= s->N) break;
                int32_t acc = 0;
                for (int g = 0; g < s->KG; g++) {
                    const int8_t *wg = s->w + ((size_t)b * s->KG + g) * 128 + j * 4;
                    const uint8_t *ug = u + r * ldu + 4 * g;
                    for (int t = 0; t < 4; t++) acc += (int32_t)ug[t] * wg[t];
                }
                y[r * s->N + n] = (float)(acc - s->comp[n]) * rs[r] * ws[n];
            }
}

void cdx_qsmall_run_scalar(const cdx_qsmall *s, float *y, const uint8_t *u, const float *rs,
                           const float *ws, int64_t R)
{
    if (s->bf16) blocks_scalar_bf16(s, y, u, R, 0, s->NB);
    else blocks_scalar(s, y, u, rs, ws, R, 0, s->NB);
}

/* ------------------------------------------------------------ AVX-512 VNNI */

/* RB rows (a constant after inlining) of one 32-column block.  The
 * accumulators stay in registers: 2*RB <= 24 of the 32 zmm. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) static inline void
block_rows(const cdx_qsmall *s, float *y, const uint8_t *u, const float *rs, const float *ws,
           int64_t r0, const int RB, int b)
{
    const size_t ldu = 4 * (size_t)s->KG;
    const int8_t *w = s->w + (size_t)b * s->KG * 128;
    const uint8_t *ub = u + r0 * ldu;
    __m512i a0[ROWS_PER_PASS], a1[ROWS_PER_PASS];
#pragma GCC unroll 12
    for (int r = 0; r < RB; r++) a0[r] = a1[r] = _mm512_setzero_si512();
    for (int g = 0; g < s->KG; g++) {
        const __m512i w0 = _mm512_load_si512((const void *)(w + (size_t)g * 128));
        const __m512i w1 = _mm512_load_si512((const void *)(w + (size_t)g * 128 + 64));
#pragma GCC unroll 12
        for (int r = 0; r < RB; r++) {
            int32_t four;
            memcpy(&four, ub + r * ldu + 4 * g, 4);
            const __m512i x = _mm512_set1_epi32(four);
            a0[r] = _mm512_dpbusd_epi32(a0[r], x, w0);
            a1[r] = _mm512_dpbusd_epi32(a1[r], x, w1);
        }
    }
    const int n0 = b * 32, left = s->N - n0;
    const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
    const __mmask16 m1 = left >= 32 ? 0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
    const __m512i c0 = _mm512_loadu_si512((const void *)(s->comp + n0));
    const __m512i c1 = _mm512_loadu_si512((const void *)(s->comp + n0 + 16));
    const __m512 s0 = _mm512_maskz_loadu_ps(m0, ws + n0), s1 = _mm512_maskz_loadu_ps(m1, ws + n0 + 16);
#pragma GCC unroll 12
    for (int r = 0; r < RB; r++) {
        const __m512 rr = _mm512_set1_ps(rs[r0 + r]);
        float *yr = y + (r0 + r) * s->N + n0;
        __m512 f0 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a0[r], c0)), rr), s0);
        __m512 f1 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a1[r], c1)), rr), s1);
        _mm512_mask_storeu_ps(yr, m0, f0);
        _mm512_mask_storeu_ps(yr + 16, m1, f1);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) static inline void
block_rows_bf16(const cdx_qsmall *s, float *y, const uint8_t *u, int64_t r0, const int RB, int b)
{
    const size_t ldu = 4 * (size_t)s->KG;
    const int8_t *w = s->w + (size_t)b * s->KG * 128;
    const uint8_t *ub = u + r0 * ldu;
    __m512 a0[ROWS_PER_PASS], a1[ROWS_PER_PASS];
#pragma GCC unroll 12
    for (int r = 0; r < RB; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    for (int g = 0; g < s->KG; g++) {
        const __m512bh w0 = (__m512bh)_mm512_load_si512((const void *)(w + (size_t)g * 128));
        const __m512bh w1 = (__m512bh)_mm512_load_si512((const void *)(w + (size_t)g * 128 + 64));
#pragma GCC unroll 12
        for (int r = 0; r < RB; r++) {
            int32_t two;
            memcpy(&two, ub + r * ldu + 4 * g, 4);
            const __m512bh x = (__m512bh)_mm512_set1_epi32(two);
            a0[r] = _mm512_dpbf16_ps(a0[r], x, w0);
            a1[r] = _mm512_dpbf16_ps(a1[r], x, w1);
        }
    }
    const int n0 = b * 32, left = s->N - n0;
    const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
    const __mmask16 m1 = left >= 32 ? 0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
#pragma GCC unroll 12
    for (int r = 0; r < RB; r++) {
        float *yr = y + (r0 + r) * s->N + n0;
        _mm512_mask_storeu_ps(yr, m0, a0[r]);
        _mm512_mask_storeu_ps(yr + 16, m1, a1[r]);
    }
}

#define ROWS_CASE_BF(n)                                     \
    case n:                                                 \
        block_rows_bf16(s, y, u, r0, n, b);                 \
        break;

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
blocks_avx512_bf16(const cdx_qsmall *s, float *y, const uint8_t *u, int64_t R, int b0, int b1)
{
    for (int b = b0; b < b1; b++)
        for (int64_t r0 = 0; r0 < R; r0 += ROWS_PER_PASS) {
            const int64_t rb = R - r0 < ROWS_PER_PASS ? R - r0 : ROWS_PER_PASS;
            switch (rb) {
                ROWS_CASE_BF(1) ROWS_CASE_BF(2) ROWS_CASE_BF(3) ROWS_CASE_BF(4) ROWS_CASE_BF(5)
                ROWS_CASE_BF(6) ROWS_CASE_BF(7) ROWS_CASE_BF(8) ROWS_CASE_BF(9) ROWS_CASE_BF(10)
                ROWS_CASE_BF(11) ROWS_CASE_BF(12)
            }
        }
}

#define ROWS_CASE(n)                                        \
    case n:                                                 \
        block_rows(s, y, u, rs, ws, r0, n, b);              \
        break;

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) static void
blocks_avx512(const cdx_qsmall *s, float *y, const uint8_t *u, const float *rs, const float *ws,
              int64_t R, int b0, int b1)
{
    for (int b = b0; b < b1; b++)
        for (int64_t r0 = 0; r0 < R; r0 += ROWS_PER_PASS) {
            const int64_t rb = R - r0 < ROWS_PER_PASS ? R - r0 : ROWS_PER_PASS;
            switch (rb) {
                ROWS_CASE(1) ROWS_CASE(2) ROWS_CASE(3) ROWS_CASE(4) ROWS_CASE(5) ROWS_CASE(6)
                ROWS_CASE(7) ROWS_CASE(8) ROWS_CASE(9) ROWS_CASE(10) ROWS_CASE(11) ROWS_CASE(12)
            }
        }
}

/* ------------------------------------------------------------ dispatch */

struct run_ctx {
    const cdx_qsmall *s;
    float *y;
    const uint8_t *u;
    const float *rs, *ws;
    int64_t R;
    int simd;
};

static void run_blocks(void *vctx, int64_t b0, int64_t b1)
{
    const struct run_ctx *c = vctx;
    if (c->s->bf16 && c->simd) blocks_avx512_bf16(c->s, c->y, c->u, c->R, (int)b0, (int)b1);
    else if (c->s->bf16) blocks_scalar_bf16(c->s, c->y, c->u, c->R, (int)b0, (int)b1);
    else if (c->simd) blocks_avx512(c->s, c->y, c->u, c->rs, c->ws, c->R, (int)b0, (int)b1);
    else blocks_scalar(c->s, c->y, c->u, c->rs, c->ws, c->R, (int)b0, (int)b1);
}

void cdx_qsmall_run(const cdx_qsmall *s, float *y, const uint8_t *u, const float *rs,
                    const float *ws, int64_t R)
{
    struct run_ctx c = {s, y, u, rs, ws, R, s->bf16 ? cdx_qsmall_native_bf16() : cdx_qsmall_native()};
    /* 4 blocks (128 columns x K) is the least worth a thread: a 512x512
     * layer is 16 blocks, so both threads take 8.  (With one compute
     * thread, cdx_threads_set(1), it all runs here.) */
    cdx_parallel_for(s->NB, 4, run_blocks, &c);
}
