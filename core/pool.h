/*
 * pool.h - a tiny fork-join thread pool for core/'s own element-wise and
 * attention work (internal).  Matrix products go to OpenBLAS instead.
 *
 * OpenBLAS itself runs single-threaded inside these jobs (core/engine/linear.c
 * splits products by columns), so there is one set of compute threads
 * and nothing else to fight with: no OpenBLAS worker spinning in
 * sched_yield while our kernels run, the way OpenMP's spin-wait fights
 * OpenBLAS inside torch on these machines.  Between jobs our workers spin
 * only ~10 us (a forward pass issues jobs back to back) and then sleep on
 * a condition variable.
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

/* While on (per calling thread), cdx_parallel_for runs every job inline
 * on that thread: for work too short to pay for waking the pool (a text
 * query of a few tokens).  Returns the previous setting. */
int cdx_pool_serial(int on);

#endif
