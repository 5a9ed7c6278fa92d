-- 005_tower_identity.sql - the image tower as its own identity.
--
-- A model's vectors depend only on its image tower (vision config,
-- vision tensors and visual projection, preprocessing).  A model tuned
-- with its image tower locked (clipdex train --lock image) has another
-- key but the same image vectors: it must search the vectors already
-- there, with no re-embedding.  So a models row is a vector space:
-- vision_key (cdx_model_vision_key) names the image tower that made its
-- vectors, and model_keys lists the other models (by cdx_store_model_key)
-- found to share it.  Rows made before this step have no vision_key yet:
-- the next use of that model (the indexer, or a search) fills it in.
ALTER TABLE models ADD COLUMN vision_key TEXT;
CREATE INDEX models_vision ON models(vision_key);

CREATE TABLE model_keys (
    key        TEXT PRIMARY KEY,                      -- the other model's key
    model_id   INTEGER NOT NULL REFERENCES models(id), -- the space it shares
    name       TEXT,
    dir        TEXT,
    created_at INTEGER NOT NULL
);
