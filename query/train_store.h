/*
 * train_store.h - the image embeddings of training pairs from the index
 * store (clipdex train --from-store; train_store.c).
 */
#ifndef CDX_QUERY_TRAIN_STORE_H
#define CDX_QUERY_TRAIN_STORE_H

#include "cmd.h"

/* For each of the n image paths, its stored vector (E floats, unit norm)
 * into vecs + i E and have[i] = 1, or have[i] = 0 with one line on stderr
 * when the store has none in this model's vector space; *missing counts
 * those.  Returns 0, or an exit code after printing why (no store, no
 * vectors of this model, a store error). */
int train_store_vectors(const cdx_cmd *self, const char *model_dir, int n, char *const *paths, int E,
                        float *vecs, int *have, int *missing);

#endif
