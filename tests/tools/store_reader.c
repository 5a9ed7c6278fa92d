/*
 * store_reader.c - a long-lived reader of the index store, for
 * tests/cli/40-store-concurrency.t: it queries while clipdexd writes.
 *
 *   store_reader DATA DIR SECONDS [STOPFILE]
 *
 * The files under DIR must be indexed and must not change during the run
 * (the test churns other directories).  The reader opens the store once,
 * as `clipdex search` does, takes each file's stored vector, and for
 * SECONDS (or until STOPFILE exists, whichever comes first: the test
 * decides when the writer has done what it must do while readers run)
 * searches with a random one of them, checking every answer:
 * the file is found by its own vector (score > 0.999), every hit is an
 * indexed file whose stored vector gives the reported score, and the
 * file's row still names the same vector.  Meanwhile the writer commits,
 * saves the FAISS file (so the reader replays the change log and maps
 * pruned files again) and removes what the test deletes.
 *
 * Why not `clipdex search` in a loop: each call would open the store
 * afresh; the part under test is a reader that stays open across the
 * writer's commits and saves.
 *
 * Exit 0 when every answer checked out, 1 when one did not, 2 on usage,
 * 3 on a store error.  The last line on stderr is a summary.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <unistd.h>

#include "clipdex.h"

static int die(const char *what)
{
    fprintf(stderr, "store_reader: %s: %s\n", what, cdx_last_error());
    return 3;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
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

static void log_sink(int level, const char *msg, void *user)
{
    (void)user;
    fprintf(stderr, "store_reader: %s%s\n", level >= CDX_LOG_WARN ? "warning: " : "", msg);
}

typedef struct paths { char **v; size_t n, cap; } paths;

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
        if (S_ISDIR(sb.st_mode)) {
            walk(p, out);
        } else if (S_ISREG(sb.st_mode)) {
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 64;
                out->v = realloc(out->v, out->cap * sizeof *out->v);
                if (!out->v) abort();
            }
            out->v[out->n++] = strdup(p);
        }
    }
    closedir(d);
}

static double cosine(const float *a, const float *b, int dim)
{
    double dot = 0, na = 0, nb = 0;
    for (int i = 0; i < dim; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return dot / sqrt(na * nb);
}

int main(int argc, char **argv)
{
    cdx_store *s = NULL;
    cdx_store_model_info *mi = NULL;
    size_t n_models = 0;
    paths ps = {0};
    int64_t *vid = NULL;
    float *vecs = NULL, *back = NULL;
    long queries = 0, bad = 0, vanished = 0;
    int dim, ret = 3;

    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: store_reader DATA DIR SECONDS [STOPFILE]\n");
        return 2;
    }
    double end = now() + strtod(argv[3], NULL);
    cdx_log_set(log_sink, NULL, CDX_LOG_WARN);
    if (cdx_store_open(argv[1], NULL, &s) != CDX_OK) return die("open");
    if (cdx_store_models(s, &mi, &n_models) != CDX_OK || n_models == 0) return die("models");
    /* The model the writer uses (the store of this test has one). */
    cdx_store_model m = {mi[0].key, mi[0].name, mi[0].dir, mi[0].dim, NULL};
    for (size_t i = 0; i < n_models; i++)
        if (mi[i].current) m = (cdx_store_model){mi[i].key, mi[i].name, mi[i].dir, mi[i].dim, NULL};
    dim = m.dim;
    if (cdx_store_use_model(s, &m, NULL) != CDX_OK) return die("use_model");

    walk(argv[2], &ps);
    if (!ps.n) {
        fprintf(stderr, "store_reader: no files under %s\n", argv[2]);
        goto done;
    }
    vid = calloc(ps.n, sizeof *vid);
    vecs = malloc(ps.n * (size_t)dim * sizeof *vecs);
    back = malloc((size_t)dim * sizeof *back);
    if (!vid || !vecs || !back) abort();
    for (size_t i = 0; i < ps.n; i++) {
        cdx_file_info fi;
        int found = 0;
        if (cdx_store_get_file(s, ps.v[i], &fi, &found) != CDX_OK) return die("get_file");
        if (!found || fi.state != CDX_FILE_OK) {
            fprintf(stderr, "store_reader: %s is not indexed\n", ps.v[i]);
            if (found) cdx_file_info_release(&fi);
            goto done;
        }
        vid[i] = fi.vector_id;
        cdx_file_info_release(&fi);
        if (cdx_store_get_vector(s, vid[i], vecs + i * (size_t)dim) != CDX_OK) return die("get_vector");
    }

    rng_state = (uint64_t)getpid() * 104729 + 3;
    const char *stop = argc == 5 ? argv[4] : NULL;
    while (now() < end && bad <= 10 && !(stop && access(stop, F_OK) == 0)) {
        size_t i = (size_t)(rnd() % ps.n), nh = 0, at;
        const float *v = vecs + i * (size_t)dim;
        cdx_store_hit *hits = NULL;
        cdx_store_filter f = {.under = argv[2]};
        cdx_file_info fi;
        int found = 0;
        if (cdx_store_search(s, v, 8, queries % 3 ? NULL : &f, -2, &hits, &nh) != CDX_OK) {
            fprintf(stderr, "store_reader: search: %s\n", cdx_last_error());
            bad++;
            break;
        }
        for (at = 0; at < nh; at++)
            if (strcmp(hits[at].file.meta.path, ps.v[i]) == 0 && hits[at].score > 0.999f) break;
        if (at == nh) {
            fprintf(stderr, "store_reader: %s not found by its own vector\n", ps.v[i]);
            bad++;
        }
        /* Every hit is an indexed file whose stored vector has that score. */
        for (size_t j = 0; j < nh; j++) {
            const cdx_file_info *h = &hits[j].file;
            if (h->state != CDX_FILE_OK || h->vector_id <= 0 || !h->meta.path[0]) {
                fprintf(stderr, "store_reader: malformed hit %s\n", h->meta.path);
                bad++;
                continue;
            }
            cdx_status st = cdx_store_get_vector(s, h->vector_id, back);
            if (st == CDX_ERR_ARG) { /* removed since: the writer may */
                vanished++;
                continue;
            }
            if (st != CDX_OK) {
                fprintf(stderr, "store_reader: get_vector: %s\n", cdx_last_error());
                bad++;
                continue;
            }
            double c = cosine(v, back, dim);
            if (fabs(c - hits[j].score) > 1e-3) {
                fprintf(stderr, "store_reader: %s: score %.5f but its vector gives %.5f\n", h->meta.path,
                        (double)hits[j].score, c);
                bad++;
            }
        }
        cdx_store_hits_free(hits, nh);
        /* The stable file's row still names the same vector. */
        if (cdx_store_get_file(s, ps.v[i], &fi, &found) != CDX_OK) return die("get_file");
        if (!found || fi.vector_id != vid[i]) {
            fprintf(stderr, "store_reader: %s: row %s\n", ps.v[i], found ? "names another vector" : "gone");
            bad++;
        }
        if (found) cdx_file_info_release(&fi);
        queries++;
    }
    fprintf(stderr, "store_reader: %ld queries, %ld bad, %ld hits removed meanwhile\n", queries, bad, vanished);
    ret = bad || queries == 0 ? 1 : 0;
done:
    cdx_store_close(s);
    cdx_store_models_free(mi, n_models);
    for (size_t i = 0; i < ps.n; i++) free(ps.v[i]);
    free(ps.v);
    free(vid);
    free(vecs);
    free(back);
    return ret;
}
