/*
 * cmd_train.c - `clipdex train`: fine-tune (or train) a CLIP model on
 * image-caption pairs with CLIP's contrastive objective (core/train/).
 *
 * The pairs come from a TSV file, `path<TAB>caption` a line, paths
 * relative to the file, or from a directory of captioned images (sidecar
 * .txt or .xmp, embedded XMP or IPTC): query/pairs.h.  Every image is decoded and preprocessed once at
 * the start, through the model's own input path in EXACT mode
 * (cdx_model_image_input: what the reference CLIPImageProcessor sees, no
 * EXIF rotation), so a bad image is reported and skipped before training
 * starts and every batch sees the same pixels; the pixels stay in memory
 * when they fit in CACHE_BYTES, else they are decoded again per batch.
 *
 * Batches: the pairs form one stream, batch k being stream positions
 * kB .. kB+B-1.  --order file: the stream is the file's pairs repeated;
 * --order shuffle: each epoch a permutation drawn from --seed and the
 * epoch number (so a step's batch never depends on earlier steps).
 *
 * Checkpoints (--save-every, --until, and the end): the output directory
 * with the training state inside it (core/train/train_save.c), in one
 * atomic rename.  --resume reopens that directory, its AdamW moments and
 * step count, and the run's settings saved beside them; as the batch
 * order is a function of (seed, epoch, step) and the kernels are
 * deterministic, the resumed run ends bit-identical to an uninterrupted
 * one.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "cmd.h"
#include "pairs.h"
#include "train/train.h"
#include "train_store.h"

#define CACHE_BYTES ((size_t)2 << 30)

struct pair {
    char *path;
    int32_t *ids;
    int n_ids;
};

/* The pixels of a batch, handed to gradient caching one sub-batch at a
 * time (cdx_train_batch.fill): from the cache, or decoded again, so that
 * no buffer holds the whole batch's images. */
struct fill_ctx {
    const struct pair *pairs;
    const int *kidx; /* batch position -> pair */
    const float *cache;
    cdx_model *m;
    const cdx_input_opts *in;
    size_t per;
    /* --augment crop: position b of the batch is stream position pos0 + b */
    int crop;
    uint64_t seed;
    int64_t pos0;
    int n, S;
};

static int crop_input(const cdx_model *m, const char *path, uint64_t seed, int64_t epoch, int k, int S,
                      float *dst);

static int fill_pixels(void *user, int first, int count, float *out)
{
    const struct fill_ctx *f = user;
    for (int i = 0; i < count; i++) {
        int k = f->kidx[first + i];
        float *dst = out + f->per * (size_t)i;
        if (f->crop) {
            if (crop_input(f->m, f->pairs[k].path, f->seed, (f->pos0 + first + i) / f->n, k, f->S, dst))
                return -1;
        } else if (f->cache) memcpy(dst, f->cache + f->per * (size_t)k, f->per * sizeof(float));
        else if (cdx_model_image_input(f->m, f->pairs[k].path, f->in, dst)) return -1;
    }
    return 0;
}

/* splitmix64: a small, well-mixed generator; one stream per epoch. */
static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The pair at stream position pos. */
static int stream_at(int64_t pos, int n, int shuffle, uint64_t seed, int *perm, int64_t *perm_epoch)
{
    int64_t epoch = pos / n;
    if (!shuffle) return (int)(pos % n);
    if (*perm_epoch != epoch) {
        uint64_t s = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(epoch + 1));
        for (int i = 0; i < n; i++) perm[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(splitmix(&s) % (uint64_t)(i + 1));
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        *perm_epoch = epoch;
    }
    return perm[pos % n];
}

/* SigLIP and SigLIP 2 pool the last position of the padded sequence:
 * their captions are kept whole (set by open_model). */
static int keep_padding;

/* Read PAIRS (a TSV file or a captioned directory: query/pairs.h) and
 * tokenise the captions.  Items that are not pairs are reported and
 * skipped. */
static int read_pairs(const char *file, cdx_tokenizer *tok, int max_len, struct pair **out,
                      int *n_out, int *skipped)
{
    pairs pr = {0};
    char err[1024];
    size_t pcap = 0;
    int n = 0;
    struct pair *p = NULL;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)max_len);
    int rc = pairs_read(&pr, file, PAIRS_CAPTIONS, err, sizeof err);
    for (size_t i = 0; i < pr.skipped.n; i++) warning("%s (skipped)", pr.skipped.v[i]);
    *skipped += (int)pr.skipped.n;
    for (size_t i = 0; i < pr.n && rc == 0; i++) {
        int n_ids = 0;
        if (cdx_tokenizer_encode(tok, pr.v[i].text, max_len, ids, &n_ids)) {
            warning("%s: caption: %s (skipped)", pr.v[i].path, cdx_last_error());
            (*skipped)++;
            continue;
        }
        p = xgrow(p, &pcap, (size_t)n + 1, sizeof *p, 64);
        p[n].path = pr.v[i].path;
        pr.v[i].path = NULL;
        /* cut after the first end-of-text token: the pooled one */
        int k = 0;
        while (k < n_ids && (keep_padding || ids[k] != cdx_tokenizer_eot(tok))) k++;
        p[n].n_ids = k < n_ids ? k + 1 : n_ids;
        p[n].ids = xmalloc(sizeof(int32_t) * (size_t)p[n].n_ids);
        memcpy(p[n].ids, ids, sizeof(int32_t) * (size_t)p[n].n_ids);
        n++;
    }
    pairs_release(&pr);
    free(ids);
    *out = p;
    *n_out = n;
    if (rc) return error("%s", err);
    return 0;
}

static void free_pairs(struct pair *p, int n)
{
    for (int i = 0; i < n; i++) {
        free(p[i].path);
        free(p[i].ids);
    }
    free(p);
}

/* The inference model: tokenizer and image preprocessing for the pairs.
 * Every family trains (core/train/: CLIP, OpenCLIP, SigLIP, SigLIP 2). */
static int open_model(const char *dir, cdx_model **m)
{
    if (cdx_model_open(dir, CDX_TOWER_TEXT | CDX_TOWER_VISION, m)) return error("%s", cdx_last_error());
    const cdx_model_info *info = cdx_model_get_info(*m);
    keep_padding = info->family == CDX_FAMILY_SIGLIP || info->family == CDX_FAMILY_SIGLIP2;
    return 0;
}

/* --augment crop: pair k's random resized crop in epoch (augment.c),
 * decoded again each time (only the box changes, the pixels would not fit
 * in memory at full size for a large collection). */
static int crop_input(const cdx_model *m, const char *path, uint64_t seed, int64_t epoch, int k, int S,
                      float *dst)
{
    cdx_image img = {0};
    cdx_train_box box;
    if (cdx_image_load(path, &img)) return error("%s (it decoded at the start)", cdx_last_error());
    cdx_train_crop_box(seed, epoch, k, (int)img.width, (int)img.height, &box);
    cdx_status st = cdx_train_crop_input(cdx_model_preprocess(m), &img, &box, S, dst);
    cdx_image_release(&img);
    return st ? error("%s: %s", path, cdx_last_error()) : 0;
}

static int parse_num(const cdx_cmd *self, const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return usage_error(self, "--%s must be a number from %g to %g, not '%s'", opt, lo, hi, s);
    *out = v;
    return 0;
}

int cmd_train(int argc, char **argv)
{
    const cdx_cmd *self = cmd_find("train");
    enum { O_MODEL = 1, O_DATA, O_OUT, O_LR, O_WD, O_BATCH, O_STEPS, O_EPOCHS, O_WARMUP, O_SCHED,
           O_SEED, O_ORDER, O_LOCK, O_UNLOCK, O_AUGMENT, O_PREPROCESS, O_LOG, O_SUB, O_RESUME, O_UNTIL, O_SAVE_EVERY,
           O_FROM_STORE, O_INIT };
    static const struct option opts[] = {
        {"model", required_argument, NULL, O_MODEL},   {"data", required_argument, NULL, O_DATA},
        {"out", required_argument, NULL, O_OUT},       {"lr", required_argument, NULL, O_LR},
        {"weight-decay", required_argument, NULL, O_WD}, {"batch", required_argument, NULL, O_BATCH},
        {"steps", required_argument, NULL, O_STEPS},   {"epochs", required_argument, NULL, O_EPOCHS},
        {"warmup", required_argument, NULL, O_WARMUP}, {"schedule", required_argument, NULL, O_SCHED},
        {"seed", required_argument, NULL, O_SEED},     {"order", required_argument, NULL, O_ORDER},
        {"lock", required_argument, NULL, O_LOCK},     {"unlock-last", required_argument, NULL, O_UNLOCK},
        {"augment", required_argument, NULL, O_AUGMENT},
        {"preprocess", required_argument, NULL, O_PREPROCESS},
        {"log", required_argument, NULL, O_LOG},       {"sub-batch", required_argument, NULL, O_SUB},
        {"resume", no_argument, NULL, O_RESUME},       {"until", required_argument, NULL, O_UNTIL},
        {"save-every", required_argument, NULL, O_SAVE_EVERY},
        {"from-store", no_argument, NULL, O_FROM_STORE},
        {"init", required_argument, NULL, O_INIT},
        {NULL, 0, NULL, 0},
    };
    const char *model_opt = NULL, *data = NULL, *out_dir = NULL, *log_path = NULL, *model_dir;
    double lr = 1e-5, v;
    cdx_train_adamw adamw = CDX_TRAIN_ADAMW_DEFAULTS;
    int resume = 0, n_settings = 0, saved_pairs = 0, from_store = 0, init_random = 0, crop = 0;
    float *embs = NULL, *bemb = NULL; /* --from-store: per pair, per batch */
    int *have = NULL, *kidx = NULL;
    int64_t until = 0, save_every = 0;
    char *settings = NULL, *data_abs = NULL, *init_dir = NULL;
    int batch = 32, sub_batch = 0, shuffle = 1, unlock = 0, fast = 0, c, ret = EXIT_OK, n = 0, skipped = 0;
    int64_t steps = 0, warmup = 0, perm_epoch = -1;
    double epochs = 0;
    uint64_t seed = 0;
    unsigned locked = 0;
    cdx_train_schedule sched = CDX_TRAIN_COSINE;
    cdx_model *m = NULL;
    cdx_train_model *tm = NULL;
    struct pair *pairs = NULL;
    float *cache = NULL, *pix = NULL;
    int32_t *ids = NULL;
    int *lens = NULL, *perm = NULL;
    FILE *logf = NULL;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        /* the options that make a run's settings (--resume restores them) */
        if (c != O_OUT && c != O_LOG && c != O_RESUME && c != O_UNTIL && c != O_SAVE_EVERY && c != '?')
            n_settings++;
        switch (c) {
        case O_RESUME: resume = 1; break;
        case O_FROM_STORE: from_store = 1; break;
        case O_UNTIL:
            if (parse_num(self, "until", optarg, 1, 1e12, &v)) return EXIT_USAGE;
            until = (int64_t)v;
            break;
        case O_SAVE_EVERY:
            if (parse_num(self, "save-every", optarg, 1, 1e12, &v)) return EXIT_USAGE;
            save_every = (int64_t)v;
            break;
        case O_MODEL: model_opt = optarg; break;
        case O_INIT:
            /* random: the model directory gives the config, tokenizer and
             * processor; the weights start as transformers initialises them */
            if (!strcmp(optarg, "random")) init_random = 1;
            else if (!strcmp(optarg, "pretrained")) init_random = 0;
            else return usage_error(self, "--init must be pretrained or random, not '%s'", optarg);
            break;
        case O_DATA: data = optarg; break;
        case O_OUT: out_dir = optarg; break;
        case O_LOG: log_path = optarg; break;
        case O_LR:
            if (parse_num(self, "lr", optarg, 0, 10, &lr)) return EXIT_USAGE;
            break;
        case O_WD:
            if (parse_num(self, "weight-decay", optarg, 0, 10, &adamw.weight_decay)) return EXIT_USAGE;
            break;
        case O_BATCH:
            if (parse_num(self, "batch", optarg, 2, 1 << 20, &v) || v != floor(v)) return EXIT_USAGE;
            batch = (int)v;
            break;
        case O_STEPS:
            if (parse_num(self, "steps", optarg, 1, 1e12, &v)) return EXIT_USAGE;
            steps = (int64_t)v;
            break;
        case O_EPOCHS:
            if (parse_num(self, "epochs", optarg, 1e-6, 1e9, &epochs)) return EXIT_USAGE;
            break;
        case O_WARMUP:
            if (parse_num(self, "warmup", optarg, 0, 1e12, &v)) return EXIT_USAGE;
            warmup = (int64_t)v;
            break;
        case O_SEED:
            if (parse_num(self, "seed", optarg, 0, 9e15, &v)) return EXIT_USAGE;
            seed = (uint64_t)v;
            break;
        case O_SUB:
            if (parse_num(self, "sub-batch", optarg, 1, 1 << 20, &v) || v != floor(v)) return EXIT_USAGE;
            sub_batch = (int)v;
            break;
        case O_UNLOCK:
            if (parse_num(self, "unlock-last", optarg, 1, 1 << 16, &v)) return EXIT_USAGE;
            unlock = (int)v;
            break;
        case O_SCHED:
            if (!strcmp(optarg, "cosine")) sched = CDX_TRAIN_COSINE;
            else if (!strcmp(optarg, "constant")) sched = CDX_TRAIN_CONSTANT;
            else return usage_error(self, "--schedule must be cosine or constant, not '%s'", optarg);
            break;
        case O_ORDER:
            if (!strcmp(optarg, "file")) shuffle = 0;
            else if (!strcmp(optarg, "shuffle")) shuffle = 1;
            else return usage_error(self, "--order must be file or shuffle, not '%s'", optarg);
            break;
        case O_LOCK:
            if (!strcmp(optarg, "image")) locked |= CDX_TRAIN_VISION;
            else if (!strcmp(optarg, "text")) locked |= CDX_TRAIN_TEXT;
            else return usage_error(self, "--lock must be image or text, not '%s'", optarg);
            break;
        case O_AUGMENT:
            if (!strcmp(optarg, "crop")) crop = 1;
            else if (strcmp(optarg, "none") != 0)
                return usage_error(self, "--augment must be none or crop, not '%s'", optarg);
            break;
        case O_PREPROCESS:
            if (!strcmp(optarg, "exact")) fast = 0;
            else if (!strcmp(optarg, "fast")) fast = 1;
            else return usage_error(self, "--preprocess must be exact or fast, not '%s'", optarg);
            break;
        default: return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error(self, "unexpected argument '%s'", argv[optind]);
    if (!out_dir) return usage_error(self, "--out DIR is required");
    if (resume && n_settings)
        return usage_error(self, "--resume continues with the interrupted run's settings: "
                                 "give only --out, --log, --until and --save-every with it");
    {
        /* an earlier run killed in the middle of a save left OUT.tmp-PID */
        int stale = 0;
        if (cdx_train_remove_stale(out_dir, &stale)) return error("%s", cdx_last_error());
        if (stale)
            fprintf(stderr, "clipdex: train: removed %d temporary director%s of an interrupted save "
                    "beside %s\n", stale, stale == 1 ? "y" : "ies", out_dir);
    }
    if (resume) {
        /* the checkpoint is the model; the settings come with it */
        model_dir = out_dir;
        if ((ret = open_model(model_dir, &m))) goto out;
        if (cdx_train_open(model_dir, &tm)) {
            ret = error("%s", cdx_last_error());
            goto out;
        }
        char *saved = NULL;
        cdx_train_model *probe = tm; /* trainable set first: read the lock from the settings */
        char *path = path_join(out_dir, "train_state.json");
        char *text = NULL;
        FILE *sf = fopen(path, "r");
        if (sf) {
            size_t cap = 0;
            if (getdelim(&text, &cap, 0, sf) < 0) {
                free(text);
                text = NULL;
            }
            fclose(sf);
        }
        cJSON *root = text ? cJSON_Parse(text) : NULL, *set = cJSON_GetObjectItemCaseSensitive(root, "settings");
        free(text);
        free(path);
        if (!set) {
            cJSON_Delete(root);
            ret = error("%s: no training state to resume (train_state.json)", out_dir);
            goto out;
        }
#define GETN(key) (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(set, key)) ? \
                   cJSON_GetObjectItemCaseSensitive(set, key)->valuedouble : -1)
#define GETS(key) (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(set, key)) ? \
                   cJSON_GetObjectItemCaseSensitive(set, key)->valuestring : "")
        data_abs = xstrdup(GETS("data"));
        lr = GETN("lr");
        adamw.weight_decay = GETN("weight_decay");
        batch = (int)GETN("batch");
        sub_batch = (int)GETN("sub_batch");
        steps = (int64_t)GETN("steps");
        warmup = (int64_t)GETN("warmup");
        seed = (uint64_t)GETN("seed");
        shuffle = strcmp(GETS("order"), "file") != 0;
        sched = strcmp(GETS("schedule"), "constant") == 0 ? CDX_TRAIN_CONSTANT : CDX_TRAIN_COSINE;
        locked = (unsigned)GETN("lock");
        unlock = (int)GETN("unlock_last");
        fast = (int)GETN("fast");
        from_store = GETN("from_store") > 0;
        saved_pairs = (int)GETN("pairs");
        crop = !strcmp(GETS("augment"), "crop");
#undef GETN
#undef GETS
        cJSON_Delete(root);
        if (!*data_abs || batch < 2 || steps < 1 || lr < 0 || sub_batch < 0) {
            ret = error("%s/train_state.json: incomplete settings", out_dir);
            goto out;
        }
        data = data_abs;
        if (cdx_train_set_trainable(probe, locked, unlock) || cdx_train_load_state(tm, out_dir, &saved)) {
            ret = error("%s", cdx_last_error());
            goto out;
        }
        free(saved);
        if (cdx_train_steps_done(tm) >= steps) {
            ret = error("%s: the run is complete (%lld of %lld steps)", out_dir,
                        (long long)cdx_train_steps_done(tm), (long long)steps);
            goto out;
        }
    } else {
        if (!data) return usage_error(self, "--data PAIRS and --out DIR are required");
        if (from_store && crop)
            return usage_error(self, "--augment crop needs the images; --from-store trains on the stored "
                                     "vectors of the uncropped images");
        if (from_store && !(locked & CDX_TRAIN_VISION))
            return usage_error(self, "--from-store takes the image tower's output from the store, so it "
                                     "needs the tower frozen: add --lock image");
        if (steps && epochs) return usage_error(self, "give --steps or --epochs, not both");
        if (!(model_dir = resolve_model_dir(model_opt))) return EXIT_USAGE;
        if (init_random) {
            /* the first weights go to a directory beside the output, the
             * run's source model, removed at the end: the output itself is
             * only ever written by a checkpoint */
            init_dir = xasprintf("%s.init-%ld", out_dir, (long)getpid());
            cdx_train_remove_dir(init_dir);
            if (cdx_train_init_random(model_dir, seed, init_dir)) {
                ret = error("%s", cdx_last_error());
                goto out;
            }
            model_dir = init_dir;
        }
        if ((ret = open_model(model_dir, &m))) goto out;
        if (cdx_train_open(model_dir, &tm)) {
            ret = error("%s", cdx_last_error());
            goto out;
        }
        if (cdx_train_set_trainable(tm, locked, unlock)) {
            ret = usage_error(self, "%s", cdx_last_error());
            goto out;
        }
        data_abs = path_absolute(data, NULL);
    }
    const cdx_model_info *info = cdx_model_get_info(m);
    if ((ret = read_pairs(data, cdx_model_tokenizer(m), info->text.max_positions, &pairs, &n, &skipped)))
        goto out;

    /* Decode every image once: the bad ones are skipped before training. */
    const int S = info->vision.image_size, E = info->projection_dim;
    const size_t per = 3 * (size_t)S * S;
    const int cached = !crop && (size_t)n * per * sizeof(float) <= CACHE_BYTES;
    cdx_input_opts in = {.mode = fast ? CDX_INPUT_FAST : CDX_INPUT_EXACT};
    /* gradient caching takes the pixels a sub-batch at a time (fill_pixels) */
    const int by_sub = !from_store && sub_batch && sub_batch < batch;
    if (!from_store && !by_sub) pix = xmalloc(per * sizeof(float) * (size_t)batch);
    kidx = xmalloc(sizeof(int) * (size_t)batch);
    if (cached && !from_store) cache = xmalloc(per * sizeof(float) * (size_t)(n ? n : 1));
    /* the decoding check below writes one image at a time when nothing is cached */
    if (!cached && !pix && !from_store) pix = xmalloc(per * sizeof(float));
    int kept = 0;
    if (from_store) {
        /* LiT from the index: the stored vectors instead of the images */
        char **paths = xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
        int missing = 0;
        for (int i = 0; i < n; i++) paths[i] = pairs[i].path;
        embs = xmalloc(sizeof(float) * (size_t)E * (size_t)(n ? n : 1));
        have = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
        bemb = xmalloc(sizeof(float) * (size_t)E * (size_t)batch);
        ret = train_store_vectors(self, model_dir, n, paths, E, embs, have, &missing);
        free(paths);
        if (ret) goto out;
    }
    for (int i = 0; i < n; i++) {
        if (from_store) {
            if (have[i]) {
                memmove(embs + (size_t)kept * E, embs + (size_t)i * E, sizeof(float) * (size_t)E);
                pairs[kept++] = pairs[i];
                continue;
            }
            free(pairs[i].path);
            free(pairs[i].ids);
            skipped++;
            continue;
        }
        float *dst = cached ? cache + per * (size_t)kept : pix;
        if (cdx_model_image_input(m, pairs[i].path, &in, dst)) {
            warning("%s (skipped)", cdx_last_error());
            free(pairs[i].path);
            free(pairs[i].ids);
            skipped++;
            continue;
        }
        pairs[kept++] = pairs[i];
    }
    n = kept;
    if (n < 2) {
        ret = error("%s: %d usable pairs (%d skipped): training needs at least 2", data, n, skipped);
        goto out;
    }
    if (resume && n != saved_pairs) {
        ret = error("%s: %d usable pairs, the interrupted run had %d: the data changed, its batches "
                    "cannot be resumed", data, n, saved_pairs);
        goto out;
    }
    if (batch > n) {
        ret = usage_error(self, "--batch %d is larger than the %d usable pairs", batch, n);
        goto out;
    }
    if (!steps) steps = (int64_t)ceil((epochs ? epochs : 1.0) * n / batch);
    {
        /* what --resume needs to take the same batches and rates */
        cJSON *set = cJSON_CreateObject();
        if (!set) abort();
        cJSON_AddStringToObject(set, "data", data_abs);
        cJSON_AddNumberToObject(set, "pairs", n);
        cJSON_AddNumberToObject(set, "lr", lr);
        cJSON_AddNumberToObject(set, "weight_decay", adamw.weight_decay);
        cJSON_AddNumberToObject(set, "batch", batch);
        cJSON_AddNumberToObject(set, "sub_batch", sub_batch);
        cJSON_AddNumberToObject(set, "steps", (double)steps);
        cJSON_AddNumberToObject(set, "warmup", (double)warmup);
        cJSON_AddNumberToObject(set, "seed", (double)seed);
        cJSON_AddStringToObject(set, "order", shuffle ? "shuffle" : "file");
        cJSON_AddStringToObject(set, "schedule", sched == CDX_TRAIN_CONSTANT ? "constant" : "cosine");
        cJSON_AddNumberToObject(set, "lock", locked);
        cJSON_AddNumberToObject(set, "unlock_last", unlock);
        cJSON_AddNumberToObject(set, "fast", fast);
        if (from_store) cJSON_AddNumberToObject(set, "from_store", 1);
        cJSON_AddStringToObject(set, "augment", crop ? "crop" : "none");
        settings = cJSON_PrintUnformatted(set);
        cJSON_Delete(set);
        if (!settings) abort();
    }
    if (log_path && !(logf = fopen(log_path, "w"))) {
        ret = error("%s: %s", log_path, strerror(errno));
        goto out;
    }
    fprintf(stderr, "clipdex: train: %d pairs (%d skipped), batch %d, %lld steps%s%s\n", n, skipped,
            batch, (long long)steps, locked & CDX_TRAIN_VISION ? ", image tower locked" : "",
            locked & CDX_TRAIN_TEXT ? ", text tower locked" : "");

    ids = xmalloc(sizeof(int32_t) * (size_t)batch * (size_t)info->text.max_positions);
    lens = xmalloc(sizeof(int) * (size_t)batch);
    perm = xmalloc(sizeof(int) * (size_t)n);
    const int tty = isatty(STDERR_FILENO);
    const int64_t t0 = now_ms();
    double loss = 0, first_loss = 0;
    const int64_t start = cdx_train_steps_done(tm), stop = until && until < steps ? until : steps;
    if (start) fprintf(stderr, "clipdex: train: resuming at step %lld\n", (long long)start);
    for (int64_t step = start; step < stop; step++) {
        int total = 0;
        for (int b = 0; b < batch; b++) {
            int k = stream_at(step * batch + b, n, shuffle, seed, perm, &perm_epoch);
            float *dst = from_store || by_sub ? NULL : pix + per * (size_t)b;
            kidx[b] = k;
            if (by_sub) {
                /* fill_pixels, during the step */
            } else if (from_store) {
                memcpy(bemb + (size_t)b * E, embs + (size_t)k * E, sizeof(float) * (size_t)E);
            } else if (crop) {
                if ((ret = crop_input(m, pairs[k].path, seed, (step * batch + b) / n, k, S, dst))) goto out;
            } else if (cached) {
                memcpy(dst, cache + per * (size_t)k, per * sizeof(float));
            } else if (cdx_model_image_input(m, pairs[k].path, &in, dst)) {
                ret = error("%s (it decoded at the start)", cdx_last_error());
                goto out;
            }
            memcpy(ids + total, pairs[k].ids, sizeof(int32_t) * (size_t)pairs[k].n_ids);
            lens[b] = pairs[k].n_ids;
            total += pairs[k].n_ids;
        }
        struct fill_ctx fc = {pairs, kidx, cached ? cache : NULL, m, &in, per, crop, seed, step * batch, n, S};
        cdx_train_batch tb = {batch, from_store || by_sub ? NULL : pix, ids, lens, from_store ? bemb : NULL,
                              by_sub ? fill_pixels : NULL, &fc};
        double rate = cdx_train_lr(sched, lr, warmup, steps, step);
        cdx_status gs = sub_batch ? cdx_train_grad_cached(tm, &tb, sub_batch, &loss)
                                  : cdx_train_grad(tm, &tb, &loss);
        if (gs || cdx_train_adamw_step(tm, &adamw, rate)) {
            ret = error("%s", cdx_last_error());
            goto out;
        }
        if (step == start) first_loss = loss;
        if (logf)
            fprintf(logf, "%lld\t%.9g\t%.9g\t%.3f\n", (long long)step, rate, loss,
                    (double)(now_ms() - t0) / 1000.0);
        if (logf) fflush(logf); /* a long run's log can be followed (tail -f) */
        if (tty) {
            double secs = (double)(now_ms() - t0) / 1000.0, done = (double)(step + 1 - start);
            double pps = done * batch / (secs > 0 ? secs : 1e-3), eta = secs / done * (double)(stop - step - 1);
            fprintf(stderr, "\rclipdex: train: step %lld/%lld  loss %.4f  %.1f pairs/s  ETA %d:%02d ",
                    (long long)step + 1, (long long)steps, loss, pps, (int)eta / 60, (int)eta % 60);
            if (step + 1 == stop) fputc('\n', stderr);
        }
        if (save_every && (step + 1) % save_every == 0 && step + 1 < stop &&
            cdx_train_save(tm, out_dir, settings)) {
            ret = error("%s", cdx_last_error());
            goto out;
        }
    }
    if (logf) {
        int bad = fclose(logf) != 0;
        logf = NULL;
        if (bad) {
            ret = error("%s: write error", log_path);
            goto out;
        }
    }
    if (cdx_train_save(tm, out_dir, settings)) {
        ret = error("%s", cdx_last_error());
        goto out;
    }
    if (stop < steps)
        printf("stopped after step %lld of %lld (loss %.4f); checkpoint in %s: continue with "
               "clipdex train --resume --out %s\n", (long long)stop, (long long)steps, loss, out_dir, out_dir);
    else
        printf("trained %lld steps on %d pairs: loss %.4f -> %.4f; model written to %s\n",
               (long long)(steps - start), n, first_loss, loss, out_dir);

out:
    if (logf) fclose(logf);
    cdx_model_close(m);
    cdx_train_close(tm);
    free_pairs(pairs, n);
    free(cache);
    free(pix);
    free(ids);
    free(lens);
    free(perm);
    free(embs);
    free(bemb);
    free(kidx);
    free(have);
    free(settings);
    free(data_abs);
    if (init_dir) {
        /* the model and its weights are closed above */
        cdx_train_remove_dir(init_dir);
        free(init_dir);
    }
    return ret;
}
