/*
 * config.h - clipdexd's configuration: one table of typed keys with
 * defaults, ranges and help (config.c), read from an INI file with libinih,
 * then overridden from the command line.
 *
 * The file is $XDG_CONFIG_HOME/clipdex/clipdex.conf (else
 * ~/.config/clipdex/clipdex.conf), or the one given with -c.  Every error
 * names the file, the line and the key: "FILE:LINE: [section] key: why".
 * Relative paths in the file are taken against the file's directory;
 * "~/" is the home directory.  clipdex.conf(5) documents every key.
 *
 * clipdex (query/) links this module too, so `clipdex status` and
 * `clipdex index` find the same data and model directories as the daemon.
 */
#ifndef IX_CONFIG_H
#define IX_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "util.h"

#define CONFIG_MAX_KEYS 48

typedef struct config {
    /* [library] */
    strv roots;            /* absolute directories to index */
    strv excludes;         /* glob patterns (fnmatch) */
    int hidden;            /* index hidden files and directories */
    strv extensions;       /* lower-case, no dot */
    /* [model] */
    char *model_dir;
    int64_t batch;         /* images per embedding batch */
    int64_t threads;       /* compute threads (0: online CPUs) */
    int64_t workers;       /* decode workers (0: as many as threads) */
    char *precision;       /* auto, f32, bf16, int8 (validated) */
    /* [store] */
    char *data_dir;
    char *index_type;      /* FAISS index_factory string */
    char *search_params;
    int64_t save_every;
    /* [limits] */
    int64_t max_megapixels;
    int64_t max_file_size; /* bytes */
    /* [watch] */
    int64_t debounce_ms;
    int64_t settle_ms;
    int64_t rescan_interval;  /* s */
    int64_t root_poll;        /* s */
    int64_t max_watches;      /* 0: as many as the kernel allows */
    /* [daemon] */
    int log_level;
    char *log_file;
    int64_t progress_interval; /* s */

    char *path;            /* the file read, NULL when none */
    /* Per key of the table: bit 1 set by the file, bit 2 by a flag.  The
     * first value of a list key from a source replaces the list. */
    unsigned char seen[CONFIG_MAX_KEYS];
} config;

/* Fill *c with the defaults.  Release with config_release. */
void config_init(config *c);
void config_release(config *c);

/* The default file path (heap string), or NULL without $HOME. */
char *config_default_path(void);

/* Read path into *c.  A missing file is not an error unless required.
 * On failure returns -1 and *err (heap string, caller frees) is
 * "FILE:LINE: [section] key: why". */
int config_load(config *c, const char *path, int required, char **err);

/* Set one key from the command line: "section.key=value" or
 * ("section", "key", value).  A list key given on the command line
 * replaces the file's list (the first time) and then appends.  Relative
 * paths are taken against the working directory.  -1 and *err on error. */
int config_set_arg(config *c, const char *assignment, char **err);
int config_set(config *c, const char *section, const char *key, const char *value, char **err);

/* Fill what the file left open from the environment: data_dir from
 * cdx_store_default_dir(), model_dir from $CLIPDEX_MODEL.  -1 and *err
 * when no data directory can be determined. */
int config_finish(config *c, char **err);

/* Write the effective configuration as an INI file. */
void config_print(const config *c, FILE *f);

/* Is the extension (lower-case, no dot) one to index? */
int config_ext_wanted(const config *c, const char *ext);

#endif
