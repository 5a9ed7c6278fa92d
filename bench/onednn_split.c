/*
 * onednn_split.c - how to thread oneDNN's matmul on our 2 cores (numbers,
 * never pass/fail).  The measurement behind core/engine/qlinear.c's
 * design: one single-threaded oneDNN matmul per column slice, run on two
 * threads of our own, against one matmul over all columns on oneDNN's
 * OpenMP threads (Debian's libdnnl uses the OpenMP runtime).
 *
 *   onednn_split M K N bf16|int8 [REPS]
 *
 * Prints ms and GFLOP/s of each way.
 */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dnnl.h>

#define CHK(x)                                                              \
    do {                                                                    \
        dnnl_status_t s_ = (x);                                             \
        if (s_) {                                                           \
            fprintf(stderr, "onednn_split: %s failed (%d)\n", #x, (int)s_); \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

static dnnl_engine_t eng;
static int reps = 50;

typedef struct {
    dnnl_primitive_t p;
    dnnl_memory_t a, b, c;
    dnnl_stream_t s;
} mm;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void make(mm *m, int M, int K, int N, dnnl_data_type_t wt, dnnl_data_type_t st,
                 dnnl_data_type_t dt)
{
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {M, K}, db = {K, N}, dc = {M, N};
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd;
    CHK(dnnl_memory_desc_init_by_tag(&a, 2, da, st, dnnl_ab));
    CHK(dnnl_memory_desc_init_by_tag(&b, 2, db, wt, dnnl_format_tag_any));
    CHK(dnnl_memory_desc_init_by_tag(&c, 2, dc, dt, dnnl_ab));
    CHK(dnnl_matmul_desc_init(&md, &a, &b, NULL, &c));
    CHK(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    printf("# %dx%dx%d: %s\n", M, K, N, impl ? impl : "?");
    CHK(dnnl_primitive_create(&m->p, pd));
    CHK(dnnl_memory_create(&m->a, &a, eng, DNNL_MEMORY_ALLOCATE));
    CHK(dnnl_memory_create(&m->b, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), eng,
                           DNNL_MEMORY_ALLOCATE));
    CHK(dnnl_memory_create(&m->c, &c, eng, DNNL_MEMORY_ALLOCATE));
    CHK(dnnl_stream_create(&m->s, eng, dnnl_stream_default_flags));
    dnnl_primitive_desc_destroy(pd);
}

static void run(mm *m)
{
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, m->a}, {DNNL_ARG_WEIGHTS, m->b}, {DNNL_ARG_DST, m->c}};
    CHK(dnnl_primitive_execute(m->p, m->s, 3, args));
    CHK(dnnl_stream_wait(m->s));
}

static void *loop(void *v)
{
    omp_set_num_threads(1);
    for (int i = 0; i < reps; i++) run(v);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: onednn_split M K N bf16|int8 [REPS]\n");
        return 2;
    }
    int M = atoi(argv[1]), K = atoi(argv[2]), N = atoi(argv[3]);
    int i8 = strcmp(argv[4], "int8") == 0;
    if (argc > 5) reps = atoi(argv[5]);
    dnnl_data_type_t wt = i8 ? dnnl_s8 : dnnl_bf16, st = wt, dt = i8 ? dnnl_s32 : dnnl_f32;
    CHK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    double flop = 2.0 * M * K * N;

    mm full, half[2];
    make(&full, M, K, N, wt, st, dt);
    run(&full);
    double t = now();
    for (int i = 0; i < reps; i++) run(&full);
    t = (now() - t) / reps;
    printf("openmp_%d_threads_ms %.3f gflops %.1f\n", omp_get_max_threads(), t * 1e3, flop / t / 1e9);

    make(&half[0], M, K, N / 2, wt, st, dt);
    make(&half[1], M, K, N - N / 2, wt, st, dt);
    omp_set_num_threads(1);
    run(&half[0]);
    run(&half[1]);
    pthread_t th;
    t = now();
    pthread_create(&th, NULL, loop, &half[1]);
    loop(&half[0]);
    pthread_join(th, NULL);
    t = (now() - t) / reps;
    printf("split_2x1_thread_ms %.3f gflops %.1f\n", t * 1e3, flop / t / 1e9);
    return 0;
}
