/*
 * cmd_eval.c - `clipdex eval`: the CLIP paper's two evaluations, run on
 * the user's own data with any model clipdex loads.
 *
 * Zero-shot classification (--classes DIR|TSV, read by query/pairs.c in
 * PAIRS_LABELS mode).  The classes are the distinct labels, in byte order;
 * a label's prompt name is the label with '_' read as a space
 * ("golden_retriever" -> "golden retriever").  Each class is embedded as
 * `clipdex moderate` embeds a label: every template with "{}" replaced by
 * the name, each prompt's normalised embedding averaged, the mean
 * renormalised (the default templates are moderate's ensemble,
 * query/labels.c; --template and --templates replace them).  An image's
 * class ranking is by cosine; its rank is 1 + the number of classes
 * scoring strictly higher than the true one, so top-k means rank <= k.
 * Per class: the images, top-1 and top-5 accuracy, and the class its
 * images were most often wrongly given at top-1 (ties: the first class).
 * Chance is 1/C for top-1 and min(5, C)/C for top-5.
 *
 * Retrieval (--pairs PAIRS, query/pairs.c in PAIRS_CAPTIONS mode).  The
 * gallery is the distinct images (by path) and the distinct captions (by
 * exact text): a caption that several images share is one text, relevant
 * to each of them, and an image listed with several captions is one image
 * relevant to each.  Image->text: every image is a query over the
 * captions; text->image: every caption is a query over the images.  A
 * query's rank is 1 + the number of candidates scoring strictly higher
 * than its best-scoring relevant one, and recall@k is the share of
 * queries with rank <= k (as COCO's multi-caption retrieval counts).  So a
 * duplicated caption never counts against the model: ranking "a dog" above
 * "a dog" is not a mistake.  Images that fail to decode are skipped with
 * their pairs, and captions left with no image leave the gallery.
 *
 * Scores are cosines in double precision (dgemm over the float vectors);
 * the families' own scoring (softmax, sigmoid with bias) is monotonic in
 * the cosine, so the rankings are the model's.  Images are decoded on
 * every core and embedded through cdx_model_encode_images in batches, as
 * `clipdex embed` does.
 */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "labels.h"
#include "pairs.h"

#define BATCH 32
#define MAX_THREADS 16

/* ---------------------------------------------------------------- embedding */

struct decode_job {
    const cdx_model *m;
    const cdx_input_opts *in;
    char *const *paths;
    int n, stride, first;
    float *pix;          /* (n, per) */
    size_t per;
    char **err;          /* per item: heap message on failure */
};

static void *decode_thread(void *arg)
{
    struct decode_job *j = arg;
    for (int i = j->first; i < j->n; i += j->stride)
        if (cdx_model_image_input(j->m, j->paths[i], j->in, j->pix + j->per * (size_t)i))
            j->err[i] = xstrdup(cdx_last_error());
    return NULL;
}

/* Embed n images (normalised) into emb (n, E); ok[i] says which decoded.
 * A failure prints one line and counts in *skipped.  0 or EXIT_ERROR. */
static int embed_images(cdx_model *m, char *const *paths, int n, int fast, float *emb, int *ok, int *skipped)
{
    const cdx_model_info *info = cdx_model_get_info(m);
    const int S = info->vision.image_size, E = info->projection_dim;
    const size_t per = 3 * (size_t)S * S;
    cdx_input_opts in = {.mode = fast ? CDX_INPUT_FAST : CDX_INPUT_EXACT};
    float *pix = xmalloc(per * sizeof(float) * BATCH), *out = xmalloc(sizeof(float) * (size_t)E * BATCH);
    char *err[BATCH];
    long nt = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = nt < 1 ? 1 : nt > MAX_THREADS ? MAX_THREADS : (int)nt, ret = 0;
    const int tty = isatty(STDERR_FILENO);

    for (int b0 = 0; b0 < n; b0 += BATCH) {
        int bn = n - b0 < BATCH ? n - b0 : BATCH, t;
        struct decode_job jobs[MAX_THREADS];
        pthread_t tid[MAX_THREADS];
        int started[MAX_THREADS] = {0};
        memset(err, 0, sizeof err);
        for (t = 0; t < threads && t < bn; t++) {
            jobs[t] = (struct decode_job){m, &in, paths + b0, bn, threads < bn ? threads : bn, t, pix, per, err};
            /* thread 0 is this one; if a thread cannot start, do its share here */
            if (t > 0 && pthread_create(&tid[t], NULL, decode_thread, &jobs[t]) == 0) started[t] = 1;
        }
        decode_thread(&jobs[0]);
        for (int k = 1; k < t; k++) {
            if (started[k]) pthread_join(tid[k], NULL);
            else decode_thread(&jobs[k]);
        }
        /* failed slots are compacted away before the batch is encoded */
        int kept = 0;
        for (int i = 0; i < bn; i++) {
            ok[b0 + i] = !err[i];
            if (err[i]) {
                if (tty) fputc('\n', stderr);
                warning("%s (skipped)", err[i]);
                free(err[i]);
                (*skipped)++;
                continue;
            }
            if (kept != i) memcpy(pix + per * (size_t)kept, pix + per * (size_t)i, per * sizeof(float));
            kept++;
        }
        if (kept && cdx_model_encode_images(m, pix, kept, out, 1)) {
            ret = error("%s", cdx_last_error());
            break;
        }
        for (int i = 0, k = 0; i < bn; i++)
            if (ok[b0 + i]) memcpy(emb + (size_t)(b0 + i) * E, out + (size_t)(k++) * E, sizeof(float) * (size_t)E);
        tty_progress("eval: images", b0 + bn, n, NULL);
    }
    free(pix);
    free(out);
    return ret;
}

/* ---------------------------------------------------------------- helpers */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The index of s among the n sorted strings v (it is there). */
static int find_sorted(char *const *v, int n, const char *s)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (strcmp(v[mid], s) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The sorted distinct paths (text = 0) or texts of the items: a heap
 * array of pointers borrowed from them. */
static char **distinct(const pair_item *items, size_t n, int text, int *n_out)
{
    char **v = xmalloc(sizeof(char *) * (n ? n : 1));
    int k = 0;
    for (size_t i = 0; i < n; i++) v[i] = text ? items[i].text : items[i].path;
    qsort(v, n, sizeof *v, cmp_str);
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(v[k - 1], v[i])) v[k++] = v[i];
    *n_out = k;
    return v;
}

/* Rows of a (n, E) float matrix as double. */
static double *to_double(const float *x, size_t n, int E)
{
    double *d = xmalloc(sizeof(double) * (n ? n : 1) * (size_t)E);
    for (size_t i = 0; i < n * (size_t)E; i++) d[i] = x[i];
    return d;
}

static double pct(int a, int b)
{
    return b ? 100.0 * a / b : 0;
}

/* ---------------------------------------------------------------- classification */

struct cls_result {
    int n_classes, n_templates, images, skipped, top1, top5;
    char **classes;        /* borrowed from the pairs */
    int *count, *c_top1, *c_top5;
    int *confused;         /* (C, C): [true][predicted at top-1], errors only */
    int *most, *confused_n; /* per class: the most confused class (-1: none), its count */
};

static char *prompt_for(const char *tmpl, const char *label)
{
    char *name = xstrdup(label);
    for (char *c = name; *c; c++)
        if (*c == '_') *c = ' ';
    const char *hole = strstr(tmpl, "{}");
    char *out = xasprintf("%.*s%s%s", (int)(hole - tmpl), tmpl, name, hole + 2);
    free(name);
    return out;
}

static int classify(cdx_model *m, const char *data, char **templates, int n_templates, int fast,
                    struct cls_result *r, pairs *pr)
{
    char err[1024];
    const int E = cdx_model_get_info(m)->projection_dim;
    float *cls = NULL, *emb = NULL, *e = NULL;
    int *ok = NULL, *label_of = NULL, ret = 0;
    char **paths = NULL;

    if (pairs_read(pr, data, PAIRS_LABELS, err, sizeof err)) return error("%s", err);
    for (size_t i = 0; i < pr->skipped.n; i++) warning("%s (skipped)", pr->skipped.v[i]);
    r->skipped = (int)pr->skipped.n;
    r->n_templates = n_templates;
    r->classes = distinct(pr->v, pr->n, 1, &r->n_classes);
    if (r->n_classes < 2) {
        ret = error("%s: %d class%s: zero-shot classification needs at least 2", data, r->n_classes,
                    r->n_classes == 1 ? "" : "es");
        goto out;
    }
    const int C = r->n_classes, N = (int)pr->n;
    cls = xcalloc((size_t)C * E, sizeof(float));
    e = xmalloc(sizeof(float) * (size_t)E);
    for (int c = 0; c < C; c++) {
        float *row = cls + (size_t)c * E;
        double ss = 0;
        for (int t = 0; t < n_templates; t++) {
            char *text = prompt_for(templates[t], r->classes[c]);
            if (cdx_model_encode_text(m, text, e, 1)) {
                ret = error("class '%s': %s", r->classes[c], cdx_last_error());
                free(text);
                goto out;
            }
            free(text);
            for (int d = 0; d < E; d++) row[d] += e[d];
        }
        for (int d = 0; d < E; d++) ss += (double)row[d] * row[d];
        for (int d = 0; d < E; d++) row[d] = ss > 0 ? (float)(row[d] / sqrt(ss)) : 0.f;
    }

    paths = xmalloc(sizeof(char *) * (size_t)(N ? N : 1));
    label_of = xmalloc(sizeof(int) * (size_t)(N ? N : 1));
    for (int i = 0; i < N; i++) {
        paths[i] = pr->v[i].path;
        label_of[i] = find_sorted(r->classes, C, pr->v[i].text);
    }
    emb = xcalloc((size_t)(N ? N : 1) * E, sizeof(float));
    ok = xcalloc((size_t)(N ? N : 1), sizeof(int));
    if ((ret = embed_images(m, paths, N, fast, emb, ok, &r->skipped))) goto out;

    r->count = xcalloc((size_t)C, sizeof(int));
    r->c_top1 = xcalloc((size_t)C, sizeof(int));
    r->c_top5 = xcalloc((size_t)C, sizeof(int));
    r->confused = xcalloc((size_t)C * C, sizeof(int)); /* [true][predicted] */
    r->confused_n = xcalloc((size_t)C, sizeof(int));
    r->most = xcalloc((size_t)C, sizeof(int));
    double *sc = xmalloc(sizeof(double) * (size_t)C);
    for (int i = 0; i < N; i++) {
        if (!ok[i]) continue;
        const float *x = emb + (size_t)i * E;
        int best = 0, y = label_of[i], rank = 1;
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int d = 0; d < E; d++) s += (double)x[d] * cls[(size_t)c * E + d];
            sc[c] = s;
            if (s > sc[best]) best = c;
        }
        for (int c = 0; c < C; c++) rank += sc[c] > sc[y];
        r->images++;
        r->count[y]++;
        if (rank == 1) r->top1++, r->c_top1[y]++;
        if (rank <= 5) r->top5++, r->c_top5[y]++;
        if (rank > 1) r->confused[(size_t)y * C + best]++;
    }
    free(sc);
    for (int c = 0; c < C; c++) {
        int arg = -1;
        for (int k = 0; k < C; k++)
            if (r->confused[(size_t)c * C + k] > (arg < 0 ? 0 : r->confused[(size_t)c * C + arg])) arg = k;
        r->confused_n[c] = arg < 0 ? 0 : r->confused[(size_t)c * C + arg];
        r->most[c] = arg;
    }
    if (!r->images) ret = error("%s: no image could be evaluated", data);
out:
    free(cls);
    free(e);
    free(emb);
    free(ok);
    free(label_of);
    free(paths);
    return ret;
}

static void cls_release(struct cls_result *r)
{
    free(r->classes);
    free(r->count);
    free(r->c_top1);
    free(r->c_top5);
    free(r->confused);
    free(r->confused_n);
    free(r->most);
}

/* ---------------------------------------------------------------- retrieval */

struct ret_result {
    int pairs, skipped, no_caption, images, captions;
    int i2t[3], t2i[3];     /* queries with rank <= 1, 5, 10 */
};

static const int KS[3] = {1, 5, 10};

/* For each of the nq queries (rows of q, (nq,E)) against the nc
 * candidates (rows of c): the rank of its best relevant candidate.
 * rel[k] lists query k's relevant candidates (rel_off[k]..rel_off[k+1]).
 * Blocks of queries keep the score matrix small. */
static void ranks(const double *q, int nq, const double *c, int nc, int E, const int *rel_off,
                  const int *rel, int hits[3])
{
    enum { QB = 64 };
    double *s = xmalloc(sizeof(double) * QB * (size_t)(nc ? nc : 1));
    for (int q0 = 0; q0 < nq; q0 += QB) {
        int qn = nq - q0 < QB ? nq - q0 : QB;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, qn, nc, E, 1.0, q + (size_t)q0 * E, E, c, E, 0.0,
                    s, nc);
        for (int k = 0; k < qn; k++) {
            const double *row = s + (size_t)k * nc;
            double best = -INFINITY;
            for (int j = rel_off[q0 + k]; j < rel_off[q0 + k + 1]; j++)
                if (row[rel[j]] > best) best = row[rel[j]];
            int rank = 1;
            for (int j = 0; j < nc; j++) rank += row[j] > best;
            for (int t = 0; t < 3; t++) hits[t] += rank <= KS[t];
        }
    }
    free(s);
}

/* CSR lists: for each of n owners, the distinct partners, from m links
 * (a[i] owner, b[i] partner). */
static void csr(const int *a, const int *b, int m, int n, int **off, int **list)
{
    int *o = xcalloc((size_t)n + 1, sizeof(int)), *l = xmalloc(sizeof(int) * (size_t)(m ? m : 1)), *fill;
    for (int i = 0; i < m; i++) o[a[i] + 1]++;
    for (int i = 0; i < n; i++) o[i + 1] += o[i];
    fill = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    memcpy(fill, o, sizeof(int) * (size_t)n);
    for (int i = 0; i < m; i++) l[fill[a[i]]++] = b[i];
    free(fill);
    *off = o;
    *list = l;
}

static int retrieve(cdx_model *m, const char *data, int fast, struct ret_result *r, pairs *pr)
{
    char err[1024];
    const int E = cdx_model_get_info(m)->projection_dim;
    char **ipath = NULL, **ctext = NULL;
    float *iemb = NULL, *cemb = NULL;
    double *di = NULL, *dc = NULL;
    int *ok = NULL, *la = NULL, *lb = NULL, *off = NULL, *list = NULL, ret = 0, ni, nc;

    if (pairs_read(pr, data, PAIRS_CAPTIONS, err, sizeof err)) return error("%s", err);
    for (size_t i = 0; i < pr->skipped.n; i++) warning("%s (skipped)", pr->skipped.v[i]);
    r->skipped = (int)pr->skipped.n;
    r->no_caption = (int)pr->n_nocaption;
    ipath = distinct(pr->v, pr->n, 0, &ni);
    iemb = xcalloc((size_t)(ni ? ni : 1) * E, sizeof(float));
    ok = xcalloc((size_t)(ni ? ni : 1), sizeof(int));
    if ((ret = embed_images(m, ipath, ni, fast, iemb, ok, &r->skipped))) goto out;

    /* the pairs whose image decoded; their captions, distinct */
    size_t kept = 0;
    for (size_t i = 0; i < pr->n; i++)
        if (ok[find_sorted(ipath, ni, pr->v[i].path)]) pr->v[kept++] = pr->v[i];
        else {
            free(pr->v[i].path);
            free(pr->v[i].text);
        }
    pr->n = kept;
    r->pairs = (int)kept;
    ctext = distinct(pr->v, pr->n, 1, &nc);
    if (!kept) {
        ret = error("%s: no pair could be evaluated", data);
        goto out;
    }
    /* the decoded images, compacted; image index -> compact row */
    int *imap = xmalloc(sizeof(int) * (size_t)ni), n_ok = 0;
    for (int i = 0; i < ni; i++) {
        imap[i] = ok[i] ? n_ok : -1;
        if (ok[i]) memmove(iemb + (size_t)n_ok++ * E, iemb + (size_t)i * E, sizeof(float) * (size_t)E);
    }
    cemb = xmalloc(sizeof(float) * (size_t)nc * E);
    for (int c = 0; c < nc; c++) {
        if (cdx_model_encode_text(m, ctext[c], cemb + (size_t)c * E, 1)) {
            free(imap);
            ret = error("caption '%s': %s", ctext[c], cdx_last_error());
            goto out;
        }
        tty_progress("eval: captions", c + 1, nc, NULL);
    }
    /* relevance links (image row, caption), a pair listed twice once */
    int64_t *link = xmalloc(sizeof(int64_t) * kept);
    for (size_t i = 0; i < kept; i++)
        link[i] = (int64_t)imap[find_sorted(ipath, ni, pr->v[i].path)] << 32 |
                  (int64_t)find_sorted(ctext, nc, pr->v[i].text);
    qsort(link, kept, sizeof *link, cmp_i64);
    la = xmalloc(sizeof(int) * kept);
    lb = xmalloc(sizeof(int) * kept);
    int nl = 0;
    for (size_t i = 0; i < kept; i++)
        if (i == 0 || link[i] != link[i - 1]) la[nl] = (int)(link[i] >> 32), lb[nl++] = (int)(link[i] & 0xffffffff);
    free(link);
    free(imap);
    r->images = n_ok;
    r->captions = nc;
    di = to_double(iemb, (size_t)n_ok, E);
    dc = to_double(cemb, (size_t)nc, E);
    csr(la, lb, nl, n_ok, &off, &list);
    ranks(di, n_ok, dc, nc, E, off, list, r->i2t);
    free(off);
    free(list);
    csr(lb, la, nl, nc, &off, &list);
    ranks(dc, nc, di, n_ok, E, off, list, r->t2i);
out:
    free(ipath);
    free(ctext);
    free(iemb);
    free(cemb);
    free(di);
    free(dc);
    free(ok);
    free(la);
    free(lb);
    free(off);
    free(list);
    return ret;
}

/* ---------------------------------------------------------------- output */

static void print_text(const char *model_dir, const cdx_model *m, const char *cls_data,
                       const struct cls_result *c, const char *ret_data, const struct ret_result *r)
{
    const cdx_model_info *info = cdx_model_get_info(m);
    printf("model: %s (%s, %s)\n", model_dir, cdx_family_name(info->family),
           cdx_precision_name(cdx_model_get_precision(m, NULL)));
    if (cls_data) {
        int C = c->n_classes, k5 = C < 5 ? C : 5;
        printf("zero-shot classification: %s\n", cls_data);
        printf("  %d images in %d classes (%d skipped), %d prompt template%s\n", c->images, C, c->skipped,
               c->n_templates, c->n_templates == 1 ? "" : "s");
        printf("  top-1 accuracy %6.2f%% (%d/%d), chance %.2f%%\n", pct(c->top1, c->images), c->top1, c->images,
               100.0 / C);
        printf("  top-5 accuracy %6.2f%% (%d/%d), chance %.2f%%\n", pct(c->top5, c->images), c->top5, c->images,
               100.0 * k5 / C);
        printf("  %-24s %7s %8s %8s  %s\n", "class", "images", "top-1", "top-5", "most confused with");
        for (int k = 0; k < C; k++) {
            printf("  %-24s %7d %7.2f%% %7.2f%%  ", c->classes[k], c->count[k], pct(c->c_top1[k], c->count[k]),
                   pct(c->c_top5[k], c->count[k]));
            if (c->most[k] >= 0) printf("%s (%d)\n", c->classes[c->most[k]], c->confused_n[k]);
            else printf("-\n");
        }
    }
    if (ret_data) {
        printf("image-text retrieval: %s\n", ret_data);
        printf("  %d pairs: %d images, %d distinct captions (%d skipped, %d without a caption)\n", r->pairs,
               r->images, r->captions, r->skipped, r->no_caption);
        printf("  image->text  R@1 %6.2f%%  R@5 %6.2f%%  R@10 %6.2f%%\n", pct(r->i2t[0], r->images),
               pct(r->i2t[1], r->images), pct(r->i2t[2], r->images));
        printf("  text->image  R@1 %6.2f%%  R@5 %6.2f%%  R@10 %6.2f%%\n", pct(r->t2i[0], r->captions),
               pct(r->t2i[1], r->captions), pct(r->t2i[2], r->captions));
    }
}

static void print_recall(const char *name, const int *hits, int n)
{
    printf("\"%s\":{\"queries\":%d", name, n);
    for (int t = 0; t < 3; t++) printf(",\"hits_at_%d\":%d,\"recall_at_%d\":%.6f", KS[t], hits[t], KS[t],
                                       n ? (double)hits[t] / n : 0);
    printf("}");
}

static void print_json(const char *model_dir, const cdx_model *m, const char *cls_data,
                       const struct cls_result *c, const char *ret_data, const struct ret_result *r)
{
    const cdx_model_info *info = cdx_model_get_info(m);
    printf("{\"model\":");
    print_json_string(stdout, model_dir);
    printf(",\"family\":\"%s\",\"precision\":\"%s\"", cdx_family_name(info->family),
           cdx_precision_name(cdx_model_get_precision(m, NULL)));
    if (cls_data) {
        int C = c->n_classes;
        printf(",\"classification\":{\"data\":");
        print_json_string(stdout, cls_data);
        printf(",\"images\":%d,\"skipped\":%d,\"classes\":%d,\"templates\":%d,\"top1\":%d,\"top5\":%d,"
               "\"top1_accuracy\":%.6f,\"top5_accuracy\":%.6f,\"chance_top1\":%.6f,\"chance_top5\":%.6f,"
               "\"per_class\":[",
               c->images, c->skipped, C, c->n_templates, c->top1, c->top5,
               c->images ? (double)c->top1 / c->images : 0, c->images ? (double)c->top5 / c->images : 0,
               1.0 / C, (double)(C < 5 ? C : 5) / C);
        for (int k = 0; k < C; k++) {
            printf("%s{\"label\":", k ? "," : "");
            print_json_string(stdout, c->classes[k]);
            printf(",\"images\":%d,\"top1\":%d,\"top5\":%d,\"top1_accuracy\":%.6f,\"most_confused\":",
                   c->count[k], c->c_top1[k], c->c_top5[k], c->count[k] ? (double)c->c_top1[k] / c->count[k] : 0);
            if (c->most[k] >= 0) print_json_string(stdout, c->classes[c->most[k]]);
            else printf("null");
            printf(",\"confused_count\":%d}", c->confused_n[k]);
        }
        printf("]}");
    }
    if (ret_data) {
        printf(",\"retrieval\":{\"data\":");
        print_json_string(stdout, ret_data);
        printf(",\"pairs\":%d,\"images\":%d,\"captions\":%d,\"skipped\":%d,\"no_caption\":%d,", r->pairs,
               r->images, r->captions, r->skipped, r->no_caption);
        print_recall("image_to_text", r->i2t, r->images);
        putchar(',');
        print_recall("text_to_image", r->t2i, r->captions);
        printf("}");
    }
    printf("}\n");
}

/* ---------------------------------------------------------------- command */

static int read_templates(const char *file, strv *out)
{
    FILE *f = fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, ret = 0;
    if (!f) return error("%s: %s", file, strerror(errno));
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len || line[0] == '#') continue;
        if (memchr(line, 0, (size_t)len) || !pairs_utf8_ok(line, (size_t)len) || !strstr(line, "{}")) {
            ret = error("%s:%d: a template is one UTF-8 line with {} where the class goes", file, lineno);
            break;
        }
        strv_push(out, line);
    }
    if (!ret && ferror(f)) ret = error("%s: read error", file);
    if (!ret && !out->n) ret = error("%s: no templates", file);
    free(line);
    fclose(f);
    return ret;
}

int cmd_eval(int argc, char **argv)
{
    const cdx_cmd *self = cmd_find("eval");
    enum { O_MODEL = 1, O_PREC, O_PRE, O_CLASSES, O_PAIRS, O_TEMPLATE, O_TEMPLATES, O_FORMAT };
    static const struct option opts[] = {
        {"model", required_argument, NULL, O_MODEL},       {"precision", required_argument, NULL, O_PREC},
        {"preprocess", required_argument, NULL, O_PRE},    {"classes", required_argument, NULL, O_CLASSES},
        {"pairs", required_argument, NULL, O_PAIRS},       {"template", required_argument, NULL, O_TEMPLATE},
        {"templates", required_argument, NULL, O_TEMPLATES}, {"format", required_argument, NULL, O_FORMAT},
        {NULL, 0, NULL, 0},
    };
    const char *model_opt = NULL, *prec_opt = NULL, *cls_data = NULL, *ret_data = NULL, *tfile = NULL, *model_dir;
    int fast = 0, json = 0, c, ret = EXIT_OK;
    strv templates = {0};
    cdx_model *m = NULL;
    struct cls_result cr = {0};
    struct ret_result rr = {0};
    pairs cp = {0}, rp = {0};

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_opt = optarg; break;
        case O_PREC: prec_opt = optarg; break;
        case O_CLASSES: cls_data = optarg; break;
        case O_PAIRS: ret_data = optarg; break;
        case O_TEMPLATES: tfile = optarg; break;
        case O_TEMPLATE:
            if (!strstr(optarg, "{}") || !pairs_utf8_ok(optarg, strlen(optarg))) {
                strv_clear(&templates);
                return usage_error(self, "--template needs {} where the class name goes: '%s'", optarg);
            }
            strv_push(&templates, optarg);
            break;
        case O_PRE:
            if (!strcmp(optarg, "exact")) fast = 0;
            else if (!strcmp(optarg, "fast")) fast = 1;
            else {
                strv_clear(&templates);
                return usage_error(self, "--preprocess must be exact or fast, not '%s'", optarg);
            }
            break;
        case O_FORMAT:
            if (!strcmp(optarg, "text")) json = 0;
            else if (!strcmp(optarg, "json")) json = 1;
            else {
                strv_clear(&templates);
                return usage_error(self, "--format must be text or json, not '%s'", optarg);
            }
            break;
        default:
            strv_clear(&templates);
            return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        ret = usage_error(self, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (!cls_data && !ret_data) {
        ret = usage_error(self, "nothing to evaluate: give --classes DIR|TSV and/or --pairs PAIRS");
        goto out;
    }
    if (tfile && templates.n) {
        ret = usage_error(self, "give --template or --templates, not both");
        goto out;
    }
    if ((templates.n || tfile) && !cls_data) {
        ret = usage_error(self, "--template and --templates are for --classes");
        goto out;
    }
    if (tfile && (ret = read_templates(tfile, &templates))) goto out;
    if (!templates.n)
        for (size_t i = 0; i < label_n_templates; i++) strv_push(&templates, label_templates[i]);
    cdx_precision prec;
    if (resolve_precision(prec_opt, &prec, NULL)) {
        ret = EXIT_USAGE;
        goto out;
    }
    if (!(model_dir = resolve_model_dir(model_opt))) {
        ret = EXIT_USAGE;
        goto out;
    }
    if (cdx_model_open(model_dir, CDX_TOWER_TEXT | CDX_TOWER_VISION, &m) || cdx_model_set_precision(m, prec)) {
        ret = error("%s", cdx_last_error());
        goto out;
    }
    if (cls_data && (ret = classify(m, cls_data, templates.v, (int)templates.n, fast, &cr, &cp))) goto out;
    if (ret_data && (ret = retrieve(m, ret_data, fast, &rr, &rp))) goto out;
    if (json) print_json(model_dir, m, cls_data, &cr, ret_data, &rr);
    else print_text(model_dir, m, cls_data, &cr, ret_data, &rr);

out:
    cls_release(&cr);
    pairs_release(&cp);
    pairs_release(&rp);
    strv_clear(&templates);
    cdx_model_close(m);
    return ret;
}
