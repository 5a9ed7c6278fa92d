/*
 * cpu.h - which instruction-set level the reduced-precision kernels may
 * use (internal).
 *
 * Levels are ordered; each includes the ones below it.  The detected
 * level can be capped with the environment variable CLIPDEX_ISA
 * (scalar|avx2|avx2_vnni|avx512|avx512_vnni|avx512_bf16), which is how the
 * tests run every dispatch path on one machine.  The cap also goes to
 * oneDNN (dnnl_set_max_cpu_isa) before its first primitive, so both our
 * kernels and its kernels see the same CPU.
 */
#ifndef CDX_CPU_H
#define CDX_CPU_H

typedef enum cdx_isa {
    CDX_ISA_SCALAR,
    CDX_ISA_AVX2,        /* AVX2 + FMA */
    CDX_ISA_AVX2_VNNI,   /* + AVX-VNNI (vpdpbusd on ymm) */
    CDX_ISA_AVX512,      /* AVX-512 F/BW/VL/DQ */
    CDX_ISA_AVX512_VNNI, /* + AVX512_VNNI */
    CDX_ISA_AVX512_BF16, /* + AVX512_BF16 (vdpbf16ps) */
} cdx_isa;

/* The effective level: detected, capped by CLIPDEX_ISA.  Computed once;
 * thread-safe. */
cdx_isa cdx_cpu_isa(void);
/* The detected level, ignoring the cap. */
cdx_isa cdx_cpu_isa_detected(void);
const char *cdx_isa_name(cdx_isa isa);

#endif
