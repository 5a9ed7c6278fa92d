/*
 * ingest.c - the image ingestion layer for photo libraries (decode with
 * metadata, orientation, fast preprocessing).
 *
 * BRIDGE: until the ingestion work lands, cdx_image_decode decodes exactly
 * like cdx_image_load (JPEG/PNG, full size, no EXIF) and reports only the
 * format and size, and cdx_preprocess_fast is the exact path.  The
 * signatures are final, so the daemon and the query tool build on them now.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

cdx_status cdx_image_decode(const char *path, const cdx_decode_opts *opts, cdx_image *img,
                            cdx_image_meta *meta)
{
    cdx_image tmp = {0};
    cdx_status st;
    (void)opts;
    st = cdx_image_load(path, &tmp);
    if (st) return st;
    if (meta) {
        memset(meta, 0, sizeof *meta);
        snprintf(meta->format, sizeof meta->format, "%s", "image");
        meta->width = tmp.width;
        meta->height = tmp.height;
        meta->orientation = 1;
        meta->taken_at = INT64_MIN;
    }
    if (img)
        *img = tmp;
    else
        cdx_image_release(&tmp);
    return CDX_OK;
}

cdx_status cdx_preprocess_fast(const cdx_preprocess_cfg *cfg, const cdx_image *img, float *out)
{
    return cdx_preprocess_exact(cfg, img, out);
}
