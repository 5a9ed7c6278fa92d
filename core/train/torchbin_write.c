/*
 * torchbin_write.c - writing a state dict of float32 tensors as torch.save
 * does (the zip format core/engine/torchbin.c reads), so a trained model
 * whose input was open_clip_pytorch_model.bin comes out in that format.
 *
 * The archive, every record stored uncompressed (PyTorch's reader takes
 * no other):
 *   archive/data.pkl    the pickle (protocol 2) of an OrderedDict
 *   archive/data/K      tensor K's bytes, little-endian float32
 *   archive/byteorder   "little"
 *   archive/version     "3"
 * and the pickle, per tensor, the call torch.save records:
 *   NAME: torch._utils._rebuild_tensor_v2(
 *           persistent_id(('storage', torch.FloatStorage, 'K', 'cpu', numel)),
 *           0, (sizes), (strides), False, OrderedDict())
 * in the opcodes torch's pickler emits (MARK ... TUPLE, BINPERSID, REDUCE,
 * SETITEMS), no memo.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zip.h>

#include "internal.h"
#include "train_impl.h"

/* Every record's time stamp: a fixed one (1980-01-01, the zip epoch), so
 * the same weights give the same bytes (--resume is checked byte for byte). */
#define FIXED_MTIME ((time_t)315532800)

struct pk {
    unsigned char *b;
    size_t n, cap;
    int bad;
};

static void put(struct pk *p, const void *src, size_t n)
{
    if (p->bad) return;
    if (p->n + n > p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4096;
        while (cap < p->n + n) cap *= 2;
        unsigned char *b = realloc(p->b, cap);
        if (!b) {
            p->bad = 1;
            return;
        }
        p->b = b;
        p->cap = cap;
    }
    memcpy(p->b + p->n, src, n);
    p->n += n;
}

static void op(struct pk *p, unsigned char c) { put(p, &c, 1); }

static void str(struct pk *p, const char *s)
{
    /* BINUNICODE: u32 length, UTF-8 */
    uint32_t n = (uint32_t)strlen(s);
    unsigned char len[4] = {(unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 24)};
    op(p, 'X');
    put(p, len, 4);
    put(p, s, n);
}

static void global(struct pk *p, const char *module, const char *name)
{
    op(p, 'c');
    put(p, module, strlen(module));
    op(p, '\n');
    put(p, name, strlen(name));
    op(p, '\n');
}

static void integer(struct pk *p, int64_t v)
{
    if (v >= 0 && v < 256) {
        unsigned char b[2] = {'K', (unsigned char)v};
        put(p, b, 2);
    } else if (v >= 0 && v < 65536) {
        unsigned char b[3] = {'M', (unsigned char)v, (unsigned char)(v >> 8)};
        put(p, b, 3);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        uint32_t u = (uint32_t)(int32_t)v;
        unsigned char b[5] = {'J', (unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        put(p, b, 5);
    } else {
        /* LONG1: 8 bytes two's complement */
        uint64_t u = (uint64_t)v;
        unsigned char b[10] = {0x8a, 8};
        for (int i = 0; i < 8; i++) b[2 + i] = (unsigned char)(u >> (8 * i));
        put(p, b, 10);
    }
}

cdx_status cdx_train_write_torchbin(const char *path, int n, const cdx_train_out *t)
{
    struct pk p = {0};
    zip_t *za = NULL;
    int err = 0, fd = -1;
    char key[32], entry[64];
    cdx_status st = CDX_OK;

    op(&p, 0x80);
    op(&p, 2);
    global(&p, "collections", "OrderedDict");
    op(&p, ')');
    op(&p, 'R');
    op(&p, '(');
    for (int i = 0; i < n; i++) {
        str(&p, t[i].name);
        global(&p, "torch._utils", "_rebuild_tensor_v2");
        op(&p, '(');
        op(&p, '(');
        str(&p, "storage");
        global(&p, "torch", "FloatStorage");
        snprintf(key, sizeof key, "%d", i);
        str(&p, key);
        str(&p, "cpu");
        integer(&p, t[i].numel);
        op(&p, 't');
        op(&p, 'Q');
        integer(&p, 0);
        op(&p, '(');
        for (int d = 0; d < t[i].ndim; d++) integer(&p, t[i].shape[d]);
        op(&p, 't');
        op(&p, '(');
        for (int d = 0; d < t[i].ndim; d++) {
            int64_t stride = 1;
            for (int e = d + 1; e < t[i].ndim; e++) stride *= t[i].shape[e];
            integer(&p, stride);
        }
        op(&p, 't');
        op(&p, 0x89);
        global(&p, "collections", "OrderedDict");
        op(&p, ')');
        op(&p, 'R');
        op(&p, 't');
        op(&p, 'R');
    }
    op(&p, 'u');
    op(&p, '.');
    if (p.bad) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }

    if (!(za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err))) {
        st = cdx_fail(CDX_ERR_IO, "%s: cannot create the archive (libzip error %d)", path, err);
        goto out;
    }
#define ADD(name, buf, len)                                                                     \
    do {                                                                                        \
        zip_source_t *src_ = zip_source_buffer(za, (buf), (len), 0);                            \
        zip_int64_t idx_ = src_ ? zip_file_add(za, (name), src_, ZIP_FL_ENC_UTF_8) : -1;        \
        if (idx_ < 0 || zip_set_file_compression(za, (zip_uint64_t)idx_, ZIP_CM_STORE, 0) < 0 || \
            zip_file_set_mtime(za, (zip_uint64_t)idx_, FIXED_MTIME, 0) < 0) {                   \
            if (src_ && idx_ < 0) zip_source_free(src_);                                        \
            st = cdx_fail(CDX_ERR_IO, "%s: %s", path, zip_strerror(za));                        \
            goto out;                                                                           \
        }                                                                                       \
    } while (0)
    ADD("archive/data.pkl", p.b, p.n);
    for (int i = 0; i < n; i++) {
        snprintf(entry, sizeof entry, "archive/data/%d", i);
        ADD(entry, t[i].data, sizeof(float) * (size_t)t[i].numel);
    }
    ADD("archive/byteorder", "little", 6);
    ADD("archive/version", "3\n", 2);
#undef ADD
    if (zip_close(za) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", path, zip_strerror(za));
        goto out;
    }
    za = NULL;
    /* durable before the directory is renamed into place */
    if ((fd = open(path, O_RDONLY)) < 0 || fsync(fd) != 0) st = cdx_fail(CDX_ERR_IO, "%s: fsync failed", path);
out:
    if (fd >= 0) close(fd);
    if (za) zip_discard(za);
    free(p.b);
    return st;
}
