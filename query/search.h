/*
 * search.h - the query vector of `clipdex search`, shared by the command
 * (cmd_search.c) and the web app (serve_api.c) so both search the same
 * way.
 */
#ifndef CDX_QUERY_SEARCH_H
#define CDX_QUERY_SEARCH_H

#include "filters.h"

/* One term of a query: a text, an image file, or a vector given by the
 * caller (a stored vector, an image embedded elsewhere). */
typedef struct qterm {
    int image;          /* value is a path */
    int sign;           /* +1 positive, -1 negative */
    double weight;
    const char *value;  /* text or path (unused when vec is set) */
    const float *vec;   /* c->dim floats, normalised, or NULL */
} qterm;

/* The query vector q (c->dim floats): every term embedded and normalised
 * (texts with c->model's text tower, images through image_vector), times
 * sign * weight, summed.  cdx_store_search normalises it.  *image_file_id
 * (may be NULL) receives the file id of the last image term found in the
 * store by path (0 when none).  Returns 0, or an exit code after printing
 * the error (EXIT_ERROR when the terms cancel out). */
int query_vector(qctx *c, const qterm *t, size_t n, float *q, int64_t *image_file_id);

#endif
