/*
 * spm.h - a C interface to Debian's libsentencepiece (internal).
 *
 * SigLIP ships a SentencePiece unigram model (spiece.model), SigLIP 2
 * Gemma's BPE model with byte fallback (tokenizer.model).  The library is
 * C++; spm.cc wraps the few calls the tokenizers need so the rest of the
 * engine stays C.  The text handling around it (canonicalisation, lower
 * case, special tokens, padding) is in sptok.c.
 */
#ifndef CDX_SPM_H
#define CDX_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "clipdex.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cdx_spm cdx_spm;

/* Load the model file at path.  no_dummy_prefix: clear the model's
 * normalizer add_dummy_prefix as transformers' SiglipTokenizer does (it
 * merges a NormalizerSpec{add_dummy_prefix: false} into the proto before
 * loading).  Errors (CDX_ERR_IO, CDX_ERR_MODEL) name the file. */
cdx_status cdx_spm_load(const char *path, int no_dummy_prefix, cdx_spm **out);
void cdx_spm_free(cdx_spm *s);

/* Encode len bytes of UTF-8 text to pieces, then each piece to its id
 * (PieceToId, as transformers converts tokens), dropping the first skip
 * pieces.  *ids is malloc'd (caller frees), *n its count. */
cdx_status cdx_spm_encode(const cdx_spm *s, const char *text, size_t len, int skip,
                          int32_t **ids, int *n);

/* Number of pieces text encodes to (for SiglipTokenizer's unk_token_length). */
int cdx_spm_count(const cdx_spm *s, const char *text);

/* The id of a piece; -1 when the vocabulary does not hold it (PieceToId
 * answers the unknown id for those: told apart here). */
int32_t cdx_spm_piece_id(const cdx_spm *s, const char *piece);
int cdx_spm_size(const cdx_spm *s);

#ifdef __cplusplus
}
#endif
#endif
