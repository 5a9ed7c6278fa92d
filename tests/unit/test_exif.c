/*
 * test_exif.c - the EXIF reader (core/image/image_exif.c): synthetic EXIF
 * blocks built here, in both byte orders, with every field we read, and
 * damaged variants (truncated, bad offsets, looping IFDs, bad values).
 * A damaged block must never fail or crash: it yields what can be read
 * and a warning.  Also the date and offset parsers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_impl.h"
#include "tap.h"

/* ---- a tiny TIFF/EXIF writer ----
 * Layout: "Exif\0\0", TIFF header, IFD0 at 8, the EXIF IFD at 400, the
 * GPS IFD at 800 (offsets from the TIFF header); each IFD's out-of-line
 * values follow it. */
enum { T_BYTE = 1, T_ASCII = 2, T_SHORT = 3, T_LONG = 4, T_RATIONAL = 5, T_SBYTE = 6, T_SSHORT = 8, T_SLONG = 9 };
#define EXIF_IFD_AT 400
#define GPS_IFD_AT 800
#define BLOCK 1200

typedef struct ent {
    unsigned tag, type, count;
    const void *val; /* host values: uint16_t[], uint32_t[], char[], uint32_t[2*count] */
} ent;

typedef struct blk {
    uint8_t b[6 + BLOCK];
    int be;
} blk;

static uint8_t *T(blk *k) { return k->b + 6; }

static void w16(blk *k, size_t off, unsigned v)
{
    uint8_t *p = T(k) + off;
    if (k->be) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
    else { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
}

static void w32(blk *k, size_t off, uint32_t v)
{
    if (k->be) { w16(k, off, v >> 16); w16(k, off + 2, v & 0xffff); }
    else { w16(k, off, v & 0xffff); w16(k, off + 2, v >> 16); }
}

static size_t type_size(unsigned t)
{
    return t == T_SHORT || t == T_SSHORT ? 2 : t == T_LONG || t == T_SLONG ? 4 : t == T_RATIONAL ? 8 : 1;
}

/* Write an IFD at off with n entries; returns the end of its data. */
static size_t ifd(blk *k, size_t off, const ent *e, unsigned n, uint32_t next)
{
    size_t data = off + 2 + 12 * n + 4;
    w16(k, off, n);
    for (unsigned i = 0; i < n; i++) {
        size_t at = off + 2 + 12 * i, sz = type_size(e[i].type) * e[i].count, vp;
        w16(k, at, e[i].tag);
        w16(k, at + 2, e[i].type);
        w32(k, at + 4, e[i].count);
        if (sz <= 4) {
            vp = at + 8;
        } else {
            w32(k, at + 8, (uint32_t)data);
            vp = data;
            data += sz + (sz & 1);
        }
        for (unsigned c = 0; c < e[i].count; c++) {
            switch (e[i].type) {
            case T_SHORT: case T_SSHORT: w16(k, vp + 2 * c, ((const uint16_t *)e[i].val)[c]); break;
            case T_LONG: case T_SLONG: w32(k, vp + 4 * c, ((const uint32_t *)e[i].val)[c]); break;
            case T_RATIONAL:
                w32(k, vp + 8 * c, ((const uint32_t *)e[i].val)[2 * c]);
                w32(k, vp + 8 * c + 4, ((const uint32_t *)e[i].val)[2 * c + 1]);
                break;
            default: T(k)[vp + c] = ((const uint8_t *)e[i].val)[c]; break;
            }
        }
    }
    w32(k, off + 2 + 12 * n, next);
    return data;
}

typedef struct spec {
    uint16_t orientation;      /* 0: no tag */
    unsigned orientation_type; /* 0: SHORT */
    const char *make, *model;
    const char *date, *offset; /* EXIF IFD */
    int gps;                   /* 1: lat/lon, 2: zero denominators */
    uint32_t ifd0_next;        /* next-IFD pointer of IFD0 */
} spec;

static void build(blk *k, int be, const spec *s)
{
    static const uint32_t exif_ptr = EXIF_IFD_AT, gps_ptr = GPS_IFD_AT;
    static const uint32_t lat[6] = {33, 1, 51, 1, 2134, 100};   /* 33 51' 21.34" */
    static const uint32_t lon[6] = {151, 1, 12, 1, 3600, 100};  /* 151 12' 36" */
    static const uint32_t zero[6] = {1, 0, 2, 0, 3, 0};
    ent e0[6], ex[2], g[4];
    unsigned n0 = 0, nx = 0;

    memset(k, 0, sizeof *k);
    k->be = be;
    memcpy(k->b, "Exif\0\0", 6);
    memcpy(T(k), be ? "MM\0*" : "II*\0", 4);
    w32(k, 4, 8);
    /* the value in the type's own width (host order; ifd() swaps) */
    static uint8_t o8;
    static uint16_t o16;
    static uint32_t o32;
    unsigned ot = s->orientation_type ? s->orientation_type : T_SHORT;
    const void *ov = type_size(ot) == 1 ? (const void *)&o8 : type_size(ot) == 2 ? (const void *)&o16 : &o32;
    o8 = (uint8_t)s->orientation, o16 = s->orientation, o32 = s->orientation;
    if (s->orientation) e0[n0++] = (ent){0x0112, ot, 1, ov};
    if (s->make) e0[n0++] = (ent){0x010f, T_ASCII, (unsigned)strlen(s->make) + 1, s->make};
    if (s->model) e0[n0++] = (ent){0x0110, T_ASCII, (unsigned)strlen(s->model) + 1, s->model};
    e0[n0++] = (ent){0x8769, T_LONG, 1, &exif_ptr};
    if (s->gps) e0[n0++] = (ent){0x8825, T_LONG, 1, &gps_ptr};
    ifd(k, 8, e0, n0, s->ifd0_next);
    if (s->date) ex[nx++] = (ent){0x9003, T_ASCII, (unsigned)strlen(s->date) + 1, s->date};
    if (s->offset) ex[nx++] = (ent){0x9011, T_ASCII, (unsigned)strlen(s->offset) + 1, s->offset};
    ifd(k, EXIF_IFD_AT, ex, nx, 0);
    if (s->gps) {
        g[0] = (ent){0x0001, T_ASCII, 2, "S"};
        g[1] = (ent){0x0002, T_RATIONAL, 3, s->gps == 2 ? zero : lat};
        g[2] = (ent){0x0003, T_ASCII, 2, "W"};
        g[3] = (ent){0x0004, T_RATIONAL, 3, lon};
        ifd(k, GPS_IFD_AT, g, 4, 0);
    }
}

static void parse(const uint8_t *p, size_t n, cdx_image_meta *m, int *o)
{
    memset(m, 0, sizeof *m);
    m->taken_at = INT64_MIN;
    cdx_exif_parse(p, n, m, o);
}

int main(void)
{
    cdx_image_meta m;
    int o;
    blk k;

    /* ---- a complete block, both byte orders, with and without header ---- */
    for (int be = 0; be <= 1; be++) {
        spec s = {6, 0, "Canon", "Canon EOS 5D  ", "2019:05:01 12:34:56", "+02:00", 1, 0};
        build(&k, be, &s);
        for (int hdr = 1; hdr >= 0; hdr--) {
            const char *what = be ? (hdr ? "MM with Exif header" : "bare MM TIFF")
                                  : (hdr ? "II with Exif header" : "bare II TIFF");
            parse(hdr ? k.b : T(&k), hdr ? sizeof k.b : BLOCK, &m, &o);
            ok(o == 6, "%s: orientation %d", what, o);
            ok(!strcmp(m.make, "Canon") && !strcmp(m.model, "Canon EOS 5D"),
               "%s: camera '%s' '%s' (trailing blanks trimmed)", what, m.make, m.model);
            /* 2019-05-01 12:34:56 at +02:00 is 10:34:56 UTC = 1556706896 */
            ok(m.taken_at == 1556706896 && m.has_tz_offset && m.tz_offset_min == 120,
               "%s: date %lld, offset %d min", what, (long long)m.taken_at, m.tz_offset_min);
            ok(m.has_gps && m.gps_lat < -33.855 && m.gps_lat > -33.857 &&
               m.gps_lon < -151.209 && m.gps_lon > -151.211,
               "%s: GPS %.5f,%.5f (S and W negative)", what, m.gps_lat, m.gps_lon);
            ok(m.warning[0] == 0, "%s: no warning ('%s')", what, m.warning);
        }
    }

    /* ---- Orientation in any integer type, as Pillow reads it (cameras
     * write LONG, SLONG, BYTE... instead of SHORT) ---- */
    {
        static const struct { unsigned type; const char *name; } types[] = {
            {T_BYTE, "BYTE"}, {T_SHORT, "SHORT"}, {T_LONG, "LONG"},
            {T_SBYTE, "SBYTE"}, {T_SSHORT, "SSHORT"}, {T_SLONG, "SLONG"}};
        for (int be = 0; be <= 1; be++)
            for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
                spec s = {6, types[i].type, NULL, NULL, NULL, NULL, 0, 0};
                build(&k, be, &s);
                parse(k.b, sizeof k.b, &m, &o);
                ok(o == 6, "Orientation 6 as %s (%s): %d", types[i].name, be ? "MM" : "II", o);
            }
        spec s = {0xffff, T_SSHORT, NULL, NULL, NULL, NULL, 0, 0};   /* -1 */
        build(&k, 0, &s);
        parse(k.b, sizeof k.b, &m, &o);
        ok(o == 0, "a negative SSHORT Orientation is no orientation (%d)", o);
    }
    /* ---- no offset: local time read as UTC ---- */
    {
        spec s = {1, 0, NULL, NULL, "2000:02:29 23:59:59", NULL, 0, 0};
        build(&k, 0, &s);
        parse(k.b, sizeof k.b, &m, &o);
        ok(m.taken_at == 951868799 && !m.has_tz_offset && !m.has_gps && m.make[0] == 0,
           "date without offset taken as UTC: %lld", (long long)m.taken_at);
    }
    /* ---- absent and unknown dates ---- */
    {
        spec s = {0, 0, NULL, NULL, "0000:00:00 00:00:00", NULL, 0, 0};
        build(&k, 1, &s);
        parse(k.b, sizeof k.b, &m, &o);
        ok(o == 0 && m.taken_at == INT64_MIN && m.warning[0] == 0,
           "no Orientation tag -> 0; all-zero date = unknown, silently");
        spec s2 = {3, 0, NULL, NULL, "2019/05/01 12:00:00", NULL, 0, 0};
        build(&k, 1, &s2);
        parse(k.b, sizeof k.b, &m, &o);
        ok(o == 3 && m.taken_at == INT64_MIN && strstr(m.warning, "malformed EXIF date"),
           "malformed date ignored with a warning: '%s'", m.warning);
    }
    /* ---- out-of-range orientation is returned raw (the caller ignores it) ---- */
    {
        spec s = {9, 0, NULL, NULL, NULL, NULL, 0, 0};
        build(&k, 0, &s);
        parse(k.b, sizeof k.b, &m, &o);
        ok(o == 9, "Orientation 9 returned raw (%d) for the caller to reject", o);
    }
    /* ---- GPS with zero denominators ---- */
    {
        spec s = {1, 0, NULL, NULL, NULL, NULL, 2, 0};
        build(&k, 0, &s);
        parse(k.b, sizeof k.b, &m, &o);
        ok(!m.has_gps && strstr(m.warning, "GPS"), "zero GPS denominators: no position, "
           "warning '%s'", m.warning);
    }
    /* ---- IFD0 whose next pointer loops to itself ---- */
    {
        spec s = {8, 0, "Loop", NULL, "2020:01:01 00:00:00", NULL, 0, 8};
        build(&k, 0, &s);
        parse(k.b, sizeof k.b, &m, &o);
        ok(o == 8 && !strcmp(m.make, "Loop"), "IFD0 -> IFD0 loop: terminates, fields read");
    }
    /* ---- damage: every truncation and byte flips must be survivable ---- */
    {
        spec s = {6, 0, "Canon", "X", "2019:05:01 12:34:56", "+02:00", 1, 0};
        int crashed = 0, warned = 0;
        build(&k, 1, &s);
        for (size_t n = 0; n <= sizeof k.b; n += 7) {
            parse(k.b, n, &m, &o);
            if (o < 0 || o > 0xffff) crashed++;
            if (m.warning[0]) warned++;
        }
        ok(!crashed, "all truncations parse (%d of them warn)", warned);
        uint32_t r = 1;
        crashed = 0;
        for (int it = 0; it < 3000; it++) {
            blk d = k;
            for (int f = 0; f < 4; f++) {
                r = r * 1103515245u + 12345u;
                d.b[6 + (r >> 8) % 900] ^= (uint8_t)(r >> 24);
            }
            parse(d.b, sizeof d.b, &m, &o);
            if (m.has_gps && !(m.gps_lat >= -90 && m.gps_lat <= 90)) crashed++;
            if (!memchr(m.make, 0, sizeof m.make) || !memchr(m.warning, 0, sizeof m.warning))
                crashed++;
        }
        ok(!crashed, "3000 randomly damaged blocks: values stay in range, strings terminated");
    }
    /* ---- not EXIF at all ---- */
    parse((const uint8_t *)"hello world, not a TIFF", 23, &m, &o);
    ok(o == 0 && strstr(m.warning, "no TIFF header"), "garbage: warning '%s'", m.warning);
    parse(NULL, 0, &m, &o);
    ok(o == 0 && m.warning[0] == 0, "empty block: nothing, no warning");

    /* ---- date and offset parsers ---- */
    {
        int64_t t;
        int off;
        ok(cdx_exif_parse_datetime("1970:01:01 00:00:00", 19, &t) == 0 && t == 0, "epoch");
        ok(cdx_exif_parse_datetime("2038:01:19 03:14:08", 19, &t) == 0 && t == 2147483648LL,
           "past 2038: %lld", (long long)t);
        ok(cdx_exif_parse_datetime("1900:03:01 00:00:00", 19, &t) == 0 && t == -2203891200LL,
           "1900 (not a leap year): %lld", (long long)t);
        ok(cdx_exif_parse_datetime("2024-02-29T08:00:00", 19, &t) == 0 && t == 1709193600,
           "ISO-like separators");
        ok(cdx_exif_parse_datetime("2023:02:29 08:00:00", 19, &t) != 0, "2023-02-29 refused");
        ok(cdx_exif_parse_datetime("2023:13:01 08:00:00", 19, &t) != 0, "month 13 refused");
        ok(cdx_exif_parse_datetime("2023:01:01 24:00:00", 19, &t) != 0, "hour 24 refused");
        ok(cdx_exif_parse_datetime("2023:01:01 08:00", 16, &t) != 0, "short refused");
        ok(cdx_exif_parse_datetime("    :  :     :  :  ", 19, &t) != 0, "blank refused");
        ok(cdx_exif_parse_offset("-05:30", 6, &off) == 0 && off == -330, "offset -05:30");
        ok(cdx_exif_parse_offset("+14:00", 6, &off) == 0 && off == 840, "offset +14:00");
        ok(cdx_exif_parse_offset("05:30", 5, &off) != 0, "offset without sign refused");
        ok(cdx_exif_parse_offset("+5:30x", 6, &off) != 0, "offset +5:30 refused");
    }
    {
        char buf[8];
        cdx_exif_copy_ascii(buf, sizeof buf, "  Ni\x01kon  ", 11);
        ok(!strcmp(buf, "Ni?kon"), "ASCII copy trims and masks control characters: '%s'", buf);
        cdx_exif_copy_ascii(buf, sizeof buf, "ABCDEFGHIJ", 10);
        ok(!strcmp(buf, "ABCDEFG"), "ASCII copy truncates to the buffer: '%s'", buf);
    }
    return done_testing();
}
