/*
 * cmd_search.c - `clipdex search` (by words, by example, or both) and
 * `clipdex similar PATH` (search with one image term).
 *
 * The query vector is built as rclip does: every term (a text, an image)
 * is embedded and L2-normalised, multiplied by its weight (default 1),
 * added for positive terms (QUERY words, --text, --image) and subtracted
 * for negative ones (--not, --not-image); the sum is normalised again and
 * searched by cosine similarity in the store's vector space of the model
 * loaded here.  Texts need only the text tower, so a text search never
 * touches the vision weights; an image term uses the stored vector when
 * the image (its path or its content) is indexed, and the vision tower
 * only for a new image.
 *
 * Filters go to cdx_store_search, which applies them together with the
 * vector search (never by cutting the top k first).  The store is opened
 * read-only, so searching works while clipdexd writes and sees everything
 * it has committed.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"
#include "search.h"
#include "banned.h"

#define DEFAULT_LIMIT 20

struct search_opts {
    qterm *terms;
    size_t n_terms;
    char *joined;       /* the QUERY words joined by spaces */
    size_t limit;
    float min_score;
    enum out_format format;
    int nul;
    const char *output;
};

enum { OPT_TEXT = OPT_CMD_BASE, OPT_IMAGE, OPT_NOT, OPT_NOT_IMAGE, OPT_MIN_SCORE, OPT_FORMAT };

static const struct option search_long[] = {
    {"limit", required_argument, NULL, 'n'},
    {"min-score", required_argument, NULL, OPT_MIN_SCORE},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"output", required_argument, NULL, 'o'},
    {"text", required_argument, NULL, OPT_TEXT},
    {"image", required_argument, NULL, OPT_IMAGE},
    {"not", required_argument, NULL, OPT_NOT},
    {"not-image", required_argument, NULL, OPT_NOT_IMAGE},
    {"weight", required_argument, NULL, 'w'},
    QFILTER_LONG_OPTIONS,
    QCTX_LONG_OPTIONS,
    {NULL, 0, NULL, 0},
};

/* A one-line description of the query, for the gallery title. */
static void describe(const struct search_opts *o, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < o->n_terms && len < n; i++) {
        const qterm *t = &o->terms[i];
        int w;
        if (i || t->sign < 0) {
            w = snprintf(buf + len, n - len, "%s", t->sign < 0 ? (i ? " - " : "- ") : " + ");
            len += w > 0 ? (size_t)w : 0;
            if (len >= n) break;
        }
        if (t->weight != 1.0) {
            w = snprintf(buf + len, n - len, "%g*", t->weight);
            len += w > 0 ? (size_t)w : 0;
            if (len >= n) break;
        }
        w = snprintf(buf + len, n - len, t->image ? "[%s]" : "\"%s\"", t->value);
        len += w > 0 ? (size_t)w : 0;
    }
}

static int print_hits(const struct search_opts *o, const char *title, const cdx_store_hit *hits,
                      size_t n, int64_t skip_id, size_t *printed)
{
    out_file out;
    gallery *g = NULL;
    char date[32], cap[96], desc[512];
    size_t rank = 0;
    int ret;

    if ((ret = out_open(&out, o->output)) != 0) return ret;
    if (o->format == OUT_HTML) {
        describe(o, desc, sizeof desc);
        g = gallery_new(out.f, title, desc);
    }
    for (size_t i = 0; i < n && rank < o->limit; i++) {
        const cdx_file_info *fi = &hits[i].file;
        if (skip_id && fi->id == skip_id) continue;
        rank++;
        out_date(date, sizeof date, file_when(fi));
        switch (o->format) {
        case OUT_TABLE:
            fprintf(out.f, "%.4f  %s  ", (double)hits[i].score, date);
            out_table_path(out.f, fi->meta.path);
            fputc('\n', out.f);
            break;
        case OUT_PATHS:
            out_path_line(out.f, fi->meta.path, o->nul);
            break;
        case OUT_JSON:
            fprintf(out.f, "{\"rank\":%zu,\"score\":", rank);
            print_float(out.f, hits[i].score);
            fputc(',', out.f);
            out_json_file(out.f, fi);
            fputs("}\n", out.f);
            break;
        case OUT_HTML:
            snprintf(cap, sizeof cap, "#%zu  %.4f  %s", rank, (double)hits[i].score, date);
            gallery_item(g, fi->meta.path, cap);
            break;
        }
    }
    if (g) {
        int bad = gallery_finish(g);
        if (bad) warning("%d thumbnail%s could not be made (see the page)", bad, bad == 1 ? "" : "s");
    }
    *printed = rank;
    ret = out_close(&out, 1);
    if (ret == 0 && o->output && o->format == OUT_HTML)
        fprintf(stderr, "clipdex: wrote %zu result%s to %s\n", rank, rank == 1 ? "" : "s", o->output);
    return ret;
}

/* Does some image term name a file the store does not have?  Decides
 * whether the model is opened with its vision tower right away. */
static int needs_vision(qctx *c, const struct search_opts *o)
{
    for (size_t i = 0; i < o->n_terms; i++) {
        cdx_file_info fi;
        int found = 0;
        char *real;
        if (!o->terms[i].image) continue;
        real = realpath(o->terms[i].value, NULL);
        if (cdx_store_get_file(c->store, real ? real : o->terms[i].value, &fi, &found) == CDX_OK && found) {
            if (fi.state != CDX_FILE_OK) found = 0;
            cdx_file_info_release(&fi);
        }
        free(real);
        if (!found) return 1;
    }
    return 0;
}

static int search_and_print(const cdx_cmd *self, struct search_opts *o, qfilter *flt, qctx *c, int similar)
{
    float *q = NULL;
    cdx_store_hit *hits = NULL;
    size_t n_hits = 0, printed = 0;
    unsigned towers = 0;
    int64_t skip_id = 0;
    int ret, any_text = 0, any_pos = 0;

    for (size_t i = 0; i < o->n_terms; i++) {
        any_text |= !o->terms[i].image;
        any_pos |= o->terms[i].sign > 0;
    }
    if (!any_pos) return usage_error(self, "nothing to search for: give QUERY, --text or --image");
    if ((ret = qctx_open_store(c)) != 0) return ret;
    if (any_text) towers |= CDX_TOWER_TEXT;
    if (needs_vision(c, o)) towers |= CDX_TOWER_VISION;
    if (!towers) towers = CDX_TOWER_TEXT; /* only for the model's identity */
    c->one_shot = 1; /* auto: float32 (filters.h) */
    if ((ret = qctx_open_model(c, towers)) != 0) return ret;

    q = xcalloc((size_t)c->dim, sizeof *q);
    if ((ret = query_vector(c, o->terms, o->n_terms, q, similar ? &skip_id : NULL)) != 0) goto cleanup;
    if (cdx_store_search(c->store, q, o->limit + (skip_id ? 1 : 0), flt ? &flt->f : NULL,
                         o->min_score, &hits, &n_hits) != CDX_OK) {
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    ret = print_hits(o, similar ? "clipdex similar" : "clipdex search", hits, n_hits, skip_id, &printed);
    if (ret == 0) ret = printed ? EXIT_FOUND : EXIT_NOTFOUND;
cleanup:
    cdx_store_hits_free(hits, n_hits);
    free(q);
    return ret;
}

static int add_term(struct search_opts *o, int image, int sign, double *weight, const char *value)
{
    o->terms[o->n_terms++] = (qterm){image, sign, *weight, value, NULL};
    *weight = 1.0;
    return 0;
}

static int search_main(int argc, char **argv, int similar)
{
    const cdx_cmd *self = cmd_find(similar ? "similar" : "search");
    struct search_opts o = {0};
    qfilter flt = {0};
    qctx c = {0};
    double weight = 1.0, v;
    int ch, ret = EXIT_USAGE, weight_pending = 0;
    size_t len = 0;

    c.self = self;
    o.limit = DEFAULT_LIMIT;
    o.min_score = -2.0f;
    o.format = OUT_TABLE;
    o.terms = xcalloc((size_t)argc + 1, sizeof *o.terms);
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, similar ? "n:o:0" : "n:o:w:0", search_long, NULL)) != -1) {
        int r;
        if ((r = qfilter_option(&flt, self, ch, optarg)) != 0) {
            if (r != 1) goto cleanup;
            continue;
        }
        if (qctx_option(&c, ch, optarg)) continue;
        if (similar && (ch == OPT_TEXT || ch == OPT_IMAGE || ch == OPT_NOT || ch == OPT_NOT_IMAGE || ch == 'w')) {
            ret = usage_error(self, "'%s' is a search option; similar takes one PATH", argv[optind - 1]);
            goto cleanup;
        }
        switch (ch) {
        case 'n':
            if (parse_size(optarg, &o.limit) != 0 || o.limit == 0) {
                ret = usage_error(self, "--limit must be a positive integer, not '%s'", optarg);
                goto cleanup;
            }
            break;
        case OPT_MIN_SCORE:
            if (parse_double(optarg, &v) != 0 || v < -1 || v > 1) {
                ret = usage_error(self, "--min-score must be a number in [-1, 1], not '%s'", optarg);
                goto cleanup;
            }
            o.min_score = (float)v;
            break;
        case OPT_FORMAT:
            if (out_parse_format(optarg, &o.format) != 0) {
                ret = usage_error(self, "--format must be table, paths, json or html, not '%s'", optarg);
                goto cleanup;
            }
            break;
        case 'o': o.output = optarg; break;
        case '0': o.nul = 1; break;
        case 'w':
            if (parse_double(optarg, &weight) != 0 || !(weight > 0)) {
                ret = usage_error(self, "--weight must be a positive number, not '%s'", optarg);
                goto cleanup;
            }
            weight_pending = 1;
            break;
        case OPT_TEXT: add_term(&o, 0, 1, &weight, optarg); weight_pending = 0; break;
        case OPT_IMAGE: add_term(&o, 1, 1, &weight, optarg); weight_pending = 0; break;
        case OPT_NOT: add_term(&o, 0, -1, &weight, optarg); weight_pending = 0; break;
        case OPT_NOT_IMAGE: add_term(&o, 1, -1, &weight, optarg); weight_pending = 0; break;
        default:
            ret = usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
            goto cleanup;
        }
    }
    if (weight_pending) {
        ret = usage_error(self, "--weight applies to the term option after it (--text, --image, --not, --not-image)");
        goto cleanup;
    }
    if (o.nul && o.format != OUT_PATHS) {
        ret = usage_error(self, "-0 goes with --format paths");
        goto cleanup;
    }
    if (similar) {
        if (argc - optind != 1) {
            ret = usage_error(self, argc - optind ? "similar takes exactly one PATH" : "which image? give a PATH");
            goto cleanup;
        }
        o.terms[o.n_terms++] = (qterm){1, 1, 1.0, argv[optind], NULL};
    } else if (optind < argc) {
        /* The QUERY words are one text, as typed without quotes. */
        for (int i = optind; i < argc; i++) len += strlen(argv[i]) + 1;
        o.joined = xmalloc(len);
        o.joined[0] = 0;
        for (int i = optind, at = 0; i < argc; i++)
            at += snprintf(o.joined + at, len - (size_t)at, "%s%s", i > optind ? " " : "", argv[i]);
        /* first, so the title reads naturally */
        memmove(o.terms + 1, o.terms, o.n_terms * sizeof *o.terms);
        o.terms[0] = (qterm){0, 1, 1.0, o.joined, NULL};
        o.n_terms++;
    }
    ret = search_and_print(self, &o, &flt, &c, similar);
cleanup:
    qctx_release(&c);
    qfilter_release(&flt);
    free(o.joined);
    free(o.terms);
    return ret;
}

int cmd_search(int argc, char **argv)
{
    return search_main(argc, argv, 0);
}

int cmd_similar(int argc, char **argv)
{
    return search_main(argc, argv, 1);
}
