/*
 * preprocess.c - transformers' CLIPImageProcessor, exactly: the config
 * file reader and the resize / center-crop / rescale / normalise pipeline
 * that turns a decoded RGB image into the (3,H,W) float tensor the vision
 * tower eats.
 *
 * Exactness, step by step (what transformers does and how it is matched):
 *   resize     get_resize_output_image_size: short side = S, long side =
 *              int(S * long / short), the division in float64 and the
 *              int() a truncation.  Then PIL.Image.resize(BICUBIC), done
 *              by resample.c bit for bit.
 *   crop       center_crop: top = (h - crop_h) // 2 (floor division),
 *              left likewise; where the crop sticks out of the image the
 *              uint8 image is padded with zeros first, so padding pixels
 *              go through rescale/normalise as the value 0.
 *   rescale    float32(float64(x) * rescale_factor).
 *   normalise  (x - float32(mean)) / float32(std), in float32.
 * Rescale and normalise depend only on the 8-bit value and the channel, so
 * they are a 3x256 lookup table computed with exactly those operations.
 *
 * Only the cropped window of the resized image is ever computed (see
 * cdx_resample_bicubic): the bytes are the same as resizing everything and
 * cropping afterwards.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "image_impl.h"

#define PIL_BICUBIC 3
#define CFG_MAX_BYTES (1u << 20) /* preprocessor_config.json is ~500 bytes */
#define CFG_MAX_SIDE 65536       /* sizes above this are typos, not models */

void cdx_preprocess_cfg_default(cdx_preprocess_cfg *out)
{
    /* CLIPImageProcessor.__init__ defaults (OPENAI_CLIP_MEAN / _STD). */
    static const cdx_preprocess_cfg def = {
        .do_convert_rgb = 1, .do_resize = 1, .do_center_crop = 1,
        .do_rescale = 1, .do_normalize = 1,
        .shortest_edge = 224,
        .crop_width = 224, .crop_height = 224,
        .resample = PIL_BICUBIC,
        .rescale_factor = 1.0 / 255.0,
        .image_mean = {0.48145466f, 0.4578275f, 0.40821073f},
        .image_std = {0.26862954f, 0.26130258f, 0.27577711f},
        .resize_width = 0, .resize_height = 0,
    };
    *out = def;
}

/* ------------------------------------------------------------------ */
/* preprocessor_config.json                                            */
/* ------------------------------------------------------------------ */

/* A JSON number that is a whole number in [1, CFG_MAX_SIDE]. */
static int json_side(const cJSON *v, int *out)
{
    double d;
    if (!cJSON_IsNumber(v)) return 0;
    d = v->valuedouble;
    if (!(d >= 1 && d <= CFG_MAX_SIDE) || d != floor(d)) return 0;
    *out = (int)d;
    return 1;
}

/* {"height": H, "width": W} or [H, W] (transformers' get_size_dict turns a
 * list into height, width in that order). */
static int json_hw(const cJSON *v, int *h, int *w)
{
    if (cJSON_IsArray(v))
        return cJSON_GetArraySize(v) == 2 && json_side(cJSON_GetArrayItem(v, 0), h) &&
               json_side(cJSON_GetArrayItem(v, 1), w);
    if (cJSON_IsObject(v))
        return json_side(cJSON_GetObjectItemCaseSensitive(v, "height"), h) &&
               json_side(cJSON_GetObjectItemCaseSensitive(v, "width"), w);
    return 0;
}

/* do_* flags.  Python truthiness: null (None) and 0 are false. */
static int json_flag(const cJSON *v, int *out)
{
    if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else if (cJSON_IsNull(v)) *out = 0;
    else if (cJSON_IsNumber(v)) *out = v->valuedouble != 0;
    else return 0;
    return 1;
}

/* image_mean / image_std: three numbers, or one for all channels. */
static int json_triple(const cJSON *v, float out[3])
{
    if (cJSON_IsNumber(v)) {
        out[0] = out[1] = out[2] = (float)v->valuedouble;
        return 1;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3) return 0;
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e)) return 0;
        /* double -> float, as np.array(mean, dtype=float32) rounds it */
        out[i] = (float)e->valuedouble;
    }
    return 1;
}

static cdx_status parse_cfg(const char *path, const cJSON *root, cdx_preprocess_cfg *c)
{
    static const struct {
        const char *key;
        size_t off;
    } flags[] = {
        {"do_convert_rgb", offsetof(cdx_preprocess_cfg, do_convert_rgb)},
        {"do_resize", offsetof(cdx_preprocess_cfg, do_resize)},
        {"do_center_crop", offsetof(cdx_preprocess_cfg, do_center_crop)},
        {"do_rescale", offsetof(cdx_preprocess_cfg, do_rescale)},
        {"do_normalize", offsetof(cdx_preprocess_cfg, do_normalize)},
    };
    const cJSON *v;
    const char *key;

    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        key = flags[i].key;
        v = cJSON_GetObjectItemCaseSensitive(root, key);
        if (v && !json_flag(v, (int *)((char *)c + flags[i].off))) goto bad_flag;
    }

    key = "size";
    v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && !cJSON_IsNull(v)) {
        const cJSON *se = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "shortest_edge")
                                            : NULL;
        /* A bare number means the shortest edge (get_size_dict with
         * default_to_square=False); "shortest_edge" wins over height/width
         * as in CLIPImageProcessor.resize. */
        if (json_side(v, &c->shortest_edge) || (se && json_side(se, &c->shortest_edge))) {
            c->resize_width = c->resize_height = 0;
        } else if (json_hw(v, &c->resize_height, &c->resize_width)) {
            /* exact size */
        } else {
            return cdx_fail(CDX_ERR_FORMAT, "%s: key 'size': expected N, {\"shortest_edge\": N}, "
                            "{\"height\": H, \"width\": W} or [H, W] with sides 1..%d",
                            path, CFG_MAX_SIDE);
        }
    }

    key = "crop_size";
    v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && !cJSON_IsNull(v)) {
        int side;
        if (json_side(v, &side)) {
            c->crop_width = c->crop_height = side;
        } else if (!json_hw(v, &c->crop_height, &c->crop_width)) {
            return cdx_fail(CDX_ERR_FORMAT, "%s: key 'crop_size': expected N, "
                            "{\"height\": H, \"width\": W} or [H, W] with sides 1..%d",
                            path, CFG_MAX_SIDE);
        }
    }

    key = "resample";
    v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v) {
        /* Stored as given; cdx_preprocess_exact refuses all but BICUBIC,
         * so a model with another filter still opens for other uses. */
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            v->valuedouble < 0 || v->valuedouble > 5)
            return cdx_fail(CDX_ERR_FORMAT, "%s: key 'resample': expected a PIL filter "
                            "number 0..5", path);
        c->resample = (int)v->valuedouble;
    }

    key = "rescale_factor";
    v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return cdx_fail(CDX_ERR_FORMAT, "%s: key 'rescale_factor': expected a number", path);
        c->rescale_factor = v->valuedouble;
    }

    key = "image_mean";
    v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && !cJSON_IsNull(v) && !json_triple(v, c->image_mean)) goto bad_triple;
    key = "image_std";
    v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && !cJSON_IsNull(v) && !json_triple(v, c->image_std)) goto bad_triple;
    for (int i = 0; i < 3; i++)
        if (c->image_std[i] == 0.0f || !isfinite(c->image_std[i]) || !isfinite(c->image_mean[i]))
            return cdx_fail(CDX_ERR_FORMAT, "%s: key 'image_std'/'image_mean': values must be "
                            "finite and std non-zero", path);
    return CDX_OK;

bad_flag:
    return cdx_fail(CDX_ERR_FORMAT, "%s: key '%s': expected true or false", path, key);
bad_triple:
    return cdx_fail(CDX_ERR_FORMAT, "%s: key '%s': expected 3 numbers (or one)", path, key);
}

cdx_status cdx_preprocess_cfg_load(const char *path, cdx_preprocess_cfg *out)
{
    cdx_status st;
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    cdx_preprocess_cfg cfg;

    if (!path || !out) return cdx_fail(CDX_ERR_ARG, "cdx_preprocess_cfg_load: NULL argument");
    cdx_preprocess_cfg_default(&cfg);
    if ((st = cdx_read_file(path, CFG_MAX_BYTES, &text, &len))) goto cleanup;
    root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        const char *at = root ? NULL : cJSON_GetErrorPtr();
        if (at && at >= text && at <= text + len)
            st = cdx_fail(CDX_ERR_FORMAT, "%s: invalid JSON near byte %td", path, at - text);
        else
            st = cdx_fail(CDX_ERR_FORMAT, "%s: not a JSON object", path);
        goto cleanup;
    }
    if ((st = parse_cfg(path, root, &cfg))) goto cleanup;
    *out = cfg;
cleanup:
    cJSON_Delete(root);
    free(text);
    return st;
}

/* ------------------------------------------------------------------ */
/* The pipeline                                                        */
/* ------------------------------------------------------------------ */

/* Size after the resize step (the input size when do_resize is off). */
static cdx_status resized_size(const cdx_preprocess_cfg *cfg, uint32_t w, uint32_t h,
                               uint32_t *rw, uint32_t *rh)
{
    if (!cfg->do_resize) {
        *rw = w;
        *rh = h;
    } else if (cfg->resize_width > 0 && cfg->resize_height > 0) {
        *rw = (uint32_t)cfg->resize_width;
        *rh = (uint32_t)cfg->resize_height;
    } else {
        int64_t s = cfg->shortest_edge;
        int64_t shorter = w <= h ? w : h, longer = w <= h ? h : w;
        /* int(s * long / short): s*long is exact (< 2^53), the division is
         * one correctly rounded float64 division as in Python, and the
         * cast truncates like int(). */
        double q;
        if (s < 1)
            return cdx_fail(CDX_ERR_ARG, "preprocess: shortest_edge %d is not positive",
                            cfg->shortest_edge);
        q = (double)(s * longer) / (double)shorter;
        if (q >= (double)INT32_MAX)
            return cdx_fail(CDX_ERR_LIMIT, "preprocess: a %ux%u image resized to shortest "
                            "edge %d is too large", w, h, cfg->shortest_edge);
        /* width <= height: width is the short side (ties go this way too) */
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

cdx_status cdx_preprocess_output_size(const cdx_preprocess_cfg *cfg, uint32_t width,
                                      uint32_t height, uint32_t *out_w, uint32_t *out_h)
{
    uint32_t rw, rh;
    cdx_status st;

    if (!cfg || !out_w || !out_h || width == 0 || height == 0)
        return cdx_fail(CDX_ERR_ARG, "preprocess: bad arguments");
    if (cfg->do_center_crop) {
        if (cfg->crop_width < 1 || cfg->crop_height < 1)
            return cdx_fail(CDX_ERR_ARG, "preprocess: crop size %dx%d is not positive",
                            cfg->crop_width, cfg->crop_height);
        *out_w = (uint32_t)cfg->crop_width;
        *out_h = (uint32_t)cfg->crop_height;
        return CDX_OK;
    }
    if ((st = resized_size(cfg, width, height, &rw, &rh))) return st;
    *out_w = rw;
    *out_h = rh;
    return CDX_OK;
}

/* Python's floor division by 2 (center_crop's `//`), for negative a too. */
static int64_t floor_half(int64_t a) { return a >= 0 ? a / 2 : -((-a + 1) / 2); }

cdx_status cdx_preprocess_exact(const cdx_preprocess_cfg *cfg, const cdx_image *img, float *out)
{
    cdx_status st;
    uint32_t rw, rh, ow, oh;
    int64_t top = 0, left = 0;        /* crop origin in the resized image */
    int64_t vx0, vy0, vx1, vy1;       /* part of the crop inside it */
    uint8_t *win_buf = NULL;          /* resized pixels of that part */
    const uint8_t *win;
    size_t win_stride, nout;
    float lut[3][256];

    if (!cfg || !img || !img->rgb || !out || img->width == 0 || img->height == 0)
        return cdx_fail(CDX_ERR_ARG, "preprocess: bad arguments");
    /* BILINEAR (2): SigLIP 2's processors (resample.c does both). */
    if (cfg->do_resize && cfg->resample != PIL_BICUBIC && cfg->resample != CDX_RESAMPLE_BILINEAR)
        return cdx_fail(CDX_ERR_UNSUPPORTED, "preprocess: resample=%d is not supported "
                        "(3, BICUBIC, or 2, BILINEAR)", cfg->resample);
    if ((st = resized_size(cfg, img->width, img->height, &rw, &rh))) return st;
    if ((st = cdx_preprocess_output_size(cfg, img->width, img->height, &ow, &oh))) return st;
    if (!cdx_mul_ok(ow, oh, &nout) || !cdx_mul_ok(nout, 3, &nout))
        return cdx_fail(CDX_ERR_LIMIT, "preprocess: output %ux%u too large", ow, oh);
    if (cfg->do_center_crop) {
        top = floor_half((int64_t)rh - oh);
        left = floor_half((int64_t)rw - ow);
    }
    vy0 = top < 0 ? 0 : top;
    vx0 = left < 0 ? 0 : left;
    vy1 = top + oh < (int64_t)rh ? top + oh : (int64_t)rh;
    vx1 = left + ow < (int64_t)rw ? left + ow : (int64_t)rw;
    if (vy1 <= vy0 || vx1 <= vx0) /* a centred crop always overlaps */
        return CDX_BUG("empty crop window");

    if (rw != img->width || rh != img->height) {
        size_t n;
        if (!cdx_mul_ok((size_t)(vx1 - vx0), (size_t)(vy1 - vy0), &n) ||
            !cdx_mul_ok(n, 3, &n) || !(win_buf = malloc(n)))
            return cdx_fail(CDX_ERR_NOMEM, "preprocess: out of memory");
        st = cdx_resample(img->rgb, img->width, img->height, rw, rh, (uint32_t)vx0,
                          (uint32_t)vy0, (uint32_t)(vx1 - vx0), (uint32_t)(vy1 - vy0),
                          cfg->resample, win_buf);
        if (st) goto cleanup;
        win = win_buf;
        win_stride = (size_t)(vx1 - vx0) * 3;
    } else {
        /* Same size (Pillow returns a copy): read the image in place. */
        win = img->rgb + ((size_t)vy0 * img->width + (size_t)vx0) * 3;
        win_stride = (size_t)img->width * 3;
    }

    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float f = cfg->do_rescale ? (float)((double)v * cfg->rescale_factor) : (float)v;
            if (cfg->do_normalize) f = (f - cfg->image_mean[c]) / cfg->image_std[c];
            lut[c][v] = f;
        }

    /* out is (3, oh, ow); pixels outside [vx0,vx1) x [vy0,vy1) are the
     * zero padding of center_crop. */
    for (int c = 0; c < 3; c++) {
        float *plane = out + (size_t)c * oh * ow;
        const float pad = lut[c][0];
        for (uint32_t y = 0; y < oh; y++) {
            int64_t sy = top + y;
            float *o = plane + (size_t)y * ow;
            if (sy < vy0 || sy >= vy1) {
                for (uint32_t x = 0; x < ow; x++) o[x] = pad;
                continue;
            }
            const uint8_t *row = win + (size_t)(sy - vy0) * win_stride;
            for (uint32_t x = 0; x < ow; x++) {
                int64_t sx = left + x;
                o[x] = (sx < vx0 || sx >= vx1) ? pad : lut[c][row[(size_t)(sx - vx0) * 3 + c]];
            }
        }
    }
cleanup:
    free(win_buf);
    return st;
}
