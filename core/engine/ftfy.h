/*
 * ftfy.h - the text cleanup CLIP applies before tokenizing, on UTF-32
 * strings.  Internal to core/; the tokenizer is its only user.
 *
 * OpenAI's simple_tokenizer.py cleans a query as
 *
 *     text = ftfy.fix_text(text)
 *     text = html.unescape(html.unescape(text)).strip()
 *     text = re.sub(r'\s+', ' ', text).strip()
 *     text = text.lower()
 *
 * cdx_clip_clean() does all of it.  The pieces are exported for the unit
 * test and for callers that want one step only.  Python semantics are
 * followed wherever they are observable: str.isspace() for \s and strip(),
 * str.lower() (full case mapping, final sigma), html.unescape's rules for
 * numeric and legacy entities.  ftfy is reproduced only in part: see the
 * top of ftfy.c for what is and is not covered.
 *
 * All functions replace the contents of *out (which the caller owns and
 * releases with cdx_u32_release) and return CDX_ERR_NOMEM on allocation
 * failure, with the thread-local message set.  None of them keeps state:
 * all are thread-safe.
 */
#ifndef CDX_FTFY_H
#define CDX_FTFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clipdex.h"

/* A growable UTF-32 string.  Zero-initialise before first use. */
typedef struct cdx_u32 {
    uint32_t *v;
    size_t n, cap;
} cdx_u32;

void cdx_u32_release(cdx_u32 *s);

/* Decode strict UTF-8 (as Python's decoder: no overlong forms, no
 * surrogates, nothing above U+10FFFF) into *out.  On invalid input returns
 * CDX_ERR_ARG and, when bad_offset is not NULL, the byte offset of the
 * first bad sequence; no message is recorded (the caller knows what the
 * bytes were). */
cdx_status cdx_utf8_decode(const char *s, size_t len, cdx_u32 *out, size_t *bad_offset);

/* Python's str.isspace() for one code point (the set `\s` and strip() use). */
bool cdx_py_isspace(uint32_t c);

/* ftfy.fix_text(text) with its default configuration, as far as ftfy.c
 * implements it. */
cdx_status cdx_ftfy_fix_text(const uint32_t *s, size_t n, cdx_u32 *out);

/* Python's html.unescape(s). */
cdx_status cdx_html_unescape(const uint32_t *s, size_t n, cdx_u32 *out);

/* Python's s.lower(). */
cdx_status cdx_py_lower(const uint32_t *s, size_t n, cdx_u32 *out);

/* Unicode NFC, as unicodedata.normalize("NFC", s). */
cdx_status cdx_nfc(const uint32_t *s, size_t n, cdx_u32 *out);

/* The whole CLIP cleanup: ftfy, html.unescape twice, strip, whitespace
 * runs to one space, lower case. */
cdx_status cdx_clip_clean(const uint32_t *s, size_t n, cdx_u32 *out);

#endif
