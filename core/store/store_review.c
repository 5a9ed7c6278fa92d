/*
 * store_review.c - what `clipdex serve` reads and writes beside the search:
 * a file row by id, the label sets that have moderation results, and the
 * review marks (schema/003_review_marks.sql).
 *
 * Marks are written on reader handles, like moderation results: one row
 * per call, no vectors or FAISS touched.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_internal.h"

cdx_status cdx_store_get_file_by_id(cdx_store *s, int64_t id, cdx_file_info *out, int *found)
{
    sqlite3_stmt *q = NULL;
    if (!s || !out || !found) return cdx_fail(CDX_ERR_ARG, "cdx_store_get_file_by_id: bad argument");
    if (sqlite3_prepare_v2(s->db, "SELECT " CDX_FILE_COLUMNS CDX_FILE_FROM " WHERE f.id = ?", -1,
                           &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_int64(q, 1, id);
    return cdx_store_one_file(s, q, out, found);
}

cdx_status cdx_store_moderation_labelsets(cdx_store *s, char ***out, size_t *n)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    char **v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    if (!s || !out || !n) return cdx_fail(CDX_ERR_ARG, "cdx_store_moderation_labelsets: bad argument");
    if (sqlite3_prepare_v2(s->db, "SELECT DISTINCT labelset FROM moderation ORDER BY labelset", -1, &q,
                           NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(q, 0);
        char **p = cdx_grow(v, &cap, len + 1, sizeof *p, 8);
        if (!p) goto oom;
        v = p;
        if (!(v[len] = strdup(t ? t : ""))) goto oom;
        len++;
    }
    if (rc != SQLITE_DONE) st = cdx_store_sqlfail(s, "moderation");
    sqlite3_finalize(q);
    if (st != CDX_OK) {
        cdx_store_labelsets_free(v, len);
        return st;
    }
    *out = v;
    *n = len;
    return CDX_OK;
oom:
    sqlite3_finalize(q);
    cdx_store_labelsets_free(v, len);
    return cdx_fail(CDX_ERR_NOMEM, "out of memory");
}

void cdx_store_labelsets_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

cdx_status cdx_store_mark_set(cdx_store *s, int64_t vector_id, const char *label, const char *mark)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    if (!s || !label || (mark && strcmp(mark, "reviewed") != 0 && strcmp(mark, "false_positive") != 0))
        return cdx_fail(CDX_ERR_ARG, "cdx_store_mark_set: bad argument");
    if (sqlite3_prepare_v2(s->db,
                           mark ? "INSERT OR REPLACE INTO review_marks(vector_id, label, mark, marked_at) "
                                  "SELECT id, ?2, ?3, ?4 FROM vectors WHERE id = ?1"
                                : "DELETE FROM review_marks WHERE vector_id = ?1 AND label = ?2",
                           -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_int64(q, 1, vector_id);
    sqlite3_bind_text(q, 2, label, -1, SQLITE_STATIC);
    if (mark) {
        sqlite3_bind_text(q, 3, mark, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, (int64_t)time(NULL));
    }
    if (sqlite3_step(q) != SQLITE_DONE) st = cdx_store_sqlfail(s, "review mark");
    else if (mark && sqlite3_changes(s->db) == 0)
        st = cdx_fail(CDX_ERR_ARG, "no vector %lld", (long long)vector_id);
    sqlite3_finalize(q);
    return st;
}

cdx_status cdx_store_mark_foreach(cdx_store *s, cdx_store_mark_fn fn, void *user)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    int rc;
    if (!s || !fn) return cdx_fail(CDX_ERR_ARG, "cdx_store_mark_foreach: bad argument");
    if (sqlite3_prepare_v2(s->db, "SELECT vector_id, label, mark FROM review_marks ORDER BY vector_id, label",
                           -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (fn(sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1),
               (const char *)sqlite3_column_text(q, 2), user))
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) st = cdx_store_sqlfail(s, "review marks");
    sqlite3_finalize(q);
    return st;
}
