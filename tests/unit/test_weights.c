/*
 * test_weights.c - checkpoint loading (core/engine/weights.h) against fixtures
 * written by tests/tools/make_weight_fixtures.py with numpy/torch:
 *   - half/bfloat16 conversion of all 65536 bit patterns vs numpy/torch,
 *     and the F16C path vs its scalar twin;
 *   - every good fixture (safetensors F32/F16/BF16, sharded, torch.save
 *     zip and legacy) gives exactly the expected float32 values and shapes;
 *   - every hostile fixture gives the expected status and a one-line
 *     message naming the file (and tensor);
 *   - truncations and byte flips of small good files (a legacy torch
 *     file, whose pickles are not under a CRC; and of a pickle, re-zipped)
 *     never crash (run under ASan via `make SAN=1`).
 *
 * Fixtures: $CLIPDEX_WEIGHT_FIXTURES if set, else BUILD/testdata/weights
 * (BUILD from $CLIPDEX_BUILD or the test binary's location), generated
 * with $PYTHON (default /usr/bin/python3) when missing or stale.
 */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zip.h>

#include "internal.h"
#include "engine/weights.h"
#include "engine/weights_impl.h"
#include "tap.h"

#define SCRIPT "tests/tools/make_weight_fixtures.py"

static char fx[4096]; /* the fixture root */

static const char *status_tag(cdx_status st)
{
    switch (st) {
    case CDX_OK: return "OK";
    case CDX_ERR_ARG: return "ARG";
    case CDX_ERR_IO: return "IO";
    case CDX_ERR_FORMAT: return "FORMAT";
    case CDX_ERR_UNSUPPORTED: return "UNSUPPORTED";
    case CDX_ERR_LIMIT: return "LIMIT";
    case CDX_ERR_NOMEM: return "NOMEM";
    case CDX_ERR_MODEL: return "MODEL";
    case CDX_ERR_STORE: return "STORE";
    case CDX_ERR_BUSY: return "BUSY";
    case CDX_ERR_INTERNAL: return "INTERNAL";
    }
    return "?";
}

static cJSON *load_json(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    cJSON *j;
    if (cdx_read_file(path, 256u << 20, &text, &len) != CDX_OK) return NULL;
    j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

static float *load_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    float *v = malloc(n * sizeof *v);
    if (!f || !v || fread(v, sizeof *v, n, f) != n) {
        free(v);
        v = NULL;
    }
    if (f) fclose(f);
    return v;
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Same float: bitwise, except that any NaN matches any NaN. */
static int same_float(float a, float b)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return bits(a) == bits(b);
}

static int one_line(const char *s) { return !strchr(s, '\n') && !strchr(s, '\r') && *s; }

/* ------------------------------------------------------------------ */
/* locating / generating the fixtures                                  */
/* ------------------------------------------------------------------ */

static int find_fixtures(const char *argv0)
{
    const char *env = getenv("CLIPDEX_WEIGHT_FIXTURES");
    const char *py = getenv("PYTHON");
    char build[2048], manifest[4200], cmd[8192];
    struct stat sm, ss;

    if (env && *env) {
        snprintf(fx, sizeof fx, "%s", env);
        return 1;
    }
    if (getenv("CLIPDEX_BUILD") && *getenv("CLIPDEX_BUILD")) {
        snprintf(build, sizeof build, "%s", getenv("CLIPDEX_BUILD"));
    } else {
        /* BUILD/tests/test_weights -> BUILD */
        const char *t = strstr(argv0, "/tests/test_weights");
        if (t)
            snprintf(build, sizeof build, "%.*s", (int)(t - argv0), argv0);
        else
            snprintf(build, sizeof build, "build");
    }
    snprintf(fx, sizeof fx, "%s/testdata/weights", build);
    snprintf(manifest, sizeof manifest, "%s/manifest.json", fx);
    if (stat(manifest, &sm) == 0 && (stat(SCRIPT, &ss) != 0 || ss.st_mtime <= sm.st_mtime))
        return 1;
    if (stat(SCRIPT, &ss) != 0) {
        diag("no fixtures and no %s here: run from the source tree or set "
             "CLIPDEX_WEIGHT_FIXTURES", SCRIPT);
        return 0;
    }
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && '%s' %s '%s'", build,
             py && *py ? py : "/usr/bin/python3", SCRIPT, fx);
    diag("generating fixtures: %s", cmd);
    return system(cmd) == 0;
}

/* ------------------------------------------------------------------ */
/* conversions                                                         */
/* ------------------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_conversions(void)
{
    char path[4200];
    uint16_t *all = malloc(65537 * sizeof *all);
    float *want16, *want_bf, *got = malloc(65537 * sizeof *got), *ref = malloc(65537 * sizeof *ref);
    size_t bad = 0, bad_ref = 0, first = 0;

    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    snprintf(path, sizeof path, "%s/f16_all.bin", fx);
    want16 = load_f32(path, 65536);
    snprintf(path, sizeof path, "%s/bf16_all.bin", fx);
    want_bf = load_f32(path, 65536);
    if (!ok(want16 && want_bf && got && ref, "conversion reference tables load")) goto done;

    diag("F16C path %s", cdx_f16_has_simd() ? "in use" : "not available: scalar only");
    cdx_f16_to_f32(all, got, 65536);
    cdx_f16_to_f32_scalar(all, ref, 65536);
    for (size_t i = 0; i < 65536; i++) {
        if (!same_float(got[i], want16[i]) && bad++ == 0) first = i;
        if (bits(got[i]) != bits(ref[i])) bad_ref++;
    }
    ok(bad == 0, "all 65536 halves convert as numpy does (%zu differ, first 0x%04zx)", bad,
       first);
    ok(bad_ref == 0, "F16C and scalar conversions are bit-identical, NaNs included (%zu differ)",
       bad_ref);
    bad = 0;
    for (size_t i = 0; i < 65536; i++)
        if (!same_float(ref[i], want16[i])) bad++;
    ok(bad == 0, "scalar twin matches numpy too (%zu differ)", bad);

    /* Odd lengths and a misaligned source exercise the SIMD tail. */
    memmove(all + 1, all, 65536 * sizeof *all);
    cdx_f16_to_f32(all + 1, got, 65533);
    bad = 0;
    for (size_t i = 0; i < 65533; i++)
        if (!same_float(got[i], want16[i])) bad++;
    ok(bad == 0, "odd length, shifted source: %zu differ", bad);
    memmove(all, all + 1, 65536 * sizeof *all);

    /* A few values spelled out, so a failure is readable. */
    {
        const struct { uint16_t h; float f; } cases[] = {
            {0x0000, 0.0f},          {0x3c00, 1.0f},           {0xc000, -2.0f},
            {0x7bff, 65504.0f},      {0x0001, 0x1p-24f},       {0x03ff, 0x3ffp-24f},
            {0x0400, 0x1p-14f},      {0x7c00, INFINITY},       {0xfc00, -INFINITY},
            {0x3555, 0x1.554p-2f},
        };
        int good = 1;
        float f;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            cdx_f16_to_f32(&cases[i].h, &f, 1);
            if (bits(f) != bits(cases[i].f)) {
                diag("half 0x%04x -> %a, want %a", cases[i].h, f, cases[i].f);
                good = 0;
            }
        }
        ok(good, "half edge cases: zero, subnormals, max, inf");
        uint16_t negz = 0x8000, nan = 0x7e01, snan = 0x7d00;
        cdx_f16_to_f32(&negz, &f, 1);
        ok(f == 0.0f && signbit(f), "half -0 keeps its sign");
        cdx_f16_to_f32(&nan, &f, 1);
        ok(isnan(f) && (bits(f) & 0x7fffffu) == (0x201u << 13), "half NaN keeps its payload");
        cdx_f16_to_f32(&snan, &f, 1);
        ok(isnan(f), "signalling half NaN stays NaN");
    }

    cdx_bf16_to_f32(all, got, 65536);
    bad = 0;
    for (size_t i = 0; i < 65536; i++)
        if (!same_float(got[i], want_bf[i]) && bad++ == 0) first = i;
    ok(bad == 0, "all 65536 bfloat16 values convert as torch does (%zu differ, first 0x%04zx)",
       bad, first);
    {
        uint16_t b[4] = {0x0001, 0x7f80, 0x8000, 0x3f80};
        float f[4];
        cdx_bf16_to_f32(b, f, 4);
        ok(bits(f[0]) == 0x00010000u && isinf(f[1]) && signbit(f[2]) && f[2] == 0.0f &&
               f[3] == 1.0f,
           "bfloat16 edge cases: subnormal, inf, -0, 1");
    }

    /* Speed, for information only (ViT-B/32 F16 is ~300 MB). */
    {
        size_t n = (size_t)16 << 20;
        uint16_t *src = malloc(n * sizeof *src);
        float *dst = malloc(n * sizeof *dst);
        if (src && dst) {
            double t0, t1, t2;
            for (size_t i = 0; i < n; i++) src[i] = (uint16_t)(0x3000 + (i * 7919) % 0x1000);
            /* warm up (page faults, clock ramp) outside the timing */
            cdx_f16_to_f32(src, dst, n);
            t0 = now();
            cdx_f16_to_f32(src, dst, n);
            t1 = now();
            cdx_f16_to_f32_scalar(src, dst, n);
            t2 = now();
            diag("f16->f32: %.2f GB/s of input (dispatch), %.2f GB/s (scalar)",
                 (double)n * 2 / (t1 - t0) / 1e9, (double)n * 2 / (t2 - t1) / 1e9);
        }
        free(src);
        free(dst);
    }
done:
    free(all);
    free(got);
    free(ref);
    free(want16);
    free(want_bf);
}

/* ------------------------------------------------------------------ */
/* good fixtures                                                       */
/* ------------------------------------------------------------------ */

static void read_shape(const cJSON *arr, int *ndim, int64_t *shape)
{
    const cJSON *v;
    *ndim = 0;
    cJSON_ArrayForEach(v, arr) shape[(*ndim)++] = (int64_t)v->valuedouble;
}

static void test_good(const char *name, const cJSON *spec)
{
    char dir[4200], path[4300];
    cdx_weights *w = NULL;
    cdx_status st;
    cJSON *exp = NULL;
    const cJSON *e, *u;
    const char *want_dtype = cJSON_GetObjectItem(spec, "dtype")->valuestring;
    int want_count = cJSON_GetObjectItem(spec, "count")->valueint;
    int n_checked = 0, n_values_bad = 0;

    snprintf(dir, sizeof dir, "%s/good/%s", fx, name);
    st = cdx_weights_open(dir, &w);
    if (!ok(st == CDX_OK, "%s: opens (%s)", name, st ? cdx_last_error() : "ok")) return;
    ok(strcmp(cdx_weights_dtype_name(w), want_dtype) == 0, "%s: dtype %s (got %s)", name,
       want_dtype, cdx_weights_dtype_name(w));
    ok(cdx_weights_count(w) == want_count, "%s: %d float tensors (got %d)", name, want_count,
       cdx_weights_count(w));

    snprintf(path, sizeof path, "%s/expected.json", dir);
    exp = load_json(path);
    if (!ok(exp != NULL, "%s: expected.json loads", name)) goto done;
    cJSON_ArrayForEach(e, exp) {
        const cJSON *vals = cJSON_GetObjectItem(e, "values"), *v;
        const cdx_tensor_info *info = cdx_weights_find(w, e->string);
        int64_t shape[CDX_MAX_DIMS];
        int ndim, same;
        const float *data = NULL, *again = NULL;
        size_t i = 0, bad = 0;

        read_shape(cJSON_GetObjectItem(e, "shape"), &ndim, shape);
        if (!ok(info != NULL, "%s: %s found", name, e->string)) continue;
        same = info->ndim == ndim && strcmp(info->name, e->string) == 0;
        for (int d = 0; same && d < ndim; d++) same = info->shape[d] == shape[d];
        ok(same, "%s: %s has the expected shape", name, e->string);
        st = cdx_weights_f32(w, e->string, ndim, shape, &data);
        if (!ok(st == CDX_OK && data, "%s: %s as f32 (%s)", name, e->string,
                st ? cdx_last_error() : "ok"))
            continue;
        cJSON_ArrayForEach(v, vals) {
            /* numbers, or "inf" / "-inf" / "nan" (JSON has no such numbers) */
            float want = cJSON_IsString(v) ? strtof(v->valuestring, NULL) : (float)v->valuedouble;
            if (i >= (size_t)info->numel || !same_float(data[i], want)) {
                if (bad++ < 3)
                    diag("%s[%zu] = %a, want %a", e->string, i,
                         i < (size_t)info->numel ? data[i] : 0.0f, want);
            }
            i++;
        }
        if (i != (size_t)info->numel) bad++;
        if (bad) n_values_bad++;
        cdx_weights_f32(w, e->string, ndim, shape, &again);
        if (again != data) n_values_bad++;
        n_checked++;
    }
    ok(n_checked > 0 && n_values_bad == 0,
       "%s: %d tensors equal numpy/torch's float32 values bit for bit, stable pointers",
       name, n_checked);

    /* Tensors that exist but must be refused when requested. */
    cJSON_ArrayForEach(u, cJSON_GetObjectItem(spec, "unsupported")) {
        const float *data = (const float *)&st; /* must stay untouched */
        const float *sentinel = data;
        char want_file[4400];
        st = cdx_weights_f32(w, u->valuestring, 0, NULL, &data);
        snprintf(want_file, sizeof want_file, "tensor %s:", u->valuestring);
        ok(st == CDX_ERR_UNSUPPORTED && data == sentinel && one_line(cdx_last_error()) &&
               strstr(cdx_last_error(), dir) && strstr(cdx_last_error(), want_file),
           "%s: %s refused as unsupported: %s", name, u->valuestring, cdx_last_error());
    }

    /* Parameter count through count/at is the sum of the visible numels. */
    {
        int64_t total = 0;
        int n = cdx_weights_count(w), all_there = 1;
        for (int i = 0; i < n; i++) {
            const cdx_tensor_info *info = cdx_weights_at(w, i);
            if (!info || cdx_weights_find(w, info->name) != info) all_there = 0;
            else total += info->numel;
        }
        ok(all_there && cdx_weights_at(w, n) == NULL && cdx_weights_at(w, -1) == NULL,
           "%s: cdx_weights_at covers %d tensors, %lld parameters", name, n, (long long)total);
    }
    ok(cdx_weights_find(w, "no.such.tensor") == NULL, "%s: unknown name not found", name);
done:
    cJSON_Delete(exp);
    cdx_weights_close(w);
}

/* Messages for shape errors and missing tensors, exactly. */
static void test_messages(void)
{
    char dir[4200], want[4600];
    cdx_weights *w = NULL;
    const float *p = NULL;
    int64_t wrong[2] = {4, 10};
    cdx_status st;

    snprintf(dir, sizeof dir, "%s/good/st_f32", fx);
    if (!ok(cdx_weights_open(dir, &w) == CDX_OK, "st_f32 opens for message checks")) return;
    st = cdx_weights_f32(w, "text_model.embeddings.token_embedding.weight", 2, wrong, &p);
    snprintf(want, sizeof want,
             "%s/model.safetensors: tensor text_model.embeddings.token_embedding.weight: "
             "shape [10,4], expected [4,10]", dir);
    ok(st == CDX_ERR_MODEL && p == NULL && strcmp(cdx_last_error(), want) == 0,
       "shape mismatch: '%s'", cdx_last_error());
    st = cdx_weights_f32(w, "logit_scale", 1, wrong, &p);
    ok(st == CDX_ERR_MODEL && strstr(cdx_last_error(), "shape [], expected [4]"),
       "scalar vs vector: '%s'", cdx_last_error());
    st = cdx_weights_f32(w, "vision_model.missing", 1, wrong, &p);
    snprintf(want, sizeof want, "%s/model.safetensors: tensor vision_model.missing: not found",
             dir);
    ok(st == CDX_ERR_MODEL && strcmp(cdx_last_error(), want) == 0, "missing tensor: '%s'",
       cdx_last_error());
    ok(cdx_weights_find(w, "text_model.embeddings.position_ids") == NULL,
       "int64 buffer is not listed as a float tensor");
    snprintf(want, sizeof want, "%s/model.safetensors", dir);
    ok(strcmp(cdx_weights_path(w), want) == 0, "path is the safetensors file");
    cdx_weights_close(w);

    w = NULL;
    snprintf(dir, sizeof dir, "%s/good/sharded", fx);
    if (cdx_weights_open(dir, &w) == CDX_OK) {
        snprintf(want, sizeof want, "%s/model.safetensors.index.json", dir);
        ok(strcmp(cdx_weights_path(w), want) == 0, "sharded: path is the index");
        st = cdx_weights_f32(w, "vision_model.a", 2, wrong, &p);
        snprintf(want, sizeof want, "%s/model-00001-of-00002.safetensors: tensor vision_model.a",
                 dir);
        ok(st == CDX_ERR_MODEL && strstr(cdx_last_error(), want),
           "sharded: errors name the shard: '%s'", cdx_last_error());
        cdx_weights_close(w);
    }
    w = NULL;
    snprintf(dir, sizeof dir, "%s/good/bin", fx);
    if (cdx_weights_open(dir, &w) == CDX_OK) {
        snprintf(want, sizeof want, "%s/pytorch_model.bin", dir);
        ok(strcmp(cdx_weights_path(w), want) == 0, "bin: path is pytorch_model.bin");
        cdx_weights_close(w);
    }
    w = (cdx_weights *)&st;
    ok(cdx_weights_open(NULL, &w) == CDX_ERR_ARG && w == (cdx_weights *)&st,
       "NULL dir is an argument error, out untouched");
    cdx_weights_close(NULL);
    ok(1, "cdx_weights_close(NULL) is a no-op");
}

/* ------------------------------------------------------------------ */
/* hostile fixtures                                                    */
/* ------------------------------------------------------------------ */

static void test_hostile(const cJSON *h)
{
    const char *name = cJSON_GetObjectItem(h, "dir")->valuestring;
    const char *want_st = cJSON_GetObjectItem(h, "status")->valuestring;
    const char *file = cJSON_GetObjectItem(h, "file")->valuestring;
    const cJSON *tensor = cJSON_GetObjectItem(h, "tensor");
    const cJSON *request = cJSON_GetObjectItem(h, "request");
    const cJSON *says = cJSON_GetObjectItem(h, "says");
    char dir[4200], path[4400], tname[512];
    cdx_weights *w = NULL, *sentinel = (cdx_weights *)&w;
    cdx_status st;
    const char *msg;

    snprintf(dir, sizeof dir, "%s/hostile/%s", fx, name);
    snprintf(path, sizeof path, "%s%s%s", dir, *file ? "/" : "", file);
    w = sentinel;
    st = cdx_weights_open(dir, &w);
    if (cJSON_IsString(request)) {
        const cdx_tensor_info *info;
        const float *p = NULL;
        if (!ok(st == CDX_OK, "%s: opens (refusal comes on request): %s", name,
                st ? cdx_last_error() : "ok"))
            return;
        info = cdx_weights_find(w, request->valuestring);
        st = cdx_weights_f32(w, request->valuestring, info ? info->ndim : 0,
                             info ? info->shape : NULL, &p);
    }
    msg = cdx_last_error();
    ok(strcmp(status_tag(st), want_st) == 0, "%s: %s (got %s: %s)", name, want_st,
       status_tag(st), msg);
    ok(one_line(msg) && strstr(msg, path) != NULL, "%s: one-line message names %s", name,
       *file ? file : "the directory");
    if (cJSON_IsString(tensor)) {
        snprintf(tname, sizeof tname, "tensor %s:", tensor->valuestring);
        ok(strstr(msg, tname) != NULL, "%s: message names %s", name, tname);
    }
    if (cJSON_IsString(says))
        ok(strstr(msg, says->valuestring) != NULL, "%s: message says '%s'", name,
           says->valuestring);
    if (cJSON_IsString(request))
        cdx_weights_close(w);
    else
        ok(w == sentinel, "%s: output untouched on failure", name);
}

/* ------------------------------------------------------------------ */
/* mutation sweep                                                      */
/* ------------------------------------------------------------------ */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    int good = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0) good = 0;
    return good;
}

/* Open dir and request every visible tensor; returns 1 when every
 * failure carried a one-line message naming something under dir. */
static int exercise(const char *dir)
{
    cdx_weights *w = NULL;
    cdx_status st = cdx_weights_open(dir, &w);
    int good = 1;
    if (st != CDX_OK) return one_line(cdx_last_error()) && strstr(cdx_last_error(), dir);
    for (int i = 0; i < cdx_weights_count(w); i++) {
        const cdx_tensor_info *info = cdx_weights_at(w, i);
        const float *p;
        volatile float sink = 0;
        st = cdx_weights_f32(w, info->name, info->ndim, info->shape, &p);
        if (st == CDX_OK) {
            for (int64_t k = 0; k < info->numel; k++) sink += p[k]; /* touch every byte */
        } else if (!one_line(cdx_last_error()) || !strstr(cdx_last_error(), dir)) {
            good = 0;
        }
        (void)sink;
    }
    cdx_weights_close(w);
    return good;
}

/* Every prefix and every single-byte change of one file. */
static void sweep_file(const char *tmp, const char *src, const char *dst_name)
{
    char dst[4400];
    uint8_t *data = NULL, *mut = NULL;
    char *text = NULL;
    size_t len = 0, n = 0, bad = 0;
    static const uint8_t xors[] = {0xff, 0x01, 0x80};

    if (cdx_read_file(src, 1u << 20, &text, &len) != CDX_OK) {
        ok(0, "read %s", src);
        return;
    }
    data = (uint8_t *)text;
    mut = malloc(len ? len : 1);
    snprintf(dst, sizeof dst, "%s/%s", tmp, dst_name);
    for (size_t cut = 0; cut < len; cut++, n++) {
        if (!write_file(dst, data, cut)) break;
        if (!exercise(tmp)) bad++;
    }
    for (size_t i = 0; i < len; i++) {
        for (size_t x = 0; x < sizeof xors; x++, n++) {
            memcpy(mut, data, len);
            mut[i] ^= xors[x];
            if (!write_file(dst, mut, len)) break;
            if (!exercise(tmp)) bad++;
        }
    }
    remove(dst);
    ok(bad == 0, "%s: %zu truncated/flipped variants: no crash, every error one line naming "
       "the file (%zu bad)", dst_name, n, bad);
    free(mut);
    free(text);
}

/* Mutate the pickle itself and re-zip it (a flip inside the zip would
 * only trip its CRC): this drives the unpickler through broken input. */
static void sweep_pickle(const char *tmp)
{
    char dst[4400], src[4300];
    zip_t *z = NULL;
    uint8_t *pkl = NULL, *mut = NULL;
    zip_int64_t idx;
    zip_stat_t zs;
    zip_file_t *f = NULL;
    float storage[6] = {-1, -0.5f, 0, 0.5f, 1, 1.5f};
    size_t n = 0, bad = 0, len;
    int zerr;

    /* the hand-assembled pickle of good/bin_handmade */
    snprintf(src, sizeof src, "%s/good/bin_handmade/pytorch_model.bin", fx);
    z = zip_open(src, ZIP_RDONLY, &zerr);
    idx = z ? zip_name_locate(z, "pytorch_model/data.pkl", 0) : -1;
    if (idx < 0 || zip_stat_index(z, (zip_uint64_t)idx, 0, &zs) != 0 ||
        !(pkl = malloc(zs.size)) || !(f = zip_fopen_index(z, (zip_uint64_t)idx, 0)) ||
        zip_fread(f, pkl, zs.size) != (zip_int64_t)zs.size) {
        ok(0, "read the handmade pickle");
        goto done;
    }
    len = zs.size;
    mut = malloc(len);
    snprintf(dst, sizeof dst, "%s/pytorch_model.bin", tmp);
    /* variant i: i < len truncates to i bytes; then three flips per byte */
    for (size_t i = 0; i < 4 * len; i++, n++) {
        static const uint8_t xors[] = {0xff, 0x01, 0x40};
        size_t mlen = len;
        zip_t *out;
        zip_source_t *s1, *s2;
        memcpy(mut, pkl, len);
        if (i < len)
            mlen = i;
        else
            mut[(i - len) / 3] ^= xors[(i - len) % 3];
        remove(dst);
        out = zip_open(dst, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
        if (!out) break;
        s1 = zip_source_buffer(out, mut, mlen, 0);
        s2 = zip_source_buffer(out, storage, sizeof storage, 0);
        if (!s1 || !s2 || zip_file_add(out, "archive/data.pkl", s1, 0) < 0 ||
            zip_file_add(out, "archive/data/0", s2, 0) < 0 || zip_close(out) != 0) {
            zip_discard(out);
            break;
        }
        if (!exercise(tmp)) bad++;
    }
    ok(n == 4 * len && bad == 0,
       "pickle: %zu truncated/flipped pickles: no crash, every error one line (%zu bad)", n,
       bad);
    remove(dst);
done:
    if (f) zip_fclose(f);
    if (z) zip_discard(z);
    free(pkl);
    free(mut);
}

static void test_mutations(void)
{
    char tmpl[] = "/tmp/cdx_weights_XXXXXX", src[4300];
    const char *tmp = mkdtemp(tmpl);
    if (!ok(tmp != NULL, "temp dir for mutations")) return;
    snprintf(src, sizeof src, "%s/good/st_f16/model.safetensors", fx);
    sweep_file(tmp, src, "model.safetensors");
    snprintf(src, sizeof src, "%s/good/bin_handmade/pytorch_model.bin", fx);
    sweep_file(tmp, src, "pytorch_model.bin");
    snprintf(src, sizeof src, "%s/good/bin_legacy_handmade/pytorch_model.bin", fx);
    sweep_file(tmp, src, "pytorch_model.bin");
    sweep_pickle(tmp);
    nftw(tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
    char path[4300];
    cJSON *manifest = NULL;
    const cJSON *e;

    (void)argc;
    if (!ok(find_fixtures(argv[0]), "weight fixtures available in %s", fx)) return done_testing();
    snprintf(path, sizeof path, "%s/manifest.json", fx);
    manifest = load_json(path);
    if (!ok(manifest != NULL, "manifest.json loads")) return done_testing();

    test_conversions();
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(manifest, "good")) test_good(e->string, e);
    test_messages();
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(manifest, "hostile")) test_hostile(e);
    test_mutations();
    cJSON_Delete(manifest);
    return done_testing();
}
