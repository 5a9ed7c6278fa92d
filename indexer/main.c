/*
 * main.c - clipdexd, the indexing daemon: command line, then daemon_run.
 *
 *   clipdexd [OPTIONS] [DIR...]        watch and index (foreground; logs
 *                                      to stderr; systemd-friendly)
 *   clipdexd --once [OPTIONS] [DIR...] reconcile the roots, then exit
 *   clipdexd --check-config [OPTIONS]  validate the configuration
 *
 * Flags override the configuration file (common/conf.c); DIR arguments replace
 * its roots.  Exit status: 0 ok, 1 --once interrupted, 2 usage or
 * configuration error, 3 runtime error (store, model, lock).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon.h"
#include "log.h"

static const char usage_text[] =
    "usage: clipdexd [-c FILE] [--once] [--model DIR] [--data DIR] [--set SECTION.KEY=VALUE]... "
    "[-v|-q] [DIR...]\n"
    "       clipdexd --check-config [-c FILE] [OPTIONS]\n"
    "       clipdexd --version\n"
    "\n"
    "  -c, --config FILE   configuration file (default $XDG_CONFIG_HOME/clipdex/clipdex.conf)\n"
    "  --once              index the roots once, then exit (progress on stderr)\n"
    "  --check-config      validate the configuration, print it, exit\n"
    "  --model DIR         CLIP model directory          ([model] dir)\n"
    "  --data DIR          index store directory         ([store] data_dir)\n"
    "  --index-type STR    FAISS index_factory string    ([store] index_type)\n"
    "  --batch N           images per embedding batch    ([model] batch)\n"
    "  --threads N         compute threads               ([model] threads)\n"
    "  --workers N         decode workers                ([model] workers)\n"
    "  --precision P       auto, f32, bf16 or int8       ([model] precision)\n"
    "  --log-file FILE     log here, not to stderr       ([daemon] log_file)\n"
    "  --set S.K=V         set any configuration key\n"
    "  -v, --verbose       debug logging;  -q, --quiet: warnings and errors only\n"
    "  DIR...              directories to index (replace [library] root)\n"
    "\n"
    "See clipdexd(8) and clipdex.conf(5).\n";

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "clipdexd: %s '%s'\n%s", what, arg, usage_text);
    return EXIT_USAGE;
}

/* Flags that are shorthands for --set: flag, configuration key.  Their
 * getopt codes are SHORTHAND + index. */
enum { SHORTHAND = 1000, OPT_ONCE = 256, OPT_CHECK, OPT_VERSION, OPT_SET };
static const struct {
    const char *flag, *key;
} shorthands[] = {
    {"model", "model.dir"},       {"data", "store.data_dir"},   {"index-type", "store.index_type"},
    {"batch", "model.batch"},     {"threads", "model.threads"}, {"workers", "model.workers"},
    {"log-file", "daemon.log_file"}, {"log-level", "daemon.log_level"},
    {"precision", "model.precision"},
};
#define N_SHORTHANDS (sizeof shorthands / sizeof shorthands[0])

static int check_config(indexer *d)
{
    config *c = &d->cfg;
    struct stat sb;
    int bad = 0;
    if (!c->roots.n) {
        fprintf(stderr, "clipdexd: no [library] root: nothing would be indexed\n");
        bad = 1;
    }
    for (size_t i = 0; i < c->roots.n; i++)
        if (stat(c->roots.v[i], &sb) != 0 || !S_ISDIR(sb.st_mode))
            fprintf(stderr, "clipdexd: warning: root %s does not exist (yet); clipdexd waits for it\n",
                    c->roots.v[i]);
    if (!c->model_dir) {
        fprintf(stderr, "clipdexd: no model: set [model] dir or CLIPDEX_MODEL\n");
        bad = 1;
    } else {
        char *cj = path_join(c->model_dir, "config.json");
        char *oc = path_join(c->model_dir, "open_clip_config.json");
        /* config.json, an OpenCLIP directory, or a config file given */
        if (stat(cj, &sb) != 0 && stat(oc, &sb) != 0 &&
            !(stat(c->model_dir, &sb) == 0 && S_ISREG(sb.st_mode))) {
            fprintf(stderr, "clipdexd: [model] dir %s: no config.json or open_clip_config.json there\n",
                    c->model_dir);
            bad = 1;
        }
        free(cj);
        free(oc);
    }
    config_print(c, stdout);
    if (fflush(stdout) != 0) bad = 1;
    if (!bad) fprintf(stderr, "clipdexd: configuration OK (%s)\n", c->path ? c->path : "no file: defaults");
    return bad ? EXIT_USAGE : EXIT_OK;
}

int main(int argc, char **argv)
{
    indexer d;
    char *err = NULL;
    int check = 0, ret = EXIT_USAGE, verbose = 0, quiet = 0;
    const char *cfg_path = NULL;

    memset(&d, 0, sizeof d);
    {
        static const struct option fixed[] = {
            {"config", required_argument, NULL, 'c'},   {"once", no_argument, NULL, OPT_ONCE},
            {"check-config", no_argument, NULL, OPT_CHECK}, {"foreground", no_argument, NULL, 'f'},
            {"verbose", no_argument, NULL, 'v'},          {"quiet", no_argument, NULL, 'q'},
            {"help", no_argument, NULL, 'h'},             {"version", no_argument, NULL, OPT_VERSION},
            {"set", required_argument, NULL, OPT_SET},
        };
        enum { N_FIXED = sizeof fixed / sizeof fixed[0] };
        struct option opts[N_FIXED + N_SHORTHANDS + 1];
        int c;
        memcpy(opts, fixed, sizeof fixed);
        for (size_t k = 0; k < N_SHORTHANDS; k++)
            opts[N_FIXED + k] = (struct option){shorthands[k].flag, required_argument, NULL, SHORTHAND + (int)k};
        opts[N_FIXED + N_SHORTHANDS] = (struct option){NULL, 0, NULL, 0};
        opterr = 0;
        while ((c = getopt_long(argc, argv, "c:fvqh", opts, NULL)) != -1) {
            switch (c) {
            case 'h':
                fputs(usage_text, stdout);
                ret = EXIT_OK;
                goto out;
            case OPT_VERSION:
                printf("clipdexd %s\n", CDX_VERSION);
                ret = EXIT_OK;
                goto out;
            case OPT_ONCE: d.once = 1; break;
            case OPT_CHECK: check = 1; break;
            case 'f': break; /* always in the foreground; accepted for init scripts */
            case 'v': verbose = 1; break;
            case 'q': quiet = 1; break;
            case 'c': cfg_path = optarg; break;
            case OPT_SET: strv_push(&d.sets, optarg); break;
            default:
                if (c >= SHORTHAND && c < SHORTHAND + (int)N_SHORTHANDS) {
                    strv_push_owned(&d.sets, xasprintf("%s=%s", shorthands[c - SHORTHAND].key, optarg));
                    break;
                }
                ret = usage_error("unknown option (or missing value)", argv[optind - 1]);
                goto out;
            }
        }
        /* The rest (in order, after any "--") are roots. */
        for (int i = optind; i < argc; i++) strv_push(&d.cli_roots, argv[i]);
    }
    if (verbose) strv_push(&d.sets, "daemon.log_level=debug");
    else if (quiet) strv_push(&d.sets, "daemon.log_level=warn");
    if (cfg_path) {
        d.config_path = xstrdup(cfg_path);
        d.config_required = 1;
    } else {
        d.config_path = config_default_path();
    }
    /* Arguments are roots given now: absolute against our directory. */
    for (size_t i = 0; i < d.cli_roots.n; i++) {
        char *abs = path_absolute(d.cli_roots.v[i], NULL);
        struct stat sb;
        int rc = stat(abs, &sb);
        if (d.once && (rc != 0 || !S_ISDIR(sb.st_mode))) {
            fprintf(stderr, "clipdexd: %s: %s\n", d.cli_roots.v[i],
                    rc != 0 ? strerror(errno) : "not a directory");
            free(abs);
            goto out;
        }
        free(d.cli_roots.v[i]);
        d.cli_roots.v[i] = abs;
    }
    if (daemon_make_config(&d, &d.cfg, &err) != 0) {
        fprintf(stderr, "clipdexd: %s\n", err);
        free(err);
        goto out;
    }
    ret = check ? check_config(&d) : daemon_run(&d);
out:
    config_release(&d.cfg);
    free(d.config_path);
    strv_clear(&d.sets);
    strv_clear(&d.cli_roots);
    free(d.model_name);
    free(d.last_error);
    strv_clear(&d.unwatched);
    strv_clear(&d.missing_roots);
    return ret;
}
