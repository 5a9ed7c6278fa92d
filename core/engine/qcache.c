/*
 * qcache.c - see qcache.h.
 *
 * File layout (little-endian, every part 64-byte aligned):
 *   header, 4096 bytes: magic "CDXQWTS1", version, layer count, file
 *     size, checksum of bytes [4096, size), key length, the key text;
 *   per layer: its cdx_qlinear_desc, then its blobs in order, each
 *     padded to 64 bytes.
 * The layers are the stack's products in block order: qkv (or q, k, v),
 * out, fc1, fc2.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dnnl.h>

#include "internal.h"
#include "cpu.h"
#include "qcache.h"
#include "qlinear.h"
#include "weights_impl.h"

#define HDR 4096
#define VERSION 1
#define MAX_KEY 3072

struct hdr {
    char magic[8];
    uint32_t version, nlayers;
    uint64_t size, sum;
    uint32_t keylen, pad;
};

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Fletcher-style over 64-bit words in four lanes (any changed byte
 * changes it; about memory speed).  The state lets the writer sum what
 * it streams out (in multiples of 32 bytes). */
struct sum {
    uint64_t a[4], s[4];
};
static const struct sum sum0 = {{1, 2, 3, 4}, {0, 0, 0, 0}};

static size_t sum_update(struct sum *st, const unsigned char *b, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, b + i + 8 * l, 8);
            st->a[l] += w;
            st->s[l] += st->a[l];
        }
    return i;
}

static uint64_t sum_final(const struct sum *st, uint64_t tail, size_t n)
{
    uint64_t h = tail ^ n;
    for (int l = 0; l < 4; l++) h = (h ^ st->a[l]) * 0x100000001B3ull ^ st->s[l] * 0x9E3779B97F4A7C15ull;
    return h;
}

/* n need not be a multiple of 32 here. */
uint64_t cdx_qcache_sum(const void *p, size_t n)
{
    const unsigned char *b = p;
    struct sum st = sum0;
    size_t i = sum_update(&st, b, n);
    uint64_t tail = 0;
    memcpy(&tail, b + i, n - i < 8 ? n - i : 8); /* (the rest is zero padding in files) */
    for (size_t j = i + 8; j < n; j++) tail = tail * 131 + b[j];
    return sum_final(&st, tail, n);
}

static int enabled(const char **dir_override)
{
    const char *e = getenv("CLIPDEX_CACHE");
    *dir_override = NULL;
    if (!e || !*e || strcmp(e, "on") == 0) return 1;
    if (strcmp(e, "off") == 0 || strcmp(e, "0") == 0 || strcmp(e, "no") == 0) return 0;
    *dir_override = e;
    return 1;
}

char *cdx_weights_cache_dir(void)
{
    const char *over, *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *d = NULL;
    if (!enabled(&over)) return NULL;
    if (over) d = strdup(over);
    else if (xdg && *xdg == '/') d = cdx_path_join(xdg, "clipdex/weights");
    else if (home && *home) d = cdx_path_join(home, ".cache/clipdex/weights");
    return d;
}

static void layers_of(const cdx_block_w *l, const cdx_qlinear *q[6], int *n)
{
    *n = 0;
    if (l->qkv_q) q[(*n)++] = l->qkv_q;
    else q[(*n)++] = l->q_q, q[(*n)++] = l->k_q, q[(*n)++] = l->v_q;
    q[(*n)++] = l->o_q;
    q[(*n)++] = l->fc1_q;
    q[(*n)++] = l->fc2_q;
}

/* The key text (malloc'd) and the file path (malloc'd), or 0. */
static int key_and_path(const cdx_stack *t, const cdx_weights *w, cdx_precision p, char **key, char **path)
{
    char buf[MAX_KEY], real[PATH_MAX];
    size_t n = 0;
    *key = *path = NULL;
    if (!t->cache_tower || !w || !w->dir) return 0;
    char *dir = cdx_weights_cache_dir();
    if (!dir) return 0;
    const dnnl_version_t *v = dnnl_version();
    n += (size_t)snprintf(buf + n, sizeof buf - n,
                          "clipdex converted weights %d\nmodel %s\ntower %s L%d C%d F%d H%d flags %u\n"
                          "precision %s\ncpu %s\nonednn %d.%d.%d %s\n",
                          VERSION, realpath(w->dir, real) ? real : w->dir, t->cache_tower, t->L, t->C,
                          t->F, t->H, t->qflags, cdx_precision_name(p), cdx_isa_name(cdx_cpu_isa()),
                          v->major, v->minor, v->patch, v->hash ? v->hash : "");
    for (int i = 0; i < w->n_src && n < sizeof buf; i++) {
        struct stat st;
        if (stat(w->src[i].path, &st) != 0) {
            free(dir);
            return 0;
        }
        n += (size_t)snprintf(buf + n, sizeof buf - n, "source %s %lld %lld.%09ld %llu\n",
                              realpath(w->src[i].path, real) ? real : w->src[i].path,
                              (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                              (unsigned long long)st.st_ino);
    }
    if (n >= sizeof buf) {
        free(dir);
        return 0;
    }
    uint8_t h[CDX_HASH_SIZE];
    char hex[2 * CDX_HASH_SIZE + 1], name[128];
    if (cdx_hash_buf(buf, n, h)) {
        free(dir);
        return 0;
    }
    cdx_hash_hex(h, hex);
    snprintf(name, sizeof name, "%.32s-%s-%s.cdxw", hex, t->cache_tower, cdx_precision_name(p));
    *path = cdx_path_join(dir, name);
    *key = strdup(buf);
    free(dir);
    if (!*path || !*key) {
        free(*path);
        free(*key);
        *key = *path = NULL;
        return 0;
    }
    return 1;
}

static void free_products(cdx_stack *t)
{
    for (int i = 0; i < t->L; i++) {
        cdx_block_w *l = &t->layers[i];
        cdx_qlinear **q[7] = {&l->q_q, &l->k_q, &l->v_q, &l->o_q, &l->fc1_q, &l->fc2_q, &l->qkv_q};
        for (int j = 0; j < 7; j++) {
            cdx_qlinear_free(*q[j]);
            *q[j] = NULL;
        }
    }
}

int cdx_qcache_load(cdx_stack *t, const cdx_weights *w, cdx_precision p)
{
    char *key = NULL, *path = NULL;
    const char *why = NULL;
    void *map = MAP_FAILED;
    size_t len = 0;
    int fd = -1, ok = 0;
    struct stat st;
    if (!key_and_path(t, w, p, &key, &path)) return 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) goto out; /* first use: quietly convert */
    if (fstat(fd, &st) != 0 || st.st_size < HDR) {
        why = "truncated";
        goto out;
    }
    len = (size_t)st.st_size;
    /* populated: the checksum reads every page now, in one call rather
     * than a fault per page */
    if ((map = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)) == MAP_FAILED) {
        why = "cannot be mapped";
        goto out;
    }
    struct hdr h;
    memcpy(&h, map, sizeof h);
    const char *kfile = (const char *)map + sizeof h;
    if (memcmp(h.magic, "CDXQWTS1", 8) != 0 || h.version != VERSION) {
        why = "not a clipdex weights cache file of this version";
        goto out;
    }
    if (h.size != len) {
        why = "truncated (its size does not match its header)";
        goto out;
    }
    if (h.keylen != strlen(key) || h.keylen > HDR - sizeof h || memcmp(kfile, key, h.keylen) != 0) {
        why = "made for another model, precision or CPU";
        goto out;
    }
    if (cdx_qcache_sum((const char *)map + HDR, len - HDR) != h.sum) {
        why = "damaged (checksum mismatch)";
        goto out;
    }
    /* the layers */
    size_t off = HDR;
    uint32_t nl = 0;
    for (int i = 0; i < t->L; i++) {
        cdx_block_w *l = &t->layers[i];
        const int fused = t->F >= 3 * t->C; /* as cdx_stack_prepare */
        cdx_qlinear **dst[6];
        int nd = 0;
        if (fused) dst[nd++] = &l->qkv_q;
        else dst[nd++] = &l->q_q, dst[nd++] = &l->k_q, dst[nd++] = &l->v_q;
        dst[nd++] = &l->o_q;
        dst[nd++] = &l->fc1_q;
        dst[nd++] = &l->fc2_q;
        for (int j = 0; j < nd; j++, nl++) {
            cdx_qlinear_desc d;
            const void *blob[CDX_QL_MAX_BLOBS];
            if (off + sizeof d > len) goto corrupt;
            memcpy(&d, (const char *)map + off, sizeof d);
            off += align64(sizeof d);
            if (d.nblobs > CDX_QL_MAX_BLOBS) goto corrupt;
            for (uint32_t b = 0; b < d.nblobs; b++) {
                if (d.blob_bytes[b] > len - off) goto corrupt;
                blob[b] = (const char *)map + off;
                off += align64(d.blob_bytes[b]);
                if (off > len) goto corrupt;
            }
            if (cdx_qlinear_import(&d, blob, dst[j]) != CDX_OK) goto corrupt;
        }
    }
    if (nl != h.nlayers || off != len) goto corrupt;
    t->cache_map = map;
    t->cache_len = len;
    map = MAP_FAILED;
    ok = 1;
    goto out;
corrupt:
    free_products(t);
    why = "its layers do not match this model";
out:
    if (why) CDX_WARN("converted-weights cache %s: %s; converting again", path, why);
    if (map != MAP_FAILED) munmap(map, len);
    if (fd >= 0) close(fd);
    free(key);
    free(path);
    return ok;
}

/* A file written in 64-byte-aligned pieces, summed as it goes. */
struct out {
    int fd, ok;
    size_t n;
    struct sum st;
    unsigned char bounce[64];
};

static void put_raw(struct out *o, const void *p, size_t n)
{
    const char *c = p;
    while (o->ok && n) {
        ssize_t k = write(o->fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) o->ok = 0;
        else c += k, n -= (size_t)k;
    }
}

/* n bytes of p and zeros to the next multiple of 64 */
static void put(struct out *o, const void *p, size_t n)
{
    size_t whole = sum_update(&o->st, p, n);
    put_raw(o, p, whole);
    size_t rest = n - whole, padded = align64(n) - whole; /* rest < 32, padded < 96 */
    unsigned char tail[96] = {0};
    memcpy(tail, (const char *)p + whole, rest);
    sum_update(&o->st, tail, padded);
    put_raw(o, tail, padded);
    o->n += align64(n);
}

static int mkdirs(const char *dir)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return 0;
    for (char *s = tmp + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return 0;
            *s = '/';
        }
    return mkdir(tmp, 0700) == 0 || errno == EEXIST;
}

/* Streamed to a temporary file, the header (size, checksum) written
 * last, then renamed into place: a reader sees a whole file or none,
 * and the writer holds no second copy of the weights. */
void cdx_qcache_store(const cdx_stack *t, const cdx_weights *w, cdx_precision p)
{
    char *key = NULL, *path = NULL, *tmp = NULL;
    struct out o = {.fd = -1, .ok = 1, .n = HDR, .st = sum0};
    uint32_t nl = 0;
    if (t->cache_map || !key_and_path(t, w, p, &key, &path)) goto out;
    for (int i = 0; i < t->L; i++) { /* everything exportable? (emulated layers are not) */
        const cdx_qlinear *q[6];
        int nq;
        layers_of(&t->layers[i], q, &nq);
        for (int j = 0; j < nq; j++) {
            cdx_qlinear_desc d;
            const void *blob[CDX_QL_MAX_BLOBS];
            if (!q[j] || !cdx_qlinear_export(q[j], &d, blob)) goto out;
        }
    }
    char *slash = strrchr(path, '/');
    *slash = 0;
    int made = mkdirs(path);
    *slash = '/';
    size_t tl = strlen(path) + 8;
    if (!made || !(tmp = malloc(tl))) goto out;
    snprintf(tmp, tl, "%s.XXXXXX", path);
    if ((o.fd = mkstemp(tmp)) < 0) goto out;
    static const unsigned char zero[HDR];
    put_raw(&o, zero, HDR);
    for (int i = 0; i < t->L; i++) {
        const cdx_qlinear *q[6];
        int nq;
        layers_of(&t->layers[i], q, &nq);
        for (int j = 0; j < nq; j++, nl++) {
            cdx_qlinear_desc d;
            const void *blob[CDX_QL_MAX_BLOBS];
            cdx_qlinear_export(q[j], &d, blob);
            put(&o, &d, sizeof d);
            for (uint32_t b = 0; b < d.nblobs; b++) put(&o, blob[b], d.blob_bytes[b]);
        }
    }
    unsigned char hdr[HDR] = {0};
    struct hdr h = {.version = VERSION, .nlayers = nl, .size = o.n, .sum = sum_final(&o.st, 0, o.n - HDR),
                    .keylen = (uint32_t)strlen(key)};
    memcpy(h.magic, "CDXQWTS1", 8);
    if (h.keylen > HDR - sizeof h) o.ok = 0;
    else {
        memcpy(hdr, &h, sizeof h);
        memcpy(hdr + sizeof h, key, h.keylen);
    }
    if (o.ok && pwrite(o.fd, hdr, HDR, 0) != HDR) o.ok = 0;
    if (close(o.fd) != 0) o.ok = 0;
    o.fd = -1;
    if (!o.ok || rename(tmp, path) != 0) unlink(tmp);
    else CDX_DEBUG("converted weights cached in %s", path);
out:
    if (o.fd >= 0) {
        close(o.fd);
        unlink(tmp);
    }
    free(tmp);
    free(key);
    free(path);
}

void cdx_qcache_release(cdx_stack *t)
{
    if (t->cache_map) munmap(t->cache_map, t->cache_len);
    t->cache_map = NULL;
    t->cache_len = 0;
}
