/*
 * test_image_fast.c - how far the fast path (cdx_image_decode with
 * apply_orientation and min_side = shortest_edge, i.e. DCT-scaled JPEG
 * decoding, then cdx_preprocess_exact) is from the exact path (the same
 * image decoded at full size, oriented the same way, then
 * cdx_preprocess_exact), on every photo of the shared corpus.
 *
 * "Photos" are the corpus JPEGs whose shorter side is at least 448 (twice
 * the model input): smaller ones and other formats decode at full size on
 * both paths (fast == exact).  Files that do not decode are skipped (the
 * corpus tests cover them).
 *
 * Per photo, asserted: PSNR of the two 224x224 preprocessed tensors
 * (measured on the 0..255 pixel scale, i.e. after undoing the
 * normalisation) above 35 dB.  When the ViT-B/32-shaped random test model
 * exists (BUILD/testdata/models/vitb32, made by make testdata), the cosine
 * similarity of the two embeddings is reported and asserted above 0.99.
 *
 * Environment: CLIPDEX_SHARED (default ../shared; the corpus is
 * $CLIPDEX_SHARED/corpus, or CLIPDEX_CORPUS), CLIPDEX_BUILD (default
 * build) for the test model.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clipdex.h"
#include "tap.h"

#define MIN_PSNR 35.0
#define MIN_COSINE 0.99

typedef struct list {
    char **v;
    size_t n, cap;
} list;

static void walk(const char *dir, list *out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d) return;
    while ((e = readdir(d))) {
        char p[4096];
        struct stat sb;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &sb) != 0) continue; /* never follow links */
        if (S_ISDIR(sb.st_mode)) {
            walk(p, out);
        } else if (S_ISREG(sb.st_mode)) {
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 256;
                out->v = realloc(out->v, out->cap * sizeof *out->v);
            }
            out->v[out->n++] = strdup(p);
        }
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    const char *shared = getenv("CLIPDEX_SHARED") ? getenv("CLIPDEX_SHARED") : "../shared";
    const char *build = getenv("CLIPDEX_BUILD") ? getenv("CLIPDEX_BUILD") : "build";
    char corpus[1024], model_dir[1024];
    cdx_preprocess_cfg cfg;
    cdx_model *model = NULL;
    list files = {0};
    double *psnrs, *coss, *scaled;
    size_t n_photos = 0, n_cos = 0, n_scaled = 0;
    float *t = NULL, *emb = NULL;
    int E = 0;

    if (getenv("CLIPDEX_CORPUS")) snprintf(corpus, sizeof corpus, "%s", getenv("CLIPDEX_CORPUS"));
    else snprintf(corpus, sizeof corpus, "%s/corpus", shared);
    walk(corpus, &files);
    if (files.n == 0) {
        printf("1..0 # SKIP no corpus at %s (set CLIPDEX_SHARED)\n", corpus);
        return 0;
    }
    qsort(files.v, files.n, sizeof *files.v, cmp_str);

    /* The CLIP preprocessing of the test model (the default otherwise). */
    cdx_preprocess_cfg_default(&cfg);
    snprintf(model_dir, sizeof model_dir, "%s/testdata/models/vitb32", build);
    if (cdx_model_open(model_dir, CDX_TOWER_VISION, &model) == CDX_OK) {
        const cdx_model_info *mi = cdx_model_get_info(model);
        cfg = *cdx_model_preprocess(model);
        E = mi->projection_dim;
        emb = malloc(sizeof(float) * 2 * (size_t)E);
        diag("embeddings with %s (ViT-B/32-shaped random model, %s)", model_dir, mi->dtype);
    } else {
        diag("no test model (%s): PSNR only", cdx_last_error());
    }
    uint32_t ow, oh;
    cdx_preprocess_output_size(&cfg, 1000, 1000, &ow, &oh);
    const size_t per = 3 * (size_t)ow * oh;
    t = malloc(sizeof(float) * 2 * per);
    psnrs = calloc(files.n, sizeof *psnrs);
    coss = calloc(files.n, sizeof *coss);
    scaled = calloc(files.n, sizeof *scaled);
    if (!t || !psnrs || !coss || !scaled || (model && !emb)) {
        printf("Bail out! out of memory\n");
        return 1;
    }

    for (size_t i = 0; i < files.n; i++) {
        const char *p = files.v[i];
        cdx_image_meta meta;
        cdx_image fast = {0}, full = {0};
        cdx_decode_opts of = {.apply_orientation = 1, .min_side = (uint32_t)cfg.shortest_edge};
        cdx_decode_opts oe = {.apply_orientation = 1};
        const char *rel = p + strlen(corpus) + 1;

        if (cdx_image_decode(p, NULL, NULL, &meta) != CDX_OK || strcmp(meta.format, "jpeg") ||
            (meta.width < meta.height ? meta.width : meta.height) < 2 * (uint32_t)cfg.shortest_edge)
            continue;
        if (cdx_image_decode(p, &of, &fast, NULL) != CDX_OK ||
            cdx_image_decode(p, &oe, &full, NULL) != CDX_OK) {
            cdx_image_release(&fast);
            continue;
        }
        if (cdx_preprocess_exact(&cfg, &fast, t) != CDX_OK ||
            cdx_preprocess_exact(&cfg, &full, t + per) != CDX_OK) {
            ok(0, "%s: preprocessing failed: %s", rel, cdx_last_error());
            goto next;
        }
        double se = 0;
        for (size_t k = 0; k < per; k++) {
            /* back to the 0..255 pixel scale of that channel */
            double d = (t[k] - t[per + k]) * cfg.image_std[k / (per / 3)] / cfg.rescale_factor;
            se += d * d;
        }
        double ps = se == 0 ? 99.0 : 10 * log10(255.0 * 255.0 / (se / per));
        psnrs[n_photos++] = ps;
        if (fast.width != full.width) scaled[n_scaled++] = ps;
        char cosbuf[64] = "";
        int cos_ok = 1;
        if (model && cdx_model_encode_images(model, t, 2, emb, 1) == CDX_OK) {
            double c = 0;
            for (int k = 0; k < E; k++) c += (double)emb[k] * emb[E + k];
            coss[n_cos++] = c;
            cos_ok = c > MIN_COSINE;
            snprintf(cosbuf, sizeof cosbuf, ", embedding cosine %.5f", c);
        }
        ok(ps > MIN_PSNR && cos_ok, "%s: %ux%u decoded at %ux%u: PSNR %.1f dB%s", rel, meta.width,
           meta.height, fast.width, fast.height, ps, cosbuf);
    next:
        cdx_image_release(&fast);
        cdx_image_release(&full);
    }
    ok(n_photos >= 20, "%zu corpus photos compared", n_photos);
    if (n_photos) {
        qsort(psnrs, n_photos, sizeof *psnrs, cmp_dbl);
        diag("fast vs exact PSNR over %zu photos: min %.2f dB, median %.2f dB, max %.2f dB",
             n_photos, psnrs[0], psnrs[n_photos / 2], psnrs[n_photos - 1]);
    }
    if (n_scaled) {
        qsort(scaled, n_scaled, sizeof *scaled, cmp_dbl);
        diag("of which DCT-scaled (short side >= 896): %zu, PSNR min %.2f dB, median %.2f dB",
             n_scaled, scaled[0], scaled[n_scaled / 2]);
    }
    if (n_cos) {
        qsort(coss, n_cos, sizeof *coss, cmp_dbl);
        diag("fast vs exact embedding cosine over %zu photos: min %.6f, median %.6f, max %.6f",
             n_cos, coss[0], coss[n_cos / 2], coss[n_cos - 1]);
    }
    cdx_model_close(model);
    for (size_t i = 0; i < files.n; i++) free(files.v[i]);
    free(files.v);
    free(t);
    free(emb);
    free(psnrs);
    free(coss);
    free(scaled);
    return done_testing();
}
