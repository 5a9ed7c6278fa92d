/*
 * preprocess_openclip.c - open_clip's eval transform, exactly: the second
 * exact preprocessing path (preprocess.c is CLIPImageProcessor's).
 *
 * open_clip (transform.py image_transform, is_train=False) runs torchvision
 * transforms on the PIL image as opened, and converts to RGB last:
 *
 *   shortest  Resize(S): short side S, long side int(S * long / short)
 *             (float64 division, truncated); CenterCrop(S)
 *   squash    Resize((S, S))
 *   longest   ResizeKeepRatio(S, longest=1): ratio = max(h/S, w/S), each
 *             side round(side / ratio) (Python round: half to even);
 *             CenterCropOrPad(S, fill_color)
 *   then      convert("RGB"), ToTensor (float32(v) / 255), Normalize
 *             ((x - mean) / std in float32).
 *
 * Crop offsets are int(round((size - S) / 2.0)), half to even (not the
 * floor division of CLIPImageProcessor); a side smaller than S is padded
 * first, (S - size) // 2 before it.  The resize is PIL.Image.resize in the
 * image's own mode, which is where this differs from converting first:
 *   - P and 1 images: Pillow resizes them with NEAREST whatever was asked
 *     (Image.resize), i.e. source pixel int(xo) with xo stepping by
 *     in/out from in/out * 0.5 (libImaging ImagingScaleAffine).  Looking
 *     up the palette before or after a nearest resize is the same, so the
 *     decoder's RGB is resized here with those source pixels.
 *   - LA and RGBA images: resized premultiplied (converted to La / RGBa:
 *     c * a / 255 rounded as MULDIV255), each channel with the same
 *     BICUBIC coefficients, then un-premultiplied (255 * c / a, clipped,
 *     unless a is 0 or 255) before convert("RGB") drops alpha.
 *   - other modes: BICUBIC on the RGB pixels (L resized then replicated
 *     equals replicated then resized: the channels are independent).
 * The decoder says which case an image is (cdx_image.nearest, .alpha).
 * Only the cropped window of the resized image is computed, as in
 * preprocess.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_impl.h"

/* Python's round() of k / 2 for an integer k >= 0: half to even. */
static int64_t half_round_even(int64_t k)
{
    int64_t q = k / 2;
    if (k % 2 == 0) return q;
    return (q % 2 == 0) ? q : q + 1; /* q + 0.5 rounds to the even one */
}

/* Offset of the crop in a side of `size` pixels (negative: padding before
 * the image), as torchvision's center_crop / open_clip's
 * center_crop_or_pad. */
static int64_t crop_offset(int64_t size, int64_t s)
{
    if (s > size) return -((s - size) / 2);
    return half_round_even(size - s);
}

/* The resize target of each mode. */
static cdx_status target_size(const cdx_preprocess_cfg *cfg, uint32_t w, uint32_t h, uint32_t *rw,
                              uint32_t *rh)
{
    const int64_t s = cfg->crop_width;
    if (cfg->oc_resize_mode == CDX_OC_RESIZE_SQUASH) {
        *rw = *rh = (uint32_t)s;
    } else if (cfg->oc_resize_mode == CDX_OC_RESIZE_LONGEST) {
        double ratio_h = (double)h / (double)s, ratio_w = (double)w / (double)s;
        double ratio = (ratio_h > ratio_w ? ratio_h : ratio_w) * 1.0 +
                       (ratio_h > ratio_w ? ratio_w : ratio_h) * (1.0 - 1.0);
        /* round(x * 1.0 / ratio): nearbyint rounds half to even */
        double nh = nearbyint((double)h * 1.0 / ratio), nw = nearbyint((double)w * 1.0 / ratio);
        if (!(nh >= 1 && nw >= 1)) {
            /* Pillow refuses a 0-pixel resize; so do we */
            return cdx_fail(CDX_ERR_ARG, "preprocess: a %ux%u image resizes to nothing", w, h);
        }
        *rw = (uint32_t)nw;
        *rh = (uint32_t)nh;
    } else {
        int64_t shorter = w <= h ? w : h, longer = w <= h ? h : w;
        double q = (double)(s * longer) / (double)shorter;
        if (q >= (double)INT32_MAX)
            return cdx_fail(CDX_ERR_LIMIT, "preprocess: a %ux%u image resized to %d is too large",
                            w, h, (int)s);
        if (w <= h) {
            *rw = (uint32_t)s;
            *rh = (uint32_t)(int64_t)q;
        } else {
            *rw = (uint32_t)(int64_t)q;
            *rh = (uint32_t)s;
        }
    }
    return CDX_OK;
}

/* Pillow's NEAREST resize (ImagingScaleAffine) of RGB src to dw x dh,
 * the window (x0, y0, ow, oh) of it into dst. */
static cdx_status nearest_window(const uint8_t *src, uint32_t sw, uint32_t sh, uint32_t dw,
                                 uint32_t dh, uint32_t x0, uint32_t y0, uint32_t ow, uint32_t oh,
                                 uint8_t *dst)
{
    int *xin = malloc(sizeof(int) * (size_t)dw);
    if (!xin) return cdx_fail(CDX_ERR_NOMEM, "preprocess: out of memory");
    const double ax = (double)sw / dw, ay = (double)sh / dh;
    double xo = 0.0 + ax * 0.5, yo = 0.0 + ay * 0.5;
    /* the positions accumulate (xo += a), as libImaging does: a product
     * would differ in the last bit now and then */
    for (uint32_t x = 0; x < dw; x++, xo += ax) xin[x] = xo < 0 ? -1 : (int)xo;
    for (uint32_t y = 0; y < dh; y++, yo += ay) {
        if (y < y0 || y >= y0 + oh) continue;
        int yi = yo < 0 ? -1 : (int)yo;
        uint8_t *o = dst + (size_t)(y - y0) * ow * 3;
        for (uint32_t x = 0; x < ow; x++) {
            int xi = xin[x0 + x];
            if (yi < 0 || yi >= (int)sh || xi < 0 || xi >= (int)sw) {
                memset(o + 3 * x, 0, 3); /* fill: never reached for a scale-down or -up */
                continue;
            }
            memcpy(o + 3 * x, src + ((size_t)yi * sw + (size_t)xi) * 3, 3);
        }
    }
    free(xin);
    return CDX_OK;
}

static inline uint8_t muldiv255(unsigned a, unsigned b)
{
    unsigned t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

/* RGBa / La resize: premultiply, BICUBIC each channel (alpha through the
 * same RGB resampler, replicated), un-premultiply. */
static cdx_status alpha_window(const cdx_image *img, uint32_t dw, uint32_t dh, uint32_t x0,
                               uint32_t y0, uint32_t ow, uint32_t oh, uint8_t *dst)
{
    cdx_status st;
    size_t n, on;
    uint8_t *pm = NULL, *a3 = NULL, *aw = NULL;
    if (!cdx_mul_ok((size_t)img->width, img->height, &n) || !cdx_mul_ok(n, 3, &n) ||
        !cdx_mul_ok((size_t)ow, oh, &on) || !cdx_mul_ok(on, 3, &on) || !(pm = malloc(n)) ||
        !(a3 = malloc(n)) || !(aw = malloc(on))) {
        st = cdx_fail(CDX_ERR_NOMEM, "preprocess: out of memory");
        goto out;
    }
    for (size_t i = 0, p = 0; i < n; i += 3, p++) {
        unsigned a = img->alpha[p];
        pm[i] = muldiv255(img->rgb[i], a);
        pm[i + 1] = muldiv255(img->rgb[i + 1], a);
        pm[i + 2] = muldiv255(img->rgb[i + 2], a);
        a3[i] = a3[i + 1] = a3[i + 2] = (uint8_t)a;
    }
    if ((st = cdx_resample_bicubic(pm, img->width, img->height, dw, dh, x0, y0, ow, oh, dst)) ||
        (st = cdx_resample_bicubic(a3, img->width, img->height, dw, dh, x0, y0, ow, oh, aw)))
        goto out;
    for (size_t i = 0; i < on; i += 3) {
        unsigned a = aw[i];
        if (a == 0 || a == 255) continue;
        for (int c = 0; c < 3; c++) {
            unsigned v = 255u * dst[i + c] / a;
            dst[i + c] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
out:
    free(pm);
    free(a3);
    free(aw);
    return st;
}

cdx_status cdx_preprocess_openclip(const cdx_preprocess_cfg *cfg, const cdx_image *img, float *out)
{
    cdx_status st = CDX_OK;
    uint32_t rw = 0, rh = 0;
    const uint32_t S = cfg ? (uint32_t)cfg->crop_width : 0;
    int64_t top, left, vx0, vy0, vx1, vy1;
    uint8_t *win_buf = NULL;
    const uint8_t *win;
    size_t win_stride;
    float lut[3][256], pad[3];

    if (!cfg || !img || !img->rgb || !out || img->width == 0 || img->height == 0 || S < 1 ||
        cfg->crop_height != cfg->crop_width)
        return cdx_fail(CDX_ERR_ARG, "preprocess: bad arguments");
    if ((st = target_size(cfg, img->width, img->height, &rw, &rh))) return st;
    top = crop_offset(rh, S);
    left = crop_offset(rw, S);
    vy0 = top < 0 ? 0 : top;
    vx0 = left < 0 ? 0 : left;
    vy1 = top + S < (int64_t)rh ? top + S : (int64_t)rh;
    vx1 = left + S < (int64_t)rw ? left + S : (int64_t)rw;
    if (vy1 <= vy0 || vx1 <= vx0) return CDX_BUG("empty crop window");

    if (rw != img->width || rh != img->height) {
        const uint32_t ww = (uint32_t)(vx1 - vx0), wh = (uint32_t)(vy1 - vy0);
        size_t n;
        if (!cdx_mul_ok(ww, wh, &n) || !cdx_mul_ok(n, 3, &n) || !(win_buf = malloc(n)))
            return cdx_fail(CDX_ERR_NOMEM, "preprocess: out of memory");
        if (img->nearest)
            st = nearest_window(img->rgb, img->width, img->height, rw, rh, (uint32_t)vx0,
                                (uint32_t)vy0, ww, wh, win_buf);
        else if (img->alpha)
            st = alpha_window(img, rw, rh, (uint32_t)vx0, (uint32_t)vy0, ww, wh, win_buf);
        else
            st = cdx_resample_bicubic(img->rgb, img->width, img->height, rw, rh, (uint32_t)vx0,
                                      (uint32_t)vy0, ww, wh, win_buf);
        if (st) goto cleanup;
        win = win_buf;
        win_stride = (size_t)ww * 3;
    } else {
        /* Same size: Pillow returns a copy */
        win = img->rgb + ((size_t)vy0 * img->width + (size_t)vx0) * 3;
        win_stride = (size_t)img->width * 3;
    }

    /* ToTensor then Normalize, per 8-bit value: float32(v) / 255 (torch's
     * div in float32), then (x - mean) / std in float32. */
    for (int c = 0; c < 3; c++) {
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - cfg->image_mean[c]) /
                                                  cfg->image_std[c];
        /* padding: fill_color in every channel after convert("RGB"), or
         * for a P image its palette entry fill_color */
        pad[c] = lut[c][img->palette ? img->palette[3 * (cfg->oc_fill & 255) + c]
                                      : (uint8_t)(cfg->oc_fill & 255)];
    }
    for (int c = 0; c < 3; c++) {
        float *plane = out + (size_t)c * S * S;
        for (uint32_t y = 0; y < S; y++) {
            int64_t sy = top + y;
            float *o = plane + (size_t)y * S;
            if (sy < vy0 || sy >= vy1) {
                for (uint32_t x = 0; x < S; x++) o[x] = pad[c];
                continue;
            }
            const uint8_t *row = win + (size_t)(sy - vy0) * win_stride;
            for (uint32_t x = 0; x < S; x++) {
                int64_t sx = left + x;
                o[x] = (sx < vx0 || sx >= vx1) ? pad[c] : lut[c][row[(size_t)(sx - vx0) * 3 + c]];
            }
        }
    }
cleanup:
    free(win_buf);
    return st;
}
