/*
 * log.h - clipdexd's leveled log (STYLE practice 14).
 *
 * One sink for the daemon and for libclipdex (installed with cdx_log_set):
 * each message becomes one line "TIME clipdexd[PID] LEVEL: message" on
 * stderr or in the log file, written with a single write(2) under a mutex,
 * so lines from worker threads never interleave.  Under systemd (stderr is
 * the journal stream named by $JOURNAL_STREAM) the line is "<N>message"
 * instead: the journal adds time and pid and keeps the priority N.
 *
 * LOG() tests the level before formatting anything.
 */
#ifndef IX_LOG_H
#define IX_LOG_H

#include "clipdex.h"

/* Written at start-up and on SIGHUP, read by every thread. */
extern _Atomic int log_min_level;

/* Route the log to path (NULL or "": stderr), keeping level >= min_level.
 * Returns 0, or -1 with errno when the file cannot be opened (the log then
 * stays where it was).  The first call also installs the sink for
 * libclipdex (cdx_log_set is not safe while threads log, so later calls,
 * from a SIGHUP reload, only change our side: the library keeps the
 * threshold it started with and our sink filters on top of it). */
int log_open(const char *path, int min_level);
/* Reopen the log file (after logrotate moved it: SIGHUP). */
void log_reopen(void);
void log_close(void);

void log_emit(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define LOG(level, ...)                                              \
    do {                                                             \
        if ((level) >= log_min_level) log_emit((level), __VA_ARGS__); \
    } while (0)
#define LOG_DEBUG(...) LOG(CDX_LOG_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) LOG(CDX_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...) LOG(CDX_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) LOG(CDX_LOG_ERROR, __VA_ARGS__)

/* The progress bar shares stderr: while it is shown (a TTY), every log
 * line first clears the bar's line; the bar is redrawn by its next tick. */
void log_bar_shown(int shown);
/* Write raw text to stderr under the log's lock (the progress bar). */
void log_raw_stderr(const char *text, size_t n);
/* True when the log goes to a terminal. */
int log_to_tty(void);

/* Test hook (tests/cli/40-store-crash.t, 40-store-powercut.t): when
 * $CLIPDEX_TEST_PHASE_FD names an open descriptor, every call writes one
 * line "MS PHASE begin|end" to it (MS: CLOCK_MONOTONIC in milliseconds),
 * so a test can measure how long each phase of the daemon's work takes
 * and aim its kills at each of them.  Without the variable: a no-op.
 * Phases: scan, decode, embed, commit, remove, shutdown, close (the
 * store's close, which saves the FAISS file). */
void log_phase(const char *phase, int begin);

#endif
