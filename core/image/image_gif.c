/*
 * image_gif.c - the first frame of a GIF, with giflib, as Pillow shows it.
 *
 * Pillow's first frame (PIL 9.4, GifImagePlugin): the canvas is the
 * logical screen, enlarged to hold the frame if the frame sticks out;
 * it starts filled with the frame's transparent index when the frame has
 * one (Graphic Control Extension), else index 0; the frame's indices are
 * written into their rectangle (transparent ones too); the palette is the
 * local colour table, else the global one, else none (grey levels).
 * convert("RGB") then looks every index up.  Pillow's palette starts as
 * a grey ramp (entry i = (i,i,i)) that the colour table overwrites, so an
 * index past the end of a short table shows as grey i.
 *
 * Known difference: giflib refuses a frame whose LZW code table fills up
 * without a clear code (legal, rare: gif-test-suite max-codes.gif), which
 * Pillow decodes.
 *
 * Only the records up to the first image are read: the rest of an
 * animation is never touched.  giflib reads through our memory callback
 * and reports errors by code; it never prints.
 */
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

#include "image_impl.h"

typedef struct gif_src {
    const cdx_decode_ctx *c;
    size_t pos;
} gif_src;

static int gif_read(GifFileType *g, GifByteType *buf, int len)
{
    gif_src *s = g->UserData;
    size_t left = s->c->size - s->pos, n = len < 0 ? 0 : (size_t)len;
    if (n > left) n = left;
    memcpy(buf, s->c->data + s->pos, n);
    s->pos += n;
    return (int)n;
}

static cdx_status gif_fail(const cdx_decode_ctx *c, int code)
{
    const char *msg;
    switch (code) {
    case D_GIF_ERR_READ_FAILED:
        return cdx_fail(CDX_ERR_FORMAT, "%s: truncated GIF data", c->path);
    case D_GIF_ERR_NOT_ENOUGH_MEM:
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory decoding GIF", c->path);
    default:
        msg = GifErrorString(code);
        return cdx_fail(CDX_ERR_FORMAT, "%s: GIF error: %s", c->path,
                        msg ? msg : "unknown error");
    }
}

cdx_status cdx_decode_gif(cdx_decode_ctx *c)
{
    cdx_status st = CDX_OK;
    gif_src src = {c, 0};
    GifFileType *g;
    GifRecordType rt;
    int err = 0, transparent = -1;
    uint8_t *idx = NULL, *rgb = NULL;

    if (!(g = DGifOpen(&src, gif_read, &err))) return gif_fail(c, err);

    /* Extensions up to the first image: remember the transparent index. */
    for (;;) {
        if (DGifGetRecordType(g, &rt) == GIF_ERROR) goto giferr;
        if (rt == IMAGE_DESC_RECORD_TYPE) break;
        if (rt == TERMINATE_RECORD_TYPE) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: GIF has no image", c->path);
            goto cleanup;
        }
        if (rt == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext = NULL;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) goto giferr;
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4)
                transparent = (ext[1] & 1) ? ext[4] : -1;
            while (ext) {
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) goto giferr;
            }
        }
    }
    if (DGifGetImageDesc(g) == GIF_ERROR) goto giferr;

    const GifImageDesc *d = &g->Image;
    /* GifWord is int; the format stores 16-bit values, so these fit. */
    uint32_t fx0 = (uint32_t)d->Left, fy0 = (uint32_t)d->Top;
    uint32_t fw = (uint32_t)d->Width, fh = (uint32_t)d->Height;
    uint32_t cw = (uint32_t)g->SWidth, ch = (uint32_t)g->SHeight;
    if (fx0 + fw > cw) cw = fx0 + fw;
    if (fy0 + fh > ch) ch = fy0 + fh;
    c->width = cw;
    c->height = ch;
    if ((st = cdx_image_check_size(c, cw, ch))) goto cleanup;
    if (!c->want_pixels) goto cleanup;

    /* The palette: the grey ramp, overwritten by the colour table. */
    uint8_t pal[256][3];
    const ColorMapObject *cm = d->ColorMap ? d->ColorMap : g->SColorMap;
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    if (cm && cm->Colors)
        for (int i = 0; i < cm->ColorCount && i < 256; i++) {
            pal[i][0] = cm->Colors[i].Red;
            pal[i][1] = cm->Colors[i].Green;
            pal[i][2] = cm->Colors[i].Blue;
        }

    if ((st = cdx_image_alloc_rgb(c, cw, ch, &rgb))) goto cleanup;
    if (!(idx = malloc((size_t)cw * ch))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
        goto cleanup;
    }
    memset(idx, transparent >= 0 ? transparent : 0, (size_t)cw * ch);
    if (fw > 0 && fh > 0) {
        /* Interlaced rows come in 4 passes: every 8th from 0, every 8th
         * from 4, every 4th from 2, every 2nd from 1. */
        static const uint32_t start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        int passes = d->Interlace ? 4 : 1;
        for (int p = 0; p < passes; p++) {
            uint32_t y0 = d->Interlace ? start[p] : 0, dy = d->Interlace ? step[p] : 1;
            for (uint32_t y = y0; y < fh; y += dy) {
                GifPixelType *row = idx + (size_t)(fy0 + y) * cw + fx0;
                if (DGifGetLine(g, row, (int)fw) == GIF_ERROR) goto giferr;
            }
        }
    }
    for (size_t i = 0, n = (size_t)cw * ch; i < n; i++) {
        const uint8_t *p = pal[idx[i]];
        rgb[3 * i + 0] = p[0];
        rgb[3 * i + 1] = p[1];
        rgb[3 * i + 2] = p[2];
    }
    c->img.width = cw;
    c->img.height = ch;
    c->img.rgb = rgb;
    rgb = NULL;
    /* Pillow opens the first frame as mode P when there is a colour
     * table (L otherwise): P resizes NEAREST (cdx_image.nearest) */
    c->img.nearest = cm != NULL;
    if (cm && (c->img.palette = malloc(sizeof pal))) memcpy(c->img.palette, pal, sizeof pal);
    if (cm && !c->img.palette) st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
    goto cleanup;

giferr:
    st = gif_fail(c, g->Error);
cleanup:
    free(idx);
    free(rgb);
    DGifCloseFile(g, &err);
    return st;
}
