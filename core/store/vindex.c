/*
 * vindex.c - the store's FAISS side: one in-memory vector index and its
 * cache file.  It knows FAISS and files, not SQLite: store_changes.c reads
 * the vectors table and the change log and hands it batches of (id,
 * vector) to add and ids to remove (the API is in vindex.h).
 *
 * The index is an IndexIDMap2 around whatever index_factory string the
 * configuration names (default "Flat"), with the inner-product metric on
 * L2-normalised vectors, so scores are cosines.  FAISS ids are the SQLite
 * rowids of the vectors table; since those are AUTOINCREMENT (never
 * reused) and a vector is added to the log before it is ever removed, the
 * ids in an index only grow: the IDMap's id list stays sorted, which gives
 * membership tests by binary search.  cdx_vindex_add holds the caller to
 * that (an id at or below the largest one in is refused as "bad").
 *
 * The cache file index-<model>.faiss is:
 *   vx_header (host byte order; a file from another architecture fails
 *   the endianness check and is rebuilt) | tombstone ids (int64) | padding
 *   | FAISS write_index payload.
 * The header records the database's uuid, the model, the change-log
 * position the index reflects, the id count and an order-independent hash
 * of the ids, and the exact payload size, so a truncated, foreign or
 * outdated file is recognised before FAISS parses it.  The payload itself
 * is not checksummed: hashing hundreds of MB at every open would cost more
 * than the whole open is allowed to take, and the file is only ever
 * replaced by an atomic rename; `clipdex check` compares the stored values
 * with SQLite instead.
 *
 * Flat indexes (the default) are held in two parts: the "base", the
 * vectors of the file, mapped read-only straight from the page cache, and
 * the "delta", an in-memory IndexIDMap2(IndexFlatIP) of what was added
 * since; removals from the base are tombstones.  Saving writes base and
 * delta merged as one ordinary FAISS IndexIDMap2(IndexFlatIP), then maps
 * the new file as the base.  Why: faiss_read_index copies the whole file
 * into fresh memory, and on the development VM the page faults alone make
 * that 125 ms for 100k x 512 (205 MB), against 150 ms for the whole open;
 * mapping the file costs under a millisecond.  The payload is FAISS's own
 * format, parsed only far enough to find the float array and the ids (its
 * IndexFlat layout has not changed since 2017); the padding before the
 * payload puts the floats on a 64-byte boundary.  Anything that does not
 * parse as exactly that goes through faiss_read_index.
 *
 * Search: Flat indexes are scanned by store_scan.c (Debian's libfaiss is
 * built for baseline SSE2 and scanned ten times slower), base and delta
 * alike; every other type searches in FAISS, with the vectorised distance
 * functions of faiss_dist.c.
 *
 * Removal: FAISS's remove_ids is used only when the sub-index stores its
 * codes in one array that removal compacts in order (Flat, SQ, LSH), since
 * IndexIDMap translates positions to ids.  HNSW has no remove_ids, and IVF
 * keeps its old positions after a removal, which silently shifts every
 * later id of an IndexIDMap (measured with FAISS 1.7.3: after removing one
 * id, 50 of 50 self-queries returned a neighbour's id).  Those types keep
 * removed ids as tombstones instead: searches ask FAISS for k + tombstones
 * results and drop them, and the writer rebuilds once they pass 10% of the
 * index.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/IndexLSH_c.h>
#include <faiss/c_api/IndexScalarQuantizer_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include "vindex.h"

#define VX_MAGIC "CDXFAISS"
#define VX_VERSION 1
#define VX_ENDIAN 0x0102030405060708ull

/* Every field is 8-byte sized or a multiple of 8 bytes: no padding. */
typedef struct vx_header {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    uint64_t endian;
    char uuid[40];
    int64_t model_id;
    int64_t dim;
    int64_t pos;
    int64_t ntotal;
    uint64_t idsum;
    uint64_t n_tomb;
    uint64_t payload_offset;
    uint64_t payload_bytes;
    int64_t can_remove;
    char built[128];
    char wanted[128];
    uint64_t check; /* FNV-1a of every byte before this field */
} vx_header;

struct cdx_vindex {
    FaissIndex *idx;      /* IndexIDMap2, owns its sub-index; for Flat the delta */
    FaissIndexFlat *flat; /* idx's sub-index when it is an IndexFlat */
    /* Flat only: the base, mapped from the file (base_n = 0 when none). */
    void *map;
    size_t map_len;
    const float *base_xb; /* (base_n, dim) row-major, inside map */
    int64_t *base_ids;    /* sorted, a heap copy (the file's may be unaligned) */
    int64_t base_n;
    int dim;
    int64_t pos;       /* change-log position reflected */
    int64_t saved_pos; /* position of the file on disk, -1: none */
    int64_t unsaved;   /* changes applied since loaded or saved */
    int can_remove;
    int64_t *tomb; /* sorted */
    size_t n_tomb, cap_tomb;
    char built[128];  /* what the index is */
    char wanted[128]; /* what the configuration asked for */
};

static uint64_t fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* splitmix64: spreads ids so that the sum detects swapped/lost ids. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static cdx_status faiss_fail(const char *what)
{
    const char *e = faiss_get_last_error();
    return cdx_fail(CDX_ERR_STORE, "faiss: %s: %s", what, e ? e : "unknown error");
}

static void free_parts(cdx_vindex *vx)
{
    if (vx->idx) faiss_Index_free(vx->idx);
    if (vx->map) munmap(vx->map, vx->map_len);
    free(vx->base_ids);
    free(vx->tomb);
}

void cdx_vindex_free(cdx_vindex *vx)
{
    if (!vx) return;
    free_parts(vx);
    free(vx);
}

int64_t cdx_vindex_ntotal(const cdx_vindex *vx)
{
    return vx ? vx->base_n + (int64_t)faiss_Index_ntotal(vx->idx) - (int64_t)vx->n_tomb : 0;
}
int64_t cdx_vindex_pos(const cdx_vindex *vx) { return vx ? vx->pos : 0; }
int cdx_vindex_dim(const cdx_vindex *vx) { return vx ? vx->dim : 0; }
int64_t cdx_vindex_saved_pos(const cdx_vindex *vx) { return vx ? vx->saved_pos : -1; }
int64_t cdx_vindex_unsaved(const cdx_vindex *vx) { return vx ? vx->unsaved : 0; }
const char *cdx_vindex_built(const cdx_vindex *vx) { return vx ? vx->built : ""; }
const char *cdx_vindex_wanted(const cdx_vindex *vx) { return vx ? vx->wanted : ""; }

/* "IVF4096,PQ64" -> 4096 (0 when no IVF). */
static int64_t ivf_lists(const char *factory)
{
    const char *p = strstr(factory, "IVF");
    if (!p) return 0;
    return strtoll(p + 3, NULL, 10);
}

int64_t cdx_vindex_train_min(const char *factory, int64_t configured)
{
    /* FAISS's k-means wants >= 39 points per centroid and prints a warning
     * on stderr below that; 40 per list keeps it quiet.  PQ codebooks have
     * 256 centroids per sub-quantizer: 10000 covers those. */
    if (configured > 0) return configured;
    int64_t n = 40 * ivf_lists(factory);
    return n > 10000 ? n : 10000;
}

int cdx_vindex_wants_rebuild(const cdx_vindex *vx, int64_t live, int64_t train_min)
{
    if (!vx) return 0;
    if (strcmp(vx->built, vx->wanted) != 0 && live >= cdx_vindex_train_min(vx->wanted, train_min))
        return 1;
    /* (Flat tombstones go at the next save, which merges base and delta.) */
    return !vx->flat && vx->n_tomb > 1000 && (int64_t)vx->n_tomb > live / 10;
}

/* ---- id helpers ---- */

static void id_map(const cdx_vindex *vx, const int64_t **ids, size_t *n)
{
    idx_t *p = NULL;
    size_t k = 0;
    faiss_IndexIDMap2_id_map((FaissIndexIDMap2 *)vx->idx, &p, &k);
    *ids = (const int64_t *)p;
    *n = k;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Where an id's vector lives (tombstones aside). */
typedef enum { ID_NOWHERE = 0, ID_IN_BASE, ID_IN_IDX } id_home;

static id_home id_home_of(const cdx_vindex *vx, int64_t id)
{
    const int64_t *ids;
    size_t n;
    if (vx->base_n && cdx_sorted_has(vx->base_ids, (size_t)vx->base_n, id)) return ID_IN_BASE;
    id_map(vx, &ids, &n);
    return cdx_sorted_has(ids, n, id) ? ID_IN_IDX : ID_NOWHERE;
}

static int is_live(const cdx_vindex *vx, int64_t id)
{
    return id_home_of(vx, id) != ID_NOWHERE && !cdx_sorted_has(vx->tomb, vx->n_tomb, id);
}

/* The largest id ever added (0 when empty). */
static int64_t last_id(const cdx_vindex *vx)
{
    const int64_t *ids;
    size_t n;
    int64_t last = vx->base_n ? vx->base_ids[vx->base_n - 1] : 0;
    id_map(vx, &ids, &n);
    if (n && ids[n - 1] > last) last = ids[n - 1];
    return last;
}

cdx_status cdx_vindex_ids(const cdx_vindex *vx, int64_t **out, size_t *n_out)
{
    const int64_t *ids;
    size_t n, k = 0;
    id_map(vx, &ids, &n);
    int64_t *v = malloc(((size_t)vx->base_n + n + 1) * sizeof *v);
    if (!v) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < vx->base_n; i++)
        if (!cdx_sorted_has(vx->tomb, vx->n_tomb, vx->base_ids[i])) v[k++] = vx->base_ids[i];
    for (size_t i = 0; i < n; i++)
        if (!cdx_sorted_has(vx->tomb, vx->n_tomb, ids[i])) v[k++] = ids[i];
    qsort(v, k, sizeof *v, cmp_i64);
    *out = v;
    *n_out = k;
    return CDX_OK;
}

static uint64_t ids_sum(const int64_t *ids, size_t n)
{
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) h += mix64((uint64_t)ids[i]);
    return h;
}

/* ---- creating indexes ---- */

cdx_status cdx_vindex_set_params(cdx_vindex *vx, const char *params)
{
    FaissParameterSpace *ps = NULL;
    cdx_status st = CDX_OK;
    /* The parameters are meant for the configured type; a Flat stand-in
     * (not enough vectors to train yet) has none to set. */
    if (!params || strcmp(vx->built, vx->wanted) != 0) return CDX_OK;
    if (faiss_ParameterSpace_new(&ps) != 0) return faiss_fail("parameter space");
    /* A warning, not an error: searching still works without them, and an
     * index type changed in the configuration should not stop the daemon
     * over a leftover tuning knob. */
    if (faiss_ParameterSpace_set_index_parameters(ps, vx->idx, params) != 0)
        CDX_WARN("search parameters '%s' do not apply to index '%s' (ignored): %s",
                 params, vx->built, faiss_get_last_error());
    faiss_ParameterSpace_free(ps);
    return st;
}

/* Whether remove_ids keeps an IndexIDMap2 correct (see the top). */
static void probe_remove(cdx_vindex *vx)
{
    FaissIndex *sub = faiss_IndexIDMap2_sub_index((FaissIndexIDMap2 *)vx->idx);
    FaissIDSelectorBatch *sel = NULL;
    idx_t probe = -1;
    size_t nrem = 0;
    vx->can_remove = 0;
    if (!sub || !(faiss_IndexFlat_cast(sub) || faiss_IndexScalarQuantizer_cast(sub) ||
                  faiss_IndexLSH_cast(sub)))
        return;
    if (faiss_IDSelectorBatch_new(&sel, 1, &probe) == 0) {
        vx->can_remove = faiss_Index_remove_ids(vx->idx, (FaissIDSelector *)sel, &nrem) == 0;
        faiss_IDSelector_free((FaissIDSelector *)sel);
    }
}

/* An empty IndexIDMap2 over factory (inner product). */
static cdx_status make_index(const char *factory, int dim, cdx_vindex **out)
{
    FaissIndex *sub = NULL;
    FaissIndexIDMap2 *map = NULL;
    cdx_vindex *vx;

    if (strlen(factory) >= sizeof vx->built)
        return cdx_fail(CDX_ERR_ARG, "index type '%s' is too long", factory);
    if (faiss_index_factory(&sub, dim, factory, METRIC_INNER_PRODUCT) != 0)
        return cdx_fail(CDX_ERR_ARG, "index type '%s': %s", factory, faiss_get_last_error());
    if (faiss_IndexIDMap2_new(&map, sub) != 0) {
        faiss_Index_free(sub);
        return faiss_fail("IndexIDMap2");
    }
    faiss_IndexIDMap2_set_own_fields(map, 1);
    vx = calloc(1, sizeof *vx);
    if (!vx) {
        faiss_Index_free((FaissIndex *)map);
        return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    }
    vx->idx = (FaissIndex *)map;
    vx->flat = faiss_IndexFlat_cast(sub);
    vx->dim = dim;
    vx->saved_pos = -1;
    snprintf(vx->built, sizeof vx->built, "%s", factory);
    snprintf(vx->wanted, sizeof vx->wanted, "%s", factory);
    if (faiss_Index_is_trained(vx->idx)) probe_remove(vx);
    CDX_DEBUG("FAISS index %s (d=%d), distance kernels: %s", factory, dim, cdx_faiss_dist_impl());
    *out = vx;
    return CDX_OK;
}

static cdx_status tomb_add(cdx_vindex *vx, int64_t id)
{
    if (vx->n_tomb == vx->cap_tomb) {
        int64_t *p = cdx_grow(vx->tomb, &vx->cap_tomb, vx->n_tomb + 1, sizeof *vx->tomb, 64);
        if (!p) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
        vx->tomb = p;
    }
    vx->tomb[vx->n_tomb++] = id;
    return CDX_OK;
}

/* ---- filling an index ---- */

cdx_status cdx_vindex_create(const char *factory, int dim, int64_t count, int64_t train_min,
                             cdx_vindex **out)
{
    cdx_status st;
    cdx_vindex *vx = NULL;

    *out = NULL;
    if ((st = make_index(factory, dim, &vx)) != CDX_OK) return st;
    if (!faiss_Index_is_trained(vx->idx) && count < cdx_vindex_train_min(factory, train_min)) {
        /* Too few vectors to train on: exact search meanwhile; the writer
         * rebuilds with the real type once enough exist. */
        cdx_vindex_free(vx);
        vx = NULL;
        if ((st = make_index("Flat", dim, &vx)) != CDX_OK) return st;
        snprintf(vx->wanted, sizeof vx->wanted, "%s", factory);
    }
    *out = vx;
    return CDX_OK;
}

int64_t cdx_vindex_train_size(const cdx_vindex *vx, int64_t count, int64_t train_min)
{
    if (faiss_Index_is_trained(vx->idx)) return 0;
    /* Train on an even sample across the collection, at most 256 points per
     * list (FAISS would subsample beyond that anyway) and at most 200k
     * vectors (memory). */
    int64_t tmin = cdx_vindex_train_min(vx->built, train_min);
    int64_t ntrain = 256 * (ivf_lists(vx->built) ? ivf_lists(vx->built) : 64);
    if (ntrain < tmin) ntrain = tmin;
    if (ntrain > 200000) ntrain = 200000;
    if (ntrain > count) ntrain = count;
    return ntrain;
}

cdx_status cdx_vindex_train(cdx_vindex *vx, int64_t n, const float *xb)
{
    if (faiss_Index_train(vx->idx, n, xb) != 0) return faiss_fail("train");
    probe_remove(vx);
    return CDX_OK;
}

cdx_status cdx_vindex_add(cdx_vindex *vx, size_t n, int64_t *ids, float *xb, const char **bad)
{
    /* Adds may go in before later removes: ids are never reused, so a
     * remove that follows can only target an id already in. */
    size_t k = 0;
    int64_t last = last_id(vx);
    *bad = NULL;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0) continue; /* cancelled by a later remove */
        if (ids[i] <= last) {
            *bad = "the change log adds an id the index already has";
            return CDX_OK;
        }
        last = ids[i];
        if (k != i) {
            ids[k] = ids[i];
            memcpy(xb + k * vx->dim, xb + i * vx->dim, (size_t)vx->dim * sizeof(float));
        }
        k++;
    }
    if (k && faiss_Index_add_with_ids(vx->idx, (idx_t)k, xb, ids) != 0) return faiss_fail("add");
    return CDX_OK;
}

cdx_status cdx_vindex_remove(cdx_vindex *vx, int64_t *rm, size_t n_rm, const char **bad)
{
    cdx_status st;

    *bad = NULL;
    if (!n_rm) return CDX_OK;
    for (size_t i = 0; i < n_rm; i++)
        if (!is_live(vx, rm[i])) {
            *bad = "the change log removes an id the index does not have";
            return CDX_OK;
        }
    if (vx->can_remove) {
        size_t n_idx = 0;
        /* Ids of the mapped base become tombstones; the rest leave idx. */
        for (size_t i = 0; i < n_rm; i++) {
            if (id_home_of(vx, rm[i]) == ID_IN_BASE) {
                if ((st = tomb_add(vx, rm[i])) != CDX_OK) return st;
            } else {
                rm[n_idx++] = rm[i];
            }
        }
        if (n_idx < n_rm) qsort(vx->tomb, vx->n_tomb, sizeof *vx->tomb, cmp_i64);
        n_rm = n_idx;
    }
    if (vx->can_remove && n_rm) {
        FaissIDSelectorBatch *sel = NULL;
        size_t nrem = 0;
        if (faiss_IDSelectorBatch_new(&sel, n_rm, rm) != 0) return faiss_fail("selector");
        int r = faiss_Index_remove_ids(vx->idx, (FaissIDSelector *)sel, &nrem);
        faiss_IDSelector_free((FaissIDSelector *)sel);
        if (r != 0) return faiss_fail("remove");
        if (nrem != n_rm) *bad = "FAISS removed a different number of ids than asked";
    } else if (!vx->can_remove) {
        for (size_t i = 0; i < n_rm; i++)
            if ((st = tomb_add(vx, rm[i])) != CDX_OK) return st;
        qsort(vx->tomb, vx->n_tomb, sizeof *vx->tomb, cmp_i64);
    }
    return CDX_OK;
}

void cdx_vindex_advance(cdx_vindex *vx, int64_t pos, int64_t applied)
{
    vx->pos = pos;
    vx->unsaved += applied;
}

/* ---- the cache file ---- */

/* FAISS's serialisation of IndexIDMap2(IndexFlatIP), as far as we read
 * it: "IxM2", index header, "IxFI", index header, size_t n_floats, the
 * floats, size_t n_ids, the ids.  An index header is int d, int64 ntotal,
 * two int64 dummies, bool is_trained, int32 metric type (no metric_arg
 * for inner product): 33 bytes. */
#define FX_HDR 33
#define FX_FLOATS (4 + FX_HDR + 4 + FX_HDR + 8) /* offset of the floats: 82 */

static int parse_header(const uint8_t *p, int dim, int64_t *ntotal)
{
    int32_t d, metric;
    memcpy(&d, p, 4);
    memcpy(ntotal, p + 4, 8);
    memcpy(&metric, p + 29, 4);
    return d == dim && p[28] == 1 && metric == METRIC_INNER_PRODUCT && *ntotal >= 0;
}

/* The floats and ids of a Flat payload, or 0 when it is anything else. */
static int parse_flat(const uint8_t *p, uint64_t len, int dim, int64_t *n, uint64_t *ids_at)
{
    int64_t n1, n2;
    uint64_t nf, ni;
    if (len < FX_FLOATS + 8 || memcmp(p, "IxM2", 4) != 0 || !parse_header(p + 4, dim, &n1) ||
        memcmp(p + 4 + FX_HDR, "IxFI", 4) != 0 || !parse_header(p + 8 + FX_HDR, dim, &n2) || n1 != n2)
        return 0;
    memcpy(&nf, p + FX_FLOATS - 8, 8);
    if (nf != (uint64_t)n1 * (uint64_t)dim || len < FX_FLOATS + nf * 4 + 8) return 0;
    memcpy(&ni, p + FX_FLOATS + nf * 4, 8);
    if (ni != (uint64_t)n1 || len != FX_FLOATS + nf * 4 + 8 + ni * 8) return 0;
    *n = n1;
    *ids_at = FX_FLOATS + nf * 4 + 8;
    return 1;
}

cdx_status cdx_vindex_read(const char *path, const char *uuid, int64_t model_id, int dim,
                           cdx_vindex **out, const char **why)
{
    cdx_status st = CDX_OK;
    FILE *f = NULL;
    FaissIndex *idx = NULL;
    cdx_vindex *vx = NULL;
    vx_header h;
    struct stat sb;
    size_t want;
    uint64_t ids_at = 0;
    int64_t nflat = 0;

    *out = NULL;
    *why = NULL;
    f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) *why = "missing";
        else *why = "unreadable";
        return CDX_OK;
    }
    if (fstat(fileno(f), &sb) != 0 || fread(&h, sizeof h, 1, f) != 1) {
        *why = "truncated (no header)";
        goto cleanup;
    }
    if (memcmp(h.magic, VX_MAGIC, 8) != 0 || h.version != VX_VERSION ||
        h.header_bytes != sizeof h || h.endian != VX_ENDIAN ||
        h.check != fnv1a(&h, offsetof(vx_header, check))) {
        *why = "not a clipdex FAISS file of this version (bad header)";
        goto cleanup;
    }
    h.uuid[sizeof h.uuid - 1] = h.built[sizeof h.built - 1] = h.wanted[sizeof h.wanted - 1] = '\0';
    if (strcmp(h.uuid, uuid) != 0) {
        *why = "made for another database";
        goto cleanup;
    }
    if (h.model_id != model_id || h.dim != dim) {
        *why = "made for another model";
        goto cleanup;
    }
    if (h.ntotal < 0 || h.n_tomb > (uint64_t)h.ntotal || h.payload_offset < sizeof h + h.n_tomb * 8 ||
        !cdx_add_ok(h.payload_offset, h.payload_bytes, &want) || (uint64_t)sb.st_size != want) {
        *why = "truncated or padded (size does not match its header)";
        goto cleanup;
    }
    vx = calloc(1, sizeof *vx);
    if (!vx || (h.n_tomb && !(vx->tomb = malloc(h.n_tomb * sizeof *vx->tomb)))) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    vx->n_tomb = vx->cap_tomb = h.n_tomb;
    if (h.n_tomb && fread(vx->tomb, 8, h.n_tomb, f) != h.n_tomb) {
        *why = "truncated (tombstones)";
        goto cleanup;
    }
    vx->map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fileno(f), 0);
    if (vx->map == MAP_FAILED) {
        vx->map = NULL;
    } else {
        vx->map_len = (size_t)sb.st_size;
        if (!parse_flat((const uint8_t *)vx->map + h.payload_offset, h.payload_bytes, dim, &nflat,
                        &ids_at)) {
            munmap(vx->map, vx->map_len);
            vx->map = NULL;
        }
    }
    if (vx->map) {
        /* Flat: map the floats, copy the ids, start an empty delta. */
        cdx_vindex *delta = NULL;
        const uint8_t *payload = (const uint8_t *)vx->map + h.payload_offset;
        if (nflat != h.ntotal) {
            *why = "FAISS index of the wrong size";
            goto cleanup;
        }
        if ((st = make_index("Flat", dim, &delta)) != CDX_OK) goto cleanup;
        vx->idx = delta->idx;
        vx->flat = delta->flat;
        vx->can_remove = delta->can_remove;
        delta->idx = NULL;
        cdx_vindex_free(delta);
        vx->base_n = nflat;
        vx->base_xb = (const float *)(payload + FX_FLOATS);
        vx->base_ids = malloc((size_t)(nflat ? nflat : 1) * sizeof *vx->base_ids);
        if (!vx->base_ids) {
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        memcpy(vx->base_ids, payload + ids_at, (size_t)nflat * sizeof *vx->base_ids);
        if (((uintptr_t)vx->base_xb & 3) != 0) {
            *why = "misaligned vectors";
            goto cleanup;
        }
        madvise(vx->map, vx->map_len, MADV_WILLNEED);
    } else {
        if (fseek(f, (long)h.payload_offset, SEEK_SET) != 0 || faiss_read_index(f, 0, &idx) != 0) {
            *why = "FAISS cannot read it";
            goto cleanup;
        }
        if (!faiss_IndexIDMap2_cast(idx) || faiss_Index_d(idx) != dim ||
            faiss_Index_metric_type(idx) != METRIC_INNER_PRODUCT || faiss_Index_ntotal(idx) != h.ntotal) {
            *why = "FAISS index of the wrong kind or size";
            goto cleanup;
        }
        vx->idx = idx;
        idx = NULL;
        vx->flat = faiss_IndexFlat_cast(faiss_IndexIDMap2_sub_index((FaissIndexIDMap2 *)vx->idx));
        vx->can_remove = h.can_remove != 0;
    }
    vx->dim = dim;
    vx->pos = h.pos;
    vx->saved_pos = h.pos;
    memcpy(vx->built, h.built, sizeof vx->built);
    memcpy(vx->wanted, h.wanted, sizeof vx->wanted);
    {
        const int64_t *ids = vx->base_ids;
        size_t n = (size_t)vx->base_n;
        if (!vx->map) id_map(vx, &ids, &n);
        for (size_t i = 1; i < n; i++)
            if (ids[i] <= ids[i - 1]) {
                *why = "ids out of order";
                goto cleanup;
            }
        for (size_t i = 0; i < vx->n_tomb; i++)
            if ((i && vx->tomb[i] <= vx->tomb[i - 1]) || !cdx_sorted_has(ids, n, vx->tomb[i])) {
                *why = "bad tombstones";
                goto cleanup;
            }
        if (ids_sum(ids, n) != h.idsum) {
            *why = "id checksum mismatch";
            goto cleanup;
        }
    }
    *out = vx;
    vx = NULL;
cleanup:
    if (idx) faiss_Index_free(idx);
    cdx_vindex_free(vx);
    if (f) fclose(f);
    return st;
}

static cdx_status fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return cdx_fail(CDX_ERR_IO, "%s: %s", dir, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    if (r != 0) return cdx_fail(CDX_ERR_IO, "%s: fsync: %s", dir, strerror(e));
    return CDX_OK;
}

/* Write idx (with tombstones) to path atomically: temp file, fsync,
 * rename, fsync of the directory.  A failure leaves the old file. */
static cdx_status write_atomic(const char *dir, const char *path, const char *uuid,
                               const cdx_vindex *vx, FaissIndex *idx, const int64_t *tomb,
                               size_t n_tomb, int64_t model_id)
{
    cdx_status st = CDX_OK;
    char *tmp = NULL;
    FILE *f = NULL;
    vx_header h;
    long end;
    const char *step = "open";
    int saved_errno = 0;
    const int64_t *ids;
    size_t n_ids;
    static const char zeros[64];

    /* One writer at a time holds the lock, so a fixed temp name is safe; a
     * leftover from a killed writer is simply overwritten. */
    tmp = malloc(strlen(path) + 5);
    if (!tmp) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    memcpy(tmp, path, strlen(path));
    memcpy(tmp + strlen(path), ".tmp", 5);

    memset(&h, 0, sizeof h);
    memcpy(h.magic, VX_MAGIC, 8);
    h.version = VX_VERSION;
    h.header_bytes = sizeof h;
    h.endian = VX_ENDIAN;
    snprintf(h.uuid, sizeof h.uuid, "%s", uuid);
    h.model_id = model_id;
    h.dim = vx->dim;
    h.pos = vx->pos;
    h.ntotal = (int64_t)faiss_Index_ntotal(idx);
    faiss_IndexIDMap2_id_map((FaissIndexIDMap2 *)idx, (idx_t **)&ids, &n_ids);
    h.idsum = ids_sum(ids, n_ids);
    h.n_tomb = n_tomb;
    h.can_remove = vx->can_remove;
    memcpy(h.built, vx->built, sizeof h.built);
    memcpy(h.wanted, vx->wanted, sizeof h.wanted);
    /* Pad so that a Flat payload's floats start on a 64-byte boundary. */
    uint64_t at = sizeof h + n_tomb * 8;
    h.payload_offset = at + (64 - (at + FX_FLOATS) % 64) % 64;

    f = fopen(tmp, "wb");
    if (!f) goto io_fail;
    step = "write";
    if (fwrite(&h, sizeof h, 1, f) != 1) goto io_fail;
    if (n_tomb && fwrite(tomb, 8, n_tomb, f) != n_tomb) goto io_fail;
    if (h.payload_offset > at && fwrite(zeros, 1, h.payload_offset - at, f) != h.payload_offset - at)
        goto io_fail;
    if (faiss_write_index(idx, f) != 0) {
        st = faiss_fail("write index");
        goto cleanup;
    }
    if ((end = ftell(f)) < 0) goto io_fail;
    h.payload_bytes = (uint64_t)end - h.payload_offset;
    h.check = fnv1a(&h, offsetof(vx_header, check));
    if (fseek(f, 0, SEEK_SET) != 0 || fwrite(&h, sizeof h, 1, f) != 1) goto io_fail;
    step = "flush";
    if (fflush(f) != 0) goto io_fail;
    step = "fsync";
    if (fsync(fileno(f)) != 0) goto io_fail;
    step = "close";
    {
        FILE *ff = f;
        f = NULL;
        if (fclose(ff) != 0) goto io_fail;
    }
    step = "rename";
    if (rename(tmp, path) != 0) goto io_fail;
    free(tmp);
    tmp = NULL; /* renamed: nothing to clean up any more */
    st = fsync_dir(dir);
    goto cleanup;

io_fail:
    saved_errno = errno;
    st = cdx_fail(CDX_ERR_IO, "%s: %s: %s", tmp ? tmp : path, step, strerror(saved_errno));
cleanup:
    if (f) fclose(f);
    if (tmp) unlink(tmp);
    free(tmp);
    if (saved_errno) errno = saved_errno;
    return st;
}

/* Flat: base (minus tombstones) and delta as one new IndexIDMap2. */
static cdx_status merge_flat(const cdx_vindex *vx, cdx_vindex **out)
{
    cdx_status st;
    cdx_vindex *m = NULL;
    float *xb = NULL;
    size_t size = 0, n_ids;
    const int64_t *ids;

    if ((st = make_index("Flat", vx->dim, &m)) != CDX_OK) return st;
    for (int64_t i = 0; i < vx->base_n;) {
        /* runs of live rows go in with one call each */
        int64_t j = i;
        while (j < vx->base_n && !cdx_sorted_has(vx->tomb, vx->n_tomb, vx->base_ids[j])) j++;
        if (j > i && faiss_Index_add_with_ids(m->idx, j - i, vx->base_xb + i * vx->dim,
                                              vx->base_ids + i) != 0) {
            st = faiss_fail("add");
            goto fail;
        }
        i = j + 1; /* skip the tombstone at j */
    }
    faiss_IndexFlat_xb(vx->flat, &xb, &size);
    id_map(vx, &ids, &n_ids);
    if (n_ids && faiss_Index_add_with_ids(m->idx, (idx_t)n_ids, xb, ids) != 0) {
        st = faiss_fail("add");
        goto fail;
    }
    *out = m;
    return CDX_OK;
fail:
    cdx_vindex_free(m);
    return st;
}

cdx_status cdx_vindex_save(cdx_vindex *vx, const char *dir, const char *path, const char *uuid,
                           int64_t model_id)
{
    cdx_status st;
    cdx_vindex *merged = NULL, *nx = NULL;
    const char *why = NULL;

    if (vx->flat) {
        if ((st = merge_flat(vx, &merged)) != CDX_OK) goto cleanup;
        st = write_atomic(dir, path, uuid, vx, merged->idx, NULL, 0, model_id);
    } else {
        st = write_atomic(dir, path, uuid, vx, vx->idx, vx->tomb, vx->n_tomb, model_id);
    }
    if (st != CDX_OK) goto cleanup;
    vx->saved_pos = vx->pos;
    vx->unsaved = 0;

    if (vx->flat) {
        /* Continue from the new file, mapped: the delta and the old base's
         * tombstones are in it now. */
        if (cdx_vindex_read(path, uuid, model_id, vx->dim, &nx, &why) == CDX_OK && nx) {
            nx->unsaved = 0;
            free_parts(vx);
            *vx = *nx;
            free(nx);
        } else {
            CDX_WARN("%s: cannot map the file just saved (%s): keeping the index in memory", path,
                     why ? why : cdx_last_error());
        }
    }
cleanup:
    cdx_vindex_free(merged);
    return st;
}

/* ---- queries ---- */

/* The best kk of one part of a Flat index (xb: n rows, ids[i] the id of
 * row i), tombstones dropped: fills s/l, returns the count. */
static cdx_status flat_part(const cdx_vindex *vx, const float *xb, const int64_t *ids, int64_t n,
                            const float *q, int64_t kk, float *s, int64_t *l, int64_t *got)
{
    float *all = NULL, *ts = NULL;
    int64_t *tp = NULL, k2 = kk + (int64_t)vx->n_tomb, m, g = 0;

    *got = 0;
    if (n <= 0 || kk <= 0) return CDX_OK;
    if (k2 > n) k2 = n;
    all = malloc((size_t)n * sizeof *all);
    ts = malloc((size_t)k2 * sizeof *ts);
    tp = malloc((size_t)k2 * sizeof *tp);
    if (!all || !ts || !tp) {
        free(all);
        free(ts);
        free(tp);
        return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    }
    cdx_scan_ip(xb, n, vx->dim, q, all);
    m = cdx_topk(all, n, k2, ts, tp);
    for (int64_t i = 0; i < m && g < kk; i++) {
        int64_t id = ids[tp[i]];
        if (cdx_sorted_has(vx->tomb, vx->n_tomb, id)) continue;
        s[g] = ts[i];
        l[g] = id;
        g++;
    }
    *got = g;
    free(all);
    free(ts);
    free(tp);
    return CDX_OK;
}

static void delta_arrays(const cdx_vindex *vx, const float **xb, const int64_t **ids, int64_t *n)
{
    float *x = NULL;
    size_t size = 0, k = 0;
    const int64_t *v;
    faiss_IndexFlat_xb(vx->flat, &x, &size);
    id_map(vx, &v, &k);
    *xb = x;
    *ids = v;
    *n = (int64_t)k;
}

cdx_status cdx_vindex_search(cdx_vindex *vx, const float *q, int64_t k, float *scores,
                             int64_t *labels, int64_t *n_out)
{
    int64_t ntot = (int64_t)faiss_Index_ntotal(vx->idx);
    int64_t kk = k + (int64_t)vx->n_tomb, n = 0;
    float *d = NULL;
    idx_t *l = NULL;

    *n_out = 0;
    if (k <= 0) return CDX_OK;
    if (vx->flat) {
        /* Base and delta each give their best k; merge the two lists. */
        const float *dxb;
        const int64_t *dids;
        int64_t dn, nb = 0, nd = 0;
        cdx_status st;
        float *bs = malloc((size_t)k * sizeof *bs), *ds = malloc((size_t)k * sizeof *ds);
        int64_t *bl = malloc((size_t)k * sizeof *bl), *dl = malloc((size_t)k * sizeof *dl);
        if (!bs || !ds || !bl || !dl) {
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            goto flat_done;
        }
        delta_arrays(vx, &dxb, &dids, &dn);
        if ((st = flat_part(vx, vx->base_xb, vx->base_ids, vx->base_n, q, k, bs, bl, &nb)) != CDX_OK)
            goto flat_done;
        if ((st = flat_part(vx, dxb, dids, dn, q, k, ds, dl, &nd)) != CDX_OK) goto flat_done;
        for (int64_t i = 0, j = 0; n < k && (i < nb || j < nd);) {
            int take_b = j >= nd || (i < nb && (bs[i] > ds[j] || (bs[i] == ds[j] && bl[i] < dl[j])));
            scores[n] = take_b ? bs[i] : ds[j];
            labels[n] = take_b ? bl[i++] : dl[j++];
            n++;
        }
        *n_out = n;
    flat_done:
        free(bs);
        free(ds);
        free(bl);
        free(dl);
        return st;
    }
    if (kk > ntot) kk = ntot;
    if (kk <= 0) return CDX_OK;
    d = malloc((size_t)kk * sizeof *d);
    l = malloc((size_t)kk * sizeof *l);
    if (!d || !l) {
        free(d);
        free(l);
        return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    }
    if (faiss_Index_search(vx->idx, 1, q, kk, d, l) != 0) {
        free(d);
        free(l);
        return faiss_fail("search");
    }
    for (int64_t i = 0; i < kk && n < k; i++) {
        if (l[i] < 0 || cdx_sorted_has(vx->tomb, vx->n_tomb, l[i])) continue;
        scores[n] = d[i];
        labels[n] = l[i];
        n++;
    }
    *n_out = n;
    free(d);
    free(l);
    return CDX_OK;
}

typedef struct scored { int64_t id; float score; } scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

cdx_status cdx_vindex_range(cdx_vindex *vx, const float *q, float min_score, int64_t **ids_out,
                            float **scores_out, size_t *n_out)
{
    cdx_status st = CDX_OK;
    FaissRangeSearchResult *rs = NULL;
    scored *v = NULL;
    size_t n = 0;
    int64_t ntot = (int64_t)faiss_Index_ntotal(vx->idx);

    if (vx->flat) {
        const float *parts_xb[2];
        const int64_t *parts_ids[2];
        int64_t parts_n[2];
        parts_xb[0] = vx->base_xb;
        parts_ids[0] = vx->base_ids;
        parts_n[0] = vx->base_n;
        delta_arrays(vx, &parts_xb[1], &parts_ids[1], &parts_n[1]);
        v = malloc((size_t)(parts_n[0] + parts_n[1] + 1) * sizeof *v);
        if (!v) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
        for (int p = 0; p < 2; p++) {
            float *all = malloc((size_t)(parts_n[p] ? parts_n[p] : 1) * sizeof *all);
            if (!all) {
                st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            cdx_scan_ip(parts_xb[p], parts_n[p], vx->dim, q, all);
            for (int64_t i = 0; i < parts_n[p]; i++)
                if (all[i] >= min_score && !cdx_sorted_has(vx->tomb, vx->n_tomb, parts_ids[p][i])) {
                    v[n].id = parts_ids[p][i];
                    v[n].score = all[i];
                    n++;
                }
            free(all);
        }
        goto sorted;
    }
    if (faiss_RangeSearchResult_new(&rs, 1) != 0) return faiss_fail("range result");
    /* FAISS keeps inner products strictly above the radius. */
    if (faiss_Index_range_search(vx->idx, 1, q, nextafterf(min_score, -INFINITY), rs) == 0) {
        size_t *lims = NULL;
        idx_t *lab = NULL;
        float *dis = NULL;
        faiss_RangeSearchResult_lims(rs, &lims);
        faiss_RangeSearchResult_labels(rs, &lab, &dis);
        size_t cnt = lims[1] - lims[0];
        v = malloc((cnt ? cnt : 1) * sizeof *v);
        if (!v) {
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = lims[0]; i < lims[1]; i++) {
            if (lab[i] < 0 || cdx_sorted_has(vx->tomb, vx->n_tomb, lab[i])) continue;
            v[n].id = lab[i];
            v[n].score = dis[i];
            n++;
        }
    } else {
        /* Index types without range search (HNSW): k-NN with a growing k
         * until the worst result falls below the threshold. */
        int64_t k = 64;
        float *d = NULL;
        int64_t *l = NULL, got = 0;
        for (;;) {
            if (k > ntot) k = ntot;
            free(d);
            free(l);
            d = malloc((size_t)(k ? k : 1) * sizeof *d);
            l = malloc((size_t)(k ? k : 1) * sizeof *l);
            if (!d || !l) {
                free(d);
                free(l);
                st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            if ((st = cdx_vindex_search(vx, q, k, d, l, &got)) != CDX_OK) {
                free(d);
                free(l);
                goto cleanup;
            }
            if (got == 0 || d[got - 1] < min_score || k >= ntot) break;
            k *= 4;
        }
        v = malloc((size_t)(got ? got : 1) * sizeof *v);
        if (!v) {
            free(d);
            free(l);
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        for (int64_t i = 0; i < got; i++)
            if (d[i] >= min_score) {
                v[n].id = l[i];
                v[n].score = d[i];
                n++;
            }
        free(d);
        free(l);
    }
sorted:
    qsort(v, n, sizeof *v, cmp_scored);
    {
        int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
        float *sc = malloc((n ? n : 1) * sizeof *sc);
        if (!ids || !sc) {
            free(ids);
            free(sc);
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            ids[i] = v[i].id;
            sc[i] = v[i].score;
        }
        *ids_out = ids;
        *scores_out = sc;
        *n_out = n;
    }
cleanup:
    free(v);
    if (rs) faiss_RangeSearchResult_free(rs);
    return st;
}

cdx_status cdx_vindex_reconstruct(const cdx_vindex *vx, int64_t id, float *out)
{
    if (vx->base_n && id_home_of(vx, id) == ID_IN_BASE) {
        const int64_t *p = bsearch(&id, vx->base_ids, (size_t)vx->base_n, sizeof id, cmp_i64);
        memcpy(out, vx->base_xb + (p - vx->base_ids) * vx->dim, (size_t)vx->dim * sizeof *out);
        return CDX_OK;
    }
    if (faiss_Index_reconstruct(vx->idx, id, out) != 0)
        return cdx_fail(CDX_ERR_UNSUPPORTED, "faiss: reconstruct: %s", faiss_get_last_error());
    return CDX_OK;
}
