/*
 * vindex.h - the store's vector index: FAISS, its cache file and the exact
 * scan, with no SQLite and no cdx_store.  Never installed.
 *
 * A cdx_vindex holds the vectors of one model under their ids (the rowids
 * of the store's vectors table) and the change-log position they reflect;
 * store_changes.c fills it from SQLite, in batches.  Ids only ever grow
 * (see vindex.c), which keeps every id list sorted.
 *
 * Ownership: a cdx_vindex is freed with cdx_vindex_free.  Strings it
 * returns live as long as it does.  Not thread-safe: one thread at a time
 * per index (the store's handle is single-threaded too).  Failures return
 * a status and keep the message (cdx_last_error); "bad" reasons (static
 * strings) say that the data handed in does not fit the index, so the
 * caller should rebuild it.
 */
#ifndef CDX_STORE_VINDEX_H
#define CDX_STORE_VINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef struct cdx_vindex cdx_vindex;

/* ---- vindex.c: making and filling an index ---- */

/* An empty index of type factory (FAISS index_factory string) for dim-wide
 * vectors.  When the type must be trained and count vectors are fewer than
 * its training threshold (cdx_vindex_train_min), a Flat index stands in:
 * built is then "Flat" and wanted is factory.  CDX_ERR_ARG for a type
 * FAISS does not know. */
cdx_status cdx_vindex_create(const char *factory, int dim, int64_t count, int64_t train_min,
                             cdx_vindex **out);
/* How many of the count vectors the index wants to be trained on (an even
 * sample), 0 when it needs no training. */
int64_t cdx_vindex_train_size(const cdx_vindex *vx, int64_t count, int64_t train_min);
/* Train on n vectors xb (n, dim). */
cdx_status cdx_vindex_train(cdx_vindex *vx, int64_t n, const float *xb);
/* Add n vectors xb (n, dim) under ids, in ascending id order, each above
 * every id already in; negative ids are skipped (adds a later removal
 * cancelled).  ids and xb are compacted in place.  An id out of order
 * sets *bad and adds nothing. */
cdx_status cdx_vindex_add(cdx_vindex *vx, size_t n, int64_t *ids, float *xb, const char **bad);
/* Remove n ids (reordered in place); an id the index does not hold sets
 * *bad.  Depending on the type they leave FAISS or become tombstones. */
cdx_status cdx_vindex_remove(cdx_vindex *vx, int64_t *ids, size_t n, const char **bad);
/* The batches given so far bring the index to change-log position pos;
 * applied changes count towards cdx_vindex_unsaved. */
void cdx_vindex_advance(cdx_vindex *vx, int64_t pos, int64_t applied);
/* Apply FAISS search parameters ("nprobe=16"; NULL: none) when the index
 * is of the configured type; parameters that do not apply are a warning. */
cdx_status cdx_vindex_set_params(cdx_vindex *vx, const char *params);
void cdx_vindex_free(cdx_vindex *vx);

/* ---- vindex.c: the cache file ---- */

/* Read and verify the file at path, made for database uuid, model model_id
 * of width dim.  NULL *out with a *why ("missing", "made for another
 * database", ...) when it cannot be used; the status is for real failures
 * (memory). */
cdx_status cdx_vindex_read(const char *path, const char *uuid, int64_t model_id, int dim,
                           cdx_vindex **out, const char **why);
/* Write the index to path atomically (temp file, fsync, rename, fsync of
 * dir, the directory holding path); a failure leaves the old file.  Then
 * the saved position is the current one, and a Flat index continues from
 * the new file, mapped. */
cdx_status cdx_vindex_save(cdx_vindex *vx, const char *dir, const char *path, const char *uuid,
                           int64_t model_id);

/* ---- vindex.c: state ---- */

int64_t cdx_vindex_ntotal(const cdx_vindex *vx); /* live vectors */
int cdx_vindex_dim(const cdx_vindex *vx);
int64_t cdx_vindex_pos(const cdx_vindex *vx);
int64_t cdx_vindex_saved_pos(const cdx_vindex *vx); /* -1: never saved */
int64_t cdx_vindex_unsaved(const cdx_vindex *vx);
const char *cdx_vindex_built(const cdx_vindex *vx);
const char *cdx_vindex_wanted(const cdx_vindex *vx);
/* The training threshold for a factory string (configured > 0 wins). */
int64_t cdx_vindex_train_min(const char *factory, int64_t configured);
/* Should the writer rebuild (trainable now, or too many tombstones)? */
int cdx_vindex_wants_rebuild(const cdx_vindex *vx, int64_t live, int64_t train_min);

/* ---- vindex.c: queries ---- */

/* k nearest: labels (-1 padded) and scores, k <= ntotal handled. */
cdx_status cdx_vindex_search(cdx_vindex *vx, const float *q, int64_t k, float *scores,
                             int64_t *labels, int64_t *n_out);
cdx_status cdx_vindex_range(cdx_vindex *vx, const float *q, float min_score, int64_t **ids,
                            float **scores, size_t *n);
/* The sorted live ids (heap array, caller frees) for check. */
cdx_status cdx_vindex_ids(const cdx_vindex *vx, int64_t **ids, size_t *n);
/* Reconstruct one stored vector (CDX_ERR_UNSUPPORTED when the index type
 * cannot). */
cdx_status cdx_vindex_reconstruct(const cdx_vindex *vx, int64_t id, float *out);

/* ---- faiss_dist.c ---- */

/* Which distance kernels FAISS runs on ("avx2", "scalar"; "faiss" where
 * its own are kept).  Referencing it also links faiss_dist.o in ahead of
 * libfaiss.a, which is what makes its definitions win. */
const char *cdx_faiss_dist_impl(void);

/* FAISS's distance functions (faiss/utils/distances.h) under their C++
 * link names: on x86-64 faiss_dist.c defines them, and they replace the
 * weakened ones of libfaiss.a (the Makefile's FAISS_WEAK lists the same
 * names). */
float cdx_fvec_inner_product(const float *x, const float *y, size_t d)
    __asm__("_ZN5faiss18fvec_inner_productEPKfS1_m");
float cdx_fvec_L2sqr(const float *x, const float *y, size_t d) __asm__("_ZN5faiss10fvec_L2sqrEPKfS1_m");
float cdx_fvec_norm_L2sqr(const float *x, size_t d) __asm__("_ZN5faiss15fvec_norm_L2sqrEPKfm");
void cdx_fvec_inner_products_ny(float *dis, const float *x, const float *y, size_t d, size_t ny)
    __asm__("_ZN5faiss22fvec_inner_products_nyEPfPKfS2_mm");
void cdx_fvec_L2sqr_ny(float *dis, const float *x, const float *y, size_t d, size_t ny)
    __asm__("_ZN5faiss13fvec_L2sqr_nyEPfPKfS2_mm");

/* ---- store_scan.c ---- */

/* scores[i] = xb[i] . q for the (n, d) row-major matrix xb; the AVX2 kernel
 * or the scalar reference (CLIPDEX_REFERENCE=1), over the thread pool. */
void cdx_scan_ip(const float *xb, int64_t n, int d, const float *q, float *scores);
void cdx_scan_ip_ref(const float *xb, int64_t n, int d, const float *q, float *scores);
/* The k best of n scores (higher first, ties by lower position): writes
 * min(k, n) scores and positions, returns that count. */
int64_t cdx_topk(const float *scores, int64_t n, int64_t k, float *out_s, int64_t *out_pos);

/* Is x in v[0..n), sorted ascending?  Binary search (ids, tombstones,
 * candidate lists). */
static inline int cdx_sorted_has(const int64_t *v, size_t n, int64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x) lo = mid + 1;
        else if (v[mid] > x) hi = mid;
        else return 1;
    }
    return 0;
}

#endif
