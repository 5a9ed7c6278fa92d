/*
 * image_tiff.c - TIFF (first page) with libtiff.
 *
 * Pixels go through libtiff's RGBA image interface, which handles every
 * photometric interpretation, bit depth, planar layout, strips and tiles
 * and the common compressions; alpha is dropped afterwards.
 *
 * Two of its conversions differ from Pillow's convert("RGB"), and for the
 * common contiguous RGB layouts they are replaced with our own "put
 * routines" (libtiff's documented hook for that): an unassociated alpha
 * channel would be multiplied into the colour (Pillow drops it and keeps
 * the colour), and 16-bit samples would be rounded to 8 bits (we keep the
 * high byte, as for PNG).  Remaining differences: 16-bit grey is rounded
 * (Pillow clips it), and planar-separate files with unassociated alpha
 * keep libtiff's premultiplied colour.
 *
 * That interface would also apply the Orientation tag, but only half of
 * it (vertical flips; the transposing values 5..8 are treated as 1 and
 * 4).  So it is told to keep the stored row order, and the tag is applied
 * by ingest.c like an EXIF Orientation, all 8 values.
 *
 * Metadata is read with libtiff as well (Make, Model, Orientation in the
 * first IFD; DateTimeOriginal and its offset in the EXIF IFD; the GPS
 * IFD): the EXIF parser would only see the first 64 KiB of the file.
 *
 * Threads and printing: libtiff's classic error and warning handlers are
 * process-global and print to stderr.  Each TIFF here is opened with
 * per-handle handlers (TIFFOpenOptions, libtiff >= 4.5) that record into
 * this decode's own state and stop propagation, so concurrent decodes on
 * worker threads never share state; the global handlers are also set to
 * NULL once, so nothing reaches stderr even on paths that bypass the
 * per-handle ones.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

#include "image_impl.h"

/* Largest single allocation libtiff may make (strip buffers, tables);
 * our own raster is allocated by us after the pixel limit check. */
#define TIFF_MAX_SINGLE_ALLOC ((tmsize_t)512 << 20)

typedef struct tiff_job {
    cdx_decode_ctx *c;
    size_t pos;
    char err[256];   /* libtiff's first error message */
    int nwarn;
} tiff_job;

static pthread_once_t tiff_once = PTHREAD_ONCE_INIT;
static void tiff_setup(void)
{
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
}

static int on_tiff_error(TIFF *tif, void *user, const char *module, const char *fmt,
                         va_list ap)
{
    tiff_job *j = user;
    (void)tif;
    if (j && !j->err[0]) {
        char msg[200];
        const char *p = msg;
        size_t pl = strlen(j->c->path);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        vsnprintf(msg, sizeof msg, fmt, ap);
#pragma GCC diagnostic pop
        /* libtiff names the file itself; we already do */
        if (strncmp(p, j->c->path, pl) == 0 && p[pl] == ':') p += pl + 1;
        while (*p == ' ') p++;
        if (module && module[0] && strcmp(module, j->c->path) != 0)
            snprintf(j->err, sizeof j->err, "%s: %s", module, p);
        else
            snprintf(j->err, sizeof j->err, "%s", p);
    }
    return 1; /* handled: the global handler is not called */
}

/* libtiff warns about every private tag it does not know, which camera
 * TIFFs are full of: debug level only, never the image's warning. */
static int on_tiff_warning(TIFF *tif, void *user, const char *module, const char *fmt,
                           va_list ap)
{
    tiff_job *j = user;
    (void)tif;
    if (j && j->nwarn++ == 0 && cdx_log_min_level_ <= CDX_LOG_DEBUG) {
        char msg[200];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        vsnprintf(msg, sizeof msg, fmt, ap);
#pragma GCC diagnostic pop
        CDX_DEBUG("%s: TIFF warning: %s: %s", j->c->path, module ? module : "", msg);
    }
    return 1;
}

/* ---- memory I/O ---- */

static tmsize_t tiff_read(thandle_t h, void *buf, tmsize_t n)
{
    tiff_job *j = h;
    size_t left = j->c->size - j->pos;
    size_t k = n < 0 ? 0 : (size_t)n;
    if (k > left) k = left;
    memcpy(buf, j->c->data + j->pos, k);
    j->pos += k;
    return (tmsize_t)k;
}

static tmsize_t tiff_write(thandle_t h, void *buf, tmsize_t n)
{
    (void)h;
    (void)buf;
    (void)n;
    return -1;
}

static toff_t tiff_seek(thandle_t h, toff_t off, int whence)
{
    tiff_job *j = h;
    uint64_t base = whence == SEEK_CUR ? j->pos : whence == SEEK_END ? j->c->size : 0;
    /* toff_t is unsigned: a "negative" offset wraps, and then so does
     * the sum, which is what SEEK_CUR/SEEK_END with a negative step mean. */
    uint64_t to = base + off;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return (toff_t)-1;
    if (to > j->c->size) return (toff_t)-1;
    j->pos = (size_t)to;
    return to;
}

static int tiff_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t tiff_size(thandle_t h)
{
    return ((tiff_job *)h)->c->size;
}

static int tiff_map(thandle_t h, void **base, toff_t *size)
{
    (void)h;
    (void)base;
    (void)size;
    return 0; /* not mapped: libtiff reads into its own buffers */
}

static void tiff_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h;
    (void)base;
    (void)size;
}

/* ---- metadata ---- */

static int get_text(TIFF *tif, uint32_t tag, char *dst, size_t dstsz)
{
    char *s = NULL;
    if (!TIFFGetField(tif, tag, &s) || !s) return 0;
    cdx_exif_copy_ascii(dst, dstsz, s, strlen(s));
    return dst[0] != '\0';
}

/* A GPS (deg, min, sec) triple, stored by libtiff as float or double
 * depending on its version: ask the field how wide its values are. */
static int get_gps_coord(TIFF *tif, uint32_t tag, double *out)
{
    const TIFFField *f = TIFFFindField(tif, tag, TIFF_ANY);
    void *p = NULL;
    double v[3];
    if (!f || TIFFFieldSetGetCountSize(f) != 0 || !TIFFGetField(tif, tag, &p) || !p) return -1;
    switch (TIFFFieldSetGetSize(f)) {
    case 4:
        for (int i = 0; i < 3; i++) v[i] = ((const float *)p)[i];
        break;
    case 8:
        for (int i = 0; i < 3; i++) v[i] = ((const double *)p)[i];
        break;
    default:
        return -1;
    }
    for (int i = 0; i < 3; i++)
        if (!(v[i] >= 0 && v[i] < 1e6)) return -1;
    *out = v[0] + v[1] / 60.0 + v[2] / 3600.0;
    return 0;
}

static void tiff_meta(tiff_job *j, TIFF *tif)
{
    cdx_image_meta *m = j->c->meta;
    uint64_t exif_off = 0, gps_off = 0;
    char buf[64];

    get_text(tif, TIFFTAG_MAKE, m->make, sizeof m->make);
    get_text(tif, TIFFTAG_MODEL, m->model, sizeof m->model);
    if (!TIFFGetField(tif, TIFFTAG_EXIFIFD, &exif_off)) exif_off = 0;
    if (!TIFFGetField(tif, TIFFTAG_GPSIFD, &gps_off)) gps_off = 0;

    if (exif_off && TIFFReadEXIFDirectory(tif, exif_off)) {
        int64_t when;
        int off;
        if ((get_text(tif, EXIFTAG_DATETIMEORIGINAL, buf, sizeof buf) ||
             get_text(tif, EXIFTAG_DATETIMEDIGITIZED, buf, sizeof buf))) {
            if (cdx_exif_parse_datetime(buf, strlen(buf), &when) == 0) {
                m->taken_at = when;
                if (get_text(tif, EXIFTAG_OFFSETTIMEORIGINAL, buf, sizeof buf) &&
                    cdx_exif_parse_offset(buf, strlen(buf), &off) == 0) {
                    m->has_tz_offset = 1;
                    m->tz_offset_min = off;
                    m->taken_at -= (int64_t)off * 60;
                }
            } else {
                cdx_decode_warn(j->c, "malformed EXIF date '%s' (ignored)", buf);
            }
        }
    }
    if (gps_off && TIFFReadGPSDirectory(tif, gps_off)) {
        double lat, lon;
        char ref[8];
        if (get_gps_coord(tif, GPSTAG_LATITUDE, &lat) == 0 &&
            get_gps_coord(tif, GPSTAG_LONGITUDE, &lon) == 0 && lat <= 90 && lon <= 180) {
            if (get_text(tif, GPSTAG_LATITUDEREF, ref, sizeof ref) && (ref[0] | 0x20) == 's')
                lat = -lat;
            if (get_text(tif, GPSTAG_LONGITUDEREF, ref, sizeof ref) && (ref[0] | 0x20) == 'w')
                lon = -lon;
            m->has_gps = 1;
            m->gps_lat = lat;
            m->gps_lon = lon;
        }
    }
}

/* ---- pixels ---- */

/* Put routines for contiguous RGB(A): one strip or tile of w x h pixels
 * from pp (samplesperpixel samples each, fromskew pixels to skip after
 * each row) into the ABGR raster at cp (toskew entries after each row).
 * Colour is taken as stored; put_rgb8 (unassociated alpha) keeps alpha
 * in the raster's A for cdx_image.alpha, put_rgb16 ignores it. */
static void put_rgb8(TIFFRGBAImage *img, uint32_t *cp, uint32_t x, uint32_t y, uint32_t w,
                     uint32_t h, int32_t fromskew, int32_t toskew, unsigned char *pp)
{
    const int spp = img->samplesperpixel;
    (void)x;
    (void)y;
    for (; h > 0; h--) {
        for (uint32_t i = 0; i < w; i++, pp += spp)
            *cp++ = (uint32_t)pp[0] | (uint32_t)pp[1] << 8 | (uint32_t)pp[2] << 16 |
                    (uint32_t)(spp > 3 ? pp[3] : 0xff) << 24;
        cp += toskew;
        pp += (ptrdiff_t)fromskew * spp;
    }
}

static void put_rgb16(TIFFRGBAImage *img, uint32_t *cp, uint32_t x, uint32_t y, uint32_t w,
                      uint32_t h, int32_t fromskew, int32_t toskew, unsigned char *pp)
{
    const int spp = img->samplesperpixel;
    const uint16_t *wp = (const uint16_t *)(void *)pp; /* native order after libtiff's swab */
    (void)x;
    (void)y;
    for (; h > 0; h--) {
        for (uint32_t i = 0; i < w; i++, wp += spp)
            *cp++ = (uint32_t)(wp[0] >> 8) | (uint32_t)(wp[1] >> 8) << 8 |
                    (uint32_t)(wp[2] >> 8) << 16 | 0xff000000u;
        cp += toskew;
        wp += (ptrdiff_t)fromskew * spp;
    }
}

static void pick_put(TIFFRGBAImage *ri)
{
    if (!ri->isContig || ri->photometric != PHOTOMETRIC_RGB || ri->samplesperpixel < 3) return;
    if (ri->bitspersample == 8 && ri->alpha == EXTRASAMPLE_UNASSALPHA)
        ri->put.contig = put_rgb8;
    else if (ri->bitspersample == 16)
        ri->put.contig = put_rgb16;
}

static cdx_status tiff_pixels(tiff_job *j, TIFF *tif)
{
    cdx_decode_ctx *c = j->c;
    cdx_status st;
    TIFFRGBAImage ri;
    char emsg[1024] = "";
    uint32_t *raster = NULL;
    uint8_t *rgb = NULL;
    size_t n = (size_t)c->width * c->height;

    if (!TIFFRGBAImageOK(tif, emsg))
        return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: unsupported: TIFF layout (%s)", c->path,
                        emsg[0] ? emsg : "unknown");
    if (!TIFFRGBAImageBegin(&ri, tif, 1, emsg))
        return cdx_fail(CDX_ERR_FORMAT, "%s: TIFF error: %s", c->path,
                        emsg[0] ? emsg : j->err[0] ? j->err : "cannot read the image");
    /* Keep the stored row order (see the top of the file). */
    ri.req_orientation = ri.orientation;
    pick_put(&ri);
    if ((st = cdx_image_alloc_rgb(c, c->width, c->height, &rgb))) goto cleanup;
    if (n > SIZE_MAX / 4 || !(raster = malloc(n * 4))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory for a %ux%u image", c->path,
                      c->width, c->height);
        goto cleanup;
    }
    if (!TIFFRGBAImageGet(&ri, raster, c->width, c->height)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: TIFF error: %s", c->path,
                      j->err[0] ? j->err : "cannot decode the image data");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t v = raster[i];
        rgb[3 * i + 0] = (uint8_t)TIFFGetR(v);
        rgb[3 * i + 1] = (uint8_t)TIFFGetG(v);
        rgb[3 * i + 2] = (uint8_t)TIFFGetB(v);
    }
    c->img.width = c->width;
    c->img.height = c->height;
    c->img.rgb = rgb;
    rgb = NULL;
    if (ri.put.contig == put_rgb8 && ri.samplesperpixel > 3) {
        /* Pillow's mode RGBA: the alpha plane, for OpenCLIP's
         * premultiplied resize */
        if (!(c->img.alpha = malloc(n))) {
            st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) c->img.alpha[i] = (uint8_t)TIFFGetA(raster[i]);
    }
    if (ri.photometric == PHOTOMETRIC_PALETTE && ri.redcmap && ri.bitspersample <= 8) {
        /* mode P's palette (cdx_image.palette): libtiff has scaled the
         * colour map to 8 bits in place, as Pillow reads it (>> 8) */
        const int np = 1 << ri.bitspersample;
        if (!(c->img.palette = malloc(768))) {
            st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
            goto cleanup;
        }
        for (int i = 0; i < 256; i++) {
            uint8_t *e = c->img.palette + 3 * i;
            e[0] = e[1] = e[2] = (uint8_t)i;
            if (i < np) {
                e[0] = (uint8_t)ri.redcmap[i];
                e[1] = (uint8_t)ri.greencmap[i];
                e[2] = (uint8_t)ri.bluecmap[i];
            }
        }
    }
    /* Pillow's modes P (palette) and 1 (bilevel) resize NEAREST
     * (cdx_image.nearest, OpenCLIP's resize before convert("RGB")) */
    c->img.nearest = ri.photometric == PHOTOMETRIC_PALETTE ||
                     (ri.bitspersample == 1 && ri.samplesperpixel == 1 &&
                      (ri.photometric == PHOTOMETRIC_MINISBLACK ||
                       ri.photometric == PHOTOMETRIC_MINISWHITE));
cleanup:
    TIFFRGBAImageEnd(&ri);
    free(raster);
    free(rgb);
    return st;
}

cdx_status cdx_decode_tiff(cdx_decode_ctx *c)
{
    cdx_status st = CDX_OK;
    tiff_job j = {.c = c};
    TIFFOpenOptions *o;
    TIFF *tif;
    uint32_t w = 0, h = 0;
    uint16_t orient = 0;

    pthread_once(&tiff_once, tiff_setup);
    if (!(o = TIFFOpenOptionsAlloc())) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", c->path);
    TIFFOpenOptionsSetErrorHandlerExtR(o, on_tiff_error, &j);
    TIFFOpenOptionsSetWarningHandlerExtR(o, on_tiff_warning, &j);
    TIFFOpenOptionsSetMaxSingleMemAlloc(o, TIFF_MAX_SINGLE_ALLOC);
    /* "m": no memory mapping; our procs serve reads from the buffer. */
    tif = TIFFClientOpenExt(c->path, "rm", &j, tiff_read, tiff_write, tiff_seek, tiff_close,
                            tiff_size, tiff_map, tiff_unmap, o);
    TIFFOpenOptionsFree(o);
    if (!tif)
        return cdx_fail(CDX_ERR_FORMAT, "%s: TIFF error: %s", c->path,
                        j.err[0] ? j.err : "cannot read the header");

    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: TIFF error: no image size", c->path);
        goto cleanup;
    }
    c->width = w;
    c->height = h;
    if ((st = cdx_image_check_size(c, w, h))) goto cleanup;
    if (TIFFGetField(tif, TIFFTAG_ORIENTATION, &orient)) c->orientation = orient ? orient : 0;
    if (c->want_pixels && (st = tiff_pixels(&j, tif))) goto cleanup;
    /* Last: reading the EXIF/GPS directories leaves the image IFD. */
    if (c->want_exif) tiff_meta(&j, tif);
cleanup:
    TIFFClose(tif);
    return st;
}
