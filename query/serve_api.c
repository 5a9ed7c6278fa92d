/*
 * serve_api.c - the JSON API of `clipdex serve` (man clipdex, SERVE):
 *
 *   GET  /api/search?q=TEXT&n=N&offset=K&not=TEXT...&after=&before=&under=
 *                    &camera=&ext=&min_score=
 *   POST /api/search (body: an image file; the same parameters) by example
 *   GET  /api/similar?id=ID (same paging and filters)
 *   GET  /api/photo/ID   GET /api/thumb/ID   GET /api/image/ID
 *   GET  /api/dupes      GET /api/moderation[?labelset=SET]
 *   POST /api/mark?id=VECTOR&label=L&mark=reviewed|false_positive|none
 *   GET  /api/status
 *
 * Searches go through query_vector (search_query.c) and cdx_store_search,
 * the code `clipdex search` runs; dupes through dupes_groups (cmd_dupes.c).
 * Every answer is JSON built with the CLI's JSON writers (paths that are
 * not UTF-8 come out as \u00XX per byte); errors are {"error": "..."}.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dupes.h"
#include "output.h"
#include "search.h"
#include "serve.h"
#include "banned.h"

#define DEFAULT_N 50

/* A JSON body being written. */
typedef struct jbuf {
    FILE *f;
    char *buf;
    size_t len;
} jbuf;

static int jopen(jbuf *j, reply *out)
{
    j->buf = NULL;
    j->len = 0;
    if (!(j->f = open_memstream(&j->buf, &j->len))) {
        reply_json_error(out, 500, "out of memory");
        return -1;
    }
    return 0;
}

static void jclose(jbuf *j, reply *out)
{
    if (fclose(j->f) != 0) {
        free(j->buf);
        reply_json_error(out, 500, "out of memory");
        return;
    }
    reply_json(out, j->buf, j->len);
}

static void jdiscard(jbuf *j)
{
    fclose(j->f);
    free(j->buf);
}

/* {"id":..,"path":..., every field of out_json_file} */
static void json_file(FILE *f, const cdx_file_info *fi)
{
    fprintf(f, "{\"id\":%lld,", (long long)fi->id);
    out_json_file(f, fi);
    fputc('}', f);
}

/* An integer id from text: digits only, > 0. */
static int parse_id(const char *s, int64_t *out)
{
    size_t v;
    if (!s || !*s || strlen(s) > 18 || parse_size(s, &v) != 0 || v == 0) return -1;
    *out = (int64_t)v;
    return 0;
}

/* ---- search ---- */

struct search_req {
    qfilter flt;
    size_t n, offset;
    float min_score;
    const char *q;
    const char *nots[SERVE_MAX_TERMS];
    size_t n_nots;
};

/* The parameters of a search; 0, or -1 after filling *out with a 400. */
static int search_params(const request *r, struct search_req *p, reply *out)
{
    const char *v, *exts[16];
    size_t n_exts;
    double d;

    memset(p, 0, sizeof *p);
    p->n = DEFAULT_N;
    p->min_score = -2.0f;
    if ((v = req_arg(r, "n")) && (parse_size(v, &p->n) != 0 || p->n < 1 || p->n > SERVE_MAX_N)) {
        reply_json_error(out, 400, "n must be 1..%d", SERVE_MAX_N);
        return -1;
    }
    if ((v = req_arg(r, "offset")) && parse_size(v, &p->offset) != 0) {
        reply_json_error(out, 400, "offset must be a number");
        return -1;
    }
    if (p->offset > SERVE_MAX_RESULTS || p->offset + p->n > SERVE_MAX_RESULTS) {
        reply_json_error(out, 400, "offset + n must be at most %d", SERVE_MAX_RESULTS);
        return -1;
    }
    if ((v = req_arg(r, "min_score")) && *v) {
        if (parse_double(v, &d) != 0 || d < -1 || d > 1) {
            reply_json_error(out, 400, "min_score must be a number in [-1, 1]");
            return -1;
        }
        p->min_score = (float)d;
    }
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "before" : "after";
        int64_t t;
        if (!(v = req_arg(r, name)) || !*v) continue;
        if (parse_date(v, &t) != 0) {
            reply_json_error(out, 400, "%s: not a date (YYYY[-MM[-DD[THH:MM[:SS]]]] or @UNIXTIME)", name);
            return -1;
        }
        if (t == 0) t = k ? 1 : 0; /* as qfilter_option: 0 is the open end */
        if (k) p->flt.f.before = t;
        else p->flt.f.after = t;
    }
    if ((v = req_arg(r, "under")) && *v) {
        if (v[0] != '/' || strlen(v) > 4096) {
            reply_json_error(out, 400, "under must be an absolute directory");
            return -1;
        }
        qfilter_option(&p->flt, NULL, OPT_UNDER, v); /* cannot fail (out of memory aborts) */
    }
    if ((v = req_arg(r, "camera")) && *v) {
        if (strlen(v) > 200) {
            reply_json_error(out, 400, "camera is too long");
            return -1;
        }
        p->flt.f.camera = v;
    }
    n_exts = req_args(r, "ext", exts, 16);
    for (size_t i = 0; i < n_exts; i++) {
        if (!exts[i][0] || strspn(exts[i], ".,") == strlen(exts[i])) continue;
        if (strlen(exts[i]) > 100) {
            reply_json_error(out, 400, "ext is too long");
            return -1;
        }
        qfilter_option(&p->flt, NULL, OPT_EXT, exts[i]); /* has an extension: cannot fail */
    }
    p->q = req_arg(r, "q");
    if (p->q && strlen(p->q) > SERVE_MAX_QUERY) {
        reply_json_error(out, 400, "q is longer than %d bytes", SERVE_MAX_QUERY);
        return -1;
    }
    if (p->q && !p->q[strspn(p->q, " \t\r\n")]) p->q = NULL;
    if (req_args(r, "not", p->nots, SERVE_MAX_TERMS + 1) > SERVE_MAX_TERMS) {
        reply_json_error(out, 400, "at most %d not terms", SERVE_MAX_TERMS);
        return -1;
    }
    p->n_nots = req_args(r, "not", p->nots, SERVE_MAX_TERMS);
    for (size_t i = 0; i < p->n_nots; i++)
        if (strlen(p->nots[i]) > SERVE_MAX_QUERY) {
            reply_json_error(out, 400, "a not term is longer than %d bytes", SERVE_MAX_QUERY);
            return -1;
        }
    return 0;
}

/* ---- text embeddings, remembered ----
 *
 * Endless scrolling asks for the same query page after page, and typing
 * comes back to earlier texts: the last TEXT_CACHE texts' embeddings are
 * kept (with the lock held, like the model). */
#define TEXT_CACHE 256
static struct {
    char *text;
    float *vec;
    uint64_t used;
} text_cache[TEXT_CACHE];
static uint64_t text_clock;

/* The embedding of text (c->dim floats, normalised): the cached one or
 * encoded now.  NULL on failure (cdx_last_error says why). */
static const float *text_vector(serve *s, const char *text)
{
    size_t victim = 0;
    for (size_t i = 0; i < TEXT_CACHE; i++) {
        if (text_cache[i].text && strcmp(text_cache[i].text, text) == 0) {
            text_cache[i].used = ++text_clock;
            return text_cache[i].vec;
        }
        if (text_cache[i].used < text_cache[victim].used) victim = i;
    }
    float *v = xmalloc((size_t)s->c.dim * sizeof *v);
    char *t = xstrdup(text);
    if (cdx_model_encode_text(s->c.model, text, v, 1) != CDX_OK) {
        free(v);
        free(t);
        return NULL;
    }
    free(text_cache[victim].text);
    free(text_cache[victim].vec);
    text_cache[victim].text = t;
    text_cache[victim].vec = v;
    text_cache[victim].used = ++text_clock;
    return v;
}

void api_release(void)
{
    for (size_t i = 0; i < TEXT_CACHE; i++) {
        free(text_cache[i].text);
        free(text_cache[i].vec);
        text_cache[i].text = NULL;
        text_cache[i].vec = NULL;
    }
}

/* Run the search of p with the extra terms t[0..nt) (a stored or dropped
 * image) and write the answer; skip_id: a file left out (the photo whose
 * look-alikes these are).  Called with the lock held. */
static void do_search(serve *s, struct search_req *p, qterm *extra, size_t n_extra, int64_t skip_id,
                      reply *out)
{
    qterm t[SERVE_MAX_TERMS + 4];
    size_t nt = 0, k, n_hits = 0, shown = 0, seen = 0;
    float *q = NULL;
    cdx_store_hit *hits = NULL;
    jbuf j;

    for (size_t i = 0; i < n_extra; i++) t[nt++] = extra[i];
    if (p->q) t[nt++] = (qterm){0, 1, 1.0, p->q, NULL};
    if (!nt) {
        reply_json_error(out, 400, "nothing to search for: give q");
        return;
    }
    for (size_t i = 0; i < p->n_nots; i++)
        if (p->nots[i][strspn(p->nots[i], " \t\r\n")]) t[nt++] = (qterm){0, -1, 1.0, p->nots[i], NULL};
    q = xmalloc((size_t)s->c.dim * sizeof *q);
    for (size_t i = 0; i < nt; i++)
        if (!t[i].vec && !t[i].image && !(t[i].vec = text_vector(s, t[i].value))) {
            reply_json_error(out, 400, "the query cannot be encoded: %s", cdx_last_error());
            goto cleanup;
        }
    if (query_vector(&s->c, t, nt, q, NULL) != 0) {
        reply_json_error(out, 400, "the query cannot be searched: %s", cdx_last_error());
        goto cleanup;
    }
    k = p->offset + p->n + (skip_id ? 1 : 0);
    if (cdx_store_search(s->c.store, q, k, &p->flt.f, p->min_score, &hits, &n_hits) != CDX_OK) {
        reply_json_error(out, 500, "%s", cdx_last_error());
        goto cleanup;
    }
    if (jopen(&j, out) != 0) goto cleanup;
    fputs("{\"results\":[", j.f);
    for (size_t i = 0; i < n_hits && shown < p->n; i++) {
        if (skip_id && hits[i].file.id == skip_id) continue;
        if (seen++ < p->offset) continue;
        if (shown++) fputc(',', j.f);
        fprintf(j.f, "{\"rank\":%zu,\"score\":", seen);
        print_float(j.f, hits[i].score);
        fprintf(j.f, ",\"id\":%lld,", (long long)hits[i].file.id);
        out_json_file(j.f, &hits[i].file);
        fputc('}', j.f);
    }
    /* more: a next page may exist (endless scrolling asks for it) */
    fprintf(j.f, "],\"offset\":%zu,\"more\":%s}\n", p->offset,
            n_hits >= k && p->offset + p->n < SERVE_MAX_RESULTS ? "true" : "false");
    jclose(&j, out);
cleanup:
    cdx_store_hits_free(hits, n_hits);
    free(q);
}

/* A dropped image: written to a private temporary file and embedded by
 * embed_image_file, exactly as `clipdex search --image` embeds a new one. */
static int embed_upload(serve *s, const request *r, float *v, reply *out)
{
    char tmp[] = "/tmp/clipdex-serve-XXXXXX";
    cdx_model *vision;
    int fd, ret = -1;

    if (!r->body || !r->body_len) {
        reply_json_error(out, 400, "POST /api/search takes an image file as its body");
        return -1;
    }
    if ((fd = mkstemp(tmp)) < 0) {
        reply_json_error(out, 500, "cannot write a temporary file: %s", strerror(errno));
        return -1;
    }
    size_t done = 0;
    while (done < r->body_len) {
        ssize_t w = write(fd, r->body + done, r->body_len - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    close(fd);
    if (done != r->body_len) {
        reply_json_error(out, 500, "cannot write a temporary file");
    } else if (!(vision = qctx_vision(&s->c))) {
        reply_json_error(out, 500, "the model's vision tower cannot be loaded: %s", cdx_last_error());
    } else if (embed_image_file(vision, tmp, v) != 0) {
        const char *e = cdx_last_error(), *p = strstr(e, tmp);
        /* the message without our temporary path */
        reply_json_error(out, 400, "the dropped file is not an image clipdex can read%s%s", p ? "" : ": ",
                         p ? "" : e);
    } else {
        ret = 0;
    }
    unlink(tmp);
    return ret;
}

static void api_search(serve *s, const request *r, reply *out)
{
    struct search_req p;
    float *v = NULL;
    if (search_params(r, &p, out) != 0) goto cleanup;
    if (strcmp(r->method, "POST") == 0) {
        qterm t = {1, 1, 1.0, NULL, NULL};
        v = xmalloc((size_t)s->c.dim * sizeof *v);
        pthread_mutex_lock(&s->lock);
        if (embed_upload(s, r, v, out) == 0) {
            t.vec = v;
            do_search(s, &p, &t, 1, 0, out);
        }
        pthread_mutex_unlock(&s->lock);
        goto cleanup;
    }
    pthread_mutex_lock(&s->lock);
    do_search(s, &p, NULL, 0, 0, out);
    pthread_mutex_unlock(&s->lock);
cleanup:
    free(v);
    qfilter_release(&p.flt);
}

static void api_similar(serve *s, const request *r, reply *out)
{
    struct search_req p;
    cdx_file_info fi;
    int64_t id;
    int found = 0;
    float *v = NULL;

    if (parse_id(req_arg(r, "id"), &id) != 0) {
        reply_json_error(out, 400, "similar needs id=FILE_ID");
        return;
    }
    if (search_params(r, &p, out) != 0) goto cleanup;
    v = xmalloc((size_t)s->c.dim * sizeof *v);
    pthread_mutex_lock(&s->lock);
    if (cdx_store_get_file_by_id(s->c.store, id, &fi, &found) != CDX_OK) {
        reply_json_error(out, 500, "%s", cdx_last_error());
    } else if (!found) {
        reply_json_error(out, 404, "no photo %lld", (long long)id);
    } else {
        if (!fi.vector_id || fi.model_id != s->c.model_id)
            reply_json_error(out, 404, "photo %lld has no vector of this model", (long long)id);
        else if (cdx_store_get_vector(s->c.store, fi.vector_id, v) != CDX_OK)
            reply_json_error(out, 500, "%s", cdx_last_error());
        else {
            qterm t = {1, 1, 1.0, NULL, v};
            do_search(s, &p, &t, 1, id, out);
        }
        cdx_file_info_release(&fi);
    }
    pthread_mutex_unlock(&s->lock);
cleanup:
    free(v);
    qfilter_release(&p.flt);
}

/* ---- one photo ---- */

static void api_photo(serve *s, int64_t id, reply *out)
{
    cdx_file_info fi;
    int found = 0;
    jbuf j;

    pthread_mutex_lock(&s->lock);
    cdx_status st = cdx_store_get_file_by_id(s->c.store, id, &fi, &found);
    pthread_mutex_unlock(&s->lock);
    if (st != CDX_OK) {
        reply_json_error(out, 500, "%s", cdx_last_error());
        return;
    }
    if (!found) {
        reply_json_error(out, 404, "no photo %lld", (long long)id);
        return;
    }
    if (jopen(&j, out) == 0) {
        json_file(j.f, &fi);
        fputc('\n', j.f);
        jclose(&j, out);
    }
    cdx_file_info_release(&fi);
}

/* ---- dupes ---- */

struct dupes_out {
    FILE *f;
    size_t n;
};

static int dupes_cb(const cdx_file_info *const *m, size_t n, void *user)
{
    struct dupes_out *d = user;
    if (d->n) fputc(',', d->f);
    fputs("{\"files\":[", d->f);
    for (size_t i = 0; i < n; i++) {
        if (i) fputc(',', d->f);
        fprintf(d->f, "{\"keep\":%s,\"match\":\"%s\",\"id\":%lld,", i ? "false" : "true",
                !i ? "best" : m[0]->meta.has_hash && m[i]->meta.has_hash &&
                            memcmp(m[0]->meta.hash, m[i]->meta.hash, CDX_HASH_SIZE) == 0 ? "exact" : "visual",
                (long long)m[i]->id);
        out_json_file(d->f, m[i]);
        fputc('}', d->f);
    }
    fputs("]}", d->f);
    return ++d->n >= SERVE_MAX_GROUPS;
}

static void api_dupes(serve *s, const request *r, reply *out)
{
    struct search_req p;
    struct dupes_out d = {0};
    jbuf j;
    size_t bits = 10;
    const char *v;
    int ret;

    if ((v = req_arg(r, "bits")) && (parse_size(v, &bits) != 0 || bits > 32)) {
        reply_json_error(out, 400, "bits must be 0..32");
        return;
    }
    if (search_params(r, &p, out) != 0) goto cleanup;
    if (jopen(&j, out) != 0) goto cleanup;
    d.f = j.f;
    fputs("{\"groups\":[", j.f);
    pthread_mutex_lock(&s->lock);
    ret = dupes_groups(&s->c, &p.flt.f, (int)bits, dupes_cb, &d);
    pthread_mutex_unlock(&s->lock);
    if (ret != 0) {
        jdiscard(&j);
        reply_json_error(out, 500, "finding duplicates failed: %s", cdx_last_error());
        goto cleanup;
    }
    fprintf(j.f, "],\"truncated\":%s}\n", d.n >= SERVE_MAX_GROUPS ? "true" : "false");
    jclose(&j, out);
cleanup:
    qfilter_release(&p.flt);
}

/* ---- moderation ---- */

struct mod_row {
    int64_t vector_id;
    char *label;
    float score;
    const char *mark;   /* static */
};

struct mod_ctx {
    struct mod_row *v;
    size_t n, cap;
};

static int mod_cb(int64_t vector_id, const char *label, float score, int flagged, void *user)
{
    struct mod_ctx *m = user;
    if (!flagged) return 0;
    m->v = xgrow(m->v, &m->cap, m->n + 1, sizeof *m->v, 256);
    m->v[m->n].label = xstrdup(label ? label : "");
    m->v[m->n].vector_id = vector_id;
    m->v[m->n].score = score;
    m->v[m->n].mark = NULL;
    m->n++;
    return 0;
}

static int mark_cb(int64_t vector_id, const char *label, const char *mark, void *user)
{
    struct mod_ctx *m = user;
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].vector_id == vector_id && strcmp(m->v[i].label, label) == 0)
            m->v[i].mark = strcmp(mark, "reviewed") == 0 ? "reviewed" : "false_positive";
    return 0;
}

static int cmp_mod(const void *a, const void *b)
{
    const struct mod_row *x = a, *y = b;
    int c = strcmp(x->label, y->label);
    if (c) return c;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->vector_id < y->vector_id ? -1 : x->vector_id > y->vector_id;
}

/* files by vector id, for the queues */
struct vfiles {
    cdx_file_info *v;
    size_t n, cap;
    int oom;
};

static int vfile_cb(const cdx_file_info *fi, void *user)
{
    struct vfiles *w = user;
    if (!fi->vector_id) return 0;
    w->v = xgrow(w->v, &w->cap, w->n + 1, sizeof *w->v, 1024);
    if (cdx_file_info_copy(fi, &w->v[w->n]) != CDX_OK) return w->oom = 1;
    w->n++;
    return 0;
}

static int cmp_vfile(const void *a, const void *b)
{
    const cdx_file_info *x = a, *y = b;
    if (x->vector_id != y->vector_id) return x->vector_id < y->vector_id ? -1 : 1;
    return strcmp(x->meta.path, y->meta.path);
}

static const cdx_file_info *vfile_find(const struct vfiles *w, int64_t vid)
{
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->v[mid].vector_id < vid) lo = mid + 1;
        else hi = mid;
    }
    return lo < w->n && w->v[lo].vector_id == vid ? &w->v[lo] : NULL;
}

static void api_moderation(serve *s, const request *r, reply *out)
{
    const char *set = req_arg(r, "labelset");
    struct mod_ctx m = {0};
    struct vfiles w = {0};
    cdx_store_filter all = {0};
    char **sets = NULL;
    size_t n_sets = 0;
    jbuf j;
    cdx_status st;

    if (!set || !*set) {
        pthread_mutex_lock(&s->lock);
        st = cdx_store_moderation_labelsets(s->c.store, &sets, &n_sets);
        pthread_mutex_unlock(&s->lock);
        if (st != CDX_OK) {
            reply_json_error(out, 500, "%s", cdx_last_error());
            return;
        }
        if (jopen(&j, out) == 0) {
            fputs("{\"labelsets\":[", j.f);
            for (size_t i = 0; i < n_sets; i++) {
                if (i) fputc(',', j.f);
                print_json_string(j.f, sets[i]);
            }
            fputs("]}\n", j.f);
            jclose(&j, out);
        }
        cdx_store_labelsets_free(sets, n_sets);
        return;
    }
    if (strlen(set) > 1000) {
        reply_json_error(out, 400, "labelset is too long");
        return;
    }
    pthread_mutex_lock(&s->lock);
    st = cdx_store_moderation_foreach(s->c.store, set, mod_cb, &m);
    if (st == CDX_OK) st = cdx_store_mark_foreach(s->c.store, mark_cb, &m);
    if (st == CDX_OK) st = cdx_store_foreach_file(s->c.store, &all, 0, vfile_cb, &w);
    pthread_mutex_unlock(&s->lock);
    if (st != CDX_OK || w.oom) {
        reply_json_error(out, 500, "%s", cdx_last_error()); /* (w.oom: cdx_file_info_copy) */
        goto cleanup;
    }
    if (m.n) qsort(m.v, m.n, sizeof *m.v, cmp_mod);
    if (w.n) qsort(w.v, w.n, sizeof *w.v, cmp_vfile);
    if (jopen(&j, out) != 0) goto cleanup;
    fputs("{\"labelset\":", j.f);
    print_json_string(j.f, set);
    fputs(",\"labels\":[", j.f);
    for (size_t i = 0; i < m.n;) {
        size_t end = i;
        while (end < m.n && strcmp(m.v[end].label, m.v[i].label) == 0) end++;
        if (i) fputc(',', j.f);
        fputs("{\"label\":", j.f);
        print_json_string(j.f, m.v[i].label);
        fputs(",\"items\":[", j.f);
        int first = 1;
        for (size_t k = i; k < end; k++) {
            const cdx_file_info *fi = vfile_find(&w, m.v[k].vector_id);
            if (!fi) continue; /* its files went since the sweep */
            if (!first) fputc(',', j.f);
            first = 0;
            fprintf(j.f, "{\"vector_id\":%lld,\"probability\":", (long long)m.v[k].vector_id);
            print_float(j.f, m.v[k].score);
            fprintf(j.f, ",\"mark\":%s%s%s,\"id\":%lld,", m.v[k].mark ? "\"" : "",
                    m.v[k].mark ? m.v[k].mark : "null", m.v[k].mark ? "\"" : "", (long long)fi->id);
            out_json_file(j.f, fi);
            fputc('}', j.f);
        }
        fputs("]}", j.f);
        i = end;
    }
    fputs("]}\n", j.f);
    jclose(&j, out);
cleanup:
    for (size_t i = 0; i < m.n; i++) free(m.v[i].label);
    free(m.v);
    for (size_t i = 0; i < w.n; i++) cdx_file_info_release(&w.v[i]);
    free(w.v);
}

static void api_mark(serve *s, const request *r, reply *out)
{
    const char *label = req_arg(r, "label"), *mark = req_arg(r, "mark");
    int64_t vid;
    cdx_status st;
    jbuf j;

    if (parse_id(req_arg(r, "id"), &vid) != 0 || !label || !*label || strlen(label) > 200 || !mark ||
        (strcmp(mark, "reviewed") != 0 && strcmp(mark, "false_positive") != 0 && strcmp(mark, "none") != 0)) {
        reply_json_error(out, 400, "mark needs id=VECTOR_ID, label=LABEL, mark=reviewed|false_positive|none");
        return;
    }
    pthread_mutex_lock(&s->lock);
    st = cdx_store_mark_set(s->c.store, vid, label, strcmp(mark, "none") == 0 ? NULL : mark);
    pthread_mutex_unlock(&s->lock);
    if (st != CDX_OK) {
        reply_json_error(out, st == CDX_ERR_ARG ? 404 : 500, "%s", cdx_last_error());
        return;
    }
    if (jopen(&j, out) == 0) {
        fprintf(j.f, "{\"id\":%lld,\"label\":", (long long)vid);
        print_json_string(j.f, label);
        fprintf(j.f, ",\"mark\":\"%s\"}\n", mark);
        jclose(&j, out);
    }
}

/* ---- status ---- */

static void api_status(serve *s, reply *out)
{
    cdx_store_stats st;
    char *state = NULL;
    jbuf j;
    cdx_status rc;

    pthread_mutex_lock(&s->lock);
    rc = cdx_store_stats_get(s->c.store, &st);
    if (rc == CDX_OK) cdx_store_meta_get(s->c.store, "state", &state);
    pthread_mutex_unlock(&s->lock);
    if (rc != CDX_OK) {
        reply_json_error(out, 500, "%s", cdx_last_error());
        return;
    }
    if (jopen(&j, out) == 0) {
        fprintf(j.f, "{\"version\":\"%s\",\"files\":%lld,\"indexed\":%lld,\"errors\":%lld,\"vectors\":%lld,"
                     "\"model_vectors\":%lld,\"index\":",
                CDX_VERSION, (long long)st.n_files, (long long)st.n_ok, (long long)st.n_error,
                (long long)st.n_vectors, (long long)st.model_vectors);
        print_json_string(j.f, st.index_built);
        fputs(",\"model\":", j.f);
        print_json_string(j.f, s->c.model_dir);
        fprintf(j.f, ",\"dim\":%d,\"daemon_state\":", s->c.dim);
        if (state) print_json_string(j.f, state);
        else fputs("null", j.f);
        fputs("}\n", j.f);
        jclose(&j, out);
    }
    free(state);
}

/* ---- routing ---- */

void api_handle(serve *s, const request *r, reply *out)
{
    const char *p = r->path + 5; /* after "/api/" */
    int get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
    int post = strcmp(r->method, "POST") == 0;
    int64_t id;

    if (strcmp(p, "search") == 0) {
        if (!get && !post) reply_json_error(out, 405, "search: GET or POST");
        else api_search(s, r, out);
        return;
    }
    if (strcmp(p, "mark") == 0) {
        /* a state change: POST only, with a header no cross-site form sends */
        if (!post) reply_json_error(out, 405, "mark: POST only");
        else if (!req_header(r, "X-Clipdex")) reply_json_error(out, 403, "mark: the X-Clipdex header is missing");
        else api_mark(s, r, out);
        return;
    }
    if (!get) {
        reply_json_error(out, 405, "%s: GET only", r->path);
        return;
    }
    if (strcmp(p, "similar") == 0) api_similar(s, r, out);
    else if (strcmp(p, "dupes") == 0) api_dupes(s, r, out);
    else if (strcmp(p, "moderation") == 0) api_moderation(s, r, out);
    else if (strcmp(p, "status") == 0) api_status(s, out);
    else if (strncmp(p, "photo/", 6) == 0 || strncmp(p, "thumb/", 6) == 0 || strncmp(p, "image/", 6) == 0) {
        if (parse_id(p + 6, &id) != 0) reply_json_error(out, 400, "%s: the id must be a positive integer", r->path);
        else if (p[0] == 'p') api_photo(s, id, out);
        else if (p[0] == 't') files_thumb(s, id, out);
        else files_image(s, id, out);
    } else
        reply_json_error(out, 404, "%s: no such endpoint", r->path);
}
