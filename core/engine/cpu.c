/*
 * cpu.c - see cpu.h.
 */
#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>

#include "internal.h"
#include "cpu.h"

static const char *const names[] = {"scalar", "avx2", "avx2_vnni", "avx512", "avx512_vnni",
                                    "avx512_bf16"};

const char *cdx_isa_name(cdx_isa isa)
{
    return (unsigned)isa < sizeof names / sizeof names[0] ? names[isa] : "?";
}

static cdx_isa detected, effective;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static cdx_isa detect(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return CDX_ISA_SCALAR;
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (!avx512) {
        /* AVX-VNNI has no __builtin_cpu_supports name in gcc 12: CPUID
         * leaf 7 subleaf 1, EAX bit 4. */
        unsigned a, b, c, d;
        if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return CDX_ISA_AVX2;
        return (a >> 4) & 1 ? CDX_ISA_AVX2_VNNI : CDX_ISA_AVX2;
    }
    if (!__builtin_cpu_supports("avx512vnni")) return CDX_ISA_AVX512;
    return __builtin_cpu_supports("avx512bf16") ? CDX_ISA_AVX512_BF16 : CDX_ISA_AVX512_VNNI;
}

static void init(void)
{
    detected = effective = detect();
    const char *cap = getenv("CLIPDEX_ISA");
    if (cap && *cap) {
        for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(cap, names[i]) == 0) {
                if ((cdx_isa)i < effective) effective = (cdx_isa)i;
                goto capped;
            }
        CDX_WARN("CLIPDEX_ISA=%s is not one of scalar, avx2, avx2_vnni, avx512, avx512_vnni, "
                 "avx512_bf16; ignored", cap);
    }
capped:;
    /* oneDNN's own dispatch must not go above ours.  Its AVX-VNNI level
     * needs AVX-512 absent, so cap avx2_vnni to avx2_vnni exactly. */
    static const dnnl_cpu_isa_t map[] = {dnnl_cpu_isa_sse41, dnnl_cpu_isa_avx2,
                                         dnnl_cpu_isa_avx2_vnni, dnnl_cpu_isa_avx512_core,
                                         dnnl_cpu_isa_avx512_core_vnni,
                                         dnnl_cpu_isa_avx512_core_bf16};
    if (effective < detected) dnnl_set_max_cpu_isa(map[effective]);
}

cdx_isa cdx_cpu_isa(void)
{
    pthread_once(&once, init);
    return effective;
}

cdx_isa cdx_cpu_isa_detected(void)
{
    pthread_once(&once, init);
    return detected;
}
