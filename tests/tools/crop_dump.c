/*
 * crop_dump.c - clipdex train --augment crop's boxes and pixels, for
 * tests/cli/87-train-crop.t to check against torchvision's rules and
 * Pillow.
 *
 *   crop_dump box SEED EPOCH PAIR W H [N]
 *       prints "x y w h", the box cdx_train_crop_box draws (N lines:
 *       pairs PAIR .. PAIR+N-1)
 *   crop_dump pixels PREPROCESSOR_CONFIG IMAGE S SEED EPOCH PAIR OUT
 *       decodes IMAGE, draws its box, writes cdx_train_crop_input's
 *       (3,S,S) float32 pixels to OUT and prints the box
 * Exit 0, or 1 with a message on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipdex.h"
#include "train/train.h"

static int die(const char *what)
{
    fprintf(stderr, "crop_dump: %s: %s\n", what, cdx_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    cdx_train_box box;
    if ((argc == 7 || argc == 8) && !strcmp(argv[1], "box")) {
        long long n = argc == 8 ? atoll(argv[7]) : 1;
        for (long long i = 0; i < n; i++) {
            cdx_train_crop_box(strtoull(argv[2], NULL, 10), atoll(argv[3]), atoll(argv[4]) + i, atoi(argv[5]),
                               atoi(argv[6]), &box);
            printf("%d %d %d %d\n", box.x, box.y, box.w, box.h);
        }
        return 0;
    }
    if (argc != 9 || strcmp(argv[1], "pixels")) {
        fprintf(stderr, "usage: crop_dump box SEED EPOCH PAIR W H [N] | "
                        "crop_dump pixels PREPROCESSOR_CONFIG IMAGE S SEED EPOCH PAIR OUT\n");
        return 2;
    }
    cdx_preprocess_cfg cfg;
    cdx_image img = {0};
    int S = atoi(argv[4]);
    if (cdx_preprocess_cfg_load(argv[2], &cfg)) return die(argv[2]);
    if (cdx_image_load(argv[3], &img)) return die(argv[3]);
    cdx_train_crop_box(strtoull(argv[5], NULL, 10), atoll(argv[6]), atoll(argv[7]), (int)img.width,
                       (int)img.height, &box);
    float *out = malloc(sizeof(float) * 3 * (size_t)S * (size_t)S);
    if (!out || cdx_train_crop_input(&cfg, &img, &box, S, out)) return die("crop");
    FILE *f = fopen(argv[8], "wb");
    if (!f || fwrite(out, sizeof(float), 3 * (size_t)S * (size_t)S, f) != 3 * (size_t)S * (size_t)S ||
        fclose(f) != 0)
        return die(argv[8]);
    printf("%d %d %d %d\n", box.x, box.y, box.w, box.h);
    free(out);
    cdx_image_release(&img);
    return 0;
}
