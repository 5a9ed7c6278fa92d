/*
 * image_exif.c - read the few EXIF fields a photo library needs, with
 * libexif: Orientation, DateTimeOriginal (+ OffsetTimeOriginal), Make,
 * Model and the GPS position.
 *
 * The block comes from JPEG APP1, PNG eXIf, the WebP EXIF chunk or the
 * HEIF Exif item (TIFF is read with libtiff in image_tiff.c).  EXIF is
 * the most hostile part of a photo: offsets point anywhere, IFDs loop,
 * counts lie, maker notes are undocumented.  libexif bounds every access
 * by the block size; on top of that every value read here checks its
 * format and component count before touching the data, and nothing found
 * here can fail a decode: a damaged block yields what could be read plus
 * a warning.
 *
 * libexif's diagnostics go to a per-call ExifLog (never to stderr); its
 * "corrupt data" messages become the warning.  Options: libexif by
 * default "fixes" data to follow the specification (adding mandatory tags
 * with default values) and drops tags it does not expect in an IFD; both
 * are turned off so we see exactly what the file says.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libexif/exif-data.h>
#include <libexif/exif-log.h>
#include <libexif/exif-utils.h>

#include "image_impl.h"

/* A block larger than a JPEG segment is cut there by libexif anyway. */
#define EXIF_MAX_BYTES 0xfffe

typedef struct exif_log_state {
    char first[200];  /* the first "corrupt data" message */
    int nomem;
} exif_log_state;

static void on_exif_log(ExifLog *log, ExifLogCode code, const char *domain,
                        const char *format, va_list args, void *data)
{
    exif_log_state *s = data;
    (void)log;
    (void)domain;
    if (code == EXIF_LOG_CODE_NO_MEMORY) s->nomem = 1;
    if (code != EXIF_LOG_CODE_CORRUPT_DATA || s->first[0]) return;
    /* libexif's format strings are its own literals */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    vsnprintf(s->first, sizeof s->first, format, args);
#pragma GCC diagnostic pop
}

static void warn(cdx_image_meta *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(cdx_image_meta *m, const char *fmt, ...)
{
    va_list ap;
    if (m->warning[0]) return;
    va_start(ap, fmt);
    vsnprintf(m->warning, sizeof m->warning, fmt, ap);
    va_end(ap);
    for (char *p = m->warning; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
}

/* ------------------------------------------------------------------ */
/* Value helpers (also used by image_tiff.c)                           */
/* ------------------------------------------------------------------ */

void cdx_exif_copy_ascii(char *dst, size_t dstsz, const char *src, size_t n)
{
    size_t k = 0, i = 0;
    if (dstsz == 0) return;
    while (i < n && src[i] == ' ') i++; /* leading blanks: "  Canon" */
    for (; i < n && src[i] && k + 1 < dstsz; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[k++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    while (k > 0 && dst[k - 1] == ' ') k--;
    dst[k] = '\0';
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (the usual era arithmetic: 400-year cycles of 146097 days). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                              /* [0, 399] */
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;       /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

int cdx_exif_parse_datetime(const char *s, size_t n, int64_t *out)
{
    int y, mo, d, h, mi, se;
    /* "YYYY:MM:DD HH:MM:SS" is 19 characters; a NUL may follow. */
    if (n < 19) return -1;
    if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
        digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
        return -1;
    if ((s[4] != ':' && s[4] != '-') || s[7] != s[4] || (s[10] != ' ' && s[10] != 'T') ||
        s[13] != ':' || s[16] != ':')
        return -1;
    if (y < 1800 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
        mi > 59 || se > 60)
        return -1;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    return 0;
}

int cdx_exif_parse_offset(const char *s, size_t n, int *minutes)
{
    int h, m;
    if (n < 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':') return -1;
    if (digits(s + 1, 2, &h) || digits(s + 4, 2, &m) || h > 23 || m > 59) return -1;
    *minutes = (s[0] == '-' ? -1 : 1) * (h * 60 + m);
    return 0;
}

/* ------------------------------------------------------------------ */
/* libexif access                                                      */
/* ------------------------------------------------------------------ */

static ExifEntry *entry(ExifData *ed, ExifIfd ifd, unsigned tag)
{
    return ed->ifd[ifd] ? exif_content_get_entry(ed->ifd[ifd], (ExifTag)tag) : NULL;
}

/* The first value of an integer entry, whatever its integer type: the
 * specification says SHORT for Orientation, but cameras write LONG,
 * SLONG (a Panasonic DMC-GF1), BYTE..., and Pillow reads them all; a
 * photo whose Orientation we skipped was indexed lying on its side.
 * -1 when malformed, not an integer, or negative. */
static long entry_uint(ExifData *ed, ExifEntry *e)
{
    ExifByteOrder bo = exif_data_get_byte_order(ed);
    long v;
    if (!e || !e->data || e->components < 1) return -1;
    switch (e->format) {
    case EXIF_FORMAT_SHORT:
        return e->size >= 2 ? (long)exif_get_short(e->data, bo) : -1;
    case EXIF_FORMAT_LONG:
        return e->size >= 4 ? (long)exif_get_long(e->data, bo) : -1;
    case EXIF_FORMAT_BYTE:
        return e->size >= 1 ? (long)e->data[0] : -1;
    case EXIF_FORMAT_SBYTE:
        if (e->size < 1) return -1;
        v = (signed char)e->data[0];
        break;
    case EXIF_FORMAT_SSHORT:
        if (e->size < 2) return -1;
        v = exif_get_sshort(e->data, bo);
        break;
    case EXIF_FORMAT_SLONG:
        if (e->size < 4) return -1;
        v = exif_get_slong(e->data, bo);
        break;
    default:
        return -1;
    }
    return v < 0 ? -1 : v;
}

/* An ASCII (or UNDEFINED, as some writers store text) entry as a C
 * string in buf; returns its length, 0 when absent or empty. */
static size_t entry_text(ExifEntry *e, char *buf, size_t bufsz)
{
    buf[0] = '\0';
    if (!e || !e->data || !e->size) return 0;
    if (e->format != EXIF_FORMAT_ASCII && e->format != EXIF_FORMAT_UNDEFINED) return 0;
    size_t n = e->size < bufsz - 1 ? e->size : bufsz - 1;
    memcpy(buf, e->data, n);
    buf[n] = '\0';
    return strlen(buf);
}

/* Degrees from a GPS (deg, min, sec) RATIONAL triple; -1 if malformed. */
static int gps_coord(ExifData *ed, ExifEntry *e, double *out)
{
    ExifByteOrder bo = exif_data_get_byte_order(ed);
    double v[3];
    if (!e || !e->data || e->components < 3) return -1;
    if (e->format != EXIF_FORMAT_RATIONAL && e->format != EXIF_FORMAT_SRATIONAL) return -1;
    if (e->size < 24) return -1;
    for (int i = 0; i < 3; i++) {
        if (e->format == EXIF_FORMAT_RATIONAL) {
            ExifRational r = exif_get_rational(e->data + 8 * i, bo);
            if (r.denominator == 0) return -1;
            v[i] = (double)r.numerator / r.denominator;
        } else {
            ExifSRational r = exif_get_srational(e->data + 8 * i, bo);
            if (r.denominator == 0) return -1;
            v[i] = (double)r.numerator / r.denominator;
        }
        if (!(v[i] >= 0)) return -1;
    }
    *out = v[0] + v[1] / 60.0 + v[2] / 3600.0;
    return 0;
}

static void read_date(ExifData *ed, cdx_image_meta *m)
{
    /* DateTimeOriginal, else DateTimeDigitized (both "when the picture
     * was taken"; DateTime in IFD0 is when the file was last changed).
     * Some writers put them in IFD0: look there, then anywhere. */
    static const struct { unsigned date, offset; } tags[] = {
        {EXIF_TAG_DATE_TIME_ORIGINAL, EXIF_TAG_OFFSET_TIME_ORIGINAL},
        {EXIF_TAG_DATE_TIME_DIGITIZED, EXIF_TAG_OFFSET_TIME_DIGITIZED},
    };
    char buf[64];
    for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
        ExifEntry *e = entry(ed, EXIF_IFD_EXIF, tags[t].date);
        if (!e) e = entry(ed, EXIF_IFD_0, tags[t].date);
        /* a pointer mix-up (EXIF IFD linked as GPS, ...) still has it */
        for (int ifd = 0; !e && ifd < EXIF_IFD_COUNT; ifd++) e = entry(ed, (ExifIfd)ifd, tags[t].date);
        size_t n = entry_text(e, buf, sizeof buf);
        int64_t when;
        int off;
        if (n == 0) continue;
        if (cdx_exif_parse_datetime(buf, n, &when) != 0) {
            /* "0000:00:00 00:00:00" and blanks mean "unknown", silently */
            int blank = 1;
            for (size_t i = 0; i < n; i++)
                if (buf[i] != '0' && buf[i] != ':' && buf[i] != ' ') blank = 0;
            if (!blank) {
                char shown[64];
                cdx_exif_copy_ascii(shown, sizeof shown, buf, n);
                warn(m, "malformed EXIF date '%s' (ignored)", shown);
            }
            continue;
        }
        m->taken_at = when;
        e = entry(ed, EXIF_IFD_EXIF, tags[t].offset);
        if (!e) e = entry(ed, EXIF_IFD_0, tags[t].offset);
        n = entry_text(e, buf, sizeof buf);
        if (n && cdx_exif_parse_offset(buf, n, &off) == 0) {
            m->has_tz_offset = 1;
            m->tz_offset_min = off;
            m->taken_at -= (int64_t)off * 60; /* local time -> UTC */
        }
        return;
    }
}

static void read_gps(ExifData *ed, cdx_image_meta *m)
{
    char ref[8];
    double lat, lon;
    ExifEntry *la = entry(ed, EXIF_IFD_GPS, EXIF_TAG_GPS_LATITUDE);
    ExifEntry *lo = entry(ed, EXIF_IFD_GPS, EXIF_TAG_GPS_LONGITUDE);
    if (!la && !lo) return;
    if (gps_coord(ed, la, &lat) || gps_coord(ed, lo, &lon) || lat > 90 || lon > 180) {
        warn(m, "malformed EXIF GPS position (ignored)");
        return;
    }
    entry_text(entry(ed, EXIF_IFD_GPS, EXIF_TAG_GPS_LATITUDE_REF), ref, sizeof ref);
    if (ref[0] == 'S' || ref[0] == 's') lat = -lat;
    entry_text(entry(ed, EXIF_IFD_GPS, EXIF_TAG_GPS_LONGITUDE_REF), ref, sizeof ref);
    if (ref[0] == 'W' || ref[0] == 'w') lon = -lon;
    m->has_gps = 1;
    m->gps_lat = lat;
    m->gps_lon = lon;
}

void cdx_exif_parse(const uint8_t *data, size_t len, cdx_image_meta *m, int *orientation)
{
    static const uint8_t header[6] = {'E', 'x', 'i', 'f', 0, 0};
    exif_log_state ls = {{0}, 0};
    uint8_t *tmp = NULL;
    const uint8_t *p = data;
    ExifLog *log = NULL;
    ExifData *ed = NULL;
    char buf[128];

    *orientation = 0;
    if (!data || len == 0) return;
    /* libexif wants the "Exif\0\0" header: add it to a bare TIFF block. */
    if (len >= 6 && memcmp(data, header, 6) == 0) {
        p = data;
    } else if (len >= 8 && (memcmp(data, "II*\0", 4) == 0 || memcmp(data, "MM\0*", 4) == 0)) {
        if (len > EXIF_MAX_BYTES) len = EXIF_MAX_BYTES;
        if (!(tmp = malloc(len + 6))) {
            warn(m, "out of memory reading EXIF (ignored)");
            return;
        }
        memcpy(tmp, header, 6);
        memcpy(tmp + 6, data, len);
        p = tmp;
        len += 6;
    } else {
        warn(m, "malformed EXIF block: no TIFF header (ignored)");
        return;
    }
    if (len > EXIF_MAX_BYTES + 6) len = EXIF_MAX_BYTES + 6;

    log = exif_log_new();
    ed = exif_data_new();
    if (!log || !ed) {
        warn(m, "out of memory reading EXIF (ignored)");
        goto cleanup;
    }
    exif_log_set_func(log, on_exif_log, &ls);
    exif_data_log(ed, log);
    exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
    exif_data_unset_option(ed, EXIF_DATA_OPTION_IGNORE_UNKNOWN_TAGS);
    exif_data_load_data(ed, p, (unsigned int)len);

    {
        long o = entry_uint(ed, entry(ed, EXIF_IFD_0, EXIF_TAG_ORIENTATION));
        if (o >= 0) *orientation = o > 0xffff ? 0xffff : (int)o;
    }
    read_date(ed, m);
    if (entry_text(entry(ed, EXIF_IFD_0, EXIF_TAG_MAKE), buf, sizeof buf))
        cdx_exif_copy_ascii(m->make, sizeof m->make, buf, strlen(buf));
    if (entry_text(entry(ed, EXIF_IFD_0, EXIF_TAG_MODEL), buf, sizeof buf))
        cdx_exif_copy_ascii(m->model, sizeof m->model, buf, strlen(buf));
    read_gps(ed, m);

    if (ls.nomem) warn(m, "out of memory reading EXIF (some fields ignored)");
    else if (ls.first[0]) warn(m, "malformed EXIF: %s", ls.first);
cleanup:
    if (ed) exif_data_unref(ed);
    if (log) exif_log_unref(log);
    free(tmp);
}
