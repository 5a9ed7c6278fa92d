/*
 * conf.c - clipdex.conf: the configuration table and its INI reader
 * (see conf.h).
 *
 * Every key is one row of keys[]: section, name, type, where it lives in
 * struct config, its default (as text, parsed by the same code as the
 * file's values), its range and a one-line help that config_print writes
 * as a comment.  Adding a setting is one row here and one paragraph in
 * man/clipdex.conf.5.
 *
 * The INI syntax is libinih's (Debian's libinih, configured at run time
 * below): "[section]", "key = value", comments start a line with ';' or
 * '#', or follow " ;" inside a line; an indented line continues the value
 * of the key above (a list then gets one more element).
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "conf.h"

typedef enum {
    K_BOOL,  /* yes/no, true/false, on/off, 1/0 */
    K_INT,   /* decimal integer in [min, max] */
    K_BYTES, /* integer with an optional K/M/G/T suffix (powers of 1024) */
    K_STR,   /* text ("" allowed) */
    K_PATH,  /* one path; "" unsets */
    K_PATHS, /* a list of paths: the key repeats */
    K_GLOBS, /* a list of patterns: the key repeats */
    K_WORDS, /* a list of words separated by spaces or commas */
    K_LEVEL  /* a log level name */
} ktype;

typedef struct key_def {
    const char *section, *name;
    ktype type;
    size_t off;
    const char *def;
    int64_t min, max;
    const char *help;
} key_def;

#define F(field) offsetof(config, field)
static const key_def keys[] = {
    {"library", "root", K_PATHS, F(roots), NULL, 0, 0,
     "a directory to index; repeat the key for more"},
    {"library", "exclude", K_GLOBS, F(excludes), NULL, 0, 0,
     "skip what matches this glob: a file or directory name, or the whole path when it has a '/'"},
    {"library", "hidden", K_BOOL, F(hidden), "no", 0, 0,
     "index hidden files and directories (names starting with '.')"},
    {"library", "extensions", K_WORDS, F(extensions), "jpg jpeg jpe png webp heic heif avif tif tiff gif",
     0, 0, "file name extensions to index (the format itself is detected from the bytes)"},
    {"model", "dir", K_PATH, F(model_dir), NULL, 0, 0,
     "the Hugging Face CLIP model directory (default: $CLIPDEX_MODEL)"},
    {"model", "batch", K_INT, F(batch), "16", 1, 256, "images per embedding batch"},
    {"model", "threads", K_INT, F(threads), "0", 0, 256,
     "compute threads of the model (0: one per online CPU)"},
    {"model", "workers", K_INT, F(workers), "0", 0, 256,
     "decode worker threads (0: as many as compute threads)"},
    {"model", "precision", K_STR, F(precision), NULL, 0, 0,
     "arithmetic of the model: auto (bf16 with AVX512_BF16, int8 with VNNI, else f32), f32, bf16, "
     "int8 (default: $CLIPDEX_PRECISION, else auto)"},
    {"store", "data_dir", K_PATH, F(data_dir), NULL, 0, 0,
     "the index store (default: $CLIPDEX_DATA, else $XDG_DATA_HOME/clipdex)"},
    {"store", "index_type", K_STR, F(index_type), "Flat", 0, 0,
     "FAISS index_factory string of the vector index, e.g. Flat, HNSW32,Flat, IVF4096,PQ64"},
    {"store", "search_params", K_STR, F(search_params), "", 0, 0,
     "FAISS search parameters, e.g. nprobe=16 or efSearch=128"},
    {"store", "save_every", K_INT, F(save_every), "5000", 1, INT64_MAX,
     "save the FAISS file after this many vector changes"},
    {"limits", "max_megapixels", K_INT, F(max_megapixels), "200", 1, 100000,
     "refuse images with more pixels than this (millions)"},
    {"limits", "max_file_size", K_BYTES, F(max_file_size), "1G", 1, INT64_MAX,
     "refuse files larger than this (K, M, G suffixes)"},
    {"watch", "debounce_ms", K_INT, F(debounce_ms), "300", 0, 600000,
     "wait this long after a file's last event before indexing it"},
    {"watch", "settle_ms", K_INT, F(settle_ms), "3000", 0, 3600000,
     "a file written to but not closed is indexed after this quiet time"},
    {"watch", "rescan_interval", K_INT, F(rescan_interval), "600", 1, 86400 * 7,
     "seconds between rescans of directories that cannot be watched"},
    {"watch", "root_poll", K_INT, F(root_poll), "2", 1, 3600,
     "seconds between checks for a missing root directory"},
    {"watch", "max_watches", K_INT, F(max_watches), "0", 0, INT_MAX,
     "watch at most this many directories (0: as many as the kernel allows)"},
    {"daemon", "log_level", K_LEVEL, F(log_level), "info", 0, 0,
     "debug, info, warn or error"},
    {"daemon", "log_file", K_PATH, F(log_file), NULL, 0, 0, "log here instead of stderr"},
    {"daemon", "progress_interval", K_INT, F(progress_interval), "10", 1, 86400,
     "seconds between progress lines when stderr is not a terminal"},
};
#define N_KEYS (sizeof keys / sizeof keys[0])
_Static_assert(N_KEYS <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

#define AT(c, k, type) ((type *)((char *)(c) + (k)->off))

/* ---- value parsing ---- */

static const char *level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    if (strcmp(s, "warning") == 0) return CDX_LOG_WARN;
    return -1;
}

const char *log_level_name(int level)
{
    return level >= 0 && level < 4 ? level_names[level] : "?";
}

static int parse_bool(const char *v, int *out)
{
    static const char *yes[] = {"yes", "true", "on", "1"}, *no[] = {"no", "false", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(v, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

static int parse_int(const char *v, int bytes, int64_t *out)
{
    char *end;
    long long x;
    int64_t mul = 1;
    errno = 0;
    x = strtoll(v, &end, 10);
    if (end == v || errno) return -1;
    if (bytes && *end) {
        switch (*end == 'k' ? 'K' : *end == 'm' ? 'M' : *end == 'g' ? 'G' : *end == 't' ? 'T' : *end) {
        case 'K': mul = 1LL << 10; break;
        case 'M': mul = 1LL << 20; break;
        case 'G': mul = 1LL << 30; break;
        case 'T': mul = 1LL << 40; break;
        default: return -1;
        }
        end++;
        if (*end == 'i') end++;
        if (*end == 'B') end++;
    }
    if (*end) return -1;
    if (__builtin_mul_overflow((int64_t)x, mul, out)) return -1;
    return 0;
}

/* Set key k from text v.  base: directory for relative paths (NULL: the
 * working directory).  first: the first value of this key from its
 * source (a list is replaced).  Returns NULL or a heap message. */
static char *set_value(config *c, const key_def *k, const char *v, const char *base, int first)
{
    switch (k->type) {
    case K_BOOL:
        if (parse_bool(v, AT(c, k, int)) != 0) return xasprintf("'%s' is not yes or no", v);
        return NULL;
    case K_INT:
    case K_BYTES: {
        int64_t x;
        if (parse_int(v, k->type == K_BYTES, &x) != 0)
            return xasprintf("'%s' is not %s", v, k->type == K_BYTES ? "a size (like 512M)" : "an integer");
        if (x < k->min || x > k->max)
            return xasprintf("%s is out of range (%lld..%lld)", v, (long long)k->min, (long long)k->max);
        *AT(c, k, int64_t) = x;
        return NULL;
    }
    case K_STR: {
        cdx_precision p;
        /* [model] precision: one of the names the library knows */
        if (k->off == F(precision) && cdx_precision_parse(v, &p) != 0)
            return xasprintf("'%s' is not one of auto, f32, bf16, int8", v);
        free(*AT(c, k, char *));
        *AT(c, k, char *) = xstrdup(v);
        return NULL;
    }
    case K_PATH:
        free(*AT(c, k, char *));
        *AT(c, k, char *) = *v ? path_absolute(v, base) : NULL;
        return NULL;
    case K_PATHS:
    case K_GLOBS: {
        strv *l = AT(c, k, strv);
        if (first) strv_clear(l);
        if (!*v) return NULL; /* "root =" empties the list */
        if (k->type == K_PATHS)
            strv_push_owned(l, path_absolute(v, base));
        else
            strv_push(l, v);
        return NULL;
    }
    case K_WORDS: {
        strv *l = AT(c, k, strv);
        if (first) strv_clear(l);
        for (const char *p = v; *p;) {
            while (*p == ' ' || *p == '\t' || *p == ',') p++;
            const char *s = p;
            while (*p && *p != ' ' && *p != '\t' && *p != ',') p++;
            if (p == s) continue;
            if (*s == '.') s++;
            char *w = xstrndup(s, (size_t)(p - s));
            for (char *q = w; *q; q++)
                if (*q >= 'A' && *q <= 'Z') *q = (char)(*q - 'A' + 'a');
            if (*w && !strv_contains(l, w))
                strv_push_owned(l, w);
            else
                free(w);
        }
        return NULL;
    }
    case K_LEVEL: {
        int lv = log_level_parse(v);
        if (lv < 0) return xasprintf("'%s' is not one of debug, info, warn, error", v);
        *AT(c, k, int) = lv;
        return NULL;
    }
    }
    return xasprintf("internal: bad key type");
}

static const key_def *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

static int section_known(const char *section)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0) return 1;
    return 0;
}

/* "unknown key" with the section's keys listed, as a heap message. */
static char *unknown_key(const char *section, const char *name)
{
    char list[512];
    size_t used = 0;
    if (!*section) return xasprintf("'%s' is outside any [section]", name);
    if (!section_known(section)) {
        for (size_t i = 0; i < N_KEYS; i++) {
            if (i && strcmp(keys[i].section, keys[i - 1].section) == 0) continue;
            used += (size_t)snprintf(list + used, sizeof list - used, "%s[%s]", used ? ", " : "",
                                     keys[i].section);
            if (used >= sizeof list) break;
        }
        return xasprintf("unknown section [%s] (known: %s)", section, list);
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) != 0) continue;
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", keys[i].name);
        if (used >= sizeof list) break;
    }
    return xasprintf("unknown key '%s' in [%s] (known: %s)", name, section, list);
}

void config_init(config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        if (!keys[i].def) continue;
        char *e = set_value(c, &keys[i], keys[i].def, NULL, 1);
        if (e) abort(); /* a bad default is a bug caught by every test run */
    }
}

void config_release(config *c)
{
    strv_clear(&c->roots);
    strv_clear(&c->excludes);
    strv_clear(&c->extensions);
    free(c->model_dir);
    free(c->precision);
    free(c->data_dir);
    free(c->index_type);
    free(c->search_params);
    free(c->log_file);
    free(c->path);
    memset(c, 0, sizeof *c);
}

char *config_default_path(void)
{
    const char *x = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (x && x[0] == '/') return xasprintf("%s/clipdex/clipdex.conf", x);
    if (home && *home) return xasprintf("%s/.config/clipdex/clipdex.conf", home);
    return NULL;
}

/* ---- the file ---- */

struct load_ctx {
    config *c;
    char *base;   /* the file's directory */
    char *error;  /* first error, without the FILE:LINE prefix */
};

static int on_ini_key(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *x = user;
    const key_def *k = find_key(section, name);
    char *e;
    if (x->error) return 0;
    if (!k) {
        x->error = unknown_key(section, name);
        return 0;
    }
    size_t i = (size_t)(k - keys);
    e = set_value(x->c, k, value ? value : "", x->base, !(x->c->seen[i] & 1));
    x->c->seen[i] |= 1;
    if (e) {
        x->error = xasprintf("[%s] %s: %s", section, name, e);
        free(e);
        return 0;
    }
    return 1;
}

int config_load(config *c, const char *path, int required, char **err)
{
    struct load_ctx x = {c, NULL, NULL};
    FILE *f;
    int line;
    char *slash;

    f = fopen(path, "r");
    if (!f) {
        if (!required && errno == ENOENT) return 0;
        *err = xasprintf("%s: %s", path, strerror(errno));
        return -1;
    }
    /* libinih's run-time options (Debian builds it with them): stop at
     * the first error so the line number is that error's, and read lines
     * of any length (long paths) into a growing heap buffer. */
    ini_stop_on_first_error = true;
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = 1 << 16;
    x.base = path_absolute(path, NULL);
    slash = strrchr(x.base, '/');
    if (slash && slash != x.base) *slash = '\0';
    else x.base[1] = '\0';
    line = ini_parse_file(f, on_ini_key, &x);
    fclose(f);
    free(x.base);
    free(c->path);
    c->path = xstrdup(path);
    if (line == 0 && !x.error) return 0;
    if (line > 0)
        *err = xasprintf("%s:%d: %s", path, line, x.error ? x.error : "syntax error (expected [section] or key = value)");
    else if (line == -2)
        *err = xasprintf("%s: out of memory", path);
    else
        *err = xasprintf("%s: %s", path, x.error ? x.error : "cannot be read");
    free(x.error);
    return -1;
}

int config_set(config *c, const char *section, const char *key, const char *value, char **err)
{
    const key_def *k = find_key(section, key);
    char *e;
    if (!k) {
        e = unknown_key(section, key);
        *err = xasprintf("%s", e);
        free(e);
        return -1;
    }
    size_t i = (size_t)(k - keys);
    e = set_value(c, k, value, NULL, !(c->seen[i] & 2));
    c->seen[i] |= 2;
    if (e) {
        *err = xasprintf("%s.%s: %s", section, key, e);
        free(e);
        return -1;
    }
    return 0;
}

int config_set_arg(config *c, const char *assignment, char **err)
{
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    char *section, *key;
    int r;
    if (!dot || !eq || dot > eq) {
        *err = xasprintf("'%s': expected SECTION.KEY=VALUE", assignment);
        return -1;
    }
    section = xstrndup(assignment, (size_t)(dot - assignment));
    key = xstrndup(dot + 1, (size_t)(eq - dot - 1));
    r = config_set(c, section, key, eq + 1, err);
    free(section);
    free(key);
    return r;
}

int config_finish(config *c, char **err)
{
    if (!c->data_dir) {
        char *d = cdx_store_default_dir();
        if (!d) {
            *err = xasprintf("no data directory: set [store] data_dir, $CLIPDEX_DATA or $HOME");
            return -1;
        }
        c->data_dir = path_absolute(d, NULL);
        free(d);
    }
    if (!c->model_dir) {
        const char *m = getenv("CLIPDEX_MODEL");
        if (m && *m) c->model_dir = path_absolute(m, NULL);
    }
    if (!c->precision) {
        const char *p = getenv("CLIPDEX_PRECISION");
        cdx_precision pr;
        if (p && *p && cdx_precision_parse(p, &pr) == 0) c->precision = xstrdup(p);
    }
    return 0;
}

int config_resolve(config *c, const char *path, int required, const strv *sets, char **err)
{
    char *def = NULL;
    config_init(c);
    if (!path) path = def = config_default_path();
    if (path && config_load(c, path, required, err) != 0) goto fail;
    for (size_t i = 0; sets && i < sets->n; i++)
        if (config_set_arg(c, sets->v[i], err) != 0) goto fail;
    if (config_finish(c, err) != 0) goto fail;
    free(def);
    return 0;
fail:
    free(def);
    config_release(c);
    return -1;
}

int config_ext_wanted(const config *c, const char *ext)
{
    return *ext && strv_contains(&c->extensions, ext);
}

static void print_value(const config *c, const key_def *k, FILE *f)
{
    switch (k->type) {
    case K_BOOL: fprintf(f, "%s = %s\n", k->name, *AT(c, k, int) ? "yes" : "no"); break;
    case K_INT:
    case K_BYTES: fprintf(f, "%s = %lld\n", k->name, (long long)*AT(c, k, int64_t)); break;
    case K_STR:
    case K_PATH: {
        const char *s = *AT(c, k, char *);
        fprintf(f, "%s%s = %s\n", s ? "" : ";", k->name, s ? s : "");
        break;
    }
    case K_PATHS:
    case K_GLOBS: {
        const strv *l = AT(c, k, strv);
        if (!l->n) fprintf(f, ";%s =\n", k->name);
        for (size_t i = 0; i < l->n; i++) fprintf(f, "%s = %s\n", k->name, l->v[i]);
        break;
    }
    case K_WORDS: {
        const strv *l = AT(c, k, strv);
        fprintf(f, "%s =", k->name);
        for (size_t i = 0; i < l->n; i++) fprintf(f, " %s", l->v[i]);
        fputc('\n', f);
        break;
    }
    case K_LEVEL: fprintf(f, "%s = %s\n", k->name, log_level_name(*AT(c, k, int))); break;
    }
}

void config_print(const config *c, FILE *f)
{
    fprintf(f, "; effective clipdexd configuration (file: %s)\n", c->path ? c->path : "none");
    for (size_t i = 0; i < N_KEYS; i++) {
        if (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0)
            fprintf(f, "%s[%s]\n", i ? "\n" : "", keys[i].section);
        fprintf(f, "; %s\n", keys[i].help);
        print_value(c, &keys[i], f);
    }
}
