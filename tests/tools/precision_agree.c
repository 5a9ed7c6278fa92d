/*
 * precision_agree.c - retrieval and moderation agreement of a reduced
 * precision with float32, over a store-sized set of image vectors.
 *
 *   precision_agree MODEL_DIR N_IMAGES PRECISION
 *
 * N_IMAGES synthetic photos (smooth random colour fields with edges, made
 * here as preprocessed pixel tensors) are embedded at float32 and at
 * PRECISION by two model handles; 100 text queries (word combinations)
 * likewise.  Printed, one "key value" per line (tests/cli/12-precision.t
 * asserts on them):
 *   top10_overlap   mean over the queries of |top10_f32 & top10_P| / 10,
 *                   each side ranking its own image vectors with its own
 *                   query vector (what a user sees after switching);
 *   moderation_agree fraction of images whose set of flagged labels (all
 *                   flagging presets with the everyday background, as
 *                   `clipdex moderate` computes them) is the same;
 *   moderation_top_agree fraction of images whose most probable flagged
 *                   label (stored by clipdex moderate for every image) is
 *                   the same: never vacuous, unlike the threshold
 *                   decisions on a random-weight model that flags nothing;
 *   flagged_f32     images flagged at float32;
 *   moderation_agree_calibrated  the same agreement with each flagged
 *                   label's threshold set where it flags 5% of the images
 *                   at float32 (a random-weight model flags nothing at the
 *                   presets' own thresholds, which makes moderation_agree
 *                   vacuous there);
 *   score10_mean    mean f32 score of the 10th hit.
 * Exact top-k by brute force in double: no FAISS approximation mixed in.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipdex.h"
#include "../../query/labels.h"

#define NQ 100
#define TOPK 10

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* One synthetic preprocessed image (3,S,S): low-frequency colour waves,
 * a sharp rectangle, noise; values in the normalised range [-2, 2]. */
static void make_image(float *px, int S)
{
    double fx[3], fy[3], ph[3], amp[3], base[3];
    for (int c = 0; c < 3; c++) {
        fx[c] = 0.5 + urand() * 6;
        fy[c] = 0.5 + urand() * 6;
        ph[c] = urand() * 6.28;
        amp[c] = 0.3 + urand() * 1.2;
        base[c] = urand() * 2 - 1;
    }
    int x0 = (int)(urand() * S), y0 = (int)(urand() * S), w = 10 + (int)(urand() * S / 2),
        h = 10 + (int)(urand() * S / 2);
    double rc[3] = {urand() * 4 - 2, urand() * 4 - 2, urand() * 4 - 2};
    double sx[1024], cy[1024];
    if (S > 1024) S = 1024;
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < S; i++) {
            sx[i] = sin(i * fx[c] * 6.28 / S + ph[c]);
            cy[i] = cos(i * fy[c] * 6.28 / S);
        }
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                double v = base[c] + amp[c] * sx[x] * cy[y];
                if (x >= x0 && x < x0 + w && y >= y0 && y < y0 + h) v = rc[c];
                v += (urand() - 0.5) * 0.2;
                px[((size_t)c * S + y) * S + x] = (float)(v > 2 ? 2 : v < -2 ? -2 : v);
            }
    }
}

static void topk(const float *imgs, const float *q, int n, int E, int *out)
{
    double best[TOPK];
    for (int k = 0; k < TOPK; k++) best[k] = -INFINITY, out[k] = -1;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int d = 0; d < E; d++) s += (double)imgs[(size_t)i * E + d] * q[d];
        if (s <= best[TOPK - 1]) continue;
        int k = TOPK - 1;
        while (k > 0 && best[k - 1] < s) {
            best[k] = best[k - 1];
            out[k] = out[k - 1];
            k--;
        }
        best[k] = s;
        out[k] = i;
    }
}

/* Label embeddings as cdx_moderate builds them: mean of normalised prompt
 * embeddings, renormalised. */
static int embed_labels(cdx_model *m, const labelset *set, int E, float *lab)
{
    float *e = malloc(sizeof(float) * (size_t)E);
    for (size_t j = 0; j < set->n; j++) {
        float *row = lab + j * (size_t)E;
        memset(row, 0, sizeof(float) * (size_t)E);
        for (size_t i = 0; i < label_n_prompts(&set->v[j]); i++) {
            char *p = label_prompt(&set->v[j], i);
            if (!p || cdx_model_encode_text(m, p, e, 1)) {
                free(p);
                free(e);
                return -1;
            }
            for (int d = 0; d < E; d++) row[d] += e[d];
            free(p);
        }
        double s = 0;
        for (int d = 0; d < E; d++) s += (double)row[d] * row[d];
        for (int d = 0; d < E; d++) row[d] = (float)(row[d] / sqrt(s));
    }
    free(e);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* softmax(scale * <v, label_j>) into p (L values). */
static void probs(const float *lab, const float *v, size_t L, int E, double scale, double *p)
{
    double mx = -INFINITY, sum = 0;
    for (size_t j = 0; j < L; j++) {
        double dot = 0;
        for (int d = 0; d < E; d++) dot += (double)lab[j * (size_t)E + d] * v[d];
        p[j] = scale * dot;
        if (p[j] > mx) mx = p[j];
    }
    for (size_t j = 0; j < L; j++) sum += (p[j] = exp(p[j] - mx));
    for (size_t j = 0; j < L; j++) p[j] /= sum;
}

/* Bit j set: flagged label j hit for image v.  *top: the most probable
 * flagged label, which clipdex moderate stores for every image. */
static uint64_t decide(const labelset *set, const float *lab, const float *v, int E, double scale,
                       int *top)
{
    double p[64], mx = -INFINITY, sum = 0;
    size_t L = set->n < 64 ? set->n : 64;
    for (size_t j = 0; j < L; j++) {
        double dot = 0;
        for (int d = 0; d < E; d++) dot += (double)lab[j * (size_t)E + d] * v[d];
        p[j] = scale * dot;
        if (p[j] > mx) mx = p[j];
    }
    for (size_t j = 0; j < L; j++) sum += exp(p[j] - mx);
    uint64_t bits = 0;
    *top = -1;
    for (size_t j = 0; j < L; j++) {
        if (!set->v[j].flag) continue;
        if (exp(p[j] - mx) / sum >= set->v[j].threshold) bits |= 1ull << j;
        if (*top < 0 || p[j] > p[*top]) *top = (int)j;
    }
    return bits;
}

int main(int argc, char **argv)
{
    static const char *const subj[] = {"a dog", "two cats", "a red car", "a mountain lake", "a birthday cake",
                                       "a city street", "a child", "a receipt", "a beach", "a forest"};
    static const char *const how[] = {"at night", "in the snow", "close up", "from above", "in black and white",
                                      "on a sunny day", "blurry", "with people"};
    cdx_precision p;
    cdx_model *m32 = NULL, *mp = NULL;
    if (argc != 4 || cdx_precision_parse(argv[3], &p)) {
        fprintf(stderr, "usage: precision_agree MODEL_DIR N_IMAGES auto|f32|bf16|int8\n");
        return 2;
    }
    int n = atoi(argv[2]);
    if (cdx_model_open(argv[1], CDX_TOWER_TEXT | CDX_TOWER_VISION, &m32) ||
        cdx_model_open(argv[1], CDX_TOWER_TEXT | CDX_TOWER_VISION, &mp) || cdx_model_set_precision(mp, p)) {
        fprintf(stderr, "precision_agree: %s\n", cdx_last_error());
        return 1;
    }
    const cdx_model_info *info = cdx_model_get_info(m32);
    const int E = info->projection_dim, S = info->vision.image_size, B = 16;
    const size_t per = 3 * (size_t)S * S;
    float *px = malloc(per * B * sizeof(float));
    float *i32 = malloc(sizeof(float) * (size_t)n * E), *ip = malloc(sizeof(float) * (size_t)n * E);
    float *q32 = malloc(sizeof(float) * NQ * E), *qp = malloc(sizeof(float) * NQ * E);
    for (int b0 = 0; b0 < n; b0 += B) {
        int nb = n - b0 < B ? n - b0 : B;
        for (int i = 0; i < nb; i++) make_image(px + per * i, S);
        if (cdx_model_encode_images(m32, px, nb, i32 + (size_t)b0 * E, 1) ||
            cdx_model_encode_images(mp, px, nb, ip + (size_t)b0 * E, 1)) {
            fprintf(stderr, "precision_agree: %s\n", cdx_last_error());
            return 1;
        }
    }
    double overlap = 0, margin = 0;
    for (int q = 0; q < NQ; q++) {
        char text[128];
        snprintf(text, sizeof text, "a photo of %s %s", subj[q % 10], how[(q / 10) % 8]);
        if (q >= 80) snprintf(text, sizeof text, "%s and %s", subj[q % 10], subj[(q / 3) % 10]);
        cdx_model_encode_text(m32, text, q32 + (size_t)q * E, 1);
        cdx_model_encode_text(mp, text, qp + (size_t)q * E, 1);
        int a[TOPK], b[TOPK];
        topk(i32, q32 + (size_t)q * E, n, E, a);
        topk(ip, qp + (size_t)q * E, n, E, b);
        int common = 0;
        for (int i = 0; i < TOPK; i++)
            for (int j = 0; j < TOPK; j++) common += a[i] == b[j];
        overlap += common / (double)TOPK;
        double s10 = 0;
        for (int d = 0; d < E; d++) s10 += (double)i32[(size_t)a[TOPK - 1] * E + d] * q32[(size_t)q * E + d];
        margin += s10;
    }
    printf("top10_overlap %.4f\n", overlap / NQ);
    printf("score10_mean %.4f\n", margin / NQ);

    labelset set = {0};
    char err[256];
    float *lab32 = NULL, *labp = NULL;
    if (labelset_add_all_presets(&set, err, sizeof err) == 0 && set.n <= 64) {
        lab32 = malloc(sizeof(float) * set.n * (size_t)E);
        labp = malloc(sizeof(float) * set.n * (size_t)E);
        if (embed_labels(m32, &set, E, lab32) == 0 && embed_labels(mp, &set, E, labp) == 0) {
            double scale = info->logit_scale > 0 ? info->logit_scale : 100.0;
            int agree = 0, flagged = 0, top_agree = 0;
            for (int i = 0; i < n; i++) {
                int t32, tp;
                uint64_t d32 = decide(&set, lab32, i32 + (size_t)i * E, E, scale, &t32);
                uint64_t dp = decide(&set, labp, ip + (size_t)i * E, E, scale, &tp);
                agree += d32 == dp;
                flagged += d32 != 0;
                top_agree += t32 == tp;
            }
            printf("moderation_agree %.4f\n", agree / (double)n);
            /* Non-vacuous: each flagged label's threshold set to the
             * float32 probability that flags 5% of the images, the same
             * thresholds for both precisions. */
            size_t L = set.n;
            double *p32 = malloc(sizeof(double) * (size_t)n * L), *pp = malloc(sizeof(double) * (size_t)n * L);
            double *col = malloc(sizeof(double) * (size_t)n), *thr = malloc(sizeof(double) * L);
            for (int i = 0; i < n; i++) {
                probs(lab32, i32 + (size_t)i * E, L, E, scale, p32 + (size_t)i * L);
                probs(labp, ip + (size_t)i * E, L, E, scale, pp + (size_t)i * L);
            }
            for (size_t j = 0; j < L; j++) {
                for (int i = 0; i < n; i++) col[i] = p32[(size_t)i * L + j];
                qsort(col, (size_t)n, sizeof *col, cmp_double);
                thr[j] = col[(size_t)(0.95 * (n - 1))];
            }
            int cal_agree = 0, cal_flagged = 0;
            for (int i = 0; i < n; i++) {
                int same = 1, any = 0;
                for (size_t j = 0; j < L; j++) {
                    if (!set.v[j].flag) continue;
                    int a32 = p32[(size_t)i * L + j] > thr[j], ap = pp[(size_t)i * L + j] > thr[j];
                    same &= a32 == ap;
                    any |= a32;
                }
                cal_agree += same;
                cal_flagged += any;
            }
            printf("moderation_agree_calibrated %.4f\n", cal_agree / (double)n);
            printf("flagged_f32_calibrated %d\n", cal_flagged);
            free(p32);
            free(pp);
            free(col);
            free(thr);
            printf("moderation_top_agree %.4f\n", top_agree / (double)n);
            printf("flagged_f32 %d\n", flagged);
            printf("labels %zu\n", set.n);
        }
    } else {
        fprintf(stderr, "precision_agree: labels: %s\n", err);
    }
    printf("images %d\nqueries %d\nprecision %s\n", n, NQ, cdx_precision_name(cdx_model_get_precision(mp, NULL)));
    labelset_release(&set);
    free(lab32);
    free(labp);
    free(px);
    free(i32);
    free(ip);
    free(q32);
    free(qp);
    cdx_model_close(m32);
    cdx_model_close(mp);
    return 0;
}
