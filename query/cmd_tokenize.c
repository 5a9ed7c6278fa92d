/*
 * cmd_tokenize.c - `clipdex tokenize`: the CLIP BPE ids of each text, as
 * the text tower sees them (start and end tokens included, no padding).
 * Loads only vocab.json and merges.txt, never the weights.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

/* The context length of the model, read cheaply: 77 unless config.json
 * is readable and says otherwise is not worth a JSON parse here; the
 * tokenizer output is what clip.tokenize gives at 77. */
#define CONTEXT_LENGTH 77

int cmd_tokenize(int argc, char **argv)
{
    const cdx_cmd *self = cmd_find("tokenize");
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {NULL, 0, NULL, 0},
    };
    const char *model_opt = NULL, *dir;
    char *vocab = NULL, *merges = NULL;
    cdx_tokenizer *tok = NULL;
    int c, ret = EXIT_OK;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'm') model_opt = optarg;
        else return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (optind >= argc) return usage_error(self, "no text given");
    if (!(dir = resolve_model_dir(model_opt))) return EXIT_USAGE;
    size_t n = strlen(dir);
    vocab = malloc(n + 16);
    merges = malloc(n + 16);
    if (!vocab || !merges) {
        ret = error("out of memory");
        goto out;
    }
    snprintf(vocab, n + 16, "%s/vocab.json", dir);
    snprintf(merges, n + 16, "%s/merges.txt", dir);
    if (cdx_tokenizer_open(vocab, merges, &tok)) {
        ret = error("%s", cdx_last_error());
        goto out;
    }
    for (int i = optind; i < argc; i++) {
        int32_t ids[CONTEXT_LENGTH];
        int nids = 0;
        if (cdx_tokenizer_encode(tok, argv[i], CONTEXT_LENGTH, ids, &nids)) {
            error("%s", cdx_last_error());
            ret = EXIT_ERROR;
            continue;
        }
        printf("{\"text\":");
        print_json_string(stdout, argv[i]);
        printf(",\"ids\":[");
        for (int j = 0; j < nids; j++) printf("%s%d", j ? "," : "", (int)ids[j]);
        printf("]}\n");
    }
out:
    cdx_tokenizer_free(tok);
    free(vocab);
    free(merges);
    return ret;
}
