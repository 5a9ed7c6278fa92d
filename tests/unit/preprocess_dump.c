/*
 * preprocess_dump.c - test helper (not a test): decode one image with
 * cdx_image_load and write what the library produced, so that
 * tests/cli/20-preprocess.t can compare it with Pillow/transformers
 * (tests/tools/ref_preprocess.py).
 *
 *   preprocess_dump [-w] [-T] [-r RGB_OUT] [-c CONFIG|-] [-t TENSOR_OUT]... IMAGE
 *
 *   -r FILE   the decoded RGB bytes (height*width*3, row-major)
 *   -c FILE   preprocessor_config.json for the following -t ("-" = the
 *             built-in defaults, also used when no -c was given)
 *   -t FILE   cdx_preprocess_exact output, float32 (3,H,W), native order;
 *             may be repeated, each with the -c before it
 *   -w        print library warnings to stderr ("warning: ...")
 *   -T        print decode/preprocess times to stderr
 *
 * stdout: "WIDTH HEIGHT" of the image, then "tensor OW OH" per -t.
 * On failure: exactly one line on stderr, cdx_last_error(), and exit 1
 * (2 for usage errors).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipdex.h"

#define MAX_TENSORS 16

static void warn_sink(int level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    fprintf(stderr, "warning: %s\n", msg);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "%s: cannot write\n", path);
        return -1;
    }
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: preprocess_dump [-w] [-T] [-r RGB_OUT] [-c CONFIG|-] "
                    "[-t TENSOR_OUT]... IMAGE\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *rgb_out = NULL, *image = NULL;
    const char *cfg_of[MAX_TENSORS], *tensor_out[MAX_TENSORS];
    const char *cfg_path = "-";
    int n_tensors = 0, timing = 0, ret = 1;
    cdx_image img = {0};
    float *t = NULL;
    double t0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-w")) {
            cdx_log_set(warn_sink, NULL, CDX_LOG_WARN);
        } else if (!strcmp(a, "-T")) {
            timing = 1;
        } else if (!strcmp(a, "-r") && i + 1 < argc) {
            rgb_out = argv[++i];
        } else if (!strcmp(a, "-c") && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (!strcmp(a, "-t") && i + 1 < argc) {
            if (n_tensors == MAX_TENSORS) return usage();
            cfg_of[n_tensors] = cfg_path;
            tensor_out[n_tensors++] = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0' && !image) {
            return usage();
        } else if (!image) {
            image = a;
        } else {
            return usage();
        }
    }
    if (!image) return usage();

    t0 = now_ms();
    if (cdx_image_load(image, &img) != CDX_OK) {
        fprintf(stderr, "%s\n", cdx_last_error());
        return 1;
    }
    if (timing) fprintf(stderr, "decode %.1f ms\n", now_ms() - t0);
    printf("%u %u\n", img.width, img.height);
    if (rgb_out && write_file(rgb_out, img.rgb, (size_t)img.width * img.height * 3)) goto out;

    for (int k = 0; k < n_tensors; k++) {
        cdx_preprocess_cfg cfg;
        uint32_t ow, oh;
        if (!strcmp(cfg_of[k], "-")) {
            cdx_preprocess_cfg_default(&cfg);
        } else if (cdx_preprocess_cfg_load(cfg_of[k], &cfg) != CDX_OK) {
            fprintf(stderr, "%s\n", cdx_last_error());
            goto out;
        }
        if (cdx_preprocess_output_size(&cfg, img.width, img.height, &ow, &oh) != CDX_OK) {
            fprintf(stderr, "%s\n", cdx_last_error());
            goto out;
        }
        free(t);
        if (!(t = malloc((size_t)ow * oh * 3 * sizeof *t))) {
            fprintf(stderr, "out of memory\n");
            goto out;
        }
        t0 = now_ms();
        if (cdx_preprocess_exact(&cfg, &img, t) != CDX_OK) {
            fprintf(stderr, "%s\n", cdx_last_error());
            goto out;
        }
        if (timing) fprintf(stderr, "preprocess %.1f ms\n", now_ms() - t0);
        printf("tensor %u %u\n", ow, oh);
        if (write_file(tensor_out[k], t, (size_t)ow * oh * 3 * sizeof *t)) goto out;
    }
    ret = 0;
out:
    free(t);
    cdx_image_release(&img);
    return ret;
}
