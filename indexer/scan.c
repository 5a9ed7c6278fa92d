/*
 * scan.c - the library filter and the directory walker (see scan.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pathmap.h"
#include "scan.h"
#include "util.h"

const char *scan_root_of(const config *c, const char *path)
{
    const char *best = NULL;
    for (size_t i = 0; i < c->roots.n; i++)
        if (path_under(path, c->roots.v[i]) && (!best || strlen(c->roots.v[i]) > strlen(best)))
            best = c->roots.v[i];
    return best;
}

int scan_name_excluded(const config *c, const char *name, const char *full)
{
    if (!c->hidden && name[0] == '.') return 1;
    for (size_t i = 0; i < c->excludes.n; i++) {
        const char *pat = c->excludes.v[i];
        if (strchr(pat, '/') ? fnmatch(pat, full, 0) == 0 : fnmatch(pat, name, 0) == 0) return 1;
    }
    return 0;
}

int scan_wanted(const config *c, const char *path, int is_dir)
{
    const char *root = scan_root_of(c, path);
    char ext[16];
    size_t rl;
    int ok = 1;
    if (!root) return 0;
    if (!is_dir) {
        path_ext(path, ext, sizeof ext);
        if (!config_ext_wanted(c, ext)) return 0;
    }
    rl = strlen(root);
    if (rl == 1) rl = 0; /* the root is "/" */
    /* Every component below the root, each with its own prefix. */
    char *buf = xstrdup(path);
    for (char *p = buf + rl; *p == '/' && ok;) {
        char *name = p + 1, *end = strchr(name, '/');
        if (end) *end = '\0';
        if (*name) ok = !scan_name_excluded(c, name, buf);
        if (!end) break;
        *end = '/';
        p = end;
    }
    free(buf);
    return ok;
}

typedef struct walk_ctx {
    const config *c;
    const scan_fns *fns;
    void *user;
    pathmap seen_dirs; /* "dev:ino" of directories entered */
    strv stack;
    long files;
} walk_ctx;

/* Enter a directory once per inode: returns 1 the first time. */
static int first_visit(walk_ctx *x, const struct stat *sb)
{
    char key[48];
    snprintf(key, sizeof key, "%llx:%llx", (unsigned long long)sb->st_dev,
             (unsigned long long)sb->st_ino);
    if (pathmap_get(&x->seen_dirs, key)) return 0;
    pathmap_put(&x->seen_dirs, key, (void *)1);
    return 1;
}

static void walk_dir(walk_ctx *x, const char *dir)
{
    DIR *d;
    struct dirent *de;
    struct stat sb;
    int fd;
    int err;

    if (x->fns->dir && x->fns->dir(dir, x->user)) return;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || !(d = fdopendir(fd))) {
        int e = errno;
        if (fd >= 0) close(fd);
        if (x->fns->dir_error) x->fns->dir_error(dir, e, x->user);
        return;
    }
    if (!first_visit(x, &sb)) {
        closedir(d);
        return;
    }
    for (;;) {
        errno = 0;
        if (!(de = readdir(d))) break;
        const char *name = de->d_name;
        int type = de->d_type;
        char *path;
        if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]))) continue;
        path = path_join(dir, name);
        if (scan_name_excluded(x->c, name, path)) {
            free(path);
            continue;
        }
        if (type == DT_UNKNOWN || type == DT_REG) {
            if (fstatat(fd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
                free(path);
                continue; /* vanished meanwhile */
            }
            type = S_ISDIR(sb.st_mode) ? DT_DIR : S_ISREG(sb.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        if (type == DT_DIR) {
            strv_push_owned(&x->stack, path);
        } else if (type == DT_REG) {
            char ext[16];
            path_ext(name, ext, sizeof ext);
            if (config_ext_wanted(x->c, ext)) {
                x->files++;
                x->fns->file(path, &sb, x->user);
            }
            free(path);
        } else {
            free(path); /* links, devices, FIFOs, sockets */
        }
    }
    err = errno;
    if (err && x->fns->dir_error) x->fns->dir_error(dir, err, x->user);
    closedir(d);
}

long scan_tree(const config *c, const char *top, const scan_fns *fns, void *user)
{
    walk_ctx x = {c, fns, user, {0}, {0}, 0};
    strv_push(&x.stack, top);
    while (x.stack.n > 0) {
        char *dir = x.stack.v[--x.stack.n];
        walk_dir(&x, dir);
        free(dir);
    }
    strv_clear(&x.stack);
    pathmap_release(&x.seen_dirs, NULL);
    return x.files;
}
