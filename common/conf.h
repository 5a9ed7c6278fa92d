/*
 * conf.h - clipdex.conf, the configuration both programs read: one table
 * of typed keys with defaults, ranges and help (conf.c), read from an INI
 * file with libinih, then overridden from the command line.
 *
 * The file is $XDG_CONFIG_HOME/clipdex/clipdex.conf (else
 * ~/.config/clipdex/clipdex.conf), or the one given with -c.  Every error
 * names the file, the line and the key: "FILE:LINE: [section] key: why".
 * Relative paths in the file are taken against the file's directory;
 * "~/" is the home directory.  clipdex.conf(5) documents every key.
 *
 * Why common/ and not the library: the file, its defaults from the
 * environment and its "FILE:LINE: why" messages belong to the programs
 * (the library takes directories, never reads a configuration, never
 * prints), and the daemon's settings (roots, watch timers, log file) mean
 * nothing to core/.  Both programs link common/ (clipdexd and clipdex);
 * query/ includes nothing from indexer/ and indexer/ nothing from query/.
 * config_resolve() is the one place the model and data directories are
 * found, so every command of both programs finds the same ones.
 *
 * Out of memory: as everywhere in common/ (util.h), allocation failures
 * abort the program.
 */
#ifndef CDX_COMMON_CONF_H
#define CDX_COMMON_CONF_H

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

/* The one resolution both programs use: config_init, then the file path
 * (NULL: config_default_path(), which may be missing; a missing file
 * given with required set is an error), then each "section.key=value" of
 * sets (may be NULL) as from the command line, then config_finish.  So
 * the data directory is --data (a set), else [store] data_dir, else
 * $CLIPDEX_DATA, else $XDG_DATA_HOME/clipdex, else ~/.local/share/clipdex;
 * the model directory is [model] dir, else $CLIPDEX_MODEL.  On failure
 * *c is released and *err (heap, caller frees) says why. */
int config_resolve(config *c, const char *path, int required, const strv *sets, char **err);

/* Write the effective configuration as an INI file. */
void config_print(const config *c, FILE *f);

/* Is the extension (lower-case, no dot) one to index? */
int config_ext_wanted(const config *c, const char *ext);

/* Level names of [daemon] log_level: "debug", "info", "warn" ("warning"),
 * "error" to CDX_LOG_*; -1 for anything else. */
int log_level_parse(const char *s);
const char *log_level_name(int level);

#endif
