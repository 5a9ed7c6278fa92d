/*
 * precision.c - precision names and what "auto" means on this CPU.
 */
#include <string.h>

#include "internal.h"
#include "cpu.h"

static const char *const names[] = {"auto", "f32", "bf16", "int8"};

const char *cdx_precision_name(cdx_precision p)
{
    return (unsigned)p <= CDX_PRECISION_INT8 ? names[p] : "?";
}

int cdx_precision_parse(const char *s, cdx_precision *out)
{
    for (int i = 0; s && i <= CDX_PRECISION_INT8; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (cdx_precision)i;
            return 0;
        }
    return -1;
}

/* bf16 first where the CPU has it: it meets the tighter accuracy bar
 * (cosine to float32 >= 0.999 per embedding, measured in
 * tests/cli/12-precision.t) and the issue asks for it there; int8 only
 * where VNNI is the best the CPU has. */
cdx_precision cdx_precision_auto(const char **why)
{
    cdx_isa isa = cdx_cpu_isa();
    cdx_precision p;
    const char *w;
    if (isa >= CDX_ISA_AVX512_BF16) {
        p = CDX_PRECISION_BF16;
        w = "auto: the CPU has AVX512_BF16";
    } else if (isa == CDX_ISA_AVX512_VNNI || isa == CDX_ISA_AVX2_VNNI) {
        p = CDX_PRECISION_INT8;
        w = isa == CDX_ISA_AVX2_VNNI ? "auto: the CPU has AVX-VNNI but not AVX512_BF16"
                                     : "auto: the CPU has AVX512_VNNI but not AVX512_BF16";
    } else {
        p = CDX_PRECISION_F32;
        w = "auto: the CPU has neither AVX512_BF16 nor VNNI";
    }
    if (why) *why = w;
    return p;
}

const char *cdx_cpu_level(void) { return cdx_isa_name(cdx_cpu_isa()); }
