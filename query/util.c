/*
 * util.c - front-end helpers shared by the clipdex subcommands: error
 * printing, usage, model directory resolution, JSON/float output.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../indexer/config.h"
#include "cmd.h"

static void vreport(const char *prefix, const char *fmt, va_list ap)
{
    fprintf(stderr, "clipdex: %s", prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("", fmt, ap);
    va_end(ap);
    return EXIT_ERROR;
}

void warning(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("warning: ", fmt, ap);
    va_end(ap);
}

void cmd_usage(const cdx_cmd *cmd, FILE *f)
{
    fprintf(f, "usage: %s\n", cmd->usage);
}

int usage_error(const cdx_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("", fmt, ap);
    va_end(ap);
    if (cmd) cmd_usage(cmd, stderr);
    return EXIT_USAGE;
}

int is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

/* The configured default: [model] dir of the daemon's configuration file
 * (clipdex.conf(5)), so that a user who set up clipdexd need not repeat
 * it.  A broken file is reported; it does not stop a command that has a
 * model some other way. */
static char *conf_precision; /* [model] precision, read with the model dir */

static char *configured_model_dir(void)
{
    static char *cached;
    static int done;
    config c;
    char *path, *err = NULL;
    if (done) return cached;
    done = 1;
    if (!(path = config_default_path())) return NULL;
    config_init(&c);
    if (config_load(&c, path, 0, &err) == 0) {
        if (c.model_dir && *c.model_dir) cached = strdup(c.model_dir);
        if (c.precision && *c.precision) conf_precision = strdup(c.precision);
    } else {
        warning("%s", err ? err : path);
    }
    free(err);
    free(path);
    config_release(&c);
    return cached;
}

const char *resolve_model_dir(const char *opt)
{
    const char *env;
    if (opt && *opt) return opt;
    env = getenv("CLIPDEX_MODEL");
    if (env && *env) return env;
    if ((env = configured_model_dir())) return env;
    fprintf(stderr, "clipdex: no model: pass --model DIR, set CLIPDEX_MODEL or [model] dir in "
                    "clipdex.conf (get one with: scripts/get-model openai/clip-vit-base-patch32 DIR)\n");
    return NULL;
}

/* The precision a command runs at: --precision, else CLIPDEX_PRECISION,
 * else clipdex.conf's [model] precision, else auto.  *why gets where the choice came from (static). */
int resolve_precision(const char *opt, cdx_precision *out, const char **why)
{
    const char *v = opt, *src = "--precision";
    if (!v || !*v) {
        v = getenv("CLIPDEX_PRECISION");
        src = "CLIPDEX_PRECISION";
    }
    if (!v || !*v) {
        configured_model_dir();
        v = conf_precision;
        src = "[model] precision";
    }
    if (!v || !*v) {
        v = "auto";
        src = NULL;
    }
    if (cdx_precision_parse(v, out) != 0) {
        fprintf(stderr, "clipdex: %s must be auto, f32, bf16 or int8, not '%s'\n", src, v);
        return -1;
    }
    if (*out == CDX_PRECISION_AUTO) {
        *out = cdx_precision_auto(why);
    } else if (why) {
        *why = strcmp(src, "--precision") == 0         ? "set by --precision"
               : strcmp(src, "CLIPDEX_PRECISION") == 0 ? "set by CLIPDEX_PRECISION"
                                                       : "set by [model] precision in clipdex.conf";
    }
    return 0;
}

int apply_precision(cdx_model *m, const char *opt)
{
    cdx_precision p;
    const char *why;
    if (resolve_precision(opt, &p, &why)) return -1;
    if (cdx_model_set_precision(m, p)) return error("%s", cdx_last_error());
    return 0;
}

void print_float(FILE *f, float v)
{
    fprintf(f, "%.9g", (double)v);
}

void print_json_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else if (c < 0x80) {
            fputc(c, f);
        } else {
            /* Copy a valid UTF-8 sequence through; escape stray bytes. */
            int n = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
            int okseq = n > 0;
            for (int i = 1; okseq && i < n; i++)
                if ((p[i] & 0xc0) != 0x80) okseq = 0;
            if (okseq) {
                fwrite(p, 1, (size_t)n, f);
                p += n - 1;
            } else {
                fprintf(f, "\\u%04x", c);
            }
        }
    }
    fputc('"', f);
}

void tty_progress(const char *what, int64_t done, int64_t total, void *user)
{
    (void)user;
    /* Only on a terminal: a log file does not want a line per chunk. */
    if (!isatty(STDERR_FILENO)) return;
    fprintf(stderr, "\rclipdex: %s: %lld/%lld", what, (long long)done, (long long)total);
    if (done >= total) fputc('\n', stderr);
}
