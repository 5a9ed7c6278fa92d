/*
 * image_heif.c - HEIF/HEIC (every iPhone since 2017) and AVIF, with
 * libheif: the primary image, 8-bit RGB (HDR converted down, alpha
 * dropped).
 *
 * Orientation: a HEIF image is defined together with its transformations
 * (clap crop, irot rotation, imir mirror), which libheif applies; the
 * HEIF specification says the EXIF Orientation tag a phone also writes
 * must not be applied on top (it describes the same rotation).  So the
 * pixels are always returned as libheif presents them (upright, cropped;
 * pillow-heif does the same), the size reported is that size, and the
 * orientation reported is 1 whatever EXIF says.
 *
 * The EXIF item starts with a 4-byte big-endian offset to its TIFF header.
 *
 * libheif is driven from memory (no copy), with a pixel-area security
 * limit, and decodes in the calling thread: the daemon already decodes
 * several files in parallel.  It never prints.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libheif/heif.h>

#include "image_impl.h"

static pthread_once_t heif_once = PTHREAD_ONCE_INIT;
static void heif_setup(void) { (void)heif_init(NULL); }

static cdx_status heif_fail(const cdx_decode_ctx *c, struct heif_error e, const char *what)
{
    const char *msg = e.message && e.message[0] ? e.message : "unknown error";
    if (e.subcode == heif_suberror_End_of_data)
        return cdx_fail(CDX_ERR_FORMAT, "%s: truncated HEIF data", c->path);
    if (e.subcode == heif_suberror_Security_limit_exceeded)
        return cdx_fail(CDX_ERR_LIMIT, "%s: HEIF image over the %.1f megapixel limit (%s)",
                        c->path, (double)c->max_pixels / 1e6, msg);
    switch (e.code) {
    case heif_error_Memory_allocation_error:
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory decoding HEIF", c->path);
    case heif_error_Unsupported_filetype:
    case heif_error_Unsupported_feature:
        return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: unsupported: HEIF %s: %s", c->path, what, msg);
    default:
        return cdx_fail(CDX_ERR_FORMAT, "%s: HEIF error (%s): %s", c->path, what, msg);
    }
}

/* The first Exif item of the image, TIFF header onwards, copied. */
static void heif_exif(cdx_decode_ctx *c, const struct heif_image_handle *h)
{
    heif_item_id id;
    size_t n;
    uint8_t *buf;

    if (heif_image_handle_get_list_of_metadata_block_IDs(h, "Exif", &id, 1) < 1) return;
    n = heif_image_handle_get_metadata_size(h, id);
    if (n < 4 + 8 || n > ((size_t)64 << 20)) return;
    if (!(buf = malloc(n))) return;
    if (heif_image_handle_get_metadata(h, id, buf).code != heif_error_Ok) {
        free(buf);
        cdx_decode_warn(c, "unreadable HEIF Exif item (ignored)");
        return;
    }
    /* Skip the offset word and the offset itself; tolerate writers that
     * got the offset wrong by looking for the TIFF header nearby. */
    size_t off = 4 + (((size_t)buf[0] << 24) | ((size_t)buf[1] << 16) |
                      ((size_t)buf[2] << 8) | buf[3]);
    int found = off + 8 <= n && (memcmp(buf + off, "II*\0", 4) == 0 ||
                                 memcmp(buf + off, "MM\0*", 4) == 0);
    for (size_t i = 0; !found && i + 8 <= n && i < 64; i++) {
        if (memcmp(buf + i, "II*\0", 4) == 0 || memcmp(buf + i, "MM\0*", 4) == 0) {
            off = i;
            found = 1;
        }
    }
    if (!found) {
        free(buf);
        cdx_decode_warn(c, "malformed HEIF Exif item: no TIFF header (ignored)");
        return;
    }
    c->exif_buf = buf;
    c->exif = buf + off;
    c->exif_len = n - off;
}

cdx_status cdx_decode_heif(cdx_decode_ctx *c)
{
    cdx_status st = CDX_OK;
    struct heif_context *ctx = NULL;
    struct heif_image_handle *h = NULL;
    struct heif_image *img = NULL;
    struct heif_decoding_options *o = NULL;
    struct heif_error e;
    uint8_t *rgb = NULL;

    pthread_once(&heif_once, heif_setup);
    if (!(ctx = heif_context_alloc()))
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
    {
        /* libheif limits the area to maximum_width^2. */
        double side = floor(sqrt((double)c->max_pixels));
        heif_context_set_maximum_image_size_limit(ctx, side > 2147483647.0 ? 2147483647
                                                                            : (int)side);
    }
    heif_context_set_max_decoding_threads(ctx, 0);
    e = heif_context_read_from_memory_without_copy(ctx, c->data, c->size, NULL);
    if (e.code != heif_error_Ok) {
        st = heif_fail(c, e, "reading the file");
        goto cleanup;
    }
    e = heif_context_get_primary_image_handle(ctx, &h);
    if (e.code != heif_error_Ok) {
        st = heif_fail(c, e, "primary image");
        goto cleanup;
    }
    {
        int w = heif_image_handle_get_width(h), hh = heif_image_handle_get_height(h);
        int iw = heif_image_handle_get_ispe_width(h), ih = heif_image_handle_get_ispe_height(h);
        if (w <= 0 || hh <= 0) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: HEIF image has zero size (%dx%d)", c->path, w, hh);
            goto cleanup;
        }
        c->width = (uint32_t)w;
        c->height = (uint32_t)hh;
        if ((st = cdx_image_check_size(c, c->width, c->height))) goto cleanup;
        /* the coded size (before crop) is what gets allocated */
        if (iw > 0 && ih > 0 && (st = cdx_image_check_size(c, (uint32_t)iw, (uint32_t)ih)))
            goto cleanup;
    }
    c->oriented = 1;
    if (c->want_exif) heif_exif(c, h);
    if (!c->want_pixels) goto cleanup;

    if (!(o = heif_decoding_options_alloc())) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
        goto cleanup;
    }
    o->ignore_transformations = 0;
    o->convert_hdr_to_8bit = 1;
    e = heif_decode_image(h, &img, heif_colorspace_RGB, heif_chroma_interleaved_RGB, o);
    if (e.code != heif_error_Ok) {
        st = heif_fail(c, e, "decoding");
        goto cleanup;
    }
    {
        int stride = 0;
        int w = heif_image_get_width(img, heif_channel_interleaved);
        int hh = heif_image_get_height(img, heif_channel_interleaved);
        const uint8_t *p = heif_image_get_plane_readonly(img, heif_channel_interleaved, &stride);
        if (!p || w <= 0 || hh <= 0 || stride < w * 3 ||
            heif_image_get_bits_per_pixel_range(img, heif_channel_interleaved) != 8) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: HEIF decoder returned no usable 8-bit RGB image",
                          c->path);
            goto cleanup;
        }
        if ((st = cdx_image_alloc_rgb(c, (uint32_t)w, (uint32_t)hh, &rgb))) goto cleanup;
        for (int y = 0; y < hh; y++)
            memcpy(rgb + (size_t)y * w * 3, p + (size_t)y * stride, (size_t)w * 3);
        c->img.width = (uint32_t)w;
        c->img.height = (uint32_t)hh;
        c->img.rgb = rgb;
        rgb = NULL;
    }
cleanup:
    free(rgb);
    if (o) heif_decoding_options_free(o);
    if (img) heif_image_release(img);
    if (h) heif_image_handle_release(h);
    heif_context_free(ctx);
    return st;
}
