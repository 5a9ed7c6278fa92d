/*
 * daemon.c - clipdexd's life: start-up, the event loop, signals, SIGHUP
 * reload, the status kept in the store, and shutdown (see daemon.h).
 *
 * The loop (a Redis-style single-threaded event loop):
 *
 *   ppoll(inotify fd, pipeline eventfd; timeout = next timer)
 *     -> signal flags (SIGTERM/SIGINT stop, SIGHUP reload)
 *     -> inotify events          -> sync_event  (schedule / rename / walk)
 *     -> finished pipeline jobs  -> sync_results (store writes)
 *     -> due pending paths       -> sync_run_due (look, submit)
 *     -> timers: overflow rescan, unwatched rescans, missing roots, status
 *     -> commit the iteration's transaction (one per batch)
 *
 * Signals are blocked except inside ppoll, so a handler runs only there
 * and only sets a flag; ppoll then returns EINTR and the loop acts on the
 * flag.  No race between testing a flag and sleeping.
 *
 * Shutdown on SIGTERM/SIGINT: the pipeline stops taking work, the batch
 * inside the model finishes (its vectors are committed), queued work is
 * dropped (the next start's reconcile finds it again), the FAISS file is
 * saved by cdx_store_close.  Everything committed is durable at every
 * instant (the store's invariant), so SIGKILL loses at most the batch in
 * flight.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "scan.h"

static volatile sig_atomic_t got_stop, got_hup;

static void on_stop(int sig)
{
    got_stop = sig;
}

static void on_hup(int sig)
{
    (void)sig;
    got_hup = 1;
}

int daemon_stop_requested(void)
{
    sigset_t pending;
    if (got_stop) return 1;
    if (sigpending(&pending) != 0) return 0;
    return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

/* systemd's readiness protocol without libsystemd: one datagram to
 * $NOTIFY_SOCKET (a path, or an abstract name starting with '@'). */
static void sd_notify_msg(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    size_t len;
    int fd;
    if (!path || (path[0] != '/' && path[0] != '@') || (len = strlen(path)) >= sizeof sa.sun_path)
        return;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
        LOG_DEBUG("sd_notify: %s", strerror(errno));
    close(fd);
}

/* ---- store transactions and errors ---- */

int daemon_begin(indexer *d)
{
    if (d->txn) return 0;
    if (cdx_store_begin(d->store) != CDX_OK) {
        daemon_error(d, "store: %s", cdx_last_error());
        return -1;
    }
    d->txn = 1;
    return 0;
}

/* A failed commit's backoff: 1 s, doubling to 30 s (sync.c's longest
 * deferral).  The files are embedded again when they come up: their rows
 * were rolled back, and a full disk is not worth holding vectors for. */
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

static void commit_failed(indexer *d, const char *why)
{
    size_t n = d->txn_paths.n;
    char note[1024];
    /* what was counted in this transaction did not happen */
    d->embedded -= d->txn_embedded;
    d->reused -= d->txn_reused;
    if (d->once) {
        d->unstored += (int64_t)n;
        if (n) daemon_error(d, "store commit: %s (%zu files not stored)", why, n);
        if (n && !d->unstored_why) d->unstored_why = xstrdup(why);
        return;
    }
    if (!d->failing_since) d->failing_since = wall_s();
    if (n) {
        /* one backoff step per retry round, not per failed batch */
        int64_t now = now_ms();
        if (!d->retry_ms) d->retry_ms = RETRY_MIN_MS;
        else if (now - d->last_fail_ms >= d->retry_ms) d->retry_ms *= 2;
        if (d->retry_ms > RETRY_MAX_MS) d->retry_ms = RETRY_MAX_MS;
        d->last_fail_ms = now;
        for (size_t i = 0; i < n; i++) sync_schedule(d, d->txn_paths.v[i], d->retry_ms, 0, NULL);
    }
    /* Status rows cannot be written either: the note goes to the lock
     * file, where `clipdex status` finds it. */
    {
        time_t t = (time_t)d->failing_since;
        struct tm tm;
        char since[32] = "?";
        if (localtime_r(&t, &tm)) strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(note, sizeof note, "store writes failing since %s: %s; %zu files to retry", since,
                 why, d->files.n);
    }
    if (cdx_store_writer_note(d->store, note) != CDX_OK) LOG_DEBUG("%s", cdx_last_error());
    if (n) daemon_error(d, "store commit: %s (%zu files retried in %lld s)", why, n,
                        (long long)(d->retry_ms / 1000));
}

/* A commit went through: the store is writable (again), and what changed
 * is due in the next backup. */
static void committed(indexer *d)
{
    if (d->txn_paths.n || d->removed + d->moved != d->backup_mark) d->backup_dirty = 1;
    d->backup_mark = d->removed + d->moved;
    if (!d->failing_since) return;
    LOG_INFO("the store can be written again");
    d->retry_ms = 0;
    d->failing_since = 0;
    if (cdx_store_writer_note(d->store, NULL) != CDX_OK) LOG_DEBUG("%s", cdx_last_error());
}

/* The database backup (cdx_store_backup) when something changed: once the
 * daemon is idle, at most every BACKUP_EVERY_MS, and when it stops (or a
 * --once run ends).  `clipdex check --repair` restores it if the database
 * is ever damaged, so damage costs the changes since, not a re-embedding
 * of everything. */
#define BACKUP_EVERY_MS (3600 * 1000)

static void backup(indexer *d, int now_or_never)
{
    int64_t now = now_ms(), t0;
    if (!d->backup_dirty || d->txn || d->failing_since) return;
    if (!now_or_never && (!sync_idle(d) || (d->last_backup_ms && now - d->last_backup_ms < BACKUP_EVERY_MS)))
        return;
    t0 = now;
    if (cdx_store_backup(d->store) != CDX_OK) {
        LOG_WARN("database backup: %s", cdx_last_error());
    } else {
        d->backup_dirty = 0;
        LOG_INFO("database backed up (%lld ms)", (long long)(now_ms() - t0));
    }
    d->last_backup_ms = now; /* a failure is tried again later, not at once */
}

static void daemon_commit(indexer *d)
{
    int64_t t0 = now_ms();
    if (!d->txn) return;
    d->txn = 0;
    log_phase("commit", 1);
    if (d->txn_doomed) {
        cdx_store_rollback(d->store);
        commit_failed(d, d->txn_why ? d->txn_why : "a write failed");
    } else if (cdx_store_commit(d->store) != CDX_OK) {
        commit_failed(d, cdx_last_error());
    } else {
        committed(d);
    }
    log_phase("commit", 0);
    strv_clear(&d->txn_paths);
    d->txn_embedded = d->txn_reused = 0;
    d->txn_doomed = 0;
    if (now_ms() - t0 > 500) LOG_DEBUG("a store commit took %lld ms", (long long)(now_ms() - t0));
}

void daemon_error(indexer *d, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    LOG_ERROR("%s", buf);
    free(d->last_error);
    d->last_error = xstrdup(buf);
    d->last_error_at = wall_s();
    d->status_dirty = 1;
}

/* ---- status, for `clipdex status` ---- */

static void meta_int(indexer *d, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    if (cdx_store_meta_set(d->store, key, buf) != CDX_OK) LOG_DEBUG("meta %s: %s", key, cdx_last_error());
}

static void meta_str(indexer *d, const char *key, const char *v)
{
    if (cdx_store_meta_set(d->store, key, v) != CDX_OK) LOG_DEBUG("meta %s: %s", key, cdx_last_error());
}

static void status_write(indexer *d)
{
    char buf[64];
    if (daemon_begin(d) != 0) return;
    meta_str(d, "daemon.state", d->state);
    meta_str(d, "daemon.mode", d->once ? "once" : "daemon");
    meta_int(d, "daemon.pid", (int64_t)getpid());
    meta_int(d, "daemon.started_at", d->started_at);
    meta_int(d, "daemon.updated_at", wall_s());
    meta_int(d, "daemon.queued", (int64_t)d->files.n);
    snprintf(buf, sizeof buf, "%.2f", progress_images_rate(&d->prog));
    meta_str(d, "daemon.images_per_s", buf);
    meta_int(d, "daemon.embedded", d->embedded);
    meta_int(d, "daemon.failed", d->failed);
    meta_int(d, "daemon.watches", d->w ? (int64_t)watch_count(d->w) : 0);
    meta_int(d, "daemon.unwatched", (int64_t)d->unwatched.n);
    meta_str(d, "daemon.model", d->model_name ? d->model_name : "");
    meta_str(d, "daemon.model_dir", d->cfg.model_dir ? d->cfg.model_dir : "");
    meta_str(d, "daemon.index_type", d->cfg.index_type);
    if (d->model) {
        /* which precision runs and why, for clipdex status */
        char pbuf[256];
        const char *why = NULL;
        cdx_precision p = cdx_model_get_precision(d->model, &why);
        snprintf(pbuf, sizeof pbuf, "%s (%s; CPU level %s)", cdx_precision_name(p),
                 d->cfg.precision && strcmp(d->cfg.precision, "auto") != 0 ? "set by [model] precision"
                                                                          : why,
                 cdx_cpu_level());
        meta_str(d, "daemon.precision", pbuf);
    }
    if (d->last_error) {
        meta_str(d, "daemon.last_error", d->last_error);
        meta_int(d, "daemon.last_error_at", d->last_error_at);
    }
    d->status_dirty = 0;
}

static void set_state(indexer *d, const char *state)
{
    if (d->state && strcmp(d->state, state) == 0) return;
    d->state = state;
    d->status_dirty = 1;
    LOG_DEBUG("state: %s", state);
}

/* ---- configuration ---- */

int daemon_make_config(indexer *d, config *c, char **err)
{
    if (config_resolve(c, d->config_path, d->config_required, &d->sets, err) != 0) return -1;
    for (size_t i = 0; i < d->cli_roots.n; i++) {
        if (config_set(c, "library", "root", d->cli_roots.v[i], err) != 0) {
            config_release(c);
            return -1;
        }
    }
    return 0;
}

/* The roots the daemon indexed last time, from the store. */
static void roots_from_meta(indexer *d, strv *out)
{
    char *v = NULL;
    if (cdx_store_meta_get(d->store, "daemon.roots", &v) != CDX_OK || !v) return;
    for (char *p = v; *p;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n) strv_push_owned(out, xstrndup(p, n));
        p += n + (nl ? 1 : 0);
    }
    free(v);
}

static void roots_to_meta(indexer *d)
{
    size_t len = 1;
    char *v, *q;
    for (size_t i = 0; i < d->cfg.roots.n; i++) len += strlen(d->cfg.roots.v[i]) + 1;
    v = q = xmalloc(len);
    for (size_t i = 0; i < d->cfg.roots.n; i++) {
        size_t n = strlen(d->cfg.roots.v[i]);
        memcpy(q, d->cfg.roots.v[i], n);
        q += n;
        *q++ = '\n';
    }
    *q = '\0';
    if (daemon_begin(d) == 0) meta_str(d, "daemon.roots", v);
    free(v);
}

/* A root the configuration no longer has: its files leave the index
 * (unless another root still covers them). */
static void drop_root(indexer *d, const char *root)
{
    if (scan_root_of(&d->cfg, root)) return;
    LOG_INFO("root %s is no longer configured: its files leave the index", root);
    sync_forget(d, root);
    for (size_t i = 0; i < d->missing_roots.n; i++) {
        if (strcmp(d->missing_roots.v[i], root) == 0) {
            free(d->missing_roots.v[i]);
            d->missing_roots.v[i] = d->missing_roots.v[--d->missing_roots.n];
            break;
        }
    }
}

/* Walk a root now, or wait for it when it does not exist (yet).  A root
 * missing at start-up keeps its rows: an unmounted disk is not a
 * deletion.  (A root deleted while we watch loses them.) */
static void start_root(indexer *d, const char *root)
{
    struct stat sb;
    if (stat(root, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        LOG_INFO("scanning %s", root);
        sync_reconcile(d, root);
        return;
    }
    LOG_WARN("root %s: %s; indexed when it appears", root,
             errno ? strerror(errno) : "not a directory");
    if (!strv_contains(&d->missing_roots, root)) strv_push(&d->missing_roots, root);
}

static void poll_missing_roots(indexer *d)
{
    for (size_t i = 0; i < d->missing_roots.n;) {
        struct stat sb;
        char *r = d->missing_roots.v[i];
        if (stat(r, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            d->missing_roots.v[i] = d->missing_roots.v[--d->missing_roots.n];
            LOG_INFO("root %s is here: scanning it", r);
            sync_reconcile(d, r);
            free(r);
        } else {
            i++;
        }
    }
}

static int filters_equal(const config *a, const config *b)
{
    return a->hidden == b->hidden && strv_equal(&a->excludes, &b->excludes) &&
           strv_equal(&a->extensions, &b->extensions);
}

static void reload(indexer *d)
{
    config nc, old;
    char *err = NULL;
    LOG_INFO("SIGHUP: reloading the configuration");
    if (daemon_make_config(d, &nc, &err) != 0) {
        LOG_ERROR("reloading: %s (the old configuration stays in effect)", err);
        free(err);
        return;
    }
    if (log_open(nc.log_file, nc.log_level) != 0)
        LOG_ERROR("%s: %s (logging stays where it was)", nc.log_file, strerror(errno));
    log_reopen();
#define RESTART_ONLY(field, name)                                                        \
    if ((nc.field && d->cfg.field && strcmp(nc.field, d->cfg.field) != 0) ||               \
        (!nc.field != !d->cfg.field))                                                     \
        LOG_WARN("%s changed: it takes effect when clipdexd restarts", name);
    RESTART_ONLY(model_dir, "[model] dir")
    RESTART_ONLY(data_dir, "[store] data_dir")
    RESTART_ONLY(index_type, "[store] index_type")
    RESTART_ONLY(search_params, "[store] search_params")
#undef RESTART_ONLY
    if (nc.batch != d->cfg.batch || nc.threads != d->cfg.threads || nc.workers != d->cfg.workers ||
        nc.max_megapixels != d->cfg.max_megapixels || nc.max_file_size != d->cfg.max_file_size ||
        nc.save_every != d->cfg.save_every || nc.max_watches != d->cfg.max_watches)
        LOG_WARN("[model] batch/threads/workers, [limits], [store] save_every and "
                 "[watch] max_watches take effect when clipdexd restarts");
    /* Keep what only a restart changes; take the rest. */
    free(nc.model_dir);
    nc.model_dir = d->cfg.model_dir ? xstrdup(d->cfg.model_dir) : NULL;
    free(nc.data_dir);
    nc.data_dir = xstrdup(d->cfg.data_dir);
    free(nc.index_type);
    nc.index_type = xstrdup(d->cfg.index_type);
    nc.batch = d->cfg.batch;
    nc.threads = d->cfg.threads;
    nc.workers = d->cfg.workers;
    nc.max_megapixels = d->cfg.max_megapixels;
    nc.max_file_size = d->cfg.max_file_size;
    nc.max_watches = d->cfg.max_watches;
    int refilter = !filters_equal(&nc, &d->cfg);
    old = d->cfg;
    d->cfg = nc;
    for (size_t i = 0; i < old.roots.n; i++)
        if (!strv_contains(&d->cfg.roots, old.roots.v[i])) drop_root(d, old.roots.v[i]);
    for (size_t i = 0; i < d->cfg.roots.n; i++) {
        const char *r = d->cfg.roots.v[i];
        if (!strv_contains(&old.roots, r)) {
            LOG_INFO("new root %s", r);
            start_root(d, r);
        } else if (refilter && !strv_contains(&d->missing_roots, r)) {
            start_root(d, r); /* what is included now changed */
        }
    }
    if (!d->once && !d->cli_roots.n) roots_to_meta(d);
    config_release(&old);
    d->status_dirty = 1;
}

/* ---- start-up ---- */

static int open_model(indexer *d)
{
    char *cfg_json = NULL;
    char key[2 * CDX_HASH_SIZE + 1], vkey[2 * CDX_HASH_SIZE + 1];
    const cdx_model_info *info;
    cdx_store_model sm;
    int ret = -1;

    if (cdx_model_open(d->cfg.model_dir, CDX_TOWER_VISION, &d->model) != CDX_OK) {
        LOG_ERROR("%s", cdx_last_error());
        return -1;
    }
    {
        /* [model] precision (validated when the configuration was read) */
        cdx_precision p = CDX_PRECISION_AUTO;
        const char *why = NULL;
        if (d->cfg.precision) cdx_precision_parse(d->cfg.precision, &p);
        if (cdx_model_set_precision(d->model, p) != CDX_OK) {
            LOG_ERROR("%s", cdx_last_error());
            goto cleanup;
        }
        p = cdx_model_get_precision(d->model, &why);
        LOG_INFO("model precision %s (%s; CPU level %s)", cdx_precision_name(p),
                 p == CDX_PRECISION_AUTO || !d->cfg.precision || strcmp(d->cfg.precision, "auto") == 0
                     ? why : "set by [model] precision",
                 cdx_cpu_level());
    }
    info = cdx_model_get_info(d->model);
    /* config.json, or open_clip_config.json (a family that does not say:
     * the directory's config.json) */
    cfg_json = info->config_file ? xstrdup(info->config_file) : path_join(d->cfg.model_dir, "config.json");
    if (cdx_store_model_key(cfg_json, info->weights_file, key) != CDX_OK) {
        LOG_ERROR("%s", cdx_last_error());
        goto cleanup;
    }
    d->model_name = xstrdup(path_base(d->cfg.model_dir));
    sm.key = key;
    sm.name = d->model_name;
    sm.dir = d->cfg.model_dir;
    sm.dim = info->projection_dim;
    /* the image tower's own identity: a model sharing it with one already
     * indexed (tuned with --lock image) re-embeds nothing */
    if (cdx_model_vision_key(d->model, vkey) != CDX_OK) {
        LOG_ERROR("%s", cdx_last_error());
        goto cleanup;
    }
    sm.vision_key = vkey;
    if (cdx_store_use_model(d->store, &sm, &d->model_id) != CDX_OK ||
        cdx_store_set_precision(d->store, cdx_model_get_precision(d->model, NULL)) != CDX_OK) {
        LOG_ERROR("%s", cdx_last_error());
        goto cleanup;
    }
    LOG_INFO("model %s: %d-d embeddings, %dx%d input, %s weights (%s)", d->model_name,
             info->projection_dim, info->vision.image_size, info->vision.image_size, info->dtype,
             info->weights_file);
    ret = 0;
cleanup:
    free(cfg_json);
    return ret;
}

static void store_progress(const char *what, int64_t done, int64_t total, void *user)
{
    (void)user;
    if (total > 0 && (done == 0 || done >= total || done % 10000 == 0))
        LOG_INFO("%s: %lld/%lld", what, (long long)done, (long long)total);
}

static int64_t online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

static int start(indexer *d)
{
    cdx_store_opts so;
    pipeline_opts po;
    char *err = NULL;
    int64_t threads = d->cfg.threads ? d->cfg.threads : online_cpus();
    int64_t workers = d->cfg.workers ? d->cfg.workers : threads;

    /* One thread budget for the process, decided here (STYLE 8): the
     * model's compute threads, and a token gate in the pipeline that
     * keeps decoders plus compute threads within it (pipeline.h). */
    cdx_threads_set((int)threads);

    memset(&so, 0, sizeof so);
    so.writer = 1;
    so.index_factory = d->cfg.index_type;
    so.search_params = d->cfg.search_params && *d->cfg.search_params ? d->cfg.search_params : NULL;
    so.save_every = d->cfg.save_every;
    so.progress = store_progress;
    /* The lock first: a second instance stops here, before loading. */
    if (cdx_store_open(d->cfg.data_dir, &so, &d->store) != CDX_OK) {
        LOG_ERROR("%s", cdx_last_error());
        return -1;
    }
    if (open_model(d) != 0) return -1;

    memset(&po, 0, sizeof po);
    po.workers = (int)workers;
    po.tokens = (int)threads;
    po.batch = (int)d->cfg.batch;
    po.max_wait_ms = 500;
    po.decode.max_pixels = (uint64_t)d->cfg.max_megapixels * 1000000u;
    po.decode.max_file_bytes = (uint64_t)d->cfg.max_file_size;
    if (pipeline_open(&po, d->model, &d->pl, &err) != 0) {
        LOG_ERROR("%s", err);
        free(err);
        return -1;
    }
    /* Enough in flight that hashing runs ahead of the model. */
    d->max_inflight = 8 * d->cfg.batch + 4 * workers;
    if (d->max_inflight < 64) d->max_inflight = 64;
    LOG_INFO("%lld compute threads, %lld decode workers, batches of %lld; store %s", (long long)threads,
             (long long)workers, (long long)d->cfg.batch, d->cfg.data_dir);

    if (!d->once) {
        d->w = watch_open(d->cfg.max_watches);
        if (!d->w) {
            LOG_ERROR("inotify: %s (fs.inotify.max_user_instances?)", strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* ---- the loop ---- */

static int64_t min_due(int64_t a, int64_t b)
{
    if (a < 0) return b;
    if (b < 0) return a;
    return a < b ? a : b;
}

static int64_t next_wakeup(indexer *d, int64_t now)
{
    int64_t t = -1;
    if (d->inflight < d->max_inflight) t = sync_next_due(d);
    if (d->rescan_all_at) t = min_due(t, d->rescan_all_at);
    if (d->unwatched.n) t = min_due(t, d->next_rescan);
    if (d->missing_roots.n) t = min_due(t, d->next_root_poll);
    if (d->status_dirty || !sync_idle(d) || progress_images_rate(&d->prog) > 0.01)
        t = min_due(t, d->next_status);
    if (d->show_progress && d->prog.tty && !sync_idle(d)) t = min_due(t, now + 200);
    if (t < 0) return 60000;
    return t > now ? t - now : 0;
}

static void timers(indexer *d, int64_t now)
{
    if (d->rescan_all_at && now >= d->rescan_all_at) {
        d->rescan_all_at = 0;
        for (size_t i = 0; i < d->cfg.roots.n; i++)
            if (!strv_contains(&d->missing_roots, d->cfg.roots.v[i])) sync_reconcile(d, d->cfg.roots.v[i]);
    }
    if (d->unwatched.n && now >= d->next_rescan) {
        d->next_rescan = now + d->cfg.rescan_interval * 1000;
        sync_rescan_unwatched(d);
    }
    if (now >= d->next_root_poll) {
        d->next_root_poll = now + d->cfg.root_poll * 1000;
        if (d->missing_roots.n) poll_missing_roots(d);
    }
}

static void tick(indexer *d, int64_t now)
{
    int busy = !sync_idle(d);
    int flags = 0;
    if (!d->show_progress || (!d->once && d->files.n < 100)) flags = PROGRESS_QUIET;
    progress_update(&d->prog, d->done, d->total, d->embedded, flags);
    set_state(d, busy ? (d->embedded || d->inflight ? "indexing" : "scanning")
                      : (d->once ? "done" : "watching"));
    if (now >= d->next_status) {
        d->next_status = now + 1000;
        if (d->status_dirty || busy) status_write(d);
    }
}

static void summary(indexer *d)
{
    /* From the first walk on: model loading is not indexing time. */
    double s = (double)(now_ms() - d->work_started_ms) / 1000.0;
    pipeline_stats ps = {0};
    if (d->pl) pipeline_get_stats(d->pl, &ps);
    LOG_INFO("indexed in %.1f s: %lld embedded (%.1f images/s), %lld reused (copies, moves), "
             "%lld unchanged, %lld failed, %lld moved, %lld removed",
             s, (long long)d->embedded, s > 0 ? (double)d->embedded / s : 0.0, (long long)d->reused,
             (long long)d->unchanged, (long long)d->failed, (long long)d->moved, (long long)d->removed);
    if (ps.batches)
        LOG_INFO("the model computed %.1f s of the %.1f s (%.0f%%) in %lld batches (%.1f images/s while computing)",
                 ps.compute_s, s, s > 0 ? 100.0 * ps.compute_s / s : 0.0, (long long)ps.batches,
                 ps.compute_s > 0 ? (double)ps.embedded / ps.compute_s : 0.0);
}

static int loop(indexer *d)
{
    sigset_t none;
    sigemptyset(&none);
    while (!got_stop) {
        struct pollfd fds[2];
        nfds_t n = 0;
        int64_t now = now_ms();
        int64_t wait = next_wakeup(d, now);
        struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
        int ipl = -1, iw = -1;

        fds[n] = (struct pollfd){pipeline_fd(d->pl), POLLIN, 0};
        ipl = (int)n++;
        if (d->w) {
            fds[n] = (struct pollfd){watch_fd(d->w), POLLIN, 0};
            iw = (int)n++;
        }
        if (ppoll(fds, n, &ts, &none) < 0 && errno != EINTR) {
            LOG_ERROR("ppoll: %s", strerror(errno));
            return EXIT_ERROR;
        }
        if (got_stop) break;
        if (got_hup) {
            got_hup = 0;
            reload(d);
        }
        if (iw >= 0 && fds[iw].revents) watch_read(d->w, sync_event, d);
        if (fds[ipl].revents) sync_results(d);
        sync_run_due(d);
        now = now_ms();
        timers(d, now);
        tick(d, now);
        daemon_commit(d);
        backup(d, 0);
        if (d->once && sync_idle(d)) return 0;
    }
    return -1; /* stopped by a signal */
}

static void shutdown_all(indexer *d, int interrupted)
{
    int joined = 1;
    log_phase("shutdown", 1);
    if (d->pl) {
        /* The model finishes its batch (at most a few seconds); the
         * results are written, queued work is dropped. */
        joined = pipeline_stop(d->pl, now_ms() + 3000);
        if (d->store) sync_results(d);
        if (!joined) LOG_WARN("the model did not finish its batch in time; leaving it");
    }
    if (d->store && d->model_id) {
        set_state(d, interrupted ? "stopped" : d->once ? "done" : "stopped");
        status_write(d);
        meta_int(d, "daemon.queued", 0);
        daemon_commit(d);
        backup(d, 1);
    }
    if (d->store) {
        d->txn = 0;
        log_phase("close", 1);
        cdx_store_close(d->store); /* saves the FAISS file */
        log_phase("close", 0);
        d->store = NULL;
    }
    if (joined) {
        pipeline_free(d->pl);
        cdx_model_close(d->model);
    }
    d->pl = NULL;
    d->model = NULL;
    watch_close(d->w);
    d->w = NULL;
    log_phase("shutdown", 0);
}

int daemon_run(indexer *d)
{
    struct sigaction sa;
    sigset_t block, old;
    int ret = EXIT_ERROR, r = 0;
    strv prev = {0};

    if (!d->cfg.roots.n) {
        fprintf(stderr, "clipdexd: nothing to index: set [library] root in %s or pass DIR\n",
                d->cfg.path ? d->cfg.path : "the configuration file");
        return EXIT_USAGE;
    }
    if (!d->cfg.model_dir) {
        fprintf(stderr, "clipdexd: no model: set [model] dir, pass --model DIR or set CLIPDEX_MODEL\n");
        return EXIT_USAGE;
    }
    if (log_open(d->cfg.log_file, d->cfg.log_level) != 0) {
        fprintf(stderr, "clipdexd: %s: %s\n", d->cfg.log_file, strerror(errno));
        return EXIT_ERROR;
    }
    /* Block the signals we handle (threads inherit the mask); they are
     * delivered only inside ppoll. */
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old);

    d->started_ms = now_ms();
    d->started_at = wall_s();
    d->state = "starting";
    d->show_progress = 1;
    progress_init(&d->prog, d->once && log_to_tty(), d->cfg.progress_interval);
    LOG_INFO("clipdexd %s starting (%s)", CDX_VERSION, d->once ? "one pass" : "daemon");
    if (start(d) != 0) goto done;

    /* Roots dropped from the configuration while we were down. */
    if (!d->cli_roots.n) {
        roots_from_meta(d, &prev);
        for (size_t i = 0; i < prev.n; i++)
            if (!strv_contains(&d->cfg.roots, prev.v[i])) drop_root(d, prev.v[i]);
        roots_to_meta(d);
        strv_clear(&prev);
    }
    d->work_started_ms = now_ms();
    set_state(d, "scanning");
    status_write(d);
    daemon_commit(d);
    for (size_t i = 0; i < d->cfg.roots.n; i++) start_root(d, d->cfg.roots.v[i]);
    daemon_commit(d);
    d->next_rescan = now_ms() + d->cfg.rescan_interval * 1000;
    d->next_root_poll = now_ms() + d->cfg.root_poll * 1000;
    if (!d->once) {
        LOG_INFO("watching %zu directories under %zu roots%s", watch_count(d->w), d->cfg.roots.n,
                 d->unwatched.n ? " (some unwatched: watch limit)" : "");
        sd_notify_msg("READY=1\nSTATUS=watching");
    }
    if (d->once) LOG_INFO("%lld files to index", (long long)d->files.n);

    r = loop(d);
    if (d->once) progress_update(&d->prog, d->done, d->total, d->embedded, PROGRESS_FORCE);
    progress_end(&d->prog);
    if (r < 0) {
        LOG_INFO("stopping (%s)", got_stop == SIGINT ? "SIGINT" : "SIGTERM");
        sd_notify_msg("STOPPING=1");
        ret = d->once ? EXIT_INTERRUPTED : EXIT_OK;
    } else {
        ret = r;
    }
    if (d->once) summary(d);
    if (d->once && d->unstored) {
        /* the rows were rolled back: saying "indexed" and exiting 0 lied */
        LOG_ERROR("%lld files were not stored: %s; index again once the store can be written",
                  (long long)d->unstored, d->unstored_why ? d->unstored_why : "a commit failed");
        if (ret == 0) ret = 3;
    }
done:
    shutdown_all(d, r < 0);
    sync_release(d);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (!d->once && ret == 0) LOG_INFO("stopped");
    log_close();
    return ret;
}
