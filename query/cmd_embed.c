/*
 * cmd_embed.c - `clipdex embed`: print the embeddings of texts and images,
 * one line per input in input order.  The low-level command the tests
 * compare against the PyTorch reference, and a way to use clipdex's
 * engine from other programs.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

struct input {
    int is_image;
    const char *value;
    int ok;
};

static void print_tsv_field(const char *s)
{
    for (; *s; s++) {
        if (*s == '\t') fputs("\\t", stdout);
        else if (*s == '\n') fputs("\\n", stdout);
        else if (*s == '\r') fputs("\\r", stdout);
        else if (*s == '\\') fputs("\\\\", stdout);
        else putchar(*s);
    }
}

static void print_embedding(const struct input *in, const float *e, int dim, int json)
{
    const char *type = in->is_image ? "image" : "text";
    if (json) {
        printf("{\"type\":\"%s\",\"input\":", type);
        print_json_string(stdout, in->value);
        printf(",\"embedding\":[");
        for (int i = 0; i < dim; i++) {
            if (i) putchar(',');
            print_float(stdout, e[i]);
        }
        printf("]}\n");
    } else {
        printf("%s\t", type);
        print_tsv_field(in->value);
        for (int i = 0; i < dim; i++) {
            putchar('\t');
            print_float(stdout, e[i]);
        }
        putchar('\n');
    }
}

int cmd_embed(int argc, char **argv)
{
    const cdx_cmd *self = cmd_find("embed");
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},   {"preprocess", required_argument, NULL, 'p'},
        {"format", required_argument, NULL, 'f'},  {"text", required_argument, NULL, 't'},
        {"image", required_argument, NULL, 'i'},   {"raw", no_argument, NULL, 'r'},
        {"precision", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    struct input *inputs = NULL;
    int n_inputs = 0, n_images = 0, n_texts = 0, json = 1, raw = 0, fast = 0, c, ret = EXIT_OK;
    const char *model_opt = NULL, *model_dir, *prec_opt = NULL;
    cdx_model *m = NULL;
    float *emb = NULL, *pixels = NULL;
    cdx_status st;

    inputs = xcalloc((size_t)argc, sizeof *inputs);
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_opt = optarg; break;
        case 'p':
            if (strcmp(optarg, "exact") != 0 && strcmp(optarg, "fast") != 0) {
                ret = usage_error(self, "--preprocess must be exact or fast, not '%s'", optarg);
                goto out;
            }
            fast = strcmp(optarg, "fast") == 0;
            break;
        case 'f':
            if (strcmp(optarg, "json") == 0) json = 1;
            else if (strcmp(optarg, "tsv") == 0) json = 0;
            else {
                ret = usage_error(self, "--format must be json or tsv, not '%s'", optarg);
                goto out;
            }
            break;
        case 't': inputs[n_inputs++] = (struct input){0, optarg, 0}; n_texts++; break;
        case 'i': inputs[n_inputs++] = (struct input){1, optarg, 0}; n_images++; break;
        case 'r': raw = 1; break;
        case 'P': prec_opt = optarg; break;
        default:
            ret = usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
            goto out;
        }
    }
    if (optind < argc) {
        ret = usage_error(self, "unexpected argument '%s' (texts go after --text)", argv[optind]);
        goto out;
    }
    if (n_inputs == 0) {
        ret = usage_error(self, "nothing to embed: give --text or --image");
        goto out;
    }
    cdx_precision prec;
    if (resolve_precision(prec_opt, &prec, NULL)) {
        ret = EXIT_USAGE;
        goto out;
    }
    if (!(model_dir = resolve_model_dir(model_opt))) {
        ret = EXIT_USAGE;
        goto out;
    }
    st = cdx_model_open(model_dir, (n_texts ? CDX_TOWER_TEXT : 0) | (n_images ? CDX_TOWER_VISION : 0), &m);
    if (st) {
        ret = error("%s", cdx_last_error());
        goto out;
    }
    if (cdx_model_set_precision(m, prec)) {
        ret = error("%s", cdx_last_error());
        goto out;
    }
    const cdx_model_info *info = cdx_model_get_info(m);
    const int E = info->projection_dim, S = info->vision.image_size;
    const size_t per = 3 * (size_t)S * (size_t)S;
    emb = xcalloc((size_t)n_inputs * (size_t)E, sizeof(float));
    if (n_images) pixels = xmalloc(per * sizeof(float) * (size_t)n_images);

    /* Decode and preprocess every image first, then one batched pass. */
    int n_ok_images = 0;
    int *slot = xcalloc((size_t)n_inputs, sizeof(int));
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i].is_image) {
            st = cdx_model_encode_text(m, inputs[i].value, emb + (size_t)i * E, !raw);
            if (st) {
                error("%s", cdx_last_error());
                ret = EXIT_ERROR;
            } else {
                inputs[i].ok = 1;
            }
            continue;
        }
        /* exact: the reference processor's path (no EXIF orientation);
         * fast: the indexing path (upright, DCT-scaled JPEG decode). */
        cdx_input_opts in = {.mode = fast ? CDX_INPUT_FAST : CDX_INPUT_EXACT};
        float *dst = pixels + per * (size_t)n_ok_images;
        st = cdx_model_image_input(m, inputs[i].value, &in, dst);
        if (st) {
            error("%s", cdx_last_error());
            ret = EXIT_ERROR;
            continue;
        }
        slot[i] = n_ok_images++;
        inputs[i].ok = 1;
    }
    if (n_ok_images) {
        float *iemb = xmalloc(sizeof(float) * (size_t)E * (size_t)n_ok_images);
        st = cdx_model_encode_images(m, pixels, n_ok_images, iemb, !raw);
        if (st) {
            free(iemb);
            free(slot);
            ret = error("%s", cdx_last_error());
            goto out;
        }
        for (int i = 0; i < n_inputs; i++)
            if (inputs[i].is_image && inputs[i].ok)
                memcpy(emb + (size_t)i * E, iemb + (size_t)slot[i] * E, sizeof(float) * (size_t)E);
        free(iemb);
    }
    free(slot);
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i].ok) print_embedding(&inputs[i], emb + (size_t)i * E, E, json);

out:
    cdx_model_close(m);
    free(pixels);
    free(emb);
    free(inputs);
    return ret;
}
