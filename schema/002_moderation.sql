-- 002_moderation.sql - stored moderation results, and an index for the
-- extension filter.
--
-- Scores depend on the image content and the model, which is exactly a
-- vector: results hang off vectors and go when their vector goes.  A
-- later sweep with --new scores only vectors without results for its
-- label set.
CREATE TABLE moderation (
    vector_id INTEGER NOT NULL REFERENCES vectors(id) ON DELETE CASCADE,
    labelset  TEXT NOT NULL,
    label     TEXT NOT NULL,
    score     REAL NOT NULL,
    flagged   INTEGER NOT NULL DEFAULT 0,
    scored_at INTEGER NOT NULL,
    PRIMARY KEY (vector_id, labelset, label)
) WITHOUT ROWID;
CREATE INDEX moderation_labelset ON moderation(labelset, vector_id);

CREATE INDEX files_ext ON files(ext);
