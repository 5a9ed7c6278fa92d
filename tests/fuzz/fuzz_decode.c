/*
 * fuzz_decode.c - libFuzzer target for the whole image path: format
 * detection, every decoder, EXIF, orientation and preprocessing, through
 * cdx_image_decode_mem (the same code cdx_image_decode runs on a file).
 *
 * The input's length picks one of three runs, so each input exercises a
 * stable path:  0 metadata-only probe,  1 the fast path (upright,
 * DCT-scaled for 224, cdx_preprocess_exact),  2 the exact path (full size,
 * cdx_preprocess_exact).  The pixel limit is lowered to 4 MP so a small
 * input claiming a huge image costs little.
 *
 * Beyond memory errors (ASan) and undefined behaviour (UBSan), the
 * target aborts when the API contract breaks: a success without pixels
 * or with a zero size, or a failure whose message is not one line
 * starting with the name.
 *
 * Build and run: make fuzz (tests/fuzz/run.sh).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clipdex.h"

#define NAME "fuzz-input"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cdx_preprocess_cfg cfg;
    static float *tensor;
    cdx_decode_opts o = {0};
    cdx_image img = {0};
    cdx_image_meta meta;
    cdx_status st;
    int mode = (int)(size % 3);

    if (!tensor) {
        cdx_preprocess_cfg_default(&cfg);
        tensor = malloc(sizeof(float) * 3 * (size_t)cfg.crop_width * (size_t)cfg.crop_height);
        if (!tensor) abort();
    }
    o.max_pixels = 4u << 20;
    o.max_file_bytes = 16u << 20;
    if (mode == 1) {
        o.apply_orientation = 1;
        o.min_side = (uint32_t)cfg.shortest_edge;
    }
    st = cdx_image_decode_mem(data, size, NAME, &o, mode == 0 ? NULL : &img, &meta);
    if (st != CDX_OK) {
        const char *e = cdx_last_error();
        if (strncmp(e, NAME ": ", sizeof NAME + 1) != 0 || strchr(e, '\n')) abort();
        if (img.rgb) abort(); /* untouched on failure */
        return 0;
    }
    if (meta.width == 0 || meta.height == 0 || meta.orientation < 1 || meta.orientation > 8)
        abort();
    if (memchr(meta.make, 0, sizeof meta.make) == NULL ||
        memchr(meta.model, 0, sizeof meta.model) == NULL ||
        memchr(meta.warning, 0, sizeof meta.warning) == NULL)
        abort();
    if (mode == 0) return 0;
    if (!img.rgb || img.width == 0 || img.height == 0) abort();
    /* touch every byte: a decoder that under-fills its buffer shows up as
     * use of uninitialised memory under MSan, and this keeps the reads */
    {
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++) sum += img.rgb[i];
        (void)sum;
    }
    st = cdx_preprocess_exact(&cfg, &img, tensor);
    if (st != CDX_OK && st != CDX_ERR_LIMIT && st != CDX_ERR_NOMEM) abort();
    cdx_image_release(&img);
    return 0;
}
