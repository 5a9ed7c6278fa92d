/*
 * pool.h - a tiny fork-join thread pool for core/'s own element-wise and
 * attention work (internal).  Matrix products go to OpenBLAS instead.
 *
 * Workers block on a condition variable between jobs; they never spin.
 * That matters: OpenBLAS's own threads run the big products in between,
 * and spinning workers on a 2-core machine would steal their cores (the
 * way OpenMP's default spin-wait slows torch down on these machines).
 */
#ifndef CDX_POOL_H
#define CDX_POOL_H

#include <stdint.h>

/* fn processes items [begin, end) of a job; ctx is the caller's. */
typedef void (*cdx_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Run fn over [0, n) split into contiguous ranges across the compute
 * threads (cdx_threads_get()), the calling thread taking the first range.
 * Returns when all ranges are done.  Small n, or one thread, runs inline.
 * min_chunk is the smallest range worth a thread.  Thread-safe: jobs from
 * different threads are serialised. */
void cdx_parallel_for(int64_t n, int64_t min_chunk, cdx_range_fn fn, void *ctx);

#endif
