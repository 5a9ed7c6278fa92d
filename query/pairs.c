/*
 * pairs.c - read image-text pairs and labelled images (pairs.h has the
 * formats and the order of caption sources).
 *
 * Captions come from files other people's tools wrote, so every source is
 * read defensively: sidecars are read with a size cap, a NUL byte or
 * invalid UTF-8 makes the source unusable (one line, the image skipped),
 * and the metadata libraries (libexempi for XMP, libiptcdata for IPTC)
 * are only asked for a handful of fields whose bytes are validated again
 * here before they become a caption.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <exempi/xmp.h>
#include <exempi/xmpconsts.h>
#include <libiptcdata/iptc-data.h>
#include <libiptcdata/iptc-dataset.h>
#include <libiptcdata/iptc-tag.h>
#include <utf8proc.h>

#include "conf.h"
#include "pairs.h"

#define TXT_MAX ((size_t)64 << 10)   /* a caption sidecar: its first 64 KiB */
#define XMP_MAX ((size_t)16 << 20)   /* an XMP sidecar */
#define MAX_DEPTH 64

int pairs_utf8_ok(const char *s, size_t n)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t left = (utf8proc_ssize_t)n;
    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, left, &cp);
        if (k <= 0 || cp == 0) return 0;
        p += k;
        left -= k;
    }
    return 1;
}

/* s[0..n) as a one-line caption: tabs and line breaks become spaces,
 * surrounding white space goes.  Heap string ("" when nothing is left). */
static char *clean(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    char *out = xstrndup(s, n);
    for (char *c = out; *c; c++)
        if (*c == '\t' || *c == '\r' || *c == '\n') *c = ' ';
    return out;
}

/* Record a skipped item; control characters (a file name may hold a line
 * break) become '?' so the report stays one line per item. */
static void skip(pairs *p, char *line)
{
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    strv_push_owned(&p->skipped, line);
}

static void add(pairs *p, char *path, char *text)
{
    p->v = xgrow(p->v, &p->cap, p->n + 1, sizeof *p->v, 64);
    p->v[p->n].path = path;
    p->v[p->n].text = text;
    p->n++;
}

/* Read at most max bytes of path.  0 with *buf (NUL-terminated, *n bytes)
 * and *truncated set, or -1 with errno. */
static int read_head(const char *path, size_t max, char **buf, size_t *n, int *truncated)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char *b = xmalloc(max + 2);
    size_t got = fread(b, 1, max + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        errno = EIO;
        return -1;
    }
    *truncated = got > max;
    if (got > max) got = max;
    b[got] = 0;
    *buf = b;
    *n = got;
    return 0;
}

/* ---------------------------------------------------------------- TSV */

static int read_tsv(pairs *p, const char *file, int mode, char *err, size_t err_n)
{
    FILE *f = fopen(file, "r");
    char *line = NULL, *dir = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    const char *what = mode == PAIRS_LABELS ? "label" : "caption";

    if (!f) {
        snprintf(err, err_n, "%s: %s", file, strerror(errno));
        return -1;
    }
    const char *slash = strrchr(file, '/');
    dir = slash ? xstrndup(file, (size_t)(slash - file + 1)) : xstrdup("");
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (memchr(line, 0, (size_t)len)) {
            skip(p, xasprintf("%s:%d: NUL byte in the line", file, lineno));
            continue;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        char *tab = strchr(line, '\t');
        if (!tab || tab == line || !tab[1]) {
            skip(p, xasprintf("%s:%d: not path<TAB>%s", file, lineno, what));
            continue;
        }
        *tab = 0;
        if (!pairs_utf8_ok(tab + 1, strlen(tab + 1))) {
            skip(p, xasprintf("%s:%d: the %s is not UTF-8", file, lineno, what));
            continue;
        }
        char *text = clean(tab + 1, strlen(tab + 1));
        if (!*text) {
            free(text);
            skip(p, xasprintf("%s:%d: empty %s", file, lineno, what));
            continue;
        }
        add(p, line[0] == '/' ? xstrdup(line) : xasprintf("%s%s", dir, line), text);
    }
    int bad = ferror(f);
    fclose(f);
    free(line);
    free(dir);
    if (bad) {
        snprintf(err, err_n, "%s: read error", file);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- sources */

/* The outcome of one caption source. */
enum { SRC_NONE = 0, SRC_CAPTION = 1, SRC_BAD = -1 };

/* A text sidecar of the image path: its first line.  *why gets the reason
 * for SRC_BAD ("IMAGE: SIDECAR: reason"). */
static int src_txt(const char *path, const char *side, char **caption, char **why)
{
    const char *sn = path_base(side);
    char *buf = NULL;
    size_t n = 0;
    int trunc = 0;
    struct stat st;
    if (stat(side, &st) != 0) return SRC_NONE;
    if (!S_ISREG(st.st_mode)) return SRC_NONE;
    if (read_head(side, TXT_MAX, &buf, &n, &trunc) != 0) {
        *why = xasprintf("%s: %s: %s", path, sn, strerror(errno));
        return SRC_BAD;
    }
    if (memchr(buf, 0, n)) {
        free(buf);
        *why = xasprintf("%s: %s: a binary file, not a caption", path, sn);
        return SRC_BAD;
    }
    char *s = buf;
    if (n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3; /* a UTF-8 byte-order mark */
    char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    if (!nl && trunc) {
        free(buf);
        *why = xasprintf("%s: %s: the first line is longer than %zu bytes", path, sn, TXT_MAX);
        return SRC_BAD;
    }
    if (!pairs_utf8_ok(s, len)) {
        free(buf);
        *why = xasprintf("%s: %s: the caption is not UTF-8", path, sn);
        return SRC_BAD;
    }
    *caption = clean(s, len);
    free(buf);
    return SRC_CAPTION;
}

/* dc:description's x-default, else dc:subject joined by ", " (heap, ""
 * when they are there but blank), or NULL: *bad set when a value is not
 * UTF-8, else neither property is there. */
static char *xmp_caption(XmpPtr xmp, int *bad)
{
    XmpStringPtr val = xmp_string_new();
    char *out = NULL;
    int found = 0;
    *bad = 0;
    if (xmp_get_localized_text(xmp, NS_DC, "description", NULL, "x-default", NULL, val, NULL) ||
        xmp_get_property(xmp, NS_DC, "description", val, NULL)) {
        const char *s = xmp_string_cstr(val);
        if (s && !pairs_utf8_ok(s, strlen(s))) {
            *bad = 1;
            goto done;
        }
        out = clean(s ? s : "", s ? strlen(s) : 0);
        found = 1;
        if (*out) goto done;
        free(out);
        out = NULL;
    }
    size_t cap = 0, len = 0;
    char *joined = NULL;
    for (int32_t i = 1; xmp_get_array_item(xmp, NS_DC, "subject", i, val, NULL); i++) {
        const char *s = xmp_string_cstr(val);
        if (!s) continue;
        if (!pairs_utf8_ok(s, strlen(s))) {
            free(joined);
            *bad = 1;
            goto done;
        }
        char *k = clean(s, strlen(s));
        size_t kn = strlen(k);
        found = 1;
        if (kn) {
            joined = xgrow(joined, &cap, len + kn + 3, 1, 64);
            if (len) {
                memcpy(joined + len, ", ", 2);
                len += 2;
            }
            memcpy(joined + len, k, kn + 1);
            len += kn;
        }
        free(k);
    }
    out = joined ? joined : found ? xstrdup("") : NULL;
done:
    xmp_string_free(val);
    return out;
}

/* An XMP sidecar of the image path. */
static int src_xmp_sidecar(const char *path, const char *side, char **caption, char **why)
{
    const char *sn = path_base(side);
    char *buf = NULL;
    size_t n = 0;
    int trunc = 0, bad = 0, ret = SRC_NONE;
    struct stat st;
    XmpPtr xmp = NULL;
    if (stat(side, &st) != 0 || !S_ISREG(st.st_mode)) return SRC_NONE;
    if (read_head(side, XMP_MAX, &buf, &n, &trunc) != 0) {
        *why = xasprintf("%s: %s: %s", path, sn, strerror(errno));
        return SRC_BAD;
    }
    if (trunc) {
        *why = xasprintf("%s: %s: larger than %zu MiB, not an XMP sidecar", path, sn, XMP_MAX >> 20);
        ret = SRC_BAD;
        goto done;
    }
    xmp = xmp_new_empty();
    if (!xmp || !xmp_parse(xmp, buf, n)) {
        *why = xasprintf("%s: %s: not valid XMP", path, sn);
        ret = SRC_BAD;
        goto done;
    }
    *caption = xmp_caption(xmp, &bad);
    if (bad) {
        *why = xasprintf("%s: %s: the description or a keyword is not UTF-8", path, sn);
        ret = SRC_BAD;
        goto done;
    }
    ret = *caption ? SRC_CAPTION : SRC_NONE;
done:
    if (xmp) xmp_free(xmp);
    free(buf);
    return ret;
}

/* The XMP packet embedded in the image, found by packet scanning (the
 * toolkit's smart handlers would also import EXIF ImageDescription, whose
 * "OLYMPUS DIGITAL CAMERA" is no caption, and print their parse errors of
 * damaged EXIF on stderr; scanning reads the packet as written). */
static int src_xmp_embedded(const char *path, char **caption, char **why)
{
    XmpFilePtr xf = xmp_files_open_new(path, XMP_OPEN_READ | XMP_OPEN_ONLYXMP | XMP_OPEN_USEPACKETSCANNING);
    XmpPtr xmp = NULL;
    int bad = 0, ret = SRC_NONE;
    if (!xf) return SRC_NONE;
    xmp = xmp_files_get_new_xmp(xf);
    if (!xmp) goto done; /* none, or a packet the toolkit could not parse */
    *caption = xmp_caption(xmp, &bad);
    if (bad) {
        *why = xasprintf("%s: the embedded XMP description or a keyword is not UTF-8", path);
        ret = SRC_BAD;
        goto done;
    }
    ret = *caption ? SRC_CAPTION : SRC_NONE;
done:
    if (xmp) xmp_free(xmp);
    xmp_files_close(xf, XMP_CLOSE_NOOPTION);
    xmp_files_free(xf);
    return ret;
}

/* IPTC record 2 of a JPEG: Caption/Abstract, else the Keywords. */
static int src_iptc(const char *path, const char *ext, char **caption, char **why)
{
    if (strcmp(ext, "jpg") && strcmp(ext, "jpeg") && strcmp(ext, "jpe")) return SRC_NONE;
    IptcData *d = iptc_data_new_from_jpeg(path);
    IptcDataSet *ds;
    char *joined = NULL;
    size_t cap = 0, len = 0;
    int ret = SRC_NONE;
    if (!d) return SRC_NONE;
    ds = iptc_data_get_next_dataset(d, NULL, IPTC_RECORD_APP_2, IPTC_TAG_CAPTION);
    if (ds && ds->data && ds->size) {
        if (!pairs_utf8_ok((const char *)ds->data, ds->size)) {
            *why = xasprintf("%s: the IPTC caption is not UTF-8", path);
            ret = SRC_BAD;
            goto done;
        }
        char *c = clean((const char *)ds->data, ds->size);
        if (*c) {
            *caption = c;
            ret = SRC_CAPTION;
            goto done;
        }
        free(c);
    }
    for (ds = NULL; (ds = iptc_data_get_next_dataset(d, ds, IPTC_RECORD_APP_2, IPTC_TAG_KEYWORDS));) {
        if (!ds->data || !ds->size) continue;
        if (!pairs_utf8_ok((const char *)ds->data, ds->size)) {
            *why = xasprintf("%s: an IPTC keyword is not UTF-8", path);
            ret = SRC_BAD;
            goto done;
        }
        char *k = clean((const char *)ds->data, ds->size);
        size_t kn = strlen(k);
        if (kn) {
            joined = xgrow(joined, &cap, len + kn + 3, 1, 64);
            if (len) {
                memcpy(joined + len, ", ", 2);
                len += 2;
            }
            memcpy(joined + len, k, kn + 1);
            len += kn;
        }
        free(k);
    }
    if (joined) {
        *caption = joined;
        joined = NULL;
        ret = SRC_CAPTION;
    }
done:
    free(joined);
    iptc_data_unref(d);
    return ret;
}

/* One image of a captioned directory: add it or say why not. */
static void caption_image(pairs *p, const char *path, const char *ext)
{
    char *caption = NULL, *why = NULL, *side = NULL;
    int r = SRC_NONE, empty = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        skip(p, xasprintf("%s: %s", path, strerror(errno)));
        return;
    }
    fclose(f);

    /* path without its extension, for IMG.txt / IMG.xmp */
    size_t stem = strlen(path) - (*ext ? strlen(ext) + 1 : 0);
    for (int k = 0; k < 4 && r != SRC_BAD; k++) {
        const char *suffix = k < 2 ? ".txt" : ".xmp";
        side = k % 2 == 0 ? xasprintf("%s%s", path, suffix) : xasprintf("%.*s%s", (int)stem, path, suffix);
        r = k < 2 ? src_txt(path, side, &caption, &why) : src_xmp_sidecar(path, side, &caption, &why);
        free(side);
        if (r == SRC_CAPTION) {
            if (*caption) break;
            free(caption);
            caption = NULL;
            empty = 1;
            r = SRC_NONE;
        }
    }
    if (r == SRC_NONE) r = src_xmp_embedded(path, &caption, &why);
    if (r == SRC_CAPTION && !*caption) {
        free(caption);
        caption = NULL;
        empty = 1;
        r = SRC_NONE;
    }
    if (r == SRC_NONE) r = src_iptc(path, ext, &caption, &why);
    if (r == SRC_CAPTION && !*caption) {
        free(caption);
        caption = NULL;
        empty = 1;
        r = SRC_NONE;
    }
    if (r == SRC_BAD) {
        skip(p, why);
        return;
    }
    if (r == SRC_NONE) {
        p->n_nocaption++;
        skip(p, xasprintf("%s: no caption (%s)", path,
                          empty ? "its captions are empty"
                                : "no .txt or .xmp sidecar, no XMP description or subject, no IPTC caption or keywords"));
        return;
    }
    add(p, xstrdup(path), caption);
}

/* ---------------------------------------------------------------- walk */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walk dir; label is the class of PAIRS_LABELS (NULL at the top). */
static void walk(pairs *p, const config *conf, const char *dir, int depth, int mode, const char *label)
{
    DIR *d = opendir(dir);
    strv names = {0};
    struct dirent *e;
    if (!d) {
        skip(p, xasprintf("%s: %s", dir, strerror(errno)));
        return;
    }
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') strv_push(&names, e->d_name);
    closedir(d);
    qsort(names.v, names.n, sizeof *names.v, cmp_name);
    for (size_t i = 0; i < names.n; i++) {
        char *path = path_join(dir, names.v[i]);
        struct stat st;
        if (lstat(path, &st) != 0) {
            skip(p, xasprintf("%s: %s", path, strerror(errno)));
            free(path);
            continue;
        }
        int link = S_ISLNK(st.st_mode);
        if (link && stat(path, &st) != 0) {
            skip(p, xasprintf("%s: a broken symbolic link", path));
            free(path);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            /* links to directories are not followed: they can loop */
            if (!link && depth < MAX_DEPTH) {
                if (mode == PAIRS_LABELS && !label && !pairs_utf8_ok(names.v[i], strlen(names.v[i])))
                    skip(p, xasprintf("%s: the folder name is not UTF-8", path));
                else
                    walk(p, conf, path, depth + 1, mode, label ? label : names.v[i]);
            }
            free(path);
            continue;
        }
        char ext[16];
        path_ext(names.v[i], ext, sizeof ext);
        if (!S_ISREG(st.st_mode) || !config_ext_wanted(conf, ext)) {
            free(path);
            continue;
        }
        if (mode == PAIRS_LABELS) {
            if (!label) {
                skip(p, xasprintf("%s: not in a class sub-folder", path));
                free(path);
            } else {
                char *text = clean(label, strlen(label));
                if (*text) add(p, path, text);
                else {
                    skip(p, xasprintf("%s: empty class name", path));
                    free(path);
                    free(text);
                }
            }
            continue;
        }
        caption_image(p, path, ext);
        free(path);
    }
    strv_clear(&names);
}

int pairs_read(pairs *p, const char *path, int mode, char *err, size_t err_n)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, err_n, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return read_tsv(p, path, mode, err, err_n);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(err, err_n, "%s: %s", path, strerror(errno));
        return -1;
    }
    closedir(d);
    p->is_dir = 1;
    config conf;
    config_init(&conf); /* the default extensions */
    if (mode == PAIRS_CAPTIONS && !xmp_init()) {
        config_release(&conf);
        snprintf(err, err_n, "%s: the XMP toolkit (libexempi) did not start", path);
        return -1;
    }
    walk(p, &conf, path, 0, mode, NULL);
    if (mode == PAIRS_CAPTIONS) xmp_terminate();
    config_release(&conf);
    return 0;
}

void pairs_release(pairs *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].path);
        free(p->v[i].text);
    }
    free(p->v);
    strv_clear(&p->skipped);
    memset(p, 0, sizeof *p);
}
