/*
 * image.c - decode JPEG and PNG files to 8-bit RGB, pixel for pixel as
 * Pillow's Image.open(path).convert("RGB") does.
 *
 * Why Pillow: the reference CLIP preprocessing (transformers) opens images
 * with Pillow, so any difference in decoding shows up in the embeddings.
 * JPEG is decoded by the same libjpeg(-turbo) Pillow links, with the same
 * (default) settings: islow IDCT, fancy upsampling, libjpeg's colour
 * conversion.  PNG is decoded by libpng here but by Pillow's own decoder
 * there, so the conversions Pillow applies are re-done by hand below
 * (palette lookup with Pillow's grey-ramp default entries, grey scaling,
 * alpha dropped, no gamma).
 *
 * Both decoders read the file from memory (ingest.c reads it and picks
 * the decoder from the magic bytes) and follow the decoder contract of
 * image_impl.h: header-only probes, the EXIF block (JPEG APP1, PNG eXIf)
 * for the ingestion layer, and for JPEG the optional DCT-domain scaling of
 * the fast path (cdx_decode_ctx.min_side).  Without min_side nothing
 * differs from Pillow's decode.
 *
 * Hostile input: dimensions are checked against a pixel limit before any
 * pixel memory is allocated, every size product is overflow-checked, the
 * libraries' error paths longjmp back here (they never print or exit), and
 * truncated data is an error rather than a silently grey-padded image.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "image_impl.h"

/* ------------------------------------------------------------------ */
/* Shared helpers                                                      */
/* ------------------------------------------------------------------ */

cdx_status cdx_image_check_size(const cdx_decode_ctx *c, uint32_t w, uint32_t h)
{
    size_t npix;

    if (w == 0 || h == 0)
        return cdx_fail(CDX_ERR_FORMAT, "%s: image has zero size (%ux%u)", c->path, w, h);
    if (!cdx_mul_ok(w, h, &npix) || npix > c->max_pixels)
        return cdx_fail(CDX_ERR_LIMIT, "%s: image is %ux%u (%.1f megapixels), over the "
                        "%.1f megapixel limit", c->path, w, h, (double)w * h / 1e6,
                        (double)c->max_pixels / 1e6);
    return CDX_OK;
}

cdx_status cdx_image_alloc_rgb(const cdx_decode_ctx *c, uint32_t w, uint32_t h,
                               uint8_t **rgb)
{
    size_t nbytes;
    cdx_status st = cdx_image_check_size(c, w, h);

    if (st) return st;
    if (!cdx_mul_ok((size_t)w * h, 3, &nbytes) || !(*rgb = malloc(nbytes)))
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for a %ux%u image", c->path, w, h);
    return CDX_OK;
}

void cdx_decode_warn(cdx_decode_ctx *c, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    CDX_WARN("%s: %s", c->path, msg);
    if (c->meta && !c->meta->warning[0])
        snprintf(c->meta->warning, sizeof c->meta->warning, "%s", msg);
}

/* Keep a private copy of an EXIF block found in library-owned memory. */
static void keep_exif(cdx_decode_ctx *c, const uint8_t *p, size_t n)
{
    if (c->exif || n == 0) return;
    if (!(c->exif_buf = malloc(n))) {
        cdx_decode_warn(c, "out of memory for the EXIF block (ignored)");
        return;
    }
    memcpy(c->exif_buf, p, n);
    c->exif = c->exif_buf;
    c->exif_len = n;
}

/* ------------------------------------------------------------------ */
/* JPEG (libjpeg API)                                                  */
/* ------------------------------------------------------------------ */

/* libjpeg reports errors through error_exit, which must not return; ours
 * records the message and longjmps back to jpeg_run(). */
typedef struct jpeg_err {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this */
    jmp_buf jb;
    cdx_decode_ctx *ctx;
    const char *path;
    cdx_status st;
    int warned;
    int rows_done;             /* every scanline has been decoded */
} jpeg_err;

/* Everything jpeg_run() touches lives here, not in its locals, so nothing
 * it needs after a longjmp is an indeterminate non-volatile local. */
typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    int created;
    cdx_decode_ctx *ctx;
    uint8_t *rgb;    /* result, w*h*3 */
    uint8_t *row4;   /* CMYK scanline, w*4 */
    uint32_t w, h;   /* output size (DCT-scaled when asked) */
    int cmyk;        /* 4-component file, decoded as CMYK */
} jpeg_job;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    char msg[JMSG_LENGTH_MAX];
    int code = e->pub.msg_code;

    switch (code) {
    case JERR_BAD_PRECISION:
        e->st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: unsupported: %d-bit JPEG", e->path,
                         e->pub.msg_parm.i[0]);
        break;
    case JERR_SOF_UNSUPPORTED: {
        int m = e->pub.msg_parm.i[0];
        /* SOF3/7/11/15 are the lossless processes (DNG previews, medical). */
        if (m == 0xc3 || m == 0xc7 || m == 0xcb || m == 0xcf)
            e->st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: unsupported: lossless JPEG", e->path);
        else
            e->st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: unsupported: JPEG process "
                             "(SOF marker 0x%02x)", e->path, m);
        break;
    }
    case JERR_NOT_COMPILED:
    case JERR_ARITH_NOTIMPL:
    case JERR_CONVERSION_NOTIMPL:
        (*e->pub.format_message)(cinfo, msg);
        e->st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: unsupported: %s", e->path, msg);
        break;
    case JERR_IMAGE_TOO_BIG:
        (*e->pub.format_message)(cinfo, msg);
        e->st = cdx_fail(CDX_ERR_LIMIT, "%s: %s", e->path, msg);
        break;
    case JERR_OUT_OF_MEMORY:
        e->st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory decoding JPEG", e->path);
        break;
    case JERR_FILE_READ:
        e->st = cdx_fail(CDX_ERR_IO, "%s: read error", e->path);
        break;
    case JERR_INPUT_EMPTY:
        e->st = cdx_fail(CDX_ERR_FORMAT, "%s: truncated JPEG data", e->path);
        break;
    default:
        (*e->pub.format_message)(cinfo, msg);
        e->st = cdx_fail(CDX_ERR_FORMAT, "%s: JPEG error: %s", e->path, msg);
        break;
    }
    longjmp(e->jb, 1);
}

/* Warnings (level -1) and trace messages (level >= 0).
 *
 * Running out of data is only a warning to libjpeg, which then pads with
 * grey.  Pillow feeds libjpeg through a suspending source instead: if the
 * data ends before the last scanline it fails ("image file is truncated"),
 * and so do we.  If it ends after the last scanline (EOI missing, or junk
 * where the trailer should be) Pillow simply stops reading and keeps the
 * complete image; so do we, by leaving jpeg_finish_decompress at that
 * point.  (A header-only probe never gets that far.)
 *
 * Other warnings (corrupt entropy data, bad restart markers, extraneous
 * bytes) are what Pillow silently decodes through, so we do too and
 * report the first one. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    char msg[JMSG_LENGTH_MAX];

    if (level >= 0) return;
    if (e->pub.msg_code == JWRN_JPEG_EOF) {
        if (e->rows_done) {
            cdx_decode_warn(e->ctx, "JPEG data ends without an EOI marker (image complete)");
            e->st = CDX_OK;
        } else {
            e->st = cdx_fail(CDX_ERR_FORMAT, "%s: truncated JPEG data", e->path);
        }
        longjmp(e->jb, 1);
    }
    e->pub.num_warnings++;
    if (!e->warned) {
        e->warned = 1;
        (*e->pub.format_message)(cinfo, msg);
        cdx_decode_warn(e->ctx, "JPEG warning: %s", msg);
    }
}

static void jpeg_silent(j_common_ptr cinfo) { (void)cinfo; }

/* Pillow opens every 4-component JPEG as "CMYK;I" (Adobe's inverted
 * polarity), un-inverts, then converts with
 *     rgb = (255-k) - (c*(255-k))/255     (rounded divide by 255).
 * With libjpeg's raw inverted samples C' = 255-c and K' = 255-k this is
 * K' - div255((255-C') * K'). */
static void cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, uint32_t w)
{
    for (uint32_t x = 0; x < w; x++, in += 4, out += 3) {
        unsigned nk = in[3];
        for (int c = 0; c < 3; c++) {
            unsigned t = (255u - in[c]) * nk + 128u;
            out[c] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
        }
    }
}

/* The first APP1 segment holding EXIF ("Exif\0\0" + TIFF header). */
static void jpeg_find_exif(jpeg_job *j)
{
    for (jpeg_saved_marker_ptr m = j->cinfo.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 14 &&
            memcmp(m->data, "Exif\0\0", 6) == 0) {
            keep_exif(j->ctx, m->data, m->data_length);
            return;
        }
    }
}

/* The fast path's DCT scaling.  min_side is the short side the image will
 * be resized to (the model's shortest_edge); the decode picks the smallest
 * of 1/8, 1/4, 1/2 whose short side is still at least DCT_MARGIN times
 * that, else full size.  libjpeg-turbo scales inside the IDCT, so a 1/8
 * decode computes one value per 8x8 block instead of 64.
 *
 * Why a margin of 2 and only powers of two (measured on the shared corpus
 * photos, PSNR of the 224x224 tensors against the exact path; see
 * tests/unit/test_image_fast.c):
 *   - Scaling to just >= min_side leaves the bicubic resize almost
 *     nothing to filter, and the block-wise reduced IDCT (each 8x8 block
 *     on its own) shows: 25-34 dB on a third of the photos, as Pillow's
 *     own draft() mode gives.  With the resize reducing by 2x or more,
 *     every photo stays above 35 dB (the worst real photo at 37 dB).
 *   - libjpeg's 3/8, 5/8, 6/8 and 7/8 IDCTs are markedly worse still
 *     (15-25 dB) and have no SIMD code. */
#define DCT_MARGIN 2

static void jpeg_pick_scale(struct jpeg_decompress_struct *ci, uint32_t min_side)
{
    const uint64_t need = (uint64_t)min_side * DCT_MARGIN;
    for (unsigned m = 1; m <= 8; m *= 2) {
        ci->scale_num = m;
        ci->scale_denom = 8;
        jpeg_calc_output_dimensions(ci);
        uint32_t s = ci->output_width < ci->output_height ? ci->output_width
                                                           : ci->output_height;
        if (s >= need) return;
    }
}

static cdx_status jpeg_run(jpeg_job *j)
{
    struct jpeg_decompress_struct *ci = &j->cinfo;
    cdx_decode_ctx *c = j->ctx;
    cdx_status st;

    if (setjmp(j->err.jb)) return j->err.st;

    jpeg_create_decompress(ci);
    j->created = 1;
    /* libjpeg takes the size as unsigned long; files are read whole and
     * limited by max_file_bytes, far below that on every LP64 system. */
    jpeg_mem_src(ci, c->data, (unsigned long)c->size);
    if (c->want_exif) jpeg_save_markers(ci, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(ci, TRUE);
    if (c->want_exif) jpeg_find_exif(j);
    c->width = ci->image_width;
    c->height = ci->image_height;

    /* Only the output colour space is chosen, as Pillow does; all other
     * decompression parameters keep libjpeg's defaults (JDCT_ISLOW, fancy
     * upsampling, no scaling) so the pixels are Pillow's. */
    switch (ci->num_components) {
    case 1: /* grey: libjpeg replicates it to RGB, like convert("RGB") */
    case 3: /* YCbCr or RGB, as libjpeg detects from JFIF/Adobe/ids */
        ci->out_color_space = JCS_RGB;
        break;
    case 4: /* CMYK or YCCK (libjpeg turns YCCK into CMYK) */
        ci->out_color_space = JCS_CMYK;
        j->cmyk = 1;
        break;
    default:
        return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: unsupported: %d-component JPEG",
                        j->err.path, ci->num_components);
    }

    /* The limit applies to the stored size, also when decoding smaller:
     * the entropy decoding still walks every block. */
    if ((st = cdx_image_check_size(c, ci->image_width, ci->image_height))) return st;
    if (!c->want_pixels) return CDX_OK;

    if (c->min_side > 0) jpeg_pick_scale(ci, c->min_side);
    else jpeg_calc_output_dimensions(ci);
    j->w = ci->output_width;
    j->h = ci->output_height;
    /* Allocated before jpeg_start_decompress, which allocates whole-
     * image coefficient buffers for progressive files. */
    if ((st = cdx_image_alloc_rgb(c, j->w, j->h, &j->rgb))) return st;
    if (j->cmyk && !(j->row4 = malloc((size_t)j->w * 4)))
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", j->err.path);

    jpeg_start_decompress(ci);
    if (ci->output_width != j->w || ci->output_height != j->h ||
        ci->output_components != (j->cmyk ? 4 : 3))
        return CDX_BUG("libjpeg output geometry differs from the header");

    while (ci->output_scanline < ci->output_height) {
        uint8_t *dst = j->rgb + (size_t)ci->output_scanline * j->w * 3;
        JSAMPROW row = j->cmyk ? j->row4 : dst;
        if (jpeg_read_scanlines(ci, &row, 1) != 1)
            return CDX_BUG("jpeg_read_scanlines returned no row");
        if (j->cmyk) cmyk_row_to_rgb(j->row4, dst, j->w);
    }
    /* Reads on to EOI: errors in what follows the last scan still count
     * (as in Pillow), running out of data there does not (see above). */
    j->err.rows_done = 1;
    jpeg_finish_decompress(ci);
    return CDX_OK;
}

cdx_status cdx_decode_jpeg(cdx_decode_ctx *c)
{
    jpeg_job *j = calloc(1, sizeof *j);
    cdx_status st;

    if (!j) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
    j->ctx = c;
    j->err.ctx = c;
    j->err.path = c->path;
    j->cinfo.err = jpeg_std_error(&j->err.pub);
    j->err.pub.error_exit = jpeg_on_error;
    j->err.pub.emit_message = jpeg_on_message;
    j->err.pub.output_message = jpeg_silent;

    st = jpeg_run(j);
    if (j->created) jpeg_destroy_decompress(&j->cinfo);
    if (st == CDX_OK && c->want_pixels) {
        c->img.width = j->w;
        c->img.height = j->h;
        c->img.rgb = j->rgb;
        j->rgb = NULL;
    }
    free(j->rgb);
    free(j->row4);
    free(j);
    return st;
}

/* ------------------------------------------------------------------ */
/* PNG (libpng)                                                        */
/* ------------------------------------------------------------------ */

#define PNG_CHUNK_MAX 8000000
/* No single libpng allocation may exceed the file size by more than this
 * (see png_on_malloc); the largest legitimate one is a row buffer, at
 * most 8 MB for libpng's 1,000,000-pixel width limit. */
#define PNG_ALLOC_SLACK ((size_t)64 << 20)

typedef struct png_job {
    png_structp png;
    png_infop info;
    cdx_decode_ctx *ctx;
    const char *path;
    size_t pos;       /* read position in ctx->data */
    cdx_status st;
    int read_failed;  /* 1 = end of data */
    int warned;
    uint8_t *rgb;
    png_bytep *rows;
    uint32_t w, h;
    uint8_t *alpha;   /* RGBA / LA files: the alpha plane (cdx_image.alpha) */
    uint8_t *packed;  /* their rows as libpng gives them (2 or 4 bytes a pixel) */
    int nearest;      /* Pillow mode P or 1 (cdx_image.nearest) */
    uint8_t *palette; /* mode P: cdx_image.palette */
} png_job;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    const char *crc = strstr(msg, ": CRC error");

    if (j->read_failed)
        j->st = cdx_fail(CDX_ERR_FORMAT, "%s: truncated PNG data", j->path);
    else if (crc) /* libpng says "IDAT: CRC error" */
        j->st = cdx_fail(CDX_ERR_FORMAT, "%s: PNG CRC error in %.*s", j->path,
                         (int)(crc - msg), msg);
    else if (strstr(msg, "out of memory") || strstr(msg, "Out of memory"))
        j->st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory decoding PNG", j->path);
    else
        j->st = cdx_fail(CDX_ERR_FORMAT, "%s: PNG error: %s", j->path, msg);
    png_longjmp(png, 1);
}

/* libpng's warnings (and its "benign errors", which it downgrades to
 * warnings when reading) cover things Pillow also accepts: bad iCCP
 * profiles, palette indexes past the palette, trailing IDAT data. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    if (!j->warned) {
        j->warned = 1;
        cdx_decode_warn(j->ctx, "PNG warning: %s", msg);
    }
}

/* libpng reads an ancillary chunk (iTXt, zTXt, ...) into a buffer of
 * the length the chunk header claims before reading the data, so a
 * 57-byte file claiming a 1 GiB chunk makes it allocate (and touch)
 * 1 GiB.  Nothing legitimate needs much more than the file itself, so
 * larger requests are refused; libpng then skips the chunk (for
 * ancillary chunks) and runs into the end of the data, or reports out of
 * memory. */
static png_voidp png_on_malloc(png_structp png, png_alloc_size_t n)
{
    png_job *j = png_get_mem_ptr(png);
    if (j && n > j->ctx->size + PNG_ALLOC_SLACK) return NULL;
    return malloc(n);
}

static void png_on_free(png_structp png, png_voidp p)
{
    (void)png;
    free(p);
}

static void png_on_read(png_structp png, png_bytep data, size_t len)
{
    png_job *j = png_get_io_ptr(png);
    const cdx_decode_ctx *c = j->ctx;
    if (len > c->size - j->pos) {
        j->read_failed = 1;
        png_error(png, "read failed");
    }
    memcpy(data, c->data + j->pos, len);
    j->pos += len;
}

/* Turn one decoded row (after libpng's transforms: 1 byte per pixel for
 * grey and palette, 3 for colour) into RGB, in place.  The row buffer is
 * w*3 bytes; 1-byte pixels are expanded from the right so no input byte
 * is overwritten before it is read. */
static void png_expand_row(uint8_t *row, uint32_t w, int color_type, int bit_depth,
                           const uint8_t pal[256][3])
{
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        for (uint32_t x = w; x-- > 0;) {
            const uint8_t *p = pal[row[x]];
            row[3 * x + 2] = p[2];
            row[3 * x + 1] = p[1];
            row[3 * x + 0] = p[0];
        }
    } else if (!(color_type & PNG_COLOR_MASK_COLOR)) {
        /* 1/2/4-bit grey arrive unscaled (png_set_packing); Pillow scales
         * them to 0..255 by bit replication: x255, x85, x17. */
        unsigned mul = bit_depth == 1 ? 255 : bit_depth == 2 ? 85 : bit_depth == 4 ? 17 : 1;
        for (uint32_t x = w; x-- > 0;) {
            uint8_t v = (uint8_t)(row[x] * mul);
            row[3 * x + 2] = v;
            row[3 * x + 1] = v;
            row[3 * x + 0] = v;
        }
    }
}

static cdx_status png_run(png_job *j)
{
    cdx_decode_ctx *c = j->ctx;
    png_uint_32 w, h;
    int bit_depth, color_type, interlace;
    uint8_t pal[256][3];

    if (setjmp(png_jmpbuf(j->png))) return j->st;

    png_set_read_fn(j->png, j, png_on_read);
    /* Decompressed text/ICC chunks are capped at libpng's documented
     * default (also see png_on_malloc). */
    png_set_chunk_malloc_max(j->png, PNG_CHUNK_MAX);
    /* Pillow rejects a bad CRC on any chunk; libpng by default only on
     * critical ones (ancillary ones are warned about and dropped). */
    png_set_crc_action(j->png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(j->png, j->info);
    png_get_IHDR(j->png, j->info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
    if (w > UINT32_MAX || h > UINT32_MAX) /* libpng caps at 2^31-1 already */
        return cdx_fail(CDX_ERR_LIMIT, "%s: PNG dimensions too large", j->path);
    j->w = c->width = (uint32_t)w;
    j->h = c->height = (uint32_t)h;
    if (c->want_exif) {
        /* eXIf before IDAT (where the PNG 1.5 extensions put it). */
        png_bytep exif = NULL;
        png_uint_32 n = 0;
        if ((png_get_eXIf_1(j->png, j->info, &n, &exif) & PNG_INFO_eXIf) && exif && n)
            keep_exif(c, exif, n);
    }
    {
        cdx_status st = cdx_image_check_size(c, j->w, j->h);
        if (st || !c->want_pixels) return st;
    }

    /* Palette: Pillow's palette starts as a grey ramp (entry i = (i,i,i))
     * and PLTE overwrites the first entries, so an index past the end of
     * PLTE shows as grey i, not black as libpng's own expansion gives.
     * That is why palettes are expanded here and not by libpng. */
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int n = 0;
        if (png_get_PLTE(j->png, j->info, &plte, &n) & PNG_INFO_PLTE)
            for (int i = 0; i < n && i < 256; i++) {
                pal[i][0] = plte[i].red;
                pal[i][1] = plte[i].green;
                pal[i][2] = plte[i].blue;
            }
    }

    /* Transforms that never widen a pixel beyond 3 bytes, so every row can
     * be decoded straight into its final place in the RGB buffer:
     *   16-bit -> high byte (Pillow's RGB;16B/RGBA;16B/LA;16B unpackers do
     *   the same; 16-bit grey is mode "I" there, see the header),
     *   alpha dropped, not composited (convert("RGB") drops it),
     *   sub-byte samples unpacked one per byte.
     * Not requested, deliberately: gamma (Pillow ignores gAMA), tRNS
     * expansion, sBIT shifts. */
    if (bit_depth == 16) png_set_strip_16(j->png);
    if (bit_depth < 8) png_set_packing(j->png);
    (void)png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);
    /* Pillow's mode, for a resize before convert("RGB") (OpenCLIP): P and
     * 1 resize NEAREST; RGBA and LA premultiplied, so alpha is kept. */
    j->nearest = color_type == PNG_COLOR_TYPE_PALETTE ||
                 (color_type == PNG_COLOR_TYPE_GRAY && bit_depth == 1);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        if (!(j->palette = malloc(sizeof pal)))
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", j->path);
        memcpy(j->palette, pal, sizeof pal);
    }
    if (color_type & PNG_COLOR_MASK_ALPHA) {
        const int ch = color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 4;
        size_t n, rb = (size_t)j->w * (size_t)ch;
        cdx_status st = cdx_image_alloc_rgb(c, j->w, j->h, &j->rgb);
        if (st) return st;
        if (png_get_rowbytes(j->png, j->info) != rb)
            return CDX_BUG("PNG alpha row size after transforms");
        if (!cdx_mul_ok(rb, j->h, &n) || !(j->packed = malloc(n)) ||
            !(j->alpha = malloc((size_t)j->w * j->h)) ||
            !(j->rows = malloc((size_t)j->h * sizeof *j->rows)))
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", j->path);
        for (uint32_t y = 0; y < j->h; y++) j->rows[y] = j->packed + y * rb;
        png_read_image(j->png, j->rows);
        for (size_t i = 0, np = (size_t)j->w * j->h; i < np; i++) {
            const uint8_t *px = j->packed + i * (size_t)ch;
            uint8_t *o = j->rgb + 3 * i;
            o[0] = px[0];
            o[1] = ch == 4 ? px[1] : px[0];
            o[2] = ch == 4 ? px[2] : px[0];
            j->alpha[i] = px[ch - 1];
        }
        png_read_end(j->png, NULL);
        return CDX_OK;
    }
    if (png_get_rowbytes(j->png, j->info) > (size_t)j->w * 3)
        return CDX_BUG("PNG row wider than 3 bytes per pixel after transforms");

    {
        cdx_status st = cdx_image_alloc_rgb(c, j->w, j->h, &j->rgb);
        if (st) return st;
    }
    const size_t stride = (size_t)j->w * 3;
    if (interlace == PNG_INTERLACE_NONE) {
        /* Row by row: expand while the row is still in cache. */
        for (uint32_t y = 0; y < j->h; y++) {
            uint8_t *row = j->rgb + y * stride;
            png_read_row(j->png, row, NULL);
            png_expand_row(row, j->w, color_type, bit_depth, pal);
        }
    } else {
        /* Adam7 fills each row over 7 passes; libpng needs all rows. */
        if (!(j->rows = malloc((size_t)j->h * sizeof *j->rows)))
            return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", j->path);
        for (uint32_t y = 0; y < j->h; y++) j->rows[y] = j->rgb + y * stride;
        png_read_image(j->png, j->rows);
        for (uint32_t y = 0; y < j->h; y++)
            png_expand_row(j->rows[y], j->w, color_type, bit_depth, pal);
    }
    /* Read to IEND: catches truncation and CRC errors after the pixels. */
    png_read_end(j->png, NULL);
    return CDX_OK;
}

cdx_status cdx_decode_png(cdx_decode_ctx *c)
{
    png_job *j = calloc(1, sizeof *j);
    cdx_status st;

    if (!j) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
    j->ctx = c;
    j->path = c->path;
    j->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, j, png_on_error, png_on_warning,
                                      j, png_on_malloc, png_on_free);
    if (j->png) j->info = png_create_info_struct(j->png);
    if (!j->png || !j->info) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
    } else {
        st = png_run(j);
    }
    if (j->png) png_destroy_read_struct(&j->png, j->info ? &j->info : NULL, NULL);
    if (st == CDX_OK && c->want_pixels) {
        c->img.width = j->w;
        c->img.height = j->h;
        c->img.rgb = j->rgb;
        c->img.alpha = j->alpha;
        c->img.nearest = j->nearest;
        c->img.palette = j->palette;
        j->rgb = NULL;
        j->alpha = NULL;
        j->palette = NULL;
    }
    free(j->rgb);
    free(j->alpha);
    free(j->palette);
    free(j->packed);
    free(j->rows);
    free(j);
    return st;
}

void cdx_image_release(cdx_image *img)
{
    if (!img) return;
    free(img->rgb);
    free(img->alpha);
    free(img->palette);
    memset(img, 0, sizeof *img);
}
