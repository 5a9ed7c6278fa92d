/*
 * mkstore.c - build an index store from image files through the store API,
 * the way the indexer does (decode with EXIF orientation, fast
 * preprocessing, vision tower, pHash, content hash, file metadata), for
 * the query-tool tests and the demo when `clipdex index` is not
 * available.
 *
 * usage: mkstore --data DIR --model DIR [--manifest TSV] [--hold SECONDS] FILE...
 *
 * The manifest (optional) overrides metadata per file, one line each:
 *   PATH <TAB> TAKEN_AT (unix seconds or empty) <TAB> MAKE <TAB> MODEL
 * so tests can set capture dates and cameras independently of the
 * decoder's EXIF support.  Files that fail to decode are recorded as
 * errors, as the daemon does.  --hold keeps the writer lock for that many
 * seconds after committing (printing "committed" on stdout first), so a
 * test can query the store while a writer holds it.  Exit 0 when every
 * store write worked.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipdex.h"

struct override {
    char *path;
    int64_t taken_at;
    char *make, *model;
};

static struct override *ovr;
static size_t n_ovr;

static char *field(char **p)
{
    char *s = *p, *t = strchr(s, '\t');
    if (t) {
        *t = 0;
        *p = t + 1;
    } else {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        *p = s + strlen(s);
    }
    return s;
}

static int read_manifest(const char *path)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    if (!f) {
        fprintf(stderr, "mkstore: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (getline(&line, &cap, f) > 0) {
        char *p = line, *fp = field(&p), *ta = field(&p), *mk = field(&p), *md = field(&p);
        char *real = realpath(fp, NULL);
        struct override *o = realloc(ovr, (n_ovr + 1) * sizeof *o);
        if (!o) abort();
        ovr = o;
        ovr[n_ovr].path = real ? real : strdup(fp);
        ovr[n_ovr].taken_at = *ta ? strtoll(ta, NULL, 10) : CDX_TIME_UNKNOWN;
        ovr[n_ovr].make = strdup(mk);
        ovr[n_ovr].model = strdup(md);
        n_ovr++;
    }
    free(line);
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    const char *data = NULL, *model_dir = NULL;
    cdx_model *m = NULL;
    cdx_store *s = NULL;
    cdx_store_opts so = {0};
    cdx_store_model sm = {0};
    char key[2 * CDX_HASH_SIZE + 1], cfg[PATH_MAX];
    float *px = NULL, *emb = NULL;
    int i, failures = 0, indexed = 0, errors = 0, hold = 0;
    char *model_real = NULL;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) data = argv[++i];
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model_dir = argv[++i];
        else if (strcmp(argv[i], "--hold") == 0 && i + 1 < argc) hold = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--manifest") == 0 && i + 1 < argc) {
            if (read_manifest(argv[++i]) != 0) return 2;
        } else break;
    }
    if (!data || !model_dir) {
        fprintf(stderr, "usage: mkstore --data DIR --model DIR [--manifest TSV] FILE...\n");
        return 2;
    }
    if (cdx_model_open(model_dir, CDX_TOWER_VISION, &m) != CDX_OK) goto fail;
    const cdx_model_info *info = cdx_model_get_info(m);
    const cdx_preprocess_cfg *pc = cdx_model_preprocess(m);
    const int S = info->vision.image_size, E = info->projection_dim;
    snprintf(cfg, sizeof cfg, "%s/config.json", model_dir);
    if (cdx_store_model_key(cfg, info->weights_file, key) != CDX_OK) goto fail;
    so.writer = 1;
    if (cdx_store_open(data, &so, &s) != CDX_OK) goto fail;
    sm.key = key;
    sm.name = strrchr(model_dir, '/') ? strrchr(model_dir, '/') + 1 : model_dir;
    model_real = realpath(model_dir, NULL);
    sm.dir = model_real ? model_real : model_dir;
    sm.dim = E;
    if (cdx_store_use_model(s, &sm, NULL) != CDX_OK) goto fail;
    px = malloc(sizeof(float) * 3 * (size_t)S * S);
    emb = malloc(sizeof(float) * (size_t)E);
    if (!px || !emb) abort();
    if (cdx_store_begin(s) != CDX_OK) goto fail;

    for (; i < argc; i++) {
        cdx_file_meta fm;
        cdx_image_meta im;
        cdx_image img = {0};
        cdx_decode_opts o = {0};
        struct stat sb;
        char *real = realpath(argv[i], NULL);
        const char *path = real ? real : argv[i];
        int64_t vid = 0;

        memset(&fm, 0, sizeof fm);
        fm.path = path;
        fm.taken_at = CDX_TIME_UNKNOWN;
        if (stat(path, &sb) != 0) {
            fprintf(stderr, "mkstore: %s: %s\n", path, strerror(errno));
            failures++;
            free(real);
            continue;
        }
        fm.dev = (uint64_t)sb.st_dev;
        fm.ino = (uint64_t)sb.st_ino;
        fm.size = (int64_t)sb.st_size;
        fm.mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        if (cdx_hash_file(path, fm.hash, NULL) != CDX_OK) {
            fprintf(stderr, "mkstore: %s\n", cdx_last_error());
            failures++;
            free(real);
            continue;
        }
        fm.has_hash = 1;
        o.apply_orientation = 1;
        o.min_side = (uint32_t)pc->shortest_edge;
        if (cdx_image_decode(path, &o, &img, &im) != CDX_OK) {
            if (cdx_store_put_error(s, &fm, cdx_last_error()) != CDX_OK) goto fail;
            errors++;
            free(real);
            continue;
        }
        fm.width = (int32_t)im.width;
        fm.height = (int32_t)im.height;
        fm.orientation = im.orientation;
        fm.taken_at = im.taken_at;
        fm.camera_make = im.make[0] ? im.make : NULL;
        fm.camera_model = im.model[0] ? im.model : NULL;
        if (im.has_gps) {
            fm.has_gps = 1;
            fm.gps_lat = im.gps_lat;
            fm.gps_lon = im.gps_lon;
        }
        for (size_t k = 0; k < n_ovr; k++)
            if (strcmp(ovr[k].path, path) == 0) {
                fm.taken_at = ovr[k].taken_at;
                fm.camera_make = *ovr[k].make ? ovr[k].make : NULL;
                fm.camera_model = *ovr[k].model ? ovr[k].model : NULL;
            }
        if (cdx_phash(&img, &fm.phash) == CDX_OK) fm.has_phash = 1;
        if (cdx_store_find_vector(s, fm.hash, &vid) != CDX_OK) goto fail;
        if (!vid) {
            if (cdx_preprocess_exact(pc, &img, px) != CDX_OK || cdx_model_encode_images(m, px, 1, emb, 1) != CDX_OK) {
                cdx_image_release(&img);
                if (cdx_store_put_error(s, &fm, cdx_last_error()) != CDX_OK) goto fail;
                errors++;
                free(real);
                continue;
            }
        }
        cdx_image_release(&img);
        if (cdx_store_put_file(s, &fm, vid ? NULL : emb, NULL) != CDX_OK) goto fail;
        indexed++;
        free(real);
    }
    if (cdx_store_commit(s) != CDX_OK) goto fail;
    if (hold > 0) {
        printf("committed\n");
        fflush(stdout);
        sleep((unsigned)hold);
    }
    cdx_store_close(s);
    free(model_real);
    cdx_model_close(m);
    free(px);
    free(emb);
    fprintf(stderr, "mkstore: %d indexed, %d failed to decode\n", indexed, errors);
    return failures ? 1 : 0;
fail:
    fprintf(stderr, "mkstore: %s\n", cdx_last_error());
    free(model_real);
    cdx_store_close(s);
    cdx_model_close(m);
    free(px);
    free(emb);
    return 1;
}
