/*
 * filters.c - the pieces the store-reading subcommands share: command-line
 * filters (dates, directory, camera, extensions) turned into a
 * cdx_store_filter, opening the store read-only, choosing the model and
 * its vector space, and getting the vector of an image (stored if the
 * image is indexed, embedded now if not).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "filters.h"
#include "banned.h"

/* ------------------------------------------------------------------ */
/* Numbers and dates                                                   */
/* ------------------------------------------------------------------ */

int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    if (!s || !isdigit((unsigned char)*s)) return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > SIZE_MAX / 2) return -1;
    *out = (size_t)v;
    return 0;
}

int parse_double(const char *s, double *out)
{
    char *end;
    double v;
    if (!s || !*s) return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* n digits at *p as a number, advancing *p; -1 when not n digits. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return v;
}

int parse_date(const char *s, int64_t *out)
{
    struct tm tm;
    const char *p = s;
    int y, mo = 1, d = 1, h = 0, mi = 0, sec = 0;

    if (!s || !*s) return -1;
    if (*s == '@') {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(s + 1, &end, 10);
        if (errno || end == s + 1 || *end) return -1;
        *out = v;
        return 0;
    }
    if ((y = digits(&p, 4)) < 0) return -1;
    if (*p == '-') {
        p++;
        if ((mo = digits(&p, 2)) < 1 || mo > 12) return -1;
        if (*p == '-') {
            p++;
            if ((d = digits(&p, 2)) < 1 || d > 31) return -1;
            if (*p == 'T' || *p == ' ') {
                p++;
                if ((h = digits(&p, 2)) < 0 || h > 23) return -1;
                if (*p++ != ':') return -1;
                if ((mi = digits(&p, 2)) < 0 || mi > 59) return -1;
                if (*p == ':') {
                    p++;
                    if ((sec = digits(&p, 2)) < 0 || sec > 60) return -1;
                }
            }
        }
    }
    if (*p) return -1;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    /* timegm normalises 2021-02-31 to March: refuse such dates. */
    if (tm.tm_mday != d || tm.tm_mon != mo - 1) return -1;
    *out = (int64_t)t;
    return 0;
}

int64_t file_when(const cdx_file_info *fi)
{
    if (fi->meta.taken_at != CDX_TIME_UNKNOWN) return fi->meta.taken_at;
    /* floor division: a pre-1970 mtime stays in its second */
    int64_t ns = fi->meta.mtime_ns;
    return ns >= 0 ? ns / 1000000000 : -((-ns + 999999999) / 1000000000);
}

/* ------------------------------------------------------------------ */
/* Filters                                                             */
/* ------------------------------------------------------------------ */

static void add_ext(qfilter *q, const char *start, size_t len)
{
    char *e;
    while (len && *start == '.') {
        start++;
        len--;
    }
    if (!len) return;
    q->exts = xrealloc(q->exts, (q->n_exts + 1) * sizeof *q->exts);
    e = xmalloc(len + 1);
    for (size_t i = 0; i < len; i++) e[i] = (char)tolower((unsigned char)start[i]);
    e[len] = 0;
    q->exts[q->n_exts++] = e;
    q->f.exts = (const char *const *)q->exts;
    q->f.n_exts = q->n_exts;
}

int qfilter_option(qfilter *q, const cdx_cmd *self, int c, const char *arg)
{
    int64_t t;
    switch (c) {
    case OPT_AFTER:
    case OPT_BEFORE:
        if (parse_date(arg, &t) != 0)
            return usage_error(self, "--%s: '%s' is not a date (YYYY[-MM[-DD[THH:MM[:SS]]]] or @UNIXTIME)",
                               c == OPT_AFTER ? "after" : "before", arg);
        /* 0 means "open end" in cdx_store_filter: 1970-01-01T00:00:00 as
         * a bound moves by one second, which no photo will notice. */
        if (t == 0) t = c == OPT_AFTER ? 0 : 1;
        if (c == OPT_AFTER) q->f.after = t;
        else q->f.before = t;
        return 1;
    case OPT_UNDER: {
        char *r = realpath(arg, NULL);
        if (!r) {
            /* Not on this machine (any more): match it textually. */
            size_t n = strlen(arg);
            while (n > 1 && arg[n - 1] == '/') n--;
            r = xstrndup(arg, n);
        }
        free(q->under);
        q->under = r;
        q->f.under = r;
        return 1;
    }
    case OPT_CAMERA:
        q->f.camera = arg;
        return 1;
    case OPT_EXT: {
        const char *p = arg;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            add_ext(q, p, len);
            if (!comma) break;
            p = comma + 1;
        }
        if (!q->n_exts) return usage_error(self, "--ext needs an extension, e.g. --ext jpg");
        return 1;
    }
    default:
        return 0;
    }
}

int qfilter_active(const qfilter *q)
{
    return q->f.after || q->f.before || q->f.under || (q->f.camera && *q->f.camera) || q->n_exts;
}

void qfilter_release(qfilter *q)
{
    if (!q) return;
    for (size_t i = 0; i < q->n_exts; i++) free(q->exts[i]);
    free(q->exts);
    free(q->under);
    memset(q, 0, sizeof *q);
}

/* ------------------------------------------------------------------ */
/* Store and model                                                     */
/* ------------------------------------------------------------------ */

int qctx_option(qctx *c, int code, const char *arg)
{
    if (code == OPT_DATA) c->data_opt = arg;
    else if (code == OPT_MODEL) c->model_opt = arg;
    else if (code == OPT_PRECISION) c->prec_opt = arg;
    else return 0;
    return 1;
}

int qctx_open_store(qctx *c)
{
    if (!(c->data_dir = resolve_data_dir(c->self, NULL, c->data_opt))) return EXIT_USAGE;
    cdx_store_opts o = {.progress = tty_progress};
    if (cdx_store_open(c->data_dir, &o, &c->store) != CDX_OK) return error("%s", cdx_last_error());
    return 0;
}

static int is_model_dir(const char *dir)
{
    char p[PATH_MAX];
    struct stat sb;
    if (snprintf(p, sizeof p, "%s/config.json", dir) >= (int)sizeof p) return 0;
    if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) return 1;
    /* an OpenCLIP directory, or a model given by its config file */
    if (snprintf(p, sizeof p, "%s/open_clip_config.json", dir) >= (int)sizeof p) return 0;
    if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) return 1;
    return stat(dir, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The model directory: --model, $CLIPDEX_MODEL, the model the store was
 * last indexed with (its vector space is the one with vectors), then
 * clipdex.conf's (resolve_model_dir).  Heap string or NULL (message
 * printed). */
static char *choose_model_dir(qctx *c)
{
    const char *env = getenv("CLIPDEX_MODEL"), *conf;
    cdx_store_model_info *mi = NULL;
    size_t n = 0;
    char *dir = NULL;

    if (c->model_opt && *c->model_opt) return xstrdup(c->model_opt);
    if (env && *env) return xstrdup(env);
    if (c->store && cdx_store_models(c->store, &mi, &n) == CDX_OK) {
        for (size_t i = 0; i < n && !dir; i++)
            if (mi[i].current && mi[i].dir && is_model_dir(mi[i].dir)) dir = xstrdup(mi[i].dir);
        cdx_store_models_free(mi, n);
    }
    if (!dir && (conf = resolve_model_dir(NULL))) dir = xstrdup(conf); /* else it said how to get one */
    return dir;
}

/* The precision a model of this context runs at (see one_shot). */
static int qctx_precision(qctx *c, cdx_model *m, unsigned towers)
{
    cdx_precision req;
    if (c->one_shot) {
        if (requested_precision(c->prec_opt, &req)) return -1;
        char *cache = cdx_weights_cache_dir();
        const cdx_precision native = cdx_precision_auto(NULL);
        free(cache);
        if (req == CDX_PRECISION_AUTO && (!cache || native == CDX_PRECISION_F32)) {
            /* no cache: converting costs more than a few encodes save */
            if (cdx_model_set_precision(m, CDX_PRECISION_F32)) return error("%s", cdx_last_error());
            return 0;
        }
        if (req == CDX_PRECISION_AUTO && towers == CDX_TOWER_TEXT) {
            /* A text query is a few rows: int8 (VNNI, which every CPU
             * with a native reduced precision has here) runs them in
             * qsmall.c at about half bf16's time and in half its memory,
             * within the int8 accuracy bars. */
            if (cdx_model_set_precision(m, CDX_PRECISION_INT8)) return error("%s", cdx_last_error());
            return 0;
        }
    }
    return apply_precision(m, c->prec_opt);
}

int qctx_open_model(qctx *c, unsigned towers)
{
    char cfg[PATH_MAX];
    const cdx_model_info *info;
    cdx_store_model sm;
    const char *name;
    cdx_status st;

    if (!(c->model_dir = choose_model_dir(c))) return EXIT_USAGE;
    if (cdx_model_open(c->model_dir, towers, &c->model) != CDX_OK) return error("%s", cdx_last_error());
    /* Preparing bf16/int8 weights costs ~0.4 s for the text tower: only
     * for commands that encode (the setting is still validated). */
    if (c->identity_only) {
        cdx_precision p;
        if (resolve_precision(c->prec_opt, &p, NULL)) return EXIT_USAGE;
    } else if (qctx_precision(c, c->model, towers)) {
        return EXIT_USAGE;
    }
    c->towers = towers;
    if (towers & CDX_TOWER_VISION) c->vision = c->model;
    info = cdx_model_get_info(c->model);
    c->dim = info->projection_dim;
    /* config.json, or open_clip_config.json for an OpenCLIP model */
    if ((info->config_file ? snprintf(cfg, sizeof cfg, "%s", info->config_file)
                           : snprintf(cfg, sizeof cfg, "%s/config.json", c->model_dir)) >= (int)sizeof cfg)
        return error("%s: path too long", c->model_dir);
    if (cdx_store_model_key(cfg, info->weights_file, c->model_key) != CDX_OK)
        return error("%s", cdx_last_error());
    name = strrchr(c->model_dir, '/');
    name = name && name[1] ? name + 1 : c->model_dir;
    sm.key = c->model_key;
    sm.name = name;
    sm.dir = c->model_dir;
    sm.dim = c->dim;
    sm.vision_key = NULL;
    st = cdx_store_use_model(c->store, &sm, &c->model_id);
    if (st == CDX_ERR_STORE) {
        /* Unknown key: a model whose image tower made vectors here (one
         * tuned with --lock image) searches them.  Hashing the tower
         * costs tenths of a second, so only on this miss; the store
         * remembers the key afterwards. */
        char vkey[2 * CDX_HASH_SIZE + 1];
        if (cdx_model_vision_key(c->model, vkey) != CDX_OK) return error("%s", cdx_last_error());
        sm.vision_key = vkey;
        st = cdx_store_use_model(c->store, &sm, &c->model_id);
    }
    if (st != CDX_OK) {
        /* a damaged database is not cured by indexing (its message says
         * what is); a missing model is */
        if (st == CDX_ERR_FORMAT) return error("%s", cdx_last_error());
        return error("%s (index the photos with this model first: clipdex index --model %s DIR)",
                     cdx_last_error(), c->model_dir);
    }
    return 0;
}

cdx_model *qctx_vision(qctx *c)
{
    if (c->vision) return c->vision;
    if (cdx_model_open(c->model_dir, CDX_TOWER_VISION, &c->vision) != CDX_OK) {
        error("%s", cdx_last_error());
        c->vision = NULL;
    } else if (qctx_precision(c, c->vision, CDX_TOWER_VISION)) {
        cdx_model_close(c->vision);
        c->vision = NULL;
    }
    return c->vision;
}

void qctx_release(qctx *c)
{
    if (!c) return;
    if (c->vision && c->vision != c->model) cdx_model_close(c->vision);
    cdx_model_close(c->model);
    cdx_store_close(c->store);
    free(c->model_dir);
    free(c->data_dir);
    c->vision = c->model = NULL;
    c->store = NULL;
    c->model_dir = c->data_dir = NULL;
}

/* ------------------------------------------------------------------ */
/* Image vectors                                                       */
/* ------------------------------------------------------------------ */

int embed_image_file(cdx_model *m, const char *path, float *out)
{
    const cdx_model_info *info = cdx_model_get_info(m);
    const int S = info->vision.image_size;
    float *px = xmalloc(sizeof(float) * 3 * (size_t)S * (size_t)S);
    int ret = 0;

    if (cdx_model_image_input(m, path, NULL, px) != CDX_OK ||
        cdx_model_encode_images(m, px, 1, out, 1) != CDX_OK)
        ret = error("%s", cdx_last_error());
    free(px);
    return ret;
}

/* A stored vector of the current model for the file row at path. */
static int stored_by_path(qctx *c, const char *path, float *out, int64_t *file_id)
{
    cdx_file_info fi;
    int found = 0, got = 0;
    if (cdx_store_get_file(c->store, path, &fi, &found) != CDX_OK || !found) return 0;
    if (file_id) *file_id = fi.id;
    if (fi.state == CDX_FILE_OK && fi.vector_id && fi.model_id == c->model_id &&
        cdx_store_get_vector(c->store, fi.vector_id, out) == CDX_OK)
        got = 1;
    cdx_file_info_release(&fi);
    return got;
}

struct by_hash {
    int64_t model_id, vector_id;
};

static int by_hash_cb(const cdx_file_info *fi, void *user)
{
    struct by_hash *b = user;
    if (fi->vector_id && fi->model_id == b->model_id) {
        b->vector_id = fi->vector_id;
        return 1;
    }
    return 0;
}

int image_vector(qctx *c, const char *path, float *out, int64_t *file_id)
{
    char *real = NULL;
    cdx_model *vm;
    uint8_t hash[CDX_HASH_SIZE];
    int ret;

    if (file_id) *file_id = 0;
    if (stored_by_path(c, path, out, file_id)) return 0;
    real = realpath(path, NULL);
    if (!real) return error("%s: %s", path, strerror(errno));
    ret = stored_by_path(c, real, out, file_id);
    free(real);
    if (ret) return 0;
    /* The same content indexed under another name is as good. */
    if (cdx_hash_file(path, hash, NULL) == CDX_OK) {
        cdx_store_filter f = {0};
        struct by_hash b = {c->model_id, 0};
        f.hash = hash;
        f.state = CDX_FILE_OK;
        if (cdx_store_foreach_file(c->store, &f, 0, by_hash_cb, &b) == CDX_OK && b.vector_id &&
            cdx_store_get_vector(c->store, b.vector_id, out) == CDX_OK)
            return 0;
    }
    if (!(vm = qctx_vision(c))) return EXIT_ERROR;
    return embed_image_file(vm, path, out);
}
