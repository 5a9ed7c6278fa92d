/*
 * store_tower.c - finding a model's vector space by its image tower
 * (schema/005_tower_identity.sql; cdx_store_use_model calls these).
 *
 * A models row is a vector space: the image vectors one image tower
 * made.  Its key is the model that first made them; other models with
 * the same image tower (cdx_model_vision_key), such as one tuned with
 * --lock image, are listed in model_keys and select the same row, so
 * their searches use the vectors already there and the indexer finds
 * nothing to re-embed.  Readers write here too (one small row, as they
 * write moderation results); a reader that cannot write still resolves
 * the model, it only hashes the tower again next time.
 */
#include <sqlite3.h>
#include <string.h>
#include <time.h>

#include "store_internal.h"

/* The row of model_keys or, failing that, of models.vision_key that
 * model m shares; *id = 0 when none.  dim must match. */
cdx_status cdx_store_tower_lookup(cdx_store *s, const cdx_store_model *m, int64_t *id)
{
    sqlite3_stmt *q = NULL;
    *id = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT k.model_id FROM model_keys k JOIN models m ON m.id = k.model_id "
                           "WHERE k.key = ?1 AND m.dim = ?2", -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_text(q, 1, m->key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, m->dim);
    if (sqlite3_step(q) == SQLITE_ROW) *id = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    if (*id || !m->vision_key || !*m->vision_key) return CDX_OK;

    if (sqlite3_prepare_v2(s->db,
                           "SELECT id FROM models WHERE vision_key = ?1 AND dim = ?2 ORDER BY id LIMIT 1",
                           -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_text(q, 1, m->vision_key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, m->dim);
    if (sqlite3_step(q) == SQLITE_ROW) *id = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    if (!*id) return CDX_OK;
    /* remember it: the next use needs no hashing */
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO model_keys(key, model_id, name, dir, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, m->key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, *id);
        if (m->name) sqlite3_bind_text(q, 3, m->name, -1, SQLITE_TRANSIENT);
        if (m->dir) sqlite3_bind_text(q, 4, m->dir, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 5, (int64_t)time(NULL));
        if (sqlite3_step(q) != SQLITE_DONE)
            CDX_DEBUG("%s: recording model %s: %s", s->db_path, m->key, sqlite3_errmsg(s->db));
    }
    sqlite3_finalize(q);
    return CDX_OK;
}

/* Record row id's vision key when it has none (rows made before schema 5). */
void cdx_store_tower_record(cdx_store *s, int64_t id, const char *vision_key)
{
    sqlite3_stmt *q = NULL;
    if (!vision_key || !*vision_key) return;
    if (sqlite3_prepare_v2(s->db, "UPDATE models SET vision_key = ?1 WHERE id = ?2 AND vision_key IS NULL",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, vision_key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, id);
        if (sqlite3_step(q) != SQLITE_DONE)
            CDX_DEBUG("%s: recording a vision key: %s", s->db_path, sqlite3_errmsg(s->db));
    }
    sqlite3_finalize(q);
}
