/*
 * util.h - small helpers both programs use (common/): allocation, time,
 * path strings, string vectors.
 *
 * The out-of-memory policy, one for the whole project:
 *   - the library (core/) never aborts: it returns CDX_ERR_NOMEM and the
 *     caller treats that like any other failure of the call;
 *   - the programs (clipdexd, clipdex) allocate through the x* functions
 *     here, which never return NULL: when malloc fails they write
 *     "PROGRAM: out of memory (N bytes)" to stderr and abort.  A program
 *     cannot do anything useful after its own allocation failed, and one
 *     rule means no half-tested recovery paths.
 */
#ifndef CDX_COMMON_UTIL_H
#define CDX_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "clipdex.h"

/* Exit statuses both programs share (clipdex(1), clipdexd(8)); each adds
 * its own 1 (query/cmd.h: nothing found; indexer/daemon.h: interrupted). */
enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_ERROR = 3 };

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Growable arrays (the programs' side of core's cdx_grow): room for at
 * least need elements of elem bytes in p (*cap elements), doubling from
 * first; returns p or the moved block.  Never NULL:
 *     v = xgrow(v, &cap, n + 1, sizeof *v, 64);  */
void *xgrow(void *p, size_t *cap, size_t need, size_t elem, size_t first);
/* A formatted heap string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Milliseconds on the monotonic clock (for timers and rates). */
int64_t now_ms(void);
/* Unix seconds (for what is shown to people). */
int64_t wall_s(void);

/* "dir/name" (dir may end in '/'). */
char *path_join(const char *dir, const char *name);
/* True when path is dir itself or lies under it ("dir/..."). */
int path_under(const char *path, const char *dir);
/* The last component of path (a pointer into it). */
const char *path_base(const char *path);
/* Lower-case extension of the last component without the dot into out
 * ("" when none or longer than cap-1). */
void path_ext(const char *path, char *out, size_t cap);
/* An absolute, normalised form of path: "~/" expanded, relative paths
 * taken against base (NULL: the working directory), "//", "/./" and
 * trailing slashes removed, "/../" resolved lexically, then symlinks
 * resolved with realpath() when the path exists.  Heap string; NULL only
 * when path is empty. */
char *path_absolute(const char *path, const char *base);

/* Dynamic array of heap strings. */
typedef struct strv {
    char **v;
    size_t n, cap;
} strv;
void strv_push(strv *a, const char *s);      /* copies s */
void strv_push_owned(strv *a, char *s);      /* takes s */
void strv_clear(strv *a);
int strv_contains(const strv *a, const char *s);
void strv_copy(strv *dst, const strv *src);  /* dst is cleared first */
int strv_equal(const strv *a, const strv *b);

#include "banned.h"
#endif
