/*
 * store_harness.c - drives the index store the way the daemon will, for
 * the crash and concurrency tests (tests/cli/40-store-*.t).
 *
 * The daemon does not exist yet; what it asks of the store is exactly
 * this: walk a directory, hash each file, embed the contents the store has
 * not seen, write files and vectors in batched transactions, forget files
 * that vanished.  Here the "embedding" is derived from the content hash
 * (a seeded generator), so it is deterministic, and a delay per embedded
 * file stands in for the model's time, which is what makes SIGKILLs land
 * at every stage of the work.
 *
 *   store_harness gen DIR N SEED            make N small files (some
 *                                            duplicates) under DIR
 *   store_harness mutate DIR SEED            change DIR: rewrite, delete,
 *                                            add, copy and rename files
 *   store_harness index DATA DIR [DELAY_US]  reconcile the store with DIR
 *   store_harness verify DATA DIR            every file indexed exactly
 *                                            once, with the right vector
 *   store_harness churn DATA SECONDS         writer: add/remove/rename
 *                                            synthetic entries in a loop
 *   store_harness reader DATA DIR SECONDS    reader: search stable files
 *                                            in a loop, check every answer
 *
 * Exit 0 on success, 1 on a failed verification, 2 on usage, 3 on a store
 * error.  Messages go to stderr, one line each.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clipdex.h"

#define DIM 64
#define BATCH 8

static const cdx_store_model model = {"harness-model-v1", "harness", NULL, DIM};

static int die(const char *what)
{
    fprintf(stderr, "store_harness: %s: %s\n", what, cdx_last_error());
    return 3;
}

static uint64_t rng_state = 1;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* The stand-in embedding of a content hash. */
static void embed(const uint8_t *hash, float *v)
{
    uint64_t x = 0;
    memcpy(&x, hash, 8);
    x |= 1;
    for (int i = 0; i < DIM; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void log_sink(int level, const char *msg, void *user)
{
    (void)user;
    fprintf(stderr, "store_harness: %s%s\n", level >= CDX_LOG_WARN ? "warning: " : "", msg);
}

/* ---- the file tree ---- */

typedef struct paths { char **v; size_t n, cap; } paths;

static void paths_add(paths *p, const char *s)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->v = realloc(p->v, p->cap * sizeof *p->v);
        if (!p->v) abort();
    }
    p->v[p->n++] = strdup(s);
}

static void paths_free(paths *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->v[i]);
    free(p->v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void walk(const char *dir, paths *out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d) return;
    while ((e = readdir(d))) {
        char p[4096];
        struct stat sb;
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) walk(p, out);
        else if (S_ISREG(sb.st_mode)) paths_add(out, p);
    }
    closedir(d);
}

static void write_file(const char *path, uint64_t seed, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "store_harness: %s: %s\n", path, strerror(errno));
        exit(3);
    }
    uint64_t x = seed | 1;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        fputc((int)(x & 0xff), f);
    }
    if (fclose(f) != 0) exit(3);
}

static int copy_file(const char *from, const char *to)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = fopen(from, "rb"), *g;
    if (!f) return -1;
    buf = malloc(1 << 16);
    n = fread(buf, 1, 1 << 16, f);
    fclose(f);
    g = fopen(to, "wb");
    if (!g) {
        free(buf);
        return -1;
    }
    fwrite(buf, 1, n, g);
    free(buf);
    return fclose(g);
}

static int cmd_gen(const char *dir, int n, uint64_t seed)
{
    char p[4096];
    rng_state = seed * 2654435761u + 1;
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/sub", dir);
    mkdir(p, 0755);
    for (int i = 0; i < n; i++) {
        /* Every tenth file duplicates an earlier one: dedup under test. */
        if (i % 10 == 9) {
            char from[4096];
            snprintf(from, sizeof from, "%s/%s%04d.img", dir, (i - 9) % 3 ? "" : "sub/", i - 9);
            snprintf(p, sizeof p, "%s/%s%04d.img", dir, i % 3 ? "" : "sub/", i);
            if (copy_file(from, p) != 0) return 3;
            continue;
        }
        snprintf(p, sizeof p, "%s/%s%04d.img", dir, i % 3 ? "" : "sub/", i);
        write_file(p, rnd(), 200 + rnd() % 1800);
    }
    return 0;
}

/* Between crash runs: rewrite some files, delete some, add some, copy some
 * (new duplicates) and rename some (moves without re-embedding). */
static int cmd_mutate(const char *dir, uint64_t seed)
{
    paths ps = {0};
    char p[4096];
    rng_state = seed * 0x9e3779b97f4a7c15ull + 7;
    walk(dir, &ps);
    if (ps.n < 20) return 0;
    qsort(ps.v, ps.n, sizeof *ps.v, cmp_str);
    for (int i = 0; i < 12; i++) write_file(ps.v[rnd() % ps.n], rnd(), 200 + rnd() % 1800);
    for (int i = 0; i < 6; i++) unlink(ps.v[rnd() % ps.n]);
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/new-%016llx.img", dir, (unsigned long long)rnd());
        write_file(p, rnd(), 200 + rnd() % 1800);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/sub/copy-%016llx.img", dir, (unsigned long long)rnd());
        copy_file(ps.v[rnd() % ps.n], p);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/moved-%016llx.img", dir, (unsigned long long)rnd());
        rename(ps.v[rnd() % ps.n], p);
    }
    paths_free(&ps);
    return 0;
}

/* ---- index: the daemon's reconcile, in miniature ---- */

static int collect_path(const cdx_file_info *fi, void *user)
{
    paths_add(user, fi->meta.path);
    return 0;
}

static cdx_store *open_writer(const char *data, int64_t save_every)
{
    cdx_store_opts o = {.writer = 1, .save_every = save_every};
    cdx_store *s = NULL;
    if (cdx_store_open(data, &o, &s) != CDX_OK) return NULL;
    if (cdx_store_use_model(s, &model, NULL) != CDX_OK) {
        cdx_store_close(s);
        return NULL;
    }
    return s;
}

static int cmd_index(const char *data, const char *dir, long delay_us)
{
    cdx_store *s = open_writer(data, 40);
    /* The crash test reads this: past here a damaged FAISS file has been
     * replaced (use_model rebuilds and saves it). */
    if (s) fprintf(stderr, "store_harness: opened\n");
    paths ps = {0}, known = {0};
    int in_batch = 0, embedded = 0, skipped = 0;
    int64_t removed = 0;
    cdx_store_filter f = {.under = dir, .state = CDX_FILE_ANY};

    if (!s) return die("open");
    walk(dir, &ps);
    qsort(ps.v, ps.n, sizeof *ps.v, cmp_str);
    for (size_t i = 0; i < ps.n; i++) {
        struct stat sb;
        cdx_file_info fi;
        cdx_file_meta m = {0};
        int found = 0;
        int64_t vid = 0;
        float v[DIM];

        if (stat(ps.v[i], &sb) != 0) continue;
        if (cdx_store_get_file(s, ps.v[i], &fi, &found) != CDX_OK) return die("get_file");
        if (found) {
            int same = fi.meta.size == sb.st_size && fi.meta.ino == sb.st_ino &&
                       fi.meta.mtime_ns == (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
            cdx_file_info_release(&fi);
            if (same) {
                skipped++;
                continue;
            }
        }
        m.path = ps.v[i];
        m.dev = sb.st_dev;
        m.ino = sb.st_ino;
        m.size = sb.st_size;
        m.mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        m.taken_at = CDX_TIME_UNKNOWN;
        if (cdx_hash_file(ps.v[i], m.hash, NULL) != CDX_OK) continue; /* vanished */
        m.has_hash = 1;
        if (!in_batch) {
            if (cdx_store_begin(s) != CDX_OK) return die("begin");
            in_batch = 1;
        }
        if (cdx_store_find_vector(s, m.hash, &vid) != CDX_OK) return die("find_vector");
        if (!vid) {
            embed(m.hash, v);
            if (delay_us > 0) usleep((useconds_t)delay_us); /* the model's time */
            embedded++;
        }
        if (cdx_store_put_file(s, &m, vid ? NULL : v, NULL) != CDX_OK) return die("put_file");
        if (++in_batch > BATCH) {
            if (cdx_store_commit(s) != CDX_OK) return die("commit");
            in_batch = 0;
        }
    }
    if (in_batch && cdx_store_commit(s) != CDX_OK) return die("commit");

    /* Forget what vanished. */
    if (cdx_store_foreach_file(s, &f, 0, collect_path, &known) != CDX_OK) return die("foreach");
    if (cdx_store_begin(s) != CDX_OK) return die("begin");
    for (size_t i = 0; i < known.n; i++) {
        struct stat sb;
        int64_t n = 0;
        if (stat(known.v[i], &sb) == 0) continue;
        if (cdx_store_remove_file(s, known.v[i], &n) != CDX_OK) return die("remove");
        removed += n;
    }
    if (cdx_store_commit(s) != CDX_OK) return die("commit");
    cdx_store_close(s);
    fprintf(stderr, "store_harness: indexed %zu files: %d embedded, %d unchanged, %lld removed\n",
            ps.n, embedded, skipped, (long long)removed);
    paths_free(&ps);
    paths_free(&known);
    return 0;
}

/* ---- verify ---- */

typedef struct hcount { uint8_t h[CDX_HASH_SIZE]; } hcount;

static int cmp_hash(const void *a, const void *b)
{
    return memcmp(a, b, CDX_HASH_SIZE);
}

static int cmd_verify(const char *data, const char *dir)
{
    cdx_store *s = NULL;
    paths ps = {0}, rows = {0};
    hcount *hs = NULL;
    size_t distinct = 0;
    int bad = 0;
    cdx_store_stats st;
    cdx_store_filter f = {.state = CDX_FILE_ANY};

    if (cdx_store_open(data, NULL, &s) != CDX_OK) return die("open");
    if (cdx_store_use_model(s, &model, NULL) != CDX_OK) return die("use_model");
    walk(dir, &ps);
    qsort(ps.v, ps.n, sizeof *ps.v, cmp_str);
    hs = calloc(ps.n ? ps.n : 1, sizeof *hs);
    for (size_t i = 0; i < ps.n; i++) {
        cdx_file_info fi;
        int found = 0;
        uint8_t h[CDX_HASH_SIZE];
        float v[DIM];
        cdx_store_hit *hits = NULL;
        size_t nh = 0, at = 0;

        if (cdx_hash_file(ps.v[i], h, NULL) != CDX_OK) return die("hash");
        memcpy(hs[i].h, h, CDX_HASH_SIZE);
        if (cdx_store_get_file(s, ps.v[i], &fi, &found) != CDX_OK) return die("get_file");
        if (!found || fi.state != CDX_FILE_OK || !fi.meta.has_hash ||
            memcmp(fi.meta.hash, h, CDX_HASH_SIZE) != 0 || fi.vector_id <= 0) {
            fprintf(stderr, "store_harness: %s: %s\n", ps.v[i],
                    !found ? "not indexed" : "indexed with the wrong content or no vector");
            bad++;
        }
        if (found) cdx_file_info_release(&fi);
        /* Its own vector finds it. */
        embed(h, v);
        if (cdx_store_search(s, v, 64, NULL, 0.999f, &hits, &nh) != CDX_OK) return die("search");
        for (at = 0; at < nh; at++)
            if (strcmp(hits[at].file.meta.path, ps.v[i]) == 0) break;
        if (at == nh) {
            fprintf(stderr, "store_harness: %s: not found by its own vector (%zu hits)\n", ps.v[i], nh);
            bad++;
        }
        cdx_store_hits_free(hits, nh);
    }
    qsort(hs, ps.n, sizeof *hs, cmp_hash);
    for (size_t i = 0; i < ps.n; i++)
        if (i == 0 || memcmp(hs[i].h, hs[i - 1].h, CDX_HASH_SIZE) != 0) distinct++;
    if (cdx_store_foreach_file(s, &f, 0, collect_path, &rows) != CDX_OK) return die("foreach");
    if (rows.n != ps.n) {
        fprintf(stderr, "store_harness: %zu files on disk but %zu rows\n", ps.n, rows.n);
        bad++;
    }
    if (cdx_store_stats_get(s, &st) != CDX_OK) return die("stats");
    if ((size_t)st.model_vectors != distinct || st.faiss_ntotal != st.model_vectors) {
        fprintf(stderr, "store_harness: %zu distinct contents, %lld vectors, %lld in FAISS\n", distinct,
                (long long)st.model_vectors, (long long)st.faiss_ntotal);
        bad++;
    }
    fprintf(stderr, "store_harness: verified %zu files, %zu contents: %s\n", ps.n, distinct,
            bad ? "FAILED" : "every file indexed exactly once");
    cdx_store_close(s);
    paths_free(&ps);
    paths_free(&rows);
    free(hs);
    return bad ? 1 : 0;
}

/* ---- concurrency ---- */

static void synth_meta(cdx_file_meta *m, const char *path, uint64_t content)
{
    char c[64];
    memset(m, 0, sizeof *m);
    m->path = path;
    m->size = (int64_t)content;
    m->taken_at = CDX_TIME_UNKNOWN;
    snprintf(c, sizeof c, "volatile-%llu", (unsigned long long)content);
    cdx_hash_buf(c, strlen(c), m->hash);
    m->has_hash = 1;
}

static int cmd_churn(const char *data, double seconds)
{
    cdx_store *s = open_writer(data, 30); /* frequent saves: readers reload */
    double end = now() + seconds;
    uint64_t next_id = 1;
    long ops = 0, commits = 0;
    enum { SLOTS = 64 };
    uint64_t slot[SLOTS] = {0}; /* content in /volatile/slot-N, 0 = empty */

    if (!s) return die("open");
    rng_state = (uint64_t)getpid() * 7919 + 1;
    while (now() < end) {
        int n = 1 + (int)(rnd() % 12);
        if (cdx_store_begin(s) != CDX_OK) return die("begin");
        for (int i = 0; i < n; i++) {
            int k = (int)(rnd() % SLOTS), op = (int)(rnd() % 4);
            char p[64], q[64];
            snprintf(p, sizeof p, "/volatile/slot-%02d.img", k);
            if (op <= 1 || !slot[k]) { /* (re)write the slot, maybe with a dup */
                cdx_file_meta m;
                float v[DIM];
                uint64_t c = op == 1 && next_id > 2 ? 1 + rnd() % (next_id - 1) : next_id++;
                synth_meta(&m, p, c);
                embed(m.hash, v);
                if (cdx_store_put_file(s, &m, v, NULL) != CDX_OK) return die("put_file");
                slot[k] = c;
            } else if (op == 2) {
                if (cdx_store_remove_file(s, p, NULL) != CDX_OK) return die("remove");
                slot[k] = 0;
            } else {
                int j = (int)(rnd() % SLOTS);
                snprintf(q, sizeof q, "/volatile/slot-%02d.img", j);
                if (cdx_store_rename(s, p, q, NULL) != CDX_OK) return die("rename");
                if (j != k) {
                    slot[j] = slot[k];
                    slot[k] = 0;
                }
            }
            ops++;
        }
        if (cdx_store_commit(s) != CDX_OK) return die("commit");
        commits++;
    }
    cdx_store_close(s);
    fprintf(stderr, "store_harness: churn: %ld operations in %ld commits\n", ops, commits);
    return 0;
}

static int cmd_reader(const char *data, const char *dir, double seconds)
{
    cdx_store *s = NULL;
    paths ps = {0};
    double end = now() + seconds;
    long queries = 0, bad = 0, vanished = 0;
    uint8_t (*hs)[CDX_HASH_SIZE] = NULL;
    float *v = malloc(DIM * sizeof *v), *back = malloc(DIM * sizeof *back);

    if (cdx_store_open(data, NULL, &s) != CDX_OK) return die("open");
    if (cdx_store_use_model(s, &model, NULL) != CDX_OK) return die("use_model");
    walk(dir, &ps);
    if (!ps.n) return die("no files to query");
    hs = malloc(ps.n * sizeof *hs);
    for (size_t i = 0; i < ps.n; i++)
        if (cdx_hash_file(ps.v[i], hs[i], NULL) != CDX_OK) return die("hash");
    rng_state = (uint64_t)getpid() * 104729 + 3;
    while (now() < end) {
        size_t i = (size_t)(rnd() % ps.n), nh = 0, at;
        cdx_store_hit *hits = NULL;
        cdx_store_filter f = {.under = dir};
        embed(hs[i], v);
        if (cdx_store_search(s, v, 8, queries % 3 ? NULL : &f, -2, &hits, &nh) != CDX_OK) {
            fprintf(stderr, "store_harness: reader: search: %s\n", cdx_last_error());
            bad++;
            break;
        }
        for (at = 0; at < nh; at++)
            if (strcmp(hits[at].file.meta.path, ps.v[i]) == 0 && hits[at].score > 0.999f) break;
        if (at == nh) {
            fprintf(stderr, "store_harness: reader: %s not found by its own vector\n", ps.v[i]);
            bad++;
        }
        /* Every hit is a real file whose stored vector has that score. */
        for (size_t j = 0; j < nh; j++) {
            const cdx_file_info *fi = &hits[j].file;
            if (fi->state != CDX_FILE_OK || fi->vector_id <= 0 || !fi->meta.path[0]) {
                fprintf(stderr, "store_harness: reader: malformed hit %s\n", fi->meta.path);
                bad++;
                continue;
            }
            cdx_status st = cdx_store_get_vector(s, fi->vector_id, back);
            if (st == CDX_ERR_ARG) { /* removed since: the writer is allowed to */
                vanished++;
                continue;
            }
            if (st != CDX_OK) {
                fprintf(stderr, "store_harness: reader: get_vector: %s\n", cdx_last_error());
                bad++;
                continue;
            }
            double dot = 0, nv = 0;
            for (int d = 0; d < DIM; d++) nv += (double)v[d] * v[d];
            for (int d = 0; d < DIM; d++) dot += v[d] / sqrt(nv) * back[d];
            if (fabs(dot - hits[j].score) > 1e-3) {
                fprintf(stderr, "store_harness: reader: %s: score %.5f but its vector gives %.5f\n",
                        fi->meta.path, (double)hits[j].score, dot);
                bad++;
            }
        }
        cdx_store_hits_free(hits, nh);
        queries++;
        if (bad > 10) break;
    }
    fprintf(stderr, "store_harness: reader: %ld queries, %ld bad, %ld hits removed meanwhile\n",
            queries, bad, vanished);
    cdx_store_close(s);
    paths_free(&ps);
    free(hs);
    free(v);
    free(back);
    return bad || queries == 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    cdx_log_set(log_sink, NULL, getenv("HARNESS_DEBUG") ? CDX_LOG_DEBUG : CDX_LOG_WARN);
    if (strcmp(cmd, "gen") == 0 && argc == 5)
        return cmd_gen(argv[2], (int)strtol(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    if (strcmp(cmd, "mutate") == 0 && argc == 4) return cmd_mutate(argv[2], strtoull(argv[3], NULL, 10));
    if (strcmp(cmd, "index") == 0 && (argc == 4 || argc == 5))
        return cmd_index(argv[2], argv[3], argc == 5 ? strtol(argv[4], NULL, 10) : 0);
    if (strcmp(cmd, "verify") == 0 && argc == 4) return cmd_verify(argv[2], argv[3]);
    if (strcmp(cmd, "churn") == 0 && argc == 4) return cmd_churn(argv[2], strtod(argv[3], NULL));
    if (strcmp(cmd, "reader") == 0 && argc == 5)
        return cmd_reader(argv[2], argv[3], strtod(argv[4], NULL));
    fprintf(stderr, "usage: store_harness gen DIR N SEED | mutate DIR SEED | index DATA DIR [DELAY_US]\n"
                    "       | verify DATA DIR | churn DATA SECONDS | reader DATA DIR SECONDS\n");
    return 2;
}
