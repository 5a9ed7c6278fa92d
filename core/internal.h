/*
 * internal.h - helpers shared by core/ sources; never installed.
 *
 * Error reporting: cdx_fail() records the thread-local one-line message and
 * returns the status, so a failing path reads `return cdx_fail(...)`.
 * Logging: CDX_LOG() tests the level before formatting anything.
 * Size arithmetic on untrusted numbers goes through cdx_mul_ok/cdx_add_ok.
 */
#ifndef CDX_INTERNAL_H
#define CDX_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clipdex.h"

/* Record "fmt..." as this thread's last error and return st. */
cdx_status cdx_fail(cdx_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the current error message with "prefix: " (adds context on the
 * way up).  Returns st unchanged. */
cdx_status cdx_fail_prefix(cdx_status st, const char *prefix);

extern int cdx_log_min_level_;
void cdx_log_emit_(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define CDX_LOG(level, ...)                                                   \
    do {                                                                      \
        if ((level) >= cdx_log_min_level_) cdx_log_emit_((level), __VA_ARGS__); \
    } while (0)
#define CDX_WARN(...) CDX_LOG(CDX_LOG_WARN, __VA_ARGS__)
#define CDX_DEBUG(...) CDX_LOG(CDX_LOG_DEBUG, __VA_ARGS__)

/* An invariant that only a bug can break (never bad input). */
#define CDX_BUG(msg) cdx_fail(CDX_ERR_INTERNAL, "BUG at %s:%d: %s", __FILE__, __LINE__, (msg))

/* Checked size arithmetic: false on overflow, *out untouched then. */
static inline bool cdx_mul_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool cdx_add_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Number of compute threads chosen by cdx_threads_set (>= 1). */
int cdx_threads_internal(void);

/* Read a whole (small) file into a NUL-terminated heap buffer, refusing
 * files larger than max_bytes.  Caller frees *buf. */
cdx_status cdx_read_file(const char *path, size_t max_bytes, char **buf, size_t *len);

/* path joined as "dir/name" into a heap string (NULL on OOM). */
char *cdx_path_join(const char *dir, const char *name);

/* Growable arrays, the one helper for them: room for at least need
 * elements of elem bytes in the block p of *cap elements, the capacity
 * doubling from first.  Returns p itself when it is big enough, else the
 * moved block with *cap updated; NULL (with CDX_ERR_NOMEM recorded, p
 * still valid and *cap unchanged) when memory or size_t runs out:
 *     if (!(nv = cdx_grow(v, &cap, n + 1, sizeof *v, 64))) goto nomem;
 *     v = nv;  */
void *cdx_grow(void *p, size_t *cap, size_t need, size_t elem, size_t first);

#include "banned.h"
#endif
