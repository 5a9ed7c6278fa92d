/*
 * pathmap.h - a hash map from path strings to pointers, for the daemon's
 * per-path bookkeeping (pending events, files in flight, scan snapshots).
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), FNV-1a hashes, grown at 70% load.  Keys are copied; values
 * are the caller's.  Not thread-safe: the main thread owns every map.
 */
#ifndef IX_PATHMAP_H
#define IX_PATHMAP_H

#include <stddef.h>

typedef struct pathmap {
    char **keys;  /* NULL: empty slot */
    void **vals;
    size_t cap, n;
} pathmap;

/* A zeroed struct is an empty map. */
void pathmap_release(pathmap *m, void (*free_val)(void *));
/* The value of key, or NULL. */
void *pathmap_get(const pathmap *m, const char *key);
/* Insert or replace; returns the previous value (or NULL). */
void *pathmap_put(pathmap *m, const char *key, void *val);
/* Remove key; returns its value (or NULL). */
void *pathmap_del(pathmap *m, const char *key);

/* Iterate: for (size_t i = 0; i < m->cap; i++) if (m->keys[i]) ...
 * (no insertions or deletions while iterating). */

#endif
