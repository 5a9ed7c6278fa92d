/*
 * sync.c - keeping the store equal to the disk (see daemon.h).
 *
 * Every path takes the same route, whatever told us about it (an inotify
 * event, a reconcile walk, an overflow rescan):
 *
 *   schedule(path, delay)        debounce: each new event restarts the
 *        |                       delay (capped, so a file rewritten
 *        v                       forever is still looked at)
 *   look (lstat + store row)     gone -> forget it; directory -> walk it;
 *        |                       same dev/inode/size/mtime -> nothing
 *        v
 *   hash (worker)                SHA-256 of the bytes
 *        |
 *   content already embedded? -> yes: copy its metadata, no decode
 *        |  no
 *        v
 *   decode + embed (workers, model) -> put_file / put_error
 *
 * Before anything is written the file is stat'ed again: if it changed
 * while it was in the pipeline (or vanished), the result is dropped and
 * the path goes back to pending.  Renames inside the tree are applied at
 * event time (cdx_store_rename: no re-embedding).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon.h"
#include "log.h"
#include "scan.h"

/* A burst of events never delays a file by more than this. */
#define MAX_DEFER_MS 30000

/* ---- the timer heap (min-heap on due) ---- */

static void heap_push(indexer *d, int64_t due, const char *path)
{
    size_t i;
    d->heap = xgrow(d->heap, &d->cap_heap, d->n_heap + 1, sizeof *d->heap, 256);
    i = d->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (d->heap[parent].due <= due) break;
        d->heap[i] = d->heap[parent];
        i = parent;
    }
    d->heap[i].due = due;
    d->heap[i].path = xstrdup(path);
}

/* Remove the top; the caller owns the returned path. */
static char *heap_pop(indexer *d)
{
    char *top = d->heap[0].path;
    timer last = d->heap[--d->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= d->n_heap) break;
        if (c + 1 < d->n_heap && d->heap[c + 1].due < d->heap[c].due) c++;
        if (last.due <= d->heap[c].due) break;
        d->heap[i] = d->heap[c];
        i = c;
    }
    if (d->n_heap > 0) d->heap[i] = last;
    return top;
}

int64_t sync_next_due(const indexer *d)
{
    return d->n_heap ? d->heap[0].due : -1;
}

int sync_idle(const indexer *d)
{
    return d->files.n == 0 && d->recons == NULL && d->inflight == 0;
}

/* ---- reconcile bookkeeping ---- */

static void recon_finish(indexer *d, recon *rc);

static void recon_unref(indexer *d, recon *rc)
{
    if (!rc) return;
    if (--rc->outstanding == 0 && !rc->walking) recon_finish(d, rc);
}

/* The path is done (whatever the outcome): forget its state. */
static void fs_finish(indexer *d, const char *path)
{
    fstate *fs = pathmap_del(&d->files, path);
    if (!fs) return;
    d->done++;
    d->status_dirty = 1;
    recon *rc = fs->rc;
    free(fs);
    recon_unref(d, rc);
}

void sync_schedule(indexer *d, const char *path, int64_t delay_ms, int writing, recon *rc)
{
    int64_t now = now_ms(), due;
    fstate *fs = pathmap_get(&d->files, path);
    if (!fs) {
        fs = xcalloc(1, sizeof *fs);
        fs->stage = FS_PENDING;
        fs->first = now;
        fs->rc = rc;
        if (rc) rc->outstanding++;
        pathmap_put(&d->files, path, fs);
        d->total++;
        d->status_dirty = 1;
    }
    fs->writing = writing;
    if (fs->stage != FS_PENDING) {
        fs->dirty = 1; /* looked at again when its result comes back */
        return;
    }
    due = now + delay_ms;
    if (due > fs->first + MAX_DEFER_MS) due = fs->first + MAX_DEFER_MS;
    if (fs->due == 0 || due < fs->due) {
        heap_push(d, due, path);
        fs->due = due;
    } else {
        fs->due = due; /* the earlier timer fires, sees this and re-arms */
    }
}

/* Back to pending after a result had to be dropped. */
static void requeue(indexer *d, const char *path, fstate *fs)
{
    int64_t delay = fs->writing ? d->cfg.settle_ms : d->cfg.debounce_ms;
    fs->stage = FS_PENDING;
    fs->dirty = 0;
    fs->due = 0;
    fs->first = now_ms();
    sync_schedule(d, path, delay, fs->writing, NULL);
}

/* ---- store writes ---- */

void sync_forget(indexer *d, const char *path)
{
    int64_t n1 = 0, n2 = 0;
    if (daemon_begin(d) != 0) return;
    log_phase("remove", 1);
    if (cdx_store_remove_file(d->store, path, &n1) != CDX_OK ||
        cdx_store_remove_under(d->store, path, &n2) != CDX_OK)
        daemon_error(d, "removing %s: %s", path, cdx_last_error());
    log_phase("remove", 0);
    if (n1 + n2 > 0) LOG_DEBUG("removed %s (%lld rows)", path, (long long)(n1 + n2));
    d->removed += n1 + n2;
    if (d->w) watch_remove_under(d->w, path);
    for (size_t i = 0; i < d->unwatched.n;) {
        if (path_under(d->unwatched.v[i], path)) {
            free(d->unwatched.v[i]);
            d->unwatched.v[i] = d->unwatched.v[--d->unwatched.n];
        } else {
            i++;
        }
    }
}

static int64_t st_mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
}

/* Does the file on disk still match what the job read? */
static int still_same(const job *j)
{
    struct stat sb;
    return lstat(j->path, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_dev == j->dev &&
           (uint64_t)sb.st_ino == j->ino && (int64_t)sb.st_size == j->size &&
           st_mtime_ns(&sb) == j->mtime_ns;
}

static void base_meta(const job *j, cdx_file_meta *m)
{
    memset(m, 0, sizeof *m);
    m->path = j->path;
    m->dev = j->dev;
    m->ino = j->ino;
    m->size = j->size;
    m->mtime_ns = j->mtime_ns;
    m->taken_at = CDX_TIME_UNKNOWN;
    if (j->has_hash) {
        memcpy(m->hash, j->hash, CDX_HASH_SIZE);
        m->has_hash = 1;
    }
}

static void image_meta(const job *j, cdx_file_meta *m)
{
    const cdx_image_meta *im = j->meta;
    if (im && im->width) {
        m->width = (int32_t)im->width;
        m->height = (int32_t)im->height;
        m->orientation = im->orientation;
        m->taken_at = im->taken_at;
        m->camera_make = im->make[0] ? im->make : NULL;
        m->camera_model = im->model[0] ? im->model : NULL;
        m->has_gps = im->has_gps;
        m->gps_lat = im->gps_lat;
        m->gps_lon = im->gps_lon;
    }
    m->phash = j->phash;
    m->has_phash = j->has_phash;
}

/* path's row is in the open transaction: if the commit fails, the file is
 * looked at again (daemon) or reported as not stored (--once). */
static void txn_note(indexer *d, const char *path)
{
    strv_push(&d->txn_paths, path);
}

/* After a write failed with an I/O error SQLite may have rolled the
 * transaction back on its own: later writes would then commit one by
 * one.  They wait for the retry instead. */
static int txn_doomed(indexer *d, const char *path)
{
    if (!d->txn_doomed) return 0;
    txn_note(d, path);
    return 1;
}

/* Writing path's row failed.  An I/O error (a full disk) dooms the whole
 * transaction: it is rolled back and every file in it handled as a failed
 * commit; any other error is the file's own (logged). */
static void write_failed(indexer *d, const char *path, cdx_status st)
{
    if (st == CDX_ERR_IO) {
        txn_note(d, path);
        if (!d->txn_doomed) {
            free(d->txn_why);
            d->txn_why = xstrdup(cdx_last_error());
        }
        d->txn_doomed = 1;
        return;
    }
    daemon_error(d, "%s: %s", path, cdx_last_error());
}

static void record_error(indexer *d, const job *j)
{
    cdx_file_meta m;
    base_meta(j, &m);
    image_meta(j, &m);
    const char *why = j->error ? j->error : cdx_status_name(j->st);
    LOG_WARN("%s: %s", j->path, why);
    d->failed++;
    free(d->last_error);
    d->last_error = xasprintf("%s: %s", j->path, why);
    d->last_error_at = wall_s();
    if (daemon_begin(d) != 0) return;
    if (txn_doomed(d, j->path)) return;
    cdx_status st = cdx_store_put_error(d->store, &m, why);
    if (st == CDX_ERR_IO) write_failed(d, j->path, st);
    else if (st != CDX_OK) daemon_error(d, "recording the error of %s: %s", j->path, cdx_last_error());
    else txn_note(d, j->path);
}

/* Content-derived fields of a file already in the store with this hash
 * and a vector of the current model. */
typedef struct known {
    int64_t model_id;
    int found;
    cdx_file_meta m;
    char make[64], model[64];
} known;

static int known_cb(const cdx_file_info *fi, void *user)
{
    known *k = user;
    if (fi->model_id != k->model_id || fi->state != CDX_FILE_OK) return 0;
    k->m = fi->meta;
    if (fi->meta.camera_make) {
        snprintf(k->make, sizeof k->make, "%s", fi->meta.camera_make);
        k->m.camera_make = k->make;
    }
    if (fi->meta.camera_model) {
        snprintf(k->model, sizeof k->model, "%s", fi->meta.camera_model);
        k->m.camera_model = k->model;
    }
    k->found = 1;
    return 1;
}

/* The content is embedded already: a copy, a move, a touch.  Write the
 * row with the known metadata and no new vector.  0 when done, -1 when
 * the caller must decode after all (the vector went away meanwhile). */
static int put_known(indexer *d, const job *j)
{
    known k;
    cdx_store_filter f;
    cdx_file_meta m;
    memset(&k, 0, sizeof k);
    memset(&f, 0, sizeof f);
    k.model_id = d->model_id;
    f.hash = j->hash;
    f.state = CDX_FILE_OK;
    if (cdx_store_foreach_file(d->store, &f, 0, known_cb, &k) != CDX_OK || !k.found) return -1;
    base_meta(j, &m);
    m.width = k.m.width;
    m.height = k.m.height;
    m.orientation = k.m.orientation;
    m.taken_at = k.m.taken_at;
    m.camera_make = k.m.camera_make;
    m.camera_model = k.m.camera_model;
    m.has_gps = k.m.has_gps;
    m.gps_lat = k.m.gps_lat;
    m.gps_lon = k.m.gps_lon;
    m.phash = k.m.phash;
    m.has_phash = k.m.has_phash;
    if (daemon_begin(d) != 0) return 0;
    if (txn_doomed(d, j->path)) return 0;
    cdx_status st = cdx_store_put_file(d->store, &m, NULL, NULL);
    if (st != CDX_OK) {
        write_failed(d, j->path, st);
        return 0;
    }
    txn_note(d, j->path);
    d->reused++;
    d->txn_reused++;
    return 0;
}

static void put_embedded(indexer *d, const job *j)
{
    cdx_file_meta m;
    base_meta(j, &m);
    image_meta(j, &m);
    if (j->meta && j->meta->warning[0]) LOG_INFO("%s: %s", j->path, j->meta->warning);
    if (daemon_begin(d) != 0) return;
    if (txn_doomed(d, j->path)) return;
    cdx_status st = cdx_store_put_file(d->store, &m, j->vec, NULL);
    if (st != CDX_OK) {
        write_failed(d, j->path, st);
        return;
    }
    txn_note(d, j->path);
    d->embedded++;
    d->txn_embedded++;
}

/* ---- looking at a due path ---- */

static void handle_due_path(indexer *d, const char *path, fstate *fs)
{
    struct stat sb;
    cdx_file_info fi;
    int found = 0;
    job *j;

    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) sync_forget(d, path);
        else LOG_WARN("%s: %s", path, strerror(errno));
        fs_finish(d, path);
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        char *p = xstrdup(path);
        fs_finish(d, path);
        if (scan_wanted(&d->cfg, p, 1)) sync_reconcile(d, p);
        else sync_forget(d, p);
        free(p);
        return;
    }
    if (!S_ISREG(sb.st_mode) || !scan_wanted(&d->cfg, path, 0)) {
        sync_forget(d, path);
        fs_finish(d, path);
        return;
    }
    if (cdx_store_get_file(d->store, path, &fi, &found) != CDX_OK) {
        daemon_error(d, "%s: %s", path, cdx_last_error());
        fs_finish(d, path);
        return;
    }
    if (found) {
        int same = fi.meta.dev == (uint64_t)sb.st_dev && fi.meta.ino == (uint64_t)sb.st_ino &&
                   fi.meta.size == (int64_t)sb.st_size && fi.meta.mtime_ns == st_mtime_ns(&sb) &&
                   (fi.state == CDX_FILE_ERROR || fi.model_id == d->model_id);
        cdx_file_info_release(&fi);
        if (same) {
            d->unchanged++;
            fs_finish(d, path);
            return;
        }
    }
    j = job_new(path);
    j->kind = JOB_HASH;
    fs->stage = FS_HASHING;
    d->inflight++;
    pipeline_submit(d->pl, j);
}

void sync_run_due(indexer *d)
{
    int64_t now = now_ms();
    int budget = 4096; /* keep the loop responsive */
    while (d->n_heap && d->heap[0].due <= now && d->inflight < d->max_inflight && budget-- > 0) {
        char *path = heap_pop(d);
        fstate *fs = pathmap_get(&d->files, path);
        if (fs && fs->stage == FS_PENDING) {
            if (fs->due > now) heap_push(d, fs->due, path);
            else handle_due_path(d, path, fs);
        }
        free(path);
    }
}

/* ---- results ---- */

static void hex_of(const job *j, char out[2 * CDX_HASH_SIZE + 1])
{
    cdx_hash_hex(j->hash, out);
}

static void after_hash(indexer *d, job *j, fstate *fs, job **redo);

/* The content of j was being embedded: jobs parked on it go again. */
static void unpark(indexer *d, const job *j, job **redo)
{
    char hex[2 * CDX_HASH_SIZE + 1];
    job *list;
    if (!j->has_hash) return;
    hex_of(j, hex);
    pathmap_del(&d->embedding, hex);
    list = pathmap_del(&d->parked, hex);
    while (list) {
        job *next = list->next;
        list->next = *redo;
        *redo = list;
        list = next;
    }
}

static void after_hash(indexer *d, job *j, fstate *fs, job **redo)
{
    int64_t vid = 0;
    char hex[2 * CDX_HASH_SIZE + 1];
    (void)redo;
    if (j->has_stat && !still_same(j)) {
        requeue(d, j->path, fs);
        pipeline_release(d->pl, j);
        return;
    }
    if (j->st != CDX_OK) {
        record_error(d, j);
        fs_finish(d, j->path);
        pipeline_release(d->pl, j);
        return;
    }
    if (cdx_store_find_vector(d->store, j->hash, &vid) != CDX_OK) {
        daemon_error(d, "%s: %s", j->path, cdx_last_error());
        fs_finish(d, j->path);
        pipeline_release(d->pl, j);
        return;
    }
    if (vid && put_known(d, j) == 0) {
        fs_finish(d, j->path);
        pipeline_release(d->pl, j);
        return;
    }
    hex_of(j, hex);
    if (pathmap_get(&d->embedding, hex)) {
        /* The same bytes are being embedded for another path right now:
         * wait for that vector instead of computing it twice. */
        j->next = pathmap_get(&d->parked, hex);
        pathmap_put(&d->parked, hex, j);
        pipeline_unhold(d->pl, j);
        return;
    }
    pathmap_put(&d->embedding, hex, (void *)1);
    j->kind = JOB_DECODE;
    fs->stage = FS_DECODING;
    d->inflight++;
    pipeline_submit(d->pl, j);
}

static void handle_result(indexer *d, job *j, job **redo)
{
    fstate *fs = pathmap_get(&d->files, j->path);
    int was_decode = j->kind == JOB_DECODE;

    if (was_decode) unpark(d, j, redo);
    if (!fs) { /* cannot happen: every job has its fstate */
        pipeline_release(d->pl, j);
        return;
    }
    if (fs->dirty || j->changed || j->gone) {
        /* Something happened to the file meanwhile: look again. */
        requeue(d, j->path, fs);
        pipeline_release(d->pl, j);
        return;
    }
    if (!was_decode) {
        after_hash(d, j, fs, redo);
        return;
    }
    if (!still_same(j)) {
        requeue(d, j->path, fs);
    } else if (j->st != CDX_OK || !j->vec) {
        record_error(d, j);
        fs_finish(d, j->path);
    } else {
        put_embedded(d, j);
        fs_finish(d, j->path);
    }
    pipeline_release(d->pl, j);
}

void sync_results(indexer *d)
{
    job *list = pipeline_take(d->pl), *redo = NULL;
    while (list) {
        job *j = list;
        list = j->next;
        j->next = NULL;
        d->inflight--;
        handle_result(d, j, &redo);
    }
    /* Parked jobs whose content is now embedded (or failed): decide again,
     * as if their hash had just come back. */
    while (redo) {
        job *j = redo;
        redo = j->next;
        j->next = NULL;
        fstate *fs = pathmap_get(&d->files, j->path);
        if (!fs) {
            pipeline_release(d->pl, j);
            continue;
        }
        if (fs->dirty) {
            requeue(d, j->path, fs);
            pipeline_release(d->pl, j);
            continue;
        }
        after_hash(d, j, fs, &redo);
    }
}

/* ---- events ---- */

void sync_event(const watch_event *ev, void *user)
{
    indexer *d = user;
    const config *c = &d->cfg;
    switch (ev->type) {
    case WE_FILE:
        if (scan_wanted(c, ev->path, 0))
            sync_schedule(d, ev->path, ev->writing ? c->settle_ms : c->debounce_ms, ev->writing, NULL);
        break;
    case WE_DIR_NEW:
        if (scan_wanted(c, ev->path, 1)) sync_reconcile(d, ev->path);
        break;
    case WE_GONE:
        if (scan_wanted(c, ev->path, ev->is_dir)) sync_schedule(d, ev->path, c->debounce_ms, 0, NULL);
        break;
    case WE_MOVE: {
        int fw = scan_wanted(c, ev->path, ev->is_dir), tw = scan_wanted(c, ev->to, ev->is_dir);
        fstate *fs = pathmap_get(&d->files, ev->path);
        if (fs && fs->stage != FS_PENDING) fs->dirty = 1;
        if (fw && tw) {
            int64_t n = 0;
            if (daemon_begin(d) == 0) {
                if (cdx_store_rename(d->store, ev->path, ev->to, &n) != CDX_OK)
                    daemon_error(d, "renaming %s to %s: %s", ev->path, ev->to, cdx_last_error());
                d->moved += n;
                if (n) LOG_DEBUG("moved %s -> %s (%lld rows)", ev->path, ev->to, (long long)n);
            }
            if (ev->is_dir) sync_reconcile(d, ev->to);
            else sync_schedule(d, ev->to, c->debounce_ms, 0, NULL);
        } else if (fw) {
            if (ev->is_dir && d->w) watch_remove_under(d->w, ev->to);
            sync_forget(d, ev->path);
        } else if (tw) {
            if (ev->is_dir) sync_reconcile(d, ev->to);
            else sync_schedule(d, ev->to, c->debounce_ms, 0, NULL);
        } else if (ev->is_dir && d->w) {
            watch_remove_under(d->w, ev->to);
        }
        break;
    }
    case WE_ROOT_GONE:
        sync_root_gone(d, ev->path);
        break;
    case WE_OVERFLOW:
        LOG_WARN("the inotify queue overflowed (events were lost; see "
                 "/proc/sys/fs/inotify/max_queued_events): rescanning every root");
        if (!d->rescan_all_at) d->rescan_all_at = now_ms() + d->cfg.debounce_ms;
        break;
    }
}

void sync_root_gone(indexer *d, const char *root)
{
    char *r = xstrdup(root);
    LOG_WARN("root %s was deleted or moved away: its files leave the index; "
             "it is indexed again when it reappears", r);
    sync_forget(d, r);
    if (!strv_contains(&d->missing_roots, r)) strv_push(&d->missing_roots, r);
    free(r);
}

/* ---- reconcile walks ---- */

typedef struct snap {
    uint64_t dev, ino;
    int64_t size, mtime_ns;
    int state;
    int64_t model_id;
    int seen;
} snap;

typedef struct newfile {
    char *path;
    int64_t size, mtime_ns;
} newfile;

typedef struct walk {
    indexer *d;
    recon *rc;
    int aborted;      /* a stop was requested: the walk is incomplete */
    pathmap snaps;    /* path -> snap: the store's rows under top */
    pathmap inodes;   /* "dev:ino" -> newfile: files not in the store */
    strv unreadable;
} walk;

static int snap_cb(const cdx_file_info *fi, void *user)
{
    walk *w = user;
    snap *s = xmalloc(sizeof *s);
    s->dev = fi->meta.dev;
    s->ino = fi->meta.ino;
    s->size = fi->meta.size;
    s->mtime_ns = fi->meta.mtime_ns;
    s->state = fi->state;
    s->model_id = fi->model_id;
    s->seen = 0;
    free(pathmap_put(&w->snaps, fi->meta.path, s));
    return 0;
}

static void note_unwatched(indexer *d, const char *dir)
{
    if (strv_contains(&d->unwatched, dir)) return;
    strv_push(&d->unwatched, dir);
    if (!d->limit_warned) {
        char lim[32] = "?";
        FILE *f = fopen("/proc/sys/fs/inotify/max_user_watches", "r");
        if (f) {
            if (!fgets(lim, sizeof lim, f)) snprintf(lim, sizeof lim, "?");
            lim[strcspn(lim, "\n")] = '\0';
            fclose(f);
        }
        LOG_WARN("inotify watch limit reached at %zu directories (fs.inotify.max_user_watches = %s, "
                 "[watch] max_watches = %lld): directories beyond it are not watched and are "
                 "rescanned every %lld s instead; raise the limit with "
                 "'sysctl fs.inotify.max_user_watches=524288'",
                 d->w ? watch_count(d->w) : (size_t)0, lim, (long long)d->cfg.max_watches,
                 (long long)d->cfg.rescan_interval);
        d->limit_warned = 1;
    }
}

static int walk_dir_cb(const char *path, void *user)
{
    walk *w = user;
    indexer *d = w->d;
    /* A walk of a large tree takes a while: honour SIGTERM meanwhile. */
    if (w->aborted || daemon_stop_requested()) {
        w->aborted = 1;
        return 1;
    }
    if (!d->w) return 0;
    /* Watch before reading: a file created from now on raises an event,
     * one created before is in the listing (both: handled once). */
    int r = watch_add(d->w, path, strv_contains(&d->cfg.roots, path));
    if (r == 1) note_unwatched(d, path);
    return 0;
}

static void walk_file_cb(const char *path, const struct stat *sb, void *user)
{
    walk *w = user;
    indexer *d = w->d;
    snap *s = pathmap_get(&w->snaps, path);
    if (s) {
        s->seen = 1;
        if (s->dev == (uint64_t)sb->st_dev && s->ino == (uint64_t)sb->st_ino &&
            s->size == (int64_t)sb->st_size && s->mtime_ns == st_mtime_ns(sb) &&
            (s->state == CDX_FILE_ERROR || s->model_id == d->model_id)) {
            d->unchanged++;
            return;
        }
    } else {
        char key[48];
        newfile *nf = xmalloc(sizeof *nf);
        nf->path = xstrdup(path);
        nf->size = (int64_t)sb->st_size;
        nf->mtime_ns = st_mtime_ns(sb);
        snprintf(key, sizeof key, "%llx:%llx", (unsigned long long)sb->st_dev,
                 (unsigned long long)sb->st_ino);
        newfile *old = pathmap_put(&w->inodes, key, nf);
        if (old) {
            free(old->path);
            free(old);
        }
    }
    sync_schedule(d, path, 0, 0, w->rc);
}

static void walk_error_cb(const char *path, int e, void *user)
{
    walk *w = user;
    LOG_WARN("%s: cannot read the directory: %s", path, strerror(e));
    strv_push(&w->unreadable, path);
}

static void free_newfile(void *p)
{
    newfile *nf = p;
    free(nf->path);
    free(nf);
}

static void recon_finish(indexer *d, recon *rc)
{
    if (rc->removals.n) log_phase("remove", 1);
    for (size_t i = 0; i < rc->removals.n; i++) {
        const char *p = rc->removals.v[i];
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode) && scan_wanted(&d->cfg, p, 0)) {
            sync_schedule(d, p, 0, 0, NULL); /* it is back */
            continue;
        }
        int64_t n = 0;
        if (daemon_begin(d) != 0) break;
        if (cdx_store_remove_file(d->store, p, &n) != CDX_OK)
            daemon_error(d, "removing %s: %s", p, cdx_last_error());
        d->removed += n;
    }
    if (rc->removals.n) log_phase("remove", 0);
    for (recon **pp = &d->recons; *pp; pp = &(*pp)->next) {
        if (*pp == rc) {
            *pp = rc->next;
            break;
        }
    }
    LOG_DEBUG("reconciled %s", rc->top);
    strv_clear(&rc->removals);
    free(rc->top);
    free(rc);
    d->status_dirty = 1;
}

void sync_reconcile(indexer *d, const char *top)
{
    walk w;
    cdx_store_filter f;
    scan_fns fns = {walk_dir_cb, walk_file_cb, walk_error_cb};
    recon *rc = xcalloc(1, sizeof *rc);

    memset(&w, 0, sizeof w);
    memset(&f, 0, sizeof f);
    log_phase("scan", 1);
    rc->top = xstrdup(top);
    rc->walking = 1;
    rc->next = d->recons;
    d->recons = rc;
    w.d = d;
    w.rc = rc;
    /* Strings of top must outlive sync_forget/free of the caller's copy. */
    f.under = rc->top;
    f.state = CDX_FILE_ANY;
    if (cdx_store_foreach_file(d->store, &f, 0, snap_cb, &w) != CDX_OK) {
        daemon_error(d, "reading the store under %s: %s", rc->top, cdx_last_error());
        /* Without a snapshot nothing is judged vanished; the walk still
         * schedules every file (each is compared with its row). */
    }
    long n = scan_tree(&d->cfg, rc->top, &fns, &w);
    LOG_DEBUG("walked %s: %ld files", rc->top, n);

    /* Rows whose file the walk did not see (none when it was cut short:
     * unseen is not vanished then). */
    for (size_t i = 0; i < w.snaps.cap && !w.aborted; i++) {
        const char *p = w.snaps.keys[i];
        snap *s = w.snaps.vals[i];
        int skip = 0;
        char key[48];
        if (!p || s->seen) continue;
        for (size_t k = 0; k < w.unreadable.n && !skip; k++) skip = path_under(p, w.unreadable.v[k]);
        if (skip) continue;
        /* Same inode, size and mtime under a new name: renamed or moved
         * while we were not watching. */
        snprintf(key, sizeof key, "%llx:%llx", (unsigned long long)s->dev, (unsigned long long)s->ino);
        newfile *nf = pathmap_get(&w.inodes, key);
        if (nf && nf->size == s->size && nf->mtime_ns == s->mtime_ns && daemon_begin(d) == 0) {
            int64_t moved = 0;
            if (cdx_store_rename(d->store, p, nf->path, &moved) != CDX_OK)
                daemon_error(d, "renaming %s to %s: %s", p, nf->path, cdx_last_error());
            d->moved += moved;
            pathmap_del(&w.inodes, key);
            free_newfile(nf);
            continue;
        }
        strv_push(&rc->removals, p);
    }
    pathmap_release(&w.snaps, free);
    pathmap_release(&w.inodes, free_newfile);
    strv_clear(&w.unreadable);
    rc->walking = 0;
    log_phase("scan", 0);
    if (rc->outstanding == 0) recon_finish(d, rc);
}

void sync_rescan_unwatched(indexer *d)
{
    strv tops = {0};
    /* Only the topmost: a walk covers what lies under it. */
    for (size_t i = 0; i < d->unwatched.n; i++) {
        int covered = 0;
        for (size_t k = 0; k < d->unwatched.n && !covered; k++)
            covered = k != i && path_under(d->unwatched.v[i], d->unwatched.v[k]) &&
                      strcmp(d->unwatched.v[i], d->unwatched.v[k]) != 0;
        if (!covered) strv_push(&tops, d->unwatched.v[i]);
    }
    /* The walks re-add what still cannot be watched. */
    strv_clear(&d->unwatched);
    for (size_t i = 0; i < tops.n; i++) {
        struct stat sb;
        if (lstat(tops.v[i], &sb) == 0 && S_ISDIR(sb.st_mode) && scan_wanted(&d->cfg, tops.v[i], 1))
            sync_reconcile(d, tops.v[i]);
    }
    if (tops.n) LOG_DEBUG("rescanned %zu unwatched directories; %zu remain unwatched", tops.n, d->unwatched.n);
    strv_clear(&tops);
}

static void free_parked(void *p)
{
    job *j = p;
    while (j) {
        job *n = j->next;
        job_free(j);
        j = n;
    }
}

void sync_release(indexer *d)
{
    strv_clear(&d->txn_paths);
    free(d->txn_why);
    d->txn_why = NULL;
    free(d->unstored_why);
    d->unstored_why = NULL;
    pathmap_release(&d->files, free);
    pathmap_release(&d->parked, free_parked);
    pathmap_release(&d->embedding, NULL);
    for (size_t i = 0; i < d->n_heap; i++) free(d->heap[i].path);
    free(d->heap);
    d->heap = NULL;
    d->n_heap = d->cap_heap = 0;
    while (d->recons) {
        recon *rc = d->recons;
        d->recons = rc->next;
        strv_clear(&rc->removals);
        free(rc->top);
        free(rc);
    }
}
