/*
 * cmd_model.c - `clipdex model`: what a model directory holds, checked by
 * actually opening it (every tensor bound and validated): family, towers,
 * tokenizer, scoring and the preprocessing an image goes through.
 */
#include <getopt.h>

#include "cmd.h"

static void tower(const char *name, const cdx_tower_info *t, int vision)
{
    printf("%s: width %d, %d layers, %d heads, mlp %d, %s, layer norm eps %g", name, t->hidden,
           t->layers, t->heads, t->intermediate, t->act, t->ln_eps);
    if (vision)
        printf(", image %dx%d, patch %d\n", t->image_size, t->image_size, t->patch_size);
    else
        printf(", context %d, vocabulary %d\n", t->max_positions, t->vocab_size);
}

int cmd_model(int argc, char **argv)
{
    const cdx_cmd *self = cmd_find("model");
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"precision", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    const char *model_opt = NULL, *dir, *prec_opt = NULL, *why;
    cdx_precision prec;
    cdx_model *m = NULL;
    int c;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'm') model_opt = optarg;
        else if (c == 'P') prec_opt = optarg;
        else return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (optind < argc) return usage_error(self, "unexpected argument '%s'", argv[optind]);
    if (!(dir = resolve_model_dir(model_opt))) return EXIT_USAGE;
    if (resolve_precision(prec_opt, &prec, &why)) return EXIT_USAGE;
    if (cdx_model_open(dir, CDX_TOWER_TEXT | CDX_TOWER_VISION, &m)) return error("%s", cdx_last_error());
    const cdx_model_info *i = cdx_model_get_info(m);
    const cdx_preprocess_cfg *p = cdx_model_preprocess(m);
    const int siglip = i->family == CDX_FAMILY_SIGLIP || i->family == CDX_FAMILY_SIGLIP2;
    printf("model: %s\n", i->dir);
    printf("family: %s\n", cdx_family_name(i->family));
    printf("architecture: %s, ViT-%s/%d vision%s, %d-layer text, embedding dimension %d\n",
           i->family == CDX_FAMILY_SIGLIP2 ? "SigLIP 2" : siglip ? "SigLIP"
           : i->family == CDX_FAMILY_OPENCLIP ? "OpenCLIP" : "CLIP",
           i->vision.hidden >= 1152 ? "SO400M" : i->vision.hidden >= 1024 ? "L"
           : i->vision.hidden >= 768 ? "B" : "custom",
           i->vision.patch_size, siglip ? " (attention-pooled)" : "", i->text.layers,
           i->projection_dim);
    tower("vision", &i->vision, 1);
    tower("text", &i->text, 0);
    printf("tokenizer: %s\n", cdx_tokenizer_describe(cdx_model_tokenizer(m)));
    printf("parameters: %lld (%.1f M)\n", (long long)i->n_params, (double)i->n_params / 1e6);
    printf("weights: %s (%s)\n", i->weights_file, i->dtype);
    printf("logit scale: %.4f\n", (double)i->logit_scale);
    if (i->scoring == CDX_SCORING_SIGMOID)
        printf("scoring: sigmoid(%.4f * cosine %+.4f), each label on its own (logit bias %.4f)\n",
               (double)i->logit_scale, (double)i->logit_bias, (double)i->logit_bias);
    else
        printf("scoring: softmax over the labels of %.4f * cosine\n", (double)i->logit_scale);
    /* What embed/search/index would run at (not prepared here). */
    printf("precision: %s (%s; CPU level %s)\n", cdx_precision_name(prec), why, cdx_cpu_level());
    if (siglip)
        printf("preprocess: RGB, resize to %dx%d (%s, no crop), rescale %.8g, mean [%.8g, %.8g, "
               "%.8g], std [%.8g, %.8g, %.8g]\n",
               p->resize_width, p->resize_height, p->resample == 2 ? "bilinear" : "bicubic",
               p->rescale_factor, (double)p->image_mean[0], (double)p->image_mean[1],
               (double)p->image_mean[2], (double)p->image_std[0], (double)p->image_std[1],
               (double)p->image_std[2]);
    else
        printf("preprocess: shortest edge %d, crop %dx%d, mean [%.8g, %.8g, %.8g], std [%.8g, %.8g, %.8g]\n",
               p->shortest_edge, p->crop_width, p->crop_height, (double)p->image_mean[0],
               (double)p->image_mean[1], (double)p->image_mean[2], (double)p->image_std[0],
               (double)p->image_std[1], (double)p->image_std[2]);
    if (p->openclip) {
        /* OpenCLIP: open_clip's eval transform (preprocess_openclip.c) */
        static const char *const modes[] = {"shortest (resize the short side, centre crop)",
                                            "longest (resize the long side, pad)",
                                            "squash (resize both sides)"};
        printf("preprocess order (open_clip): resize %s to %d in the image's own mode (palette "
               "nearest, alpha premultiplied), bicubic, crop offsets by round(), then RGB",
               modes[p->oc_resize_mode % 3], p->crop_width);
        if (p->oc_resize_mode == CDX_OC_RESIZE_LONGEST) printf(", fill %d", p->oc_fill);
        printf("\n");
    }
    cdx_model_close(m);
    return EXIT_OK;
}
