/*
 * test_tokenizer.c - the CLIP tokenizer against OpenAI's clip.tokenize.
 *
 * Golden ids come from shared/golden/tokenizer_public.jsonl (written with
 * the reference Python tokenizer).  Records whose text ftfy does not change
 * must match exactly.  For records that ftfy changes, our ftfy is a subset:
 * the ones it is meant to handle are listed in ftfy_covered[] and must
 * match; the others are only counted and reported.
 *
 * The vocabulary is the repository's (data/clip, run from the top of the
 * tree); the golden file is found through $CLIPDEX_SHARED (default
 * "../shared"), and its tests are skipped, saying so, without it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/ftfy.h"
#include "internal.h"
#include "tap.h"

#define MAX_IDS 1024

/* ftfy_changes records that our ftfy subset is meant to reproduce. */
static const char *const ftfy_covered[] = {
    "\xe2\x80\x9c" "curly\xe2\x80\x9d \xe2\x80\x98quotes\xe2\x80\x99", /* “curly” ‘quotes’ */
    "\xc2\xabguillemets\xc2\xbb \xe2\x80\x9elow quotes\xe2\x80\x9c",   /* «..» „..“ */
    "it\xe2\x80\x99s (curly apostrophe)",
    "&#x27;hex&#x27;",
    "a&nbsp;b",
    "&amp;amp;",
    "&AMP; &Amp;",
    "\r\n",
    "a\xe2\x80\xa8" "b (line separator)",
    "a\xc2\x85" "b (NEL)",
    "a\x1c" "b (file separator)",
    "\xc3\xa2\xe2\x82\xac\xc5\x93smart quotes\xc3\xa2\xe2\x82\xac\xc2\x9d", /* mojibake */
    "\x1b[31mred\x1b[0m",
    "\xef\xac\x81sh \xef\xac\x82ower", /* ligatures */
    "ctrl\x01\x02\x07" "chars",
    "\x7f" "del",
};

typedef struct record {
    char *text;
    int32_t ids[MAX_IDS];
    int n;
    int ftfy;
    char category[32];
} record;

static record *records;
static int n_records;
static char shared_dir[512];

static char *shared_path(const char *rel)
{
    return cdx_path_join(shared_dir, rel);
}

static int load_golden(void)
{
    char *path = shared_path("golden/tokenizer_public.jsonl");
    char *buf = NULL, *line, *save = NULL;
    size_t len;
    if (!path || cdx_read_file(path, 16u << 20, &buf, &len) != CDX_OK) {
        diag("cannot read golden file: %s", cdx_last_error());
        free(path);
        return -1;
    }
    free(path);
    records = calloc(1024, sizeof *records);
    for (line = strtok_r(buf, "\n", &save); line && n_records < 1024;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line), *ids, *it;
        record *r = &records[n_records];
        if (!j) continue;
        r->text = strdup(cJSON_GetObjectItem(j, "text")->valuestring);
        r->ftfy = cJSON_IsTrue(cJSON_GetObjectItem(j, "ftfy_changes"));
        snprintf(r->category, sizeof r->category, "%s",
                 cJSON_GetObjectItem(j, "category")->valuestring);
        ids = cJSON_GetObjectItem(j, "ids");
        cJSON_ArrayForEach(it, ids) if (r->n < MAX_IDS) r->ids[r->n++] = (int32_t)it->valueint;
        cJSON_Delete(j);
        n_records++;
    }
    free(buf);
    return 0;
}

/* A printable, one-line rendering of a test string for TAP messages. */
static const char *show(const char *s)
{
    static char out[80];
    size_t o = 0;
    for (; *s && o + 5 < sizeof out; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

/* ok() a comparison, with the first mismatch as a diagnostic. */
static int check_ids(const int32_t *got, int n_got, const int32_t *want, int n_want,
                     const char *what)
{
    int i;
    for (i = 0; i < n_got && i < n_want && got[i] == want[i]; i++)
        ;
    if (ok(i == n_got && i == n_want, "%s", what)) return 1;
    diag("  first difference at index %d: got %d, want %d (lengths %d/%d)", i,
         i < n_got ? got[i] : -1, i < n_want ? want[i] : -1, n_got, n_want);
    return 0;
}

static int encode(cdx_tokenizer *tok, const char *text, int max_len, int32_t *ids, int *n)
{
    cdx_status st = cdx_tokenizer_encode(tok, text, max_len, ids, n);
    if (st != CDX_OK) {
        diag("  encode failed: %s: %s", cdx_status_name(st), cdx_last_error());
        *n = 0;
    }
    return st == CDX_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int is_covered(const char *text)
{
    for (size_t i = 0; i < sizeof ftfy_covered / sizeof ftfy_covered[0]; i++)
        if (strcmp(text, ftfy_covered[i]) == 0) return 1;
    return 0;
}

/* ---- golden records ---- */

static void test_golden(cdx_tokenizer *tok)
{
    int32_t ids[MAX_IDS];
    int n, plain = 0, plain_ok = 0, fx = 0, fx_ok = 0, claimed = 0;
    for (int r = 0; r < n_records; r++) {
        record *g = &records[r];
        char what[160];
        encode(tok, g->text, MAX_IDS, ids, &n);
        snprintf(what, sizeof what, "golden %s: '%s'", g->category, show(g->text));
        if (!g->ftfy) {
            plain++;
            plain_ok += check_ids(ids, n, g->ids, g->n, what);
            continue;
        }
        fx++;
        if (is_covered(g->text)) {
            claimed++;
            fx_ok += check_ids(ids, n, g->ids, g->n, what);
        } else {
            int same = n == g->n && memcmp(ids, g->ids, (size_t)n * sizeof *ids) == 0;
            fx_ok += same;
            diag("ftfy record not covered (%s): '%s'", same ? "matches anyway" : "differs",
                 show(g->text));
        }
    }
    diag("golden: %d/%d records without ftfy changes match", plain_ok, plain);
    diag("golden: %d/%d records with ftfy changes match (%d claimed as covered)", fx_ok, fx,
         claimed);
    ok(claimed == (int)(sizeof ftfy_covered / sizeof ftfy_covered[0]),
       "every covered ftfy text is in the golden file (%d)", claimed);
}

/* ---- truncation ---- */

static void test_truncation(cdx_tokenizer *tok)
{
    int32_t ids[MAX_IDS], want[MAX_IDS];
    int n, tested = 0;
    const int32_t sot = cdx_tokenizer_sot(tok), eot = cdx_tokenizer_eot(tok);
    for (int r = 0; r < n_records; r++) {
        record *g = &records[r];
        int nw;
        char what[160];
        if (g->ftfy || g->n <= 77) continue;
        /* clip.tokenize(truncate=True): first 77 ids, the last set to EOT. */
        nw = 77;
        memcpy(want, g->ids, 76 * sizeof *want);
        want[76] = eot;
        encode(tok, g->text, 77, ids, &n);
        snprintf(what, sizeof what, "max_len 77 keeps EOT last: '%s'", show(g->text));
        check_ids(ids, n, want, nw, what);
        tested++;
    }
    ok(tested >= 3, "long golden texts tested with max_len 77 (%d)", tested);

    encode(tok, "a photo of a dog", 2, ids, &n);
    ok(n == 2 && ids[0] == sot && ids[1] == eot, "max_len 2: just SOT EOT");
    encode(tok, "a photo of a dog", 3, ids, &n);
    ok(n == 3 && ids[0] == sot && ids[1] == 320 && ids[2] == eot, "max_len 3: SOT a EOT");
    encode(tok, "a photo of a dog", 7, ids, &n);
    ok(n == 7 && ids[6] == eot && ids[5] == 1929, "max_len equal to the length: nothing cut");
    ok(cdx_tokenizer_encode(tok, "x", 1, ids, &n) == CDX_ERR_ARG, "max_len 1 is refused");
}

/* ---- edge inputs ---- */

static void test_edges(cdx_tokenizer *tok)
{
    int32_t ids[MAX_IDS];
    int n;
    const int32_t sot = cdx_tokenizer_sot(tok), eot = cdx_tokenizer_eot(tok);
    static const char *const bad_utf8[] = {
        "\xff", "abc\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok \x80 no",
    };

    ok(sot == 49406 && eot == 49407, "special ids from the vocabulary: %d %d", sot, eot);
    ok(encode(tok, "", 77, ids, &n) && n == 2 && ids[0] == sot && ids[1] == eot,
       "empty text: SOT EOT");
    ok(encode(tok, " \t\n \r\n\xe3\x80\x80 ", 77, ids, &n) && n == 2, "whitespace only: SOT EOT");
    ok(encode(tok, "<|endoftext|>", 77, ids, &n) && n == 3 && ids[1] == eot,
       "literal <|endoftext|> is the special token");
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        cdx_status st = cdx_tokenizer_encode(tok, bad_utf8[i], 77, ids, &n);
        ok(st == CDX_ERR_ARG && strstr(cdx_last_error(), "UTF-8"),
           "invalid UTF-8 '%s' -> %s: %s", show(bad_utf8[i]), cdx_status_name(st),
           cdx_last_error());
    }
    ok(cdx_tokenizer_encode(tok, NULL, 77, ids, &n) == CDX_ERR_ARG, "NULL text refused");

    /* Cleanup steps against Python (values checked with CPython 3.11). */
    struct {
        const char *in, *want, *what;
    } steps[] = {
        {"&notit; &amp &ampx &#128; &#x110000; &#1;x &#0; &#13;", "\xc2\xacit; & &x \xe2\x82\xac "
         "\xef\xbf\xbd x \xef\xbf\xbd \r", "html.unescape: legacy prefix, numeric rules"},
        {"&lt;b&gt; &#X41;&#65 &Amp; &unknownname;", "<b> AA &Amp; &unknownname;",
         "html.unescape: hex, no semicolon, unknown names"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        cdx_u32 in = {0}, out = {0}, want = {0};
        cdx_utf8_decode(steps[i].in, strlen(steps[i].in), &in, NULL);
        cdx_utf8_decode(steps[i].want, strlen(steps[i].want), &want, NULL);
        cdx_html_unescape(in.v, in.n, &out);
        ok(out.n == want.n && memcmp(out.v, want.v, out.n * 4) == 0, "%s", steps[i].what);
        cdx_u32_release(&in);
        cdx_u32_release(&out);
        cdx_u32_release(&want);
    }
    {
        /* "ΟΔΟΣ ΣΑ Σ" lowers with final sigma only at the end of a word;
         * "İ" lowers to i + U+0307. */
        static const uint32_t in[] = {0x39F, 0x394, 0x39F, 0x3A3, ' ', 0x3A3, 0x391, ' ', 0x3A3, ' ', 0x130};
        static const uint32_t want[] = {0x3BF, 0x3B4, 0x3BF, 0x3C2, ' ', 0x3C3, 0x3B1, ' ', 0x3C3, ' ', 'i', 0x307};
        cdx_u32 out = {0};
        cdx_py_lower(in, sizeof in / sizeof in[0], &out);
        ok(out.n == sizeof want / sizeof want[0] && memcmp(out.v, want, sizeof want) == 0,
           "str.lower: final sigma and dotted I");
        cdx_u32_release(&out);
    }
    {
        /* ftfy: full-width forms, ideographic space, half-width katakana
         * with a voiced mark composing under NFC. */
        const char *in = "\xef\xbc\xac\xef\xbc\xaf\xe3\x80\x80\xef\xbd\xb6\xef\xbe\x9e";
        static const uint32_t want[] = {'L', 'O', ' ', 0x30AC};
        cdx_u32 u = {0}, out = {0};
        cdx_utf8_decode(in, strlen(in), &u, NULL);
        cdx_ftfy_fix_text(u.v, u.n, &out);
        ok(out.n == 4 && memcmp(out.v, want, sizeof want) == 0, "ftfy: character width");
        cdx_u32_release(&u);
        cdx_u32_release(&out);
    }
}

/* ---- bad files ---- */

static char *write_temp(const char *content)
{
    char tmpl[] = "/tmp/cdx_tok_XXXXXX";
    int fd = mkstemp(tmpl);
    size_t len = strlen(content);
    if (fd < 0) return NULL;
    if (write(fd, content, len) != (ssize_t)len) {
        close(fd);
        unlink(tmpl);
        return NULL;
    }
    close(fd);
    return strdup(tmpl);
}

static void test_bad_files(const char *vocab, const char *merges)
{
    cdx_tokenizer *tok = NULL;
    cdx_status st;
    char *bad_json = write_temp("{\"a\": 1, \"b\": ");
    char *array_json = write_temp("[1, 2, 3]");
    char *bad_merges = write_temp("#version: 0.2\ni n\nthis_is_not_a_symbol zz\n");
    char *three = write_temp("#version: 0.2\ni n x\n");

    st = cdx_tokenizer_open("/nonexistent/vocab.json", merges, &tok);
    ok(st == CDX_ERR_IO && strstr(cdx_last_error(), "/nonexistent/vocab.json"),
       "missing vocab: %s", cdx_last_error());
    st = cdx_tokenizer_open(vocab, "/nonexistent/merges.txt", &tok);
    ok(st == CDX_ERR_IO && strstr(cdx_last_error(), "/nonexistent/merges.txt"),
       "missing merges: %s", cdx_last_error());
    if (bad_json) {
        st = cdx_tokenizer_open(bad_json, merges, &tok);
        ok(st == CDX_ERR_FORMAT && strstr(cdx_last_error(), bad_json), "corrupt vocab JSON: %s",
           cdx_last_error());
    }
    if (array_json) {
        st = cdx_tokenizer_open(array_json, merges, &tok);
        ok(st == CDX_ERR_FORMAT && strstr(cdx_last_error(), array_json),
           "vocab that is not an object: %s", cdx_last_error());
    }
    if (bad_merges) {
        st = cdx_tokenizer_open(vocab, bad_merges, &tok);
        ok(st == CDX_ERR_FORMAT && strstr(cdx_last_error(), ":3:"),
           "merge with an unknown symbol names the line: %s", cdx_last_error());
    }
    if (three) {
        st = cdx_tokenizer_open(vocab, three, &tok);
        ok(st == CDX_ERR_FORMAT && strstr(cdx_last_error(), ":2:"),
           "merge line with three fields: %s", cdx_last_error());
    }
    ok(tok == NULL, "failed opens leave *out untouched");
    cdx_tokenizer_free(NULL); /* must be a no-op */
    for (char **p = (char *[]){bad_json, array_json, bad_merges, three, NULL}; *p; p++) {
        unlink(*p);
        free(*p);
    }
}

/* ---- threads ---- */

typedef struct thread_arg {
    cdx_tokenizer *tok;
    int mismatches, failures;
} thread_arg;

static void *worker(void *p)
{
    thread_arg *a = p;
    int32_t ids[MAX_IDS];
    int n;
    for (int round = 0; round < 20; round++) {
        for (int r = 0; r < n_records; r++) {
            if (cdx_tokenizer_encode(a->tok, records[r].text, MAX_IDS, ids, &n) != CDX_OK) {
                a->failures++;
                continue;
            }
            if (records[r].ftfy && !is_covered(records[r].text)) continue;
            if (n != records[r].n || memcmp(ids, records[r].ids, (size_t)n * sizeof *ids) != 0)
                a->mismatches++;
        }
    }
    return NULL;
}

static void test_threads(const char *vocab, const char *merges)
{
    cdx_tokenizer *tok = NULL;
    pthread_t th[2];
    thread_arg args[2];
    /* A fresh tokenizer, so that both threads fill the empty cache at once. */
    if (cdx_tokenizer_open(vocab, merges, &tok) != CDX_OK) {
        ok(0, "open for the thread test: %s", cdx_last_error());
        return;
    }
    for (int i = 0; i < 2; i++) {
        args[i] = (thread_arg){tok, 0, 0};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    ok(args[0].mismatches + args[1].mismatches == 0 && args[0].failures + args[1].failures == 0,
       "2 threads tokenizing concurrently give the golden ids (%d/%d mismatches)",
       args[0].mismatches, args[1].mismatches);
    cdx_tokenizer_free(tok);
}

/* ---- the two BPE implementations agree ---- */

/* Long words take the heap BPE, short ones the scan; with CLIPDEX_BPE_REF=1
 * the scan does everything.  Random long words (letters from a small
 * alphabet so that many merges apply, accented and CJK letters, runs of
 * punctuation) must give the same ids both ways. */
static void test_bpe_paths(const char *vocab, const char *merges, cdx_tokenizer *fast)
{
    static const char *const pieces[] = {
        "a", "e", "i", "n", "r", "s", "t", "o", "l", "th", "ing", "tion", "Ã©",
        "Ã¼", "ç«", "Ðº", "Î±",
    };
    static const char *const punct[] = {"!", ".", "?", "-", "*", "~", "â¢"};
    cdx_tokenizer *ref = NULL;
    int32_t a[MAX_IDS], b[MAX_IDS];
    int na, nb, same = 0, total = 0;
    unsigned seed = 12345;
    setenv("CLIPDEX_BPE_REF", "1", 1);
    cdx_status st = cdx_tokenizer_open(vocab, merges, &ref);
    unsetenv("CLIPDEX_BPE_REF");
    if (!ok(st == CDX_OK, "open with CLIPDEX_BPE_REF=1")) return;
    for (int t = 0; t < 300; t++) {
        char text[2048];
        size_t o = 0, len = 10 + (size_t)(t % 150);
        int use_punct = t % 5 == 4;
        for (size_t k = 0; k < len && o + 8 < sizeof text; k++) {
            const char *p;
            seed = seed * 1103515245u + 12345u;
            p = use_punct ? punct[(seed >> 16) % 7] : pieces[(seed >> 16) % 17];
            memcpy(text + o, p, strlen(p));
            o += strlen(p);
        }
        text[o] = '\0';
        total++;
        if (encode(fast, text, MAX_IDS, a, &na) && encode(ref, text, MAX_IDS, b, &nb) &&
            na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0)
            same++;
        else
            diag("  BPE paths differ on '%s'", show(text));
    }
    ok(same == total, "heap BPE equals the reference scan on %d/%d long words", same, total);
    cdx_tokenizer_free(ref);
}

/* ---- timing (reported, not asserted: machines differ) ---- */

static void report_timing(const char *vocab, const char *merges)
{
    cdx_tokenizer *tok = NULL;
    int32_t ids[MAX_IDS];
    int n, reps = 2000;
    double t0 = now_s(), t1, t2;
    if (cdx_tokenizer_open(vocab, merges, &tok) != CDX_OK) return;
    t1 = now_s();
    encode(tok, "a photo of a dog on the beach at sunset", 77, ids, &n);
    t2 = now_s();
    for (int i = 0; i < reps; i++)
        cdx_tokenizer_encode(tok, "a photo of a dog on the beach at sunset", 77, ids, &n);
    diag("timing: open %.1f ms, first encode %.1f us, warm encode %.2f us",
         (t1 - t0) * 1e3, (t2 - t1) * 1e6, (now_s() - t2) * 1e6 / reps);
    cdx_tokenizer_free(tok);
}

int main(void)
{
    const char *env = getenv("CLIPDEX_SHARED");
    char *vocab, *merges;
    cdx_tokenizer *tok = NULL;
    cdx_status st;

    snprintf(shared_dir, sizeof shared_dir, "%s", env && *env ? env : "../shared");
    vocab = strdup("data/clip/vocab.json");
    merges = strdup("data/clip/merges.txt");

    st = cdx_tokenizer_open(vocab, merges, &tok);
    if (!ok(st == CDX_OK, "open the CLIP vocabulary from data/clip")) {
        diag("%s", cdx_last_error());
        return done_testing();
    }
    {
        char *golden = shared_path("golden/tokenizer_public.jsonl");
        int have = golden && access(golden, R_OK) == 0;
        free(golden);
        if (!have) {
            printf("ok %d - # SKIP no golden file under %s (set CLIPDEX_SHARED)\n", ++tap_n, shared_dir);
        } else if (ok(load_golden() == 0 && n_records > 100, "golden records loaded (%d)", n_records)) {
            test_golden(tok);
            test_truncation(tok);
        }
    }
    test_edges(tok);
    test_bad_files(vocab, merges);
    test_bpe_paths(vocab, merges, tok);
    if (n_records) test_threads(vocab, merges);
    report_timing(vocab, merges);

    cdx_tokenizer_free(tok);
    for (int r = 0; r < n_records; r++) free(records[r].text);
    free(records);
    free(vocab);
    free(merges);
    return done_testing();
}
