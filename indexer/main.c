/*
 * main.c - clipdexd, the indexing daemon: command line, then daemon_run.
 *
 *   clipdexd [OPTIONS] [DIR...]        watch and index (foreground; logs
 *                                      to stderr; systemd-friendly)
 *   clipdexd --once [OPTIONS] [DIR...] reconcile the roots, then exit
 *   clipdexd --check-config [OPTIONS]  validate the configuration
 *
 * Flags override the configuration file (config.c); DIR arguments replace
 * its roots.  Exit status: 0 ok, 1 --once interrupted, 2 usage or
 * configuration error, 3 runtime error (store, model, lock).
 */
#include <errno.h>
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
    return 2;
}

/* Flags that are shorthands for --set: flag, configuration key. */
static const struct {
    const char *flag, *key;
} shorthands[] = {
    {"--model", "model.dir"},       {"--data", "store.data_dir"},   {"--index-type", "store.index_type"},
    {"--batch", "model.batch"},     {"--threads", "model.threads"}, {"--workers", "model.workers"},
    {"--log-file", "daemon.log_file"}, {"--log-level", "daemon.log_level"},
    {"--precision", "model.precision"},
};

/* "--flag VALUE" or "--flag=VALUE": the value, advancing *i; NULL if absent. */
static const char *flag_value(int argc, char **argv, int *i, const char *flag)
{
    size_t n = strlen(flag);
    if (strncmp(argv[*i], flag, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}

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
        if (stat(cj, &sb) != 0) {
            fprintf(stderr, "clipdexd: [model] dir %s: no config.json there\n", c->model_dir);
            bad = 1;
        }
        free(cj);
    }
    config_print(c, stdout);
    if (fflush(stdout) != 0) bad = 1;
    if (!bad) fprintf(stderr, "clipdexd: configuration OK (%s)\n", c->path ? c->path : "no file: defaults");
    return bad ? 2 : 0;
}

int main(int argc, char **argv)
{
    indexer d;
    char *err = NULL;
    int check = 0, ret = 2, verbose = 0, quiet = 0, dashdash = 0;
    const char *cfg_path = NULL;

    memset(&d, 0, sizeof d);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int matched = 0;
        if (dashdash || a[0] != '-' || !a[1]) {
            strv_push(&d.cli_roots, a);
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            ret = 0;
            goto out;
        } else if (strcmp(a, "--version") == 0) {
            printf("clipdexd %s\n", CDX_VERSION);
            ret = 0;
            goto out;
        } else if (strcmp(a, "--once") == 0) {
            d.once = 1;
        } else if (strcmp(a, "--check-config") == 0) {
            check = 1;
        } else if (strcmp(a, "--foreground") == 0 || strcmp(a, "-f") == 0) {
            /* always in the foreground; accepted for init scripts */
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (strcmp(a, "-c") == 0 || strncmp(a, "--config", 8) == 0) {
            if (strcmp(a, "-c") == 0) {
                if (++i >= argc) {
                    ret = usage_error("a file is needed after", a);
                    goto out;
                }
                cfg_path = argv[i];
            } else if (!(cfg_path = flag_value(argc, argv, &i, "--config"))) {
                ret = usage_error("bad option", a);
                goto out;
            }
        } else if ((v = flag_value(argc, argv, &i, "--set")) != NULL) {
            strv_push(&d.sets, v);
        } else {
            for (size_t k = 0; k < sizeof shorthands / sizeof shorthands[0] && !matched; k++) {
                if ((v = flag_value(argc, argv, &i, shorthands[k].flag)) != NULL) {
                    strv_push_owned(&d.sets, xasprintf("%s=%s", shorthands[k].key, v));
                    matched = 1;
                }
            }
            if (!matched) {
                ret = usage_error("unknown option (or missing value)", a);
                goto out;
            }
        }
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
