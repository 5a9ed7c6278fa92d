/*
 * pipeline.h - the worker side of clipdexd: hashing, decoding and
 * embedding off the main thread (STYLE practice 11).
 *
 *   main thread --submit--> [hash queue]   --+
 *                           [decode queue] --+--> decode workers (W)
 *                                                   |
 *                           [embed queue] <---------+  decoded (3,S,S)
 *                                 |
 *                           embed thread: one batch at a time through
 *                           the model (T compute threads)
 *                                 |
 *   main thread <--eventfd-- [results]  (every finished job, any stage)
 *
 * The main thread owns the store: it hands a file in as a JOB_HASH job,
 * gets it back with its SHA-256, decides (content already embedded? then
 * no decode at all) and resubmits the same job as JOB_DECODE, and gets it
 * back with its embedding or its error.  Nothing in here touches SQLite.
 * The decode stage reads the file once into memory, checks those bytes
 * against the hash the first stage recorded, and decodes them
 * (cdx_image_decode_mem): what is embedded is exactly what is hashed.
 * Files are opened with O_NOFOLLOW | O_NONBLOCK and must be regular (a
 * FIFO never blocks a worker); a file that changes while it is read comes
 * back with `changed` set, and the main thread looks at it again.
 *
 * CPU budget.  The machine has T cores for compute (cdx_threads_set(T),
 * decided once by the daemon).  A gate of T tokens keeps the CPU-bound
 * threads at or below T at every moment: a decode holds one token, a
 * model batch holds all T (its T compute threads).  So either up to T
 * decodes run side by side, or one batch runs on all cores, never both:
 * no oversubscription, no fork-join stalls when a decoder preempts one of
 * the model's threads.  The embed thread has priority: once it has a
 * batch ready, no new decode starts until the batch is through.  Decoding
 * and inference thus alternate at full width, which for two CPU-bound
 * stages gives the same throughput as overlapping them (the total CPU
 * work is the same) and costs the model only the decode time of its
 * batch.  Hashing holds no token: it is I/O (SHA-256 runs at ~1.7 GB/s,
 * far above disk speed), so workers hash while the model computes.
 */
#ifndef IX_PIPELINE_H
#define IX_PIPELINE_H

#include <stdint.h>

#include "clipdex.h"

enum { JOB_HASH = 1, JOB_DECODE = 2 };

typedef struct job {
    struct job *next;
    int kind;                 /* the stage it was last submitted for */
    char *path;
    /* the file as the hash stage read it (fstat of the open file) */
    uint64_t dev, ino;
    int64_t size, mtime_ns;
    int has_stat;             /* the four fields above are set */
    uint8_t hash[CDX_HASH_SIZE];
    int has_hash;
    int gone;                 /* the path is no longer a regular file */
    int changed;              /* the file changed while it was read */
    cdx_status st;            /* CDX_OK or why the stage failed */
    char *error;              /* one line, without the path */
    /* the decode stage */
    cdx_image_meta *meta;
    uint64_t phash;
    int has_phash;
    float *pixels;            /* (3,S,S), freed once embedded */
    float *vec;               /* (E) after embedding */
    int64_t t_ready;          /* now_ms() when decoded */
    int in_main;              /* a hash result the main thread holds */
    void *user;               /* the main thread's bookkeeping */
} job;

job *job_new(const char *path);
void job_free(job *j);

typedef struct pipeline_opts {
    int workers;              /* decode/hash threads (>= 1) */
    int tokens;               /* CPU tokens = the model's compute threads */
    int batch;                /* images per model call */
    int max_wait_ms;          /* a partial batch waits this long for more */
    cdx_decode_opts decode;   /* its limits (max_pixels, max_file_bytes); the
                                 decode itself is cdx_model_image_input's FAST */
} pipeline_opts;

typedef struct pipeline pipeline;

/* Start the threads.  m (opened with the vision tower) is used by the
 * embed thread only, until pipeline_free.  -1 and *err (heap) on error. */
int pipeline_open(const pipeline_opts *o, cdx_model *m, pipeline **out, char **err);

/* Readable when finished jobs wait for pipeline_take. */
int pipeline_fd(const pipeline *p);

/* Hand a job in for its j->kind stage (JOB_HASH or JOB_DECODE).  The
 * pipeline owns it until it comes back from pipeline_take. */
void pipeline_submit(pipeline *p, job *j);

/* All finished jobs, oldest first (a list through ->next); NULL if none. */
job *pipeline_take(pipeline *p);

/* The main thread is done with a job it took: frees it. */
void pipeline_release(pipeline *p, job *j);

/* The main thread keeps a hash result aside (waiting for another job):
 * it no longer counts as work about to come back (see the batch rule). */
void pipeline_unhold(pipeline *p, job *j);

typedef struct pipeline_stats {
    int64_t queued;           /* waiting for a worker or the model */
    int64_t running;          /* being hashed, decoded or embedded */
    int64_t embedded;         /* images embedded since start */
    int64_t batches;
    double compute_s;         /* time spent inside the model */
} pipeline_stats;
void pipeline_get_stats(pipeline *p, pipeline_stats *s);

/* Stop: workers finish the file in hand, the embed thread its batch
 * (whose results still arrive through pipeline_take); queued jobs are
 * dropped.  Waits until deadline_ms (now_ms() clock) for the threads;
 * returns 1 when they all ended (then the model may be closed). */
int pipeline_stop(pipeline *p, int64_t deadline_ms);

/* Free everything (after pipeline_stop returned 1; else only what no
 * thread can touch any more is freed and the rest is left to exit). */
void pipeline_free(pipeline *p);

#endif
