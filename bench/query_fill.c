/*
 * query_fill.c - fill an index store for bench/run-query.sh: N files with
 * random unit vectors in the vector space of a given model (its real
 * store key, so `clipdex search --model DIR` finds them), random 64-bit
 * pHashes of which about 2% are near copies of the previous file's (a few
 * bits flipped, so dupes has groups to find), vectors of which another 2%
 * are near copies of the previous file's (noise of norm 0.2 added, cosine
 * about 0.98, so semantic dupes has pairs to find), and plausible
 * metadata.
 * The same vectors go to a .npy file (float32, N x E, C order) for the
 * Python baseline.
 *
 * usage: query_fill DATA_DIR MODEL_DIR N VECTORS.npy
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipdex.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double uniform(void)
{
    return ((next() >> 11) + 0.5) / 9007199254740992.0;
}

static float gauss(void)
{
    return (float)(sqrt(-2 * log(uniform())) * cos(2 * M_PI * uniform()));
}

int main(int argc, char **argv)
{
    cdx_model *m = NULL;
    cdx_store *s = NULL;
    cdx_store_opts so = {0};
    cdx_store_model sm = {0};
    char key[2 * CDX_HASH_SIZE + 1], cfg[PATH_MAX], path[256], *mdir = NULL;
    FILE *npy = NULL;
    float *v = NULL;
    long n;
    uint64_t prev_phash = 0;

    if (argc != 5 || (n = strtol(argv[3], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: query_fill DATA_DIR MODEL_DIR N VECTORS.npy\n");
        return 2;
    }
    if (cdx_model_open(argv[2], CDX_TOWER_TEXT, &m) != CDX_OK) goto fail;
    const cdx_model_info *info = cdx_model_get_info(m);
    const int E = info->projection_dim;
    snprintf(cfg, sizeof cfg, "%s/config.json", argv[2]);
    if (cdx_store_model_key(cfg, info->weights_file, key) != CDX_OK) goto fail;
    so.writer = 1;
    so.save_every = n + 1; /* one FAISS save, at close */
    if (cdx_store_open(argv[1], &so, &s) != CDX_OK) goto fail;
    mdir = realpath(argv[2], NULL);
    sm.key = key;
    sm.name = "bench";
    sm.dir = mdir ? mdir : argv[2];
    sm.dim = E;
    if (cdx_store_use_model(s, &sm, NULL) != CDX_OK) goto fail;
    if (!(v = malloc(sizeof(float) * (size_t)E))) goto fail;

    /* .npy v1.0: magic, version, header length, a dict padded to 64 bytes */
    if (!(npy = fopen(argv[4], "wb"))) {
        perror(argv[4]);
        goto fail;
    }
    {
        char hdr[128];
        int len = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%ld, %d), }", n, E);
        int total = 10 + len + 1;
        int pad = (64 - total % 64) % 64;
        fwrite("\x93NUMPY\x01\x00", 1, 8, npy);
        uint16_t hl = (uint16_t)(len + pad + 1);
        fputc(hl & 0xff, npy);
        fputc(hl >> 8, npy);
        fwrite(hdr, 1, (size_t)len, npy);
        for (int i = 0; i < pad; i++) fputc(' ', npy);
        fputc('\n', npy);
    }

    for (long i = 0; i < n; i++) {
        cdx_file_meta fm;
        char content[64];
        double ss = 0;
        if (i % 5000 == 0 && cdx_store_begin(s) != CDX_OK) goto fail;
        if (i % 50 == 24) {
            /* v is still the previous vector (unit length): add noise of
             * norm ~0.2 */
            for (int d = 0; d < E; d++) {
                v[d] += (float)(0.2 / sqrt(E)) * gauss();
                ss += (double)v[d] * v[d];
            }
        } else {
            for (int d = 0; d < E; d++) {
                v[d] = gauss();
                ss += (double)v[d] * v[d];
            }
        }
        for (int d = 0; d < E; d++) v[d] = (float)(v[d] / sqrt(ss));
        fwrite(v, sizeof(float), (size_t)E, npy);
        memset(&fm, 0, sizeof fm);
        snprintf(path, sizeof path, "/bench/photos/%03ld/IMG_%07ld.jpg", i / 1000, i);
        fm.path = path;
        snprintf(content, sizeof content, "bench-content-%ld", i);
        cdx_hash_buf(content, strlen(content), fm.hash);
        fm.has_hash = 1;
        fm.size = 1000000 + (int64_t)(next() % 4000000);
        fm.mtime_ns = (1400000000 + (int64_t)(next() % 300000000)) * 1000000000ll;
        fm.taken_at = CDX_TIME_UNKNOWN;
        fm.width = 4000;
        fm.height = 3000;
        fm.orientation = 1;
        if (i % 50 == 49) {
            /* a near copy of the previous picture: 0..6 bits flipped */
            fm.phash = prev_phash;
            for (int k = (int)(next() % 7); k > 0; k--) fm.phash ^= 1ull << (next() % 64);
        } else {
            fm.phash = next();
        }
        fm.has_phash = 1;
        prev_phash = fm.phash;
        if (cdx_store_put_file(s, &fm, v, NULL) != CDX_OK) goto fail;
        if (i % 5000 == 4999 || i == n - 1) {
            if (cdx_store_commit(s) != CDX_OK) goto fail;
        }
    }
    if (fclose(npy) != 0) {
        npy = NULL;
        perror(argv[4]);
        goto fail;
    }
    npy = NULL;
    cdx_store_close(s);
    cdx_model_close(m);
    free(v);
    free(mdir);
    return 0;
fail:
    fprintf(stderr, "query_fill: %s\n", cdx_last_error());
    if (npy) fclose(npy);
    cdx_store_close(s);
    cdx_model_close(m);
    free(v);
    free(mdir);
    return 1;
}
