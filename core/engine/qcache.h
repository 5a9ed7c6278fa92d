/*
 * qcache.h - a cache of converted (bf16/int8) weights (internal), so a
 * one-shot command runs at the CPU's native precision without paying the
 * conversion (about 0.4 s for a ViT-B/32 tower) every time.
 *
 * One file per (model, tower, precision, layout): the model is named by
 * its directory's real path and each weights file's size, modification
 * time and inode; the layout by the cache format version, the CPU level
 * (CLIPDEX_ISA applied), oneDNN's version and the qsmall layout.  The
 * file name is a hash of that key and the header repeats the key in
 * full.  Files live in $XDG_CACHE_HOME/clipdex/weights (else
 * ~/.cache/clipdex/weights); CLIPDEX_CACHE=off turns the cache off, and
 * CLIPDEX_CACHE=DIR puts it in DIR.
 *
 * Written once, atomically (a temporary file renamed into place), after
 * the first conversion; later opens map it read-only and check its size,
 * key and a checksum of every byte (a few ms) before using it.  A file
 * that fails a check is reported in one warning and converted again (and
 * rewritten); a cache directory that cannot be written is not an error.
 */
#ifndef CDX_QCACHE_H
#define CDX_QCACHE_H

#include "clipdex.h"
#include "transformer.h"
#include "weights.h"

/* Fill t's prepared products at p from the cache.  1 when it did (t
 * then holds the mapping), 0 when the caller must convert (no file, a
 * bad file, the cache off, or t not named: cache_tower NULL). */
int cdx_qcache_load(cdx_stack *t, const cdx_weights *w, cdx_precision p);
/* Save t's prepared products at p (best effort, never an error). */
void cdx_qcache_store(const cdx_stack *t, const cdx_weights *w, cdx_precision p);
/* Unmap t's cache file (after its products were freed). */
void cdx_qcache_release(cdx_stack *t);

/* The checksum the files carry (exposed for the test). */
uint64_t cdx_qcache_sum(const void *p, size_t n);

#endif
