/*
 * search_query.c - the query vector: rclip's term arithmetic (see
 * cmd_search.c), shared by `clipdex search` and `clipdex serve`.
 */
#include <stdlib.h>
#include <string.h>

#include "search.h"
#include "banned.h"

int query_vector(qctx *c, const qterm *t, size_t n, float *q, int64_t *image_file_id)
{
    float *e = xcalloc((size_t)c->dim, sizeof *e);
    int ret = 0;

    memset(q, 0, (size_t)c->dim * sizeof *q);
    if (image_file_id) *image_file_id = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i].vec) {
            memcpy(e, t[i].vec, (size_t)c->dim * sizeof *e);
        } else if (t[i].image) {
            int64_t fid = 0;
            if ((ret = image_vector(c, t[i].value, e, &fid)) != 0) goto cleanup;
            if (image_file_id) *image_file_id = fid;
        } else if (cdx_model_encode_text(c->model, t[i].value, e, 1) != CDX_OK) {
            ret = error("%s", cdx_last_error());
            goto cleanup;
        }
        for (int d = 0; d < c->dim; d++) q[d] += (float)(t[i].sign * t[i].weight) * e[d];
    }
    double ss = 0;
    for (int d = 0; d < c->dim; d++) ss += (double)q[d] * q[d];
    if (!(ss > 1e-12)) ret = error("the terms cancel out: the query vector is zero");
cleanup:
    free(e);
    return ret;
}
