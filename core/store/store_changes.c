/*
 * store_changes.c - the SQLite side of the vector index: it walks the
 * vectors table and the change log (the invariant is in store_internal.h)
 * and hands the FAISS-only module (vindex.h) batches to add and ids to
 * remove.  Dependencies point one way: this file drives vindex.c, which
 * knows nothing of SQLite or cdx_store.
 *
 *   build:  every vector of a model, in id order, into a fresh index
 *           (training it first on an even sample when its type needs it);
 *   replay: the change rows after the index's position, up to the head
 *           visible in the current transaction;
 *   load:   the cache file, checked against the database, then replayed;
 *           rebuilt when it is missing, stale or corrupt;
 *   save:   the cache file, then the log pruned up to the previous save.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define ADD_CHUNK 4096 /* vectors per FAISS add during rebuild/replay */

/* ---- rebuild from SQLite ---- */

static void progress(cdx_store *s, const char *what, int64_t done, int64_t total)
{
    if (s->progress) s->progress(what, done, total, s->progress_user);
}

/* The count vectors of the model, ntrain of them evenly spread, decoded
 * into a fresh training set for vx. */
static cdx_status train(cdx_store *s, cdx_vindex *vx, int64_t model_id, int dim, int64_t count,
                        int64_t ntrain)
{
    cdx_status st = CDX_OK;
    sqlite3_stmt *q = NULL;
    float *buf = NULL;
    int64_t stride = count / ntrain, got = 0, row = 0;
    size_t bytes;

    if (!cdx_mul_ok((size_t)ntrain, (size_t)dim * sizeof(float), &bytes) ||
        !(buf = malloc(bytes)))
        return cdx_fail(CDX_ERR_NOMEM, "out of memory for %lld training vectors", (long long)ntrain);
    if (sqlite3_prepare_v2(s->db, "SELECT data FROM vectors WHERE model_id = ? ORDER BY id", -1, &q,
                           NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto cleanup;
    }
    sqlite3_bind_int64(q, 1, model_id);
    while (got < ntrain && sqlite3_step(q) == SQLITE_ROW) {
        if (row++ % stride) continue;
        st = cdx_vec_decode(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), dim,
                            buf + (size_t)got * dim);
        if (st != CDX_OK) goto cleanup;
        got++;
    }
    sqlite3_finalize(q);
    q = NULL;
    progress(s, "training the FAISS index", 0, got);
    st = cdx_vindex_train(vx, got, buf);
cleanup:
    sqlite3_finalize(q);
    free(buf);
    return st;
}

cdx_status cdx_store_index_build(cdx_store *s, int64_t model_id, int dim, const char *factory,
                                 cdx_vindex **out)
{
    cdx_status st;
    cdx_vindex *vx = NULL;
    sqlite3_stmt *q = NULL;
    float *buf = NULL;
    int64_t *ids = NULL;
    int64_t count = 0, head = 0, done = 0, ntrain;
    const char *bad = NULL;
    int rc, began = 0;

    if ((st = cdx_store_read_begin(s, &began)) != CDX_OK) return st;
    if ((st = cdx_store_log_head(s, model_id, &head)) != CDX_OK) goto cleanup;
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM vectors WHERE model_id = ?", -1, &q, NULL) !=
        SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto cleanup;
    }
    sqlite3_bind_int64(q, 1, model_id);
    if (sqlite3_step(q) == SQLITE_ROW) count = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    q = NULL;

    if ((st = cdx_vindex_create(factory, dim, count, s->train_min, &vx)) != CDX_OK) goto cleanup;
    ntrain = cdx_vindex_train_size(vx, count, s->train_min);
    if (ntrain > 0 && (st = train(s, vx, model_id, dim, count, ntrain)) != CDX_OK) goto cleanup;

    buf = malloc((size_t)ADD_CHUNK * dim * sizeof(float));
    ids = malloc(ADD_CHUNK * sizeof *ids);
    if (!buf || !ids) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (sqlite3_prepare_v2(s->db, "SELECT id, data FROM vectors WHERE model_id = ? ORDER BY id", -1,
                           &q, NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto cleanup;
    }
    sqlite3_bind_int64(q, 1, model_id);
    progress(s, "building the FAISS index", 0, count);
    for (;;) {
        int n = 0;
        while (n < ADD_CHUNK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
            ids[n] = sqlite3_column_int64(q, 0);
            st = cdx_vec_decode(sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1), dim,
                                buf + (size_t)n * dim);
            if (st != CDX_OK) {
                cdx_fail_prefix(st, "vector");
                goto cleanup;
            }
            n++;
        }
        if (n < ADD_CHUNK && rc != SQLITE_DONE) {
            st = cdx_store_sqlfail(s, "read vectors");
            goto cleanup;
        }
        if ((st = cdx_vindex_add(vx, (size_t)n, ids, buf, &bad)) != CDX_OK) goto cleanup;
        if (bad) {
            /* ORDER BY id on an AUTOINCREMENT key: cannot happen. */
            st = cdx_fail(CDX_ERR_INTERNAL, "building the FAISS index: %s", bad);
            goto cleanup;
        }
        done += n;
        progress(s, "building the FAISS index", done, count);
        if (n < ADD_CHUNK) break;
    }
    cdx_vindex_advance(vx, head, count > 0 ? count : 1); /* never saved: a writer saves it */
    if ((st = cdx_vindex_set_params(vx, s->search_params)) != CDX_OK) goto cleanup;
    *out = vx;
    vx = NULL;
cleanup:
    sqlite3_finalize(q);
    cdx_store_read_end(s, began);
    free(buf);
    free(ids);
    cdx_vindex_free(vx);
    return st;
}

/* ---- replaying the change log ---- */

static cdx_status push_id(int64_t **v, size_t *n, size_t *cap, int64_t id)
{
    int64_t *p = cdx_grow(*v, cap, *n + 1, sizeof *p, 64);
    if (!p) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    *v = p;
    (*v)[(*n)++] = id;
    return CDX_OK;
}

/* Apply the log after the index's position up to the head of the current
 * transaction.  *bad receives a reason when the log does not fit the
 * index (the caller rebuilds); the return status is for real failures. */
static cdx_status replay(cdx_store *s, cdx_vindex *vx, int64_t model_id, const char **bad)
{
    cdx_status st = CDX_OK;
    sqlite3_stmt *q = NULL;
    int64_t *add_ids = NULL, *rm = NULL, *ghost = NULL, head = 0, applied = 0;
    int64_t pos = cdx_vindex_pos(vx);
    size_t n_add = 0, n_rm = 0, cap_rm = 0, n_ghost = 0, cap_ghost = 0;
    int dim = cdx_vindex_dim(vx);
    float *buf = NULL;
    int rc;

    *bad = NULL;
    if ((st = cdx_store_log_head(s, model_id, &head)) != CDX_OK) return st;
    if (head == pos) return CDX_OK;
    if (head < pos) {
        *bad = "the index is ahead of the database's change log";
        return CDX_OK;
    }
    buf = malloc((size_t)ADD_CHUNK * dim * sizeof(float));
    add_ids = malloc(ADD_CHUNK * sizeof *add_ids);
    if (!buf || !add_ids) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (sqlite3_prepare_v2(s->db,
                           "SELECT c.op, c.vector_id, v.data FROM changes c LEFT JOIN vectors v "
                           "ON c.op = 1 AND v.id = c.vector_id AND v.model_id = c.model_id "
                           "WHERE c.model_id = ? AND c.seq > ? ORDER BY c.seq",
                           -1, &q, NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto cleanup;
    }
    sqlite3_bind_int64(q, 1, model_id);
    sqlite3_bind_int64(q, 2, pos);
    for (;;) {
        rc = sqlite3_step(q);
        int flush = rc != SQLITE_ROW || n_add == ADD_CHUNK;
        if (flush && n_add) {
            /* Adds may go in before later removes (see cdx_vindex_add);
             * the ones a later remove cancelled are -1 and skipped. */
            if ((st = cdx_vindex_add(vx, n_add, add_ids, buf, bad)) != CDX_OK || *bad) goto cleanup;
            n_add = 0;
        }
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            st = cdx_store_sqlfail(s, "read change log");
            goto cleanup;
        }
        int op = sqlite3_column_int(q, 0);
        int64_t id = sqlite3_column_int64(q, 1);
        applied++;
        if (op == CDX_CHANGE_ADD) {
            if (sqlite3_column_type(q, 2) == SQLITE_NULL) {
                /* Removed again later in the log: remember to expect it. */
                if ((st = push_id(&ghost, &n_ghost, &cap_ghost, id)) != CDX_OK) goto cleanup;
                continue;
            }
            st = cdx_vec_decode(sqlite3_column_blob(q, 2), (size_t)sqlite3_column_bytes(q, 2), dim,
                                buf + n_add * dim);
            if (st != CDX_OK) goto cleanup;
            add_ids[n_add++] = id;
        } else if (op == CDX_CHANGE_REMOVE) {
            int found = 0;
            for (size_t i = 0; i < n_add && !found; i++)
                if (add_ids[i] == id) add_ids[i] = -1, found = 1;
            for (size_t i = 0; i < n_ghost && !found; i++)
                if (ghost[i] == id) ghost[i] = ghost[--n_ghost], found = 1;
            if (found) continue;
            if ((st = push_id(&rm, &n_rm, &cap_rm, id)) != CDX_OK) goto cleanup;
        } else {
            *bad = "unknown operation in the change log";
            goto cleanup;
        }
    }
    if (n_ghost) {
        *bad = "the change log adds a vector the database does not have";
        goto cleanup;
    }
    if ((st = cdx_vindex_remove(vx, rm, n_rm, bad)) != CDX_OK || *bad) goto cleanup;
    cdx_vindex_advance(vx, head, applied);
cleanup:
    sqlite3_finalize(q);
    free(buf);
    free(add_ids);
    free(rm);
    free(ghost);
    return st;
}

/* ---- the cache file ---- */

cdx_status cdx_store_index_load(cdx_store *s, int64_t model_id, int dim, const char *factory,
                               int allow_rebuild, cdx_vindex **out, const char **rebuilt)
{
    cdx_status st = CDX_OK;
    char *path = cdx_store_faiss_path(s, model_id);
    cdx_vindex *vx = NULL;
    const char *why = NULL;
    int64_t count = 0;

    if (rebuilt) *rebuilt = NULL;
    *out = NULL;
    if (!path) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    /* The file may be newer than a reader's snapshot (the writer saved
     * after we began): then start a new snapshot, which includes it. */
    for (int attempt = 0; attempt < 3; attempt++) {
        int began = 0;
        int64_t head = 0, pruned = 0;
        cdx_vindex_free(vx);
        vx = NULL;
        if ((st = cdx_vindex_read(path, s->uuid, model_id, dim, &vx, &why)) != CDX_OK) goto cleanup;
        if ((st = cdx_store_read_begin(s, &began)) != CDX_OK) goto cleanup;
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db,
                               "SELECT pruned_upto, (SELECT count(*) FROM vectors WHERE model_id "
                               "= ?1) FROM models WHERE id = ?1", -1, &q, NULL) != SQLITE_OK) {
            st = cdx_store_sqlfail(s, "prepare");
            cdx_store_read_end(s, began);
            goto cleanup;
        }
        sqlite3_bind_int64(q, 1, model_id);
        if (sqlite3_step(q) == SQLITE_ROW) {
            pruned = sqlite3_column_int64(q, 0);
            count = sqlite3_column_int64(q, 1);
        }
        sqlite3_finalize(q);
        if ((st = cdx_store_log_head(s, model_id, &head)) != CDX_OK) {
            cdx_store_read_end(s, began);
            goto cleanup;
        }
        if (vx) {
            if (cdx_vindex_pos(vx) > head) {
                if (attempt < 2 && began) {
                    cdx_store_read_end(s, began);
                    continue;
                }
                why = "ahead of the database (from a state the database lost)";
            } else if (cdx_vindex_pos(vx) < pruned) {
                why = "stale (older than the change log kept in the database)";
            } else if (s->writer && strcmp(cdx_vindex_wanted(vx), factory) != 0) {
                why = "built for another index type";
            } else {
                st = replay(s, vx, model_id, &why);
                if (st == CDX_OK && !why && cdx_vindex_ntotal(vx) != count)
                    why = "does not hold the database's vectors";
            }
            if (why) {
                cdx_vindex_free(vx);
                vx = NULL;
            }
        }
        if (st == CDX_OK && !vx) {
            if (!allow_rebuild) {
                cdx_store_read_end(s, began);
                if (why && strcmp(why, "missing") == 0) {
                    if (rebuilt) *rebuilt = why; /* a missing cache is no error */
                } else {
                    st = cdx_fail(CDX_ERR_FORMAT, "%s: %s", path, why ? why : "unusable");
                }
                goto cleanup;
            }
            if (count > 0 || strcmp(why, "missing") != 0)
                CDX_WARN("%s: %s: rebuilding it from the database (%lld vectors)", path, why,
                         (long long)count);
            st = cdx_store_index_build(s, model_id, dim, factory, &vx);
            if (rebuilt) *rebuilt = why;
        }
        cdx_store_read_end(s, began);
        if (st != CDX_OK) goto cleanup;
        break;
    }
    if (vx && cdx_vindex_saved_pos(vx) >= 0 && (st = cdx_vindex_set_params(vx, s->search_params)) != CDX_OK)
        goto cleanup;
    *out = vx;
    vx = NULL;
cleanup:
    cdx_vindex_free(vx);
    free(path);
    return st;
}

/* Called inside the caller's read transaction (never inside the writer's
 * explicit one: uncommitted rows must not reach FAISS). */
cdx_status cdx_store_index_sync(cdx_store *s)
{
    cdx_status st;
    const char *bad = NULL;

    if (!s->vx || s->txn) return CDX_OK;
    for (int attempt = 0; attempt < 3; attempt++) {
        int64_t pruned = 0;
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT pruned_upto FROM models WHERE id = ?", -1, &q,
                               NULL) != SQLITE_OK)
            return cdx_store_sqlfail(s, "prepare");
        sqlite3_bind_int64(q, 1, s->model_id);
        if (sqlite3_step(q) == SQLITE_ROW) pruned = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        if (cdx_vindex_pos(s->vx) >= pruned) {
            if ((st = replay(s, s->vx, s->model_id, &bad)) != CDX_OK) return st;
            if (!bad) return CDX_OK;
            break;
        }
        /* The writer saved twice since we loaded and pruned the log we would
         * need: the newer file has it all.  Loading takes its own snapshots,
         * so end ours, load, and catch up in a fresh one. */
        cdx_vindex *nx = NULL;
        const char *why = NULL;
        CDX_DEBUG("FAISS index of model %lld: log pruned past it: reloading",
                  (long long)s->model_id);
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        st = cdx_store_index_load(s, s->model_id, s->dim, cdx_vindex_wanted(s->vx), 1, &nx, &why);
        if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK && st == CDX_OK)
            st = cdx_store_sqlfail(s, "begin read");
        if (st != CDX_OK) {
            cdx_vindex_free(nx);
            return st;
        }
        cdx_vindex_free(s->vx);
        s->vx = nx;
    }
    if (!bad) bad = "cannot catch up with the change log";
    cdx_vindex *nx = NULL;
    CDX_WARN("FAISS index of model %lld: %s: rebuilding it", (long long)s->model_id, bad);
    if ((st = cdx_store_index_build(s, s->model_id, s->dim, cdx_vindex_wanted(s->vx), &nx)) != CDX_OK)
        return st;
    cdx_vindex_free(s->vx);
    s->vx = nx;
    return CDX_OK;
}

cdx_status cdx_store_index_save(cdx_store *s, cdx_vindex *vx, int64_t model_id)
{
    cdx_status st = CDX_OK;
    char *path = cdx_store_faiss_path(s, model_id);
    int64_t prev = cdx_vindex_saved_pos(vx);

    if (!path) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    if (s->lock_fd < 0) {
        st = cdx_fail(CDX_ERR_INTERNAL, "%s: saving without the writer lock", path);
        goto cleanup;
    }
    if ((st = cdx_vindex_save(vx, s->dir, path, s->uuid, model_id)) != CDX_OK) goto cleanup;

    /* Keep the log since the previous save: a reader that loaded the
     * previous file can still catch up without reloading. */
    if (prev > 0) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "BEGIN IMMEDIATE; UPDATE models SET pruned_upto = max(pruned_upto, %lld) "
                 "WHERE id = %lld; DELETE FROM changes WHERE model_id = %lld AND seq <= %lld; "
                 "COMMIT", (long long)prev, (long long)model_id, (long long)model_id,
                 (long long)prev);
        if (cdx_store_exec(s, sql) != CDX_OK) {
            CDX_WARN("pruning the change log: %s", cdx_last_error());
            if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        }
    }
cleanup:
    free(path);
    return st;
}
