/*
 * store_internal.h - what the store's SQLite-side files share (store.c:
 * SQLite, files, models; store_changes.c: the change log that feeds the
 * vector index; store_search.c, store_check.c, store_join.c,
 * store_backup.c, store_review.c).  The vector index itself (FAISS, its
 * file, the exact scan) is vindex.h, which knows nothing of this file.
 * Never installed.
 *
 * The invariant everything here keeps:
 *
 *   For every model M, the rows of `vectors` with model_id = M are exactly
 *   the result of replaying M's rows of `changes` (op 1 = add, 2 = remove)
 *   in seq order; a FAISS index "at position P" holds exactly the vectors
 *   that replaying changes with seq <= P gives.
 *
 * The writer appends a change row in the same SQLite transaction as the
 * vectors insert/delete it describes, so the invariant survives a crash at
 * any point; a FAISS index catches up by replaying the rows after its
 * position, and a FAISS file that cannot be trusted is rebuilt from the
 * vectors table.
 */
#ifndef CDX_STORE_INTERNAL_H
#define CDX_STORE_INTERNAL_H

#include <sqlite3.h>

#include "internal.h"
#include "vindex.h"

/* One schema step, generated from schema/NNN_name.sql by the Makefile. */
typedef struct cdx_schema_step {
    int version;      /* NNN */
    const char *name; /* file name */
    const char *sql;
} cdx_schema_step;
extern const cdx_schema_step cdx_schema_steps[];
extern const int cdx_schema_n_steps;

/* Change-log operations. */
enum { CDX_CHANGE_ADD = 1, CDX_CHANGE_REMOVE = 2 };


/* Cached prepared statements, one slot each (store.c: stmt()). */
enum {
    ST_FIND_VECTOR, ST_INSERT_VECTOR, ST_DELETE_VECTOR, ST_LOG,
    ST_FILE_BY_PATH, ST_FILE_INSERT, ST_FILE_UPDATE, ST_FILE_DELETE,
    ST_VECTOR_REFS, ST_HEAD, ST_VECTOR_DATA, ST_FILES_OF_VECTOR,
    ST_COUNT_VECTORS, ST_N
};

struct cdx_store {
    char *dir, *db_path, *lock_path;
    sqlite3 *db;
    int writer;         /* holds the writer lock */
    int lock_fd;        /* -1 when not held */
    int txn;            /* an explicit write transaction is open */
    int64_t txn_changes;/* change rows written in the open transaction */
    int schema_version;
    char uuid[33];      /* random id of this database, recorded in FAISS files */
    char *factory;      /* configured index_factory (writer), or NULL */
    char *search_params;
    int64_t save_every, train_min;
    cdx_store_progress_fn progress;
    void *progress_user;

    /* the current model */
    int64_t model_id;   /* 0: none selected */
    int dim;
    char *model_key, *model_name;
    cdx_vindex *vx;
    char precision[8];  /* recorded on new vectors ("" = NULL) */
    cdx_precision join_precision; /* store_join.c's tile products */

    sqlite3_stmt *st[ST_N];
};

/* ---- store.c ---- */

/* A SQLite failure as a cdx_status with "DB: what: sqlite message". */
cdx_status cdx_store_sqlfail(cdx_store *s, const char *what);

/* store_tower.c: the vector space a model shares by its image tower
 * (*id = 0: none), and recording a row's vision key. */
cdx_status cdx_store_tower_lookup(cdx_store *s, const cdx_store_model *m, int64_t *id);
void cdx_store_tower_record(cdx_store *s, int64_t id, const char *vision_key);
/* The cached statement for slot id, prepared from sql on first use; reset
 * and unbound.  NULL on failure (error recorded). */
sqlite3_stmt *cdx_store_stmt(cdx_store *s, int id, const char *sql);
/* Run SQL without results. */
cdx_status cdx_store_exec(cdx_store *s, const char *sql);
/* Read transactions: consistent snapshots for readers (nest-safe: inside
 * an open write transaction they do nothing). */
cdx_status cdx_store_read_begin(cdx_store *s, int *began);
void cdx_store_read_end(cdx_store *s, int began);
/* The change-log head of model_id (max seq, or pruned_upto when the log
 * is empty). */
cdx_status cdx_store_log_head(cdx_store *s, int64_t model_id, int64_t *head);
/* Try to take / release the writer lock without waiting. */
cdx_status cdx_store_lock(cdx_store *s);
void cdx_store_unlock(cdx_store *s);
/* The FAISS file of a model (heap string). */
char *cdx_store_faiss_path(const cdx_store *s, int64_t model_id);
/* One stored vector of the current model into out (dim floats); *found
 * is 0 when there is no such row (out untouched). */
cdx_status cdx_store_vector_read(cdx_store *s, int64_t vector_id, float *out, int *found);
/* Delete a vector row, its moderation rows, and log the removal. */
cdx_status cdx_store_drop_vector(cdx_store *s, int64_t model_id, int64_t vector_id);
/* Fill a cdx_file_info from a row of the standard file SELECT (columns as
 * CDX_FILE_COLUMNS); strings point into the statement (valid until the
 * next step). */
#define CDX_FILE_COLUMNS                                                        \
    "f.id, f.path, f.ext, f.dev, f.ino, f.size, f.mtime_ns, f.hash, f.width, "  \
    "f.height, f.orientation, f.taken_at, f.camera_make, f.camera_model, "      \
    "f.gps_lat, f.gps_lon, f.phash, f.state, f.error, f.indexed_at, "           \
    "f.vector_id, v.model_id"
#define CDX_FILE_FROM " FROM files f LEFT JOIN vectors v ON v.id = f.vector_id"
void cdx_store_row_to_info(sqlite3_stmt *q, cdx_file_info *fi);
/* Step q (that SELECT, its parameters bound) once and copy the row into
 * out (heap strings: cdx_file_info_release); *found is 0 when there is no
 * row.  Finalizes q. */
cdx_status cdx_store_one_file(cdx_store *s, sqlite3_stmt *q, cdx_file_info *out, int *found);

/* Path helpers: "dir/" prefix range [lo, hi) of the paths under dir (heap,
 * caller frees both; lengths in *n). */
cdx_status cdx_store_prefix_range(const char *dir, char **lo, char **hi, size_t *n);

/* A growing string for building SQL (oom latches; check it once). */
typedef struct cdx_sb {
    char *s;
    size_t len, cap;
    int oom;
} cdx_sb;
void cdx_sb_add(cdx_sb *b, const char *text);
/* Append " AND ..." conditions on files f for filter (NULL: none); bind
 * their values from *idx on, in the same order.  with_state: include the
 * state condition. */
void cdx_filter_sql(const cdx_store_filter *f, int with_state, cdx_sb *b);
cdx_status cdx_filter_bind(sqlite3_stmt *q, const cdx_store_filter *f, int with_state, int *idx);

/* ---- float16 (store.c) ---- */
uint16_t cdx_store_f32_to_f16(float f);
float cdx_store_f16_to_f32(uint16_t h);
/* Normalise v (n floats) and round it through float16 into blob (2n bytes,
 * little-endian).  CDX_ERR_ARG for zero/NaN/inf vectors. */
cdx_status cdx_vec_encode(const float *v, int n, uint8_t *blob);
/* blob (2n bytes) -> n floats; CDX_ERR_FORMAT on a wrong size. */
cdx_status cdx_vec_decode(const void *blob, size_t bytes, int n, float *out);

/* ---- store_changes.c: the SQLite side of the vector index ---- */

/* Load the model's FAISS index: read the file, check it against the
 * database, replay the log; rebuild from SQLite when the file is missing,
 * stale or corrupt (*rebuilt then says why, may be NULL).  Takes its own
 * read snapshots.  With allow_rebuild = 0 a bad file is an error (check
 * uses that to report corruption). */
cdx_status cdx_store_index_load(cdx_store *s, int64_t model_id, int dim, const char *factory,
                                int allow_rebuild, cdx_vindex **out, const char **rebuilt);
/* Build a fresh index of every vector of the model (inside a read
 * transaction). */
cdx_status cdx_store_index_build(cdx_store *s, int64_t model_id, int dim, const char *factory,
                                 cdx_vindex **out);
/* Catch s->vx up with the change log to the head visible in the current
 * transaction.  May fall back to a reload or a rebuild (log pruned past
 * us). */
cdx_status cdx_store_index_sync(cdx_store *s);
/* Save vx as the model's file (cdx_vindex_save) when the writer lock is
 * held; then prune the log up to the previously saved position. */
cdx_status cdx_store_index_save(cdx_store *s, cdx_vindex *vx, int64_t model_id);

#endif
