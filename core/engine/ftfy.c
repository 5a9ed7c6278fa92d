/*
 * ftfy.c - the text cleanup OpenAI's CLIP tokenizer applies to a query
 * before BPE, on UTF-32 strings: a subset of ftfy.fix_text, Python's
 * html.unescape, and the Python str semantics (isspace, lower) that the
 * rest of the cleanup relies on.
 *
 * ftfy 6.x (the version pip installs for CLIP) fixes text in segments that
 * end at '\n', and inside each segment repeats these steps until the text
 * stops changing:
 *
 *   unescape_html        done: HTML5 names with ';' (a subset, below), the
 *                        all-caps spellings ftfy adds (&EACUTE;), numeric
 *                        references; off from the first segment holding '<'
 *   fix_encoding         partly: UTF-8 misread as Latin-1 or Windows-1252
 *                        ("â€œ" -> "“"), for the whole segment or for runs
 *                        inside it, gated by a small heuristic of our own
 *                        in place of ftfy's badness tables.  The other
 *                        single-byte codecs (1250/1251/..., MacRoman,
 *                        cp437), restore_byte_a0 and replace_lossy_sequences
 *                        are not implemented
 *   fix_c1_controls      done (U+0080..U+009F read as Windows-1252)
 *   fix_latin_ligatures  done
 *   fix_character_width  done (NFKC of U+FF01..U+FFEF, U+3000 -> space)
 *   uncurl_quotes        done
 *   fix_line_breaks      done
 *   fix_surrogates       nothing to do: decoded UTF-8 holds no surrogates
 *   remove_terminal_escapes, remove_control_chars, NFC     done
 *
 * Why a subset: the parts left out are heuristics over large generated
 * character tables, they only matter for text that was already damaged,
 * and a search query rarely is.  The unit test counts how many of the
 * golden ftfy records the subset reproduces.
 *
 * The HTML entity table is a subset of the HTML5 list too (~600 of 2231
 * names): every legacy name that may appear without ';' (these change how
 * Python parses "&notit;" so all of them are needed), the HTML 4 set,
 * Latin Extended-A letters and common punctuation/symbol names.  An unknown
 * name is left as it is, which is also what Python does for names outside
 * its table.
 *
 * Character properties come from utf8proc (Unicode 15); Python's own
 * tables may be one Unicode version apart, which only matters for newly
 * assigned characters.
 */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "ftfy.h"
#include "internal.h"

/* ftfy repeats its steps until the text is stable; two or three rounds are
 * normal.  The cap only guards against a cycle we did not foresee. */
#define FTFY_MAX_ROUNDS 16

/* ------------------------------------------------------------------ */
/* Growable UTF-32 strings                                             */
/* ------------------------------------------------------------------ */

void cdx_u32_release(cdx_u32 *s)
{
    if (!s) return;
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static bool u32_reserve(cdx_u32 *s, size_t extra)
{
    size_t need;
    uint32_t *p;
    if (!cdx_add_ok(s->n, extra, &need)) return false;
    if (need <= s->cap) return true; /* (also when nothing is allocated yet and need is 0) */
    if (!(p = cdx_grow(s->v, &s->cap, need, sizeof *p, 32))) return false;
    s->v = p;
    return true;
}

static inline bool u32_push(cdx_u32 *s, uint32_t c)
{
    if (s->n == s->cap && !u32_reserve(s, 1)) return false;
    s->v[s->n++] = c;
    return true;
}

static bool u32_append(cdx_u32 *s, const uint32_t *p, size_t n)
{
    if (!u32_reserve(s, n)) return false;
    if (n) memcpy(s->v + s->n, p, n * sizeof *p);
    s->n += n;
    return true;
}

static void u32_swap(cdx_u32 *a, cdx_u32 *b)
{
    cdx_u32 t = *a;
    *a = *b;
    *b = t;
}

static bool u32_equal(const cdx_u32 *a, const cdx_u32 *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}

static cdx_status oom(void)
{
    return cdx_fail(CDX_ERR_NOMEM, "out of memory while cleaning text");
}

/* ------------------------------------------------------------------ */
/* UTF-8                                                               */
/* ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid.
 * The second-byte ranges exclude overlong forms, surrogates and code
 * points above U+10FFFF, as Python's strict decoder does. */
static size_t utf8_seq(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint8_t b0 = p[0];
    uint8_t lo = 0x80, hi = 0xBF;
    size_t len, i;
    uint32_t c;
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
        c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        c = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        c = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    *cp = c;
    return len;
}

/* Decode n bytes of UTF-8 and append to out; false on invalid input. */
static bool utf8_append(const uint8_t *p, size_t n, cdx_u32 *out, size_t *bad, bool *nomem)
{
    size_t i = 0, k;
    uint32_t c;
    if (!u32_reserve(out, n)) { /* never more code points than bytes */
        *nomem = true;
        return false;
    }
    while (i < n) {
        k = utf8_seq(p + i, n - i, &c);
        if (!k) {
            if (bad) *bad = i;
            return false;
        }
        out->v[out->n++] = c;
        i += k;
    }
    return true;
}

cdx_status cdx_utf8_decode(const char *s, size_t len, cdx_u32 *out, size_t *bad_offset)
{
    bool nomem = false;
    out->n = 0;
    if (!utf8_append((const uint8_t *)s, len, out, bad_offset, &nomem))
        return nomem ? oom() : CDX_ERR_ARG;
    return CDX_OK;
}

/* Encode one code point; returns the byte count (1..4). */
static size_t utf8_put(uint32_t c, uint8_t *o)
{
    if (c < 0x80) {
        o[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (uint8_t)(0xC0 | (c >> 6));
        o[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (c >> 12));
        o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (c >> 18));
    o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Append a trusted UTF-8 literal (the entity tables). */
static bool u32_push_utf8(cdx_u32 *s, const char *lit)
{
    bool nomem = false;
    return utf8_append((const uint8_t *)lit, strlen(lit), s, NULL, &nomem);
}

/* ------------------------------------------------------------------ */
/* Character properties                                                */
/* ------------------------------------------------------------------ */

static inline int ucat(uint32_t c)
{
    return utf8proc_category((utf8proc_int32_t)c);
}

bool cdx_py_isspace(uint32_t c)
{
    const utf8proc_property_t *p;
    /* CPython's ASCII table: \t \n \v \f \r, the four information
     * separators U+001C..U+001F, and space. */
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    /* Otherwise: bidirectional class WS, B or S, or category Zs. */
    p = utf8proc_get_property((utf8proc_int32_t)c);
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

/* Windows-1252 for bytes 0x80..0x9F.  The five bytes Windows leaves
 * undefined map to themselves, as in ftfy's "sloppy" codec and in
 * html.unescape's table of invalid character references. */
static const uint16_t cp1252_c1[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
    0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

/* ------------------------------------------------------------------ */
/* HTML entities                                                       */
/* ------------------------------------------------------------------ */

typedef struct cdx_entity {
    const char *name;  /* without the '&'; legacy names appear twice */
    const char *value; /* UTF-8 */
} cdx_entity;

/* Generated from Python's html.entities.html5 (the WHATWG list), sorted by
 * byte value for binary search: the legacy names without ';' and their
 * ';' forms, html.entities.name2codepoint (HTML 4) with ';', every entity
 * naming one Latin Extended-A letter, and a list of punctuation/symbol
 * names (apos, hellip, mldr, check, star, frac13, ...).
 * ftfy_upper_entities: for each lower-case name above, its all-caps
 * spelling when html.unescape leaves that spelling alone, mapped to the
 * upper-cased value (ftfy.chardata builds HTML_ENTITIES by the same rule). */
static const cdx_entity html5_entities[] = {
    {"AElig", "\xc3\x86"}, {"AElig;", "\xc3\x86"}, {"AMP", "&"}, {"AMP;", "&"},
    {"Aacute", "\xc3\x81"}, {"Aacute;", "\xc3\x81"}, {"Abreve;", "\xc4\x82"},
    {"Acirc", "\xc3\x82"}, {"Acirc;", "\xc3\x82"}, {"Agrave", "\xc3\x80"},
    {"Agrave;", "\xc3\x80"}, {"Alpha;", "\xce\x91"}, {"Amacr;", "\xc4\x80"},
    {"Aogon;", "\xc4\x84"}, {"Aring", "\xc3\x85"}, {"Aring;", "\xc3\x85"},
    {"Atilde", "\xc3\x83"}, {"Atilde;", "\xc3\x83"}, {"Auml", "\xc3\x84"},
    {"Auml;", "\xc3\x84"}, {"Beta;", "\xce\x92"}, {"COPY", "\xc2\xa9"}, {"COPY;", "\xc2\xa9"},
    {"Cacute;", "\xc4\x86"}, {"Ccaron;", "\xc4\x8c"}, {"Ccedil", "\xc3\x87"},
    {"Ccedil;", "\xc3\x87"}, {"Ccirc;", "\xc4\x88"}, {"Cdot;", "\xc4\x8a"},
    {"CenterDot;", "\xc2\xb7"}, {"Chi;", "\xce\xa7"},
    {"CloseCurlyDoubleQuote;", "\xe2\x80\x9d"}, {"CloseCurlyQuote;", "\xe2\x80\x99"},
    {"Dagger;", "\xe2\x80\xa1"}, {"Dcaron;", "\xc4\x8e"}, {"Delta;", "\xce\x94"},
    {"DownArrow;", "\xe2\x86\x93"}, {"Dstrok;", "\xc4\x90"}, {"ENG;", "\xc5\x8a"},
    {"ETH", "\xc3\x90"}, {"ETH;", "\xc3\x90"}, {"Eacute", "\xc3\x89"}, {"Eacute;", "\xc3\x89"},
    {"Ecaron;", "\xc4\x9a"}, {"Ecirc", "\xc3\x8a"}, {"Ecirc;", "\xc3\x8a"},
    {"Edot;", "\xc4\x96"}, {"Egrave", "\xc3\x88"}, {"Egrave;", "\xc3\x88"},
    {"Emacr;", "\xc4\x92"}, {"Eogon;", "\xc4\x98"}, {"Epsilon;", "\xce\x95"},
    {"Eta;", "\xce\x97"}, {"Euml", "\xc3\x8b"}, {"Euml;", "\xc3\x8b"}, {"GT", ">"},
    {"GT;", ">"}, {"Gamma;", "\xce\x93"}, {"Gbreve;", "\xc4\x9e"}, {"Gcedil;", "\xc4\xa2"},
    {"Gcirc;", "\xc4\x9c"}, {"Gdot;", "\xc4\xa0"}, {"Hat;", "^"}, {"Hcirc;", "\xc4\xa4"},
    {"Hstrok;", "\xc4\xa6"}, {"IJlig;", "\xc4\xb2"}, {"Iacute", "\xc3\x8d"},
    {"Iacute;", "\xc3\x8d"}, {"Icirc", "\xc3\x8e"}, {"Icirc;", "\xc3\x8e"},
    {"Idot;", "\xc4\xb0"}, {"Igrave", "\xc3\x8c"}, {"Igrave;", "\xc3\x8c"},
    {"Imacr;", "\xc4\xaa"}, {"Iogon;", "\xc4\xae"}, {"Iota;", "\xce\x99"},
    {"Itilde;", "\xc4\xa8"}, {"Iuml", "\xc3\x8f"}, {"Iuml;", "\xc3\x8f"},
    {"Jcirc;", "\xc4\xb4"}, {"Kappa;", "\xce\x9a"}, {"Kcedil;", "\xc4\xb6"}, {"LT", "<"},
    {"LT;", "<"}, {"Lacute;", "\xc4\xb9"}, {"Lambda;", "\xce\x9b"}, {"Lcaron;", "\xc4\xbd"},
    {"Lcedil;", "\xc4\xbb"}, {"LeftArrow;", "\xe2\x86\x90"}, {"Lmidot;", "\xc4\xbf"},
    {"Lstrok;", "\xc5\x81"}, {"Mu;", "\xce\x9c"}, {"Nacute;", "\xc5\x83"},
    {"Ncaron;", "\xc5\x87"}, {"Ncedil;", "\xc5\x85"}, {"NewLine;", "\x0a"},
    {"NoBreak;", "\xe2\x81\xa0"}, {"NonBreakingSpace;", "\xc2\xa0"}, {"Ntilde", "\xc3\x91"},
    {"Ntilde;", "\xc3\x91"}, {"Nu;", "\xce\x9d"}, {"OElig;", "\xc5\x92"},
    {"Oacute", "\xc3\x93"}, {"Oacute;", "\xc3\x93"}, {"Ocirc", "\xc3\x94"},
    {"Ocirc;", "\xc3\x94"}, {"Odblac;", "\xc5\x90"}, {"Ograve", "\xc3\x92"},
    {"Ograve;", "\xc3\x92"}, {"Omacr;", "\xc5\x8c"}, {"Omega;", "\xce\xa9"},
    {"Omicron;", "\xce\x9f"}, {"OpenCurlyDoubleQuote;", "\xe2\x80\x9c"},
    {"OpenCurlyQuote;", "\xe2\x80\x98"}, {"Oslash", "\xc3\x98"}, {"Oslash;", "\xc3\x98"},
    {"Otilde", "\xc3\x95"}, {"Otilde;", "\xc3\x95"}, {"Ouml", "\xc3\x96"},
    {"Ouml;", "\xc3\x96"}, {"Phi;", "\xce\xa6"}, {"Pi;", "\xce\xa0"},
    {"Prime;", "\xe2\x80\xb3"}, {"Psi;", "\xce\xa8"}, {"QUOT", "\x22"}, {"QUOT;", "\x22"},
    {"REG", "\xc2\xae"}, {"REG;", "\xc2\xae"}, {"Racute;", "\xc5\x94"}, {"Rcaron;", "\xc5\x98"},
    {"Rcedil;", "\xc5\x96"}, {"Rho;", "\xce\xa1"}, {"RightArrow;", "\xe2\x86\x92"},
    {"Sacute;", "\xc5\x9a"}, {"Scaron;", "\xc5\xa0"}, {"Scedil;", "\xc5\x9e"},
    {"Scirc;", "\xc5\x9c"}, {"Sigma;", "\xce\xa3"}, {"THORN", "\xc3\x9e"},
    {"THORN;", "\xc3\x9e"}, {"TRADE;", "\xe2\x84\xa2"}, {"Tab;", "\x09"}, {"Tau;", "\xce\xa4"},
    {"Tcaron;", "\xc5\xa4"}, {"Tcedil;", "\xc5\xa2"}, {"Theta;", "\xce\x98"},
    {"ThinSpace;", "\xe2\x80\x89"}, {"Tstrok;", "\xc5\xa6"}, {"Uacute", "\xc3\x9a"},
    {"Uacute;", "\xc3\x9a"}, {"Ubreve;", "\xc5\xac"}, {"Ucirc", "\xc3\x9b"},
    {"Ucirc;", "\xc3\x9b"}, {"Udblac;", "\xc5\xb0"}, {"Ugrave", "\xc3\x99"},
    {"Ugrave;", "\xc3\x99"}, {"Umacr;", "\xc5\xaa"}, {"UnderBar;", "_"}, {"Uogon;", "\xc5\xb2"},
    {"UpArrow;", "\xe2\x86\x91"}, {"Upsilon;", "\xce\xa5"}, {"Uring;", "\xc5\xae"},
    {"Utilde;", "\xc5\xa8"}, {"Uuml", "\xc3\x9c"}, {"Uuml;", "\xc3\x9c"},
    {"VerticalLine;", "|"}, {"Wcirc;", "\xc5\xb4"}, {"Xi;", "\xce\x9e"}, {"Yacute", "\xc3\x9d"},
    {"Yacute;", "\xc3\x9d"}, {"Ycirc;", "\xc5\xb6"}, {"Yuml;", "\xc5\xb8"},
    {"Zacute;", "\xc5\xb9"}, {"Zcaron;", "\xc5\xbd"}, {"Zdot;", "\xc5\xbb"},
    {"ZeroWidthSpace;", "\xe2\x80\x8b"}, {"Zeta;", "\xce\x96"}, {"aacute", "\xc3\xa1"},
    {"aacute;", "\xc3\xa1"}, {"abreve;", "\xc4\x83"}, {"acirc", "\xc3\xa2"},
    {"acirc;", "\xc3\xa2"}, {"acute", "\xc2\xb4"}, {"acute;", "\xc2\xb4"},
    {"aelig", "\xc3\xa6"}, {"aelig;", "\xc3\xa6"}, {"agrave", "\xc3\xa0"},
    {"agrave;", "\xc3\xa0"}, {"alefsym;", "\xe2\x84\xb5"}, {"alpha;", "\xce\xb1"},
    {"amacr;", "\xc4\x81"}, {"amp", "&"}, {"amp;", "&"}, {"and;", "\xe2\x88\xa7"},
    {"ang;", "\xe2\x88\xa0"}, {"angst;", "\xc3\x85"}, {"aogon;", "\xc4\x85"}, {"apos;", "'"},
    {"approx;", "\xe2\x89\x88"}, {"aring", "\xc3\xa5"}, {"aring;", "\xc3\xa5"}, {"ast;", "*"},
    {"asymp;", "\xe2\x89\x88"}, {"atilde", "\xc3\xa3"}, {"atilde;", "\xc3\xa3"},
    {"auml", "\xc3\xa4"}, {"auml;", "\xc3\xa4"}, {"bdquo;", "\xe2\x80\x9e"},
    {"beta;", "\xce\xb2"}, {"bigstar;", "\xe2\x98\x85"}, {"blacklozenge;", "\xe2\xa7\xab"},
    {"brvbar", "\xc2\xa6"}, {"brvbar;", "\xc2\xa6"}, {"bsol;", "\x5c"},
    {"bull;", "\xe2\x80\xa2"}, {"bullet;", "\xe2\x80\xa2"}, {"cacute;", "\xc4\x87"},
    {"cap;", "\xe2\x88\xa9"}, {"caret;", "\xe2\x81\x81"}, {"ccaron;", "\xc4\x8d"},
    {"ccedil", "\xc3\xa7"}, {"ccedil;", "\xc3\xa7"}, {"ccirc;", "\xc4\x89"},
    {"cdot;", "\xc4\x8b"}, {"cedil", "\xc2\xb8"}, {"cedil;", "\xc2\xb8"}, {"cent", "\xc2\xa2"},
    {"cent;", "\xc2\xa2"}, {"centerdot;", "\xc2\xb7"}, {"check;", "\xe2\x9c\x93"},
    {"checkmark;", "\xe2\x9c\x93"}, {"chi;", "\xcf\x87"}, {"cir;", "\xe2\x97\x8b"},
    {"circ;", "\xcb\x86"}, {"clubs;", "\xe2\x99\xa3"}, {"clubsuit;", "\xe2\x99\xa3"},
    {"colon;", ":"}, {"comma;", ","}, {"commat;", "@"}, {"cong;", "\xe2\x89\x85"},
    {"copy", "\xc2\xa9"}, {"copy;", "\xc2\xa9"}, {"copysr;", "\xe2\x84\x97"},
    {"crarr;", "\xe2\x86\xb5"}, {"cross;", "\xe2\x9c\x97"}, {"cup;", "\xe2\x88\xaa"},
    {"curren", "\xc2\xa4"}, {"curren;", "\xc2\xa4"}, {"dArr;", "\xe2\x87\x93"},
    {"dagger;", "\xe2\x80\xa0"}, {"darr;", "\xe2\x86\x93"}, {"dash;", "\xe2\x80\x90"},
    {"dcaron;", "\xc4\x8f"}, {"deg", "\xc2\xb0"}, {"deg;", "\xc2\xb0"}, {"delta;", "\xce\xb4"},
    {"diamondsuit;", "\xe2\x99\xa6"}, {"diams;", "\xe2\x99\xa6"}, {"div;", "\xc3\xb7"},
    {"divide", "\xc3\xb7"}, {"divide;", "\xc3\xb7"}, {"dollar;", "$"},
    {"downarrow;", "\xe2\x86\x93"}, {"dstrok;", "\xc4\x91"}, {"dtri;", "\xe2\x96\xbf"},
    {"dtrif;", "\xe2\x96\xbe"}, {"eacute", "\xc3\xa9"}, {"eacute;", "\xc3\xa9"},
    {"ecaron;", "\xc4\x9b"}, {"ecirc", "\xc3\xaa"}, {"ecirc;", "\xc3\xaa"},
    {"edot;", "\xc4\x97"}, {"egrave", "\xc3\xa8"}, {"egrave;", "\xc3\xa8"},
    {"ell;", "\xe2\x84\x93"}, {"emacr;", "\xc4\x93"}, {"empty;", "\xe2\x88\x85"},
    {"emsp13;", "\xe2\x80\x84"}, {"emsp14;", "\xe2\x80\x85"}, {"emsp;", "\xe2\x80\x83"},
    {"eng;", "\xc5\x8b"}, {"ensp;", "\xe2\x80\x82"}, {"eogon;", "\xc4\x99"},
    {"epsilon;", "\xce\xb5"}, {"equals;", "="}, {"equiv;", "\xe2\x89\xa1"},
    {"eta;", "\xce\xb7"}, {"eth", "\xc3\xb0"}, {"eth;", "\xc3\xb0"}, {"euml", "\xc3\xab"},
    {"euml;", "\xc3\xab"}, {"euro;", "\xe2\x82\xac"}, {"excl;", "!"},
    {"exist;", "\xe2\x88\x83"}, {"female;", "\xe2\x99\x80"}, {"flat;", "\xe2\x99\xad"},
    {"fnof;", "\xc6\x92"}, {"forall;", "\xe2\x88\x80"}, {"frac12", "\xc2\xbd"},
    {"frac12;", "\xc2\xbd"}, {"frac13;", "\xe2\x85\x93"}, {"frac14", "\xc2\xbc"},
    {"frac14;", "\xc2\xbc"}, {"frac15;", "\xe2\x85\x95"}, {"frac16;", "\xe2\x85\x99"},
    {"frac18;", "\xe2\x85\x9b"}, {"frac23;", "\xe2\x85\x94"}, {"frac25;", "\xe2\x85\x96"},
    {"frac34", "\xc2\xbe"}, {"frac34;", "\xc2\xbe"}, {"frac35;", "\xe2\x85\x97"},
    {"frac38;", "\xe2\x85\x9c"}, {"frac45;", "\xe2\x85\x98"}, {"frac56;", "\xe2\x85\x9a"},
    {"frac58;", "\xe2\x85\x9d"}, {"frac78;", "\xe2\x85\x9e"}, {"frasl;", "\xe2\x81\x84"},
    {"frown;", "\xe2\x8c\xa2"}, {"gamma;", "\xce\xb3"}, {"gbreve;", "\xc4\x9f"},
    {"gcirc;", "\xc4\x9d"}, {"gdot;", "\xc4\xa1"}, {"ge;", "\xe2\x89\xa5"},
    {"geq;", "\xe2\x89\xa5"}, {"grave;", "`"}, {"gt", ">"}, {"gt;", ">"},
    {"hArr;", "\xe2\x87\x94"}, {"hairsp;", "\xe2\x80\x8a"}, {"half;", "\xc2\xbd"},
    {"harr;", "\xe2\x86\x94"}, {"hbar;", "\xe2\x84\x8f"}, {"hcirc;", "\xc4\xa5"},
    {"hearts;", "\xe2\x99\xa5"}, {"heartsuit;", "\xe2\x99\xa5"}, {"hellip;", "\xe2\x80\xa6"},
    {"horbar;", "\xe2\x80\x95"}, {"hstrok;", "\xc4\xa7"}, {"hyphen;", "\xe2\x80\x90"},
    {"iacute", "\xc3\xad"}, {"iacute;", "\xc3\xad"}, {"icirc", "\xc3\xae"},
    {"icirc;", "\xc3\xae"}, {"iexcl", "\xc2\xa1"}, {"iexcl;", "\xc2\xa1"},
    {"igrave", "\xc3\xac"}, {"igrave;", "\xc3\xac"}, {"ijlig;", "\xc4\xb3"},
    {"imacr;", "\xc4\xab"}, {"image;", "\xe2\x84\x91"}, {"imath;", "\xc4\xb1"},
    {"incare;", "\xe2\x84\x85"}, {"infin;", "\xe2\x88\x9e"}, {"inodot;", "\xc4\xb1"},
    {"int;", "\xe2\x88\xab"}, {"iogon;", "\xc4\xaf"}, {"iota;", "\xce\xb9"},
    {"iquest", "\xc2\xbf"}, {"iquest;", "\xc2\xbf"}, {"isin;", "\xe2\x88\x88"},
    {"itilde;", "\xc4\xa9"}, {"iuml", "\xc3\xaf"}, {"iuml;", "\xc3\xaf"},
    {"jcirc;", "\xc4\xb5"}, {"jmath;", "\xc8\xb7"}, {"kappa;", "\xce\xba"},
    {"kcedil;", "\xc4\xb7"}, {"kgreen;", "\xc4\xb8"}, {"lArr;", "\xe2\x87\x90"},
    {"lacute;", "\xc4\xba"}, {"lambda;", "\xce\xbb"}, {"lang;", "\xe2\x9f\xa8"},
    {"laquo", "\xc2\xab"}, {"laquo;", "\xc2\xab"}, {"larr;", "\xe2\x86\x90"}, {"lbrace;", "{"},
    {"lbrack;", "["}, {"lcaron;", "\xc4\xbe"}, {"lcedil;", "\xc4\xbc"},
    {"lceil;", "\xe2\x8c\x88"}, {"lcub;", "{"}, {"ldquo;", "\xe2\x80\x9c"},
    {"ldquor;", "\xe2\x80\x9e"}, {"le;", "\xe2\x89\xa4"}, {"leftarrow;", "\xe2\x86\x90"},
    {"leftrightarrow;", "\xe2\x86\x94"}, {"leq;", "\xe2\x89\xa4"}, {"lfloor;", "\xe2\x8c\x8a"},
    {"lmidot;", "\xc5\x80"}, {"lowast;", "\xe2\x88\x97"}, {"lowbar;", "_"},
    {"loz;", "\xe2\x97\x8a"}, {"lozenge;", "\xe2\x97\x8a"}, {"lpar;", "("},
    {"lrm;", "\xe2\x80\x8e"}, {"lsaquo;", "\xe2\x80\xb9"}, {"lsqb;", "["},
    {"lsquo;", "\xe2\x80\x98"}, {"lsquor;", "\xe2\x80\x9a"}, {"lstrok;", "\xc5\x82"},
    {"lt", "<"}, {"lt;", "<"}, {"ltri;", "\xe2\x97\x83"}, {"ltrif;", "\xe2\x97\x82"},
    {"macr", "\xc2\xaf"}, {"macr;", "\xc2\xaf"}, {"male;", "\xe2\x99\x82"},
    {"marker;", "\xe2\x96\xae"}, {"mdash;", "\xe2\x80\x94"}, {"micro", "\xc2\xb5"},
    {"micro;", "\xc2\xb5"}, {"midast;", "*"}, {"middot", "\xc2\xb7"}, {"middot;", "\xc2\xb7"},
    {"minus;", "\xe2\x88\x92"}, {"mldr;", "\xe2\x80\xa6"}, {"mu;", "\xce\xbc"},
    {"nabla;", "\xe2\x88\x87"}, {"nacute;", "\xc5\x84"}, {"napos;", "\xc5\x89"},
    {"natur;", "\xe2\x99\xae"}, {"natural;", "\xe2\x99\xae"}, {"nbsp", "\xc2\xa0"},
    {"nbsp;", "\xc2\xa0"}, {"ncaron;", "\xc5\x88"}, {"ncedil;", "\xc5\x86"},
    {"ndash;", "\xe2\x80\x93"}, {"ne;", "\xe2\x89\xa0"}, {"ni;", "\xe2\x88\x8b"},
    {"nldr;", "\xe2\x80\xa5"}, {"not", "\xc2\xac"}, {"not;", "\xc2\xac"},
    {"notin;", "\xe2\x88\x89"}, {"nsub;", "\xe2\x8a\x84"}, {"ntilde", "\xc3\xb1"},
    {"ntilde;", "\xc3\xb1"}, {"nu;", "\xce\xbd"}, {"num;", "#"}, {"numero;", "\xe2\x84\x96"},
    {"numsp;", "\xe2\x80\x87"}, {"oacute", "\xc3\xb3"}, {"oacute;", "\xc3\xb3"},
    {"ocirc", "\xc3\xb4"}, {"ocirc;", "\xc3\xb4"}, {"odblac;", "\xc5\x91"},
    {"oelig;", "\xc5\x93"}, {"ograve", "\xc3\xb2"}, {"ograve;", "\xc3\xb2"},
    {"ohm;", "\xce\xa9"}, {"oline;", "\xe2\x80\xbe"}, {"omacr;", "\xc5\x8d"},
    {"omega;", "\xcf\x89"}, {"omicron;", "\xce\xbf"}, {"oplus;", "\xe2\x8a\x95"},
    {"or;", "\xe2\x88\xa8"}, {"ordf", "\xc2\xaa"}, {"ordf;", "\xc2\xaa"}, {"ordm", "\xc2\xba"},
    {"ordm;", "\xc2\xba"}, {"oslash", "\xc3\xb8"}, {"oslash;", "\xc3\xb8"},
    {"otilde", "\xc3\xb5"}, {"otilde;", "\xc3\xb5"}, {"otimes;", "\xe2\x8a\x97"},
    {"ouml", "\xc3\xb6"}, {"ouml;", "\xc3\xb6"}, {"para", "\xc2\xb6"}, {"para;", "\xc2\xb6"},
    {"part;", "\xe2\x88\x82"}, {"percnt;", "%"}, {"period;", "."}, {"permil;", "\xe2\x80\xb0"},
    {"perp;", "\xe2\x8a\xa5"}, {"phi;", "\xcf\x86"}, {"phone;", "\xe2\x98\x8e"},
    {"pi;", "\xcf\x80"}, {"piv;", "\xcf\x96"}, {"planck;", "\xe2\x84\x8f"}, {"plus;", "+"},
    {"plusmn", "\xc2\xb1"}, {"plusmn;", "\xc2\xb1"}, {"pm;", "\xc2\xb1"}, {"pound", "\xc2\xa3"},
    {"pound;", "\xc2\xa3"}, {"prime;", "\xe2\x80\xb2"}, {"prod;", "\xe2\x88\x8f"},
    {"prop;", "\xe2\x88\x9d"}, {"psi;", "\xcf\x88"}, {"puncsp;", "\xe2\x80\x88"},
    {"quest;", "\x3f"}, {"quot", "\x22"}, {"quot;", "\x22"}, {"rArr;", "\xe2\x87\x92"},
    {"racute;", "\xc5\x95"}, {"radic;", "\xe2\x88\x9a"}, {"rang;", "\xe2\x9f\xa9"},
    {"raquo", "\xc2\xbb"}, {"raquo;", "\xc2\xbb"}, {"rarr;", "\xe2\x86\x92"}, {"rbrace;", "}"},
    {"rbrack;", "]"}, {"rcaron;", "\xc5\x99"}, {"rcedil;", "\xc5\x97"},
    {"rceil;", "\xe2\x8c\x89"}, {"rcub;", "}"}, {"rdquo;", "\xe2\x80\x9d"},
    {"rdquor;", "\xe2\x80\x9d"}, {"real;", "\xe2\x84\x9c"}, {"rect;", "\xe2\x96\xad"},
    {"reg", "\xc2\xae"}, {"reg;", "\xc2\xae"}, {"rfloor;", "\xe2\x8c\x8b"},
    {"rho;", "\xcf\x81"}, {"rightarrow;", "\xe2\x86\x92"}, {"rlm;", "\xe2\x80\x8f"},
    {"rpar;", ")"}, {"rsaquo;", "\xe2\x80\xba"}, {"rsqb;", "]"}, {"rsquo;", "\xe2\x80\x99"},
    {"rsquor;", "\xe2\x80\x99"}, {"rtri;", "\xe2\x96\xb9"}, {"rtrif;", "\xe2\x96\xb8"},
    {"sacute;", "\xc5\x9b"}, {"sbquo;", "\xe2\x80\x9a"}, {"scaron;", "\xc5\xa1"},
    {"scedil;", "\xc5\x9f"}, {"scirc;", "\xc5\x9d"}, {"sdot;", "\xe2\x8b\x85"},
    {"sect", "\xc2\xa7"}, {"sect;", "\xc2\xa7"}, {"semi;", ";"}, {"sharp;", "\xe2\x99\xaf"},
    {"shy", "\xc2\xad"}, {"shy;", "\xc2\xad"}, {"sigma;", "\xcf\x83"}, {"sigmaf;", "\xcf\x82"},
    {"sim;", "\xe2\x88\xbc"}, {"smile;", "\xe2\x8c\xa3"}, {"sol;", "/"},
    {"spades;", "\xe2\x99\xa0"}, {"spadesuit;", "\xe2\x99\xa0"}, {"squ;", "\xe2\x96\xa1"},
    {"square;", "\xe2\x96\xa1"}, {"squf;", "\xe2\x96\xaa"}, {"star;", "\xe2\x98\x86"},
    {"starf;", "\xe2\x98\x85"}, {"sub;", "\xe2\x8a\x82"}, {"sube;", "\xe2\x8a\x86"},
    {"sum;", "\xe2\x88\x91"}, {"sung;", "\xe2\x99\xaa"}, {"sup1", "\xc2\xb9"},
    {"sup1;", "\xc2\xb9"}, {"sup2", "\xc2\xb2"}, {"sup2;", "\xc2\xb2"}, {"sup3", "\xc2\xb3"},
    {"sup3;", "\xc2\xb3"}, {"sup;", "\xe2\x8a\x83"}, {"supe;", "\xe2\x8a\x87"},
    {"szlig", "\xc3\x9f"}, {"szlig;", "\xc3\x9f"}, {"target;", "\xe2\x8c\x96"},
    {"tau;", "\xcf\x84"}, {"tcaron;", "\xc5\xa5"}, {"tcedil;", "\xc5\xa3"},
    {"there4;", "\xe2\x88\xb4"}, {"theta;", "\xce\xb8"}, {"thetasym;", "\xcf\x91"},
    {"thinsp;", "\xe2\x80\x89"}, {"thorn", "\xc3\xbe"}, {"thorn;", "\xc3\xbe"},
    {"tilde;", "\xcb\x9c"}, {"times", "\xc3\x97"}, {"times;", "\xc3\x97"},
    {"trade;", "\xe2\x84\xa2"}, {"tstrok;", "\xc5\xa7"}, {"uArr;", "\xe2\x87\x91"},
    {"uacute", "\xc3\xba"}, {"uacute;", "\xc3\xba"}, {"uarr;", "\xe2\x86\x91"},
    {"ubreve;", "\xc5\xad"}, {"ucirc", "\xc3\xbb"}, {"ucirc;", "\xc3\xbb"},
    {"udblac;", "\xc5\xb1"}, {"ugrave", "\xc3\xb9"}, {"ugrave;", "\xc3\xb9"},
    {"umacr;", "\xc5\xab"}, {"uml", "\xc2\xa8"}, {"uml;", "\xc2\xa8"}, {"uogon;", "\xc5\xb3"},
    {"uparrow;", "\xe2\x86\x91"}, {"upsih;", "\xcf\x92"}, {"upsilon;", "\xcf\x85"},
    {"uring;", "\xc5\xaf"}, {"utilde;", "\xc5\xa9"}, {"utri;", "\xe2\x96\xb5"},
    {"utrif;", "\xe2\x96\xb4"}, {"uuml", "\xc3\xbc"}, {"uuml;", "\xc3\xbc"}, {"verbar;", "|"},
    {"vert;", "|"}, {"wcirc;", "\xc5\xb5"}, {"weierp;", "\xe2\x84\x98"}, {"xi;", "\xce\xbe"},
    {"yacute", "\xc3\xbd"}, {"yacute;", "\xc3\xbd"}, {"ycirc;", "\xc5\xb7"},
    {"yen", "\xc2\xa5"}, {"yen;", "\xc2\xa5"}, {"yuml", "\xc3\xbf"}, {"yuml;", "\xc3\xbf"},
    {"zacute;", "\xc5\xba"}, {"zcaron;", "\xc5\xbe"}, {"zdot;", "\xc5\xbc"},
    {"zeta;", "\xce\xb6"}, {"zwj;", "\xe2\x80\x8d"}, {"zwnj;", "\xe2\x80\x8c"},
};
static const cdx_entity ftfy_upper_entities[] = {
    {"AACUTE;", "\xc3\x81"}, {"ABREVE;", "\xc4\x82"}, {"ACIRC;", "\xc3\x82"},
    {"ACUTE;", "\xc2\xb4"}, {"AELIG;", "\xc3\x86"}, {"AGRAVE;", "\xc3\x80"},
    {"ALEFSYM;", "\xe2\x84\xb5"}, {"ALPHA;", "\xce\x91"}, {"AMACR;", "\xc4\x80"},
    {"AND;", "\xe2\x88\xa7"}, {"ANG;", "\xe2\x88\xa0"}, {"ANGST;", "\xc3\x85"},
    {"AOGON;", "\xc4\x84"}, {"APOS;", "'"}, {"APPROX;", "\xe2\x89\x88"}, {"ARING;", "\xc3\x85"},
    {"AST;", "*"}, {"ASYMP;", "\xe2\x89\x88"}, {"ATILDE;", "\xc3\x83"}, {"AUML;", "\xc3\x84"},
    {"BDQUO;", "\xe2\x80\x9e"}, {"BETA;", "\xce\x92"}, {"BIGSTAR;", "\xe2\x98\x85"},
    {"BLACKLOZENGE;", "\xe2\xa7\xab"}, {"BRVBAR;", "\xc2\xa6"}, {"BSOL;", "\x5c"},
    {"BULL;", "\xe2\x80\xa2"}, {"BULLET;", "\xe2\x80\xa2"}, {"CACUTE;", "\xc4\x86"},
    {"CAP;", "\xe2\x88\xa9"}, {"CARET;", "\xe2\x81\x81"}, {"CCARON;", "\xc4\x8c"},
    {"CCEDIL;", "\xc3\x87"}, {"CCIRC;", "\xc4\x88"}, {"CDOT;", "\xc4\x8a"},
    {"CEDIL;", "\xc2\xb8"}, {"CENT;", "\xc2\xa2"}, {"CENTERDOT;", "\xc2\xb7"},
    {"CHECK;", "\xe2\x9c\x93"}, {"CHECKMARK;", "\xe2\x9c\x93"}, {"CHI;", "\xce\xa7"},
    {"CIR;", "\xe2\x97\x8b"}, {"CIRC;", "\xcb\x86"}, {"CLUBS;", "\xe2\x99\xa3"},
    {"CLUBSUIT;", "\xe2\x99\xa3"}, {"COLON;", ":"}, {"COMMA;", ","}, {"COMMAT;", "@"},
    {"CONG;", "\xe2\x89\x85"}, {"CRARR;", "\xe2\x86\xb5"}, {"CROSS;", "\xe2\x9c\x97"},
    {"CUP;", "\xe2\x88\xaa"}, {"CURREN;", "\xc2\xa4"}, {"DAGGER;", "\xe2\x80\xa0"},
    {"DARR;", "\xe2\x86\x93"}, {"DASH;", "\xe2\x80\x90"}, {"DCARON;", "\xc4\x8e"},
    {"DEG;", "\xc2\xb0"}, {"DELTA;", "\xce\x94"}, {"DIAMONDSUIT;", "\xe2\x99\xa6"},
    {"DIAMS;", "\xe2\x99\xa6"}, {"DIV;", "\xc3\xb7"}, {"DIVIDE;", "\xc3\xb7"}, {"DOLLAR;", "$"},
    {"DOWNARROW;", "\xe2\x86\x93"}, {"DSTROK;", "\xc4\x90"}, {"DTRI;", "\xe2\x96\xbf"},
    {"DTRIF;", "\xe2\x96\xbe"}, {"EACUTE;", "\xc3\x89"}, {"ECARON;", "\xc4\x9a"},
    {"ECIRC;", "\xc3\x8a"}, {"EDOT;", "\xc4\x96"}, {"EGRAVE;", "\xc3\x88"},
    {"ELL;", "\xe2\x84\x93"}, {"EMACR;", "\xc4\x92"}, {"EMPTY;", "\xe2\x88\x85"},
    {"EMSP13;", "\xe2\x80\x84"}, {"EMSP14;", "\xe2\x80\x85"}, {"EMSP;", "\xe2\x80\x83"},
    {"ENSP;", "\xe2\x80\x82"}, {"EOGON;", "\xc4\x98"}, {"EPSILON;", "\xce\x95"},
    {"EQUALS;", "="}, {"EQUIV;", "\xe2\x89\xa1"}, {"ETA;", "\xce\x97"}, {"EUML;", "\xc3\x8b"},
    {"EURO;", "\xe2\x82\xac"}, {"EXCL;", "!"}, {"EXIST;", "\xe2\x88\x83"},
    {"FEMALE;", "\xe2\x99\x80"}, {"FLAT;", "\xe2\x99\xad"}, {"FNOF;", "\xc6\x91"},
    {"FORALL;", "\xe2\x88\x80"}, {"FRAC12;", "\xc2\xbd"}, {"FRAC13;", "\xe2\x85\x93"},
    {"FRAC14;", "\xc2\xbc"}, {"FRAC15;", "\xe2\x85\x95"}, {"FRAC16;", "\xe2\x85\x99"},
    {"FRAC18;", "\xe2\x85\x9b"}, {"FRAC23;", "\xe2\x85\x94"}, {"FRAC25;", "\xe2\x85\x96"},
    {"FRAC34;", "\xc2\xbe"}, {"FRAC35;", "\xe2\x85\x97"}, {"FRAC38;", "\xe2\x85\x9c"},
    {"FRAC45;", "\xe2\x85\x98"}, {"FRAC56;", "\xe2\x85\x9a"}, {"FRAC58;", "\xe2\x85\x9d"},
    {"FRAC78;", "\xe2\x85\x9e"}, {"FRASL;", "\xe2\x81\x84"}, {"FROWN;", "\xe2\x8c\xa2"},
    {"GAMMA;", "\xce\x93"}, {"GBREVE;", "\xc4\x9e"}, {"GCIRC;", "\xc4\x9c"},
    {"GDOT;", "\xc4\xa0"}, {"GE;", "\xe2\x89\xa5"}, {"GEQ;", "\xe2\x89\xa5"}, {"GRAVE;", "`"},
    {"HAIRSP;", "\xe2\x80\x8a"}, {"HALF;", "\xc2\xbd"}, {"HARR;", "\xe2\x86\x94"},
    {"HBAR;", "\xe2\x84\x8f"}, {"HCIRC;", "\xc4\xa4"}, {"HEARTS;", "\xe2\x99\xa5"},
    {"HEARTSUIT;", "\xe2\x99\xa5"}, {"HELLIP;", "\xe2\x80\xa6"}, {"HORBAR;", "\xe2\x80\x95"},
    {"HSTROK;", "\xc4\xa6"}, {"HYPHEN;", "\xe2\x80\x90"}, {"IACUTE;", "\xc3\x8d"},
    {"ICIRC;", "\xc3\x8e"}, {"IEXCL;", "\xc2\xa1"}, {"IGRAVE;", "\xc3\x8c"},
    {"IJLIG;", "\xc4\xb2"}, {"IMACR;", "\xc4\xaa"}, {"IMAGE;", "\xe2\x84\x91"}, {"IMATH;", "I"},
    {"INCARE;", "\xe2\x84\x85"}, {"INFIN;", "\xe2\x88\x9e"}, {"INODOT;", "I"},
    {"INT;", "\xe2\x88\xab"}, {"IOGON;", "\xc4\xae"}, {"IOTA;", "\xce\x99"},
    {"IQUEST;", "\xc2\xbf"}, {"ISIN;", "\xe2\x88\x88"}, {"ITILDE;", "\xc4\xa8"},
    {"IUML;", "\xc3\x8f"}, {"JCIRC;", "\xc4\xb4"}, {"JMATH;", "\xc8\xb7"},
    {"KAPPA;", "\xce\x9a"}, {"KCEDIL;", "\xc4\xb6"}, {"KGREEN;", "\xc4\xb8"},
    {"LACUTE;", "\xc4\xb9"}, {"LAMBDA;", "\xce\x9b"}, {"LANG;", "\xe2\x9f\xa8"},
    {"LAQUO;", "\xc2\xab"}, {"LARR;", "\xe2\x86\x90"}, {"LBRACE;", "{"}, {"LBRACK;", "["},
    {"LCARON;", "\xc4\xbd"}, {"LCEDIL;", "\xc4\xbb"}, {"LCEIL;", "\xe2\x8c\x88"},
    {"LCUB;", "{"}, {"LDQUO;", "\xe2\x80\x9c"}, {"LDQUOR;", "\xe2\x80\x9e"},
    {"LE;", "\xe2\x89\xa4"}, {"LEFTARROW;", "\xe2\x86\x90"},
    {"LEFTRIGHTARROW;", "\xe2\x86\x94"}, {"LEQ;", "\xe2\x89\xa4"}, {"LFLOOR;", "\xe2\x8c\x8a"},
    {"LMIDOT;", "\xc4\xbf"}, {"LOWAST;", "\xe2\x88\x97"}, {"LOWBAR;", "_"},
    {"LOZ;", "\xe2\x97\x8a"}, {"LOZENGE;", "\xe2\x97\x8a"}, {"LPAR;", "("},
    {"LRM;", "\xe2\x80\x8e"}, {"LSAQUO;", "\xe2\x80\xb9"}, {"LSQB;", "["},
    {"LSQUO;", "\xe2\x80\x98"}, {"LSQUOR;", "\xe2\x80\x9a"}, {"LSTROK;", "\xc5\x81"},
    {"MACR;", "\xc2\xaf"}, {"MALE;", "\xe2\x99\x82"}, {"MARKER;", "\xe2\x96\xae"},
    {"MDASH;", "\xe2\x80\x94"}, {"MICRO;", "\xce\x9c"}, {"MIDAST;", "*"},
    {"MIDDOT;", "\xc2\xb7"}, {"MINUS;", "\xe2\x88\x92"}, {"MLDR;", "\xe2\x80\xa6"},
    {"MU;", "\xce\x9c"}, {"NABLA;", "\xe2\x88\x87"}, {"NACUTE;", "\xc5\x83"},
    {"NAPOS;", "\xca\xbc" "N"}, {"NATUR;", "\xe2\x99\xae"}, {"NATURAL;", "\xe2\x99\xae"},
    {"NBSP;", "\xc2\xa0"}, {"NCARON;", "\xc5\x87"}, {"NCEDIL;", "\xc5\x85"},
    {"NDASH;", "\xe2\x80\x93"}, {"NE;", "\xe2\x89\xa0"}, {"NI;", "\xe2\x88\x8b"},
    {"NLDR;", "\xe2\x80\xa5"}, {"NOT;", "\xc2\xac"}, {"NOTIN;", "\xe2\x88\x89"},
    {"NSUB;", "\xe2\x8a\x84"}, {"NTILDE;", "\xc3\x91"}, {"NU;", "\xce\x9d"}, {"NUM;", "#"},
    {"NUMERO;", "\xe2\x84\x96"}, {"NUMSP;", "\xe2\x80\x87"}, {"OACUTE;", "\xc3\x93"},
    {"OCIRC;", "\xc3\x94"}, {"ODBLAC;", "\xc5\x90"}, {"OELIG;", "\xc5\x92"},
    {"OGRAVE;", "\xc3\x92"}, {"OHM;", "\xce\xa9"}, {"OLINE;", "\xe2\x80\xbe"},
    {"OMACR;", "\xc5\x8c"}, {"OMEGA;", "\xce\xa9"}, {"OMICRON;", "\xce\x9f"},
    {"OPLUS;", "\xe2\x8a\x95"}, {"OR;", "\xe2\x88\xa8"}, {"ORDF;", "\xc2\xaa"},
    {"ORDM;", "\xc2\xba"}, {"OSLASH;", "\xc3\x98"}, {"OTILDE;", "\xc3\x95"},
    {"OTIMES;", "\xe2\x8a\x97"}, {"OUML;", "\xc3\x96"}, {"PARA;", "\xc2\xb6"},
    {"PART;", "\xe2\x88\x82"}, {"PERCNT;", "%"}, {"PERIOD;", "."}, {"PERMIL;", "\xe2\x80\xb0"},
    {"PERP;", "\xe2\x8a\xa5"}, {"PHI;", "\xce\xa6"}, {"PHONE;", "\xe2\x98\x8e"},
    {"PI;", "\xce\xa0"}, {"PIV;", "\xce\xa0"}, {"PLANCK;", "\xe2\x84\x8f"}, {"PLUS;", "+"},
    {"PLUSMN;", "\xc2\xb1"}, {"PM;", "\xc2\xb1"}, {"POUND;", "\xc2\xa3"},
    {"PRIME;", "\xe2\x80\xb2"}, {"PROD;", "\xe2\x88\x8f"}, {"PROP;", "\xe2\x88\x9d"},
    {"PSI;", "\xce\xa8"}, {"PUNCSP;", "\xe2\x80\x88"}, {"QUEST;", "\x3f"},
    {"RACUTE;", "\xc5\x94"}, {"RADIC;", "\xe2\x88\x9a"}, {"RANG;", "\xe2\x9f\xa9"},
    {"RAQUO;", "\xc2\xbb"}, {"RARR;", "\xe2\x86\x92"}, {"RBRACE;", "}"}, {"RBRACK;", "]"},
    {"RCARON;", "\xc5\x98"}, {"RCEDIL;", "\xc5\x96"}, {"RCEIL;", "\xe2\x8c\x89"},
    {"RCUB;", "}"}, {"RDQUO;", "\xe2\x80\x9d"}, {"RDQUOR;", "\xe2\x80\x9d"},
    {"REAL;", "\xe2\x84\x9c"}, {"RECT;", "\xe2\x96\xad"}, {"RFLOOR;", "\xe2\x8c\x8b"},
    {"RHO;", "\xce\xa1"}, {"RIGHTARROW;", "\xe2\x86\x92"}, {"RLM;", "\xe2\x80\x8f"},
    {"RPAR;", ")"}, {"RSAQUO;", "\xe2\x80\xba"}, {"RSQB;", "]"}, {"RSQUO;", "\xe2\x80\x99"},
    {"RSQUOR;", "\xe2\x80\x99"}, {"RTRI;", "\xe2\x96\xb9"}, {"RTRIF;", "\xe2\x96\xb8"},
    {"SACUTE;", "\xc5\x9a"}, {"SBQUO;", "\xe2\x80\x9a"}, {"SCARON;", "\xc5\xa0"},
    {"SCEDIL;", "\xc5\x9e"}, {"SCIRC;", "\xc5\x9c"}, {"SDOT;", "\xe2\x8b\x85"},
    {"SECT;", "\xc2\xa7"}, {"SEMI;", ";"}, {"SHARP;", "\xe2\x99\xaf"}, {"SHY;", "\xc2\xad"},
    {"SIGMA;", "\xce\xa3"}, {"SIGMAF;", "\xce\xa3"}, {"SIM;", "\xe2\x88\xbc"},
    {"SMILE;", "\xe2\x8c\xa3"}, {"SOL;", "/"}, {"SPADES;", "\xe2\x99\xa0"},
    {"SPADESUIT;", "\xe2\x99\xa0"}, {"SQU;", "\xe2\x96\xa1"}, {"SQUARE;", "\xe2\x96\xa1"},
    {"SQUF;", "\xe2\x96\xaa"}, {"STAR;", "\xe2\x98\x86"}, {"STARF;", "\xe2\x98\x85"},
    {"SUB;", "\xe2\x8a\x82"}, {"SUBE;", "\xe2\x8a\x86"}, {"SUM;", "\xe2\x88\x91"},
    {"SUNG;", "\xe2\x99\xaa"}, {"SUP1;", "\xc2\xb9"}, {"SUP2;", "\xc2\xb2"},
    {"SUP3;", "\xc2\xb3"}, {"SUP;", "\xe2\x8a\x83"}, {"SUPE;", "\xe2\x8a\x87"},
    {"SZLIG;", "SS"}, {"TARGET;", "\xe2\x8c\x96"}, {"TAU;", "\xce\xa4"},
    {"TCARON;", "\xc5\xa4"}, {"TCEDIL;", "\xc5\xa2"}, {"THERE4;", "\xe2\x88\xb4"},
    {"THETA;", "\xce\x98"}, {"THETASYM;", "\xce\x98"}, {"THINSP;", "\xe2\x80\x89"},
    {"TILDE;", "\xcb\x9c"}, {"TIMES;", "\xc3\x97"}, {"TSTROK;", "\xc5\xa6"},
    {"UACUTE;", "\xc3\x9a"}, {"UARR;", "\xe2\x86\x91"}, {"UBREVE;", "\xc5\xac"},
    {"UCIRC;", "\xc3\x9b"}, {"UDBLAC;", "\xc5\xb0"}, {"UGRAVE;", "\xc3\x99"},
    {"UMACR;", "\xc5\xaa"}, {"UML;", "\xc2\xa8"}, {"UOGON;", "\xc5\xb2"},
    {"UPARROW;", "\xe2\x86\x91"}, {"UPSIH;", "\xcf\x92"}, {"UPSILON;", "\xce\xa5"},
    {"URING;", "\xc5\xae"}, {"UTILDE;", "\xc5\xa8"}, {"UTRI;", "\xe2\x96\xb5"},
    {"UTRIF;", "\xe2\x96\xb4"}, {"UUML;", "\xc3\x9c"}, {"VERBAR;", "|"}, {"VERT;", "|"},
    {"WCIRC;", "\xc5\xb4"}, {"WEIERP;", "\xe2\x84\x98"}, {"XI;", "\xce\x9e"},
    {"YACUTE;", "\xc3\x9d"}, {"YCIRC;", "\xc5\xb6"}, {"YEN;", "\xc2\xa5"},
    {"YUML;", "\xc5\xb8"}, {"ZACUTE;", "\xc5\xb9"}, {"ZCARON;", "\xc5\xbd"},
    {"ZDOT;", "\xc5\xbb"}, {"ZETA;", "\xce\x96"}, {"ZWJ;", "\xe2\x80\x8d"},
    {"ZWNJ;", "\xe2\x80\x8c"},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const char *entity_find(const cdx_entity *t, size_t nt, const char *name, size_t len)
{
    size_t lo = 0, hi = nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *e = t[mid].name;
        size_t elen = strlen(e);
        int c = memcmp(name, e, len < elen ? len : elen);
        if (c == 0) c = len < elen ? -1 : len > elen ? 1 : 0;
        if (c == 0) return t[mid].value;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static inline bool is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static inline bool is_hex(uint32_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static inline bool is_alnum(uint32_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static inline uint32_t hex_val(uint32_t c)
{
    return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* A numeric character reference, by html.unescape's rules (from the HTML5
 * tokenizer): NUL and out-of-range values become U+FFFD, 0x80..0x9F are
 * read as Windows-1252, 0x0D stays CR, and a list of control/non-character
 * code points is dropped.  huge: the digits did not fit in 32 bits. */
static bool push_charref(cdx_u32 *out, uint32_t num, bool huge)
{
    if (!huge) {
        if (num == 0) return u32_push(out, 0xFFFD);
        if (num == 0x0D) return u32_push(out, 0x0D);
        if (num >= 0x80 && num <= 0x9F) return u32_push(out, cp1252_c1[num - 0x80]);
    }
    if (huge || (num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return u32_push(out, 0xFFFD);
    if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) ||
        num == 0x7F || (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
        return true;
    return u32_push(out, num);
}

/* html.unescape: the pattern is
 *   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * and a name that is not in the table is retried by its longest prefix
 * (at least 2 characters) that is a legacy name ("&notit;" -> "¬it;"). */
static bool html_unescape_into(const uint32_t *s, size_t n, cdx_u32 *out)
{
    size_t i = 0;
    out->n = 0;
    while (i < n) {
        size_t j = i + 1, k, end, len, ascii, x;
        const char *v;
        char name[40];
        if (s[i] != '&') {
            if (!u32_push(out, s[i])) return false;
            i++;
            continue;
        }
        if (j < n && s[j] == '#') {
            bool hex = false, huge = false;
            uint32_t num = 0;
            k = j + 1;
            if (k + 1 < n && (s[k] == 'x' || s[k] == 'X') && is_hex(s[k + 1])) {
                hex = true;
                k++;
            } else if (!(k < n && is_digit(s[k]))) {
                if (!u32_push(out, '&')) return false;
                i++;
                continue;
            }
            for (; k < n && (hex ? is_hex(s[k]) : is_digit(s[k])); k++) {
                if (!huge) {
                    uint64_t t = (uint64_t)num * (hex ? 16 : 10) + hex_val(s[k]);
                    if (t > 0x10FFFF)
                        huge = true; /* past Unicode: the value no longer matters */
                    else
                        num = (uint32_t)t;
                }
            }
            if (k < n && s[k] == ';') k++;
            if (!push_charref(out, num, huge)) return false;
            i = k;
            continue;
        }
        for (k = j; k < n && k - j < 32; k++) {
            uint32_t c = s[k];
            if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' ||
                c == '#' || c == ';')
                break;
        }
        if (k == j) {
            if (!u32_push(out, '&')) return false;
            i++;
            continue;
        }
        end = (k < n && s[k] == ';') ? k + 1 : k;
        len = end - j;
        for (ascii = 0; ascii < len && s[j + ascii] < 0x80; ascii++)
            name[ascii] = (char)s[j + ascii];
        v = NULL;
        x = len;
        if (ascii == len) v = entity_find(html5_entities, N_ELEMS(html5_entities), name, len);
        if (!v) {
            for (x = (len - 1 < ascii ? len - 1 : ascii); x >= 2; x--) {
                v = entity_find(html5_entities, N_ELEMS(html5_entities), name, x);
                if (v) break;
            }
        }
        if (v) {
            if (!u32_push_utf8(out, v) || !u32_append(out, s + j + x, end - (j + x))) return false;
        } else {
            if (!u32_append(out, s + i, end - i)) return false;
        }
        i = end;
    }
    return true;
}

cdx_status cdx_html_unescape(const uint32_t *s, size_t n, cdx_u32 *out)
{
    return html_unescape_into(s, n, out) ? CDX_OK : oom();
}

/* ftfy's unescape_html: only "&name;" and "&#...;" with 1..24 ASCII
 * letters or digits and a closing ';' are touched (so "AT&T" and "&amp"
 * stay), names must be in the table, and a numeric reference is decoded
 * with html.unescape only when that consumes the ';'. */
static bool ftfy_unescape(const uint32_t *s, size_t n, cdx_u32 *out)
{
    size_t i = 0;
    cdx_u32 tmp = {0};
    bool ok = true;
    out->n = 0;
    while (i < n && ok) {
        size_t j, k, m;
        bool hash;
        const char *v = NULL;
        char name[32];
        if (s[i] != '&') {
            ok = u32_push(out, s[i++]);
            continue;
        }
        j = i + 1;
        hash = j < n && s[j] == '#';
        k = j + (hash ? 1 : 0);
        for (m = k; m < n && m - k < 24 && is_alnum(s[m]); m++)
            ;
        if (m == k || m >= n || s[m] != ';') {
            ok = u32_push(out, s[i++]);
            continue;
        }
        if (hash) {
            ok = html_unescape_into(s + i, m + 1 - i, &tmp);
            if (ok) {
                bool semi = false;
                for (size_t q = 0; q < tmp.n; q++) semi |= tmp.v[q] == ';';
                ok = semi ? u32_append(out, s + i, m + 1 - i) : u32_append(out, tmp.v, tmp.n);
            }
        } else {
            size_t len = m + 1 - j;
            for (size_t q = 0; q < len; q++) name[q] = (char)s[j + q];
            v = entity_find(html5_entities, N_ELEMS(html5_entities), name, len);
            if (!v) v = entity_find(ftfy_upper_entities, N_ELEMS(ftfy_upper_entities), name, len);
            ok = v ? u32_push_utf8(out, v) : u32_append(out, s + i, m + 1 - i);
        }
        i = m + 1;
    }
    cdx_u32_release(&tmp);
    return ok;
}

/* ------------------------------------------------------------------ */
/* ftfy's character-level fixes                                         */
/* ------------------------------------------------------------------ */

/* Encode s as a single-byte codec into bytes; false if some character has
 * no byte.  sloppy: ftfy's sloppy-windows-1252 (Windows-1252 with the five
 * undefined bytes passed through), else Latin-1.  U+FFFD is written as its
 * own UTF-8 so that it survives the re-decoding (ftfy routes it through
 * byte 0x1A and replace_lossy_sequences to the same effect). */
static bool encode_1byte(const uint32_t *s, size_t n, bool sloppy, uint8_t *b, size_t *nb)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c < 0x80 || (c >= 0xA0 && c <= 0xFF)) {
            b[o++] = (uint8_t)c;
        } else if (!sloppy) {
            if (c > 0xFF) return false;
            b[o++] = (uint8_t)c;
        } else if (c == 0xFFFD) {
            o += utf8_put(c, b + o);
        } else {
            int k;
            for (k = 0; k < 32 && cp1252_c1[k] != c; k++)
                ;
            if (k == 32) return false;
            b[o++] = (uint8_t)(0x80 + k);
        }
    }
    *nb = o;
    return true;
}

/* The byte a character stands for when UTF-8 was misread as Latin-1 or
 * Windows-1252, or -1.  Both readings are accepted at once, as mojibake
 * often mixes them (C1 controls from Latin-1 next to Windows-1252 quotes). */
static int mojibake_byte(uint32_t c)
{
    if (c < 0x100) return (int)c;
    for (int k = 0; k < 32; k++)
        if (cp1252_c1[k] == c) return 0x80 + k;
    return -1;
}

static bool is_cont_char(uint32_t c)
{
    int b = mojibake_byte(c);
    return b >= 0x80 && b <= 0xBF;
}

/* Our stand-in for ftfy's badness heuristic (which is a large hand-tuned
 * table we do not reproduce).  It only says yes to patterns that ordinary
 * text does not contain:
 *  - a C1 control character;
 *  - Â Ã Î Ð (how the UTF-8 lead bytes of Latin-1, Greek and Cyrillic
 *    letters look in Windows-1252) followed by a character that stands
 *    for a continuation byte, other than ’ and …, which do follow capitals
 *    in real text ("ESPAÑA…" must stay as it is);
 *  - â followed by two such characters (general punctuation and symbols:
 *    â€œ â€” â„¢ âœ”).
 * Everything it accepts is also flagged by ftfy, so when we fix something
 * ftfy would too; the converse does not hold (see the top of the file). */
static bool looks_like_mojibake(const uint32_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c >= 0x80 && c <= 0x9F) return true;
        if ((c == 0xC2 || c == 0xC3 || c == 0xCE || c == 0xD0) && i + 1 < n &&
            is_cont_char(s[i + 1]) && s[i + 1] != 0x2019 && s[i + 1] != 0x2026)
            return true;
        if (c == 0xE2 && i + 2 < n && is_cont_char(s[i + 1]) && is_cont_char(s[i + 2]))
            return true;
    }
    return false;
}

/* Length in characters of the UTF-8 sequence spelled by s[i..] in
 * mojibake bytes, 0 if none; its bytes go to b[]. */
static size_t mojibake_seq(const uint32_t *s, size_t n, size_t i, uint8_t *b)
{
    size_t len, k;
    uint32_t cp;
    int b0 = mojibake_byte(s[i]);
    if (b0 < 0xC2 || b0 > 0xF4) return 0;
    len = b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
    if (i + len > n) return 0;
    for (k = 0; k < len; k++) {
        int bk = mojibake_byte(s[i + k]);
        if (bk < 0) return 0;
        b[k] = (uint8_t)bk;
    }
    return utf8_seq(b, len, &cp) == len ? len : 0;
}

/* ftfy's decode_inconsistent_utf8: mojibake inside otherwise good text
 * ("¯\_(ã\x83\x84)_/¯").  Each run of consecutive mojibake sequences that
 * is shorter than the text and looks like mojibake by itself is decoded. */
static bool decode_embedded(const uint32_t *s, size_t n, cdx_u32 *out, bool *changed)
{
    size_t i = 0;
    out->n = 0;
    while (i < n) {
        uint8_t b[4];
        size_t start = i, k;
        while (i < n && (k = mojibake_seq(s, n, i, b)) > 0) i += k;
        if (i == start) {
            if (!u32_push(out, s[i++])) return false;
            continue;
        }
        if (i - start < n && looks_like_mojibake(s + start, i - start)) {
            for (size_t j = start; j < i; j += k) {
                uint32_t cp;
                k = mojibake_seq(s, n, j, b);
                utf8_seq(b, k, &cp);
                if (!u32_push(out, cp)) return false;
            }
            *changed = true;
        } else if (!u32_append(out, s + start, i - start)) {
            return false;
        }
    }
    return true;
}

/* One step of ftfy.fix_encoding, reduced to its main plans: the whole
 * segment is UTF-8 that was read as Latin-1 or Windows-1252 (encode it
 * back, decode as UTF-8, keep the result if that is valid), else such
 * mojibake is embedded in good text.  ftfy's remaining plan, Latin-1 meant
 * as Windows-1252, is what fix_c1_controls does right after. */
static bool fix_encoding_step(const uint32_t *s, size_t n, cdx_u32 *out, bool *changed, bool *nomem)
{
    uint8_t *b = NULL;
    size_t nb, cap;
    *changed = false;
    if (!looks_like_mojibake(s, n)) return true; /* also true of ASCII */
    if (!cdx_mul_ok(n, 3, &cap) || !(b = malloc(cap))) {
        *nomem = true;
        return false;
    }
    for (int sloppy = 0; sloppy <= 1 && !*changed; sloppy++) {
        if (!encode_1byte(s, n, sloppy, b, &nb)) continue;
        out->n = 0;
        if (utf8_append(b, nb, out, NULL, nomem))
            *changed = true;
        else if (*nomem)
            break;
    }
    free(b);
    if (*nomem) return false;
    if (!*changed && !decode_embedded(s, n, out, changed)) {
        *nomem = true;
        return false;
    }
    return true;
}

static bool fix_encoding(cdx_u32 *t, cdx_u32 *tmp)
{
    bool changed = true, nomem = false;
    for (int round = 0; changed && round < FTFY_MAX_ROUNDS; round++) {
        if (!fix_encoding_step(t->v, t->n, tmp, &changed, &nomem)) return false;
        if (changed) {
            if (u32_equal(t, tmp)) break;
            u32_swap(t, tmp);
        }
    }
    return true;
}

static bool fix_c1_controls(const uint32_t *s, size_t n, cdx_u32 *out)
{
    out->n = 0;
    if (!u32_reserve(out, n)) return false;
    for (size_t i = 0; i < n; i++)
        out->v[out->n++] = (s[i] >= 0x80 && s[i] <= 0x9F) ? cp1252_c1[s[i] - 0x80] : s[i];
    return true;
}

/* Latin ligatures and the digraphs kept for legacy encodings (ftfy's
 * LIGATURES table); ligatures of other scripts are left alone. */
static const char *latin_ligature(uint32_t c)
{
    switch (c) {
    case 0x0132: return "IJ";
    case 0x0133: return "ij";
    case 0x0149: return "\xca\xbcn"; /* U+02BC n; uncurl_quotes then makes it 'n */
    case 0x01C4: return "D\xc5\xbd";
    case 0x01C5: return "D\xc5\xbe";
    case 0x01C6: return "d\xc5\xbe";
    case 0x01C7: return "LJ";
    case 0x01C8: return "Lj";
    case 0x01C9: return "lj";
    case 0x01CA: return "NJ";
    case 0x01CB: return "Nj";
    case 0x01CC: return "nj";
    case 0x01F1: return "DZ";
    case 0x01F2: return "Dz";
    case 0x01F3: return "dz";
    case 0xFB00: return "ff";
    case 0xFB01: return "fi";
    case 0xFB02: return "fl";
    case 0xFB03: return "ffi";
    case 0xFB04: return "ffl";
    case 0xFB05: return "\xc5\xbft"; /* long s + t, as ftfy has it */
    case 0xFB06: return "st";
    }
    return NULL;
}

static bool fix_latin_ligatures(const uint32_t *s, size_t n, cdx_u32 *out)
{
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        const char *r = s[i] >= 0x132 ? latin_ligature(s[i]) : NULL;
        if (!(r ? u32_push_utf8(out, r) : u32_push(out, s[i]))) return false;
    }
    return true;
}

/* NFKC of one character into o[] (up to 18 code points); returns the count.
 * Used for the half-width and full-width forms only. */
static size_t nfkc_char(uint32_t c, uint32_t *o)
{
    utf8proc_int32_t buf[18];
    utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)c, buf, 18,
                                                 UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, NULL);
    if (k <= 0 || k > 18) {
        o[0] = c;
        return 1;
    }
    k = utf8proc_normalize_utf32(buf, k, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    if (k <= 0) {
        o[0] = c;
        return 1;
    }
    for (utf8proc_ssize_t i = 0; i < k; i++) o[i] = (uint32_t)buf[i];
    return (size_t)k;
}

/* Full-width ASCII and half-width katakana/hangul to their usual width
 * (each character of U+FF01..U+FFEF replaced by its NFKC form), and the
 * ideographic space to a space. */
static bool fix_character_width(const uint32_t *s, size_t n, cdx_u32 *out)
{
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i], r[18];
        size_t k;
        if (c == 0x3000) {
            if (!u32_push(out, ' ')) return false;
        } else if (c >= 0xFF01 && c <= 0xFFEF) {
            k = nfkc_char(c, r);
            if (!u32_append(out, r, k)) return false;
        } else if (!u32_push(out, c)) {
            return false;
        }
    }
    return true;
}

static bool uncurl_quotes(const uint32_t *s, size_t n, cdx_u32 *out)
{
    out->n = 0;
    if (!u32_reserve(out, n)) return false;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B))
            c = '\'';
        else if (c >= 0x201C && c <= 0x201F)
            c = '"';
        out->v[out->n++] = c;
    }
    return true;
}

/* CRLF, CR, U+2028, U+2029 and NEL all become LF. */
static bool fix_line_breaks(const uint32_t *s, size_t n, cdx_u32 *out)
{
    out->n = 0;
    if (!u32_reserve(out, n)) return false;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c == '\r') {
            if (i + 1 < n && s[i + 1] == '\n') i++;
            c = '\n';
        } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
            c = '\n';
        }
        out->v[out->n++] = c;
    }
    return true;
}

/* ANSI escapes: ESC '[' (digits or ';')* letter.  The digits are Python's
 * \d, i.e. any decimal digit (category Nd), not only ASCII. */
static bool remove_terminal_escapes(const uint32_t *s, size_t n, cdx_u32 *out)
{
    out->n = 0;
    if (!u32_reserve(out, n)) return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == 0x1B && i + 1 < n && s[i + 1] == '[') {
            size_t k = i + 2;
            while (k < n && (s[k] == ';' || ucat(s[k]) == UTF8PROC_CATEGORY_ND)) k++;
            if (k < n && ((s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'z')) {
                i = k;
                continue;
            }
        }
        out->v[out->n++] = s[i];
    }
    return true;
}

/* Controls with no visible effect: C0 except tab, LF, FF, CR; DEL; the
 * deprecated Arabic format controls; BOM; interlinear annotation and the
 * object replacement character.  C1 controls were converted before. */
static bool is_removed_control(uint32_t c)
{
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
           (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

static bool remove_control_chars(const uint32_t *s, size_t n, cdx_u32 *out)
{
    out->n = 0;
    if (!u32_reserve(out, n)) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_removed_control(s[i])) out->v[out->n++] = s[i];
    return true;
}

/* ------------------------------------------------------------------ */
/* NFC                                                                 */
/* ------------------------------------------------------------------ */

static bool nfc_into(const uint32_t *s, size_t n, cdx_u32 *out)
{
    const utf8proc_option_t opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    uint8_t *u8 = NULL;
    size_t nb = 0, need, i;
    utf8proc_ssize_t k;
    bool simple = true;
    out->n = 0;
    /* Nothing below U+0300 decomposes into anything that would not
     * compose back, or composes with a neighbour below U+0300. */
    for (i = 0; i < n && simple; i++) simple = s[i] < 0x300;
    if (simple) return u32_append(out, s, n);

    if (!cdx_mul_ok(n, 4, &need) || !(u8 = malloc(need ? need : 1))) return false;
    for (i = 0; i < n; i++) nb += utf8_put(s[i], u8 + nb);
    k = utf8proc_decompose(u8, (utf8proc_ssize_t)nb, NULL, 0, opts);
    if (k < 0 || !u32_reserve(out, (size_t)k + 1)) goto fail;
    k = utf8proc_decompose(u8, (utf8proc_ssize_t)nb, (utf8proc_int32_t *)out->v,
                           (utf8proc_ssize_t)out->cap, opts);
    if (k < 0 || (size_t)k > out->cap) goto fail;
    k = utf8proc_normalize_utf32((utf8proc_int32_t *)out->v, k, opts);
    if (k < 0) goto fail;
    out->n = (size_t)k;
    free(u8);
    return true;
fail:
    /* utf8proc only fails on out-of-range input, which a decoded string
     * cannot hold, or on memory: report it as the latter. */
    free(u8);
    return false;
}

cdx_status cdx_nfc(const uint32_t *s, size_t n, cdx_u32 *out)
{
    return nfc_into(s, n, out) ? CDX_OK : oom();
}

/* ------------------------------------------------------------------ */
/* fix_text                                                            */
/* ------------------------------------------------------------------ */

typedef bool (*fix_fn)(const uint32_t *s, size_t n, cdx_u32 *out);

/* One segment, fixed until stable.  t holds the text on entry and the
 * result on return. */
static bool fix_segment(cdx_u32 *t, bool unescape, cdx_u32 *tmp, cdx_u32 *orig)
{
    static const fix_fn steps[] = {
        fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes,
        fix_line_breaks, remove_terminal_escapes, remove_control_chars, nfc_into,
    };
    for (int round = 0; round < FTFY_MAX_ROUNDS; round++) {
        orig->n = 0;
        if (!u32_append(orig, t->v, t->n)) return false;
        if (unescape) {
            if (!ftfy_unescape(t->v, t->n, tmp)) return false;
            u32_swap(t, tmp);
        }
        if (!fix_encoding(t, tmp)) return false;
        for (size_t k = 0; k < N_ELEMS(steps); k++) {
            if (!steps[k](t->v, t->n, tmp)) return false;
            u32_swap(t, tmp);
        }
        if (u32_equal(t, orig)) break;
    }
    return true;
}

cdx_status cdx_ftfy_fix_text(const uint32_t *s, size_t n, cdx_u32 *out)
{
    cdx_u32 seg = {0}, tmp = {0}, orig = {0};
    bool unescape = true, ok = true;
    size_t pos = 0;
    out->n = 0;
    while (pos < n && ok) {
        size_t end = pos;
        while (end < n && s[end] != '\n') end++;
        if (end < n) end++; /* the segment keeps its '\n' */
        /* "auto" HTML unescaping: a '<' suggests real HTML, where entities
         * must stay; ftfy then stops unescaping for the rest of the text. */
        for (size_t i = pos; i < end && unescape; i++)
            if (s[i] == '<') unescape = false;
        seg.n = 0;
        ok = u32_append(&seg, s + pos, end - pos) && fix_segment(&seg, unescape, &tmp, &orig) &&
             u32_append(out, seg.v, seg.n);
        pos = end;
    }
    cdx_u32_release(&seg);
    cdx_u32_release(&tmp);
    cdx_u32_release(&orig);
    return ok ? CDX_OK : oom();
}

/* ------------------------------------------------------------------ */
/* Python's str.lower()                                                */
/* ------------------------------------------------------------------ */

/* Cased (Lowercase or Uppercase or Lt).  utf8proc has no such property:
 * letters Lu/Ll/Lt, anything with a case mapping (circled and Roman
 * numeral letters), plus the Other_Lowercase modifier letters, which have
 * no mapping. */
static bool is_cased(uint32_t c)
{
    static const uint32_t other[][2] = {
        {0x00AA, 0x00AA}, {0x00BA, 0x00BA}, {0x02B0, 0x02B8}, {0x02C0, 0x02C1},
        {0x02E0, 0x02E4}, {0x0345, 0x0345}, {0x037A, 0x037A}, {0x10FC, 0x10FC},
        {0x1D2C, 0x1D6A}, {0x1D78, 0x1D78}, {0x1D9B, 0x1DBF}, {0x2071, 0x2071},
        {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2C7C, 0x2C7D}, {0xA69C, 0xA69D},
        {0xA770, 0xA770}, {0xA7F8, 0xA7F9}, {0xAB5C, 0xAB5F}, {0x1F130, 0x1F149},
        {0x1F150, 0x1F169}, {0x1F170, 0x1F189},
    };
    int cat = ucat(c);
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT)
        return true;
    if ((uint32_t)utf8proc_tolower((utf8proc_int32_t)c) != c ||
        (uint32_t)utf8proc_toupper((utf8proc_int32_t)c) != c)
        return true;
    for (size_t i = 0; i < N_ELEMS(other); i++)
        if (c >= other[i][0] && c <= other[i][1]) return true;
    return false;
}

/* Case_Ignorable: Mn Me Cf Lm Sk, and the Word_Break classes MidLetter,
 * MidNumLet and Single_Quote (apostrophes, periods, colons, middle dots). */
static bool is_case_ignorable(uint32_t c)
{
    switch (ucat(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
        return true;
    default:
        break;
    }
    switch (c) {
    case 0x0027: case 0x002E: case 0x003A: case 0x00B7: case 0x0387: case 0x055F:
    case 0x05F4: case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xFE13:
    case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return true;
    }
    return false;
}

/* Python lowers U+03A3 to final sigma when a cased letter precedes it and
 * none follows (skipping case-ignorable characters both ways). */
static bool final_sigma(const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && is_case_ignorable(s[j - 1])) j--;
    if (j == 0 || !is_cased(s[j - 1])) return false;
    for (j = i + 1; j < n && is_case_ignorable(s[j]); j++)
        ;
    return j == n || !is_cased(s[j]);
}

static bool lower_into(const uint32_t *s, size_t n, cdx_u32 *out)
{
    out->n = 0;
    if (!u32_reserve(out, n)) return false;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c < 0x80) {
            if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
        } else if (c == 0x0130) {
            /* The one unconditional multi-character lower-case mapping of
             * SpecialCasing.txt: İ -> i + COMBINING DOT ABOVE. */
            if (!u32_push(out, 'i')) return false;
            c = 0x0307;
        } else if (c == 0x03A3) {
            c = final_sigma(s, n, i) ? 0x03C2 : 0x03C3;
        } else {
            c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
        if (!u32_push(out, c)) return false;
    }
    return true;
}

cdx_status cdx_py_lower(const uint32_t *s, size_t n, cdx_u32 *out)
{
    return lower_into(s, n, out) ? CDX_OK : oom();
}

/* ------------------------------------------------------------------ */
/* The CLIP cleanup                                                    */
/* ------------------------------------------------------------------ */

cdx_status cdx_clip_clean(const uint32_t *s, size_t n, cdx_u32 *out)
{
    cdx_status st;
    cdx_u32 a = {0}, b = {0};
    bool space = false;

    st = cdx_ftfy_fix_text(s, n, &a);
    if (st != CDX_OK) goto cleanup;
    /* html.unescape twice, as CLIP does ("&amp;lt;" -> "<"). */
    if (!html_unescape_into(a.v, a.n, &b) || !html_unescape_into(b.v, b.n, &a)) {
        st = oom();
        goto cleanup;
    }
    /* strip(), \s+ -> ' ', strip(): one pass that drops leading and
     * trailing whitespace and turns every inner run into one space. */
    b.n = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (cdx_py_isspace(a.v[i])) {
            space = b.n > 0;
            continue;
        }
        if ((space && !u32_push(&b, ' ')) || !u32_push(&b, a.v[i])) {
            st = oom();
            goto cleanup;
        }
        space = false;
    }
    if (!lower_into(b.v, b.n, out)) st = oom();
cleanup:
    cdx_u32_release(&a);
    cdx_u32_release(&b);
    return st;
}
