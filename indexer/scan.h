/*
 * scan.h - which paths belong to the library, and walking a directory
 * tree to find them.
 *
 * A path is wanted when it lies under a root and no component below the
 * root is hidden (unless [library] hidden) or matches an exclude glob; a
 * file must also have one of the configured extensions.  Symbolic links
 * are never followed (a link to a directory could loop, and a link's
 * target may lie outside every watch): links are skipped, files and
 * directories alike.  Roots themselves are resolved with realpath().
 */
#ifndef IX_SCAN_H
#define IX_SCAN_H

#include <sys/stat.h>

#include "conf.h"

/* The root of c that path lies under (longest match), or NULL. */
const char *scan_root_of(const config *c, const char *path);

/* Is path (a file, or a directory when is_dir) part of the library? */
int scan_wanted(const config *c, const char *path, int is_dir);

/* Is the single name (a path component) excluded? full: the path it
 * completes (for patterns with a '/'). */
int scan_name_excluded(const config *c, const char *name, const char *full);

typedef struct scan_fns {
    /* A directory is about to be read (top included).  Return non-zero to
     * skip it (and its subtree). */
    int (*dir)(const char *path, void *user);
    /* A wanted regular file, with its lstat(). */
    void (*file)(const char *path, const struct stat *sb, void *user);
    /* A directory that could not be read (errno_val); its subtree is
     * incomplete. */
    void (*dir_error)(const char *path, int errno_val, void *user);
} scan_fns;

/* Walk top (a wanted directory under a root of c) depth-first without
 * following links or crossing into a directory twice (bind-mount loops).
 * Returns the number of files reported. */
long scan_tree(const config *c, const char *top, const scan_fns *fns, void *user);

#endif
