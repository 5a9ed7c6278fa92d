/*
 * ingest.c - the image layer's entry points: read a file (limits first),
 * recognise the format from its magic bytes, run the decoder, read the
 * EXIF block, make the pixels upright.
 *
 *   cdx_image_load        exact path: full size, stored orientation, the
 *                         pixels Pillow's convert("RGB") gives
 *   cdx_image_decode      ingestion: metadata, optional orientation and
 *                         DCT-scaled JPEG decoding, or metadata alone
 *   cdx_image_decode_mem  the same from a buffer (fuzzing, callers that
 *                         already hold the bytes)
 *
 * (The model's input from a file, decode and preprocessing together, is
 * cdx_model_image_input in core/engine/model_input.c.)
 *
 * A file is read whole into memory before anything is decoded: every
 * library is then driven through its memory interface, a file that grows
 * while we read it cannot make a decoder read past what we hold, and the
 * size limit is applied before a single byte is read.  (mmap would save a
 * copy but turns a file truncated under us into SIGBUS.)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_impl.h"

/* ------------------------------------------------------------------ */
/* Format detection                                                    */
/* ------------------------------------------------------------------ */

typedef struct image_format {
    const char *name;   /* cdx_image_meta.format */
    const char *label;  /* in messages */
    cdx_decoder_fn decode;
} image_format;

static const image_format fmt_jpeg = {"jpeg", "JPEG", cdx_decode_jpeg};
static const image_format fmt_png = {"png", "PNG", cdx_decode_png};
static const image_format fmt_gif = {"gif", "GIF", cdx_decode_gif};
static const image_format fmt_webp = {"webp", "WebP", cdx_decode_webp};
static const image_format fmt_tiff = {"tiff", "TIFF", cdx_decode_tiff};
static const image_format fmt_heif = {"heif", "HEIF", cdx_decode_heif};
static const image_format fmt_avif = {"avif", "AVIF", cdx_decode_heif};

#define UNKNOWN_FORMAT "not a supported image file (JPEG, PNG, WebP, HEIF/AVIF, TIFF or GIF)"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ISO-BMFF "ftyp" box: the major brand and the compatible brands decide
 * between HEIF (HEVC-coded or generic image file), AVIF and neither. */
static const image_format *detect_bmff(const uint8_t *d, size_t n)
{
    static const char hevc_brands[][5] = {"heic", "heix", "hevc", "hevx",
                                          "heim", "heis", "hevm", "hevs"};
    static const char generic_brands[][5] = {"mif1", "msf1", "mif2"};
    int hevc = 0, generic = 0, avif = 0;
    size_t box;

    if (n < 16 || memcmp(d + 4, "ftyp", 4) != 0) return NULL;
    box = be32(d);
    if (box < 16 || box > n) box = n < 4096 ? n : 4096;
    /* major brand at 8, minor version at 12, compatible brands from 16 */
    for (size_t off = 8; off + 4 <= box; off += off == 8 ? 8 : 4) {
        const uint8_t *b = d + off;
        for (size_t i = 0; i < sizeof hevc_brands / sizeof hevc_brands[0]; i++)
            if (memcmp(b, hevc_brands[i], 4) == 0) hevc = 1;
        for (size_t i = 0; i < sizeof generic_brands / sizeof generic_brands[0]; i++)
            if (memcmp(b, generic_brands[i], 4) == 0) generic = 1;
        if (memcmp(b, "avif", 4) == 0 || memcmp(b, "avis", 4) == 0) avif = 1;
    }
    if (hevc) return &fmt_heif;
    if (avif) return &fmt_avif;
    if (generic) return &fmt_heif; /* a generic image file: libheif decides */
    return NULL;
}

/* The decoder for the first bytes of a file, or NULL.  *truncated is set
 * when the whole file is a proper prefix of a signature. */
static const image_format *detect(const uint8_t *d, size_t n, const image_format **truncated)
{
    static const struct {
        const char *magic;
        size_t len;
        const image_format *fmt;
    } sig[] = {
        /* SOI and the 0xFF of the next marker, as Pillow requires (libjpeg
         * alone would skip junk after SOI and decode fuzz files Pillow does
         * not recognise). */
        {"\xff\xd8\xff", 3, &fmt_jpeg},
        {"\x89PNG\r\n\x1a\n", 8, &fmt_png},
        {"GIF87a", 6, &fmt_gif},
        {"GIF89a", 6, &fmt_gif},
        {"II*\0", 4, &fmt_tiff},
        {"MM\0*", 4, &fmt_tiff},
        {"II+\0", 4, &fmt_tiff}, /* BigTIFF */
        {"MM\0+", 4, &fmt_tiff},
    };
    *truncated = NULL;
    for (size_t i = 0; i < sizeof sig / sizeof sig[0]; i++) {
        if (n >= sig[i].len && memcmp(d, sig[i].magic, sig[i].len) == 0) return sig[i].fmt;
        if (n < sig[i].len && n > 1 && memcmp(d, sig[i].magic, n) == 0) {
            *truncated = sig[i].fmt;
            return NULL;
        }
    }
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return &fmt_webp;
    return detect_bmff(d, n);
}

/* ------------------------------------------------------------------ */
/* Reading the file                                                    */
/* ------------------------------------------------------------------ */

static cdx_status read_whole(const char *path, uint64_t max_bytes, uint8_t **buf, size_t *len)
{
    cdx_status st = CDX_OK;
    struct stat sb;
    uint8_t *p = NULL;
    size_t got = 0, want;
    int fd;

    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer forever.  It has no effect on regular files. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = cdx_fail(CDX_ERR_IO, "%s: not a regular file", path);
        goto cleanup;
    }
    if (sb.st_size == 0) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: empty file", path);
        goto cleanup;
    }
    if ((uint64_t)sb.st_size > max_bytes || (uint64_t)sb.st_size > SIZE_MAX) {
        st = cdx_fail(CDX_ERR_LIMIT, "%s: file is %lld bytes, over the %llu byte limit", path,
                      (long long)sb.st_size, (unsigned long long)max_bytes);
        goto cleanup;
    }
    want = (size_t)sb.st_size;
    if (!(p = malloc(want))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, want);
        goto cleanup;
    }
    /* Up to the size fstat saw: a file still being written may grow (the
     * rest is not read) or shrink (we decode what is there). */
    while (got < want) {
        ssize_t r = read(fd, p + got, want - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = cdx_fail(CDX_ERR_IO, "%s: read error: %s", path, strerror(errno));
            goto cleanup;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got == 0) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: empty file", path);
        goto cleanup;
    }
    *buf = p;
    *len = got;
    p = NULL;
cleanup:
    free(p);
    close(fd);
    return st;
}

/* ------------------------------------------------------------------ */
/* Decoding                                                            */
/* ------------------------------------------------------------------ */

static uint64_t max_file_bytes(const cdx_decode_opts *o)
{
    return o && o->max_file_bytes ? o->max_file_bytes : CDX_IMAGE_MAX_FILE_BYTES_DEFAULT;
}

/* The one decode path behind all entry points.  img/meta may be NULL. */
static cdx_status decode(const uint8_t *data, size_t size, const char *name,
                         const cdx_decode_opts *opts, cdx_image *img, cdx_image_meta *meta)
{
    static const cdx_decode_opts defaults = {0};
    const image_format *fmt, *trunc;
    cdx_decode_ctx c;
    cdx_image_meta m;
    cdx_status st;
    int raw = 0;

    if (!opts) opts = &defaults;
    if (size == 0) return cdx_fail(CDX_ERR_FORMAT, "%s: empty file", name);
    if (size > max_file_bytes(opts))
        return cdx_fail(CDX_ERR_LIMIT, "%s: file is %zu bytes, over the %llu byte limit", name,
                        size, (unsigned long long)max_file_bytes(opts));
    if (!(fmt = detect(data, size, &trunc))) {
        if (trunc) return cdx_fail(CDX_ERR_FORMAT, "%s: truncated %s data", name, trunc->label);
        return cdx_fail(CDX_ERR_FORMAT, "%s: " UNKNOWN_FORMAT, name);
    }

    memset(&m, 0, sizeof m);
    m.orientation = 1;
    m.taken_at = INT64_MIN;
    memset(&c, 0, sizeof c);
    c.path = name;
    c.data = data;
    c.size = size;
    c.max_pixels = opts->max_pixels ? opts->max_pixels : CDX_IMAGE_MAX_PIXELS_DEFAULT;
    c.min_side = opts->min_side;
    c.want_pixels = img != NULL;
    c.want_exif = meta != NULL || (img && opts->apply_orientation);
    c.meta = &m;

    st = fmt->decode(&c);
    if (st) goto fail;

    if (c.exif) {
        int had_warning = m.warning[0] != '\0';
        cdx_exif_parse(c.exif, c.exif_len, &m, &raw);
        if (!had_warning && m.warning[0]) CDX_WARN("%s: %s", name, m.warning);
    }
    if (raw == 0) raw = c.orientation; /* the TIFF tag, when no EXIF said */
    if (c.oriented) raw = 0;           /* HEIF: part of the image already */
    if (raw >= 1 && raw <= 8) {
        m.orientation = raw;
    } else if (raw != 0) {
        CDX_WARN("%s: invalid EXIF Orientation %d (ignored)", name, raw);
        if (!m.warning[0])
            snprintf(m.warning, sizeof m.warning, "invalid EXIF Orientation %d (ignored)", raw);
    }
    snprintf(m.format, sizeof m.format, "%s", fmt->name);
    m.width = c.width;
    m.height = c.height;

    if (img && opts->apply_orientation && !c.oriented && m.orientation != 1) {
        if ((st = cdx_image_orient(&c.img, m.orientation))) {
            cdx_fail_prefix(st, name);
            goto fail;
        }
    }
    free(c.exif_buf);
    if (img) *img = c.img;
    if (meta) *meta = m;
    return CDX_OK;
fail:
    cdx_image_release(&c.img);
    free(c.exif_buf);
    return st;
}

cdx_status cdx_image_decode_mem(const void *data, size_t size, const char *name,
                                const cdx_decode_opts *opts, cdx_image *img,
                                cdx_image_meta *meta)
{
    if (!name) name = "<memory>";
    if (!data && size) return cdx_fail(CDX_ERR_ARG, "%s: NULL data", name);
    return decode(data, size, name, opts, img, meta);
}

cdx_status cdx_image_decode(const char *path, const cdx_decode_opts *opts, cdx_image *img,
                            cdx_image_meta *meta)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    cdx_status st;

    if (!path) return cdx_fail(CDX_ERR_ARG, "cdx_image_decode: NULL path");
    if ((st = read_whole(path, max_file_bytes(opts), &buf, &len))) return st;
    st = decode(buf, len, path, opts, img, meta);
    free(buf);
    return st;
}

cdx_status cdx_image_load(const char *path, cdx_image *out)
{
    if (!path || !out) return cdx_fail(CDX_ERR_ARG, "cdx_image_load: NULL argument");
    /* Exact path: full size, as stored, no metadata. */
    return cdx_image_decode(path, NULL, out, NULL);
}
