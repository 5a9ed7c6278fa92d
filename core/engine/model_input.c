/*
 * model_input.c - an image file -> the model's input tensor, the one path
 * every caller takes (clipdexd's decode workers, `clipdex search --image`,
 * `clipdex similar`, `clipdex embed --image`): "an image query is embedded
 * exactly as indexing embeds it" holds because there is only this code.
 *
 * It sits in the engine because it needs the model (its
 * preprocessor_config.json and its image size); it uses the image layer
 * only through the public image calls.
 */
#include <stdlib.h>

#include "internal.h"

cdx_status cdx_model_image_input(const cdx_model *m, const char *path, const cdx_input_opts *opts,
                                 float *out)
{
    static const cdx_input_opts defaults = {0};
    const cdx_preprocess_cfg *pc;
    const cdx_model_info *info;
    cdx_decode_opts d = {0};
    cdx_image img = {0};
    cdx_status st;
    uint32_t w = 0, h = 0;

    if (!m || !path || !out) return cdx_fail(CDX_ERR_ARG, "cdx_model_image_input: invalid argument");
    if (!opts) opts = &defaults;
    pc = cdx_model_preprocess(m);
    info = cdx_model_get_info(m);
    d.max_pixels = opts->max_pixels;
    d.max_file_bytes = opts->max_file_bytes;
    if (opts->mode == CDX_INPUT_FAST) {
        /* Upright (rotated copies hash and embed alike), and JPEG
         * DCT-scaled toward the size the resize goes to anyway. */
        d.apply_orientation = 1;
        d.min_side = pc->shortest_edge > 0 ? (uint32_t)pc->shortest_edge : 0;
    }
    st = opts->data ? cdx_image_decode_mem(opts->data, opts->size, path, &d, &img, opts->meta)
                    : cdx_image_decode(path, &d, &img, opts->meta);
    if (st != CDX_OK) return st;
    if (opts->phash) *opts->phash_ok = cdx_phash(&img, opts->phash) == CDX_OK;
    if (pc->openclip) {
        /* OpenCLIP: open_clip's own eval transform, always S x S */
        st = cdx_preprocess_openclip(pc, &img, out);
        goto cleanup;
    }
    if ((st = cdx_preprocess_output_size(pc, img.width, img.height, &w, &h)) != CDX_OK) goto cleanup;
    if ((int)w != info->vision.image_size || (int)h != info->vision.image_size) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: preprocessing gives %ux%u, the model takes %dx%d "
                      "(preprocessor_config.json and config.json disagree)", path, w, h,
                      info->vision.image_size, info->vision.image_size);
        goto cleanup;
    }
    st = cdx_preprocess_exact(pc, &img, out);
cleanup:
    cdx_image_release(&img);
    return st;
}
