/*
 * output.c - formats shared by the result-printing subcommands: the
 * output file (stdout or an atomically replaced file), dates, paths in
 * tables and in path lists, and a file row as JSON members.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "output.h"
#include "banned.h"

int out_parse_format(const char *s, enum out_format *out)
{
    static const struct { const char *name; enum out_format f; } names[] = {
        {"table", OUT_TABLE}, {"paths", OUT_PATHS}, {"json", OUT_JSON}, {"html", OUT_HTML},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].f;
            return 0;
        }
    return -1;
}

int out_open(out_file *o, const char *path)
{
    int fd;
    memset(o, 0, sizeof *o);
    if (!path || strcmp(path, "-") == 0) {
        o->f = stdout;
        return 0;
    }
    o->path = xstrdup(path);
    o->tmp = xasprintf("%s.tmpXXXXXX", path);
    if ((fd = mkstemp(o->tmp)) < 0 || !(o->f = fdopen(fd, "w"))) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(o->tmp);
        }
        free(o->tmp);
        free(o->path);
        memset(o, 0, sizeof *o);
        return error("%s: %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    return 0;
}

int out_close(out_file *o, int commit)
{
    int ret = 0;
    if (!o->f) return 0;
    if (!o->path) { /* stdout: main() checks it */
        o->f = NULL;
        return 0;
    }
    if (fflush(o->f) != 0 || ferror(o->f)) {
        if (commit) ret = error("%s: write error: %s", o->path, strerror(errno));
        commit = 0;
    }
    if (fclose(o->f) != 0 && commit) {
        ret = error("%s: write error: %s", o->path, strerror(errno));
        commit = 0;
    }
    if (commit && rename(o->tmp, o->path) != 0) {
        ret = error("%s: %s", o->path, strerror(errno));
        commit = 0;
    }
    if (!commit) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    return ret;
}

void out_date(char *buf, size_t n, int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M", &tm) == 0) snprintf(buf, n, "?");
}

static void iso_date(char *buf, size_t n, int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm) == 0) snprintf(buf, n, "?");
}

/* Length of a valid UTF-8 sequence at p (1..4), or 0. */
static int utf8_len(const unsigned char *p)
{
    int n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 :
            (p[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 2 && p[0] < 0xc2) return 0; /* overlong */
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return n;
}

void out_table_path(FILE *f, const char *path)
{
    const unsigned char *p = (const unsigned char *)path;
    while (*p) {
        int n;
        if (*p == '\\') {
            fputs("\\\\", f);
            p++;
        } else if (*p == '\n') {
            fputs("\\n", f);
            p++;
        } else if (*p == '\t') {
            fputs("\\t", f);
            p++;
        } else if (*p < 0x20 || *p == 0x7f || !(n = utf8_len(p))) {
            fprintf(f, "\\x%02x", *p);
            p++;
        } else {
            fwrite(p, 1, (size_t)n, f);
            p += n;
        }
    }
}

void out_path_line(FILE *f, const char *path, int nul)
{
    fputs(path, f);
    fputc(nul ? '\0' : '\n', f);
}

static int64_t ns_to_s(int64_t ns)
{
    return ns >= 0 ? ns / 1000000000 : -((-ns + 999999999) / 1000000000);
}

static void json_str_or_null(FILE *f, const char *key, const char *v)
{
    fprintf(f, ",\"%s\":", key);
    if (v && *v) print_json_string(f, v);
    else fputs("null", f);
}

void out_json_file(FILE *f, const cdx_file_info *fi)
{
    const cdx_file_meta *m = &fi->meta;
    char buf[40], hex[2 * CDX_HASH_SIZE + 1];

    fputs("\"path\":", f);
    print_json_string(f, m->path ? m->path : "");
    json_str_or_null(f, "ext", fi->ext);
    fprintf(f, ",\"size\":%lld", (long long)m->size);
    iso_date(buf, sizeof buf, ns_to_s(m->mtime_ns));
    fprintf(f, ",\"mtime\":\"%sZ\",\"mtime_ns\":%lld", buf, (long long)m->mtime_ns);
    if (m->taken_at != CDX_TIME_UNKNOWN) {
        iso_date(buf, sizeof buf, m->taken_at);
        fprintf(f, ",\"taken_at\":\"%s\"", buf);
    } else {
        fputs(",\"taken_at\":null", f);
    }
    fprintf(f, ",\"width\":%d,\"height\":%d,\"orientation\":%d", (int)m->width, (int)m->height,
            (int)m->orientation);
    json_str_or_null(f, "camera_make", m->camera_make);
    json_str_or_null(f, "camera_model", m->camera_model);
    if (m->has_gps) {
        fprintf(f, ",\"gps\":{\"lat\":%.7f,\"lon\":%.7f}", m->gps_lat, m->gps_lon);
    } else {
        fputs(",\"gps\":null", f);
    }
    if (m->has_hash) {
        cdx_hash_hex(m->hash, hex);
        fprintf(f, ",\"sha256\":\"%s\"", hex);
    } else {
        fputs(",\"sha256\":null", f);
    }
    if (m->has_phash) fprintf(f, ",\"phash\":\"%016llx\"", (unsigned long long)m->phash);
    else fputs(",\"phash\":null", f);
    fprintf(f, ",\"dev\":%llu,\"inode\":%llu", (unsigned long long)m->dev, (unsigned long long)m->ino);
    iso_date(buf, sizeof buf, fi->indexed_at);
    fprintf(f, ",\"indexed_at\":\"%sZ\",\"file_id\":%lld,\"vector_id\":%lld", buf, (long long)fi->id,
            (long long)fi->vector_id);
}
