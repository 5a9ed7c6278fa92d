/*
 * pipeline.c - decode workers, the embed thread and the CPU token gate
 * (see pipeline.h for the design).
 *
 * One mutex guards every queue, counter and the token gate, so the
 * conditions the threads wait for ("a decode job and a free token and
 * room in the embed queue") are read atomically.  Critical sections are a
 * few pointer moves; the work itself runs unlocked.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "pipeline.h"
#include "util.h"

typedef struct jqueue {
    job *head, *tail;
    int64_t n;
} jqueue;

static void q_push(jqueue *q, job *j)
{
    j->next = NULL;
    if (q->tail) q->tail->next = j;
    else q->head = j;
    q->tail = j;
    q->n++;
}

static job *q_pop(jqueue *q)
{
    job *j = q->head;
    if (!j) return NULL;
    q->head = j->next;
    if (!q->head) q->tail = NULL;
    q->n--;
    j->next = NULL;
    return j;
}

static void q_free(jqueue *q)
{
    job *j;
    while ((j = q_pop(q)) != NULL) job_free(j);
}

struct pipeline {
    pipeline_opts o;
    cdx_model *model;
    int side;                 /* S */
    int dim;                  /* E */
    int efd;                  /* eventfd: results ready */
    int use_proc;             /* /proc/self/fd works */

    pthread_mutex_t mu;
    pthread_cond_t cv_work;   /* workers: a job, a token or room appeared */
    pthread_cond_t cv_embed;  /* embed thread: decoded images, tokens */
    jqueue hash_q, decode_q, embed_q, results;
    int hashing, decoding, embedding; /* jobs in hand */
    int64_t in_main;          /* hash results the main thread holds */
    int tokens_free;
    int embed_wants;          /* the embed thread waits for the tokens */
    int stop;
    int64_t embedded, batches;
    double compute_s;

    pthread_t *threads;       /* workers, then the embed thread */
    int n_threads;
    int alive;                /* threads not yet finished */
    pthread_cond_t cv_exit;
    float *batch_px, *batch_out;
};

job *job_new(const char *path)
{
    job *j = xcalloc(1, sizeof *j);
    j->path = xstrdup(path);
    return j;
}

void job_free(job *j)
{
    if (!j) return;
    free(j->path);
    free(j->error);
    free(j->meta);
    free(j->pixels);
    free(j->vec);
    free(j);
}

static void notify_main(pipeline *p)
{
    uint64_t one = 1;
    if (write(p->efd, &one, sizeof one) < 0 && errno != EAGAIN)
        LOG_ERROR("pipeline: eventfd: %s", strerror(errno));
}

/* Record a failure of stage work on j: the message without a leading
 * "PATH: " (ours or the /proc alias the file was read through). */
static void set_error(job *j, cdx_status st, const char *msg, const char *alias)
{
    size_t n;
    j->st = st;
    free(j->error);
    n = strlen(j->path);
    if (strncmp(msg, j->path, n) == 0 && strncmp(msg + n, ": ", 2) == 0) msg += n + 2;
    if (alias && (n = strlen(alias)) && strncmp(msg, alias, n) == 0 && strncmp(msg + n, ": ", 2) == 0)
        msg += n + 2;
    j->error = xstrdup(*msg ? msg : cdx_status_name(st));
}

static int64_t mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
}

/* Open path for reading without following a final symlink and without
 * blocking on a FIFO; only regular files pass.  -1 with j->gone set when
 * the path is no longer a regular file, or j->st/error on other errors. */
static int open_regular(job *j, struct stat *sb)
{
    int fd = open(j->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) j->gone = 1;
        else set_error(j, CDX_ERR_IO, strerror(errno), NULL);
        return -1;
    }
    if (fstat(fd, sb) != 0 || !S_ISREG(sb->st_mode)) {
        close(fd);
        j->gone = 1;
        return -1;
    }
    return fd;
}

static void do_hash(pipeline *p, job *j)
{
    struct stat sb, sa;
    char alias[40];
    int64_t n = 0;
    int fd = open_regular(j, &sb);
    if (fd < 0) return;
    j->dev = (uint64_t)sb.st_dev;
    j->ino = (uint64_t)sb.st_ino;
    j->size = (int64_t)sb.st_size;
    j->mtime_ns = mtime_ns(&sb);
    j->has_stat = 1;
    if (p->o.decode.max_file_bytes && (uint64_t)sb.st_size > p->o.decode.max_file_bytes) {
        char msg[128];
        snprintf(msg, sizeof msg, "file is %lld bytes, over the %llu-byte limit",
                 (long long)sb.st_size, (unsigned long long)p->o.decode.max_file_bytes);
        set_error(j, CDX_ERR_LIMIT, msg, NULL);
        close(fd);
        return;
    }
    /* Hash through our descriptor, so what we hash is the file we
     * stat'ed even if the name is replaced meanwhile. */
    snprintf(alias, sizeof alias, "/proc/self/fd/%d", fd);
    if (cdx_hash_file(p->use_proc ? alias : j->path, j->hash, &n) != CDX_OK) {
        set_error(j, CDX_ERR_IO, cdx_last_error(), alias);
    } else {
        j->has_hash = 1;
        if (fstat(fd, &sa) != 0 || sa.st_size != sb.st_size || mtime_ns(&sa) != j->mtime_ns ||
            n != (int64_t)sb.st_size)
            j->changed = 1;
    }
    close(fd);
}

/* Read the whole open file (size bytes) into a heap buffer; NULL when it
 * is shorter or longer now than it was, or cannot be read: either way the
 * file goes back to the hash stage, which reports a lasting read error. */
static uint8_t *read_all(int fd, int64_t size, int *changed)
{
    uint8_t *buf = xmalloc((size_t)size + 1);
    size_t got = 0;
    while (got < (size_t)size + 1) {
        ssize_t n = pread(fd, buf + got, (size_t)size + 1 - got, (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got != (size_t)size) {
        *changed = 1;
        free(buf);
        return NULL;
    }
    return buf;
}

static void do_decode(pipeline *p, job *j)
{
    struct stat sb;
    cdx_input_opts in = {.mode = CDX_INPUT_FAST};
    cdx_status st;
    uint8_t *data = NULL, hash[CDX_HASH_SIZE];
    int fd = open_regular(j, &sb);
    if (fd < 0) return;
    if ((uint64_t)sb.st_dev != j->dev || (uint64_t)sb.st_ino != j->ino ||
        (int64_t)sb.st_size != j->size || mtime_ns(&sb) != j->mtime_ns) {
        j->changed = 1;
        goto done;
    }
    /* Decode the very bytes whose hash the store records: read them once,
     * check the hash, decode from memory (messages still name the path). */
    if (!(data = read_all(fd, j->size, &j->changed))) goto done;
    if (cdx_hash_buf(data, (size_t)j->size, hash) != CDX_OK || memcmp(hash, j->hash, CDX_HASH_SIZE) != 0) {
        j->changed = 1; /* rewritten in place with the same size and mtime */
        goto done;
    }
    j->meta = xcalloc(1, sizeof *j->meta);
    j->pixels = xmalloc(sizeof(float) * 3 * (size_t)p->side * (size_t)p->side);
    /* The one image-to-input path (image queries take it too); upright,
     * so rotated copies hash alike. */
    in.max_pixels = p->o.decode.max_pixels;
    in.max_file_bytes = p->o.decode.max_file_bytes;
    in.data = data;
    in.size = (size_t)j->size;
    in.meta = j->meta;
    in.phash = &j->phash;
    in.phash_ok = &j->has_phash;
    if ((st = cdx_model_image_input(p->model, j->path, &in, j->pixels)) != CDX_OK) {
        set_error(j, st, cdx_last_error(), NULL);
        free(j->pixels);
        j->pixels = NULL;
    }
done:
    free(data);
    close(fd);
}

static void *worker_main(void *arg)
{
    pipeline *p = arg;
    for (;;) {
        job *j = NULL;
        int kind = 0, notify = 0;
        pthread_mutex_lock(&p->mu);
        for (;;) {
            if (p->stop) break;
            if (p->decode_q.head && p->tokens_free > 0 && !p->embed_wants &&
                p->embed_q.n + p->decoding < 2 * (int64_t)p->o.batch) {
                j = q_pop(&p->decode_q);
                kind = JOB_DECODE;
                p->tokens_free--;
                p->decoding++;
                break;
            }
            if (p->hash_q.head) {
                j = q_pop(&p->hash_q);
                kind = JOB_HASH;
                p->hashing++;
                break;
            }
            pthread_cond_wait(&p->cv_work, &p->mu);
        }
        pthread_mutex_unlock(&p->mu);
        if (!j) break;

        if (kind == JOB_HASH) {
            do_hash(p, j);
        } else {
            log_phase("decode", 1);
            do_decode(p, j);
            log_phase("decode", 0);
        }

        pthread_mutex_lock(&p->mu);
        if (kind == JOB_HASH) {
            p->hashing--;
            j->in_main = 1;
            p->in_main++;
            q_push(&p->results, j);
            notify = 1;
        } else {
            p->decoding--;
            p->tokens_free++;
            if (j->pixels && !j->changed) {
                j->t_ready = now_ms();
                q_push(&p->embed_q, j);
            } else {
                q_push(&p->results, j);
                notify = 1;
            }
            pthread_cond_broadcast(&p->cv_work); /* a token is free */
        }
        pthread_cond_broadcast(&p->cv_embed);
        pthread_mutex_unlock(&p->mu);
        if (notify) notify_main(p);
    }
    pthread_mutex_lock(&p->mu);
    p->alive--;
    pthread_cond_broadcast(&p->cv_exit);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Is a batch of what the embed queue holds worth running now?  A full
 * batch always; a partial one when nothing more is coming soon (no decode
 * queued or running and nothing upstream), or when its oldest image has
 * waited max_wait_ms while upstream work is slow (cold disk). */
static int batch_ready(pipeline *p, int64_t now, int64_t *wake)
{
    int64_t n = p->embed_q.n;
    *wake = -1;
    if (n == 0) return 0;
    if (n >= p->o.batch) return 1;
    if (p->decode_q.n + p->decoding > 0) return 0;
    if (p->hash_q.n + p->hashing + p->in_main == 0) return 1;
    int64_t due = p->embed_q.head->t_ready + p->o.max_wait_ms;
    if (now >= due) return 1;
    *wake = due;
    return 0;
}

static void *embed_main(void *arg)
{
    pipeline *p = arg;
    size_t img_floats = 3 * (size_t)p->side * (size_t)p->side;
    job *batch[256];

    for (;;) {
        int k = 0;
        int64_t wake;
        pthread_mutex_lock(&p->mu);
        while (!p->stop && !batch_ready(p, now_ms(), &wake)) {
            if (wake < 0) {
                pthread_cond_wait(&p->cv_embed, &p->mu);
            } else {
                struct timespec ts;
                int64_t ms = wake - now_ms();
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += ms / 1000;
                ts.tv_nsec += (ms % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&p->cv_embed, &p->mu, &ts);
            }
        }
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        while (k < p->o.batch && p->embed_q.head) batch[k++] = q_pop(&p->embed_q);
        pthread_cond_broadcast(&p->cv_work); /* room in the embed queue */
        /* Take every token: in-flight decodes finish, no new one starts. */
        p->embed_wants = 1;
        while (p->tokens_free < p->o.tokens && !p->stop) pthread_cond_wait(&p->cv_embed, &p->mu);
        p->embed_wants = 0;
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            for (int i = 0; i < k; i++) job_free(batch[i]);
            break;
        }
        p->tokens_free = 0;
        p->embedding = k;
        pthread_mutex_unlock(&p->mu);

        for (int i = 0; i < k; i++) {
            memcpy(p->batch_px + (size_t)i * img_floats, batch[i]->pixels, img_floats * sizeof(float));
            free(batch[i]->pixels);
            batch[i]->pixels = NULL;
        }
        int64_t t0 = now_ms();
        log_phase("embed", 1);
        cdx_status st = cdx_model_encode_images(p->model, p->batch_px, k, p->batch_out, 1);
        log_phase("embed", 0);
        int64_t t1 = now_ms();
        for (int i = 0; i < k; i++) {
            if (st != CDX_OK) {
                set_error(batch[i], st, cdx_last_error(), NULL);
                continue;
            }
            batch[i]->vec = xmalloc(sizeof(float) * (size_t)p->dim);
            memcpy(batch[i]->vec, p->batch_out + (size_t)i * (size_t)p->dim, sizeof(float) * (size_t)p->dim);
        }

        pthread_mutex_lock(&p->mu);
        p->tokens_free = p->o.tokens;
        p->embedding = 0;
        if (st == CDX_OK) p->embedded += k;
        p->batches++;
        p->compute_s += (double)(t1 - t0) / 1000.0;
        for (int i = 0; i < k; i++) q_push(&p->results, batch[i]);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
        notify_main(p);
    }
    pthread_mutex_lock(&p->mu);
    p->alive--;
    pthread_cond_broadcast(&p->cv_exit);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pipeline_open(const pipeline_opts *o, cdx_model *m, pipeline **out, char **err)
{
    pipeline *p = xcalloc(1, sizeof *p);
    const cdx_model_info *info = cdx_model_get_info(m);
    sigset_t all, old;

    p->o = *o;
    if (p->o.workers < 1) p->o.workers = 1;
    if (p->o.tokens < 1) p->o.tokens = 1;
    if (p->o.batch < 1) p->o.batch = 1;
    if (p->o.batch > 256) p->o.batch = 256;
    p->model = m;
    p->side = info->vision.image_size;
    p->dim = info->projection_dim;
    p->tokens_free = p->o.tokens;
    p->use_proc = access("/proc/self/fd", X_OK) == 0;
    p->batch_px = xmalloc(sizeof(float) * 3 * (size_t)p->side * (size_t)p->side * (size_t)p->o.batch);
    p->batch_out = xmalloc(sizeof(float) * (size_t)p->dim * (size_t)p->o.batch);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_embed, NULL);
    pthread_cond_init(&p->cv_exit, NULL);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
        *err = xasprintf("eventfd: %s", strerror(errno));
        pipeline_free(p);
        return -1;
    }
    p->threads = xcalloc((size_t)p->o.workers + 1, sizeof *p->threads);
    /* Signals go to the main thread only: the threads start with all of
     * them blocked. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i <= p->o.workers; i++) {
        int rc = pthread_create(&p->threads[i], NULL, i < p->o.workers ? worker_main : embed_main, p);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            *err = xasprintf("cannot start a thread: %s", strerror(rc));
            pipeline_stop(p, now_ms() + 60000);
            pipeline_free(p);
            return -1;
        }
        pthread_mutex_lock(&p->mu);
        p->n_threads++;
        p->alive++;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    *out = p;
    return 0;
}

int pipeline_fd(const pipeline *p)
{
    return p->efd;
}

void pipeline_submit(pipeline *p, job *j)
{
    pthread_mutex_lock(&p->mu);
    if (j->in_main) {
        j->in_main = 0;
        p->in_main--;
    }
    j->next = NULL;
    if (j->kind == JOB_DECODE) q_push(&p->decode_q, j);
    else q_push(&p->hash_q, j);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
}

job *pipeline_take(pipeline *p)
{
    uint64_t v;
    job *j;
    if (read(p->efd, &v, sizeof v) < 0 && errno != EAGAIN)
        LOG_ERROR("pipeline: eventfd: %s", strerror(errno));
    pthread_mutex_lock(&p->mu);
    j = p->results.head;
    p->results.head = p->results.tail = NULL;
    p->results.n = 0;
    pthread_mutex_unlock(&p->mu);
    return j;
}

void pipeline_release(pipeline *p, job *j)
{
    if (!j) return;
    if (j->in_main) {
        pthread_mutex_lock(&p->mu);
        p->in_main--;
        pthread_cond_broadcast(&p->cv_embed);
        pthread_mutex_unlock(&p->mu);
    }
    job_free(j);
}

void pipeline_unhold(pipeline *p, job *j)
{
    if (!j->in_main) return;
    pthread_mutex_lock(&p->mu);
    j->in_main = 0;
    p->in_main--;
    pthread_cond_broadcast(&p->cv_embed);
    pthread_mutex_unlock(&p->mu);
}

void pipeline_get_stats(pipeline *p, pipeline_stats *s)
{
    pthread_mutex_lock(&p->mu);
    s->queued = p->hash_q.n + p->decode_q.n + p->embed_q.n;
    s->running = p->hashing + p->decoding + p->embedding;
    s->embedded = p->embedded;
    s->batches = p->batches;
    s->compute_s = p->compute_s;
    pthread_mutex_unlock(&p->mu);
}

int pipeline_stop(pipeline *p, int64_t deadline_ms)
{
    int all;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_cond_broadcast(&p->cv_embed);
    while (p->alive > 0) {
        int64_t ms = deadline_ms - now_ms();
        struct timespec ts;
        if (ms <= 0) break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->cv_exit, &p->mu, &ts);
    }
    all = p->alive == 0;
    pthread_mutex_unlock(&p->mu);
    if (all) {
        for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
        p->n_threads = 0;
    }
    return all;
}

void pipeline_free(pipeline *p)
{
    if (!p) return;
    if (p->alive > 0) return; /* threads still run: the process is exiting */
    q_free(&p->hash_q);
    q_free(&p->decode_q);
    q_free(&p->embed_q);
    q_free(&p->results);
    if (p->efd >= 0) close(p->efd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_embed);
    pthread_cond_destroy(&p->cv_exit);
    free(p->threads);
    free(p->batch_px);
    free(p->batch_out);
    free(p);
}
