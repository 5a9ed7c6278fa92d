/*
 * output.h - result output for search, similar, dupes and moderate: the
 * formats (table, paths, json, html), the output file, and the HTML
 * gallery (gallery.c).
 *
 *   table  aligned columns for people; the path is the last column and is
 *          never truncated (control characters are shown as \n, \t, \xNN)
 *   paths  one path per line as stored (or NUL-terminated with -0), for
 *          xargs and shell loops
 *   json   JSON Lines: one object per result (per group for dupes)
 *   html   a self-contained page with embedded JPEG thumbnails
 */
#ifndef CDX_QUERY_OUTPUT_H
#define CDX_QUERY_OUTPUT_H

#include <stdio.h>

#include "cmd.h"

enum out_format { OUT_TABLE, OUT_PATHS, OUT_JSON, OUT_HTML };

/* 0 and *out set, or -1 when s names no format. */
int out_parse_format(const char *s, enum out_format *out);

/* Where results go: stdout, or FILE written through a temporary file in
 * the same directory and renamed into place by out_close (so a reader
 * never sees half a gallery, and a failed run leaves the old file). */
typedef struct out_file {
    FILE *f;
    char *path, *tmp;     /* NULL for stdout */
} out_file;

/* 0, or EXIT_ERROR after printing why. */
int out_open(out_file *o, const char *path);
/* commit: flush, check for write errors, rename.  Otherwise (or on error)
 * the temporary file is removed.  Returns 0 or EXIT_ERROR. */
int out_close(out_file *o, int commit);

/* "YYYY-MM-DD HH:MM" (UTC) of unix seconds t into buf (>= 20 bytes). */
void out_date(char *buf, size_t n, int64_t t);

/* A path on one table line: control characters and invalid UTF-8 bytes
 * escaped (\n, \t, \xNN), backslashes doubled. */
void out_table_path(FILE *f, const char *path);

/* A path for --format paths: raw bytes, then '\n' or '\0'. */
void out_path_line(FILE *f, const char *path, int nul);

/* Every metadata field of a file row as JSON members, without braces,
 * starting with "path": "path":...,"size":...,... */
void out_json_file(FILE *f, const cdx_file_info *fi);

/* ---- the HTML gallery (gallery.c) ---- */

typedef struct gallery gallery;

/* Start a page on f with a title (plain text) and an optional one-line
 * description.  Never NULL (out of memory aborts, common/util.h). */
gallery *gallery_new(FILE *f, const char *title, const char *subtitle);

/* Start a section (a dupes group, a label): heading is plain text. */
void gallery_section(gallery *g, const char *heading);

/* One picture: a thumbnail of the file (made now; a placeholder saying
 * why when the file cannot be decoded), then caption (plain text, e.g.
 * "0.312 · 2021-06-01") and the path. */
void gallery_item(gallery *g, const char *path, const char *caption);

/* End the page and free g.  Returns the number of thumbnails that could
 * not be made. */
int gallery_finish(gallery *g);

/* Thumbnail of an image file as JPEG bytes fitting side x side (EXIF
 * orientation applied).  *jpeg is heap (free()).  0, or -1 with the
 * reason in cdx_last_error() style text in err. */
int thumbnail_jpeg(const char *path, int side, int quality, unsigned char **jpeg, size_t *n,
                   char *err, size_t err_n);

#endif
