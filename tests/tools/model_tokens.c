/*
 * model_tokens.c - test helper: the token ids a model's own tokenizer
 * gives (cdx_model_tokenizer, truncated at the model's context length),
 * one JSON line per text, for formats `clipdex tokenize` does not read
 * (tests/cli/14-openclip.t compares them with tests/ref/openclip_ref.py).
 *
 *   model_tokens MODEL_DIR TEXT...
 */
#include <stdio.h>
#include <stdlib.h>

#include "clipdex.h"

int main(int argc, char **argv)
{
    cdx_model *m = NULL;
    int32_t ids[4096];
    if (argc < 3) {
        fprintf(stderr, "usage: model_tokens MODEL_DIR TEXT...\n");
        return 2;
    }
    if (cdx_model_open(argv[1], CDX_TOWER_TEXT, &m) != CDX_OK) {
        fprintf(stderr, "%s\n", cdx_last_error());
        return 1;
    }
    int ctx = cdx_model_get_info(m)->text.max_positions;
    if (ctx > 4096) ctx = 4096;
    for (int i = 2; i < argc; i++) {
        int n = 0;
        if (cdx_tokenizer_encode(cdx_model_tokenizer(m), argv[i], ctx, ids, &n) != CDX_OK) {
            fprintf(stderr, "%s\n", cdx_last_error());
            return 1;
        }
        printf("[");
        for (int j = 0; j < n; j++) printf("%s%d", j ? "," : "", (int)ids[j]);
        printf("]\n");
    }
    cdx_model_close(m);
    return 0;
}
