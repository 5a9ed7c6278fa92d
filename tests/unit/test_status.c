/* test_status.c - errors, logging level filtering, thread budget. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tap.h"

static int logged;
static char last[256];
static void sink(int level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    logged++;
    snprintf(last, sizeof last, "%s", msg);
}

int main(void)
{
    cdx_status st = cdx_fail(CDX_ERR_FORMAT, "%s: bad %s", "a.jpg", "thing\nwith newline");
    ok(st == CDX_ERR_FORMAT, "cdx_fail returns its status");
    ok(strcmp(cdx_last_error(), "a.jpg: bad thing with newline") == 0,
       "message is one line: '%s'", cdx_last_error());
    cdx_fail_prefix(st, "ctx");
    ok(strncmp(cdx_last_error(), "ctx: a.jpg", 10) == 0, "prefix adds context");
    ok(strcmp(cdx_status_name(CDX_OK), "ok") == 0, "status names");

    CDX_WARN("not logged %d", 1);
    ok(logged == 0, "no sink: nothing logged");
    cdx_log_set(sink, NULL, CDX_LOG_WARN);
    CDX_DEBUG("debug %d", 2);
    ok(logged == 0, "below the level: not logged");
    CDX_WARN("warn %d", 3);
    ok(logged == 1 && strcmp(last, "warn 3") == 0, "warning reaches the sink");

    cdx_threads_set(1);
    ok(cdx_threads_get() == 1, "thread budget set");
    cdx_threads_set(0);
    ok(cdx_threads_get() >= 1, "thread budget defaults to CPUs");

    char *p = cdx_path_join("dir", "file");
    ok(p && strcmp(p, "dir/file") == 0, "path join");
    free(p);
    char *buf = NULL;
    st = cdx_read_file("/nonexistent/x", 100, &buf, NULL);
    ok(st == CDX_ERR_IO && strstr(cdx_last_error(), "/nonexistent/x"), "missing file names the path");

    /* cdx_grow: capacities double from first; the block keeps its contents. */
    int *v = NULL, *nv;
    size_t cap = 0, n = 0, caps_ok = 1;
    for (int i = 0; i < 1000; i++) {
        size_t before = cap;
        if (!(nv = cdx_grow(v, &cap, n + 1, sizeof *v, 4))) break;
        v = nv;
        if (cap != before && cap != (before ? before * 2 : 4)) caps_ok = 0;
        v[n++] = i;
    }
    int same = n == 1000;
    for (size_t i = 0; same && i < n; i++) same = v[i] == (int)i;
    ok(same && caps_ok && cap == 1024, "cdx_grow: 1000 elements, capacity 4 doubled to %zu", cap);
    ok(cdx_grow(v, &cap, 10, sizeof *v, 4) == v && cap == 1024, "cdx_grow: no move when there is room");
    size_t cap2 = cap;
    ok(cdx_grow(v, &cap2, SIZE_MAX / 2, sizeof *v, 4) == NULL && cap2 == cap &&
       strstr(cdx_last_error(), "out of memory"), "cdx_grow: an impossible size is out of memory, the block kept");
    free(v);
    return done_testing();
}
