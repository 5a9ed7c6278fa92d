/*
 * pathmap.c - string-keyed hash map (see pathmap.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pathmap.h"
#include "util.h"

static size_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static size_t find_slot(const pathmap *m, const char *key)
{
    size_t mask = m->cap - 1, i = hash_str(key) & mask;
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & mask;
    return i;
}

static void grow(pathmap *m)
{
    pathmap n = {0};
    n.cap = m->cap ? m->cap * 2 : 64;
    n.keys = xcalloc(n.cap, sizeof *n.keys);
    n.vals = xcalloc(n.cap, sizeof *n.vals);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = find_slot(&n, m->keys[i]);
        n.keys[j] = m->keys[i];
        n.vals[j] = m->vals[i];
        n.n++;
    }
    free(m->keys);
    free(m->vals);
    *m = n;
}

void pathmap_release(pathmap *m, void (*free_val)(void *))
{
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        free(m->keys[i]);
        if (free_val) free_val(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

void *pathmap_get(const pathmap *m, const char *key)
{
    if (!m->cap) return NULL;
    size_t i = find_slot(m, key);
    return m->keys[i] ? m->vals[i] : NULL;
}

void *pathmap_put(pathmap *m, const char *key, void *val)
{
    size_t i;
    void *old;
    if ((m->n + 1) * 10 >= m->cap * 7) grow(m);
    i = find_slot(m, key);
    if (m->keys[i]) {
        old = m->vals[i];
        m->vals[i] = val;
        return old;
    }
    m->keys[i] = xstrdup(key);
    m->vals[i] = val;
    m->n++;
    return NULL;
}

void *pathmap_del(pathmap *m, const char *key)
{
    size_t mask, i, j;
    void *old;
    if (!m->cap) return NULL;
    mask = m->cap - 1;
    i = find_slot(m, key);
    if (!m->keys[i]) return NULL;
    old = m->vals[i];
    free(m->keys[i]);
    m->keys[i] = NULL;
    m->n--;
    /* Backward shift: move later members of the probe run into the hole
     * when their home slot does not lie cyclically in (i, j]. */
    j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->keys[j]) break;
        size_t home = hash_str(m->keys[j]) & mask;
        int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        m->keys[i] = m->keys[j];
        m->vals[i] = m->vals[j];
        m->keys[j] = NULL;
        i = j;
    }
    return old;
}
