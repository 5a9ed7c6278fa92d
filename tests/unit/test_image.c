/*
 * test_image.c - the ingestion layer (core/image/) on
 * images made here with libjpeg, libpng and libtiff:
 *   - the 8 orientations against a plain per-pixel reference, and their
 *     group laws (rotating 4 times, mirroring twice = identity);
 *   - EXIF orientation applied on decode (JPEG APP1, PNG eXIf, the TIFF
 *     Orientation tag), metadata reported as stored;
 *   - JPEG DCT scaling picks the smallest power-of-two scale whose short
 *     side is still >= 2 * min_side, and fast preprocessing stays close
 *     to exact;
 *   - limits (pixels, file size) before allocation, metadata-only probes,
 *     outputs untouched on failure, one-line messages naming the file;
 *   - TIFF decoding on several threads at once (libtiff's handlers are
 *     per handle: each thread gets its own error message).
 */
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <tiffio.h>

#include "image/image_impl.h"
#include "tap.h"

static uint32_t rng = 2024;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* A smooth test picture with some edges: gradients plus a disc. */
static uint8_t *picture(uint32_t w, uint32_t h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (uint32_t y = 0; p && y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            double dx = x - w * 0.4, dy = y - h * 0.6;
            int in = dx * dx + dy * dy < (double)(h / 4) * (h / 4);
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(in ? 220 : 255 * x / w);
            q[1] = (uint8_t)(in ? 40 : 255 * y / h);
            q[2] = (uint8_t)((x / 16 + y / 16) % 2 ? 200 : 60);
        }
    return p;
}

/* "Exif\0\0" + little-endian TIFF with IFD0 = { Orientation o }. */
static size_t exif_orientation(uint8_t *b, unsigned o)
{
    static const uint8_t t[] = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0,
                                1, 0, 0x12, 1, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(b, t, sizeof t);
    b[6 + 8 + 2 + 8] = (uint8_t)o;
    return sizeof t;
}

static uint8_t *make_jpeg(const uint8_t *rgb, uint32_t w, uint32_t h, unsigned orientation,
                          size_t *len)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    unsigned char *out = NULL;
    unsigned long n = 0;
    uint8_t ex[64];

    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &out, &n);
    ci.image_width = w;
    ci.image_height = h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 92, TRUE);
    jpeg_start_compress(&ci, TRUE);
    if (orientation) jpeg_write_marker(&ci, JPEG_APP0 + 1, ex, (unsigned)exif_orientation(ex, orientation));
    while (ci.next_scanline < h) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)ci.next_scanline * w * 3);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *len = n;
    return out;
}

typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
} membuf;

static void png_write_mem(png_structp png, png_bytep data, size_t n)
{
    membuf *m = png_get_io_ptr(png);
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, data, n);
    m->n += n;
}
static void png_flush_mem(png_structp png) { (void)png; }

static uint8_t *make_png(const uint8_t *rgb, uint32_t w, uint32_t h, unsigned orientation,
                         size_t *len)
{
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    uint8_t ex[64];
    png_set_write_fn(png, &m, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (orientation) {
        size_t n = exif_orientation(ex, orientation);
        png_set_eXIf_1(png, info, (png_uint_32)(n - 6), ex + 6); /* eXIf holds bare TIFF */
    }
    png_write_info(png, info);
    for (uint32_t y = 0; y < h; y++) png_write_row(png, rgb + (size_t)y * w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *len = m.n;
    return m.p;
}

static int write_tiff(const char *path, const uint8_t *rgb, uint32_t w, uint32_t h,
                      unsigned orientation)
{
    TIFF *t = TIFFOpen(path, "w");
    if (!t) return -1;
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 16);
    TIFFSetField(t, TIFFTAG_ORIENTATION, orientation);
    TIFFSetField(t, TIFFTAG_MAKE, "TestMake");
    TIFFSetField(t, TIFFTAG_MODEL, "TestModel 1");
    for (uint32_t y = 0; y < h; y++)
        if (TIFFWriteScanline(t, (void *)(rgb + (size_t)y * w * 3), y, 0) < 0) return -1;
    TIFFClose(t);
    return 0;
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int bad = fwrite(p, 1, n, f) != n;
    return fclose(f) != 0 || bad ? -1 : 0;
}

/* Reference orientation, one pixel at a time from the definitions
 * (where the stored pixel comes from, for output pixel (x, y)). */
static void ref_orient(const uint8_t *in, uint32_t W, uint32_t H, int o, uint8_t *out)
{
    uint32_t ow = o >= 5 ? H : W, oh = o >= 5 ? W : H;
    for (uint32_t y = 0; y < oh; y++)
        for (uint32_t x = 0; x < ow; x++) {
            uint32_t sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;
            case 4: sx = x; sy = H - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = H - 1 - x; break;
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;
            case 8: sx = W - 1 - y; sy = x; break;
            default: sx = x; sy = y; break;
            }
            memcpy(out + ((size_t)y * ow + x) * 3, in + ((size_t)sy * W + sx) * 3, 3);
        }
}

static int same_image(const cdx_image *a, const cdx_image *b)
{
    return a->width == b->width && a->height == b->height &&
           memcmp(a->rgb, b->rgb, (size_t)a->width * a->height * 3) == 0;
}

static cdx_image copy_image(const cdx_image *a)
{
    cdx_image c = *a;
    size_t n = (size_t)a->width * a->height * 3;
    c.rgb = malloc(n);
    memcpy(c.rgb, a->rgb, n);
    return c;
}

static double psnr_tensors(const float *a, const float *b, size_t n, const cdx_preprocess_cfg *cfg)
{
    double se = 0;
    size_t plane = n / 3;
    for (size_t i = 0; i < n; i++) {
        double d = (a[i] - b[i]) * cfg->image_std[i / plane] * 255.0;
        se += d * d;
    }
    return se == 0 ? INFINITY : 10 * log10(255.0 * 255.0 / (se / n));
}

static int msg_names(const char *name)
{
    const char *e = cdx_last_error();
    size_t n = strlen(name);
    return strncmp(e, name, n) == 0 && e[n] == ':' && e[n + 1] == ' ' && !strchr(e, '\n');
}

/* ---- threads ---- */
typedef struct tjob {
    const char *good, *bad;
    int errors;
} tjob;

static void *tiff_thread(void *arg)
{
    tjob *j = arg;
    for (int it = 0; it < 40; it++) {
        cdx_image img = {0};
        cdx_decode_opts o = {.apply_orientation = 1};
        const char *p = (it & 1) ? j->bad : j->good; /* good: 48x32, upright 32x48 */
        cdx_status st = cdx_image_decode(p, &o, &img, NULL);
        if ((it & 1) ? (st == CDX_OK || !msg_names(p)) : (st != CDX_OK || img.width != 32))
            j->errors++;
        cdx_image_release(&img);
    }
    return NULL;
}

int main(void)
{
    cdx_decode_opts opts;
    cdx_image img, img2;
    cdx_image_meta meta;
    cdx_status st;
    char dir[] = "/tmp/cdx-test-image.XXXXXX";
    char path[256], path2[256];

    if (!mkdtemp(dir)) {
        printf("Bail out! mkdtemp\n");
        return 1;
    }

    /* ---- 1. orientation vs the reference, odd sizes across tiles ---- */
    {
        const uint32_t W = 37, H = 70;
        cdx_image base = {.width = W, .height = H, .rgb = malloc((size_t)W * H * 3)};
        uint8_t *want = malloc((size_t)W * H * 3);
        for (size_t i = 0; i < (size_t)W * H * 3; i++) base.rgb[i] = (uint8_t)rnd();
        for (int o = 0; o <= 9; o++) {
            cdx_image t = copy_image(&base);
            st = cdx_image_orient(&t, o);
            int oo = o >= 1 && o <= 8 ? o : 1;
            ref_orient(base.rgb, W, H, oo, want);
            ok(st == CDX_OK && t.width == (oo >= 5 ? H : W) && t.height == (oo >= 5 ? W : H) &&
               memcmp(t.rgb, want, (size_t)W * H * 3) == 0,
               "orientation %d of a %ux%u image matches the per-pixel reference%s", o, W, H,
               oo != o ? " (invalid: unchanged)" : "");
            cdx_image_release(&t);
        }
        /* group laws: 6 four times, 2/4/5 twice = identity; 8 undoes 6;
         * 3 = 2 then 4; 7 = 5 then 3 */
        struct { int seq[4]; int n; const char *what; } laws[] = {
            {{6, 6, 6, 6}, 4, "rotating 90 four times"}, {{2, 2}, 2, "mirroring twice"},
            {{4, 4}, 2, "flipping twice"}, {{5, 5}, 2, "transposing twice"},
            {{6, 8}, 2, "6 then 8"}, {{3, 4, 2}, 3, "3 then 4 then 2"},
            {{7, 5, 3}, 3, "7 then 5 then 3"},
        };
        for (size_t l = 0; l < sizeof laws / sizeof laws[0]; l++) {
            cdx_image t = copy_image(&base);
            for (int k = 0; k < laws[l].n; k++) cdx_image_orient(&t, laws[l].seq[k]);
            ok(same_image(&t, &base), "%s is the identity", laws[l].what);
            cdx_image_release(&t);
        }
        cdx_image_release(&base);
        free(want);
    }

    /* ---- 2. JPEG with EXIF orientation: upright on decode ---- */
    {
        const uint32_t W = 96, H = 64;
        uint8_t *pic = picture(W, H);
        size_t n0;
        uint8_t *j0 = make_jpeg(pic, W, H, 0, &n0);
        cdx_image stored = {0};
        cdx_decode_opts o0 = {0};
        st = cdx_image_decode_mem(j0, n0, "plain.jpg", &o0, &stored, &meta);
        ok(st == CDX_OK && stored.width == W && !strcmp(meta.format, "jpeg") &&
           meta.orientation == 1 && meta.taken_at == INT64_MIN,
           "JPEG without EXIF: %ux%u, orientation 1, no date", stored.width, stored.height);
        for (unsigned o = 1; o <= 8; o++) {
            size_t n;
            uint8_t *j = make_jpeg(pic, W, H, o, &n);
            cdx_decode_opts up = {.apply_orientation = 1};
            cdx_image a = {0}, b = {0};
            cdx_image_meta ma, mb;
            cdx_status s1 = cdx_image_decode_mem(j, n, "o.jpg", &up, &a, &ma);
            cdx_status s2 = cdx_image_decode_mem(j, n, "o.jpg", &o0, &b, &mb);
            cdx_image want = copy_image(&stored);
            cdx_image_orient(&want, (int)o);
            ok(s1 == CDX_OK && s2 == CDX_OK && ma.orientation == (int)o && mb.orientation == (int)o &&
               ma.width == W && ma.height == H && same_image(&a, &want) && same_image(&b, &stored),
               "JPEG orientation %u: upright %ux%u with apply_orientation, stored %ux%u without; "
               "meta keeps the stored size", o, a.width, a.height, b.width, b.height);
            cdx_image_release(&a);
            cdx_image_release(&b);
            cdx_image_release(&want);
            free(j);
        }
        /* PNG eXIf */
        size_t np;
        uint8_t *p8 = make_png(pic, W, H, 8, &np);
        cdx_decode_opts up = {.apply_orientation = 1};
        img = (cdx_image){0};
        st = cdx_image_decode_mem(p8, np, "o.png", &up, &img, &meta);
        cdx_image want = {.width = W, .height = H, .rgb = malloc((size_t)W * H * 3)};
        memcpy(want.rgb, pic, (size_t)W * H * 3);
        cdx_image_orient(&want, 8);
        ok(st == CDX_OK && meta.orientation == 8 && !strcmp(meta.format, "png") &&
           same_image(&img, &want), "PNG with eXIf orientation 8: upright, lossless (%ux%u)",
           img.width, img.height);
        cdx_image_release(&img);
        cdx_image_release(&want);
        free(p8);
        cdx_image_release(&stored);
        free(j0);
        free(pic);
    }

    /* ---- 3. DCT scaling and the fast path ---- */
    {
        const uint32_t W = 2000, H = 1500;
        uint8_t *pic = picture(W, H);
        size_t n;
        uint8_t *j = make_jpeg(pic, W, H, 6, &n);
        /* the smallest of 1/8, 1/4, 1/2 with short side >= 2 * min_side */
        static const struct { uint32_t min_side, w, h; } cases[] = {
            {94, 250, 188}, {95, 500, 375}, {187, 500, 375}, {188, 1000, 750},
            {224, 1000, 750}, {375, 1000, 750}, {376, 2000, 1500}, {5000, 2000, 1500},
            {0, 2000, 1500},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            cdx_decode_opts o = {.min_side = cases[i].min_side};
            img = (cdx_image){0};
            st = cdx_image_decode_mem(j, n, "big.jpg", &o, &img, &meta);
            ok(st == CDX_OK && img.width == cases[i].w && img.height == cases[i].h &&
               meta.width == W && meta.height == H,
               "min_side %u: decoded at %ux%u (want %ux%u), meta %ux%u", cases[i].min_side,
               img.width, img.height, cases[i].w, cases[i].h, meta.width, meta.height);
            cdx_image_release(&img);
        }
        /* upright + scaled: 375x500, then fast preprocessing vs exact */
        cdx_preprocess_cfg cfg;
        cdx_preprocess_cfg_default(&cfg);
        float *tf = malloc(sizeof(float) * 3 * 224 * 224), *te = malloc(sizeof(float) * 3 * 224 * 224);
        cdx_decode_opts of = {.apply_orientation = 1, .min_side = 224};
        cdx_decode_opts oe = {.apply_orientation = 1};
        img = (cdx_image){0};
        img2 = (cdx_image){0};
        cdx_status s1 = cdx_image_decode_mem(j, n, "big.jpg", &of, &img, NULL);
        cdx_status s2 = cdx_image_decode_mem(j, n, "big.jpg", &oe, &img2, NULL);
        ok(s1 == CDX_OK && s2 == CDX_OK && img.width == 750 && img.height == 1000 &&
           img2.width == 1500 && img2.height == 2000,
           "orientation 6 with DCT scaling: %ux%u (full %ux%u)", img.width, img.height,
           img2.width, img2.height);
        s1 = cdx_preprocess_exact(&cfg, &img, tf);
        s2 = cdx_preprocess_exact(&cfg, &img2, te);
        double ps = psnr_tensors(tf, te, 3 * 224 * 224, &cfg);
        ok(s1 == CDX_OK && s2 == CDX_OK && ps > 35, "fast vs exact preprocessing: PSNR %.1f dB", ps);
        cdx_image_release(&img);
        cdx_image_release(&img2);
        free(tf);
        free(te);

        /* ---- 4. limits ---- */
        cdx_decode_opts lim = {.max_pixels = 1000000};
        img = (cdx_image){.width = 7, .height = 7, .rgb = (uint8_t *)"sentinel"};
        memset(&meta, 0x5a, sizeof meta);
        st = cdx_image_decode_mem(j, n, "big.jpg", &lim, &img, &meta);
        ok(st == CDX_ERR_LIMIT && msg_names("big.jpg") &&
           strstr(cdx_last_error(), "image is 2000x1500 (3.0 megapixels), over the 1.0 megapixel limit"),
           "pixel limit: %s", cdx_last_error());
        ok(img.width == 7 && img.rgb && !memcmp(img.rgb, "sentinel", 8) &&
           ((unsigned char *)&meta)[0] == 0x5a, "outputs untouched on failure");
        st = cdx_image_decode_mem(j, n, "big.jpg", &lim, NULL, &meta);
        ok(st == CDX_ERR_LIMIT, "pixel limit applies to a metadata-only probe too");
        lim = (cdx_decode_opts){.min_side = 224, .max_pixels = 2999999};
        img = (cdx_image){0};
        st = cdx_image_decode_mem(j, n, "big.jpg", &lim, &img, NULL);
        ok(st == CDX_ERR_LIMIT, "the limit counts the stored size, not the DCT-scaled one");
        lim = (cdx_decode_opts){.max_file_bytes = n - 1};
        st = cdx_image_decode_mem(j, n, "big.jpg", &lim, &img, NULL);
        ok(st == CDX_ERR_LIMIT && strstr(cdx_last_error(), "over the"), "file size limit: %s",
           cdx_last_error());
        snprintf(path, sizeof path, "%s/big.jpg", dir);
        write_file(path, j, n);
        st = cdx_image_decode(path, &lim, &img, NULL);
        ok(st == CDX_ERR_LIMIT && msg_names(path), "file size limit before reading a file: %s",
           cdx_last_error());

        /* ---- 5. probe vs decode on a truncated file ---- */
        cdx_decode_opts o = {0};
        memset(&meta, 0, sizeof meta);
        st = cdx_image_decode_mem(j, n * 6 / 10, "cut.jpg", &o, NULL, &meta);
        ok(st == CDX_OK && meta.width == W && meta.orientation == 6,
           "metadata-only probe of a truncated JPEG: %ux%u, orientation %d", meta.width,
           meta.height, meta.orientation);
        img = (cdx_image){0};
        st = cdx_image_decode_mem(j, n * 6 / 10, "cut.jpg", &o, &img, &meta);
        ok(st == CDX_ERR_FORMAT && !strcmp(cdx_last_error(), "cut.jpg: truncated JPEG data") &&
           !img.rgb, "full decode of it: %s", cdx_last_error());
        o.min_side = 224;
        st = cdx_image_decode_mem(j, n * 6 / 10, "cut.jpg", &o, &img, &meta);
        ok(st == CDX_ERR_FORMAT, "DCT-scaled decode notices the truncation too");
        free(j);
        free(pic);
    }

    /* ---- 6. format detection and messages ---- */
    {
        static const struct { const char *data; size_t n; cdx_status st; const char *msg; } bad[] = {
            {"hello, world", 12, CDX_ERR_FORMAT, "x: not a supported image file"},
            {"\x89PNG", 4, CDX_ERR_FORMAT, "x: truncated PNG data"},
            {"\xff\xd8", 2, CDX_ERR_FORMAT, "x: truncated JPEG data"},
            {"GIF89a\x01\x00\x01\x00\x00\x00\x00" ";", 14, CDX_ERR_FORMAT, "x: GIF"},
            {"RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00" "abcd", 24, CDX_ERR_FORMAT, "x: "},
            {"II*\x00\x08\x00\x00\x00\x00\x00", 10, CDX_ERR_FORMAT, "x: TIFF error"},
            {"\x00\x00\x00\x18" "ftypheic\x00\x00\x00\x00mif1heic", 24, CDX_ERR_FORMAT, "x: "},
            {"", 0, CDX_ERR_FORMAT, "x: empty file"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            img = (cdx_image){0};
            st = cdx_image_decode_mem(bad[i].data, bad[i].n, "x", NULL, &img, &meta);
            ok(st == bad[i].st && !strncmp(cdx_last_error(), bad[i].msg, strlen(bad[i].msg)) &&
               msg_names("x") && !img.rgb, "refused: %s", cdx_last_error());
        }
        st = cdx_image_decode(dir, NULL, &img, NULL);
        ok(st == CDX_ERR_IO && msg_names(dir) && strstr(cdx_last_error(), "not a regular file"),
           "a directory: %s", cdx_last_error());
        st = cdx_image_load(NULL, &img);
        ok(st == CDX_ERR_ARG, "NULL path: %s", cdx_last_error());
    }

    /* ---- 7. TIFF: orientation tag, camera, threads ---- */
    {
        const uint32_t W = 48, H = 32;
        uint8_t *pic = picture(W, H);
        snprintf(path, sizeof path, "%s/t.tif", dir);
        snprintf(path2, sizeof path2, "%s/cut.tif", dir);
        if (write_tiff(path, pic, W, H, 6) != 0) {
            ok(0, "write a TIFF with libtiff");
        } else {
            opts = (cdx_decode_opts){.apply_orientation = 1};
            img = (cdx_image){0};
            st = cdx_image_decode(path, &opts, &img, &meta);
            cdx_image want = {.width = W, .height = H, .rgb = malloc((size_t)W * H * 3)};
            memcpy(want.rgb, pic, (size_t)W * H * 3);
            cdx_image_orient(&want, 6);
            ok(st == CDX_OK && !strcmp(meta.format, "tiff") && meta.orientation == 6 &&
               meta.width == W && !strcmp(meta.make, "TestMake") &&
               !strcmp(meta.model, "TestModel 1") && same_image(&img, &want),
               "TIFF Orientation 6: upright %ux%u, lossless, camera '%s %s'", img.width,
               img.height, meta.make, meta.model);
            cdx_image_release(&img);
            cdx_image_release(&want);
            /* a copy cut short: fails, and several threads at once each get
             * their own message */
            FILE *f = fopen(path, "rb");
            uint8_t buf[1 << 16];
            size_t n = fread(buf, 1, sizeof buf, f);
            fclose(f);
            write_file(path2, buf, n / 2);
            img = (cdx_image){0};
            st = cdx_image_decode(path2, NULL, &img, NULL);
            ok(st != CDX_OK && msg_names(path2), "truncated TIFF refused: %s", cdx_last_error());
            pthread_t t[4];
            tjob jobs[4];
            int errors = 0;
            for (int i = 0; i < 4; i++) {
                jobs[i] = (tjob){path, path2, 0};
                pthread_create(&t[i], NULL, tiff_thread, &jobs[i]);
            }
            for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                errors += jobs[i].errors;
            }
            ok(errors == 0, "4 threads x 40 TIFF decodes (good and broken alternating): "
               "%d wrong results or messages", errors);
        }
        free(pic);
    }

    unlink(path);
    unlink(path2);
    snprintf(path, sizeof path, "%s/big.jpg", dir);
    unlink(path);
    rmdir(dir);
    return done_testing();
}
