/*
 * engine_bench.c - throughput of the CLIP engine (numbers, never pass/fail).
 *
 *   engine_bench MODEL_DIR images BATCH REPS   images/s per rep, median
 *   engine_bench MODEL_DIR text NTOKENS REPS    ms per text query, median
 *   ... [PRECISION]                             auto|f32|bf16|int8 (default f32)
 *
 * Images are random pixels (throughput does not depend on content).  The
 * text query is NTOKENS ids (start, words, end) run as `clipdex search`
 * would; SigLIP / SigLIP 2 models run a text through their tokenizer
 * instead (their text tower always runs the padded 64 tokens, NTOKENS is
 * then ignored).  Prints one "key value" line per result plus peak RSS, for
 * bench/run.sh to collect.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "clipdex.h"

/* CPU time of the whole process (every thread): on a loaded machine it
 * moves much less than the wall time (waiting for a core is not
 * counted); with BENCH_THREADS=1 it is the query's own work. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: engine_bench MODEL_DIR images|text N REPS [PRECISION]\n");
        return 2;
    }
    const char *dir = argv[1], *mode = argv[2];
    int n = atoi(argv[3]), reps = atoi(argv[4]);
    int text = strcmp(mode, "text") == 0;
    cdx_model *m;
    double t0 = now();
    if (cdx_model_open(dir, text ? CDX_TOWER_TEXT : CDX_TOWER_VISION, &m)) {
        fprintf(stderr, "engine_bench: %s\n", cdx_last_error());
        return 1;
    }
    /* BENCH_THREADS=n: the compute threads (default: the library's) */
    if (getenv("BENCH_THREADS")) cdx_threads_set(atoi(getenv("BENCH_THREADS")));
    cdx_precision prec = CDX_PRECISION_F32;
    if (argc == 6 && cdx_precision_parse(argv[5], &prec)) {
        fprintf(stderr, "engine_bench: bad precision %s\n", argv[5]);
        return 2;
    }
    if (cdx_model_set_precision(m, prec)) {
        fprintf(stderr, "engine_bench: %s\n", cdx_last_error());
        return 1;
    }
    printf("precision %s\n", cdx_precision_name(cdx_model_get_precision(m, NULL)));
    printf("open_ms %.1f\n", (now() - t0) * 1e3);
    const cdx_model_info *info = cdx_model_get_info(m);
    double *times = calloc((size_t)reps, sizeof(double));
    float *out = malloc(sizeof(float) * (size_t)info->projection_dim * (size_t)(n > 0 ? n : 1));
    if (text && (info->family == CDX_FAMILY_SIGLIP || info->family == CDX_FAMILY_SIGLIP2)) {
        const char *q = "a photo of a dog on the beach at sunset";
        cdx_model_encode_text(m, q, out, 1); /* warm-up */
        for (int r = 0; r < reps; r++) {
            double s = now();
            cdx_model_encode_text(m, q, out, 1);
            times[r] = (now() - s) * 1e3;
        }
        printf("text_ms_median %.2f\n", median(times, reps));
    } else if (text) {
        int32_t ids[77];
        ids[0] = 49406;
        for (int i = 1; i < n - 1; i++) ids[i] = 320 + i * 7; /* ordinary word ids */
        ids[n - 1] = 49407;
        cdx_model_encode_tokens(m, ids, n, out, 1); /* warm-up */
        double *cpu = calloc((size_t)reps, sizeof(double));
        for (int r = 0; r < reps; r++) {
            double s = now(), c = cpu_now();
            cdx_model_encode_tokens(m, ids, n, out, 1);
            times[r] = (now() - s) * 1e3;
            cpu[r] = (cpu_now() - c) * 1e3;
        }
        printf("text_cpu_ms_median %.2f\n", median(cpu, reps));
        free(cpu);
        printf("text_ms_median %.2f\n", median(times, reps));
        /* the fastest tenth: what a query costs when no other process
         * takes the cores (the median moves with the machine's load) */
        printf("text_ms_p10 %.2f\n", times[reps / 10]);
    } else {
        size_t per = 3 * (size_t)info->vision.image_size * (size_t)info->vision.image_size;
        float *pix = malloc(sizeof(float) * per * (size_t)n);
        srand(1);
        for (size_t i = 0; i < per * (size_t)n; i++) pix[i] = (float)rand() / RAND_MAX * 4 - 2;
        cdx_model_encode_images(m, pix, n, out, 1); /* warm-up */
        for (int r = 0; r < reps; r++) {
            double s = now();
            cdx_model_encode_images(m, pix, n, out, 1);
            times[r] = n / (now() - s);
        }
        printf("images_per_s_median %.2f\n", median(times, reps));
        free(pix);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak_rss_mb %.1f\n", ru.ru_maxrss / 1024.0);
    free(times);
    free(out);
    cdx_model_close(m);
    return 0;
}
