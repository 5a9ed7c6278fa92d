/*
 * test_store.c - the index store through its public API: dedup of
 * identical content, removal, renames, model separation, filters, the
 * reader/writer protocol, the FAISS cache (missing, truncated, corrupt,
 * stale), index types with and without removal/training, range search,
 * the similarity self-join against brute force,
 * moderation/meta/stats and check/repair.
 *
 * Vectors are made up: a seeded generator per "content", dimension 16 or
 * 32 so everything runs in well under a second.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipdex.h"
#include "tap.h"

#define DIM 16

static char tmpdir[256];
static int warnings;
static char last_warning[1024];

static void sink(int level, const char *msg, void *user)
{
    (void)user;
    if (level >= CDX_LOG_WARN) {
        warnings++;
        snprintf(last_warning, sizeof last_warning, "%s", msg);
    }
}

/* A deterministic "embedding" of a content id: random, not normalised
 * (the store normalises). */
static void vec_of(uint64_t content, int dim, float *v)
{
    uint64_t x = content * 0x9e3779b97f4a7c15ull + 12345;
    for (int i = 0; i < dim; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1);
    }
}

static void meta_of(cdx_file_meta *m, const char *path, uint64_t content)
{
    memset(m, 0, sizeof *m);
    m->path = path;
    m->size = 1000 + (int64_t)content;
    m->mtime_ns = 1600000000000000000ll + (int64_t)content;
    m->taken_at = CDX_TIME_UNKNOWN;
    char c[32];
    snprintf(c, sizeof c, "content-%llu", (unsigned long long)content);
    cdx_hash_buf(c, strlen(c), m->hash);
    m->has_hash = 1;
}

static cdx_store *open_w(const char *dir, const char *factory, int64_t save_every)
{
    cdx_store_opts o = {0};
    cdx_store *s = NULL;
    o.writer = 1;
    o.index_factory = factory;
    o.save_every = save_every;
    if (cdx_store_open(dir, &o, &s) != CDX_OK) {
        diag("open writer %s: %s", dir, cdx_last_error());
        return NULL;
    }
    return s;
}

static cdx_store *open_r(const char *dir)
{
    cdx_store *s = NULL;
    if (cdx_store_open(dir, NULL, &s) != CDX_OK) {
        diag("open reader %s: %s", dir, cdx_last_error());
        return NULL;
    }
    return s;
}

static cdx_store_model model_a = {"aaaa0001", "model-a", "/models/a", DIM, NULL};
static cdx_store_model model_b = {"bbbb0002", "model-b", "/models/b", 32, NULL};

static int put(cdx_store *s, const char *path, uint64_t content, int dim)
{
    cdx_file_meta m;
    float v[64];
    meta_of(&m, path, content);
    vec_of(content, dim, v);
    cdx_status st = cdx_store_put_file(s, &m, v, NULL);
    if (st != CDX_OK) diag("put %s: %s", path, cdx_last_error());
    return st == CDX_OK;
}

/* Search by the vector of a content; returns the number of hits and the
 * first hit's path (static buffer). */
static size_t search(cdx_store *s, uint64_t content, int dim, size_t k, const cdx_store_filter *f,
                     char *top, size_t top_cap, float *top_score)
{
    float v[64];
    cdx_store_hit *h = NULL;
    size_t n = 0;
    vec_of(content, dim, v);
    if (cdx_store_search(s, v, k, f, -2, &h, &n) != CDX_OK) {
        diag("search: %s", cdx_last_error());
        return (size_t)-1;
    }
    if (top) snprintf(top, top_cap, "%s", n ? h[0].file.meta.path : "");
    if (top_score) *top_score = n ? h[0].score : -9;
    cdx_store_hits_free(h, n);
    return n;
}

static int64_t count_sql(const char *dir, const char *sql)
{
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int64_t n = -1;
    snprintf(path, sizeof path, "%s/clipdex.db", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

static int exec_sql(const char *dir, const char *sql)
{
    char path[512];
    sqlite3 *db = NULL;
    int rc;
    snprintf(path, sizeof path, "%s/clipdex.db", dir);
    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) diag("sql: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc == SQLITE_OK;
}

static void report_line(const char *line, void *user)
{
    (void)user;
    diag("check: %s", line);
}

static int64_t check(cdx_store *s, int repair)
{
    int64_t problems = -1;
    if (cdx_store_check(s, repair, report_line, NULL, &problems) != CDX_OK) {
        diag("check failed: %s", cdx_last_error());
        return -1;
    }
    return problems;
}

static int count_cb(const cdx_file_info *fi, void *user)
{
    (void)fi;
    (*(int *)user)++;
    return 0;
}

static int nfiles(cdx_store *s, const cdx_store_filter *f, unsigned flags)
{
    int n = 0;
    if (cdx_store_foreach_file(s, f, flags, count_cb, &n) != CDX_OK) {
        diag("foreach: %s", cdx_last_error());
        return -1;
    }
    return n;
}

static char *sub(const char *name)
{
    static char buf[8][512];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

/* ------------------------------------------------------------------ */

static void test_basics(void)
{
    const char *dir = sub("basic");
    cdx_store *s = open_w(dir, NULL, 0), *s2 = NULL, *r = NULL;
    int64_t vid = 0, n = 0;
    cdx_file_meta m;
    char top[512];
    float score;

    ok(s != NULL, "writer creates a new store");
    if (!s) return;
    ok(cdx_store_open(dir, &(cdx_store_opts){.writer = 1}, &s2) == CDX_ERR_BUSY &&
           strstr(cdx_last_error(), "pid"),
       "a second writer gets CDX_ERR_BUSY: %s", cdx_last_error());
    ok(cdx_store_put_file(s, &(cdx_file_meta){.path = "/x"}, NULL, NULL) == CDX_ERR_ARG,
       "writes need a model first: %s", cdx_last_error());
    ok(cdx_store_use_model(s, &model_a, NULL) == CDX_OK, "register model a");

    /* Dedup: /p/a.jpg and /p/copy.JPG have the same bytes. */
    ok(put(s, "/p/a.jpg", 1, DIM) && put(s, "/p/b.png", 2, DIM) && put(s, "/p/copy.JPG", 1, DIM),
       "three files, two contents");
    ok(count_sql(dir, "SELECT count(*) FROM vectors") == 2, "identical content shares one vector");
    meta_of(&m, "/p/again.jpg", 1);
    ok(cdx_store_find_vector(s, m.hash, &vid) == CDX_OK && vid > 0, "find_vector knows content 1");
    ok(cdx_store_put_file(s, &m, NULL, NULL) == CDX_OK, "known content needs no vector");
    meta_of(&m, "/p/new.jpg", 77);
    ok(cdx_store_find_vector(s, m.hash, &vid) == CDX_OK && vid == 0, "find_vector: unknown content");
    ok(cdx_store_put_file(s, &m, NULL, NULL) == CDX_ERR_ARG, "new content without vector refused");

    n = search(s, 1, DIM, 10, NULL, top, sizeof top, &score);
    ok(n == 4 && fabsf(score - 1) < 1e-3 && strcmp(top, "/p/a.jpg") == 0,
       "search finds all files, the three copies first (%zu, %s, %.4f)", (size_t)n, top, (double)score);

    /* Reader opened now sees everything, then the writer's later
     * commits without any FAISS save in between. */
    r = open_r(dir);
    ok(r && cdx_store_use_model(r, &model_a, NULL) == CDX_OK, "reader opens the same model");
    ok(put(s, "/p/late.jpg", 5, DIM), "writer adds after the reader opened");
    n = search(r, 5, DIM, 1, NULL, top, sizeof top, &score);
    ok(n == 1 && strcmp(top, "/p/late.jpg") == 0, "reader sees the unsaved commit (%s)", top);
    ok(cdx_store_put_file(r, &m, NULL, NULL) == CDX_ERR_ARG, "reader cannot write files");

    /* Removal: the shared vector lives while any copy does. */
    ok(cdx_store_remove_file(s, "/p/a.jpg", &n) == CDX_OK && n == 1, "remove one copy");
    ok(cdx_store_remove_file(s, "/p/nothere", &n) == CDX_OK && n == 0, "removing an unknown path is no error");
    ok(count_sql(dir, "SELECT count(*) FROM vectors") == 3, "vector kept while copies remain");
    ok(cdx_store_remove_file(s, "/p/copy.JPG", NULL) == CDX_OK &&
           cdx_store_remove_file(s, "/p/again.jpg", NULL) == CDX_OK,
       "remove the other copies");
    ok(count_sql(dir, "SELECT count(*) FROM vectors") == 2, "last reference gone: vector removed");
    n = search(r, 1, DIM, 10, NULL, top, sizeof top, &score);
    ok(n == 2 && score < 0.99f, "reader no longer finds content 1 (%zu hits, top %.3f)", (size_t)n, (double)score);

    /* Changed content at the same path. */
    ok(put(s, "/p/b.png", 3, DIM), "/p/b.png changes content");
    ok(count_sql(dir, "SELECT count(*) FROM vectors") == 2 &&
           count_sql(dir, "SELECT count(*) FROM changes WHERE op = 2") >= 2,
       "old vector of a changed file removed and logged");

    /* Errors. */
    meta_of(&m, "/p/broken.jpg", 9);
    ok(cdx_store_put_error(s, &m, "not a JPEG") == CDX_OK, "record a failed file");
    cdx_file_info fi;
    int found = 0;
    ok(cdx_store_get_file(r, "/p/broken.jpg", &fi, &found) == CDX_OK && found &&
           fi.state == CDX_FILE_ERROR && fi.error && strcmp(fi.error, "not a JPEG") == 0 &&
           fi.vector_id == 0 && strcmp(fi.ext, "jpg") == 0,
       "failed file stored with its error");
    cdx_file_info_release(&fi);
    ok(put(s, "/p/broken.jpg", 9, DIM), "fixed file indexes over its error row");
    ok(cdx_store_get_file(r, "/p/broken.jpg", &fi, &found) == CDX_OK && found &&
           fi.state == CDX_FILE_OK && !fi.error && fi.vector_id > 0,
       "error cleared");
    cdx_file_info_release(&fi);
    ok(cdx_store_get_file(r, "/nope", &fi, &found) == CDX_OK && !found, "get_file: absent path");

    /* Non-UTF-8 path bytes survive. */
    const char weird[] = "/p/caf\xe9 \xff\xfe.jpg";
    ok(put(s, weird, 11, DIM), "path with invalid UTF-8");
    ok(cdx_store_get_file(r, weird, &fi, &found) == CDX_OK && found &&
           strcmp(fi.meta.path, weird) == 0,
       "non-UTF-8 path round-trips byte for byte");
    cdx_file_info_release(&fi);

    cdx_store_close(r);
    r = NULL;
    ok(check(s, 0) == 0, "check: consistent");
    cdx_store_close(s);
    cdx_store_close(s2);
    s = open_w(dir, NULL, 0);
    ok(s != NULL, "lock released at close: a new writer opens");
    cdx_store_close(s);
}

static void test_renames(void)
{
    const char *dir = sub("rename");
    cdx_store *s = open_w(dir, NULL, 0);
    int64_t n = 0;
    cdx_file_info fi;
    int found = 0;
    cdx_store_filter f = {0};

    if (!s || cdx_store_use_model(s, &model_a, NULL) != CDX_OK) {
        ok(0, "open rename store");
        return;
    }
    ok(put(s, "/r/d/one.jpg", 1, DIM) && put(s, "/r/d/sub/two.jpg", 2, DIM) &&
           put(s, "/r/d0/other.jpg", 3, DIM) && put(s, "/r/dx.jpg", 4, DIM),
       "files in and next to /r/d");
    ok(cdx_store_rename(s, "/r/d/one.jpg", "/r/d/uno.JPEG", &n) == CDX_OK && n == 1, "rename a file");
    ok(cdx_store_get_file(s, "/r/d/uno.JPEG", &fi, &found) == CDX_OK && found &&
           strcmp(fi.ext, "jpeg") == 0,
       "renamed file keeps its row, extension updated");
    cdx_file_info_release(&fi);
    ok(cdx_store_begin(s) == CDX_OK, "begin a batch");
    ok(cdx_store_rename(s, "/r/d", "/r/e/", &n) == CDX_OK && n == 2, "rename a directory (%lld rows)", (long long)n);
    ok(cdx_store_commit(s) == CDX_OK, "commit the batch");
    f.state = CDX_FILE_ANY;
    f.under = "/r/e";
    ok(nfiles(s, &f, 0) == 2, "both files are under /r/e");
    f.under = "/r/d";
    ok(nfiles(s, &f, 0) == 0, "nothing left under /r/d");
    f.under = "/r";
    ok(nfiles(s, &f, 0) == 4, "/r/d0 and /r/dx.jpg untouched (4 under /r)");
    ok(count_sql(dir, "SELECT count(*) FROM changes") == 4, "renames changed no vector");
    ok(put(s, "/r/z.jpg", 5, DIM) && cdx_store_rename(s, "/r/z.jpg", "/r/dx.jpg", &n) == CDX_OK,
       "rename over an existing file");
    ok(cdx_store_get_file(s, "/r/dx.jpg", &fi, &found) == CDX_OK && found &&
           fi.meta.size == 1005,
       "target row replaced by the moved file");
    cdx_file_info_release(&fi);
    ok(count_sql(dir, "SELECT count(*) FROM vectors") == 4, "replaced file's vector removed");
    ok(cdx_store_remove_under(s, "/r/e", &n) == CDX_OK && n == 2, "remove a directory");
    ok(nfiles(s, NULL, 0) == 2, "two files left");
    cdx_store_begin(s);
    put(s, "/r/rolled.jpg", 6, DIM);
    cdx_store_rollback(s);
    ok(nfiles(s, NULL, 0) == 2 && count_sql(dir, "SELECT count(*) FROM vectors") == 2,
       "rolled-back batch left nothing");
    char top[256];
    ok(search(s, 6, DIM, 1, NULL, top, sizeof top, NULL) == 1 && strcmp(top, "/r/rolled.jpg") != 0,
       "nor in FAISS");
    ok(check(s, 0) == 0, "check: consistent");
    cdx_store_close(s);
}

static void test_models(void)
{
    const char *dir = sub("models");
    cdx_store *s = open_w(dir, NULL, 0), *r = NULL;
    int64_t ida = 0, idb = 0;
    char top[256];
    float score;

    if (!s) return;
    ok(cdx_store_use_model(s, &model_a, &ida) == CDX_OK, "model a");
    ok(put(s, "/m/1.jpg", 1, DIM) && put(s, "/m/2.jpg", 2, DIM) && put(s, "/m/3.jpg", 3, DIM),
       "three files with model a");
    ok(cdx_store_use_model(s, &model_b, &idb) == CDX_OK && idb != ida, "switch to model b (dim 32)");
    ok(nfiles(s, NULL, CDX_FOREACH_STALE) == 3, "all three need re-embedding");
    ok(put(s, "/m/1.jpg", 1, 32), "re-embed one with model b");
    ok(nfiles(s, NULL, CDX_FOREACH_STALE) == 2, "two left to re-embed");
    ok(search(s, 1, 32, 10, NULL, top, sizeof top, &score) == 1 && strcmp(top, "/m/1.jpg") == 0,
       "model b's space holds only its vector");
    ok(count_sql(dir, "SELECT count(*) FROM vectors WHERE model_id = 1") == 2,
       "model a's vector of the re-embedded file was dropped");
    r = open_r(dir);
    ok(r && cdx_store_use_model(r, &model_a, NULL) == CDX_OK, "reader uses model a");
    ok(search(r, 2, DIM, 10, NULL, top, sizeof top, &score) == 2, "model a still answers for the rest");
    cdx_store_model wrong = model_a;
    wrong.dim = 8;
    ok(cdx_store_use_model(r, &wrong, NULL) == CDX_ERR_MODEL, "same key, other dimension refused: %s",
       cdx_last_error());
    cdx_store_model unknown = {"cccc", "model-c", NULL, DIM, NULL};
    ok(cdx_store_use_model(r, &unknown, NULL) == CDX_ERR_STORE && strstr(cdx_last_error(), "model-a"),
       "unknown model: error lists the store's models: %s", cdx_last_error());
    cdx_store_model_info *mi = NULL;
    size_t nm = 0;
    ok(cdx_store_models(r, &mi, &nm) == CDX_OK && nm == 2 && mi[1].current && mi[0].n_vectors == 2 &&
           mi[1].n_vectors == 1,
       "models listed with counts and the current one");
    cdx_store_models_free(mi, nm);
    ok(check(s, 0) == 0, "check: consistent with two models");
    cdx_store_close(r);
    cdx_store_close(s);
}

/* Brute force over the filter's files, for comparison. */
typedef struct brute { const float *q; int dim; float best[8]; char path[8][64]; int n; } brute;

static void test_filters(void)
{
    const char *dir = sub("filters");
    cdx_store *s = open_w(dir, NULL, 0);
    cdx_store_filter f;
    char path[128], top[256];
    int all_put = 1;
    enum { N = 6000 };

    if (!s || cdx_store_use_model(s, &model_a, NULL) != CDX_OK) {
        ok(0, "open filter store");
        return;
    }
    cdx_store_begin(s);
    for (int i = 0; i < N && all_put; i++) {
        cdx_file_meta m;
        float v[DIM];
        snprintf(path, sizeof path, "/f/%s/img%05d.%s", i % 2 ? "odd" : "even", i, i % 3 ? "jpg" : "PNG");
        meta_of(&m, path, (uint64_t)i + 100);
        m.taken_at = i % 5 == 0 ? CDX_TIME_UNKNOWN : 1000000 + i;
        m.mtime_ns = (int64_t)(2000000 + i) * 1000000000ll;
        m.camera_make = i % 4 == 0 ? "Canon" : "NIKON CORPORATION";
        m.camera_model = i % 4 == 0 ? "EOS 5D" : "D750";
        vec_of((uint64_t)i + 100, DIM, v);
        all_put = cdx_store_put_file(s, &m, v, NULL) == CDX_OK;
    }
    ok(all_put && cdx_store_commit(s) == CDX_OK, "6000 files in one transaction");

    /* For each filter: the top-5 from the store must equal brute force
     * over the files that match. */
    struct { const char *name; cdx_store_filter f; int (*match)(int i); } cases[] = {
        {"under /f/odd (half: FAISS over-fetch)", {.under = "/f/odd"}, NULL},
        {"ext png (a third)", {.exts = (const char *const[]){"png"}, .n_exts = 1}, NULL},
        {"camera canon (a quarter, case-insensitive)", {.camera = "canon"}, NULL},
        {"date range (a few hundred: exact scoring)", {.after = 1000100, .before = 1000400}, NULL},
        {"date falls back to mtime", {.after = 2000000, .before = 2000100}, NULL},
        {"under + ext combined", {.under = "/f/even", .exts = (const char *const[]){".JPG"}, .n_exts = 1}, NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float q[DIM];
        cdx_store_hit *h = NULL;
        size_t n = 0;
        vec_of(424242 + c, DIM, q);
        f = cases[c].f;
        if (cdx_store_search(s, q, 5, &f, -2, &h, &n) != CDX_OK) {
            ok(0, "%s: %s", cases[c].name, cdx_last_error());
            continue;
        }
        /* brute force */
        float best[5] = {-9, -9, -9, -9, -9};
        int matched = 0;
        double qn = 0;
        for (int j = 0; j < DIM; j++) qn += (double)q[j] * q[j];
        for (int i = 0; i < N; i++) {
            int odd = i % 2, png = i % 3 == 0, canon = i % 4 == 0;
            int64_t when = i % 5 == 0 ? 2000000 + i : 1000000 + i;
            int mt = 0;
            switch (c) {
            case 0: mt = odd; break;
            case 1: mt = png; break;
            case 2: mt = canon; break;
            case 3: mt = when >= 1000100 && when < 1000400; break;
            case 4: mt = when >= 2000000 && when < 2000100; break;
            case 5: mt = !odd && !png; break;
            }
            if (!mt) continue;
            matched++;
            float v[DIM];
            double dot = 0, vn = 0;
            vec_of((uint64_t)i + 100, DIM, v);
            for (int j = 0; j < DIM; j++) vn += (double)v[j] * v[j];
            for (int j = 0; j < DIM; j++) dot += q[j] / sqrt(qn) * (v[j] / sqrt(vn));
            float d = (float)dot;
            for (int t = 0; t < 5; t++)
                if (d > best[t]) {
                    memmove(best + t + 1, best + t, (size_t)(4 - t) * sizeof *best);
                    best[t] = d;
                    break;
                }
        }
        int same = n == 5;
        for (size_t t = 0; same && t < 5; t++) same = fabsf(h[t].score - best[t]) < 2e-3f;
        for (size_t t = 0; same && t < n; t++) {
            const char *p = h[t].file.meta.path;
            if (f.under && strncmp(p, f.under, strlen(f.under)) != 0) same = 0;
        }
        ok(same, "%s: top-5 equals brute force over %d matching files", cases[c].name, matched);
        if (!same)
            for (size_t t = 0; t < n && t < 5; t++)
                diag("  got %.4f %s, want %.4f", (double)h[t].score, h[t].file.meta.path, (double)best[t]);
        cdx_store_hits_free(h, n);
    }
    f = (cdx_store_filter){.under = "/nowhere"};
    ok(search(s, 1, DIM, 5, &f, top, sizeof top, NULL) == 0, "filter matching nothing: no hits");
    {
        float q[DIM];
        cdx_store_hit *h = NULL;
        size_t n = 0;
        vec_of(100, DIM, q);
        cdx_status st = cdx_store_search(s, q, 100, NULL, 0.8f, &h, &n);
        ok(st == CDX_OK && n >= 1 && n < 100 && h[n - 1].score >= 0.8f,
           "min_score cuts the list (%zu hits >= 0.8)", n);
        cdx_store_hits_free(h, n);
    }
    f = (cdx_store_filter){.state = CDX_FILE_OK, .camera = "D750"};
    ok(nfiles(s, &f, 0) == N - N / 4, "foreach with a filter");
    {
        cdx_file_meta m;
        meta_of(&m, "", 100);
        f = (cdx_store_filter){.state = CDX_FILE_ANY, .hash = m.hash};
        ok(nfiles(s, &f, 0) == 1, "files by content hash");
    }
    cdx_store_close(s);
}

static void faiss_path(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/index-1.faiss", dir);
}

static int reopen_search_ok(const char *dir, const char *what)
{
    cdx_store *s = open_w(dir, NULL, 0);
    char top[256];
    float score = 0;
    int w0 = warnings, good;
    if (!s) return 0;
    good = cdx_store_use_model(s, &model_a, NULL) == CDX_OK &&
           search(s, 3, DIM, 1, NULL, top, sizeof top, &score) == 1 && strcmp(top, "/c/3.jpg") == 0;
    ok(good && warnings > w0, "%s: rebuilt with a warning (%s)", what, last_warning);
    cdx_store_close(s);
    return good;
}

static void test_faiss_cache(void)
{
    const char *dir = sub("cache");
    char fp[512];
    struct stat sb;
    cdx_store *s = open_w(dir, NULL, 3);
    int64_t problems;

    if (!s || cdx_store_use_model(s, &model_a, NULL) != CDX_OK) {
        ok(0, "open cache store");
        return;
    }
    for (int i = 0; i < 10; i++) {
        char p[64];
        snprintf(p, sizeof p, "/c/%d.jpg", i);
        put(s, p, (uint64_t)i, DIM);
    }
    cdx_store_remove_file(s, "/c/9.jpg", NULL);
    faiss_path(dir, fp, sizeof fp);
    ok(stat(fp, &sb) == 0, "FAISS file saved every save_every changes");
    ok(count_sql(dir, "SELECT count(*) FROM changes") < 11 &&
           count_sql(dir, "SELECT pruned_upto FROM models") > 0,
       "change log pruned behind the saves");
    cdx_store_close(s);

    /* Stale file: copy the file, make changes, save, restore the copy.
     * Its position is behind the pruned log: rebuilt. */
    ok(truncate(fp, sb.st_size / 2) == 0, "truncate the FAISS file");
    s = open_r(dir);
    problems = s ? check(s, 0) : -1;
    ok(problems > 0, "check reports the truncated file (%lld problems)", (long long)problems);
    cdx_store_close(s);
    reopen_search_ok(dir, "truncated file");
    ok(unlink(fp) == 0, "delete the FAISS file");
    s = open_r(dir);
    ok(s && check(s, 0) == 0, "a missing FAISS file is not a problem for check");
    cdx_store_close(s);
    reopen_search_ok(dir, "missing file");
    {
        int fd = open(fp, O_WRONLY);
        ok(fd >= 0 && pwrite(fd, "XXXX", 4, 0) == 4, "overwrite the magic");
        if (fd >= 0) close(fd);
    }
    reopen_search_ok(dir, "corrupt header");
    {
        /* An id byte in the payload flipped: the id checksum catches it. */
        int fd = open(fp, O_RDWR);
        struct stat st2;
        unsigned char c;
        fstat(fd, &st2);
        off_t at = st2.st_size - 8 * 4; /* inside the id map at the end */
        ok(pread(fd, &c, 1, at) == 1 && (c ^= 0x40, pwrite(fd, &c, 1, at)) == 1, "flip a bit in the ids");
        close(fd);
    }
    s = open_r(dir);
    problems = s ? check(s, 0) : -1;
    ok(problems > 0, "check reports it (%lld)", (long long)problems);
    cdx_store_close(s);
    s = open_w(dir, NULL, 0);
    ok(s && check(s, 1) == 0, "check --repair fixes it");
    cdx_store_close(s);
    s = open_r(dir);
    ok(s && check(s, 0) == 0, "and it stays fixed");
    cdx_store_close(s);

    /* A FAISS file from another store is recognised by the uuid. */
    {
        const char *other = sub("cache2");
        char fp2[512];
        cdx_store *o = open_w(other, NULL, 0);
        ok(o && cdx_store_use_model(o, &model_a, NULL) == CDX_OK && put(o, "/o.jpg", 1, DIM),
           "another store");
        cdx_store_close(o);
        faiss_path(other, fp2, sizeof fp2);
        ok(rename(fp2, fp) == 0, "move its FAISS file over ours");
        reopen_search_ok(dir, "foreign file");
    }
}

static void test_index_types(void)
{
    const char *dir = sub("hnsw");
    cdx_store *s = open_w(dir, "HNSW32,Flat", 0), *r;
    char top[256];
    float score;
    int64_t *ids = NULL;
    float *sc = NULL;
    size_t n = 0;
    cdx_store_stats st;

    if (!s || cdx_store_use_model(s, &model_a, NULL) != CDX_OK) {
        ok(0, "open hnsw store: %s", cdx_last_error());
        return;
    }
    cdx_store_begin(s);
    for (int i = 0; i < 300; i++) {
        char p[64];
        snprintf(p, sizeof p, "/h/%03d.jpg", i);
        put(s, p, (uint64_t)i, DIM);
    }
    cdx_store_commit(s);
    for (int i = 0; i < 300; i += 3) {
        char p[64];
        snprintf(p, sizeof p, "/h/%03d.jpg", i);
        cdx_store_remove_file(s, p, NULL);
    }
    ok(search(s, 3, DIM, 1, NULL, top, sizeof top, &score) == 1 && strcmp(top, "/h/003.jpg") != 0,
       "HNSW: a removed vector is not found (tombstone)");
    ok(search(s, 4, DIM, 1, NULL, top, sizeof top, &score) == 1 && strcmp(top, "/h/004.jpg") == 0,
       "HNSW: a live vector is found");
    ok(cdx_store_stats_get(s, &st) == CDX_OK && st.model_vectors == 200 && st.faiss_ntotal == 200 &&
           strcmp(st.index_built, "HNSW32,Flat") == 0,
       "stats: 200 live vectors, index type HNSW32,Flat");
    {
        float q[DIM];
        vec_of(4, DIM, q);
        ok(cdx_store_range_search(s, q, 0.99f, 0, &ids, &sc, &n) == CDX_OK && n == 1,
           "HNSW range search (k-NN fallback) finds exactly the vector itself");
        free(ids);
        free(sc);
    }
    cdx_store_close(s);
    r = open_r(dir);
    ok(r && cdx_store_use_model(r, &model_a, NULL) == CDX_OK &&
           search(r, 3, DIM, 1, NULL, top, sizeof top, &score) == 1 && strcmp(top, "/h/003.jpg") != 0,
       "tombstones survive save and load");
    ok(r && check(r, 0) == 0, "check: HNSW store consistent");
    cdx_store_close(r);

    /* IVF: Flat until train_min vectors exist, then trained. */
    dir = sub("ivf");
    cdx_store_opts o = {.writer = 1, .index_factory = "IVF4,Flat", .train_min = 200,
                        .search_params = "nprobe=4"};
    s = NULL;
    ok(cdx_store_open(dir, &o, &s) == CDX_OK && cdx_store_use_model(s, &model_a, NULL) == CDX_OK,
       "IVF4,Flat store");
    if (!s) return;
    for (int i = 0; i < 150; i++) {
        char p[64];
        snprintf(p, sizeof p, "/i/%03d.jpg", i);
        put(s, p, (uint64_t)i, DIM);
    }
    cdx_store_stats_get(s, &st);
    ok(strcmp(st.index_built, "Flat") == 0 && strcmp(st.index_factory, "IVF4,Flat") == 0,
       "below train_min: built as Flat (%s), configured %s", st.index_built, st.index_factory);
    for (int i = 150; i < 250; i++) {
        char p[64];
        snprintf(p, sizeof p, "/i/%03d.jpg", i);
        put(s, p, (uint64_t)i, DIM);
    }
    cdx_store_stats_get(s, &st);
    ok(strcmp(st.index_built, "IVF4,Flat") == 0, "after train_min: rebuilt as %s", st.index_built);
    ok(search(s, 200, DIM, 1, NULL, top, sizeof top, &score) == 1 && strcmp(top, "/i/200.jpg") == 0,
       "IVF (nprobe=4 of 4 lists) finds the vector");
    ok(cdx_store_remove_file(s, "/i/200.jpg", NULL) == CDX_OK &&
           search(s, 201, DIM, 1, NULL, top, sizeof top, &score) == 1 &&
           strcmp(top, "/i/201.jpg") == 0 &&
           search(s, 200, DIM, 1, NULL, top, sizeof top, &score) == 1 &&
           strcmp(top, "/i/200.jpg") != 0,
       "IVF removal keeps ids right (tombstones, not IDMap remove)");
    ok(check(s, 0) == 0, "check: IVF store consistent");
    cdx_store_close(s);
    o.index_factory = "Flat";
    ok(cdx_store_open(dir, &o, &s) == CDX_OK && cdx_store_use_model(s, &model_a, NULL) == CDX_OK &&
           cdx_store_stats_get(s, &st) == CDX_OK && strcmp(st.index_built, "Flat") == 0,
       "a changed index type rebuilds (%s)", st.index_built);
    cdx_store_close(s);
    o.index_factory = "Bogus99";
    s = NULL;
    ok(cdx_store_open(dir, &o, &s) == CDX_OK && cdx_store_use_model(s, &model_a, NULL) == CDX_ERR_ARG,
       "an invalid index type is an argument error: %s", cdx_last_error());
    cdx_store_close(s);
}

static int mod_cb(int64_t vid, const char *label, float score, int flagged, void *user)
{
    (void)vid;
    (void)label;
    (void)score;
    *(int *)user += flagged ? 10 : 1;
    return 0;
}

static void test_misc(void)
{
    const char *dir = sub("misc");
    cdx_store *s = open_w(dir, NULL, 0), *r;
    char *v = NULL;
    int cnt = 0;
    cdx_file_info fi;
    int found;
    cdx_store_stats st;

    if (!s || cdx_store_use_model(s, &model_a, NULL) != CDX_OK) {
        ok(0, "open misc store");
        return;
    }
    put(s, "/x/1.jpg", 1, DIM);
    put(s, "/x/2.jpg", 2, DIM);
    r = open_r(dir);
    ok(r && cdx_store_use_model(r, &model_a, NULL) == CDX_OK, "reader");
    cdx_store_get_file(r, "/x/1.jpg", &fi, &found);
    ok(cdx_store_moderation_put(r, fi.vector_id, "nsfw", "nudity", 0.9f, 1) == CDX_OK &&
           cdx_store_moderation_put(r, fi.vector_id, "nsfw", "neutral", 0.1f, 0) == CDX_OK,
       "a reader stores moderation results");
    ok(cdx_store_moderation_foreach(s, "nsfw", mod_cb, &cnt) == CDX_OK && cnt == 11,
       "results read back (flagged and not)");
    cdx_store_remove_file(s, "/x/1.jpg", NULL);
    cnt = 0;
    cdx_store_moderation_foreach(s, "nsfw", mod_cb, &cnt);
    ok(cnt == 0, "results go with their vector");
    cdx_file_info_release(&fi);
    ok(cdx_store_meta_set(r, "daemon_state", "indexing") == CDX_OK &&
           cdx_store_meta_get(s, "daemon_state", &v) == CDX_OK && v && strcmp(v, "indexing") == 0,
       "meta set by one handle, read by another");
    free(v);
    ok(cdx_store_meta_get(s, "nope", &v) == CDX_OK && v == NULL, "absent meta key is NULL");
    ok(cdx_store_meta_set(s, "store_uuid", "x") == CDX_ERR_ARG, "the store's own keys are protected");
    {
        float q[DIM], back[DIM];
        cdx_store_get_file(r, "/x/2.jpg", &fi, &found);
        vec_of(2, DIM, q);
        ok(cdx_store_get_vector(r, fi.vector_id, back) == CDX_OK, "get a stored vector");
        double qn = 0, dot = 0;
        for (int i = 0; i < DIM; i++) qn += (double)q[i] * q[i];
        for (int i = 0; i < DIM; i++) dot += q[i] / sqrt(qn) * back[i];
        ok(fabs(dot - 1) < 1e-3, "stored vector is the normalised input (cos %.5f)", dot);
        cdx_file_info_release(&fi);
    }
    ok(cdx_store_stats_get(r, &st) == CDX_OK && st.n_files == 1 && st.n_vectors == 1 &&
           st.schema_version >= 2 && st.db_bytes > 0 && strcmp(st.index_factory, "Flat") == 0,
       "stats");
    cdx_store_close(r);
    cdx_store_close(s);

    /* Orphans and repair. */
    ok(exec_sql(dir, "INSERT INTO vectors(model_id, hash, data, created_at) VALUES "
                     "(1, x'00', zeroblob(32), 0)"),
       "inject an orphan vector behind the store's back");
    s = open_r(dir);
    ok(s && check(s, 0) >= 1, "check finds the orphan");
    ok(s && cdx_store_check(s, 1, NULL, NULL, NULL) == CDX_ERR_ARG, "repair needs a writer");
    cdx_store_close(s);
    s = open_w(dir, NULL, 0);
    ok(s && check(s, 1) == 0, "repair removes it");
    cdx_store_close(s);
    ok(count_sql(dir, "SELECT count(*) FROM vectors") == 1, "one vector left");

    /* Reader on a missing store: a message that says how to make one. */
    s = NULL;
    ok(cdx_store_open(sub("none"), NULL, &s) == CDX_ERR_IO && strstr(cdx_last_error(), "index"),
       "no store: %s", cdx_last_error());
    ok(cdx_store_open(dir, &(cdx_store_opts){.writer = 1, .index_factory = "IDMap,Flat"}, &s) ==
           CDX_ERR_ARG,
       "IDMap in the index type refused");
}

/* ---- the similarity self-join (cdx_store_similar_pairs) ---- */

struct vid_list {
    int64_t v[2048];
    size_t n;
};

static int vid_cb(const cdx_file_info *fi, void *user)
{
    struct vid_list *l = user;
    if (l->n < sizeof l->v / sizeof l->v[0]) l->v[l->n++] = fi->vector_id;
    return 0;
}

struct got_pairs {
    size_t n_ids;
    unsigned char *seen;    /* n_ids x n_ids: 1 = reported */
    float *score;
    int bad_order, twice, calls, stop_after;
};

static int pair_cb(void *user, size_t a, size_t b, float score)
{
    struct got_pairs *g = user;
    g->calls++;
    if (a >= b || b >= g->n_ids) {
        g->bad_order++;
        return 0;
    }
    if (g->seen[a * g->n_ids + b]) g->twice++;
    g->seen[a * g->n_ids + b] = 1;
    g->score[a * g->n_ids + b] = score;
    return g->stop_after && g->calls >= g->stop_after;
}

/* Compare the join over ids with a brute-force loop over the same stored
 * vectors, at every precision of the tile products: the dot products
 * summed in double in index order decide each pair, and are its score
 * (rounded to float), so the result must be exactly the brute force's,
 * even for pairs a float32 rounding away from the threshold. */
static void join_vs_brute(cdx_store *s, const int64_t *ids, size_t n, float min, const char *what)
{
    static const cdx_precision precs[] = {CDX_PRECISION_F32, CDX_PRECISION_BF16, CDX_PRECISION_INT8,
                                          CDX_PRECISION_AUTO};
    float *x = malloc(n * DIM * sizeof *x);
    double *d = malloc(n * n * sizeof *d);
    int loaded = 1;
    for (size_t i = 0; i < n && loaded; i++) loaded = cdx_store_get_vector(s, ids[i], x + i * DIM) == CDX_OK;
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++) {
            double t = 0;
            for (int k = 0; k < DIM; k++) t += (double)x[a * DIM + k] * x[b * DIM + k];
            d[a * n + b] = t;
        }
    for (size_t pi = 0; pi < sizeof precs / sizeof precs[0]; pi++) {
        struct got_pairs g = {n, calloc(n * n, 1), calloc(n * n, sizeof(float)), 0, 0, 0, 0};
        size_t expect = 0, missing = 0, extra = 0, wrong = 0, close = 0;
        ok(loaded && cdx_store_set_join_precision(s, precs[pi]) == CDX_OK &&
               cdx_store_similar_pairs(s, ids, n, min, pair_cb, &g) == CDX_OK,
           "%s, %s: join runs", what, cdx_precision_name(precs[pi]));
        for (size_t a = 0; a < n; a++)
            for (size_t b = a + 1; b < n; b++) {
                double t = d[a * n + b];
                int want = t >= (double)min, got = g.seen[a * n + b];
                close += fabs(t - min) < 1e-4;
                expect += (size_t)want;
                if (want && !got) missing++;
                if (!want && got) extra++;
                if (got && g.score[a * n + b] != (float)t) wrong++;
            }
        ok(expect > 0 && missing == 0 && extra == 0 && g.bad_order == 0 && g.twice == 0 && wrong == 0,
           "%s, %s: %zu pairs >= %.9g exactly as brute force (missing %zu, extra %zu, misordered %d, "
           "twice %d, scores off %zu; %zu pairs within 1e-4 of the threshold)",
           what, cdx_precision_name(precs[pi]), expect, (double)min, missing, extra, g.bad_order,
           g.twice, wrong, close);
        free(g.seen);
        free(g.score);
    }
    cdx_store_set_join_precision(s, CDX_PRECISION_AUTO);
    free(x);
    free(d);
}

static void test_similar_pairs(void)
{
    const char *dir = sub("join");
    cdx_store *s = open_w(dir, "HNSW32,Flat", 0);
    struct vid_list all = {.n = 0};
    int64_t sub_ids[600];
    size_t nsub = 0;

    if (!s || cdx_store_use_model(s, &model_a, NULL) != CDX_OK) {
        ok(0, "open join store: %s", cdx_last_error());
        cdx_store_close(s);
        return;
    }
    /* 1300 vectors: three tiles of 512 per side, the last one partial;
     * every 13th is a near copy (small noise) of another one far away, so
     * the pairs above a high threshold cross tiles. */
    cdx_store_begin(s);
    for (int i = 0; i < 1300; i++) {
        char p[64];
        snprintf(p, sizeof p, "/j/%04d.jpg", i);
        if (i % 13 == 0) {
            cdx_file_meta m;
            float v[DIM], noise[DIM];
            meta_of(&m, p, (uint64_t)i + 5000);
            vec_of((uint64_t)((i * 37 + 5) % 1300) + 5000, DIM, v);
            vec_of((uint64_t)i + 90000, DIM, noise);
            for (int k = 0; k < DIM; k++) v[k] += 0.05f * noise[k];
            if (cdx_store_put_file(s, &m, v, NULL) != CDX_OK) diag("put %s: %s", p, cdx_last_error());
        } else {
            put(s, p, (uint64_t)i + 5000, DIM);
        }
    }
    cdx_store_commit(s);
    ok(cdx_store_foreach_file(s, NULL, 0, vid_cb, &all) == CDX_OK && all.n == 1300,
       "join: 1300 vectors stored");
    join_vs_brute(s, all.v, all.n, 0.9f, "all 1300 (HNSW store: exact anyway)");
    {
        /* Thresholds on a pair's exact score and one float step either
         * side: decided by the exact value at every precision. */
        float v0[DIM], v1[DIM];
        double t = 0;
        if (cdx_store_get_vector(s, all.v[13], v0) == CDX_OK &&
            cdx_store_get_vector(s, all.v[(13 * 37 + 5) % 1300], v1) == CDX_OK)
            for (int k = 0; k < DIM; k++) t += (double)v0[k] * v1[k];
        float m = (float)t;
        join_vs_brute(s, all.v, all.n, m, "threshold on a pair's score");
        join_vs_brute(s, all.v, all.n, nextafterf(m, 2.0f), "threshold a float above a pair's score");
        join_vs_brute(s, all.v, all.n, nextafterf(m, -2.0f), "threshold a float below a pair's score");
    }
    join_vs_brute(s, all.v, all.n, 0.6f, "all 1300, lower threshold");
    /* A subset in a scrambled order: indexes refer to the given array. */
    for (size_t i = 0; i < all.n && nsub < 600; i += 2) sub_ids[nsub++] = all.v[(i * 7) % all.n];
    join_vs_brute(s, sub_ids, nsub, 0.7f, "a scrambled subset of 600");

    struct got_pairs g = {all.n, calloc(all.n * all.n, 1), calloc(all.n * all.n, sizeof(float)), 0, 0, 0, 3};
    cdx_status st = cdx_store_similar_pairs(s, all.v, all.n, 0.5f, pair_cb, &g);
    ok(st == CDX_OK && g.calls == 3, "join: the callback stops the walk (%d calls)", g.calls);
    g.calls = 0;
    g.stop_after = 0;
    ok(cdx_store_similar_pairs(s, all.v, 1, -1.0f, pair_cb, &g) == CDX_OK && g.calls == 0 &&
           cdx_store_similar_pairs(s, all.v, 0, -1.0f, pair_cb, &g) == CDX_OK && g.calls == 0,
       "join: one or no vector, no pairs");
    ok(cdx_store_similar_pairs(s, all.v, 2, -1.0f, pair_cb, &g) == CDX_OK && g.calls == 1,
       "join: two vectors at threshold -1, one pair");
    /* A vector removed after the caller listed it (here: never stored)
     * pairs with nothing, even at threshold -1; the others still pair. */
    int64_t gone[3] = {all.v[0], 999999, all.v[1]};
    memset(g.seen, 0, all.n * all.n);
    g.calls = 0;
    g.n_ids = 3;
    st = cdx_store_similar_pairs(s, gone, 3, -1.0f, pair_cb, &g);
    ok(st == CDX_OK && g.calls == 1 && g.seen[0 * 3 + 2] && g.bad_order == 0,
       "join: a vector no longer stored has no pairs (%d calls)", g.calls);
    free(g.seen);
    free(g.score);
    cdx_store_close(s);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cdx-test-store-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    cdx_log_set(sink, NULL, CDX_LOG_WARN);
    test_basics();
    test_renames();
    test_models();
    test_filters();
    test_faiss_cache();
    test_index_types();
    test_similar_pairs();
    test_misc();
    if (!tap_failed && !getenv("KEEP")) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) diag("could not remove %s", tmpdir);
    } else {
        diag("left %s for inspection", tmpdir);
    }
    return done_testing();
}
