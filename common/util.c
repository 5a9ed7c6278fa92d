/*
 * util.c - allocation that aborts on exhaustion, clocks, path strings and
 * string vectors for both programs (see util.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static void oom(size_t n)
{
    /* No allocation from here on: a fixed message straight to stderr. */
    char buf[96];
    int len = snprintf(buf, sizeof buf, "%s: out of memory (%zu bytes)\n", program_invocation_short_name, n);
    if (len > 0 && write(STDERR_FILENO, buf, (size_t)len) < 0) { /* nothing left to do */ }
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

void *xgrow(void *p, size_t *cap, size_t need, size_t elem, size_t first)
{
    size_t nc = *cap ? *cap : (first ? first : 1), bytes;
    if (need <= *cap) return p;
    while (nc < need)
        if (__builtin_mul_overflow(nc, 2, &nc)) oom(SIZE_MAX);
    if (__builtin_mul_overflow(nc, elem, &bytes)) oom(SIZE_MAX);
    p = xrealloc(p, bytes);
    *cap = nc;
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *p;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wall_s(void)
{
    return (int64_t)time(NULL);
}

char *path_join(const char *dir, const char *name)
{
    size_t d = strlen(dir), n = strlen(name);
    int slash = d > 0 && dir[d - 1] == '/';
    char *p = xmalloc(d + n + 2);
    memcpy(p, dir, d);
    if (!slash) p[d++] = '/';
    memcpy(p + d, name, n + 1);
    return p;
}

int path_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/') return path[0] == '/';
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

const char *path_base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

void path_ext(const char *path, char *out, size_t cap)
{
    const char *b = path_base(path), *dot = strrchr(b, '.');
    size_t i = 0;
    out[0] = '\0';
    if (!dot || dot == b || strlen(dot + 1) >= cap) return;
    for (dot++; *dot; dot++) {
        char c = *dot;
        out[i++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[i] = '\0';
}

/* Lexical normalisation of an absolute path in place. */
static void normalise(char *p)
{
    char *out = p, *in = p;
    /* p starts with '/' */
    while (*in) {
        while (*in == '/') in++;
        if (!*in) break;
        char *seg = in;
        while (*in && *in != '/') in++;
        size_t len = (size_t)(in - seg);
        if (len == 1 && seg[0] == '.') continue;
        if (len == 2 && seg[0] == '.' && seg[1] == '.') {
            while (out > p && *--out != '/') {}
            continue;
        }
        *out++ = '/';
        memmove(out, seg, len);
        out += len;
    }
    if (out == p) *out++ = '/';
    *out = '\0';
}

char *path_absolute(const char *path, const char *base)
{
    char *abs, *real;
    if (!path || !*path) return NULL;
    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
        const char *home = getenv("HOME");
        abs = xasprintf("%s/%s", home && *home ? home : "/", path + 1);
    } else if (path[0] == '/') {
        abs = xstrdup(path);
    } else if (base) {
        abs = xasprintf("%s/%s", base, path);
    } else {
        char cwd[PATH_MAX];
        abs = xasprintf("%s/%s", getcwd(cwd, sizeof cwd) ? cwd : "/", path);
    }
    normalise(abs);
    real = realpath(abs, NULL);
    if (real) {
        free(abs);
        return real;
    }
    return abs;
}

void strv_push_owned(strv *a, char *s)
{
    a->v = xgrow(a->v, &a->cap, a->n + 1, sizeof *a->v, 8);
    a->v[a->n++] = s;
}

void strv_push(strv *a, const char *s)
{
    strv_push_owned(a, xstrdup(s));
}

void strv_clear(strv *a)
{
    for (size_t i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

int strv_contains(const strv *a, const char *s)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], s) == 0) return 1;
    return 0;
}

void strv_copy(strv *dst, const strv *src)
{
    strv_clear(dst);
    for (size_t i = 0; i < src->n; i++) strv_push(dst, src->v[i]);
}

int strv_equal(const strv *a, const strv *b)
{
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0) return 0;
    return 1;
}
