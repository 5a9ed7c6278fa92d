/*
 * cmd_stats.c - `clipdex stats`: what the index holds, counted by format
 * (extension), year (taken, else modified) and camera, with the store's
 * size and its models.  Reads the store only; no model is loaded.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "filters.h"
#include "output.h"
#include "banned.h"

struct count {
    char *key;
    int64_t n;
};

struct tally {
    struct count *v;
    size_t n, cap;
};

struct stats {
    struct tally ext, year, camera;
    int64_t files, ok, failed;
};

static void bump(struct tally *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].key, key) == 0) {
            t->v[i].n++;
            return;
        }
    t->v = xgrow(t->v, &t->cap, t->n + 1, sizeof *t->v, 16);
    t->v[t->n].key = xstrdup(key);
    t->v[t->n++].n = 1;
}

static void tally_free(struct tally *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->v[i].key);
    free(t->v);
}

static int by_count(const void *a, const void *b)
{
    const struct count *x = a, *y = b;
    if (x->n != y->n) return x->n > y->n ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const struct count *)a)->key, ((const struct count *)b)->key);
}

static int count_cb(const cdx_file_info *fi, void *user)
{
    struct stats *s = user;
    char buf[160];
    s->files++;
    if (fi->state != CDX_FILE_OK) {
        s->failed++;
        return 0;
    }
    s->ok++;
    bump(&s->ext, fi->ext && *fi->ext ? fi->ext : "(none)");
    time_t t = (time_t)file_when(fi);
    struct tm tm;
    if (gmtime_r(&t, &tm)) snprintf(buf, sizeof buf, "%04d", tm.tm_year + 1900);
    else snprintf(buf, sizeof buf, "?");
    bump(&s->year, buf);
    const char *mk = fi->meta.camera_make ? fi->meta.camera_make : "";
    const char *md = fi->meta.camera_model ? fi->meta.camera_model : "";
    size_t ml = strlen(mk);
    if (!*mk && !*md) snprintf(buf, sizeof buf, "(unknown)");
    else if (ml && strncasecmp(md, mk, ml) == 0) snprintf(buf, sizeof buf, "%s", md); /* "Canon Canon EOS" */
    else snprintf(buf, sizeof buf, "%s%s%s", mk, *mk && *md ? " " : "", md);
    bump(&s->camera, buf);
    return 0;
}

static void human(char *buf, size_t n, int64_t b)
{
    if (b >= 1000000000) snprintf(buf, n, "%.2f GB", (double)b / 1e9);
    else if (b >= 1000000) snprintf(buf, n, "%.1f MB", (double)b / 1e6);
    else if (b >= 1000) snprintf(buf, n, "%.1f kB", (double)b / 1e3);
    else snprintf(buf, n, "%lld B", (long long)b);
}

static void table_section(FILE *f, const char *title, const struct tally *t)
{
    fprintf(f, "%s\n", title);
    for (size_t i = 0; i < t->n; i++) {
        fprintf(f, "  %8lld  ", (long long)t->v[i].n);
        out_table_path(f, t->v[i].key);
        fputc('\n', f);
    }
}

static void json_section(FILE *f, const char *name, const struct tally *t)
{
    fprintf(f, ",\"%s\":{", name);
    for (size_t i = 0; i < t->n; i++) {
        if (i) fputc(',', f);
        print_json_string(f, t->v[i].key);
        fprintf(f, ":%lld", (long long)t->v[i].n);
    }
    fputc('}', f);
}

enum { OPT_FORMAT = OPT_CMD_BASE };

int cmd_stats(int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, NULL, OPT_FORMAT},
        QCTX_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const cdx_cmd *self = cmd_find("stats");
    qctx c = {0};
    struct stats s;
    cdx_store_stats st;
    cdx_store_model_info *mi = NULL;
    size_t nm = 0;
    int ch, json = 0, ret = EXIT_USAGE;
    char a[32], b[32];

    memset(&s, 0, sizeof s);
    c.self = self;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == OPT_DATA) {
            qctx_option(&c, ch, optarg);
        } else if (ch == OPT_FORMAT && (strcmp(optarg, "table") == 0 || strcmp(optarg, "json") == 0)) {
            json = optarg[0] == 'j';
        } else if (ch == OPT_FORMAT) {
            return usage_error(self, "--format must be table or json, not '%s'", optarg);
        } else {
            return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error(self, "unexpected argument '%s'", argv[optind]);
    if ((ret = qctx_open_store(&c)) != 0) goto cleanup;
    if (cdx_store_foreach_file(c.store, NULL, 0, count_cb, &s) != CDX_OK ||
        cdx_store_stats_get(c.store, &st) != CDX_OK || cdx_store_models(c.store, &mi, &nm) != CDX_OK) {
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    /* (an empty store has no arrays: qsort must not be given NULL) */
    if (s.ext.n) qsort(s.ext.v, s.ext.n, sizeof *s.ext.v, by_count);
    if (s.year.n) qsort(s.year.v, s.year.n, sizeof *s.year.v, by_key);
    if (s.camera.n) qsort(s.camera.v, s.camera.n, sizeof *s.camera.v, by_count);

    if (json) {
        fputs("{\"store\":", stdout);
        print_json_string(stdout, c.data_dir);
        printf(",\"files\":%lld,\"indexed\":%lld,\"failed\":%lld,\"vectors\":%lld,\"schema_version\":%d,"
               "\"db_bytes\":%lld,\"faiss_bytes\":%lld,\"models\":[",
               (long long)s.files, (long long)s.ok, (long long)s.failed, (long long)st.n_vectors,
               st.schema_version, (long long)st.db_bytes, (long long)st.faiss_bytes);
        for (size_t i = 0; i < nm; i++) {
            printf("%s{\"name\":", i ? "," : "");
            print_json_string(stdout, mi[i].name ? mi[i].name : "");
            fputs(",\"dir\":", stdout);
            print_json_string(stdout, mi[i].dir ? mi[i].dir : "");
            fputs(",\"key\":", stdout);
            print_json_string(stdout, mi[i].key ? mi[i].key : "");
            fputs(",\"index_factory\":", stdout);
            print_json_string(stdout, mi[i].index_factory ? mi[i].index_factory : "");
            printf(",\"dim\":%d,\"vectors\":%lld,\"current\":%s}", mi[i].dim, (long long)mi[i].n_vectors,
                   mi[i].current ? "true" : "false");
        }
        putchar(']');
        json_section(stdout, "formats", &s.ext);
        json_section(stdout, "years", &s.year);
        json_section(stdout, "cameras", &s.camera);
        fputs("}\n", stdout);
    } else {
        human(a, sizeof a, st.db_bytes);
        human(b, sizeof b, st.faiss_bytes);
        fputs("store     ", stdout);
        out_table_path(stdout, c.data_dir);
        printf("\nfiles     %lld (%lld indexed, %lld failed)\n", (long long)s.files, (long long)s.ok,
               (long long)s.failed);
        printf("vectors   %lld in %zu model%s\n", (long long)st.n_vectors, nm, nm == 1 ? "" : "s");
        printf("size      %s database, %s FAISS\n", a, b);
        if (nm) fputs("models\n", stdout);
        for (size_t i = 0; i < nm; i++) {
            printf("  %s %-24s %4d-d %9lld vectors  %-12s  ", mi[i].current ? "*" : " ",
                   mi[i].name ? mi[i].name : "?", mi[i].dim, (long long)mi[i].n_vectors,
                   mi[i].index_factory ? mi[i].index_factory : "?");
            out_table_path(stdout, mi[i].dir ? mi[i].dir : "");
            putchar('\n');
        }
        table_section(stdout, "formats", &s.ext);
        table_section(stdout, "years", &s.year);
        table_section(stdout, "cameras", &s.camera);
    }
    ret = EXIT_OK;
cleanup:
    cdx_store_models_free(mi, nm);
    tally_free(&s.ext);
    tally_free(&s.year);
    tally_free(&s.camera);
    qctx_release(&c);
    return ret;
}
