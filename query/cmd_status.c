/*
 * cmd_status.c - `clipdex status [--config FILE] [--data DIR]
 * [--format text|json]`: what the index holds and what clipdexd is doing.
 *
 * Everything is read from the store (counts, the current model, and the
 * daemon.* values clipdexd keeps in its meta table while it runs), so the
 * command works whether or not the daemon runs; whether it runs is told
 * by the writer lock's pid (the store records it in writer.lock).  The
 * data directory is found as clipdexd finds it: --data, else the
 * configuration file's [store] data_dir, else $CLIPDEX_DATA /
 * $XDG_DATA_HOME/clipdex.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "banned.h"

typedef struct status {
    char *data;
    cdx_store_stats st;
    cdx_store_model_info *models;
    size_t n_models;
    const cdx_store_model_info *cur;
    long writer_pid;          /* 0: nobody writes */
    char writer_name[32];
    /* daemon.* values (NULL when never written) */
    char *state, *mode, *queued, *rate, *embedded, *updated_at, *started_at, *watches,
        *unwatched, *last_error, *last_error_at, *pid, *model_dir, *index_type;
    char *problem;            /* the writer's note: store writes failing (disk full) */
    char *precision;       /* daemon.precision: what the daemon runs, and why */
    int64_t by_prec[4];    /* current model's vectors by precision (0: unrecorded) */
} status;

/* The pid in DIR/writer.lock when that process is alive. */
static long writer_pid(const char *dir, char *name, size_t cap)
{
    char path[4096], buf[64];
    FILE *f;
    long pid = 0;
    snprintf(path, sizeof path, "%s/writer.lock", dir);
    f = fopen(path, "r");
    if (!f) return 0;
    if (fgets(buf, sizeof buf, f)) pid = strtol(buf, NULL, 10);
    fclose(f);
    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM)) return 0;
    snprintf(path, sizeof path, "/proc/%ld/comm", pid);
    name[0] = '\0';
    if ((f = fopen(path, "r")) != NULL) {
        if (fgets(name, (int)cap, f)) name[strcspn(name, "\n")] = '\0';
        fclose(f);
    }
    return pid;
}

static char *meta(cdx_store *s, const char *key)
{
    char *v = NULL;
    if (cdx_store_meta_get(s, key, &v) != CDX_OK) return NULL;
    return v;
}

static void fmt_time(char *out, size_t cap, const char *unix_s)
{
    time_t t = unix_s ? (time_t)strtoll(unix_s, NULL, 10) : 0;
    struct tm tm;
    if (!t || !localtime_r(&t, &tm) || !strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(out, cap, "-");
}

static void fmt_bytes(char *out, size_t cap, int64_t b)
{
    if (b >= 1 << 30) snprintf(out, cap, "%.1f GB", (double)b / (1 << 30));
    else if (b >= 1 << 20) snprintf(out, cap, "%.1f MB", (double)b / (1 << 20));
    else snprintf(out, cap, "%.1f kB", (double)b / 1024);
}

static int64_t num(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

static void print_text(const status *x)
{
    char t1[32], t2[32], b[32];
    int running = x->writer_pid > 0;
    fmt_bytes(b, sizeof b, x->st.db_bytes + x->st.faiss_bytes);
    printf("store:       %s (%s, schema %d)\n", x->data, b, x->st.schema_version);
    if (running)
        printf("daemon:      running (pid %ld%s%s), %s\n", x->writer_pid, x->writer_name[0] ? ", " : "",
               x->writer_name, x->state ? x->state : "starting");
    else
        printf("daemon:      not running%s%s\n", x->state ? "; last state: " : "", x->state ? x->state : "");
    printf("files:       %lld indexed, %lld failed, %lld queued\n", (long long)x->st.n_ok,
           (long long)x->st.n_error, running ? (long long)num(x->queued) : 0LL);
    printf("images/s:    %s\n", running && x->rate ? x->rate : "0");
    if (x->cur)
        printf("model:       %s (%d-d, %lld vectors) %s\n", x->cur->name, x->cur->dim,
               (long long)x->cur->n_vectors, x->cur->dir);
    if (x->cur && x->cur->n_shared)
        printf("shared by:   %lld other model%s with the same image tower (tuned text towers)\n",
               (long long)x->cur->n_shared, x->cur->n_shared == 1 ? "" : "s");
    else
        printf("model:       none yet\n");
    printf("index type:  %s\n", x->cur ? x->cur->index_factory : x->index_type ? x->index_type : "-");
    if (x->precision) printf("precision:   %s\n", x->precision);
    if (x->cur) {
        /* One vector space at every precision: this only says how the
         * vectors were computed. */
        static const char *const pn[4] = {"unrecorded (f32)", "f32", "bf16", "int8"};
        int any = 0;
        for (int i = 0; i < 4; i++)
            if (x->by_prec[i]) printf("%s%s %lld", any++ ? ", " : "vectors by:  ", pn[i], (long long)x->by_prec[i]);
        if (any) printf("\n");
    }
    if (x->n_models > 1) printf("models:      %zu (vectors: %lld in all)\n", x->n_models, (long long)x->st.n_vectors);
    if (running && x->watches)
        printf("watching:    %s directories (%s unwatched: watch limit)\n", x->watches,
               x->unwatched ? x->unwatched : "0");
    if (running && x->problem) printf("problem:     %s\n", x->problem);
    fmt_time(t1, sizeof t1, x->updated_at);
    printf("updated:     %s\n", t1);
    if (x->last_error) {
        fmt_time(t2, sizeof t2, x->last_error_at);
        printf("last error:  %s (%s)\n", x->last_error, t2);
    } else {
        printf("last error:  none\n");
    }
}

static void json_str_or_null(const char *key, const char *v, int comma)
{
    printf("\"%s\":", key);
    if (v) print_json_string(stdout, v);
    else printf("null");
    if (comma) putchar(',');
}

static void print_json(const status *x)
{
    int running = x->writer_pid > 0;
    printf("{");
    json_str_or_null("store", x->data, 1);
    printf("\"running\":%s,\"pid\":%ld,", running ? "true" : "false", running ? x->writer_pid : 0L);
    json_str_or_null("state", x->state, 1);
    printf("\"files\":{\"indexed\":%lld,\"failed\":%lld,\"queued\":%lld,\"total\":%lld},",
           (long long)x->st.n_ok, (long long)x->st.n_error, running ? (long long)num(x->queued) : 0LL,
           (long long)x->st.n_files);
    printf("\"images_per_s\":%s,", running && x->rate ? x->rate : "0");
    printf("\"embedded\":%lld,", (long long)num(x->embedded));
    if (x->cur) {
        printf("\"model\":{");
        json_str_or_null("name", x->cur->name, 1);
        json_str_or_null("dir", x->cur->dir, 1);
        printf("\"dim\":%d,\"vectors\":%lld,\"shared_by\":%lld},", x->cur->dim, (long long)x->cur->n_vectors,
               (long long)x->cur->n_shared);
        json_str_or_null("index_type", x->cur->index_factory, 1);
    } else {
        printf("\"model\":null,");
        json_str_or_null("index_type", x->index_type, 1);
    }
    json_str_or_null("precision", x->precision, 1);
    printf("\"vectors_by_precision\":{\"unrecorded\":%lld,\"f32\":%lld,\"bf16\":%lld,\"int8\":%lld},",
           (long long)x->by_prec[0], (long long)x->by_prec[1], (long long)x->by_prec[2],
           (long long)x->by_prec[3]);
    printf("\"models\":%zu,\"vectors\":%lld,", x->n_models, (long long)x->st.n_vectors);
    printf("\"watches\":%lld,\"unwatched\":%lld,", (long long)num(x->watches), (long long)num(x->unwatched));
    printf("\"updated_at\":%lld,", (long long)num(x->updated_at));
    json_str_or_null("problem", running ? x->problem : NULL, 1);
    json_str_or_null("last_error", x->last_error, 1);
    printf("\"last_error_at\":%lld,", (long long)num(x->last_error_at));
    printf("\"db_bytes\":%lld,\"faiss_bytes\":%lld}\n", (long long)x->st.db_bytes, (long long)x->st.faiss_bytes);
}

int cmd_status(int argc, char **argv)
{
    const cdx_cmd *self = cmd_find("status");
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data", required_argument, NULL, 'd'},
        {"format", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    const char *cfg_path = NULL, *data = NULL, *format = "text";
    char *data_dir = NULL;
    cdx_store *s = NULL;
    status x;
    int ret = EXIT_ERROR, c;

    memset(&x, 0, sizeof x);
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'c') cfg_path = optarg;
        else if (c == 'd') data = optarg;
        else if (c == 'f') format = optarg;
        else return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (optind < argc) return usage_error(self, "unexpected argument '%s'", argv[optind]);
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0)
        return usage_error(self, "--format is text or json, not '%s'", format);
    if (!(data_dir = resolve_data_dir(self, cfg_path, data))) {
        ret = EXIT_USAGE;
        goto cleanup;
    }
    data = data_dir;
    x.data = (char *)data;
    if (cdx_store_open(data, NULL, &s) != CDX_OK) {
        error("%s", cdx_last_error());
        goto cleanup;
    }
    if (cdx_store_stats_get(s, &x.st) != CDX_OK || cdx_store_models(s, &x.models, &x.n_models) != CDX_OK) {
        error("%s", cdx_last_error());
        goto cleanup;
    }
    for (size_t i = 0; i < x.n_models; i++)
        if (x.models[i].current) x.cur = &x.models[i];
    x.writer_pid = writer_pid(data, x.writer_name, sizeof x.writer_name);
    /* in the lock file: the database may be what cannot be written */
    if (x.writer_pid) x.problem = cdx_store_writer_note_read(data);
    x.state = meta(s, "daemon.state");
    x.mode = meta(s, "daemon.mode");
    x.queued = meta(s, "daemon.queued");
    x.rate = meta(s, "daemon.images_per_s");
    x.embedded = meta(s, "daemon.embedded");
    x.updated_at = meta(s, "daemon.updated_at");
    x.started_at = meta(s, "daemon.started_at");
    x.watches = meta(s, "daemon.watches");
    x.unwatched = meta(s, "daemon.unwatched");
    x.last_error = meta(s, "daemon.last_error");
    x.last_error_at = meta(s, "daemon.last_error_at");
    x.pid = meta(s, "daemon.pid");
    x.model_dir = meta(s, "daemon.model_dir");
    x.index_type = meta(s, "daemon.index_type");
    x.precision = meta(s, "daemon.precision");
    if (x.cur && cdx_store_precision_counts(s, x.cur->id, x.by_prec) != CDX_OK)
        memset(x.by_prec, 0, sizeof x.by_prec); /* an older store: nothing to say */
    /* A writer that is not the daemon (check --repair, a test harness)
     * leaves the daemon's last state as it was. */
    if (strcmp(format, "json") == 0) print_json(&x);
    else print_text(&x);
    ret = EXIT_OK;
cleanup:
    cdx_store_models_free(x.models, x.n_models);
    free(x.state);
    free(x.mode);
    free(x.queued);
    free(x.rate);
    free(x.embedded);
    free(x.updated_at);
    free(x.started_at);
    free(x.watches);
    free(x.unwatched);
    free(x.last_error);
    free(x.last_error_at);
    free(x.pid);
    free(x.model_dir);
    free(x.precision);
    free(x.index_type);
    free(x.problem);
    cdx_store_close(s);
    free(data_dir);
    return ret;
}
