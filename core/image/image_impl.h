/*
 * image_impl.h - internals of the image layer; never installed.
 *
 * Layering (every file is in core/image/):
 *   ingest.c       the entry points: cdx_image_load, cdx_image_decode,
 *                  cdx_image_decode_mem.  Reads the
 *                  file (limits first), picks the decoder from the magic
 *                  bytes, parses EXIF, applies orientation.
 *   image.c        JPEG (libjpeg-turbo, with DCT scaling on request) and
 *                  PNG (libpng), pixel for pixel as Pillow decodes them.
 *   image_webp.c   WebP (libwebp, libwebpdemux for animation and EXIF).
 *   image_heif.c   HEIF/HEIC and AVIF (libheif).
 *   image_tiff.c   TIFF (libtiff), first page.
 *   image_gif.c    GIF (giflib), first frame.
 *   image_exif.c   EXIF (libexif): orientation, date, camera, GPS.
 *   image_orient.c the 8 EXIF orientations applied to RGB pixels.
 *   resample.c     Pillow-exact BICUBIC resize of an 8-bit RGB image.
 *   preprocess.c   CLIPImageProcessor: resize, center crop, rescale,
 *                  normalise, (3,H,W) float output.
 *
 * Every decoder works on the whole file in memory (read once by
 * ingest.c, or handed over by a caller such as the fuzz target), so no
 * decoder does I/O, and each library is driven through its memory API.
 * No decoder may print: each one installs handlers that route the
 * library's errors into the thread's error message and its warnings into
 * cdx_decode_warn().
 *
 * Pixel buffers here are interleaved RGB, row-major, stride = width*3,
 * unless a comment says otherwise.
 */
#ifndef CDX_IMAGE_IMPL_H
#define CDX_IMAGE_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "internal.h"

/* Largest decoded image accepted by default, in pixels (width*height),
 * checked from the header before any pixel memory is allocated.  200 MP
 * covers every camera we know of while refusing decompression bombs;
 * cdx_decode_opts.max_pixels overrides it. */
#define CDX_IMAGE_MAX_PIXELS_DEFAULT ((uint64_t)200 * 1000 * 1000)

/* Largest file read by default (cdx_decode_opts.max_file_bytes = 0). */
#define CDX_IMAGE_MAX_FILE_BYTES_DEFAULT ((uint64_t)1 << 30)

/* One decode: the input, the options (defaults already filled in), and
 * what the decoder reports back.  ingest.c owns it; a decoder fills the
 * "out" part.
 *
 * Contract of a decoder (cdx_decoder_fn):
 *   - want_pixels == 0: read only what the header and metadata need
 *     (width, height, exif), allocate no pixel memory, decode nothing.
 *   - Check width*height against max_pixels (cdx_image_alloc_rgb does it)
 *     before allocating anything proportional to the image.
 *   - On success with want_pixels, img holds 8-bit RGB as stored in the
 *     file (no orientation applied, unless the decoder sets oriented).
 *   - On failure return the status with the thread's error set to one line
 *     "PATH: reason"; img is then empty and nothing is leaked.  exif_buf
 *     is freed by the caller in every case. */
typedef struct cdx_decode_ctx {
    /* ---- in ---- */
    const char *path;        /* used in messages only */
    const uint8_t *data;     /* the whole file */
    size_t size;
    uint64_t max_pixels;     /* > 0 */
    uint32_t min_side;       /* JPEG: target short side (cdx_decode_opts) */
    int want_pixels;         /* 0: header and metadata only */
    int want_exif;           /* locate the EXIF block */
    /* ---- out ---- */
    cdx_image img;           /* the pixels (owned until handed over) */
    uint32_t width, height;  /* stored size from the header (full size,
                                before DCT scaling and orientation) */
    const uint8_t *exif;     /* EXIF block: "Exif\0\0" + TIFF or bare TIFF */
    size_t exif_len;         /* (borrowed from data, or exif_buf) */
    uint8_t *exif_buf;       /* owned copy when the block is not in data */
    int oriented;            /* the pixels are upright by the format's own
                                definition (HEIF irot/imir): EXIF Orientation
                                is then neither applied nor reported */
    int orientation;         /* orientation found by the decoder outside EXIF
                                (the TIFF Orientation tag), 0 = none */
    cdx_image_meta *meta;    /* never NULL: decoders that read metadata
                                themselves (TIFF) fill make/model/date/GPS
                                here; warnings land in meta->warning */
} cdx_decode_ctx;

typedef cdx_status (*cdx_decoder_fn)(cdx_decode_ctx *c);

/* The decoders (image.c, image_webp.c, image_heif.c, image_tiff.c,
 * image_gif.c). */
cdx_status cdx_decode_jpeg(cdx_decode_ctx *c);
cdx_status cdx_decode_png(cdx_decode_ctx *c);
cdx_status cdx_decode_webp(cdx_decode_ctx *c);
cdx_status cdx_decode_heif(cdx_decode_ctx *c);
cdx_status cdx_decode_tiff(cdx_decode_ctx *c);
cdx_status cdx_decode_gif(cdx_decode_ctx *c);

/* Check w*h against c->max_pixels and allocate the w*h*3 RGB buffer
 * (caller frees).  Shared by the decoders so every format applies the
 * same limit with the same message. */
cdx_status cdx_image_alloc_rgb(const cdx_decode_ctx *c, uint32_t w, uint32_t h,
                               uint8_t **rgb);

/* The size limit alone (no allocation): CDX_ERR_LIMIT / CDX_ERR_FORMAT
 * with the standard message, for decoders that allocate elsewhere. */
cdx_status cdx_image_check_size(const cdx_decode_ctx *c, uint32_t w, uint32_t h);

/* A non-fatal problem: logged as "PATH: msg" at warning level, and the
 * first one of a decode is kept in c->meta->warning (without the path). */
void cdx_decode_warn(cdx_decode_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- image_exif.c ---- */

/* Parse an EXIF block with libexif: "Exif\0\0" followed by a TIFF
 * structure, or the TIFF structure alone (as WebP and HEIF store it).
 * Fills meta->taken_at / has_tz_offset / tz_offset_min, make, model,
 * has_gps / gps_lat / gps_lon where present, and returns the raw
 * Orientation value in *orientation (0 when the tag is absent; the caller
 * validates it).  A malformed block is never an error: what could be read
 * is kept and meta->warning (if still empty) says what was wrong; hence
 * no status.  Thread-safe; never prints. */
void cdx_exif_parse(const uint8_t *data, size_t len, cdx_image_meta *meta, int *orientation);

/* "YYYY:MM:DD HH:MM:SS" (also '-' as date separator and 'T' between) as
 * seconds since the epoch, the fields read as UTC.  0 on success, -1 when
 * the text is not a valid date (all-zero or blank dates included). */
int cdx_exif_parse_datetime(const char *s, size_t n, int64_t *out);

/* "+HH:MM" / "-HH:MM" as minutes east of UTC.  0 on success, -1 if not. */
int cdx_exif_parse_offset(const char *s, size_t n, int *minutes);

/* Copy an EXIF/TIFF ASCII value into dst (size dstsz): stops at NUL,
 * trims trailing spaces, replaces control characters by '?'. */
void cdx_exif_copy_ascii(char *dst, size_t dstsz, const char *src, size_t n);

/* ---- image_orient.c ---- */

/* Make the pixels upright for EXIF orientation o (1..8): 2 mirror, 3
 * rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse,
 * 8 rotate 90 counter-clockwise (Pillow's ImageOps.exif_transpose).
 * Replaces img->rgb (and swaps width/height for 5..8); o = 1 or any
 * invalid value leaves the image as it is.  On failure (out of memory)
 * img is unchanged. */
cdx_status cdx_image_orient(cdx_image *img, int o);

/* ---- resample.c ---- */

/* BICUBIC resize, bit-identical to Pillow's Image.resize(..., BICUBIC)
 * (PIL 9.4, reducing_gap=None) of an RGB image, restricted to a window.
 *
 * src is (sh, sw, 3).  The full result would be (dh, dw, 3); only the
 * window of ow x oh pixels whose top-left corner is (x0, y0) is computed
 * and written to dst, which is (oh, ow, 3), stride ow*3.  The window
 * must lie inside dw x dh.  Computing a window gives the same bytes as
 * cropping the full result: each output pixel depends only on its own
 * coefficients.  Sizes must be >= 1 and fit in an int (Pillow's limits).
 * Thread-safe.  Fails only on out-of-memory or bad arguments. */
cdx_status cdx_resample_bicubic(const uint8_t *src, uint32_t sw, uint32_t sh,
                                uint32_t dw, uint32_t dh,
                                uint32_t x0, uint32_t y0, uint32_t ow, uint32_t oh,
                                uint8_t *dst);

/* The same for Pillow's BILINEAR (filter CDX_RESAMPLE_BILINEAR, PIL's 2)
 * or BICUBIC (CDX_RESAMPLE_BICUBIC, 3): SigLIP 2's processors resize
 * bilinearly.  Pillow widens either filter by the scale when shrinking. */
#define CDX_RESAMPLE_BILINEAR 2
#define CDX_RESAMPLE_BICUBIC 3
cdx_status cdx_resample(const uint8_t *src, uint32_t sw, uint32_t sh, uint32_t dw, uint32_t dh,
                        uint32_t x0, uint32_t y0, uint32_t ow, uint32_t oh, int filter,
                        uint8_t *dst);

/* The plain reference twin of cdx_resample_bicubic: the whole dw x dh
 * image, straightforward loops in Pillow's structure.  dst is
 * (dh, dw, 3).  Used by the unit test to check the windowed path. */
cdx_status cdx_resample_bicubic_ref(const uint8_t *src, uint32_t sw, uint32_t sh,
                                    uint32_t dw, uint32_t dh, uint8_t *dst);

#endif
