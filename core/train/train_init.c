/*
 * train_init.c - the first weights of a CLIP model trained from scratch
 * (clipdex train --init random).
 *
 * The distributions are transformers' CLIPPreTrainedModel._init_weights,
 * so a model started here is one a PyTorch user would recognise, with f
 * the config's initializer_factor (default 1) and r a tower's
 * initializer_range (default 0.02); per tower of width C and L blocks:
 *
 *   token and position embeddings, patch embedding   N(0, r f)   (text: 0.02 f)
 *   class embedding                                  N(0, C^-1/2 f)
 *   q, k, v projections, fc2                         N(0, C^-1/2 (2L)^-1/2 f)
 *   attention output projection                      N(0, C^-1/2 f)
 *   fc1                                              N(0, (2C)^-1/2 f)
 *   text / visual projection                         N(0, C^-1/2 f)
 *   every bias 0; layer norms weight 1, bias 0
 *   logit_scale                                      logit_scale_init_value (ln(1/0.07))
 *
 * (open_clip's init_parameters scales the same way; it differs in the
 * text position embedding, 0.01, and leaves the vision linears at torch's
 * defaults.)  The normal draws are Box-Muller over splitmix64, one stream
 * per tensor seeded by (seed, tensor index), so a tensor's values do not
 * depend on the others and a seed gives the same bytes on every machine.
 *
 * The output is a complete model directory: config and every non-weight
 * file of the config directory (tokenizer, processor) copied, plus
 * model.safetensors; written to a temporary directory and renamed into
 * place, so a crash never leaves half a model under the final name.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "internal.h"
#include "train_impl.h"

/* splitmix64 */
static uint64_t mix_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform double in (0, 1): 53 random bits, never 0 (log of it below). */
static double uniform01(uint64_t *s) { return ((double)(mix_next(s) >> 11) + 0.5) / 9007199254740992.0; }

enum fill { F_NORMAL, F_ZERO, F_ONE, F_CONST };

struct init_tensor {
    char name[128];
    int ndim;
    int64_t shape[4];
    int64_t numel;
    enum fill fill;
    double value;  /* the std of F_NORMAL, the value of F_CONST */
};

struct init_list {
    struct init_tensor *t;
    int n, cap;
};

static int add(struct init_list *l, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2,
               int64_t d3, enum fill fill, double value)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        struct init_tensor *nt = realloc(l->t, sizeof *nt * (size_t)cap);
        if (!nt) return 0;
        l->t = nt;
        l->cap = cap;
    }
    struct init_tensor *t = &l->t[l->n++];
    int64_t shape[4] = {d0, d1, d2, d3};
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < 4; i++) {
        t->shape[i] = i < ndim ? shape[i] : 0;
        if (i < ndim) t->numel *= shape[i];
    }
    t->fill = fill;
    t->value = value;
    return 1;
}

/* The blocks of one tower, under transformers' names. */
static int add_blocks(struct init_list *l, const char *prefix, const cdx_tower_info *ti, double f)
{
    const int C = ti->hidden, F = ti->intermediate, L = ti->layers;
    const double in_std = pow(C, -0.5) * pow(2.0 * L, -0.5) * f, out_std = pow(C, -0.5) * f;
    const double fc_std = pow(2.0 * C, -0.5) * f;
    static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
    char n[128];
    for (int b = 0; b < L; b++) {
#define NAME(...) (snprintf(n, sizeof n, __VA_ARGS__), n)
        if (!add(l, NAME("%s.encoder.layers.%d.layer_norm1.weight", prefix, b), 1, C, 0, 0, 0, F_ONE, 0) ||
            !add(l, NAME("%s.encoder.layers.%d.layer_norm1.bias", prefix, b), 1, C, 0, 0, 0, F_ZERO, 0))
            return 0;
        for (int k = 0; k < 3; k++)
            if (!add(l, NAME("%s.encoder.layers.%d.self_attn.%s.weight", prefix, b, qkv[k]), 2, C, C, 0, 0,
                     F_NORMAL, in_std) ||
                !add(l, NAME("%s.encoder.layers.%d.self_attn.%s.bias", prefix, b, qkv[k]), 1, C, 0, 0, 0,
                     F_ZERO, 0))
                return 0;
        if (!add(l, NAME("%s.encoder.layers.%d.self_attn.out_proj.weight", prefix, b), 2, C, C, 0, 0,
                 F_NORMAL, out_std) ||
            !add(l, NAME("%s.encoder.layers.%d.self_attn.out_proj.bias", prefix, b), 1, C, 0, 0, 0,
                 F_ZERO, 0) ||
            !add(l, NAME("%s.encoder.layers.%d.layer_norm2.weight", prefix, b), 1, C, 0, 0, 0, F_ONE, 0) ||
            !add(l, NAME("%s.encoder.layers.%d.layer_norm2.bias", prefix, b), 1, C, 0, 0, 0, F_ZERO, 0) ||
            !add(l, NAME("%s.encoder.layers.%d.mlp.fc1.weight", prefix, b), 2, F, C, 0, 0, F_NORMAL,
                 fc_std) ||
            !add(l, NAME("%s.encoder.layers.%d.mlp.fc1.bias", prefix, b), 1, F, 0, 0, 0, F_ZERO, 0) ||
            !add(l, NAME("%s.encoder.layers.%d.mlp.fc2.weight", prefix, b), 2, C, F, 0, 0, F_NORMAL,
                 in_std) ||
            !add(l, NAME("%s.encoder.layers.%d.mlp.fc2.bias", prefix, b), 1, C, 0, 0, 0, F_ZERO, 0))
            return 0;
#undef NAME
    }
    return 1;
}

/* A number of the config, def when absent; section NULL for the top level. */
static double cfg_num(const cJSON *root, const char *section, const char *key, double def)
{
    const cJSON *o = section ? cJSON_GetObjectItemCaseSensitive(root, section) : root;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

cdx_status cdx_train_init_random(const char *cfg_dir, uint64_t seed, const char *out_dir)
{
    char *cfg_path = NULL, *text = NULL, *tmp = NULL, *src = NULL, *dst = NULL;
    cJSON *root = NULL;
    cdx_clip_config cfg;
    struct init_list l = {0};
    struct st_entry *e = NULL;
    float *data = NULL;
    DIR *d = NULL;
    struct dirent *de;
    struct stat sb;
    size_t len;
    int made = 0;
    cdx_status st;

    if (!cfg_dir || !out_dir || !*out_dir)
        return cdx_fail(CDX_ERR_ARG, "cdx_train_init_random: invalid argument");
    if (!(cfg_path = cdx_path_join(cfg_dir, "config.json"))) goto nomem;
    if ((st = cdx_config_load(cfg_path, &cfg))) goto out;
    if ((st = cdx_read_file(cfg_path, 1 << 20, &text, &len))) goto out;
    if (!(root = cJSON_ParseWithLength(text, len))) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: not valid JSON", cfg_path);
        goto out;
    }
    const double f = cfg_num(root, NULL, "initializer_factor", 1.0);
    const double t_range = cfg_num(root, "text_config", "initializer_range", 0.02);
    const double v_range = cfg_num(root, "vision_config", "initializer_range", 0.02);
    const double ls = cfg_num(root, NULL, "logit_scale_init_value", log(1 / 0.07));
    if (!(f > 0 && f < 100 && t_range > 0 && t_range < 10 && v_range > 0 && v_range < 10 &&
          ls >= 0 && ls <= log(100.0))) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: initializer_factor, initializer_range or "
                      "logit_scale_init_value out of range", cfg_path);
        goto out;
    }

    /* an existing out_dir must be empty: initialising never replaces a model */
    if (stat(out_dir, &sb) == 0) {
        DIR *od = opendir(out_dir);
        int empty = od != NULL;
        while (od && (de = readdir(od)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = 0;
        if (od) closedir(od);
        if (!empty) {
            st = cdx_fail(CDX_ERR_IO, "%s: exists and is not empty: --init starts a new model "
                          "(remove it, or continue a run with --resume)", out_dir);
            goto out;
        }
    }

    const cdx_tower_info *ti = &cfg.text, *vi = &cfg.vision;
    const int E = cfg.projection_dim, P = vi->patch_size, side = vi->image_size / P;
    const int Ct = ti->hidden, Cv = vi->hidden;
    /* the order of cdx_train_open's table */
    if (!add(&l, "text_model.embeddings.token_embedding.weight", 2, ti->vocab_size, Ct, 0, 0, F_NORMAL,
             0.02 * f) ||
        !add(&l, "text_model.embeddings.position_embedding.weight", 2, ti->max_positions, Ct, 0, 0, F_NORMAL,
             0.02 * f) ||
        !add_blocks(&l, "text_model", ti, f) ||
        !add(&l, "text_model.final_layer_norm.weight", 1, Ct, 0, 0, 0, F_ONE, 0) ||
        !add(&l, "text_model.final_layer_norm.bias", 1, Ct, 0, 0, 0, F_ZERO, 0) ||
        !add(&l, "text_projection.weight", 2, E, Ct, 0, 0, F_NORMAL, pow(Ct, -0.5) * f) ||
        !add(&l, "vision_model.embeddings.class_embedding", 1, Cv, 0, 0, 0, F_NORMAL, pow(Cv, -0.5) * f) ||
        !add(&l, "vision_model.embeddings.patch_embedding.weight", 4, Cv, 3, P, P, F_NORMAL, v_range * f) ||
        !add(&l, "vision_model.embeddings.position_embedding.weight", 2, side * side + 1, Cv, 0, 0, F_NORMAL,
             v_range * f) ||
        !add(&l, "vision_model.pre_layrnorm.weight", 1, Cv, 0, 0, 0, F_ONE, 0) ||
        !add(&l, "vision_model.pre_layrnorm.bias", 1, Cv, 0, 0, 0, F_ZERO, 0) ||
        !add_blocks(&l, "vision_model", vi, f) ||
        !add(&l, "vision_model.post_layernorm.weight", 1, Cv, 0, 0, 0, F_ONE, 0) ||
        !add(&l, "vision_model.post_layernorm.bias", 1, Cv, 0, 0, 0, F_ZERO, 0) ||
        !add(&l, "visual_projection.weight", 2, E, Cv, 0, 0, F_NORMAL, pow(Cv, -0.5) * f) ||
        !add(&l, "logit_scale", 0, 0, 0, 0, 0, F_CONST, ls))
        goto nomem;

    int64_t total = 0;
    for (int i = 0; i < l.n; i++) total += l.t[i].numel;
    if (!(data = malloc(sizeof(float) * (size_t)total)) || !(e = calloc((size_t)l.n, sizeof *e))) goto nomem;
    float *p = data;
    for (int i = 0; i < l.n; i++) {
        const struct init_tensor *t = &l.t[i];
        uint64_t s = seed ^ (0xA0761D6478BD642Full * (uint64_t)(i + 1));
        for (int64_t j = 0; j < t->numel; j++) {
            switch (t->fill) {
            case F_ZERO: p[j] = 0.0f; break;
            case F_ONE: p[j] = 1.0f; break;
            case F_CONST: p[j] = (float)t->value; break;
            case F_NORMAL: {
                /* Box-Muller, both values of each pair used */
                double u1 = uniform01(&s), u2 = uniform01(&s), r = sqrt(-2.0 * log(u1)) * t->value;
                p[j] = (float)(r * cos(2 * M_PI * u2));
                if (j + 1 < t->numel) p[++j] = (float)(r * sin(2 * M_PI * u2));
                break;
            }
            }
        }
        e[i].name = t->name;
        e[i].ndim = t->ndim;
        for (int k = 0; k < t->ndim; k++) e[i].shape[k] = t->shape[k];
        e[i].numel = t->numel;
        e[i].data = p;
        p += t->numel;
    }

    size_t tl = strlen(out_dir) + 40;
    if (!(tmp = malloc(tl))) goto nomem;
    snprintf(tmp, tl, "%s.tmp-init-%ld", out_dir, (long)getpid());
    if (mkdir(tmp, 0755) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    made = 1;
    /* config, tokenizer, processor: every regular file but weights */
    if (!(d = opendir(cfg_dir))) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", cfg_dir, strerror(errno));
        goto out;
    }
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || cdx_train_is_weights_file(de->d_name) ||
            !strcmp(de->d_name, "train_state.json"))
            continue;
        free(src);
        free(dst);
        src = cdx_path_join(cfg_dir, de->d_name);
        dst = cdx_path_join(tmp, de->d_name);
        if (!src || !dst) goto nomem;
        if (stat(src, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if ((st = cdx_train_copy_file(src, dst))) goto out;
    }
    free(dst);
    if (!(dst = cdx_path_join(tmp, "model.safetensors"))) goto nomem;
    if ((st = cdx_train_write_tensors(dst, e, l.n))) goto out;
    /* rename(2) replaces an empty directory, never a full one */
    if (rename(tmp, out_dir) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", out_dir, strerror(errno));
        goto out;
    }
    made = 0;
    st = CDX_OK;
    goto out;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", out_dir);
out:
    if (d) closedir(d);
    if (made) {
        /* only what this function wrote is in tmp */
        DIR *td = opendir(tmp);
        while (td && (de = readdir(td))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char *f2 = cdx_path_join(tmp, de->d_name);
            if (f2) unlink(f2);
            free(f2);
        }
        if (td) closedir(td);
        rmdir(tmp);
    }
    cJSON_Delete(root);
    free(cfg_path);
    free(text);
    free(tmp);
    free(src);
    free(dst);
    free(l.t);
    free(e);
    free(data);
    return st;
}
