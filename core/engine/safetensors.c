/*
 * safetensors.c - map one .safetensors file and validate its header.
 *
 * The format: an 8-byte little-endian header length n, n bytes of JSON
 * {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *  "__metadata__": {...}} (the metadata is ignored), then the data area;
 * offsets are relative to the start of the data area.  The file is
 * untrusted: every number is checked before it is used, and after this
 * file returns OK every tensor's bytes are known to lie inside the
 * mapping with a size equal to numel x dtype size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "weights_impl.h"

/* The reference implementation refuses headers over 100 MB; a CLIP header
 * is ~50 kB.  The bound keeps a hostile length from costing a huge copy. */
#define CDX_ST_HEADER_MAX ((uint64_t)100 << 20)

/* Shape arrays longer than this are malformed rather than merely beyond
 * CDX_MAX_DIMS (no real tensor has them). */
#define CDX_ST_DIMS_MAX 64

/* JSON numbers are doubles in cJSON: integers are exact up to 2^53. */
#define CDX_ST_INT_MAX 9007199254740992.0

/* One tensor's byte range in the data area, for the overlap check. */
typedef struct st_range {
    size_t begin, end;
    size_t tensor; /* index into w->t */
} st_range;

static int cmp_range(const void *a, const void *b)
{
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* A JSON number that is a non-negative integer a double holds exactly. */
static bool json_uint(const cJSON *v, uint64_t *out)
{
    double d;
    if (!cJSON_IsNumber(v)) return false;
    d = v->valuedouble;
    if (!(d >= 0.0) || d > CDX_ST_INT_MAX || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static bool all_space(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') return false;
    return true;
}

/* Validate one header entry and register its tensor.  data_len is the
 * size of the data area; data_begin its offset in the file. */
static cdx_status parse_entry(cdx_weights *w, int src, const char *path, const cJSON *item,
                              size_t data_begin, size_t data_len, st_range *range)
{
    const char *name = item->string;
    const cJSON *dtype, *shape, *offs, *v;
    int64_t dims[CDX_ST_DIMS_MAX];
    int ndim = 0;
    uint64_t begin, end, u;
    cdx_wtensor *t;
    cdx_status st;
    char sbuf[256];

    if (!cJSON_IsObject(item))
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: header entry is not an object", path,
                        name);
    dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype))
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: no \"dtype\" string", path, name);
    if (!cJSON_IsArray(shape))
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: no \"shape\" array", path, name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: \"data_offsets\" is not [begin, end]",
                        path, name);
    cJSON_ArrayForEach(v, shape) {
        if (ndim == CDX_ST_DIMS_MAX)
            return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: more than %d dimensions", path,
                            name, CDX_ST_DIMS_MAX);
        if (!json_uint(v, &u))
            return cdx_fail(CDX_ERR_FORMAT,
                            "%s: tensor %s: shape holds something other than a size", path,
                            name);
        dims[ndim++] = (int64_t)u;
    }
    if (!json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &end))
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: data_offsets are not integers", path,
                        name);

    t = cdx_weights_add_tensor(w, src, name);
    if (!t) return CDX_ERR_NOMEM;
    st = cdx_wtensor_set_layout(t, path, dtype->valuestring, ndim, dims);
    if (st != CDX_OK) return st;

    if (begin > end)
        return cdx_fail(CDX_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%llu,%llu] end before they begin", path,
                        name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return cdx_fail(CDX_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%llu,%llu] outside the %zu-byte data area",
                        path, name, (unsigned long long)begin, (unsigned long long)end,
                        data_len);
    if (end - begin != t->nbytes)
        return cdx_fail(CDX_ERR_FORMAT,
                        "%s: tensor %s: data_offsets span %llu bytes but %s %s needs %zu", path,
                        name, (unsigned long long)(end - begin), t->dtype_name,
                        cdx_wfmt_shape(sbuf, sizeof sbuf, ndim, dims), t->nbytes);
    /* data_begin + end <= file size, so no overflow is possible here. */
    t->offset = data_begin + (size_t)begin;
    range->begin = (size_t)begin;
    range->end = (size_t)end;
    range->tensor = w->n_t - 1;
    return CDX_OK;
}

cdx_status cdx_st_load(cdx_weights *w, const char *path)
{
    cdx_status st = CDX_OK;
    int fd = -1, src = -1;
    void *map = MAP_FAILED;
    size_t len = 0, data_begin, data_len, n_ranges = 0, n_items = 0, prev_end = 0, prev = 0;
    uint64_t hlen;
    char *hdr = NULL, *src_path = NULL;
    const char *parse_end = NULL;
    cJSON *root = NULL;
    const cJSON *item;
    st_range *ranges = NULL;
    struct stat sb;
    const uint8_t *base;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = cdx_fail(CDX_ERR_IO, "%s: not a regular file", path);
        goto cleanup;
    }
    if (sb.st_size < 8) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: truncated: %lld bytes, shorter than the header length",
                      path, (long long)sb.st_size);
        goto cleanup;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = cdx_fail(CDX_ERR_LIMIT, "%s: too large to map", path);
        goto cleanup;
    }
    len = (size_t)sb.st_size;
    map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        st = cdx_fail(CDX_ERR_IO, "%s: mmap: %s", path, strerror(errno));
        goto cleanup;
    }
    /* From here the source owns the mapping, so close releases it. */
    if (!(src_path = strdup(path))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    st = cdx_weights_add_source(w, src_path, CDX_WSRC_SAFETENSORS, &src);
    src_path = NULL;
    if (st != CDX_OK) goto cleanup;
    w->src[src].map = map;
    w->src[src].map_len = len;
    map = MAP_FAILED;
    base = w->src[src].map;

    hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
    if (hlen > CDX_ST_HEADER_MAX) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: header length %llu is over the %llu-byte limit",
                      path, (unsigned long long)hlen, (unsigned long long)CDX_ST_HEADER_MAX);
        goto cleanup;
    }
    if (hlen > len - 8) {
        st = cdx_fail(CDX_ERR_FORMAT,
                      "%s: truncated: header length %llu runs past the end of the file "
                      "(%zu bytes)", path, (unsigned long long)hlen, len);
        goto cleanup;
    }
    data_begin = 8 + (size_t)hlen;
    data_len = len - data_begin;

    /* cJSON gets its own NUL-terminated copy: the mapping has no NUL
     * after the header, and the copy is small. */
    if (!(hdr = malloc((size_t)hlen + 1))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    memcpy(hdr, base + 8, (size_t)hlen);
    hdr[hlen] = '\0';
    if (hlen == 0 || hdr[0] != '{') {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: header does not start with '{'", path);
        goto cleanup;
    }
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &parse_end, 0);
    if (!root) {
        size_t at = parse_end && parse_end >= hdr ? (size_t)(parse_end - hdr) : 0;
        st = cdx_fail(CDX_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu of %llu)",
                      path, at, (unsigned long long)hlen);
        goto cleanup;
    }
    /* Writers pad the header with spaces to align the data; anything else
     * after the JSON means the header length is wrong. */
    if (!parse_end || !all_space(parse_end, hdr + hlen)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: unexpected bytes after the header JSON", path);
        goto cleanup;
    }
    if (!cJSON_IsObject(root)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto cleanup;
    }

    cJSON_ArrayForEach(item, root) n_items++;
    if (!(ranges = calloc(n_items ? n_items : 1, sizeof *ranges))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    cJSON_ArrayForEach(item, root) {
        if (!item->string) continue; /* cannot happen in an object */
        if (strcmp(item->string, "__metadata__") == 0) continue;
        st = parse_entry(w, src, path, item, data_begin, data_len, &ranges[n_ranges]);
        if (st != CDX_OK) goto cleanup;
        n_ranges++;
    }

    /* Tensors must not share bytes: the format forbids it, and a header
     * that overlaps them is either corrupt or crafted.  Gaps are harmless
     * and tolerated. */
    qsort(ranges, n_ranges, sizeof *ranges, cmp_range);
    for (size_t i = 0; i < n_ranges; i++) {
        if (ranges[i].begin == ranges[i].end) continue; /* empty tensors hold no bytes */
        if (ranges[i].begin < prev_end) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: data overlaps tensor %s", path,
                          w->t[ranges[i].tensor].name, w->t[prev].name);
            goto cleanup;
        }
        if (ranges[i].end > prev_end) {
            prev_end = ranges[i].end;
            prev = ranges[i].tensor;
        }
    }
cleanup:
    free(ranges);
    cJSON_Delete(root);
    free(hdr);
    free(src_path);
    if (map != MAP_FAILED) munmap(map, len);
    if (fd >= 0) close(fd);
    return st;
}
