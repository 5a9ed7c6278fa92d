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
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "banned.h"

/* "--opt VALUE" or "--opt=VALUE" at argv[*i]: its value (advancing *i),
 * NULL when argv[*i] is not this option; *missing when the value is. */
static const char *opt_value(int argc, char **argv, int *i, const char *opt, int *missing)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

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
    const char *config = NULL, *model = NULL, *data = NULL, *precision = NULL;
    const char **args;
    char exe[PATH_MAX + 16];
    int n = 0, first_dir = argc, missing = 0;

    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--") == 0) {
            first_dir = i + 1;
            break;
        }
        if ((v = opt_value(argc, argv, &i, "--config", &missing)) != NULL) config = v;
        else if ((v = opt_value(argc, argv, &i, "--model", &missing)) != NULL) model = v;
        else if ((v = opt_value(argc, argv, &i, "--data", &missing)) != NULL) data = v;
        else if ((v = opt_value(argc, argv, &i, "--precision", &missing)) != NULL) precision = v;
        else if (missing) return usage_error(self, "%s needs a value", argv[i]);
        else if (argv[i][0] == '-' && argv[i][1]) return usage_error(self, "unknown option '%s'", argv[i]);
        else {
            first_dir = i;
            break;
        }
    }
    if (first_dir >= argc) return usage_error(self, "no directory to index");

    args = calloc((size_t)(argc - first_dir) + 10, sizeof *args);
    if (!args) return error("out of memory");
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
