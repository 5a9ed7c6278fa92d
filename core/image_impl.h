/*
 * image_impl.h - internals of the image layer (image.c, resample.c,
 * preprocess.c); never installed.
 *
 * Layering:
 *   image.c       file -> cdx_image (8-bit RGB), one decoder per format,
 *                 chosen from the magic bytes.
 *   resample.c    Pillow-exact BICUBIC resize of an 8-bit RGB image.
 *   preprocess.c  CLIPImageProcessor: resize, center crop, rescale,
 *                 normalise, (3,H,W) float output.
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

/* Largest decoded image accepted, in pixels (width*height), checked from
 * the header before any pixel memory is allocated.  200 MP covers every
 * camera we know of while refusing decompression bombs; a later issue makes
 * it configurable through cdx_decode_opts. */
#define CDX_IMAGE_MAX_PIXELS_DEFAULT ((size_t)200 * 1000 * 1000)

/* Decoders receive the public cdx_decode_opts (clipdex.h): max_pixels is
 * the limit they apply; the other fields are for the ingestion layer. */

/* A decoder reads the whole image from f (positioned at offset 0) and
 * fills *out with 8-bit RGB as Pillow's Image.convert("RGB") would.
 * path is only used in messages.  On failure *out is untouched and the
 * thread's error message is "PATH: reason". */
typedef cdx_status (*cdx_decode_fn)(FILE *f, const char *path,
                                    const cdx_decode_opts *opts, cdx_image *out);

/* Check w*h against opts->max_pixels and allocate the w*h*3 RGB buffer
 * (caller frees).  Shared by the decoders so every format applies the
 * same limit with the same message. */
cdx_status cdx_image_alloc_rgb(const char *path, const cdx_decode_opts *opts,
                               uint32_t w, uint32_t h, uint8_t **rgb);

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

/* The plain reference twin of cdx_resample_bicubic: the whole dw x dh
 * image, straightforward loops in Pillow's structure.  dst is
 * (dh, dw, 3).  Used by the unit test to check the windowed path. */
cdx_status cdx_resample_bicubic_ref(const uint8_t *src, uint32_t sw, uint32_t sh,
                                    uint32_t dw, uint32_t dh, uint8_t *dst);

#endif
