/*
 * dupes.h - the duplicate groups of `clipdex dupes`, for the web app:
 * the same grouping code (cmd_dupes.c), without the output.
 */
#ifndef CDX_QUERY_DUPES_H
#define CDX_QUERY_DUPES_H

#include "filters.h"

/* Called once per group, members best copy first (the copy to keep is
 * members[0]); the rows are valid during the call.  Return non-zero to
 * stop. */
typedef int (*dupes_group_fn)(const cdx_file_info *const *members, size_t n, void *user);

/* Group c->store's files matching f (NULL: all) by exact content and by
 * perceptual hash (visual: within bits, < 0 for the default), as
 * `clipdex dupes --method exact,visual` does, and call fn for each group
 * in the command's order.  Returns 0, or an exit code after printing. */
int dupes_groups(qctx *c, const cdx_store_filter *f, int bits, dupes_group_fn fn, void *user);

#endif
