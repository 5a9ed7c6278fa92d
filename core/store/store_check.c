/*
 * store_check.c - `clipdex check`: verify that the store is consistent,
 * and repair what can be repaired (orphans, FAISS caches).
 *
 * What "consistent" means (each item a query below):
 *   - SQLite's own integrity_check and foreign_key_check pass;
 *   - every file in state OK points to an existing vector made from the
 *     same content, every file in state ERROR points to none;
 *   - every vector is referenced by a file (no orphans) and its blob has
 *     the model's dimension;
 *   - every model's FAISS file, replayed to the present, holds exactly the
 *     ids of that model's vectors, with the stored values (compared where
 *     the index type can give vectors back).
 * A missing FAISS file is not a problem: it is a cache, built at the next
 * open.  A corrupt one is (a correct writer never leaves one).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

typedef struct checker {
    cdx_store *s;
    cdx_store_report_fn fn;
    void *user;
    int64_t problems;
} checker;

static void report(checker *c, int problem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(checker *c, int problem, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (problem) c->problems++;
    if (c->fn) c->fn(line, c->user);
}

/* Run a query whose rows are problems; each row's columns are formatted
 * by fmt_row.  max_lines limits the lines reported (all are counted). */
static cdx_status each_row(checker *c, const char *sql, const char *what,
                           void (*fmt_row)(checker *c, sqlite3_stmt *q, const char *what),
                           int64_t *count)
{
    sqlite3_stmt *q = NULL;
    int rc;
    int64_t n = 0;
    if (sqlite3_prepare_v2(c->s->db, sql, -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(c->s, "prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (n < 20) fmt_row(c, q, what);
        else c->problems++;
        n++;
    }
    if (n > 20) report(c, 0, "... and %lld more: %s", (long long)(n - 20), what);
    sqlite3_finalize(q);
    if (count) *count = n;
    if (rc != SQLITE_DONE) return cdx_store_sqlfail(c->s, what);
    return CDX_OK;
}

static void row_file(checker *c, sqlite3_stmt *q, const char *what)
{
    report(c, 1, "%s: file %lld (%s)", what, (long long)sqlite3_column_int64(q, 0),
           (const char *)sqlite3_column_text(q, 1));
}

static void row_vector(checker *c, sqlite3_stmt *q, const char *what)
{
    report(c, 1, "%s: vector %lld of model %lld", what, (long long)sqlite3_column_int64(q, 0),
           (long long)sqlite3_column_int64(q, 1));
}

static void row_fk(checker *c, sqlite3_stmt *q, const char *what)
{
    report(c, 1, "%s: table %s row %lld refers to a missing row of %s", what,
           (const char *)sqlite3_column_text(q, 0), (long long)sqlite3_column_int64(q, 1),
           (const char *)sqlite3_column_text(q, 2));
}

static cdx_status check_sqlite(checker *c)
{
    cdx_status st;
    sqlite3_stmt *q = NULL;
    int rc;

    /* integrity_check prints "ok" as its only row when all is well. */
    if (sqlite3_prepare_v2(c->s->db, "PRAGMA integrity_check(20)", -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(c->s, "prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(q, 0);
        if (!t || strcmp(t, "ok") != 0) report(c, 1, "SQLite integrity: %s", t ? t : "?");
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return cdx_store_sqlfail(c->s, "integrity_check");
    if ((st = each_row(c, "PRAGMA foreign_key_check", "foreign key", row_fk, NULL)) != CDX_OK)
        return st;
    return CDX_OK;
}

static cdx_status check_rows(checker *c, int64_t *orphans)
{
    cdx_status st;
    if ((st = each_row(c,
                       "SELECT f.id, f.path FROM files f LEFT JOIN vectors v ON v.id = f.vector_id "
                       "WHERE f.state = 0 AND v.id IS NULL",
                       "indexed file without a vector", row_file, NULL)) != CDX_OK)
        return st;
    if ((st = each_row(c,
                       "SELECT f.id, f.path FROM files f JOIN vectors v ON v.id = f.vector_id "
                       "WHERE f.hash IS NULL OR f.hash != v.hash",
                       "file points to the vector of other content", row_file, NULL)) != CDX_OK)
        return st;
    if ((st = each_row(c, "SELECT f.id, f.path FROM files f WHERE f.state != 0 AND f.vector_id IS NOT NULL",
                       "failed file with a vector", row_file, NULL)) != CDX_OK)
        return st;
    if ((st = each_row(c,
                       "SELECT v.id, v.model_id FROM vectors v JOIN models m ON m.id = v.model_id "
                       "WHERE length(v.data) != 2 * m.dim OR typeof(v.data) != 'blob'",
                       "malformed vector", row_vector, NULL)) != CDX_OK)
        return st;
    if ((st = each_row(c,
                       "SELECT v.id, v.model_id FROM vectors v WHERE NOT EXISTS "
                       "(SELECT 1 FROM files f WHERE f.vector_id = v.id)",
                       "orphan vector (no file)", row_vector, orphans)) != CDX_OK)
        return st;
    if ((st = each_row(c,
                       "SELECT f.id, f.path FROM files f WHERE typeof(f.path) != 'blob'",
                       "path not stored as bytes", row_file, NULL)) != CDX_OK)
        return st;
    return CDX_OK;
}

/* Compare one model's FAISS file (replayed) with its vectors. */
static cdx_status check_faiss(checker *c, int64_t model_id, const char *name, int dim,
                              const char *factory)
{
    cdx_store *s = c->s;
    cdx_status st;
    cdx_vindex *vx = NULL;
    const char *why = NULL;
    int64_t *fids = NULL, missing = 0, extra = 0, differ = 0, recon_ok = 1;
    size_t nf = 0, i = 0;
    sqlite3_stmt *q = NULL;
    float *a = NULL, *b = NULL;
    int rc, began = 0;

    st = cdx_store_index_load(s, model_id, dim, factory, 0, &vx, &why);
    if (st == CDX_ERR_FORMAT) {
        report(c, 1, "FAISS index of model %s: %s", name, cdx_last_error());
        return CDX_OK;
    }
    if (st != CDX_OK) return st;
    if (!vx) {
        report(c, 0, "note: model %s has no FAISS file yet (built at the next open)", name);
        return CDX_OK;
    }
    a = malloc((size_t)dim * sizeof *a);
    b = malloc((size_t)dim * sizeof *b);
    if (!a || !b) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    /* Loading ended its snapshot and a writer may have committed since:
     * catch the index up inside ours, so both sides show one state.  The
     * sync works on the handle's current index, hence the swap. */
    if ((st = cdx_store_read_begin(s, &began)) != CDX_OK) goto cleanup;
    {
        cdx_vindex *save = s->vx;
        int64_t save_model = s->model_id;
        int save_dim = s->dim;
        s->vx = vx;
        s->model_id = model_id;
        s->dim = dim;
        st = cdx_store_index_sync(s);
        vx = s->vx;
        s->vx = save;
        s->model_id = save_model;
        s->dim = save_dim;
        if (st != CDX_OK) goto cleanup;
        /* Both id lists are sorted: one merge compares them. */
        if ((st = cdx_vindex_ids(vx, &fids, &nf)) != CDX_OK) goto cleanup;
    }
    if (sqlite3_prepare_v2(s->db, "SELECT id, data FROM vectors WHERE model_id = ? ORDER BY id", -1,
                           &q, NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto cleanup;
    }
    sqlite3_bind_int64(q, 1, model_id);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(q, 0);
        while (i < nf && fids[i] < id) {
            if (extra++ < 10) report(c, 1, "FAISS index of model %s holds id %lld, which is no vector", name, (long long)fids[i]);
            else c->problems++;
            i++;
        }
        if (i < nf && fids[i] == id) {
            i++;
            if (recon_ok && cdx_vindex_reconstruct(vx, id, a) == CDX_OK) {
                if (cdx_vec_decode(sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1), dim, b) ==
                    CDX_OK) {
                    float md = 0;
                    for (int j = 0; j < dim; j++) md = fmaxf(md, fabsf(a[j] - b[j]));
                    if (md > 1e-6f) {
                        if (differ++ < 10)
                            report(c, 1, "FAISS index of model %s: vector %lld differs from the database (max %g)",
                                   name, (long long)id, (double)md);
                        else c->problems++;
                    }
                }
            } else {
                recon_ok = 0; /* this index type cannot give vectors back */
            }
        } else {
            if (missing++ < 10) report(c, 1, "FAISS index of model %s lacks vector %lld", name, (long long)id);
            else c->problems++;
        }
    }
    if (rc != SQLITE_DONE) {
        st = cdx_store_sqlfail(s, "read vectors");
        goto cleanup;
    }
    for (; i < nf; i++) {
        if (extra++ < 10) report(c, 1, "FAISS index of model %s holds id %lld, which is no vector", name, (long long)fids[i]);
        else c->problems++;
    }
    if (!missing && !extra && !differ)
        report(c, 0, "note: FAISS index of model %s (%s): %zu vectors, consistent%s", name,
               cdx_vindex_built(vx), nf, recon_ok ? "" : " (ids only: this index type keeps no exact vectors)");
cleanup:
    sqlite3_finalize(q);
    cdx_store_read_end(s, began);
    cdx_vindex_free(vx);
    free(fids);
    free(a);
    free(b);
    return st;
}

static cdx_status check_all(checker *c, int64_t *orphans)
{
    cdx_status st;
    cdx_store_model_info *m = NULL;
    size_t n = 0;
    int began = 0;

    if ((st = cdx_store_read_begin(c->s, &began)) != CDX_OK) return st;
    st = check_sqlite(c);
    if (st == CDX_OK) st = check_rows(c, orphans);
    if (st == CDX_OK) st = cdx_store_models(c->s, &m, &n);
    cdx_store_read_end(c->s, began);
    if (st != CDX_OK) return st;
    for (size_t i = 0; i < n && st == CDX_OK; i++)
        st = check_faiss(c, m[i].id, m[i].name, m[i].dim, m[i].index_factory);
    cdx_store_models_free(m, n);
    return st;
}

static cdx_status repair(checker *c)
{
    cdx_store *s = c->s;
    cdx_status st;
    cdx_store_model_info *m = NULL;
    size_t n = 0;
    sqlite3_stmt *q = NULL;
    int rc;

    if ((st = cdx_store_exec(s, "BEGIN IMMEDIATE")) != CDX_OK) return st;
    /* Files whose vector is missing or malformed: forget them (and their
     * vector), so the daemon indexes them again as new files. */
    st = cdx_store_exec(s,
                        "DELETE FROM files WHERE id IN (SELECT f.id FROM files f LEFT JOIN "
                        "vectors v ON v.id = f.vector_id LEFT JOIN models m ON m.id = v.model_id "
                        "WHERE (f.state = 0 AND v.id IS NULL) OR (v.id IS NOT NULL AND "
                        "(length(v.data) != 2 * m.dim OR f.hash IS NULL OR f.hash != v.hash)))");
    if (st == CDX_OK)
        st = cdx_store_exec(s, "UPDATE files SET vector_id = NULL WHERE state != 0 AND vector_id IS NOT NULL");
    if (st == CDX_OK &&
        sqlite3_prepare_v2(s->db,
                           "SELECT v.id, v.model_id FROM vectors v WHERE NOT EXISTS "
                           "(SELECT 1 FROM files f WHERE f.vector_id = v.id)",
                           -1, &q, NULL) != SQLITE_OK)
        st = cdx_store_sqlfail(s, "prepare");
    if (st == CDX_OK) {
        int64_t (*rows)[2] = NULL;
        size_t cnt = 0, cap = 0;
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            if (cnt == cap) {
                int64_t (*p)[2] = cdx_grow(rows, &cap, cnt + 1, sizeof *rows, 64);
                if (!p) {
                    st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
                    break;
                }
                rows = p;
            }
            rows[cnt][0] = sqlite3_column_int64(q, 0);
            rows[cnt][1] = sqlite3_column_int64(q, 1);
            cnt++;
        }
        sqlite3_finalize(q);
        q = NULL;
        for (size_t i = 0; i < cnt && st == CDX_OK; i++)
            st = cdx_store_drop_vector(s, rows[i][1], rows[i][0]);
        if (st == CDX_OK && cnt) report(c, 0, "repaired: removed %zu orphan vectors", cnt);
        free(rows);
    }
    if (st == CDX_OK) st = cdx_store_exec(s, "COMMIT");
    if (st != CDX_OK) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }

    /* Rebuild and save every model's FAISS file. */
    if ((st = cdx_store_models(s, &m, &n)) != CDX_OK) return st;
    for (size_t i = 0; i < n && st == CDX_OK; i++) {
        cdx_vindex *vx = NULL;
        st = cdx_store_index_build(s, m[i].id, m[i].dim, m[i].index_factory, &vx);
        if (st == CDX_OK) st = cdx_store_index_save(s, vx, m[i].id);
        if (st == CDX_OK) report(c, 0, "repaired: rebuilt the FAISS index of model %s", m[i].name);
        if (st == CDX_OK && m[i].id == s->model_id) {
            cdx_vindex_free(s->vx);
            s->vx = vx;
            vx = NULL;
        }
        cdx_vindex_free(vx);
    }
    cdx_store_models_free(m, n);
    return st;
}

cdx_status cdx_store_check(cdx_store *s, int repair_it, cdx_store_report_fn fn, void *user,
                           int64_t *problems)
{
    checker c = {s, fn, user, 0};
    cdx_status st;
    int64_t orphans = 0;

    if (!s) return cdx_fail(CDX_ERR_ARG, "cdx_store_check: no store");
    if (s->txn) return cdx_fail(CDX_ERR_ARG, "cdx_store_check: a transaction is open");
    if (repair_it && !s->writer)
        return cdx_fail(CDX_ERR_ARG, "cdx_store_check: repairing needs the store open for writing");
    if ((st = check_all(&c, &orphans)) != CDX_OK) return st;
    if (repair_it && c.problems) {
        report(&c, 0, "repairing %lld problems", (long long)c.problems);
        if ((st = repair(&c)) != CDX_OK) return st;
        c.problems = 0;
        report(&c, 0, "checking again");
        if ((st = check_all(&c, &orphans)) != CDX_OK) return st;
    }
    if (problems) *problems = c.problems;
    return CDX_OK;
}
