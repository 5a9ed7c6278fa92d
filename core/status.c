/*
 * status.c - errors, logging and the thread budget: the small amount of
 * global state core/ has, kept in one place.
 *
 * Errors are thread-local strings so that handle-less calls (image decode,
 * file helpers) can report a precise reason without a context object; the
 * daemon decodes on several threads at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>

#include "internal.h"

#define CDX_ERRMSG_MAX 1024

static _Thread_local char errmsg[CDX_ERRMSG_MAX];

const char *cdx_status_name(cdx_status st)
{
    switch (st) {
    case CDX_OK: return "ok";
    case CDX_ERR_ARG: return "invalid argument";
    case CDX_ERR_IO: return "I/O error";
    case CDX_ERR_FORMAT: return "malformed file";
    case CDX_ERR_UNSUPPORTED: return "unsupported";
    case CDX_ERR_LIMIT: return "over limit";
    case CDX_ERR_NOMEM: return "out of memory";
    case CDX_ERR_MODEL: return "bad model";
    case CDX_ERR_STORE: return "store error";
    case CDX_ERR_BUSY: return "busy";
    case CDX_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *cdx_last_error(void) { return errmsg; }

/* Messages are kept to one line: newlines in file names or library text
 * would break the "one line per error" contract of the programs. */
static void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

cdx_status cdx_fail(cdx_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    one_line(errmsg);
    return st;
}

cdx_status cdx_fail_prefix(cdx_status st, const char *prefix)
{
    char tmp[CDX_ERRMSG_MAX];
    snprintf(tmp, sizeof tmp, "%s: %s", prefix, errmsg);
    memcpy(errmsg, tmp, sizeof errmsg);
    one_line(errmsg);
    return st;
}

/* ---- logging ---- */

static cdx_log_fn log_fn;
static void *log_user;
int cdx_log_min_level_ = CDX_LOG_ERROR + 1; /* nothing until a sink is set */

void cdx_log_set(cdx_log_fn fn, void *user, int min_level)
{
    log_fn = fn;
    log_user = user;
    cdx_log_min_level_ = fn ? min_level : CDX_LOG_ERROR + 1;
}

void cdx_log_emit_(int level, const char *fmt, ...)
{
    char buf[1024]; /* fixed stack buffer: logging never allocates */
    va_list ap;
    if (!log_fn) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    one_line(buf);
    log_fn(level, buf, log_user);
}

/* ---- threads ---- */

static int n_threads = 0;

void cdx_threads_set(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    n_threads = n;
    /* OpenBLAS stays on the calling thread; core/engine/linear.c splits products
     * across our own pool (see there for why). */
    openblas_set_num_threads(1);
}

int cdx_threads_get(void) { return cdx_threads_internal(); }

int cdx_threads_internal(void)
{
    if (n_threads <= 0) cdx_threads_set(0);
    return n_threads;
}

/* ---- small file helpers ---- */

cdx_status cdx_read_file(const char *path, size_t max_bytes, char **buf, size_t *len)
{
    cdx_status st = CDX_OK;
    FILE *f = NULL;
    char *b = NULL;
    struct stat sb;
    size_t n;

    f = fopen(path, "rb");
    if (!f) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = cdx_fail(CDX_ERR_IO, "%s: not a regular file", path);
        goto cleanup;
    }
    if ((uint64_t)sb.st_size > max_bytes) {
        st = cdx_fail(CDX_ERR_LIMIT, "%s: file is %lld bytes, over the %zu byte limit",
                      path, (long long)sb.st_size, max_bytes);
        goto cleanup;
    }
    b = malloc((size_t)sb.st_size + 1);
    if (!b) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    n = fread(b, 1, (size_t)sb.st_size, f);
    if (n != (size_t)sb.st_size) {
        st = cdx_fail(CDX_ERR_IO, "%s: short read", path);
        goto cleanup;
    }
    b[n] = '\0';
    *buf = b;
    b = NULL;
    if (len) *len = n;
cleanup:
    free(b);
    if (f) fclose(f);
    return st;
}

char *cdx_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

void *cdx_grow(void *p, size_t *cap, size_t need, size_t elem, size_t first)
{
    size_t nc = *cap ? *cap : (first ? first : 1), bytes;
    void *np;
    if (need <= *cap) return p;
    while (nc < need)
        if (!cdx_mul_ok(nc, 2, &nc)) goto nomem;
    if (!cdx_mul_ok(nc, elem, &bytes) || !(np = realloc(p, bytes))) goto nomem;
    *cap = nc;
    return np;
nomem:
    cdx_fail(CDX_ERR_NOMEM, "out of memory");
    return NULL;
}
