/*
 * serve.h - what the parts of `clipdex serve` share: the server state
 * (cmd_serve.c: options, HTTP, security), the JSON API (serve_api.c), the
 * files it hands out (serve_files.c) and the page built into the binary
 * (query/web/, turned into build/gen/web.c by query/web/web2c.awk).
 */
#ifndef CDX_QUERY_SERVE_H
#define CDX_QUERY_SERVE_H

#include <pthread.h>
#include <stdio.h>

#include "filters.h"

/* Limits a client cannot raise. */
#define SERVE_MAX_URL 4096           /* request line + headers: MHD memory limit */
#define SERVE_MAX_QUERY 1000         /* bytes of q / not terms */
#define SERVE_MAX_TERMS 8            /* not= terms */
#define SERVE_MAX_N 200              /* results per page */
#define SERVE_MAX_RESULTS 2000       /* offset + n */
#define SERVE_MAX_UPLOAD (32u << 20) /* dropped image */
#define SERVE_MAX_GROUPS 1000        /* dupes groups per answer */
#define SERVE_THUMB_SIDE 256

typedef struct serve {
    qctx c;                 /* the store and the text tower, kept open */
    pthread_mutex_t lock;   /* held around every store and model call */
    const char *token;      /* NULL: no token (loopback only) */
    char *cache_dir;        /* thumbnails; NULL: no cache */
    int64_t cache_max;      /* bytes */
    int64_t cache_bytes;    /* approximate, under cache_lock */
    pthread_mutex_t cache_lock;
} serve;

/* An answer being built: a status, a content type and a body. */
typedef struct reply {
    int status;
    const char *type;       /* static string */
    char *body;             /* heap */
    size_t len;
    int fd;                 /* >= 0: send this file instead of body */
    int64_t fd_size;
    const char *cache;      /* Cache-Control value, static; NULL: no-store */
} reply;

/* The request as the handlers see it. */
typedef struct request {
    const char *method;     /* "GET", "POST", ... */
    const char *path;       /* URL path, decoded */
    void *conn;             /* struct MHD_Connection */
    const char *body;       /* POST body (may be NULL) */
    size_t body_len;
} request;

/* A query parameter (NULL when absent), and every value of a repeated one. */
const char *req_arg(const request *r, const char *name);
size_t req_args(const request *r, const char *name, const char **out, size_t max);
/* A request header (NULL when absent). */
const char *req_header(const request *r, const char *name);

/* Replies. */
void reply_json_error(reply *out, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Take ownership of a memstream buffer as a JSON body. */
void reply_json(reply *out, char *body, size_t len);

/* serve_api.c: route /api/... ; fills *out. */
void api_handle(serve *s, const request *r, reply *out);
/* Free what the API keeps between requests (the text embedding cache). */
void api_release(void);

/* serve_files.c */
/* The thumbnail (JPEG) of file id, from the cache or made now. */
void files_thumb(serve *s, int64_t id, reply *out);
/* The original image of file id, after the path checks. */
void files_image(serve *s, int64_t id, reply *out);
/* The cache directory ($XDG_CACHE_HOME/clipdex/thumbs) created and its
 * size counted; 0, or -1 after a warning (thumbnails then go uncached). */
int files_cache_init(serve *s);
/* Open a file the index holds for reading, refusing anything that is not
 * the regular file the indexer saw at that path: the stored path must be
 * absolute and canonical (no "..", no symlink in it: realpath gives it
 * back), opened without following a final symlink, with the device and
 * inode recorded at indexing.  Returns an fd or -1 with *why set. */
int files_open_indexed(const cdx_file_info *fi, const char **why);

/* The page: built-in files (build/gen/web.c). */
typedef struct web_file {
    const char *path;       /* "/", "/app.js", ... */
    const char *type;
    const char *data;
    size_t len;
} web_file;
extern const web_file web_files[];

#endif
