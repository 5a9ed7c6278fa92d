/*
 * store_join.c - every pair of stored vectors above a cosine threshold
 * (the similarity self-join behind `clipdex dupes --method semantic`).
 *
 * Why not one range search per vector: that reads all n vectors n times,
 * one matrix-vector product at a time, which is memory-bound (~7.5 ms per
 * query at 100k, so ~13 minutes for a 100k library).  Here the vectors
 * are loaded once and multiplied tile by tile: each 512 x 512 tile of the
 * Gram matrix X X^T is one sgemm whose operands stay in cache, so the
 * join runs at matrix-product speed, and only tiles on or above the
 * diagonal are computed (the matrix is symmetric).
 *
 * The vectors come from SQLite (the truth), read in one read transaction,
 * so the result is exact for every index type (an HNSW or PQ index would
 * only give approximate neighbours) and consistent while a writer runs.
 *
 * Tiles are computed on the compute pool in batches; each task keeps its
 * own list of pairs and the lists are handed to the caller in tile order
 * after every batch, so the callback runs on the calling thread only and
 * the output order does not depend on the thread count.
 */
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "internal.h"
#include "engine/kernels.h"
#include "engine/linear.h"
#include "pool.h"
#include "store_internal.h"

#define TILE 512
/* Tiles computed between two hand-overs to the callback: enough to keep
 * the threads busy, few enough that the pair lists stay small. */
#define BATCH 64

typedef struct {
    int64_t a, b;
    float score;
} pair;

typedef struct {
    pair *v;
    size_t n, cap;
    int nomem;
} pair_list;

struct join {
    const float *x;
    int64_t n;
    int dim;
    float min;
    int64_t nt;          /* tiles per side */
    int64_t first;       /* linear index of the batch's first tile */
    pair_list *out;      /* BATCH lists, one per tile of the batch */
    const unsigned char *gone; /* vectors removed since the caller listed them */
    int reference;
};

/* The tile with linear index t of the upper triangle, row by row:
 * (0,0) (0,1) .. (0,nt-1) (1,1) .. */
static void tile_of(int64_t t, int64_t nt, int64_t *ti, int64_t *tj)
{
    int64_t i = 0;
    while (t >= nt - i) {
        t -= nt - i;
        i++;
    }
    *ti = i;
    *tj = i + t;
}

static void push(pair_list *l, int64_t a, int64_t b, float s)
{
    if (l->n == l->cap) {
        pair *v = cdx_grow(l->v, &l->cap, l->n + 1, sizeof *l->v, 64);
        if (!v) {
            l->nomem = 1;
            return;
        }
        l->v = v;
    }
    l->v[l->n].a = a;
    l->v[l->n].b = b;
    l->v[l->n].score = s;
    l->n++;
}

static void join_tiles(void *vctx, int64_t begin, int64_t end)
{
    struct join *c = vctx;
    float *g = malloc((size_t)TILE * TILE * sizeof *g);
    int64_t ti, tj;
    if (!g) {
        for (int64_t t = begin; t < end; t++) c->out[t].nomem = 1;
        return;
    }
    tile_of(c->first + begin, c->nt, &ti, &tj);
    for (int64_t t = begin; t < end; t++) {
        pair_list *l = &c->out[t];
        int64_t i0 = ti * TILE, j0 = tj * TILE;
        int rows = (int)(c->n - i0 < TILE ? c->n - i0 : TILE);
        int cols = (int)(c->n - j0 < TILE ? c->n - j0 : TILE);
        /* g (rows, cols) = X[i0..] X[j0..]^T */
        if (c->reference)
            cdx_ref_linear(g, c->x + i0 * c->dim, c->x + j0 * c->dim, rows, c->dim, cols);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, c->dim, 1.0f,
                        c->x + i0 * c->dim, c->dim, c->x + j0 * c->dim, c->dim, 0.0f, g, cols);
        for (int r = 0; r < rows; r++) {
            /* on a diagonal tile only the part right of the diagonal */
            const float *row = g + (int64_t)r * cols;
            if (c->gone[i0 + r]) continue;
            for (int k = ti == tj ? r + 1 : 0; k < cols; k++)
                if (row[k] >= c->min && !c->gone[j0 + k]) push(l, i0 + r, j0 + k, row[k]);
        }
        if (++tj == c->nt) tj = ++ti; /* next tile of the upper triangle */
    }
    free(g);
}

cdx_status cdx_store_similar_pairs(cdx_store *s, const int64_t *ids, size_t n, float min_score,
                                   cdx_pair_fn fn, void *user)
{
    cdx_status st = CDX_OK;
    float *x = NULL;
    unsigned char *gone = NULL;
    pair_list out[BATCH];
    int began = 0, stop = 0;

    memset(out, 0, sizeof out);
    if (!s || (n && !ids) || !fn) return cdx_fail(CDX_ERR_ARG, "cdx_store_similar_pairs: bad argument");
    if (!s->model_id) return cdx_fail(CDX_ERR_ARG, "cdx_store_similar_pairs: no model selected");
    if (n < 2) return CDX_OK;
    if (n > SIZE_MAX / sizeof *x / (size_t)s->dim || !(gone = calloc(n, 1)) ||
        !(x = malloc(n * (size_t)s->dim * sizeof *x))) {
        st = cdx_fail(CDX_ERR_NOMEM, "similar pairs: no memory for %zu vectors", n);
        goto cleanup;
    }
    /* A vector the writer removed after the caller listed it has no pairs
     * (the caller's list and this read are two snapshots). */
    if ((st = cdx_store_read_begin(s, &began)) != CDX_OK) goto cleanup;
    for (size_t i = 0; i < n && st == CDX_OK; i++) {
        int found;
        st = cdx_store_vector_read(s, ids[i], x + i * (size_t)s->dim, &found);
        if (st == CDX_OK && !found) {
            gone[i] = 1;
            memset(x + i * (size_t)s->dim, 0, (size_t)s->dim * sizeof *x);
        }
    }
    cdx_store_read_end(s, began);
    if (st != CDX_OK) goto cleanup;

    cdx_threads_internal(); /* OpenBLAS single-threaded inside the pool */
    struct join c = {.x = x, .n = (int64_t)n, .dim = s->dim, .min = min_score,
                     .nt = ((int64_t)n + TILE - 1) / TILE, .out = out, .gone = gone,
                     .reference = cdx_kernels_reference()};
    int64_t total = c.nt * (c.nt + 1) / 2;
    for (c.first = 0; c.first < total && !stop; c.first += BATCH) {
        int64_t m = total - c.first < BATCH ? total - c.first : BATCH;
        cdx_parallel_for(m, 1, join_tiles, &c);
        for (int64_t t = 0; t < m; t++) {
            if (out[t].nomem) {
                st = cdx_fail(CDX_ERR_NOMEM, "similar pairs: out of memory");
                goto cleanup;
            }
            for (size_t p = 0; p < out[t].n && !stop; p++)
                stop = fn(user, (size_t)out[t].v[p].a, (size_t)out[t].v[p].b, out[t].v[p].score);
            out[t].n = 0;
        }
        /* progress for joins that take a while (more than a few batches) */
        if (s->progress && total > 4 * BATCH)
            s->progress("comparing images", c.first + m, total, s->progress_user);
    }
cleanup:
    for (int t = 0; t < BATCH; t++) free(out[t].v);
    free(x);
    free(gone);
    return st;
}
