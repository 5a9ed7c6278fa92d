/*
 * store.c - the index store's SQLite side: opening (lock, schema,
 * migrations), models, the writes the daemon makes (files, vectors, the
 * change log), lookups, moderation results, meta and stats.
 *
 * SQLite is the source of truth; the FAISS index (vindex.c, fed by
 * store_changes.c) is a cache derived from it through the change log (see
 * store_internal.h for the invariant).  Every write that adds or removes a vector appends a
 * change row in the same transaction, so a SIGKILL at any instant leaves a
 * database that describes itself completely.
 *
 * Vectors are stored as float16: half the size of float32 (1 KiB instead
 * of 2 KiB per 512-d vector; 1 GB per million images saved on disk and in
 * the page cache), while the rounding (relative 2^-11 per component) moves
 * a cosine score of unit vectors by about 1e-4, far below the differences
 * that order search results.  FAISS is always fed the float16-rounded
 * values, so an index built incrementally and one rebuilt from SQLite are
 * identical.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

#define DB_NAME "clipdex.db"
#define LOCK_NAME "writer.lock"
#define BUSY_TIMEOUT_MS 10000

/* ------------------------------------------------------------------ */
/* float16                                                             */
/* ------------------------------------------------------------------ */

/* IEEE 754 binary16 with round-to-nearest-even, subnormals, inf and NaN.
 * Written out rather than using _Float16 so the rounding is explicit and
 * the same on every compiler and flag set. */
uint16_t cdx_store_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;

    if (exp == 0xff) /* inf or NaN (keep NaN a NaN) */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf */
    if (e <= 0) {
        /* Subnormal half (or zero): shift the full significand down. */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e; /* 14..24 */
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    /* A carry out of the significand correctly bumps the exponent (and
     * turns the largest finite values into inf). */
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

float cdx_store_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t x;
    float f;

    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    if (exp == 31)
        x = sign | 0x7f800000u | (man << 13);
    else
        x = sign | ((exp - 15 + 127) << 23) | (man << 13);
    memcpy(&f, &x, 4);
    return f;
}

cdx_status cdx_vec_encode(const float *v, int n, uint8_t *blob)
{
    double ss = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) return cdx_fail(CDX_ERR_ARG, "vector has a non-finite component");
        ss += (double)v[i] * v[i];
    }
    if (ss <= 0) return cdx_fail(CDX_ERR_ARG, "vector is all zeros");
    double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < n; i++) {
        uint16_t h = cdx_store_f32_to_f16((float)(v[i] * inv));
        blob[2 * i] = (uint8_t)(h & 0xff); /* little-endian on every host */
        blob[2 * i + 1] = (uint8_t)(h >> 8);
    }
    return CDX_OK;
}

cdx_status cdx_vec_decode(const void *blob, size_t bytes, int n, float *out)
{
    const uint8_t *b = blob;
    if (!b || bytes != (size_t)n * 2)
        return cdx_fail(CDX_ERR_FORMAT, "vector blob is %zu bytes, expected %d", bytes, 2 * n);
    for (int i = 0; i < n; i++)
        out[i] = cdx_store_f16_to_f32((uint16_t)(b[2 * i] | (b[2 * i + 1] << 8)));
    return CDX_OK;
}

/* ------------------------------------------------------------------ */
/* SQLite helpers                                                      */
/* ------------------------------------------------------------------ */

static cdx_status sql_status(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return CDX_ERR_BUSY;
    case SQLITE_NOMEM: return CDX_ERR_NOMEM;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM: return CDX_ERR_IO;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return CDX_ERR_FORMAT;
    default: return CDX_ERR_STORE;
    }
}

cdx_status cdx_store_sqlfail(cdx_store *s, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db);
    /* damage: say what gets out of it (not "index again", which costs a
     * full re-embedding) */
    const char *hint = (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB
                           ? " (the database is damaged: 'clipdex check --repair' restores its backup)"
                           : "";
    return cdx_fail(sql_status(rc), "%s: %s: %s%s", s->db_path, what, sqlite3_errmsg(s->db), hint);
}

sqlite3_stmt *cdx_store_stmt(cdx_store *s, int id, const char *sql)
{
    if (!s->st[id]) {
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st[id], NULL) !=
            SQLITE_OK) {
            cdx_store_sqlfail(s, "prepare");
            s->st[id] = NULL;
            return NULL;
        }
    } else {
        sqlite3_reset(s->st[id]);
        sqlite3_clear_bindings(s->st[id]);
    }
    return s->st[id];
}

cdx_status cdx_store_exec(cdx_store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cdx_status st = cdx_fail(sql_status(sqlite3_extended_errcode(s->db)), "%s: %s",
                                 s->db_path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return st;
    }
    return CDX_OK;
}

/* Single-value query helper: the first column of the first row as int64
 * (def when no row or NULL). */
static cdx_status query_int(cdx_store *s, const char *sql, int64_t a, int64_t def, int64_t *out)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    int rc;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    if (sqlite3_bind_parameter_count(q) > 0) sqlite3_bind_int64(q, 1, a);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_type(q, 0) == SQLITE_NULL ? def : sqlite3_column_int64(q, 0);
    else if (rc == SQLITE_DONE)
        *out = def;
    else
        st = cdx_store_sqlfail(s, "query");
    sqlite3_finalize(q);
    return st;
}

/* Read transactions give readers one snapshot for a whole operation.
 * Helpers open one without caring whether their caller already did: when
 * a transaction is open (a caller's, or the writer's explicit one, which
 * already is a consistent view) they do nothing. */
cdx_status cdx_store_read_begin(cdx_store *s, int *began)
{
    *began = 0;
    if (s->txn || !sqlite3_get_autocommit(s->db)) return CDX_OK;
    if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "begin read");
    *began = 1;
    return CDX_OK;
}

void cdx_store_read_end(cdx_store *s, int began)
{
    if (began && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
}

cdx_status cdx_store_log_head(cdx_store *s, int64_t model_id, int64_t *head)
{
    sqlite3_stmt *q = cdx_store_stmt(
        s, ST_HEAD,
        "SELECT max(coalesce((SELECT max(seq) FROM changes WHERE model_id = ?1), 0), "
        "pruned_upto) FROM models WHERE id = ?1");
    int rc;
    if (!q) return CDX_ERR_STORE;
    sqlite3_bind_int64(q, 1, model_id);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *head = sqlite3_column_int64(q, 0);
        sqlite3_reset(q);
        return CDX_OK;
    }
    if (rc == SQLITE_DONE) {
        *head = 0;
        return CDX_OK;
    }
    return cdx_store_sqlfail(s, "log head");
}

/* ------------------------------------------------------------------ */
/* Paths                                                               */
/* ------------------------------------------------------------------ */

char *cdx_store_default_dir(void)
{
    const char *e = getenv("CLIPDEX_DATA");
    if (e && *e) return strdup(e);
    e = getenv("XDG_DATA_HOME");
    if (e && *e) return cdx_path_join(e, "clipdex");
    e = getenv("HOME");
    if (e && *e) return cdx_path_join(e, ".local/share/clipdex");
    return NULL;
}

char *cdx_store_faiss_path(const cdx_store *s, int64_t model_id)
{
    char name[64];
    snprintf(name, sizeof name, "index-%lld.faiss", (long long)model_id);
    return cdx_path_join(s->dir, name);
}

/* The paths under dir are exactly those in [dir + "/", dir + "0"): '0' is
 * the byte after '/', and paths compare as bytes (memcmp, BLOB order). */
cdx_status cdx_store_prefix_range(const char *dir, char **lo, char **hi, size_t *n)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    if (len == 0) return cdx_fail(CDX_ERR_ARG, "empty directory");
    size_t plen = (len == 1 && dir[0] == '/') ? 1 : len + 1;
    char *a = malloc(plen + 1), *b = malloc(plen + 1);
    if (!a || !b) {
        free(a);
        free(b);
        return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    }
    memcpy(a, dir, len);
    a[plen - 1] = '/';
    a[plen] = '\0';
    memcpy(b, a, plen + 1);
    b[plen - 1] = '0';
    *lo = a;
    *hi = b;
    *n = plen;
    return CDX_OK;
}

/* Lower-case extension of the last path component (NULL when none). */
static void path_ext(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    out[0] = '\0';
    if (!dot || dot == base || !dot[1] || strlen(dot + 1) >= cap) return;
    size_t i = 0;
    for (const char *p = dot + 1; *p; p++) {
        char c = *p;
        out[i++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[i] = '\0';
}

/* ------------------------------------------------------------------ */
/* The writer lock                                                     */
/* ------------------------------------------------------------------ */

/* flock() rather than an exclusive-create lock file: the kernel releases
 * it when the holder dies, even by SIGKILL, so there are no stale locks to
 * guess about.  The file is unlinked at release; a process that opened the
 * old file just before that would lock an unlinked inode, so after
 * locking we check that the path still names the inode we hold. */
cdx_status cdx_store_lock(cdx_store *s)
{
    for (int attempt = 0; attempt < 10; attempt++) {
        struct stat a, b;
        int fd = open(s->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return cdx_fail(CDX_ERR_IO, "%s: %s", s->lock_path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char buf[32] = "";
            ssize_t r = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (e != EWOULDBLOCK)
                return cdx_fail(CDX_ERR_IO, "%s: lock: %s", s->lock_path, strerror(e));
            buf[r > 0 ? r : 0] = '\0';
            long pid = strtol(buf, NULL, 10);
            if (pid > 0)
                return cdx_fail(CDX_ERR_BUSY,
                                "%s: another writer (pid %ld) holds the store; is clipdexd "
                                "running?", s->lock_path, pid);
            return cdx_fail(CDX_ERR_BUSY, "%s: another writer holds the store; is clipdexd running?",
                            s->lock_path);
        }
        if (fstat(fd, &a) == 0 && stat(s->lock_path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            char buf[32];
            int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)
                CDX_WARN("%s: cannot record our pid: %s", s->lock_path, strerror(errno));
            s->lock_fd = fd;
            return CDX_OK;
        }
        close(fd); /* the file was replaced under us: try the new one */
    }
    return cdx_fail(CDX_ERR_BUSY, "%s: lock file keeps changing", s->lock_path);
}

cdx_status cdx_store_writer_note(cdx_store *s, const char *note)
{
    char buf[1100];
    int n;
    if (!s || s->lock_fd < 0) return cdx_fail(CDX_ERR_ARG, "cdx_store_writer_note: not the writer");
    /* pid line, then the note on one line (newlines would split it) */
    n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (note && *note) {
        int m = snprintf(buf + n, sizeof buf - (size_t)n, "%.1000s\n", note);
        for (int i = n; i < n + m - 1; i++)
            if (buf[i] == '\n') buf[i] = ' ';
        n += m;
    }
    if (pwrite(s->lock_fd, buf, (size_t)n, 0) != n || ftruncate(s->lock_fd, n) != 0)
        return cdx_fail(CDX_ERR_IO, "%s: %s", s->lock_path, strerror(errno));
    return CDX_OK;
}

char *cdx_store_writer_note_read(const char *dir)
{
    char *path = cdx_path_join(dir, LOCK_NAME), line[1200], *note = NULL;
    FILE *f = path ? fopen(path, "r") : NULL;
    free(path);
    if (!f) return NULL;
    if (fgets(line, sizeof line, f) && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0]) note = strdup(line);
    }
    fclose(f);
    return note;
}

void cdx_store_unlock(cdx_store *s)
{
    if (s->lock_fd < 0) return;
    unlink(s->lock_path);
    close(s->lock_fd);
    s->lock_fd = -1;
}

/* ------------------------------------------------------------------ */
/* Schema                                                              */
/* ------------------------------------------------------------------ */

static int schema_latest(void)
{
    return cdx_schema_n_steps > 0 ? cdx_schema_steps[cdx_schema_n_steps - 1].version : 0;
}

static cdx_status read_user_version(cdx_store *s, int *v)
{
    int64_t x = 0;
    cdx_status st = query_int(s, "PRAGMA user_version", 0, 0, &x);
    if (st == CDX_OK) *v = (int)x;
    return st;
}

static cdx_status ensure_uuid(cdx_store *s)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'store_uuid'", -1, &q,
                           NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) == 32) {
        memcpy(s->uuid, sqlite3_column_text(q, 0), 32);
        s->uuid[32] = '\0';
    } else {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: no store_uuid in meta: not a clipdex store", s->db_path);
    }
    sqlite3_finalize(q);
    return st;
}

/* Run the schema steps after the database's version, all in one
 * transaction: a failure (or a kill) leaves the old version intact.
 * BEGIN IMMEDIATE takes SQLite's write lock first, and the version is read
 * again under it, so two processes racing here migrate once. */
static cdx_status migrate(cdx_store *s)
{
    cdx_status st;
    int v = 0, began = 0;

    if ((st = cdx_store_exec(s, "BEGIN IMMEDIATE")) != CDX_OK) return st;
    began = 1;
    if ((st = read_user_version(s, &v)) != CDX_OK) goto cleanup;
    for (int i = 0; i < cdx_schema_n_steps; i++) {
        const cdx_schema_step *step = &cdx_schema_steps[i];
        char pragma[64];
        if (step->version <= v) continue;
        CDX_LOG(CDX_LOG_INFO, "%s: schema %d -> %d (%s)", s->db_path, v, step->version, step->name);
        if (sqlite3_exec(s->db, step->sql, NULL, NULL, NULL) != SQLITE_OK) {
            st = cdx_fail(sql_status(sqlite3_extended_errcode(s->db)),
                          "%s: migrating to schema %d (%s): %s", s->db_path, step->version,
                          step->name, sqlite3_errmsg(s->db));
            goto cleanup;
        }
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", step->version);
        if ((st = cdx_store_exec(s, pragma)) != CDX_OK) goto cleanup;
        if (v == 0) {
            /* A fresh database: give it its identity.  FAISS files record
             * it so a file never gets applied to another database. */
            uint8_t rnd[16];
            char hex[33], sql[128];
            if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
                st = cdx_fail(CDX_ERR_IO, "getrandom: %s", strerror(errno));
                goto cleanup;
            }
            for (int j = 0; j < 16; j++) snprintf(hex + 2 * j, 3, "%02x", rnd[j]);
            snprintf(sql, sizeof sql,
                     "INSERT INTO meta(key, value) VALUES ('store_uuid', '%s'), "
                     "('created_at', %lld)", hex, (long long)time(NULL));
            if ((st = cdx_store_exec(s, sql)) != CDX_OK) goto cleanup;
        }
        v = step->version;
    }
    st = cdx_store_exec(s, "COMMIT");
    if (st == CDX_OK) began = 0;
cleanup:
    if (began) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    if (st == CDX_OK) s->schema_version = v;
    return st;
}

static cdx_status check_schema(cdx_store *s)
{
    cdx_status st;
    int v = 0, latest = schema_latest();
    int locked_here = 0;

    if ((st = read_user_version(s, &v)) != CDX_OK) return st;
    if (v > latest)
        return cdx_fail(CDX_ERR_UNSUPPORTED,
                        "%s: the store has schema version %d, newer than this clipdex %s knows "
                        "(%d): upgrade clipdex", s->db_path, v, CDX_VERSION, latest);
    if (v == latest) {
        s->schema_version = v;
        return ensure_uuid(s);
    }
    if (!s->writer && v > 0) {
        /* A reader may migrate only while no writer runs: a running older
         * daemon would not understand the new schema.  Version 0 is a
         * store being created (a daemon just started): it has no tables a
         * writer could be using, so the reader creates them, serialised
         * with the writer's own migration by BEGIN IMMEDIATE (whichever
         * comes second finds the version already set). */
        if ((st = cdx_store_lock(s)) != CDX_OK) {
            if (st == CDX_ERR_BUSY)
                return cdx_fail(CDX_ERR_BUSY,
                                "%s: the store has schema version %d and this clipdex needs %d, "
                                "but a writer (an older clipdexd?) is running: restart it",
                                s->db_path, v, latest);
            return st;
        }
        locked_here = 1;
    }
    st = migrate(s);
    if (locked_here) cdx_store_unlock(s);
    if (st != CDX_OK) return st;
    return ensure_uuid(s);
}

/* ------------------------------------------------------------------ */
/* Open / close                                                        */
/* ------------------------------------------------------------------ */

static cdx_status mkdir_p(const char *dir)
{
    char *p = strdup(dir);
    cdx_status st = CDX_OK;
    if (!p) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    for (char *c = p + 1;; c++) {
        if (*c == '/' || *c == '\0') {
            char save = *c;
            *c = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                st = cdx_fail(CDX_ERR_IO, "%s: %s", p, strerror(errno));
                break;
            }
            *c = save;
            if (!save) break;
        }
    }
    free(p);
    return st;
}

cdx_status cdx_store_open(const char *dir, const cdx_store_opts *opts, cdx_store **out)
{
    cdx_store_opts o = {0};
    cdx_store *s = NULL;
    cdx_status st = CDX_OK;
    struct stat sb;
    int rc, flags;

    if (!dir || !*dir || !out) return cdx_fail(CDX_ERR_ARG, "cdx_store_open: no directory");
    if (opts) o = *opts;
    s = calloc(1, sizeof *s);
    if (!s) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    s->lock_fd = -1;
    s->writer = o.writer != 0;
    s->save_every = o.save_every > 0 ? o.save_every : 5000;
    s->train_min = o.train_min;
    s->progress = o.progress;
    s->progress_user = o.progress_user;
    s->dir = strdup(dir);
    s->db_path = cdx_path_join(dir, DB_NAME);
    s->lock_path = cdx_path_join(dir, LOCK_NAME);
    s->factory = strdup(o.index_factory && *o.index_factory ? o.index_factory : "Flat");
    s->search_params = o.search_params && *o.search_params ? strdup(o.search_params) : NULL;
    if (!s->dir || !s->db_path || !s->lock_path || !s->factory ||
        (o.search_params && *o.search_params && !s->search_params)) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (strstr(s->factory, "IDMap")) {
        st = cdx_fail(CDX_ERR_ARG, "index type '%s': leave out IDMap, the store adds it", s->factory);
        goto fail;
    }

    if (s->writer) {
        if ((st = mkdir_p(dir)) != CDX_OK) goto fail;
        if ((st = cdx_store_lock(s)) != CDX_OK) goto fail;
        flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    } else {
        if (stat(s->db_path, &sb) != 0) {
            st = cdx_fail(CDX_ERR_IO,
                          "no index store in %s (%s): index photos first with clipdexd or "
                          "'clipdex index DIR'", dir, strerror(errno));
            goto fail;
        }
        flags = SQLITE_OPEN_READWRITE;
    }
    rc = sqlite3_open_v2(s->db_path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK && !s->writer) {
        /* A store we may not write (another user's): read it anyway; WAL
         * still works as long as the -shm file exists. */
        sqlite3_close(s->db);
        s->db = NULL;
        rc = sqlite3_open_v2(s->db_path, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    }
    if (rc != SQLITE_OK) {
        st = cdx_fail(sql_status(rc), "%s: %s", s->db_path,
                      s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    if (s->writer) {
        /* WAL: readers never block the writer and see committed states.
         * synchronous=FULL: a commit survives power loss, not just a kill,
         * so the change log never goes backwards under a saved FAISS file. */
        if ((st = cdx_store_exec(s, "PRAGMA journal_mode = WAL")) != CDX_OK) goto fail;
        if ((st = cdx_store_exec(s, "PRAGMA synchronous = FULL")) != CDX_OK) goto fail;
    } else {
        /* A reader writes only moderation results and meta values, one row
         * per transaction.  NORMAL in WAL mode keeps the database
         * consistent at any crash and only skips the fsync per commit
         * (FULL cost ~2-3 ms per moderation row); losing the last results
         * to a power cut means a later sweep scores those images again. */
        (void)cdx_store_exec(s, "PRAGMA synchronous = NORMAL");
    }
    if ((st = cdx_store_exec(s, "PRAGMA foreign_keys = ON")) != CDX_OK) goto fail;
    if ((st = check_schema(s)) != CDX_OK) goto fail;
    *out = s;
    return CDX_OK;
fail:
    cdx_store_close(s);
    return st;
}

void cdx_store_close(cdx_store *s)
{
    if (!s) return;
    if (s->txn) cdx_store_rollback(s);
    if (s->vx && s->lock_fd >= 0 && cdx_vindex_unsaved(s->vx) > 0) {
        if (cdx_store_save(s) != CDX_OK)
            CDX_WARN("saving the FAISS index at close: %s", cdx_last_error());
    }
    cdx_vindex_free(s->vx);
    for (int i = 0; i < ST_N; i++) sqlite3_finalize(s->st[i]);
    if (s->db) sqlite3_close(s->db);
    cdx_store_unlock(s);
    free(s->dir);
    free(s->db_path);
    free(s->lock_path);
    free(s->factory);
    free(s->search_params);
    free(s->model_key);
    free(s->model_name);
    free(s);
}

/* ------------------------------------------------------------------ */
/* Models                                                              */
/* ------------------------------------------------------------------ */

cdx_status cdx_store_model_key(const char *config_path, const char *weights_path,
                               char out[2 * CDX_HASH_SIZE + 1])
{
    cdx_status st;
    char *cfg = NULL;
    size_t cfg_len = 0;
    uint8_t *buf = NULL;
    FILE *f = NULL;
    struct stat sb;
    size_t head = 1 << 20, n, total;
    uint8_t h[CDX_HASH_SIZE];

    if ((st = cdx_read_file(config_path, 16 << 20, &cfg, &cfg_len)) != CDX_OK) return st;
    f = fopen(weights_path, "rb");
    if (!f || fstat(fileno(f), &sb) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", weights_path, strerror(errno));
        goto cleanup;
    }
    /* config bytes | 8-byte weights size | first MiB of the weights */
    total = cfg_len + 8 + head;
    buf = malloc(total);
    if (!buf) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    memcpy(buf, cfg, cfg_len);
    for (int i = 0; i < 8; i++) buf[cfg_len + i] = (uint8_t)((uint64_t)sb.st_size >> (8 * i));
    n = fread(buf + cfg_len + 8, 1, head, f);
    if (ferror(f)) {
        st = cdx_fail(CDX_ERR_IO, "%s: read error", weights_path);
        goto cleanup;
    }
    if ((st = cdx_hash_buf(buf, cfg_len + 8 + n, h)) != CDX_OK) goto cleanup;
    cdx_hash_hex(h, out);
cleanup:
    free(cfg);
    free(buf);
    if (f) fclose(f);
    return st;
}

static cdx_status set_current_model(cdx_store *s, int64_t id, const cdx_store_model *m, int dim)
{
    char *k = strdup(m->key), *n = strdup(m->name && *m->name ? m->name : m->key);
    if (!k || !n) {
        free(k);
        free(n);
        return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    }
    free(s->model_key);
    free(s->model_name);
    s->model_key = k;
    s->model_name = n;
    s->model_id = id;
    s->dim = dim;
    return CDX_OK;
}

/* Load (or reload) the FAISS index of the current model. */
static cdx_status load_vindex(cdx_store *s, const char *factory)
{
    cdx_status st;
    cdx_vindex *vx = NULL;
    const char *why = NULL;

    cdx_vindex_free(s->vx);
    s->vx = NULL;
    /* (load takes its own read snapshots) */
    if ((st = cdx_store_index_load(s, s->model_id, s->dim, factory, 1, &vx, &why)) != CDX_OK) return st;
    s->vx = vx;
    if (why && s->lock_fd < 0) {
        /* A reader rebuilt the index: save it for the next reader if no
         * writer is running (the writer saves its own). */
        if (cdx_store_lock(s) == CDX_OK) {
            if (cdx_store_index_save(s, vx, s->model_id) != CDX_OK)
                CDX_WARN("saving the rebuilt FAISS index: %s", cdx_last_error());
            cdx_store_unlock(s);
        }
    } else if (why || cdx_vindex_unsaved(vx) > 0) {
        if (s->lock_fd >= 0 && (why || cdx_vindex_unsaved(vx) >= s->save_every)) {
            if ((st = cdx_store_index_save(s, vx, s->model_id)) != CDX_OK) return st;
        }
    }
    return CDX_OK;
}

cdx_status cdx_store_use_model(cdx_store *s, const cdx_store_model *m, int64_t *model_id)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    int64_t id = 0, shared = 0;
    int dim = 0;
    char *factory = NULL;

    if (!s || !m || !m->key || !*m->key || m->dim <= 0)
        return cdx_fail(CDX_ERR_ARG, "cdx_store_use_model: a model needs a key and a dimension");
    if (s->txn) return cdx_fail(CDX_ERR_ARG, "cdx_store_use_model: a transaction is open");
    if (s->vx && s->lock_fd >= 0 && cdx_vindex_unsaved(s->vx) > 0 && cdx_store_save(s) != CDX_OK)
        CDX_WARN("saving the FAISS index of the previous model: %s", cdx_last_error());
    if (sqlite3_prepare_v2(s->db, "SELECT id, dim, index_factory FROM models WHERE key = ?", -1,
                           &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_text(q, 1, m->key, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) {
        id = sqlite3_column_int64(q, 0);
        dim = sqlite3_column_int(q, 1);
        factory = strdup((const char *)sqlite3_column_text(q, 2));
        if (!factory) st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
    }
    sqlite3_finalize(q);
    q = NULL;
    if (st != CDX_OK) goto cleanup;
    if (id) {
        cdx_store_tower_record(s, id, m->vision_key);
    } else {
        /* another model with this image tower made a vector space here */
        if ((st = cdx_store_tower_lookup(s, m, &shared)) != CDX_OK) goto cleanup;
        if (shared) {
            id = shared;
            dim = m->dim;
            if (sqlite3_prepare_v2(s->db, "SELECT index_factory FROM models WHERE id = ?", -1, &q,
                                   NULL) != SQLITE_OK) {
                st = cdx_store_sqlfail(s, "prepare");
                goto cleanup;
            }
            sqlite3_bind_int64(q, 1, id);
            if (sqlite3_step(q) == SQLITE_ROW && !(factory = strdup((const char *)sqlite3_column_text(q, 0))))
                st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            sqlite3_finalize(q);
            q = NULL;
            if (st != CDX_OK) goto cleanup;
        }
    }

    if (id && dim != m->dim) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: model %s is recorded with dimension %d, not %d",
                      s->db_path, m->name ? m->name : m->key, dim, m->dim);
        goto cleanup;
    }
    if (!id && !s->writer) {
        cdx_store_model_info *v = NULL;
        size_t n = 0;
        char names[512] = "";
        size_t used = 0;
        if (cdx_store_models(s, &v, &n) == CDX_OK) {
            for (size_t i = 0; i < n && used + 1 < sizeof names; i++) {
                int w = snprintf(names + used, sizeof names - used, "%s%s (%lld vectors)",
                                 i ? ", " : "", v[i].name, (long long)v[i].n_vectors);
                if (w < 0) break;
                used += (size_t)w < sizeof names - used ? (size_t)w : sizeof names - used - 1;
            }
            cdx_store_models_free(v, n);
        }
        st = cdx_fail(CDX_ERR_STORE,
                      "%s: no vectors of model %s in the store (it has: %s); index with this "
                      "model first, or use the model the index was made with",
                      s->dir, m->name ? m->name : m->key, n ? names : "none");
        goto cleanup;
    }
    if (s->writer && shared) {
        /* The space of another model with this image tower: it stays
         * that model's row (and index type); only "current" moves. */
        char sql[96];
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO meta(key, value) VALUES ('current_model', %lld)",
                 (long long)id);
        if ((st = cdx_store_exec(s, sql)) != CDX_OK) goto cleanup;
    } else if (s->writer) {
        /* Register or update the model, record it as the current one and
         * the index type it should be searched with. */
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO models(key, name, dir, dim, index_factory, created_at, "
                               "vision_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(key) DO "
                               "UPDATE SET name = ?2, dir = ?3, index_factory = ?5, "
                               "vision_key = coalesce(vision_key, ?7)",
                               -1, &q, NULL) != SQLITE_OK) {
            st = cdx_store_sqlfail(s, "prepare");
            goto cleanup;
        }
        sqlite3_bind_text(q, 1, m->key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, m->name && *m->name ? m->name : m->key, -1, SQLITE_TRANSIENT);
        if (m->dir) sqlite3_bind_text(q, 3, m->dir, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(q, 4, m->dim);
        sqlite3_bind_text(q, 5, s->factory, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 6, (int64_t)time(NULL));
        if (m->vision_key && *m->vision_key) sqlite3_bind_text(q, 7, m->vision_key, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) != SQLITE_DONE) {
            st = cdx_store_sqlfail(s, "register model");
            goto cleanup;
        }
        sqlite3_finalize(q);
        q = NULL;
        if (!id) id = sqlite3_last_insert_rowid(s->db);
        free(factory);
        factory = strdup(s->factory);
        if (!factory) {
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        char sql[96];
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO meta(key, value) VALUES ('current_model', %lld)",
                 (long long)id);
        if ((st = cdx_store_exec(s, sql)) != CDX_OK) goto cleanup;
    }
    if ((st = set_current_model(s, id, m, m->dim)) != CDX_OK) goto cleanup;
    if ((st = load_vindex(s, factory)) != CDX_OK) {
        s->model_id = 0;
        goto cleanup;
    }
    if (model_id) *model_id = id;
cleanup:
    sqlite3_finalize(q);
    free(factory);
    return st;
}

cdx_status cdx_store_models(cdx_store *s, cdx_store_model_info **out, size_t *n)
{
    sqlite3_stmt *q = NULL;
    cdx_store_model_info *v = NULL;
    size_t cnt = 0, cap = 0;
    cdx_status st = CDX_OK;
    int64_t cur = 0;
    int rc;

    query_int(s, "SELECT value FROM meta WHERE key = 'current_model'", 0, 0, &cur);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, key, name, dir, index_factory, dim, "
                           "(SELECT count(*) FROM vectors WHERE model_id = models.id), "
                           "(SELECT count(*) FROM model_keys WHERE model_id = models.id) "
                           "FROM models ORDER BY id", -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cnt == cap) {
            cdx_store_model_info *nv = cdx_grow(v, &cap, cnt + 1, sizeof *v, 4);
            if (!nv) {
                st = CDX_ERR_NOMEM;
                goto cleanup;
            }
            v = nv;
        }
        cdx_store_model_info *mi = &v[cnt++];
        memset(mi, 0, sizeof *mi);
        mi->id = sqlite3_column_int64(q, 0);
        mi->key = strdup((const char *)sqlite3_column_text(q, 1));
        mi->name = strdup((const char *)sqlite3_column_text(q, 2));
        mi->dir = sqlite3_column_text(q, 3) ? strdup((const char *)sqlite3_column_text(q, 3))
                                            : strdup("");
        mi->index_factory = strdup((const char *)sqlite3_column_text(q, 4));
        mi->dim = sqlite3_column_int(q, 5);
        mi->n_vectors = sqlite3_column_int64(q, 6);
        mi->n_shared = sqlite3_column_int64(q, 7);
        mi->current = mi->id == cur;
        if (!mi->key || !mi->name || !mi->dir || !mi->index_factory) {
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
    }
    if (rc != SQLITE_DONE) st = cdx_store_sqlfail(s, "list models");
cleanup:
    sqlite3_finalize(q);
    if (st != CDX_OK) {
        cdx_store_models_free(v, cnt);
        return st;
    }
    *out = v;
    *n = cnt;
    return CDX_OK;
}

void cdx_store_models_free(cdx_store_model_info *v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].name);
        free(v[i].dir);
        free(v[i].index_factory);
    }
    free(v);
}

/* ------------------------------------------------------------------ */
/* Write transactions                                                  */
/* ------------------------------------------------------------------ */

static cdx_status need_writer(cdx_store *s, const char *what)
{
    if (!s) return cdx_fail(CDX_ERR_ARG, "%s: no store", what);
    if (!s->writer) return cdx_fail(CDX_ERR_ARG, "%s: the store is open read-only", what);
    if (!s->model_id) return cdx_fail(CDX_ERR_ARG, "%s: no model selected (cdx_store_use_model)", what);
    return CDX_OK;
}

cdx_status cdx_store_begin(cdx_store *s)
{
    cdx_status st;
    if ((st = need_writer(s, "cdx_store_begin")) != CDX_OK) return st;
    if (s->txn) return cdx_fail(CDX_ERR_ARG, "cdx_store_begin: a transaction is already open");
    /* IMMEDIATE: take the write lock now, so a moderation write from a
     * reader cannot make this transaction fail half-way. */
    if ((st = cdx_store_exec(s, "BEGIN IMMEDIATE")) != CDX_OK) return st;
    s->txn = 1;
    s->txn_changes = 0;
    return CDX_OK;
}

/* After a commit: bring the in-memory index up to date by replaying the
 * log (the same path readers take), then save or rebuild when due. */
static cdx_status after_commit(cdx_store *s)
{
    cdx_status st;
    int began = 0;
    if (!s->vx) return CDX_OK;
    if ((st = cdx_store_read_begin(s, &began)) != CDX_OK) return st;
    st = cdx_store_index_sync(s);
    int64_t live = cdx_vindex_ntotal(s->vx);
    int rebuild = st == CDX_OK && cdx_vindex_wants_rebuild(s->vx, live, s->train_min);
    if (rebuild) {
        cdx_vindex *nx = NULL;
        st = cdx_store_index_build(s, s->model_id, s->dim, s->factory, &nx);
        if (st == CDX_OK) {
            cdx_vindex_free(s->vx);
            s->vx = nx;
        }
    }
    cdx_store_read_end(s, began);
    if (st != CDX_OK) return st;
    if (rebuild || cdx_vindex_unsaved(s->vx) >= s->save_every) return cdx_store_save(s);
    return CDX_OK;
}

cdx_status cdx_store_commit(cdx_store *s)
{
    cdx_status st;
    if (!s || !s->txn) return cdx_fail(CDX_ERR_ARG, "cdx_store_commit: no transaction is open");
    if ((st = cdx_store_exec(s, "COMMIT")) != CDX_OK) {
        cdx_store_rollback(s);
        return st;
    }
    s->txn = 0;
    /* The batch is committed whatever happens next: FAISS is a cache, and a
     * failure to update or save it is repaired by the next sync or open
     * (replay, or rebuild).  Reporting it as a failed commit would make the
     * daemon redo work that is done. */
    if (after_commit(s) != CDX_OK) CDX_WARN("after commit: %s", cdx_last_error());
    return CDX_OK;
}

void cdx_store_rollback(cdx_store *s)
{
    if (!s || !s->txn) return;
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->txn = 0;
}

/* Writes outside an explicit transaction get their own. */
static cdx_status auto_begin(cdx_store *s, int *own)
{
    *own = 0;
    if (s->txn) return CDX_OK;
    cdx_status st = cdx_store_begin(s);
    if (st == CDX_OK) *own = 1;
    return st;
}

static cdx_status auto_end(cdx_store *s, int own, cdx_status st)
{
    if (!own) return st;
    if (st != CDX_OK) {
        cdx_store_rollback(s);
        return st;
    }
    return cdx_store_commit(s);
}

cdx_status cdx_store_save(cdx_store *s)
{
    cdx_status st;
    if (!s || !s->writer || !s->vx) return CDX_OK;
    if (s->txn) return cdx_fail(CDX_ERR_ARG, "cdx_store_save: a transaction is open");
    st = cdx_store_index_save(s, s->vx, s->model_id);
    return st;
}

/* ------------------------------------------------------------------ */
/* Vectors and the change log                                          */
/* ------------------------------------------------------------------ */

static cdx_status log_change(cdx_store *s, int64_t model_id, int op, int64_t vector_id)
{
    sqlite3_stmt *q = cdx_store_stmt(
        s, ST_LOG, "INSERT INTO changes(model_id, op, vector_id) VALUES (?, ?, ?)");
    if (!q) return CDX_ERR_STORE;
    sqlite3_bind_int64(q, 1, model_id);
    sqlite3_bind_int(q, 2, op);
    sqlite3_bind_int64(q, 3, vector_id);
    if (sqlite3_step(q) != SQLITE_DONE) return cdx_store_sqlfail(s, "change log");
    s->txn_changes++;
    return CDX_OK;
}

cdx_status cdx_store_drop_vector(cdx_store *s, int64_t model_id, int64_t vector_id)
{
    sqlite3_stmt *q = cdx_store_stmt(s, ST_DELETE_VECTOR, "DELETE FROM vectors WHERE id = ?");
    if (!q) return CDX_ERR_STORE;
    sqlite3_bind_int64(q, 1, vector_id);
    if (sqlite3_step(q) != SQLITE_DONE) return cdx_store_sqlfail(s, "delete vector");
    if (sqlite3_changes(s->db) == 0) return CDX_OK;
    return log_change(s, model_id, CDX_CHANGE_REMOVE, vector_id);
}

/* Remove vector_id if no file refers to it any more. */
static cdx_status gc_vector(cdx_store *s, int64_t vector_id)
{
    sqlite3_stmt *q;
    int64_t model_id = 0;
    int rc;
    if (vector_id <= 0) return CDX_OK;
    q = cdx_store_stmt(s, ST_VECTOR_REFS,
                       "SELECT v.model_id FROM vectors v WHERE v.id = ? AND NOT EXISTS "
                       "(SELECT 1 FROM files WHERE vector_id = v.id)");
    if (!q) return CDX_ERR_STORE;
    sqlite3_bind_int64(q, 1, vector_id);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) model_id = sqlite3_column_int64(q, 0);
    else if (rc != SQLITE_DONE) return cdx_store_sqlfail(s, "vector references");
    sqlite3_reset(q);
    if (!model_id) return CDX_OK;
    return cdx_store_drop_vector(s, model_id, vector_id);
}

static cdx_status find_vector(cdx_store *s, const uint8_t *hash, int64_t *vector_id)
{
    sqlite3_stmt *q = cdx_store_stmt(s, ST_FIND_VECTOR,
                                     "SELECT id FROM vectors WHERE model_id = ? AND hash = ?");
    int rc;
    if (!q) return CDX_ERR_STORE;
    sqlite3_bind_int64(q, 1, s->model_id);
    sqlite3_bind_blob(q, 2, hash, CDX_HASH_SIZE, SQLITE_STATIC);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) *vector_id = sqlite3_column_int64(q, 0);
    else if (rc == SQLITE_DONE) *vector_id = 0;
    else return cdx_store_sqlfail(s, "find vector");
    sqlite3_reset(q);
    return CDX_OK;
}

cdx_status cdx_store_find_vector(cdx_store *s, const uint8_t hash[CDX_HASH_SIZE],
                                 int64_t *vector_id)
{
    if (!s || !s->model_id || !hash || !vector_id)
        return cdx_fail(CDX_ERR_ARG, "cdx_store_find_vector: no model selected");
    return find_vector(s, hash, vector_id);
}

static cdx_status insert_vector(cdx_store *s, const uint8_t *hash, const float *vec,
                                int64_t *vector_id)
{
    cdx_status st;
    size_t bytes = (size_t)s->dim * 2;
    uint8_t *blob = malloc(bytes);
    sqlite3_stmt *q;
    if (!blob) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    if ((st = cdx_vec_encode(vec, s->dim, blob)) != CDX_OK) goto cleanup;
    q = cdx_store_stmt(s, ST_INSERT_VECTOR,
                       "INSERT INTO vectors(model_id, hash, data, created_at, precision) "
                       "VALUES (?, ?, ?, ?, ?)");
    if (!q) {
        st = CDX_ERR_STORE;
        goto cleanup;
    }
    sqlite3_bind_int64(q, 1, s->model_id);
    sqlite3_bind_blob(q, 2, hash, CDX_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_blob(q, 3, blob, (int)bytes, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, (int64_t)time(NULL));
    if (s->precision[0]) sqlite3_bind_text(q, 5, s->precision, -1, SQLITE_STATIC);
    else sqlite3_bind_null(q, 5);
    if (sqlite3_step(q) != SQLITE_DONE) {
        st = cdx_store_sqlfail(s, "insert vector");
        goto cleanup;
    }
    sqlite3_reset(q); /* release the blob binding before freeing it */
    *vector_id = sqlite3_last_insert_rowid(s->db);
    st = log_change(s, s->model_id, CDX_CHANGE_ADD, *vector_id);
cleanup:
    free(blob);
    return st;
}

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

static cdx_status file_lookup(cdx_store *s, const char *path, int64_t *id, int64_t *vector_id)
{
    sqlite3_stmt *q = cdx_store_stmt(s, ST_FILE_BY_PATH,
                                     "SELECT id, vector_id FROM files WHERE path = ?");
    int rc;
    if (!q) return CDX_ERR_STORE;
    sqlite3_bind_blob(q, 1, path, (int)strlen(path), SQLITE_STATIC);
    rc = sqlite3_step(q);
    *id = 0;
    *vector_id = 0;
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(q, 0);
        *vector_id = sqlite3_column_int64(q, 1);
    } else if (rc != SQLITE_DONE) {
        return cdx_store_sqlfail(s, "file lookup");
    }
    sqlite3_reset(q);
    return CDX_OK;
}

#define FILE_SET_COLS                                                                   \
    "path, ext, dev, ino, size, mtime_ns, hash, width, height, orientation, taken_at, "  \
    "camera_make, camera_model, gps_lat, gps_lon, phash, state, error, indexed_at, vector_id"

/* Bind the 20 columns of FILE_SET_COLS from ?1 on. */
static void bind_file(sqlite3_stmt *q, const cdx_file_meta *m, const char *ext, int state,
                      const char *error, int64_t vector_id)
{
    sqlite3_bind_blob(q, 1, m->path, (int)strlen(m->path), SQLITE_STATIC);
    if (ext && *ext) sqlite3_bind_text(q, 2, ext, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 3, (int64_t)m->dev);
    sqlite3_bind_int64(q, 4, (int64_t)m->ino);
    sqlite3_bind_int64(q, 5, m->size);
    sqlite3_bind_int64(q, 6, m->mtime_ns);
    if (m->has_hash) sqlite3_bind_blob(q, 7, m->hash, CDX_HASH_SIZE, SQLITE_STATIC);
    if (m->width > 0) sqlite3_bind_int(q, 8, m->width);
    if (m->height > 0) sqlite3_bind_int(q, 9, m->height);
    if (m->orientation > 0) sqlite3_bind_int(q, 10, m->orientation);
    if (m->taken_at != CDX_TIME_UNKNOWN) sqlite3_bind_int64(q, 11, m->taken_at);
    if (m->camera_make) sqlite3_bind_text(q, 12, m->camera_make, -1, SQLITE_STATIC);
    if (m->camera_model) sqlite3_bind_text(q, 13, m->camera_model, -1, SQLITE_STATIC);
    if (m->has_gps) {
        sqlite3_bind_double(q, 14, m->gps_lat);
        sqlite3_bind_double(q, 15, m->gps_lon);
    }
    /* SQLite integers are signed: the 64 bits are stored as they are. */
    if (m->has_phash) sqlite3_bind_int64(q, 16, (int64_t)m->phash);
    sqlite3_bind_int(q, 17, state);
    if (error) sqlite3_bind_text(q, 18, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 19, (int64_t)time(NULL));
    if (vector_id > 0) sqlite3_bind_int64(q, 20, vector_id);
}

/* Insert or update the row of m->path; returns its id. */
static cdx_status write_file(cdx_store *s, const cdx_file_meta *m, int state, const char *error,
                             int64_t vector_id, int64_t *file_id)
{
    cdx_status st;
    int64_t id, old_vec;
    char ext[17];
    sqlite3_stmt *q;

    path_ext(m->path, ext, sizeof ext);
    if ((st = file_lookup(s, m->path, &id, &old_vec)) != CDX_OK) return st;
    if (id) {
        q = cdx_store_stmt(s, ST_FILE_UPDATE,
                           "UPDATE files SET (" FILE_SET_COLS ") = (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                           "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) WHERE id = ?21");
        if (!q) return CDX_ERR_STORE;
        bind_file(q, m, ext, state, error, vector_id);
        sqlite3_bind_int64(q, 21, id);
    } else {
        q = cdx_store_stmt(s, ST_FILE_INSERT,
                           "INSERT INTO files(" FILE_SET_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                           "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)");
        if (!q) return CDX_ERR_STORE;
        bind_file(q, m, ext, state, error, vector_id);
    }
    if (sqlite3_step(q) != SQLITE_DONE) return cdx_store_sqlfail(s, "write file");
    sqlite3_reset(q);
    if (!id) id = sqlite3_last_insert_rowid(s->db);
    if (file_id) *file_id = id;
    if (old_vec && old_vec != vector_id) return gc_vector(s, old_vec);
    return CDX_OK;
}

static cdx_status check_meta(const cdx_file_meta *m, const char *what)
{
    if (!m || !m->path || !*m->path) return cdx_fail(CDX_ERR_ARG, "%s: no path", what);
    return CDX_OK;
}

cdx_status cdx_store_put_file(cdx_store *s, const cdx_file_meta *m, const float *vec,
                              int64_t *file_id)
{
    cdx_status st;
    int own = 0;
    int64_t vid = 0;

    if ((st = need_writer(s, "cdx_store_put_file")) != CDX_OK) return st;
    if ((st = check_meta(m, "cdx_store_put_file")) != CDX_OK) return st;
    if (!m->has_hash) return cdx_fail(CDX_ERR_ARG, "%s: cdx_store_put_file needs the content hash", m->path);
    if ((st = auto_begin(s, &own)) != CDX_OK) return st;
    if ((st = find_vector(s, m->hash, &vid)) != CDX_OK) goto done;
    if (!vid) {
        if (!vec) {
            st = cdx_fail(CDX_ERR_ARG, "%s: new content and no vector given", m->path);
            goto done;
        }
        if ((st = insert_vector(s, m->hash, vec, &vid)) != CDX_OK) {
            cdx_fail_prefix(st, m->path);
            goto done;
        }
    }
    st = write_file(s, m, CDX_FILE_OK, NULL, vid, file_id);
done:
    return auto_end(s, own, st);
}

cdx_status cdx_store_put_error(cdx_store *s, const cdx_file_meta *m, const char *error)
{
    cdx_status st;
    int own = 0;
    if ((st = need_writer(s, "cdx_store_put_error")) != CDX_OK) return st;
    if ((st = check_meta(m, "cdx_store_put_error")) != CDX_OK) return st;
    if ((st = auto_begin(s, &own)) != CDX_OK) return st;
    st = write_file(s, m, CDX_FILE_ERROR, error && *error ? error : "unknown error", 0, NULL);
    return auto_end(s, own, st);
}

/* Delete file rows selected by q (which yields id, vector_id), then the
 * vectors nobody refers to any more. */
static cdx_status delete_selected(cdx_store *s, sqlite3_stmt *q, int64_t *n)
{
    int64_t *vecs = NULL, *ids = NULL;
    size_t cnt = 0, cap = 0;
    cdx_status st = CDX_OK;
    int rc;

    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cnt == cap) {
            /* Two arrays of one length: grow the second to the first's. */
            size_t cap_vecs = cap;
            int64_t *a = cdx_grow(ids, &cap, cnt + 1, sizeof *ids, 64), *b;
            if (!a) {
                st = CDX_ERR_NOMEM;
                goto cleanup;
            }
            ids = a;
            if (!(b = cdx_grow(vecs, &cap_vecs, cap, sizeof *vecs, cap))) {
                st = CDX_ERR_NOMEM;
                goto cleanup;
            }
            vecs = b;
        }
        ids[cnt] = sqlite3_column_int64(q, 0);
        vecs[cnt] = sqlite3_column_int64(q, 1);
        cnt++;
    }
    if (rc != SQLITE_DONE) {
        st = cdx_store_sqlfail(s, "select files");
        goto cleanup;
    }
    sqlite3_reset(q);
    for (size_t i = 0; i < cnt; i++) {
        sqlite3_stmt *d = cdx_store_stmt(s, ST_FILE_DELETE, "DELETE FROM files WHERE id = ?");
        if (!d) {
            st = CDX_ERR_STORE;
            goto cleanup;
        }
        sqlite3_bind_int64(d, 1, ids[i]);
        if (sqlite3_step(d) != SQLITE_DONE) {
            st = cdx_store_sqlfail(s, "delete file");
            goto cleanup;
        }
    }
    for (size_t i = 0; i < cnt; i++)
        if ((st = gc_vector(s, vecs[i])) != CDX_OK) goto cleanup;
    if (n) *n = (int64_t)cnt;
cleanup:
    free(ids);
    free(vecs);
    return st;
}

cdx_status cdx_store_remove_file(cdx_store *s, const char *path, int64_t *n)
{
    cdx_status st;
    sqlite3_stmt *q = NULL;
    int own = 0;
    if ((st = need_writer(s, "cdx_store_remove_file")) != CDX_OK) return st;
    if (!path || !*path) return cdx_fail(CDX_ERR_ARG, "cdx_store_remove_file: no path");
    if ((st = auto_begin(s, &own)) != CDX_OK) return st;
    if (sqlite3_prepare_v2(s->db, "SELECT id, vector_id FROM files WHERE path = ?", -1, &q,
                           NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto done;
    }
    sqlite3_bind_blob(q, 1, path, (int)strlen(path), SQLITE_STATIC);
    st = delete_selected(s, q, n);
done:
    sqlite3_finalize(q);
    return auto_end(s, own, st);
}

static cdx_status remove_under(cdx_store *s, const char *dir, int64_t *n)
{
    cdx_status st;
    sqlite3_stmt *q = NULL;
    char *lo = NULL, *hi = NULL;
    size_t len;
    if ((st = cdx_store_prefix_range(dir, &lo, &hi, &len)) != CDX_OK) return st;
    if (sqlite3_prepare_v2(s->db, "SELECT id, vector_id FROM files WHERE path >= ? AND path < ?",
                           -1, &q, NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto cleanup;
    }
    sqlite3_bind_blob(q, 1, lo, (int)len, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, hi, (int)len, SQLITE_STATIC);
    st = delete_selected(s, q, n);
cleanup:
    sqlite3_finalize(q);
    free(lo);
    free(hi);
    return st;
}

cdx_status cdx_store_remove_under(cdx_store *s, const char *dir, int64_t *n)
{
    cdx_status st;
    int own = 0;
    if ((st = need_writer(s, "cdx_store_remove_under")) != CDX_OK) return st;
    if (!dir || !*dir) return cdx_fail(CDX_ERR_ARG, "cdx_store_remove_under: no directory");
    if ((st = auto_begin(s, &own)) != CDX_OK) return st;
    st = remove_under(s, dir, n);
    return auto_end(s, own, st);
}

/* Paths are rewritten in C, not with SQL's || operator: || yields TEXT,
 * and a TEXT value in the path column would sort apart from the BLOBs
 * (SQLite orders every TEXT before every BLOB) and escape the range
 * queries that find the paths under a directory. */
cdx_status cdx_store_rename(cdx_store *s, const char *from, const char *to, int64_t *n)
{
    cdx_status st;
    int own = 0;
    sqlite3_stmt *sel = NULL, *upd = NULL;
    char *lo = NULL, *hi = NULL, *np = NULL;
    size_t plen, from_len, to_len;
    int64_t moved = 0, file_id, file_vec, removed;
    struct row { int64_t id; char *path; } *rows = NULL;
    size_t cnt = 0, cap = 0;
    int rc;

    if ((st = need_writer(s, "cdx_store_rename")) != CDX_OK) return st;
    if (!from || !*from || !to || !*to) return cdx_fail(CDX_ERR_ARG, "cdx_store_rename: empty path");
    if (strcmp(from, to) == 0) {
        if (n) *n = 0;
        return CDX_OK;
    }
    if ((st = auto_begin(s, &own)) != CDX_OK) return st;

    /* A single file. */
    if ((st = file_lookup(s, from, &file_id, &file_vec)) != CDX_OK) goto done;
    if (file_id) {
        if ((st = cdx_store_remove_file(s, to, &removed)) != CDX_OK) goto done;
        if (sqlite3_prepare_v2(s->db, "UPDATE files SET path = ?, ext = ? WHERE id = ?", -1, &upd,
                               NULL) != SQLITE_OK) {
            st = cdx_store_sqlfail(s, "prepare");
            goto done;
        }
        char ext[17];
        path_ext(to, ext, sizeof ext);
        sqlite3_bind_blob(upd, 1, to, (int)strlen(to), SQLITE_STATIC);
        if (*ext) sqlite3_bind_text(upd, 2, ext, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(upd, 3, file_id);
        if (sqlite3_step(upd) != SQLITE_DONE) {
            st = cdx_store_sqlfail(s, "rename");
            goto done;
        }
        sqlite3_finalize(upd);
        upd = NULL;
        moved++;
    }

    /* A directory: everything under from/ goes under to/. */
    if ((st = cdx_store_prefix_range(from, &lo, &hi, &plen)) != CDX_OK) goto done;
    if (sqlite3_prepare_v2(s->db, "SELECT id, path FROM files WHERE path >= ? AND path < ?", -1,
                           &sel, NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto done;
    }
    sqlite3_bind_blob(sel, 1, lo, (int)plen, SQLITE_STATIC);
    sqlite3_bind_blob(sel, 2, hi, (int)plen, SQLITE_STATIC);
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        if (cnt == cap) {
            struct row *nr = cdx_grow(rows, &cap, cnt + 1, sizeof *rows, 64);
            if (!nr) {
                st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
                goto done;
            }
            rows = nr;
        }
        size_t bl = (size_t)sqlite3_column_bytes(sel, 1);
        rows[cnt].id = sqlite3_column_int64(sel, 0);
        rows[cnt].path = malloc(bl + 1);
        if (!rows[cnt].path) {
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(rows[cnt].path, sqlite3_column_blob(sel, 1), bl);
        rows[cnt].path[bl] = '\0';
        cnt++;
    }
    if (rc != SQLITE_DONE) {
        st = cdx_store_sqlfail(s, "select directory");
        goto done;
    }
    if (cnt) {
        /* rename(2) onto a directory needs it empty, so rows under the
         * target are stale: drop them first. */
        if ((st = remove_under(s, to, &removed)) != CDX_OK) goto done;
        if (sqlite3_prepare_v2(s->db, "UPDATE files SET path = ?, ext = ? WHERE id = ?", -1, &upd,
                               NULL) != SQLITE_OK) {
            st = cdx_store_sqlfail(s, "prepare");
            goto done;
        }
        from_len = strlen(from);
        while (from_len > 1 && from[from_len - 1] == '/') from_len--;
        to_len = strlen(to);
        while (to_len > 1 && to[to_len - 1] == '/') to_len--;
        for (size_t i = 0; i < cnt; i++) {
            size_t rest = strlen(rows[i].path) - from_len; /* starts with '/' */
            char ext[17];
            np = malloc(to_len + rest + 1);
            if (!np) {
                st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
                goto done;
            }
            memcpy(np, to, to_len);
            memcpy(np + to_len, rows[i].path + from_len, rest + 1);
            path_ext(np, ext, sizeof ext);
            sqlite3_reset(upd);
            sqlite3_clear_bindings(upd);
            sqlite3_bind_blob(upd, 1, np, (int)(to_len + rest), SQLITE_TRANSIENT);
            if (*ext) sqlite3_bind_text(upd, 2, ext, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(upd, 3, rows[i].id);
            free(np);
            np = NULL;
            if (sqlite3_step(upd) != SQLITE_DONE) {
                st = cdx_store_sqlfail(s, "rename");
                goto done;
            }
            moved++;
        }
    }
    if (n) *n = moved;
done:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    for (size_t i = 0; i < cnt; i++) free(rows[i].path);
    free(rows);
    free(lo);
    free(hi);
    free(np);
    return auto_end(s, own, st);
}

/* ------------------------------------------------------------------ */
/* Reading files                                                       */
/* ------------------------------------------------------------------ */

static const char *col_text(sqlite3_stmt *q, int i)
{
    return sqlite3_column_type(q, i) == SQLITE_NULL ? NULL : (const char *)sqlite3_column_text(q, i);
}

void cdx_store_row_to_info(sqlite3_stmt *q, cdx_file_info *fi)
{
    memset(fi, 0, sizeof *fi);
    fi->id = sqlite3_column_int64(q, 0);
    /* Paths are BLOBs without a terminator; SQLite adds one when a blob is
     * read as text, without converting the bytes. */
    fi->meta.path = (const char *)sqlite3_column_text(q, 1);
    fi->ext = col_text(q, 2);
    fi->meta.dev = (uint64_t)sqlite3_column_int64(q, 3);
    fi->meta.ino = (uint64_t)sqlite3_column_int64(q, 4);
    fi->meta.size = sqlite3_column_int64(q, 5);
    fi->meta.mtime_ns = sqlite3_column_int64(q, 6);
    if (sqlite3_column_bytes(q, 7) == CDX_HASH_SIZE) {
        memcpy(fi->meta.hash, sqlite3_column_blob(q, 7), CDX_HASH_SIZE);
        fi->meta.has_hash = 1;
    }
    fi->meta.width = sqlite3_column_int(q, 8);
    fi->meta.height = sqlite3_column_int(q, 9);
    fi->meta.orientation = sqlite3_column_int(q, 10);
    fi->meta.taken_at = sqlite3_column_type(q, 11) == SQLITE_NULL ? CDX_TIME_UNKNOWN
                                                                  : sqlite3_column_int64(q, 11);
    fi->meta.camera_make = col_text(q, 12);
    fi->meta.camera_model = col_text(q, 13);
    if (sqlite3_column_type(q, 14) != SQLITE_NULL) {
        fi->meta.has_gps = 1;
        fi->meta.gps_lat = sqlite3_column_double(q, 14);
        fi->meta.gps_lon = sqlite3_column_double(q, 15);
    }
    if (sqlite3_column_type(q, 16) != SQLITE_NULL) {
        fi->meta.has_phash = 1;
        fi->meta.phash = (uint64_t)sqlite3_column_int64(q, 16);
    }
    fi->state = sqlite3_column_int(q, 17);
    fi->error = col_text(q, 18);
    fi->indexed_at = sqlite3_column_int64(q, 19);
    fi->vector_id = sqlite3_column_int64(q, 20);
    fi->model_id = sqlite3_column_int64(q, 21);
}

static int dup_str(const char *src, const char **dst)
{
    if (!src) {
        *dst = NULL;
        return 1;
    }
    *dst = strdup(src);
    return *dst != NULL;
}

cdx_status cdx_file_info_copy(const cdx_file_info *src, cdx_file_info *dst)
{
    cdx_file_info t = *src;
    int all_copied = dup_str(src->meta.path, &t.meta.path) & dup_str(src->ext, &t.ext) &
              dup_str(src->meta.camera_make, &t.meta.camera_make) &
              dup_str(src->meta.camera_model, &t.meta.camera_model) &
              dup_str(src->error, &t.error);
    if (!all_copied) {
        cdx_file_info_release(&t);
        return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    }
    *dst = t;
    return CDX_OK;
}

void cdx_file_info_release(cdx_file_info *fi)
{
    if (!fi) return;
    /* The strings are our heap copies (see cdx_file_info_copy). */
    free((char *)fi->meta.path);
    free((char *)fi->ext);
    free((char *)fi->meta.camera_make);
    free((char *)fi->meta.camera_model);
    free((char *)fi->error);
    memset(fi, 0, sizeof *fi);
}

cdx_status cdx_store_get_file(cdx_store *s, const char *path, cdx_file_info *out, int *found)
{
    sqlite3_stmt *q = NULL;
    if (!s || !path || !out || !found) return cdx_fail(CDX_ERR_ARG, "cdx_store_get_file: bad argument");
    if (sqlite3_prepare_v2(s->db, "SELECT " CDX_FILE_COLUMNS CDX_FILE_FROM " WHERE f.path = ?", -1,
                           &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_blob(q, 1, path, (int)strlen(path), SQLITE_STATIC);
    return cdx_store_one_file(s, q, out, found);
}

cdx_status cdx_store_one_file(cdx_store *s, sqlite3_stmt *q, cdx_file_info *out, int *found)
{
    cdx_status st = CDX_OK;
    int rc = sqlite3_step(q);
    *found = 0;
    if (rc == SQLITE_ROW) {
        cdx_file_info fi;
        cdx_store_row_to_info(q, &fi);
        if ((st = cdx_file_info_copy(&fi, out)) == CDX_OK) *found = 1;
    } else if (rc != SQLITE_DONE) {
        st = cdx_store_sqlfail(s, "get file");
    }
    sqlite3_finalize(q);
    return st;
}

/* ---- filters as SQL ---- */

void cdx_sb_add(cdx_sb *b, const char *text)
{
    size_t n = strlen(text);
    if (b->oom) return;
    char *p = cdx_grow(b->s, &b->cap, b->len + n + 1, 1, 256);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->s = p;
    memcpy(b->s + b->len, text, n + 1);
    b->len += n;
}

void cdx_filter_sql(const cdx_store_filter *f, int with_state, cdx_sb *b)
{
    if (!f) return;
    if (f->after) cdx_sb_add(b, " AND coalesce(f.taken_at, f.mtime_ns / 1000000000) >= ?");
    if (f->before) cdx_sb_add(b, " AND coalesce(f.taken_at, f.mtime_ns / 1000000000) < ?");
    if (f->under && *f->under) cdx_sb_add(b, " AND f.path >= ? AND f.path < ?");
    if (f->camera && *f->camera)
        cdx_sb_add(b, " AND (coalesce(f.camera_make, '') || ' ' || coalesce(f.camera_model, '')) "
                      "LIKE ? ESCAPE '\\'");
    if (f->n_exts) {
        cdx_sb_add(b, " AND f.ext IN (");
        for (size_t i = 0; i < f->n_exts; i++) cdx_sb_add(b, i ? ", ?" : "?");
        cdx_sb_add(b, ")");
    }
    if (f->hash) cdx_sb_add(b, " AND f.hash = ?");
    if (with_state && f->state != CDX_FILE_ANY) cdx_sb_add(b, " AND f.state = ?");
}

cdx_status cdx_filter_bind(sqlite3_stmt *q, const cdx_store_filter *f, int with_state, int *idx)
{
    int i = *idx;
    if (!f) return CDX_OK;
    if (f->after) sqlite3_bind_int64(q, i++, f->after);
    if (f->before) sqlite3_bind_int64(q, i++, f->before);
    if (f->under && *f->under) {
        char *lo, *hi;
        size_t n;
        cdx_status st = cdx_store_prefix_range(f->under, &lo, &hi, &n);
        if (st != CDX_OK) return st;
        sqlite3_bind_blob(q, i++, lo, (int)n, free);
        sqlite3_bind_blob(q, i++, hi, (int)n, free);
    }
    if (f->camera && *f->camera) {
        size_t n = strlen(f->camera);
        char *pat = malloc(2 * n + 3), *p = pat;
        if (!pat) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
        *p++ = '%';
        for (const char *c = f->camera; *c; c++) {
            if (*c == '%' || *c == '_' || *c == '\\') *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '%';
        *p = '\0';
        sqlite3_bind_text(q, i++, pat, -1, free);
    }
    for (size_t k = 0; k < f->n_exts; k++) {
        const char *e = f->exts[k] ? f->exts[k] : "";
        char low[32];
        size_t j = 0;
        if (*e == '.') e++;
        for (; e[j] && j + 1 < sizeof low; j++)
            low[j] = (e[j] >= 'A' && e[j] <= 'Z') ? (char)(e[j] - 'A' + 'a') : e[j];
        low[j] = '\0';
        sqlite3_bind_text(q, i++, low, -1, SQLITE_TRANSIENT);
    }
    if (f->hash) sqlite3_bind_blob(q, i++, f->hash, CDX_HASH_SIZE, SQLITE_TRANSIENT);
    if (with_state && f->state != CDX_FILE_ANY) sqlite3_bind_int(q, i++, f->state);
    *idx = i;
    return CDX_OK;
}

cdx_status cdx_store_foreach_file(cdx_store *s, const cdx_store_filter *f, unsigned flags,
                                  cdx_store_file_fn fn, void *user)
{
    cdx_sb b = {0};
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    int began = 0, rc, idx = 1;

    if (!s || !fn) return cdx_fail(CDX_ERR_ARG, "cdx_store_foreach_file: bad argument");
    if ((flags & CDX_FOREACH_STALE) && !s->model_id)
        return cdx_fail(CDX_ERR_ARG, "cdx_store_foreach_file: STALE needs a model");
    cdx_sb_add(&b, "SELECT " CDX_FILE_COLUMNS CDX_FILE_FROM " WHERE 1");
    cdx_filter_sql(f, 1, &b);
    if (flags & CDX_FOREACH_STALE)
        cdx_sb_add(&b, " AND f.state = 0 AND (v.model_id IS NULL OR v.model_id != ?)");
    cdx_sb_add(&b, (flags & CDX_FOREACH_BY_HASH) ? " ORDER BY f.hash, f.path" : " ORDER BY f.path");
    if (b.oom) {
        free(b.s);
        return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    }
    if ((st = cdx_store_read_begin(s, &began)) != CDX_OK) goto cleanup;
    if (sqlite3_prepare_v2(s->db, b.s, -1, &q, NULL) != SQLITE_OK) {
        st = cdx_store_sqlfail(s, "prepare");
        goto cleanup;
    }
    if ((st = cdx_filter_bind(q, f, 1, &idx)) != CDX_OK) goto cleanup;
    if (flags & CDX_FOREACH_STALE) sqlite3_bind_int64(q, idx++, s->model_id);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        cdx_file_info fi;
        cdx_store_row_to_info(q, &fi);
        if (fn(&fi, user)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) st = cdx_store_sqlfail(s, "list files");
cleanup:
    sqlite3_finalize(q);
    cdx_store_read_end(s, began);
    free(b.s);
    return st;
}

cdx_status cdx_store_vector_read(cdx_store *s, int64_t vector_id, float *out, int *found)
{
    sqlite3_stmt *q;
    cdx_status st = CDX_OK;
    int rc;
    q = cdx_store_stmt(s, ST_VECTOR_DATA, "SELECT data FROM vectors WHERE id = ? AND model_id = ?");
    if (!q) return CDX_ERR_STORE;
    sqlite3_bind_int64(q, 1, vector_id);
    sqlite3_bind_int64(q, 2, s->model_id);
    rc = sqlite3_step(q);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW)
        st = cdx_vec_decode(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), s->dim, out);
    else if (rc != SQLITE_DONE)
        st = cdx_store_sqlfail(s, "read vector");
    sqlite3_reset(q);
    return st;
}

cdx_status cdx_store_get_vector(cdx_store *s, int64_t vector_id, float *out)
{
    cdx_status st;
    int found;
    if (!s || !s->model_id || !out) return cdx_fail(CDX_ERR_ARG, "cdx_store_get_vector: no model selected");
    if ((st = cdx_store_vector_read(s, vector_id, out, &found)) != CDX_OK) return st;
    if (!found)
        return cdx_fail(CDX_ERR_ARG, "vector %lld: not in the store (for this model)", (long long)vector_id);
    return CDX_OK;
}

/* ------------------------------------------------------------------ */
/* Moderation, meta, stats                                             */
/* ------------------------------------------------------------------ */

cdx_status cdx_store_moderation_put(cdx_store *s, int64_t vector_id, const char *labelset,
                                    const char *label, float score, int flagged)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    if (!s || !labelset || !label) return cdx_fail(CDX_ERR_ARG, "cdx_store_moderation_put: bad argument");
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO moderation(vector_id, labelset, label, score, "
                           "flagged, scored_at) VALUES (?, ?, ?, ?, ?, ?)",
                           -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_int64(q, 1, vector_id);
    sqlite3_bind_text(q, 2, labelset, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, label, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 4, score);
    sqlite3_bind_int(q, 5, flagged != 0);
    sqlite3_bind_int64(q, 6, (int64_t)time(NULL));
    if (sqlite3_step(q) != SQLITE_DONE) st = cdx_store_sqlfail(s, "moderation");
    sqlite3_finalize(q);
    return st;
}

cdx_status cdx_store_moderation_foreach(cdx_store *s, const char *labelset,
                                        cdx_store_moderation_fn fn, void *user)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    int rc;
    if (!s || !labelset || !fn) return cdx_fail(CDX_ERR_ARG, "cdx_store_moderation_foreach: bad argument");
    if (sqlite3_prepare_v2(s->db,
                           "SELECT vector_id, label, score, flagged FROM moderation "
                           "WHERE labelset = ? ORDER BY vector_id, label",
                           -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_text(q, 1, labelset, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (fn(sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1),
               (float)sqlite3_column_double(q, 2), sqlite3_column_int(q, 3), user))
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) st = cdx_store_sqlfail(s, "moderation");
    sqlite3_finalize(q);
    return st;
}

cdx_status cdx_store_meta_set(cdx_store *s, const char *key, const char *value)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    if (!s || !key) return cdx_fail(CDX_ERR_ARG, "cdx_store_meta_set: bad argument");
    if (strcmp(key, "store_uuid") == 0 || strcmp(key, "current_model") == 0)
        return cdx_fail(CDX_ERR_ARG, "meta key '%s' is the store's own", key);
    if (sqlite3_prepare_v2(s->db,
                           value ? "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)"
                                 : "DELETE FROM meta WHERE key = ?",
                           -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    if (value) sqlite3_bind_text(q, 2, value, -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE) st = cdx_store_sqlfail(s, "meta");
    sqlite3_finalize(q);
    return st;
}

cdx_status cdx_store_meta_get(cdx_store *s, const char *key, char **value)
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    int rc;
    if (!s || !key || !value) return cdx_fail(CDX_ERR_ARG, "cdx_store_meta_get: bad argument");
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?", -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "prepare");
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(q);
    *value = NULL;
    if (rc == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL) {
        *value = strdup((const char *)sqlite3_column_text(q, 0));
        if (!*value) st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        st = cdx_store_sqlfail(s, "meta");
    }
    sqlite3_finalize(q);
    return st;
}

static int64_t file_bytes(const char *path)
{
    struct stat sb;
    return path && stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

cdx_status cdx_store_stats_get(cdx_store *s, cdx_store_stats *out)
{
    cdx_status st;
    cdx_store_stats r;
    int began = 0;
    char *p;

    if (!s || !out) return cdx_fail(CDX_ERR_ARG, "cdx_store_stats_get: bad argument");
    memset(&r, 0, sizeof r);
    if ((st = cdx_store_read_begin(s, &began)) != CDX_OK) return st;
    if ((st = query_int(s, "SELECT count(*) FROM files", 0, 0, &r.n_files)) != CDX_OK) goto done;
    if ((st = query_int(s, "SELECT count(*) FROM files WHERE state = 1", 0, 0, &r.n_error)) != CDX_OK)
        goto done;
    r.n_ok = r.n_files - r.n_error;
    if ((st = query_int(s, "SELECT count(*) FROM vectors", 0, 0, &r.n_vectors)) != CDX_OK) goto done;
    if ((st = query_int(s, "SELECT count(*) FROM models", 0, 0, &r.n_models)) != CDX_OK) goto done;
    if (s->model_id) {
        if ((st = query_int(s, "SELECT count(*) FROM vectors WHERE model_id = ?", s->model_id, 0,
                            &r.model_vectors)) != CDX_OK)
            goto done;
        if ((st = cdx_store_log_head(s, s->model_id, &r.log_head)) != CDX_OK) goto done;
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT index_factory FROM models WHERE id = ?", -1, &q,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, s->model_id);
            if (sqlite3_step(q) == SQLITE_ROW)
                snprintf(r.index_factory, sizeof r.index_factory, "%s", sqlite3_column_text(q, 0));
        }
        sqlite3_finalize(q);
    }
    /* Every model's FAISS file: a handle opened without a model (clipdex
     * stats) has no current one, and the store's size is all of them. */
    {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT id FROM models", -1, &q, NULL) == SQLITE_OK) {
            while (sqlite3_step(q) == SQLITE_ROW) {
                p = cdx_store_faiss_path(s, sqlite3_column_int64(q, 0));
                r.faiss_bytes += file_bytes(p);
                free(p);
            }
        }
        sqlite3_finalize(q);
    }
    if (s->vx) {
        r.faiss_ntotal = cdx_vindex_ntotal(s->vx);
        r.faiss_saved_pos = cdx_vindex_saved_pos(s->vx);
        snprintf(r.index_built, sizeof r.index_built, "%s", cdx_vindex_built(s->vx));
    }
    r.db_bytes = file_bytes(s->db_path);
    r.schema_version = s->schema_version;
    *out = r;
done:
    cdx_store_read_end(s, began);
    return st;
}

/* ---- precision of new vectors ---- */

cdx_status cdx_store_set_precision(cdx_store *s, cdx_precision p)
{
    if (!s || (unsigned)p > CDX_PRECISION_INT8 || p == CDX_PRECISION_AUTO)
        return cdx_fail(CDX_ERR_ARG, "cdx_store_set_precision: invalid argument");
    snprintf(s->precision, sizeof s->precision, "%s", cdx_precision_name(p));
    return CDX_OK;
}

cdx_status cdx_store_precision_counts(cdx_store *s, int64_t model_id, int64_t counts[4])
{
    sqlite3_stmt *q = NULL;
    cdx_status st = CDX_OK;
    memset(counts, 0, 4 * sizeof counts[0]);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT precision, count(*) FROM vectors WHERE model_id = ? "
                           "GROUP BY precision", -1, &q, NULL) != SQLITE_OK)
        return cdx_store_sqlfail(s, "count vectors by precision");
    sqlite3_bind_int64(q, 1, model_id);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        cdx_precision p = CDX_PRECISION_AUTO; /* NULL: before precision was recorded */
        if (name && cdx_precision_parse(name, &p) != 0) p = CDX_PRECISION_AUTO;
        counts[p] += sqlite3_column_int64(q, 1);
    }
    if (rc != SQLITE_DONE) st = cdx_store_sqlfail(s, "count vectors by precision");
    sqlite3_finalize(q);
    return st;
}
