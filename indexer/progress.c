/*
 * progress.c - the progress bar and progress lines (see progress.h).
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "progress.h"
#include "util.h"

void progress_init(progress *p, int tty, int64_t interval_s)
{
    memset(p, 0, sizeof *p);
    p->tty = tty;
    p->interval_ms = interval_s * 1000;
    p->t0 = p->last_t = p->last_line = now_ms();
}

static void fmt_eta(char *out, size_t cap, double s)
{
    long t = (long)(s + 0.5);
    if (s < 0 || s > 1e7) snprintf(out, cap, "?");
    else if (t >= 3600) snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

double progress_images_rate(const progress *p)
{
    return p->images_rate;
}

void progress_update(progress *p, int64_t done, int64_t total, int64_t images, int flags)
{
    int force = flags & PROGRESS_FORCE;
    int64_t now = now_ms();
    char eta[32], line[256];
    double dt = (double)(now - p->last_t) / 1000.0;

    /* Rates over windows of >= 1 s, smoothed so the ETA does not jump. */
    if (dt >= 1.0) {
        double fr = (double)(done - p->last_done) / dt, ir = (double)(images - p->last_images) / dt;
        double a = p->last_done || p->last_images ? 0.3 : 1.0;
        p->files_rate = a * fr + (1 - a) * p->files_rate;
        p->images_rate = a * ir + (1 - a) * p->images_rate;
        p->last_t = now;
        p->last_done = done;
        p->last_images = images;
    }
    if (flags & PROGRESS_QUIET) return;
    if (total < done) total = done;
    fmt_eta(eta, sizeof eta, p->files_rate > 0 ? (double)(total - done) / p->files_rate : -1);
    if (p->tty) {
        if (!force && now - p->last_draw < 200) return;
        int width = 24, fill = total ? (int)((double)done / (double)total * width) : 0;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
        bar[width] = '\0';
        int n = snprintf(line, sizeof line, "\r[%s] %lld/%lld files  %.1f images/s  ETA %s\033[K",
                         bar, (long long)done, (long long)total, p->images_rate, eta);
        if (n > 0) log_raw_stderr(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        p->last_draw = now;
        if (!p->shown) log_bar_shown(1);
        p->shown = 1;
    } else {
        if (!force && now - p->last_line < p->interval_ms) return;
        LOG_INFO("progress: %lld/%lld files (%d%%), %.1f images/s, ETA %s", (long long)done,
                 (long long)total, total ? (int)(100.0 * (double)done / (double)total) : 100,
                 p->images_rate, eta);
        p->last_line = now;
    }
}

void progress_end(progress *p)
{
    if (p->tty && p->shown) {
        log_raw_stderr("\r\033[K", 4);
        log_bar_shown(0);
    }
    p->shown = 0;
}
