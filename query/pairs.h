/*
 * pairs.h - image-text pairs and labelled images for `clipdex train` and
 * `clipdex eval` (query/pairs.c).
 *
 * PAIRS is either
 *   - a TSV file: `path<TAB>text` a line, UTF-8, relative paths taken
 *     against the file's directory, empty lines ignored; or
 *   - a directory, walked recursively (hidden entries skipped, symbolic
 *     links to directories not followed, names sorted so the order is
 *     reproducible), keeping the files whose extension the indexer accepts
 *     by default (clipdex.conf [library] extensions).
 *
 * In a directory, PAIRS_CAPTIONS takes each image's caption from the first
 * of these sources that gives a non-empty one:
 *   1. a text sidecar: IMG.EXT.txt, else IMG.txt (the name without its
 *      extension, so photo.txt serves photo.jpg and photo.png alike):
 *      its first line;
 *   2. an XMP sidecar: IMG.EXT.xmp (darktable), else IMG.xmp (Lightroom);
 *   3. the XMP packet embedded in the image, found by libexempi's packet
 *      scanner (any format, UTF-8 packets);
 *   4. IPTC record 2 in a JPEG's APP13 segment (libiptcdata).
 * From XMP the caption is dc:description (its x-default text), else the
 * dc:subject keywords joined by ", "; from IPTC it is Caption/Abstract
 * (2:120), else the Keywords (2:25) joined by ", ".  A source that is
 * there but unusable (a binary or non-UTF-8 .txt, an XMP sidecar that does
 * not parse, a caption that is not UTF-8) skips the image with that reason
 * rather than falling through to the next source: the caption someone
 * wrote is broken and should be fixed, not silently replaced.  An empty
 * source (an empty .txt, XMP without description or subject) does fall
 * through, and so does an embedded XMP packet the toolkit cannot parse
 * (libexempi does not tell a damaged packet from a missing one).  White space is trimmed, and tabs and line breaks inside a
 * caption become spaces.  An image with no caption is not a pair: it is
 * reported and counted.
 *
 * PAIRS_LABELS reads a labelled set for zero-shot classification: a TSV
 * file `path<TAB>label`, or a directory with one sub-folder per class
 * (the label is the sub-folder's name; images below it at any depth
 * belong to it; images directly in the directory are skipped).
 *
 * Nothing here prints: every item skipped becomes one line in `skipped`
 * ("PATH: reason" or "FILE:LINE: reason"), for the command to print.
 * Images are not decoded here; the commands skip the ones that fail.
 */
#ifndef CDX_QUERY_PAIRS_H
#define CDX_QUERY_PAIRS_H

#include <stddef.h>

#include "util.h" /* common/: strv */

enum { PAIRS_CAPTIONS = 0, PAIRS_LABELS = 1 };

typedef struct pair_item {
    char *path;     /* the image (relative paths joined to the TSV's dir) */
    char *text;     /* caption or label: valid UTF-8, one line, non-empty */
} pair_item;

typedef struct pairs {
    pair_item *v;
    size_t n, cap;
    strv skipped;         /* one line per skipped item, without "(skipped)" */
    size_t n_nocaption;   /* of the skipped: images without any caption */
    int is_dir;           /* PAIRS was a directory */
} pairs;

/* Read PAIRS (a TSV file or a directory) in the given mode into *p (zero
 * it first).  0, or -1 when PAIRS itself cannot be read, with the reason
 * in err ("PATH: reason"); items that fail are skipped and listed in
 * p->skipped.  Release *p in both cases. */
int pairs_read(pairs *p, const char *path, int mode, char *err, size_t err_n);

/* Free everything *p holds and zero it. */
void pairs_release(pairs *p);

/* Is s (n bytes) valid UTF-8 without NUL bytes? */
int pairs_utf8_ok(const char *s, size_t n);

#endif
