/*
 * cmd_moderate.c - `clipdex moderate`: a zero-shot CLIP sweep of the
 * indexed images for content that needs review.
 *
 *   1. The label set: --preset and --labels (see labels.h), all flagging
 *      presets when neither is given; the "everyday" background is added
 *      with any preset, and to a label file without unflagged labels.
 *   2. Each label's text embedding: the mean of its prompts' normalised
 *      embeddings (text tower only), renormalised.
 *   3. Each image's stored vector v (no image is decoded), scored as the
 *      model family scores (labels.h, label_probs):
 *         CLIP:   p_j = softmax(logit_scale * <v, label_j>) over all labels j
 *         SigLIP: p_j = sigmoid(logit_scale * <v, label_j> + logit_bias)
 *      and the image is reported for a flagged label when p_j reaches its
 *      threshold (--threshold overrides every label's).
 *   4. Results are stored per vector under the label set's identity (its
 *      name plus a hash of labels, prompts, thresholds and model): every
 *      flagged label that hit, and the most probable flagged label, so
 *      each scored image has at least one row and `--new` scores only the
 *      images indexed since the last sweep with the same set.  A changed
 *      label file is a new set, scored from scratch.
 *
 * Cost: the command holds a read-only store handle (so it runs next to
 * clipdexd), on which each cdx_store_moderation_put is a transaction of
 * its own with a synchronous commit: about 2 ms each on this machine.
 * That is why only those rows are stored; a first sweep over 100k images
 * spends most of its time (minutes) there.  A batched store call would
 * make it seconds.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters.h"
#include "labels.h"
#include "output.h"
#include "util.h" /* common/: x* allocators (out of memory aborts) */
#include "banned.h"

struct mfile {
    cdx_file_info fi;
};

struct result {
    size_t file;     /* index into files */
    size_t label;    /* index into the label set */
    float p;
};

/* A person's verdict from clipdex serve's moderation view ("reviewed",
 * "false_positive"): a marked (vector, label) is scored and stored as
 * usual but no longer reported. */
struct mark {
    int64_t vector_id;
    char *label;
};

struct moderate {
    qctx c;
    qfilter flt;
    labelset set;
    double threshold;        /* < 0: each label's own */
    int only_new;
    size_t limit;            /* 0: all */
    enum out_format format;
    int nul;
    const char *output;
    char setid[256];         /* stored label set identity */

    struct mfile *files;     /* OK files of the current model, by vector id */
    size_t n_files, cap_files;
    int oom;
    int64_t *done;           /* vectors already scored (sorted), for --new */
    size_t n_done, cap_done;
    struct mark *marks;      /* review marks (clipdex serve), vector order */
    size_t n_marks, cap_marks;
};

static int collect_cb(const cdx_file_info *fi, void *user)
{
    struct moderate *m = user;
    if (!fi->vector_id || fi->model_id != m->c.model_id) return 0;
    m->files = xgrow(m->files, &m->cap_files, m->n_files + 1, sizeof *m->files, 1024);
    if (cdx_file_info_copy(fi, &m->files[m->n_files].fi) != CDX_OK) return m->oom = 1;
    m->n_files++;
    return 0;
}

static int done_cb(int64_t vector_id, const char *label, float score, int flagged, void *user)
{
    struct moderate *m = user;
    (void)label;
    (void)score;
    (void)flagged;
    if (m->n_done && m->done[m->n_done - 1] == vector_id) return 0; /* rows come in vector order */
    m->done = xgrow(m->done, &m->cap_done, m->n_done + 1, sizeof *m->done, 1024);
    m->done[m->n_done++] = vector_id;
    return 0;
}

static int mark_cb(int64_t vector_id, const char *label, const char *mark, void *user)
{
    struct moderate *m = user;
    (void)mark;
    m->marks = xgrow(m->marks, &m->cap_marks, m->n_marks + 1, sizeof *m->marks, 64);
    m->marks[m->n_marks].label = xstrdup(label ? label : "");
    m->marks[m->n_marks++].vector_id = vector_id;
    return 0;
}

static int is_marked(const struct moderate *m, int64_t v, const char *label)
{
    for (size_t i = 0; i < m->n_marks; i++) /* few: marks are set by hand */
        if (m->marks[i].vector_id == v && strcmp(m->marks[i].label, label) == 0) return 1;
    return 0;
}

static int is_done(const struct moderate *m, int64_t v)
{
    size_t lo = 0, hi = m->n_done;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->done[mid] < v) lo = mid + 1;
        else if (m->done[mid] > v) hi = mid;
        else return 1;
    }
    return 0;
}

static int cmp_vector(const void *a, const void *b)
{
    const struct mfile *x = a, *y = b;
    if (x->fi.vector_id != y->fi.vector_id) return x->fi.vector_id < y->fi.vector_id ? -1 : 1;
    return strcmp(x->fi.meta.path, y->fi.meta.path);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* most probable first, then label order, then path */
static int cmp_result(const void *a, const void *b, void *ctx)
{
    const struct result *x = a, *y = b;
    const struct mfile *f = ctx;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    if (x->label != y->label) return x->label < y->label ? -1 : 1;
    return strcmp(f[x->file].fi.meta.path, f[y->file].fi.meta.path);
}

/* the gallery: a section per label, most probable first in each */
static int cmp_result_by_label(const void *a, const void *b, void *ctx)
{
    const struct result *x = a, *y = b;
    if (x->label != y->label) return x->label < y->label ? -1 : 1;
    return cmp_result(a, b, ctx);
}

/* The label embeddings: (L, E), each the renormalised mean of its
 * prompts' normalised embeddings. */
static int embed_labels(struct moderate *m, float *lab)
{
    const int E = m->c.dim;
    float *e = xmalloc((size_t)E * sizeof *e);
    for (size_t j = 0; j < m->set.n; j++) {
        const label *l = &m->set.v[j];
        float *row = lab + j * (size_t)E;
        double ss = 0;
        memset(row, 0, (size_t)E * sizeof *row);
        for (size_t i = 0; i < label_n_prompts(l); i++) {
            char *text = label_prompt(l, i);
            if (cdx_model_encode_text(m->c.model, text, e, 1) != CDX_OK) {
                free(text);
                free(e);
                return error("label '%s': %s", l->name, cdx_last_error());
            }
            free(text);
            for (int d = 0; d < E; d++) row[d] += e[d];
        }
        for (int d = 0; d < E; d++) ss += (double)row[d] * row[d];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.f;
        for (int d = 0; d < E; d++) row[d] *= inv;
    }
    free(e);
    return 0;
}

/* The identity results are stored under: name#hash(model key, labels). */
static int set_identity(struct moderate *m)
{
    size_t cap = 256, len = 0;
    char *buf = xmalloc(cap);
    uint8_t h[CDX_HASH_SIZE];
    char hex[2 * CDX_HASH_SIZE + 1];

#define PUT(...)                                                                   \
    do {                                                                           \
        int w_;                                                                    \
        while ((w_ = snprintf(buf + len, cap - len, __VA_ARGS__)) >= 0 &&          \
               (size_t)w_ >= cap - len) {                                          \
            buf = xrealloc(buf, cap * 2);                                          \
            cap *= 2;                                                              \
        }                                                                          \
        if (w_ > 0) len += (size_t)w_;                                             \
    } while (0)

    PUT("clipdex-moderate-1\n%s\n", m->c.model_key);
    for (size_t j = 0; j < m->set.n; j++) {
        const label *l = &m->set.v[j];
        double t = m->threshold >= 0 ? m->threshold : l->threshold;
        PUT("%s|%d|%.6f", l->name, l->flag, l->flag ? t : 0.0);
        for (size_t i = 0; i < label_n_prompts(l); i++) {
            char *p = label_prompt(l, i);
            PUT("|%s", p);
            free(p);
        }
        PUT("\n");
    }
#undef PUT
    cdx_hash_buf(buf, len, h);
    cdx_hash_hex(h, hex);
    snprintf(m->setid, sizeof m->setid, "%.200s#%.12s", m->set.name ? m->set.name : "labels", hex);
    free(buf);
    return 0;
}

static int print_results(struct moderate *m, struct result *r, size_t nr)
{
    out_file out;
    gallery *g = NULL;
    char date[32], cap[256], sub[512];
    size_t shown = 0, cur_label = (size_t)-1;
    unsigned char *seen = NULL;
    int ret;

    if (m->format == OUT_PATHS) seen = xcalloc(m->n_files + 1, 1);
    if ((ret = out_open(&out, m->output)) != 0) {
        free(seen);
        return ret;
    }
    if (m->format == OUT_HTML) {
        snprintf(sub, sizeof sub, "label set %s: %zu flagged label%s, %zu background; %zu result%s",
                 m->setid, labelset_count(&m->set, 1), labelset_count(&m->set, 1) == 1 ? "" : "s",
                 labelset_count(&m->set, 0), nr, nr == 1 ? "" : "s");
        g = gallery_new(out.f, "clipdex moderate", sub);
    }
    for (size_t i = 0; i < nr; i++) {
        const cdx_file_info *fi = &m->files[r[i].file].fi;
        const label *l = &m->set.v[r[i].label];
        out_date(date, sizeof date, file_when(fi));
        switch (m->format) {
        case OUT_TABLE:
            fprintf(out.f, "%.3f  %-24s  %s  ", (double)r[i].p, l->name, date);
            out_table_path(out.f, fi->meta.path);
            fputc('\n', out.f);
            break;
        case OUT_PATHS:
            if (!seen[r[i].file]) out_path_line(out.f, fi->meta.path, m->nul);
            seen[r[i].file] = 1;
            break;
        case OUT_JSON:
            fputs("{\"label\":", out.f);
            print_json_string(out.f, l->name);
            fputs(",\"score\":", out.f);
            print_float(out.f, r[i].p);
            fprintf(out.f, ",\"threshold\":%.4g,\"labelset\":", m->threshold >= 0 ? m->threshold : l->threshold);
            print_json_string(out.f, m->setid);
            fputc(',', out.f);
            out_json_file(out.f, fi);
            fputs("}\n", out.f);
            break;
        case OUT_HTML:
            if (r[i].label != cur_label) {
                snprintf(cap, sizeof cap, "%s", l->name);
                gallery_section(g, cap);
                cur_label = r[i].label;
            }
            snprintf(cap, sizeof cap, "%.3f %s  %s", (double)r[i].p, l->name, date);
            gallery_item(g, fi->meta.path, cap);
            break;
        }
        shown++;
    }
    if (g) {
        int bad = gallery_finish(g);
        if (bad) warning("%d thumbnail%s could not be made (see the page)", bad, bad == 1 ? "" : "s");
    }
    free(seen);
    ret = out_close(&out, 1);
    if (ret == 0 && m->output && m->format == OUT_HTML)
        fprintf(stderr, "clipdex: wrote %zu result%s to %s\n", shown, shown == 1 ? "" : "s", m->output);
    return ret;
}

static int sweep(struct moderate *m)
{
    const int E = m->c.dim;
    const size_t L = m->set.n;
    float *lab = NULL, *v = NULL, *p = NULL;
    struct result *res = NULL;
    size_t nres = 0, cap = 0, scored = 0;
    const cdx_model_info *info = cdx_model_get_info(m->c.model);
    double scale = info->logit_scale, bias = info->logit_bias, *cosv = NULL;
    const int sigmoid = info->scoring == CDX_SCORING_SIGMOID;
    int ret;

    if (!(scale > 0) || !isfinite(scale)) scale = 100.0; /* CLIP's trained value */
    if (!isfinite(bias)) bias = 0;
    if ((ret = set_identity(m)) != 0) return ret;
    lab = xmalloc(L * (size_t)E * sizeof *lab);
    v = xmalloc((size_t)E * sizeof *v);
    p = xmalloc(L * sizeof *p);
    cosv = xmalloc(L * sizeof *cosv);
    if ((ret = embed_labels(m, lab)) != 0) goto cleanup;

    m->flt.f.state = CDX_FILE_OK;
    if (cdx_store_foreach_file(m->c.store, &m->flt.f, 0, collect_cb, m) != CDX_OK) {
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    if (m->only_new && cdx_store_moderation_foreach(m->c.store, m->setid, done_cb, m) != CDX_OK) {
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    if (cdx_store_mark_foreach(m->c.store, mark_cb, m) != CDX_OK) {
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    if (m->oom) { /* cdx_file_info_copy failed */
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    if (m->n_files) qsort(m->files, m->n_files, sizeof *m->files, cmp_vector);
    if (m->n_done) qsort(m->done, m->n_done, sizeof *m->done, cmp_i64);

    for (size_t i = 0; i < m->n_files;) {
        int64_t vid = m->files[i].fi.vector_id;
        size_t end = i;
        while (end < m->n_files && m->files[end].fi.vector_id == vid) end++;
        if (m->only_new && is_done(m, vid)) {
            i = end;
            continue;
        }
        if (cdx_store_get_vector(m->c.store, vid, v) != CDX_OK) {
            ret = error("%s", cdx_last_error());
            goto cleanup;
        }
        /* the family's scoring (label_probs): softmax over the labels
         * for CLIP, a sigmoid per label with the bias for SigLIP */
        for (size_t j = 0; j < L; j++) {
            const float *row = lab + j * (size_t)E;
            double dot = 0;
            for (int d = 0; d < E; d++) dot += (double)row[d] * v[d];
            cosv[j] = dot;
        }
        label_probs(sigmoid, scale, bias, cosv, L, p);
        scored++;
        /* Stored: every flagged label that hit, and the most probable
         * flagged label even when it did not (so each scored image has a
         * row, which is what --new looks for).  Not every label: each row
         * is its own transaction on a read-only handle (see the report in
         * the header comment). */
        size_t top = (size_t)-1;
        for (size_t j = 0; j < L; j++)
            if (m->set.v[j].flag && (top == (size_t)-1 || p[j] > p[top])) top = j;
        for (size_t j = 0; j < L; j++) {
            const label *l = &m->set.v[j];
            double t = m->threshold >= 0 ? m->threshold : l->threshold;
            int hit;
            if (!l->flag) continue;
            hit = p[j] >= t;
            if ((hit || j == top) &&
                cdx_store_moderation_put(m->c.store, vid, m->setid, l->name, p[j], hit) != CDX_OK) {
                ret = error("%s", cdx_last_error());
                goto cleanup;
            }
            if (!hit || is_marked(m, vid, l->name)) continue;
            for (size_t k = i; k < end; k++) {
                res = xgrow(res, &cap, nres + 1, sizeof *res, 64);
                res[nres++] = (struct result){k, j, p[j]};
            }
        }
        i = end;
    }
    /* -n keeps the most probable results, whatever their label */
    if (nres) qsort_r(res, nres, sizeof *res, cmp_result, m->files);
    if (m->limit && nres > m->limit) nres = m->limit;
    if (nres && m->format == OUT_HTML) qsort_r(res, nres, sizeof *res, cmp_result_by_label, m->files);
    if ((ret = print_results(m, res, nres)) != 0) goto cleanup;
    if (m->format != OUT_HTML || m->output)
        fprintf(stderr, "clipdex: scored %zu image%s against %zu labels (%s)%s\n", scored,
                scored == 1 ? "" : "s", L, m->setid, m->only_new ? ", new ones only" : "");
    ret = nres ? EXIT_FOUND : EXIT_NOTFOUND;
cleanup:
    free(res);
    free(lab);
    free(v);
    free(p);
    free(cosv);
    for (size_t i = 0; i < m->n_marks; i++) free(m->marks[i].label);
    free(m->marks);
    m->marks = NULL;
    m->n_marks = m->cap_marks = 0;
    return ret;
}

enum { OPT_PRESET = OPT_CMD_BASE, OPT_LABELS, OPT_THRESHOLD, OPT_NEW, OPT_LIST, OPT_FORMAT };

int cmd_moderate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"preset", required_argument, NULL, OPT_PRESET},
        {"labels", required_argument, NULL, OPT_LABELS},
        {"threshold", required_argument, NULL, OPT_THRESHOLD},
        {"new", no_argument, NULL, OPT_NEW},
        {"list-presets", no_argument, NULL, OPT_LIST},
        {"limit", required_argument, NULL, 'n'},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"output", required_argument, NULL, 'o'},
        QFILTER_LONG_OPTIONS,
        QCTX_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const cdx_cmd *self = cmd_find("moderate");
    struct moderate m;
    char err[512];
    int ch, ret = EXIT_USAGE, list = 0, any_set = 0, any_preset = 0;
    double t;

    memset(&m, 0, sizeof m);
    m.c.self = self;
    m.threshold = -1;
    m.format = OUT_TABLE;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "n:o:0", opts, NULL)) != -1) {
        int r;
        if ((r = qfilter_option(&m.flt, self, ch, optarg)) != 0) {
            if (r != 1) goto cleanup;
            continue;
        }
        if (qctx_option(&m.c, ch, optarg)) continue;
        switch (ch) {
        case OPT_PRESET:
            if (labelset_add_preset(&m.set, optarg, err, sizeof err) != 0) {
                ret = usage_error(self, "%s", err);
                goto cleanup;
            }
            any_set = any_preset = 1;
            break;
        case OPT_LABELS:
            if (labelset_add_file(&m.set, optarg, err, sizeof err) != 0) {
                ret = error("%s", err);
                goto cleanup;
            }
            any_set = 1;
            break;
        case OPT_THRESHOLD:
            if (parse_double(optarg, &t) != 0 || t < 0 || t > 1) {
                ret = usage_error(self, "--threshold must be a probability in [0, 1], not '%s'", optarg);
                goto cleanup;
            }
            m.threshold = t;
            break;
        case OPT_NEW: m.only_new = 1; break;
        case OPT_LIST: list = 1; break;
        case 'n':
            if (parse_size(optarg, &m.limit) != 0 || m.limit == 0) {
                ret = usage_error(self, "--limit must be a positive integer, not '%s'", optarg);
                goto cleanup;
            }
            break;
        case OPT_FORMAT:
            if (out_parse_format(optarg, &m.format) != 0) {
                ret = usage_error(self, "--format must be table, paths, json or html, not '%s'", optarg);
                goto cleanup;
            }
            break;
        case 'o': m.output = optarg; break;
        case '0': m.nul = 1; break;
        default:
            ret = usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
            goto cleanup;
        }
    }
    if (optind < argc) {
        ret = usage_error(self, "unexpected argument '%s'", argv[optind]);
        goto cleanup;
    }
    if (list) {
        labels_list_presets(stdout);
        ret = EXIT_OK;
        goto cleanup;
    }
    if (m.nul && m.format != OUT_PATHS) {
        ret = usage_error(self, "-0 goes with --format paths");
        goto cleanup;
    }
    if (!any_set) {
        if (labelset_add_all_presets(&m.set, err, sizeof err) != 0) {
            ret = error("%s", err);
            goto cleanup;
        }
        any_preset = 1;
    }
    if (!labelset_count(&m.set, 1)) {
        ret = usage_error(self, "no label is flagged: mark some with '| yes' in the label file");
        goto cleanup;
    }
    /* The presets are written to compete with the everyday background; a
     * label file brings its own unless it has no unflagged label. */
    if ((any_preset || !labelset_count(&m.set, 0)) &&
        labelset_add_preset(&m.set, "everyday", err, sizeof err) != 0) {
        ret = error("%s", err);
        goto cleanup;
    }
    if ((ret = qctx_open_store(&m.c)) != 0) goto cleanup;
    if ((ret = qctx_open_model(&m.c, CDX_TOWER_TEXT)) != 0) goto cleanup;
    ret = sweep(&m);
cleanup:
    for (size_t i = 0; i < m.n_files; i++) cdx_file_info_release(&m.files[i].fi);
    free(m.files);
    free(m.done);
    labelset_release(&m.set);
    qctx_release(&m.c);
    qfilter_release(&m.flt);
    return ret;
}
