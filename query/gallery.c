/*
 * gallery.c - the HTML output of search, similar, dupes and moderate: one
 * self-contained page (no external files, no scripts) with a JPEG
 * thumbnail of every result embedded as a base64 data: URI, its caption
 * (score, date, label) and its path, linked to the original file.
 *
 * Thumbnails: the image is decoded with EXIF orientation applied, letting
 * the decoder scale JPEGs down in the DCT (min_side), area-averaged to fit
 * a THUMB_SIDE square and compressed with libjpeg(-turbo)'s libjpeg API
 * into memory.  A file that cannot be decoded gets a placeholder that
 * says why, so one bad file never loses the page.
 *
 * Text is HTML-escaped; paths that are not valid UTF-8 (Linux paths are
 * bytes) show the offending bytes as \xNN and are percent-encoded exactly
 * in the link.
 */
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "output.h"
#include "banned.h"

#define THUMB_SIDE 256
#define THUMB_QUALITY 82

/* ------------------------------------------------------------------ */
/* Thumbnails                                                          */
/* ------------------------------------------------------------------ */

/* Area-average src (sw x sh RGB) into dst (dw x dh RGB), dw <= sw and
 * dh <= sh: each output pixel is the mean of the source block it covers
 * (block edges at floor(i * s / d)), so every source pixel counts once. */
static void downscale(const uint8_t *src, uint32_t sw, uint32_t sh, uint8_t *dst, uint32_t dw,
                      uint32_t dh)
{
    for (uint32_t oy = 0; oy < dh; oy++) {
        uint32_t y0 = (uint32_t)((uint64_t)oy * sh / dh), y1 = (uint32_t)((uint64_t)(oy + 1) * sh / dh);
        if (y1 <= y0) y1 = y0 + 1;
        for (uint32_t ox = 0; ox < dw; ox++) {
            uint32_t x0 = (uint32_t)((uint64_t)ox * sw / dw), x1 = (uint32_t)((uint64_t)(ox + 1) * sw / dw);
            uint64_t acc[3] = {0, 0, 0};
            if (x1 <= x0) x1 = x0 + 1;
            for (uint32_t y = y0; y < y1; y++) {
                const uint8_t *p = src + ((size_t)y * sw + x0) * 3;
                for (uint32_t x = x0; x < x1; x++, p += 3) {
                    acc[0] += p[0];
                    acc[1] += p[1];
                    acc[2] += p[2];
                }
            }
            uint64_t cnt = (uint64_t)(y1 - y0) * (x1 - x0);
            uint8_t *q = dst + ((size_t)oy * dw + ox) * 3;
            for (int c = 0; c < 3; c++) q[c] = (uint8_t)((acc[c] + cnt / 2) / cnt);
        }
    }
}

/* libjpeg reports errors by calling error_exit, which must not return. */
struct jpeg_fail {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this */
    jmp_buf jb;
};

static void on_jpeg_error(j_common_ptr ci)
{
    struct jpeg_fail *e = (struct jpeg_fail *)ci->err;
    longjmp(e->jb, 1);
}

/* Everything the setjmp-protected region touches lives in this heap
 * struct, not in locals, so nothing is clobbered by the longjmp. */
struct jpeg_out {
    struct jpeg_compress_struct ci;
    struct jpeg_fail err;
    unsigned char *buf;
    unsigned long len;
};

static int encode_jpeg(const uint8_t *rgb, uint32_t w, uint32_t h, int quality, unsigned char **jpeg,
                       size_t *n)
{
    struct jpeg_out *j = xcalloc(1, sizeof *j);
    volatile int ok = 0;
    j->ci.err = jpeg_std_error(&j->err.pub);
    j->err.pub.error_exit = on_jpeg_error;
    if (setjmp(j->err.jb) == 0) {
        jpeg_create_compress(&j->ci);
        jpeg_mem_dest(&j->ci, &j->buf, &j->len);
        j->ci.image_width = w;
        j->ci.image_height = h;
        j->ci.input_components = 3;
        j->ci.in_color_space = JCS_RGB;
        jpeg_set_defaults(&j->ci);
        jpeg_set_quality(&j->ci, quality, TRUE);
        jpeg_start_compress(&j->ci, TRUE);
        while (j->ci.next_scanline < h) {
            JSAMPROW row = (JSAMPROW)(rgb + (size_t)j->ci.next_scanline * w * 3);
            jpeg_write_scanlines(&j->ci, &row, 1);
        }
        jpeg_finish_compress(&j->ci);
        ok = 1;
    }
    jpeg_destroy_compress(&j->ci);
    if (ok) {
        *jpeg = j->buf;
        *n = j->len;
    } else {
        free(j->buf);
    }
    free(j);
    return ok ? 0 : -1;
}

int thumbnail_jpeg(const char *path, int side, int quality, unsigned char **jpeg, size_t *n,
                   char *err, size_t err_n)
{
    cdx_decode_opts o = {0};
    cdx_image img = {0};
    uint8_t *small = NULL;
    uint32_t tw, th;
    int ret = -1;

    o.apply_orientation = 1;
    o.min_side = (uint32_t)side;
    if (cdx_image_decode(path, &o, &img, NULL) != CDX_OK) {
        snprintf(err, err_n, "%s", cdx_last_error());
        return -1;
    }
    if (img.width <= (uint32_t)side && img.height <= (uint32_t)side) {
        tw = img.width;
        th = img.height;
    } else if (img.width >= img.height) {
        tw = (uint32_t)side;
        th = (uint32_t)(((uint64_t)img.height * side + img.width / 2) / img.width);
    } else {
        th = (uint32_t)side;
        tw = (uint32_t)(((uint64_t)img.width * side + img.height / 2) / img.height);
    }
    if (tw < 1) tw = 1;
    if (th < 1) th = 1;
    small = xmalloc((size_t)tw * th * 3);
    downscale(img.rgb, img.width, img.height, small, tw, th);
    if (encode_jpeg(small, tw, th, quality, jpeg, n) != 0) {
        snprintf(err, err_n, "%s: JPEG encoding failed", path);
        goto cleanup;
    }
    ret = 0;
cleanup:
    free(small);
    cdx_image_release(&img);
    return ret;
}

/* ------------------------------------------------------------------ */
/* HTML                                                                */
/* ------------------------------------------------------------------ */

struct gallery {
    FILE *f;
    int in_grid;
    int failed;
};

/* Text content: HTML-escaped; control characters and invalid UTF-8 bytes
 * shown as \xNN (as in the table format). */
static void html_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        int n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 && c >= 0xc2 ? 2 : (c & 0xf0) == 0xe0 ? 3 :
                (c & 0xf8) == 0xf0 && c <= 0xf4 ? 4 : 0;
        for (int i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80) n = 0;
        if (n == 0 || c < 0x20 || c == 0x7f) {
            fprintf(f, "\\x%02x", c);
            p++;
            continue;
        }
        if (n > 1) {
            fwrite(p, 1, (size_t)n, f);
            p += n;
            continue;
        }
        switch (c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(c, f);
        }
        p++;
    }
}

/* A file: URL of an absolute path, every byte outside [A-Za-z0-9/._~-]
 * percent-encoded (so any byte string survives). */
static void file_url(FILE *f, const char *path)
{
    fputs("file://", f);
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
            c == '.' || c == '_' || c == '~' || c == '-')
            fputc(c, f);
        else
            fprintf(f, "%%%02X", c);
    }
}

static void base64(FILE *f, const unsigned char *d, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        fputc(a[v >> 18], f);
        fputc(a[(v >> 12) & 63], f);
        fputc(a[(v >> 6) & 63], f);
        fputc(a[v & 63], f);
    }
    if (i < n) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0);
        fputc(a[v >> 18], f);
        fputc(a[(v >> 12) & 63], f);
        fputc(i + 1 < n ? a[(v >> 6) & 63] : '=', f);
        fputc('=', f);
    }
}

static const char *const STYLE =
    "body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}"
    "h1{font-size:1.4em;margin:0 0 .2em}p.sub{color:#666;margin:0 0 1em}"
    "h2{font-size:1.1em;margin:1.4em 0 .5em;border-bottom:1px solid #ddd}"
    ".grid{display:flex;flex-wrap:wrap;gap:12px}"
    "figure{margin:0;width:" "256" "px;background:#fff;border:1px solid #ddd;padding:6px}"
    "figure .img{width:256px;height:256px;display:flex;align-items:center;justify-content:center;"
    "background:#eee}"
    "figure img{max-width:256px;max-height:256px}"
    "figure .bad{color:#a00;font-size:.8em;padding:1em;word-break:break-all}"
    "figcaption{font-size:.8em;margin-top:4px}"
    "figcaption .cap{font-weight:600}"
    "figcaption .path{color:#555;word-break:break-all}";

gallery *gallery_new(FILE *f, const char *title, const char *subtitle)
{
    gallery *g = xcalloc(1, sizeof *g);
    g->f = f;
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"generator\" content=\"clipdex " CDX_VERSION "\">\n<title>", f);
    html_text(f, title);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", STYLE);
    html_text(f, title);
    fputs("</h1>\n", f);
    if (subtitle && *subtitle) {
        fputs("<p class=\"sub\">", f);
        html_text(f, subtitle);
        fputs("</p>\n", f);
    }
    return g;
}

static void close_grid(gallery *g)
{
    if (g->in_grid) fputs("</div>\n</section>\n", g->f);
    g->in_grid = 0;
}

void gallery_section(gallery *g, const char *heading)
{
    close_grid(g);
    fputs("<section>\n<h2>", g->f);
    html_text(g->f, heading);
    fputs("</h2>\n<div class=\"grid\">\n", g->f);
    g->in_grid = 1;
}

void gallery_item(gallery *g, const char *path, const char *caption)
{
    unsigned char *jpeg = NULL;
    size_t n = 0;
    char err[512];
    FILE *f = g->f;

    if (!g->in_grid) {
        fputs("<section>\n<div class=\"grid\">\n", f);
        g->in_grid = 1;
    }
    fputs("<figure>\n<div class=\"img\">", f);
    if (thumbnail_jpeg(path, THUMB_SIDE, THUMB_QUALITY, &jpeg, &n, err, sizeof err) == 0) {
        fputs("<a href=\"", f);
        file_url(f, path);
        fputs("\"><img class=\"thumb\" alt=\"\" src=\"data:image/jpeg;base64,", f);
        base64(f, jpeg, n);
        fputs("\"></a>", f);
        free(jpeg);
    } else {
        g->failed++;
        fputs("<span class=\"bad\">no thumbnail: ", f);
        html_text(f, err);
        fputs("</span>", f);
    }
    fputs("</div>\n<figcaption>", f);
    if (caption && *caption) {
        fputs("<span class=\"cap\">", f);
        html_text(f, caption);
        fputs("</span><br>", f);
    }
    fputs("<span class=\"path\">", f);
    html_text(f, path);
    fputs("</span></figcaption>\n</figure>\n", f);
}

int gallery_finish(gallery *g)
{
    int failed;
    if (!g) return 0;
    close_grid(g);
    fputs("</body>\n</html>\n", g->f);
    failed = g->failed;
    free(g);
    return failed;
}
