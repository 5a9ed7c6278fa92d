/*
 * watch.h - directory watching for clipdexd, on raw inotify.
 *
 * Why not libinotifytools (inotify-tools): it keeps one process-wide
 * inotify instance behind a blocking next_event(timeout) call and does not
 * expose the descriptor, so its events cannot be multiplexed with the
 * pipeline's eventfd in the daemon's single poll loop; its recursive watch
 * stops at the first failure without saying which directories are left
 * unwatched, which the watch-limit fallback (periodic rescans of exactly
 * those directories) needs; and the parts it would save us (a wd -> path
 * table, rename bookkeeping) are a hundred lines here.  (Debian also ships
 * no pkg-config file for it.)
 *
 * The watcher keeps the wd <-> directory table, pairs IN_MOVED_FROM with
 * IN_MOVED_TO by cookie and turns kernel events into the few kinds the
 * daemon acts on (watch_event).  One instance, owned by the main thread.
 */
#ifndef IX_WATCH_H
#define IX_WATCH_H

#include <stddef.h>

enum {
    WE_FILE = 1,   /* a file was written, created, touched or moved in */
    WE_DIR_NEW,    /* a directory was created or moved in: scan it */
    WE_GONE,       /* path was deleted or moved out (is_dir says which) */
    WE_MOVE,       /* path was renamed to `to` inside the watched tree */
    WE_ROOT_GONE,  /* a root directory itself was deleted or moved away */
    WE_OVERFLOW    /* the kernel queue overflowed: events were lost */
};

typedef struct watch_event {
    int type;
    const char *path;
    const char *to;   /* WE_MOVE */
    int is_dir;
    int writing;      /* WE_FILE: modified and not (yet) closed */
} watch_event;

typedef struct watcher watcher;

/* max_watches: our own ceiling (0: the kernel's).  NULL with errno on
 * failure (EMFILE: too many inotify instances). */
watcher *watch_open(long max_watches);
void watch_close(watcher *w);
int watch_fd(const watcher *w);

/* Watch directory dir (not recursive).  0: watched (or already was),
 * 1: the watch limit is reached (dir stays unwatched), -1: dir cannot be
 * watched (gone, not a directory, no permission; errno says). */
int watch_add(watcher *w, const char *dir, int is_root);
/* Stop watching dir and every directory under it. */
void watch_remove_under(watcher *w, const char *dir);
/* A watched directory moved: rename it and everything under it. */
void watch_rename(watcher *w, const char *from, const char *to);
int watch_is_watched(const watcher *w, const char *dir);
size_t watch_count(const watcher *w);

/* Read every queued event and report each through fn (paths valid only
 * during the call).  Returns the number of kernel events read. */
size_t watch_read(watcher *w, void (*fn)(const watch_event *ev, void *user), void *user);

#endif
