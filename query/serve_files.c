/*
 * serve_files.c - the files `clipdex serve` hands out: thumbnails and
 * originals of indexed photos, and the thumbnail cache.
 *
 * A client names a photo by its id; the path comes from the index, and is
 * opened only when it is still the file the indexer saw (see
 * files_open_indexed in serve.h): a symlink put in its place, or in a
 * directory above it, or a different file moved there, is refused.
 *
 * Thumbnails come from thumbnail_jpeg (gallery.c: the DCT-scaled decode,
 * EXIF orientation applied, any format clipdex reads, out as JPEG) and are
 * kept under $XDG_CACHE_HOME/clipdex/thumbs/ named by content hash and
 * size, so copies share one; the directory is trimmed, oldest first, when
 * it grows past --cache-mb.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output.h"
#include "serve.h"
#include "banned.h"

int files_open_indexed(const cdx_file_info *fi, const char **why)
{
    char *real;
    struct stat st;
    int fd;

    *why = NULL;
    if (fi->state != CDX_FILE_OK || !fi->meta.path || fi->meta.path[0] != '/') {
        *why = "not an indexed photo";
        return -1;
    }
    /* canonical: realpath resolves "..", "." and every symlink */
    if (!(real = realpath(fi->meta.path, NULL))) {
        *why = errno == ENOENT ? "the file is gone" : "the file cannot be reached";
        return -1;
    }
    int same = strcmp(real, fi->meta.path) == 0;
    free(real);
    if (!same) {
        *why = "the path no longer leads to the indexed file (symlink)";
        return -1;
    }
    if ((fd = open(fi->meta.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0) {
        *why = "the file cannot be opened";
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (fi->meta.ino && ((uint64_t)st.st_ino != fi->meta.ino || (uint64_t)st.st_dev != fi->meta.dev))) {
        close(fd);
        *why = "the file at that path is not the one indexed";
        return -1;
    }
    return fd;
}

/* The row of id, with the lock; 0, or -1 with *out filled. */
static int lookup(serve *s, int64_t id, cdx_file_info *fi, reply *out)
{
    int found = 0;
    pthread_mutex_lock(&s->lock);
    cdx_status st = cdx_store_get_file_by_id(s->c.store, id, fi, &found);
    if (st != CDX_OK) reply_json_error(out, 500, "%s", cdx_last_error());
    pthread_mutex_unlock(&s->lock);
    if (st != CDX_OK) return -1;
    if (!found) {
        reply_json_error(out, 404, "no photo %lld", (long long)id);
        return -1;
    }
    return 0;
}

static const char *mime(const cdx_file_info *fi)
{
    static const struct { const char *ext, *type; } t[] = {
        {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"}, {"png", "image/png"}, {"webp", "image/webp"},
        {"gif", "image/gif"}, {"tif", "image/tiff"}, {"tiff", "image/tiff"}, {"heic", "image/heic"},
        {"heif", "image/heif"}, {"avif", "image/avif"},
    };
    for (size_t i = 0; fi->ext && i < sizeof t / sizeof *t; i++)
        if (strcmp(fi->ext, t[i].ext) == 0) return t[i].type;
    return "application/octet-stream";
}

void files_image(serve *s, int64_t id, reply *out)
{
    cdx_file_info fi;
    const char *why;
    struct stat st;
    int fd;

    if (lookup(s, id, &fi, out) != 0) return;
    if ((fd = files_open_indexed(&fi, &why)) < 0) {
        reply_json_error(out, 404, "photo %lld: %s", (long long)id, why);
    } else if (fstat(fd, &st) != 0) {
        close(fd);
        reply_json_error(out, 500, "photo %lld: %s", (long long)id, strerror(errno));
    } else {
        out->status = 200;
        out->type = mime(&fi);
        out->fd = fd;
        out->fd_size = st.st_size;
        out->cache = "private, max-age=60";
    }
    cdx_file_info_release(&fi);
}

/* ---- the thumbnail cache ---- */

static char *cache_path(const serve *s, const cdx_file_info *fi)
{
    char hex[2 * CDX_HASH_SIZE + 1];
    if (!s->cache_dir || !fi->meta.has_hash) return NULL;
    cdx_hash_hex(fi->meta.hash, hex);
    /* orientation is part of the picture the hash does not cover */
    return xasprintf("%s/%s-%d-o%d.jpg", s->cache_dir, hex, SERVE_THUMB_SIDE, fi->meta.orientation);
}

static int read_whole(const char *path, char **buf, size_t *n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0) return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (64 << 20)) {
        close(fd);
        return -1;
    }
    *buf = xmalloc((size_t)st.st_size);
    ssize_t r = read(fd, *buf, (size_t)st.st_size);
    close(fd);
    if (r != st.st_size) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    *n = (size_t)r;
    return 0;
}

struct centry {
    char *name;
    time_t mtime;
    off_t size;
};

static int cmp_centry(const void *a, const void *b)
{
    const struct centry *x = a, *y = b;
    return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

/* Count the cache and, with trim, delete the oldest entries until it is
 * under 3/4 of the bound.  Called with cache_lock held. */
static void cache_scan(serve *s, int trim)
{
    DIR *d = opendir(s->cache_dir);
    struct dirent *e;
    struct centry *v = NULL;
    size_t n = 0, cap = 0;
    int64_t total = 0;

    if (!d) return;
    while ((e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.' || !strstr(e->d_name, ".jpg")) continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        total += st.st_size;
        if (!trim) continue;
        v = xgrow(v, &cap, n + 1, sizeof *v, 256);
        v[n].name = xstrdup(e->d_name);
        v[n].mtime = st.st_mtime;
        v[n].size = st.st_size;
        n++;
    }
    if (trim && n) {
        qsort(v, n, sizeof *v, cmp_centry);
        for (size_t i = 0; i < n && total > s->cache_max / 4 * 3; i++)
            if (unlinkat(dirfd(d), v[i].name, 0) == 0) total -= v[i].size;
    }
    for (size_t i = 0; i < n; i++) free(v[i].name);
    free(v);
    closedir(d);
    s->cache_bytes = total;
}

int files_cache_init(serve *s)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *base = NULL;

    if (xdg && xdg[0] == '/') {
        base = xasprintf("%s/clipdex", xdg);
    } else if (home && home[0] == '/') {
        base = xasprintf("%s/.cache/clipdex", home);
    }
    if (!base) {
        warning("no cache directory ($XDG_CACHE_HOME, $HOME): thumbnails are not cached");
        return -1;
    }
    s->cache_dir = xasprintf("%s/thumbs", base);
    /* $XDG_CACHE_HOME itself may not exist yet */
    for (char *sl = strchr(base + 1, '/'); sl; sl = strchr(sl + 1, '/')) {
        *sl = 0;
        if (mkdir(base, 0700) != 0 && errno != EEXIST) warning("%s: cannot create: %s", base, strerror(errno));
        *sl = '/';
    }
    if (!s->cache_dir || ((mkdir(base, 0700) != 0 && errno != EEXIST) ||
                          (mkdir(s->cache_dir, 0700) != 0 && errno != EEXIST))) {
        warning("%s: cannot create: %s; thumbnails are not cached", s->cache_dir ? s->cache_dir : base,
                strerror(errno));
        free(s->cache_dir);
        s->cache_dir = NULL;
        free(base);
        return -1;
    }
    free(base);
    cache_scan(s, 1);
    return 0;
}

/* Store a thumbnail: temporary file + rename, so a reader never sees half. */
static void cache_put(serve *s, const char *path, const unsigned char *jpeg, size_t n)
{
    char *tmp = NULL;
    int fd;
    tmp = xasprintf("%s.%ld.tmp", path, (long)pthread_self());
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0) {
        ssize_t w = write(fd, jpeg, n);
        if (close(fd) == 0 && w == (ssize_t)n && rename(tmp, path) == 0) {
            pthread_mutex_lock(&s->cache_lock);
            s->cache_bytes += (int64_t)n;
            if (s->cache_bytes > s->cache_max) cache_scan(s, 1);
            pthread_mutex_unlock(&s->cache_lock);
        } else {
            unlink(tmp);
        }
    }
    free(tmp);
}

void files_thumb(serve *s, int64_t id, reply *out)
{
    cdx_file_info fi;
    const char *why;
    char *cpath = NULL, *buf = NULL, err[512];
    unsigned char *jpeg = NULL;
    size_t n = 0;
    int fd;

    if (lookup(s, id, &fi, out) != 0) return;
    /* the checks run for cached thumbnails too: a file that went, or was
     * replaced by a symlink, shows nothing */
    if ((fd = files_open_indexed(&fi, &why)) < 0) {
        reply_json_error(out, 404, "photo %lld: %s", (long long)id, why);
        goto cleanup;
    }
    cpath = cache_path(s, &fi);
    if (cpath && read_whole(cpath, &buf, &n) == 0) {
        close(fd);
        out->status = 200;
        out->type = "image/jpeg";
        out->body = buf;
        out->len = n;
        out->cache = "private, max-age=3600";
        goto cleanup;
    }
    /* decode through the fd we checked, not the path again */
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
    int r = thumbnail_jpeg(fdpath, SERVE_THUMB_SIDE, 85, &jpeg, &n, err, sizeof err);
    close(fd);
    if (r != 0) {
        reply_json_error(out, 422, "photo %lld: no thumbnail: %s", (long long)id,
                         strncmp(err, fdpath, strlen(fdpath)) == 0 ? err + strlen(fdpath) : err);
        goto cleanup;
    }
    if (cpath) cache_put(s, cpath, jpeg, n);
    out->status = 200;
    out->type = "image/jpeg";
    out->body = (char *)jpeg;
    out->len = n;
    out->cache = "private, max-age=3600";
cleanup:
    free(cpath);
    cdx_file_info_release(&fi);
}
