/*
 * labels.c - the built-in label presets of `clipdex moderate`, label
 * files, and the prompt templates.
 *
 * Zero-shot classification as in the CLIP paper (Radford et al. 2021,
 * section 3.1.4): a label is not embedded bare but through an ensemble of
 * prompt templates; the normalised text embeddings of all its prompts are
 * averaged and the mean renormalised.  Images are then scored against
 * every label of the set with a softmax over logit_scale * cosine, so a
 * label only wins when it describes the picture better than everything
 * else in the set.  That is why every sweep includes background labels
 * (the "everyday" preset with any preset; a label file may bring its
 * own): without them a holiday photo would have to be one of "weapon",
 * "drugs" or "gore".
 *
 * The presets are written for that competition: flagged labels are
 * concrete visual descriptions, and each sensitive preset carries its own
 * harmless look-alikes (a kitchen knife, a swimsuit, a receipt) as
 * unflagged labels that pull borderline pictures away from the flag.
 * Thresholds are softmax probabilities; they need tuning against a real
 * model and a labelled sample of the library at hand.
 *
 * SigLIP models (sigmoid scoring, label_probs) score each label on its
 * own: sigmoid(exp(logit_scale) * cos + logit_bias) is the model's answer
 * to "does this text describe the picture", trained so, and the
 * background labels then only stand beside the flagged ones.  A threshold
 * means that probability for that label alone.
 */
#include <ctype.h>
#include <math.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "labels.h"
#include "util.h" /* common/: x* allocators (out of memory aborts) */
#include "banned.h"

const char *const label_templates[] = {
    "a photo of {}.",
    "a close-up photo of {}.",
    "a blurry photo of {}.",
    "a dark photo of {}.",
    "a bright photo of {}.",
    "a cropped photo of {}.",
    "a low resolution photo of {}.",
    "a picture showing {}.",
    "an image of {}.",
    "a snapshot of {}.",
};
const size_t label_n_templates = sizeof label_templates / sizeof label_templates[0];

struct preset_label {
    const char *name;
    int flag;
    double threshold;
    const char *prompts;   /* ';'-separated, NULL: the templates */
};

struct preset {
    const char *name;
    const char *about;
    const struct preset_label *labels;
};

static const struct preset_label everyday[] = {
    {"a person", 0, 0, NULL},
    {"a group of people", 0, 0, NULL},
    {"a child", 0, 0, NULL},
    {"a dog", 0, 0, NULL},
    {"a cat", 0, 0, NULL},
    {"a bird", 0, 0, NULL},
    {"food on a plate", 0, 0, NULL},
    {"a landscape", 0, 0, NULL},
    {"a beach", 0, 0, NULL},
    {"mountains", 0, 0, NULL},
    {"a city street", 0, 0, NULL},
    {"a building", 0, 0, NULL},
    {"a room in a house", 0, 0, NULL},
    {"a car", 0, 0, NULL},
    {"flowers", 0, 0, NULL},
    {"a tree", 0, 0, NULL},
    {"a sunset", 0, 0, NULL},
    {"people playing sports", 0, 0, NULL},
    {"a document", 0, 0, NULL},
    {"an object on a table", 0, 0, NULL},
    {NULL, 0, 0, NULL},
};

static const struct preset_label nudity[] = {
    {"nudity", 1, 0.5, "a photo of a naked person.;a nude body.;a topless person.;a photo of nudity."},
    {"sexual content", 1, 0.5, "an explicit sexual photo.;a pornographic image.;people having sex."},
    {"a person in a swimsuit", 0, 0, NULL},
    {"a person in underwear", 0, 0, NULL},
    {"a shirtless man at the beach", 0, 0, NULL},
    {NULL, 0, 0, NULL},
};

static const struct preset_label violence[] = {
    {"violence", 1, 0.5, "a photo of people fighting.;a person being beaten.;a violent attack."},
    {"blood and gore", 1, 0.5, "a photo of blood and gore.;a bloody wound.;a mutilated body."},
    {"a dead body", 1, 0.5, "a photo of a dead body.;a corpse."},
    {"people wrestling in a sport", 0, 0, NULL},
    {"red paint", 0, 0, NULL},
    {"a person lying on the grass", 0, 0, NULL},
    {NULL, 0, 0, NULL},
};

static const struct preset_label weapons[] = {
    {"a gun", 1, 0.5, "a photo of a gun.;a handgun.;a pistol.;a person holding a gun."},
    {"a rifle", 1, 0.5, "a photo of a rifle.;an assault rifle.;a shotgun."},
    {"a knife used as a weapon", 1, 0.5, "a person threatening with a knife.;a combat knife.;a dagger."},
    {"a kitchen knife on a cutting board", 0, 0, NULL},
    {"a toy", 0, 0, NULL},
    {"a tool", 0, 0, NULL},
    {NULL, 0, 0, NULL},
};

static const struct preset_label drugs[] = {
    {"drugs", 1, 0.5, "a photo of illegal drugs.;lines of cocaine.;a bag of white powder."},
    {"marijuana", 1, 0.5, "a photo of marijuana.;a person smoking a joint.;cannabis buds."},
    {"a syringe", 1, 0.5, "a photo of a syringe.;a person injecting drugs."},
    {"pills", 1, 0.5, "a photo of pills.;a pile of pills."},
    {"a glass of wine", 0, 0, NULL},
    {"a cigarette", 0, 0, NULL},
    {"a vase with plants", 0, 0, NULL},
    {NULL, 0, 0, NULL},
};

static const struct preset_label documents[] = {
    {"an identity card", 1, 0.4, "a photo of an identity card.;a national ID card.;an ID card with a portrait."},
    {"a passport", 1, 0.4, "a photo of a passport.;an open passport page."},
    {"a credit card", 1, 0.4, "a photo of a credit card.;a bank card.;the front of a credit card with numbers."},
    {"a driver's license", 1, 0.4, "a photo of a driver's license."},
    {"a page of text", 0, 0, NULL},
    {"a receipt", 0, 0, NULL},
    {"a business card", 0, 0, NULL},
    {"a book", 0, 0, NULL},
    {NULL, 0, 0, NULL},
};

static const struct preset_label screenshots[] = {
    {"a phone screenshot", 1, 0.5, "a screenshot of a phone.;a mobile app screenshot.;a screenshot of a chat."},
    {"a computer screenshot", 1, 0.5, "a screenshot of a computer screen.;a screenshot of a website.;a desktop screenshot."},
    {"a photo of a computer monitor", 0, 0, NULL},
    {"a photo of a phone", 0, 0, NULL},
    {NULL, 0, 0, NULL},
};

static const struct preset presets[] = {
    {"everyday", "neutral everyday scenes: the background every sweep is scored against", everyday},
    {"nudity", "nudity and sexual content", nudity},
    {"violence", "violence, blood and gore", violence},
    {"weapons", "guns, rifles, knives used as weapons", weapons},
    {"drugs", "drugs, paraphernalia, pills", drugs},
    {"documents", "documents with personal data: ID cards, passports, credit cards", documents},
    {"screenshots", "screenshots of phones and computers", screenshots},
    {NULL, NULL, NULL},
};

/* ------------------------------------------------------------------ */

/* s[0..n) without surrounding white space. */
static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && isspace((unsigned char)(*s)[*n - 1])) (*n)--;
}

static label *find_label(labelset *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0) return &s->v[i];
    return NULL;
}

/* Append a label; prompts is ';'-separated (or NULL).  0, or 1 when the
 * label already existed. */
static int add_label(labelset *s, const char *name, size_t name_n, int flag, double threshold,
                     const char *prompts, size_t prompts_n)
{
    label l = {0};
    l.name = xstrndup(name, name_n);
    if (find_label(s, l.name)) {
        free(l.name);
        return 1;
    }
    l.flag = flag;
    l.threshold = threshold;
    const char *p = prompts, *end = prompts ? prompts + prompts_n : NULL;
    while (p && p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *q = p;
        size_t n = semi ? (size_t)(semi - p) : (size_t)(end - p);
        trim(&q, &n);
        if (n) {
            l.prompts = xrealloc(l.prompts, (l.n_prompts + 1) * sizeof *l.prompts);
            l.prompts[l.n_prompts++] = xstrndup(q, n);
        }
        p = semi ? semi + 1 : end;
    }
    s->v = xrealloc(s->v, (s->n + 1) * sizeof *s->v);
    s->v[s->n++] = l;
    return 0;
}

static void name_append(labelset *s, const char *part)
{
    size_t a = s->name ? strlen(s->name) : 0, b = strlen(part);
    char *n = xrealloc(s->name, a + b + 2);
    if (a) n[a++] = '+';
    memcpy(n + a, part, b + 1);
    s->name = n;
}

int labelset_add_preset(labelset *s, const char *preset, char *err, size_t err_n)
{
    const struct preset *p;
    for (p = presets; p->name; p++)
        if (strcmp(p->name, preset) == 0) break;
    if (!p->name) {
        snprintf(err, err_n, "no preset '%s' (clipdex moderate --list-presets shows them)", preset);
        return -1;
    }
    for (const struct preset_label *l = p->labels; l->name; l++)
        add_label(s, l->name, strlen(l->name), l->flag, l->flag ? l->threshold : 0, l->prompts,
                  l->prompts ? strlen(l->prompts) : 0);
    name_append(s, p->name);
    return 0;
}

int labelset_add_all_presets(labelset *s, char *err, size_t err_n)
{
    for (const struct preset *p = presets; p->name; p++) {
        int flags = 0;
        for (const struct preset_label *l = p->labels; l->name; l++) flags |= l->flag;
        if (flags && labelset_add_preset(s, p->name, err, err_n) != 0) return -1;
    }
    return 0;
}

static int parse_flag(const char *s, size_t n, int *out)
{
    static const char *const yes[] = {"yes", "y", "1", "true", "flag"}, *const no[] = {"no", "n", "0", "false", ""};
    for (size_t i = 0; i < 5; i++) {
        if (strlen(yes[i]) == n && strncasecmp(s, yes[i], n) == 0) return *out = 1, 0;
        if (strlen(no[i]) == n && strncasecmp(s, no[i], n) == 0) return *out = 0, 0;
    }
    return -1;
}

int labelset_add_file(labelset *s, const char *path, char *err, size_t err_n)
{
    FILE *f = fopen(path, "r");
    char *line = NULL, *base;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    int ret = -1, any = 0;

    if (!f) {
        snprintf(err, err_n, "%s: %s", path, strerror(errno));
        return -1;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        const char *field[4] = {NULL, NULL, NULL, NULL};
        size_t flen[4] = {0, 0, 0, 0}, nf = 0;
        const char *p = line, *end = line + len;
        int flag = 0;
        double thr = LABEL_DEFAULT_THRESHOLD;

        lineno++;
        if (memchr(line, 0, (size_t)len)) {
            snprintf(err, err_n, "%s:%zu: NUL byte", path, lineno);
            goto cleanup;
        }
        {
            const char *q = line;
            size_t n = (size_t)len;
            trim(&q, &n);
            if (!n || *q == '#') continue;
        }
        while (p <= end && nf < 4) {
            const char *bar = nf < 3 ? memchr(p, '|', (size_t)(end - p)) : NULL;
            field[nf] = p;
            flen[nf] = bar ? (size_t)(bar - p) : (size_t)(end - p);
            trim(&field[nf], &flen[nf]);
            nf++;
            if (!bar) break;
            p = bar + 1;
        }
        if (!flen[0]) {
            snprintf(err, err_n, "%s:%zu: empty label", path, lineno);
            goto cleanup;
        }
        if (nf > 1 && parse_flag(field[1], flen[1], &flag) != 0) {
            snprintf(err, err_n, "%s:%zu: flag must be yes or no, not '%.*s'", path, lineno, (int)flen[1], field[1]);
            goto cleanup;
        }
        if (nf > 2 && flen[2]) {
            char num[64], *e;
            if (flen[2] >= sizeof num) flen[2] = sizeof num - 1;
            memcpy(num, field[2], flen[2]);
            num[flen[2]] = 0;
            errno = 0;
            thr = strtod(num, &e);
            if (errno || *e || !(thr >= 0 && thr <= 1)) {
                snprintf(err, err_n, "%s:%zu: threshold must be a probability in [0, 1], not '%s'", path,
                         lineno, num);
                goto cleanup;
            }
        }
        int r = add_label(s, field[0], flen[0], flag, thr, nf > 3 ? field[3] : NULL, nf > 3 ? flen[3] : 0);
        if (r == 1) {
            snprintf(err, err_n, "%s:%zu: label '%.*s' is already in the set (given twice, or by a preset)",
                     path, lineno, (int)flen[0], field[0]);
            goto cleanup;
        }
        any = 1;
    }
    if (ferror(f)) {
        snprintf(err, err_n, "%s: read error", path);
        goto cleanup;
    }
    if (!any) {
        snprintf(err, err_n, "%s: no labels", path);
        goto cleanup;
    }
    base = strrchr(path, '/');
    {
        char *nm = xasprintf("file:%s", base ? base + 1 : path);
        name_append(s, nm);
        free(nm);
    }
    ret = 0;
cleanup:
    free(line);
    fclose(f);
    return ret;
}

size_t labelset_count(const labelset *s, int flagged)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) n += (s->v[i].flag != 0) == (flagged != 0);
    return n;
}

size_t label_n_prompts(const label *l)
{
    return l->prompts ? l->n_prompts : label_n_templates;
}

char *label_prompt(const label *l, size_t i)
{
    const char *t = l->prompts ? l->prompts[i] : label_templates[i];
    const char *hole = strstr(t, "{}");
    size_t n;
    char *out;
    if (!hole) return xstrdup(t);
    n = strlen(t) - 2 + strlen(l->name) + 1;
    out = xmalloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(hole - t), t, l->name, hole + 2);
    return out;
}

void labelset_release(labelset *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        for (size_t j = 0; j < s->v[i].n_prompts; j++) free(s->v[i].prompts[j]);
        free(s->v[i].prompts);
        free(s->v[i].name);
    }
    free(s->v);
    free(s->name);
    memset(s, 0, sizeof *s);
}

void labels_list_presets(FILE *f)
{
    for (const struct preset *p = presets; p->name; p++) {
        fprintf(f, "%s: %s\n", p->name, p->about);
        for (const struct preset_label *l = p->labels; l->name; l++) {
            if (l->flag) fprintf(f, "  flag %.2f  %s\n", l->threshold, l->name);
            else fprintf(f, "  -           %s\n", l->name);
        }
    }
}

void label_probs(int sigmoid, double scale, double bias, const double *cos, size_t n, float *p)
{
    if (sigmoid) {
        for (size_t j = 0; j < n; j++) p[j] = (float)(1.0 / (1.0 + exp(-(scale * cos[j] + bias))));
        return;
    }
    /* softmax(scale * cos) over the labels, max-shifted */
    double mx = -INFINITY, sum = 0;
    for (size_t j = 0; j < n; j++) {
        p[j] = (float)(scale * cos[j]);
        if (p[j] > mx) mx = p[j];
    }
    for (size_t j = 0; j < n; j++) sum += exp(p[j] - mx);
    for (size_t j = 0; j < n; j++) p[j] = (float)(exp(p[j] - mx) / sum);
}
