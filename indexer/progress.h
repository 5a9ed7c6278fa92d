/*
 * progress.h - progress of a long indexing run: a bar redrawn in place
 * when stderr is a terminal, else a plain line every few seconds.
 *
 *   [=========>          ] 1234/5000 files  9.1 images/s  ETA 6:53
 *   progress: 1234/5000 files (24%), 9.1 images/s, ETA 6:53
 */
#ifndef IX_PROGRESS_H
#define IX_PROGRESS_H

#include <stdint.h>

typedef struct progress {
    int tty;               /* draw a bar */
    int64_t interval_ms;   /* between plain lines */
    int64_t last_draw, last_line;
    int64_t t0;
    /* recent rates, smoothed */
    int64_t last_t, last_done, last_images;
    double files_rate, images_rate;
    int shown;
} progress;

void progress_init(progress *p, int tty, int64_t interval_s);
/* done/total files, images embedded so far.  Rates are updated at most
 * once a second; then the bar or line is drawn when due (now with
 * PROGRESS_FORCE, never with PROGRESS_QUIET). */
#define PROGRESS_FORCE 1
#define PROGRESS_QUIET 2
void progress_update(progress *p, int64_t done, int64_t total, int64_t images, int flags);
/* Remove the bar (the final summary is the caller's log line). */
void progress_end(progress *p);
/* The smoothed images/s. */
double progress_images_rate(const progress *p);

#endif
