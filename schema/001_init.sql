-- 001_init.sql - the first clipdex store schema.
--
-- SQLite is the source of truth; FAISS files are caches derived from the
-- vectors table through the change log (see core/store/store_internal.h).
-- The schema version is PRAGMA user_version, set by the code that runs
-- these files (core/store/store.c), in the same transaction.

-- Free-form key/value state: the store's identity (store_uuid), the
-- model the writer used last (current_model), and the daemon's status
-- (state, last error, images/s ...) for `clipdex status`.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value
);

-- One row per CLIP model that made vectors.  key identifies the weights
-- (hash of config + weights header); vectors never mix across models.
CREATE TABLE models (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key           TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    dir           TEXT,
    dim           INTEGER NOT NULL CHECK (dim > 0),
    index_factory TEXT NOT NULL DEFAULT 'Flat', -- FAISS index_factory string
    pruned_upto   INTEGER NOT NULL DEFAULT 0,   -- change rows with seq <= this are gone
    created_at    INTEGER NOT NULL
);

-- One embedding per (model, content).  The rowid is the FAISS id, never
-- reused (AUTOINCREMENT).  data: dim float16 little-endian, L2-normalised.
CREATE TABLE vectors (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id   INTEGER NOT NULL REFERENCES models(id),
    hash       BLOB NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (model_id, hash)
);

-- One row per file.  path is a BLOB: Linux paths are bytes, not text.
-- Times are unix seconds except mtime_ns.  state 0 = indexed (vector_id
-- set), 1 = failed (error set; retried when size/mtime/inode change).
CREATE TABLE files (
    id           INTEGER PRIMARY KEY,
    path         BLOB NOT NULL UNIQUE,
    ext          TEXT,               -- lower-case extension, for filters
    dev          INTEGER,
    ino          INTEGER,
    size         INTEGER,
    mtime_ns     INTEGER,
    hash         BLOB,               -- SHA-256 of the content
    width        INTEGER,
    height       INTEGER,
    orientation  INTEGER,            -- EXIF 1..8
    taken_at     INTEGER,            -- EXIF DateTimeOriginal
    camera_make  TEXT,
    camera_model TEXT,
    gps_lat      REAL,
    gps_lon      REAL,
    phash        INTEGER,            -- 64-bit perceptual hash (visual dupes)
    state        INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1)),
    error        TEXT,
    indexed_at   INTEGER NOT NULL,
    vector_id    INTEGER REFERENCES vectors(id),
    CHECK (state = 1 OR vector_id IS NOT NULL)
);
CREATE INDEX files_hash ON files(hash);
CREATE INDEX files_inode ON files(dev, ino);
CREATE INDEX files_vector ON files(vector_id);
CREATE INDEX files_when ON files(coalesce(taken_at, mtime_ns / 1000000000));

-- The change log: every vector added or removed, in order.  A FAISS file
-- records the seq it reflects; opening replays the rows after it.
CREATE TABLE changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id  INTEGER NOT NULL,
    op        INTEGER NOT NULL CHECK (op IN (1, 2)),  -- 1 add, 2 remove
    vector_id INTEGER NOT NULL
);
CREATE INDEX changes_model ON changes(model_id, seq);
