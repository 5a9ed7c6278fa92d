/*
 * sptok.c - SigLIP's and SigLIP 2's text handling around SentencePiece
 * (see sptok.h for the steps, each one transformers' own).
 *
 * Text goes through UTF-32 (ftfy.h's strict decoder, Python's isspace)
 * and back to UTF-8 for the SentencePiece library.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <utf8proc.h>

#include "ftfy.h"
#include "internal.h"
#include "spm.h"
#include "sptok.h"

#define CONFIG_MAX_BYTES (4u << 20)

struct cdx_sptok {
    cdx_sptok_kind kind;
    cdx_spm *spm;
    int context;
    int lower, add_bos, add_eos, pad_left, masks;
    int32_t bos, eos, pad, unk, space; /* space: the piece "▁" (-1: none) */
    int unk_len;                       /* pieces "<unk>" encodes to */
    char *eos_s, *unk_s, *pad_s;
    char desc[96];
    /* Gemma: tokenizer_config.json's added_tokens_decoder, matched in the
     * raw text before anything else (as the fast tokenizer's added
     * vocabulary does), longest first. */
    struct added {
        char *s;
        int32_t id;
    } *added;
    int n_added;
};

/* ---------------------------------------------------------------- config */

/* A special token in tokenizer_config.json: a string or {"content": s}. */
static const char *token_str(const cJSON *root, const char *key, const char *def)
{
    const cJSON *v = root ? cJSON_GetObjectItemCaseSensitive(root, key) : NULL;
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : def;
}

static int bool_key(const cJSON *root, const char *key, int def)
{
    const cJSON *v = root ? cJSON_GetObjectItemCaseSensitive(root, key) : NULL;
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static cdx_status special_id(cdx_sptok *t, const char *model_path, const char *what,
                             const char *piece, int32_t *id)
{
    *id = cdx_spm_piece_id(t->spm, piece);
    if (*id < 0)
        return cdx_fail(CDX_ERR_MODEL, "%s: the %s token \"%s\" is not in the vocabulary",
                        model_path, what, piece);
    return CDX_OK;
}

/* Gemma's added tokens: {"ID": {"content": S, ...}, ...}. */
static cdx_status load_added(cdx_sptok *t, const cJSON *root, const char *path)
{
    const cJSON *d = root ? cJSON_GetObjectItemCaseSensitive(root, "added_tokens_decoder") : NULL;
    const cJSON *e;
    int n = 0;
    if (!cJSON_IsObject(d)) return CDX_OK;
    cJSON_ArrayForEach(e, d) n++;
    if (!n) return CDX_OK;
    if (!(t->added = calloc((size_t)n, sizeof *t->added))) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    cJSON_ArrayForEach(e, d) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        char *end = NULL;
        long id = strtol(e->string, &end, 10);
        if (!cJSON_IsString(c) || !*c->valuestring || !end || *end || id < 0 || id > INT32_MAX)
            return cdx_fail(CDX_ERR_MODEL, "%s: added_tokens_decoder: entry \"%s\" is not "
                            "\"ID\": {\"content\": TEXT}", path, e->string);
        if (!(t->added[t->n_added].s = strdup(c->valuestring)))
            return cdx_fail(CDX_ERR_NOMEM, "out of memory");
        t->added[t->n_added++].id = (int32_t)id;
    }
    return CDX_OK;
}

cdx_status cdx_sptok_open(const char *model_path, const char *config_path, cdx_sptok_kind kind,
                          int context, cdx_sptok **out)
{
    cdx_status st = CDX_OK;
    char *text = NULL;
    cJSON *root = NULL;
    cdx_sptok *t = calloc(1, sizeof *t);
    const int siglip = kind == CDX_SPTOK_SIGLIP;

    if (!t) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", model_path);
    if (context < 2) {
        st = cdx_fail(CDX_ERR_MODEL, "%s: context length %d is too short", model_path, context);
        goto fail;
    }
    t->kind = kind;
    t->context = context;
    if (config_path && access(config_path, F_OK) == 0) {
        if ((st = cdx_read_file(config_path, CONFIG_MAX_BYTES, &text, NULL))) goto fail;
        root = cJSON_Parse(text);
        if (!cJSON_IsObject(root)) {
            st = cdx_fail(CDX_ERR_MODEL, "%s: not a JSON object", config_path);
            goto fail;
        }
    }
    /* Defaults: the tokenizer classes' own (SiglipTokenizer lower-cases;
     * GemmaTokenizer adds bos, not eos).  Without the file at all, the
     * published checkpoints' settings (SigLIP 2: eos, no bos). */
    t->lower = siglip ? bool_key(root, "do_lower_case", 1) : 1;
    t->add_bos = siglip ? 0 : bool_key(root, "add_bos_token", root ? 1 : 0);
    t->add_eos = siglip ? 1 : bool_key(root, "add_eos_token", root ? 0 : 1);
    {
        const cJSON *ps = root ? cJSON_GetObjectItemCaseSensitive(root, "padding_side") : NULL;
        t->pad_left = cJSON_IsString(ps) && strcmp(ps->valuestring, "left") == 0;
        /* SigLIP's checkpoints list only input_ids (no attention mask is
         * passed to the model); Gemma's tokenizer returns one. */
        const cJSON *mi = root ? cJSON_GetObjectItemCaseSensitive(root, "model_input_names") : NULL;
        t->masks = !siglip;
        if (cJSON_IsArray(mi)) {
            const cJSON *e;
            t->masks = 0;
            cJSON_ArrayForEach(e, mi)
                if (cJSON_IsString(e) && strcmp(e->valuestring, "attention_mask") == 0) t->masks = 1;
        }
    }
    if (!(t->eos_s = strdup(token_str(root, "eos_token", siglip ? "</s>" : "<eos>"))) ||
        !(t->unk_s = strdup(token_str(root, "unk_token", "<unk>"))) ||
        !(t->pad_s = strdup(token_str(root, "pad_token", siglip ? "</s>" : "<pad>")))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", model_path);
        goto fail;
    }
    if ((st = cdx_spm_load(model_path, siglip, &t->spm))) goto fail;
    if ((st = special_id(t, model_path, "end", t->eos_s, &t->eos)) ||
        (st = special_id(t, model_path, "unknown", t->unk_s, &t->unk)) ||
        (st = special_id(t, model_path, "padding", t->pad_s, &t->pad)))
        goto fail;
    t->bos = -1;
    if (t->add_bos &&
        (st = special_id(t, model_path, "start", token_str(root, "bos_token", "<bos>"), &t->bos)))
        goto fail;
    t->space = cdx_spm_piece_id(t->spm, "\xe2\x96\x81");
    if (!siglip && (st = load_added(t, root, config_path))) goto fail;
    if (siglip) t->unk_len = cdx_spm_count(t->spm, t->unk_s);
    snprintf(t->desc, sizeof t->desc, "%s, %d pieces%s",
             siglip ? "SentencePiece unigram (SiglipTokenizer)"
                    : "SentencePiece BPE, byte fallback (Gemma, lower-cased)",
             cdx_spm_size(t->spm), t->lower ? "" : ", case kept");
    cJSON_Delete(root);
    free(text);
    *out = t;
    return CDX_OK;
fail:
    cJSON_Delete(root);
    free(text);
    cdx_sptok_free(t);
    return st;
}

void cdx_sptok_free(cdx_sptok *t)
{
    if (!t) return;
    cdx_spm_free(t->spm);
    free(t->eos_s);
    free(t->unk_s);
    free(t->pad_s);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].s);
    free(t->added);
    free(t);
}

int cdx_sptok_context(const cdx_sptok *t) { return t->context; }
int32_t cdx_sptok_pad(const cdx_sptok *t) { return t->pad; }
int32_t cdx_sptok_eos(const cdx_sptok *t) { return t->eos; }
int32_t cdx_sptok_bos(const cdx_sptok *t) { return t->bos; }
int cdx_sptok_masks(const cdx_sptok *t) { return t->masks; }
int cdx_sptok_pad_left(const cdx_sptok *t) { return t->pad_left; }
const char *cdx_sptok_describe(const cdx_sptok *t) { return t->desc; }
int cdx_sptok_vocab(const cdx_sptok *t) { return cdx_spm_size(t->spm); }

/* ---------------------------------------------------------------- text */

/* A growable byte string. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

static int sb_cp(sbuf *b, uint32_t c)
{
    char u[4];
    utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)c, (utf8proc_uint8_t *)u);
    return sb_put(b, u, (size_t)k);
}

/* One character lower-cased on its own, as both tokenizers do (Python's
 * str.lower of a one-character match, Rust's char::to_lowercase): the full
 * mapping, whose one multi-character case is U+0130. */
static int lower_cp(cdx_u32 *o, uint32_t c)
{
    uint32_t a = c, b = 0;
    if (c == 0x130) {
        a = 'i';
        b = 0x307;
    } else {
        a = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    }
    size_t need = o->n + 2;
    if (need > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        while (cap < need) cap *= 2;
        uint32_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) return 0;
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = a;
    if (b) o->v[o->n++] = b;
    return 1;
}

static int push_cp(cdx_u32 *o, uint32_t c)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        uint32_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) return 0;
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = c;
    return 1;
}

/* Python's string.punctuation. */
static int is_ascii_punct(uint32_t c)
{
    return c < 128 && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", (int)c) && c != 0;
}

/* An id list under construction, with a flag per id: from a special token. */
typedef struct idlist {
    int32_t *v;
    unsigned char *special;
    size_t n, cap;
} idlist;

static int il_push(idlist *l, int32_t id, int special)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        int32_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return 0;
        l->v = v;
        unsigned char *s = realloc(l->special, cap);
        if (!s) return 0;
        l->special = s;
        l->cap = cap;
    }
    l->v[l->n] = id;
    l->special[l->n++] = (unsigned char)special;
    return 1;
}

/* SiglipTokenizer._tokenize of s[0..n): canonicalise, encode after the
 * unknown token, drop its pieces. */
static cdx_status siglip_piece(const cdx_sptok *t, const uint32_t *s, size_t n, idlist *l)
{
    sbuf b = {0};
    cdx_status st = CDX_OK;
    int32_t *ids = NULL;
    int nids = 0;
    size_t i = 0, end = n;
    if (!sb_put(&b, t->unk_s, strlen(t->unk_s))) goto nomem;
    /* strip() after the whitespace runs became one space: skip leading
     * and trailing whitespace and punctuation-removed characters alike
     * (removing punctuation first can expose whitespace). */
    while (i < end && (cdx_py_isspace(s[i]) || is_ascii_punct(s[i]))) i++;
    while (end > i && (cdx_py_isspace(s[end - 1]) || is_ascii_punct(s[end - 1]))) end--;
    int in_space = 0;
    for (size_t k = i; k < end; k++) {
        uint32_t c = s[k];
        if (is_ascii_punct(c)) continue;
        if (cdx_py_isspace(c)) {
            in_space = 1;
            continue;
        }
        if (in_space && !sb_put(&b, " ", 1)) goto nomem;
        in_space = 0;
        if (!sb_cp(&b, c)) goto nomem;
    }
    if ((st = cdx_spm_encode(t->spm, b.p, b.n, t->unk_len, &ids, &nids))) goto out;
    for (int k = 0; k < nids; k++)
        if (!il_push(l, ids[k], 0)) goto nomem;
    goto out;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
out:
    free(ids);
    free(b.p);
    return st;
}

/* Does the special string sp (UTF-8) occur in s at i?  Its length in code
 * points in *len. */
static int match_special(const uint32_t *s, size_t n, size_t i, const char *sp, size_t *len)
{
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)sp;
    while (*p) {
        utf8proc_int32_t c;
        utf8proc_ssize_t r = utf8proc_iterate(p, -1, &c);
        if (r <= 0) return 0;
        if (i + k >= n || s[i + k] != (uint32_t)c) return 0;
        p += r;
        k++;
    }
    *len = k;
    return k > 0;
}

static cdx_status siglip_ids(const cdx_sptok *t, const uint32_t *s, size_t n, idlist *l)
{
    const char *specials[3] = {t->eos_s, t->unk_s, t->pad_s};
    const int32_t sp_ids[3] = {t->eos, t->unk, t->pad};
    size_t start = 0, i = 0;
    cdx_status st;
    int strip_next = 0;
    while (i <= n) {
        int which = -1;
        size_t len = 0, best = 0;
        if (i < n)
            for (int k = 0; k < 3; k++)
                if (match_special(s, n, i, specials[k], &len) && len > best) {
                    best = len;
                    which = k;
                }
        if (which < 0 && i < n) {
            i++;
            continue;
        }
        /* the text before the special token (or the end) */
        size_t a = start, e = i;
        if (strip_next)
            while (a < e && cdx_py_isspace(s[a])) a++;
        if (which >= 0)
            while (e > a && cdx_py_isspace(s[e - 1])) e--;
        if (e > a && (st = siglip_piece(t, s + a, e - a, l))) return st;
        if (which < 0) break;
        if (!il_push(l, sp_ids[which], 1)) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
        i += best;
        start = i;
        strip_next = 1;
    }
    /* A lone "▁" before a special token is dropped (SiglipTokenizer.tokenize). */
    if (l->n > 1 && t->space >= 0 && l->v[0] == t->space && !l->special[0] && l->special[1]) {
        memmove(l->v, l->v + 1, (l->n - 1) * sizeof *l->v);
        memmove(l->special, l->special + 1, l->n - 1);
        l->n--;
    }
    return CDX_OK;
}

/* Gemma: the raw text split at the added tokens; each other part lower-
 * cased and encoded on its own. */
static cdx_status gemma_part(const cdx_sptok *t, const uint32_t *s, size_t n, idlist *l)
{
    cdx_u32 low = {0};
    sbuf b = {0};
    int32_t *v = NULL;
    int nv = 0;
    cdx_status st = CDX_OK;
    for (size_t i = 0; i < n; i++)
        if (!(t->lower ? lower_cp(&low, s[i]) : push_cp(&low, s[i]))) goto nomem;
    for (size_t i = 0; i < low.n; i++)
        if (!sb_cp(&b, low.v[i])) goto nomem;
    if ((st = cdx_spm_encode(t->spm, b.p ? b.p : "", b.n, 0, &v, &nv))) goto out;
    for (int k = 0; k < nv; k++)
        if (!il_push(l, v[k], 0)) goto nomem;
    goto out;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
out:
    free(v);
    free(b.p);
    cdx_u32_release(&low);
    return st;
}

static cdx_status gemma_ids(const cdx_sptok *t, const uint32_t *s, size_t n, idlist *l)
{
    size_t start = 0, i = 0;
    cdx_status st;
    while (i < n) {
        int which = -1;
        size_t len = 0, best = 0;
        for (int k = 0; k < t->n_added; k++)
            if (match_special(s, n, i, t->added[k].s, &len) && len > best) {
                best = len;
                which = k;
            }
        if (which < 0) {
            i++;
            continue;
        }
        if (i > start && (st = gemma_part(t, s + start, i - start, l))) return st;
        if (!il_push(l, t->added[which].id, 1)) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
        i += best;
        start = i;
    }
    return n > start ? gemma_part(t, s + start, n - start, l) : CDX_OK;
}

cdx_status cdx_sptok_encode(const cdx_sptok *t, const char *text, int max_len, int32_t *ids,
                            int *n_ids)
{
    cdx_u32 u = {0}, low = {0};
    idlist l = {0};
    sbuf b = {0};
    cdx_status st = CDX_OK;
    size_t bad = 0;

    if (!t || !text || !ids || !n_ids || max_len < 2)
        return cdx_fail(CDX_ERR_ARG, "cdx_tokenizer_encode: invalid arguments");
    if (cdx_utf8_decode(text, strlen(text), &u, &bad) != CDX_OK)
        return cdx_fail(CDX_ERR_ARG, "text is not valid UTF-8 (at byte %zu)", bad);
    /* SigLIP: "\u2581" + text with every "\u2581" made a space. */
    if (t->kind == CDX_SPTOK_SIGLIP && !push_cp(&low, 0x2581)) goto nomem;
    for (size_t i = 0; t->kind == CDX_SPTOK_SIGLIP && i < u.n; i++) {
        uint32_t c = u.v[i] == 0x2581 ? ' ' : u.v[i];
        if (!(t->lower ? lower_cp(&low, c) : push_cp(&low, c))) goto nomem;
    }
    if (t->kind == CDX_SPTOK_SIGLIP) {
        if ((st = siglip_ids(t, low.v, low.n, &l))) goto out;
    } else if ((st = gemma_ids(t, u.v, u.n, &l))) {
        goto out;
    }
    {
        /* Truncate so the special tokens fit (transformers counts them
         * with build_inputs_with_special_tokens([])), add them, pad. */
        const int room = max_len - t->add_bos - t->add_eos;
        const int nbody = (int)l.n < room ? (int)l.n : room;
        /* SiglipTokenizer adds "</s>" only when the ids do not end with it. */
        const int eos = t->add_eos && !(t->kind == CDX_SPTOK_SIGLIP && nbody > 0 &&
                                        l.v[nbody - 1] == t->eos);
        const int pad = max_len - t->add_bos - nbody - eos;
        int o = 0;
        if (t->pad_left)
            for (int k = 0; k < pad; k++) ids[o++] = t->pad;
        if (t->add_bos) ids[o++] = t->bos;
        for (int k = 0; k < nbody; k++) ids[o++] = l.v[k];
        if (eos) ids[o++] = t->eos;
        if (!t->pad_left)
            for (int k = 0; k < pad; k++) ids[o++] = t->pad;
        *n_ids = o;
    }
    goto out;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
out:
    cdx_u32_release(&u);
    cdx_u32_release(&low);
    free(l.v);
    free(l.special);
    free(b.p);
    return st;
}
