/*
 * cmd_dupes.c - `clipdex dupes`: groups of duplicate images, best copy
 * first.  It only reports; it never deletes or moves anything.
 *
 * Three ways two files can be duplicates (--method, combinable):
 *   exact     identical bytes: the same SHA-256 content hash;
 *   visual    perceptual hashes (64-bit DCT pHash, computed at indexing
 *             time with EXIF orientation applied) within --threshold bits
 *             of each other (Hamming distance; default DEFAULT_BITS);
 *   semantic  CLIP embeddings with cosine >= --threshold (default
 *             DEFAULT_COSINE): burst shots, the same scene re-taken.
 * The default is exact,visual.  Files are nodes, every pair found is an
 * edge, and groups are the connected components (union-find), so a chain
 * of near copies forms one group.
 *
 * Visual pairs come from a multi-index hash over the distinct pHashes
 * (see pair_visual): no pair of the whole library is ever compared
 * blindly, so 100k images take well under a second.  Semantic pairs come
 * from the store's similarity self-join over the distinct vectors
 * (cdx_store_similar_pairs: tiled matrix products, exact).
 *
 * Best copy: most pixels, then the largest file, then the oldest (taken
 * at, else modified), then the path, for a stable order.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dupes.h"
#include "output.h"
#include "banned.h"

/* Hamming distance at or under which two pHashes are called visual
 * duplicates.  Chosen from measurements of corpus photos and their
 * resized / recompressed / cropped / rotated copies
 * (tests/tools/dupes_eval.py; the numbers are in the man page). */
#define DEFAULT_BITS 10
#define DEFAULT_COSINE 0.95

enum { M_EXACT = 1, M_VISUAL = 2, M_SEMANTIC = 4 };

struct entry {
    cdx_file_info fi;
    int32_t parent;      /* union-find */
    int32_t group;       /* index into groups, -1 when alone */
};

struct dupes {
    struct entry *e;
    size_t n, cap;
    int oom;
    unsigned methods;
    int bits;
    double cosine;
    enum out_format format;
    int nul;
    const char *output;
    qctx c;
    qfilter flt;
};

/* ---- union-find ---- */

static int32_t find(struct entry *e, int32_t i)
{
    while (e[i].parent != i) {
        e[i].parent = e[e[i].parent].parent; /* path halving */
        i = e[i].parent;
    }
    return i;
}

static void unite(struct entry *e, int32_t a, int32_t b)
{
    a = find(e, a);
    b = find(e, b);
    if (a == b) return;
    /* the smaller index becomes the root: deterministic */
    if (a < b) e[b].parent = a;
    else e[a].parent = b;
}

/* ---- collecting files ---- */

static int collect_cb(const cdx_file_info *fi, void *user)
{
    struct dupes *d = user;
    d->e = xgrow(d->e, &d->cap, d->n + 1, sizeof *d->e, 1024);
    if (cdx_file_info_copy(fi, &d->e[d->n].fi) != CDX_OK) return d->oom = 1;
    d->e[d->n].parent = (int32_t)d->n;
    d->e[d->n].group = -1;
    d->n++;
    return 0;
}

/* ---- exact ---- */

static void pair_exact(struct dupes *d)
{
    /* Rows come in hash order: equal hashes are adjacent. */
    for (size_t i = 1; i < d->n; i++)
        if (d->e[i].fi.meta.has_hash && d->e[i - 1].fi.meta.has_hash &&
            memcmp(d->e[i].fi.meta.hash, d->e[i - 1].fi.meta.hash, CDX_HASH_SIZE) == 0)
            unite(d->e, (int32_t)i - 1, (int32_t)i);
}

/* ---- visual: multi-index hashing over distinct pHashes ----
 *
 * Split the 64 bits into 4 chunks of 16.  If two hashes are within t bits,
 * the t differing bits fall into 4 chunks, so at least one chunk differs
 * in at most r = floor(t / 4) bits (pigeonhole).  Each chunk position has
 * a table from the 65536 chunk values to the hashes having that value
 * (sorted ids, CSR offsets); a query looks up, in every table, the chunk
 * values within r bits of its own (137 values for r = 2), and verifies
 * the few candidates with a full popcount.  For 100k random hashes at
 * t = 10 that is about 800 candidates per hash instead of 100k.
 *
 * (A BK-tree was tried first: on 64-bit hashes, whose distances cluster
 * around 32, a radius-10 query still visits most of the tree; 100k hashes
 * took 100 s against 0.3 s here.  FAISS's binary indexes offer only a
 * brute-force range search through the C API.) */

#define MIH_CHUNKS 4
#define MIH_BITS 16
#define MIH_VALUES (1u << MIH_BITS)

static int hamming(uint64_t a, uint64_t b)
{
    return __builtin_popcountll(a ^ b);
}

static unsigned chunk(uint64_t h, int c)
{
    return (unsigned)(h >> (c * MIH_BITS)) & (MIH_VALUES - 1);
}

static int cmp_phash(const void *a, const void *b, void *ctx)
{
    const struct entry *e = ctx;
    uint64_t x = e[*(const int32_t *)a].fi.meta.phash, y = e[*(const int32_t *)b].fi.meta.phash;
    return (x > y) - (x < y);
}

static int pair_visual(struct dupes *d)
{
    int32_t *ord = NULL, *rep = NULL, *ids = NULL;
    uint32_t *start = NULL;
    uint64_t *hs = NULL;
    uint16_t *masks = NULL;
    size_t n = 0, nh = 0, n_masks = 0;
    int ret = EXIT_ERROR;
    const int r = d->bits / MIH_CHUNKS;

    ord = xmalloc((d->n + 1) * sizeof *ord);
    for (size_t i = 0; i < d->n; i++)
        if (d->e[i].fi.meta.has_phash) ord[n++] = (int32_t)i;
    /* Equal hashes are distance 0: unite them, keep one per value. */
    qsort_r(ord, n, sizeof *ord, cmp_phash, d->e);
    hs = xmalloc((n + 1) * sizeof *hs);
    rep = xmalloc((n + 1) * sizeof *rep);
    for (size_t i = 0; i < n; i++) {
        uint64_t h = d->e[ord[i]].fi.meta.phash;
        if (i && h == d->e[ord[i - 1]].fi.meta.phash) {
            unite(d->e, ord[i - 1], ord[i]);
            continue;
        }
        hs[nh] = h;
        rep[nh++] = ord[i];
    }
    if (nh < 2) {
        ret = 0;
        goto cleanup;
    }
    /* the chunk masks with at most r bits set */
    masks = xmalloc(MIH_VALUES * sizeof *masks);
    for (unsigned m = 0; m < MIH_VALUES; m++)
        if (__builtin_popcount(m) <= r) masks[n_masks++] = (uint16_t)m;
    /* the tables: ids of table c in ids[c*nh ..], bucket v at start[c][v] */
    start = xcalloc((size_t)MIH_CHUNKS * (MIH_VALUES + 1), sizeof *start);
    ids = xmalloc((size_t)MIH_CHUNKS * nh * sizeof *ids);
    for (int c = 0; c < MIH_CHUNKS; c++) {
        uint32_t *st = start + (size_t)c * (MIH_VALUES + 1);
        int32_t *tb = ids + (size_t)c * nh;
        for (size_t i = 0; i < nh; i++) st[chunk(hs[i], c) + 1]++;
        for (unsigned v = 0; v < MIH_VALUES; v++) st[v + 1] += st[v];
        for (size_t i = 0; i < nh; i++) tb[st[chunk(hs[i], c)]++] = (int32_t)i;
        /* the fill advanced every start by its bucket size: shift back */
        for (unsigned v = MIH_VALUES; v > 0; v--) st[v] = st[v - 1];
        st[0] = 0;
    }
    for (size_t i = 0; i < nh; i++) {
        for (int c = 0; c < MIH_CHUNKS; c++) {
            const uint32_t *st = start + (size_t)c * (MIH_VALUES + 1);
            const int32_t *tb = ids + (size_t)c * nh;
            unsigned v = chunk(hs[i], c);
            for (size_t k = 0; k < n_masks; k++) {
                unsigned b = v ^ masks[k];
                for (uint32_t j = st[b]; j < st[b + 1]; j++) {
                    int32_t o = tb[j];
                    /* each pair once, from its lower index (ids in a
                     * bucket are ascending) */
                    if ((size_t)o <= i) continue;
                    if (hamming(hs[i], hs[o]) <= d->bits) unite(d->e, rep[i], rep[o]);
                }
            }
        }
    }
    ret = 0;
cleanup:
    free(ord);
    free(rep);
    free(hs);
    free(masks);
    free(start);
    free(ids);
    return ret;
}

/* ---- semantic: the store's similarity self-join over distinct vectors ---- */

static int cmp_by_vector(const void *a, const void *b, void *ctx)
{
    const struct entry *e = ctx;
    int64_t x = e[*(const int32_t *)a].fi.vector_id, y = e[*(const int32_t *)b].fi.vector_id;
    return (x > y) - (x < y);
}

struct semantic {
    struct entry *e;
    const int32_t *first;   /* distinct vector -> its first file */
};

static int semantic_pair(void *user, size_t a, size_t b, float score)
{
    const struct semantic *sm = user;
    (void)score;
    unite(sm->e, sm->first[a], sm->first[b]);
    return 0;
}

static int pair_semantic(struct dupes *d)
{
    int32_t *ord = NULL, *first = NULL;
    int64_t *vids = NULL;
    size_t n = 0, nv = 0;
    int ret = EXIT_ERROR;

    ord = xmalloc((d->n + 1) * sizeof *ord);
    first = xmalloc((d->n + 1) * sizeof *first);
    vids = xmalloc((d->n + 1) * sizeof *vids);
    /* Only files that passed the filters are here; files sharing a
     * vector are one group at once, and each distinct vector joins once. */
    for (size_t i = 0; i < d->n; i++)
        if (d->e[i].fi.vector_id && d->e[i].fi.model_id == d->c.model_id) ord[n++] = (int32_t)i;
    qsort_r(ord, n, sizeof *ord, cmp_by_vector, d->e);
    for (size_t i = 0; i < n; i++) {
        int64_t vid = d->e[ord[i]].fi.vector_id;
        if (nv && vid == vids[nv - 1]) {
            unite(d->e, first[nv - 1], ord[i]);
            continue;
        }
        vids[nv] = vid;
        first[nv++] = ord[i];
    }
    struct semantic sm = {d->e, first};
    /* The pairs are the same at every precision; it sets only the speed. */
    cdx_precision jp;
    if (requested_precision(d->c.prec_opt, &jp)) goto cleanup;
    if (cdx_store_set_join_precision(d->c.store, jp) != CDX_OK) {
        error("%s", cdx_last_error());
        goto cleanup;
    }
    if (cdx_store_similar_pairs(d->c.store, vids, nv, (float)d->cosine, semantic_pair, &sm) != CDX_OK) {
        error("%s", cdx_last_error());
        goto cleanup;
    }
    ret = 0;
cleanup:
    free(ord);
    free(first);
    free(vids);
    return ret;
}

/* ---- groups ---- */

struct group {
    int32_t *m;          /* members, best first */
    size_t n;
};

/* best copy first: most pixels, largest file, oldest, path */
static int cmp_best(const void *a, const void *b, void *ctx)
{
    const struct entry *e = ctx;
    const cdx_file_info *x = &e[*(const int32_t *)a].fi, *y = &e[*(const int32_t *)b].fi;
    int64_t px = (int64_t)x->meta.width * x->meta.height, py = (int64_t)y->meta.width * y->meta.height;
    if (px != py) return px > py ? -1 : 1;
    if (x->meta.size != y->meta.size) return x->meta.size > y->meta.size ? -1 : 1;
    int64_t tx = file_when(x), ty = file_when(y);
    if (tx != ty) return tx < ty ? -1 : 1;
    return strcmp(x->meta.path, y->meta.path);
}

static int cmp_group(const void *a, const void *b, void *ctx)
{
    const struct entry *e = ctx;
    const struct group *x = a, *y = b;
    return strcmp(e[x->m[0]].fi.meta.path, e[y->m[0]].fi.meta.path);
}

static int make_groups(struct dupes *d, struct group **out, size_t *n_out)
{
    int32_t *count = xcalloc(d->n + 1, sizeof *count), *slot = NULL;
    struct group *g = NULL;
    size_t ng = 0;

    for (size_t i = 0; i < d->n; i++) count[find(d->e, (int32_t)i)]++;
    for (size_t i = 0; i < d->n; i++)
        if (count[i] > 1) ng++;
    g = xcalloc(ng + 1, sizeof *g);
    slot = xmalloc((d->n + 1) * sizeof *slot);
    ng = 0;
    for (size_t i = 0; i < d->n; i++) {
        slot[i] = -1;
        if (count[i] > 1) {
            slot[i] = (int32_t)ng;
            g[ng].m = xmalloc((size_t)count[i] * sizeof *g[ng].m);
            ng++;
        }
    }
    for (size_t i = 0; i < d->n; i++) {
        int32_t r = find(d->e, (int32_t)i);
        if (slot[r] >= 0) {
            struct group *gr = &g[slot[r]];
            gr->m[gr->n++] = (int32_t)i;
            d->e[i].group = slot[r];
        }
    }
    for (size_t k = 0; k < ng; k++) qsort_r(g[k].m, g[k].n, sizeof *g[k].m, cmp_best, d->e);
    qsort_r(g, ng, sizeof *g, cmp_group, d->e);
    free(slot);
    free(count);
    *out = g;
    *n_out = ng;
    return 0;
}

/* ---- output ---- */

/* How member fi relates to the best copy b of its group. */
struct relation {
    const char *match;   /* "best", "exact", "visual", "semantic" */
    int bits;            /* pHash distance to the best copy, -1 unknown */
    double cosine;       /* CLIP cosine to the best copy, NAN-free: -2 unknown */
};

static struct relation relate(struct dupes *d, const cdx_file_info *b, const cdx_file_info *fi,
                              const float *vb, float *tmp, int is_best)
{
    struct relation r = {"visual", -1, -2};
    if (b->meta.has_phash && fi->meta.has_phash) r.bits = hamming(b->meta.phash, fi->meta.phash);
    if (vb && fi->vector_id && fi->model_id == d->c.model_id &&
        cdx_store_get_vector(d->c.store, fi->vector_id, tmp) == CDX_OK) {
        double dot = 0;
        for (int i = 0; i < d->c.dim; i++) dot += (double)vb[i] * tmp[i];
        r.cosine = dot;
    }
    if (is_best) r.match = "best";
    else if (b->meta.has_hash && fi->meta.has_hash && memcmp(b->meta.hash, fi->meta.hash, CDX_HASH_SIZE) == 0)
        r.match = "exact";
    else if ((d->methods & M_VISUAL) && r.bits >= 0 && r.bits <= d->bits) r.match = "visual";
    else if (d->methods & M_SEMANTIC) r.match = "semantic";
    return r;
}

static void human_size(char *buf, size_t n, int64_t s)
{
    if (s >= 1000000) snprintf(buf, n, "%.1f MB", (double)s / 1e6);
    else if (s >= 1000) snprintf(buf, n, "%.0f kB", (double)s / 1e3);
    else snprintf(buf, n, "%lld B", (long long)s);
}

static void describe_relation(char *buf, size_t n, const struct relation *r)
{
    if (strcmp(r->match, "best") == 0 || strcmp(r->match, "exact") == 0)
        snprintf(buf, n, "%s", strcmp(r->match, "best") == 0 ? "keep" : "exact");
    else if (strcmp(r->match, "visual") == 0)
        snprintf(buf, n, "%d bits", r->bits);
    else
        snprintf(buf, n, "cos %.3f", r->cosine);
}

static int print_groups(struct dupes *d, struct group *g, size_t ng)
{
    out_file out;
    gallery *gal = NULL;
    float *vb = NULL, *tmp = NULL;
    int ret;
    char rel[32], size[32], date[32], cap[160], sub[160];

    if ((ret = out_open(&out, d->output)) != 0) return ret;
    if (d->methods & M_SEMANTIC) {
        vb = xmalloc((size_t)d->c.dim * sizeof *vb);
        tmp = xmalloc((size_t)d->c.dim * sizeof *tmp);
    }
    if (d->format == OUT_HTML) {
        size_t nf = 0;
        for (size_t k = 0; k < ng; k++) nf += g[k].n;
        snprintf(sub, sizeof sub, "%zu group%s, %zu files; the first picture of each group is the copy to keep",
                 ng, ng == 1 ? "" : "s", nf);
        gal = gallery_new(out.f, "clipdex dupes", sub);
    }
    for (size_t k = 0; k < ng; k++) {
        const cdx_file_info *b = &d->e[g[k].m[0]].fi;
        const float *vbp = NULL;
        if (vb && b->vector_id && b->model_id == d->c.model_id &&
            cdx_store_get_vector(d->c.store, b->vector_id, vb) == CDX_OK)
            vbp = vb;
        if (d->format == OUT_TABLE)
            fprintf(out.f, "%sgroup %zu: %zu files\n", k ? "\n" : "", k + 1, g[k].n);
        else if (d->format == OUT_JSON)
            fprintf(out.f, "{\"group\":%zu,\"files\":[", k + 1);
        else if (d->format == OUT_HTML) {
            snprintf(cap, sizeof cap, "group %zu: %zu files", k + 1, g[k].n);
            gallery_section(gal, cap);
        }
        for (size_t j = 0; j < g[k].n; j++) {
            const cdx_file_info *fi = &d->e[g[k].m[j]].fi;
            struct relation r = relate(d, b, fi, vbp, tmp, j == 0);
            describe_relation(rel, sizeof rel, &r);
            human_size(size, sizeof size, fi->meta.size);
            out_date(date, sizeof date, file_when(fi));
            switch (d->format) {
            case OUT_TABLE: {
                char px[32];
                snprintf(px, sizeof px, "%dx%d", (int)fi->meta.width, (int)fi->meta.height);
                fprintf(out.f, "  %-9s %11s %9s  %s  ", rel, px, size, date);
                out_table_path(out.f, fi->meta.path);
                fputc('\n', out.f);
                break;
            }
            case OUT_PATHS:
                if (j) out_path_line(out.f, fi->meta.path, d->nul);
                break;
            case OUT_JSON:
                fprintf(out.f, "%s{\"best\":%s,\"match\":\"%s\",\"distance\":", j ? "," : "",
                        j ? "false" : "true", r.match);
                if (r.bits >= 0) fprintf(out.f, "%d", r.bits);
                else fputs("null", out.f);
                fputs(",\"cosine\":", out.f);
                if (r.cosine > -2) print_float(out.f, (float)r.cosine);
                else fputs("null", out.f);
                fputc(',', out.f);
                out_json_file(out.f, fi);
                fputc('}', out.f);
                break;
            case OUT_HTML:
                snprintf(cap, sizeof cap, "%s  %dx%d  %s  %s", rel, (int)fi->meta.width,
                         (int)fi->meta.height, size, date);
                gallery_item(gal, fi->meta.path, cap);
                break;
            }
        }
        if (d->format == OUT_JSON) fputs("]}\n", out.f);
    }
    if (gal) {
        int bad = gallery_finish(gal);
        gal = NULL;
        if (bad) warning("%d thumbnail%s could not be made (see the page)", bad, bad == 1 ? "" : "s");
    }
    ret = out_close(&out, 1);
    if (ret == 0 && d->output && d->format == OUT_HTML)
        fprintf(stderr, "clipdex: wrote %zu group%s to %s\n", ng, ng == 1 ? "" : "s", d->output);
    free(vb);
    free(tmp);
    return ret;
}

static int parse_methods(const char *s, unsigned *out)
{
    unsigned m = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 5 && strncmp(p, "exact", 5) == 0) m |= M_EXACT;
        else if (len == 6 && strncmp(p, "visual", 6) == 0) m |= M_VISUAL;
        else if (len == 8 && strncmp(p, "semantic", 8) == 0) m |= M_SEMANTIC;
        else return -1;
        if (!comma) break;
        p = comma + 1;
    }
    *out = m;
    return 0;
}

enum { OPT_METHOD = OPT_CMD_BASE, OPT_THRESHOLD, OPT_FORMAT };

int cmd_dupes(int argc, char **argv)
{
    static const struct option opts[] = {
        {"method", required_argument, NULL, OPT_METHOD},
        {"threshold", required_argument, NULL, OPT_THRESHOLD},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"output", required_argument, NULL, 'o'},
        QFILTER_LONG_OPTIONS,
        QCTX_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const cdx_cmd *self = cmd_find("dupes");
    struct dupes d;
    struct group *groups = NULL;
    size_t ng = 0;
    const char *threshold = NULL;
    int ch, ret = EXIT_USAGE;

    memset(&d, 0, sizeof d);
    d.methods = M_EXACT | M_VISUAL;
    d.bits = DEFAULT_BITS;
    d.cosine = DEFAULT_COSINE;
    d.format = OUT_TABLE;
    d.c.self = self;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "o:0", opts, NULL)) != -1) {
        int r;
        if ((r = qfilter_option(&d.flt, self, ch, optarg)) != 0) {
            if (r != 1) goto cleanup;
            continue;
        }
        if (qctx_option(&d.c, ch, optarg)) continue;
        switch (ch) {
        case OPT_METHOD:
            if (parse_methods(optarg, &d.methods) != 0) {
                ret = usage_error(self, "--method takes exact, visual and semantic (comma-separated), not '%s'", optarg);
                goto cleanup;
            }
            break;
        case OPT_THRESHOLD: threshold = optarg; break;
        case OPT_FORMAT:
            if (out_parse_format(optarg, &d.format) != 0) {
                ret = usage_error(self, "--format must be table, paths, json or html, not '%s'", optarg);
                goto cleanup;
            }
            break;
        case 'o': d.output = optarg; break;
        case '0': d.nul = 1; break;
        default:
            ret = usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
            goto cleanup;
        }
    }
    if (optind < argc) {
        ret = usage_error(self, "unexpected argument '%s' (restrict to a directory with --under)", argv[optind]);
        goto cleanup;
    }
    if (d.nul && d.format != OUT_PATHS) {
        ret = usage_error(self, "-0 goes with --format paths");
        goto cleanup;
    }
    if (threshold) {
        double t;
        if ((d.methods & M_VISUAL) && (d.methods & M_SEMANTIC)) {
            ret = usage_error(self, "--threshold is bits for visual and a cosine for semantic: use one of them");
            goto cleanup;
        }
        if (d.methods & M_VISUAL) {
            size_t b;
            if (parse_size(threshold, &b) != 0 || b > 32) {
                ret = usage_error(self, "--threshold for visual is a number of bits, 0..32, not '%s'", threshold);
                goto cleanup;
            }
            d.bits = (int)b;
        } else if (d.methods & M_SEMANTIC) {
            if (parse_double(threshold, &t) != 0 || t < -1 || t > 1) {
                ret = usage_error(self, "--threshold for semantic is a cosine in [-1, 1], not '%s'", threshold);
                goto cleanup;
            }
            d.cosine = t;
        } else {
            ret = usage_error(self, "--threshold does not apply to --method exact");
            goto cleanup;
        }
    }

    if ((ret = qctx_open_store(&d.c)) != 0) goto cleanup;
    /* Only semantic needs the model (its vector space). */
    d.c.identity_only = 1; /* the join reads stored vectors; nothing is encoded */
    if ((d.methods & M_SEMANTIC) && (ret = qctx_open_model(&d.c, CDX_TOWER_TEXT)) != 0) goto cleanup;
    d.flt.f.state = CDX_FILE_OK;
    if (cdx_store_foreach_file(d.c.store, &d.flt.f, CDX_FOREACH_BY_HASH, collect_cb, &d) != CDX_OK) {
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    if (d.oom) { /* cdx_file_info_copy failed */
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    if (d.methods & M_EXACT) pair_exact(&d);
    if ((d.methods & M_VISUAL) && (ret = pair_visual(&d)) != 0) goto cleanup;
    if ((d.methods & M_SEMANTIC) && (ret = pair_semantic(&d)) != 0) goto cleanup;
    if ((ret = make_groups(&d, &groups, &ng)) != 0) goto cleanup;
    if ((ret = print_groups(&d, groups, ng)) != 0) goto cleanup;
    ret = ng ? EXIT_FOUND : EXIT_NOTFOUND;
cleanup:
    for (size_t k = 0; k < ng; k++) free(groups[k].m);
    free(groups);
    for (size_t i = 0; i < d.n; i++) cdx_file_info_release(&d.e[i].fi);
    free(d.e);
    qctx_release(&d.c);
    qfilter_release(&d.flt);
    return ret;
}

/* For clipdex serve (dupes.h): the groups of exact and visual duplicates,
 * found by the same steps as the command, handed to a callback. */
int dupes_groups(qctx *c, const cdx_store_filter *f, int bits, dupes_group_fn fn, void *user)
{
    struct dupes d;
    struct group *groups = NULL;
    const cdx_file_info **members = NULL;
    size_t ng = 0;
    cdx_store_filter ff = {0};
    int ret;

    memset(&d, 0, sizeof d);
    d.methods = M_EXACT | M_VISUAL;
    d.bits = bits < 0 ? DEFAULT_BITS : bits;
    d.c = *c; /* borrowed: only its store is used, never released here */
    if (f) ff = *f;
    ff.state = CDX_FILE_OK;
    if (cdx_store_foreach_file(c->store, &ff, CDX_FOREACH_BY_HASH, collect_cb, &d) != CDX_OK) {
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    if (d.oom) { /* cdx_file_info_copy failed */
        ret = error("%s", cdx_last_error());
        goto cleanup;
    }
    pair_exact(&d);
    if ((ret = pair_visual(&d)) != 0) goto cleanup;
    if ((ret = make_groups(&d, &groups, &ng)) != 0) goto cleanup;
    members = xmalloc((d.n + 1) * sizeof *members);
    for (size_t k = 0; k < ng; k++) {
        for (size_t i = 0; i < groups[k].n; i++) members[i] = &d.e[groups[k].m[i]].fi;
        if (fn(members, groups[k].n, user)) break;
    }
cleanup:
    free(members);
    for (size_t k = 0; k < ng; k++) free(groups[k].m);
    free(groups);
    for (size_t i = 0; i < d.n; i++) cdx_file_info_release(&d.e[i].fi);
    free(d.e);
    return ret;
}
