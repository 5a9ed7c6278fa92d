/*
 * cmd.h - the clipdex subcommand table and front-end helpers (query/).
 *
 * Adding a subcommand: one row in the table in main.c, one cmd_NAME.c file
 * with its handler and usage string, one section in man/clipdex.1 (its
 * synopsis identical to the usage string) and one tests/cli script.
 *
 * Exit codes (documented in clipdex(1)):
 *   0 success / something found, 1 nothing found, 2 usage error,
 *   3 runtime error (bad file, bad model, store problem).
 */
#ifndef CDX_QUERY_CMD_H
#define CDX_QUERY_CMD_H

#include <stdio.h>

#include "clipdex.h"
#include "util.h" /* common/: x* allocators (out of memory aborts), paths */

/* With EXIT_OK (help, --version, a command done), EXIT_USAGE and
 * EXIT_ERROR from common/util.h. */
enum { EXIT_FOUND = 0, EXIT_NOTFOUND = 1 };

typedef struct cdx_cmd {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *usage;                 /* synopsis line(s), "clipdex NAME ..." */
    const char *summary;               /* one line for `clipdex help` */
} cdx_cmd;

/* The table (main.c) and lookup. */
extern const cdx_cmd cdx_commands[];
const cdx_cmd *cmd_find(const char *name);

/* Print "clipdex: msg" on stderr.  error() returns EXIT_ERROR so a handler
 * can `return error(...)`; usage_error() prints the usage of cmd after the
 * message and returns EXIT_USAGE. */
int error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int usage_error(const cdx_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print the usage of cmd to f. */
void cmd_usage(const cdx_cmd *cmd, FILE *f);

/* The model directory: the --model value if non-NULL, else $CLIPDEX_MODEL,
 * else [model] dir of the default clipdex.conf, else NULL after printing
 * how to get one (caller returns EXIT_USAGE). */
const char *resolve_model_dir(const char *opt);
/* The precision to run at: opt (--precision), else CLIPDEX_PRECISION, else
 * clipdex.conf [model] precision, else
 * auto (resolved for this CPU; never AUTO in *out).  Prints and returns -1
 * for a bad name.  apply_precision also switches m to it (-1 on failure,
 * message printed). */
int resolve_precision(const char *opt, cdx_precision *out, const char **why);
int apply_precision(cdx_model *m, const char *opt);
/* The precision asked for, from the same places, unresolved: AUTO when
 * nothing says otherwise (the store's join picks its own fastest). */
int requested_precision(const char *opt, cdx_precision *out);

/* The data directory as clipdexd finds it (config_resolve in
 * common/conf.h): data_opt (--data) when given, else clipdex.conf's
 * [store] data_dir (config_path, else the default file), else
 * $CLIPDEX_DATA, $XDG_DATA_HOME/clipdex, ~/.local/share/clipdex.  Heap
 * string, or NULL after a usage error for self (caller returns
 * EXIT_USAGE). */
char *resolve_data_dir(const cdx_cmd *self, const char *config_path, const char *data_opt);

/* True when argv[i] is -h/--help. */
int is_help(const char *arg);

/* A cdx_store_progress_fn: "clipdex: what: done/total" rewritten in place
 * on stderr when it is a terminal, nothing otherwise. */
void tty_progress(const char *what, int64_t done, int64_t total, void *user);

/* Print a float with 9 significant digits (round-trips float32). */
void print_float(FILE *f, float v);

/* Print s as a JSON string literal (quotes, escapes; invalid UTF-8 bytes as
 * \u00XX of the byte so any input survives). */
void print_json_string(FILE *f, const char *s);

/* Handlers. */
int cmd_embed(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_similar(int argc, char **argv);
int cmd_dupes(int argc, char **argv);
int cmd_moderate(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
