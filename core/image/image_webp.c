/*
 * image_webp.c - WebP (lossy, lossless, alpha, animated) with libwebp.
 *
 * Pillow decodes every WebP through libwebp's animation decoder into an
 * RGBA canvas and convert("RGB") then drops alpha; the colour values are
 * the stored (not premultiplied) ones.  A still image is decoded here
 * with WebPDecode straight to RGB, which runs the same YUV->RGB code as
 * the RGBA path and gives the same bytes without the 4-byte canvas.  An
 * animated file goes through WebPAnimDecoder like Pillow's, and its first
 * frame (composited on the transparent-black canvas) is kept.
 *
 * The EXIF chunk is located with the demuxer; its payload is a bare TIFF
 * structure (some writers prefix "Exif\0\0", which the EXIF parser also
 * accepts).  libwebp never prints; threads are not used (the daemon
 * decodes several files at once already).
 */
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/demux.h>

#include "image_impl.h"

static cdx_status webp_fail(const cdx_decode_ctx *c, VP8StatusCode s)
{
    switch (s) {
    case VP8_STATUS_NOT_ENOUGH_DATA:
    case VP8_STATUS_SUSPENDED:
        return cdx_fail(CDX_ERR_FORMAT, "%s: truncated WebP data", c->path);
    case VP8_STATUS_OUT_OF_MEMORY:
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory decoding WebP", c->path);
    case VP8_STATUS_UNSUPPORTED_FEATURE:
        return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: unsupported: WebP feature", c->path);
    default:
        return cdx_fail(CDX_ERR_FORMAT, "%s: corrupt WebP data", c->path);
    }
}

/* The EXIF chunk, copied (the demuxer's memory goes away with it). */
static void webp_exif(cdx_decode_ctx *c, const WebPDemuxer *dmux)
{
    WebPChunkIterator it;
    if (!(WebPDemuxGetI(dmux, WEBP_FF_FORMAT_FLAGS) & EXIF_FLAG)) return;
    if (!WebPDemuxGetChunk(dmux, "EXIF", 1, &it)) return;
    if (it.chunk.size > 0 && (c->exif_buf = malloc(it.chunk.size))) {
        memcpy(c->exif_buf, it.chunk.bytes, it.chunk.size);
        c->exif = c->exif_buf;
        c->exif_len = it.chunk.size;
    }
    WebPDemuxReleaseChunkIterator(&it);
}

/* First frame of an animation, alpha dropped. */
static cdx_status webp_anim(cdx_decode_ctx *c, const WebPData *wd, int has_alpha)
{
    cdx_status st;
    WebPAnimDecoderOptions o;
    WebPAnimDecoder *dec = NULL;
    WebPAnimInfo info;
    uint8_t *canvas = NULL, *rgb = NULL;
    int ts;

    if (!WebPAnimDecoderOptionsInit(&o)) return CDX_BUG("libwebp version mismatch");
    o.color_mode = MODE_RGBA;
    o.use_threads = 0;
    if (!(dec = WebPAnimDecoderNew(wd, &o)))
        return cdx_fail(CDX_ERR_FORMAT, "%s: corrupt animated WebP", c->path);
    if (!WebPAnimDecoderGetInfo(dec, &info)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: corrupt animated WebP", c->path);
        goto cleanup;
    }
    /* The canvas size must agree with what the header told us. */
    if (info.canvas_width != c->width || info.canvas_height != c->height) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: corrupt animated WebP (canvas size)", c->path);
        goto cleanup;
    }
    if ((st = cdx_image_alloc_rgb(c, c->width, c->height, &rgb))) goto cleanup;
    if (!WebPAnimDecoderGetNext(dec, &canvas, &ts) || !canvas) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: corrupt WebP animation frame", c->path);
        goto cleanup;
    }
    {
        size_t n = (size_t)c->width * c->height;
        /* Pillow's mode is RGBA when the file has alpha: keep it for
         * OpenCLIP's premultiplied resize (cdx_image.alpha) */
        if (has_alpha && !(c->img.alpha = malloc(n))) {
            st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            rgb[3 * i + 0] = canvas[4 * i + 0];
            rgb[3 * i + 1] = canvas[4 * i + 1];
            rgb[3 * i + 2] = canvas[4 * i + 2];
            if (c->img.alpha) c->img.alpha[i] = canvas[4 * i + 3];
        }
    }
    c->img.width = c->width;
    c->img.height = c->height;
    c->img.rgb = rgb;
    rgb = NULL;
cleanup:
    free(rgb);
    WebPAnimDecoderDelete(dec);
    return st;
}

cdx_status cdx_decode_webp(cdx_decode_ctx *c)
{
    cdx_status st;
    WebPBitstreamFeatures f;
    WebPDecoderConfig cfg;
    VP8StatusCode vs;
    WebPData wd = {c->data, c->size};
    uint8_t *rgb = NULL;
    size_t nbytes;

    if ((vs = WebPGetFeatures(c->data, c->size, &f)) != VP8_STATUS_OK) return webp_fail(c, vs);
    if (f.width <= 0 || f.height <= 0)
        return cdx_fail(CDX_ERR_FORMAT, "%s: corrupt WebP data (size %dx%d)", c->path,
                        f.width, f.height);
    c->width = (uint32_t)f.width;
    c->height = (uint32_t)f.height;
    if (c->want_exif || f.has_animation) {
        WebPDemuxer *dmux = WebPDemux(&wd);
        if (dmux) {
            if (c->want_exif) webp_exif(c, dmux);
            if (f.has_animation) {
                /* For animations the features give the canvas size. */
                c->width = WebPDemuxGetI(dmux, WEBP_FF_CANVAS_WIDTH);
                c->height = WebPDemuxGetI(dmux, WEBP_FF_CANVAS_HEIGHT);
            }
            WebPDemuxDelete(dmux);
        } else if (f.has_animation) {
            return cdx_fail(CDX_ERR_FORMAT, "%s: corrupt or truncated animated WebP", c->path);
        }
    }
    if ((st = cdx_image_check_size(c, c->width, c->height))) return st;
    if (!c->want_pixels) return CDX_OK;
    if (f.has_animation) return webp_anim(c, &wd, f.has_alpha);

    if ((st = cdx_image_alloc_rgb(c, c->width, c->height, &rgb))) return st;
    /* With alpha (Pillow's mode RGBA) decode RGBA and keep the alpha
     * plane for OpenCLIP's premultiplied resize (cdx_image.alpha); the
     * colour channels are the same as MODE_RGB's. */
    const int ch = f.has_alpha ? 4 : 3;
    uint8_t *buf = rgb;
    nbytes = (size_t)c->width * c->height * (size_t)ch;
    if (f.has_alpha && (!(buf = malloc(nbytes)) ||
                        !(c->img.alpha = malloc((size_t)c->width * c->height)))) {
        if (buf != rgb) free(buf);
        free(rgb);
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
    }
    if (!WebPInitDecoderConfig(&cfg)) {
        if (buf != rgb) free(buf);
        free(rgb);
        return CDX_BUG("libwebp version mismatch");
    }
    cfg.options.use_threads = 0;
    cfg.output.colorspace = f.has_alpha ? MODE_RGBA : MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = buf;
    cfg.output.u.RGBA.stride = (int)c->width * ch;
    cfg.output.u.RGBA.size = nbytes;
    vs = WebPDecode(c->data, c->size, &cfg);
    WebPFreeDecBuffer(&cfg.output); /* no-op for external memory */
    if (vs != VP8_STATUS_OK) {
        if (buf != rgb) free(buf);
        free(rgb);
        return webp_fail(c, vs);
    }
    if (buf != rgb) {
        for (size_t i = 0, n = (size_t)c->width * c->height; i < n; i++) {
            rgb[3 * i + 0] = buf[4 * i + 0];
            rgb[3 * i + 1] = buf[4 * i + 1];
            rgb[3 * i + 2] = buf[4 * i + 2];
            c->img.alpha[i] = buf[4 * i + 3];
        }
        free(buf);
    }
    c->img.width = c->width;
    c->img.height = c->height;
    c->img.rgb = rgb;
    return CDX_OK;
}
