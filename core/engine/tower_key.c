/*
 * tower_key.c - cdx_model_vision_key: the identity of a model's image
 * tower, for the store (schema/005_tower_identity.sql).
 *
 * It hashes exactly what decides the image vectors:
 *   - the family and the vision tower's configuration (widths, depth,
 *     heads, activation, layer-norm epsilon, image and patch size) and
 *     the projection dimension;
 *   - the preprocessing (cdx_preprocess_cfg, field by field);
 *   - every tensor of the image tower and its projection (vision_model.*,
 *     visual_projection.*; OpenCLIP's visual.*), sorted by name: name,
 *     shape and the float32 values.
 * The values, not the stored bytes: a tuned model is written in float32
 * whatever the input's dtype, and an F16 tower converted to float32
 * computes the same vectors (the engine runs float32 either way).  The
 * text tower, the temperature and the file layout do not enter, so a
 * model trained with --lock image keeps its input's vision key.
 * Hashing reads the whole image tower once (~350 MB at ViT-B/32, a few
 * tenths of a second with the SHA extensions).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "internal.h"
#include "weights.h"

static int is_vision_tensor(const char *name)
{
    return !strncmp(name, "vision_model.", 13) || !strncmp(name, "visual_projection.", 18) ||
           !strncmp(name, "visual.", 7);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const cdx_tensor_info *const *)a)->name, (*(const cdx_tensor_info *const *)b)->name);
}

static int put_text(EVP_MD_CTX *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put_text(EVP_MD_CTX *ctx, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < sizeof buf && EVP_DigestUpdate(ctx, buf, (size_t)n) == 1;
}

cdx_status cdx_model_vision_key(const cdx_model *m, char out[2 * CDX_HASH_SIZE + 1])
{
    const cdx_model_info *info = m ? cdx_model_get_info(m) : NULL;
    const cdx_preprocess_cfg *pp = m ? cdx_model_preprocess(m) : NULL;
    cdx_weights *w = NULL;
    const cdx_tensor_info **vt = NULL;
    EVP_MD_CTX *ctx = NULL;
    cdx_status st = CDX_OK;
    uint8_t h[CDX_HASH_SIZE];
    unsigned len = 0;
    int nv = 0;

    if (!info || !pp || !info->weights_file) return cdx_fail(CDX_ERR_ARG, "cdx_model_vision_key: invalid argument");
    const char *wf = info->weights_file;
    size_t wl = strlen(wf);
    st = wl > 5 && !strcmp(wf + wl - 5, ".json") ? cdx_weights_open(info->dir, &w) : cdx_weights_open_file(wf, &w);
    if (st) return st;
    if (!(ctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) goto sslfail;
    const cdx_tower_info *v = &info->vision;
    if (!put_text(ctx, "clipdex-vision-key-1\n%s %d\n%d %d %d %d %s %.17g %d %d\n", cdx_family_name(info->family),
                  info->projection_dim, v->hidden, v->layers, v->heads, v->intermediate, v->act ? v->act : "",
                  v->ln_eps, v->image_size, v->patch_size) ||
        !put_text(ctx, "%d %d %d %d %d %d %d %d %d %.17g %.9g %.9g %.9g %.9g %.9g %.9g %d %d %d %d %d\n",
                  pp->do_convert_rgb, pp->do_resize, pp->do_center_crop, pp->do_rescale, pp->do_normalize,
                  pp->shortest_edge, pp->crop_width, pp->crop_height, pp->resample, pp->rescale_factor,
                  pp->image_mean[0], pp->image_mean[1], pp->image_mean[2], pp->image_std[0], pp->image_std[1],
                  pp->image_std[2], pp->resize_width, pp->resize_height, pp->openclip, pp->oc_resize_mode,
                  pp->oc_fill))
        goto sslfail;
    int nt = cdx_weights_count(w);
    if (!(vt = malloc(sizeof *vt * (size_t)(nt ? nt : 1)))) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < nt; i++) {
        const cdx_tensor_info *ti = cdx_weights_at(w, i);
        if (is_vision_tensor(ti->name)) vt[nv++] = ti;
    }
    if (!nv) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: no image tower tensors", wf);
        goto cleanup;
    }
    qsort(vt, (size_t)nv, sizeof *vt, by_name);
    for (int i = 0; i < nv; i++) {
        const cdx_tensor_info *ti = vt[i];
        const float *data;
        if (!put_text(ctx, "%s", ti->name) || EVP_DigestUpdate(ctx, "", 1) != 1) goto sslfail;
        for (int d = 0; d < ti->ndim; d++)
            if (!put_text(ctx, "%lld,", (long long)ti->shape[d])) goto sslfail;
        if ((st = cdx_weights_f32(w, ti->name, ti->ndim, ti->shape, &data))) goto cleanup;
        if (EVP_DigestUpdate(ctx, data, sizeof(float) * (size_t)ti->numel) != 1) goto sslfail;
    }
    if (EVP_DigestFinal_ex(ctx, h, &len) != 1 || len != CDX_HASH_SIZE) goto sslfail;
    cdx_hash_hex(h, out);
    goto cleanup;
sslfail:
    st = cdx_fail(CDX_ERR_IO, "%s: hashing the image tower failed", wf);
cleanup:
    EVP_MD_CTX_free(ctx);
    free(vt);
    cdx_weights_close(w);
    return st;
}
