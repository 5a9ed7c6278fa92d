/*
 * tokenizer.c - CLIP's byte-level BPE tokenizer, reproducing OpenAI's
 * clip.tokenize (simple_tokenizer.py) id for id.
 *
 * The pipeline for one query:
 *
 *   UTF-8 text -> code points (strict; invalid UTF-8 is CDX_ERR_ARG)
 *   -> cleanup (ftfy subset, html.unescape x2, whitespace, lower): ftfy.c
 *   -> pre-tokenize with CLIP's pattern, matched by hand here:
 *        <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d
 *        | \p{L}+ | \p{N} | [^\s\p{L}\p{N}]+
 *   -> each piece's UTF-8 bytes -> BPE over byte symbols, the last symbol
 *      carrying "</w>" -> vocabulary ids
 *   -> [SOT] ids [EOT], truncated to max_len with EOT kept last.
 *
 * Data structures.  Every symbol BPE can produce is a vocabulary entry, so
 * BPE works on ids, never on strings: the vocabulary is a hash table from
 * token string to id (needed only while opening, then freed), and each merge "a b" of
 * merges.txt becomes an entry (id(a), id(b)) -> (rank, id(ab)) of a second
 * hash table.  A word's bytes start as the ids of their single-byte symbols
 * (byte_id / byte_eow_id); the lowest-ranked adjacent pair is merged
 * everywhere, left to right, until no pair has a rank: the same order as
 * the reference's bpe(), hence the same ids.  Short words use a plain scan
 * per round; long ones a heap, so that a huge word costs O(n log n).
 *
 * The BPE cache maps a piece's bytes to its ids.  It is shared by all
 * threads using the tokenizer and guarded by a mutex held only for the
 * lookup and the insertion, never while merging.  It is bounded: when it
 * fills up it is emptied (queries repeat words, so a simple policy is
 * enough).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>

#include "ftfy.h"
#include "sptok.h"
#include "internal.h"

/* vocab.json of CLIP is ~1 MB, merges.txt ~0.5 MB. */
#define TOK_MAX_FILE (64u << 20)

/* CLIP uses merges[1 : 49152-256-2+1] of its merges file: the first line is
 * a "#version" header, and only the first 48894 merges fit its 49408-entry
 * vocabulary (256 bytes, 256 bytes + "</w>", the merges, 2 specials).
 * Hugging Face's CLIPTokenizer applies the same limit. */
#define TOK_MAX_MERGES (49152 - 256 - 2)

#define CACHE_SLOTS 4096 /* power of two */
#define CACHE_MAX_FILL (CACHE_SLOTS / 4 * 3)
#define CACHE_MAX_KEY 64 /* longer pieces are not cached */

/* Stack scratch for the scan BPE on words up to this many bytes; longer
 * ones allocate.  Words longer than BPE_HEAP_MIN bytes use the heap BPE. */
#define BPE_STACK_WORD 128
#define BPE_HEAP_MIN 48

static const char SOT_TOKEN[] = "<|startoftext|>";
static const char EOT_TOKEN[] = "<|endoftext|>";

typedef struct vocab_slot {
    uint32_t off, len; /* key bytes in tok->keys */
    int32_t id;        /* -1: empty */
} vocab_slot;

typedef struct merge_slot {
    uint64_t pair; /* (left id << 32) | right id */
    int32_t rank;  /* -1: empty */
    int32_t id;    /* id of the merged symbol */
} merge_slot;

typedef struct cache_entry {
    uint64_t hash;
    uint32_t klen, nids;
    int32_t *ids; /* points into the same allocation, after the struct */
    char *key;
} cache_entry;

struct cdx_tokenizer {
    /* SigLIP / SigLIP 2: a SentencePiece tokenizer (sptok.c) does all the
     * work and every field below is unused. */
    cdx_sptok *sp;

    /* Vocabulary, only while opening. */
    char *keys; /* every vocabulary string, NUL-terminated, back to back */
    vocab_slot *vocab;
    size_t vocab_mask, n_vocab;

    merge_slot *merges;
    size_t merge_mask, n_merges;

    int32_t byte_id[256];     /* symbol of a byte inside a word */
    int32_t byte_eow_id[256]; /* symbol of a byte ending a word ("...</w>") */
    int32_t sot, eot;
    /* The special tokens' text: CLIP's <|startoftext|> / <|endoftext|>, or
     * open_clip's <start_of_text> / <end_of_text> (same ids 49406/49407;
     * cdx_tokenizer_open_openclip).  The other pair is ordinary text. */
    const char *sot_text, *eot_text;
    bool bpe_reference; /* CLIPDEX_BPE_REF=1: the scan BPE for every word */

    pthread_mutex_t lock; /* guards the cache below */
    cache_entry *cache[CACHE_SLOTS];
    size_t cache_n;
};

/* ------------------------------------------------------------------ */
/* Hashing                                                             */
/* ------------------------------------------------------------------ */

static uint64_t hash_bytes(const void *p, size_t n)
{
    /* FNV-1a, then a final mix so that the low bits used for the slot
     * depend on every byte. */
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Smallest power of two >= 2n (load factor <= 1/2). */
static size_t table_size(size_t n)
{
    size_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

/* ------------------------------------------------------------------ */
/* Vocabulary                                                          */
/* ------------------------------------------------------------------ */

static int32_t vocab_get(const cdx_tokenizer *tok, const char *s, size_t n)
{
    size_t i = hash_bytes(s, n) & tok->vocab_mask;
    for (;; i = (i + 1) & tok->vocab_mask) {
        const vocab_slot *v = &tok->vocab[i];
        if (v->id < 0) return -1;
        if (v->len == n && memcmp(tok->keys + v->off, s, n) == 0) return v->id;
    }
}

/* Insert or overwrite (a repeated key keeps the last id, as json.load). */
static void vocab_put(cdx_tokenizer *tok, uint32_t off, uint32_t len, int32_t id)
{
    const char *s = tok->keys + off;
    size_t i = hash_bytes(s, len) & tok->vocab_mask;
    for (;; i = (i + 1) & tok->vocab_mask) {
        vocab_slot *v = &tok->vocab[i];
        if (v->id < 0) {
            v->off = off;
            v->len = len;
            v->id = id;
            tok->n_vocab++;
            return;
        }
        if (v->len == len && memcmp(tok->keys + v->off, s, len) == 0) {
            v->id = id;
            return;
        }
    }
}

static cdx_status load_vocab(cdx_tokenizer *tok, const char *path)
{
    cdx_status st = CDX_OK;
    char *buf = NULL;
    size_t len = 0, total = 0, off = 0, count = 0;
    const char *end = NULL;
    cJSON *root = NULL, *it;

    st = cdx_read_file(path, TOK_MAX_FILE, &buf, &len);
    if (st != CDX_OK) goto cleanup;
    root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: invalid JSON near byte %zu", path,
                      end && end >= buf ? (size_t)(end - buf) : (size_t)0);
        goto cleanup;
    }
    if (!cJSON_IsObject(root) || !root->child) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: expected a JSON object mapping tokens to ids", path);
        goto cleanup;
    }
    cJSON_ArrayForEach(it, root) {
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || !(d >= 0 && d <= INT32_MAX) || d != (double)(int32_t)d) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: token \"%.40s\" does not map to an integer id",
                          path, it->string ? it->string : "");
            goto cleanup;
        }
        if (!cdx_add_ok(total, strlen(it->string) + 1, &total) || total > UINT32_MAX) {
            st = cdx_fail(CDX_ERR_LIMIT, "%s: vocabulary too large", path);
            goto cleanup;
        }
        count++;
    }
    tok->keys = malloc(total);
    tok->vocab_mask = table_size(count) - 1;
    tok->vocab = malloc((tok->vocab_mask + 1) * sizeof *tok->vocab);
    if (!tok->keys || !tok->vocab) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (size_t i = 0; i <= tok->vocab_mask; i++) tok->vocab[i].id = -1;
    cJSON_ArrayForEach(it, root) {
        size_t n = strlen(it->string);
        memcpy(tok->keys + off, it->string, n + 1);
        vocab_put(tok, (uint32_t)off, (uint32_t)n, (int32_t)it->valuedouble);
        off += n + 1;
    }
cleanup:
    cJSON_Delete(root);
    free(buf);
    return st;
}

/* GPT-2's bytes_to_unicode, which CLIP reuses: printable Latin-1 bytes
 * stand for themselves; the others (controls, space, DEL, NBSP, soft
 * hyphen) are moved to U+0100 upwards in byte order, so that every token
 * string is printable and space-free. */
static void byte_to_unicode(uint32_t *map)
{
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        map[b] = printable ? b : next++;
    }
}

static cdx_status find_byte_symbols(cdx_tokenizer *tok, const char *path)
{
    uint32_t map[256];
    byte_to_unicode(map);
    for (int b = 0; b < 256; b++) {
        /* The symbol as UTF-8 (1 or 2 bytes), then with "</w>". */
        char s[8];
        size_t n = map[b] < 0x80 ? 1 : 2;
        if (n == 1) {
            s[0] = (char)map[b];
        } else {
            s[0] = (char)(0xC0 | (map[b] >> 6));
            s[1] = (char)(0x80 | (map[b] & 0x3F));
        }
        memcpy(s + n, "</w>", 4);
        tok->byte_id[b] = vocab_get(tok, s, n);
        tok->byte_eow_id[b] = vocab_get(tok, s, n + 4);
        if (tok->byte_id[b] < 0 || tok->byte_eow_id[b] < 0) {
            s[n + 4] = '\0';
            if (tok->byte_id[b] < 0) s[n] = '\0';
            return cdx_fail(CDX_ERR_FORMAT, "%s: byte token \"%s\" is missing", path, s);
        }
    }
    tok->sot = vocab_get(tok, SOT_TOKEN, sizeof SOT_TOKEN - 1);
    tok->eot = vocab_get(tok, EOT_TOKEN, sizeof EOT_TOKEN - 1);
    if (tok->sot < 0 || tok->eot < 0)
        return cdx_fail(CDX_ERR_FORMAT, "%s: no \"%s\" token", path,
                        tok->sot < 0 ? SOT_TOKEN : EOT_TOKEN);
    return CDX_OK;
}

/* ------------------------------------------------------------------ */
/* Merges                                                              */
/* ------------------------------------------------------------------ */

static inline uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* Rank of the pair (a, b), or INT32_MAX when it never merges; *id gets
 * the merged symbol. */
static inline int32_t merge_get(const cdx_tokenizer *tok, int32_t a, int32_t b, int32_t *id)
{
    uint64_t key = pair_key(a, b);
    size_t i = hash_u64(key) & tok->merge_mask;
    for (;; i = (i + 1) & tok->merge_mask) {
        const merge_slot *m = &tok->merges[i];
        if (m->rank < 0) return INT32_MAX;
        if (m->pair == key) {
            *id = m->id;
            return m->rank;
        }
    }
}

/* A pair listed twice keeps its last rank, as dict(zip(merges, ranks)). */
static void merge_put(cdx_tokenizer *tok, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t key = pair_key(a, b);
    size_t i = hash_u64(key) & tok->merge_mask;
    for (;; i = (i + 1) & tok->merge_mask) {
        merge_slot *m = &tok->merges[i];
        if (m->rank < 0 || m->pair == key) {
            if (m->rank < 0) tok->n_merges++;
            m->pair = key;
            m->rank = rank;
            m->id = id;
            return;
        }
    }
}

static cdx_status load_merges(cdx_tokenizer *tok, const char *path, const char *vocab_path)
{
    cdx_status st = CDX_OK;
    char *buf = NULL, *p, *end, *cat = NULL;
    size_t len = 0, lines = 0, line_no = 0, cat_cap = 0;
    int32_t rank = 0;

    st = cdx_read_file(path, TOK_MAX_FILE, &buf, &len);
    if (st != CDX_OK) goto cleanup;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    tok->merge_mask = table_size(lines + 1) - 1;
    tok->merges = malloc((tok->merge_mask + 1) * sizeof *tok->merges);
    if (!tok->merges) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (size_t i = 0; i <= tok->merge_mask; i++) tok->merges[i].rank = -1;

    end = buf + len;
    for (p = buf; p < end && rank < TOK_MAX_MERGES; ) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end, *a, *b, *sp;
        size_t na, nb;
        int32_t ia, ib, iab;
        line_no++;
        if (eol > p && eol[-1] == '\r') eol--;
        *eol = '\0';
        a = p;
        p = nl ? nl + 1 : end;
        if (line_no == 1 && strstr(a, "#version")) continue;
        /* Fields are separated by whitespace (merge.split() in Python). */
        while (*a == ' ' || *a == '\t') a++;
        if (*a == '\0') continue; /* blank line (the trailing one) */
        for (sp = a; *sp && *sp != ' ' && *sp != '\t'; sp++)
            ;
        na = (size_t)(sp - a);
        for (b = sp; *b == ' ' || *b == '\t'; b++)
            ;
        for (sp = b; *sp && *sp != ' ' && *sp != '\t'; sp++)
            ;
        nb = (size_t)(sp - b);
        while (*sp == ' ' || *sp == '\t') sp++;
        if (nb == 0 || *sp != '\0') {
            st = cdx_fail(CDX_ERR_FORMAT, "%s:%zu: expected two symbols separated by a space",
                          path, line_no);
            goto cleanup;
        }
        if (na + nb > cat_cap) {
            char *t = realloc(cat, na + nb + 64);
            if (!t) {
                st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
                goto cleanup;
            }
            cat = t;
            cat_cap = na + nb + 64;
        }
        memcpy(cat, a, na);
        memcpy(cat + na, b, nb);
        ia = vocab_get(tok, a, na);
        ib = vocab_get(tok, b, nb);
        iab = vocab_get(tok, cat, na + nb);
        /* In CLIP's files every merge and its result are vocabulary
         * entries; a file where they are not belongs to another model. */
        if (ia < 0 || ib < 0 || iab < 0) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s:%zu: \"%.*s\" is not in %s", path, line_no,
                          ia < 0 ? (int)na : ib < 0 ? (int)nb : (int)(na + nb),
                          ia < 0 ? a : ib < 0 ? b : cat, vocab_path);
            goto cleanup;
        }
        merge_put(tok, ia, ib, rank++, iab);
    }
    if (rank == 0) st = cdx_fail(CDX_ERR_FORMAT, "%s: no merges", path);
cleanup:
    free(cat);
    free(buf);
    return st;
}

/* ------------------------------------------------------------------ */
/* Open / free                                                         */
/* ------------------------------------------------------------------ */

cdx_status cdx_tokenizer_open(const char *vocab_json, const char *merges_txt,
                              cdx_tokenizer **out)
{
    cdx_status st;
    cdx_tokenizer *tok;
    if (!vocab_json || !merges_txt || !out)
        return cdx_fail(CDX_ERR_ARG, "cdx_tokenizer_open: NULL argument");
    tok = calloc(1, sizeof *tok);
    if (!tok) return cdx_fail(CDX_ERR_NOMEM, "out of memory opening the tokenizer");
    if (pthread_mutex_init(&tok->lock, NULL) != 0) {
        free(tok);
        return cdx_fail(CDX_ERR_INTERNAL, "cannot create the tokenizer's mutex");
    }
    tok->sot_text = SOT_TOKEN;
    tok->eot_text = EOT_TOKEN;
    {
        const char *ref = getenv("CLIPDEX_BPE_REF");
        tok->bpe_reference = ref && strcmp(ref, "1") == 0;
    }
    st = load_vocab(tok, vocab_json);
    if (st == CDX_OK) st = find_byte_symbols(tok, vocab_json);
    if (st == CDX_OK) st = load_merges(tok, merges_txt, vocab_json);
    if (st != CDX_OK) {
        cdx_tokenizer_free(tok);
        return st;
    }
    /* Encoding only needs the merge table and the byte symbols: drop the
     * string table (about 1.5 MB for CLIP). */
    free(tok->vocab);
    free(tok->keys);
    tok->vocab = NULL;
    tok->keys = NULL;
    *out = tok;
    return CDX_OK;
}

/* OpenCLIP: open_clip's SimpleTokenizer on the same CLIP vocabulary.  Its
 * vocabulary ends with "<start_of_text>", "<end_of_text>" where CLIP's has
 * "<|startoftext|>", "<|endoftext|>": the same ids (the last two), so the
 * files are CLIP's and only the special tokens' text changes.  Cleaning
 * (clean="lower": ftfy, html.unescape twice, whitespace, lower case), the
 * pattern and the truncation are otherwise CLIP's. */
cdx_status cdx_tokenizer_open_openclip(const char *vocab_json, const char *merges_txt,
                                       cdx_tokenizer **out)
{
    cdx_status st = cdx_tokenizer_open(vocab_json, merges_txt, out);
    if (st) return st;
    (*out)->sot_text = "<start_of_text>";
    (*out)->eot_text = "<end_of_text>";
    return CDX_OK;
}

static void cache_clear(cdx_tokenizer *tok)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        free(tok->cache[i]);
        tok->cache[i] = NULL;
    }
    tok->cache_n = 0;
}

void cdx_tokenizer_free(cdx_tokenizer *tok)
{
    if (!tok) return;
    if (tok->sp) {
        cdx_sptok_free(tok->sp);
        free(tok);
        return;
    }
    cache_clear(tok);
    pthread_mutex_destroy(&tok->lock);
    free(tok->merges);
    free(tok->vocab);
    free(tok->keys);
    free(tok);
}

int32_t cdx_tokenizer_sot(const cdx_tokenizer *tok)
{
    return tok->sp ? cdx_sptok_bos(tok->sp) : tok->sot;
}
int32_t cdx_tokenizer_eot(const cdx_tokenizer *tok)
{
    return tok->sp ? cdx_sptok_eos(tok->sp) : tok->eot;
}

/* ---- SentencePiece (SigLIP) hooks: the same handle over sptok.c ---- */

cdx_tokenizer *cdx_tokenizer_wrap_sp(cdx_sptok *sp)
{
    cdx_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok) tok->sp = sp;
    return tok;
}

cdx_sptok *cdx_tokenizer_sp(const cdx_tokenizer *tok) { return tok ? tok->sp : NULL; }

int cdx_tokenizer_context(const cdx_tokenizer *tok)
{
    return tok && tok->sp ? cdx_sptok_context(tok->sp) : 0;
}

const char *cdx_tokenizer_describe(const cdx_tokenizer *tok)
{
    if (tok && tok->sp) return cdx_sptok_describe(tok->sp);
    if (tok && strcmp(tok->sot_text, "<start_of_text>") == 0)
        return "CLIP BPE carried by clipdex (open_clip SimpleTokenizer: <start_of_text> / "
               "<end_of_text>, pooled at the largest id)";
    return "CLIP byte-level BPE (vocab.json, merges.txt)";
}

/* ------------------------------------------------------------------ */
/* BPE cache                                                           */
/* ------------------------------------------------------------------ */

/* Copies the cached ids of word into ids[] (room for klen ids, since BPE
 * never yields more ids than bytes); returns the count, or -1 on a miss. */
static int cache_get(cdx_tokenizer *tok, const uint8_t *w, size_t n, uint64_t h, int32_t *ids)
{
    int found = -1;
    pthread_mutex_lock(&tok->lock);
    for (size_t i = h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const cache_entry *e = tok->cache[i];
        if (!e) break;
        if (e->hash == h && e->klen == n && memcmp(e->key, w, n) == 0) {
            memcpy(ids, e->ids, e->nids * sizeof *ids);
            found = (int)e->nids;
            break;
        }
    }
    pthread_mutex_unlock(&tok->lock);
    return found;
}

/* Best effort: an allocation failure only means the word is not cached. */
static void cache_put(cdx_tokenizer *tok, const uint8_t *w, size_t n, uint64_t h,
                      const int32_t *ids, size_t nids)
{
    cache_entry *e = malloc(sizeof *e + nids * sizeof *ids + n);
    size_t i;
    if (!e) return;
    e->hash = h;
    e->klen = (uint32_t)n;
    e->nids = (uint32_t)nids;
    e->ids = (int32_t *)(e + 1);
    e->key = (char *)(e->ids + nids);
    memcpy(e->ids, ids, nids * sizeof *ids);
    memcpy(e->key, w, n);
    pthread_mutex_lock(&tok->lock);
    if (tok->cache_n >= CACHE_MAX_FILL) cache_clear(tok);
    for (i = h & (CACHE_SLOTS - 1); tok->cache[i]; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const cache_entry *o = tok->cache[i];
        if (o->hash == h && o->klen == n && memcmp(o->key, w, n) == 0) break;
    }
    if (tok->cache[i]) {
        free(e); /* another thread got there first */
    } else {
        tok->cache[i] = e;
        tok->cache_n++;
    }
    pthread_mutex_unlock(&tok->lock);
}

/* ------------------------------------------------------------------ */
/* BPE                                                                 */
/* ------------------------------------------------------------------ */

/* The reference BPE: rounds of "find the lowest-ranked adjacent pair,
 * merge all its occurrences", as the Python bpe() does.  Same contract as
 * bpe_word() below.
 *
 * sym[0..len) are the current symbols; rank[i]/mid[i] describe the pair
 * (sym[i], sym[i+1]).  A rank identifies its pair, so "rank[i] == best"
 * finds every occurrence of the best pair.  After a merge round only the
 * pairs touching a merged symbol are looked up again; the others keep
 * their rank, found through src[] (where each symbol was before). */
static int bpe_word_scan(const cdx_tokenizer *tok, const uint8_t *w, size_t n, int32_t *ids)
{
    int32_t st_buf[4 * BPE_STACK_WORD];
    uint8_t fresh_buf[BPE_STACK_WORD];
    int32_t *sym, *rank, *mid, *src, *heap = NULL;
    uint8_t *fresh;
    size_t len = n, i, k;

    if (n > BPE_STACK_WORD) {
        size_t bytes;
        if (!cdx_mul_ok(n, 4 * sizeof(int32_t) + 1, &bytes) || !(heap = malloc(bytes)))
            return -1;
        sym = heap;
        fresh = (uint8_t *)(heap + 4 * n);
    } else {
        sym = st_buf;
        fresh = fresh_buf;
    }
    rank = sym + n;
    mid = rank + n;
    src = mid + n;

    for (i = 0; i + 1 < n; i++) sym[i] = tok->byte_id[w[i]];
    sym[n - 1] = tok->byte_eow_id[w[n - 1]];
    for (i = 0; i + 1 < len; i++) rank[i] = merge_get(tok, sym[i], sym[i + 1], &mid[i]);

    while (len > 1) {
        int32_t best = INT32_MAX;
        for (i = 0; i + 1 < len; i++)
            if (rank[i] < best) best = rank[i];
        if (best == INT32_MAX) break;
        /* Merge every occurrence, left to right, without overlap. */
        for (i = 0, k = 0; i < len; k++) {
            src[k] = (int32_t)i;
            if (i + 1 < len && rank[i] == best) {
                sym[k] = mid[i];
                fresh[k] = 1;
                i += 2;
            } else {
                sym[k] = sym[i];
                fresh[k] = 0;
                i += 1;
            }
        }
        len = k;
        for (k = 0; k + 1 < len; k++) {
            if (fresh[k] || fresh[k + 1]) {
                rank[k] = merge_get(tok, sym[k], sym[k + 1], &mid[k]);
            } else {
                rank[k] = rank[src[k]];
                mid[k] = mid[src[k]];
            }
        }
    }
    memcpy(ids, sym, len * sizeof *ids);
    free(heap);
    return (int)len;
}

/* The same result in O(n log n) for long words, where the scan above is
 * quadratic (a 200 KB word without spaces took over a second).
 *
 * Symbols form a linked list (nxt[]; sym[i] < 0 once i was merged into its
 * left neighbour).  A min-heap holds the candidate pairs ordered by
 * (rank, position).  Each round takes every entry of the lowest rank off
 * the heap first, then merges them in position order, so that pairs
 * created by the round wait for the next one: exactly the rounds of the
 * scan version, even for a merges file whose ranks are not in training
 * order.  Entries remember the two ids they were made for and are skipped
 * when either side has changed since (ids only ever get longer, so a
 * position never returns to an old id). */
typedef struct bpe_cand {
    int32_t rank, pos, left, right, id;
} bpe_cand;

static inline bool cand_less(const bpe_cand *a, const bpe_cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n)
{
    bpe_cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static int bpe_word_heap(const cdx_tokenizer *tok, const uint8_t *w, size_t n, int32_t *ids)
{
    int32_t *sym = NULL, *nxt, *prv, *touched;
    bpe_cand *heap = NULL, *round;
    size_t nh = 0, nr, nt, i, bytes, cap;
    int out = 0;

    /* Candidates: n - 1 initial pairs plus at most 2 per merge (< n). */
    if (!cdx_mul_ok(n, 3, &cap) || !cdx_mul_ok(cap, 2 * sizeof *heap, &bytes) ||
        !(heap = malloc(bytes)))
        return -1;
    round = heap + cap;
    if (!cdx_mul_ok(n, 4 * sizeof *sym, &bytes) || !(sym = malloc(bytes))) {
        free(heap);
        return -1;
    }
    nxt = sym + n;
    prv = nxt + n;
    touched = prv + n;

    for (i = 0; i < n; i++) {
        sym[i] = i + 1 < n ? tok->byte_id[w[i]] : tok->byte_eow_id[w[i]];
        nxt[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prv[i] = (int32_t)i - 1;
    }
    for (i = 0; i + 1 < n; i++) {
        bpe_cand c = {0, (int32_t)i, sym[i], sym[i + 1], 0};
        c.rank = merge_get(tok, c.left, c.right, &c.id);
        if (c.rank != INT32_MAX) heap_push(heap, &nh, c);
    }
    while (nh > 0) {
        int32_t best = heap[0].rank;
        for (nr = 0; nh > 0 && heap[0].rank == best;) round[nr++] = heap_pop(heap, &nh);
        nt = 0;
        for (i = 0; i < nr; i++) {
            const bpe_cand *c = &round[i];
            int32_t p = c->pos, q = nxt[p];
            if (sym[p] != c->left || q < 0 || sym[q] != c->right) continue; /* stale */
            sym[p] = c->id;
            sym[q] = -1;
            nxt[p] = nxt[q];
            if (nxt[q] >= 0) prv[nxt[q]] = p;
            touched[nt++] = p;
        }
        for (i = 0; i < nt; i++) {
            int32_t p = touched[i], q = nxt[p], o = prv[p];
            if (sym[p] < 0) continue;
            if (o >= 0) {
                bpe_cand c = {0, o, sym[o], sym[p], 0};
                c.rank = merge_get(tok, c.left, c.right, &c.id);
                if (c.rank != INT32_MAX) heap_push(heap, &nh, c);
            }
            if (q >= 0) {
                bpe_cand c = {0, p, sym[p], sym[q], 0};
                c.rank = merge_get(tok, c.left, c.right, &c.id);
                if (c.rank != INT32_MAX) heap_push(heap, &nh, c);
            }
        }
    }
    for (int32_t p = 0; p >= 0; p = nxt[p]) ids[out++] = sym[p];
    free(sym);
    free(heap);
    return out;
}

/* BPE of one pre-token of n >= 1 bytes into ids[] (room for n).  Returns
 * the number of ids, or -1 when out of memory.  Short words (nearly all)
 * take the scan, long ones the heap; CLIPDEX_BPE_REF=1 in the environment
 * when the tokenizer is opened forces the scan everywhere (the unit test
 * compares the two). */
static int bpe_word(const cdx_tokenizer *tok, const uint8_t *w, size_t n, int32_t *ids)
{
    if (n <= BPE_HEAP_MIN || tok->bpe_reference) return bpe_word_scan(tok, w, n, ids);
    return bpe_word_heap(tok, w, n, ids);
}

/* ------------------------------------------------------------------ */
/* Pre-tokenizer                                                       */
/* ------------------------------------------------------------------ */

static inline bool is_letter(uint32_t c)
{
    int cat = utf8proc_category((utf8proc_int32_t)c);
    return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

static inline bool is_number(uint32_t c)
{
    int cat = utf8proc_category((utf8proc_int32_t)c);
    return cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
}

/* One character against a lower-case ASCII pattern character under the
 * pattern's IGNORECASE.  The text is already lower case, so the only
 * extra match is the long s (U+017F), whose case folding is 's'. */
static inline bool ic_eq(uint32_t c, char p)
{
    return c == (uint32_t)p || (p == 's' && c == 0x17F);
}

/* Length in code points of the literal lit matched at s[i], or 0. */
static size_t match_lit(const uint32_t *s, size_t n, size_t i, const char *lit)
{
    size_t k;
    for (k = 0; lit[k]; k++)
        if (i + k >= n || !ic_eq(s[i + k], lit[k])) return 0;
    return k;
}

/* Length of the pre-token starting at s[i] (which is not whitespace):
 * the alternatives of CLIP's pattern in order, first match wins. */
static size_t pretoken_len(const cdx_tokenizer *tok, const uint32_t *s, size_t n, size_t i)
{
    const char *const lits[] = {
        tok->sot_text, tok->eot_text, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
    };
    size_t k;
    for (k = 0; k < sizeof lits / sizeof lits[0]; k++) {
        size_t m = match_lit(s, n, i, lits[k]);
        if (m) return m;
    }
    if (is_letter(s[i])) {
        for (k = i + 1; k < n && is_letter(s[k]); k++)
            ;
        return k - i;
    }
    if (is_number(s[i])) return 1;
    for (k = i + 1; k < n && !cdx_py_isspace(s[k]) && !is_letter(s[k]) && !is_number(s[k]); k++)
        ;
    return k - i;
}

/* ------------------------------------------------------------------ */
/* Encode                                                              */
/* ------------------------------------------------------------------ */

cdx_status cdx_tokenizer_encode(cdx_tokenizer *tok, const char *text, int max_len,
                                int32_t *ids, int *n_ids)
{
    if (tok && tok->sp) return cdx_sptok_encode(tok->sp, text, max_len, ids, n_ids);
    cdx_status st = CDX_OK;
    cdx_u32 raw = {0}, clean = {0};
    uint8_t *word = NULL;
    int32_t *wids = NULL;
    size_t bad = 0, cap = 0, i;
    int n = 0, room;

    if (!tok || !text || !ids || !n_ids)
        return cdx_fail(CDX_ERR_ARG, "cdx_tokenizer_encode: NULL argument");
    if (max_len < 2)
        return cdx_fail(CDX_ERR_ARG, "cdx_tokenizer_encode: max_len is %d, must be >= 2", max_len);

    st = cdx_utf8_decode(text, strlen(text), &raw, &bad);
    if (st == CDX_ERR_ARG) {
        st = cdx_fail(CDX_ERR_ARG, "text is not valid UTF-8 (byte %zu)", bad);
        goto cleanup;
    }
    if (st != CDX_OK) goto cleanup;
    st = cdx_clip_clean(raw.v, raw.n, &clean);
    if (st != CDX_OK) goto cleanup;

    ids[n++] = tok->sot;
    room = max_len - 1; /* ids[1..room) for the text, ids[room] for EOT */
    for (i = 0; i < clean.n && n < room;) {
        size_t len, nb = 0, need;
        uint64_t h;
        int k;
        if (cdx_py_isspace(clean.v[i])) {
            i++;
            continue;
        }
        len = pretoken_len(tok, clean.v, clean.n, i);
        if (!cdx_mul_ok(len, 4, &need)) {
            st = cdx_fail(CDX_ERR_NOMEM, "out of memory tokenizing");
            goto cleanup;
        }
        if (need > cap) {
            uint8_t *w = realloc(word, need);
            int32_t *d = w ? realloc(wids, need * sizeof *d) : NULL;
            if (w) word = w;
            if (d) wids = d;
            if (!w || !d) {
                st = cdx_fail(CDX_ERR_NOMEM, "out of memory tokenizing");
                goto cleanup;
            }
            cap = need;
        }
        for (size_t j = i; j < i + len; j++) {
            /* Inline UTF-8 encoding; the cleaned text only holds valid
             * scalar values. */
            uint32_t c = clean.v[j];
            if (c < 0x80) {
                word[nb++] = (uint8_t)c;
            } else if (c < 0x800) {
                word[nb++] = (uint8_t)(0xC0 | (c >> 6));
                word[nb++] = (uint8_t)(0x80 | (c & 0x3F));
            } else if (c < 0x10000) {
                word[nb++] = (uint8_t)(0xE0 | (c >> 12));
                word[nb++] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
                word[nb++] = (uint8_t)(0x80 | (c & 0x3F));
            } else {
                word[nb++] = (uint8_t)(0xF0 | (c >> 18));
                word[nb++] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
                word[nb++] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
                word[nb++] = (uint8_t)(0x80 | (c & 0x3F));
            }
        }
        i += len;

        /* The reference seeds its cache with the two special tokens, so
         * they map straight to their ids instead of going through BPE. */
        if (nb == strlen(tok->sot_text) && memcmp(word, tok->sot_text, nb) == 0) {
            wids[0] = tok->sot;
            k = 1;
        } else if (nb == strlen(tok->eot_text) && memcmp(word, tok->eot_text, nb) == 0) {
            wids[0] = tok->eot;
            k = 1;
        } else {
            h = hash_bytes(word, nb);
            k = nb <= CACHE_MAX_KEY ? cache_get(tok, word, nb, h, wids) : -1;
            if (k < 0) {
                k = bpe_word(tok, word, nb, wids);
                if (k < 0) {
                    st = cdx_fail(CDX_ERR_NOMEM, "out of memory tokenizing");
                    goto cleanup;
                }
                if (nb <= CACHE_MAX_KEY) cache_put(tok, word, nb, h, wids, (size_t)k);
            }
        }
        /* Truncation as clip.tokenize(truncate=True): keep the first
         * max_len - 2 text ids; EOT is appended below. */
        for (int j = 0; j < k && n < room; j++) ids[n++] = wids[j];
    }
    ids[n++] = tok->eot;
    *n_ids = n;
cleanup:
    free(word);
    free(wids);
    cdx_u32_release(&raw);
    cdx_u32_release(&clean);
    return st;
}
