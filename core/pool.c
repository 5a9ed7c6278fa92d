/*
 * pool.c - the fork-join pool behind cdx_parallel_for (see pool.h).
 *
 * Workers are created lazily on first use, up to the compute thread budget
 * minus one (the caller works too), and live until the process exits.  A
 * job is published under the mutex with a generation counter; each worker
 * takes its fixed slice, and the caller waits for the count of finished
 * slices.  Jobs are serialised by job_lock, so the daemon's threads may
 * share the pool safely (they rarely overlap: embedding is one thread).
 *
 * Waiting: a forward pass issues ~100 jobs back to back, and a futex
 * wake-up costs ~10 us, a tenth of a short text query.  So a worker spins
 * briefly (~10 us of pause instructions) for the next generation before
 * it sleeps on the condition variable, and the caller spins briefly for
 * the finished count.  Spinning is bounded: an idle pool sleeps, and a
 * gap between jobs costs at most one short spin per thread.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"
#include "pool.h"

#define POOL_MAX 64
#define SPIN_ITERS 4000

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cv_done = PTHREAD_COND_INITIALIZER;
static int n_workers;
static _Atomic uint64_t generation;

static struct {
    cdx_range_fn fn;
    void *ctx;
    int64_t n;
    int parts;            /* slices in this job, caller's included */
    _Atomic int finished; /* worker slices done */
} job;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void slice(int64_t n, int parts, int i, int64_t *b, int64_t *e)
{
    *b = n * i / parts;
    *e = n * (i + 1) / parts;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg; /* 1..n_workers: slice index */
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ITERS && atomic_load(&generation) == seen; i++) cpu_relax();
        pthread_mutex_lock(&mu);
        while (atomic_load(&generation) == seen) pthread_cond_wait(&cv_work, &mu);
        /* Read the job under the lock: it is the current one, and if this
         * worker is one of its slices it cannot be replaced before we run. */
        seen = atomic_load(&generation);
        int mine = id < job.parts;
        cdx_range_fn fn = job.fn;
        void *ctx = job.ctx;
        int64_t b = 0, e = 0;
        if (mine) slice(job.n, job.parts, id, &b, &e);
        pthread_mutex_unlock(&mu);
        if (!mine) continue;
        fn(ctx, b, e);
        pthread_mutex_lock(&mu);
        if (atomic_fetch_add(&job.finished, 1) + 1 == job.parts - 1) pthread_cond_signal(&cv_done);
        pthread_mutex_unlock(&mu);
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

static __thread int serial;

int cdx_pool_serial(int on)
{
    int was = serial;
    serial = on;
    return was;
}

void cdx_parallel_for(int64_t n, int64_t min_chunk, cdx_range_fn fn, void *ctx)
{
    int threads = serial ? 1 : cdx_threads_internal();
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
    atomic_store(&job.finished, 0);
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&cv_work);
    pthread_mutex_unlock(&mu);

    {
        int64_t b, e;
        slice(n, parts, 0, &b, &e);
        fn(ctx, b, e);
    }

    for (int i = 0; i < SPIN_ITERS && atomic_load(&job.finished) < parts - 1; i++) cpu_relax();
    if (atomic_load(&job.finished) < parts - 1) {
        pthread_mutex_lock(&mu);
        while (atomic_load(&job.finished) < parts - 1) pthread_cond_wait(&cv_done, &mu);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_unlock(&job_lock);
}
