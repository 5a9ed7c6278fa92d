/*
 * filters.h - what the store-reading subcommands (search, similar, dupes,
 * moderate, stats) share: the search filters given on the command line,
 * date parsing, and opening the store and the model's vector space.
 *
 * Each command keeps its own getopt_long table and splices in
 * QFILTER_LONG_OPTIONS / QCTX_LONG_OPTIONS; unknown codes are offered to
 * qfilter_option() and qctx_option() before being called usage errors.
 */
#ifndef CDX_QUERY_FILTERS_H
#define CDX_QUERY_FILTERS_H

#include <getopt.h>

#include "cmd.h"

/* Option codes above any short option character. */
enum {
    OPT_AFTER = 0x200, OPT_BEFORE, OPT_UNDER, OPT_CAMERA, OPT_EXT,
    OPT_DATA, OPT_MODEL, OPT_PRECISION,
    OPT_CMD_BASE = 0x300 /* commands number their own long-only options from here */
};

#define QFILTER_LONG_OPTIONS                                                         \
    {"after", required_argument, NULL, OPT_AFTER},                                   \
    {"before", required_argument, NULL, OPT_BEFORE},                                 \
    {"under", required_argument, NULL, OPT_UNDER},                                   \
    {"camera", required_argument, NULL, OPT_CAMERA},                                 \
    {"ext", required_argument, NULL, OPT_EXT}

#define QCTX_LONG_OPTIONS                                                            \
    {"data", required_argument, NULL, OPT_DATA},                                     \
    {"model", required_argument, NULL, OPT_MODEL},                                   \
    {"precision", required_argument, NULL, OPT_PRECISION}

/* The filter options as given, turned into a cdx_store_filter.  Owns the
 * strings the filter points to. */
typedef struct qfilter {
    cdx_store_filter f;
    char *under;       /* canonical directory (realpath when it exists) */
    char **exts;       /* lower case, no dot */
    size_t n_exts;
} qfilter;

/* Handle option code c with argument arg if it is a filter option.
 * Returns 1 when handled, 0 when c is not a filter option, and EXIT_USAGE
 * (after printing the message and usage of self) for a bad value. */
int qfilter_option(qfilter *q, const cdx_cmd *self, int c, const char *arg);

/* Non-zero when any filter was given. */
int qfilter_active(const qfilter *q);

void qfilter_release(qfilter *q);

/* Parse DATE: YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DD[T ]HH:MM[:SS] (all
 * read as UTC, like the camera times the store keeps), or @UNIXSECONDS.
 * *out receives the start of the period.  0 on success, -1 when
 * malformed. */
int parse_date(const char *s, int64_t *out);

/* The time a file is filed under: taken_at, else mtime (unix seconds). */
int64_t file_when(const cdx_file_info *fi);

/* The store and the model's vector space, opened as a command needs them. */
typedef struct qctx {
    const cdx_cmd *self;
    const char *data_opt, *model_opt, *prec_opt;
    int identity_only; /* qctx_open_model: the model only names the vector
                          space (dupes), so no precision is prepared */
    int one_shot;      /* a few inputs are encoded, then the process exits
                          (search, similar): auto means int8 for a text
                          query and the native precision with the image
                          tower, the converted weights coming from the
                          cache after the first run; float32 when the
                          cache is off (converting, ~0.4 s a tower, costs
                          more than a few encodes save) */
    char *data_dir;          /* heap */
    cdx_store *store;
    char *model_dir;         /* heap */
    cdx_model *model;        /* the first model handle opened */
    cdx_model *vision;       /* a handle with the vision tower (may be model) */
    unsigned towers;         /* towers of model */
    int64_t model_id;
    int dim;
    char model_key[2 * CDX_HASH_SIZE + 1];
} qctx;

/* Handle --data / --model: 1 handled, 0 not ours. */
int qctx_option(qctx *c, int code, const char *arg);

/* Open the store read-only (--data, else the default directory).
 * Returns 0, or an exit code after printing why. */
int qctx_open_store(qctx *c);

/* Open the model (--model, else $CLIPDEX_MODEL, else the model the store
 * was last indexed with, when its directory still exists) with the given
 * towers (at least one) and select its vector space in the store.
 * Returns 0 or an exit code. */
int qctx_open_model(qctx *c, unsigned towers);

/* A model handle with the vision tower, opening a second handle when the
 * first has none.  NULL after printing an error. */
cdx_model *qctx_vision(qctx *c);

void qctx_release(qctx *c);

/* Decode, preprocess and embed one image file the way the indexer does
 * (EXIF orientation applied, fast preprocessing).  out: E floats,
 * normalised.  Returns 0, or EXIT_ERROR after printing the error. */
int embed_image_file(cdx_model *m, const char *path, float *out);

/* The vector of an image in the current model's space: the stored one
 * when the path (as given or canonical) or its content is indexed, else
 * embedded now with the vision tower.  *file_id (may be NULL) receives the
 * id of the file row found by path (0 when none).  Returns 0 or an exit
 * code. */
int image_vector(qctx *c, const char *path, float *out, int64_t *file_id);

/* Parse a non-negative integer / a finite double; 0 or -1. */
int parse_size(const char *s, size_t *out);
int parse_double(const char *s, double *out);

#endif
