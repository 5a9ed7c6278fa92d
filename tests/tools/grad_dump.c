/*
 * grad_dump.c - one gradient of clipdex's training, for the tests to
 * compare with PyTorch autograd (tests/cli/80-train.t, tests/ref/train_ref.py).
 *
 *   grad_dump MODEL PIXELS IDS OUT [--lock image|text] [--unlock-last N] [--sub-batch N]
 *            [--threads N]
 *
 * PIXELS: n images as raw float32 (n,3,S,S); IDS: n lines of token ids
 * (decimal, space-separated, each line with an end-of-text token; SigLIP:
 * the whole padded sequence, every id used).  Runs
 * the training forward pass, checks its embeddings against the inference
 * engine's (cdx_model_encode_images / _tokens, float32) to 1e-6, then the
 * loss and backward pass, and writes the trainable parameters' gradients
 * to OUT (safetensors).  --sub-batch N takes the gradient-caching path
 * (cdx_train_grad_cached) N pairs at a time.  Prints "loss L", "logit_scale T" and
 * "embed_maxdiff D"; with --lock image also "from_embeddings_identical 1"
 * when the image embeddings given directly (clipdex train --from-store's
 * path) give the same loss and gradients to the bit.  Exit 0, or 1 on a failure (message on stderr).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipdex.h"
#include "train/train.h"

static int die(const char *what)
{
    fprintf(stderr, "grad_dump: %s: %s\n", what, cdx_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    unsigned locked = 0;
    int unlock = 0, sub = 0, threads = 0;
    if (argc < 5) {
        fprintf(stderr, "usage: grad_dump MODEL PIXELS IDS OUT [--lock image|text] [--unlock-last N] "
                        "[--sub-batch N] [--threads N]\n");
        return 2;
    }
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--lock") && i + 1 < argc) {
            i++;
            locked |= !strcmp(argv[i], "image") ? CDX_TRAIN_VISION : CDX_TRAIN_TEXT;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--sub-batch") && i + 1 < argc) {
            sub = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--unlock-last") && i + 1 < argc) {
            unlock = atoi(argv[++i]);
        } else {
            fprintf(stderr, "grad_dump: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    cdx_threads_set(threads);
    cdx_train_model *tm = NULL;
    cdx_model *m = NULL;
    if (cdx_train_open(argv[1], &tm)) return die("open");
    if (cdx_train_set_trainable(tm, locked, unlock)) return die("lock");
    if (cdx_model_open(argv[1], CDX_TOWER_TEXT | CDX_TOWER_VISION, &m)) return die("model");
    const int S = cdx_train_image_size(tm), E = cdx_train_embed_dim(tm);
    const size_t per = 3 * (size_t)S * S;
    const int32_t eot = cdx_tokenizer_eot(cdx_model_tokenizer(m));
    /* SigLIP and SigLIP 2 train on the whole padded sequence (pooled at
     * its last position), so nothing is cut */
    const cdx_family fam = cdx_model_get_info(m)->family;
    const int whole = fam == CDX_FAMILY_SIGLIP || fam == CDX_FAMILY_SIGLIP2;

    /* pixels */
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    int n = (int)(bytes / (long)(per * 4));
    float *pix = malloc((size_t)bytes);
    if (n < 1 || !pix || fread(pix, 1, (size_t)bytes, f) != (size_t)bytes) {
        fprintf(stderr, "grad_dump: %s: not whole images of %dx%d\n", argv[2], S, S);
        return 1;
    }
    fclose(f);

    /* ids: each line cut after its first end-of-text token */
    int32_t *ids = malloc(sizeof(int32_t) * 77 * (size_t)n), *full = malloc(sizeof(int32_t) * 77 * (size_t)n);
    int *lens = calloc((size_t)n, sizeof(int)), *flens = calloc((size_t)n, sizeof(int)), total = 0;
    if (!(f = fopen(argv[3], "r"))) {
        perror(argv[3]);
        return 1;
    }
    char line[4096];
    for (int i = 0; i < n; i++) {
        if (!fgets(line, sizeof line, f)) {
            fprintf(stderr, "grad_dump: %s: fewer than %d lines\n", argv[3], n);
            return 1;
        }
        char *p = line, *end;
        int cut = 0;
        for (long v; (v = strtol(p, &end, 10)), end != p; p = end) {
            if (flens[i] >= 77) break;
            full[i * 77 + flens[i]++] = (int32_t)v;
            if (!cut) {
                ids[total + lens[i]++] = (int32_t)v;
                if (v == eot && !whole) cut = 1;
            }
        }
        if (!cut && !whole) {
            fprintf(stderr, "grad_dump: %s: line %d has no end-of-text token\n", argv[3], i + 1);
            return 1;
        }
        total += lens[i];
    }
    fclose(f);

    /* the forward pass is the engine's */
    float *img = malloc(sizeof(float) * 4 * (size_t)n * E), *txt = img + (size_t)n * E;
    float *ref_i = txt + (size_t)n * E, *ref_t = ref_i + (size_t)n * E;
    cdx_train_batch b = {n, pix, ids, lens, NULL, NULL, NULL};
    if (cdx_train_forward(tm, &b, img, txt)) return die("forward");
    if (cdx_model_encode_images(m, pix, n, ref_i, 0)) return die("encode images");
    for (int i = 0; i < n; i++)
        if (cdx_model_encode_tokens(m, full + i * 77, flens[i], ref_t + (size_t)i * E, 0))
            return die("encode tokens");
    double md = 0;
    for (size_t i = 0; i < 2 * (size_t)n * E; i++) md = fmax(md, fabs((double)img[i] - ref_i[i]));
    printf("embed_maxdiff %.3g\n", md);

    double loss = 0;
    if (sub ? cdx_train_grad_cached(tm, &b, sub, &loss) : cdx_train_grad(tm, &b, &loss)) return die("grad");
    printf("loss %.9g\n", loss);
    printf("logit_scale %.9g\n", cdx_train_param_find(tm, "logit_scale")->w[0]);
    if (cdx_train_save_grads(tm, argv[4])) return die("save");
    if (locked & CDX_TRAIN_VISION) {
        /* LiT from the store (cdx_train_batch.img_emb): given the inference
         * engine's float32 image embeddings instead of the pixels, the
         * loss and every gradient must be the same bits */
        int np = cdx_train_n_params(tm), same = 1;
        float **g0 = calloc((size_t)np, sizeof *g0);
        for (int i = 0; i < np; i++) {
            cdx_train_param *p = cdx_train_param_at(tm, i);
            if (!p->trainable) continue;
            g0[i] = malloc(sizeof(float) * (size_t)p->numel);
            memcpy(g0[i], p->g, sizeof(float) * (size_t)p->numel);
        }
        /* the engine's kernels depend on the row count (few rows stream,
         * many go to sgemm), so embed as the sub-batches did */
        float *emb = malloc(sizeof(float) * (size_t)n * E);
        for (int i = 0; i < n; i += sub ? sub : n)
            if (cdx_model_encode_images(m, pix + per * (size_t)i, sub && n - i > sub ? sub : n - i,
                                        emb + (size_t)i * E, 0))
                return die("encode images");
        cdx_train_batch be = {n, NULL, ids, lens, emb, NULL, NULL};
        double loss2 = 0;
        if (sub ? cdx_train_grad_cached(tm, &be, sub, &loss2) : cdx_train_grad(tm, &be, &loss2))
            return die("grad from embeddings");
        same = loss2 == loss;
        for (int i = 0; i < np; i++) {
            cdx_train_param *p = cdx_train_param_at(tm, i);
            if (g0[i] && memcmp(g0[i], p->g, sizeof(float) * (size_t)p->numel)) same = 0;
            free(g0[i]);
        }
        free(g0);
        free(emb);
        printf("from_embeddings_identical %d\n", same);
    }
    cdx_model_close(m);
    cdx_train_close(tm);
    free(pix);
    free(ids);
    free(full);
    free(lens);
    free(flens);
    free(img);
    if (md > 1e-6) {
        fprintf(stderr, "grad_dump: training forward differs from the engine by %g\n", md);
        return 1;
    }
    return 0;
}
