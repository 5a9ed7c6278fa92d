/*
 * cmd_check.c - `clipdex check [--data DIR] [--repair]`: verify the index
 * store (SQLite integrity, files -> vectors, no orphans, every FAISS index
 * holding exactly the live vectors) and optionally repair it.
 *
 * The data directory is found as clipdexd finds it (resolve_data_dir).
 *
 * Exit status: 0 consistent (after repair, if asked), 1 problems found,
 * 2 usage, 3 the store could not be opened or read.  Repairing needs the
 * writer lock, so it refuses while clipdexd runs; checking does not.
 * A damaged database is repaired by restoring its backup
 * (cdx_store_restore_backup); the next index run reconciles it with the
 * disk as any run does, so only files changed since are embedded again.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"

/* Each model's vectors by the precision that computed them: one vector
 * space at every precision, so this is information, not a problem. */
static void print_precisions(cdx_store *s)
{
    static const char *const pn[4] = {"unrecorded (f32)", "f32", "bf16", "int8"};
    cdx_store_model_info *mv = NULL;
    size_t nm = 0;
    if (cdx_store_models(s, &mv, &nm) != CDX_OK) return;
    for (size_t m = 0; m < nm; m++) {
        int64_t by[4];
        int any = 0;
        if (!mv[m].n_vectors || cdx_store_precision_counts(s, mv[m].id, by) != CDX_OK) continue;
        printf("model %s: vectors by precision:", mv[m].name ? mv[m].name : mv[m].key);
        for (int i = 0; i < 4; i++)
            if (by[i]) printf("%s %s %lld", any++ ? "," : "", pn[i], (long long)by[i]);
        printf("\n");
    }
    cdx_store_models_free(mv, nm);
}

static void report(const char *line, void *user)
{
    (void)user;
    printf("%s\n", line);
}

int cmd_check(int argc, char **argv)
{
    const cdx_cmd *self = cmd_find("check");
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"repair", no_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    const char *data = NULL;
    char *def = NULL;
    int repair = 0, restored = 0, ret = EXIT_ERROR, c;
    cdx_store *s = NULL;
    cdx_store_opts o = {0};
    cdx_store_stats st;
    int64_t problems = 0;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'r') repair = 1;
        else if (c == 'd') data = optarg;
        else return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (optind < argc) return usage_error(self, "unexpected argument '%s'", argv[optind]);
    if (!(def = resolve_data_dir(self, NULL, data))) return EXIT_USAGE;
    data = def;
    if (repair) {
        /* A damaged database is replaced by its backup first (the
         * daemon keeps one); the checks below then run on that. */
        char why[256], when[32] = "?";
        int damaged = 0;
        int64_t t = 0;
        if (cdx_store_damaged(data, &damaged, why, sizeof why) != CDX_OK) {
            error("%s", cdx_last_error());
            goto cleanup;
        }
        if (damaged) {
            printf("the database is damaged (%s)\n", why);
            if (cdx_store_restore_backup(data, &t) != CDX_OK) {
                if (strstr(cdx_last_error(), "another writer"))
                    error("%s (stop clipdexd to repair)", cdx_last_error());
                else
                    error("%s", cdx_last_error());
                goto cleanup;
            }
            time_t tt = (time_t)t;
            struct tm tm;
            if (localtime_r(&tt, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            printf("restored the database from its backup of %s (the damaged one is kept as "
                   "clipdex.db.damaged)\n", when);
            restored = 1;
        }
    }
    o.writer = repair;
    o.progress = tty_progress;
    if (cdx_store_open(data, &o, &s) != CDX_OK) {
        if (repair && strstr(cdx_last_error(), "another writer"))
            error("%s (stop clipdexd to repair; checking works while it runs)", cdx_last_error());
        else
            error("%s", cdx_last_error());
        goto cleanup;
    }
    if (cdx_store_check(s, repair, report, NULL, &problems) != CDX_OK) {
        error("check: %s", cdx_last_error());
        goto cleanup;
    }
    if (cdx_store_stats_get(s, &st) != CDX_OK) {
        error("check: %s", cdx_last_error());
        goto cleanup;
    }
    if (restored)
        printf("files indexed, changed or removed since the backup: 'clipdex index DIR' (or "
               "clipdexd) brings the store up to date, embedding only those\n");
    if (problems == 0) {
        printf("consistent: %lld files (%lld failed), %lld vectors, %lld models\n",
               (long long)st.n_files, (long long)st.n_error, (long long)st.n_vectors,
               (long long)st.n_models);
        print_precisions(s);
        ret = EXIT_OK;
    } else {
        printf("%lld problem%s found%s\n", (long long)problems, problems == 1 ? "" : "s",
               repair ? " after repair" : "; 'clipdex check --repair' fixes what it can");
        ret = EXIT_NOTFOUND;
    }
cleanup:
    cdx_store_close(s);
    free(def);
    return ret;
}
