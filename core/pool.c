/*
 * pool.c - the fork-join pool behind cdx_parallel_for (see pool.h).
 *
 * Workers are created lazily on first use, up to the compute thread budget
 * minus one (the caller works too), and live until the process exits.  A
 * job is published under the mutex with a generation counter; each worker
 * takes its fixed slice, and the caller waits for the count of finished
 * slices.  Jobs are serialised by job_lock, so the daemon's threads may
 * share the pool safely (they rarely overlap: embedding is one thread).
 */
#include <pthread.h>

#include "internal.h"
#include "pool.h"

#define POOL_MAX 64

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cv_done = PTHREAD_COND_INITIALIZER;
static int n_workers;
static uint64_t generation;

static struct {
    cdx_range_fn fn;
    void *ctx;
    int64_t n;
    int parts;    /* slices in this job, caller's included */
    int finished; /* worker slices done */
} job;

static void slice(int64_t n, int parts, int i, int64_t *b, int64_t *e)
{
    *b = n * i / parts;
    *e = n * (i + 1) / parts;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg; /* 1..n_workers: slice index */
    uint64_t seen = 0;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (generation == seen) pthread_cond_wait(&cv_work, &mu);
        seen = generation;
        if (id < job.parts) {
            cdx_range_fn fn = job.fn;
            void *ctx = job.ctx;
            int64_t b, e;
            slice(job.n, job.parts, id, &b, &e);
            pthread_mutex_unlock(&mu);
            fn(ctx, b, e);
            pthread_mutex_lock(&mu);
            if (++job.finished == job.parts - 1) pthread_cond_signal(&cv_done);
        }
    }
    return NULL;
}

/* Start workers up to want (under mu).  Failure to start one is not an
 * error: the work is then simply split into fewer slices. */
static void grow(int want)
{
    while (n_workers < want && n_workers < POOL_MAX) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &a, worker, (void *)(intptr_t)(n_workers + 1));
        pthread_attr_destroy(&a);
        if (rc != 0) break;
        n_workers++;
    }
}

void cdx_parallel_for(int64_t n, int64_t min_chunk, cdx_range_fn fn, void *ctx)
{
    int threads = cdx_threads_internal();
    int64_t parts64;
    int parts;

    if (n <= 0) return;
    if (min_chunk < 1) min_chunk = 1;
    parts64 = n / min_chunk;
    if (parts64 > threads) parts64 = threads;
    parts = (int)parts64;
    if (parts <= 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&job_lock);
    pthread_mutex_lock(&mu);
    grow(parts - 1);
    if (parts > n_workers + 1) parts = n_workers + 1;
    job.fn = fn;
    job.ctx = ctx;
    job.n = n;
    job.parts = parts;
    job.finished = 0;
    generation++;
    pthread_cond_broadcast(&cv_work);
    pthread_mutex_unlock(&mu);

    {
        int64_t b, e;
        slice(n, parts, 0, &b, &e);
        fn(ctx, b, e);
    }

    pthread_mutex_lock(&mu);
    while (job.finished < job.parts - 1) pthread_cond_wait(&cv_done, &mu);
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&job_lock);
}
