/*
 * labels.h - label sets for `clipdex moderate`: the built-in presets, label
 * files, and the prompt templates of the zero-shot classifier.
 *
 * A label file has one label per line, fields separated by '|':
 *
 *     LABEL | FLAG | THRESHOLD | PROMPT; PROMPT; ...
 *
 * Only LABEL is required.  FLAG is yes or no (default no: a background
 * label the others compete with); THRESHOLD is the softmax probability at
 * or above which a flagged label is reported (default 0.5); PROMPTs are
 * the texts embedded for the label, "{}" standing for LABEL (default: the
 * built-in templates, "a photo of {}." ...).  '#' starts a comment line.
 */
#ifndef CDX_QUERY_LABELS_H
#define CDX_QUERY_LABELS_H

#include <stddef.h>
#include <stdio.h>

#define LABEL_DEFAULT_THRESHOLD 0.5

typedef struct label {
    char *name;
    char **prompts;     /* NULL: the default templates */
    size_t n_prompts;
    int flag;           /* report images scoring >= threshold */
    double threshold;
} label;

typedef struct labelset {
    label *v;
    size_t n;
    char *name;         /* "nudity+weapons", "file:mine.txt+everyday" */
} labelset;

/* The CLIP-paper-style prompt ensemble ("{}" is the label). */
extern const char *const label_templates[];
extern const size_t label_n_templates;

/* Add a preset's labels (a label already in the set is kept as it was).
 * 0, or -1 with a message in err. */
int labelset_add_preset(labelset *s, const char *preset, char *err, size_t err_n);

/* Add every preset that flags something (the default sweep). */
int labelset_add_all_presets(labelset *s, char *err, size_t err_n);

/* Read a label file.  0, or -1 with "FILE:LINE: reason" in err. */
int labelset_add_file(labelset *s, const char *path, char *err, size_t err_n);

/* The number of flagged and of background labels. */
size_t labelset_count(const labelset *s, int flagged);

/* The texts to embed for label l: prompt i with {} replaced by the name.
 * Heap string (caller frees), never NULL (out of memory aborts). */
char *label_prompt(const label *l, size_t i);
size_t label_n_prompts(const label *l);

void labelset_release(labelset *s);

/* An image's probability for each of n labels from its cosines with them
 * (the model family's own scoring, cdx_model_info.scoring):
 *   softmax (CLIP, OpenCLIP): softmax over the n labels of scale * cos,
 *     so the labels compete and the probabilities sum to 1;
 *   sigmoid (SigLIP, SigLIP 2): sigmoid(scale * cos + bias) per label,
 *     each on its own (the others do not change it).
 * scale is exp(logit_scale), bias the logit_bias (0 for softmax). */
void label_probs(int sigmoid, double scale, double bias, const double *cos, size_t n, float *p);

/* `clipdex moderate --list-presets`. */
void labels_list_presets(FILE *f);

#endif
