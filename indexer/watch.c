/*
 * watch.c - raw inotify for clipdexd (see watch.h for why not
 * libinotifytools).
 *
 * Every watched directory has one wd; the table maps wd -> path (a vector
 * indexed by wd: the kernel hands wds out in increasing order) and path ->
 * wd (a pathmap).  Renames of watched directories rewrite the paths of
 * every entry under them, which is O(watches) per directory rename: rare.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "pathmap.h"
#include "util.h"
#include "watch.h"

/* What we ask for on every directory.  IN_ONLYDIR + IN_DONT_FOLLOW: a
 * symlink is never watched in place of a directory; IN_EXCL_UNLINK: no
 * events from files already unlinked but still open. */
#define DIR_MASK                                                                          \
    (IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MODIFY |   \
     IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

typedef struct wentry {
    char *path;  /* NULL: free slot */
    int is_root;
} wentry;

typedef struct pending_move {
    uint32_t cookie;
    char *path;
    int is_dir;
} pending_move;

struct watcher {
    int fd;
    long max;
    wentry *by_wd;
    size_t cap;
    pathmap by_path;  /* path -> (void *)(intptr_t)wd */
    size_t n;
    pending_move *moves;
    size_t n_moves, cap_moves;
};

watcher *watch_open(long max_watches)
{
    watcher *w;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return NULL;
    w = xcalloc(1, sizeof *w);
    w->fd = fd;
    w->max = max_watches;
    return w;
}

void watch_close(watcher *w)
{
    if (!w) return;
    close(w->fd);
    for (size_t i = 0; i < w->cap; i++) free(w->by_wd[i].path);
    free(w->by_wd);
    pathmap_release(&w->by_path, NULL);
    for (size_t i = 0; i < w->n_moves; i++) free(w->moves[i].path);
    free(w->moves);
    free(w);
}

int watch_fd(const watcher *w)
{
    return w->fd;
}

size_t watch_count(const watcher *w)
{
    return w->n;
}

int watch_is_watched(const watcher *w, const char *dir)
{
    return pathmap_get(&w->by_path, dir) != NULL;
}

static wentry *entry(const watcher *w, int wd)
{
    if (wd < 0 || (size_t)wd >= w->cap || !w->by_wd[wd].path) return NULL;
    return &w->by_wd[wd];
}

static void drop(watcher *w, int wd)
{
    wentry *e = entry(w, wd);
    if (!e) return;
    /* by_path may name a newer wd for the same path: keep that one. */
    if ((intptr_t)pathmap_get(&w->by_path, e->path) == wd) pathmap_del(&w->by_path, e->path);
    free(e->path);
    e->path = NULL;
    w->n--;
}

int watch_add(watcher *w, const char *dir, int is_root)
{
    int wd;
    wentry *e;
    if (w->max > 0 && (long)w->n >= w->max && !watch_is_watched(w, dir)) return 1;
    wd = inotify_add_watch(w->fd, dir, DIR_MASK);
    if (wd < 0) return errno == ENOSPC ? 1 : -1;
    if ((size_t)wd >= w->cap) {
        size_t old = w->cap;
        w->by_wd = xgrow(w->by_wd, &w->cap, (size_t)wd + 1, sizeof *w->by_wd, 64);
        memset(w->by_wd + old, 0, (w->cap - old) * sizeof *w->by_wd); /* indexed by wd: no holes */
    }
    e = &w->by_wd[wd];
    if (e->path && strcmp(e->path, dir) == 0) {
        e->is_root |= is_root;
        return 0;
    }
    /* A new watch, or the same directory reached under another name
     * (inotify returns the existing wd for an inode already watched). */
    if (e->path) drop(w, wd);
    e->path = xstrdup(dir);
    e->is_root = is_root;
    w->n++;
    intptr_t old = (intptr_t)pathmap_put(&w->by_path, dir, (void *)(intptr_t)wd);
    if (old && old != wd) {
        /* Another inode had this path (moved away unnoticed): forget it. */
        wentry *o = entry(w, (int)old);
        if (o) {
            inotify_rm_watch(w->fd, (int)old);
            free(o->path);
            o->path = NULL;
            w->n--;
        }
    }
    return 0;
}

void watch_remove_under(watcher *w, const char *dir)
{
    for (size_t i = 0; i < w->cap; i++) {
        if (!w->by_wd[i].path || !path_under(w->by_wd[i].path, dir)) continue;
        inotify_rm_watch(w->fd, (int)i);
        drop(w, (int)i);
    }
}

void watch_rename(watcher *w, const char *from, const char *to)
{
    size_t fl = strlen(from);
    for (size_t i = 0; i < w->cap; i++) {
        wentry *e = &w->by_wd[i];
        if (!e->path || !path_under(e->path, from)) continue;
        char *np = xasprintf("%s%s", to, e->path + fl);
        if ((intptr_t)pathmap_get(&w->by_path, e->path) == (intptr_t)i) pathmap_del(&w->by_path, e->path);
        free(e->path);
        e->path = np;
        pathmap_put(&w->by_path, np, (void *)(intptr_t)i);
    }
}

static void emit(void (*fn)(const watch_event *, void *), void *user, int type, const char *path,
                 const char *to, int is_dir, int writing)
{
    watch_event ev = {type, path, to, is_dir, writing};
    fn(&ev, user);
}

/* Unpaired IN_MOVED_FROM: the file or directory left the watched tree. */
static void flush_moves(watcher *w, void (*fn)(const watch_event *, void *), void *user)
{
    for (size_t i = 0; i < w->n_moves; i++) {
        pending_move *m = &w->moves[i];
        /* A directory moved out keeps its watches (the inode lives on):
         * drop them now, its events would name paths it no longer has. */
        if (m->is_dir) watch_remove_under(w, m->path);
        emit(fn, user, WE_GONE, m->path, NULL, m->is_dir, 0);
        free(m->path);
    }
    w->n_moves = 0;
}

static void handle(watcher *w, const struct inotify_event *ev,
                   void (*fn)(const watch_event *, void *), void *user)
{
    wentry *e;
    char *path;
    int is_dir = (ev->mask & IN_ISDIR) != 0;

    if (ev->mask & IN_Q_OVERFLOW) {
        emit(fn, user, WE_OVERFLOW, "", NULL, 0, 0);
        return;
    }
    e = entry(w, ev->wd);
    if (!e) return; /* a watch we already dropped */
    if (ev->mask & IN_IGNORED) {
        drop(w, ev->wd);
        return;
    }
    if (ev->len == 0 || !ev->name[0]) {
        /* The watched directory itself. */
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
            if (e->is_root) {
                char *p = xstrdup(e->path);
                emit(fn, user, WE_ROOT_GONE, p, NULL, 1, 0);
                free(p);
            } else if (ev->mask & (IN_DELETE_SELF | IN_UNMOUNT)) {
                /* Usually the parent reports it too; not when the parent
                 * is unwatched (watch limit). */
                char *p = xstrdup(e->path);
                emit(fn, user, WE_GONE, p, NULL, 1, 0);
                free(p);
            }
        }
        return;
    }
    path = path_join(e->path, ev->name);
    if (ev->mask & IN_MOVED_FROM) {
        w->moves = xgrow(w->moves, &w->cap_moves, w->n_moves + 1, sizeof *w->moves, 16);
        w->moves[w->n_moves++] = (pending_move){ev->cookie, path, is_dir};
        return; /* path now owned by the move */
    }
    if (ev->mask & IN_MOVED_TO) {
        size_t i;
        for (i = 0; i < w->n_moves; i++)
            if (w->moves[i].cookie == ev->cookie) break;
        if (i < w->n_moves) {
            char *from = w->moves[i].path;
            w->moves[i] = w->moves[--w->n_moves];
            if (is_dir) watch_rename(w, from, path);
            emit(fn, user, WE_MOVE, from, path, is_dir, 0);
            free(from);
        } else {
            emit(fn, user, is_dir ? WE_DIR_NEW : WE_FILE, path, NULL, is_dir, 0);
        }
    } else if (ev->mask & IN_CREATE) {
        emit(fn, user, is_dir ? WE_DIR_NEW : WE_FILE, path, NULL, is_dir, !is_dir);
    } else if (ev->mask & IN_DELETE) {
        emit(fn, user, WE_GONE, path, NULL, is_dir, 0);
    } else if (ev->mask & IN_CLOSE_WRITE) {
        emit(fn, user, WE_FILE, path, NULL, 0, 0);
    } else if (ev->mask & IN_MODIFY) {
        emit(fn, user, WE_FILE, path, NULL, 0, 1);
    } else if ((ev->mask & IN_ATTRIB) && !is_dir) {
        emit(fn, user, WE_FILE, path, NULL, 0, 0);
    }
    free(path);
}

size_t watch_read(watcher *w, void (*fn)(const watch_event *ev, void *user), void *user)
{
    /* Aligned for struct inotify_event; room for many events per read. */
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    size_t count = 0;
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            handle(w, ev, fn, user);
            count++;
            p += sizeof *ev + ev->len;
        }
    }
    flush_moves(w, fn, user);
    return count;
}
