/*
 * weights.c - the checkpoint interface of weights.h: picks the layout in a
 * model directory, keeps the registry of named tensors the two loaders
 * (safetensors.c, torchbin.c) fill, and converts tensors to float32 on
 * first request.  Also home of the exact half/bfloat16 conversions.
 *
 * Ownership: cdx_weights owns every path, name, mapping, zip handle and
 * converted buffer; all of it goes in cdx_weights_close.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CDX_HAVE_F16C_PATH 1
#endif

#include "weights_impl.h"

/* The index of a sharded checkpoint is a small JSON file (a few hundred
 * kB for the largest models); anything far bigger is not an index. */
#define CDX_INDEX_MAX_BYTES (64u << 20)

/* Where zero-element tensors point, so that a successful cdx_weights_f32
 * never hands out NULL (malloc(0) may return it). */
static const float empty_tensor[1];

/* ------------------------------------------------------------------ */
/* dtypes                                                              */
/* ------------------------------------------------------------------ */

/* The dtype names of the safetensors specification.  torchbin.c maps
 * torch storage classes onto the same names so messages look alike. */
static const struct {
    const char *name;
    size_t size;
    bool is_float;
    cdx_dtype dt;
} dtypes[] = {
    {"F32", 4, true, CDX_DT_F32},   {"F16", 2, true, CDX_DT_F16},
    {"BF16", 2, true, CDX_DT_BF16}, {"F64", 8, false, CDX_DT_F32},
    {"I64", 8, false, CDX_DT_F32},  {"I32", 4, false, CDX_DT_F32},
    {"I16", 2, false, CDX_DT_F32},  {"I8", 1, false, CDX_DT_F32},
    {"U64", 8, false, CDX_DT_F32},  {"U32", 4, false, CDX_DT_F32},
    {"U16", 2, false, CDX_DT_F32},  {"U8", 1, false, CDX_DT_F32},
    {"BOOL", 1, false, CDX_DT_F32}, {"F8_E4M3", 1, false, CDX_DT_F32},
    {"F8_E5M2", 1, false, CDX_DT_F32}, {"C64", 8, false, CDX_DT_F32},
    {"C128", 16, false, CDX_DT_F32},
};

const char *cdx_wdtype_lookup(const char *name, size_t *elem_size, bool *is_float,
                              cdx_dtype *dt)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        if (strcmp(dtypes[i].name, name) == 0) {
            *elem_size = dtypes[i].size;
            *is_float = dtypes[i].is_float;
            *dt = dtypes[i].dt;
            return dtypes[i].name;
        }
    }
    return NULL;
}

static const char *dtype_str(cdx_dtype dt)
{
    switch (dt) {
    case CDX_DT_F32: return "F32";
    case CDX_DT_F16: return "F16";
    case CDX_DT_BF16: return "BF16";
    }
    return "?";
}

/* ------------------------------------------------------------------ */
/* half / bfloat16 -> float32                                          */
/* ------------------------------------------------------------------ */

static inline float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* IEEE binary16 -> binary32.  Every half value is exactly representable
 * as a float, so this is exact.  NaNs keep sign and payload but get the
 * quiet bit set, which is what the F16C instruction (and torch's own
 * conversion) do; this keeps the two paths bit-identical. */
static inline float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;

    if (exp == 0x1f) {
        uint32_t bits = sign | 0x7f800000u | (man << 13);
        if (man) bits |= 0x00400000u;
        return bits_to_f32(bits);
    }
    if (exp != 0) /* normal: rebias the exponent from 15 to 127 */
        return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
    /* zero or subnormal: value is man * 2^-24, exact in float32 (man has
     * at most 10 bits and the product is a normal float). */
    return bits_to_f32(sign | f32_to_bits((float)man * 0x1p-24f));
}

void cdx_f16_to_f32_scalar(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = half_to_float(src[i]);
}

#ifdef CDX_HAVE_F16C_PATH
/* Eight halves per instruction; the tail goes through the scalar twin. */
__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(const uint16_t *src,
                                                                  float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    cdx_f16_to_f32_scalar(src + i, dst + i, n - i);
}
#endif

/* The conversion is chosen once (pthread_once: cdx_f16_to_f32 may be
 * called from several threads) rather than at every call site. */
static void (*f16_impl)(const uint16_t *, float *, size_t) = cdx_f16_to_f32_scalar;
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static void f16_setup(void)
{
#ifdef CDX_HAVE_F16C_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c"))
        f16_impl = f16_to_f32_f16c;
#endif
}

bool cdx_f16_has_simd(void)
{
    pthread_once(&f16_once, f16_setup);
    return f16_impl != cdx_f16_to_f32_scalar;
}

void cdx_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    pthread_once(&f16_once, f16_setup);
    f16_impl(src, dst, n);
}

/* bfloat16 is the top half of a float32: a shift is exact, NaNs included. */
void cdx_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = bits_to_f32((uint32_t)src[i] << 16);
}

/* ------------------------------------------------------------------ */
/* registry                                                            */
/* ------------------------------------------------------------------ */

cdx_status cdx_weights_add_source(cdx_weights *w, char *path, cdx_wsrc_kind kind, int *idx)
{
    cdx_wsource *s = cdx_grow(w->src, &w->cap_src, (size_t)w->n_src + 1, sizeof *s, 4);
    if (!s) {
        free(path);
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", w->dir);
    }
    w->src = s;
    memset(&w->src[w->n_src], 0, sizeof w->src[0]);
    w->src[w->n_src].path = path;
    w->src[w->n_src].kind = kind;
    *idx = w->n_src++;
    return CDX_OK;
}

cdx_wtensor *cdx_weights_add_tensor(cdx_weights *w, int src, const char *name)
{
    cdx_wtensor *t;
    if (!(t = cdx_grow(w->t, &w->cap_t, w->n_t + 1, sizeof *t, 256))) {
        cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", w->src[src].path);
        return NULL;
    }
    w->t = t;
    t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", w->src[src].path);
        return NULL;
    }
    t->info.name = t->name;
    t->src = src;
    w->n_t++;
    return t;
}

cdx_status cdx_wtensor_set_layout(cdx_wtensor *t, const char *file, const char *dtype_name,
                                  int ndim, const int64_t *shape)
{
    size_t esize, numel = 1;
    bool is_float;
    cdx_dtype dt;

    /* dtype_name may be transient: keep the table's static copy. */
    t->dtype_name = cdx_wdtype_lookup(dtype_name, &esize, &is_float, &dt);
    if (!t->dtype_name)
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: unknown dtype '%s'", file, t->name,
                        dtype_name);
    t->elem_size = esize;
    t->float_dtype = is_float;
    t->info.dtype = dt;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || !cdx_mul_ok(numel, (size_t)shape[d], &numel))
            return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: negative or overflowing shape",
                            file, t->name);
    }
    if (!cdx_mul_ok(numel, esize, &t->nbytes) || numel > (size_t)INT64_MAX)
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: size overflows", file, t->name);
    t->info.numel = (int64_t)numel;
    if (ndim > CDX_MAX_DIMS) {
        t->unsupported = "more dimensions than clipdex supports";
        t->info.ndim = 0;
    } else {
        t->info.ndim = ndim;
        for (int d = 0; d < ndim; d++) t->info.shape[d] = shape[d];
    }
    if (!is_float && !t->unsupported) t->unsupported = "unsupported dtype";
    return CDX_OK;
}

/* qsort_r comparator: a and b index the registry passed as ctx. */
static int cmp_by_name(const void *a, const void *b, void *ctx)
{
    const cdx_wtensor *base = ctx;
    return strcmp(base[*(const size_t *)a].name, base[*(const size_t *)b].name);
}

/* Build the sorted lookup arrays and refuse duplicate names (two shards
 * holding the same tensor, or a repeated key in one header). */
static cdx_status build_index(cdx_weights *w)
{
    size_t n = w->n_t ? w->n_t : 1;
    w->by_name = calloc(n, sizeof *w->by_name);
    w->visible = calloc(n, sizeof *w->visible);
    if (!w->by_name || !w->visible) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", w->path);
    for (size_t i = 0; i < w->n_t; i++) w->by_name[i] = i;
    qsort_r(w->by_name, w->n_t, sizeof *w->by_name, cmp_by_name, w->t);
    for (size_t i = 0; i < w->n_t; i++) {
        const cdx_wtensor *t = &w->t[w->by_name[i]];
        if (i > 0 && strcmp(w->t[w->by_name[i - 1]].name, t->name) == 0) {
            const cdx_wtensor *p = &w->t[w->by_name[i - 1]];
            if (p->src == t->src)
                return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: appears twice",
                                w->src[t->src].path, t->name);
            return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: also in %s", w->src[t->src].path,
                            t->name, w->src[p->src].path);
        }
        if (t->float_dtype) w->visible[w->n_visible++] = w->by_name[i];
    }
    return CDX_OK;
}

static cdx_wtensor *lookup(const cdx_weights *w, const char *name)
{
    size_t lo = 0, hi = w->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, w->t[w->by_name[mid]].name);
        if (c == 0) return &w->t[w->by_name[mid]];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* sharded safetensors                                                 */
/* ------------------------------------------------------------------ */

/* A shard name from the index must name a file in the model directory
 * itself: the index is untrusted and must not send us elsewhere. */
static bool plain_file_name(const char *s)
{
    return s[0] != '\0' && !strchr(s, '/') && !strstr(s, "..");
}

static cdx_status load_index(cdx_weights *w, const char *index_path)
{
    cdx_status st = CDX_OK;
    char *text = NULL, *shard_path = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    const cJSON *map, *e;
    const char **shards = NULL;
    size_t n_shards = 0, n_entries = 0;

    st = cdx_read_file(index_path, CDX_INDEX_MAX_BYTES, &text, &len);
    if (st != CDX_OK) goto cleanup;
    root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: not a JSON object", index_path);
        goto cleanup;
    }
    map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
        goto cleanup;
    }
    cJSON_ArrayForEach(e, map) n_entries++;
    shards = calloc(n_entries ? n_entries : 1, sizeof *shards);
    if (!shards) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", index_path);
        goto cleanup;
    }
    /* Collect the distinct shard names, in first-mention order. */
    cJSON_ArrayForEach(e, map) {
        size_t k;
        if (!cJSON_IsString(e) || !e->string) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: shard name is not a string",
                          index_path, e->string ? e->string : "?");
            goto cleanup;
        }
        if (!plain_file_name(e->valuestring)) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: shard '%s' is not a plain file name",
                          index_path, e->string, e->valuestring);
            goto cleanup;
        }
        for (k = 0; k < n_shards; k++)
            if (strcmp(shards[k], e->valuestring) == 0) break;
        if (k == n_shards) shards[n_shards++] = e->valuestring;
    }
    for (size_t k = 0; k < n_shards; k++) {
        struct stat sb;
        shard_path = cdx_path_join(w->dir, shards[k]);
        if (!shard_path) {
            st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", index_path);
            goto cleanup;
        }
        if (stat(shard_path, &sb) != 0 && errno == ENOENT) {
            st = cdx_fail(CDX_ERR_MODEL, "%s: shard %s listed in the index is missing",
                          index_path, shard_path);
            goto cleanup;
        }
        st = cdx_st_load(w, shard_path);
        if (st != CDX_OK) goto cleanup;
        free(shard_path);
        shard_path = NULL;
    }
    st = build_index(w);
    if (st != CDX_OK) goto cleanup;
    /* The map must agree with the shards: a name it places in a shard
     * that does not hold it would load the wrong (or no) data. */
    cJSON_ArrayForEach(e, map) {
        const cdx_wtensor *t = lookup(w, e->string);
        const char *base;
        if (!t) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: listed in the index but not in %s",
                          index_path, e->string, e->valuestring);
            goto cleanup;
        }
        base = strrchr(w->src[t->src].path, '/');
        base = base ? base + 1 : w->src[t->src].path;
        if (strcmp(base, e->valuestring) != 0) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: index says %s but it is in %s",
                          index_path, e->string, e->valuestring, base);
            goto cleanup;
        }
    }
cleanup:
    free(shard_path);
    free(shards);
    cJSON_Delete(root);
    free(text);
    return st;
}

/* ------------------------------------------------------------------ */
/* open / close                                                        */
/* ------------------------------------------------------------------ */

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

cdx_status cdx_weights_open(const char *dir, cdx_weights **out)
{
    cdx_status st = CDX_OK;
    cdx_weights *w = NULL;
    char *st_path = NULL, *idx_path = NULL, *bin_path = NULL;
    struct stat sb;

    if (!dir || !out) return cdx_fail(CDX_ERR_ARG, "cdx_weights_open: NULL argument");
    if (stat(dir, &sb) != 0)
        return cdx_fail(CDX_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return cdx_fail(CDX_ERR_IO, "%s: not a directory", dir);

    w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
        goto cleanup;
    }
    st_path = cdx_path_join(dir, "model.safetensors");
    idx_path = cdx_path_join(dir, "model.safetensors.index.json");
    bin_path = cdx_path_join(dir, "pytorch_model.bin");
    if (!st_path || !idx_path || !bin_path) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", dir);
        goto cleanup;
    }

    /* The first layout present wins, and its errors are final: falling
     * back to another file after a corrupt one would hide the problem. */
    if (exists(st_path)) {
        w->path = st_path;
        st_path = NULL;
        st = cdx_st_load(w, w->path);
        if (st == CDX_OK) st = build_index(w);
    } else if (exists(idx_path)) {
        w->path = idx_path;
        idx_path = NULL;
        st = load_index(w, w->path);
    } else if (exists(bin_path)) {
        w->path = bin_path;
        bin_path = NULL;
        st = cdx_tb_load(w, w->path);
        if (st == CDX_OK) st = build_index(w);
    } else {
        st = cdx_fail(CDX_ERR_MODEL,
                      "%s: no model.safetensors, model.safetensors.index.json or "
                      "pytorch_model.bin", dir);
    }
    if (st != CDX_OK) goto cleanup;
    *out = w;
    w = NULL;
cleanup:
    free(st_path);
    free(idx_path);
    free(bin_path);
    cdx_weights_close(w);
    return st;
}

/* One named file: a .safetensors or a torch .bin (OpenCLIP's
 * open_clip_model.safetensors / open_clip_pytorch_model.bin). */
cdx_status cdx_weights_open_file(const char *path, cdx_weights **out)
{
    cdx_status st;
    cdx_weights *w;
    const char *slash;
    size_t n;
    if (!path || !out) return cdx_fail(CDX_ERR_ARG, "cdx_weights_open_file: NULL argument");
    if (!exists(path)) return cdx_fail(CDX_ERR_MODEL, "%s: missing", path);
    slash = strrchr(path, '/');
    w = calloc(1, sizeof *w);
    if (!w || !(w->dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".")) ||
        !(w->path = strdup(path))) {
        cdx_weights_close(w);
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
    }
    n = strlen(path);
    if (n > 12 && strcmp(path + n - 12, ".safetensors") == 0)
        st = cdx_st_load(w, w->path);
    else
        st = cdx_tb_load(w, w->path);
    if (st == CDX_OK) st = build_index(w);
    if (st != CDX_OK) {
        cdx_weights_close(w);
        return st;
    }
    *out = w;
    return CDX_OK;
}

void cdx_weights_close(cdx_weights *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].owned);
    }
    for (int i = 0; i < w->n_src; i++) {
        cdx_wsource *s = &w->src[i];
        if (s->map) munmap((void *)s->map, s->map_len);
        cdx_tb_close_zip(s->zip);
        free(s->path);
    }
    free(w->t);
    free(w->src);
    free(w->by_name);
    free(w->visible);
    free(w->path);
    free(w->dir);
    free(w);
}

/* ------------------------------------------------------------------ */
/* lookups                                                             */
/* ------------------------------------------------------------------ */

const cdx_tensor_info *cdx_weights_find(const cdx_weights *w, const char *name)
{
    const cdx_wtensor *t = lookup(w, name);
    return t && t->float_dtype ? &t->info : NULL;
}

int cdx_weights_count(const cdx_weights *w) { return (int)w->n_visible; }

const cdx_tensor_info *cdx_weights_at(const cdx_weights *w, int i)
{
    if (i < 0 || (size_t)i >= w->n_visible) return NULL;
    return &w->t[w->visible[i]].info;
}

const char *cdx_weights_path(const cdx_weights *w) { return w->path; }

const char *cdx_weights_dtype_name(const cdx_weights *w)
{
    size_t count[3] = {0, 0, 0};
    int best = CDX_DT_F32;
    if (w->n_visible == 0) return "none";
    for (size_t i = 0; i < w->n_visible; i++) count[w->t[w->visible[i]].info.dtype]++;
    for (int d = CDX_DT_F16; d <= CDX_DT_BF16; d++)
        if (count[d] > count[best]) best = d;
    return dtype_str((cdx_dtype)best);
}

const char *cdx_wfmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int d = 0; d < ndim && used < cap; d++) {
        n = snprintf(buf + used, cap - used, "%s%lld", d ? "," : "", (long long)shape[d]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

/* Convert 2-byte elements that may sit at any address (a safetensors
 * offset need not be even): copy chunks to an aligned buffer first. */
static void convert_u16(const uint8_t *src, float *dst, size_t n, cdx_dtype dt)
{
    uint16_t tmp[4096];
    while (n > 0) {
        size_t k = n < 4096 ? n : 4096;
        memcpy(tmp, src, k * 2);
        if (dt == CDX_DT_F16)
            cdx_f16_to_f32(tmp, dst, k);
        else
            cdx_bf16_to_f32(tmp, dst, k);
        src += k * 2;
        dst += k;
        n -= k;
    }
}

cdx_status cdx_weights_f32(cdx_weights *w, const char *name, int ndim, const int64_t *shape,
                           const float **out)
{
    cdx_wtensor *t = lookup(w, name);
    const char *file;
    char got[256], want[256];
    bool same;
    float *buf = NULL;
    uint8_t *raw = NULL;
    size_t fbytes = 0;
    cdx_status st = CDX_OK;

    if (!t) return cdx_fail(CDX_ERR_MODEL, "%s: tensor %s: not found", w->path, name);
    file = w->src[t->src].path;
    if (t->unsupported) {
        if (!t->float_dtype)
            return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: tensor %s: unsupported dtype %s", file,
                            name, t->dtype_name);
        return cdx_fail(CDX_ERR_UNSUPPORTED, "%s: tensor %s: %s", file, name, t->unsupported);
    }
    same = ndim == t->info.ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] == t->info.shape[d];
    if (!same)
        return cdx_fail(CDX_ERR_MODEL, "%s: tensor %s: shape %s, expected %s", file, name,
                        cdx_wfmt_shape(got, sizeof got, t->info.ndim, t->info.shape),
                        cdx_wfmt_shape(want, sizeof want, ndim, shape));
    if (t->f32) {
        *out = t->f32;
        return CDX_OK;
    }
    if (t->info.numel == 0) {
        t->f32 = empty_tensor;
        *out = t->f32;
        return CDX_OK;
    }

    /* numel * 4 cannot overflow for a tensor whose bytes are in a file,
     * but the check costs nothing. */
    if (!cdx_mul_ok((size_t)t->info.numel, sizeof(float), &fbytes)) goto nomem;
    if (w->src[t->src].map) { /* safetensors, legacy torch: mapped */
        const uint8_t *p = w->src[t->src].map + t->offset;
        if (t->info.dtype == CDX_DT_F32 && ((uintptr_t)p % _Alignof(float)) == 0) {
            t->f32 = (const float *)(const void *)p; /* zero-copy */
        } else {
            if (!(buf = malloc(fbytes))) goto nomem;
            if (t->info.dtype == CDX_DT_F32)
                memcpy(buf, p, t->nbytes);
            else
                convert_u16(p, buf, (size_t)t->info.numel, t->info.dtype);
        }
    } else {
        if (!(buf = malloc(fbytes))) goto nomem;
        if (t->info.dtype == CDX_DT_F32) {
            st = cdx_tb_read(w, t, buf);
        } else {
            if (!(raw = malloc(t->nbytes))) goto nomem;
            st = cdx_tb_read(w, t, raw);
            if (st == CDX_OK) convert_u16(raw, buf, (size_t)t->info.numel, t->info.dtype);
        }
        if (st != CDX_OK) goto cleanup;
    }
    if (buf) {
        t->owned = buf;
        t->f32 = buf;
        buf = NULL;
    }
    *out = t->f32;
    goto cleanup;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "%s: tensor %s: out of memory (%zu bytes)", file, name,
                  t->nbytes);
cleanup:
    free(buf);
    free(raw);
    return st;
}

void cdx_weights_drop_pages(const cdx_weights *w, const float *p, size_t n)
{
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, b = a + n * sizeof(float);
    for (int i = 0; w && i < w->n_src; i++) {
        uintptr_t m0 = (uintptr_t)w->src[i].map, m1 = m0 + w->src[i].map_len;
        if (!w->src[i].map || a < m0 || b > m1) continue;
        /* Only whole pages inside the range: never a neighbour's data
         * (harmless anyway: a read-only file mapping refaults it). */
        uintptr_t s = (a + pg - 1) & ~(pg - 1), e = b & ~(pg - 1);
        if (e > s) madvise((void *)s, e - s, MADV_DONTNEED);
        return;
    }
}
