/*
 * imgcheck.c - run the image layer over a list of files and record what
 * happened, one line per file.  Not a test by itself: the corpus test
 * (tests/cli/21-image-corpus.t) compares the records with MANIFEST.tsv
 * and Pillow, the sanitizer pass (22-image-sanitizers.t) runs it built
 * with ASan+UBSan, and `make valgrind-check` runs it under valgrind.
 *
 *   imgcheck [-m MODE] [-j THREADS] [-d DUMPDIR] -o OUT (-L LIST | FILE...)
 *
 *   -m stored   cdx_image_decode, full size, stored orientation (default)
 *      upright  the same with apply_orientation
 *      fast     apply_orientation + min_side 224, then cdx_preprocess_exact
 *      probe    metadata only (img = NULL)
 *      all      probe, fast + preprocess, stored + exact preprocess, and
 *               the metadata of the three must agree (the sanitizer mode)
 *   -L LIST     file names, NUL-separated (names may hold newlines)
 *   -d DIR      write the pixels of each decoded file to DIR/<index>.rgb
 *   -j N        decode on N threads (the records are the same as with 1)
 *   -o OUT      the records (the process itself must print nothing: the
 *               tests check that stdout and stderr stay empty)
 *
 * Record, tab-separated (strings with \t \n \\ escaped):
 *   index ok|fail format width height img_w img_h orientation
 *   taken_at|- tz_min|- make model lat,lon|- message
 * where message is the warning (ok) or the error without its "PATH: "
 * prefix (fail), and a fail record whose error is not exactly one line
 * starting with "PATH: " says "BADMSG " before it.
 * Exit status: 0, or 1 when the `all` mode found an inconsistency, 2 on
 * usage errors.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipdex.h"

typedef struct rec {
    char *line; /* the formatted record */
    int bad;    /* inconsistency (mode all) */
} rec;

static const char *mode = "stored";
static const char *dump_dir;
static char **files;
static size_t n_files;
static rec *recs;
static size_t next_file;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void esc(char *dst, size_t dstsz, const char *s)
{
    size_t k = 0;
    for (; *s && k + 3 < dstsz; s++) {
        if (*s == '\t') { dst[k++] = '\\'; dst[k++] = 't'; }
        else if (*s == '\n') { dst[k++] = '\\'; dst[k++] = 'n'; }
        else if (*s == '\\') { dst[k++] = '\\'; dst[k++] = '\\'; }
        else dst[k++] = *s;
    }
    dst[k] = '\0';
}

static int meta_same(const cdx_image_meta *a, const cdx_image_meta *b)
{
    return !strcmp(a->format, b->format) && a->width == b->width && a->height == b->height &&
           a->orientation == b->orientation && a->taken_at == b->taken_at &&
           !strcmp(a->make, b->make) && !strcmp(a->model, b->model) && a->has_gps == b->has_gps;
}

static void dump(size_t i, const cdx_image *img)
{
    char p[4096];
    FILE *f;
    snprintf(p, sizeof p, "%s/%zu.rgb", dump_dir, i);
    if (!(f = fopen(p, "wb"))) return;
    fwrite(img->rgb, 1, (size_t)img->width * img->height * 3, f);
    fclose(f);
}

/* One file: run the mode, format the record. */
static void check(size_t i)
{
    const char *path = files[i];
    cdx_decode_opts o = {0};
    cdx_image img = {0};
    cdx_image_meta meta, m2;
    cdx_preprocess_cfg cfg;
    cdx_status st = CDX_OK;
    int bad = 0;
    float *t = NULL;
    char msg[1100], line[2600], mk[200], md[200], ts[32] = "-", tz[16] = "-", gps[64] = "-";

    cdx_preprocess_cfg_default(&cfg);
    memset(&meta, 0, sizeof meta);
    if (!strcmp(mode, "probe")) {
        st = cdx_image_decode(path, &o, NULL, &meta);
    } else if (!strcmp(mode, "stored") || !strcmp(mode, "upright")) {
        o.apply_orientation = !strcmp(mode, "upright");
        st = cdx_image_decode(path, &o, &img, &meta);
    } else { /* fast, all */
        int all = !strcmp(mode, "all");
        cdx_status st0 = CDX_OK;
        if (all) st0 = cdx_image_decode(path, &o, NULL, &m2);
        o.apply_orientation = 1;
        o.min_side = (uint32_t)cfg.shortest_edge;
        st = cdx_image_decode(path, &o, &img, &meta);
        if (!st && !(t = malloc(sizeof(float) * 3 * (size_t)cfg.crop_width * cfg.crop_height)))
            st = CDX_ERR_NOMEM;
        if (!st) st = cdx_preprocess_exact(&cfg, &img, t);
        if (all) {
            /* a probe may pass what the decode refuses (truncated pixel
             * data), never the reverse */
            if (st == CDX_OK && (st0 != CDX_OK || !meta_same(&meta, &m2))) bad = 1;
            if (!st) {
                cdx_image full = {0};
                cdx_image_meta m3;
                o.apply_orientation = 0;
                o.min_side = 0;
                if (cdx_image_decode(path, &o, &full, &m3) == CDX_OK) {
                    if (!meta_same(&meta, &m3)) bad = 1;
                    if (cdx_preprocess_exact(&cfg, &full, t) != CDX_OK) bad = 1;
                }
                cdx_image_release(&full);
            }
        }
    }

    if (st == CDX_OK) {
        esc(msg, sizeof msg, meta.warning);
        if (dump_dir && img.rgb) dump(i, &img);
    } else {
        const char *e = cdx_last_error();
        size_t pl = strlen(path);
        int good = strncmp(e, path, pl) == 0 && e[pl] == ':' && e[pl + 1] == ' ' &&
                   !strchr(e, '\n');
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s%s", good ? "" : "BADMSG ", good ? e + pl + 2 : e);
        esc(msg, sizeof msg, tmp);
    }
    esc(mk, sizeof mk, st ? "" : meta.make);
    esc(md, sizeof md, st ? "" : meta.model);
    if (!st && meta.taken_at != INT64_MIN) snprintf(ts, sizeof ts, "%lld", (long long)meta.taken_at);
    if (!st && meta.has_tz_offset) snprintf(tz, sizeof tz, "%d", meta.tz_offset_min);
    if (!st && meta.has_gps) snprintf(gps, sizeof gps, "%.6f,%.6f", meta.gps_lat, meta.gps_lon);
    snprintf(line, sizeof line, "%zu\t%s\t%s\t%u\t%u\t%u\t%u\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i,
             st ? "fail" : "ok", st ? "-" : meta.format, st ? 0 : meta.width,
             st ? 0 : meta.height, img.width, img.height, st ? 0 : meta.orientation, ts, tz, mk,
             md, gps, msg);
    cdx_image_release(&img);
    free(t);
    recs[i].line = strdup(line);
    recs[i].bad = bad;
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        size_t i;
        pthread_mutex_lock(&mu);
        i = next_file++;
        pthread_mutex_unlock(&mu);
        if (i >= n_files) return NULL;
        check(i);
    }
}

static char *read_list(const char *path, size_t *n_out, char ***out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n = 0;
    if (!f) return NULL;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap + 1);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    fclose(f);
    if (!buf) return NULL;
    if (len == 0 || buf[len - 1] != '\0') buf[len++] = '\0';
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\0') n++;
    *out = calloc(n + 1, sizeof **out);
    if (!*out) { free(buf); return NULL; }
    n = 0;
    for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
        if (buf[i]) (*out)[n++] = buf + i;
    *n_out = n;
    return buf;
}

static int usage(void)
{
    fprintf(stderr, "usage: imgcheck [-m stored|upright|fast|probe|all] [-j N] [-d DIR] "
                    "-o OUT (-L LIST | FILE...)\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *out = NULL, *list = NULL;
    char *listbuf = NULL;
    int threads = 1, argi, bad = 0;
    FILE *f;

    for (argi = 1; argi < argc && argv[argi][0] == '-' && argv[argi][1]; argi++) {
        const char *a = argv[argi];
        if (!strcmp(a, "--")) { argi++; break; }
        if (argi + 1 >= argc) return usage();
        if (!strcmp(a, "-m")) mode = argv[++argi];
        else if (!strcmp(a, "-o")) out = argv[++argi];
        else if (!strcmp(a, "-L")) list = argv[++argi];
        else if (!strcmp(a, "-d")) dump_dir = argv[++argi];
        else if (!strcmp(a, "-j")) threads = (int)strtol(argv[++argi], NULL, 10);
        else return usage();
    }
    if (!out || threads < 1 || threads > 64) return usage();
    if (strcmp(mode, "stored") && strcmp(mode, "upright") && strcmp(mode, "fast") &&
        strcmp(mode, "probe") && strcmp(mode, "all"))
        return usage();
    if (list) {
        if (!(listbuf = read_list(list, &n_files, &files))) {
            fprintf(stderr, "imgcheck: cannot read %s\n", list);
            return 2;
        }
    } else {
        files = argv + argi;
        n_files = (size_t)(argc - argi);
    }
    if (!(recs = calloc(n_files + 1, sizeof *recs))) return 2;

    pthread_t tid[64];
    for (int t = 1; t < threads; t++) pthread_create(&tid[t], NULL, worker, NULL);
    worker(NULL);
    for (int t = 1; t < threads; t++) pthread_join(tid[t], NULL);

    if (!(f = fopen(out, "w"))) {
        fprintf(stderr, "imgcheck: cannot write %s\n", out);
        return 2;
    }
    for (size_t i = 0; i < n_files; i++) {
        if (recs[i].line) fputs(recs[i].line, f);
        if (recs[i].bad) {
            fprintf(f, "# INCONSISTENT %zu: probe, fast and stored decodes disagree\n", i);
            bad = 1;
        }
        free(recs[i].line);
    }
    if (fclose(f) != 0) return 2;
    free(recs);
    if (list) {
        free(files);
        free(listbuf);
    }
    return bad;
}
