/*
 * sptok.h - the SentencePiece tokenizers of SigLIP and SigLIP 2
 * (internal), the text handling of their processors around spm.h.
 *
 * SIGLIP (transformers' SiglipTokenizer over spiece.model):
 *   text = "▁" + text with "▁" replaced by " "
 *   lower case, one character at a time (do_lower_case; the tokenizer
 *     lowers each character on its own, so no final-sigma rule)
 *   split at the special tokens' strings ("</s>", "<unk>"), stripping the
 *     whitespace next to them (their AddedTokens have lstrip/rstrip)
 *   each other piece: remove ASCII punctuation (string.punctuation), runs
 *     of whitespace to one space, strip; encode "<unk>" + piece with the
 *     model's add_dummy_prefix off and drop the pieces "<unk>" gives
 *   a leading lone "▁" before a special token is dropped
 *   ids, truncated so that the end token fits, then "</s>" (unless the
 *     text already ends with it), padded with the pad id ("</s>") to the
 *     context length (processor(text, padding="max_length")).
 *
 * GEMMA (SigLIP 2's Siglip2Tokenizer = GemmaTokenizer + lower case,
 *   transformers PR #43101):
 *   the raw text split at the added tokens of tokenizer_config.json's
 *   added_tokens_decoder ("<eos>", "<start_of_turn>", ...: each becomes
 *   its id, as the fast tokenizer's added vocabulary matches them before
 *   normalising); each other part lower-cased (one character at a time, as
 *   tokenizers' Lowercase) and encoded by the model's BPE with byte
 *   fallback; "<bos>" first when
 *   tokenizer_config.json's add_bos_token, "<eos>" last when
 *   add_eos_token (the published checkpoints: no bos, eos), truncated to
 *   the context, padded with "<pad>" on padding_side.
 *
 * Not reproduced: the lstrip/rstrip/single_word flags of Gemma's added
 * tokens (the published ones have none set).
 */
#ifndef CDX_SPTOK_H
#define CDX_SPTOK_H

#include <stdint.h>

#include "clipdex.h"

typedef enum cdx_sptok_kind { CDX_SPTOK_SIGLIP, CDX_SPTOK_GEMMA } cdx_sptok_kind;

typedef struct cdx_sptok cdx_sptok;

/* Open model_path (spiece.model or tokenizer.model) with the settings of
 * config_path (tokenizer_config.json; NULL or missing: the published
 * checkpoints' settings).  context: the fixed length ids are padded to. */
cdx_status cdx_sptok_open(const char *model_path, const char *config_path, cdx_sptok_kind kind,
                          int context, cdx_sptok **out);
void cdx_sptok_free(cdx_sptok *t);

/* The processor's input_ids for text, padded to max_len (so *n = max_len). */
cdx_status cdx_sptok_encode(const cdx_sptok *t, const char *text, int max_len, int32_t *ids,
                            int *n);

int cdx_sptok_context(const cdx_sptok *t);
int32_t cdx_sptok_pad(const cdx_sptok *t);
int32_t cdx_sptok_eos(const cdx_sptok *t);
int32_t cdx_sptok_bos(const cdx_sptok *t); /* -1 when none is added */
/* Whether the model is given an attention mask (ids != pad are real):
 * tokenizer_config.json's model_input_names lists "attention_mask". */
int cdx_sptok_masks(const cdx_sptok *t);
int cdx_sptok_pad_left(const cdx_sptok *t);
const char *cdx_sptok_describe(const cdx_sptok *t);
int cdx_sptok_vocab(const cdx_sptok *t);

/* tokenizer.c's hooks: a cdx_tokenizer handle over t (which it then
 * owns; NULL on out of memory, t untouched), and the sptok of a handle
 * (NULL for CLIP BPE). */
cdx_tokenizer *cdx_tokenizer_wrap_sp(cdx_sptok *t);
cdx_sptok *cdx_tokenizer_sp(const cdx_tokenizer *tok);

#endif
