/*
 * cmd_index.c - `clipdex index [--config FILE] [--model DIR] [--data DIR]
 * DIR...`: index directories once.
 *
 * There is one indexing pipeline, the daemon's: this command execs
 * `clipdexd --once` with the directories as its roots (found next to this
 * binary, else on $PATH), so progress, exit status and every behaviour are
 * clipdexd's.  Only the given directories are reconciled; files indexed
 * under other roots are left alone.  Exit status: clipdexd's (0 done,
 * 1 interrupted, 2 usage or configuration error, 3 runtime error).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "banned.h"

/* clipdexd next to our own executable, else the name for a $PATH search. */
static const char *find_daemon(char *buf, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 16);
    if (n > 0) {
        buf[n] = '\0';
        char *slash = strrchr(buf, '/');
        if (slash) {
            memcpy(slash + 1, "clipdexd", sizeof "clipdexd");
            if (access(buf, X_OK) == 0) return buf;
        }
    }
    return "clipdexd";
}

int cmd_index(int argc, char **argv)
{
    const cdx_cmd *self = cmd_find("index");
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"model", required_argument, NULL, 'm'},
        {"data", required_argument, NULL, 'd'},
        {"precision", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *model = NULL, *data = NULL, *precision = NULL;
    const char **args;
    char exe[PATH_MAX + 16];
    int n = 0, first_dir, c;

    /* '+': the options come before the directories, as clipdexd's do. */
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c == 'c') config = optarg;
        else if (c == 'm') model = optarg;
        else if (c == 'd') data = optarg;
        else if (c == 'P') precision = optarg;
        else return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    first_dir = optind;
    if (first_dir >= argc) return usage_error(self, "no directory to index");

    /* clipdexd --once, four options with their values, --, the
     * directories, NULL */
    args = xcalloc((size_t)(argc - first_dir) + 12, sizeof *args);
    args[n++] = "clipdexd";
    args[n++] = "--once";
    if (config) {
        args[n++] = "--config";
        args[n++] = config;
    }
    if (model) {
        args[n++] = "--model";
        args[n++] = model;
    }
    if (data) {
        args[n++] = "--data";
        args[n++] = data;
    }
    if (precision) {
        args[n++] = "--precision";
        args[n++] = precision;
    }
    args[n++] = "--";
    for (int i = first_dir; i < argc; i++) args[n++] = argv[i];
    args[n] = NULL;

    const char *daemon = find_daemon(exe, sizeof exe);
    fflush(stdout);
    fflush(stderr);
    if (strchr(daemon, '/')) execv(daemon, (char *const *)args);
    else execvp(daemon, (char *const *)args);
    int e = errno;
    free(args);
    return error("cannot run %s: %s (is clipdexd installed next to clipdex or on $PATH?)", daemon,
                 strerror(e));
}
