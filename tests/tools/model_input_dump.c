/*
 * model_input_dump.c - test helper: the model's input tensor for image
 * files, as cdx_model_image_input makes it (what indexing and queries
 * feed the vision tower), so that a test can compare it with a reference
 * preprocessing (tests/cli/14-openclip.t, tests/ref/openclip_ref.py).
 *
 *   model_input_dump [-f] MODEL_DIR OUT IMAGE...
 *
 * -f: CDX_INPUT_FAST (else CDX_INPUT_EXACT).  OUT receives, per image
 * that succeeds, 3*S*S float32 (native order), concatenated; stdout one
 * line per image: "ok PATH" or "error PATH: MESSAGE".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipdex.h"

int main(int argc, char **argv)
{
    cdx_input_opts o = {0};
    cdx_model *m = NULL;
    int a = 1;
    if (argc > 1 && strcmp(argv[1], "-f") == 0) {
        o.mode = CDX_INPUT_FAST;
        a++;
    } else {
        o.mode = CDX_INPUT_EXACT;
    }
    if (argc - a < 3) {
        fprintf(stderr, "usage: model_input_dump [-f] MODEL_DIR OUT IMAGE...\n");
        return 2;
    }
    if (cdx_model_open(argv[a], CDX_TOWER_VISION, &m) != CDX_OK) {
        fprintf(stderr, "%s\n", cdx_last_error());
        return 1;
    }
    const int S = cdx_model_get_info(m)->vision.image_size;
    const size_t n = 3 * (size_t)S * (size_t)S;
    float *t = malloc(n * sizeof *t);
    FILE *f = fopen(argv[a + 1], "wb");
    if (!t || !f) {
        fprintf(stderr, "%s: cannot write\n", argv[a + 1]);
        return 1;
    }
    for (int i = a + 2; i < argc; i++) {
        if (cdx_model_image_input(m, argv[i], &o, t) != CDX_OK) {
            printf("error %s: %s\n", argv[i], cdx_last_error());
            continue;
        }
        if (fwrite(t, sizeof *t, n, f) != n) return 1;
        printf("ok %s\n", argv[i]);
    }
    fclose(f);
    free(t);
    cdx_model_close(m);
    return 0;
}
