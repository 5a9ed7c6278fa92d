/*
 * util.c - front-end helpers shared by the clipdex subcommands: error
 * printing, usage, model directory resolution, JSON/float output.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "conf.h"

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

/* clipdex.conf as both programs read it (common/conf.h), once per
 * process per file.  NULL and *err when it cannot be read. */
static const config *load_conf(const char *path, char **err)
{
    static config c;
    static char *loaded_path;
    static int loaded;
    if (loaded && (path ? loaded_path && strcmp(path, loaded_path) == 0 : !loaded_path)) return &c;
    if (loaded) config_release(&c);
    free(loaded_path);
    loaded = 0;
    loaded_path = path ? xstrdup(path) : NULL;
    if (config_resolve(&c, path, path != NULL, NULL, err) != 0) return NULL;
    loaded = 1;
    return &c;
}

const char *resolve_model_dir(const char *opt)
{
    const char *env;
    const config *c;
    char *err = NULL;
    if (opt && *opt) return opt;
    env = getenv("CLIPDEX_MODEL");
    if (env && *env) return env;
    /* A broken file is reported; it does not stop a command that has a
     * model some other way. */
    if ((c = load_conf(NULL, &err)) && c->model_dir) return c->model_dir;
    if (err) warning("%s", err);
    free(err);
    fprintf(stderr, "clipdex: no model: pass --model DIR, set CLIPDEX_MODEL or [model] dir in "
                    "clipdex.conf (get one with: scripts/get-model openai/clip-vit-base-patch32 DIR)\n");
    return NULL;
}

char *resolve_data_dir(const cdx_cmd *self, const char *config_path, const char *data_opt)
{
    const config *c;
    char *err = NULL;
    if (data_opt && *data_opt) return xstrdup(data_opt);
    if (!(c = load_conf(config_path, &err))) {
        usage_error(self, "%s (or pass --data DIR)", err);
        free(err);
        return NULL;
    }
    return xstrdup(c->data_dir);
}

/* Where the precision setting comes from: --precision, else
 * CLIPDEX_PRECISION, else clipdex.conf's [model] precision; NULL when
 * none is set (auto).  *src names the place (static). */
static const char *precision_setting(const char *opt, const char **src)
{
    const char *v = opt;
    *src = "--precision";
    if (!v || !*v) {
        v = getenv("CLIPDEX_PRECISION");
        *src = "CLIPDEX_PRECISION";
    }
    if (!v || !*v) {
        /* A broken file is not reported here: resolve_model_dir does,
         * when the command takes its model from it. */
        const config *c;
        char *err = NULL;
        v = (c = load_conf(NULL, &err)) ? c->precision : NULL;
        free(err);
        *src = "[model] precision";
    }
    return v && *v ? v : NULL;
}

/* The precision a command runs at: --precision, else CLIPDEX_PRECISION,
 * else clipdex.conf's [model] precision, else auto.  *why gets where the choice came from (static). */
int resolve_precision(const char *opt, cdx_precision *out, const char **why)
{
    const char *src, *v = precision_setting(opt, &src);
    if (!v) {
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

int requested_precision(const char *opt, cdx_precision *out)
{
    const char *src, *v = precision_setting(opt, &src);
    *out = CDX_PRECISION_AUTO;
    if (v && cdx_precision_parse(v, out) != 0) {
        fprintf(stderr, "clipdex: %s must be auto, f32, bf16 or int8, not '%s'\n", src, v);
        return -1;
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

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), 0 if there is none. */
static int utf8_seq_len(const unsigned char *p)
{
    unsigned char c = p[0];
    int n;
    unsigned char lo = 0x80, hi = 0xbf;   /* bounds of the second byte */
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) n = 3;
    else if (c >= 0xf0 && c <= 0xf4) n = 4;
    else return 0;
    if (c == 0xe0) lo = 0xa0;          /* overlong */
    else if (c == 0xed) hi = 0x9f;     /* U+D800..U+DFFF */
    else if (c == 0xf0) lo = 0x90;     /* overlong */
    else if (c == 0xf4) hi = 0x8f;     /* above U+10FFFF */
    if (p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return n;
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
            /* Copy a valid UTF-8 sequence through.  Any other byte is
             * written as the lone surrogate U+DC00+byte (Python's
             * surrogateescape), so the JSON names the exact bytes of the
             * path: json.loads(...).encode("utf-8", "surrogateescape").
             * Mapping bytes to Latin-1 code points named another file. */
            int n = utf8_seq_len(p);
            if (n > 0) {
                fwrite(p, 1, (size_t)n, f);
                p += n - 1;
            } else {
                fprintf(f, "\\udc%02x", c);
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
