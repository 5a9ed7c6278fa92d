/*
 * image_orient.c - apply an EXIF Orientation (1..8) to RGB pixels, the
 * way Pillow's ImageOps.exif_transpose does:
 *
 *   value  stored image is ...                 to make it upright
 *   1      upright                             nothing
 *   2      mirrored                            flip left-right
 *   3      upside down                         rotate 180
 *   4      upside down and mirrored            flip top-bottom
 *   5      mirrored, rotated                   transpose (swap x and y)
 *   6      rotated 90 counter-clockwise        rotate 90 clockwise
 *   7      mirrored, rotated                   transverse
 *   8      rotated 90 clockwise                rotate 90 counter-clockwise
 *
 * Every case is one mapping from output (x, y) to a source pixel, written
 * as a start offset plus a step per output column and per output row (in
 * source pixels), so a single loop does all eight.  The loop walks the
 * output in 32x32 tiles: for the rotations the source steps are a whole
 * row apart, and tiling keeps those rows in cache.
 */
#include <stdlib.h>
#include <string.h>

#include "image_impl.h"

#define TILE 32

cdx_status cdx_image_orient(cdx_image *img, int o)
{
    const int64_t W = img->width, H = img->height;
    int64_t ow, oh;         /* output size */
    int64_t start, dx, dy;  /* source pixel of (0,0), step per x, per y */
    uint8_t *dst;
    size_t n;

    if (o < 2 || o > 8 || !img->rgb) return CDX_OK;
    switch (o) {
    case 2: start = W - 1;           dx = -1; dy = W;  break;
    case 3: start = W * H - 1;       dx = -1; dy = -W; break;
    case 4: start = (H - 1) * W;     dx = 1;  dy = -W; break;
    case 5: start = 0;               dx = W;  dy = 1;  break; /* out(x,y) = in(y,x) */
    case 6: start = (H - 1) * W;     dx = -W; dy = 1;  break; /* in(y, H-1-x) */
    case 7: start = W * H - 1;       dx = -W; dy = -1; break; /* in(W-1-y, H-1-x) */
    default: start = W - 1;          dx = W;  dy = -1; break; /* 8: in(W-1-y, x) */
    }
    ow = o >= 5 ? H : W;
    oh = o >= 5 ? W : H;
    if (!cdx_mul_ok((size_t)W * (size_t)H, 3, &n) || !(dst = malloc(n)))
        return cdx_fail(CDX_ERR_NOMEM, "out of memory rotating a %ux%u image",
                        img->width, img->height);

    const uint8_t *src = img->rgb;
    for (int64_t ty = 0; ty < oh; ty += TILE) {
        int64_t ye = ty + TILE < oh ? ty + TILE : oh;
        for (int64_t tx = 0; tx < ow; tx += TILE) {
            int64_t xe = tx + TILE < ow ? tx + TILE : ow;
            for (int64_t y = ty; y < ye; y++) {
                uint8_t *d = dst + (y * ow + tx) * 3;
                int64_t s = start + y * dy + tx * dx;
                for (int64_t x = tx; x < xe; x++, s += dx, d += 3) {
                    const uint8_t *p = src + s * 3;
                    d[0] = p[0];
                    d[1] = p[1];
                    d[2] = p[2];
                }
            }
        }
    }
    if (img->alpha) {
        /* the alpha plane (OpenCLIP's RGBA resize) turns with the pixels */
        uint8_t *ad = malloc((size_t)W * (size_t)H);
        if (!ad) {
            free(dst);
            return cdx_fail(CDX_ERR_NOMEM, "out of memory rotating a %ux%u image", img->width,
                            img->height);
        }
        for (int64_t y = 0; y < oh; y++)
            for (int64_t x = 0, s = start + y * dy; x < ow; x++, s += dx) ad[y * ow + x] = img->alpha[s];
        free(img->alpha);
        img->alpha = ad;
    }
    free(img->rgb);
    img->rgb = dst;
    img->width = (uint32_t)ow;
    img->height = (uint32_t)oh;
    return CDX_OK;
}
