/*
 * store_search.c - k-NN and range search over the current model's vectors,
 * with metadata filters evaluated together with the vector search.
 *
 * Every search runs in one read transaction: the FAISS index is first
 * brought to that snapshot's change-log position, so the vector results
 * and the file rows they are turned into describe the same state.
 *
 * Filters: the files matching the filter give a candidate set of vectors.
 * A small set (up to a sixteenth of the index, at least 4096) is scored
 * exactly from the float16 vectors in SQLite, which is cheaper than asking
 * FAISS for most of the index.  A larger set asks FAISS for a growing k
 * and keeps the candidates, until k files are found or FAISS has returned
 * everything: results are never lost to a top-k cut made before
 * filtering.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

typedef struct vhit { int64_t id; float score; } vhit;

static int cmp_vhit(const void *a, const void *b)
{
    const vhit *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static int has_filter(const cdx_store_filter *f)
{
    return f && (f->after || f->before || (f->under && *f->under) || (f->camera && *f->camera) ||
                 f->n_exts || f->hash);
}

static cdx_status normalised(const float *q, int dim, float **out)
{
    double ss = 0;
    float *v;
    for (int i = 0; i < dim; i++) {
        if (!isfinite(q[i])) return cdx_fail(CDX_ERR_ARG, "query vector has a non-finite component");
        ss += (double)q[i] * q[i];
    }
    if (ss <= 0) return cdx_fail(CDX_ERR_ARG, "query vector is all zeros");
    v = malloc((size_t)dim * sizeof *v);
    if (!v) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < dim; i++) v[i] = (float)(q[i] * inv);
    *out = v;
    return CDX_OK;
}

/* The sorted distinct vector ids of the current model's files matching f. */
static cdx_status candidates(cdx_store *s, const cdx_store_filter *f, int64_t **ids, size_t *n)
{
    cdx_sb b = {0};
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    int64_t *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc, idx = 2;

    cdx_sb_add(&b, "SELECT DISTINCT f.vector_id FROM files f JOIN vectors v ON v.id = f.vector_id "
                   "WHERE v.model_id = ? AND f.state = 0");
    cdx_filter_sql(f, 0, &b);
    cdx_sb_add(&b, " ORDER BY f.vector_id");
    if (b.oom) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (sqlite3_prepare_v2(s->db, b.s, -1, &q, NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto cleanup;
    }
    sqlite3_bind_int64(q, 1, s->model_id);
    if ((st = cdx_filter_bind(q, f, 0, &idx)) != CDX_OK) goto cleanup;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cnt == cap) {
            int64_t *p = cdx_grow(v, &cap, cnt + 1, sizeof *v, 256);
            if (!p) {
                st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            v = p;
        }
        v[cnt++] = sqlite3_column_int64(q, 0);
    }
    if (rc != SQLITE_DONE) st = cdx_store_sqlfail(s, "filter");
cleanup:
    sqlite3_finalize(q);
    free(b.s);
    if (st != CDX_OK) {
        free(v);
        return st;
    }
    *ids = v;
    *n = cnt;
    return CDX_OK;
}

/* Exact scores of the candidate vectors, best first. */
static cdx_status score_exact(cdx_store *s, const float *q, const int64_t *ids, size_t n,
                              vhit **out, size_t *n_out)
{
    sqlite3_stmt *st_q;
    cdx_status st = CDX_OK;
    vhit *h = malloc((n ? n : 1) * sizeof *h);
    float *v = malloc((size_t)s->dim * sizeof *v);
    size_t k = 0;
    if (!h || !v) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        int rc;
        st_q = cdx_store_stmt(s, ST_VECTOR_DATA, "SELECT data FROM vectors WHERE id = ? AND model_id = ?");
        if (!st_q) {
            st = CDX_ERR_STORE;
            goto cleanup;
        }
        sqlite3_bind_int64(st_q, 1, ids[i]);
        sqlite3_bind_int64(st_q, 2, s->model_id);
        rc = sqlite3_step(st_q);
        if (rc != SQLITE_ROW) {
            if (rc == SQLITE_DONE) continue;
            st = cdx_store_sqlfail(s, "read vector");
            goto cleanup;
        }
        st = cdx_vec_decode(sqlite3_column_blob(st_q, 0), (size_t)sqlite3_column_bytes(st_q, 0),
                            s->dim, v);
        sqlite3_reset(st_q);
        if (st != CDX_OK) goto cleanup;
        float dot = 0;
        for (int j = 0; j < s->dim; j++) dot += q[j] * v[j];
        h[k].id = ids[i];
        h[k].score = dot;
        k++;
    }
    qsort(h, k, sizeof *h, cmp_vhit);
    *out = h;
    h = NULL;
    *n_out = k;
cleanup:
    free(h);
    free(v);
    return st;
}

/* FAISS results for the k best vectors, optionally restricted to a sorted
 * candidate set (over-fetching as needed). */
static cdx_status score_faiss(cdx_store *s, const float *q, size_t want, const int64_t *cand,
                              size_t n_cand, vhit **out, size_t *n_out)
{
    int64_t ntot = cdx_vindex_ntotal(s->vx), kk, got = 0;
    cdx_status st = CDX_OK;
    float *d = NULL;
    int64_t *l = NULL;
    vhit *h = NULL;
    size_t k = 0;

    if (cand) {
        /* Expected k for `want` hits at this selectivity, doubled. */
        double frac = ntot > 0 ? (double)n_cand / (double)ntot : 1.0;
        double est = (double)want / (frac > 0 ? frac : 1.0) * 2.0;
        kk = est > (double)ntot ? ntot : (int64_t)est;
    } else {
        kk = (int64_t)want;
    }
    if (kk < (int64_t)want) kk = (int64_t)want;
    for (;;) {
        if (kk > ntot) kk = ntot;
        free(d);
        free(l);
        d = malloc((size_t)(kk ? kk : 1) * sizeof *d);
        l = malloc((size_t)(kk ? kk : 1) * sizeof *l);
        if (!d || !l) {
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        if ((st = cdx_vindex_search(s->vx, q, kk, d, l, &got)) != CDX_OK) goto cleanup;
        k = 0;
        for (int64_t i = 0; i < got; i++)
            if (!cand || cdx_sorted_has(cand, n_cand, l[i])) k++;
        if (k >= want || kk >= ntot) break;
        kk *= 4;
    }
    h = malloc((k ? k : 1) * sizeof *h);
    if (!h) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    k = 0;
    for (int64_t i = 0; i < got; i++)
        if (!cand || cdx_sorted_has(cand, n_cand, l[i])) {
            h[k].id = l[i];
            h[k].score = d[i];
            k++;
        }
    *out = h;
    *n_out = k;
cleanup:
    free(d);
    free(l);
    return st;
}

void cdx_store_hits_free(cdx_store_hit *hits, size_t n)
{
    if (!hits) return;
    for (size_t i = 0; i < n; i++) cdx_file_info_release(&hits[i].file);
    free(hits);
}

cdx_status cdx_store_search(cdx_store *s, const float *query, size_t k, const cdx_store_filter *f,
                            float min_score, cdx_store_hit **hits_out, size_t *n_hits)
{
    cdx_status st;
    float *q = NULL;
    int64_t *cand = NULL;
    size_t n_cand = 0, n_vh = 0, n_h = 0, want;
    vhit *vh = NULL;
    cdx_store_hit *hits = NULL;
    sqlite3_stmt *fq = NULL;
    cdx_sb b = {0};
    int began = 0, filtered = has_filter(f);

    if (!s || !query || !hits_out || !n_hits) return cdx_fail(CDX_ERR_ARG, "cdx_store_search: bad argument");
    if (!s->model_id || !s->vx) return cdx_fail(CDX_ERR_ARG, "cdx_store_search: no model selected");
    *hits_out = NULL;
    *n_hits = 0;
    if (k == 0) return CDX_OK;
    if ((st = normalised(query, s->dim, &q)) != CDX_OK) return st;
    if ((st = cdx_store_read_begin(s, &began)) != CDX_OK) goto cleanup;
    if ((st = cdx_store_index_sync(s)) != CDX_OK) goto cleanup;

    /* Each vector has at least one file (files sharing content share it),
     * so k vectors give at least k files; more are fetched only when the
     * file query comes up short (a filter dropping some). */
    want = k;
    if (filtered) {
        if ((st = candidates(s, f, &cand, &n_cand)) != CDX_OK) goto cleanup;
        if (n_cand == 0) goto done;
        size_t exact_max = (size_t)(cdx_vindex_ntotal(s->vx) / 16);
        if (exact_max < 4096) exact_max = 4096;
        if (n_cand <= exact_max) st = score_exact(s, q, cand, n_cand, &vh, &n_vh);
        else st = score_faiss(s, q, want, cand, n_cand, &vh, &n_vh);
    } else {
        st = score_faiss(s, q, want, NULL, 0, &vh, &n_vh);
    }
    if (st != CDX_OK) goto cleanup;

    /* Vectors -> files, best first, files of one vector in path order. */
    cdx_sb_add(&b, "SELECT " CDX_FILE_COLUMNS CDX_FILE_FROM
                   " WHERE f.vector_id = ? AND f.state = 0");
    cdx_filter_sql(f, 0, &b);
    cdx_sb_add(&b, " ORDER BY f.path");
    if (b.oom) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (sqlite3_prepare_v2(s->db, b.s, -1, &fq, NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto cleanup;
    }
    hits = calloc(k, sizeof *hits);
    if (!hits) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n_vh && n_h < k; i++) {
        int rc, idx = 2;
        if (vh[i].score < min_score) break;
        sqlite3_reset(fq);
        sqlite3_clear_bindings(fq);
        sqlite3_bind_int64(fq, 1, vh[i].id);
        if ((st = cdx_filter_bind(fq, f, 0, &idx)) != CDX_OK) goto cleanup;
        while (n_h < k && (rc = sqlite3_step(fq)) == SQLITE_ROW) {
            cdx_file_info fi;
            cdx_store_row_to_info(fq, &fi);
            if ((st = cdx_file_info_copy(&fi, &hits[n_h].file)) != CDX_OK) goto cleanup;
            /* Stored vectors are float16-rounded, so an image's cosine to
             * itself can come out as 1.0001: a cosine is at most 1. */
            hits[n_h].score = vh[i].score > 1.0f ? 1.0f : vh[i].score;
            n_h++;
        }
        if (n_h < k && rc != SQLITE_DONE) {
            st = cdx_store_sqlfail(s, "files of a result");
            goto cleanup;
        }
    }
done:
    *hits_out = hits;
    hits = NULL;
    *n_hits = n_h;
cleanup:
    sqlite3_finalize(fq);
    cdx_store_read_end(s, began);
    if (hits) cdx_store_hits_free(hits, n_h);
    free(b.s);
    free(vh);
    free(cand);
    free(q);
    return st;
}

cdx_status cdx_store_range_search(cdx_store *s, const float *query, float min_score,
                                  size_t max_results, int64_t **ids, float **scores, size_t *n)
{
    cdx_status st;
    float *q = NULL;
    int began = 0;

    if (!s || !query || !ids || !scores || !n)
        return cdx_fail(CDX_ERR_ARG, "cdx_store_range_search: bad argument");
    if (!s->model_id || !s->vx) return cdx_fail(CDX_ERR_ARG, "cdx_store_range_search: no model selected");
    if ((st = normalised(query, s->dim, &q)) != CDX_OK) return st;
    if ((st = cdx_store_read_begin(s, &began)) == CDX_OK && (st = cdx_store_index_sync(s)) == CDX_OK) {
        st = cdx_vindex_range(s->vx, q, min_score, ids, scores, n);
        if (st == CDX_OK && max_results && *n > max_results) *n = max_results;
    }
    cdx_store_read_end(s, began);
    free(q);
    return st;
}
