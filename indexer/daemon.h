/*
 * daemon.h - the state of a clipdexd run and the two halves that share
 * it: daemon.c (start-up, the event loop, signals, reload, status,
 * shutdown) and sync.c (keeping the store equal to the disk: events,
 * debounce, reconcile walks, results into the store).
 *
 * Everything here belongs to the main thread.  Per path the daemon keeps
 * at most one fstate while the path waits (debounce) or is in the
 * pipeline; the store is written only by the main thread, in one
 * transaction per loop iteration (so one per embedding batch).
 */
#ifndef IX_DAEMON_H
#define IX_DAEMON_H

#include <stdint.h>

#include "clipdex.h"
#include "conf.h"
#include "pathmap.h"
#include "pipeline.h"
#include "progress.h"
#include "util.h"
#include "watch.h"

enum { FS_PENDING = 0, FS_HASHING, FS_DECODING };

struct recon;

/* A path the daemon will look at (pending) or is processing. */
typedef struct fstate {
    int stage;            /* FS_* */
    int64_t due;          /* FS_PENDING: when to look (now_ms clock) */
    int64_t first;        /* first event of the current burst */
    int writing;          /* written to and not closed yet */
    int dirty;            /* an event came while in the pipeline */
    struct recon *rc;     /* the reconcile walk that found it, or NULL */
} fstate;

/* A reconcile walk of one directory tree: files it found changed are
 * processed first, and only then the rows it found vanished are removed,
 * so that a file moved or copied while the daemon was down finds its
 * content's vector still there (no second embedding). */
typedef struct recon {
    struct recon *next;
    char *top;
    int64_t outstanding;  /* its files still pending or in the pipeline */
    int walking;          /* the walk is still running */
    strv removals;
} recon;

typedef struct timer {
    int64_t due;
    char *path;
} timer;

typedef struct indexer {
    config cfg;
    /* how cfg was made, to remake it on SIGHUP */
    char *config_path;
    int config_required;
    strv sets;            /* --set SECTION.KEY=VALUE and flag equivalents */
    strv cli_roots;       /* roots given as arguments: they replace the file's */
    int once;

    cdx_model *model;
    char *model_name;
    cdx_store *store;
    int64_t model_id;
    int txn;              /* a store transaction is open */
    pipeline *pl;
    int64_t inflight, max_inflight;
    watcher *w;           /* NULL in --once mode */

    pathmap files;        /* path -> fstate */
    pathmap parked;       /* hex hash -> job list waiting for that content */
    pathmap embedding;    /* hex hash -> (void *)1 while being embedded */
    timer *heap;
    size_t n_heap, cap_heap;
    recon *recons;
    strv unwatched;       /* directories the watch limit left out */
    strv missing_roots;
    int limit_warned;

    int64_t next_rescan, next_root_poll, next_status;
    int64_t rescan_all_at; /* after an overflow; 0: none */

    /* this run */
    int64_t started_ms, started_at;
    int64_t work_started_ms;  /* model loaded, first walk begins */
    int64_t total, done;  /* files looked at */
    int64_t embedded, reused, failed, unchanged, removed, moved;
    char *last_error;
    int64_t last_error_at;
    int status_dirty;
    const char *state;

    /* The open transaction's file rows, redone when its commit fails (a
     * full disk): the daemon looks at them again after a backoff;
     * --once counts them as not stored and exits non-zero. */
    strv txn_paths;
    int64_t txn_embedded, txn_reused;
    int txn_doomed;       /* a write failed with an I/O error: roll back */
    char *txn_why;        /* that error */
    int64_t unstored;     /* --once: files whose rows were not committed */
    char *unstored_why;   /* the first such commit's error */
    int64_t retry_ms;     /* the current backoff; 0: the store is fine */
    int64_t failing_since; /* wall clock of the first failed commit; 0: none */
    int64_t last_fail_ms;  /* now_ms of the last failed commit with files */
    /* the database backup (daemon.c: backup) */
    int backup_dirty;     /* committed changes since the last backup */
    int64_t backup_mark;  /* removed + moved at the last commit */
    int64_t last_backup_ms;
    progress prog;
    int show_progress;
} indexer;

/* ---- daemon.c ---- */

/* Build the configuration from the file and the flags recorded in d
 * (config_path, sets, cli_roots).  -1 and *err (heap) on error. */
int daemon_make_config(indexer *d, config *c, char **err);

/* Exit statuses (clipdexd(8)): EXIT_OK, EXIT_USAGE (usage or
 * configuration), EXIT_ERROR (store, model, lock) from common/util.h, and: */
enum { EXIT_INTERRUPTED = 1 }; /* --once stopped by a signal */

/* Run clipdexd on a prepared configuration (the flags are parsed by
 * main.c).  Returns the exit status. */
int daemon_run(indexer *d);
/* Store writes open the iteration's transaction lazily. */
int daemon_begin(indexer *d);
/* SIGTERM or SIGINT arrived (or is pending while signals are blocked):
 * long walks check this and give up. */
int daemon_stop_requested(void);
/* Note a failure for `clipdex status` and the log. */
void daemon_error(indexer *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- sync.c ---- */

/* A kernel event (watch_read callback; user is the daemon). */
void sync_event(const watch_event *ev, void *user);
/* Look at path after delay_ms (restarting the delay if it waits). */
void sync_schedule(indexer *d, const char *path, int64_t delay_ms, int writing, recon *rc);
/* Walk top (a directory under a root): watch it, schedule what changed,
 * remove what vanished once the changes are in. */
void sync_reconcile(indexer *d, const char *top);
/* Process pending paths that are due, within the pipeline's room. */
void sync_run_due(indexer *d);
/* Apply finished pipeline jobs to the store. */
void sync_results(indexer *d);
/* The next time something pending is due (-1: nothing). */
int64_t sync_next_due(const indexer *d);
/* Nothing pending, in flight or walking. */
int sync_idle(const indexer *d);
/* A root disappeared: its rows and watches go. */
void sync_root_gone(indexer *d, const char *root);
/* Forget path: its row, the rows under it, its watches. */
void sync_forget(indexer *d, const char *path);
/* Rescan the directories left unwatched by the watch limit. */
void sync_rescan_unwatched(indexer *d);
/* Free the per-path state (at exit). */
void sync_release(indexer *d);

#endif
