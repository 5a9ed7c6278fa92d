/*
 * train_store.c - `clipdex train --lock image --from-store`: the image
 * embeddings of the pairs, taken from the index store instead of decoding
 * and embedding the images (LiT: the image tower is frozen, so its output
 * for an image is the vector the indexer already stored).
 *
 * The store is the one the other commands use (CLIPDEX_DATA, else
 * clipdex.conf's data directory), its vector space the training model's
 * (selected by the model's key, or by its image tower for a model tuned
 * from the indexed one; cdx_store_use_model).  A pair's image is found by
 * its path as given, then by its canonical path; one with no vector in
 * that space is skipped with one line.
 *
 * The vectors are what the store holds: the indexer's preprocessing
 * (EXIF orientation applied, fast resize) at the precision it ran, stored
 * L2-normalised as float16.  The loss only sees normalised embeddings, so
 * the norm is not lost; the float16 rounding (relative 2^-11 per entry)
 * is the difference from decoding the images again.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "filters.h"
#include "train_store.h"

/* The vector of path in the selected space: 1 found, 0 not, -1 store error. */
static int stored_vector(qctx *c, const char *path, float *out)
{
    cdx_file_info fi;
    int found = 0;
    char real[PATH_MAX];
    for (int pass = 0; pass < 2 && !found; pass++) {
        const char *p = path;
        if (pass == 1) {
            if (!realpath(path, real) || !strcmp(real, path)) break;
            p = real;
        }
        if (cdx_store_get_file(c->store, p, &fi, &found) != CDX_OK) return -1;
    }
    if (!found) return 0;
    int ok = fi.state == CDX_FILE_OK && fi.vector_id > 0 && fi.model_id == c->model_id;
    int64_t vid = fi.vector_id;
    cdx_file_info_release(&fi);
    if (!ok) return 0;
    return cdx_store_get_vector(c->store, vid, out) == CDX_OK ? 1 : -1;
}

int train_store_vectors(const cdx_cmd *self, const char *model_dir, int n, char *const *paths, int E,
                        float *vecs, int *have, int *missing)
{
    qctx c = {0};
    int ret;
    c.self = self;
    c.model_opt = model_dir;
    c.identity_only = 1; /* the model only names the vector space */
    *missing = 0;
    if ((ret = qctx_open_store(&c)) || (ret = qctx_open_model(&c, CDX_TOWER_TEXT))) goto out;
    if (c.dim != E) {
        ret = error("%s: the store's vectors have dimension %d, the model %d", c.data_dir, c.dim, E);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        int r = stored_vector(&c, paths[i], vecs + (size_t)i * E);
        if (r < 0) {
            ret = error("%s", cdx_last_error());
            goto out;
        }
        have[i] = r;
        if (!r) {
            warning("%s: no vector for this model in the store %s (skipped)", paths[i], c.data_dir);
            (*missing)++;
        }
    }
    fprintf(stderr, "clipdex: train: image embeddings from the store %s (%d of %d images)\n", c.data_dir,
            n - *missing, n);
out:
    qctx_release(&c);
    return ret;
}
