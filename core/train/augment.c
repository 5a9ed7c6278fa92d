/*
 * augment.c - clipdex train --augment crop: the random resized crop CLIP
 * models are trained with (train.h).
 *
 * open_clip's training transform (transform.py image_transform with
 * is_train) is torchvision's RandomResizedCrop(S, scale=(0.9, 1.0),
 * ratio=(3/4, 4/3), interpolation=BICUBIC), then ToTensor and the
 * normalisation.  The box follows RandomResizedCrop.get_params: up to ten
 * draws of an area fraction (uniform in scale) and an aspect ratio
 * (log-uniform in ratio), the first whose box fits taken at a uniform
 * position; else the centred box of the whole image clamped to the ratio
 * range.  Sizes are rounded half to even, as Python's round().  The crop
 * is then resized to S x S with the preprocessing's own Pillow-exact
 * bicubic (cdx_preprocess_exact with an exact-size resize), rescaled and
 * normalised with the model's mean and std.
 *
 * One difference from open_clip on a PIL image: there the crop and resize
 * happen in the file's mode and RGB comes after; here the image is RGB
 * first (as CLIPImageProcessor does).  Only palette and alpha images can
 * differ, and only at the resize.
 *
 * The draws come from splitmix64 seeded by (seed, epoch, pair), so a
 * pair's crop in an epoch does not depend on the batch it lands in, on
 * the threads, or on whether the run was resumed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "train.h"

static uint64_t mix_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [lo, hi) */
static double uniform(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(mix_next(s) >> 11) / 9007199254740992.0);
}

/* uniform integer in [0, n) (n >= 1); the modulo bias is below 2^-40 here */
static int below(uint64_t *s, int n) { return (int)(mix_next(s) % (uint64_t)n); }

void cdx_train_crop_box(uint64_t seed, int64_t epoch, int64_t pair, int W, int H, cdx_train_box *box)
{
    const double smin = CDX_TRAIN_CROP_SCALE_MIN, smax = 1.0;
    const double rmin = 3.0 / 4.0, rmax = 4.0 / 3.0;
    const double area = (double)W * H;
    /* one stream per (seed, epoch, pair): mixed between the two so that
     * (epoch, pair) and (pair, epoch) do not share a stream */
    uint64_t s = seed ^ (0x9FB21C651E98DF25ull * (uint64_t)(epoch + 1));
    s = mix_next(&s) ^ (0xC2B2AE3D27D4EB4Full * (uint64_t)(pair + 1));
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * uniform(&s, smin, smax);
        double aspect = exp(uniform(&s, log(rmin), log(rmax)));
        int w = (int)nearbyint(sqrt(target * aspect)), h = (int)nearbyint(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            box->y = below(&s, H - h + 1);
            box->x = below(&s, W - w + 1);
            box->w = w;
            box->h = h;
            return;
        }
    }
    /* the fallback: centred, the whole image within the ratio range */
    double in_ratio = (double)W / H;
    int w = W, h = H;
    if (in_ratio < rmin) h = (int)nearbyint(w / rmin);
    else if (in_ratio > rmax) w = (int)nearbyint(h * rmax);
    box->x = (W - w) / 2;
    box->y = (H - h) / 2;
    box->w = w;
    box->h = h;
}

cdx_status cdx_train_crop_input(const cdx_preprocess_cfg *cfg, const cdx_image *img,
                                const cdx_train_box *box, int S, float *out)
{
    if (!cfg || !img || !img->rgb || !box || !out || S < 1 || box->w < 1 || box->h < 1 || box->x < 0 ||
        box->y < 0 || (uint32_t)(box->x + box->w) > img->width || (uint32_t)(box->y + box->h) > img->height)
        return cdx_fail(CDX_ERR_ARG, "cdx_train_crop_input: box outside the image");
    cdx_image sub = {0};
    sub.width = (uint32_t)box->w;
    sub.height = (uint32_t)box->h;
    if (!(sub.rgb = malloc((size_t)box->w * (size_t)box->h * 3)))
        return cdx_fail(CDX_ERR_NOMEM, "out of memory for a %dx%d crop", box->w, box->h);
    for (int y = 0; y < box->h; y++)
        memcpy(sub.rgb + (size_t)y * (size_t)box->w * 3,
               img->rgb + ((size_t)(box->y + y) * img->width + (size_t)box->x) * 3, (size_t)box->w * 3);
    /* the crop resized to exactly S x S; rescale and normalise as configured */
    cdx_preprocess_cfg c = *cfg;
    c.do_convert_rgb = 1;
    c.do_resize = 1;
    c.resize_width = c.resize_height = S;
    c.do_center_crop = 0;
    c.openclip = 0;
    cdx_status st = cdx_preprocess_exact(&c, &sub, out);
    free(sub.rgb);
    return st;
}
