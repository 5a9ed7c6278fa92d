/*
 * faiss_dist.c - vectorised replacements for FAISS's distance functions.
 *
 * Why: Debian builds libfaiss.a for the baseline x86-64 instruction set,
 * where faiss/utils/distances_simd.cpp compiles its scalar fallbacks: a
 * 512-d inner product is one dependent chain of 512 float additions.
 * Every FAISS index type except Flat (which the store scans itself, see
 * store_scan.c) spends its time there: perf on an HNSW32 build of 1M
 * vectors showed 95% of the CPU in fvec_inner_product_ref, and 1M inserts
 * would have taken about four hours on two cores.
 *
 * How: the Makefile links a copy of libfaiss.a in which these five
 * functions are weak symbols (objcopy --weaken-symbol), so the strong
 * definitions here, under FAISS's C++ names, are the ones every FAISS
 * caller reaches.  Each picks an AVX2+FMA loop when the CPU has it and
 * a plain loop otherwise (also under CLIPDEX_REFERENCE=1); the loops sum
 * in a different order than FAISS's, so distances may differ from it in
 * the last bits, as they would between FAISS's own SIMD builds.
 *
 * Only on x86-64, where the Makefile weakens the symbols; elsewhere this
 * file defines just cdx_faiss_dist_impl().
 */
#include <stddef.h>
#include <stdlib.h>

#include "vindex.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* ---- plain loops ---- */

static float ip_ref(const float *x, const float *y, size_t d)
{
    float s = 0;
    for (size_t i = 0; i < d; i++) s += x[i] * y[i];
    return s;
}

static float l2_ref(const float *x, const float *y, size_t d)
{
    float s = 0;
    for (size_t i = 0; i < d; i++) {
        float t = x[i] - y[i];
        s += t * t;
    }
    return s;
}

/* ---- AVX2 + FMA: four independent 8-wide accumulators ---- */

__attribute__((target("avx2,fma"))) static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static float ip_avx2(const float *x, const float *y, size_t d)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= d; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < d; i++) s += x[i] * y[i];
    return s;
}

__attribute__((target("avx2,fma"))) static float l2_avx2(const float *x, const float *y, size_t d)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        a0 = _mm256_fmadd_ps(t0, t0, a0);
        a1 = _mm256_fmadd_ps(t1, t1, a1);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        a0 = _mm256_fmadd_ps(t, t, a0);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < d; i++) {
        float t = x[i] - y[i];
        s += t * t;
    }
    return s;
}

/* ---- dispatch, decided once ---- */

typedef float (*pair_fn)(const float *, const float *, size_t);
static pair_fn ip_fn, l2_fn;
static const char *impl_name;

__attribute__((constructor)) static void pick(void)
{
    const char *e = getenv("CLIPDEX_REFERENCE");
    __builtin_cpu_init();
    if (!(e && *e == '1') && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        ip_fn = ip_avx2;
        l2_fn = l2_avx2;
        impl_name = "avx2";
    } else {
        ip_fn = ip_ref;
        l2_fn = l2_ref;
        impl_name = "scalar";
    }
}

const char *cdx_faiss_dist_impl(void) { return impl_name; }

/* ---- FAISS's names (declared in vindex.h) ---- */

float cdx_fvec_inner_product(const float *x, const float *y, size_t d) { return ip_fn(x, y, d); }

float cdx_fvec_L2sqr(const float *x, const float *y, size_t d) { return l2_fn(x, y, d); }

float cdx_fvec_norm_L2sqr(const float *x, size_t d) { return ip_fn(x, x, d); }

void cdx_fvec_inner_products_ny(float *dis, const float *x, const float *y, size_t d, size_t ny)
{
    for (size_t j = 0; j < ny; j++) dis[j] = ip_fn(x, y + j * d, d);
}

void cdx_fvec_L2sqr_ny(float *dis, const float *x, const float *y, size_t d, size_t ny)
{
    for (size_t j = 0; j < ny; j++) dis[j] = l2_fn(x, y + j * d, d);
}

#else

const char *cdx_faiss_dist_impl(void) { return "faiss"; }

#endif
