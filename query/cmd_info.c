/*
 * cmd_info.c - `clipdex info IMAGE...`: what the image layer sees in each
 * file: format, stored size, EXIF orientation, capture date, camera, GPS
 * position and any warning (malformed EXIF, decoder warnings), as a
 * table or one JSON object per line.
 *
 * By default every file is also decoded (JPEG at 1/8 scale, which still
 * reads all of its data), so a truncated or corrupt file is reported as
 * failed; --probe reads headers and metadata only.  Failures are printed
 * on stderr (and as {"file":..., "error":...} in JSON) and make the exit
 * status 3.  No model or store is needed.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "banned.h"

struct row {
    const char *path;
    cdx_image_meta meta;
    char *error;   /* reason (without "PATH: "), NULL when decoded */
};

/* "YYYY-MM-DD HH:MM:SS[ +HH:MM]" in the photo's own local time (sep ' '
 * for the table, 'T' for JSON), or "" when unknown. */
static void format_date(const cdx_image_meta *m, char sep, char *buf, size_t n)
{
    struct tm tm;
    time_t t;
    buf[0] = '\0';
    if (m->taken_at == INT64_MIN) return;
    t = (time_t)(m->taken_at + (m->has_tz_offset ? (int64_t)m->tz_offset_min * 60 : 0));
    if (!gmtime_r(&t, &tm)) return;
    size_t k = strftime(buf, n, sep == 'T' ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
    if (m->has_tz_offset && k < n) {
        int off = m->tz_offset_min < 0 ? -m->tz_offset_min : m->tz_offset_min;
        snprintf(buf + k, n - k, "%s%c%02d:%02d", sep == 'T' ? "" : " ",
                 m->tz_offset_min < 0 ? '-' : '+', off / 60, off % 60);
    }
}

/* "Make Model", without repeating the make when the model starts with
 * it ("Canon" + "Canon EOS 40D"). */
static void format_camera(const cdx_image_meta *m, char *buf, size_t n)
{
    size_t ml = strlen(m->make);
    if (ml && strncmp(m->model, m->make, ml) == 0) snprintf(buf, n, "%s", m->model);
    else if (ml && m->model[0]) snprintf(buf, n, "%s %s", m->make, m->model);
    else snprintf(buf, n, "%s", m->make[0] ? m->make : m->model);
}

static void print_json_row(const struct row *r)
{
    const cdx_image_meta *m = &r->meta;
    char date[48];

    printf("{\"file\":");
    print_json_string(stdout, r->path);
    if (r->error) {
        printf(",\"error\":");
        print_json_string(stdout, r->error);
        printf("}\n");
        return;
    }
    printf(",\"format\":\"%s\",\"width\":%u,\"height\":%u,\"orientation\":%d", m->format,
           m->width, m->height, m->orientation);
    format_date(m, 'T', date, sizeof date);
    if (date[0]) {
        printf(",\"taken\":\"%s\",\"taken_unix\":%lld", date, (long long)m->taken_at);
        if (m->has_tz_offset) printf(",\"tz_offset_min\":%d", m->tz_offset_min);
    } else {
        printf(",\"taken\":null");
    }
    printf(",\"make\":");
    if (m->make[0]) print_json_string(stdout, m->make);
    else printf("null");
    printf(",\"model\":");
    if (m->model[0]) print_json_string(stdout, m->model);
    else printf("null");
    if (m->has_gps) printf(",\"gps\":{\"lat\":%.7f,\"lon\":%.7f}", m->gps_lat, m->gps_lon);
    else printf(",\"gps\":null");
    printf(",\"warning\":");
    if (m->warning[0]) print_json_string(stdout, m->warning);
    else printf("null");
    printf("}\n");
}

/* The table's text cells of one image ("" for unknown date/camera/GPS). */
struct cells {
    char size[32], date[48], cam[160], gps[48];
};

static void table_cells(const cdx_image_meta *m, struct cells *c)
{
    snprintf(c->size, sizeof c->size, "%ux%u", m->width, m->height);
    format_date(m, ' ', c->date, sizeof c->date);
    format_camera(m, c->cam, sizeof c->cam);
    c->gps[0] = '\0';
    if (m->has_gps) snprintf(c->gps, sizeof c->gps, "%.6f,%.6f", m->gps_lat, m->gps_lon);
}

static void print_table(const struct row *rows, int n)
{
    int wf = 6, ws = 4, wd = 5, wc = 6, wg = 3, good = 0;
    struct cells c;

    /* two passes: column widths, then the rows */
    for (int i = 0; i < n; i++) {
        const cdx_image_meta *m = &rows[i].meta;
        if (rows[i].error) continue;
        good++;
        table_cells(m, &c);
        if ((int)strlen(m->format) > wf) wf = (int)strlen(m->format);
        if ((int)strlen(c.size) > ws) ws = (int)strlen(c.size);
        if ((int)strlen(c.date) > wd) wd = (int)strlen(c.date);
        if ((int)strlen(c.cam) > wc) wc = (int)strlen(c.cam);
        if ((int)strlen(c.gps) > wg) wg = (int)strlen(c.gps);
    }
    if (!good) return;
    printf("%-*s  %-*s  %-6s  %-*s  %-*s  %-*s  %s\n", wf, "FORMAT", ws, "SIZE", "ORIENT", wd,
           "TAKEN", wc, "CAMERA", wg, "GPS", "FILE");
    for (int i = 0; i < n; i++) {
        const cdx_image_meta *m = &rows[i].meta;
        if (rows[i].error) continue;
        table_cells(m, &c);
        printf("%-*s  %-*s  %-6d  %-*s  %-*s  %-*s  %s\n", wf, m->format, ws, c.size, m->orientation,
               wd, c.date[0] ? c.date : "-", wc, c.cam[0] ? c.cam : "-", wg, c.gps[0] ? c.gps : "-",
               rows[i].path);
        if (m->warning[0]) printf("    warning: %s\n", m->warning);
    }
}

int cmd_info(int argc, char **argv)
{
    const cdx_cmd *self = cmd_find("info");
    static const struct option opts[] = {
        {"format", required_argument, NULL, 'f'},
        {"probe", no_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, probe = 0, c, failed = 0, n;
    struct row *rows;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (strcmp(optarg, "json") == 0) json = 1;
            else if (strcmp(optarg, "table") == 0) json = 0;
            else return usage_error(self, "--format must be table or json, not '%s'", optarg);
            break;
        case 'p': probe = 1; break;
        default:
            return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    n = argc - optind;
    if (n <= 0) return usage_error(self, "no IMAGE given");
    /* The first warning of each file is part of the output; the library's
     * log lines would repeat it on stderr (CLIPDEX_DEBUG keeps them). */
    if (!getenv("CLIPDEX_DEBUG")) cdx_log_set(NULL, NULL, CDX_LOG_ERROR);
    rows = xcalloc((size_t)n, sizeof *rows);

    for (int i = 0; i < n; i++) {
        struct row *r = &rows[i];
        cdx_image img = {0};
        /* min_side 1: JPEG decodes at 1/8 (the whole stream is still read
         * and checked); other formats at full size. */
        cdx_decode_opts o = {.min_side = 1};
        r->path = argv[optind + i];
        if (cdx_image_decode(r->path, &o, probe ? NULL : &img, &r->meta) != CDX_OK) {
            const char *e = cdx_last_error();
            size_t pl = strlen(r->path);
            error("%s", e);
            if (strncmp(e, r->path, pl) == 0 && e[pl] == ':' && e[pl + 1] == ' ') e += pl + 2;
            r->error = xstrdup(e);
            failed++;
        }
        cdx_image_release(&img);
        if (json) print_json_row(r);
    }
    if (!json) print_table(rows, n);
    for (int i = 0; i < n; i++) free(rows[i].error);
    free(rows);
    return failed ? EXIT_ERROR : EXIT_OK;
}
